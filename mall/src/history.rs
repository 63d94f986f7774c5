//! What an order's history says of a ledger's outcome: one place for the kinds and texts the
//! saga and the store write.

use jifen_mesh::barrier::LedgerState;
use jifen_mesh::bus::subjects::outcome_token;
use jifen_mesh::wire::{Outcome, StepKey};

pub(crate) fn history_kind(outcome: &Outcome) -> String {
    let what = match outcome.step {
        StepKey::Line { .. } => "points",
        StepKey::Quota { .. } => "quota",
    };
    if outcome.refund_by_hand {
        return "manual_refund_needed".to_owned();
    }
    let state = outcome_token(outcome.state);
    format!("{what}_{state}")
}

pub(crate) fn history_detail(outcome: &Outcome) -> String {
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

pub(crate) fn rejection_reason(outcome: &Outcome) -> String {
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
