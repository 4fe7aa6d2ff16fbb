//! The reelq HTTP API, as the CLI uses it.

use std::fmt;
use std::time::Duration;

use anyhow::{Context, Result};
use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{Body, RequestBuilder, StatusCode, Url};
use serde_json::Value;
use uuid::Uuid;

use crate::model::{BatchItem, Job, JobPage, JobRequest, Problem, Video};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Applies to every call but the upload, whose length depends on the file and the link.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A non-success answer from the API.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub title: String,
    pub code: Option<String>,
    pub detail: Option<String>,
}

impl ApiError {
    /// Builds the error from a response body, which should be `application/problem+json` but
    /// may be anything when a proxy answered instead of the API.
    pub fn from_body(status: StatusCode, body: &str) -> Self {
        let problem = serde_json::from_str::<Problem>(body).ok().filter(|p| p.title.is_some() || p.code.is_some());
        let fallback_title = status.canonical_reason().unwrap_or("HTTP error").to_owned();
        match problem {
            Some(p) => Self { status, title: p.title.unwrap_or(fallback_title), code: p.code, detail: p.detail },
            None => {
                let text: String = body.trim().chars().take(200).collect();
                Self { status, title: fallback_title, code: None, detail: (!text.is_empty()).then_some(text) }
            }
        }
    }

