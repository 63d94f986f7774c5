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
            // Not even `ops` purges a queue of commands by mistake. Single messages stay
            // deletable: the dead-letter forwarder removes what it copied.
            deny_purge: true,
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
            // Dead letters and advisories are evidence: they leave by age alone.
            deny_delete: true,
            deny_purge: true,
            ..Default::default()
        }
    }

    /// Creates the command, event, dead-letter and advisory streams that are missing. A stream
    /// that exists is left as it is, with a warning where it differs from this process's
    /// configuration: a process started with other settings (say without
    /// `JIFEN_STREAM_REPLICAS=3`) must never turn a cluster's R3 streams into R1.
    pub async fn ensure(&self, js: &jetstream::Context) -> Result<(), BusError> {
        for wanted in [
            self.work_queue(CMD_STREAM, CMD_SUBJECTS),
            self.work_queue(EVT_STREAM, EVT_SUBJECTS),
            self.kept(DLQ_STREAM, &[DLQ_SUBJECTS], self.dead_letters_kept),
            // Advisories are published only while something listens: this stream listens
            // always, so none is lost while the forwarder is down.
            self.kept(ADVISORY_STREAM, &ADVISORY_SUBJECTS, self.dead_letters_kept),
        ] {
            // A cluster that is starting or electing answers late: try again for a while.
            let mut attempts = 0_u32;
            loop {
                match ensure_one(js, &wanted).await {
                    Ok(()) => break,
                    Err(error) if attempts < 8 => {
                        attempts += 1;
                        let delay = crate::retry::doubling(
                            Duration::from_millis(500),
                            attempts,
                            Duration::from_secs(8),
                        );
                        tracing::warn!(%error, attempts, ?delay, "cannot check the stream yet; retrying");
                        tokio::time::sleep(delay).await;
                    }
                    Err(error) => return Err(error),
                }
            }
        }
        Ok(())
    }
}

impl Topology {
    /// Checks that the streams exist, without creating any: what a connector does, whose
    /// identity may look streams up but not create them (DESIGN §11).
    /// The streams that are not there (deleted by hand, or lost with a server's storage);
    /// streams it cannot ask about are not counted.
    pub async fn missing(&self, js: &jetstream::Context) -> Vec<&'static str> {
        let mut missing = Vec::new();
        for name in [CMD_STREAM, EVT_STREAM, DLQ_STREAM, ADVISORY_STREAM] {
            if let Err(error) = js.get_stream(name).await
                && is_not_found(&error)
            {
                missing.push(name);
            }
        }
        missing
    }

    pub async fn check(&self, js: &jetstream::Context) -> Result<(), BusError> {
        for name in [CMD_STREAM, EVT_STREAM, DLQ_STREAM] {
            js.get_stream(name).await.map_err(|e| BusError::Stream {
                stream: name.to_owned(),
                reason: format!("not there yet (the mall creates it): {e}"),
            })?;
        }
        Ok(())
    }
}

/// Creates one stream if it is missing; warns where an existing one differs.
async fn ensure_one(js: &jetstream::Context, wanted: &stream::Config) -> Result<(), BusError> {
    let name = wanted.name.as_str();
    let stream_error = |reason: String| BusError::Stream {
        stream: name.to_owned(),
        reason,
    };
    let existing = match js.get_stream(name).await {
        Ok(mut stream) => stream
            .info()
            .await
            .map_err(|e| stream_error(e.to_string()))?
            .config
            .clone(),
        Err(error) if is_not_found(&error) => {
            tracing::info!(stream = %name, replicas = wanted.num_replicas, "creating the stream");
            // Another process may create it at the same moment: take theirs then.
            if let Err(error) = js.create_stream(wanted.clone()).await
                && js.get_stream(name).await.is_err()
            {
                return Err(stream_error(error.to_string()));
            }
            return Ok(());
        }
        Err(error) => return Err(stream_error(error.to_string())),
    };
    let differences = differences(&existing, wanted);
    if !differences.is_empty() {
        tracing::warn!(
            stream = %name,
            differences = %differences.join("; "),
            "the stream differs from this process's configuration; left as it is"
        );
    }
    Ok(())
}

fn is_not_found(error: &async_nats::jetstream::context::GetStreamError) -> bool {
    use async_nats::jetstream::ErrorCode;
    use async_nats::jetstream::context::GetStreamErrorKind;
    matches!(error.kind(), GetStreamErrorKind::JetStream(e) if e.error_code() == ErrorCode::STREAM_NOT_FOUND)
}

/// What an existing stream's settings say that this process would have set otherwise.
fn differences(existing: &stream::Config, wanted: &stream::Config) -> Vec<String> {
    let mut found = Vec::new();
    let mut differ = |what: &str, have: String, want: String| {
        if have != want {
            found.push(format!("{what} is {have}, configured {want}"));
        }
    };
    differ(
        "replicas",
        existing.num_replicas.to_string(),
        wanted.num_replicas.to_string(),
    );
    differ(
        "retention",
        format!("{:?}", existing.retention),
        format!("{:?}", wanted.retention),
    );
    differ(
        "storage",
        format!("{:?}", existing.storage),
        format!("{:?}", wanted.storage),
    );
    differ(
        "subjects",
        existing.subjects.join(","),
        wanted.subjects.join(","),
    );
    differ(
        "duplicate window",
        format!("{:?}", existing.duplicate_window),
        format!("{:?}", wanted.duplicate_window),
    );
    differ(
        "max age",
        format!("{:?}", existing.max_age),
        format!("{:?}", wanted.max_age),
    );
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_name_each_setting_that_differs() {
        let r3 = Topology {
            replicas: 3,
            ..Default::default()
        };
        let r1 = Topology::default();
        let existing = r3.work_queue(CMD_STREAM, CMD_SUBJECTS);
        assert!(differences(&existing, &existing).is_empty());
        let found = differences(&existing, &r1.work_queue(CMD_STREAM, CMD_SUBJECTS));
        assert_eq!(found, vec!["replicas is 3, configured 1".to_owned()]);
        let kept = r3.kept(CMD_STREAM, &[CMD_SUBJECTS], Duration::from_secs(60));
        assert!(
            differences(&existing, &kept)
                .iter()
                .any(|d| d.starts_with("retention"))
        );
    }
}
