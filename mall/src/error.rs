//! What the mall can answer besides success, and the status each maps to (DESIGN §4).

use jifen_mesh::domain::InvalidField;
use tonic::{Code, Status};

#[derive(Debug, thiserror::Error)]
pub enum MallError {
    #[error(transparent)]
    Invalid(#[from] InvalidField),
    #[error("order {0} exists with other content")]
    Conflict(String),
    #[error("unknown order {0}")]
    UnknownOrder(String),
    #[error("unknown channel {0}")]
    UnknownChannel(String),
    #[error("unknown user {user_id} at channel {channel_id}")]
    UnknownUser { channel_id: String, user_id: String },
    #[error("channel {channel_id} has {remaining} quota left, the order needs {needed}")]
    InsufficientQuota {
        channel_id: String,
        remaining: i64,
        needed: i64,
    },
    #[error(
        "user {user_id} has {balance} points at channel {channel_id}, the order needs {needed}"
    )]
    InsufficientPoints {
        channel_id: String,
        user_id: String,
        balance: i64,
        needed: i64,
    },
    #[error("{what} did not answer: {message}")]
    Upstream {
        what: String,
        code: Code,
        message: String,
    },
    #[error("unknown dead letter {0}")]
    UnknownDeadLetter(String),
    #[error("order {order_id} is {state}: there is nothing left to {action}")]
    Settled {
        order_id: String,
        state: &'static str,
        action: &'static str,
    },
    #[error(
        "order {0} is CONFIRMING: every hold and deduct succeeded and its confirms are out, so \
         it can no longer be given up; retry its confirms (RetryOrder), or settle a lapsed hold \
         by hand (docs/operations.md)"
    )]
    Confirming(String),
    #[error("order {order_id} is {state}: only a CONFIRMING order is settled by hand")]
    NotConfirming {
        order_id: String,
        state: &'static str,
    },
    #[error("order {order_id} has no line of channel {channel_id} and user {user_id}")]
    UnknownLine {
        order_id: String,
        channel_id: String,
        user_id: String,
    },
    #[error("the line of channel {channel_id} and user {user_id} is {state}: {wanted}")]
    LineNotWaiting {
        channel_id: String,
        user_id: String,
        state: &'static str,
        wanted: &'static str,
    },
    #[error(
        "dead letter {0} is a deduct whose outcome is unknown: sending it again could deduct twice; \
         look at the channel and record the outcome (RecordDeductOutcome), or discard it"
    )]
    OutcomeUnknown(String),
    #[error(
        "dead letter {0} is an event that did not fit its order (not Jifen's, or a connector \
         that lies): it is never redriven; find who published it, then discard it"
    )]
    MismatchedEvent(String),
    #[error("order {0} is not flagged: there is no flag to clear")]
    NotFlagged(String),
    #[error(
        "channel {channel_id} is paused until {until} ({note}): it takes no new orders until then"
    )]
    ChannelPaused {
        channel_id: String,
        until: String,
        note: String,
    },
    #[error("the bus did not take the message: {0}")]
    Bus(String),
    #[error("storage error")]
    Storage(#[from] sqlx::Error),
}

impl From<MallError> for Status {
    fn from(error: MallError) -> Self {
        let message = error.to_string();
        match error {
            MallError::Invalid(_) => Status::invalid_argument(message),
            MallError::Conflict(_) => Status::already_exists(message),
            MallError::UnknownOrder(_)
            | MallError::UnknownDeadLetter(_)
            | MallError::UnknownChannel(_)
            | MallError::UnknownLine { .. }
            | MallError::UnknownUser { .. } => Status::not_found(message),
            MallError::InsufficientQuota { .. }
            | MallError::InsufficientPoints { .. }
            | MallError::Settled { .. }
            | MallError::Confirming(_)
            | MallError::NotConfirming { .. }
            | MallError::LineNotWaiting { .. }
            | MallError::NotFlagged(_)
            | MallError::OutcomeUnknown(_)
            | MallError::MismatchedEvent(_) => Status::failed_precondition(message),
            MallError::Bus(_) | MallError::ChannelPaused { .. } => Status::unavailable(message),
            MallError::Upstream { code, .. } => match code {
                Code::DeadlineExceeded => Status::deadline_exceeded(message),
                _ => Status::unavailable(message),
            },
            MallError::Storage(error) => jifen_mesh::status::from_storage(&error),
        }
    }
}
