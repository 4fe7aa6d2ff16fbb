//! Logging and tracing: JSON (or pretty) logs through `tracing`, OpenTelemetry span contexts,
//! and W3C trace-context propagation through message headers so that a job's trace follows it
//! from the HTTP request through RabbitMQ into the worker.

use std::collections::HashMap;

use opentelemetry::propagation::TextMapPropagator as _;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::config::{LogFormat, TelemetrySettings};

/// Installs the global subscriber. Calling it again (as tests do) keeps the first one.
/// `RUST_LOG` overrides the configured filter.
pub fn init(service: &'static str, settings: &TelemetrySettings) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&settings.log_filter));
    let provider = SdkTracerProvider::builder().build();
    let tracer = provider.tracer(service);
    opentelemetry::global::set_tracer_provider(provider);
    let otel = tracing_opentelemetry::layer().with_tracer(tracer);
    let registry = tracing_subscriber::registry().with(filter).with(otel);
    let result = match settings.log_format {
        LogFormat::Json => registry
            .with(tracing_subscriber::fmt::layer().json().flatten_event(true).with_current_span(true).with_span_list(false))
            .try_init(),
        LogFormat::Pretty => registry.with(tracing_subscriber::fmt::layer().compact()).try_init(),
    };
    if result.is_ok() {
        tracing::debug!(service, "telemetry installed");
    }
}

/// Installs a subscriber for tests when `TEST_LOG` is set; otherwise logs are discarded.
pub fn init_for_tests() {
    if std::env::var_os("TEST_LOG").is_some() {
        let settings = TelemetrySettings { log_format: LogFormat::Pretty, ..TelemetrySettings::default() };
        init("reelq-test", &settings);
    }
}

/// The W3C `traceparent`/`tracestate` of the current span, to put in message headers.
pub fn current_context() -> HashMap<String, String> {
    let cx = tracing::Span::current().context();
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&cx, &mut carrier);
    carrier
}

/// Makes `span` a child of the remote context carried in `carrier` (message headers).
pub fn set_parent(span: &tracing::Span, carrier: &HashMap<String, String>) {
    let cx = TraceContextPropagator::new().extract(carrier);
    let _ = span.set_parent(cx);
}

/// The trace id of the current span, for logs and error reports.
pub fn current_trace_id() -> Option<String> {
    use opentelemetry::trace::TraceContextExt as _;
    let cx = tracing::Span::current().context();
    let id = cx.span().span_context().trace_id();
    (id != opentelemetry::trace::TraceId::INVALID).then(|| id.to_string())
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
