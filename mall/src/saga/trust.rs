//! What the saga checks before it believes an event (DESIGN §11): the bus's permissions let a
//! channel's connector speak only on its own subjects, and this makes sure what it says fits
//! them and the order — the subject's channel is the payload's, the subject's outcome is the
//! payload's state, the order has that step, and the points are the step's. An event that does
//! not fit is never applied: it is dead-lettered as `mismatched_event` for an operator.

use jifen_mesh::barrier::LedgerState;
use jifen_mesh::bus::subjects::{
    channel_event, channel_manual_refund_event, outcome_token, portal_event,
};

use super::machine::{Outcome, StepKey};
use crate::order::Protocol;

/// Why an event does not fit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("mismatched event: {0}")]
pub struct Mismatch(pub String);

/// The subject an event came on against what its payload says: it must be the very subject
/// a connector publishes that outcome on.
pub fn subject_fits(subject: &str, outcome: &Outcome) -> Result<(), Mismatch> {
    let expected = match &outcome.step {
        StepKey::Line { channel_id, .. } if outcome.refund_by_hand => {
            channel_manual_refund_event(channel_id)
        }
        StepKey::Line { channel_id, .. } => channel_event(channel_id, outcome.state),
        StepKey::Quota { .. } => portal_event(outcome.state),
    };
    if subject == expected {
        Ok(())
    } else {
        Err(Mismatch(format!(
            "{subject} carries an outcome that belongs on {expected}"
        )))
    }
}

/// The points an event reports against the step's: a deduct takes exactly the step's points;
/// a refund gives back those or nothing (a null compensation), and so does a refund by hand; a
/// rejection takes nothing, whatever figure the ledger put beside it.
pub fn points_fit(outcome: &Outcome, step_points: i64) -> Result<(), Mismatch> {
    let fits = match outcome.state {
        LedgerState::Rejected => true,
        LedgerState::Deducted if !outcome.refund_by_hand => outcome.points == step_points,
        LedgerState::Frozen | LedgerState::Confirmed => outcome.points == step_points,
        LedgerState::Deducted | LedgerState::Refunded | LedgerState::Cancelled => {
            outcome.points == step_points || outcome.points == 0
        }
    };
    if fits {
        Ok(())
    } else {
        Err(Mismatch(format!(
            "{} points reported as {} for a step of {step_points}",
            outcome.points,
            outcome_token(outcome.state)
        )))
    }
}

/// The event's state against how the step is taken: a held step (TCC) is frozen, confirmed or
/// cancelled, a saga step deducted or refunded; either may be rejected.
pub fn protocol_fits(outcome: &Outcome, protocol: Protocol) -> Result<(), Mismatch> {
    let held = protocol == Protocol::Tcc;
    if outcome.state == LedgerState::Rejected || outcome.state.is_hold() == held {
        Ok(())
    } else {
        Err(Mismatch(format!(
            "{} reported for a step taken by {}",
            outcome_token(outcome.state),
            protocol.as_str()
        )))
    }
}

/// Captured values kept with a line (DESIGN §9): a few short, printable names and values —
/// they are stored, shown in the console and sent back to the channel.
pub fn captured_fit(outcome: &Outcome) -> Result<(), Mismatch> {
    const MAX_VALUES: usize = 8;
    const MAX_NAME: usize = 32;
    const MAX_VALUE: usize = 256;
    if outcome.captured.len() > MAX_VALUES {
        return Err(Mismatch(format!(
            "{} captured values (at most {MAX_VALUES})",
            outcome.captured.len()
        )));
    }
    for (name, value) in &outcome.captured {
        let name_fits = !name.is_empty()
            && name.len() <= MAX_NAME
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !name_fits || value.len() > MAX_VALUE || value.chars().any(char::is_control) {
            return Err(Mismatch(format!(
                "a captured value {:?} that is no short printable name and value",
                name.chars().take(MAX_NAME).collect::<String>()
            )));
        }
    }
    Ok(())
}

