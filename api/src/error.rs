//! The api's one error type. It becomes an RFC 9457 `application/problem+json` body here and
//! nowhere else; 5xx bodies say nothing internal, the log says everything.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use reelq_shared::db::DbError;
use reelq_shared::queue::QueueError;
use reelq_shared::storage::StorageError;

/// Content type of error bodies.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// Everything a handler can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("missing or invalid API key")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("the upload exceeds the limit of {limit} bytes")]
    PayloadTooLarge { limit: u64 },
    /// A request body (not an upload) larger than its route accepts.
    #[error("{0}")]
    BodyTooLarge(String),
    /// A request target longer than the server accepts.
    #[error("the URI is longer than {0} bytes")]
    UriTooLong(usize),
    /// A path parameter that cannot name anything (an id that is not a UUID).
    #[error("no such resource: {0}")]
    MalformedPath(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{detail}")]
    Invalid { code: &'static str, detail: String },
    #[error("{detail}")]
    Conflict { code: &'static str, detail: String },
    #[error("{detail}")]
    TooManyRequests { code: &'static str, detail: String },
    /// Something that existed and was removed on purpose (by retention).
    #[error("{detail}")]
    Gone { code: &'static str, detail: String },
    #[error("{0}")]
    Unavailable(String),
    /// A database call failed; [`ApiError::status`] tells the client's fault (text PostgreSQL
    /// cannot store), a transient fault (503) and a defect (500) apart.
    #[error(transparent)]
    Database(#[from] DbError),
    #[error("internal error: {0}")]
    Internal(String),
}

/// Seconds a client is told to wait (`Retry-After`) after a transient fault: a pool
/// reconnects and a restarted dependency answers again within about that long.
pub const RETRY_AFTER_SECS: u64 = 1;

/// What the client is told when its text cannot be stored.
const INVALID_TEXT_DETAIL: &str = "text must not contain the NUL character (U+0000)";

impl ApiError {
    /// A 422 with a stable code.
    pub fn invalid(code: &'static str, detail: impl Into<String>) -> Self {
        Self::Invalid { code, detail: detail.into() }
    }

    /// Stable, kebab-free snake_case code clients can branch on.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unauthorized => "unauthorized",
            Self::Forbidden(_) => "forbidden",
            Self::NotFound(_) | Self::MalformedPath(_) => "not_found",
            Self::PayloadTooLarge { .. } | Self::BodyTooLarge(_) => "payload_too_large",
            Self::UriTooLong(_) => "uri_too_long",
            Self::UnsupportedMediaType(_) => "unsupported_media_type",
            Self::Invalid { code, .. } | Self::Conflict { code, .. } | Self::TooManyRequests { code, .. } | Self::Gone { code, .. } => code,
            Self::Unavailable(_) => "service_unavailable",
            Self::Database(e) if e.is_invalid_text() => INVALID_TEXT,
            Self::Database(e) if e.is_transient() => "service_unavailable",
            Self::Database(_) | Self::Internal(_) => "internal_error",
        }
    }

    /// HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) | Self::MalformedPath(_) => StatusCode::NOT_FOUND,
            Self::PayloadTooLarge { .. } | Self::BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UriTooLong(_) => StatusCode::URI_TOO_LONG,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Conflict { .. } => StatusCode::CONFLICT,
            Self::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Gone { .. } => StatusCode::GONE,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Database(e) if e.is_invalid_text() => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Database(e) if e.is_transient() => StatusCode::SERVICE_UNAVAILABLE,
            Self::Database(_) | Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Whether the failure was a database fault that a second try on a fresh connection may
    /// not meet again: the connection died under the statement, or PostgreSQL aborted the
    /// transaction to resolve a conflict. A timeout is not one: the deadline is already spent.
    pub fn is_retryable_db_fault(&self) -> bool {
        matches!(self, Self::Database(e) if e.is_connection_fault())
    }

    /// Whether the client is at fault.
    pub fn is_client_error(&self) -> bool {
        self.status().is_client_error()
    }
}

/// RFC 9457 problem details, with reelq's stable `code`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// A URI naming the problem type.
    #[serde(rename = "type")]
    pub kind: String,
    /// Short summary of the problem type.
    pub title: String,
    /// HTTP status code.
    pub status: u16,
    /// Explanation of this occurrence.
    pub detail: String,
    /// Stable machine-readable code.
    pub code: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let detail = if status == StatusCode::SERVICE_UNAVAILABLE {
            tracing::warn!(error = %self, code = self.code(), "request failed on a dependency");
            "a dependency is unavailable; try again shortly".to_owned()
        } else if status.is_server_error() {
            tracing::error!(error = %self, code = self.code(), "request failed");
            "an internal error occurred; it has been logged".to_owned()
        } else if let Self::Database(e) = &self {
            // The driver's message names queries and columns: the client needs only its fault.
            tracing::info!(error = %e, "text refused by the database");
            INVALID_TEXT_DETAIL.to_owned()
        } else {
            self.to_string()
        };
        let body = Problem::new(status, self.code(), detail);
        problem_response(body)
    }
}

/// Code of text that PostgreSQL cannot store (a NUL character), wherever it was sent.
pub const INVALID_TEXT: &str = "invalid_text";

/// The 422 for text PostgreSQL cannot store, naming where it was found.
pub fn invalid_text(place: &str) -> ApiError {
    ApiError::invalid(INVALID_TEXT, format!("{place}: {INVALID_TEXT_DETAIL}"))
}

/// Whether a JSON value holds a string or an object key, at any depth, that PostgreSQL cannot
/// store: `text` and `jsonb` both refuse U+0000, and a request that carries one would otherwise
/// fail inside its statement.
pub fn json_has_unstorable_text(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::String(s) => s.contains('\0'),
        serde_json::Value::Array(items) => items.iter().any(json_has_unstorable_text),
        serde_json::Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || json_has_unstorable_text(v)),
        serde_json::Value::Null | serde_json::Value::Bool(_) | serde_json::Value::Number(_) => false,
    }
}

/// Builds the response of a problem: its JSON body, its content type, and the headers its
/// status calls for (a challenge with 401, how long to wait with 429 and 503).
pub fn problem_response(body: Problem) -> Response {
    let status = StatusCode::from_u16(body.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = (status, serde_json::to_vec(&body).unwrap_or_default()).into_response();
    let headers = resp.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    if status == StatusCode::UNAUTHORIZED {
        headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"reelq\""));
    }
    if matches!(status, StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS) {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
    }
    resp
}

impl Problem {
    /// A problem of `status` with a stable `code`.
    pub fn new(status: StatusCode, code: &str, detail: String) -> Self {
        Self {
            kind: format!("https://reelq.dev/problems/{}", code.replace('_', "-")),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail,
            code: code.to_owned(),
        }
    }
}

impl From<StorageError> for ApiError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::TooLarge { limit } => Self::PayloadTooLarge { limit },
            StorageError::NotAVideo => Self::UnsupportedMediaType(e.to_string()),
            StorageError::Empty => Self::invalid("empty_upload", "the upload is empty"),
            StorageError::Body(_) => Self::invalid("upload_interrupted", e.to_string()),
            StorageError::NotFound(_) => Self::invalid("upload_missing", "no bytes were uploaded for this video"),
            StorageError::Service { .. } | StorageError::Io(_) => Self::Unavailable(e.to_string()),
        }
    }
}

impl From<QueueError> for ApiError {
    fn from(e: QueueError) -> Self {
        Self::Unavailable(e.to_string())
    }
}
