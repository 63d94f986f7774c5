//! The channel's accounts, guarded by the deduction barrier of DESIGN §3: every deduct and
//! refund moves the balance in one transaction with its ledger row.

use jifen_mesh::barrier::{
    Balance, Barrier, ConfirmOutcome, DeductOutcome, HoldBalance, LedgerEntry, LedgerState,
    Rejection,
};
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
    hold: Some(HoldBalance {
        freeze: "UPDATE accounts SET balance = balance - $1, frozen = frozen + $1, updated_at_ms = $2 \
                 WHERE user_id = $3 AND balance >= $1",
        // Spent points stay counted as held, as a deduct's do: credited = balance + held + frozen.
        confirm: "UPDATE accounts SET frozen = frozen - $1, held = held + $1, updated_at_ms = $2 \
                  WHERE user_id = $3",
        release: "UPDATE accounts SET frozen = frozen - $1, balance = balance + $1, updated_at_ms = $2 \
                  WHERE user_id = $3",
    }),
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

    /// How long a hold lives before the channel releases it by itself.
    pub fn with_hold_ttl(mut self, ttl: std::time::Duration) -> Self {
        self.barrier = self.barrier.with_hold_ttl(ttl);
        self
    }

    pub fn hold_ttl(&self) -> std::time::Duration {
        self.barrier.hold_ttl()
    }

    /// The barrier, for the release of lapsed holds.
    pub fn barrier(&self) -> &Barrier {
        &self.barrier
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
        taken(outcome, points)
    }

    /// Freezes `points` for the key once (TCC, DESIGN §12), answering like [`Self::deduct`]; a
    /// key cancelled first refuses it (`RefundedBefore`).
    pub async fn freeze(
        &self,
        order_id: &OrderId,
        user_id: &UserId,
        points: Points,
    ) -> Result<LedgerEntry, ChannelError> {
        let outcome = self
            .barrier
            .freeze(order_id.as_str(), user_id.as_str(), points.get())
            .await?;
        taken(outcome, points)
    }

    /// Spends the key's hold once; a hold cancelled, refused or expired is refused.
    pub async fn confirm(
        &self,
        order_id: &OrderId,
        user_id: &UserId,
    ) -> Result<LedgerEntry, ChannelError> {
        match self
            .barrier
            .confirm(order_id.as_str(), user_id.as_str())
            .await?
        {
            ConfirmOutcome::Confirmed(entry) => Ok(entry),
            ConfirmOutcome::NotHeld(entry) => Err(ChannelError::HoldSettled {
                state: entry.state_name(),
                order_id: entry.order_id,
                user_id: entry.party,
            }),
            ConfirmOutcome::Unknown => Err(ChannelError::NoDeduction {
                order_id: order_id.to_string(),
                user_id: user_id.to_string(),
            }),
        }
    }

    /// Releases the key's hold once; a key never frozen records a cancel of 0 points (null
    /// cancel), which refuses a later freeze. A confirmed hold is refused.
    pub async fn cancel(
        &self,
        order_id: &OrderId,
        user_id: &UserId,
    ) -> Result<LedgerEntry, ChannelError> {
        let entry = self
            .barrier
            .cancel(order_id.as_str(), user_id.as_str())
            .await?;
        if entry.state == LedgerState::Confirmed {
            return Err(ChannelError::HoldSettled {
                order_id: entry.order_id,
                user_id: entry.party,
                state: entry.state.as_str(),
            });
        }
        Ok(entry)
    }

    /// Releases holds past their expiry, up to `limit`; returns how many.
    pub async fn release_lapsed(&self, limit: i64) -> Result<usize, ChannelError> {
        Ok(self.barrier.release_lapsed(limit).await?.len())
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
            // balance + held + frozen bounded, not balance alone: held and frozen points come back
            // with refunds and cancels.
            "UPDATE accounts SET balance = balance + $1, updated_at_ms = $2 \
             WHERE user_id = $3 AND balance + held + frozen <= $4 - $1 RETURNING balance",
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

/// What a deduct or freeze answers, from what the barrier recorded.
fn taken(outcome: DeductOutcome, points: Points) -> Result<LedgerEntry, ChannelError> {
    match outcome {
        DeductOutcome::Deducted(entry) => Ok(entry),
        DeductOutcome::Rejected(entry, Rejection::Insufficient) => {
            Err(ChannelError::InsufficientPoints {
                order_id: entry.order_id,
                user_id: entry.party,
                points: entry.points,
            })
        }
        DeductOutcome::Rejected(entry, Rejection::UnknownParty) => Err(ChannelError::UnknownUser {
            user_id: entry.party,
        }),
        DeductOutcome::RefundedBefore(entry) => Err(ChannelError::RefundedBefore {
            order_id: entry.order_id,
            user_id: entry.party,
        }),
        DeductOutcome::Conflict(entry) => Err(ChannelError::Conflict(format!(
            "order {} was recorded for user {} as {} {} points, not {points}",
            entry.order_id,
            entry.party,
            entry.state.as_str(),
            entry.points
        ))),
    }
}
