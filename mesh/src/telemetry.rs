//! Tracing setup: human-readable lines by default, JSON with `--log-format json`, and spans
//! exported over OTLP/gRPC when `--otlp-endpoint` (`JIFEN_OTLP_ENDPOINT`) is set. The filter
//! comes from `JIFEN_LOG` (or `RUST_LOG`), `info` when neither is set.

use std::io::IsTerminal;

use clap::ValueEnum;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot set up the OTLP exporter: {0}")]
pub struct TelemetryError(String);

/// Installs the global subscriber. Calling it again is harmless (the first one stays), so
/// tests that start several services in one process may all call it.
pub fn init(format: LogFormat) {
    init_with(format, None);
}

/// Builds a tracer provider exporting to an OTLP/gRPC collector at `endpoint`.
pub fn otlp_provider(endpoint: &str, service: &str) -> Result<SdkTracerProvider, TelemetryError> {
    use opentelemetry_otlp::WithExportConfig;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .build()
        .map_err(|e| TelemetryError(e.to_string()))?;
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name(service.to_owned())
                .build(),
        )
        .build())
}

/// Installs the global subscriber, with spans going to `provider` when there is one.
pub fn init_with(format: LogFormat, provider: Option<&SdkTracerProvider>) {
    let filter = std::env::var("JIFEN_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .ok()
        .and_then(|spec| EnvFilter::try_new(spec).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    // Logs go to stderr so that stdout carries only what a command prints for its user.
    let ansi = std::io::stderr().is_terminal();
    let (text, json) = match format {
        LogFormat::Text => (
            Some(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_ansi(ansi),
            ),
            None,
        ),
        LogFormat::Json => (
            None,
            Some(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_writer(std::io::stderr),
            ),
        ),
    };
    let otel = provider.map(|p| {
        opentelemetry::global::set_tracer_provider(p.clone());
        tracing_opentelemetry::layer().with_tracer(p.tracer("jifen"))
    });
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(text)
        .with(json)
        .with(otel)
        .try_init();
}

/// An error with its causes, `outer: inner: innermost`, for one log line: `Display` alone
/// hides the source that says what actually failed.
pub fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        // Some errors repeat their source in their own message.
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    #[derive(Debug, thiserror::Error)]
    #[error("outbox publish")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn the_chain_names_every_cause() {
        let error = Outer(std::io::Error::other("no responders"));
        assert_eq!(super::chain(&error), "outbox publish: no responders");
    }
}
