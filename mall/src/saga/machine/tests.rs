//! Every order × step × report the saga can meet.
use super::*;

const ORDERS: [OrderState; 4] = [
    OrderState::Pending,
    OrderState::Compensating,
    OrderState::Completed,
    OrderState::Cancelled,
];
const STEPS: [StepState; 8] = [
    StepState::ManualRefund,
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
                let finishing_a_correction = order == OrderState::Cancelled
                    && matches!(step, StepState::Refunding | StepState::ManualRefund);
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
    by_hand: false,
    deduct_may_follow: false,
};

fn facts(state: StepState, deduct_seen: bool, refunded_points: i64) -> StepFacts {
    StepFacts {
        state,
        protocol: crate::order::Protocol::Saga,
        deduct_seen,
        refunded_points,
        awaiting_deduct: false,
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
                let report = Report {
                    state,
                    points: 5,
                    by_hand: false,
                    deduct_may_follow: false,
                };
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
        by_hand: false,
        deduct_may_follow: false,
    };
    let gave_back = Report {
        state: LedgerState::Refunded,
        points: 5,
        by_hand: false,
        deduct_may_follow: false,
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
fn a_refund_the_channel_cannot_make_waits_for_an_operator_once() {
    let by_hand = Report {
        state: LedgerState::Deducted,
        points: 5,
        by_hand: true,
        deduct_may_follow: false,
    };
    for order in ORDERS {
        for step in STEPS {
            let expected = if step == StepState::Refunding {
                Decision::Move(StepState::ManualRefund)
            } else {
                Decision::Ignore
            };
            assert_eq!(decide(order, StepFacts::new(step), by_hand), expected);
        }
        // The held points are known: a deduct reported meanwhile changes nothing.
        assert_eq!(
            decide(order, StepFacts::new(StepState::ManualRefund), DEDUCTED),
            Decision::Ignore
        );
    }
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
fn a_refund_that_found_nothing_where_the_deduct_may_still_land_waits_for_it() {
    let compensating = OrderState::Compensating;
    let may_follow = Report {
        state: LedgerState::Refunded,
        points: 0,
        by_hand: false,
        deduct_may_follow: true,
    };
    let refunding = facts(StepState::Refunding, false, 0);
    assert_eq!(
        decide(compensating, refunding, may_follow),
        Decision::AwaitDeduct
    );
    let awaiting = StepFacts {
        awaiting_deduct: true,
        ..refunding
    };
    // The same answer again changes nothing; the step stays open.
    assert_eq!(decide(compensating, awaiting, may_follow), Decision::Ignore);
    // The deduct landed: refund again. It was refused: nothing is held.
    assert_eq!(decide(compensating, awaiting, DEDUCTED), Decision::Correct);
    let rejected = Report {
        state: LedgerState::Rejected,
        ..DEDUCTED
    };
    assert_eq!(
        decide(compensating, awaiting, rejected),
        Decision::Move(StepState::Rejected)
    );
    // Where the channel guarantees that a late deduct is refused, nothing is awaited.
    let settled = Report {
        deduct_may_follow: false,
        ..may_follow
    };
    assert_eq!(
        decide(compensating, refunding, settled),
        Decision::Move(StepState::Refunded)
    );
}

const HELD_STEPS: [StepState; 9] = [
    StepState::Pending,
    StepState::Frozen,
    StepState::Rejected,
    StepState::Confirming,
    StepState::Confirmed,
    StepState::Cancelling,
    StepState::Cancelled,
    StepState::Skipped,
    StepState::Waiting,
];

fn held(state: StepState, refunded_points: i64) -> StepFacts {
    StepFacts {
        protocol: crate::order::Protocol::Tcc,
        ..facts(state, false, refunded_points)
    }
}

fn report(state: LedgerState, points: i64) -> Report {
    Report {
        state,
        points,
        by_hand: false,
        deduct_may_follow: false,
    }
}

#[test]
fn a_step_hears_only_its_own_protocol() {
    for order in ORDERS {
        for step in STEPS {
            for state in [
                LedgerState::Frozen,
                LedgerState::Confirmed,
                LedgerState::Cancelled,
            ] {
                assert_eq!(
                    decide(order, facts(step, false, 0), report(state, 5)),
                    Decision::Ignore,
                    "a saga step {step:?} and {state:?}"
                );
            }
        }
        for step in HELD_STEPS {
            for state in [LedgerState::Deducted, LedgerState::Refunded] {
                assert_eq!(
                    decide(order, held(step, 0), report(state, 5)),
                    Decision::Ignore,
                    "a held step {step:?} and {state:?}"
                );
            }
        }
    }
}

/// Every sequence of up to four reports, under every order state, from a pending held step:
/// it only ever takes a hold's states, a confirmed step never moves again, and a corrective
/// cancel goes out only for a hold that stands where nothing may be held.
#[test]
fn held_steps_keep_to_the_holds_states_through_every_sequence_of_reports() {
    let reports = [
        report(LedgerState::Frozen, 5),
        report(LedgerState::Confirmed, 5),
        report(LedgerState::Cancelled, 5),
        report(LedgerState::Cancelled, 0),
        report(LedgerState::Rejected, 5),
        Report {
            deduct_may_follow: true,
            ..report(LedgerState::Cancelled, 0)
        },
    ];
    let allowed = [
        StepState::Pending,
        StepState::Frozen,
        StepState::Rejected,
        StepState::Confirming,
        StepState::Confirmed,
        StepState::Cancelling,
        StepState::Cancelled,
    ];
    let mut frontier = vec![held(StepState::Pending, 0)];
    for step in [
        StepState::Frozen,
        StepState::Confirming,
        StepState::Cancelling,
    ] {
        frontier.push(held(step, 0));
    }
    for _ in 0..4 {
        let mut next = Vec::new();
        for step in &frontier {
            for order in ORDERS {
                for r in reports {
                    let decision = decide(order, *step, r);
                    match decision {
                        Decision::Move(to) => {
                            assert!(allowed.contains(&to), "{step:?} {r:?} -> {to:?}");
                            assert_ne!(step.state, StepState::Confirmed, "{r:?}");
                            next.push(StepFacts {
                                state: to,
                                refunded_points: if to == StepState::Cancelled {
                                    r.points
                                } else {
                                    0
                                },
                                ..*step
                            });
                        }
                        Decision::Correct => {
                            // A hold that stands where nothing may be held, or a cancel that
                            // found nothing after a hold was seen (it ran first).
                            let late_hold = r.state == LedgerState::Frozen
                                && matches!(
                                    step.state,
                                    StepState::Cancelled
                                        | StepState::Rejected
                                        | StepState::Skipped
                                        | StepState::Cancelling
                                );
                            let cancel_ran_first = r.state == LedgerState::Cancelled
                                && r.points == 0
                                && step.state == StepState::Cancelling
                                && step.deduct_seen;
                            assert!(late_hold || cancel_ran_first, "{step:?} {r:?}");
                            next.push(held(StepState::Cancelling, 0));
                        }
                        Decision::NoteDeduct => next.push(StepFacts {
                            deduct_seen: true,
                            ..*step
                        }),
                        Decision::AwaitDeduct => next.push(StepFacts {
                            awaiting_deduct: true,
                            ..*step
                        }),
                        Decision::Ignore => {}
                    }
                }
            }
        }
        next.dedup();
        frontier = next;
    }
}

#[test]
fn a_late_hold_after_its_cancel_is_cancelled_at_once_and_a_confirm_moves_once() {
    let frozen = report(LedgerState::Frozen, 5);
    for order in ORDERS {
        // Released nothing, or refused: a hold that stands now must be cancelled again.
        for step in [
            StepState::Cancelled,
            StepState::Rejected,
            StepState::Skipped,
        ] {
            assert_eq!(decide(order, held(step, 0), frozen), Decision::Correct);
        }
        // The cancel released this very hold: its freeze's report is late.
        assert_eq!(
            decide(order, held(StepState::Cancelled, 5), frozen),
            Decision::Ignore
        );
    }
    let confirming = OrderState::Confirming;
    let confirmed = report(LedgerState::Confirmed, 5);
    assert_eq!(
        decide(confirming, held(StepState::Confirming, 0), confirmed),
        Decision::Move(StepState::Confirmed)
    );
    assert_eq!(
        decide(confirming, held(StepState::Confirmed, 0), confirmed),
        Decision::Ignore
    );
    assert_eq!(
        decide(OrderState::Pending, held(StepState::Frozen, 0), confirmed),
        Decision::Ignore
    );
    // Nothing was there to spend: the step holds nothing, and the plan flags the order.
    assert_eq!(
        decide(
            confirming,
            held(StepState::Confirming, 0),
            report(LedgerState::Cancelled, 5)
        ),
        Decision::Move(StepState::Cancelled)
    );
}
