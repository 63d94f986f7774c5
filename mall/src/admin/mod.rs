//! `AdminService`: the operator's side (DESIGN §4) — dead letters, manual compensation, retry,
//! stuck orders and reconciliation. Every call needs an operator's bearer token ([`Guarded`]);
//! a viewer only reads ([`acting`]); every action that changes an order is written into its
//! history with its note and the operator's name, and into the audit log. The gRPC methods
//! live in [`grpc`], the actions they run here.

mod acting;
mod auth;
mod channels;
mod grpc;
mod holds;
mod reconcile;
mod settle;
mod statements;

use std::sync::Arc;

use jifen_mesh::bus::publish::{Outgoing, Publisher};
use jifen_mesh::time::now_unix_ms;
use sqlx::AnyConnection;
use tokio::sync::Notify;

use crate::changes::OrderChanges;

use crate::store::reemit::reemit;
use crate::store::{phases, steps};
pub(crate) use auth::constant_time_eq;
pub use auth::{Gate, Guarded, Refusal};

use crate::error::MallError;
use crate::order::{Order, OrderState, StepState};
use crate::precheck::Registry;
use crate::store::dead_letters::{self, DeadLetter};
use crate::store::{Appends, OrderStore, record};

/// Most orders one `Reconcile` call compares.
pub const RECONCILE_LIMIT: i64 = 10_000;

#[derive(Debug, Clone)]
pub struct Admin {
    pub(crate) store: OrderStore,
    pub(crate) registry: Arc<Registry>,
    pub(crate) publisher: Publisher,
    pub(crate) relay: Arc<Notify>,
    pub(crate) changes: OrderChanges,
    /// The ledgers' health, from their connectors' reports.
    pub(crate) health: Arc<crate::ledger_health::HealthBoard>,
    /// Pauses and maintenance windows in force or ahead.
    pub(crate) pauses: Arc<crate::routine::pauses::PauseBoard>,
    /// Wakes the pause loop after an operator's pause or resume.
    pub(crate) pauses_changed: Arc<Notify>,
    /// Settled orders per channel and minute.
    pub(crate) activity: Arc<crate::routine::activity::ActivityBoard>,
    /// Consumer groups' backlogs.
    pub(crate) js: async_nats::jetstream::Context,
}

impl Admin {
    async fn order(&self, order_id: &str) -> Result<Order, MallError> {
        self.store
            .find(order_id)
            .await?
            .ok_or_else(|| MallError::UnknownOrder(order_id.to_owned()))
    }

    async fn dead_letter(&self, id: &str) -> Result<DeadLetter, MallError> {
        dead_letters::get_open(self.store.database(), id)
            .await?
            .ok_or_else(|| MallError::UnknownDeadLetter(id.to_owned()))
    }

    /// Locks a non-terminal order for an admin action; `None` when it does not exist.
    async fn lock_open(
        &self,
        tx: &mut AnyConnection,
        order_id: &str,
        action: &'static str,
        now: i64,
    ) -> Result<OrderState, MallError> {
        let state = steps::lock_order(tx, order_id, now)
            .await?
            .ok_or_else(|| MallError::UnknownOrder(order_id.to_owned()))?;
        if state.is_terminal() {
            return Err(MallError::Settled {
                order_id: order_id.to_owned(),
                state: state.as_str(),
                action,
            });
        }
        Ok(state)
    }

    async fn compensate(
        &self,
        order_id: &str,
        reason: &str,
        actor: &str,
    ) -> Result<Order, MallError> {
        let now = now_unix_ms();
        let mut tx = self.store.database().begin().await?;
        let state = self.lock_open(&mut tx, order_id, "compensate", now).await?;
        record(&mut tx, order_id, "admin_compensate", reason, actor, now).await?;
        let mut appends = Appends::default();
        match state {
            OrderState::Pending => {
                let reason = format!("operator: {reason}");
                phases::compensate(&mut tx, &mut appends, order_id, &reason, now).await?;
            }
            // Confirms may have landed: giving up now would spend some holds and not others.
            OrderState::Confirming => return Err(MallError::Confirming(order_id.to_owned())),
            // Already compensating: send the refunds still open again, under new ids.
            _ => {
                reemit(&mut tx, order_id, &[StepState::Refunding], now).await?;
            }
        }
        phases::settle_if_done(&mut tx, &mut appends, order_id, now).await?;
        // Written before what follows, so the history keeps its order.
        let committed = appends.write(&mut tx).await?;
        dead_letters::clear_attention_if_settled(&mut tx, order_id, now).await?;
        tx.commit().await?;
        committed.observe();
        self.after_change(order_id);
        self.order(order_id).await
    }