/// Exchanges kept with a line: a few, of bounded size, of the calls an adapter makes.
pub fn exchanges_fit(outcome: &Outcome) -> Result<(), Mismatch> {
    const MAX_EXCHANGES: usize = 24;
    const MAX_TEXT: usize = 16 * 1024;
    if outcome.exchanges.len() > MAX_EXCHANGES {
        return Err(Mismatch(format!(
            "{} partner exchanges (at most {MAX_EXCHANGES})",
            outcome.exchanges.len()
        )));
    }
    let fits = outcome.exchanges.iter().all(|e| {
        matches!(
            e.call.as_str(),
            "deduct" | "refund" | "query" | "freeze" | "confirm" | "cancel"
        ) && e.request.len() <= MAX_TEXT
            && e.answer.len() <= MAX_TEXT
    });
    if fits {
        Ok(())
    } else {
        Err(Mismatch("a partner exchange that is no adapter's".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(channel_id: &str, state: LedgerState, points: i64) -> Outcome {
        Outcome {
            order_id: "o-1".into(),
            step: StepKey::Line {
                channel_id: channel_id.into(),
                user_id: "alice".into(),
            },
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

    #[test]
    fn captured_values_are_few_short_and_printable() {
        let mut outcome = line("beta", LedgerState::Deducted, 300);
        outcome
            .captured
            .insert("trade_no".into(), "2024010122001".into());
        assert!(captured_fit(&outcome).is_ok());
        outcome.captured.insert("memo".into(), "a\nb".into());
        assert!(captured_fit(&outcome).is_err());
        outcome.captured.remove("memo");
        outcome.captured.insert("big".into(), "x".repeat(300));
        assert!(captured_fit(&outcome).is_err());
        outcome.captured.remove("big");
        outcome.captured.insert("Bad-Name".into(), "1".into());
        assert!(captured_fit(&outcome).is_err());
    }

    #[test]
    fn a_channel_speaks_only_for_itself_on_its_own_subject() {
        let beta = line("beta", LedgerState::Deducted, 300);
        assert!(subject_fits("jifen.evt.channel.beta.deducted", &beta).is_ok());
        assert!(subject_fits("jifen.evt.channel.alpha.deducted", &beta).is_err());
        assert!(subject_fits("jifen.evt.channel.beta.refunded", &beta).is_err());
        assert!(subject_fits("jifen.evt.portal.deducted", &beta).is_err());
        assert!(subject_fits("jifen.evt.channel.beta.x.deducted", &beta).is_err());
        let by_hand = Outcome {
            refund_by_hand: true,
            ..beta.clone()
        };
        assert!(subject_fits("jifen.evt.channel.beta.manual_refund", &by_hand).is_ok());
        let quota = Outcome {
            step: StepKey::Quota {
                channel_id: "beta".into(),
            },
            ..beta
        };
        assert!(subject_fits("jifen.evt.portal.deducted", &quota).is_ok());
        assert!(subject_fits("jifen.evt.channel.beta.deducted", &quota).is_err());
    }

    #[test]
    fn the_points_are_the_steps() {
        assert!(points_fit(&line("a", LedgerState::Deducted, 300), 300).is_ok());
        assert!(points_fit(&line("a", LedgerState::Deducted, 1), 300).is_err());
        assert!(points_fit(&line("a", LedgerState::Deducted, 0), 300).is_err());
        assert!(points_fit(&line("a", LedgerState::Refunded, 0), 300).is_ok());
        assert!(points_fit(&line("a", LedgerState::Refunded, 300), 300).is_ok());
        assert!(points_fit(&line("a", LedgerState::Refunded, 301), 300).is_err());
        assert!(points_fit(&line("a", LedgerState::Rejected, 0), 300).is_ok());
        assert!(points_fit(&line("a", LedgerState::Rejected, 7), 300).is_ok());
    }
}
