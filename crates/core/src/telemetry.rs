//! Telemetry: a `tracing` subscriber writing text or JSON logs, and, when an
//! OTLP endpoint is configured, spans exported over OTLP/gRPC through
//! `tracing-opentelemetry`. The W3C trace context (`traceparent`) travels
//! in gRPC metadata and in the event envelope, so one request is one trace
//! across services.

use std::collections::HashMap;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use serde::Deserialize;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// A `tracing` filter such as `info` or `roster=debug,info`.
    /// `RUST_LOG` wins when set.
    pub log_level: String,
    /// `text` or `json`.
    pub log_format: String,
    /// An OTLP/gRPC endpoint (`http://collector:4317`); empty disables
    /// export.
    pub otlp_endpoint: crate::secret::SecretUrl,
    /// The service name reported with spans.
    pub service_name: String,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            log_level: "info".into(),
            log_format: "text".into(),
            otlp_endpoint: Default::default(),
            service_name: "rosterd".into(),
        }
    }
}

/// Keeps the exporter alive; flushes spans when dropped.
pub struct TelemetryGuard {
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            let _ = provider.shutdown();
        }
    }
}

/// Reads propagation fields from HTTP/2 headers (gRPC metadata).
struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl opentelemetry::propagation::Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// Makes `span` a child of the trace context carried by `headers` (an
/// incoming request), if any.
pub fn continue_trace(span: &tracing::Span, headers: &http::HeaderMap) {
    let parent = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
    // Fails only when no OpenTelemetry layer is installed: nothing to join.
    let _ = span.set_parent(parent);
}

/// The current span's trace context as W3C headers (`traceparent`, and
/// `tracestate` when set); empty when no trace is recorded.
pub fn current_trace_context() -> HashMap<String, String> {
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&tracing::Span::current().context(), &mut carrier);
    carrier
}

/// Adds the current trace context to an outgoing request's metadata.
pub fn inject_trace_context(metadata: &mut tonic::metadata::MetadataMap) {
    for (key, value) in current_trace_context() {
        if let (Ok(key), Ok(value)) = (
            tonic::metadata::MetadataKey::from_bytes(key.as_bytes()),
            value.parse(),
        ) {
            metadata.insert(key, value);
        }
    }
}

/// Installs the global subscriber. Call once, inside the tokio runtime.
pub fn init(config: &TelemetryConfig) -> anyhow::Result<TelemetryGuard> {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.log_level))
        .map_err(|e| anyhow::anyhow!("invalid telemetry.log_level: {e}"))?;
    let fmt = match config.log_format.as_str() {
        "json" => tracing_subscriber::fmt::layer().json().boxed(),
        "text" => tracing_subscriber::fmt::layer().boxed(),
        other => anyhow::bail!("invalid telemetry.log_format `{other}`: use text or json"),
    };
    let (otel, provider) = if config.otlp_endpoint.is_empty() {
        (None, None)
    } else {
        use opentelemetry_otlp::WithExportConfig;
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(config.otlp_endpoint.expose())
            .build()?;
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(
                opentelemetry_sdk::Resource::builder()
                    .with_service_name(config.service_name.clone())
                    .build(),
            )
            .build();
        let tracer = provider.tracer("roster");
        (
            Some(tracing_opentelemetry::layer().with_tracer(tracer)),
            Some(provider),
        )
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(otel)
        .try_init()
        .map_err(|e| anyhow::anyhow!("telemetry already initialised: {e}"))?;
    Ok(TelemetryGuard { provider })
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::TraceContextExt;
    use tracing_subscriber::layer::SubscriberExt;

    #[test]
    fn a_trace_context_survives_a_trip_through_headers() {
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        tracing::subscriber::with_default(subscriber, || {
            let client = tracing::info_span!("client");
            let _entered = client.enter();
            let sent = current_trace_context();
            let traceparent = sent.get("traceparent").expect("a traceparent");
            let trace_id = client.context().span().span_context().trace_id();
            assert!(traceparent.contains(&trace_id.to_string()));

            let mut metadata = tonic::metadata::MetadataMap::new();
            inject_trace_context(&mut metadata);
            let headers = metadata.into_headers();
            let server = tracing::info_span!("server");
            continue_trace(&server, &headers);
            assert_eq!(server.context().span().span_context().trace_id(), trace_id);
        });
    }

    #[test]
    fn without_a_trace_nothing_is_sent() {
        assert!(current_trace_context().is_empty());
    }
}
