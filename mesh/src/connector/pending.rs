//! A ledger's "accepted, processing" (DESIGN §9): neither applied nor refused yet. The command
//! is asked about again on the endpoint's poll schedule — nak'ed with the next delay, so it
//! holds no consumer slot meanwhile — and becomes an operator's unknown outcome past the
//! deadline. The book of pending commands also lets a partner's notification settle one at
//! once ([`PendingBook::find`]); after a restart the book is empty and polling alone settles
//! them, as the commands come back.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use tonic::Status;

use super::LedgerCommand;
use crate::bus::publish::{Outgoing, Publisher};

const PENDING_METADATA: &str = "jifen-pending";

/// The status a ledger endpoint answers for "processing". Its code says "may have been
/// applied", so a caller that knows nothing of pending answers stays safe.
pub fn pending_status(message: impl Into<String>) -> Status {
    let mut status = Status::unknown(message);
    status.metadata_mut().insert(
        PENDING_METADATA,
        tonic::metadata::MetadataValue::from_static("1"),
    );
    status
}

pub fn is_pending(status: &Status) -> bool {
    status.metadata().get(PENDING_METADATA).is_some()
}

/// When a pending command is asked about again, and until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PollSchedule {
    /// The waits before each query; the last repeats.
    pub delays: Vec<Duration>,
    /// Past this, counted from the first "processing", the outcome is an operator's.
    pub deadline: Duration,
}

impl PollSchedule {
    /// The wait before poll `n` (from 0): its step of the schedule, the last repeating.
    pub fn delay(&self, n: usize) -> Option<Duration> {
        self.delays.get(n).or(self.delays.last()).copied()
    }

    /// How many deliveries polling may take before the deadline: the consumer's
    /// `max_deliver` must leave room for them.
    pub fn polls(&self) -> usize {
        let mut waited = Duration::ZERO;
        let mut polls = 0;
        while waited < self.deadline {
            let step = self.delay(polls).unwrap_or(self.deadline);
            waited += step.max(Duration::from_millis(1));
            polls += 1;
        }
        polls
    }
}

#[derive(Debug)]
struct Entry {
    since: Instant,
    polls: usize,
    command: LedgerCommand,
    command_id: String,
    partner_key: Option<String>,
}

/// What a connector's pending commands wait for.
#[derive(Debug, Default)]
pub struct PendingBook {
    entries: Mutex<HashMap<String, Entry>>,
    publisher: OnceLock<Publisher>,
}

/// What to do with a command answered "processing".
#[derive(Debug, PartialEq, Eq)]
pub enum Wait {
    /// Ask again after this.
    After(Duration),
    /// The deadline passed while it was processing.
    Expired(Duration),
}

fn entry_key(command: &LedgerCommand) -> String {
    format!(
        "{}\u{1f}{}\u{1f}{}\u{1f}{}",
        command.step.as_str(),
        command.order_id,
        command.channel_id,
        command.user_id
    )
}

impl PendingBook {
    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(super) fn set_publisher(&self, publisher: Publisher) {
        let _ = self.publisher.set(publisher);
    }

    /// Notes one more "processing" for `command`: when to ask again, or that it is too late.
    pub(super) fn wait(
        &self,
        command: &LedgerCommand,
        command_id: &str,
        partner_key: Option<String>,
        schedule: &PollSchedule,
    ) -> Wait {
        let mut entries = self.entries();
        let key = entry_key(command);
        let entry = entries.entry(key.clone()).or_insert_with(|| Entry {
            since: Instant::now(),
            polls: 0,
            command: command.clone(),
            command_id: command_id.to_owned(),
            partner_key,
        });
        let waited = entry.since.elapsed();
        if waited >= schedule.deadline {
            entries.remove(&key);
            return Wait::Expired(waited);
        }
        let delay = schedule
            .delay(entry.polls)
            .unwrap_or(Duration::from_secs(1));
        entry.polls += 1;
        Wait::After(
            delay
                .min(schedule.deadline.saturating_sub(waited))
                .max(Duration::from_millis(1)),
        )
    }

    /// The command settled: it waits no more.
    pub(super) fn settled(&self, command: &LedgerCommand) {
        let mut entries = self.entries();
        if !entries.is_empty() {
            entries.remove(&entry_key(command));
        }
    }

    /// The pending command the partner knows by `partner_key`, and the id of its message.
    pub fn find(&self, partner_key: &str) -> Option<(LedgerCommand, String)> {
        self.entries()
            .values()
            .find(|e| e.partner_key.as_deref() == Some(partner_key))
            .map(|e| (e.command.clone(), e.command_id.clone()))
    }

    /// How many commands wait.
    pub fn len(&self) -> usize {
        self.entries().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Publishes an outcome learned from a notification; the command's next poll finds the
    /// same and publishes it again under the same message id, which the server drops.
    pub async fn publish(&self, event: &Outgoing) -> Result<(), String> {
        let publisher = self
            .publisher
            .get()
            .ok_or("the connector is not connected yet")?;
        publisher.publish(event).await.map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::subjects::Step;

    fn command() -> LedgerCommand {
        LedgerCommand {
            step: Step::Deduct,
            order_id: "o-1".into(),
            channel_id: "zeta".into(),
            user_id: "u1".into(),
            points: 10,
            captured: Default::default(),
            hold_expires_at_ms: 0,
        }
    }

    #[test]
    fn polls_follow_the_schedule_and_expire_at_the_deadline() {
        let schedule = PollSchedule {
            delays: vec![Duration::from_secs(1), Duration::from_secs(5)],
            deadline: Duration::from_secs(20),
        };
        assert_eq!(schedule.polls(), 5, "1 + 5 + 5 + 5 + 5 ≥ 20");
        let book = PendingBook::default();
        let waits: Vec<Wait> = (0..3)
            .map(|_| book.wait(&command(), "id", Some("k".into()), &schedule))
            .collect();
        assert_eq!(
            waits,
            vec![
                Wait::After(Duration::from_secs(1)),
                Wait::After(Duration::from_secs(5)),
                Wait::After(Duration::from_secs(5)),
            ]
        );
        assert_eq!(book.find("k").map(|(c, _)| c), Some(command()));
        book.settled(&command());
        assert!(book.is_empty());
        let instant = PollSchedule {
            delays: vec![],
            deadline: Duration::ZERO,
        };
        assert!(matches!(
            book.wait(&command(), "id", None, &instant),
            Wait::Expired(_)
        ));
    }

    #[test]
    fn a_pending_status_is_an_unknown_outcome_to_whoever_ignores_it() {
        let status = pending_status("processing");
        assert!(is_pending(&status));
        assert_eq!(status.code(), tonic::Code::Unknown);
        assert!(!is_pending(&Status::unknown("lost")));
    }
}
