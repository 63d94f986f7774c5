//! The saga plans, the store writes: what one outcome does to its order — the step's new facts,
//! the history line, and what follows (compensate, ask for the quotas, confirm the holds,
//! complete, settle) — as a value, free of I/O, which [`super::apply_in`] carries out with the
//! store's writers.

use jifen_mesh::wire::{Outcome, StepKey};

use super::machine::{Decision, Report, decide};
use crate::history::{history_detail, history_kind, rejection_reason};
pub use crate::order::OrderFacts;
use crate::order::{OrderState, Protocol, StepFacts, StepState};

/// What follows a step's move, for its order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Then {
    /// The order stays as it is.
    Stay,
    /// A step failed while the order was pending: refund what is held, then settle if nothing
    /// is left open.
    Compensate { reason: String },
    /// The last line was deducted: ask for the channels' quotas.
    RequestQuotas,
    /// The last quota was deducted: the order is complete.
    Complete,
    /// Every hold of a TCC order stands: deduct its lines that cannot be held (DESIGN §12).
    RequestDeducts,
    /// Every hold and deduct of a TCC order succeeded: confirm the holds (DESIGN §12).
    Confirm,
    /// A hold was confirmed: the order completes once none is left to confirm.
    CompleteIfConfirmed,
    /// A hold was gone when its confirm came (it lapsed): the order cannot complete by itself.
    HoldLost { reason: String },
    /// A compensating order may be settled now.
    SettleIfDone,
}

/// A step's move and what follows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub step: StepFacts,
    /// The history line: kind and detail.
    pub history: (String, String),
    /// The step waits for an operator's manual refund: flag the order.
    pub flag_manual_refund: bool,
    pub then: Then,
}

/// What one outcome does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// A duplicate, a late event, or one for an order already settled.
    Ignore(&'static str),
    /// Points taken for a step that must hold none: refund the key again (DESIGN §9).
    Correct,
    /// Something about the step is noted (its facts and a history line), nothing moves.
    Note {
        step: StepFacts,
        history: (String, String),
        why: &'static str,
    },
    Move(Transition),
}

