//! Model manifests (`manifest.json` beside each ONNX file) and where model folders come from.
//!
//! Every graph is checked against the sha256 its manifest names before a session is made from
//! it. Hashing the whole pack on each start costs about a second for Whisper alone, so a check
//! that passed is remembered in `.verified.json` beside the files, with the file's size,
//! modification and change times and inode; while those are unchanged the file is not read
//! again. Rewriting a file changes its change time even when its modification time is put back,
//! so a tampered file is hashed again and refused. The record can only spare work: whoever can
//! edit it can edit the manifest too.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
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
        verify_file(&self.name, dir, &self.file, &self.sha256)?;
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

/// How [`check_file`] came to accept a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Checked {
    /// Read and hashed.
    Hashed,
    /// Trusted from `.verified.json`: unchanged since it was hashed.
    Remembered,
}

/// File name of the record of passed checks, in each model's folder.
pub(crate) const VERIFIED_FILE: &str = ".verified.json";

/// What identifies one version of a file on disk without reading it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Fingerprint {
    size: u64,
    /// Seconds and nanoseconds.
    mtime: (i64, i64),
    ctime: (i64, i64),
    inode: u64,
    device: u64,
}

impl Fingerprint {
    fn of(meta: &std::fs::Metadata) -> Self {
        Self {
            size: meta.len(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
            inode: meta.ino(),
            device: meta.dev(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct VerifiedEntry {
    sha256: String,
    #[serde(flatten)]
    fingerprint: Fingerprint,
}

/// The content of `.verified.json`: file name → the sha256 it had when it was last hashed.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Verified {
    files: BTreeMap<String, VerifiedEntry>,
}

impl Verified {
    fn load(dir: &Path) -> Self {
        // A missing or unreadable record means hashing again, never an error.
        std::fs::read(dir.join(VERIFIED_FILE)).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default()
    }

    /// Writes the record through a temporary file and a rename, so a reader never sees half of
    /// it. A read-only pack keeps no record and is hashed on every load.
    fn store(&self, dir: &Path) {
        let write = || -> std::io::Result<()> {
            let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
            serde_json::to_writer_pretty(&mut tmp, self).map_err(std::io::Error::other)?;
            tmp.persist(dir.join(VERIFIED_FILE)).map_err(|e| e.error)?;
            Ok(())
        };
        if let Err(e) = write() {
            tracing::debug!(dir = %dir.display(), error = %e, "model checksums not recorded");
        }
    }
}

/// Checks `dir/file` against the sha256 `expected`, skipping the hash when `.verified.json` says
/// the same file, unchanged, had that sha256.
pub(crate) fn verify_file(name: &str, dir: &Path, file: &str, expected: &str) -> Result<(), InferenceError> {
    check_file(name, dir, file, expected).map(|_| ())
}

pub(crate) fn check_file(name: &str, dir: &Path, file: &str, expected: &str) -> Result<Checked, InferenceError> {
    let path = dir.join(file);
    let missing = |e: std::io::Error| InferenceError::MissingModel { name: name.to_owned(), reason: format!("{}: {e}", path.display()) };
    let before = Fingerprint::of(&std::fs::metadata(&path).map_err(missing)?);
    let mut verified = Verified::load(dir);
    let actual = match verified.files.get(file) {
        Some(entry) if entry.fingerprint == before => return compare(name, file, expected, entry.sha256.clone()).map(|()| Checked::Remembered),
        _ => sha256_file(&path).map_err(missing)?,
    };
    compare(name, file, expected, actual.clone())?;
    // A file rewritten while it was being read is not recorded: the hash may mix both versions.
    if std::fs::metadata(&path).is_ok_and(|m| Fingerprint::of(&m) == before) {
        verified.files.insert(file.to_owned(), VerifiedEntry { sha256: actual, fingerprint: before });
        verified.store(dir);
    }
    Ok(Checked::Hashed)
}

fn compare(name: &str, file: &str, expected: &str, actual: String) -> Result<(), InferenceError> {
    if actual.eq_ignore_ascii_case(expected) {
        Ok(())
    } else {
        Err(InferenceError::Checksum { name: name.to_owned(), file: file.to_owned(), expected: expected.to_owned(), actual })
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

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    fn sha256_hex(bytes: &[u8]) -> String {
        hex::encode(Sha256::digest(bytes))
    }

    #[test]
    fn an_unchanged_file_is_trusted_from_the_record_and_a_changed_one_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("graph.onnx");
        std::fs::write(&path, b"weights version one").expect("write");
        let good = sha256_hex(b"weights version one");

        let first = check_file("m", dir.path(), "graph.onnx", &good).expect("first check");
        let second = check_file("m", dir.path(), "graph.onnx", &good).expect("second check");
        // Same size, and the modification time put back: only the change time tells.
        let mtime = std::fs::metadata(&path).and_then(|m| m.modified()).expect("mtime");
        let mut f = std::fs::OpenOptions::new().write(true).truncate(true).open(&path).expect("open");
        f.write_all(b"weights version two").expect("rewrite");
        f.set_modified(mtime).expect("restore mtime");
        drop(f);
        let tampered = check_file("m", dir.path(), "graph.onnx", &good).expect_err("tampered");
        std::fs::write(&path, b"weights version one, longer").expect("grow");
        let grown = check_file("m", dir.path(), "graph.onnx", &good).expect_err("grown");

        assert_eq!(first, Checked::Hashed);
        assert_eq!(second, Checked::Remembered, "the record is used while the file is unchanged");
        assert_eq!(tampered.error_code(), "model-checksum-mismatch", "{tampered}");
        assert_eq!(grown.error_code(), "model-checksum-mismatch", "{grown}");
    }

    #[test]
    fn the_record_is_what_a_remembered_check_trusts() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("graph.onnx"), b"weights").expect("write");
        let good = sha256_hex(b"weights");
        check_file("m", dir.path(), "graph.onnx", &good).expect("first check");
        let record = dir.path().join(VERIFIED_FILE);
        let text = std::fs::read_to_string(&record).expect("record written");
        std::fs::write(&record, text.replace(&good, &"0".repeat(64))).expect("edit record");

        let err = check_file("m", dir.path(), "graph.onnx", &good).expect_err("the record is read, not the file");
        std::fs::write(&record, b"not json").expect("spoil record");
        let rehashed = check_file("m", dir.path(), "graph.onnx", &good).expect("a spoilt record means hashing again");

        assert_eq!(err.error_code(), "model-checksum-mismatch");
        assert_eq!(rehashed, Checked::Hashed);
    }
}
