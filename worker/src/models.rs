//! The models a worker uses, loaded on first use and shared by every job. A model that fails to
//! load (a missing pack, a bad checksum) is tried again on the next job rather than cached as
//! broken, so fixing the deployment needs no restart.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crate::inference::ocr::{Ocr, OcrOptions};
use crate::inference::vad::Vad;
use crate::inference::{Device, DirStore, InferenceError, Runtime, RuntimeConfig};
use crate::settings::InferenceSettings;

/// Lazily loaded models.
pub struct Models {
    settings: InferenceSettings,
    runtime: Mutex<Option<Arc<Runtime>>>,
    ocr: Mutex<Option<Arc<Ocr>>>,
    vad: Mutex<Option<Arc<Vad>>>,
}

impl Models {
    /// Nothing is loaded until a job needs it.
    pub fn new(settings: InferenceSettings) -> Self {
        Self { settings, runtime: Mutex::new(None), ocr: Mutex::new(None), vad: Mutex::new(None) }
    }

    fn root() -> PathBuf {
        std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."))
    }

    fn store(&self) -> DirStore {
        let dir = self.settings.models_dir.as_deref().map(PathBuf::from).unwrap_or_else(|| DirStore::default_root(&Self::root()));
        DirStore::new(dir)
    }

    fn runtime(&self) -> Result<Arc<Runtime>, InferenceError> {
        let mut slot = self.runtime.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(rt) = slot.as_ref() {
            return Ok(rt.clone());
        }
        let library = self.settings.library.as_deref().map(PathBuf::from).unwrap_or_else(|| RuntimeConfig::default_library(&Self::root()));
        let device = if self.settings.device == "cuda" { Device::Cuda { device_id: self.settings.cuda_device_id } } else { Device::Cpu };
        let rt = Runtime::init(RuntimeConfig { library, intra_threads: self.settings.intra_threads, device })?;
        *slot = Some(rt.clone());
        Ok(rt)
    }

    /// The text detector and recogniser. Blocking: call it off the async runtime.
    pub fn ocr(&self) -> Result<Arc<Ocr>, InferenceError> {
        load(&self.ocr, || Ocr::load(&*self.runtime()?, &self.store(), OcrOptions::default()))
    }

    /// The voice activity detector. Blocking.
    pub fn vad(&self) -> Result<Arc<Vad>, InferenceError> {
        load(&self.vad, || Vad::load(&*self.runtime()?, &self.store()))
    }

    /// Where models are read from, for logs.
    pub fn models_dir(&self) -> PathBuf {
        self.store().root().to_path_buf()
    }
}

fn load<T>(slot: &Mutex<Option<Arc<T>>>, make: impl FnOnce() -> Result<T, InferenceError>) -> Result<Arc<T>, InferenceError> {
    let mut slot = slot.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(m) = slot.as_ref() {
        return Ok(m.clone());
    }
    let m = Arc::new(make()?);
    *slot = Some(m.clone());
    Ok(m)
}

