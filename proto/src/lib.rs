//! The `jifen.v1` contract, generated from `proto/jifen/v1/*.proto`.
//!
//! Services and systems use these wire types only at their edges: each converts a request into
//! its own domain types (which reject bad values) before doing anything. [`FILE_DESCRIPTOR_SET`]
//! is what the gRPC servers hand to reflection clients such as grpcurl and `buf curl`.

/// Generated messages, clients (`*_client`) and servers (`*_server`) of package `jifen.v1`.
pub mod v1 {
    tonic::include_proto!("jifen.v1");
}

/// Encoded `FileDescriptorSet` of every `jifen.v1` file, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/jifen_descriptor.bin"));
