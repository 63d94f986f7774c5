//! Whether the bus takes the mall's messages (issue 18): the outbox relay reports each round;
//! a relay that keeps failing — NATS down, a stream that cannot store (a full disk) — shows on
//! every console page, in `jifen_bus_publish_failing`, and in the log once, with when it began.
//! Orders still wait safely in the outbox meanwhile; this is so somebody knows.

use std::sync::{LazyLock, Mutex};

/// Consecutive failed rounds before the bus counts as failing (an election fails a round or
/// two on its own).
const FAILED_ROUNDS: u32 = 3;

#[derive(Debug, Default)]
struct State {
    failures: u32,
    since_ms: Option<i64>,
    last_error: String,
}

static STATE: LazyLock<Mutex<State>> = LazyLock::new(Mutex::default);

/// True while the bus takes the mall's messages: the health service's `jifen.bus`.
static UP: LazyLock<tokio::sync::watch::Sender<bool>> =
    LazyLock::new(|| tokio::sync::watch::Sender::new(true));

/// The name under which the health service reports the bus (`grpc.health.v1.Health/Check`
/// with `service: "jifen.bus"`). The server as a whole stays SERVING: orders still wait safely
/// in the outbox, and a restart of the mall would not bring NATS back.
pub const HEALTH_NAME: &str = "jifen.bus";

/// Watches whether the bus takes the mall's messages.
pub fn watch() -> tokio::sync::watch::Receiver<bool> {
    UP.subscribe()
}

fn state() -> std::sync::MutexGuard<'static, State> {
    STATE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A round published what it had.
pub fn published() {
    let mut state = state();
    if let Some(since) = state.since_ms.take() {
        let minutes = (jifen_mesh::time::now_unix_ms() - since) / 60_000;
        tracing::warn!(minutes, "the bus takes the mall's messages again");
    }
    state.failures = 0;
    jifen_mesh::metrics::BUS_PUBLISH_FAILING.set(0);
    UP.send_if_modified(|up| !std::mem::replace(up, true));
}

/// A round could not publish.
pub fn failed(error: &str) {
    let mut state = state();
    state.failures = state.failures.saturating_add(1);
    state.last_error = error.chars().take(300).collect();
    jifen_mesh::metrics::OUTBOX_PUBLISH_FAILURES.inc();
    if state.failures >= FAILED_ROUNDS && state.since_ms.is_none() {
        state.since_ms = Some(jifen_mesh::time::now_unix_ms());
        jifen_mesh::metrics::BUS_PUBLISH_FAILING.set(1);
        UP.send_if_modified(|up| std::mem::replace(up, false));
        tracing::error!(error = %state.last_error, "the bus does not take the mall's messages: orders wait in the outbox (runbook: the bus)");
    }
}

/// Since when the bus has failed, and its last error; `None` while it takes messages.
pub fn failing() -> Option<(i64, String)> {
    let state = state();
    state
        .since_ms
        .map(|since| (since, state.last_error.clone()))
}
