//! Flags and `JIFEN_*` environment variables that every service shares. Each service adds its
//! own (listen address, channel id, …) and flattens these in with `#[command(flatten)]`.

use std::time::Duration;

use clap::Args;

use crate::telemetry::LogFormat;

/// How the process logs.
#[derive(Debug, Clone, Args)]
pub struct TelemetryArgs {
    /// Log line format.
    #[arg(long, env = "JIFEN_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// How long a stopping server keeps answering after it reports NOT_SERVING, so that load
/// balancers and clients watching the health service move away before it closes.
#[derive(Debug, Clone, Args)]
pub struct ShutdownArgs {
    /// Seconds between reporting NOT_SERVING and closing the listener.
    #[arg(long, env = "JIFEN_SHUTDOWN_GRACE_SECS", default_value_t = 1)]
    pub shutdown_grace_secs: u64,
}

impl ShutdownArgs {
    pub fn grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_secs)
    }
}
