//! One integration-test binary (it links once) with a module per area. Every test runs real
//! services on a real database — SQLite, or PostgreSQL when `JIFEN_TEST_DATABASE_URL` is set —
//! and, where the bus is involved, a real nats-server.

#![allow(clippy::unwrap_used)]

mod admin;
mod admin_orders;
mod bad_input;
mod bus_faults;
mod bus_security;
mod channel_barrier;
mod channel_check;
mod channel_strategies;
mod cluster;
mod concurrency;
mod console;
mod dead_letter_ids;
mod grpc_tls;
mod harness;
mod health;
mod http_adapter;
mod late_deducts;
mod metrics;
mod operations;
mod operators;
mod partner_apis;
mod portal_barrier;
mod precheck;
mod saga;
mod saga_batch;
mod saga_faults;
mod statements;
mod tcc;
mod tracing;
mod watchers;
mod weak_channels;

use tonic::Code;

/// Asserts that `result` failed with `code` and a message containing `needle`.
#[track_caller]
fn assert_status<T: std::fmt::Debug>(result: Result<T, tonic::Status>, code: Code, needle: &str) {
    match result {
        Ok(value) => panic!("expected {code:?} ({needle}), got Ok({value:?})"),
        Err(status) => {
            assert_eq!(status.code(), code, "{status:?}");
            assert!(
                status.message().contains(needle),
                "expected {needle:?} in {:?}",
                status.message()
            );
        }
    }
}
