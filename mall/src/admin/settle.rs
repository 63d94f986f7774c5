//! What an operator settles by hand at a weak channel (DESIGN §9): the real outcome of a deduct
//! that could not be known, and a refund made at a channel without a refund call. Each is fed
//! to the saga as the report the channel could not give, in one transaction with its history
//! note and the closing of the line's dead letters — so the order goes on exactly as if the
//! channel had answered.

use jifen_mesh::barrier::LedgerState;
use jifen_mesh::bus::subjects::{Step, channel_command};
use jifen_mesh::domain::{ChannelId, OrderId, UserId};
use jifen_mesh::time::now_unix_ms;

use super::Admin;
use crate::error::MallError;
use crate::order::{Order, StepState};
use crate::saga::{Outcome, StepKey, apply_in};
use crate::store::dead_letters;
use crate::store::{Appends, record, steps};

/// One line of an order, as an operator names it.
#[derive(Debug, Clone)]
pub struct LineKey {
    pub order_id: OrderId,
    pub channel_id: ChannelId,
    pub user_id: UserId,
}

impl LineKey {
    pub fn parse(order_id: String, channel_id: String, user_id: String) -> Result<Self, MallError> {
        Ok(Self {
            order_id: OrderId::parse("order_id", order_id)?,
            channel_id: ChannelId::parse("channel_id", channel_id)?,
            user_id: UserId::parse("user_id", user_id)?,
        })
    }

    /// How the audit names the line: `order/channel/user`.
    pub(super) fn target(&self) -> String {
        let (order_id, channel_id, user_id) = self.parts();
        format!("{order_id}/{channel_id}/{user_id}")
    }

    fn parts(&self) -> (&str, &str, &str) {
        (
            self.order_id.as_str(),
            self.channel_id.as_str(),
            self.user_id.as_str(),
        )
    }

    fn outcome(&self, state: LedgerState, points: i64, reason: String) -> Outcome {
        Outcome {
            order_id: self.order_id.as_str().to_owned(),
            step: StepKey::Line {
                channel_id: self.channel_id.as_str().to_owned(),
                user_id: self.user_id.as_str().to_owned(),
            },
            state,
            points,
            reason,
            refund_by_hand: false,
            deduct_may_follow: false,
            captured: Default::default(),
            exchanges: Vec::new(),
            hold_expires_at_ms: 0,
        }
    }
}

/// An operator's settlement in progress: the transaction holds the order's lock.
struct Settling {
    tx: jifen_mesh::storage::Tx,
    now: i64,
    sent_commands: bool,
    /// Left for after the commit.
    committed: crate::store::Committed,
}

impl Admin {
    /// Records what a deduct whose outcome was unknown really did at its channel.
    pub(super) async fn record_deduct_outcome(
        &self,
        line: &LineKey,
        deducted: bool,
        note: &str,
        actor: &str,
    ) -> Result<Order, MallError> {
        let (order_id, channel_id, user_id) = line.parts();
        let outcome = |points| {
            if deducted {
                line.outcome(LedgerState::Deducted, points, String::new())
            } else {
                line.outcome(
                    LedgerState::Rejected,
                    points,
                    format!("operator: not deducted at the channel ({note})"),
                )
            }
        };
        // A deduct that landed is always the saga's to settle, even where the line was already
        // refunded, rejected or skipped and the order cancelled (a deduct that overtook its
        // refund at a channel without anti-hanging): the saga refunds it again, as it does when
        // the channel itself reports it. That nothing was deducted matters only to a line
        // still waiting for it.
        let waiting: &[StepState] = if deducted {
            &[
                StepState::Pending,
                StepState::Refunding,
                StepState::Refunded,
                StepState::Rejected,
                StepState::Skipped,
            ]
        } else {
            &[StepState::Pending, StepState::Refunding]
        };
        let mut settling = self
            .begin(line, waiting, "not waiting for a deduct's outcome", outcome)
            .await?;
        let (tx, now) = (&mut *settling.tx, settling.now);
        let mut closed = 0_usize;
        let subject = channel_command(channel_id, Step::Deduct);
        for dl in dead_letters::open_on_subject(tx, order_id, &subject).await? {
            let for_line = jifen_mesh::wire::decode_command(&dl.subject, &dl.payload)
                .is_ok_and(|c| c.user_id == user_id);
            if for_line && dead_letters::close(tx, &dl.id, "DISCARDED", note, now).await? {
                closed += 1;
            }
        }
        let what = if deducted { "deducted" } else { "not deducted" };
        record(
            tx,
            order_id,
            "admin_deduct_outcome",
            &format!(
                "channel {channel_id}, user {user_id}: {what}, as the operator saw it ({note}); \
                 {closed} dead letter(s) closed"
            ),
            actor,
            now,
        )
        .await?;
        self.finish(order_id, settling).await
    }

