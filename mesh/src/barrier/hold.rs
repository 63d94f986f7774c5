//! Holds (TCC, DESIGN §12) under the barrier's rules: a freeze moves points from the spendable
//! balance to a frozen one and records the key `FROZEN` until its expiry; a confirm spends a
//! live hold once; a cancel releases it once, and a cancel of a key never seen records a cancel
//! of 0 points (null cancel), so that a late freeze is refused (anti-hanging). A hold past its
//! expiry is released by the first call that finds it (a confirm is then refused) or by
//! [`Barrier::release_lapsed`].

use sqlx::AnyConnection;

use super::{
    Barrier, BarrierAnswer, BarrierOp, DeductOutcome, LedgerEntry, LedgerState, Rules, Taking,
    mixed_up,
};

/// The rejection code of a hold released by its expiry.
pub(super) const EXPIRED: &str = "expired";

/// How long a hold lives unless the barrier is told otherwise.
pub const DEFAULT_HOLD_TTL: std::time::Duration = std::time::Duration::from_secs(10 * 60);
pub(super) const DEFAULT_TTL_MS: i64 = 10 * 60 * 1000;

/// The holds of a [`super::Balance`], as SQL over the same table. Parameters as there: `$1` the
/// points, `$2` the time (ms), `$3` the party.
#[derive(Debug, Clone, Copy)]
pub struct HoldBalance {
    /// Moves `$1` from the spendable balance to the frozen one; must change no row when the
    /// balance is short.
    pub freeze: &'static str,
    /// Spends `$1` of the frozen balance.
    pub confirm: &'static str,
    /// Moves `$1` from the frozen balance back to the spendable one.
    pub release: &'static str,
}

/// What a confirm came to.
#[derive(Debug, PartialEq, Eq)]
pub enum ConfirmOutcome {
    /// The hold is spent (now, or by an earlier confirm).
    Confirmed(LedgerEntry),
    /// The key holds nothing to confirm: cancelled, expired, refused, or a deduct's key.
    NotHeld(LedgerEntry),
    /// Nothing is recorded for the key.
    Unknown,
}

#[derive(Debug)]
pub(super) enum HoldOp {
    Freeze {
        order_id: String,
        party: String,
        points: i64,
        ttl_ms: i64,
    },
    Confirm {
        order_id: String,
        party: String,
    },
    Cancel {
        order_id: String,
        party: String,
    },
    ReleaseLapsed {
        limit: i64,
    },
}

impl Barrier {
    /// Freezes `points` for the key once, until the hold's TTL; answers like
    /// [`Barrier::deduct`] (a key cancelled first answers `RefundedBefore`).
    pub async fn freeze(
        &self,
        order_id: &str,
        party: &str,
        points: i64,
    ) -> Result<DeductOutcome, sqlx::Error> {
        let op = HoldOp::Freeze {
            order_id: order_id.to_owned(),
            party: party.to_owned(),
            points,
            ttl_ms: self.hold_ttl_ms,
        };
        match self.writer.call(BarrierOp::Hold(op)).await? {
            BarrierAnswer::Deducted(outcome) => Ok(outcome),
            _ => Err(mixed_up()),
        }
    }

    /// Spends the key's live hold once.
    pub async fn confirm(
        &self,
        order_id: &str,
        party: &str,
    ) -> Result<ConfirmOutcome, sqlx::Error> {
        let op = HoldOp::Confirm {
            order_id: order_id.to_owned(),
            party: party.to_owned(),
        };
        match self.writer.call(BarrierOp::Hold(op)).await? {
            BarrierAnswer::Confirmed(outcome) => Ok(outcome),
            _ => Err(mixed_up()),
        }
    }

    /// Releases the key's hold once and returns its row (a confirmed one unchanged).
    pub async fn cancel(&self, order_id: &str, party: &str) -> Result<LedgerEntry, sqlx::Error> {
        let op = HoldOp::Cancel {
            order_id: order_id.to_owned(),
            party: party.to_owned(),
        };
        match self.writer.call(BarrierOp::Hold(op)).await? {
            BarrierAnswer::Refunded(entry) => Ok(entry),
            _ => Err(mixed_up()),
        }
    }

    /// Releases up to `limit` holds past their expiry, the oldest first; returns them.
    pub async fn release_lapsed(&self, limit: i64) -> Result<Vec<LedgerEntry>, sqlx::Error> {
        match self
            .writer
            .call(BarrierOp::Hold(HoldOp::ReleaseLapsed { limit }))
            .await?
        {
            BarrierAnswer::Expired(entries) => Ok(entries),
            _ => Err(mixed_up()),
        }
    }
}

impl Rules {
    fn holds(&self) -> Result<HoldBalance, sqlx::Error> {
        self.balance
            .hold
            .ok_or_else(|| sqlx::Error::Protocol("this ledger does not hold points".into()))
    }

