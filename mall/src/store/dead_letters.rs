//! Dead letters as rows, for operators: recorded once by the indexer (with its order flagged
//! `needs_attention`), listed, and closed by redrive or discard.

use jifen_mesh::storage::Database;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::record;

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
    /// [`jifen_mesh::bus::subjects::OUTCOME_UNKNOWN`], or empty.
    pub kind: String,
    /// `OPEN`, `REDRIVEN` or `DISCARDED`.
    pub state: String,
    /// The operator's note when it was closed.
    pub note: String,
}

const COLUMNS: &str = "id, order_id, origin_stream, origin_sequence, origin_msg_id, subject, consumer, \
                       deliveries, last_error, payload, redrives, dead_at_ms, kind, state, note";

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
        kind: row.try_get("kind")?,
        state: row.try_get("state")?,
        note: row.try_get("note")?,
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

/// A dead letter whatever its state (open, redriven, discarded).
pub async fn get(db: &Database, id: &str) -> Result<Option<DeadLetter>, sqlx::Error> {
    sqlx::query(&format!("SELECT {COLUMNS} FROM dead_letters WHERE id = $1"))
        .bind(id)
        .fetch_optional(db.pool())
        .await?
        .map(|row| from_row(&row))
        .transpose()
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

/// Clears an order's `needs_attention` once none of its dead letters is open and none of its
/// lines waits for a manual refund.
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
         AND NOT EXISTS (SELECT 1 FROM dead_letters WHERE order_id = $1 AND state = 'OPEN') \
         AND NOT EXISTS (SELECT 1 FROM order_lines WHERE order_id = $1 AND state = 'MANUAL_REFUND')",
    )
    .bind(order_id)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Records a dead letter once (open, at `dead_at_ms`) and flags its order for an operator, in
/// the caller's transaction; `false` when it was recorded before.
pub async fn insert(tx: &mut AnyConnection, letter: &DeadLetter) -> Result<bool, sqlx::Error> {
    let now = letter.dead_at_ms;
    let inserted = sqlx::query(
        "INSERT INTO dead_letters (id, order_id, origin_stream, origin_sequence, origin_msg_id, subject, \
         consumer, deliveries, last_error, payload, state, note, redrives, dead_at_ms, updated_at_ms, kind) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'OPEN', '', 0, $11, $11, $12) \
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(&letter.id)
    .bind(&letter.order_id)
    .bind(&letter.origin_stream)
    .bind(letter.origin_sequence)
    .bind(&letter.origin_msg_id)
    .bind(&letter.subject)
    .bind(&letter.consumer)
    .bind(letter.deliveries)
    .bind(&letter.last_error)
    .bind(&letter.payload)
    .bind(now)
    .bind(&letter.kind)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if inserted == 0 {
        return Ok(false);
    }
    let reason = format!(
        "dead letter {}: {} after {} deliveries: {}",
        letter.id, letter.subject, letter.deliveries, letter.last_error
    );
    let flagged = sqlx::query(
        "UPDATE orders SET needs_attention = 1, reason = $2, version = version + 1, updated_at_ms = $3 \
         WHERE order_id = $1",
    )
    .bind(&letter.order_id)
    .bind(&reason)
    .bind(now)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if flagged == 1 {
        record(tx, &letter.order_id, "dead_lettered", &reason, "", now).await?;
    }
    Ok(true)
}

/// The open dead letters of an order, in the caller's transaction.
pub async fn open_of_order(
    tx: &mut AnyConnection,
    order_id: &str,
) -> Result<Vec<DeadLetter>, sqlx::Error> {
    sqlx::query(&format!(
        "SELECT {COLUMNS} FROM dead_letters WHERE order_id = $1 AND state = 'OPEN'"
    ))
    .bind(order_id)
    .fetch_all(&mut *tx)
    .await?
    .iter()
    .map(from_row)
    .collect()
}

/// The open dead letters of an order on one subject, in the caller's transaction.
pub async fn open_on_subject(
    tx: &mut AnyConnection,
    order_id: &str,
    subject: &str,
) -> Result<Vec<DeadLetter>, sqlx::Error> {
    sqlx::query(&format!(
        "SELECT {COLUMNS} FROM dead_letters WHERE order_id = $1 AND subject = $2 AND state = 'OPEN'"
    ))
    .bind(order_id)
    .bind(subject)
    .fetch_all(&mut *tx)
    .await?
    .iter()
    .map(from_row)
    .collect()
}

/// How many dead letters are open per consumer.
pub async fn open_by_consumer(
    db: &Database,
) -> Result<std::collections::HashMap<String, i64>, sqlx::Error> {
    sqlx::query(
        "SELECT consumer, COUNT(*) AS n FROM dead_letters WHERE state = 'OPEN' GROUP BY consumer",
    )
    .fetch_all(db.pool())
    .await?
    .iter()
    .map(|r| Ok((r.try_get("consumer")?, r.try_get("n")?)))
    .collect()
}

/// The open dead letters of `consumer` that certainly took no effect (every delivery failed for
/// a passing reason) and belong to an order still open — a deduct only while its order is still
/// pending (once it compensates, the deduct must not land) — oldest first: what the automatic
/// redrive may send again. A message redriven `max_generations` times already stays for an
/// operator: something about it, not the ledger, keeps failing.
pub async fn auto_redrivable(
    db: &Database,
    consumer: &str,
    max_generations: usize,
    limit: i64,
) -> Result<Vec<DeadLetter>, sqlx::Error> {
    // A redriven message's id ends in `:redrive-<n>`, once per generation.
    let generations = format!("%{}", ":redrive-%".repeat(max_generations.max(1)));
    sqlx::query(&format!(
        "SELECT {COLUMNS} FROM dead_letters d WHERE state = 'OPEN' AND consumer = $1 \
         AND kind = $2 AND origin_msg_id NOT LIKE $3 \
         AND NOT EXISTS (SELECT 1 FROM orders o WHERE o.order_id = d.order_id \
         AND (o.state IN ('COMPLETED', 'CANCELLED') \
         OR (o.state = 'COMPENSATING' AND (d.subject LIKE '%.deduct' OR d.subject LIKE '%.freeze')))) \
         ORDER BY dead_at_ms, id LIMIT $4"
    ))
    .bind(consumer)
    .bind(jifen_mesh::bus::subjects::RETRIES_EXHAUSTED)
    .bind(generations)
    .bind(limit)
    .fetch_all(db.pool())
    .await?
    .iter()
    .map(from_row)
    .collect()
}

/// Dead letters per consumer group and minute since `since_ms` (a minute's start), whatever
/// became of them: the Channels page's chart.
pub async fn per_minute_since(
    db: &Database,
    since_ms: i64,
) -> Result<std::collections::HashMap<(String, i64), u64>, sqlx::Error> {
    sqlx::query(
        "SELECT consumer, dead_at_ms - (dead_at_ms % 60000) AS minute, COUNT(*) AS n \
         FROM dead_letters WHERE dead_at_ms >= $1 GROUP BY consumer, minute",
    )
    .bind(since_ms)
    .fetch_all(db.pool())
    .await?
    .iter()
    .map(|r| {
        let n: i64 = r.try_get("n")?;
        Ok((
            (r.try_get("consumer")?, r.try_get("minute")?),
            u64::try_from(n).unwrap_or(0),
        ))
    })
    .collect()
}

/// Which open dead letters an operator looks at: every field optional (empty or 0).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    pub order_id: String,
    pub consumer: String,
    /// Part of the last error, as typed.
    pub text: String,
    pub from_ms: i64,
    pub to_ms: i64,
}

