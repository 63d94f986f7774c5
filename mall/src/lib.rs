//! Jifen's mall: takes orders paid with points from several channels and drives each to an
//! all-or-nothing end (DESIGN §2).
//!
//! - [`grpc`]: `MallService` — submit (with the quota and points [`precheck`]s), get, list,
//!   watch.
//! - [`store`]: orders, steps, history and the outbox; [`commands`] builds the outbox messages.
//! - [`relay`]: publishes the outbox to JetStream after every commit and on a timer.
//! - [`saga`]: applies the channels' and the portal's outcome events and decides what is sent
//!   next — quota deducts, refunds — and when the order is `COMPLETED` or `CANCELLED`.
//! - [`ledger_health`]: the channels' and the portal's health, from their connectors' reports.
//! - [`routine`]: pauses kept at the bus, redrive after recovery, continuous reconciliation.
//! - [`app`]: builds and runs all of it, the same way in `main` and in tests.

pub mod admin;
pub mod app;
pub mod bus_health;
pub mod changes;
pub mod commands;
pub mod console;
pub mod dead_letters;
pub mod error;
pub mod grpc;
pub mod history;
pub mod ledger_health;
pub mod operators;
pub mod order;
pub mod precheck;
pub mod relay;
pub mod routine;
pub mod saga;
pub mod statement;
pub mod store;

pub use app::{MallApp, MallConfig};
