//! The streams, created or updated idempotently at start by every system that uses them.
//!
//! `JIFEN_CMD` and `JIFEN_EVT` are work queues on file storage: a message leaves once its one
//! consumer group acks it. Their duplicate window lets the server drop a message republished
//! under the same `Nats-Msg-Id` (a relay that crashed after publishing, before marking).

use std::time::Duration;

use async_nats::jetstream::{self, stream};

use super::BusError;
use super::subjects::{CMD_STREAM, CMD_SUBJECTS, EVT_STREAM, EVT_SUBJECTS};

/// How the streams are laid out.
#[derive(Debug, Clone)]
pub struct Topology {
    /// Stream replicas: 1 on a single server, 3 on a production cluster.
    pub replicas: usize,
    pub duplicate_window: Duration,
}

impl Default for Topology {
    fn default() -> Self {
        Self {
            replicas: 1,
            duplicate_window: Duration::from_secs(5 * 60),
        }
    }
}

impl Topology {
    fn work_queue(&self, name: &str, subjects: &str) -> stream::Config {
        stream::Config {
            name: name.to_owned(),
            subjects: vec![subjects.to_owned()],
            retention: stream::RetentionPolicy::WorkQueue,
            storage: stream::StorageType::File,
            num_replicas: self.replicas,
            duplicate_window: self.duplicate_window,
            ..Default::default()
        }
    }

    /// Creates the command and event streams, or updates them to this configuration.
    pub async fn ensure(&self, js: &jetstream::Context) -> Result<(), BusError> {
        for config in [
            self.work_queue(CMD_STREAM, CMD_SUBJECTS),
            self.work_queue(EVT_STREAM, EVT_SUBJECTS),
        ] {
            let name = config.name.clone();
            js.create_or_update_stream(config)
                .await
                .map_err(|e| BusError::Stream {
                    stream: name,
                    reason: e.to_string(),
                })?;
        }
        Ok(())
    }
}
