//! Model manifests (`manifest.json` beside each ONNX file) and where model folders come from.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::InferenceError;

/// What `tools/models/build-pack` writes for each model.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub name: String,
    pub version: String,
    /// What the model does, e.g. `text-detection`, `voice-activity`, `text-embedding`.
    pub task: String,
    /// The ONNX file, relative to the model's folder.
    pub file: String,
    pub sha256: String,
    pub inputs: Vec<TensorSpec>,
    pub outputs: Vec<TensorSpec>,
    /// Model-specific preprocessing parameters (sizes, mean/std, sample rate), as documented.
    #[serde(default)]
    pub preprocessing: serde_json::Value,
    #[serde(default)]
    pub postprocessing: serde_json::Value,
    /// A labels file in the folder, or `{"metadata_key": K}` for labels inside the ONNX metadata.
    #[serde(default)]
    pub labels: Option<Labels>,
    /// A Hugging Face `tokenizer.json` in the folder.
    #[serde(default)]
    pub tokenizer: Option<String>,
    /// Where the weights came from: package, version, licence.
    #[serde(default)]
    pub source: serde_json::Value,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Labels {
    File(String),
    Metadata { metadata_key: String },
}

/// One input or output: name, shape (numbers, or names for dynamic axes) and element type.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TensorSpec {
    pub name: String,
    pub shape: Vec<Dim>,
    pub dtype: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Dim {
    Fixed(i64),
    Named(String),
}

impl Manifest {
    /// Reads `dir/manifest.json`.
    pub fn load(dir: &Path) -> Result<Self, InferenceError> {
        let path = dir.join("manifest.json");
        let text = std::fs::read_to_string(&path).map_err(|e| InferenceError::Manifest { path: path.clone(), reason: e.to_string() })?;
        serde_json::from_str(&text).map_err(|e| InferenceError::Manifest { path, reason: e.to_string() })
    }

    /// Checks the ONNX file against the manifest's sha256, and that named extra files exist.
    pub fn verify(&self, dir: &Path) -> Result<(), InferenceError> {
        let file = dir.join(&self.file);
        let actual =
            sha256_file(&file).map_err(|e| InferenceError::MissingModel { name: self.name.clone(), reason: format!("{}: {e}", file.display()) })?;
        if !actual.eq_ignore_ascii_case(&self.sha256) {
            return Err(InferenceError::Checksum { name: self.name.clone(), file: self.file.clone(), expected: self.sha256.clone(), actual });
        }
        let extras = [
            self.tokenizer.as_deref(),
            match &self.labels {
                Some(Labels::File(f)) => Some(f.as_str()),
                _ => None,
            },
        ];
        for extra in extras.into_iter().flatten() {
            if !dir.join(extra).is_file() {
                return Err(InferenceError::MissingModel { name: self.name.clone(), reason: format!("{extra} is missing") });
            }
        }
        Ok(())
    }

    /// A numeric preprocessing parameter, or `default` when the manifest does not set it.
    pub fn pre_f64(&self, key: &str, default: f64) -> f64 {
        self.preprocessing.get(key).and_then(serde_json::Value::as_f64).unwrap_or(default)
    }

    /// A three-element preprocessing parameter (mean, std), or `default`.
    pub fn pre_triple(&self, key: &str, default: [f32; 3]) -> [f32; 3] {
        let Some(values) = self.preprocessing.get(key).and_then(serde_json::Value::as_array) else { return default };
        let mut out = default;
        for (o, v) in out.iter_mut().zip(values) {
            if let Some(v) = v.as_f64() {
                *o = v as f32;
            }
        }
        out
    }

    pub fn post_f64(&self, key: &str, default: f64) -> f64 {
        self.postprocessing.get(key).and_then(serde_json::Value::as_f64).unwrap_or(default)
    }

    /// Fixed size of output `index`'s last axis, when the manifest gives one.
    pub fn output_width(&self, index: usize) -> Option<usize> {
        match self.outputs.get(index)?.shape.last()? {
            Dim::Fixed(n) => usize::try_from(*n).ok(),
            Dim::Named(_) => None,
        }
    }
}

fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Where model folders come from. A directory today; an S3 prefix later, by downloading into a
/// local cache folder and returning that (sessions need a file on disk, or the bytes in memory).
pub trait ModelStore: Send + Sync {
    /// The local folder holding `name`'s `manifest.json` and files.
    fn locate(&self, name: &str) -> Result<PathBuf, InferenceError>;
}

/// Models laid out as `root/<name>/manifest.json`, as `tools/models/build-pack` writes them.
#[derive(Debug, Clone)]
pub struct DirStore {
    root: PathBuf,
}

impl DirStore {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// `REELQ_MODELS_DIR` if set, else `.data/models` under `root`.
    pub fn default_root(root: &Path) -> PathBuf {
        std::env::var_os("REELQ_MODELS_DIR").map(PathBuf::from).unwrap_or_else(|| root.join(".data/models"))
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
}

impl ModelStore for DirStore {
    fn locate(&self, name: &str) -> Result<PathBuf, InferenceError> {
        if name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.') {
            return Err(InferenceError::MissingModel { name: name.to_owned(), reason: "not a valid model name".into() });
        }
        let dir = self.root.join(name);
        if dir.join("manifest.json").is_file() {
            Ok(dir)
        } else {
            Err(InferenceError::MissingModel { name: name.to_owned(), reason: format!("no manifest.json in {}", dir.display()) })
        }
    }
}
