//! The order saga (DESIGN §2): outcome events from the channels and the portal move an order's
//! steps, and the order with them — channels first, then one quota deduction per channel,
//! `COMPLETED`; on any business rejection, `COMPENSATING`: refunds for everything that may hold
//! points, then `CANCELLED`.
//!
//! Every event is applied in one transaction that starts by bumping the order's version — a
//! write, so concurrent events for one order queue on its row — and that also writes the
//! commands the change causes into the outbox. Step changes only go forward
//! ([`next_step_state`]), so a duplicate or late event changes nothing.

use std::sync::Arc;

use jifen_mesh::barrier::LedgerState;
use jifen_mesh::bus::consume::{Delivery, Disposition, Handler};
use jifen_mesh::bus::subjects::{Step, outcome_token};
use jifen_mesh::storage::Database;
use jifen_mesh::time::now_unix_ms;
use jifen_proto::v1::{DeductionState, PointsOutcomeEvent, QuotaDeductionState, QuotaOutcomeEvent};
use prost::Message;
use sqlx::{AnyConnection, Row};
use tokio::sync::{Notify, broadcast};

use crate::commands;
use crate::order::{OrderState, StepState};
use crate::store::{enqueue, next_generation, order_state, record, step_state};

/// Which step an outcome is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepKey {
    /// A line: points of one user at one channel.
    Line { channel_id: String, user_id: String },
    /// A channel's quota at the portal.
    Quota { channel_id: String },
}

/// An outcome event as the saga reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub order_id: String,
    pub step: StepKey,
    pub state: LedgerState,
    pub points: i64,
    pub reason: String,
}

/// Reads an outcome event from its subject and payload.
pub fn decode(subject: &str, payload: &[u8]) -> Result<Outcome, String> {
    if subject.starts_with("jifen.evt.channel.") {
        let event = PointsOutcomeEvent::decode(payload).map_err(|e| e.to_string())?;
        let d = event
            .deduction
            .ok_or("a points event without its deduction")?;
        let state = match d.state() {
            DeductionState::Deducted => LedgerState::Deducted,
            DeductionState::Refunded => LedgerState::Refunded,
            DeductionState::Rejected => LedgerState::Rejected,
            DeductionState::Unspecified => return Err("a points event without a state".into()),
        };
        Ok(Outcome {
            order_id: d.order_id,
            step: StepKey::Line {
                channel_id: d.channel_id,
                user_id: d.user_id,
            },
            state,
            points: d.points,
            reason: d.reason,
        })
    } else if subject.starts_with("jifen.evt.portal.") {
        let event = QuotaOutcomeEvent::decode(payload).map_err(|e| e.to_string())?;
        let d = event
            .quota_deduction
            .ok_or("a quota event without its deduction")?;
        let state = match d.state() {
            QuotaDeductionState::Deducted => LedgerState::Deducted,
            QuotaDeductionState::Refunded => LedgerState::Refunded,
            QuotaDeductionState::Rejected => LedgerState::Rejected,
            QuotaDeductionState::Unspecified => return Err("a quota event without a state".into()),
        };
        Ok(Outcome {
            order_id: d.order_id,
            step: StepKey::Quota {
                channel_id: d.channel_id,
            },
            state,
            points: d.points,
            reason: d.reason,
        })
    } else {
        Err(format!("not an outcome subject: {subject}"))
    }
}

/// What the saga does with a ledger's report on a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The step moves to this state.
    Move(StepState),
    /// Points were taken for a step that must hold none (a deduct that overtook its refund at
    /// a channel without anti-hanging, or one applied after a rejection was recorded): refund
    /// the key again, now that the deduct is known to have happened (DESIGN §9).
    Correct,
    /// A deduct reported while the step's refund is outstanding: whether that refund gives it
    /// back depends on which ran first at the ledger, which its answer will tell.
    NoteDeduct,
    /// A duplicate, a late event, or one for an order already settled: nothing changes.
    Ignore,
}

