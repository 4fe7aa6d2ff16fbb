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
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{detail}")]
    Invalid { code: &'static str, detail: String },
    #[error("{detail}")]
    Conflict { code: &'static str, detail: String },
    #[error("{detail}")]
    TooManyRequests { code: &'static str, detail: String },
    #[error("{0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

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
            Self::NotFound(_) => "not_found",
            Self::PayloadTooLarge { .. } => "payload_too_large",
            Self::UnsupportedMediaType(_) => "unsupported_media_type",
            Self::Invalid { code, .. } | Self::Conflict { code, .. } | Self::TooManyRequests { code, .. } => code,
            Self::Unavailable(_) => "service_unavailable",
            Self::Internal(_) => "internal_error",
        }
    }

    /// HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Conflict { .. } => StatusCode::CONFLICT,
            Self::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
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
        let detail = if status.is_server_error() {
            tracing::error!(error = %self, code = self.code(), "request failed");
            match &self {
                Self::Unavailable(_) => "a dependency is unavailable; try again shortly".to_owned(),
                _ => "an internal error occurred; it has been logged".to_owned(),
            }
        } else {
            self.to_string()
        };
        let body = Problem {
            kind: format!("https://reelq.dev/problems/{}", self.code().replace('_', "-")),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail,
            code: self.code().to_owned(),
        };
        let mut resp = (status, serde_json::to_vec(&body).unwrap_or_default()).into_response();
        resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"reelq\""));
        }
        resp
    }
}

impl From<DbError> for ApiError {
    fn from(e: DbError) -> Self {
        match e {
            DbError::Timeout { .. } => Self::Unavailable(e.to_string()),
            DbError::Query { source: sqlx::Error::PoolTimedOut | sqlx::Error::Io(_), .. } => Self::Unavailable(e.to_string()),
            other => Self::Internal(other.to_string()),
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
