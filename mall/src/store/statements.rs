//! What statement reconciliation reads (a channel's lines of a day, and of named orders) and
//! the reports it keeps.

use jifen_mesh::storage::Database;
use jifen_proto::v1::StatementReport;
use prost::Message as _;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::statement::compare::Line;

fn line(row: &AnyRow) -> Result<Line, sqlx::Error> {
    Ok(Line {
        order_id: row.try_get("order_id")?,
        user_id: row.try_get("user_id")?,
        points: row.try_get("points")?,
        state: row.try_get("state")?,
    })
}

/// `channel_id`'s lines of the orders created in `[from_ms, to_ms)`.
pub async fn day_lines(
    db: &Database,
    channel_id: &str,
    from_ms: i64,
    to_ms: i64,
) -> Result<Vec<Line>, sqlx::Error> {
    sqlx::query(
        "SELECT l.order_id AS order_id, l.user_id AS user_id, l.points AS points, l.state AS state \
         FROM order_lines l JOIN orders o ON o.order_id = l.order_id \
         WHERE l.channel_id = $1 AND o.created_at_ms >= $2 AND o.created_at_ms < $3",
    )
    .bind(channel_id)
    .bind(from_ms)
    .bind(to_ms)
    .fetch_all(db.pool())
    .await?
    .iter()
    .map(line)
    .collect()
}

/// `channel_id`'s lines of `order_ids`, whatever their day.
pub async fn lines_of(
    db: &Database,
    channel_id: &str,
    order_ids: &[String],
) -> Result<Vec<Line>, sqlx::Error> {
    let mut lines = Vec::new();
    for chunk in order_ids.chunks(500) {
        let placeholders: Vec<String> = (0..chunk.len()).map(|i| format!("${}", i + 2)).collect();
        let sql = format!(
            "SELECT order_id, user_id, points, state FROM order_lines \
             WHERE channel_id = $1 AND order_id IN ({})",
            placeholders.join(", ")
        );
        let mut query = sqlx::query(&sql).bind(channel_id);
        for id in chunk {
            query = query.bind(id);
        }
        for row in query.fetch_all(db.pool()).await? {
            lines.push(line(&row)?);
        }
    }
    Ok(lines)
}

/// Keeps a report; its id.
pub async fn save(db: &Database, report: &StatementReport) -> Result<i64, sqlx::Error> {
    let row = sqlx::query(
        "INSERT INTO statement_reports (channel_id, date, created_at_ms, operator, report) \
         VALUES ($1, $2, $3, $4, $5) RETURNING id",
    )
    .bind(&report.channel_id)
    .bind(&report.date)
    .bind(report.created_at_unix_ms)
    .bind(&report.operator)
    .bind(report.encode_to_vec())
    .fetch_one(db.pool())
    .await?;
    row.try_get("id")
}

fn decode(row: &AnyRow) -> Result<StatementReport, sqlx::Error> {
    let bytes: Vec<u8> = row.try_get("report")?;
    let mut report =
        StatementReport::decode(bytes.as_slice()).map_err(|e| sqlx::Error::Decode(e.into()))?;
    report.id = row.try_get("id")?;
    Ok(report)
}

/// The newest `limit` reports (of `channel_id`, or all), without their differences.
pub async fn list(
    db: &Database,
    channel_id: &str,
    limit: i64,
) -> Result<Vec<StatementReport>, sqlx::Error> {
    sqlx::query(
        "SELECT id, report FROM statement_reports WHERE ($1 = '' OR channel_id = $1) \
         ORDER BY id DESC LIMIT $2",
    )
    .bind(channel_id)
    .bind(limit)
    .fetch_all(db.pool())
    .await?
    .iter()
    .map(|row| {
        decode(row).map(|mut report| {
            report.differences.clear();
            report
        })
    })
    .collect()
}

pub async fn get(db: &Database, id: i64) -> Result<Option<StatementReport>, sqlx::Error> {
    sqlx::query("SELECT id, report FROM statement_reports WHERE id = $1")
        .bind(id)
        .fetch_optional(db.pool())
        .await?
        .map(|row| decode(&row))
        .transpose()
}
