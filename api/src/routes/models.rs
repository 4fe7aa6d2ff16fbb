//! The model registry: `GET /v1/models` lists the trained versions of the hashtag classifier,
//! the hashtag ranker and the virality regressor with their held-out figures; admin keys start a training run
//! (`POST /v1/admin/training`), read its job, and roll a model back.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use reelq_shared::db::jobs::{self, JobView};
use reelq_shared::db::models::{self as registry, MODELS, ModelVersion, Rollback, RollbackRefused, SYSTEM_TENANT};
use reelq_shared::db::{self, results};
use reelq_shared::domain::JobStatus;
use reelq_shared::training::{self, TrainingRequest};

use crate::error::{ApiError, Problem};
use crate::extract::{self, Path, Query};
use crate::retry;
use crate::state::{AdminKey, AppState, AuthTenant};

/// Listing filters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ModelsQuery {
    /// `hashtags`, `ranker` or `virality`; all when absent.
    #[param(pattern = "^(hashtags|ranker|virality)?$")]
    pub model: Option<String>,
    /// How many versions (default 50, at most 500), newest first.
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
}

/// The registry's versions.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelList {
    /// The promoted version of each model that has one.
    pub promoted: BTreeMap<String, String>,
    /// Newest first.
    pub versions: Vec<ModelVersion>,
}

fn known_model(name: &str) -> Result<&'static str, ApiError> {
    MODELS.iter().copied().find(|m| *m == name).ok_or(ApiError::NotFound("model"))
}

/// Trained model versions.
///
/// Every version the trainer produced, promoted or not, with its held-out figures (`p_at_5`,
/// `r_at_5`, `map` for hashtags; `p_at_5`, `hit_at_5`, `r_at_10`, `mrr` of held-out posts for
/// the ranker; `spearman` for virality), the promoted version's figures on
/// the same examples, the decision, and the data window it was trained on.
#[utoipa::path(
    get, path = "/v1/models", tag = "models",
    params(ModelsQuery),
    responses(
        (status = 200, body = ModelList),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown model", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Bad limit", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn list_models(State(state): State<AppState>, _tenant: AuthTenant, Query(q): Query<ModelsQuery>) -> Result<Json<ModelList>, ApiError> {
    let limit = q.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::invalid("invalid_limit", "limit must be between 1 and 500"));
    }
    let model = q.model.as_deref().filter(|m| !m.is_empty()).map(known_model).transpose()?;
    let pool = &state.pool;
    retry::idempotent("models.list", move || async move {
        let versions = registry::list(pool, model, limit).await?;
        let mut promoted = BTreeMap::new();
        for m in MODELS.iter().filter(|m| model.is_none_or(|x| x == **m)) {
            if let Some(v) = registry::promoted(pool, m).await? {
                promoted.insert((*m).to_owned(), v.version);
            }
        }
        Ok(Json(ModelList { promoted, versions }))
    })
    .await
}

/// Where to roll back to.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RollbackRequest {
    /// A version that was promoted before; by default the one promoted most recently before
    /// the current one.
    pub version: Option<String>,
}

/// Roll a model back.
///
/// The promoted version becomes `rolled_back` and an earlier promoted version is promoted
/// again. Workers switch within their registry refresh interval, without a restart.
#[utoipa::path(
    post, path = "/v1/admin/models/{model}/rollback", tag = "admin",
    params(("model" = String, Path, description = "`hashtags`, `ranker` or `virality`")),
    request_body(content = RollbackRequest, description = "Optional; `{}` rolls back to the previous version"),
    responses(
        (status = 200, body = Rollback),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown model", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Nothing promoted, or no earlier version to return to", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn rollback(
    State(state): State<AppState>,
    AdminKey(tenant): AdminKey,
    Path(model): Path<String>,
    body: Option<extract::Json<RollbackRequest>>,
) -> Result<Json<Rollback>, ApiError> {
    let model = known_model(&model)?;
    let req = body.map(|extract::Json(r)| r).unwrap_or_default();
    // Not retried: a rollback that committed before its connection died would move the
    // registry back a second time.
    let mut conn = db::timed("models.rollback.acquire", state.pool.acquire()).await?;
    match registry::rollback(&mut conn, model, req.version.as_deref()).await? {
        Ok(done) => {
            tracing::info!(model, from = %done.from, to = %done.to, tenant = %tenant.name, "model rolled back");
            Ok(Json(done))
        }
        Err(RollbackRefused::NothingPromoted) => Err(ApiError::Conflict { code: "nothing_promoted", detail: format!("no {model} version is promoted") }),
        Err(RollbackRefused::NoTarget) => Err(ApiError::Conflict {
            code: "no_rollback_target",
            detail: match req.version {
                Some(v) => format!("{model} version `{v}` was never promoted before, or is the current one"),
                None => format!("no earlier {model} version was promoted"),
            },
        }),
    }
}

/// Train now.
///
/// Enqueues a training job (the same one the scheduler's `train` schedules enqueue). A worker
/// embeds new examples, trains the hashtag classifier, refits the hashtag ranker, trains the
/// virality regressor, and promotes each only if it beats the promoted version by `margin`. Read the job with
/// `GET /v1/admin/training/{id}`.
#[utoipa::path(
    post, path = "/v1/admin/training", tag = "admin",
    request_body(content = TrainingRequest, description = "Optional; every field has a default"),
    responses(
        (status = 202, description = "Queued", body = JobView),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin key", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn start_training(
    State(state): State<AppState>,
    AdminKey(tenant): AdminKey,
    body: Option<extract::Json<TrainingRequest>>,
) -> Result<(StatusCode, Json<JobView>), ApiError> {
    let req = body.map(|extract::Json(r)| r).unwrap_or_default();
    req.validate().map_err(|m| ApiError::invalid("invalid_training_request", m))?;
    let trace = reelq_shared::telemetry::current_context();
    let job = training::enqueue(&state.pool, &req, None, &trace).await?;
    tracing::info!(job_id = %job.id, tenant = %tenant.name, "training requested");
    Ok((StatusCode::ACCEPTED, Json(jobs::view(job, Vec::new()))))
}

/// A training job, with its result once it succeeded.
#[utoipa::path(
    get, path = "/v1/admin/training/{id}", tag = "admin",
    params(("id" = Uuid, Path, description = "Training job id")),
    responses(
        (status = 200, body = JobView),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin key", body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn get_training(State(state): State<AppState>, _admin: AdminKey, Path(id): Path<Uuid>) -> Result<Json<JobView>, ApiError> {
    let pool = &state.pool;
    retry::idempotent("jobs.get", move || async move {
        let job = jobs::get(pool, SYSTEM_TENANT, id).await?.ok_or(ApiError::NotFound("training job"))?;
        let results = if job.status() == JobStatus::Succeeded { results::for_job(pool, id).await? } else { Vec::new() };
        Ok(Json(jobs::view(job, results)))
    })
    .await
}
