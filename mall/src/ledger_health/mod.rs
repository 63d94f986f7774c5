//! The ledgers' health as their connectors see it (issue 18): each connector reports its calls
//! every few seconds on `jifen.health.<consumer>` ([`jifen_mesh::connector::health`]); the
//! board keeps the latest report of each replica and judges every consumer group up, degraded
//! or down. The console, `jifen admin channels`, the metrics and the automatic redrive read it.
//!
//! A report crosses a boundary: one that does not fit (another consumer than its subject names,
//! too many minutes, odd buckets) is dropped. The subject is the connector's own by the bus's
//! permissions (DESIGN §11), so a channel can only speak for itself.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use jifen_mesh::bus::subjects::{HEALTH_SUBJECTS, consumer_channel, health_consumer};
use jifen_mesh::connector::health::{LATENCY_BOUNDS_MS, MAX_ERROR_CHARS, MINUTES, REPORT_EVERY};
use jifen_mesh::domain::ChannelId;
use jifen_mesh::time::now_unix_ms;
use jifen_proto::v1::LedgerHealthReport;
use prost::Message as _;
use tokio_util::sync::CancellationToken;

mod judge;

use judge::{Group, judge};
pub use judge::{Health, LedgerHealth};

/// Replicas of one consumer group kept at most: reports under more names (a connector that
/// makes up names) are dropped until some go silent.
const MAX_REPLICAS: usize = 64;

/// The latest reports, by consumer group.
#[derive(Debug, Default)]
pub struct HealthBoard {
    groups: Mutex<HashMap<String, Group>>,
    /// What each group's latest report declared of holds (its hold TTL in ms, 0 for none): kept
    /// while its connectors are silent, so that an outage does not switch a channel's protocol.
    holds: Mutex<HashMap<String, i64>>,
}

/// Why a report does not fit.
fn misfit(subject: &str, report: &LedgerHealthReport) -> Option<&'static str> {
    let consumer = health_consumer(subject)?;
    if report.consumer != consumer {
        return Some("names another consumer than its subject");
    }
    let named = match consumer_channel(consumer) {
        Some(id) => ChannelId::parse("channel_id", id).is_ok(),
        None => consumer == jifen_mesh::bus::subjects::PORTAL_CONSUMER,
    };
    if !named {
        return Some("no connector's consumer");
    }
    if report.replica.is_empty() || report.replica.len() > 200 {
        return Some("bad replica name");
    }
    if report.minutes.len() > MINUTES
        || report
            .minutes
            .iter()
            .any(|m| m.latency_buckets.len() != LATENCY_BOUNDS_MS.len())
    {
        return Some("minutes do not fit");
    }
    if report.last_error.chars().count() > MAX_ERROR_CHARS {
        return Some("last error too long");
    }
    if report.retrying.len() > jifen_mesh::connector::health::MAX_RETRYING
        || report.retrying.iter().any(|r| {
            r.order_id.len() > 200
                || r.user_id.len() > 200
                || r.step.len() > 16
                || r.last_error.chars().count() > MAX_ERROR_CHARS
        })
    {
        return Some("retrying commands do not fit");
    }
    None
}

impl HealthBoard {
    fn groups(&self) -> std::sync::MutexGuard<'_, HashMap<String, Group>> {
        self.groups.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes a report that came on `subject`; `false` when it was dropped.
    pub fn receive(&self, subject: &str, payload: &[u8], now: i64) -> bool {
        let Ok(report) = LedgerHealthReport::decode(payload) else {
            tracing::debug!(subject, "undecodable health report dropped");
            return false;
        };
        if health_consumer(subject).is_none() {
            return false;
        }
        if let Some(why) = misfit(subject, &report) {
            tracing::debug!(subject, why, "health report dropped");
            return false;
        }
        let consumer = report.consumer.clone();
        self.holds
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(consumer.clone(), report.hold_ttl_ms.max(0));
        let mut groups = self.groups();
        let group = groups.entry(consumer.clone()).or_default();
        group.forget_silent(now);
        if group.replicas.len() >= MAX_REPLICAS && !group.replicas.contains_key(&report.replica) {
            tracing::warn!(consumer, "health report of one replica too many dropped");
            return false;
        }
        group.replicas.insert(report.replica.clone(), (now, report));
        let judged = judge(&consumer, group, now);
        note_change(group, &judged);
        true
    }

