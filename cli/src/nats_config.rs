//! `jifen nats-config`: the NATS identities of a deployment (DESIGN §11) — an NKEY seed per
//! process and the server's `authorization` block giving each its permissions.

use std::path::PathBuf;

use anyhow::Context;
use jifen_mesh::bus::identity::Identity;
use jifen_mesh::bus::nats_auth::NatsAuth;
use jifen_mesh::domain::ChannelId;

#[derive(Debug, clap::Args)]
pub struct NatsConfigArgs {
    /// The channels whose connectors get an identity, comma-separated (`alpha,beta`). Run it
    /// again with one more to add a channel: the other seeds are kept.
    #[arg(long, value_delimiter = ',', required = true)]
    channels: Vec<String>,
    /// The folder for the seeds (`<identity>.nk`, readable by the owner only) and `auth.conf`.
    #[arg(long, default_value = "nats-auth")]
    out: PathBuf,
}

pub fn run(args: &NatsConfigArgs) -> anyhow::Result<()> {
    let channels = args
        .channels
        .iter()
        .map(|id| ChannelId::parse("--channels", id.trim()))
        .collect::<Result<Vec<_>, _>>()?;
    let auth = NatsAuth::write(&args.out, &channels)
        .with_context(|| format!("cannot write the identities into {}", args.out.display()))?;
    println!(
        "Wrote {} (include it in nats-server's configuration) and one seed per identity:",
        auth.auth_conf().display()
    );
    for identity in auth.identities() {
        let hint = match identity {
            Identity::Mall => "jifen mall",
            Identity::Portal => "jifen portal-connector",
            Identity::Channel(_) => "jifen channel-connector",
            Identity::Ops => "break-glass: the nats CLI (`nats --nkey …`); no service",
        };
        println!(
            "  {:<16} {}   ({hint})",
            identity.name(),
            auth.seed_file(identity).display()
        );
    }
    println!();
    println!("Give each process its own seed: --nats-nkey FILE or JIFEN_NATS_NKEY=FILE.");
    println!(
        "A new channel: run this again with it added, reload the server (nats-server --signal reload), start its connector."
    );
    Ok(())
}
