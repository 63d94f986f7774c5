//! Dead letters in the mall's database, for operators: the indexer consumes `JIFEN_DLQ` (group
//! `mall-dlq`), records each dead letter once and flags its order `needs_attention`, in one
//! transaction. Listing, redrive and discard read and move these rows.

use std::sync::Arc;

use jifen_mesh::bus::consume::{Delivery, Disposition, Handler};
use jifen_mesh::bus::subjects::{
    CONSUMER_HEADER, DELIVERIES_HEADER, LAST_ERROR_HEADER, ORDER_ID_HEADER, ORIGIN_MSG_ID_HEADER,
    ORIGIN_SEQUENCE_HEADER, ORIGIN_STREAM_HEADER, ORIGIN_SUBJECT_HEADER,
};
use jifen_mesh::storage::Database;
use jifen_mesh::time::now_unix_ms;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};
use tokio::sync::broadcast;

use crate::store::record;

/// A dead letter as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub id: String,
    pub order_id: String,
    pub origin_stream: String,
    pub origin_sequence: i64,
    pub origin_msg_id: String,
    pub subject: String,
    pub consumer: String,
    pub deliveries: i64,
    pub last_error: String,
    pub payload: Vec<u8>,
    pub redrives: i64,
    pub dead_at_ms: i64,
}

const COLUMNS: &str = "id, order_id, origin_stream, origin_sequence, origin_msg_id, subject, consumer, \
                       deliveries, last_error, payload, redrives, dead_at_ms";

fn from_row(row: &AnyRow) -> Result<DeadLetter, sqlx::Error> {
    Ok(DeadLetter {
        id: row.try_get("id")?,
        order_id: row.try_get("order_id")?,
        origin_stream: row.try_get("origin_stream")?,
        origin_sequence: row.try_get("origin_sequence")?,
        origin_msg_id: row.try_get("origin_msg_id")?,
        subject: row.try_get("subject")?,
        consumer: row.try_get("consumer")?,
        deliveries: row.try_get("deliveries")?,
        last_error: row.try_get("last_error")?,
        payload: row.try_get("payload")?,
        redrives: row.try_get("redrives")?,
        dead_at_ms: row.try_get("dead_at_ms")?,
    })
}

/// The open dead letters, newest first, after the `(dead_at_ms, id)` position `after`.
pub async fn list_open(
    db: &Database,
    order_id: &str,
    consumer: &str,
    after: Option<(i64, String)>,
    limit: i64,
) -> Result<Vec<DeadLetter>, sqlx::Error> {
    let (after_ms, after_id) = after.unwrap_or((i64::MAX, String::new()));
    sqlx::query(&format!(
        "SELECT {COLUMNS} FROM dead_letters WHERE state = 'OPEN' \
         AND ($1 = '' OR order_id = $1) AND ($2 = '' OR consumer = $2) \
         AND (dead_at_ms < $3 OR (dead_at_ms = $3 AND ($4 = '' OR id < $4))) \
         ORDER BY dead_at_ms DESC, id DESC LIMIT $5"
    ))
    .bind(order_id)
    .bind(consumer)
    .bind(after_ms)
    .bind(after_id)
    .bind(limit)
    .fetch_all(db.pool())
    .await?
    .iter()
    .map(from_row)
    .collect()
}

pub async fn get_open(db: &Database, id: &str) -> Result<Option<DeadLetter>, sqlx::Error> {
    sqlx::query(&format!(
        "SELECT {COLUMNS} FROM dead_letters WHERE id = $1 AND state = 'OPEN'"
    ))
    .bind(id)
    .fetch_optional(db.pool())
    .await?
    .map(|row| from_row(&row))
    .transpose()
}

/// Closes an open dead letter as `REDRIVEN` or `DISCARDED`; false when it was not open.
pub async fn close(
    tx: &mut AnyConnection,
    id: &str,
    state: &str,
    note: &str,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let redrive = i64::from(state == "REDRIVEN");
    let closed = sqlx::query(
        "UPDATE dead_letters SET state = $2, note = $3, redrives = redrives + $4, updated_at_ms = $5 \
         WHERE id = $1 AND state = 'OPEN'",
    )
    .bind(id)
    .bind(state)
    .bind(note)
    .bind(redrive)
    .bind(now)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    Ok(closed == 1)
}

