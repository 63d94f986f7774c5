//! Continuous reconciliation (issue 18): settled orders are compared with the ledgers as they
//! settle, a bounded number per second, oldest first; an order whose books differ is flagged
//! (with the difference in its history) and counted in `jifen_reconcile_mismatches_total`, so a
//! drift shows in minutes, not at month end. The walk starts a little before the mall did
//! and follows orders by creation, `--reconcile-after` behind: an order still open then is
//! left to the stuck-order flag and to `Reconcile` on demand.

use std::time::Duration;

use jifen_mesh::time::now_unix_ms;
use tokio_util::sync::CancellationToken;

use crate::admin::Admin;
use crate::store::books;

/// Where a starting mall begins: this much before the margin.
const LOOK_BACK: Duration = Duration::from_secs(600);
const EVERY: Duration = Duration::from_secs(5);

fn ms(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// Walks the settled orders until `shutdown`, `per_second` at most.
pub async fn run(admin: Admin, per_second: u32, margin: Duration, shutdown: CancellationToken) {
    if per_second == 0 {
        return;
    }
    let mut cursor = (now_unix_ms() - ms(margin) - ms(LOOK_BACK), String::new());
    let batch = i64::from(per_second) * EVERY.as_secs() as i64;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(EVERY) => {}
        }
        let before = now_unix_ms() - ms(margin);
        let settled =
            match books::settled_after(admin.store.database(), &cursor, before, batch).await {
                Ok(settled) => settled,
                Err(error) => {
                    tracing::warn!(%error, "continuous reconciliation cannot read orders");
                    continue;
                }
            };
        for (created_at_ms, order_id) in settled {
            match admin.differences(&order_id).await {
                Ok(differences) if differences.is_empty() => {}
                Ok(differences) => {
                    jifen_mesh::metrics::RECONCILE_MISMATCHES.inc();
                    let detail = differences.join("; ");
                    tracing::error!(%order_id, %detail, "books differ from a ledger");
                    if let Err(error) = books::flag_difference(
                        admin.store.database(),
                        &order_id,
                        &detail,
                        now_unix_ms(),
                    )
                    .await
                    {
                        tracing::warn!(%error, %order_id, "cannot flag an order whose books differ");
                        break;
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, %order_id, "continuous reconciliation cannot compare an order");
                    break;
                }
            }
            cursor = (created_at_ms, order_id);
        }
    }
}
