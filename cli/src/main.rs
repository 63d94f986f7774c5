//! `jifen`: run Jifen's systems.
//!
//! - `jifen dev` runs everything on this machine in one process — a nats-server child, the
//!   portal, demo channels with their connectors, the portal connector and the mall — on
//!   SQLite under a data folder, seeded with demo data, and prints what to call.
//! - `jifen mall`, `jifen portal`, `jifen channel`, `jifen channel-connector` and
//!   `jifen portal-connector` run one part each, as a deployment does.
//! - `jifen bench` loads a running mesh with orders and reports throughput and latencies.
//! - `jifen channel-check` finds which guarantees a live channel gives.
//! - `jifen admin` runs the operator's calls against a mall's admin API.
//! - `jifen nats-config` writes the NATS identities and permissions of a deployment.
//! - `jifen operators add` makes an operator's token and records its hash.

mod admin;
mod bench;
mod check;
mod dev;
mod dev_banner;
mod dev_faults;
mod dev_http;
mod dev_tls;
mod nats_config;
mod operators;

use anyhow::Context;
use clap::{Parser, Subcommand};
use jifen_channel::connector::ChannelConnectorConfig;
use jifen_channel::{ChannelApp, ChannelConfig};
use jifen_mall::{MallApp, MallConfig};
use jifen_mesh::config::{MetricsArgs, TelemetryArgs};
use jifen_portal::connector::PortalConnectorConfig;
use jifen_portal::{PortalApp, PortalConfig};

#[derive(Debug, Parser)]
#[command(
    name = "jifen",
    version,
    about = "Points redemption across independent points systems"
)]
struct Cli {
    #[command(flatten)]
    telemetry: TelemetryArgs,
    #[command(flatten)]
    metrics: MetricsArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the whole mesh locally on SQLite with a nats-server child, seeded with demo data.
    Dev(dev::DevArgs),
    /// Run the mall (MallService, the outbox relay and the saga).
    Mall(MallConfig),
    /// Run the portal (PortalService).
    Portal(PortalConfig),
    /// Run one reference channel (ChannelService).
    Channel(ChannelConfig),
    /// Run the connector that drives one channel from its commands.
    ChannelConnector(ChannelConnectorConfig),
    /// Run the connector that drives the portal from its quota commands.
    PortalConnector(PortalConnectorConfig),
    /// Load a running mesh with orders; print throughput and latencies.
    Bench(bench::BenchArgs),
    /// Check which guarantees (DESIGN §9) a live channel gives; exit 0 all, 1 not all, 2 could not run.
    ChannelCheck(check::CheckArgs),
    /// The operator's calls (orders, dead letters, reconcile) against a running mall.
    Admin(admin::AdminArgs),
    /// Write the NATS identities (an NKEY per process) and the server's authorization block.
    NatsConfig(nats_config::NatsConfigArgs),
    /// Manage the operators of the admin API and the console (names, roles, token hashes).
    Operators(operators::OperatorsArgs),
}

/// glibc's allocator was a sixth of the mesh's CPU under load (docs/performance.md); with
/// `override`, SQLite's own allocations (page cache, values) go to mimalloc too.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let service = format!("jifen-{}", cli.command.name());
    let tracer = match &cli.telemetry.otlp_endpoint {
        Some(endpoint) => Some(
            jifen_mesh::telemetry::otlp_provider(endpoint, &service)
                .context("cannot export traces")?,
        ),
        None => None,
    };
    jifen_mesh::telemetry::init_with(cli.telemetry.log_format, tracer.as_ref());
    let result = run(cli).await;
    if let Some(tracer) = tracer {
        // Flushing blocks until the exporter, served by this runtime, is done: off a worker.
        let flushed = tokio::task::spawn_blocking(move || tracer.shutdown()).await;
        if let Ok(Err(error)) = flushed {
            eprintln!("warning: traces not flushed: {error}");
        }
    }
    result
}

impl Command {
    fn name(&self) -> &'static str {
        match self {
            Self::Dev(_) => "dev",
            Self::Mall(_) => "mall",
            Self::Portal(_) => "portal",
            Self::Channel(_) => "channel",
            Self::ChannelConnector(_) => "channel-connector",
            Self::PortalConnector(_) => "portal-connector",
            Self::Bench(_) => "bench",
            Self::ChannelCheck(_) => "channel-check",
            Self::Admin(_) => "admin",
            Self::NatsConfig(_) => "nats-config",
            Self::Operators(_) => "operators",
        }
    }
}

/// Runs a start-up (which may wait for NATS or a database) unless a signal comes first.
async fn starting<T>(
    shutdown: &tokio_util::sync::CancellationToken,
    build: impl std::future::Future<Output = T>,
) -> Option<T> {
    tokio::select! {
        built = build => Some(built),
        () = shutdown.cancelled() => None,
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let shutdown = jifen_mesh::shutdown::on_signal();
    // `jifen dev` serves metrics at the design's default address; the others when asked.
    let metrics_listen = match (&cli.command, cli.metrics.metrics_listen) {
        (_, Some(addr)) => Some(addr),
        (Command::Dev(_), None) => Some(std::net::SocketAddr::from(([127, 0, 0, 1], 9090))),
        _ => None,
    };
    if let Some(addr) = metrics_listen {
        let server = jifen_mesh::metrics::MetricsServer::bind(addr)
            .await
            .with_context(|| {
                format!("cannot serve metrics on {addr} (pick another with --metrics-listen)")
            })?;
        tokio::spawn(server.serve(shutdown.clone()));
    }
    match cli.command {
        Command::Dev(args) => dev::run(args, shutdown).await,
        Command::Mall(config) => {
            let Some(app) = starting(&shutdown, MallApp::build(config)).await else {
                return Ok(());
            };
            let app = app.context("cannot start the mall")?;
            app.run_until(shutdown).await?;
            Ok(())
        }
        Command::Portal(config) => {
            let Some(app) = starting(&shutdown, PortalApp::build(config)).await else {
                return Ok(());
            };
            let app = app.context("cannot start the portal")?;
            app.run_until(shutdown).await?;
            Ok(())
        }
        Command::Channel(config) => {
            let Some(app) = starting(&shutdown, ChannelApp::build(config)).await else {
                return Ok(());
            };
            let app = app.context("cannot start the channel")?;
            app.run_until(shutdown).await?;
            Ok(())
        }
        Command::ChannelConnector(config) => {
            jifen_channel::connector::run_connector(config, shutdown)
                .await
                .context("the channel connector failed")?;
            Ok(())
        }
        Command::PortalConnector(config) => {
            jifen_portal::connector::run_connector(config, shutdown)
                .await
                .context("the portal connector failed")?;
            Ok(())
        }
        Command::Bench(args) => bench::run(args, shutdown).await,
        Command::ChannelCheck(args) => std::process::exit(check::run(args).await),
        Command::Admin(args) => std::process::exit(admin::run(args).await),
        Command::NatsConfig(args) => nats_config::run(&args),
        Command::Operators(args) => operators::run(&args),
    }
}
