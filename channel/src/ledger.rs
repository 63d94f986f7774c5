//! The channel's accounts, guarded by the deduction barrier of DESIGN §3: every deduct and
//! refund moves the balance in one transaction with its ledger row.

use jifen_mesh::barrier::{Balance, Barrier, DeductOutcome, LedgerEntry, Rejection};
use jifen_mesh::domain::{ChannelId, InvalidField, OrderId, Points, RequestId, UserId};
use jifen_mesh::storage::Database;
use jifen_mesh::time::now_unix_ms;
use sqlx::Row;

use crate::error::ChannelError;

const ACCOUNTS: Balance = Balance {
    take: "UPDATE accounts SET balance = balance - $1, held = held + $1, updated_at_ms = $2 \
           WHERE user_id = $3 AND balance >= $1",
    restore: "UPDATE accounts SET balance = balance + $1, held = held - $1, updated_at_ms = $2 \
              WHERE user_id = $3",
    exists: "SELECT 1 FROM accounts WHERE user_id = $1",
};

/// One channel's points ledger.
#[derive(Debug, Clone)]
pub struct PointsLedger {
    db: Database,
    channel_id: ChannelId,
    barrier: Barrier,
}

impl PointsLedger {
    pub fn new(db: Database, channel_id: ChannelId) -> Self {
        Self {
            barrier: Barrier::new("deductions", "user_id", ACCOUNTS, db.clone()),
            db,
            channel_id,
        }
    }

    pub fn channel_id(&self) -> &ChannelId {
        &self.channel_id
    }

    pub fn database(&self) -> &Database {
        &self.db
    }

    pub async fn balance(&self, user_id: &UserId) -> Result<i64, ChannelError> {
        sqlx::query("SELECT balance FROM accounts WHERE user_id = $1")
            .bind(user_id.as_str())
            .fetch_optional(self.db.pool())
            .await?
            .map(|row| row.try_get::<i64, _>("balance"))
            .transpose()?
            .ok_or_else(|| ChannelError::UnknownUser {
                user_id: user_id.to_string(),
            })
    }

    /// Deducts `points` for the key `(order_id, user_id)` once. A repeated deduct returns the
    /// recorded outcome; a rejection is recorded and returned as the same error every time.
    pub async fn deduct(
        &self,
        order_id: &OrderId,
        user_id: &UserId,
        points: Points,
    ) -> Result<LedgerEntry, ChannelError> {
        let outcome = self
            .barrier
            .deduct(order_id.as_str(), user_id.as_str(), points.get())
            .await?;
        match outcome {
            DeductOutcome::Deducted(entry) => Ok(entry),
            DeductOutcome::Rejected(entry, Rejection::Insufficient) => {
                Err(ChannelError::InsufficientPoints {
                    order_id: entry.order_id,
                    user_id: entry.party,
                    points: entry.points,
                })
            }
            DeductOutcome::Rejected(entry, Rejection::UnknownParty) => {
                Err(ChannelError::UnknownUser {
                    user_id: entry.party,
                })
            }
            DeductOutcome::RefundedBefore(entry) => Err(ChannelError::RefundedBefore {
                order_id: entry.order_id,
                user_id: entry.party,
            }),
            DeductOutcome::Conflict(entry) => Err(ChannelError::Conflict(format!(
                "order {} was recorded for user {} with {} points, not {points}",
                entry.order_id, entry.party, entry.points
            ))),
        }
    }

    /// Refunds the key once. A key never deducted records a 0-point refund (null
    /// compensation), which also makes a later deduct of it fail with `RefundedBefore`.
    pub async fn refund(
        &self,
        order_id: &OrderId,
        user_id: &UserId,
    ) -> Result<LedgerEntry, ChannelError> {
        Ok(self
            .barrier
            .refund(order_id.as_str(), user_id.as_str())
            .await?)
    }

    pub async fn deduction(
        &self,
        order_id: &OrderId,
        user_id: &UserId,
    ) -> Result<LedgerEntry, ChannelError> {
        self.barrier
            .get(&self.db, order_id.as_str(), user_id.as_str())
            .await?
            .ok_or_else(|| ChannelError::NoDeduction {
                order_id: order_id.to_string(),
                user_id: user_id.to_string(),
            })
    }

    /// Credits `points` once per `request_id`, opening the account if needed; returns the
    /// balance after the credit.
    pub async fn credit(
        &self,
        request_id: &RequestId,
        user_id: &UserId,
        points: Points,
    ) -> Result<i64, ChannelError> {
        let now = now_unix_ms();
        let mut tx = self.db.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO credits (request_id, user_id, points, created_at_ms) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (request_id) DO NOTHING",
        )
        .bind(request_id.as_str())
        .bind(user_id.as_str())
        .bind(points.get())
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            let row = sqlx::query("SELECT user_id, points FROM credits WHERE request_id = $1")
                .bind(request_id.as_str())
                .fetch_one(&mut *tx)
                .await?;
            let (recorded_user, recorded_points): (String, i64) =
                (row.try_get("user_id")?, row.try_get("points")?);
            tx.commit().await?;
            if recorded_user != user_id.as_str() || recorded_points != points.get() {
                return Err(ChannelError::Conflict(format!(
                    "credit {request_id} was recorded as {recorded_points} points for user \
                     {recorded_user}, not {points} for {user_id}"
                )));
            }
            return self.balance(user_id).await;
        }
        sqlx::query(
            "INSERT INTO accounts (user_id, balance, created_at_ms, updated_at_ms) \
             VALUES ($1, 0, $2, $2) ON CONFLICT (user_id) DO NOTHING",
        )
        .bind(user_id.as_str())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let balance = sqlx::query(
            // balance + held bounded, not balance alone: held points come back with refunds.
            "UPDATE accounts SET balance = balance + $1, updated_at_ms = $2 \
             WHERE user_id = $3 AND balance + held <= $4 - $1 RETURNING balance",
        )
        .bind(points.get())
        .bind(now)
        .bind(user_id.as_str())
        .bind(i64::MAX)
        .fetch_optional(&mut *tx)
        .await?
        .map(|row| row.try_get::<i64, _>("balance"))
        .transpose()?;
        match balance {
            Some(balance) => {
                tx.commit().await?;
                Ok(balance)
            }
            None => Err(InvalidField::new(
                "points",
                format!("crediting {points} would overflow the balance of user {user_id}"),
            )
            .into()),
        }
    }
}
