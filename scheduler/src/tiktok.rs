//! The TikTok Research API: an OAuth client-credentials token cached until it expires, the
//! video query paged by `cursor` and `search_id`, and the pull that walks a date range in
//! windows of at most 30 days within the daily quota.
//!
//! Errors are decided by `error.code`: `access_token_invalid` refreshes the token once and
//! retries, `rate_limit_exceeded` backs off, `daily_quota_limit_exceeded` stops the run cleanly
//! (the next run resumes from the saved cursor), an expired `search_id` restarts its window
//! (storing is idempotent, so re-reading pages costs quota but nothing else), and
//! `invalid_params` fails the run.

use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDate, Utc};
use futures::future::BoxFuture;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use reelq_shared::db::schedules;
use reelq_shared::db::scraped::{Music, PulledVideo};
use reelq_shared::engagement::Counts;

use crate::settings::{ScheduleSettings, TikTokSettings};
use crate::source::{PullOutcome, RunContext, Source, SourceError};

pub mod protocol;
pub mod stub;

use protocol::{ApiVideo, Condition, Query, QueryData, QueryRequest, QueryResponse, TokenResponse, codes};

/// Name of the API in the quota ledger.
pub const QUOTA_API: &str = "tiktok_research";

/// A failed call to the API.
#[derive(Debug, thiserror::Error)]
pub enum TikTokError {
    /// The token was refused (`access_token_invalid`).
    #[error("the access token was refused: {0}")]
    TokenInvalid(String),
    /// Too many requests (`rate_limit_exceeded`).
    #[error("rate limited")]
    RateLimited {
        /// What `Retry-After` asked for, if anything.
        retry_after: Option<Duration>,
    },
    /// The day's quota is spent (`daily_quota_limit_exceeded`).
    #[error("the daily quota is spent: {0}")]
    QuotaExhausted(String),
    /// The search id expired or is unknown.
    #[error("the search id is no longer valid: {0}")]
    SearchExpired(String),
    /// The request was refused as malformed (`invalid_params`).
    #[error("invalid parameters: {0}")]
    InvalidParams(String),
    /// The token endpoint refused the client credentials.
    #[error("the client credentials were refused: {0}")]
    Credentials(String),
    /// A transport failure, a timeout, a 5xx or an unreadable answer.
    #[error("the API is unavailable: {0}")]
    Unavailable(String),
}

impl TikTokError {
    fn from_body(status: reqwest::StatusCode, body: &QueryResponse, retry_after: Option<Duration>, had_search_id: bool) -> Self {
        let message = format!("{} (log id {})", body.error.message, body.error.log_id);
        match body.error.code.as_str() {
            codes::ACCESS_TOKEN_INVALID => Self::TokenInvalid(message),
            codes::RATE_LIMIT_EXCEEDED => Self::RateLimited { retry_after },
            codes::DAILY_QUOTA_LIMIT_EXCEEDED => Self::QuotaExhausted(message),
            codes::INVALID_PARAMS if had_search_id && body.error.message.to_ascii_lowercase().contains("search_id") => Self::SearchExpired(message),
            codes::INVALID_PARAMS => Self::InvalidParams(message),
            _ if status == reqwest::StatusCode::TOO_MANY_REQUESTS => Self::RateLimited { retry_after },
            _ if status == reqwest::StatusCode::UNAUTHORIZED => Self::TokenInvalid(message),
            other => Self::Unavailable(format!("HTTP {status}, code `{other}`: {message}")),
        }
    }
}

/// A client of the Research API. Cheap to share; the token is cached inside.
pub struct TikTokClient {
    http: reqwest::Client,
    base: String,
    client_key: SecretString,
    client_secret: SecretString,
    token: Mutex<Option<(SecretString, Instant)>>,
}

impl std::fmt::Debug for TikTokClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TikTokClient").field("base", &self.base).finish_non_exhaustive()
    }
}

