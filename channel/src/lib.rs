//! Jifen's reference channel: a real points ledger that speaks `jifen.v1.ChannelService`.
//!
//! One process serves one channel id. [`ledger::PointsLedger`] holds the accounts and the
//! deduction barrier (DESIGN §3) on the channel's own database; [`grpc`] turns wire requests
//! into domain types and domain errors into statuses ([`error`]); [`app::ChannelApp`] binds,
//! migrates and serves, the same way in `main` and in tests. [`connector`] drives a channel —
//! this one, a third party's gRPC service, or a REST API through the HTTP adapter (the
//! `jifen-adapter` crate, re-exported as [`adapter`]); [`check`] finds which guarantees a live
//! channel gives; [`points_api`] is a demo partner REST API for `jifen dev` and the tests.

/// The HTTP adapter, a crate of its own (the mall uses it without the reference channel).
pub use jifen_adapter as adapter;
pub mod app;
pub mod check;
pub mod connector;
pub mod error;
pub mod grpc;
pub mod ledger;
pub mod notify;
pub mod points_api;

pub use app::{ChannelApp, ChannelConfig};
