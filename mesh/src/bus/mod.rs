//! NATS JetStream with RocketMQ's semantics (DESIGN §5): [`subjects`] names everything,
//! [`topology`] creates the streams, [`publish`] stores messages with their headers, and
//! [`consume`] runs durable consumer groups with back-off, max deliveries and poison handling.
//!
//! Jifen refuses servers older than 2.11 at connect, with a clear error, because they silently
//! ignore features it relies on (`filter_subjects`, `+TERM <reason>`).

pub mod consume;
pub mod dead_letter;
pub mod publish;
pub mod subjects;
pub mod topology;

use crate::nats_server::{MIN_VERSION, parse_version};

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("cannot connect to NATS at {url}")]
    Connect {
        url: String,
        #[source]
        source: async_nats::ConnectError,
    },
    #[error("bad NATS url {url:?}")]
    BadUrl {
        url: String,
        #[source]
        source: std::io::Error,
    },
    #[error("no NATS url given")]
    NoServers,
    #[error("NATS at {url} runs nats-server {found}; Jifen needs >= {}.{}", MIN_VERSION.0, MIN_VERSION.1)]
    ServerTooOld { url: String, found: String },
    #[error("cannot create or update stream {stream}: {reason}")]
    Stream { stream: String, reason: String },
    #[error("cannot create consumer {consumer}: {reason}")]
    Consumer { consumer: String, reason: String },
    #[error("cannot publish to {subject}: {source}")]
    Publish {
        subject: String,
        #[source]
        source: async_nats::jetstream::context::PublishError,
    },
    #[error("no ack for {subject} within {deadline:?}")]
    AckDeadline {
        subject: String,
        deadline: std::time::Duration,
    },
    #[error("not sent: an earlier message of the batch failed")]
    NotSent,
}

/// The seed servers of a comma-separated list (`nats://a:4222,nats://b:4222`).
pub fn seed_servers(urls: &str) -> Result<Vec<async_nats::ServerAddr>, BusError> {
    let servers = urls
        .split(',')
        .map(str::trim)
        .filter(|url| !url.is_empty())
        .map(|url| {
            url.parse::<async_nats::ServerAddr>()
                .map_err(|source| BusError::BadUrl {
                    url: url.to_owned(),
                    source,
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if servers.is_empty() {
        return Err(BusError::NoServers);
    }
    Ok(servers)
}

/// Connects to any of the seed servers in `urls` and checks the server version. While none
/// answers (a cluster still starting, a node down), it keeps trying with back-off — 250 ms
/// doubling to 5 s — and says so; a bad address, bad credentials or a server too old fail at
/// once.
pub async fn connect(urls: &str) -> Result<async_nats::Client, BusError> {
    use async_nats::ConnectErrorKind;
    let servers = seed_servers(urls)?;
    let mut attempts = 0_u32;
    let client = loop {
        match async_nats::ConnectOptions::new()
            .name("jifen")
            .connect(servers.clone())
            .await
        {
            Ok(client) => break client,
            Err(source)
                if matches!(
                    source.kind(),
                    ConnectErrorKind::Io | ConnectErrorKind::TimedOut | ConnectErrorKind::Dns
                ) =>
            {
                attempts = attempts.saturating_add(1);
                let delay = crate::retry::doubling(
                    std::time::Duration::from_millis(250),
                    attempts,
                    std::time::Duration::from_secs(5),
                );
                tracing::warn!(url = urls, error = %source, attempts, ?delay, "NATS is not answering yet; retrying");
                tokio::time::sleep(delay).await;
            }
            Err(source) => {
                return Err(BusError::Connect {
                    url: urls.to_owned(),
                    source,
                });
            }
        }
    };
    if attempts > 0 {
        tracing::info!(url = urls, attempts, "connected to NATS");
    }
    let found = client.server_info().version;
    match parse_version(&found) {
        Some(version) if version >= MIN_VERSION => Ok(client),
        _ => Err(BusError::ServerTooOld {
            url: urls.to_owned(),
            found,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_servers_take_a_comma_separated_list() {
        assert_eq!(seed_servers("nats://a:4222").unwrap().len(), 1);
        assert_eq!(
            seed_servers("nats://a:4222, nats://b:4222,nats://c:4222")
                .unwrap()
                .len(),
            3
        );
        assert!(matches!(seed_servers(" , "), Err(BusError::NoServers)));
        assert!(matches!(
            seed_servers("nats://a:4222,nats://b:port"),
            Err(BusError::BadUrl { .. })
        ));
    }
}
