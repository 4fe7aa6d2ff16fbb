//! The promoted model versions as this worker uses them. Before a job that needs a learned
//! model, the worker asks the registry (at most every `registry_refresh_ms`) which versions are
//! promoted; a changed version's artifact is read from storage and swapped in, so promotions
//! and rollbacks take effect without a restart. A failed check keeps the versions in use.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::PgPool;

use reelq_shared::classifier::LinearHead;
use reelq_shared::db::models as registry;
use reelq_shared::engagement::virality::ViralityRegressor;
use reelq_shared::storage::Store;

use crate::training::MAX_ARTIFACT_BYTES;
use reelq_analysis::hashtags::Ranker;
use reelq_analysis::models::Models;

#[derive(Default)]
struct State {
    checked: Option<Instant>,
    hashtags: Option<String>,
    ranker: Option<String>,
    virality: Option<String>,
}

/// Keeps [`Models`]' promoted versions in step with the registry.
pub struct Registry {
    pool: PgPool,
    store: Store,
    every: Duration,
    state: tokio::sync::Mutex<State>,
}

impl Registry {
    /// A registry view checked at most every `every`.
    pub fn new(pool: PgPool, store: Store, every: Duration) -> Self {
        Self { pool, store, every, state: tokio::sync::Mutex::new(State::default()) }
    }

    /// Swaps in newly promoted versions when the last check is older than the refresh interval.
    pub async fn refresh(&self, models: &Models) {
        let mut state = self.state.lock().await;
        if state.checked.is_some_and(|at| at.elapsed() < self.every) {
            return;
        }
        match self.check(models, &mut state).await {
            Ok(()) => state.checked = Some(Instant::now()),
            Err(e) => tracing::warn!(error = %e, "cannot read the model registry; keeping the versions in use"),
        }
    }

    async fn check(&self, models: &Models, state: &mut State) -> Result<(), String> {
        if let Some(change) = self.changed("hashtags", &state.hashtags, |b| LinearHead::from_json(b).map_err(|e| e.to_string())).await? {
            models.set_promoted_head(change.1);
            state.hashtags = change.0;
        }
        if let Some(change) = self.changed("ranker", &state.ranker, Ranker::from_json).await? {
            models.set_promoted_ranker(change.1);
            state.ranker = change.0;
        }
        if let Some(change) = self.changed("virality", &state.virality, |b| ViralityRegressor::from_json(b).map_err(|e| e.to_string())).await? {
            models.set_promoted_virality(change.1);
            state.virality = change.0;
        }
        Ok(())
    }

    /// The promoted version of `model` and its loaded artifact, when it differs from `loaded`.
    async fn changed<T>(
        &self,
        model: &str,
        loaded: &Option<String>,
        parse: impl Fn(&[u8]) -> Result<T, String>,
    ) -> Result<Option<(Option<String>, Option<Arc<T>>)>, String> {
        let promoted = registry::promoted(&self.pool, model).await.map_err(|e| e.to_string())?;
        if promoted.as_ref().map(|v| &v.version) == loaded.as_ref() {
            return Ok(None);
        }
        let artifact = match &promoted {
            Some(v) => {
                let bytes = self.store.get_bytes(&v.artifact_key, MAX_ARTIFACT_BYTES).await.map_err(|e| e.to_string())?;
                Some(Arc::new(parse(&bytes).map_err(|e| format!("{}: {e}", v.artifact_key))?))
            }
            None => None,
        };
        tracing::info!(model, from = ?loaded, to = ?promoted.as_ref().map(|v| &v.version), "promoted model version changed");
        Ok(Some((promoted.map(|v| v.version), artifact)))
    }
}
