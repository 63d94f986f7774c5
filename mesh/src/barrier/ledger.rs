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
    /// Moves a live hold to `$3` (CONFIRMED, CANCELLED) with rejection `$4` at `$5`.
    settle_hold: String,
    /// Live holds whose expiry is past `$1`, at most `$2`.
    lapsed: String,
}

impl Ledger {
    pub(super) fn new(table: &'static str, party: &'static str) -> Self {
        let columns = format!(
            "order_id, {party} AS party, points, state, rejection, updated_at_ms, expires_at_ms"
        );
        Self {
            select: format!("SELECT {columns} FROM {table} WHERE order_id = $1 AND {party} = $2"),
            insert: format!(
                "INSERT INTO {table} (order_id, {party}, points, state, rejection, created_at_ms, updated_at_ms, expires_at_ms) \
                 VALUES ($1, $2, $3, $4, '', $5, $5, $6) ON CONFLICT (order_id, {party}) DO NOTHING"
            ),
            reject: format!(
                "UPDATE {table} SET state = 'REJECTED', rejection = $3, updated_at_ms = $4, expires_at_ms = 0 \
                 WHERE order_id = $1 AND {party} = $2 AND state IN ('DEDUCTED', 'FROZEN') RETURNING {columns}"
            ),
            refund: format!(
                "UPDATE {table} SET state = 'REFUNDED', updated_at_ms = $3 \
                 WHERE order_id = $1 AND {party} = $2 AND state = 'DEDUCTED' RETURNING {columns}"
            ),
            settle_hold: format!(
                "UPDATE {table} SET state = $3, rejection = $4, updated_at_ms = $5, expires_at_ms = 0 \
                 WHERE order_id = $1 AND {party} = $2 AND state = 'FROZEN' RETURNING {columns}"
            ),
            lapsed: format!(
                "SELECT order_id, {party} AS party FROM {table} \
                 WHERE state = 'FROZEN' AND expires_at_ms <= $1 ORDER BY expires_at_ms LIMIT $2"
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

    /// Records the key as deducted (or frozen until `expires_at_ms`) if it is free. Call
    /// inside the transaction that moves the balance.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn claim_deduct(
        &self,
        tx: &mut AnyConnection,
        order_id: &str,
        party: &str,
        points: i64,
        state: LedgerState,
        expires_at_ms: i64,
        now_ms: i64,
    ) -> Result<DeductClaim, sqlx::Error> {
        let inserted = sqlx::query(&self.insert)
            .bind(order_id)
            .bind(party)
            .bind(points)
            .bind(state.as_str())
            .bind(now_ms)
            .bind(expires_at_ms)
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
        if let Some(null) = self
            .claim_null(&mut *tx, order_id, party, LedgerState::Refunded, now_ms)
            .await?
        {
            return Ok(RefundClaim::NullCompensation(null));
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

impl Ledger {
    /// Records a refund (or cancel) of 0 points for a key never seen; `None` when it was.
    pub(super) async fn claim_null(
        &self,
        tx: &mut AnyConnection,
        order_id: &str,
        party: &str,
        state: LedgerState,
        now_ms: i64,
    ) -> Result<Option<LedgerEntry>, sqlx::Error> {
        let inserted = sqlx::query(&self.insert)
            .bind(order_id)
            .bind(party)
            .bind(0_i64)
            .bind(state.as_str())
            .bind(now_ms)
            .bind(0_i64)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        Ok((inserted == 1).then(|| LedgerEntry {
            order_id: order_id.to_owned(),
            party: party.to_owned(),
            points: 0,
            state,
            rejection: String::new(),
            updated_at_ms: now_ms,
            expires_at_ms: 0,
        }))
    }

    /// Moves a live (frozen) hold to `state`; `None` when the key holds none.
    pub(super) async fn settle_hold(
        &self,
        tx: &mut AnyConnection,
        order_id: &str,
        party: &str,
        state: LedgerState,
        rejection: &str,
        now_ms: i64,
    ) -> Result<Option<LedgerEntry>, sqlx::Error> {
        sqlx::query(&self.settle_hold)
            .bind(order_id)
            .bind(party)
            .bind(state.as_str())
            .bind(rejection)
            .bind(now_ms)
            .fetch_optional(&mut *tx)
            .await?
            .map(|row| entry(&row))
            .transpose()
    }

    /// Keys of live holds lapsed at `now_ms`, the oldest first, at most `limit`.
    pub(super) async fn lapsed(
        &self,
        tx: &mut AnyConnection,
        now_ms: i64,
        limit: i64,
    ) -> Result<Vec<(String, String)>, sqlx::Error> {
        sqlx::query(&self.lapsed)
            .bind(now_ms)
            .bind(limit)
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|row| Ok((row.try_get("order_id")?, row.try_get("party")?)))
            .collect()
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
        expires_at_ms: row.try_get("expires_at_ms")?,
    })
}
