//! What the portal can answer besides success, and the status each maps to (DESIGN §4).

use jifen_mesh::domain::InvalidField;
use tonic::Status;

#[derive(Debug, thiserror::Error)]
pub enum PortalError {
    #[error(transparent)]
    Invalid(#[from] InvalidField),
    #[error("unknown channel {channel_id}")]
    UnknownChannel { channel_id: String },
    #[error(
        "channel {channel_id} has too little quota left for {points} points of order {order_id}"
    )]
    InsufficientQuota {
        order_id: String,
        channel_id: String,
        points: i64,
    },
    #[error("no quota deduction recorded for order {order_id} and channel {channel_id}")]
    NoDeduction {
        order_id: String,
        channel_id: String,
    },
    #[error(
        "order {order_id} was already refunded or cancelled for channel {channel_id}; a deduct or freeze after it is refused"
    )]
    RefundedBefore {
        order_id: String,
        channel_id: String,
    },
    #[error("the quota hold of order {order_id} for channel {channel_id} is {state}")]
    HoldSettled {
        order_id: String,
        channel_id: String,
        state: &'static str,
    },
    #[error("{0}")]
    Conflict(String),
    #[error("storage error")]
    Storage(#[from] sqlx::Error),
}

impl From<PortalError> for Status {
    fn from(error: PortalError) -> Self {
        let message = error.to_string();
        match error {
            PortalError::Invalid(_) => Status::invalid_argument(message),
            PortalError::UnknownChannel { .. } | PortalError::NoDeduction { .. } => {
                Status::not_found(message)
            }
            PortalError::InsufficientQuota { .. } | PortalError::HoldSettled { .. } => {
                Status::failed_precondition(message)
            }
            PortalError::RefundedBefore { .. } => Status::aborted(message),
            PortalError::Conflict(_) => Status::already_exists(message),
            PortalError::Storage(error) => jifen_mesh::status::from_storage(&error),
        }
    }
}
