//! The analyses of one video, as `reelq analyze` and the worker both run them: the video is
//! probed, decoded once with what the requested analyses need together (the catalogue in
//! `reelq-core` says what each needs), and each analysis returns a typed finding that is
//! serialised once, where it leaves this crate.
//!
//! This crate knows nothing of PostgreSQL, RabbitMQ or object storage: what an analysis needs
//! from the services (pulled TikTok data for `music`, the song catalogue for `song`) comes in
//! through [`PulledData`] and [`song::Recognizer`], and its
//! timings go out through [`Observer`]. Failures are [`AnalysisError`]s, which say whether the
//! video or the system is at fault; the worker maps them to fail or retry.

pub mod error;
pub mod evaluate;
pub mod findings;
pub mod hashtags;
pub mod models;
pub mod observe;
pub mod pipeline;
pub mod settings;
pub mod song;
mod sound;
mod suggest;

pub use error::AnalysisError;
pub use findings::{AnalysisOutput, Finding, ModelRef};
pub use observe::{Observer, Quiet};
pub use pipeline::{Input, Pipeline, PipelineSettings, PulledData, Session};
/// The media and model layers, for callers that probe a file or load a model themselves.
pub use reelq_inference as inference;
pub use reelq_media as media;
pub use suggest::HashtagInputs;
