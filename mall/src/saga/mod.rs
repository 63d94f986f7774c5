//! The order saga (DESIGN §2): outcome events from the channels and the portal move an order's
//! steps, and the order with them — channels first, then one quota deduction per channel,
//! `COMPLETED`; on any business rejection, `COMPENSATING`: refunds for everything that may hold
//! points, then `CANCELLED`.
//!
//! A fetched batch of events is applied in one transaction ([`Saga::apply_batch`]); applying
//! one starts by reading its order and step under the order's lock (so concurrent events for
//! one order queue on it) without writing; an event that moves something writes its step,
//! stages history and the commands it causes (outbox) and marks the order for a new version,
//! all written together at the end of the batch. What each event does is decided in
//! [`machine`], free of I/O. Step changes only go forward, so a duplicate or late event changes
//! nothing; a deduct that lands where nothing may be held is refunded again (DESIGN §9).

use std::sync::Arc;

pub mod machine;
pub mod plan;
pub mod trust;

use jifen_mesh::barrier::LedgerState;
use jifen_mesh::bus::consume::{Delivery, Disposition, Handler};
use jifen_mesh::group_commit::{self, Write};
use jifen_mesh::storage::{Backend, Database};
use sqlx::AnyConnection;
use tokio::sync::Notify;

use crate::changes::OrderChanges;

use crate::order::{OrderState, StepState};
use crate::store::Appends;

use crate::store::phases::{
    compensate, complete_if_confirmed, confirm, correct, request_deducts, request_quotas,
    settle_if_done,
};
use crate::store::steps::{
    Claimed, claim_step, flag_hold_lost, flag_manual_refund, keep_captured, keep_exchanges,
    keep_hold_expiry, set_order, set_step,
};
pub use machine::{Decision, Outcome, Report, StepFacts, StepKey, decide, decode, next_step_state};
use plan::{Plan, Then};

/// What applying an event did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    Ignored(&'static str),
    /// The event does not fit its order (DESIGN §11): not applied, for an operator to see.
    Mismatched(trust::Mismatch),
    Moved {
        order_state: OrderState,
    },
    /// A deduct came for a step that must hold nothing: a refund of it was sent.
    Corrected,
}

/// What one event did inside a transaction, for the caller to act on once it commits.
#[derive(Debug)]
pub(crate) struct Effect {
    applied: Applied,
    /// Something was written: the transaction must commit (else it is undone).
    changed: bool,
    /// Commands were written to the outbox: the relay is woken.
    pub(crate) sent_commands: bool,
    /// A corrective refund was sent, of this kind (`points`, `quota`).
    corrected: Option<&'static str>,
}

impl Effect {
    fn ignored(why: &'static str) -> Self {
        Self {
            applied: Applied::Ignored(why),
            changed: false,
            sent_commands: false,
            corrected: None,
        }
    }

    fn mismatched(mismatch: trust::Mismatch) -> Self {
        Self {
            applied: Applied::Mismatched(mismatch),
            ..Self::ignored("mismatched")
        }
    }
}

/// The saga's event handler.
#[derive(Debug, Clone)]
pub struct Saga {
    db: Database,
    relay: Arc<Notify>,
    changes: OrderChanges,
}

impl Saga {
    pub fn new(db: Database, relay: Arc<Notify>, changes: OrderChanges) -> Self {
        Self { db, relay, changes }
    }

    /// Applies a batch of events in one transaction (one commit, one fsync); if one event
    /// fails, the batch is applied again one by one, so it is undone alone and reported while
    /// the others stand; an event that changes nothing writes nothing. Orders are locked in
    /// order-id order (stable, so one order's events keep theirs), so that two mall replicas
    /// applying batches never wait for each other in a cycle. If the transaction itself fails,
    /// the events are applied one by one ([`group_commit::apply_all`]).
    pub async fn apply_batch(
        &self,
        events: &[(&Outcome, &tracing::Span)],
    ) -> Vec<Result<Applied, String>> {
        let mut order: Vec<usize> = (0..events.len()).collect();
        order.sort_by(|a, b| events[*a].0.order_id.cmp(&events[*b].0.order_id));
        let sorted: Vec<(Outcome, tracing::Span)> = order
            .iter()
            .map(|&i| (events[i].0.clone(), events[i].1.clone()))
            .collect();
        let ops: Vec<&(Outcome, tracing::Span)> = sorted.iter().collect();
        let answers = group_commit::apply_all(&Events(self.db.backend()), &self.db, &ops).await;
        let mut results: Vec<Result<Applied, String>> =
            vec![Err("not applied".to_owned()); events.len()];
        for (i, answer) in order.into_iter().zip(answers) {
            results[i] = match answer {
                Ok(effect) => {
                    self.after_commit(&events[i].0.order_id, &effect);
                    Ok(effect.applied)
                }
                Err(error) => Err(error.to_string()),
            };
        }
        results
    }

