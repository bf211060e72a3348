//! Telemetry: a `tracing` subscriber writing text or JSON logs, and, when an
//! OTLP endpoint is configured, spans exported over OTLP/gRPC through
//! `tracing-opentelemetry`.

use opentelemetry::trace::TracerProvider as _;
use serde::Deserialize;
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
    pub otlp_endpoint: String,
    /// The service name reported with spans.
    pub service_name: String,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            log_level: "info".into(),
            log_format: "text".into(),
            otlp_endpoint: String::new(),
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
            .with_endpoint(&config.otlp_endpoint)
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
