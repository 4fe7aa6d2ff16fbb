//! One Prometheus registry per process, with every metric reelq exports. Names are constants
//! here so that dashboards and alerts have a single place to look.

use std::sync::OnceLock;

use prometheus::{Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};

/// Every metric of the process.
pub struct Metrics {
    /// The registry `/metrics` renders.
    pub registry: Registry,
    /// `reelq_http_requests_total{route,method,status}`.
    pub http_requests: IntCounterVec,
    /// `reelq_http_request_duration_seconds{route,method}`.
    pub http_seconds: HistogramVec,
    /// `reelq_db_query_duration_seconds{query,outcome}`.
    pub db_query_seconds: HistogramVec,
    /// `reelq_db_batch_size{query}`: how many callers one batched statement served.
    pub db_batch_size: HistogramVec,
    /// `reelq_jobs_submitted_total{priority}`.
    pub jobs_submitted: IntCounterVec,
    /// `reelq_jobs_finished_total{status,code}`.
    pub jobs_finished: IntCounterVec,
    /// `reelq_job_retries_total{reason}`: transient faults sent to a delay queue.
    pub job_retries: IntCounterVec,
    /// `reelq_job_deferrals_total{reason}`: deliveries postponed without counting an attempt.
    pub job_deferrals: IntCounterVec,
    /// `reelq_job_dead_letters_total`.
    pub dead_letters: IntCounterVec,
    /// `reelq_queue_lag_seconds{priority}`: submission to first claim.
    pub queue_lag_seconds: HistogramVec,
    /// `reelq_job_stage_duration_seconds{stage}`.
    pub stage_seconds: HistogramVec,
    /// `reelq_outbox_published_total`.
    pub outbox_published: IntCounterVec,
    /// `reelq_outbox_pending`: rows seen waiting at the last relay pass.
    pub outbox_pending: IntGauge,
    /// `reelq_db_oldest_transaction_seconds`: age of the oldest transaction of the PostgreSQL
    /// cluster that holds a snapshot (0 when none), read on every reaper pass.
    pub db_oldest_transaction_seconds: IntGauge,
    /// `reelq_webhook_deliveries_total{outcome}`.
    pub webhook_deliveries: IntCounterVec,
    /// `reelq_upload_bytes_total{outcome}`.
    pub upload_bytes: IntCounterVec,
    /// `reelq_upload_refusals_total{reason}`: upload bodies cut off (`idle_timeout`,
    /// `body_timeout`) or turned away because the tenant had too many in flight (`busy`).
    pub upload_refusals: IntCounterVec,
    /// `reelq_pending_uploads_expired_total`: presigned uploads never completed, swept.
    pub pending_uploads_expired: IntCounterVec,
    /// `reelq_objects_removed_total{reason}`: what deletions and retention removed, by reason:
    /// `deletion` (deleted videos' and erased tenants' objects, counted per deletion settled),
    /// `upload_expired` and `output_expired` (objects), `job_expired` (job rows).
    pub objects_removed: IntCounterVec,
    /// `reelq_job_replays_total`: dead-lettered jobs queued again by an operator.
    pub job_replays: IntCounterVec,
    /// `reelq_jobs_in_flight`: jobs this worker is processing now.
    pub jobs_in_flight: IntGauge,
    /// `reelq_s3_call_duration_seconds{op,outcome}`: object storage calls, whole streams
    /// included for uploads and downloads.
    pub s3_call_seconds: HistogramVec,
    /// `reelq_inference_duration_seconds{model}`: time in model calls per analysis.
    pub inference_seconds: HistogramVec,
    /// `reelq_inference_batch_size{model}`: inputs per model call.
    pub inference_batch_size: HistogramVec,
    /// `reelq_schedule_runs_total{schedule,status}`: scheduler runs by how they ended.
    pub schedule_runs: IntCounterVec,
    /// `reelq_schedule_run_duration_seconds{schedule}`: scheduler run time.
    pub schedule_run_seconds: HistogramVec,
    /// `reelq_pulled_videos_total{schedule}`: videos stored by pulls.
    pub pulled_videos: IntCounterVec,
    /// `reelq_model_versions_total{model,status}`: trained versions by decision (`promoted`,
    /// `rejected`, `skipped`).
    pub model_versions: IntCounterVec,
}

fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric definition");
    registry.register(Box::new(c.clone())).expect("metric registered once");
    c
}

