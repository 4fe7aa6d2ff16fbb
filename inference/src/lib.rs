//! Model runtime: ONNX Runtime through `ort`, model packs with manifests, dynamic batching, and
//! the analyses built on them (on-screen text, voice activity, sentence and image embeddings).
//!
//! ONNX Runtime is loaded from an explicit library path ([`RuntimeConfig::library`]) rather than
//! discovered or downloaded, so a worker without it fails at start-up with a clear error.
//! Sessions are created once per model and shared; every call here is blocking CPU (or GPU) work
//! and belongs in `spawn_blocking`, except the batcher's async `submit`.

pub mod batcher;
pub mod clip;
pub mod embedding;
pub mod image;
pub mod manifest;
pub mod ocr;
pub mod safety;
pub mod tagger;
#[cfg(test)]
pub(crate) mod testing;
pub mod vad;
pub mod whisper;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;

pub use batcher::{BatchObserver, BatchStats, Batcher, BatcherConfig, observe_batches};
pub use manifest::{DirStore, Manifest, ModelStore};

/// File name of the ONNX Runtime library that `tools/models/build-pack` fetches.
pub const RUNTIME_LIBRARY: &str = "libonnxruntime.so.1.31.1";

/// Why a model could not be loaded or run.
#[derive(Debug, thiserror::Error)]
pub enum InferenceError {
    #[error("ONNX Runtime library {path}: {reason} (run tools/models/build-pack, or point the worker at libonnxruntime)")]
    Library { path: PathBuf, reason: String },
    #[error("model {name}: {reason} (run tools/models/build-pack)")]
    MissingModel { name: String, reason: String },
    #[error("model manifest {path}: {reason}")]
    Manifest { path: PathBuf, reason: String },
    #[error("model {name}: {file} has sha256 {actual}, its manifest says {expected}")]
    Checksum { name: String, file: String, expected: String, actual: String },
    #[error("CUDA execution provider: {0}")]
    Cuda(String),
    #[error("model {name}: {source}")]
    Session { name: String, source: ort::Error },
    #[error("tokenizer {path}: {reason}")]
    Tokenizer { path: PathBuf, reason: String },
    #[error("invalid input: {0}")]
    Input(String),
    #[error("model {name} returned an unexpected output: {reason}")]
    Output { name: String, reason: String },
    #[error("the batcher for {0} has shut down")]
    BatcherClosed(String),
    #[error("batch failed: {0}")]
    BatchFailed(String),
}

impl InferenceError {
    /// Stable kebab-case code for job results and logs.
    pub fn error_code(&self) -> &'static str {
        match self {
            Self::Library { .. } => "model-runtime-missing",
            Self::MissingModel { .. } => "model-missing",
            Self::Manifest { .. } => "model-manifest-invalid",
            Self::Checksum { .. } => "model-checksum-mismatch",
            Self::Cuda(_) => "cuda-unavailable",
            Self::Session { .. } => "inference-failed",
            Self::Tokenizer { .. } => "tokenizer-invalid",
            Self::Input(_) => "inference-input-invalid",
            Self::Output { .. } => "model-output-invalid",
            Self::BatcherClosed(_) => "batcher-closed",
            Self::BatchFailed(_) => "batch-failed",
        }
    }

    /// Whether the same job might succeed later or on another worker. Missing or corrupt models
    /// are a fault of this worker's deployment, not of the job, so they count as retryable;
    /// malformed inputs never get better.
    pub fn is_retryable(&self) -> bool {
        !matches!(self, Self::Input(_))
    }
}

/// Where inference runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Device {
    #[default]
    Cpu,
    /// ONNX Runtime's CUDA execution provider; needs the `cuda` cargo feature and the
    /// onnxruntime-gpu library. Registration failure is an error, never a silent CPU fall-back.
    Cuda { device_id: i32 },
}

