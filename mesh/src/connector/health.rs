//! What a connector learns of its ledger from its own calls (issue 18): whether each call was
//! answered and how long it took, per minute for the last hour, sent every few seconds on
//! `jifen.health.<consumer>` for the mall to judge the ledger up, degraded or down. A connector
//! whose ledger stopped answering asks it something harmless now and then (a query for a key
//! that never exists), so a recovery shows without waiting for orders.

use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use jifen_proto::v1::{CallMinute, LedgerHealthReport, RetryingCommand};
use prost::Message as _;
use tokio_util::sync::CancellationToken;
use tonic::{Code, Status};

use super::{LedgerEndpoint, Recorded, is_pending};
use crate::bus::subjects::health_subject;
use crate::time::now_unix_ms;

/// Upper bounds of the latency buckets, in milliseconds; the last one takes everything longer.
pub const LATENCY_BOUNDS_MS: [u32; 11] = [
    10,
    25,
    50,
    100,
    250,
    500,
    1_000,
    2_500,
    5_000,
    10_000,
    u32::MAX,
];
/// How often a connector reports.
pub const REPORT_EVERY: Duration = Duration::from_secs(5);
/// Minutes a report covers.
pub const MINUTES: usize = 60;
/// Longest `last_error` a report carries.
pub const MAX_ERROR_CHARS: usize = 300;
/// The key a probe asks about: no order has it (order ids never start with `jifen-`).
pub const PROBE_KEY: &str = "jifen-health-probe";
/// Quiet time after a failed call before a probe.
const PROBE_AFTER_MS: i64 = 5_000;
/// Retrying commands a report names at most (the soonest to be tried again).
pub const MAX_RETRYING: usize = 500;

/// A connector's calls, as counted for its reports.
#[derive(Debug, Default)]
pub struct CallBook {
    window: Mutex<Window>,
    /// Commands waiting for their next delivery, by their message's stream sequence (the same
    /// on every redelivery).
    retrying: Mutex<std::collections::HashMap<u64, RetryingCommand>>,
}

#[derive(Debug, Default)]
struct Window {
    minutes: VecDeque<CallMinute>,
    last_ok_ms: i64,
    last_error_ms: i64,
    last_error: String,
    failures_in_a_row: u32,
    last_call_ms: i64,
}

/// Whether a call's result says the ledger answered: `None` for a result that involved no
/// call (a capability the ledger lacks).
pub fn answered(result: &Result<Recorded, Status>) -> Option<bool> {
    let Err(status) = result else {
        return Some(true);
    };
    match status.code() {
        Code::Unimplemented => None,
        // "Processing" is an answer.
        Code::Unknown => Some(is_pending(status)),
        Code::Unavailable
        | Code::DeadlineExceeded
        | Code::Internal
        | Code::ResourceExhausted
        | Code::DataLoss
        | Code::Cancelled
        | Code::Unauthenticated
        | Code::PermissionDenied => Some(false),
        // A business answer: rejected, not found, refunded first, invalid.
        _ => Some(true),
    }
}

fn bucket(elapsed: Duration) -> usize {
    let ms = u32::try_from(elapsed.as_millis()).unwrap_or(u32::MAX);
    LATENCY_BOUNDS_MS
        .iter()
        .position(|bound| ms <= *bound)
        .unwrap_or(LATENCY_BOUNDS_MS.len() - 1)
}

impl CallBook {
    fn window(&self) -> std::sync::MutexGuard<'_, Window> {
        self.window.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts one call that ended with `result` after `elapsed`.
    pub fn record(&self, result: &Result<Recorded, Status>, elapsed: Duration) {
        let Some(ok) = answered(result) else {
            return;
        };
        let now = now_unix_ms();
        let mut window = self.window();
        let minute = window.minute(now);
        if ok {
            minute.answered = minute.answered.saturating_add(1);
        } else {
            minute.failed = minute.failed.saturating_add(1);
        }
        if let Some(count) = minute.latency_buckets.get_mut(bucket(elapsed)) {
            *count = count.saturating_add(1);
        }
        window.last_call_ms = now;
        if ok {
            window.last_ok_ms = now;
            window.failures_in_a_row = 0;
        } else {
            window.last_error_ms = now;
            window.failures_in_a_row = window.failures_in_a_row.saturating_add(1);
            if let Err(status) = result {
                window.last_error = format!("{:?}: {}", status.code(), status.message())
                    .chars()
                    .take(MAX_ERROR_CHARS)
                    .collect();
            }
        }
    }

    /// Whether the ledger failed its last call and has not been called for a while.
    pub(super) fn wants_probe(&self, now: i64) -> bool {
        let window = self.window();
        window.failures_in_a_row > 0 && now.saturating_sub(window.last_call_ms) >= PROBE_AFTER_MS
    }

