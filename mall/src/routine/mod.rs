//! What the mall does by itself so that operators need not (issue 18): it keeps each pause and
//! maintenance window in force at the bus ([`pauses`]), redrives a ledger's safe dead letters
//! once the ledger answers again ([`auto_redrive`]), and compares settled orders with the
//! ledgers as they settle ([`books`]); it also counts settled orders per channel and minute
//! for the Channels page ([`activity`]) and creates again a stream that was deleted
//! ([`streams`]).

pub mod activity;
pub mod auto_redrive;
pub mod books;
pub mod pauses;
pub mod streams;

use std::time::Duration;

use jifen_mesh::bus::topology::Topology;
use jifen_mesh::config::parse_duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admin::Admin;
use crate::app::supervise;

/// Starts every routine on `tracker`, until `workers` is cancelled.
pub(crate) fn start(
    admin: &Admin,
    js: &async_nats::jetstream::Context,
    topology: Topology,
    args: &RoutineArgs,
    tracker: &TaskTracker,
    shutdown: &CancellationToken,
    workers: &CancellationToken,
) {
    supervise(
        tracker,
        shutdown,
        "pauses",
        crate::routine::pauses::run(
            admin.store.database().clone(),
            js.clone(),
            admin.pauses.clone(),
            admin.pauses_changed.clone(),
            workers.clone(),
        ),
    );
    supervise(
        tracker,
        shutdown,
        "streams",
        crate::routine::streams::run(
            admin.store.clone(),
            js.clone(),
            topology,
            admin.relay.clone(),
            workers.clone(),
        ),
    );
    supervise(
        tracker,
        shutdown,
        "activity",
        crate::routine::activity::run(
            admin.store.database().clone(),
            admin.activity.clone(),
            workers.clone(),
        ),
    );
    supervise(
        tracker,
        shutdown,
        "auto-redrive",
        crate::routine::auto_redrive::run(
            admin.clone(),
            admin.pauses.clone(),
            args.auto_redrive_after,
            args.auto_redrive_rate,
            workers.clone(),
        ),
    );
    supervise(
        tracker,
        shutdown,
        "continuous reconciliation",
        crate::routine::books::run(
            admin.clone(),
            args.reconcile_rate,
            args.reconcile_after,
            workers.clone(),
        ),
    );
}

#[derive(Debug, Clone, clap::Args)]
pub struct RoutineArgs {
    /// Redrive a ledger's dead letters that surely took no effect once the ledger has answered
    /// again for this long (`0s`: never; switch it off per channel on the console or with
    /// `jifen admin channels auto-redrive`).
    #[arg(long, env = "JIFEN_AUTO_REDRIVE_AFTER", default_value = "60s", value_parser = parse_duration)]
    pub auto_redrive_after: Duration,
    /// Most dead letters redriven automatically per second.
    #[arg(long, env = "JIFEN_AUTO_REDRIVE_RATE", default_value_t = 5)]
    pub auto_redrive_rate: u32,
    /// Settled orders compared with the ledgers per second in the background (0: never).
    #[arg(long, env = "JIFEN_RECONCILE_RATE", default_value_t = 20)]
    pub reconcile_rate: u32,
    /// How long after its creation a settled order is compared: orders settle well within it,
    /// and one still open then is left to the stuck-order flag.
    #[arg(long, env = "JIFEN_RECONCILE_AFTER", default_value = "2m", value_parser = parse_duration)]
    pub reconcile_after: Duration,
}

impl Default for RoutineArgs {
    fn default() -> Self {
        Self {
            auto_redrive_after: Duration::from_secs(60),
            auto_redrive_rate: 5,
            reconcile_rate: 20,
            reconcile_after: Duration::from_secs(120),
        }
    }
}