/// How the runtime is set up; the worker's settings map onto this.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Path of `libonnxruntime.so` (version ≥ 1.31).
    pub library: PathBuf,
    /// Threads each session may use inside one operator.
    pub intra_threads: usize,
    pub device: Device,
}

impl RuntimeConfig {
    /// `ORT_DYLIB_PATH` if set, else `.data/onnxruntime/libonnxruntime.so.1.31.1` under `root`.
    pub fn default_library(root: &Path) -> PathBuf {
        std::env::var_os("ORT_DYLIB_PATH").map(PathBuf::from).unwrap_or_else(|| root.join(".data/onnxruntime").join(RUNTIME_LIBRARY))
    }
}

static ENVIRONMENT: OnceLock<Result<(PathBuf, ort::environment::Environment), String>> = OnceLock::new();

/// The loaded ONNX Runtime: creates sessions with this worker's threads and device.
pub struct Runtime {
    config: RuntimeConfig,
    environment: ort::environment::Environment,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime").field("config", &self.config).finish_non_exhaustive()
    }
}

impl Runtime {
    /// Loads ONNX Runtime from `config.library`. The library is loaded once per process; a later
    /// call with another path is an error rather than silently using the first one.
    pub fn init(config: RuntimeConfig) -> Result<Arc<Self>, InferenceError> {
        let library = config.library.clone();
        let lib_err = |reason: String| InferenceError::Library { path: library.clone(), reason };
        #[cfg(not(feature = "cuda"))]
        if let Device::Cuda { .. } = config.device {
            return Err(InferenceError::Cuda("this worker was built without the `cuda` feature".into()));
        }
        let loaded = ENVIRONMENT.get_or_init(|| {
            if !library.is_file() {
                return Err(format!("{}: no such file", library.display()));
            }
            let builder = ort::init_from(&library).map_err(|e| e.to_string())?;
            let env = builder.with_name("reelq").build().map_err(|e| e.to_string())?;
            Ok((library.clone(), env))
        });
        match loaded {
            Ok((path, environment)) if *path == library => Ok(Arc::new(Self { config, environment: environment.clone() })),
            Ok((path, _)) => Err(lib_err(format!("ONNX Runtime is already loaded from {}", path.display()))),
            Err(reason) => Err(lib_err(reason.clone())),
        }
    }

    pub fn config(&self) -> &RuntimeConfig {
        &self.config
    }

    /// Creates a session for one model file with this runtime's threads and device.
    pub fn session(&self, name: &str, file: &Path) -> Result<Session, InferenceError> {
        self.session_with(name, file, SessionOptions::default())
    }

    /// Creates a session with its own memory and threading choices.
    pub fn session_with(&self, name: &str, file: &Path, options: SessionOptions) -> Result<Session, InferenceError> {
        let err = |source: ort::Error| InferenceError::Session { name: name.to_owned(), source };
        let recover = |e: ort::Error<ort::session::builder::SessionBuilder>| err(ort::Error::new(e.message().to_owned()));
        let mut builder = Session::builder(&self.environment)
            .map_err(err)?
            .with_optimization_level(GraphOptimizationLevel::Level3)
            .map_err(recover)?
            .with_intra_threads(self.config.intra_threads.max(1))
            .map_err(recover)?
            .with_inter_threads(1)
            .map_err(recover)?;
        if !options.spin {
            builder = builder.with_intra_op_spinning(false).map_err(recover)?;
        }
        if options.arena == Arena::Release && self.config.device == Device::Cpu {
            let cpu = ort::ep::CPU::default().with_arena_allocator(false).build().error_on_failure();
            builder = builder.with_memory_pattern(false).map_err(recover)?.with_execution_providers([cpu]).map_err(recover)?;
        }
        if let Device::Cuda { device_id } = self.config.device {
            builder = with_cuda(builder, device_id)?;
        }
        builder.commit_from_file(file).map_err(err)
    }
}