    fn retrying_book(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<u64, RetryingCommand>> {
        self.retrying.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Notes that the message at `sequence` waits for another delivery, and why and when.
    pub fn waiting(&self, sequence: u64, next: RetryingCommand) {
        self.retrying_book().insert(sequence, next);
    }

    /// Notes that the message at `sequence` is done with (handled, or dead-lettered).
    pub fn done(&self, sequence: u64) {
        let mut book = self.retrying_book();
        if !book.is_empty() {
            book.remove(&sequence);
        }
    }

    /// The report of the last hour.
    pub fn report(&self, consumer: &str, replica: &str) -> LedgerHealthReport {
        let now = now_unix_ms();
        let mut retrying: Vec<RetryingCommand> = {
            let mut book = self.retrying_book();
            // A command not seen again long after its retry was due went elsewhere (another
            // replica, a dead letter): forgotten.
            book.retain(|_, r| r.next_at_unix_ms > now - 300_000);
            book.values().cloned().collect()
        };
        retrying.sort_by_key(|r| r.next_at_unix_ms);
        retrying.truncate(MAX_RETRYING);
        let mut window = self.window();
        window.expire(now);
        LedgerHealthReport {
            consumer: consumer.to_owned(),
            replica: replica.to_owned(),
            sent_at_unix_ms: now,
            minutes: window.minutes.iter().cloned().collect(),
            last_ok_unix_ms: window.last_ok_ms,
            last_error_unix_ms: window.last_error_ms,
            last_error: window.last_error.clone(),
            failures_in_a_row: window.failures_in_a_row,
            retrying,
            hold_ttl_ms: 0,
        }
    }
}

impl Window {
    fn minute(&mut self, now: i64) -> &mut CallMinute {
        let start = now - now.rem_euclid(60_000);
        self.expire(now);
        if self.minutes.back().is_none_or(|m| m.start_unix_ms < start) {
            self.minutes.push_back(CallMinute {
                start_unix_ms: start,
                answered: 0,
                failed: 0,
                latency_buckets: vec![0; LATENCY_BOUNDS_MS.len()],
            });
        }
        // Just pushed or already there.
        let last = self.minutes.len() - 1;
        &mut self.minutes[last]
    }

    fn expire(&mut self, now: i64) {
        let oldest = now - now.rem_euclid(60_000) - (MINUTES as i64 - 1) * 60_000;
        while self
            .minutes
            .front()
            .is_some_and(|m| m.start_unix_ms < oldest)
        {
            self.minutes.pop_front();
        }
    }
}

/// The name of this process among its consumer group's replicas: the pod's name under
/// Kubernetes, else the host's, with the process id.
pub fn replica_name() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "local".to_owned());
    format!("{host}-{}", std::process::id())
}

/// Sends `watched`'s report every [`REPORT_EVERY`] until `shutdown`, probing a ledger that
/// stopped answering first. A report that cannot be sent is skipped: the next one replaces it.
pub async fn report<E: LedgerEndpoint>(
    client: async_nats::Client,
    consumer: String,
    watched: super::Watched<E>,
    shutdown: CancellationToken,
) {
    let replica = replica_name();
    let subject = health_subject(&consumer);
    let mut every = tokio::time::interval(REPORT_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = every.tick() => {}
        }
        if watched.book().wants_probe(now_unix_ms()) {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = watched.probe(&consumer) => {}
            }
        }
        let report = LedgerHealthReport {
            hold_ttl_ms: watched
                .hold_ttl()
                .map_or(0, |ttl| i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX)),
            ..watched.book().report(&consumer, &replica)
        };
        if let Err(error) = client
            .publish(subject.clone(), report.encode_to_vec().into())
            .await
        {
            tracing::debug!(%error, "health report not sent");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recorded() -> Recorded {
        Recorded {
            state: crate::barrier::LedgerState::Deducted,
            points: 1,
            reason: String::new(),
            key: None,
            deduct_may_follow: false,
            captured: Default::default(),
            exchanges: Vec::new(),
            hold_expires_at_ms: 0,
        }
    }

    #[test]
    fn answers_and_failures_are_counted_apart_and_a_failure_run_resets() {
        let book = CallBook::default();
        let ms = Duration::from_millis;
        book.record(&Ok(recorded()), ms(3));
        book.record(&Err(Status::failed_precondition("not enough")), ms(30));
        book.record(&Err(Status::unavailable("connection refused")), ms(2));
        book.record(&Err(Status::deadline_exceeded("timed out")), ms(20_000));
        book.record(&Err(Status::unimplemented("no query call")), ms(1));
        let report = book.report("channel-alpha", "r1");
        assert_eq!(report.failures_in_a_row, 2);
        assert!(
            report.last_error.contains("timed out"),
            "{}",
            report.last_error
        );
        let minute = report.minutes.last().unwrap();
        assert_eq!((minute.answered, minute.failed), (2, 2));
        assert_eq!(minute.latency_buckets.iter().sum::<u32>(), 4);
        assert_eq!(minute.latency_buckets[0], 2);
        assert_eq!(minute.latency_buckets[LATENCY_BOUNDS_MS.len() - 1], 1);
        book.record(&Err(crate::connector::pending_status("processing")), ms(5));
        assert_eq!(book.report("channel-alpha", "r1").failures_in_a_row, 0);
    }

    #[test]
    fn a_failing_ledger_left_alone_is_probed() {
        let book = CallBook::default();
        book.record(&Err(Status::unavailable("down")), Duration::ZERO);
        let now = now_unix_ms();
        assert!(!book.wants_probe(now));
        assert!(book.wants_probe(now + PROBE_AFTER_MS));
        book.record(&Ok(recorded()), Duration::ZERO);
        assert!(!book.wants_probe(now + PROBE_AFTER_MS));
    }

    #[test]
    fn minutes_older_than_an_hour_fall_out() {
        let mut window = Window::default();
        let now = 10 * 3_600_000;
        window.minute(now - 2 * 3_600_000);
        window.minute(now - 30 * 60_000);
        window.minute(now);
        window.expire(now);
        assert_eq!(window.minutes.len(), 2);
    }
}