    pub(crate) fn after_commit(&self, order_id: &str, effect: &Effect) {
        if let Some(kind) = effect.corrected {
            jifen_mesh::metrics::CORRECTIVE_REFUNDS
                .with_label_values(&[kind])
                .inc();
        }
        if effect.sent_commands {
            self.relay.notify_one();
        }
        if effect.changed {
            self.changes.announce(order_id);
        }
    }
}

/// The saga's events as group-commit writes: each in its own span, kept only if it changed
/// something.
struct Events(Backend);

impl Write for Events {
    type Op = (Outcome, tracing::Span);
    type Answer = Effect;
    type Staged = Appends;
    type Committed = crate::store::Committed;

    async fn apply(
        &self,
        tx: &mut AnyConnection,
        appends: &mut Appends,
        (outcome, span): &Self::Op,
        now: i64,
    ) -> Result<Effect, sqlx::Error> {
        let effect = tracing::Instrument::instrument(
            apply_in(tx, appends, self.0, outcome, now),
            span.clone(),
        )
        .await?;
        // An event that changed its order gives it a new version (one per batch).
        if effect.changed {
            appends.touch(&outcome.order_id, now);
        }
        Ok(effect)
    }

    async fn finish(
        &self,
        tx: &mut AnyConnection,
        appends: Appends,
    ) -> Result<crate::store::Committed, sqlx::Error> {
        appends.write(tx).await
    }

    fn committed(&self, committed: crate::store::Committed) {
        committed.observe();
    }

    fn keep(&self, effect: &Effect) -> bool {
        effect.changed
    }
}

