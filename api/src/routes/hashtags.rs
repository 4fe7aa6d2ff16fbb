//! `/v1/hashtags/trending`: the hashtags whose share of recent pulled videos grows fastest,
//! as the scheduler last computed them.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use reelq_shared::db::scraped::{self, TrendingTag};

use crate::error::{ApiError, Problem};
use crate::extract::Query;
use crate::retry;
use crate::state::{AppState, AuthTenant};

/// Filters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TrendingQuery {
    /// Two-letter region code; all regions together when absent.
    #[param(pattern = "^[A-Za-z]{2}$")]
    pub region: Option<String>,
    /// How many (default 20, at most 200).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
}

/// Trending hashtags of a region.
#[derive(Debug, Serialize, ToSchema)]
pub struct TrendingPage {
    /// The region asked for, or `""` for all regions.
    pub region: String,
    /// Best first.
    pub hashtags: Vec<TrendingTag>,
}

/// Validates a region code: two ASCII letters, returned upper case.
pub fn parse_region(region: Option<&str>) -> Result<Option<String>, ApiError> {
    match region.map(str::trim).filter(|r| !r.is_empty()) {
        None => Ok(None),
        Some(r) if r.len() == 2 && r.chars().all(|c| c.is_ascii_alphabetic()) => Ok(Some(r.to_ascii_uppercase())),
        Some(_) => Err(ApiError::invalid("invalid_region", "region must be a two-letter code such as US")),
    }
}

/// Trending hashtags.
#[utoipa::path(
    get, path = "/v1/hashtags/trending", tag = "trends",
    params(TrendingQuery),
    responses(
        (status = 200, body = TrendingPage),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Bad region or limit", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn trending(State(state): State<AppState>, _tenant: AuthTenant, Query(q): Query<TrendingQuery>) -> Result<Json<TrendingPage>, ApiError> {
    let region = parse_region(q.region.as_deref())?;
    let limit = q.limit.unwrap_or(20);
    if !(1..=200).contains(&limit) {
        return Err(ApiError::invalid("invalid_limit", "limit must be between 1 and 200"));
    }
    let (pool, r) = (&state.pool, region.as_deref());
    let hashtags = retry::idempotent("scraped.trending", move || async move { Ok(scraped::trending(pool, r, limit).await?) }).await?;
    Ok(Json(TrendingPage { region: region.unwrap_or_default(), hashtags }))
}
