//! The SQL of one ledger table: claiming a key for a deduct or a refund, recording a
//! rejection, reading an entry. Every write inserts the key first, so that concurrent calls for
//! one key queue on it (see the module docs of [`super`]).

use sqlx::{Any, AnyConnection, Executor, Row, any::AnyRow};

use super::{LedgerEntry, LedgerState};

#[derive(Debug, PartialEq, Eq)]
pub(super) enum DeductClaim {
    /// The key was free and is now recorded as deducted: take the points or reject.
    Claimed,
    /// The key was already recorded.
    Recorded(LedgerEntry),
}

#[derive(Debug, PartialEq, Eq)]
pub(super) enum RefundClaim {
    /// Nothing was ever deducted: a 0-point refund is recorded so a late deduct is refused.
    NullCompensation(LedgerEntry),
    /// The deduction is now refunded: give `points` back.
    Restore(LedgerEntry),
    /// Already refunded, or rejected: nothing to give back.
    Recorded(LedgerEntry),
}

/// SQL for one ledger table with columns `order_id`, `<party>`, `points`, `state`,
/// `rejection`, `created_at_ms`, `updated_at_ms` and primary key `(order_id, <party>)`.
#[derive(Debug, Clone)]
pub(super) struct Ledger {
    select: String,
    insert: String,
    reject: String,
    refund: String,
}

impl Ledger {
    pub(super) fn new(table: &'static str, party: &'static str) -> Self {
        let columns =
            format!("order_id, {party} AS party, points, state, rejection, updated_at_ms");
        Self {
            select: format!("SELECT {columns} FROM {table} WHERE order_id = $1 AND {party} = $2"),
            insert: format!(
                "INSERT INTO {table} (order_id, {party}, points, state, rejection, created_at_ms, updated_at_ms) \
                 VALUES ($1, $2, $3, $4, '', $5, $5) ON CONFLICT (order_id, {party}) DO NOTHING"
            ),
            reject: format!(
                "UPDATE {table} SET state = 'REJECTED', rejection = $3, updated_at_ms = $4 \
                 WHERE order_id = $1 AND {party} = $2 AND state = 'DEDUCTED' RETURNING {columns}"
            ),
            refund: format!(
                "UPDATE {table} SET state = 'REFUNDED', updated_at_ms = $3 \
                 WHERE order_id = $1 AND {party} = $2 AND state = 'DEDUCTED' RETURNING {columns}"
            ),
        }
    }

    pub(super) async fn get<'e, E>(
        &self,
        executor: E,
        order_id: &str,
        party: &str,
    ) -> Result<Option<LedgerEntry>, sqlx::Error>
    where
        E: Executor<'e, Database = Any>,
    {
        sqlx::query(&self.select)
            .bind(order_id)
            .bind(party)
            .fetch_optional(executor)
            .await?
            .map(|row| entry(&row))
            .transpose()
    }

    /// Records the key as deducted if it is free. Call inside the transaction that moves the
    /// balance.
    pub(super) async fn claim_deduct(
        &self,
        tx: &mut AnyConnection,
        order_id: &str,
        party: &str,
        points: i64,
        now_ms: i64,
    ) -> Result<DeductClaim, sqlx::Error> {
        let inserted = sqlx::query(&self.insert)
            .bind(order_id)
            .bind(party)
            .bind(points)
            .bind(LedgerState::Deducted.as_str())
            .bind(now_ms)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if inserted == 1 {
            return Ok(DeductClaim::Claimed);
        }
        let recorded = self.get(&mut *tx, order_id, party).await?;
        recorded
            .map(DeductClaim::Recorded)
            .ok_or(sqlx::Error::RowNotFound)
    }

    /// Turns a just-claimed deduct into a recorded rejection, so that a redelivery gets the
    /// same answer.
    pub(super) async fn reject(
        &self,
        tx: &mut AnyConnection,
        order_id: &str,
        party: &str,
        rejection: &str,
        now_ms: i64,
    ) -> Result<LedgerEntry, sqlx::Error> {
        let row = sqlx::query(&self.reject)
            .bind(order_id)
            .bind(party)
            .bind(rejection)
            .bind(now_ms)
            .fetch_one(&mut *tx)
            .await?;
        entry(&row)
    }

    /// Records the refund of a key. Call inside the transaction that gives the points back.
    pub(super) async fn claim_refund(
        &self,
        tx: &mut AnyConnection,
        order_id: &str,
        party: &str,
        now_ms: i64,
    ) -> Result<RefundClaim, sqlx::Error> {
        let inserted = sqlx::query(&self.insert)
            .bind(order_id)
            .bind(party)
            .bind(0_i64)
            .bind(LedgerState::Refunded.as_str())
            .bind(now_ms)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if inserted == 1 {
            return Ok(RefundClaim::NullCompensation(LedgerEntry {
                order_id: order_id.to_owned(),
                party: party.to_owned(),
                points: 0,
                state: LedgerState::Refunded,
                rejection: String::new(),
                updated_at_ms: now_ms,
            }));
        }
        let refunded = sqlx::query(&self.refund)
            .bind(order_id)
            .bind(party)
            .bind(now_ms)
            .fetch_optional(&mut *tx)
            .await?;
        if let Some(row) = refunded {
            return Ok(RefundClaim::Restore(entry(&row)?));
        }
        let recorded = self.get(&mut *tx, order_id, party).await?;
        recorded
            .map(RefundClaim::Recorded)
            .ok_or(sqlx::Error::RowNotFound)
    }
}

pub(super) fn entry(row: &AnyRow) -> Result<LedgerEntry, sqlx::Error> {
    Ok(LedgerEntry {
        order_id: row.try_get("order_id")?,
        party: row.try_get("party")?,
        points: row.try_get("points")?,
        state: LedgerState::parse(row.try_get("state")?)?,
        rejection: row.try_get("rejection")?,
        updated_at_ms: row.try_get("updated_at_ms")?,
    })
}