impl TikTokClient {
    /// A client for `settings`; no call is made until first use.
    pub fn new(settings: &TikTokSettings) -> Result<Self, TikTokError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(settings.request_timeout_ms))
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| TikTokError::Unavailable(e.to_string()))?;
        Ok(Self {
            http,
            base: settings.base_url.trim_end_matches('/').to_owned(),
            client_key: settings.client_key.clone(),
            client_secret: settings.client_secret.clone(),
            token: Mutex::new(None),
        })
    }

    /// The cached token, or a new one when there is none or it is about to expire.
    pub async fn token(&self) -> Result<SecretString, TikTokError> {
        let mut cached = self.token.lock().await;
        if let Some((token, expires)) = cached.as_ref()
            && Instant::now() < *expires
        {
            return Ok(token.clone());
        }
        let body = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("client_key", self.client_key.expose_secret())
            .append_pair("client_secret", self.client_secret.expose_secret())
            .append_pair("grant_type", "client_credentials")
            .finish();
        let resp = self
            .http
            .post(format!("{}/v2/oauth/token/", self.base))
            .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .map_err(|e| TikTokError::Unavailable(format!("token request: {e}")))?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| TikTokError::Unavailable(format!("token response: {e}")))?;
        if status.is_server_error() {
            return Err(TikTokError::Unavailable(format!("token endpoint answered HTTP {status}")));
        }
        if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            return Err(TikTokError::RateLimited { retry_after: None });
        }
        let token: TokenResponse = match serde_json::from_slice(&bytes) {
            Ok(t) if status.is_success() => t,
            _ => {
                let e: protocol::TokenError =
                    serde_json::from_slice(&bytes).unwrap_or(protocol::TokenError { error: format!("HTTP {status}"), error_description: String::new() });
                return Err(TikTokError::Credentials(format!("{}: {}", e.error, e.error_description)));
            }
        };
        // Renew a little early, so that a token never expires between the check and its use.
        let margin = (token.expires_in / 10).min(300);
        let expires = Instant::now() + Duration::from_secs(token.expires_in.saturating_sub(margin));
        let secret = SecretString::from(token.access_token);
        *cached = Some((secret.clone(), expires));
        tracing::info!(expires_in = token.expires_in, "obtained a TikTok access token");
        Ok(secret)
    }

    /// Forgets the cached token, so that the next call obtains a new one.
    pub async fn invalidate_token(&self) {
        *self.token.lock().await = None;
    }

    /// One page of a video query.
    pub async fn query_videos(&self, request: &QueryRequest) -> Result<QueryData, TikTokError> {
        let token = self.token().await?;
        let resp = self
            .http
            .post(format!("{}/v2/research/video/query/", self.base))
            .query(&[("fields", protocol::VIDEO_FIELDS)])
            .bearer_auth(token.expose_secret())
            .json(request)
            .send()
            .await
            .map_err(|e| TikTokError::Unavailable(format!("query request: {e}")))?;
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let bytes = resp.bytes().await.map_err(|e| TikTokError::Unavailable(format!("query response: {e}")))?;
        let body: QueryResponse = match serde_json::from_slice(&bytes) {
            Ok(b) => b,
            Err(_) if status == reqwest::StatusCode::TOO_MANY_REQUESTS => return Err(TikTokError::RateLimited { retry_after }),
            Err(e) => return Err(TikTokError::Unavailable(format!("HTTP {status}, unreadable body: {e}"))),
        };
        if status.is_success() && body.error.code == codes::OK {
            return body.data.ok_or_else(|| TikTokError::Unavailable("an answer without data".into()));
        }
        Err(TikTokError::from_body(status, &body, retry_after, request.search_id.is_some()))
    }
}

/// A window of days, both ends included.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    /// First day.
    pub start: NaiveDate,
    /// Last day.
    pub end: NaiveDate,
}

/// Splits `start..=end` into consecutive windows the API accepts (at most 30 days apart).
pub fn windows(start: NaiveDate, end: NaiveDate) -> Vec<Window> {
    let mut out = Vec::new();
    let mut s = start;
    while s <= end {
        let e = (s + chrono::Duration::days(protocol::MAX_WINDOW_DAYS - 1)).min(end);
        out.push(Window { start: s, end: e });
        s = e + chrono::Duration::days(1);
    }
    out
}

/// Where a stopped pull resumes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The window being paged through.
    pub window: Window,
    /// The last day of the whole pull.
    pub until: NaiveDate,
    /// Next page's cursor.
    pub cursor: Option<u64>,
    /// The search being paged through.
    pub search_id: Option<String>,
}

/// The Research API as a [`Source`] for one schedule.
pub struct TikTokSource {
    client: std::sync::Arc<TikTokClient>,
    limits: TikTokSettings,
    hashtags: Vec<String>,
    regions: Vec<String>,
    days_back: u32,
}

impl TikTokSource {
    /// A source pulling what `schedule` asks for.
    pub fn new(client: std::sync::Arc<TikTokClient>, limits: &TikTokSettings, schedule: &ScheduleSettings) -> Self {
        Self {
            client,
            limits: limits.clone(),
            hashtags: schedule.hashtags.iter().map(|h| normalise_tag(h)).filter(|h| !h.is_empty()).collect(),
            regions: schedule.regions.iter().map(|r| r.trim().to_ascii_uppercase()).filter(|r| !r.is_empty()).collect(),
            days_back: schedule.days_back,
        }
    }

