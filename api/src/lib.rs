//! The reelq HTTP API: streamed uploads into S3, job submission through a transactional outbox,
//! job status, health and metrics.

pub mod error;
pub mod extract;
pub mod ingest;
pub mod retention;
pub mod retry;
pub mod routes;
pub mod settings;
pub mod startup;
pub mod state;

pub use settings::Settings;
pub use startup::Application;
