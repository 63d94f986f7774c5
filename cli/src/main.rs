//! `jifen`: run Jifen's systems.
//!
//! - `jifen dev` runs everything on this machine in one process, on SQLite under a data
//!   folder, with demo channels, users and quotas seeded, and prints what to call.
//! - `jifen portal` and `jifen channel` run one system each, as a deployment does.

mod dev;

use anyhow::Context;
use clap::{Parser, Subcommand};
use jifen_channel::{ChannelApp, ChannelConfig};
use jifen_mesh::config::TelemetryArgs;
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
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the portal and demo channels locally on SQLite, seeded with demo data.
    Dev(dev::DevArgs),
    /// Run the portal (PortalService).
    Portal(PortalConfig),
    /// Run one reference channel (ChannelService).
    Channel(ChannelConfig),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    jifen_mesh::telemetry::init(cli.telemetry.log_format);
    let shutdown = jifen_mesh::shutdown::on_signal();
    match cli.command {
        Command::Dev(args) => dev::run(args, shutdown).await,
        Command::Portal(config) => {
            let app = PortalApp::build(config)
                .await
                .context("cannot start the portal")?;
            app.run_until(shutdown).await?;
            Ok(())
        }
        Command::Channel(config) => {
            let app = ChannelApp::build(config)
                .await
                .context("cannot start the channel")?;
            app.run_until(shutdown).await?;
            Ok(())
        }
    }
}