/// A ledger's report on a step, as the saga weighs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    pub state: LedgerState,
    pub points: i64,
}

/// A step as the saga stored it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepFacts {
    pub state: StepState,
    /// A deduct was reported while the step's refund was outstanding.
    pub deduct_seen: bool,
    /// What the refund that settled the step gave back.
    pub refunded_points: i64,
}

impl StepFacts {
    pub fn new(state: StepState) -> Self {
        Self {
            state,
            deduct_seen: false,
            refunded_points: 0,
        }
    }
}

/// The saga's state machine for one step: pure, so every case can be checked.
pub fn decide(order: OrderState, step: StepFacts, report: Report) -> Decision {
    match (step.state, report.state) {
        // The refund gave points back: this is the deduct it undid, reported late.
        (StepState::Refunded, LedgerState::Deducted) if step.refunded_points > 0 => {
            Decision::Ignore
        }
        (StepState::Refunded | StepState::Rejected | StepState::Skipped, LedgerState::Deducted) => {
            Decision::Correct
        }
        (StepState::Refunding, LedgerState::Deducted) if !step.deduct_seen => Decision::NoteDeduct,
        (StepState::Refunding, LedgerState::Deducted) => Decision::Ignore,
        // The refund found nothing to give back, yet a deduct was reported: it ran after the
        // refund (a channel without null compensation or anti-hanging).
        (StepState::Refunding, LedgerState::Refunded) if step.deduct_seen && report.points == 0 => {
            Decision::Correct
        }
        _ => next_step_state(order, step.state, report.state)
            .map_or(Decision::Ignore, Decision::Move),
    }
}

/// The state a step moves to when its ledger reports `ledger`, or `None` when the report
/// changes nothing (a duplicate, a late event, an order already settled).
pub fn next_step_state(
    order: OrderState,
    step: StepState,
    ledger: LedgerState,
) -> Option<StepState> {
    match (order, step, ledger) {
        (OrderState::Pending, StepState::Pending, LedgerState::Deducted) => {
            Some(StepState::Deducted)
        }
        (OrderState::Pending, StepState::Pending, LedgerState::Rejected) => {
            Some(StepState::Rejected)
        }
        // Refunded before it was deducted: nothing is held, and the order cannot complete.
        (OrderState::Pending, StepState::Pending, LedgerState::Refunded) => {
            Some(StepState::Refunded)
        }
        // A cancelled order's step is refunding only while a corrective refund runs.
        (
            OrderState::Compensating | OrderState::Cancelled,
            StepState::Refunding,
            LedgerState::Refunded,
        ) => Some(StepState::Refunded),
        // The deduct was refused before its refund ran: nothing is held.
        (
            OrderState::Compensating | OrderState::Cancelled,
            StepState::Refunding,
            LedgerState::Rejected,
        ) => Some(StepState::Rejected),
        _ => None,
    }
}

/// What applying an event did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    Ignored(&'static str),
    Moved {
        order_state: OrderState,
    },
    /// A deduct came for a step that must hold nothing: a refund of it was sent.
    Corrected,
}

/// The saga's event handler.
#[derive(Debug, Clone)]
pub struct Saga {
    db: Database,
    relay: Arc<Notify>,
    changes: broadcast::Sender<String>,
}

impl Saga {
    pub fn new(db: Database, relay: Arc<Notify>, changes: broadcast::Sender<String>) -> Self {
        Self { db, relay, changes }
    }

