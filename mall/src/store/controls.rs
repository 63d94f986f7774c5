//! Operators' decisions about a connector's consumer group (issue 18): pauses and maintenance
//! windows, and whether its dead letters are redriven automatically.

use jifen_mesh::storage::Database;
use sqlx::Row;
use sqlx::any::AnyRow;

/// A pause, or a maintenance window declared ahead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pause {
    pub id: i64,
    pub consumer: String,
    pub starts_at_ms: i64,
    /// 0: until resumed.
    pub ends_at_ms: i64,
    pub note: String,
    pub actor: String,
    pub created_at_ms: i64,
    /// When it was ended early; 0 while it stands.
    pub ended_at_ms: i64,
    pub end_note: String,
}

impl Pause {
    /// Whether it is in force at `now`.
    pub fn in_force(&self, now: i64) -> bool {
        self.ended_at_ms == 0
            && self.starts_at_ms <= now
            && (self.ends_at_ms == 0 || now < self.ends_at_ms)
    }

    /// Whether it still lies ahead at `now`.
    pub fn ahead(&self, now: i64) -> bool {
        self.ended_at_ms == 0 && self.starts_at_ms > now
    }
}

const COLUMNS: &str =
    "id, consumer, starts_at_ms, ends_at_ms, note, actor, created_at_ms, ended_at_ms, end_note";

fn from_row(row: &AnyRow) -> Result<Pause, sqlx::Error> {
    Ok(Pause {
        id: row.try_get("id")?,
        consumer: row.try_get("consumer")?,
        starts_at_ms: row.try_get("starts_at_ms")?,
        ends_at_ms: row.try_get("ends_at_ms")?,
        note: row.try_get("note")?,
        actor: row.try_get("actor")?,
        created_at_ms: row.try_get("created_at_ms")?,
        ended_at_ms: row.try_get("ended_at_ms")?,
        end_note: row.try_get("end_note")?,
    })
}

/// Records a pause; its id.
pub async fn pause(db: &Database, pause: &Pause) -> Result<i64, sqlx::Error> {
    let row = sqlx::query(
        "INSERT INTO consumer_pauses (consumer, starts_at_ms, ends_at_ms, note, actor, created_at_ms) \
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
    )
    .bind(&pause.consumer)
    .bind(pause.starts_at_ms)
    .bind(pause.ends_at_ms)
    .bind(&pause.note)
    .bind(&pause.actor)
    .bind(pause.created_at_ms)
    .fetch_one(db.pool())
    .await?;
    row.try_get("id")
}

/// Ends every pause of `consumer` in force or ahead at `now`; how many.
pub async fn resume(
    db: &Database,
    consumer: &str,
    note: &str,
    now: i64,
) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE consumer_pauses SET ended_at_ms = $1, end_note = $2 \
         WHERE consumer = $3 AND ended_at_ms = 0 AND (ends_at_ms = 0 OR ends_at_ms > $1)",
    )
    .bind(now)
    .bind(note)
    .bind(consumer)
    .execute(db.pool())
    .await?;
    Ok(done.rows_affected())
}

/// Pauses in force or ahead at `now`, soonest first.
pub async fn standing(db: &Database, now: i64) -> Result<Vec<Pause>, sqlx::Error> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM consumer_pauses \
         WHERE ended_at_ms = 0 AND (ends_at_ms = 0 OR ends_at_ms > $1) ORDER BY starts_at_ms"
    ))
    .bind(now)
    .fetch_all(db.pool())
    .await?;
    rows.iter().map(from_row).collect()
}

/// The last `limit` pauses of `consumer` (or of all), newest first: their history.
pub async fn history(db: &Database, consumer: &str, limit: i64) -> Result<Vec<Pause>, sqlx::Error> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM consumer_pauses WHERE ($1 = '' OR consumer = $1) \
         ORDER BY id DESC LIMIT $2"
    ))
    .bind(consumer)
    .bind(limit)
    .fetch_all(db.pool())
    .await?;
    rows.iter().map(from_row).collect()
}

/// Every consumer group that was ever paused.
pub async fn paused_ever(db: &Database) -> Result<Vec<String>, sqlx::Error> {
    let rows = sqlx::query("SELECT DISTINCT consumer FROM consumer_pauses")
        .fetch_all(db.pool())
        .await?;
    rows.iter().map(|row| row.try_get("consumer")).collect()
}

/// Consumer groups whose automatic redrive was switched off.
pub async fn auto_redrive_off(db: &Database) -> Result<Vec<String>, sqlx::Error> {
    let rows = sqlx::query("SELECT consumer FROM consumer_settings WHERE auto_redrive = 0")
        .fetch_all(db.pool())
        .await?;
    rows.iter().map(|row| row.try_get("consumer")).collect()
}

/// Switches `consumer`'s automatic redrive.
pub async fn set_auto_redrive(
    db: &Database,
    consumer: &str,
    on: bool,
    note: &str,
    actor: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO consumer_settings (consumer, auto_redrive, note, actor, at_ms) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (consumer) DO UPDATE SET \
         auto_redrive = excluded.auto_redrive, note = excluded.note, actor = excluded.actor, \
         at_ms = excluded.at_ms",
    )
    .bind(consumer)
    .bind(i64::from(on))
    .bind(note)
    .bind(actor)
    .bind(now)
    .execute(db.pool())
    .await?;
    Ok(())
}