/// Plans `outcome` for a step with `step`'s facts of an order with `order`'s.
pub fn plan(order: OrderFacts, step: StepFacts, outcome: &Outcome) -> Plan {
    let OrderFacts {
        state: order_state,
        protocol,
        unready,
        waiting,
    } = order;
    let order = order_state;
    let report = Report {
        state: outcome.state,
        points: outcome.points,
        by_hand: outcome.refund_by_hand,
        deduct_may_follow: outcome.deduct_may_follow,
    };
    let kind = history_kind(outcome);
    let next = match decide(order, step, report) {
        Decision::Ignore => return Plan::Ignore("duplicate or late event"),
        Decision::Correct => return Plan::Correct,
        Decision::NoteDeduct => {
            return Plan::Note {
                step: StepFacts {
                    deduct_seen: true,
                    ..step
                },
                history: (
                    kind,
                    format!(
                        "{} while its refund is outstanding",
                        history_detail(outcome)
                    ),
                ),
                why: "deduct noted; its refund is outstanding",
            };
        }
        Decision::AwaitDeduct => {
            return Plan::Note {
                step: StepFacts {
                    awaiting_deduct: true,
                    ..step
                },
                history: (
                    kind,
                    format!(
                        "{}; the channel may still take the deduct on its way: its outcome decides",
                        history_detail(outcome)
                    ),
                ),
                why: "refund found nothing; awaiting the deduct",
            };
        }
        Decision::Move(next) => next,
    };
    let then = match (order, next) {
        (OrderState::Pending, StepState::Rejected | StepState::Refunded | StepState::Cancelled) => {
            Then::Compensate {
                reason: rejection_reason(outcome),
            }
        }
        // This step was not taken (else the event would be ignored): it may be the last.
        (OrderState::Pending, StepState::Deducted | StepState::Frozen)
            if protocol == Protocol::Tcc && unready - waiting == 1 =>
        {
            if waiting > 0 {
                Then::RequestDeducts
            } else {
                Then::Confirm
            }
        }
        (OrderState::Pending, StepState::Deducted)
            if protocol == Protocol::Saga && unready == 1 =>
        {
            match outcome.step {
                StepKey::Line { .. } => Then::RequestQuotas,
                StepKey::Quota { .. } => Then::Complete,
            }
        }
        (OrderState::Confirming, StepState::Confirmed) => Then::CompleteIfConfirmed,
        (OrderState::Confirming, StepState::Cancelled) => Then::HoldLost {
            reason: format!(
                "{}: its hold was gone when it was confirmed",
                history_detail(outcome)
            ),
        },
        (OrderState::Compensating, _) => Then::SettleIfDone,
        _ => Then::Stay,
    };
    Plan::Move(Transition {
        step: StepFacts {
            state: next,
            protocol: step.protocol,
            deduct_seen: false,
            refunded_points: if matches!(next, StepState::Refunded | StepState::Cancelled) {
                outcome.points
            } else {
                0
            },
            awaiting_deduct: false,
        },
        history: (kind, history_detail(outcome)),
        flag_manual_refund: next == StepState::ManualRefund,
        then,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use jifen_mesh::barrier::LedgerState;

    fn outcome(step: StepKey, state: LedgerState, points: i64) -> Outcome {
        Outcome {
            order_id: "o-1".into(),
            step,
            state,
            points,
            reason: String::new(),
            refund_by_hand: false,
            deduct_may_follow: false,
            captured: Default::default(),
            exchanges: Vec::new(),
            hold_expires_at_ms: 0,
        }
    }

    fn line() -> StepKey {
        StepKey::Line {
            channel_id: "alpha".into(),
            user_id: "u1".into(),
        }
    }

    fn saga(state: OrderState, unready: i64) -> OrderFacts {
        OrderFacts {
            state,
            protocol: Protocol::Saga,
            unready,
            waiting: 0,
        }
    }

    #[test]
    fn the_last_line_asks_for_the_quotas_and_the_last_quota_completes() {
        let pending = StepFacts::new(StepState::Pending);
        let deducted = outcome(line(), LedgerState::Deducted, 100);
        let Plan::Move(last) = plan(saga(OrderState::Pending, 1), pending, &deducted) else {
            panic!("a deduct moves a pending step");
        };
        assert_eq!(last.then, Then::RequestQuotas);
        assert_eq!(last.step.state, StepState::Deducted);
        let Plan::Move(not_last) = plan(saga(OrderState::Pending, 2), pending, &deducted) else {
            panic!("a deduct moves a pending step");
        };
        assert_eq!(not_last.then, Then::Stay);
        let quota = outcome(
            StepKey::Quota {
                channel_id: "alpha".into(),
            },
            LedgerState::Deducted,
            100,
        );
        let Plan::Move(done) = plan(saga(OrderState::Pending, 1), pending, &quota) else {
            panic!("a quota deduct moves a pending step");
        };
        assert_eq!(done.then, Then::Complete);
    }

    fn tcc(state: OrderState, unready: i64) -> OrderFacts {
        OrderFacts {
            state,
            protocol: Protocol::Tcc,
            unready,
            waiting: 0,
        }
    }

    #[test]
    fn the_last_hold_or_deduct_of_a_tcc_order_confirms_and_a_lost_hold_is_flagged() {
        let pending = StepFacts::new(StepState::Pending).held(Protocol::Tcc);
        let frozen = outcome(line(), LedgerState::Frozen, 100);
        let Plan::Move(last) = plan(tcc(OrderState::Pending, 1), pending, &frozen) else {
            panic!("a freeze moves a pending step");
        };
        assert_eq!(
            (last.step.state, last.then),
            (StepState::Frozen, Then::Confirm)
        );
        let Plan::Move(not_last) = plan(tcc(OrderState::Pending, 3), pending, &frozen) else {
            panic!("a freeze moves a pending step");
        };
        assert_eq!(not_last.then, Then::Stay);
        // The last hold of an order with lines that cannot be held asks for their deducts.
        let Plan::Move(holds_done) = plan(
            OrderFacts {
                waiting: 1,
                ..tcc(OrderState::Pending, 2)
            },
            pending,
            &frozen,
        ) else {
            panic!("a freeze moves a pending step");
        };
        assert_eq!(holds_done.then, Then::RequestDeducts);
        // A saga line of a TCC order deducted last confirms the holds.
        let deducted = outcome(line(), LedgerState::Deducted, 100);
        let Plan::Move(saga_last) = plan(
            tcc(OrderState::Pending, 1),
            StepFacts::new(StepState::Pending),
            &deducted,
        ) else {
            panic!("a deduct moves a pending step");
        };
        assert_eq!(saga_last.then, Then::Confirm);
        let confirming = StepFacts::new(StepState::Confirming).held(Protocol::Tcc);
        let confirmed = outcome(line(), LedgerState::Confirmed, 100);
        let Plan::Move(done) = plan(tcc(OrderState::Confirming, 0), confirming, &confirmed) else {
            panic!("a confirm moves a confirming step");
        };
        assert_eq!(done.then, Then::CompleteIfConfirmed);
        let gone = outcome(line(), LedgerState::Cancelled, 100);
        let Plan::Move(lost) = plan(tcc(OrderState::Confirming, 0), confirming, &gone) else {
            panic!("a cancelled hold moves a confirming step");
        };
        assert!(matches!(lost.then, Then::HoldLost { .. }), "{lost:?}");
        // A refused hold while pending gives the order up.
        let refused = outcome(line(), LedgerState::Cancelled, 0);
        let Plan::Move(failed) = plan(tcc(OrderState::Pending, 2), pending, &refused) else {
            panic!("a cancelled key moves a pending step");
        };
        assert!(matches!(failed.then, Then::Compensate { .. }), "{failed:?}");
    }

    #[test]
    fn a_rejection_compensates_and_a_duplicate_changes_nothing() {
        let pending = StepFacts::new(StepState::Pending);
        let rejected = outcome(line(), LedgerState::Rejected, 0);
        let Plan::Move(failed) = plan(saga(OrderState::Pending, 1), pending, &rejected) else {
            panic!("a rejection moves a pending step");
        };
        assert!(matches!(failed.then, Then::Compensate { .. }));
        let deducted = StepFacts::new(StepState::Deducted);
        let again = outcome(line(), LedgerState::Deducted, 100);
        assert!(matches!(
            plan(saga(OrderState::Pending, 0), deducted, &again),
            Plan::Ignore(_)
        ));
    }
}