    pub async fn apply(&self, outcome: &Outcome) -> Result<Applied, sqlx::Error> {
        let now = now_unix_ms();
        let mut tx = self.db.begin().await?;
        let Some(order) = lock_order(&mut tx, &outcome.order_id, now).await? else {
            return Ok(Applied::Ignored("unknown order"));
        };
        let Some(step) = step_of(&mut tx, outcome).await? else {
            return Ok(Applied::Ignored("unknown step"));
        };
        let report = Report {
            state: outcome.state,
            points: outcome.points,
        };
        let next = match decide(order, step, report) {
            Decision::Ignore => return Ok(Applied::Ignored("duplicate or late event")),
            Decision::NoteDeduct => {
                let noted = StepFacts {
                    deduct_seen: true,
                    ..step
                };
                set_step(&mut tx, outcome, noted).await?;
                record(
                    &mut tx,
                    &outcome.order_id,
                    &history_kind(outcome),
                    &format!(
                        "{} while its refund is outstanding",
                        history_detail(outcome)
                    ),
                    now,
                )
                .await?;
                tx.commit().await?;
                return Ok(Applied::Ignored("deduct noted; its refund is outstanding"));
            }
            Decision::Correct => {
                let kind = correct(&mut tx, outcome, step.state, now).await?;
                tx.commit().await?;
                jifen_mesh::metrics::CORRECTIVE_REFUNDS
                    .with_label_values(&[kind])
                    .inc();
                self.relay.notify_one();
                let _ = self.changes.send(outcome.order_id.clone());
                return Ok(Applied::Corrected);
            }
            Decision::Move(next) => next,
        };
        let refunded_points = if next == StepState::Refunded {
            outcome.points
        } else {
            0
        };
        let moved = StepFacts {
            state: next,
            deduct_seen: false,
            refunded_points,
        };
        set_step(&mut tx, outcome, moved).await?;
        record(
            &mut tx,
            &outcome.order_id,
            &history_kind(outcome),
            &history_detail(outcome),
            now,
        )
        .await?;

        let mut sent_commands = false;
        let order_state = match (order, next) {
            (OrderState::Pending, StepState::Rejected | StepState::Refunded) => {
                let reason = rejection_reason(outcome);
                sent_commands = compensate(&mut tx, &outcome.order_id, &reason, now).await?;
                settle_if_done(&mut tx, &outcome.order_id, now).await?
            }
            (OrderState::Pending, StepState::Deducted) => match outcome.step {
                StepKey::Line { .. } => {
                    if count_not(&mut tx, "order_lines", &outcome.order_id, "DEDUCTED").await? == 0
                    {
                        request_quotas(&mut tx, &outcome.order_id, now).await?;
                        sent_commands = true;
                    }
                    OrderState::Pending
                }
                StepKey::Quota { .. } => {
                    if count_not(&mut tx, "order_quotas", &outcome.order_id, "DEDUCTED").await? == 0
                    {
                        set_order(&mut tx, &outcome.order_id, OrderState::Completed, None, now)
                            .await?;
                        record(
                            &mut tx,
                            &outcome.order_id,
                            "completed",
                            "every line and quota deducted",
                            now,
                        )
                        .await?;
                        OrderState::Completed
                    } else {
                        OrderState::Pending
                    }
                }
            },
            (OrderState::Compensating, _) => {
                settle_if_done(&mut tx, &outcome.order_id, now).await?
            }
            _ => order,
        };
        tx.commit().await?;
        if sent_commands {
            self.relay.notify_one();
        }
        let _ = self.changes.send(outcome.order_id.clone());
        Ok(Applied::Moved { order_state })
    }
}

impl Handler for Saga {
    async fn handle(&self, delivery: &Delivery) -> Disposition {
        let outcome = match decode(&delivery.subject, &delivery.payload) {
            Ok(outcome) => outcome,
            Err(reason) => return Disposition::Poison(format!("undecodable event: {reason}")),
        };
        match self.apply(&outcome).await {
            Ok(applied) => {
                tracing::debug!(order_id = %outcome.order_id, ?applied, "event applied");
                Disposition::Ack
            }
            Err(error) => Disposition::Retry(format!("cannot apply the event: {error}")),
        }
    }
}

/// Bumps the order's version (which takes its row lock) and returns its state.
pub(crate) async fn lock_order(
    tx: &mut AnyConnection,
    order_id: &str,
    now: i64,
) -> Result<Option<OrderState>, sqlx::Error> {
    sqlx::query(
        "UPDATE orders SET version = version + 1, updated_at_ms = $2 WHERE order_id = $1 RETURNING state",
    )
    .bind(order_id)
    .bind(now)
    .fetch_optional(&mut *tx)
    .await?
    .map(|row| order_state(row.try_get("state")?))
    .transpose()
}

