//! reelq's model maths and artifact formats: the hashtag classifier (`reelq-hashtag-linear/1`)
//! and its trainer, the virality regressor (`reelq-virality-ridge/1`), and the engagement
//! arithmetic over pulled videos (virality, music ranking, trending hashtags).
//!
//! Pure functions over numbers and serde types: no database, queue, storage, FFmpeg or ONNX
//! Runtime, so training and inference share one definition and it is unit-tested alone.

pub mod classifier;
pub mod engagement;
pub mod features;
