//! State shared by every handler, and the authenticated-tenant extractor.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use sqlx::PgPool;

use reelq_shared::db::batch::Coalescer;
use reelq_shared::db::jobs::{JobRecord, Submission};
use reelq_shared::db::tenants::{self, Tenant};
use reelq_shared::queue::Publisher;
use reelq_shared::storage::Store;

use crate::error::ApiError;
use crate::settings::Settings;

/// Most single submissions inserted by one statement.
const MAX_SUBMISSION_BATCH: usize = 256;

/// Cheap to clone: everything behind `Arc`s.
#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub store: Store,
    pub publisher: Arc<Publisher>,
    pub settings: Arc<Settings>,
    pub auth_cache: Arc<AuthCache>,
    /// Open job event streams: their cap and the token that ends them at shutdown.
    pub events: Arc<crate::routes::events::EventStreams>,
    /// Wakes this process's outbox relay once a submission has committed.
    pub relay_wake: Arc<tokio::sync::Notify>,
    /// Inserts the single submissions that arrive together in one statement.
    pub submissions: Arc<Coalescer<Submission, Option<JobRecord>>>,
}

impl AppState {
    /// Whether submissions must wake relays through PostgreSQL: only when this process runs
    /// none of its own.
    pub fn notify_relays(&self) -> bool {
        !self.settings.api.run_relay
    }

    /// The coalescer of single submissions for `pool`: a submission arriving while none is
    /// being inserted goes alone at once; those that arrive meanwhile go together next.
    pub fn submissions(pool: &PgPool, notify_relays: bool) -> Arc<Coalescer<Submission, Option<JobRecord>>> {
        let pool = pool.clone();
        Arc::new(Coalescer::spawn("jobs.insert_each", MAX_SUBMISSION_BATCH, move |items: Arc<[Submission]>| {
            let pool = pool.clone();
            async move { reelq_shared::db::jobs::insert_each(&pool, &items, notify_relays).await }
        }))
    }

    /// Wakes this process's relay, after a submission committed.
    pub fn wake_relay(&self) {
        if self.settings.api.run_relay {
            self.relay_wake.notify_one();
        }
    }
}

/// Remembers recently authenticated keys (by hash) so that most requests skip a query.
pub struct AuthCache {
    ttl: Duration,
    entries: Mutex<HashMap<[u8; 32], (Tenant, Instant)>>,
}

impl AuthCache {
    /// A cache whose entries live `ttl`.
    pub fn new(ttl: Duration) -> Self {
        Self { ttl, entries: Mutex::new(HashMap::new()) }
    }

    fn get(&self, hash: &[u8; 32]) -> Option<Tenant> {
        let entries = self.entries.lock().ok()?;
        entries.get(hash).filter(|(_, at)| at.elapsed() < self.ttl).map(|(t, _)| t.clone())
    }

    fn put(&self, hash: [u8; 32], tenant: Tenant) {
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() > 10_000 {
                entries.retain(|_, (_, at)| at.elapsed() < self.ttl);
            }
            entries.insert(hash, (tenant, Instant::now()));
        }
    }
}

/// The tenant behind the request's `Authorization: Bearer` key.
#[derive(Debug, Clone)]
pub struct AuthTenant(pub Tenant);

impl FromRequestParts<AppState> for AuthTenant {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let header = parts.headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()).ok_or(ApiError::Unauthorized)?;
        let key = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .ok_or(ApiError::Unauthorized)?;
        let hash = reelq_shared::auth::hash_key(key);
        if let Some(t) = state.auth_cache.get(&hash) {
            return Ok(Self(t));
        }
        let pool = &state.pool;
        let tenant = crate::retry::idempotent("tenants.authenticate", move || async move { Ok(tenants::authenticate(pool, &hash).await?) })
            .await?
            .ok_or(ApiError::Unauthorized)?;
        state.auth_cache.put(hash, tenant.clone());
        Ok(Self(tenant))
    }
}

/// The tenant behind a request made with an admin key (`reelq-api key create --admin`); other
/// valid keys get 403. Not cached: admin calls are rare, and a withdrawn flag takes effect at
/// once.
#[derive(Debug, Clone)]
pub struct AdminKey(pub Tenant);

impl FromRequestParts<AppState> for AdminKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let AuthTenant(tenant) = AuthTenant::from_request_parts(parts, state).await?;
        // The header parsed a moment ago, so this repeats the same steps on the same text.
        let key = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer ")))
            .map(str::trim)
            .ok_or(ApiError::Unauthorized)?;
        let (pool, hash) = (&state.pool, reelq_shared::auth::hash_key(key));
        let admin = crate::retry::idempotent("admin.is_admin", move || async move { Ok(reelq_shared::db::admin::is_admin(pool, &hash).await?) }).await?;
        if !admin {
            return Err(ApiError::Forbidden("this route needs an admin API key"));
        }
        Ok(Self(tenant))
    }
}
