//! End-to-end tests against real PostgreSQL, RabbitMQ and an S3-compatible server. Each test
//! builds its own isolated environment (database, queue names, bucket folder).

mod analyses;
mod api;
mod batching;
mod browser;
mod db_faults;
mod dead_letters;
mod deletion;
mod errors;
mod events;
mod failures;
mod hostile;
mod lifecycle;
mod models;
mod mux;
mod observability;
mod retries;
mod scheduler;
mod schemathesis;
mod song_analysis;
mod songs;
mod training;
mod uploads;