async fn step_of(
    tx: &mut AnyConnection,
    outcome: &Outcome,
) -> Result<Option<StepFacts>, sqlx::Error> {
    let row = match &outcome.step {
        StepKey::Line {
            channel_id,
            user_id,
        } => {
            sqlx::query(
                "SELECT state, deduct_seen, refunded_points FROM order_lines \
                 WHERE order_id = $1 AND channel_id = $2 AND user_id = $3",
            )
            .bind(&outcome.order_id)
            .bind(channel_id)
            .bind(user_id)
            .fetch_optional(&mut *tx)
            .await?
        }
        StepKey::Quota { channel_id } => {
            sqlx::query(
                "SELECT state, deduct_seen, refunded_points FROM order_quotas \
                 WHERE order_id = $1 AND channel_id = $2",
            )
            .bind(&outcome.order_id)
            .bind(channel_id)
            .fetch_optional(&mut *tx)
            .await?
        }
    };
    row.map(|row| {
        Ok(StepFacts {
            state: step_state(row.try_get("state")?)?,
            deduct_seen: row.try_get::<i64, _>("deduct_seen")? != 0,
            refunded_points: row.try_get("refunded_points")?,
        })
    })
    .transpose()
}

async fn set_step(
    tx: &mut AnyConnection,
    outcome: &Outcome,
    step: StepFacts,
) -> Result<(), sqlx::Error> {
    let (state, deduct_seen) = (step.state, i64::from(step.deduct_seen));
    match &outcome.step {
        StepKey::Line {
            channel_id,
            user_id,
        } => {
            sqlx::query(
                "UPDATE order_lines SET state = $4, deduct_seen = $5, refunded_points = $6 \
                 WHERE order_id = $1 AND channel_id = $2 AND user_id = $3",
            )
            .bind(&outcome.order_id)
            .bind(channel_id)
            .bind(user_id)
            .bind(state.as_str())
            .bind(deduct_seen)
            .bind(step.refunded_points)
            .execute(&mut *tx)
            .await?;
        }
        StepKey::Quota { channel_id } => {
            sqlx::query(
                "UPDATE order_quotas SET state = $3, deduct_seen = $4, refunded_points = $5 \
                 WHERE order_id = $1 AND channel_id = $2",
            )
            .bind(&outcome.order_id)
            .bind(channel_id)
            .bind(state.as_str())
            .bind(deduct_seen)
            .bind(step.refunded_points)
            .execute(&mut *tx)
            .await?;
        }
    }
    Ok(())
}

async fn set_order(
    tx: &mut AnyConnection,
    order_id: &str,
    state: OrderState,
    reason: Option<&str>,
    now: i64,
) -> Result<(), sqlx::Error> {
    let created_at_ms: i64 = sqlx::query(
        "UPDATE orders SET state = $2, reason = COALESCE($3, reason), updated_at_ms = $4 \
         WHERE order_id = $1 RETURNING created_at_ms",
    )
    .bind(order_id)
    .bind(state.as_str())
    .bind(reason)
    .bind(now)
    .fetch_one(&mut *tx)
    .await?
    .try_get("created_at_ms")?;
    if state.is_terminal() {
        let seconds = (now - created_at_ms).max(0) as f64 / 1000.0;
        jifen_mesh::metrics::ORDER_SETTLE_LATENCY
            .with_label_values(&[state.as_str()])
            .observe(seconds);
    }
    Ok(())
}

/// How many of the order's steps in `table` are not in `state`.
async fn count_not(
    tx: &mut AnyConnection,
    table: &'static str,
    order_id: &str,
    state: &str,
) -> Result<i64, sqlx::Error> {
    sqlx::query(&format!(
        "SELECT COUNT(*) FROM {table} WHERE order_id = $1 AND state <> $2"
    ))
    .bind(order_id)
    .bind(state)
    .fetch_one(&mut *tx)
    .await?
    .try_get(0)
}

