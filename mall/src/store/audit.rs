//! The audit log (DESIGN §11): every operator action — who, what, on what, the note, how it
//! ended — and every refused token, with the client's address. Written outside the action's
//! transaction, so a refused or failed action is recorded too.

use jifen_mesh::storage::Database;
use sqlx::Row;

/// One line of the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub at_ms: i64,
    /// The operator's name; empty when the token was not known.
    pub operator: String,
    /// The call or console action (`CompensateOrder`, `login`).
    pub action: String,
    /// What it acted on: an order or dead-letter id.
    pub target: String,
    pub note: String,
    /// `ok`, or the refusal or error.
    pub result: String,
    /// The client's address, when known.
    pub client: String,
}

/// Longest note or result kept (an operator's form is untrusted input).
const MAX_TEXT: usize = 2_000;

pub async fn write(db: &Database, entry: &AuditEntry) -> Result<(), sqlx::Error> {
    let cut = |s: &str| s.chars().take(MAX_TEXT).collect::<String>();
    sqlx::query(
        "INSERT INTO audit_log (at_ms, operator, action, target, note, result, client) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(entry.at_ms)
    .bind(cut(&entry.operator))
    .bind(cut(&entry.action))
    .bind(cut(&entry.target))
    .bind(cut(&entry.note))
    .bind(cut(&entry.result))
    .bind(cut(&entry.client))
    .execute(db.pool())
    .await?;
    Ok(())
}

/// The newest `limit` entries, newest first; of one operator when `operator` is not empty.
pub async fn recent(
    db: &Database,
    operator: &str,
    limit: i64,
) -> Result<Vec<AuditEntry>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT at_ms, operator, action, target, note, result, client FROM audit_log \
         WHERE ($1 = '' OR operator = $1) ORDER BY id DESC LIMIT $2",
    )
    .bind(operator)
    .bind(limit)
    .fetch_all(db.pool())
    .await?;
    rows.iter()
        .map(|r| {
            Ok(AuditEntry {
                at_ms: r.try_get("at_ms")?,
                operator: r.try_get("operator")?,
                action: r.try_get("action")?,
                target: r.try_get("target")?,
                note: r.try_get("note")?,
                result: r.try_get("result")?,
                client: r.try_get("client")?,
            })
        })
        .collect()
}
