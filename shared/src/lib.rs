//! Shared core of reelq: domain types, configuration, PostgreSQL access, RabbitMQ topology and
//! publishing, S3 storage and telemetry.
//!
//! This crate knows nothing of HTTP frameworks, FFmpeg or ONNX Runtime: the api, worker and
//! scheduler build on it, never the other way round.

pub mod auth;
/// Model maths and artifact formats live in `reelq-learn`; re-exported so `reelq_shared::classifier`
/// and `reelq_shared::engagement` paths keep working.
pub use reelq_learn::{classifier, engagement};
pub mod config;
pub mod db;
/// The vocabulary lives in `reelq-core`; re-exported so `reelq_shared::domain` paths keep working.
pub use reelq_core::{catalogue, domain, options};
pub mod metrics;
pub mod outbox;
pub mod queue;
pub mod songs;
pub mod storage;
pub mod telemetry;
pub mod training;
pub mod webhook;
