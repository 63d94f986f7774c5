//! The relay's side of the outbox: reading the oldest rows, deleting the published ones.

use jifen_mesh::bus::publish::Outgoing;
use jifen_mesh::storage::Backend;
use sqlx::{AnyConnection, Executor, Row};

use super::appends::Marks;

/// The oldest `limit` rows, with their ids. On PostgreSQL inside the caller's transaction,
/// claimed with `FOR UPDATE SKIP LOCKED` so that mall replicas share the work without sending
/// a row twice at once; on SQLite one database has one mall process, hence one relay.
pub(crate) async fn oldest<'e, E>(
    executor: E,
    backend: Backend,
    limit: i64,
) -> Result<Vec<(i64, Outgoing)>, sqlx::Error>
where
    E: Executor<'e, Database = sqlx::Any>,
{
    let lock = match backend {
        Backend::Postgres => " FOR UPDATE SKIP LOCKED",
        Backend::Sqlite => "",
    };
    sqlx::query(&format!(
        "SELECT id, subject, msg_id, order_id, traceparent, payload FROM outbox \
         ORDER BY id LIMIT $1{lock}"
    ))
    .bind(limit)
    .fetch_all(executor)
    .await?
    .iter()
    .map(|row| {
        Ok((
            row.try_get::<i64, _>("id")?,
            Outgoing {
                subject: row.try_get("subject")?,
                msg_id: row.try_get("msg_id")?,
                order_id: row.try_get("order_id")?,
                traceparent: row.try_get("traceparent")?,
                payload: row.try_get::<Vec<u8>, _>("payload")?.into(),
            },
        ))
    })
    .collect()
}

/// Deletes the rows `ids` (published), in the caller's transaction.
pub(crate) async fn delete(tx: &mut AnyConnection, ids: &[i64]) -> Result<(), sqlx::Error> {
    if ids.is_empty() {
        return Ok(());
    }
    let sql = format!(
        "DELETE FROM outbox WHERE id IN ({})",
        Marks::of(tx).values(ids.len(), 1)
    );
    let mut query = sqlx::query(&sql);
    for id in ids {
        query = query.bind(*id);
    }
    query.execute(&mut *tx).await?;
    Ok(())
}