/// Every line is deducted: ask the portal for each channel's quota.
async fn request_quotas(
    tx: &mut AnyConnection,
    order_id: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    let quotas = sqlx::query(
        "UPDATE order_quotas SET state = 'PENDING' WHERE order_id = $1 AND state = 'WAITING' \
         RETURNING channel_id, points",
    )
    .bind(order_id)
    .fetch_all(&mut *tx)
    .await?;
    for row in &quotas {
        let channel_id: String = row.try_get("channel_id")?;
        let points: i64 = row.try_get("points")?;
        enqueue(
            tx,
            &commands::quota(Step::Deduct, order_id, &channel_id, points),
            now,
        )
        .await?;
    }
    record(
        tx,
        order_id,
        "quota_requested",
        &format!("every line deducted; {} quota deduct(s) sent", quotas.len()),
        now,
    )
    .await
}

/// Refunds a step whose deduct arrived after the step stopped holding points, under a new
/// generation of ids (the first refund's id may still be in the server's duplicate window).
/// The step waits in `REFUNDING`; a compensating order waits for it, a cancelled one stays
/// cancelled (it is what the customer was told) and its step settles when the refund does.
async fn correct(
    tx: &mut AnyConnection,
    outcome: &Outcome,
    step: StepState,
    now: i64,
) -> Result<&'static str, sqlx::Error> {
    let generation = next_generation(tx, &outcome.order_id).await?;
    set_step(tx, outcome, StepFacts::new(StepState::Refunding)).await?;
    let (refund, kind) = match &outcome.step {
        StepKey::Line {
            channel_id,
            user_id,
        } => (
            commands::points(Step::Refund, &outcome.order_id, channel_id, user_id, 0),
            "points",
        ),
        StepKey::Quota { channel_id } => (
            commands::quota(Step::Refund, &outcome.order_id, channel_id, 0),
            "quota",
        ),
    };
    enqueue(tx, &commands::regenerated(refund, generation), now).await?;
    record(
        tx,
        &outcome.order_id,
        "corrective_refund",
        &format!(
            "{} reported {} with the step {}: refund sent again",
            history_detail(outcome),
            outcome_token(outcome.state),
            step.as_str()
        ),
        now,
    )
    .await?;
    tracing::warn!(order_id = %outcome.order_id, step = kind, was = step.as_str(), "late deduct: corrective refund sent");
    Ok(kind)
}

/// Starts compensation: a refund for every step that may hold points; steps never asked for
/// are skipped. Returns whether any command was written.
pub(crate) async fn compensate(
    tx: &mut AnyConnection,
    order_id: &str,
    reason: &str,
    now: i64,
) -> Result<bool, sqlx::Error> {
    set_order(tx, order_id, OrderState::Compensating, Some(reason), now).await?;
    let lines = sqlx::query(
        "UPDATE order_lines SET state = 'REFUNDING' WHERE order_id = $1 AND state IN ('PENDING', 'DEDUCTED') \
         RETURNING channel_id, user_id",
    )
    .bind(order_id)
    .fetch_all(&mut *tx)
    .await?;
    for row in &lines {
        let channel_id: String = row.try_get("channel_id")?;
        let user_id: String = row.try_get("user_id")?;
        enqueue(
            tx,
            &commands::points(Step::Refund, order_id, &channel_id, &user_id, 0),
            now,
        )
        .await?;
    }
    let quotas = sqlx::query(
        "UPDATE order_quotas SET state = 'REFUNDING' WHERE order_id = $1 AND state IN ('PENDING', 'DEDUCTED') \
         RETURNING channel_id",
    )
    .bind(order_id)
    .fetch_all(&mut *tx)
    .await?;
    for row in &quotas {
        let channel_id: String = row.try_get("channel_id")?;
        enqueue(
            tx,
            &commands::quota(Step::Refund, order_id, &channel_id, 0),
            now,
        )
        .await?;
    }
    sqlx::query(
        "UPDATE order_quotas SET state = 'SKIPPED' WHERE order_id = $1 AND state = 'WAITING'",
    )
    .bind(order_id)
    .execute(&mut *tx)
    .await?;
    record(
        tx,
        order_id,
        "compensating",
        &format!("{reason}; {} refund(s) sent", lines.len() + quotas.len()),
        now,
    )
    .await?;
    Ok(!lines.is_empty() || !quotas.is_empty())
}