/// Clears an order's `needs_attention` once none of its dead letters is open.
///
/// The order's row is locked first, by a statement of its own: on PostgreSQL (READ COMMITTED)
/// each statement reads what was committed when it started, so the check for open dead letters
/// then sees any the indexer committed while this waited for the lock — and an indexer that
/// comes after waits for this transaction and sets the flag again. In one statement, the check
/// would read from before the wait and clear a flag set meanwhile. The version moves, so
/// watchers see the change.
pub async fn clear_attention_if_settled(
    tx: &mut AnyConnection,
    order_id: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE orders SET version = version + 1, updated_at_ms = $2 WHERE order_id = $1")
        .bind(order_id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "UPDATE orders SET needs_attention = 0 WHERE order_id = $1 AND needs_attention = 1 \
         AND NOT EXISTS (SELECT 1 FROM dead_letters WHERE order_id = $1 AND state = 'OPEN')",
    )
    .bind(order_id)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Consumes `JIFEN_DLQ` into the `dead_letters` table.
#[derive(Debug, Clone)]
pub struct Indexer {
    db: Database,
    changes: broadcast::Sender<String>,
}

impl Indexer {
    pub fn new(db: Database, changes: broadcast::Sender<String>) -> Arc<Self> {
        Arc::new(Self { db, changes })
    }

    async fn index(&self, delivery: &Delivery) -> Result<Option<String>, sqlx::Error> {
        let header = |name: &str| delivery.header(name).unwrap_or_default().to_owned();
        let number = |name: &str| header(name).parse::<i64>().unwrap_or(0);
        let id = delivery.msg_id().map(str::to_owned).unwrap_or_else(|| {
            format!(
                "dlq:{}:{}",
                header(ORIGIN_STREAM_HEADER),
                number(ORIGIN_SEQUENCE_HEADER)
            )
        });
        let order_id = header(ORDER_ID_HEADER);
        let now = now_unix_ms();
        let mut tx = self.db.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO dead_letters (id, order_id, origin_stream, origin_sequence, origin_msg_id, subject, \
             consumer, deliveries, last_error, payload, state, note, redrives, dead_at_ms, updated_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'OPEN', '', 0, $11, $11) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(&id)
        .bind(&order_id)
        .bind(header(ORIGIN_STREAM_HEADER))
        .bind(number(ORIGIN_SEQUENCE_HEADER))
        .bind(header(ORIGIN_MSG_ID_HEADER))
        .bind(header(ORIGIN_SUBJECT_HEADER))
        .bind(header(CONSUMER_HEADER))
        .bind(number(DELIVERIES_HEADER))
        .bind(header(LAST_ERROR_HEADER))
        .bind(delivery.payload.to_vec())
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            return Ok(None);
        }
        let reason = format!(
            "dead letter {id}: {} after {} deliveries: {}",
            header(ORIGIN_SUBJECT_HEADER),
            number(DELIVERIES_HEADER),
            header(LAST_ERROR_HEADER)
        );
        let flagged = sqlx::query(
            "UPDATE orders SET needs_attention = 1, reason = $2, version = version + 1, updated_at_ms = $3 \
             WHERE order_id = $1",
        )
        .bind(&order_id)
        .bind(&reason)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if flagged == 1 {
            record(&mut tx, &order_id, "dead_lettered", &reason, now).await?;
        }
        tx.commit().await?;
        Ok(Some(order_id))
    }
}

impl Handler for Indexer {
    async fn handle(&self, delivery: &Delivery) -> Disposition {
        match self.index(delivery).await {
            Ok(Some(order_id)) => {
                let _ = self.changes.send(order_id);
                Disposition::Ack
            }
            Ok(None) => Disposition::Ack,
            Err(error) => Disposition::Retry(format!("cannot index the dead letter: {error}")),
        }
    }
}