    /// How long `consumer`'s holds live, where its connectors declare that its ledger holds
    /// points (TCC, DESIGN §12); `None` where they take points by deduct, or never reported.
    pub fn hold_ttl(&self, consumer: &str) -> Option<std::time::Duration> {
        let holds = self.holds.lock().unwrap_or_else(PoisonError::into_inner);
        holds
            .get(consumer)
            .filter(|ttl| **ttl > 0)
            .map(|ttl| std::time::Duration::from_millis(u64::try_from(*ttl).unwrap_or(0)))
    }

    /// Every consumer group that reported, judged now.
    pub fn all(&self) -> Vec<LedgerHealth> {
        let now = now_unix_ms();
        let mut groups = self.groups();
        let mut all: Vec<_> = groups
            .iter_mut()
            .map(|(consumer, group)| {
                let judged = judge(consumer, group, now);
                note_change(group, &judged);
                judged
            })
            .collect();
        all.sort_by(|a, b| a.consumer.cmp(&b.consumer));
        all
    }

    /// What `consumer`'s connectors say of a command of `order_id` and `user_id` that waits
    /// for its next delivery: its attempt, last error and next try.
    pub fn retrying(
        &self,
        consumer: &str,
        order_id: &str,
        user_id: &str,
    ) -> Option<jifen_proto::v1::RetryingCommand> {
        let groups = self.groups();
        groups
            .get(consumer)?
            .replicas
            .values()
            .flat_map(|(_, report)| &report.retrying)
            .filter(|r| r.order_id == order_id && r.user_id == user_id)
            .max_by_key(|r| r.attempt)
            .cloned()
    }

    /// One consumer group, judged now (`Unknown` when it never reported).
    pub fn get(&self, consumer: &str) -> LedgerHealth {
        let now = now_unix_ms();
        let mut groups = self.groups();
        match groups.get_mut(consumer) {
            Some(group) => {
                let judged = judge(consumer, group, now);
                note_change(group, &judged);
                judged
            }
            None => judge(consumer, &mut Group::default(), now),
        }
    }
}

/// Keeps when the ledger began answering, and says so in the log and the metrics when its
/// state changes.
fn note_change(group: &mut Group, judged: &LedgerHealth) {
    group.answering_since_ms = judged.answering_since_ms;
    let consumer = judged.consumer.as_str();
    jifen_mesh::metrics::LEDGER_HEALTH
        .with_label_values(&[consumer])
        .set(judged.health.gauge());
    jifen_mesh::metrics::LEDGER_ERROR_RATIO
        .with_label_values(&[consumer])
        .set(judged.error_percent() / 100.0);
    if let Some(p99) = judged.p99_ms {
        jifen_mesh::metrics::LEDGER_LATENCY_P99
            .with_label_values(&[consumer])
            .set(f64::from(p99) / 1000.0);
    }
    if group.last_health == Some(judged.health) {
        return;
    }
    let was = group.last_health.replace(judged.health);
    match judged.health {
        Health::Down => {
            tracing::error!(consumer, why = %judged.why, last_error = %judged.last_error, "ledger down")
        }
        Health::Up if was.is_some() => tracing::info!(consumer, "ledger up"),
        Health::Up => {}
        other => {
            tracing::warn!(consumer, health = other.as_str(), why = %judged.why, "ledger health changed")
        }
    }
}

/// Reads the connectors' reports into `board` until `shutdown`, subscribing again after the
/// connection comes back.
pub async fn listen(
    client: async_nats::Client,
    board: std::sync::Arc<HealthBoard>,
    shutdown: CancellationToken,
) {
    jifen_mesh::bus::listen::listen(
        &client,
        HEALTH_SUBJECTS,
        REPORT_EVERY,
        &shutdown,
        |report| {
            board.receive(report.subject.as_str(), &report.payload, now_unix_ms());
        },
    )
    .await;
}

#[cfg(test)]
mod tests {
    use super::judge::{STALE_MS, percentile};
    use super::*;
    use jifen_proto::v1::CallMinute;

