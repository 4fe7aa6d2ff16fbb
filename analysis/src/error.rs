//! Why an analysis did not produce its finding, decided where it happens.

use reelq_core::domain::JobErrorCode;
use reelq_inference::InferenceError;
use reelq_media::decode::DecodeError;
use reelq_media::probe::MediaError;

/// An analysis's failure.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AnalysisError {
    /// The video is at fault (unreadable, over a limit, not a video): the same file fails the
    /// same way again, so it is never retried. `code` is the stable code clients see.
    #[error("{message}")]
    Refused { code: JobErrorCode, message: String },
    /// Something outside the video is at fault (a model pack that did not load, a service that
    /// did not answer, a full disk): the same request may succeed later.
    #[error("{0}")]
    Unavailable(String),
    /// The caller asked it to stop.
    #[error("stopped")]
    Stopped,
}

impl AnalysisError {
    /// A refusal with this code.
    pub fn refused(code: JobErrorCode, message: impl Into<String>) -> Self {
        Self::Refused { code, message: message.into() }
    }
}

impl From<MediaError> for AnalysisError {
    fn from(e: MediaError) -> Self {
        Self::Refused { code: e.code, message: e.message }
    }
}

impl From<DecodeError> for AnalysisError {
    fn from(e: DecodeError) -> Self {
        match e {
            DecodeError::Stopped => Self::Stopped,
            e if e.is_retryable() => Self::Unavailable(e.to_string()),
            e => Self::Refused { code: e.code().unwrap_or(JobErrorCode::InvalidMedia), message: e.to_string() },
        }
    }
}

impl From<InferenceError> for AnalysisError {
    fn from(e: InferenceError) -> Self {
        if e.is_retryable() {
            Self::Unavailable(format!("model: {e}"))
        } else {
            Self::Refused { code: JobErrorCode::InvalidMedia, message: e.to_string() }
        }
    }
}
