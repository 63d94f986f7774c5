//! Flags and `JIFEN_*` environment variables that every service shares. Each service adds its
//! own (listen address, channel id, …) and flattens these in with `#[command(flatten)]`.

use std::time::Duration;

use clap::Args;

use crate::telemetry::LogFormat;

/// How the process logs.
#[derive(Debug, Clone, Args)]
pub struct TelemetryArgs {
    /// Log line format.
    #[arg(long, global = true, env = "JIFEN_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// OTLP/gRPC collector for traces (e.g. http://otel-collector:4317); none when unset.
    #[arg(long, global = true, env = "JIFEN_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
}

/// Where Prometheus scrapes this process.
#[derive(Debug, Clone, Args)]
pub struct MetricsArgs {
    /// Address of the `/metrics` endpoint (none when unset; `jifen dev` uses 127.0.0.1:9090).
    #[arg(long, global = true, env = "JIFEN_METRICS_LISTEN")]
    pub metrics_listen: Option<std::net::SocketAddr>,
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

/// Where NATS is and how the streams are replicated.
#[derive(Debug, Clone, Args)]
pub struct BusArgs {
    /// NATS seed servers, comma-separated (`nats://a:4222,nats://b:4222`); nats-server >= 2.11
    /// with JetStream. The first connect is retried while none answers.
    #[arg(long, env = "JIFEN_NATS_URL", default_value = "nats://127.0.0.1:4222")]
    pub nats_url: String,
    /// Replicas of Jifen's streams: 1 on one server, 3 on a production cluster.
    #[arg(long, env = "JIFEN_STREAM_REPLICAS", default_value_t = 1)]
    pub stream_replicas: usize,
    #[command(flatten)]
    pub auth: NatsAuthArgs,
}

/// Who this process is to NATS, and how the connection is protected (DESIGN §11). NATS's own
/// mechanisms: a `.creds` file (JWT + NKEY seed, for an operator/account deployment), an NKEY
/// seed file (a server `authorization` block naming the public key, as `jifen nats-config`
/// writes it), or a user and password as a fallback. Secrets are read from files, never taken
/// on the command line.
#[derive(Debug, Clone, Default, Args)]
pub struct NatsAuthArgs {
    /// A NATS `.creds` file (user JWT and NKEY seed).
    #[arg(long, env = "JIFEN_NATS_CREDS", conflicts_with_all = ["nats_nkey", "nats_user"])]
    pub nats_creds: Option<std::path::PathBuf>,
    /// A file holding this process's NKEY seed (`SU…`), as `jifen nats-config` writes them.
    #[arg(long, env = "JIFEN_NATS_NKEY", conflicts_with = "nats_user")]
    pub nats_nkey: Option<std::path::PathBuf>,
    /// A NATS user name (fallback to NKEYs; the password comes from --nats-password-file).
    #[arg(long, env = "JIFEN_NATS_USER", requires = "nats_password_file")]
    pub nats_user: Option<String>,
    /// A file holding the NATS user's password.
    #[arg(long, env = "JIFEN_NATS_PASSWORD_FILE", requires = "nats_user")]
    pub nats_password_file: Option<std::path::PathBuf>,
    /// A CA certificate (PEM) to trust for the NATS server's TLS; TLS is then required.
    #[arg(long, env = "JIFEN_NATS_TLS_CA")]
    pub nats_tls_ca: Option<std::path::PathBuf>,
    /// A client certificate (PEM) for servers that verify clients; with --nats-tls-key.
    #[arg(long, env = "JIFEN_NATS_TLS_CERT", requires = "nats_tls_key")]
    pub nats_tls_cert: Option<std::path::PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, env = "JIFEN_NATS_TLS_KEY", requires = "nats_tls_cert")]
    pub nats_tls_key: Option<std::path::PathBuf>,
}

impl BusArgs {
    /// The bus at `nats_url` with one replica per stream and no credentials.
    pub fn anonymous(nats_url: impl Into<String>, stream_replicas: usize) -> Self {
        Self {
            nats_url: nats_url.into(),
            stream_replicas,
            auth: NatsAuthArgs::default(),
        }
    }

    /// The bus at `nats_url` as the identity whose NKEY seed is in `seed_file`.
    pub fn with_nkey(
        nats_url: impl Into<String>,
        stream_replicas: usize,
        seed_file: impl Into<std::path::PathBuf>,
    ) -> Self {
        Self {
            auth: NatsAuthArgs {
                nats_nkey: Some(seed_file.into()),
                ..NatsAuthArgs::default()
            },
            ..Self::anonymous(nats_url, stream_replicas)
        }
    }

    pub fn topology(&self) -> crate::bus::topology::Topology {
        crate::bus::topology::Topology {
            replicas: self.stream_replicas,
            ..Default::default()
        }
    }
}

/// A consumer group's retry schedule (RocketMQ's delay levels by default).
#[derive(Debug, Clone, Args)]
pub struct RetryArgs {
    /// Delays before each redelivery, comma-separated (`500ms`, `5s`, `2m`); the last repeats.
    #[arg(
        long,
        env = "JIFEN_BACKOFF",
        value_delimiter = ',',
        value_parser = parse_duration,
        default_value = "1s,5s,10s,30s,1m,2m,3m,4m,5m,6m,7m,8m,9m,10m,20m,30m"
    )]
    pub backoff: Vec<Duration>,
    /// Deliveries before a message is dead-lettered.
    #[arg(long, env = "JIFEN_MAX_DELIVER", default_value_t = 16, value_parser = clap::value_parser!(i64).range(1..))]
    pub max_deliver: i64,
}

impl RetryArgs {
    pub fn policy(&self) -> crate::bus::consume::RetryPolicy {
        crate::bus::consume::RetryPolicy {
            backoff: self.backoff.clone(),
            max_deliver: self.max_deliver,
        }
    }
}

/// Parses `250ms`, `5s`, `2m` or `1h`.
pub fn parse_duration(raw: &str) -> Result<Duration, String> {
    let raw = raw.trim();
    let split = raw
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("{raw:?} needs a unit: ms, s, m or h"))?;
    let (number, unit) = raw.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{raw:?} does not start with a whole number"))?;
    let millis = match unit {
        "ms" => Some(number),
        "s" => number.checked_mul(1_000),
        "m" => number.checked_mul(60_000),
        "h" => number.checked_mul(3_600_000),
        _ => return Err(format!("{raw:?} has an unknown unit: use ms, s, m or h")),
    };
    millis
        .map(Duration::from_millis)
        .ok_or_else(|| format!("{raw:?} is too long"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("5d").is_err());
        assert!(parse_duration("99999999999999999999h").is_err());
    }
}