    /// Whether trying again later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self.status, StatusCode::TOO_MANY_REQUESTS | StatusCode::BAD_GATEWAY | StatusCode::SERVICE_UNAVAILABLE | StatusCode::GATEWAY_TIMEOUT)
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.title)?;
        match &self.code {
            Some(code) => write!(f, " ({code})")?,
            None => write!(f, " (HTTP {})", self.status.as_u16())?,
        }
        if let Some(detail) = &self.detail {
            write!(f, ": {detail}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ApiError {}

/// Whether an error from [`ApiClient`] may go away by itself: the API could not be reached,
/// did not answer in time, or said it is overloaded or restarting.
pub fn is_transient(err: &anyhow::Error) -> bool {
    if let Some(api) = err.downcast_ref::<ApiError>() {
        return api.is_transient();
    }
    err.chain().filter_map(|e| e.downcast_ref::<reqwest::Error>()).any(|e| e.is_connect() || e.is_timeout())
}

/// Filters of a job listing.
#[derive(Debug, Clone, Default)]
pub struct ListQuery<'a> {
    pub status: Option<&'a str>,
    pub limit: Option<u32>,
    pub cursor: Option<&'a str>,
}

pub struct ApiClient {
    http: reqwest::Client,
    /// Without a trailing slash, so that paths can be appended.
    base: String,
}

impl ApiClient {
    pub fn new(api_url: &str, api_key: &str) -> Result<Self> {
        let url = Url::parse(api_url).with_context(|| format!("--api-url `{api_url}` is not a valid URL"))?;
        anyhow::ensure!(matches!(url.scheme(), "http" | "https"), "--api-url must be an http or https URL, not `{api_url}`");
        let mut auth =
            HeaderValue::from_str(&format!("Bearer {api_key}")).context("the API key contains characters that cannot be sent in an HTTP header")?;
        // Keeps the key out of debug output should a request ever be logged.
        auth.set_sensitive(true);
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, auth);
        let http = reqwest::Client::builder()
            .user_agent(concat!("reelq-cli/", env!("CARGO_PKG_VERSION")))
            .default_headers(headers)
            .connect_timeout(CONNECT_TIMEOUT)
            .build()
            .context("could not set up the HTTP client")?;
        Ok(Self { http, base: api_url.trim_end_matches('/').to_owned() })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `POST /v1/videos` with the file as the raw body.
    pub async fn upload_video(&self, body: Body, len: u64, content_type: &str) -> Result<Video> {
        let req = self.http.post(self.url("/v1/videos")).header(header::CONTENT_TYPE, content_type).header(header::CONTENT_LENGTH, len).body(body);
        let raw = self.send(req).await?;
        serde_json::from_value(raw).context("the API's answer to the upload is not a video")
    }

    /// `POST /v1/jobs`.
    pub async fn submit_job(&self, request: &JobRequest, idempotency_key: Option<&str>) -> Result<Job> {
        let mut req = self.http.post(self.url("/v1/jobs")).timeout(REQUEST_TIMEOUT).json(request);
        if let Some(key) = idempotency_key {
            req = req.header("Idempotency-Key", key);
        }
        parse_job(self.send(req).await?)
    }

    /// `POST /v1/jobs:batch`: the per-item answer.
    pub async fn submit_batch(&self, jobs: &[BatchItem]) -> Result<Value> {
        self.send(self.http.post(self.url("/v1/jobs:batch")).timeout(REQUEST_TIMEOUT).json(&serde_json::json!({ "jobs": jobs }))).await
    }

    /// `GET /v1/jobs/{id}`.
    pub async fn job(&self, id: Uuid) -> Result<Job> {
        let req = self.http.get(self.url(&format!("/v1/jobs/{id}"))).timeout(REQUEST_TIMEOUT);
        parse_job(self.send(req).await?)
    }

    /// `POST /v1/jobs/{id}/cancel`.
    pub async fn cancel_job(&self, id: Uuid) -> Result<Job> {
        let req = self.http.post(self.url(&format!("/v1/jobs/{id}/cancel"))).timeout(REQUEST_TIMEOUT);
        parse_job(self.send(req).await?)
    }

    /// `DELETE /v1/videos/{id}`: what was removed.
    pub async fn delete_video(&self, id: Uuid) -> Result<Value> {
        self.send(self.http.delete(self.url(&format!("/v1/videos/{id}"))).timeout(REQUEST_TIMEOUT)).await
    }

    /// `GET /v1/jobs`.
    pub async fn list_jobs(&self, query: &ListQuery<'_>) -> Result<JobPage> {
        let mut params: Vec<(&str, String)> = Vec::new();
        if let Some(s) = query.status {
            params.push(("status", s.to_owned()));
        }
        if let Some(l) = query.limit {
            params.push(("limit", l.to_string()));
        }
        if let Some(c) = query.cursor {
            params.push(("cursor", c.to_owned()));
        }
        let req = self.http.get(self.url("/v1/jobs")).query(&params).timeout(REQUEST_TIMEOUT);
        JobPage::from_json(self.send(req).await?).context("the API's answer is not a page of jobs")
    }

    /// `GET /v1/models`.
    pub async fn models(&self, model: Option<&str>, limit: u32) -> Result<Value> {
        let mut params: Vec<(&str, String)> = vec![("limit", limit.to_string())];
        if let Some(m) = model {
            params.push(("model", m.to_owned()));
        }
        self.send(self.http.get(self.url("/v1/models")).query(&params).timeout(REQUEST_TIMEOUT)).await
    }

    /// `POST /v1/admin/models/{model}/rollback`.
    pub async fn rollback(&self, model: &str, to: Option<&str>) -> Result<Value> {
        let body = serde_json::json!({ "version": to });
        let path = format!("/v1/admin/models/{model}/rollback");
        self.send(self.http.post(self.url(&path)).json(&body).timeout(REQUEST_TIMEOUT)).await
    }

    /// `POST` a JSON body to `path`; the JSON answer.
    pub async fn post_json(&self, path: &str, body: &Value) -> Result<Value> {
        self.send(self.http.post(self.url(path)).json(body).timeout(REQUEST_TIMEOUT)).await
    }

    /// `GET path`; the JSON answer.
    pub async fn get_json(&self, path: &str) -> Result<Value> {
        self.send(self.http.get(self.url(path)).timeout(REQUEST_TIMEOUT)).await
    }

    /// `DELETE path`, expecting no body.
    pub async fn delete(&self, path: &str) -> Result<()> {
        self.answer(self.http.delete(self.url(path)).timeout(REQUEST_TIMEOUT)).await.map(drop)
    }

    /// `GET /v1/admin/dead-letters`.
    pub async fn dead_letters(&self, limit: u32, before: Option<Uuid>) -> Result<Value> {
        let mut params: Vec<(&str, String)> = vec![("limit", limit.to_string())];
        if let Some(b) = before {
            params.push(("before", b.to_string()));
        }
        self.send(self.http.get(self.url("/v1/admin/dead-letters")).query(&params).timeout(REQUEST_TIMEOUT)).await
    }

    /// `POST /v1/admin/jobs/{id}/replay`.
    pub async fn replay(&self, id: Uuid) -> Result<Value> {
        self.send(self.http.post(self.url(&format!("/v1/admin/jobs/{id}/replay"))).timeout(REQUEST_TIMEOUT)).await
    }

    /// `POST /v1/admin/dead-letters/replay`, once per batch until none is left.
    pub async fn replay_all(&self) -> Result<Vec<Uuid>> {
        let mut replayed = Vec::new();
        loop {
            let page = self.send(self.http.post(self.url("/v1/admin/dead-letters/replay")).timeout(REQUEST_TIMEOUT)).await?;
            let ids: Vec<Uuid> = serde_json::from_value(page["replayed"].clone()).context("the API's answer lists no replayed jobs")?;
            let done = ids.is_empty() || page["more"] != Value::Bool(true);
            replayed.extend(ids);
            if done {
                return Ok(replayed);
            }
        }
    }

    /// Sends a request and returns its JSON body, or the API's error.
    async fn send(&self, req: RequestBuilder) -> Result<Value> {
        let resp = self.answer(req).await?;
        resp.json::<Value>().await.with_context(|| format!("the reelq API at {} sent an unreadable answer", self.base))
    }

    /// The response to `req` when it succeeded; otherwise the API's problem as an error.
    async fn answer(&self, req: RequestBuilder) -> Result<reqwest::Response> {
        let resp = req.send().await.with_context(|| format!("could not reach the reelq API at {}", self.base))?;
        let status = resp.status();
        if !status.is_success() {
            // Whatever happens while reading an error body, the status alone still explains it.
            let body = resp.text().await.unwrap_or_default();
            return Err(ApiError::from_body(status, &body).into());
        }
        Ok(resp)
    }
}

fn parse_job(raw: Value) -> Result<Job> {
    Job::from_json(raw).context("the API's answer is not a job")
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::*;
    use crate::fake_api::{fake_api, problem};

    #[tokio::test]
    async fn replay_all_asks_again_while_more_are_waiting() {
        let (a, b) = ("0190b4a6-8a6e-7d3c-9b7e-1a2b3c4d5e6f", "0190b4a6-8a6e-7d3c-9b7e-1a2b3c4d5e70");
        let (url, hits) = fake_api(vec![
            (202, format!(r#"{{"replayed":["{a}"],"more":true}}"#)),
            (202, format!(r#"{{"replayed":["{b}"],"more":false}}"#)),
            (202, r#"{"replayed":[],"more":false}"#.to_owned()),
        ])
        .await;
        let client = ApiClient::new(&url, "k").expect("client");
        let replayed = client.replay_all().await.expect("replays");
        assert_eq!(replayed, [a.parse::<Uuid>().expect("uuid"), b.parse().expect("uuid")]);
        assert_eq!(hits.load(Ordering::SeqCst), 2, "stops once the API says no more are waiting");
    }

    #[tokio::test]
    async fn a_tenant_key_is_told_it_needs_an_admin_key() {
        let (url, _) = fake_api(vec![problem(403, "Forbidden", "forbidden", "this route needs an admin API key")]).await;
        let client = ApiClient::new(&url, "k").expect("client");
        let err = client.dead_letters(50, None).await.expect_err("refused");
        assert_eq!(format!("{err:#}"), "Forbidden (forbidden): this route needs an admin API key");
    }

    #[test]
    fn problem_bodies_render_title_code_and_detail() {
        let body = r#"{"type":"https://reelq.dev/problems/payload-too-large","title":"Payload Too Large","status":413,"detail":"the upload exceeds the limit of 10 bytes","code":"payload_too_large"}"#;
        let err = ApiError::from_body(StatusCode::PAYLOAD_TOO_LARGE, body);
        assert_eq!(err.to_string(), "Payload Too Large (payload_too_large): the upload exceeds the limit of 10 bytes");
        assert!(!err.is_transient());
    }

    #[test]
    fn other_bodies_fall_back_to_the_status() {
        let err = ApiError::from_body(StatusCode::BAD_GATEWAY, "<html>upstream down</html>\n");
        assert_eq!(err.to_string(), "Bad Gateway (HTTP 502): <html>upstream down</html>");
        assert!(err.is_transient());
        let empty = ApiError::from_body(StatusCode::NOT_FOUND, "");
        assert_eq!(empty.to_string(), "Not Found (HTTP 404)");
    }

    #[test]
    fn transient_errors_are_recognised_through_context() {
        let overloaded = anyhow::Error::from(ApiError::from_body(StatusCode::SERVICE_UNAVAILABLE, "")).context("polling");
        assert!(is_transient(&overloaded));
        let refused = anyhow::Error::from(ApiError::from_body(StatusCode::UNAUTHORIZED, "")).context("polling");
        assert!(!is_transient(&refused));
        assert!(!is_transient(&anyhow::anyhow!("something else")));
    }

    #[test]
    fn base_url_must_be_http() {
        assert!(ApiClient::new("ftp://example.com", "k").is_err());
        assert!(ApiClient::new("not a url", "k").is_err());
        let c = ApiClient::new("http://127.0.0.1:8080/", "k").expect("valid");
        assert_eq!(c.url("/v1/jobs"), "http://127.0.0.1:8080/v1/jobs");
    }
}
