//! Jifen's test harness: real services on real parts, isolated per test.
//!
//! - [`TestDatabase`]: a fresh SQLite file in a temp folder, or — when
//!   `JIFEN_TEST_DATABASE_URL` names a PostgreSQL server — a fresh database on it, dropped
//!   after the test.
//! - [`TestNats`]: a `nats-server` child with JetStream on a free port and a temp store
//!   (binary from `JIFEN_NATS_SERVER` or `PATH`).
//! - [`TestPortal`] and [`TestChannel`]: the real services started in-process on port 0
//!   through the same `build` + `run_until` that `main` uses, with gRPC clients attached.
//! - With `JIFEN_TEST_CONTAINERS=1` and the `containers` feature, both come from containers
//!   instead (testcontainers; needs Docker).
//! - [`TestMesh`]: all of it — nats-server, portal, channels, connectors and the mall — with
//!   parts that can be stopped and started again.
//! - [`WeakChannel`]: a third-party channel as they often are (no null compensation, no
//!   anti-hanging, flaky), for the cases the mall must heal.
//! - [`http_channel::TestPointsApi`]: a third party's REST points API, with adapter configs
//!   made from the repository's demo file.
//! - [`invariants`]: the ledger invariants of DESIGN §2, checked against the databases.
//! - [`eventually`]: polling with a deadline, instead of fixed sleeps.
//!
//! Logs are quiet unless `TEST_LOG` is set.

#[cfg(feature = "containers")]
pub mod containers;
pub mod database;
pub mod http_channel;
pub mod invariants;
pub mod mesh;
pub mod nats;
pub mod partner;
pub mod pki;
pub mod services;
pub mod weak_channel;

use std::future::Future;
use std::time::Duration;

pub use database::TestDatabase;
pub use mesh::TestMesh;
pub use nats::TestNats;
pub use services::{TestChannel, TestPortal};
pub use weak_channel::WeakChannel;

/// Turns on logs for a test run with `TEST_LOG=1` (filter with `JIFEN_LOG`).
pub fn init_logs() {
    if std::env::var_os("TEST_LOG").is_some() {
        jifen_mesh::telemetry::init(jifen_mesh::telemetry::LogFormat::Text);
    }
}

/// Polls `check` until it returns `Some`, or fails after `timeout` with `what`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A name no other test of any process uses at the same time.
pub fn unique_name(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}_{}_{}_{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}
