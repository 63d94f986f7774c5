//! What the continuous reconciliation reads and marks (issue 18): settled orders in creation
//! order, and the flag of an order whose books differ from a ledger's.

use jifen_mesh::storage::Database;
use sqlx::Row;

use super::record;

/// Settled orders created after the `(created_at_ms, order_id)` position `after` and before
/// `before_ms`, oldest first: their positions.
pub async fn settled_after(
    db: &Database,
    after: &(i64, String),
    before_ms: i64,
    limit: i64,
) -> Result<Vec<(i64, String)>, sqlx::Error> {
    sqlx::query(
        "SELECT created_at_ms, order_id FROM orders WHERE state IN ('COMPLETED', 'CANCELLED') \
         AND (created_at_ms > $1 OR (created_at_ms = $1 AND order_id > $2)) \
         AND created_at_ms < $3 ORDER BY created_at_ms, order_id LIMIT $4",
    )
    .bind(after.0)
    .bind(&after.1)
    .bind(before_ms)
    .bind(limit)
    .fetch_all(db.pool())
    .await?
    .iter()
    .map(|row| Ok((row.try_get("created_at_ms")?, row.try_get("order_id")?)))
    .collect()
}

/// Flags `order_id` for an operator because its books differ from a ledger's, with the
/// difference in its history; false when it was flagged already.
pub async fn flag_difference(
    db: &Database,
    order_id: &str,
    difference: &str,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let mut tx = db.begin().await?;
    let reason = format!("books differ from a ledger: {difference}");
    let flagged = sqlx::query(
        "UPDATE orders SET needs_attention = 1, version = version + 1, updated_at_ms = $2, \
         reason = $3 WHERE order_id = $1 AND needs_attention = 0",
    )
    .bind(order_id)
    .bind(now)
    .bind(&reason)
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    if flagged {
        record(&mut tx, order_id, "books_differ", &reason, "", now).await?;
    }
    tx.commit().await?;
    Ok(flagged)
}