fn histogram(registry: &Registry, name: &str, help: &str, labels: &[&str], buckets: Vec<f64>) -> HistogramVec {
    let h = HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels).expect("valid metric definition");
    registry.register(Box::new(h.clone())).expect("metric registered once");
    h
}

fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).expect("valid metric definition");
    registry.register(Box::new(g.clone())).expect("metric registered once");
    g
}

const FAST: &[f64] = &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];
const SLOW: &[f64] = &[0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0];

impl Metrics {
    fn new() -> Self {
        let r = Registry::new_custom(None, None).expect("registry");
        Self {
            http_requests: counter(&r, "reelq_http_requests_total", "HTTP requests served", &["route", "method", "status"]),
            http_seconds: histogram(&r, "reelq_http_request_duration_seconds", "HTTP request latency", &["route", "method"], FAST.to_vec()),
            db_query_seconds: histogram(&r, "reelq_db_query_duration_seconds", "Database call latency", &["query", "outcome"], FAST.to_vec()),
            db_batch_size: histogram(
                &r,
                "reelq_db_batch_size",
                "Callers served by one batched statement",
                &["query"],
                vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0],
            ),
            jobs_submitted: counter(&r, "reelq_jobs_submitted_total", "Jobs accepted", &["priority"]),
            jobs_finished: counter(&r, "reelq_jobs_finished_total", "Jobs that reached a final state", &["status", "code"]),
            job_retries: counter(&r, "reelq_job_retries_total", "Attempts ended by a transient fault and retried", &["reason"]),
            job_deferrals: counter(&r, "reelq_job_deferrals_total", "Deliveries postponed without using an attempt", &["reason"]),
            dead_letters: counter(&r, "reelq_job_dead_letters_total", "Messages sent to the dead-letter queue", &["reason"]),
            queue_lag_seconds: histogram(&r, "reelq_queue_lag_seconds", "Time from submission to a worker taking the job", &["priority"], SLOW.to_vec()),
            stage_seconds: histogram(&r, "reelq_job_stage_duration_seconds", "Time spent per processing stage", &["stage"], SLOW.to_vec()),
            outbox_published: counter(&r, "reelq_outbox_published_total", "Outbox messages published with a confirm", &["routing_key"]),
            outbox_pending: gauge(&r, "reelq_outbox_pending", "Outbox rows waiting at the last relay pass"),
            db_oldest_transaction_seconds: gauge(
                &r,
                "reelq_db_oldest_transaction_seconds",
                "Age of the oldest PostgreSQL transaction holding a snapshot, which keeps dead rows from being removed",
            ),
            webhook_deliveries: counter(&r, "reelq_webhook_deliveries_total", "Webhook delivery attempts", &["outcome"]),
            upload_bytes: counter(&r, "reelq_upload_bytes_total", "Bytes received in uploads", &["outcome"]),
            upload_refusals: counter(&r, "reelq_upload_refusals_total", "Uploads cut off or turned away", &["reason"]),
            pending_uploads_expired: counter(&r, "reelq_pending_uploads_expired_total", "Presigned uploads never completed and swept", &[]),
            objects_removed: counter(&r, "reelq_objects_removed_total", "Objects and rows removed by deletions and retention", &["reason"]),
            job_replays: counter(&r, "reelq_job_replays_total", "Dead-lettered jobs queued again", &[]),
            jobs_in_flight: gauge(&r, "reelq_jobs_in_flight", "Jobs being processed by this worker"),
            inference_seconds: histogram(&r, "reelq_inference_duration_seconds", "Time spent in model calls per analysis", &["model"], SLOW.to_vec()),
            inference_batch_size: histogram(
                &r,
                "reelq_inference_batch_size",
                "Inputs per model call",
                &["model"],
                vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0],
            ),
            s3_call_seconds: histogram(&r, "reelq_s3_call_duration_seconds", "Object storage call latency", &["op", "outcome"], SLOW.to_vec()),
            schedule_runs: counter(&r, "reelq_schedule_runs_total", "Scheduler runs by outcome", &["schedule", "status"]),
            schedule_run_seconds: histogram(&r, "reelq_schedule_run_duration_seconds", "Scheduler run time", &["schedule"], SLOW.to_vec()),
            pulled_videos: counter(&r, "reelq_pulled_videos_total", "Videos stored by scheduler pulls", &["schedule"]),
            model_versions: counter(&r, "reelq_model_versions_total", "Trained model versions by decision", &["model", "status"]),
            registry: r,
        }
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        // Encoding into a Vec cannot fail for well-formed families.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

/// The process's metrics, created on first use.
pub fn get() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}