    fn report(replica: &str, answered: u32, failed: u32, in_a_row: u32, now: i64) -> Vec<u8> {
        let mut buckets = vec![0; LATENCY_BOUNDS_MS.len()];
        buckets[2] = answered + failed;
        LedgerHealthReport {
            consumer: "channel-alpha".into(),
            replica: replica.into(),
            sent_at_unix_ms: now,
            minutes: vec![CallMinute {
                start_unix_ms: now - now.rem_euclid(60_000),
                answered,
                failed,
                latency_buckets: buckets,
            }],
            last_ok_unix_ms: now,
            last_error_unix_ms: if failed > 0 { now } else { 0 },
            last_error: if failed > 0 {
                "Unavailable: refused".into()
            } else {
                String::new()
            },
            failures_in_a_row: in_a_row,
            retrying: Vec::new(),
            hold_ttl_ms: 0,
        }
        .encode_to_vec()
    }

    const SUBJECT: &str = "jifen.health.channel-alpha";

    #[test]
    fn a_ledger_is_judged_from_every_replica() {
        let board = HealthBoard::default();
        let now = now_unix_ms();
        assert_eq!(board.get("channel-alpha").health, Health::Unknown);
        assert!(board.receive(SUBJECT, &report("a", 100, 0, 0, now), now));
        let up = board.get("channel-alpha");
        assert_eq!(up.health, Health::Up);
        assert_eq!(up.p99_ms, Some(50));
        assert!(up.answering_since_ms.is_some());
        // One replica failing: degraded; both: down.
        board.receive(SUBJECT, &report("b", 0, 3, 3, now), now);
        assert_eq!(board.get("channel-alpha").health, Health::Degraded);
        assert_eq!(board.get("channel-alpha").answering_since_ms, None);
        board.receive(SUBJECT, &report("a", 100, 4, 4, now), now);
        let down = board.get("channel-alpha");
        assert_eq!(down.health, Health::Down);
        assert_eq!(down.replicas, 2);
        assert!(down.last_error.contains("refused"));
        // Many failures lately, though the last calls were answered: degraded.
        board.receive(SUBJECT, &report("a", 10, 5, 0, now), now);
        board.receive(SUBJECT, &report("b", 10, 0, 0, now), now);
        assert_eq!(board.get("channel-alpha").health, Health::Degraded);
    }

    #[test]
    fn a_report_that_does_not_fit_its_subject_is_dropped() {
        let board = HealthBoard::default();
        let now = now_unix_ms();
        assert!(!board.receive("jifen.health.channel-beta", &report("a", 1, 0, 0, now), now));
        assert!(!board.receive(SUBJECT, b"not a report \xff\xff", now));
        assert!(board.all().is_empty());
    }

    #[test]
    fn a_connector_making_up_replica_names_cannot_grow_the_board() {
        let board = HealthBoard::default();
        let now = now_unix_ms();
        for n in 0..MAX_REPLICAS {
            assert!(board.receive(SUBJECT, &report(&format!("r{n}"), 1, 0, 0, now), now));
        }
        assert!(!board.receive(SUBJECT, &report("one-more", 1, 0, 0, now), now));
        // A known replica still reports.
        assert!(board.receive(SUBJECT, &report("r0", 2, 0, 0, now), now));
        assert_eq!(board.get("channel-alpha").replicas, MAX_REPLICAS);
    }

    #[test]
    fn a_silent_replica_is_forgotten() {
        let board = HealthBoard::default();
        let now = now_unix_ms();
        board.receive(
            SUBJECT,
            &report("a", 1, 0, 0, now - STALE_MS - 1),
            now - STALE_MS - 1,
        );
        assert_eq!(board.get("channel-alpha").health, Health::Unknown);
    }

    #[test]
    fn percentiles_come_from_the_buckets() {
        let mut buckets = [0u64; LATENCY_BOUNDS_MS.len()];
        buckets[0] = 98;
        buckets[5] = 2;
        assert_eq!(percentile(&buckets, 50), Some(10));
        assert_eq!(percentile(&buckets, 99), Some(500));
        assert_eq!(percentile(&[0; 11], 99), None);
    }
}
