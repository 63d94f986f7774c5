//! Settled orders per channel and minute over the last hour, for the Channels page's chart
//! (issue 18). Counted from the database a minute after each minute ends — one grouped query
//! per minute, whatever the load — and kept in memory: a starting mall counts the last hour
//! at once, so every replica shows the same.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use jifen_mesh::storage::Database;
use jifen_mesh::time::now_unix_ms;
use sqlx::Row;
use tokio_util::sync::CancellationToken;

const MINUTE_MS: i64 = 60_000;
const KEPT_MINUTES: i64 = 60;

/// By channel: settled orders per minute's start.
#[derive(Debug, Default)]
pub struct ActivityBoard {
    settled: RwLock<HashMap<String, BTreeMap<i64, u64>>>,
}

impl ActivityBoard {
    /// `channel_id`'s settled orders per minute, oldest first.
    pub fn settled(&self, channel_id: &str) -> Vec<(i64, u64)> {
        self.settled
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(channel_id)
            .map(|minutes| minutes.iter().map(|(m, n)| (*m, *n)).collect())
            .unwrap_or_default()
    }

    fn add(&self, counted: Vec<(String, i64, u64)>, oldest: i64) {
        let mut settled = self.settled.write().unwrap_or_else(PoisonError::into_inner);
        for (channel_id, minute, count) in counted {
            settled.entry(channel_id).or_default().insert(minute, count);
        }
        for minutes in settled.values_mut() {
            minutes.retain(|minute, _| *minute >= oldest);
        }
    }
}

/// Settled orders created in `[from, to)` with a line at each channel, per minute.
async fn count(db: &Database, from: i64, to: i64) -> Result<Vec<(String, i64, u64)>, sqlx::Error> {
    sqlx::query(
        "SELECT l.channel_id AS channel_id, o.created_at_ms - (o.created_at_ms % 60000) AS minute, \
         COUNT(DISTINCT o.order_id) AS n FROM orders o JOIN order_lines l ON l.order_id = o.order_id \
         WHERE o.created_at_ms >= $1 AND o.created_at_ms < $2 \
         AND o.state IN ('COMPLETED', 'CANCELLED') GROUP BY l.channel_id, minute",
    )
    .bind(from)
    .bind(to)
    .fetch_all(db.pool())
    .await?
    .iter()
    .map(|row| {
        let n: i64 = row.try_get("n")?;
        Ok((
            row.try_get("channel_id")?,
            row.try_get("minute")?,
            u64::try_from(n).unwrap_or(0),
        ))
    })
    .collect()
}

/// Counts each minute once it is a minute old, until `shutdown`.
pub async fn run(db: Database, board: Arc<ActivityBoard>, shutdown: CancellationToken) {
    let start_of = |ms: i64| ms - ms.rem_euclid(MINUTE_MS);
    // The first minute not counted yet.
    let mut next = start_of(now_unix_ms()) - KEPT_MINUTES * MINUTE_MS;
    loop {
        // Minutes that ended more than a minute ago: their orders have settled.
        let until = start_of(now_unix_ms()) - MINUTE_MS;
        if until > next {
            match count(&db, next, until).await {
                Ok(counted) => {
                    board.add(counted, until - KEPT_MINUTES * MINUTE_MS);
                    next = until;
                }
                Err(error) => tracing::debug!(%error, "cannot count settled orders per minute"),
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(15)) => {}
        }
    }
}