    fn query(&self) -> Query {
        let mut and = Vec::new();
        if !self.hashtags.is_empty() {
            and.push(Condition { operation: "IN".into(), field_name: "hashtag_name".into(), field_values: self.hashtags.clone() });
        }
        if !self.regions.is_empty() {
            and.push(Condition { operation: "IN".into(), field_name: "region_code".into(), field_values: self.regions.clone() });
        }
        Query { and, or: Vec::new(), not: Vec::new() }
    }

    async fn run(&self, ctx: &mut RunContext) -> Result<PullOutcome, SourceError> {
        let today = Utc::now().date_naive();
        let resume: Option<Checkpoint> = ctx.checkpoint().await?;
        // The plan: the interrupted window first (from its cursor), then the rest up to the
        // resumed pull's last day; or a fresh range ending today.
        let mut plan: Vec<(Window, Option<u64>, Option<String>)> = Vec::new();
        let until = match &resume {
            Some(c) => {
                plan.push((c.window, c.cursor, c.search_id.clone()));
                c.until
            }
            None => today,
        };
        let from = match &resume {
            Some(c) => c.window.end + chrono::Duration::days(1),
            None => today - chrono::Duration::days(i64::from(self.days_back) - 1),
        };
        plan.extend(windows(from, until).into_iter().map(|w| (w, None, None)));
        if let Some(c) = &resume {
            tracing::info!(schedule = %ctx.schedule, window_start = %c.window.start, cursor = ?c.cursor, "resuming an interrupted pull");
        }

        for (window, cursor, search_id) in plan {
            if let Some(stopped) = self.pull_window(ctx, window, until, cursor, search_id).await? {
                return Ok(stopped);
            }
        }
        ctx.save_checkpoint::<Checkpoint>(None).await?;
        Ok(PullOutcome::Complete)
    }

    /// Pages through one window. Returns `Some` when the pull must stop here (resume point
    /// saved), `None` when the window is done.
    async fn pull_window(
        &self,
        ctx: &mut RunContext,
        window: Window,
        until: NaiveDate,
        mut cursor: Option<u64>,
        mut search_id: Option<String>,
    ) -> Result<Option<PullOutcome>, SourceError> {
        let mut refreshed = false;
        let mut rate_limited = 0u32;
        let mut restarts = 0u32;
        loop {
            let here = Checkpoint { window, until, cursor, search_id: search_id.clone() };
            if ctx.stop.is_cancelled() {
                ctx.save_checkpoint(Some(&here)).await?;
                return Ok(Some(PullOutcome::Stopped { code: "shutdown", reason: "the scheduler is shutting down".into() }));
            }
            let day = Utc::now().date_naive();
            let max_requests = i32::try_from(self.limits.daily_request_limit).unwrap_or(i32::MAX);
            let max_records = i32::try_from(self.limits.daily_record_limit).unwrap_or(i32::MAX);
            if !schedules::reserve_request(&ctx.pool, QUOTA_API, day, max_requests, max_records).await? {
                ctx.save_checkpoint(Some(&here)).await?;
                return Ok(Some(quota_stop(day)));
            }
            ctx.requests += 1;
            let request = QueryRequest {
                query: self.query(),
                start_date: window.start.format(protocol::DATE_FORMAT).to_string(),
                end_date: window.end.format(protocol::DATE_FORMAT).to_string(),
                max_count: self.limits.max_count,
                cursor,
                search_id: search_id.clone(),
            };
            match self.client.query_videos(&request).await {
                Ok(page) => {
                    refreshed = false;
                    rate_limited = 0;
                    let n = i32::try_from(page.videos.len()).unwrap_or(i32::MAX);
                    schedules::add_records(&ctx.pool, QUOTA_API, day, n).await?;
                    let batch: Vec<PulledVideo> = page.videos.iter().filter_map(to_pulled).collect();
                    ctx.store("tiktok", &batch).await?;
                    if !page.has_more {
                        return Ok(None);
                    }
                    cursor = Some(page.cursor);
                    search_id = Some(page.search_id).filter(|s| !s.is_empty());
                }
                Err(TikTokError::TokenInvalid(m)) if !refreshed => {
                    tracing::info!(reason = %m, "TikTok refused the access token; obtaining a new one");
                    self.client.invalidate_token().await;
                    refreshed = true;
                }
                Err(TikTokError::RateLimited { retry_after }) if rate_limited < self.limits.max_rate_limit_retries => {
                    let backoff = Duration::from_millis(self.limits.backoff_base_ms.saturating_mul(1 << rate_limited.min(16)));
                    let wait = retry_after.unwrap_or(backoff).max(backoff);
                    rate_limited += 1;
                    tracing::warn!(wait_ms = wait.as_millis() as u64, attempt = rate_limited, "TikTok rate limit; backing off");
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        () = ctx.stop.cancelled() => {}
                    }
                }
                Err(TikTokError::SearchExpired(m)) if restarts < self.limits.max_search_restarts => {
                    restarts += 1;
                    tracing::warn!(reason = %m, window_start = %window.start, "search id expired; restarting the window");
                    cursor = None;
                    search_id = None;
                }
                Err(TikTokError::QuotaExhausted(m)) => {
                    tracing::warn!(reason = %m, "TikTok says the daily quota is spent");
                    schedules::mark_exhausted(&ctx.pool, QUOTA_API, day).await?;
                    ctx.save_checkpoint(Some(&here)).await?;
                    return Ok(Some(quota_stop(day)));
                }
                Err(e @ TikTokError::InvalidParams(_)) => {
                    ctx.save_checkpoint::<Checkpoint>(None).await?;
                    return Err(SourceError::failed("tiktok_invalid_params", e.to_string()));
                }
                Err(e @ TikTokError::RateLimited { .. }) => return Err(SourceError::failed("tiktok_rate_limited", e.to_string())),
                Err(e @ TikTokError::SearchExpired(_)) => return Err(SourceError::failed("tiktok_search_expired", e.to_string())),
                Err(e @ (TikTokError::TokenInvalid(_) | TikTokError::Credentials(_))) => {
                    return Err(SourceError::failed("tiktok_auth_failed", e.to_string()));
                }
                Err(e @ TikTokError::Unavailable(_)) => {
                    // Keep the place: the next run resumes rather than starting over.
                    ctx.save_checkpoint(Some(&here)).await?;
                    return Err(SourceError::failed("tiktok_unavailable", e.to_string()));
                }
            }
        }
    }
}

