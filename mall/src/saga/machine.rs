//! The saga's decisions, free of I/O: what an outcome event does to a step ([`decide`]; the
//! event is read by the wire module, [`decode`]) — so that every pair of order, step and report can be checked.

pub use crate::order::StepFacts;
use jifen_mesh::barrier::LedgerState;
pub use jifen_mesh::wire::{Outcome, StepKey, decode_outcome as decode};

use crate::order::{OrderState, Protocol, StepState};

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
    /// The refund found nothing, but the ledger may still take the deduct that is on its way:
    /// the step holds nothing only once that deduct's outcome is known.
    AwaitDeduct,
    /// A duplicate, a late event, or one for an order already settled: nothing changes.
    Ignore,
}

/// A ledger's report on a step, as the saga weighs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    pub state: LedgerState,
    pub points: i64,
    /// The channel cannot refund: the step's refund waits for an operator.
    pub by_hand: bool,
    /// A refund that found nothing where the deduct may still land.
    pub deduct_may_follow: bool,
}

/// The saga's state machine for one step: pure, so every case can be checked.
pub fn decide(order: OrderState, step: StepFacts, report: Report) -> Decision {
    match step.protocol {
        Protocol::Saga if report.state.is_hold() => Decision::Ignore,
        Protocol::Saga => decide_saga(order, step, report),
        Protocol::Tcc => decide_hold(order, step, report),
    }
}

/// A held step (TCC). Placing and releasing a hold follow the saga's rules for a deduct and its
/// refund — a hold is a deduct that nobody sees until it is confirmed — so they are decided by
/// [`decide_saga`] on the states they stand for (frozen as deducted, cancelled as refunded);
/// only the confirm is a hold's own.
fn decide_hold(order: OrderState, step: StepFacts, report: Report) -> Decision {
    match (step.state, report.state) {
        (StepState::Confirming, LedgerState::Confirmed) => Decision::Move(StepState::Confirmed),
        // Nothing was there to spend: the hold lapsed, or was never placed. The order cannot
        // complete by itself: an operator's.
        (StepState::Confirming, LedgerState::Cancelled | LedgerState::Rejected) => {
            Decision::Move(StepState::Cancelled)
        }
        (StepState::Confirming | StepState::Confirmed, _) | (_, LedgerState::Confirmed) => {
            Decision::Ignore
        }
        (_, LedgerState::Deducted | LedgerState::Refunded) => Decision::Ignore,
        _ => {
            let as_saga = StepFacts {
                state: saga_state(step.state),
                protocol: Protocol::Saga,
                ..step
            };
            let report = Report {
                state: match report.state {
                    LedgerState::Frozen => LedgerState::Deducted,
                    LedgerState::Cancelled => LedgerState::Refunded,
                    other => other,
                },
                ..report
            };
            match decide_saga(order, as_saga, report) {
                Decision::Move(next) => Decision::Move(held_state(next)),
                other => other,
            }
        }
    }
}

/// The saga state a held step's state stands for.
fn saga_state(state: StepState) -> StepState {
    match state {
        StepState::Frozen => StepState::Deducted,
        StepState::Cancelling => StepState::Refunding,
        StepState::Cancelled => StepState::Refunded,
        other => other,
    }
}

/// The held step's state for a saga state (the inverse of [`saga_state`]).
fn held_state(state: StepState) -> StepState {
    match state {
        StepState::Deducted => StepState::Frozen,
        StepState::Refunding => StepState::Cancelling,
        StepState::Refunded => StepState::Cancelled,
        other => other,
    }
}

fn decide_saga(order: OrderState, step: StepFacts, report: Report) -> Decision {
    if report.by_hand {
        // Only an outstanding refund can become an operator's task; a repeat changes nothing.
        return if step.state == StepState::Refunding {
            Decision::Move(StepState::ManualRefund)
        } else {
            Decision::Ignore
        };
    }
    match (step.state, report.state) {
        // The refund gave points back: this is the deduct it undid, reported late.
        (StepState::Refunded, LedgerState::Deducted) if step.refunded_points > 0 => {
            Decision::Ignore
        }
        (StepState::Refunded | StepState::Rejected | StepState::Skipped, LedgerState::Deducted) => {
            Decision::Correct
        }
        // The deduct that was awaited landed after the refund that found nothing: refund again.
        (StepState::Refunding, LedgerState::Deducted) if step.awaiting_deduct => Decision::Correct,
        (StepState::Refunding, LedgerState::Deducted) if !step.deduct_seen => Decision::NoteDeduct,
        (StepState::Refunding, LedgerState::Deducted) => Decision::Ignore,
        // The refund found nothing to give back, yet a deduct was reported: it ran after the
        // refund (a channel without null compensation or anti-hanging).
        (StepState::Refunding, LedgerState::Refunded) if step.deduct_seen && report.points == 0 => {
            Decision::Correct
        }
        // Found nothing where the deduct may still land: its outcome decides (the same answer
        // again changes nothing).
        (StepState::Refunding, LedgerState::Refunded)
            if report.points == 0 && report.deduct_may_follow =>
        {
            if step.awaiting_deduct {
                Decision::Ignore
            } else {
                Decision::AwaitDeduct
            }
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
        // A cancelled order's step is refunding only while a corrective refund runs. (A step
        // waiting for a manual refund is settled by the channel's own refund just as well.)
        (
            OrderState::Compensating | OrderState::Cancelled,
            StepState::Refunding | StepState::ManualRefund,
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

#[cfg(test)]
mod tests;
