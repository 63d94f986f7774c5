//! The streams, created or updated idempotently at start by every system that uses them.
//!
//! `JIFEN_CMD` and `JIFEN_EVT` are work queues on file storage: a message leaves once its one
//! consumer group acks it. Their duplicate window lets the server drop a message republished
//! under the same `Nats-Msg-Id` (a relay that crashed after publishing, before marking).
//! `JIFEN_DLQ` keeps dead letters and `JIFEN_ADVISORY` the server's advisories, for weeks.

use std::time::Duration;

use async_nats::jetstream::{self, stream};

use super::BusError;
use super::subjects::{
    ADVISORY_STREAM, ADVISORY_SUBJECTS, CMD_STREAM, CMD_SUBJECTS, DLQ_STREAM, DLQ_SUBJECTS,
    EVT_STREAM, EVT_SUBJECTS,
};

/// How the streams are laid out.
#[derive(Debug, Clone)]
pub struct Topology {
    /// Stream replicas: 1 on a single server, 3 on a production cluster.
    pub replicas: usize,
    pub duplicate_window: Duration,
    /// How long dead letters and advisories are kept.
    pub dead_letters_kept: Duration,
}

impl Default for Topology {
    fn default() -> Self {
        Self {
            replicas: 1,
            duplicate_window: Duration::from_secs(5 * 60),
            dead_letters_kept: Duration::from_secs(30 * 24 * 3600),
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

    fn kept(&self, name: &str, subjects: &[&str], max_age: Duration) -> stream::Config {
        stream::Config {
            name: name.to_owned(),
            subjects: subjects.iter().map(|s| (*s).to_owned()).collect(),
            retention: stream::RetentionPolicy::Limits,
            storage: stream::StorageType::File,
            num_replicas: self.replicas,
            duplicate_window: self.duplicate_window,
            max_age,
            ..Default::default()
        }
    }

    /// Creates the command, event, dead-letter and advisory streams, or updates them to this
    /// configuration.
    pub async fn ensure(&self, js: &jetstream::Context) -> Result<(), BusError> {
        for config in [
            self.work_queue(CMD_STREAM, CMD_SUBJECTS),
            self.work_queue(EVT_STREAM, EVT_SUBJECTS),
            self.kept(DLQ_STREAM, &[DLQ_SUBJECTS], self.dead_letters_kept),
            // Advisories are published only while something listens: this stream listens
            // always, so none is lost while the forwarder is down.
            self.kept(ADVISORY_STREAM, &ADVISORY_SUBJECTS, self.dead_letters_kept),
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