    /// Records that a line waiting for a manual refund was refunded at its channel by hand.
    pub(super) async fn record_manual_refund(
        &self,
        line: &LineKey,
        note: &str,
        actor: &str,
    ) -> Result<Order, MallError> {
        let (order_id, channel_id, user_id) = line.parts();
        let mut settling = self
            .begin(
                line,
                &[StepState::ManualRefund],
                "not waiting for a manual refund",
                |points| line.outcome(LedgerState::Refunded, points, format!("by hand: {note}")),
            )
            .await?;
        sqlx::query(
            "UPDATE order_lines SET settled_by = $4 \
             WHERE order_id = $1 AND channel_id = $2 AND user_id = $3",
        )
        .bind(order_id)
        .bind(channel_id)
        .bind(user_id)
        .bind(actor)
        .execute(&mut *settling.tx)
        .await?;
        record(
            &mut settling.tx,
            order_id,
            "admin_manual_refund",
            &format!("channel {channel_id}, user {user_id}: refunded by hand ({note})"),
            actor,
            settling.now,
        )
        .await?;
        self.finish(order_id, settling).await
    }

    /// Clears the order's flag with the operator's note (an order not flagged is refused).
    pub(super) async fn clear_attention(
        &self,
        order_id: &str,
        note: &str,
        actor: &str,
    ) -> Result<Order, MallError> {
        let now = now_unix_ms();
        let mut tx = self.store.database().begin().await?;
        steps::lock_order(&mut tx, order_id, now)
            .await?
            .ok_or_else(|| MallError::UnknownOrder(order_id.to_owned()))?;
        let cleared = sqlx::query(
            "UPDATE orders SET needs_attention = 0 WHERE order_id = $1 AND needs_attention = 1 \
             RETURNING order_id",
        )
        .bind(order_id)
        .fetch_optional(&mut *tx)
        .await?;
        if cleared.is_none() {
            return Err(MallError::NotFlagged(order_id.to_owned()));
        }
        record(
            &mut tx,
            order_id,
            "attention_cleared",
            &format!("flag cleared by an operator: {note}"),
            actor,
            now,
        )
        .await?;
        tx.commit().await?;
        self.changes.announce(order_id);
        self.order(order_id).await
    }

    /// Locks the order, checks that the line waits in one of `waiting`, and applies the outcome
    /// made from the line's points as the saga would.
    async fn begin(
        &self,
        line: &LineKey,
        waiting: &[StepState],
        wanted: &'static str,
        outcome: impl FnOnce(i64) -> Outcome,
    ) -> Result<Settling, MallError> {
        let (order_id, channel_id, user_id) = line.parts();
        let now = now_unix_ms();
        let db = self.store.database();
        let mut tx = db.begin().await?;
        steps::lock_order(&mut tx, order_id, now)
            .await?
            .ok_or_else(|| MallError::UnknownOrder(order_id.to_owned()))?;
        let (state, points) = steps::line(&mut tx, order_id, channel_id, user_id)
            .await?
            .ok_or_else(|| MallError::UnknownLine {
                order_id: order_id.to_owned(),
                channel_id: channel_id.to_owned(),
                user_id: user_id.to_owned(),
            })?;
        if !waiting.contains(&state) {
            return Err(MallError::LineNotWaiting {
                channel_id: channel_id.to_owned(),
                user_id: user_id.to_owned(),
                state: state.as_str(),
                wanted,
            });
        }
        let mut appends = Appends::default();
        let effect = apply_in(&mut tx, &mut appends, db.backend(), &outcome(points), now).await?;
        let committed = appends.write(&mut tx).await?;
        Ok(Settling {
            tx,
            now,
            sent_commands: effect.sent_commands,
            committed,
        })
    }

    /// Clears the order's flag if nothing else needs an operator, and commits.
    async fn finish(&self, order_id: &str, mut settling: Settling) -> Result<Order, MallError> {
        dead_letters::clear_attention_if_settled(&mut settling.tx, order_id, settling.now).await?;
        settling.tx.commit().await?;
        settling.committed.observe();
        if settling.sent_commands {
            self.relay.notify_one();
        }
        self.changes.announce(order_id);
        self.order(order_id).await
    }
}
