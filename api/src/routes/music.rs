//! `/v1/music/recommendations`: sounds that pulled videos with the given hashtags use, ranked
//! by the engagement those videos earned.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use reelq_shared::db::scraped;
use reelq_shared::engagement::music::{self, MusicScore};

use crate::error::{ApiError, Problem};
use crate::extract::Query;
use crate::retry;
use crate::routes::hashtags::parse_region;
use crate::state::{AppState, AuthTenant};

/// Most hashtags one request may name.
const MAX_HASHTAGS: usize = 20;
/// Most pulled videos one ranking reads (the newest).
const MAX_VIDEOS: i64 = 20_000;

/// Filters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RecommendationQuery {
    /// Comma-separated hashtags (with or without '#'), at most 20 of at most 100 characters;
    /// videos with any of them count.
    #[param(required = true, pattern = "^#?[\\w]{1,100}(,#?[\\w]{1,100}){0,19}$")]
    pub hashtags: Option<String>,
    /// Two-letter region code; all regions when absent.
    #[param(pattern = "^[A-Za-z]{2}$")]
    pub region: Option<String>,
    /// How many (default 10, at most 100).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<usize>,
    /// Halves a video's weight every this many days of age (more than 0, at most 3650); no
    /// decay when absent.
    #[param(exclusive_minimum = 0, maximum = 3650)]
    pub half_life_days: Option<f64>,
}

/// Recommended sounds.
#[derive(Debug, Serialize, ToSchema)]
pub struct Recommendations {
    /// The hashtags used, normalised.
    pub hashtags: Vec<String>,
    /// Best first.
    pub music: Vec<MusicScore>,
}

/// Music that fits hashtags.
///
/// Score: `Σviews + 2·Σlikes + 3·Σcomments + 4·Σshares` over the latest snapshot of each pulled
/// video that carries any of the hashtags, optionally decayed by the video's age.
#[utoipa::path(
    get, path = "/v1/music/recommendations", tag = "trends",
    params(RecommendationQuery),
    responses(
        (status = 200, body = Recommendations),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Missing hashtags, bad region, limit or half-life", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn recommendations(
    State(state): State<AppState>,
    _tenant: AuthTenant,
    Query(q): Query<RecommendationQuery>,
) -> Result<Json<Recommendations>, ApiError> {
    let mut hashtags: Vec<String> = q
        .hashtags
        .as_deref()
        .unwrap_or_default()
        .split(',')
        .map(|t| t.trim().trim_start_matches('#').trim().to_lowercase())
        .filter(|t| !t.is_empty())
        .collect();
    hashtags.sort();
    hashtags.dedup();
    if hashtags.is_empty() {
        return Err(ApiError::invalid("missing_hashtags", "name at least one hashtag, as hashtags=a,b"));
    }
    if hashtags.len() > MAX_HASHTAGS || hashtags.iter().any(|t| t.chars().count() > 100) {
        return Err(ApiError::invalid("invalid_hashtags", format!("at most {MAX_HASHTAGS} hashtags of at most 100 characters")));
    }
    let region = parse_region(q.region.as_deref())?;
    let limit = q.limit.unwrap_or(10);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::invalid("invalid_limit", "limit must be between 1 and 100"));
    }
    let half_life = match q.half_life_days {
        None => None,
        Some(d) if d.is_finite() && d > 0.0 && d <= 3_650.0 => Some(chrono::Duration::seconds((d * 86_400.0) as i64)),
        Some(_) => return Err(ApiError::invalid("invalid_half_life", "half_life_days must be a positive number of days up to 3650")),
    };
    let (pool, tags, r) = (&state.pool, &hashtags, region.as_deref());
    let uses = retry::idempotent("scraped.music_uses", move || async move { Ok(scraped::music_uses(pool, tags, r, MAX_VIDEOS).await?) }).await?;
    let music = music::rank(&uses, half_life, chrono::Utc::now(), limit);
    Ok(Json(Recommendations { hashtags, music }))
}
