//! Between the wire and Jifen's own types, in one place: ledger states to and from every
//! protobuf enum that carries one (`DeductionState`, `QuotaDeductionState`), and the points
//! commands and events on the bus to and from the connector's ([`LedgerCommand`],
//! [`Recorded`]) — for the gRPC channel connector and the HTTP adapter alike.

mod commands;
mod events;
mod json;

pub use commands::{
    decode_command, decode_points_command, decode_quota_command, encode_points_command,
    encode_quota_command,
};
pub use events::{
    Outcome, StepKey, decode_outcome, manual_refund_event, points_event, points_outcome_event,
    quota_event,
};
pub use json::payload_json;

use jifen_proto::v1::{DeductionState, QuotaDeductionState};

use crate::barrier::LedgerState;

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
            LedgerState::Frozen => Self::Frozen,
            LedgerState::Confirmed => Self::Confirmed,
            LedgerState::Cancelled => Self::Cancelled,
        }
    }
}

impl From<LedgerState> for QuotaDeductionState {
    fn from(state: LedgerState) -> Self {
        match state {
            LedgerState::Deducted => Self::Deducted,
            LedgerState::Refunded => Self::Refunded,
            LedgerState::Rejected => Self::Rejected,
            LedgerState::Frozen => Self::Frozen,
            LedgerState::Confirmed => Self::Confirmed,
            LedgerState::Cancelled => Self::Cancelled,
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
            DeductionState::Frozen => Ok(Self::Frozen),
            DeductionState::Confirmed => Ok(Self::Confirmed),
            DeductionState::Cancelled => Ok(Self::Cancelled),
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
            QuotaDeductionState::Frozen => Ok(Self::Frozen),
            QuotaDeductionState::Confirmed => Ok(Self::Confirmed),
            QuotaDeductionState::Cancelled => Ok(Self::Cancelled),
            QuotaDeductionState::Unspecified => Err(UnspecifiedState),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_ledger_state_goes_to_the_wire_and_back() {
        for state in LedgerState::ALL {
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
