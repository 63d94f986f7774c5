//! Redrive after recovery (issue 18): once a ledger has answered every call for a while, its
//! dead letters that surely took no effect (every delivery failed for a passing reason — kind
//! `retries_exhausted`) are sent again by the mall itself, a few per second, each written into
//! its order's history as an operator's redrive would be. Never a deduct whose outcome is
//! unknown, an invalid command or a mismatched event; never for a paused channel, one whose
//! automatic redrive is switched off, an order already settled (nor a deduct or a freeze of an
//! order that compensates), or a message redriven
//! [`MAX_GENERATIONS`] times already (something about it, not the ledger, keeps failing).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use jifen_mesh::time::now_unix_ms;
use tokio_util::sync::CancellationToken;

use super::pauses::PauseBoard;
use crate::admin::Admin;
use crate::store::{controls, dead_letters};

/// Who the history names for an automatic redrive.
pub const ACTOR: &str = "jifen (auto-redrive)";
/// Redrives of one message the mall makes by itself at most.
pub const MAX_GENERATIONS: usize = 3;
const EVERY: Duration = Duration::from_secs(2);

/// Redrives what may be, until `shutdown`; `after` is how long a ledger must have answered.
pub async fn run(
    admin: Admin,
    pauses: Arc<PauseBoard>,
    after: Duration,
    per_second: u32,
    shutdown: CancellationToken,
) {
    if after.is_zero() || per_second == 0 {
        return;
    }
    let after_ms = i64::try_from(after.as_millis()).unwrap_or(i64::MAX);
    let gap = Duration::from_secs(1) / per_second;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(EVERY) => {}
        }
        let off: HashSet<String> = match controls::auto_redrive_off(admin.store.database()).await {
            Ok(off) => off.into_iter().collect(),
            Err(error) => {
                tracing::warn!(%error, "cannot read the automatic redrive's settings");
                continue;
            }
        };
        let now = now_unix_ms();
        // The board holds only connectors' consumer groups (it drops any other report).
        for health in admin.health.all() {
            let consumer = health.consumer.as_str();
            let Some(since) = health.answering_since_ms else {
                continue;
            };
            let answering_ms = now.saturating_sub(since);
            if off.contains(consumer)
                || answering_ms < after_ms
                || pauses.in_force(consumer, now).is_some()
            {
                continue;
            }
            // One tick's share, so that a big backlog goes out at the rate, not at once.
            let budget = i64::from(per_second) * EVERY.as_secs() as i64;
            let letters = match dead_letters::auto_redrivable(
                admin.store.database(),
                consumer,
                MAX_GENERATIONS,
                budget,
            )
            .await
            {
                Ok(letters) => letters,
                Err(error) => {
                    tracing::warn!(%error, consumer, "cannot list dead letters to redrive");
                    continue;
                }
            };
            for letter in letters {
                let note = format!(
                    "automatic: {consumer} has answered every call for {} s",
                    answering_ms / 1000
                );
                match admin.redrive(&letter.id, &note, ACTOR).await {
                    Ok(_) => {
                        jifen_mesh::metrics::AUTO_REDRIVES
                            .with_label_values(&[consumer])
                            .inc();
                        tracing::info!(id = %letter.id, order_id = %letter.order_id, consumer, "dead letter redriven automatically");
                    }
                    // Closed by an operator meanwhile, or the bus refused: next round.
                    Err(error) => {
                        tracing::warn!(id = %letter.id, %error, "automatic redrive failed");
                    }
                }
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(gap) => {}
                }
            }
        }
    }
}
