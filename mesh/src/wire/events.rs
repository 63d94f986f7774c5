//! Outcome events on the bus: the connectors encode them, the saga decodes them.

use jifen_proto::v1::{
    Deduction, DeductionState, PartnerExchange, PointsOutcomeEvent, QuotaDeduction,
    QuotaDeductionState, QuotaOutcomeEvent,
};
use prost::Message;

use crate::barrier::LedgerState;
use crate::bus::subjects::{
    MANUAL_REFUND_TOKEN, Subject, channel_event, channel_manual_refund_event, portal_event,
};
use crate::connector::{Exchange, LedgerCommand, Recorded};

/// The event asking an operator to refund a line by hand: what the key holds, as deducted.
pub fn manual_refund_event(command: &LedgerCommand, points: i64) -> (String, Vec<u8>) {
    let held = Recorded {
        state: LedgerState::Deducted,
        points,
        reason: "the channel has no refund call".to_owned(),
        key: None,
        deduct_may_follow: false,
        captured: command.captured.clone(),
        exchanges: Vec::new(),
        hold_expires_at_ms: 0,
    };
    (
        channel_manual_refund_event(&command.channel_id),
        points_outcome_event(command, &held),
    )
}

/// A channel's outcome event for a command: its subject and payload.
pub fn points_event(command: &LedgerCommand, recorded: &Recorded) -> (String, Vec<u8>) {
    (
        channel_event(&command.channel_id, recorded.state),
        points_outcome_event(command, recorded),
    )
}

/// A channel's outcome event (`PointsOutcomeEvent`) for a command.
pub fn points_outcome_event(command: &LedgerCommand, recorded: &Recorded) -> Vec<u8> {
    let state = DeductionState::from(recorded.state);
    PointsOutcomeEvent {
        deduction: Some(Deduction {
            order_id: command.order_id.clone(),
            channel_id: command.channel_id.clone(),
            user_id: command.user_id.clone(),
            points: recorded.points,
            state: state.into(),
            reason: recorded.reason.clone(),
            updated_at_unix_ms: crate::time::now_unix_ms(),
            hold_expires_at_unix_ms: recorded.hold_expires_at_ms,
        }),
        deduct_may_follow: recorded.deduct_may_follow,
        captured: recorded
            .captured
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        exchanges: recorded
            .exchanges
            .iter()
            .map(|e| PartnerExchange {
                at_unix_ms: e.at_unix_ms,
                call: e.call.clone(),
                request: e.request.clone(),
                status: u32::from(e.status),
                answer: e.answer.clone(),
            })
            .collect(),
    }
    .encode_to_vec()
}

/// The portal's outcome event for a quota command: its subject and payload.
pub fn quota_event(command: &LedgerCommand, recorded: &Recorded) -> (String, Vec<u8>) {
    let event = QuotaOutcomeEvent {
        quota_deduction: Some(QuotaDeduction {
            order_id: command.order_id.clone(),
            channel_id: command.channel_id.clone(),
            points: recorded.points,
            state: QuotaDeductionState::from(recorded.state).into(),
            reason: recorded.reason.clone(),
            updated_at_unix_ms: crate::time::now_unix_ms(),
            hold_expires_at_unix_ms: recorded.hold_expires_at_ms,
        }),
    };
    (portal_event(recorded.state), event.encode_to_vec())
}

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
    /// The channel has no refund call: the step's refund is an operator's task (the state is
    /// then `Deducted`, the points held, or 0 when the channel cannot tell).
    pub refund_by_hand: bool,
    /// A refund that found nothing at a channel that may still take the deduct on its way.
    pub deduct_may_follow: bool,
    /// Values of the channel's answer the line keeps (its own transaction id).
    pub captured: std::collections::BTreeMap<String, String>,
    /// The partner exchanges behind the outcome, kept as evidence.
    pub exchanges: Vec<Exchange>,
    /// When a frozen step's hold lapses (0 when not said).
    pub hold_expires_at_ms: i64,
}

/// Reads an outcome event from its subject and payload.
pub fn decode_outcome(subject: &str, payload: &[u8]) -> Result<Outcome, String> {
    match Subject::parse(subject) {
        Some(Subject::ChannelEvent { outcome, .. }) => {
            let event = PointsOutcomeEvent::decode(payload).map_err(|e| e.to_string())?;
            let d = event
                .deduction
                .ok_or("a points event without its deduction")?;
            let state = LedgerState::try_from(d.state())
                .map_err(|_| "a points event without a state".to_owned())?;
            Ok(Outcome {
                order_id: d.order_id,
                step: StepKey::Line {
                    channel_id: d.channel_id,
                    user_id: d.user_id,
                },
                state,
                points: d.points,
                reason: d.reason,
                refund_by_hand: outcome == MANUAL_REFUND_TOKEN,
                deduct_may_follow: event.deduct_may_follow,
                captured: event.captured.into_iter().collect(),
                exchanges: event
                    .exchanges
                    .into_iter()
                    .map(|e| Exchange {
                        at_unix_ms: e.at_unix_ms,
                        call: e.call,
                        request: e.request,
                        status: u16::try_from(e.status).unwrap_or(0),
                        answer: e.answer,
                    })
                    .collect(),
                hold_expires_at_ms: d.hold_expires_at_unix_ms,
            })
        }
        Some(Subject::PortalEvent { .. }) => {
            let event = QuotaOutcomeEvent::decode(payload).map_err(|e| e.to_string())?;
            let d = event
                .quota_deduction
                .ok_or("a quota event without its deduction")?;
            let state = LedgerState::try_from(d.state())
                .map_err(|_| "a quota event without a state".to_owned())?;
            Ok(Outcome {
                order_id: d.order_id,
                step: StepKey::Quota {
                    channel_id: d.channel_id,
                },
                state,
                points: d.points,
                reason: d.reason,
                refund_by_hand: false,
                deduct_may_follow: false,
                captured: Default::default(),
                exchanges: Vec::new(),
                hold_expires_at_ms: d.hold_expires_at_unix_ms,
            })
        }
        _ => Err(format!("not an outcome subject: {subject}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
                hold_expires_at_unix_ms: 0,
            }),
            deduct_may_follow: false,
            captured: Default::default(),
            exchanges: Vec::new(),
        }
        .encode_to_vec();
        let outcome = decode_outcome("jifen.evt.channel.alpha.rejected", &payload).unwrap();
        assert_eq!(outcome.state, LedgerState::Rejected);
        assert_eq!(
            outcome.step,
            StepKey::Line {
                channel_id: "alpha".into(),
                user_id: "u".into()
            }
        );
        assert!(decode_outcome("jifen.evt.portal.deducted", b"\xff\xff").is_err());
        assert!(decode_outcome("jifen.other", &payload).is_err());
    }
}
