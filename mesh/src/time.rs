//! Wall-clock time as stored in every database: UTC milliseconds since the Unix epoch.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, UTC. A clock before 1970 reads as 0.
pub fn now_unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A stored time as people read it, with its zone: `2026-12-05 14:00:00 UTC`.
pub fn format_utc(unix_ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(unix_ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            let format = time::format_description::parse_borrowed::<2>(
                "[year]-[month]-[day] [hour]:[minute]:[second] UTC",
            )
            .ok()?;
            t.format(&format).ok()
        })
        .unwrap_or_else(|| unix_ms.to_string())
}

/// How long ago (or ahead) `unix_ms` is from `now`, in the largest whole unit: `3 min ago`,
/// `in 2 h`.
pub fn relative(unix_ms: i64, now: i64) -> String {
    let delta = now.saturating_sub(unix_ms);
    let amount = whole_units((delta / 1000).unsigned_abs());
    if delta >= 0 {
        format!("{amount} ago")
    } else {
        format!("in {amount}")
    }
}

/// A duration in its largest whole unit: `10 min`, `2 h`.
pub fn human_duration(duration: std::time::Duration) -> String {
    whole_units(duration.as_secs())
}

fn whole_units(seconds: u64) -> String {
    match seconds {
        0..60 => format!("{seconds} s"),
        60..3_600 => format!("{} min", seconds / 60),
        3_600..172_800 => format!("{} h", seconds / 3_600),
        _ => format!("{} d", seconds / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_with_their_zone_and_age() {
        assert_eq!(format_utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(relative(0, 5_000), "5 s ago");
        assert_eq!(relative(0, 3 * 60_000 + 1), "3 min ago");
        assert_eq!(relative(7_200_000, 0), "in 2 h");
        assert_eq!(relative(0, 3 * 86_400_000), "3 d ago");
        assert_eq!(
            human_duration(std::time::Duration::from_secs(600)),
            "10 min"
        );
    }
}
