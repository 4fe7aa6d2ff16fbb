//! Logging and tracing: JSON (or pretty) logs through `tracing`, OpenTelemetry span contexts,
//! and W3C trace-context propagation through message headers so that a job's trace follows it
//! from the HTTP request through RabbitMQ into the worker.

use std::collections::HashMap;

use opentelemetry::propagation::TextMapPropagator as _;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::config::{LogFormat, TelemetrySettings};

/// Keeps the trace pipeline alive; flushes spans still buffered when dropped, so the last spans
/// of a stopping process are exported.
#[must_use = "dropping the guard shuts the trace exporter down"]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(p) = self.provider.take() {
            let _ = p.shutdown();
        }
    }
}

/// Installs logging and tracing for a process. Spans are exported over OTLP/HTTP when
/// `telemetry.otlp_endpoint` is set; without it trace ids still exist, are logged, and travel
/// with jobs. `RUST_LOG` overrides the configured log filter. Calling it again keeps the first
/// subscriber (tests do that).
pub fn init(service: &'static str, settings: &TelemetrySettings) -> TelemetryGuard {
    let mut builder = SdkTracerProvider::builder()
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(settings.trace_sample_ratio))))
        .with_resource(Resource::builder().with_service_name(service).build());
    if let Some(endpoint) = settings.otlp_endpoint.as_deref().filter(|e| !e.is_empty()) {
        match opentelemetry_otlp::SpanExporter::builder().with_http().with_endpoint(endpoint).with_timeout(std::time::Duration::from_secs(10)).build() {
            Ok(exporter) => builder = builder.with_batch_exporter(exporter),
            // Telemetry must never stop the service; say so once on stderr.
            Err(e) => eprintln!("reelq: OTLP exporter for {endpoint} could not be built, traces stay local: {e}"),
        }
    }
    let provider = builder.build();
    install(service, settings, provider.clone());
    TelemetryGuard { provider: Some(provider) }
}

/// Installs the global subscriber over a given tracer provider (tests pass one with an
/// in-memory exporter). Returns whether it was installed (false: one already was).
pub fn install(service: &'static str, settings: &TelemetrySettings, provider: SdkTracerProvider) -> bool {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&settings.log_filter));
    let tracer = provider.tracer(service);
    opentelemetry::global::set_tracer_provider(provider);
    let otel = tracing_opentelemetry::layer().with_tracer(tracer);
    let registry = tracing_subscriber::registry().with(filter).with(otel);
    let result = match settings.log_format {
        LogFormat::Json => {
            registry.with(tracing_subscriber::fmt::layer().json().flatten_event(true).with_current_span(true).with_span_list(false)).try_init()
        }
        LogFormat::Pretty => registry.with(tracing_subscriber::fmt::layer().compact()).try_init(),
    };
    result.is_ok()
}

/// Records the span's trace id in its `trace_id` field (declared `tracing::field::Empty`), so
/// that every log line written inside it carries the id.
pub fn record_trace_id(span: &tracing::Span) {
    use opentelemetry::trace::TraceContextExt as _;
    let id = span.context().span().span_context().trace_id();
    if id != opentelemetry::trace::TraceId::INVALID {
        span.record("trace_id", tracing::field::display(id));
    }
}

/// Installs a subscriber for tests when `TEST_LOG` is set; otherwise logs are discarded.
pub fn init_for_tests() {
    if std::env::var_os("TEST_LOG").is_some() {
        let settings = TelemetrySettings { log_format: LogFormat::Pretty, ..TelemetrySettings::default() };
        install("reelq-test", &settings, SdkTracerProvider::builder().build());
    }
}

/// The W3C `traceparent`/`tracestate` of the current span, to put in message headers.
pub fn current_context() -> HashMap<String, String> {
    let cx = tracing::Span::current().context();
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&cx, &mut carrier);
    carrier
}

/// Makes `span` a child of the remote context carried in `carrier` (message or HTTP headers),
/// when there is one, and records the resulting trace id on it.
pub fn set_parent(span: &tracing::Span, carrier: &HashMap<String, String>) {
    if carrier.contains_key("traceparent") {
        let cx = TraceContextPropagator::new().extract(carrier);
        let _ = span.set_parent(cx);
    }
    record_trace_id(span);
}

/// The W3C trace context of a given span, to put in message headers.
pub fn context_of(span: &tracing::Span) -> HashMap<String, String> {
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&span.context(), &mut carrier);
    carrier
}

/// Spawns a task whose logs carry its name (`task` field), so every background loop can be
/// told apart in logs and traces.
pub fn spawn_named<F>(name: &'static str, fut: F) -> tokio::task::JoinHandle<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    use tracing::Instrument as _;
    tokio::spawn(fut.instrument(tracing::info_span!("task", task = name)))
}

/// How long one step of a process's stop may take before the process goes on without it.
pub const STOP_STEP: std::time::Duration = std::time::Duration::from_secs(5);

/// Runs one step of a stop (a background task's end, a connection's close) for at most
/// [`STOP_STEP`], so a stuck step never keeps the process from exiting; one that overruns is
/// logged and left behind.
pub async fn stop_step(step: &'static str, work: impl std::future::Future<Output = ()>) {
    if tokio::time::timeout(STOP_STEP, work).await.is_err() {
        tracing::warn!(step, after_s = STOP_STEP.as_secs(), "a shutdown step did not finish in time; going on without it");
    }
}

/// Resolves on SIGINT or SIGTERM: the one shutdown trigger of every binary.
pub async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        Some(()) = async { match term.as_mut() { Some(t) => t.recv().await, None => std::future::pending().await } } => {}
    }
    tracing::info!("shutdown requested");
}