/// Applies one event in the caller's transaction (an operator's recorded outcome is one too).
pub(crate) async fn apply_in(
    tx: &mut AnyConnection,
    appends: &mut Appends,
    backend: Backend,
    outcome: &Outcome,
    now: i64,
) -> Result<Effect, sqlx::Error> {
    // Every command names an order written before it was sent: an outcome for an order or a
    // step that does not exist was not caused by Jifen.
    let Some(Claimed { order, step }) = claim_step(tx, backend, outcome).await? else {
        return Ok(Effect::mismatched(trust::Mismatch(format!(
            "no order {:?}",
            outcome.order_id
        ))));
    };
    let Some((step, step_points)) = step else {
        return Ok(Effect::mismatched(trust::Mismatch(format!(
            "order {:?} has no step {:?}",
            outcome.order_id, outcome.step
        ))));
    };
    if let Err(mismatch) = trust::points_fit(outcome, step_points)
        .and_then(|()| trust::protocol_fits(outcome, step.protocol))
        .and_then(|()| trust::captured_fit(outcome))
        .and_then(|()| trust::exchanges_fit(outcome))
    {
        return Ok(Effect::mismatched(mismatch));
    }
    // Kept whatever the step does next: a late deduct's corrective refund needs them too.
    let took = matches!(outcome.state, LedgerState::Deducted | LedgerState::Frozen);
    if !outcome.captured.is_empty() && took {
        keep_captured(tx, outcome).await?;
    }
    if !outcome.exchanges.is_empty() {
        keep_exchanges(tx, outcome).await?;
    }
    let transition = match plan::plan(order, step, outcome) {
        Plan::Ignore(why) => return Ok(Effect::ignored(why)),
        Plan::Correct => {
            let kind = correct(tx, appends, outcome, step, now).await?;
            return Ok(Effect {
                applied: Applied::Corrected,
                changed: true,
                sent_commands: true,
                corrected: Some(kind),
            });
        }
        Plan::Note { step, history, why } => {
            set_step(tx, outcome, step).await?;
            appends.record(&outcome.order_id, &history.0, &history.1, now);
            return Ok(Effect {
                applied: Applied::Ignored(why),
                changed: true,
                sent_commands: false,
                corrected: None,
            });
        }
        Plan::Move(transition) => transition,
    };
    set_step(tx, outcome, transition.step).await?;
    if transition.step.state == StepState::Frozen && outcome.hold_expires_at_ms > 0 {
        keep_hold_expiry(tx, outcome).await?;
    }
    appends.record(
        &outcome.order_id,
        &transition.history.0,
        &transition.history.1,
        now,
    );
    if transition.flag_manual_refund {
        flag_manual_refund(tx, outcome, now).await?;
    }
    let order_id = outcome.order_id.as_str();
    let (order_state, sent_commands) = match transition.then {
        Then::Stay => (order.state, false),
        Then::Compensate { reason } => {
            let sent = compensate(tx, appends, order_id, &reason, now).await?;
            (settle_if_done(tx, appends, order_id, now).await?, sent)
        }
        Then::RequestQuotas => {
            request_quotas(tx, appends, order_id, now).await?;
            (OrderState::Pending, true)
        }
        Then::Complete => {
            set_order(tx, appends, order_id, OrderState::Completed, None, now).await?;
            appends.record(order_id, "completed", "every line and quota deducted", now);
            (OrderState::Completed, false)
        }
        Then::SettleIfDone => (settle_if_done(tx, appends, order_id, now).await?, false),
        Then::RequestDeducts => {
            request_deducts(tx, appends, order_id, now).await?;
            (OrderState::Pending, true)
        }
        Then::Confirm => {
            confirm(tx, appends, order_id, now).await?;
            (OrderState::Confirming, true)
        }
        Then::CompleteIfConfirmed => (
            complete_if_confirmed(tx, appends, order_id, now).await?,
            false,
        ),
        Then::HoldLost { reason } => {
            flag_hold_lost(tx, order_id, &reason, now).await?;
            (order.state, false)
        }
    };
    Ok(Effect {
        applied: Applied::Moved { order_state },
        changed: true,
        sent_commands,
        corrected: None,
    })
}

impl Handler for Saga {
    async fn handle(&self, delivery: &Delivery) -> Disposition {
        self.handle_batch(std::slice::from_ref(delivery))
            .await
            .pop()
            .unwrap_or_else(|| Disposition::Retry("no disposition".to_owned()))
    }

    async fn handle_batch(&self, deliveries: &[Delivery]) -> Vec<Disposition> {
        let mut dispositions = vec![Disposition::Ack; deliveries.len()];
        let mut decoded = Vec::with_capacity(deliveries.len());
        for (i, delivery) in deliveries.iter().enumerate() {
            match decode(&delivery.subject, &delivery.payload) {
                Ok(outcome) => match trust::subject_fits(&delivery.subject, &outcome) {
                    Ok(()) => decoded.push((i, outcome)),
                    Err(mismatch) => dispositions[i] = mismatched(&mismatch),
                },
                Err(reason) => {
                    dispositions[i] = Disposition::Poison(format!("undecodable event: {reason}"));
                }
            }
        }
        let events: Vec<(&Outcome, &tracing::Span)> = decoded
            .iter()
            .map(|(i, outcome)| (outcome, &deliveries[*i].span))
            .collect();
        let results = self.apply_batch(&events).await;
        for ((i, outcome), result) in decoded.iter().zip(results) {
            dispositions[*i] = match result {
                Ok(Applied::Mismatched(mismatch)) => mismatched(&mismatch),
                Ok(applied) => {
                    tracing::debug!(order_id = %outcome.order_id, ?applied, "event applied");
                    Disposition::Ack
                }
                Err(error) => Disposition::Retry(format!("cannot apply the event: {error}")),
            };
        }
        dispositions
    }
}

/// An event that does not fit: counted, logged, dead-lettered as `mismatched_event`.
fn mismatched(mismatch: &trust::Mismatch) -> Disposition {
    jifen_mesh::metrics::MISMATCHED_EVENTS
        .with_label_values(&[jifen_mesh::bus::subjects::SAGA_CONSUMER])
        .inc();
    tracing::error!(%mismatch, "an event that does not fit its order; not applied");
    Disposition::Mismatched(mismatch.to_string())
}
