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

use futures_util::StreamExt as _;
use jifen_mesh::bus::subjects::{HEALTH_SUBJECTS, consumer_channel, health_consumer};
use jifen_mesh::connector::health::{LATENCY_BOUNDS_MS, MAX_ERROR_CHARS, MINUTES, REPORT_EVERY};
use jifen_mesh::domain::ChannelId;
use jifen_mesh::time::now_unix_ms;
use jifen_proto::v1::LedgerHealthReport;
use prost::Message as _;
use tokio_util::sync::CancellationToken;

/// Minutes the status and the figures look back on.
const RECENT_MINUTES: i64 = 5;
/// A replica silent this long is gone.
const STALE_MS: i64 = 4 * REPORT_EVERY.as_millis() as i64;
/// Failed calls in a row (at every replica) that make a ledger down.
const DOWN_AFTER: u32 = 3;
/// Slowest p99 that is not yet degraded.
const SLOW_P99_MS: u32 = 2_500;
/// Replicas of one consumer group kept at most: reports under more names (a connector that
/// makes up names) are dropped until some go silent.
const MAX_REPLICAS: usize = 64;

/// A ledger's state, worst last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Up,
    Degraded,
    Down,
    /// No connector has reported lately (none runs, or it cannot reach the bus).
    Unknown,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Up => "up",
            Self::Degraded => "degraded",
            Self::Down => "down",
            Self::Unknown => "unknown",
        }
    }

    /// The value of `jifen_ledger_health`.
    fn gauge(self) -> i64 {
        match self {
            Self::Up => 2,
            Self::Degraded => 1,
            Self::Down => 0,
            Self::Unknown => -1,
        }
    }
}

/// One consumer group's ledger, judged.
#[derive(Debug, Clone, PartialEq)]
pub struct LedgerHealth {
    pub consumer: String,
    pub health: Health,
    /// Why, in a few words.
    pub why: String,
    /// Calls of the last minutes the ledger answered, and did not.
    pub answered: u64,
    pub failed: u64,
    pub p50_ms: Option<u32>,
    pub p99_ms: Option<u32>,
    pub last_error: String,
    /// 0 when never.
    pub last_error_at_ms: i64,
    pub last_ok_at_ms: i64,
    pub replicas: usize,
    /// Since when every replica's last call was answered; `None` while one fails.
    pub answering_since_ms: Option<i64>,
    /// The last hour per minute, oldest first: (minute's start, answered, failed).
    pub minutes: Vec<(i64, u64, u64)>,
}

impl LedgerHealth {
    /// The share of failed calls in the last minutes, in percent.
    pub fn error_percent(&self) -> f64 {
        let total = self.answered + self.failed;
        if total == 0 {
            0.0
        } else {
            self.failed as f64 * 100.0 / total as f64
        }
    }
}

#[derive(Debug, Default)]
struct Group {
    /// By replica: when its report came, and the report.
    replicas: HashMap<String, (i64, LedgerHealthReport)>,
    answering_since_ms: Option<i64>,
    last_health: Option<Health>,
}

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

impl Group {
    /// Forgets the replicas that have not reported lately.
    fn forget_silent(&mut self, now: i64) {
        self.replicas
            .retain(|_, (received, _)| now.saturating_sub(*received) < STALE_MS);
    }
}