/// How one session uses memory and threads, beyond the runtime's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionOptions {
    pub arena: Arena,
    /// Whether idle intra-op threads spin for a while before sleeping. Spinning shaves a little
    /// latency off back-to-back runs on an idle machine; a caller that does its own work
    /// between short runs (a decoding loop) pays for it with a core spent waiting, and on a
    /// busy machine with the time the spinning thread takes from others.
    pub spin: bool,
}

impl Default for SessionOptions {
    fn default() -> Self {
        Self { arena: Arena::Keep, spin: true }
    }
}

/// What a CPU session does with its working memory between runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arena {
    /// ONNX Runtime's arena keeps the largest working set a session has needed, and grows
    /// further when a later run's blocks do not fit the freed ones: fastest for small,
    /// frequent runs.
    Keep,
    /// No arena and no planned memory pattern: each run's tensors go back to the system
    /// allocator when their last reader is done, so a session that runs on large activations
    /// now and then (Whisper's encoder: 54 MB of attention scores per layer) does not hold
    /// them, and its peak is what one run needs.
    Release,
}

#[cfg(feature = "cuda")]
fn with_cuda(builder: ort::session::builder::SessionBuilder, device_id: i32) -> Result<ort::session::builder::SessionBuilder, InferenceError> {
    let cuda = ort::ep::CUDA::default().with_device_id(device_id).build().error_on_failure();
    builder.with_execution_providers([cuda]).map_err(|e| InferenceError::Cuda(e.message().to_owned()))
}

#[cfg(not(feature = "cuda"))]
fn with_cuda(_builder: ort::session::builder::SessionBuilder, _device_id: i32) -> Result<ort::session::builder::SessionBuilder, InferenceError> {
    Err(InferenceError::Cuda("this worker was built without the `cuda` feature".into()))
}

/// One loaded model: its manifest, its folder, and a session shared by every caller.
///
/// `ort` sessions need exclusive access to run, so concurrent callers queue on a mutex; the
/// intra-op thread pool still parallelises each call, and the batcher merges per-frame calls.
pub struct Model {
    manifest: Manifest,
    dir: PathBuf,
    session: Mutex<Session>,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model").field("name", &self.manifest.name).field("version", &self.manifest.version).finish()
    }
}

impl Model {
    /// Locates `name` in `store`, verifies its checksum and creates its session.
    pub fn load(runtime: &Runtime, store: &dyn ModelStore, name: &str) -> Result<Arc<Self>, InferenceError> {
        Self::load_with(runtime, store, name, SessionOptions::default())
    }

    /// [`Model::load`] with the session's own memory and threading choices.
    pub fn load_with(runtime: &Runtime, store: &dyn ModelStore, name: &str, options: SessionOptions) -> Result<Arc<Self>, InferenceError> {
        let dir = store.locate(name)?;
        let manifest = Manifest::load(&dir)?;
        manifest.verify(&dir)?;
        let session = runtime.session_with(name, &dir.join(&manifest.file), options)?;
        Ok(Arc::new(Self { manifest, dir, session: Mutex::new(session) }))
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Folder holding the model's files (tokenizer, labels).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `name@version`, as results report it.
    pub fn id(&self) -> ModelId {
        ModelId { name: self.manifest.name.clone(), version: self.manifest.version.clone(), sha256: self.manifest.sha256.clone() }
    }

    /// Exclusive access to the session for one run.
    pub fn session(&self) -> MutexGuard<'_, Session> {
        // A panic inside a run leaves the session itself usable, so a poisoned lock is recovered.
        self.session.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn session_error(&self, source: ort::Error) -> InferenceError {
        InferenceError::Session { name: self.manifest.name.clone(), source }
    }

    pub(crate) fn output_error(&self, reason: impl Into<String>) -> InferenceError {
        InferenceError::Output { name: self.manifest.name.clone(), reason: reason.into() }
    }
}

/// Which model produced a result: results carry these so they can be traced to a pack.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ModelId {
    pub name: String,
    pub version: String,
    pub sha256: String,
}

impl std::fmt::Display for ModelId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.name, self.version)
    }
}
