//! Tracing setup: human-readable lines by default, JSON with `--log-format json`.
//! The filter comes from `JIFEN_LOG` (or `RUST_LOG`), `info` when neither is set.

use std::io::IsTerminal;

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
    // Logs go to stderr so that stdout carries only what a command prints for its user.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
