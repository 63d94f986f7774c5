//! The one place where storage failures become gRPC statuses: a database that is busy or out
//! of reach is transient (`UNAVAILABLE`, retried by connectors); anything else is `INTERNAL`.
//! The cause is logged here and never sent to the caller.

use tonic::Status;

pub fn from_storage(error: &sqlx::Error) -> Status {
    tracing::error!(error = %error, "storage error");
    match error {
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
            Status::unavailable("storage is unavailable, try again")
        }
        _ => Status::internal("storage error"),
    }
}