fn quota_stop(day: NaiveDate) -> PullOutcome {
    PullOutcome::Stopped { code: "quota_exhausted", reason: format!("the TikTok quota of {day} is spent; the next run resumes") }
}

impl Source for TikTokSource {
    fn name(&self) -> &'static str {
        "tiktok"
    }

    fn pull<'a>(&'a self, ctx: &'a mut RunContext) -> BoxFuture<'a, Result<PullOutcome, SourceError>> {
        Box::pin(self.run(ctx))
    }
}

/// Lower case, without a leading '#' or surrounding spaces.
pub fn normalise_tag(tag: &str) -> String {
    tag.trim().trim_start_matches('#').trim().to_lowercase()
}

/// A video of the API as stored; `None` for one without a usable time.
fn to_pulled(v: &ApiVideo) -> Option<PulledVideo> {
    let create_time = DateTime::<Utc>::from_timestamp(v.create_time, 0)?;
    let mut hashtags: Vec<String> = v.hashtag_names.iter().flatten().map(|h| normalise_tag(h)).filter(|h| !h.is_empty()).collect();
    hashtags.sort();
    hashtags.dedup();
    Some(PulledVideo {
        id: v.id.clone(),
        description: v.video_description.clone().unwrap_or_default(),
        region: v.region_code.as_deref().map(|r| r.trim().to_ascii_uppercase()).filter(|r| !r.is_empty()),
        create_time,
        hashtags,
        music: v.music_id.as_ref().filter(|m| !m.is_empty()).map(|id| Music { id: id.clone(), name: String::new(), author: String::new() }),
        counts: Counts {
            views: v.view_count.unwrap_or(0).max(0),
            likes: v.like_count.unwrap_or(0).max(0),
            comments: v.comment_count.unwrap_or(0).max(0),
            shares: v.share_count.unwrap_or(0).max(0),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("date")
    }

    #[test]
    fn windows_cover_the_range_in_spans_the_api_accepts() {
        let w = windows(d("2026-01-01"), d("2026-03-05"));
        assert_eq!(w.len(), 3);
        assert_eq!(w[0], Window { start: d("2026-01-01"), end: d("2026-01-30") });
        assert_eq!(w[1], Window { start: d("2026-01-31"), end: d("2026-03-01") });
        assert_eq!(w[2], Window { start: d("2026-03-02"), end: d("2026-03-05") });
        for x in &w {
            assert!((x.end - x.start).num_days() < protocol::MAX_WINDOW_DAYS);
        }
        assert_eq!(windows(d("2026-01-02"), d("2026-01-01")), vec![]);
    }

    #[test]
    fn tags_are_normalised() {
        assert_eq!(normalise_tag(" #FYP "), "fyp");
        assert_eq!(normalise_tag("#"), "");
    }
}
