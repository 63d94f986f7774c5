//! Jifen's portal: the channel registry and the quota each channel may spend, served as
//! `jifen.v1.PortalService`.
//!
//! [`quota::QuotaBook`] holds the registry, the grants and the quota-deduction barrier
//! (DESIGN §3) on the portal's own database; [`grpc`] turns wire requests into domain types
//! and domain errors into statuses ([`error`]); [`app::PortalApp`] binds, migrates and
//! serves, the same way in `main` and in tests; [`bootstrap`] applies a registry declared in
//! a configuration file at start.

pub mod app;
pub mod bootstrap;
pub mod connector;
pub mod error;
pub mod grpc;
pub mod quota;

pub use app::{PortalApp, PortalConfig};