    async fn retry(&self, order_id: &str, note: &str, actor: &str) -> Result<Order, MallError> {
        let now = now_unix_ms();
        let mut tx = self.store.database().begin().await?;
        self.lock_open(&mut tx, order_id, "retry", now).await?;
        let sent = reemit(
            &mut tx,
            order_id,
            &[StepState::Pending, StepState::Refunding],
            now,
        )
        .await?;
        record(
            &mut tx,
            order_id,
            "admin_retry",
            &if note.is_empty() {
                format!("{sent} open command(s) sent again")
            } else {
                format!("{sent} open command(s) sent again: {note}")
            },
            actor,
            now,
        )
        .await?;
        dead_letters::clear_attention_if_settled(&mut tx, order_id, now).await?;
        tx.commit().await?;
        self.after_change(order_id);
        self.order(order_id).await
    }

    pub(crate) async fn redrive(
        &self,
        id: &str,
        note: &str,
        actor: &str,
    ) -> Result<DeadLetter, MallError> {
        let dl = self.dead_letter(id).await?;
        // Sending it again is the blind repeat the dead letter exists to prevent (DESIGN §9).
        if dl.kind == jifen_mesh::bus::subjects::OUTCOME_UNKNOWN {
            return Err(MallError::OutcomeUnknown(id.to_owned()));
        }
        // It was refused because it does not fit its order: sent again, it would not either.
        if dl.kind == jifen_mesh::bus::subjects::MISMATCHED_EVENT {
            return Err(MallError::MismatchedEvent(id.to_owned()));
        }
        let base = if dl.origin_msg_id.is_empty() {
            dl.id.clone()
        } else {
            dl.origin_msg_id.clone()
        };
        let message = Outgoing {
            subject: dl.subject.clone(),
            msg_id: format!("{base}:redrive-{}", dl.redrives + 1),
            order_id: dl.order_id.clone(),
            traceparent: None,
            payload: dl.payload.clone().into(),
        };
        self.publisher
            .publish(&message)
            .await
            .map_err(|e| MallError::Bus(e.to_string()))?;
        let now = now_unix_ms();
        let mut tx = self.store.database().begin().await?;
        if !dead_letters::close(&mut tx, id, "REDRIVEN", note, now).await? {
            // Closed by someone else meanwhile; the message went out again, which the
            // barrier makes harmless, but this redrive is not recorded.
            tracing::warn!(%id, "dead letter closed while it was being redriven");
            return Err(MallError::UnknownDeadLetter(id.to_owned()));
        }
        record(
            &mut tx,
            &dl.order_id,
            "admin_redrive",
            &format!("dead letter {id} sent again to {}: {note}", dl.subject),
            actor,
            now,
        )
        .await?;
        dead_letters::clear_attention_if_settled(&mut tx, &dl.order_id, now).await?;
        tx.commit().await?;
        self.after_change(&dl.order_id);
        Ok(DeadLetter {
            redrives: dl.redrives + 1,
            ..dl
        })
    }

    async fn discard(&self, id: &str, note: &str, actor: &str) -> Result<(), MallError> {
        let dl = self.dead_letter(id).await?;
        let now = now_unix_ms();
        let mut tx = self.store.database().begin().await?;
        if !dead_letters::close(&mut tx, id, "DISCARDED", note, now).await? {
            return Err(MallError::UnknownDeadLetter(id.to_owned()));
        }
        record(
            &mut tx,
            &dl.order_id,
            "admin_discard",
            &format!("dead letter {id} discarded: {note}"),
            actor,
            now,
        )
        .await?;
        dead_letters::clear_attention_if_settled(&mut tx, &dl.order_id, now).await?;
        tx.commit().await?;
        self.after_change(&dl.order_id);
        Ok(())
    }

    fn after_change(&self, order_id: &str) {
        self.relay.notify_one();
        self.changes.announce(order_id);
    }
}