fn judge(consumer: &str, group: &mut Group, now: i64) -> LedgerHealth {
    group.forget_silent(now);
    let reports: Vec<&LedgerHealthReport> = group.replicas.values().map(|(_, r)| r).collect();
    let recent_from = now - now.rem_euclid(60_000) - (RECENT_MINUTES - 1) * 60_000;
    let mut per_minute: std::collections::BTreeMap<i64, (u64, u64)> = Default::default();
    let mut buckets = [0u64; LATENCY_BOUNDS_MS.len()];
    let (mut answered, mut failed) = (0u64, 0u64);
    for minute in reports.iter().flat_map(|r| &r.minutes) {
        let entry = per_minute.entry(minute.start_unix_ms).or_default();
        entry.0 += u64::from(minute.answered);
        entry.1 += u64::from(minute.failed);
        if minute.start_unix_ms >= recent_from {
            answered += u64::from(minute.answered);
            failed += u64::from(minute.failed);
            for (sum, count) in buckets.iter_mut().zip(&minute.latency_buckets) {
                *sum += u64::from(*count);
            }
        }
    }
    let failing_in_a_row = reports.iter().map(|r| r.failures_in_a_row);
    let all_failing = reports.iter().all(|r| r.failures_in_a_row >= DOWN_AFTER);
    let any_failing = failing_in_a_row.clone().any(|n| n > 0);
    let p50_ms = percentile(&buckets, 50);
    let p99_ms = percentile(&buckets, 99);
    let (health, why) = if reports.is_empty() {
        (Health::Unknown, "no connector reports".to_owned())
    } else if all_failing {
        (
            Health::Down,
            format!(
                "its last {} calls or more failed",
                failing_in_a_row.min().unwrap_or(DOWN_AFTER)
            ),
        )
    } else if any_failing {
        (Health::Degraded, "its last call failed".to_owned())
    } else if failed >= 2 && failed * 10 >= answered + failed {
        (
            Health::Degraded,
            format!("{failed} of {} calls failed lately", answered + failed),
        )
    } else if p99_ms.is_some_and(|p99| p99 > SLOW_P99_MS) {
        (Health::Degraded, "slow: p99 over 2.5 s".to_owned())
    } else if answered == 0 {
        (Health::Up, "no calls lately".to_owned())
    } else {
        (Health::Up, "answering".to_owned())
    };
    let answering = !reports.is_empty() && !any_failing;
    let latest = |pick: fn(&LedgerHealthReport) -> i64| reports.iter().map(|r| pick(r)).max();
    let last_error_at_ms = latest(|r| r.last_error_unix_ms).unwrap_or(0);
    LedgerHealth {
        consumer: consumer.to_owned(),
        health,
        why,
        answered,
        failed,
        p50_ms,
        p99_ms,
        last_error: reports
            .iter()
            .max_by_key(|r| r.last_error_unix_ms)
            .map(|r| r.last_error.clone())
            .unwrap_or_default(),
        last_error_at_ms,
        last_ok_at_ms: latest(|r| r.last_ok_unix_ms).unwrap_or(0),
        replicas: reports.len(),
        answering_since_ms: answering.then(|| group.answering_since_ms.unwrap_or(now)),
        minutes: per_minute
            .into_iter()
            .map(|(start, (answered, failed))| (start, answered, failed))
            .collect(),
    }
}

/// The bucket bound under which `percent` of the calls fall; `None` without calls.
fn percentile(buckets: &[u64], percent: u64) -> Option<u32> {
    let total: u64 = buckets.iter().sum();
    if total == 0 {
        return None;
    }
    let wanted = (total * percent).div_ceil(100);
    let mut seen = 0;
    for (count, bound) in buckets.iter().zip(LATENCY_BOUNDS_MS) {
        seen += count;
        if seen >= wanted {
            return Some(bound);
        }
    }
    LATENCY_BOUNDS_MS.last().copied()
}

/// Reads the connectors' reports into `board` until `shutdown`, subscribing again after the
/// connection comes back.
pub async fn listen(
    client: async_nats::Client,
    board: std::sync::Arc<HealthBoard>,
    shutdown: CancellationToken,
) {
    loop {
        let mut reports = match client.subscribe(HEALTH_SUBJECTS).await {
            Ok(subscriber) => subscriber,
            Err(error) => {
                tracing::warn!(%error, "cannot read the connectors' health reports yet");
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(REPORT_EVERY) => continue,
                }
            }
        };
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                message = reports.next() => match message {
                    Some(message) => {
                        board.receive(message.subject.as_str(), &message.payload, now_unix_ms());
                    }
                    None => break,
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
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
