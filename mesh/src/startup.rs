//! What can stop a service from starting, shared by every service's `build`.

use crate::domain::InvalidField;
use crate::grpc::GrpcError;
use crate::storage::StorageError;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("bad configuration")]
    Config(#[from] InvalidField),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Grpc(#[from] GrpcError),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
}
