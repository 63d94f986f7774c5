//! What an answer says was recorded, as the connector reads it: the state (a mapped code, a
//! state value, or the call's default), the points (or the amount), the captured values.

use jifen_mesh::barrier::LedgerState;
use jifen_mesh::connector::Recorded;
use tonic::Status;

use crate::HttpChannel;
use crate::answer::{self, Answer};
use crate::config::{AnswerState, Call};

impl HttpChannel {
    pub(crate) fn recorded(
        &self,
        call: &Call,
        answer: &Answer,
        default_state: AnswerState,
        default_points: i64,
    ) -> Result<Recorded, Status> {
        let Answer {
            body: answer,
            means,
        } = answer;
        let state = match (&call.state, means) {
            (_, Some(state)) => *state,
            (None, None) => default_state,
            (Some(pointer), None) => {
                let raw = answer::scalar(answer, pointer).ok_or_else(|| {
                    Status::unknown(format!("the answer has no state at {pointer:?}"))
                })?;
                call.states
                    .iter()
                    .find(|(value, _)| *value == raw)
                    .map(|(_, state)| *state)
                    .ok_or_else(|| {
                        Status::unknown(format!(
                            "the answer's state {raw:?} is none of the config's states"
                        ))
                    })?
            }
        };
        let read = |pointer: &str| -> Option<i64> {
            match (&call.amount, self.config.amount) {
                (Some(_), Some(unit)) => unit.points_of(&answer::scalar(answer, pointer)?),
                _ => answer::number(answer, pointer),
            }
        };
        let points = match (call.points.as_ref().or(call.amount.as_ref()), means) {
            (None, _) => default_points,
            // An answer that is a code may carry no points: the state is what it says.
            (Some(pointer), Some(_)) => read(pointer).unwrap_or(default_points),
            (Some(pointer), None) => read(pointer).ok_or_else(|| {
                Status::unknown(format!("the answer has no whole points at {pointer:?}"))
            })?,
        };
        let (state, reason) = match state {
            AnswerState::Pending => {
                return Err(jifen_mesh::connector::pending_status(format!(
                    "channel {} is still processing it",
                    self.channel_id()
                )));
            }
            AnswerState::Deducted => (LedgerState::Deducted, String::new()),
            AnswerState::Refunded => (LedgerState::Refunded, String::new()),
            AnswerState::Rejected => (LedgerState::Rejected, "rejected by the channel".into()),
            AnswerState::Frozen => (LedgerState::Frozen, String::new()),
            AnswerState::Confirmed => (LedgerState::Confirmed, String::new()),
            AnswerState::Cancelled => (LedgerState::Cancelled, String::new()),
        };
        let captured = call
            .capture
            .iter()
            .filter_map(|(name, pointer)| {
                answer::scalar(answer, pointer)
                    .filter(|v| !v.is_empty())
                    .map(|v| (name.clone(), v))
            })
            .collect();
        Ok(Recorded {
            state,
            points,
            reason,
            key: None,
            deduct_may_follow: false,
            captured,
            exchanges: Vec::new(),
            hold_expires_at_ms: 0,
        })
    }
}
