//! Jifen's reference channel: a real points ledger that speaks `jifen.v1.ChannelService`.
//!
//! One process serves one channel id. [`ledger::PointsLedger`] holds the accounts and the
//! deduction barrier (DESIGN §3) on the channel's own database; [`grpc`] turns wire requests
//! into domain types and domain errors into statuses ([`error`]); [`app::ChannelApp`] binds,
//! migrates and serves, the same way in `main` and in tests.

pub mod adapter;
pub mod app;
pub mod check;
pub mod connector;
pub mod error;
pub mod grpc;
pub mod ledger;
pub mod points_api;

pub use app::{ChannelApp, ChannelConfig};
