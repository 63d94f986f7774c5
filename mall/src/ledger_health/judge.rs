//! How a consumer group's ledger is judged from its replicas' latest reports: up, degraded,
//! down or unknown, with its error rate, latency percentiles and the last hour per minute.

use std::collections::HashMap;

use jifen_mesh::connector::health::{LATENCY_BOUNDS_MS, REPORT_EVERY};
use jifen_proto::v1::LedgerHealthReport;

/// Minutes the status and the figures look back on.
const RECENT_MINUTES: i64 = 5;
/// A replica silent this long is gone.
pub(super) const STALE_MS: i64 = 4 * REPORT_EVERY.as_millis() as i64;
/// Failed calls in a row (at every replica) that make a ledger down.
const DOWN_AFTER: u32 = 3;
/// Slowest p99 that is not yet degraded.
const SLOW_P99_MS: u32 = 2_500;
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
    pub(super) fn gauge(self) -> i64 {
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
pub(super) struct Group {
    /// By replica: when its report came, and the report.
    pub(super) replicas: HashMap<String, (i64, LedgerHealthReport)>,
    pub(super) answering_since_ms: Option<i64>,
    pub(super) last_health: Option<Health>,
}

impl Group {
    /// Forgets the replicas that have not reported lately.
    pub(super) fn forget_silent(&mut self, now: i64) {
        self.replicas
            .retain(|_, (received, _)| now.saturating_sub(*received) < STALE_MS);
    }
}

pub(super) fn judge(consumer: &str, group: &mut Group, now: i64) -> LedgerHealth {
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
pub(super) fn percentile(buckets: &[u64], percent: u64) -> Option<u32> {
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
