//! The channel registry, quota grants, and the quotas guarded by the deduction barrier of
//! DESIGN §3: every deduct and refund moves `used` in one transaction with its ledger row.

use jifen_mesh::barrier::{
    Balance, Barrier, ConfirmOutcome, DeductOutcome, HoldBalance, LedgerEntry, LedgerState,
    Rejection,
};
use jifen_mesh::domain::{
    ChannelId, DisplayName, Endpoint, InvalidField, OrderId, Points, RequestId,
};
use jifen_mesh::storage::Database;
use jifen_mesh::time::now_unix_ms;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::error::PortalError;

/// How a channel is reached (DESIGN §9).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChannelKind {
    /// Its endpoint speaks `ChannelService`.
    #[default]
    Grpc,
    /// An HTTP/JSON points API driven through an adapter config.
    Http,
}

impl ChannelKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Grpc => "GRPC",
            Self::Http => "HTTP",
        }
    }

    fn parse(raw: &str) -> Self {
        if raw == "HTTP" {
            Self::Http
        } else {
            Self::Grpc
        }
    }
}

/// A registered channel with its quota.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelRecord {
    pub channel_id: String,
    pub name: String,
    pub endpoint: String,
    pub total: i64,
    pub used: i64,
    pub kind: ChannelKind,
}

impl ChannelRecord {
    pub fn remaining(&self) -> i64 {
        self.total - self.used
    }

    fn from_row(row: &AnyRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            channel_id: row.try_get("channel_id")?,
            name: row.try_get("name")?,
            endpoint: row.try_get("endpoint")?,
            total: row.try_get("total")?,
            used: row.try_get("used")?,
            kind: ChannelKind::parse(&row.try_get::<String, _>("kind")?),
        })
    }
}

const CHANNEL_COLUMNS: &str = "channel_id, name, endpoint, total, used, kind";

const QUOTAS: Balance = Balance {
    take: "UPDATE channels SET used = used + $1, updated_at_ms = $2 \
           WHERE channel_id = $3 AND total - used >= $1",
    restore: "UPDATE channels SET used = used - $1, updated_at_ms = $2 WHERE channel_id = $3",
    exists: "SELECT 1 FROM channels WHERE channel_id = $1",
    // A hold reserves quota: it counts as used from its freeze, and `frozen` says how much of
    // `used` is held rather than spent.
    hold: Some(HoldBalance {
        freeze: "UPDATE channels SET used = used + $1, frozen = frozen + $1, updated_at_ms = $2 \
                 WHERE channel_id = $3 AND total - used >= $1",
        confirm: "UPDATE channels SET frozen = frozen - $1, updated_at_ms = $2 WHERE channel_id = $3",
        release: "UPDATE channels SET used = used - $1, frozen = frozen - $1, updated_at_ms = $2 \
                  WHERE channel_id = $3",
    }),
};

/// The portal's registry and quota ledger.
#[derive(Debug, Clone)]
pub struct QuotaBook {
    db: Database,
    barrier: Barrier,
}

impl QuotaBook {
    pub fn new(db: Database) -> Self {
        Self {
            barrier: Barrier::new("quota_deductions", "channel_id", QUOTAS, db.clone()),
            db,
        }
    }

    pub fn database(&self) -> &Database {
        &self.db
    }

    /// Registers a channel, or updates the name, endpoint and kind of a registered one.
    pub async fn register(
        &self,
        channel_id: &ChannelId,
        name: &DisplayName,
        endpoint: &Endpoint,
        kind: ChannelKind,
    ) -> Result<ChannelRecord, PortalError> {
        let now = now_unix_ms();
        let row = sqlx::query(&format!(
            "INSERT INTO channels (channel_id, name, endpoint, total, used, created_at_ms, updated_at_ms, kind) \
             VALUES ($1, $2, $3, 0, 0, $4, $4, $5) \
             ON CONFLICT (channel_id) DO UPDATE SET name = $2, endpoint = $3, updated_at_ms = $4, kind = $5 \
             RETURNING {CHANNEL_COLUMNS}"
        ))
        .bind(channel_id.as_str())
        .bind(name.as_str())
        .bind(endpoint.as_str())
        .bind(now)
        .bind(kind.as_str())
        .fetch_one(self.db.pool())
        .await?;
        Ok(ChannelRecord::from_row(&row)?)
    }

