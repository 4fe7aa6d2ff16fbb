//! Delivering completion callbacks: signed, retried with exponential backoff, and re-checked
//! against the address policy at delivery time (a host may resolve elsewhere by then).
//!
//! Delivery is at least once: a receiver can see the same delivery again (after a timeout, or
//! when a worker dies between the receiver's answer and the record of it) and deduplicates on
//! the `Reelq-Delivery` header, which is also the body's `delivery_id`. Recording a delivery
//! waits out a database outage instead of leaving it to be sent again.

use std::sync::Arc;
use std::time::Duration;

use secrecy::ExposeSecret;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use reelq_shared::config::WebhookSettings;
use reelq_shared::db::{jobs, webhooks};
use reelq_shared::domain::JobStatus;
use reelq_shared::{metrics, webhook};

use crate::dependencies::Dependencies;

/// Sends due webhooks.
pub struct WebhookSender {
    pool: PgPool,
    http: reqwest::Client,
    settings: Arc<WebhookSettings>,
    deps: Arc<Dependencies>,
}

impl WebhookSender {
    /// A sender with its own HTTP client. Redirects are not followed: a redirect could point
    /// at an address the policy forbids.
    pub fn new(pool: PgPool, settings: WebhookSettings, deps: Arc<Dependencies>) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(settings.timeout_ms))
            .connect_timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("reelq-webhooks/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self { pool, http, settings: Arc::new(settings), deps })
    }

    /// Delivers what is due; returns how many deliveries were attempted.
    pub async fn deliver_due(&self) -> Result<usize, reelq_shared::db::DbError> {
        let due = webhooks::take_due(&self.pool, 32, 60.0).await?;
        let n = due.len();
        for d in due {
            let outcome = self.deliver(&d).await;
            let m = metrics::get();
            match outcome {
                Ok(status) => {
                    m.webhook_deliveries.with_label_values(&["delivered"]).inc();
                    self.deps.persist("webhooks.delivered", || webhooks::delivered(&self.pool, d.id, status)).await?;
                }
                Err((status, error)) => {
                    let retry = (d.attempts < i32::try_from(self.settings.max_attempts).unwrap_or(i32::MAX)).then(|| {
                        let exp = u32::try_from(d.attempts.saturating_sub(1)).unwrap_or(0).min(16);
                        ((self.settings.backoff_base_ms as f64 / 1000.0) * f64::from(1u32 << exp)).min(3_600.0)
                    });
                    m.webhook_deliveries.with_label_values(&[if retry.is_some() { "retry" } else { "abandoned" }]).inc();
                    tracing::warn!(job_id = %d.job_id, attempt = d.attempts, error, "webhook delivery failed");
                    webhooks::failed(&self.pool, d.id, status, &error, retry).await?;
                }
            }
        }
        Ok(n)
    }

    async fn deliver(&self, d: &webhooks::Delivery) -> Result<i32, (Option<i32>, String)> {
        if let Err(e) = webhook::check_callback_url(&d.url, self.settings.allow_private).await {
            return Err((None, e.to_string()));
        }
        let view = jobs::view_by_id(&self.pool, d.job_id).await.map_err(|e| (None, e.to_string()))?.ok_or((None, "job is gone".to_owned()))?;
        let event = match view.status {
            JobStatus::Succeeded => "job.succeeded",
            JobStatus::Failed => "job.failed",
            JobStatus::Cancelled => "job.cancelled",
            _ => "job.updated",
        };
        let body = serde_json::to_vec(&serde_json::json!({ "event": event, "delivery_id": d.id, "job": view })).map_err(|e| (None, e.to_string()))?;
        let ts = chrono::Utc::now().timestamp();
        let signature = webhook::sign(self.settings.signing_secret.expose_secret().as_bytes(), ts, &body);
        let resp = self
            .http
            .post(&d.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(webhook::SIGNATURE_HEADER, signature)
            .header("Reelq-Event", event)
            .header("Reelq-Delivery", d.id.to_string())
            .body(body)
            .send()
            .await
            .map_err(|e| (None, e.to_string()))?;
        let status = i32::from(resp.status().as_u16());
        if resp.status().is_success() { Ok(status) } else { Err((Some(status), format!("receiver answered {status}"))) }
    }

    /// Delivers until cancelled.
    pub async fn run(self, every: Duration, cancel: CancellationToken) {
        loop {
            let busy = match self.deliver_due().await {
                Ok(n) => n > 0,
                Err(e) => {
                    tracing::warn!(error = %e, "webhook pass failed");
                    false
                }
            };
            if busy {
                continue;
            }
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(every) => {}
            }
        }
    }
}
