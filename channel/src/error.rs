//! What a channel can answer besides success, and the status each maps to (DESIGN §4).

use jifen_mesh::domain::InvalidField;
use tonic::Status;

#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error(transparent)]
    Invalid(#[from] InvalidField),
    #[error("unknown user {user_id}")]
    UnknownUser { user_id: String },
    #[error("user {user_id} has too few points for {points} points of order {order_id}")]
    InsufficientPoints {
        order_id: String,
        user_id: String,
        points: i64,
    },
    #[error("no deduction recorded for order {order_id} and user {user_id}")]
    NoDeduction { order_id: String, user_id: String },
    #[error(
        "order {order_id} was already refunded or cancelled for user {user_id}; a deduct or freeze after it is refused"
    )]
    RefundedBefore { order_id: String, user_id: String },
    #[error("the hold of order {order_id} for user {user_id} is {state}")]
    HoldSettled {
        order_id: String,
        user_id: String,
        state: &'static str,
    },
    #[error("{0}")]
    Conflict(String),
    #[error("storage error")]
    Storage(#[from] sqlx::Error),
}

impl From<ChannelError> for Status {
    fn from(error: ChannelError) -> Self {
        let message = error.to_string();
        match error {
            ChannelError::Invalid(_) => Status::invalid_argument(message),
            ChannelError::UnknownUser { .. } | ChannelError::NoDeduction { .. } => {
                Status::not_found(message)
            }
            ChannelError::InsufficientPoints { .. } | ChannelError::HoldSettled { .. } => {
                Status::failed_precondition(message)
            }
            ChannelError::RefundedBefore { .. } => Status::aborted(message),
            ChannelError::Conflict(_) => Status::already_exists(message),
            ChannelError::Storage(error) => jifen_mesh::status::from_storage(&error),
        }
    }
}
