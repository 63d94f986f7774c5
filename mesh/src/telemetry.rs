//! Tracing setup: human-readable lines by default, JSON with `--log-format json`.
//! The filter comes from `JIFEN_LOG` (or `RUST_LOG`), `info` when neither is set.

use clap::ValueEnum;
use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Installs the global subscriber. Calling it again is harmless (the first one stays), so
/// tests that start several services in one process may all call it.
pub fn init(format: LogFormat) {
    let filter = std::env::var("JIFEN_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .ok()
        .and_then(|spec| EnvFilter::try_new(spec).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
