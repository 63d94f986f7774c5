//! Jifen's shared runtime: what every system (portal, channel, mall) and the `jifen` command
//! stand on.
//!
//! - [`domain`]: the validated newtypes (`OrderId`, `Points`, …) a request is parsed into at
//!   the edge, so nothing past it re-checks.
//! - [`config`] and [`telemetry`]: flags and `JIFEN_*` variables shared by every service, and
//!   the tracing subscriber.
//! - [`grpc`]: the server bootstrap every service uses — health, reflection, and a graceful
//!   shutdown driven by a [`CancellationToken`](tokio_util::sync::CancellationToken).
//! - [`metrics`]: Prometheus `/metrics`, the gRPC metrics layer and the bus's counters.
//! - [`storage`]: opens SQLite or PostgreSQL through sqlx and runs the system's migrations.
//! - [`barrier`]: the idempotency ledger (DESIGN §3) shared by the channel and the portal.
//! - [`bus`] and [`nats_server`]: connecting to NATS JetStream (with the server version
//!   check) and running a local `nats-server` child for `jifen dev` and the tests.
//! - [`connector`]: drives a ledger endpoint from its commands on the bus (check-back,
//!   status classification, outcome events).
//! - [`capabilities`]: what a channel guarantees, which picks the connector's strategy.
//! - [`retry`]: the doubling back-off of every retry loop.
//! - [`group_commit`]: one writer per ledger that commits many barrier calls at once.
//! - [`tls`] and [`tls_io`]: TLS and mutual TLS on every gRPC hop, certificates re-read when
//!   they rotate; [`tls_io::GrpcTarget`] is how every client reaches a gRPC server.
//! - [`private_file`]: secrets on disk, written whole and readable by their owner only.
//! - [`wire`]: the points commands and events between protobuf and the connector's types.
//! - [`trace`]: the W3C trace context across gRPC calls and bus messages.
//! - [`shutdown`]: turns SIGINT/SIGTERM into a cancellation token; [`startup`] and [`status`]:
//!   the errors every service shares at start and at its gRPC edge.

pub mod barrier;
pub mod bus;
pub mod capabilities;
pub mod config;
pub mod connector;
pub mod domain;
pub mod group_commit;
pub mod grpc;
pub mod metrics;
pub mod nats_server;
pub mod private_file;
pub mod retry;
pub mod shutdown;
pub mod startup;
pub mod status;
pub mod storage;
pub mod telemetry;
pub mod time;
pub mod tls;
pub mod tls_io;
pub mod trace;
pub mod wire;
