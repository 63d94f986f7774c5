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

/// Connects and checks the server version.
pub async fn connect(url: &str) -> Result<async_nats::Client, BusError> {
    let client = async_nats::ConnectOptions::new()
        .name("jifen")
        .connect(url)
        .await
        .map_err(|source| BusError::Connect {
            url: url.to_owned(),
            source,
        })?;
    let found = client.server_info().version;
    match parse_version(&found) {
        Some(version) if version >= MIN_VERSION => Ok(client),
        _ => Err(BusError::ServerTooOld {
            url: url.to_owned(),
            found,
        }),
    }
}