/// Cancels a compensating order once no refund is outstanding.
pub(crate) async fn settle_if_done(
    tx: &mut AnyConnection,
    order_id: &str,
    now: i64,
) -> Result<OrderState, sqlx::Error> {
    let refunding: i64 = sqlx::query(
        "SELECT (SELECT COUNT(*) FROM order_lines WHERE order_id = $1 AND state = 'REFUNDING') + \
                (SELECT COUNT(*) FROM order_quotas WHERE order_id = $1 AND state = 'REFUNDING')",
    )
    .bind(order_id)
    .fetch_one(&mut *tx)
    .await?
    .try_get(0)?;
    if refunding > 0 {
        return Ok(OrderState::Compensating);
    }
    set_order(tx, order_id, OrderState::Cancelled, None, now).await?;
    record(tx, order_id, "cancelled", "every deduction refunded", now).await?;
    Ok(OrderState::Cancelled)
}

fn history_kind(outcome: &Outcome) -> String {
    let what = match outcome.step {
        StepKey::Line { .. } => "points",
        StepKey::Quota { .. } => "quota",
    };
    let state = outcome_token(outcome.state);
    format!("{what}_{state}")
}

fn history_detail(outcome: &Outcome) -> String {
    let at = match &outcome.step {
        StepKey::Line {
            channel_id,
            user_id,
        } => format!("channel {channel_id}, user {user_id}"),
        StepKey::Quota { channel_id } => format!("portal quota of channel {channel_id}"),
    };
    if outcome.reason.is_empty() {
        format!("{at}: {} points", outcome.points)
    } else {
        format!("{at}: {} points ({})", outcome.points, outcome.reason)
    }
}