    pub async fn channels(&self) -> Result<Vec<ChannelRecord>, PortalError> {
        let rows = sqlx::query(&format!(
            "SELECT {CHANNEL_COLUMNS} FROM channels ORDER BY channel_id"
        ))
        .fetch_all(self.db.pool())
        .await?;
        Ok(rows
            .iter()
            .map(ChannelRecord::from_row)
            .collect::<Result<_, _>>()?)
    }

    pub async fn channel(&self, channel_id: &ChannelId) -> Result<ChannelRecord, PortalError> {
        let row = sqlx::query(&format!(
            "SELECT {CHANNEL_COLUMNS} FROM channels WHERE channel_id = $1"
        ))
        .bind(channel_id.as_str())
        .fetch_optional(self.db.pool())
        .await?
        .ok_or_else(|| PortalError::UnknownChannel {
            channel_id: channel_id.to_string(),
        })?;
        Ok(ChannelRecord::from_row(&row)?)
    }

    /// Adds `points` to a channel's total once per `request_id`.
    pub async fn grant(
        &self,
        request_id: &RequestId,
        channel_id: &ChannelId,
        points: Points,
    ) -> Result<ChannelRecord, PortalError> {
        let now = now_unix_ms();
        let mut tx = self.db.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO grants (request_id, channel_id, points, created_at_ms) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (request_id) DO NOTHING",
        )
        .bind(request_id.as_str())
        .bind(channel_id.as_str())
        .bind(points.get())
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            let row = sqlx::query("SELECT channel_id, points FROM grants WHERE request_id = $1")
                .bind(request_id.as_str())
                .fetch_one(&mut *tx)
                .await?;
            let (recorded_channel, recorded_points): (String, i64) =
                (row.try_get("channel_id")?, row.try_get("points")?);
            tx.commit().await?;
            if recorded_channel != channel_id.as_str() || recorded_points != points.get() {
                return Err(PortalError::Conflict(format!(
                    "grant {request_id} was recorded as {recorded_points} points for channel \
                     {recorded_channel}, not {points} for {channel_id}"
                )));
            }
            return self.channel(channel_id).await;
        }
        let granted = sqlx::query(&format!(
            "UPDATE channels SET total = total + $1, updated_at_ms = $2 \
             WHERE channel_id = $3 AND total <= $4 - $1 RETURNING {CHANNEL_COLUMNS}"
        ))
        .bind(points.get())
        .bind(now)
        .bind(channel_id.as_str())
        .bind(i64::MAX)
        .fetch_optional(&mut *tx)
        .await?;
        match granted {
            Some(row) => {
                let record = ChannelRecord::from_row(&row)?;
                tx.commit().await?;
                Ok(record)
            }
            None => {
                let known = sqlx::query("SELECT 1 FROM channels WHERE channel_id = $1")
                    .bind(channel_id.as_str())
                    .fetch_optional(&mut *tx)
                    .await?
                    .is_some();
                if known {
                    Err(InvalidField::new(
                        "points",
                        format!(
                            "granting {points} would overflow the quota of channel {channel_id}"
                        ),
                    )
                    .into())
                } else {
                    Err(PortalError::UnknownChannel {
                        channel_id: channel_id.to_string(),
                    })
                }
            }
        }
    }

    /// Uses `points` of a channel's quota for the key `(order_id, channel_id)` once. A
    /// repeated deduct returns the recorded outcome; a rejection is recorded and returned as
    /// the same error every time.
    pub async fn deduct(
        &self,
        order_id: &OrderId,
        channel_id: &ChannelId,
        points: Points,
    ) -> Result<LedgerEntry, PortalError> {
        let outcome = self
            .barrier
            .deduct(order_id.as_str(), channel_id.as_str(), points.get())
            .await?;
        taken(outcome, points)
    }

    /// Reserves `points` of a channel's quota for the key once, until the hold's TTL (TCC,
    /// DESIGN §12); answers like [`Self::deduct`].
    pub async fn freeze(
        &self,
        order_id: &OrderId,
        channel_id: &ChannelId,
        points: Points,
    ) -> Result<LedgerEntry, PortalError> {
        let outcome = self
            .barrier
            .freeze(order_id.as_str(), channel_id.as_str(), points.get())
            .await?;
        taken(outcome, points)
    }

    /// Spends the key's hold once; a hold cancelled, refused or expired is refused.
    pub async fn confirm(
        &self,
        order_id: &OrderId,
        channel_id: &ChannelId,
    ) -> Result<LedgerEntry, PortalError> {
        match self
            .barrier
            .confirm(order_id.as_str(), channel_id.as_str())
            .await?
        {
            ConfirmOutcome::Confirmed(entry) => Ok(entry),
            ConfirmOutcome::NotHeld(entry) => Err(PortalError::HoldSettled {
                state: entry.state_name(),
                order_id: entry.order_id,
                channel_id: entry.party,
            }),
            ConfirmOutcome::Unknown => Err(PortalError::NoDeduction {
                order_id: order_id.to_string(),
                channel_id: channel_id.to_string(),
            }),
        }
    }

    /// Releases the key's hold once (a null cancel for a key never frozen); a confirmed hold is
    /// refused.
    pub async fn cancel(
        &self,
        order_id: &OrderId,
        channel_id: &ChannelId,
    ) -> Result<LedgerEntry, PortalError> {
        let entry = self
            .barrier
            .cancel(order_id.as_str(), channel_id.as_str())
            .await?;
        if entry.state == LedgerState::Confirmed {
            return Err(PortalError::HoldSettled {
                order_id: entry.order_id,
                channel_id: entry.party,
                state: entry.state.as_str(),
            });
        }
        Ok(entry)
    }

    /// How long a hold lives before the portal releases it by itself.
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

    /// Releases holds past their expiry, up to `limit`; returns how many.
    pub async fn release_lapsed(&self, limit: i64) -> Result<usize, PortalError> {
        Ok(self.barrier.release_lapsed(limit).await?.len())
    }

    /// Gives the quota of the key back once; a key never deducted records a 0 refund, which
    /// also makes a later deduct of it fail with `RefundedBefore`.
    pub async fn refund(
        &self,
        order_id: &OrderId,
        channel_id: &ChannelId,
    ) -> Result<LedgerEntry, PortalError> {
        Ok(self
            .barrier
            .refund(order_id.as_str(), channel_id.as_str())
            .await?)
    }

    pub async fn deduction(
        &self,
        order_id: &OrderId,
        channel_id: &ChannelId,
    ) -> Result<LedgerEntry, PortalError> {
        self.barrier
            .get(&self.db, order_id.as_str(), channel_id.as_str())
            .await?
            .ok_or_else(|| PortalError::NoDeduction {
                order_id: order_id.to_string(),
                channel_id: channel_id.to_string(),
            })
    }
}

/// What a deduct or freeze answers, from what the barrier recorded.
fn taken(outcome: DeductOutcome, points: Points) -> Result<LedgerEntry, PortalError> {
    match outcome {
        DeductOutcome::Deducted(entry) => Ok(entry),
        DeductOutcome::Rejected(entry, Rejection::Insufficient) => {
            Err(PortalError::InsufficientQuota {
                order_id: entry.order_id,
                channel_id: entry.party,
                points: entry.points,
            })
        }
        DeductOutcome::Rejected(entry, Rejection::UnknownParty) => {
            Err(PortalError::UnknownChannel {
                channel_id: entry.party,
            })
        }
        DeductOutcome::RefundedBefore(entry) => Err(PortalError::RefundedBefore {
            order_id: entry.order_id,
            channel_id: entry.party,
        }),
        DeductOutcome::Conflict(entry) => Err(PortalError::Conflict(format!(
            "order {} was recorded for channel {} with {} points, not {points}",
            entry.order_id, entry.party, entry.points
        ))),
    }
}
