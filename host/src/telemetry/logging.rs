//! `tracing` set-up for the binary: text or JSON logs on stderr, filtered by
//! `RUST_LOG` (default `info`), and OpenTelemetry trace export when the
//! standard OTEL environment variables ask for it:
//!
//! - `OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`
//!   set, or `OTEL_TRACES_EXPORTER=otlp`, turns export on (OTLP over
//!   HTTP/protobuf; the exporter reads the endpoint, headers and timeout
//!   variables itself);
//! - `OTEL_TRACES_EXPORTER=none` or `OTEL_SDK_DISABLED=true` turns it off;
//! - `OTEL_SERVICE_NAME` / `OTEL_RESOURCE_ATTRIBUTES` name the service
//!   (`portico` by default).
//!
//! Each gateway request is a `gateway_request` span (request id, method,
//! path, status) with the "gateway call" event (endpoint, provider, model,
//! tokens) inside.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};

use crate::config::LogFormat;

/// Keeps the trace exporter alive; dropping it flushes pending spans.
pub struct LoggingGuard {
    tracer_provider: Option<SdkTracerProvider>,
}

impl Drop for LoggingGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.tracer_provider.take()
            && let Err(error) = provider.shutdown()
        {
            eprintln!("OpenTelemetry exporter shutdown: {error}");
        }
    }
}

/// Whether the OTEL variables (read through `var`) ask for trace export.
pub fn otlp_requested(var: impl Fn(&str) -> Option<String>) -> bool {
    let set = |name: &str| var(name).is_some_and(|v| !v.trim().is_empty());
    if var("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
        return false;
    }
    match var("OTEL_TRACES_EXPORTER").map(|v| v.trim().to_ascii_lowercase()) {
        Some(exporter) if exporter == "none" => false,
        Some(exporter) if exporter == "otlp" => true,
        _ => set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
    }
}

/// Installs the global subscriber. An exporter that cannot be built is
/// reported and skipped: logs matter more than traces.
pub fn init(format: LogFormat) -> LoggingGuard {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = match format {
        LogFormat::Text => fmt.boxed(),
        LogFormat::Json => fmt.json().boxed(),
    };
    let mut export_error = None;
    let tracer_provider = if otlp_requested(|name| std::env::var(name).ok()) {
        match opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .build()
        {
            Ok(exporter) => {
                let mut resource = Resource::builder();
                if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
                    resource = resource.with_service_name("portico");
                }
                Some(
                    SdkTracerProvider::builder()
                        .with_batch_exporter(exporter)
                        .with_resource(resource.build())
                        .build(),
                )
            }
            Err(error) => {
                export_error = Some(error.to_string());
                None
            }
        }
    } else {
        None
    };
    let otel = tracer_provider
        .as_ref()
        .map(|provider| tracing_opentelemetry::layer().with_tracer(provider.tracer("portico")));
    tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(otel)
        .init();
    if let Some(error) = export_error {
        tracing::error!(%error, "cannot build the OpenTelemetry exporter; traces are not exported");
    } else if tracer_provider.is_some() {
        tracing::info!("exporting traces with OpenTelemetry (OTLP over HTTP)");
    }
    LoggingGuard { tracer_provider }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn export_follows_the_standard_variables() {
        assert!(!otlp_requested(env(&[])));
        assert!(otlp_requested(env(&[(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "http://collector:4318"
        )])));
        assert!(otlp_requested(env(&[("OTEL_TRACES_EXPORTER", "otlp")])));
        assert!(!otlp_requested(env(&[
            ("OTEL_TRACES_EXPORTER", "none"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
        ])));
        assert!(!otlp_requested(env(&[
            ("OTEL_SDK_DISABLED", "true"),
            ("OTEL_TRACES_EXPORTER", "otlp"),
        ])));
    }
}
