//! The Research API's wire format, shared by the client and the stub so the two cannot
//! disagree about it.

use serde::{Deserialize, Deserializer, Serialize};

/// Fields asked for in every video query.
pub const VIDEO_FIELDS: &str = "id,video_description,create_time,region_code,share_count,view_count,like_count,comment_count,music_id,hashtag_names";

/// Date format of `start_date` / `end_date`.
pub const DATE_FORMAT: &str = "%Y%m%d";

/// Longest span between `start_date` and `end_date` the API accepts, in days.
pub const MAX_WINDOW_DAYS: i64 = 30;

/// Error codes the API answers with in `error.code`.
pub mod codes {
    /// Success.
    pub const OK: &str = "ok";
    /// The access token expired or was revoked.
    pub const ACCESS_TOKEN_INVALID: &str = "access_token_invalid";
    /// Too many requests; back off (HTTP 429).
    pub const RATE_LIMIT_EXCEEDED: &str = "rate_limit_exceeded";
    /// The daily quota is spent (HTTP 429).
    pub const DAILY_QUOTA_LIMIT_EXCEEDED: &str = "daily_quota_limit_exceeded";
    /// The request is malformed. Also the code of an expired or unknown `search_id`, told apart
    /// by its message naming the search id.
    pub const INVALID_PARAMS: &str = "invalid_params";
    /// The server failed.
    pub const INTERNAL_ERROR: &str = "internal_error";
}

/// The body of `POST /v2/oauth/token/` on success.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenResponse {
    /// The bearer token.
    pub access_token: String,
    /// Seconds until it expires.
    pub expires_in: u64,
    /// `Bearer`.
    pub token_type: String,
}

/// The body of `POST /v2/oauth/token/` on failure.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenError {
    /// OAuth error (`invalid_client`).
    pub error: String,
    /// Explanation.
    #[serde(default)]
    pub error_description: String,
}

/// One condition of a query.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Condition {
    /// `IN`, `EQ`, `GT`, …
    pub operation: String,
    /// `hashtag_name`, `region_code`, …
    pub field_name: String,
    /// Values compared with.
    pub field_values: Vec<String>,
}

/// The boolean query.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Query {
    /// All of these.
    #[serde(default)]
    pub and: Vec<Condition>,
    /// Any of these.
    #[serde(default)]
    pub or: Vec<Condition>,
    /// None of these.
    #[serde(default)]
    pub not: Vec<Condition>,
}

/// The body of `POST /v2/research/video/query/`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueryRequest {
    /// What to match.
    pub query: Query,
    /// First day, `YYYYMMDD`, UTC.
    pub start_date: String,
    /// Last day, `YYYYMMDD`, at most 30 days after the first.
    pub end_date: String,
    /// Videos per page, at most 100.
    pub max_count: u32,
    /// Position in the search, from the previous page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<u64>,
    /// The search being paged through, from the first page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search_id: Option<String>,
}

/// The error object every answer carries (`code = "ok"` on success).
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct ErrorBody {
    /// Stable code, see [`codes`].
    pub code: String,
    /// Explanation.
    #[serde(default)]
    pub message: String,
    /// Server-side id of the request, for support.
    #[serde(default)]
    pub log_id: String,
}

/// Any answer of the query endpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QueryResponse {
    /// The page, on success.
    #[serde(default)]
    pub data: Option<QueryData>,
    /// The outcome.
    #[serde(default)]
    pub error: ErrorBody,
}

/// A page of videos.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QueryData {
    /// The videos.
    #[serde(default)]
    pub videos: Vec<ApiVideo>,
    /// Where the next page starts.
    #[serde(default)]
    pub cursor: u64,
    /// Whether there is a next page.
    #[serde(default)]
    pub has_more: bool,
    /// The search to page through.
    #[serde(default)]
    pub search_id: String,
}

/// One video as the API describes it; fields not asked for are absent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiVideo {
    /// Video id (a 64-bit number; accepted as a string too).
    #[serde(deserialize_with = "id_string")]
    pub id: String,
    /// Caption.
    #[serde(default)]
    pub video_description: Option<String>,
    /// Unix seconds.
    pub create_time: i64,
    /// Region code.
    #[serde(default)]
    pub region_code: Option<String>,
    /// Shares.
    #[serde(default)]
    pub share_count: Option<i64>,
    /// Views.
    #[serde(default)]
    pub view_count: Option<i64>,
    /// Likes.
    #[serde(default)]
    pub like_count: Option<i64>,
    /// Comments.
    #[serde(default)]
    pub comment_count: Option<i64>,
    /// Music id (a 64-bit number; accepted as a string too).
    #[serde(default, deserialize_with = "opt_id_string")]
    pub music_id: Option<String>,
    /// Hashtags, without '#'.
    #[serde(default)]
    pub hashtag_names: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum NumOrString {
    Num(u64),
    Str(String),
}

fn id_string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(match NumOrString::deserialize(d)? {
        NumOrString::Num(n) => n.to_string(),
        NumOrString::Str(s) => s,
    })
}

fn opt_id_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(Option::<NumOrString>::deserialize(d)?.map(|v| match v {
        NumOrString::Num(n) => n.to_string(),
        NumOrString::Str(s) => s,
    }))
}
