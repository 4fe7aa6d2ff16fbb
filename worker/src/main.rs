//! `reelq-worker`: consume and process jobs until SIGTERM.

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;

use reelq_worker::{Settings, Worker};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings: Settings = reelq_shared::config::load().context("loading configuration")?;
    let _telemetry = reelq_shared::telemetry::init("reelq-worker", &settings.telemetry);
    let worker = Worker::build(settings).await?;
    let stop = CancellationToken::new();
    reelq_shared::telemetry::spawn_named("signals", stop_on_signal(stop.clone()));
    worker.run_until_stopped(stop).await?;
    Ok(())
}

async fn stop_on_signal(token: CancellationToken) {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        Some(()) = async { match term.as_mut() { Some(t) => t.recv().await, None => std::future::pending().await } } => {}
    }
    tracing::info!("shutdown requested: finishing in-flight jobs");
    token.cancel();
}