    pub(super) async fn hold_in(
        &self,
        tx: &mut AnyConnection,
        op: &HoldOp,
        now: i64,
    ) -> Result<BarrierAnswer, sqlx::Error> {
        let holds = self.holds()?;
        Ok(match op {
            HoldOp::Freeze {
                order_id,
                party,
                points,
                ttl_ms,
            } => {
                let taking = Taking {
                    state: LedgerState::Frozen,
                    expires_at_ms: now.saturating_add(*ttl_ms),
                    sql: holds.freeze,
                };
                BarrierAnswer::Deducted(
                    self.take_in(tx, order_id, party, *points, taking, now)
                        .await?,
                )
            }
            HoldOp::Confirm { order_id, party } => {
                BarrierAnswer::Confirmed(self.confirm_in(tx, holds, order_id, party, now).await?)
            }
            HoldOp::Cancel { order_id, party } => {
                BarrierAnswer::Refunded(self.cancel_in(tx, holds, order_id, party, now).await?)
            }
            HoldOp::ReleaseLapsed { limit } => {
                let mut released = Vec::new();
                for (order_id, party) in self.ledger.lapsed(&mut *tx, now, *limit).await? {
                    if let Some(entry) = self
                        .release(tx, holds, &order_id, &party, EXPIRED, now)
                        .await?
                    {
                        released.push(entry);
                    }
                }
                BarrierAnswer::Expired(released)
            }
        })
    }

    async fn confirm_in(
        &self,
        tx: &mut AnyConnection,
        holds: HoldBalance,
        order_id: &str,
        party: &str,
        now: i64,
    ) -> Result<ConfirmOutcome, sqlx::Error> {
        let Some(recorded) = self.ledger.get(&mut *tx, order_id, party).await? else {
            return Ok(ConfirmOutcome::Unknown);
        };
        match recorded.state {
            LedgerState::Frozen if recorded.expires_at_ms <= now => {
                let released = self
                    .release(tx, holds, order_id, party, EXPIRED, now)
                    .await?;
                return Ok(ConfirmOutcome::NotHeld(released.unwrap_or(recorded)));
            }
            LedgerState::Frozen => {}
            LedgerState::Confirmed => return Ok(ConfirmOutcome::Confirmed(recorded)),
            _ => return Ok(ConfirmOutcome::NotHeld(recorded)),
        }
        let Some(confirmed) = self
            .ledger
            .settle_hold(&mut *tx, order_id, party, LedgerState::Confirmed, "", now)
            .await?
        else {
            return Ok(ConfirmOutcome::NotHeld(recorded));
        };
        if !Self::shift(tx, holds.confirm, confirmed.points, party, now).await? {
            return Err(sqlx::Error::RowNotFound);
        }
        Ok(ConfirmOutcome::Confirmed(confirmed))
    }

    async fn cancel_in(
        &self,
        tx: &mut AnyConnection,
        holds: HoldBalance,
        order_id: &str,
        party: &str,
        now: i64,
    ) -> Result<LedgerEntry, sqlx::Error> {
        if let Some(null) = self
            .ledger
            .claim_null(&mut *tx, order_id, party, LedgerState::Cancelled, now)
            .await?
        {
            return Ok(null);
        }
        if let Some(released) = self.release(tx, holds, order_id, party, "", now).await? {
            return Ok(released);
        }
        self.ledger
            .get(&mut *tx, order_id, party)
            .await?
            .ok_or(sqlx::Error::RowNotFound)
    }

    /// Releases the key's live hold, if it has one, back into the balance.
    async fn release(
        &self,
        tx: &mut AnyConnection,
        holds: HoldBalance,
        order_id: &str,
        party: &str,
        why: &str,
        now: i64,
    ) -> Result<Option<LedgerEntry>, sqlx::Error> {
        let Some(released) = self
            .ledger
            .settle_hold(&mut *tx, order_id, party, LedgerState::Cancelled, why, now)
            .await?
        else {
            return Ok(None);
        };
        if !Self::shift(tx, holds.release, released.points, party, now).await? {
            return Err(sqlx::Error::RowNotFound);
        }
        Ok(Some(released))
    }
}

/// Releases lapsed holds every `period` until `shutdown`, so that a hold nobody confirms or
/// cancels gives its points back by itself.
pub async fn release_lapsed_holds(
    barrier: Barrier,
    period: std::time::Duration,
    shutdown: tokio_util::sync::CancellationToken,
) {
    const BATCH: i64 = 500;
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = shutdown.cancelled() => return,
        }
        loop {
            match barrier.release_lapsed(BATCH).await {
                Ok(released) => {
                    if !released.is_empty() {
                        tracing::info!(released = released.len(), "lapsed holds released");
                    }
                    if i64::try_from(released.len()).unwrap_or(0) < BATCH {
                        break;
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot release lapsed holds; trying again");
                    break;
                }
            }
        }
    }
}