/// `text` for `LIKE … ESCAPE '\'`: the operator's `%`, `_` and `\` match themselves.
fn like_pattern(text: &str) -> String {
    let mut pattern = String::with_capacity(text.len() + 2);
    pattern.push('%');
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

const FILTERED: &str = "state = 'OPEN' AND ($1 = '' OR order_id = $1) AND ($2 = '' OR consumer = $2) \
     AND ($3 = '' OR last_error LIKE $4 ESCAPE '\\') AND dead_at_ms >= $5 AND dead_at_ms < $6";

fn bind_filter<'q>(
    query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    filter: &'q Filter,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    query
        .bind(filter.order_id.as_str())
        .bind(filter.consumer.as_str())
        .bind(filter.text.as_str())
        .bind(like_pattern(&filter.text))
        .bind(filter.from_ms)
        .bind(if filter.to_ms == 0 {
            i64::MAX
        } else {
            filter.to_ms
        })
}

/// The open dead letters `filter` picks, newest first, `limit` from `offset`.
pub async fn search(
    db: &Database,
    filter: &Filter,
    offset: i64,
    limit: i64,
) -> Result<Vec<DeadLetter>, sqlx::Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM dead_letters WHERE {FILTERED} \
         ORDER BY dead_at_ms DESC, id DESC LIMIT $7 OFFSET $8"
    );
    bind_filter(sqlx::query(&sql), filter)
        .bind(limit)
        .bind(offset)
        .fetch_all(db.pool())
        .await?
        .iter()
        .map(from_row)
        .collect()
}

/// How many open dead letters `filter` picks.
pub async fn count(db: &Database, filter: &Filter) -> Result<i64, sqlx::Error> {
    let sql = format!("SELECT COUNT(*) AS n FROM dead_letters WHERE {FILTERED}");
    bind_filter(sqlx::query(&sql), filter)
        .fetch_one(db.pool())
        .await?
        .try_get("n")
}

#[cfg(test)]
mod tests {
    use super::like_pattern;

    #[test]
    fn an_operators_wildcards_match_themselves() {
        assert_eq!(like_pattern("refused"), "%refused%");
        assert_eq!(like_pattern("50%_a\\b"), "%50\\%\\_a\\\\b%");
    }
}
