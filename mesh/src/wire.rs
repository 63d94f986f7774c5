//! Between the wire and Jifen's own types, in one place: ledger states to and from every
//! protobuf enum that carries one (`DeductionState`, `QuotaDeductionState`), and the points
//! commands and events on the bus to and from the connector's ([`LedgerCommand`],
//! [`Recorded`]) — for the gRPC channel connector and the HTTP adapter alike.

use jifen_proto::v1::{
    DeductPointsCommand, Deduction, DeductionState, PartnerExchange, PointsOutcomeEvent,
    QuotaDeductionState, RefundPointsCommand,
};
use prost::Message;

use crate::barrier::LedgerState;
use crate::bus::subjects::{Step, channel_event, channel_manual_refund_event};
use crate::connector::{LedgerCommand, Recorded};

/// A protobuf state that names no ledger state (`…_UNSPECIFIED`): an answer or event that
/// leaves its state out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("no ledger state (unspecified)")]
pub struct UnspecifiedState;

impl From<LedgerState> for DeductionState {
    fn from(state: LedgerState) -> Self {
        match state {
            LedgerState::Deducted => Self::Deducted,
            LedgerState::Refunded => Self::Refunded,
            LedgerState::Rejected => Self::Rejected,
        }
    }
}

impl From<LedgerState> for QuotaDeductionState {
    fn from(state: LedgerState) -> Self {
        match state {
            LedgerState::Deducted => Self::Deducted,
            LedgerState::Refunded => Self::Refunded,
            LedgerState::Rejected => Self::Rejected,
        }
    }
}

impl TryFrom<DeductionState> for LedgerState {
    type Error = UnspecifiedState;

    fn try_from(state: DeductionState) -> Result<Self, UnspecifiedState> {
        match state {
            DeductionState::Deducted => Ok(Self::Deducted),
            DeductionState::Refunded => Ok(Self::Refunded),
            DeductionState::Rejected => Ok(Self::Rejected),
            DeductionState::Unspecified => Err(UnspecifiedState),
        }
    }
}

impl TryFrom<QuotaDeductionState> for LedgerState {
    type Error = UnspecifiedState;

    fn try_from(state: QuotaDeductionState) -> Result<Self, UnspecifiedState> {
        match state {
            QuotaDeductionState::Deducted => Ok(Self::Deducted),
            QuotaDeductionState::Refunded => Ok(Self::Refunded),
            QuotaDeductionState::Rejected => Ok(Self::Rejected),
            QuotaDeductionState::Unspecified => Err(UnspecifiedState),
        }
    }
}

/// A channel command from its payload, refused if it is for another channel.
pub fn decode_points_command(
    channel_id: &str,
    step: Step,
    payload: &[u8],
) -> Result<LedgerCommand, String> {
    let command = match step {
        Step::Deduct => {
            let c = DeductPointsCommand::decode(payload).map_err(|e| e.to_string())?;
            LedgerCommand {
                step,
                order_id: c.order_id,
                channel_id: c.channel_id,
                user_id: c.user_id,
                points: c.points,
                captured: Default::default(),
            }
        }
        Step::Refund => {
            let c = RefundPointsCommand::decode(payload).map_err(|e| e.to_string())?;
            LedgerCommand {
                step,
                order_id: c.order_id,
                channel_id: c.channel_id,
                user_id: c.user_id,
                points: c.points,
                captured: c.captured.into_iter().collect(),
            }
        }
    };
    if command.channel_id != channel_id {
        return Err(format!(
            "command for channel {:?} reached the connector of {}",
            command.channel_id, channel_id
        ));
    }
    Ok(command)
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_ledger_state_goes_to_the_wire_and_back() {
        for state in [
            LedgerState::Deducted,
            LedgerState::Refunded,
            LedgerState::Rejected,
        ] {
            assert_eq!(
                LedgerState::try_from(DeductionState::from(state)),
                Ok(state)
            );
            assert_eq!(
                LedgerState::try_from(QuotaDeductionState::from(state)),
                Ok(state)
            );
        }
        assert_eq!(
            LedgerState::try_from(DeductionState::Unspecified),
            Err(UnspecifiedState)
        );
        assert_eq!(
            LedgerState::try_from(QuotaDeductionState::Unspecified),
            Err(UnspecifiedState)
        );
    }
}