fn rejection_reason(outcome: &Outcome) -> String {
    let at = match &outcome.step {
        StepKey::Line {
            channel_id,
            user_id,
        } => format!("channel {channel_id} user {user_id}"),
        StepKey::Quota { channel_id } => format!("portal quota of channel {channel_id}"),
    };
    match outcome.state {
        LedgerState::Refunded => format!("{at}: refunded before the order completed"),
        _ if outcome.reason.is_empty() => format!("{at}: rejected"),
        _ => format!("{at}: {}", outcome.reason),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORDERS: [OrderState; 4] = [
        OrderState::Pending,
        OrderState::Compensating,
        OrderState::Completed,
        OrderState::Cancelled,
    ];
    const STEPS: [StepState; 7] = [
        StepState::Waiting,
        StepState::Pending,
        StepState::Deducted,
        StepState::Rejected,
        StepState::Refunding,
        StepState::Refunded,
        StepState::Skipped,
    ];
    const LEDGER: [LedgerState; 3] = [
        LedgerState::Deducted,
        LedgerState::Rejected,
        LedgerState::Refunded,
    ];

    #[test]
    fn settled_steps_never_move_and_settled_orders_only_finish_a_correction() {
        for order in ORDERS {
            for step in STEPS {
                for ledger in LEDGER {
                    let next = next_step_state(order, step, ledger);
                    let finishing_a_correction =
                        order == OrderState::Cancelled && step == StepState::Refunding;
                    if (order.is_terminal() && !finishing_a_correction)
                        || matches!(
                            step,
                            StepState::Rejected | StepState::Refunded | StepState::Skipped
                        )
                    {
                        assert_eq!(next, None, "{order:?} {step:?} {ledger:?}");
                    }
                }
            }
        }
    }

    const DEDUCTED: Report = Report {
        state: LedgerState::Deducted,
        points: 5,
    };

    fn facts(state: StepState, deduct_seen: bool, refunded_points: i64) -> StepFacts {
        StepFacts {
            state,
            deduct_seen,
            refunded_points,
        }
    }

    #[test]
    fn a_deduct_for_a_step_that_holds_nothing_is_refunded_whatever_the_order() {
        for order in ORDERS {
            for step in [StepState::Refunded, StepState::Rejected, StepState::Skipped] {
                for seen in [false, true] {
                    assert_eq!(
                        decide(order, facts(step, seen, 0), DEDUCTED),
                        Decision::Correct,
                        "{order:?} {step:?}"
                    );
                }
            }
            // A refund that gave points back undid this very deduct: its report is late.
            assert_eq!(
                decide(order, facts(StepState::Refunded, false, 5), DEDUCTED),
                Decision::Ignore
            );
            // A completed order's deducted steps hold their points: a repeat is a duplicate.
            assert_eq!(
                decide(order, StepFacts::new(StepState::Deducted), DEDUCTED),
                Decision::Ignore
            );
        }
        // Reports of refunds and rejections never cause a refund, but the one case below.
        for order in ORDERS {
            for step in STEPS {
                for state in [LedgerState::Refunded, LedgerState::Rejected] {
                    let report = Report { state, points: 5 };
                    for seen in [false, true] {
                        assert_ne!(
                            decide(order, facts(step, seen, 0), report),
                            Decision::Correct
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn a_deduct_during_its_refund_is_refunded_again_only_if_the_refund_found_nothing() {
        let compensating = OrderState::Compensating;
        let refunding = |seen| facts(StepState::Refunding, seen, 0);
        assert_eq!(
            decide(compensating, refunding(false), DEDUCTED),
            Decision::NoteDeduct
        );
        assert_eq!(
            decide(compensating, refunding(true), DEDUCTED),
            Decision::Ignore
        );
        let found_nothing = Report {
            state: LedgerState::Refunded,
            points: 0,
        };
        let gave_back = Report {
            state: LedgerState::Refunded,
            points: 5,
        };
        assert_eq!(
            decide(compensating, refunding(true), found_nothing),
            Decision::Correct
        );
        assert_eq!(
            decide(compensating, refunding(true), gave_back),
            Decision::Move(StepState::Refunded)
        );
        // A null compensation with no deduct reported: the anti-hanging ledger's normal case.
        assert_eq!(
            decide(compensating, refunding(false), found_nothing),
            Decision::Move(StepState::Refunded)
        );
        // A cancelled order's corrective refund settles its step.
        assert_eq!(
            decide(OrderState::Cancelled, refunding(false), gave_back),
            Decision::Move(StepState::Refunded)
        );
    }

    #[test]
    fn a_step_moves_at_most_once_for_the_same_report() {
        for order in ORDERS {
            for step in STEPS {
                for ledger in LEDGER {
                    if let Some(next) = next_step_state(order, step, ledger) {
                        assert_eq!(
                            next_step_state(order, next, ledger),
                            None,
                            "{order:?} {step:?} {ledger:?}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn events_decode_from_their_subjects() {
        let payload = PointsOutcomeEvent {
            deduction: Some(jifen_proto::v1::Deduction {
                order_id: "o-1".into(),
                channel_id: "alpha".into(),
                user_id: "u".into(),
                points: 5,
                state: DeductionState::Rejected.into(),
                reason: "insufficient points".into(),
                updated_at_unix_ms: 0,
            }),
        }
        .encode_to_vec();
        let outcome = decode("jifen.evt.channel.alpha.rejected", &payload).unwrap();
        assert_eq!(outcome.state, LedgerState::Rejected);
        assert_eq!(
            outcome.step,
            StepKey::Line {
                channel_id: "alpha".into(),
                user_id: "u".into()
            }
        );
        assert!(decode("jifen.evt.portal.deducted", b"\xff\xff").is_err());
        assert!(decode("jifen.other", &payload).is_err());
    }
}
