//! `jifen dev`: the portal and a few demo channels in one process on SQLite, seeded with demo
//! users and quotas. Seeding goes through the public gRPC API with fixed request ids, so a
//! restart on the same data folder keeps every balance and credits nothing twice.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use jifen_channel::{ChannelApp, ChannelConfig};
use jifen_mesh::config::ShutdownArgs;
use jifen_portal::{PortalApp, PortalConfig};
use jifen_proto::v1::channel_service_client::ChannelServiceClient;
use jifen_proto::v1::portal_service_client::PortalServiceClient;
use jifen_proto::v1::{CreditPointsRequest, GrantQuotaRequest, RegisterChannelRequest};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Demo channels, in the order they are started.
const DEMO_CHANNELS: &[(&str, &str)] = &[
    ("alpha", "Alpha Airlines Miles"),
    ("beta", "Beta Bank Rewards"),
    ("gamma", "Gamma Grocers Club"),
    ("delta", "Delta Telecom Points"),
    ("epsilon", "Epsilon Hotels Stars"),
    ("zeta", "Zeta Fuel Card"),
];
const DEMO_USERS: &[&str] = &["alice", "bob", "carol"];
const DEMO_POINTS: i64 = 10_000;
const DEMO_QUOTA: i64 = 1_000_000;

#[derive(Debug, clap::Args)]
pub struct DevArgs {
    /// Folder for the databases; kept across restarts.
    #[arg(long, env = "JIFEN_DATA_DIR", default_value = ".jifen")]
    data_dir: PathBuf,
    /// Portal gRPC address.
    #[arg(long, default_value = "127.0.0.1:50052")]
    portal_listen: SocketAddr,
    /// Address of the first demo channel; the others take the following ports.
    #[arg(long, default_value = "127.0.0.1:50061")]
    channel_listen: SocketAddr,
    /// How many demo channels to run.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(1..=6))]
    channels: u8,
}

pub async fn run(args: DevArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create the data folder {}", args.data_dir.display()))?;
    let data_dir = std::path::absolute(&args.data_dir)
        .with_context(|| format!("cannot resolve {}", args.data_dir.display()))?;
    let quick = ShutdownArgs {
        shutdown_grace_secs: 0,
    };
    let mut tasks = JoinSet::new();

    let portal = PortalApp::build(PortalConfig {
        listen: args.portal_listen,
        database_url: sqlite_url(&data_dir, "portal"),
        shutdown: quick.clone(),
    })
    .await
    .context(
        "cannot start the portal (is another `jifen dev` running? pick ports with --portal-listen)",
    )?;
    let portal_addr = portal.local_addr();
    tasks.spawn(portal.run_until(shutdown.clone()));

    let mut channels = Vec::new();
    for (i, (channel_id, name)) in DEMO_CHANNELS
        .iter()
        .take(usize::from(args.channels))
        .enumerate()
    {
        let mut listen = args.channel_listen;
        let port = u16::try_from(i)
            .ok()
            .and_then(|i| listen.port().checked_add(i))
            .context("channel ports run past 65535: pick a lower --channel-listen port")?;
        listen.set_port(port);
        let channel = ChannelApp::build(ChannelConfig {
            channel_id: (*channel_id).to_owned(),
            listen,
            database_url: sqlite_url(&data_dir, &format!("channel-{channel_id}")),
            shutdown: quick.clone(),
        })
        .await
        .with_context(|| {
            format!("cannot start demo channel {channel_id} (pick ports with --channel-listen)")
        })?;
        channels.push((*channel_id, *name, channel.local_addr()));
        tasks.spawn(channel.run_until(shutdown.clone()));
    }

    seed(portal_addr, &channels)
        .await
        .context("cannot seed the demo data")?;
    print_banner(&data_dir, portal_addr, &channels);

    // Every server runs until the token is cancelled; one that stops early stops them all.
    let mut failure = None;
    while let Some(joined) = tasks.join_next().await {
        shutdown.cancel();
        match joined {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                failure.get_or_insert_with(|| anyhow::Error::new(error));
            }
            Err(error) => {
                failure.get_or_insert_with(|| anyhow::Error::new(error));
            }
        }
    }
    match failure {
        Some(error) => Err(error.context("a service stopped")),
        None => {
            println!("jifen dev stopped; data kept in {}", data_dir.display());
            Ok(())
        }
    }
}

fn sqlite_url(data_dir: &Path, name: &str) -> String {
    format!("sqlite://{}", data_dir.join(format!("{name}.db")).display())
}

async fn seed(
    portal_addr: SocketAddr,
    channels: &[(&str, &str, SocketAddr)],
) -> anyhow::Result<()> {
    let mut portal = PortalServiceClient::connect(format!("http://{portal_addr}")).await?;
    for (channel_id, name, addr) in channels {
        portal
            .register_channel(RegisterChannelRequest {
                channel_id: (*channel_id).to_owned(),
                name: (*name).to_owned(),
                endpoint: format!("http://{addr}"),
            })
            .await?;
        portal
            .grant_quota(GrantQuotaRequest {
                request_id: format!("dev-seed-quota-{channel_id}"),
                channel_id: (*channel_id).to_owned(),
                points: DEMO_QUOTA,
            })
            .await?;
        let mut channel = ChannelServiceClient::connect(format!("http://{addr}")).await?;
        for user in DEMO_USERS {
            channel
                .credit_points(CreditPointsRequest {
                    request_id: format!("dev-seed-{user}"),
                    user_id: (*user).to_owned(),
                    points: DEMO_POINTS,
                })
                .await?;
        }
    }
    Ok(())
}

fn print_banner(data_dir: &Path, portal: SocketAddr, channels: &[(&str, &str, SocketAddr)]) {
    let (first_id, _, first) = channels[0];
    println!();
    println!(
        "Jifen dev is running (Ctrl-C stops it). Data: {}",
        data_dir.display()
    );
    println!();
    println!("  portal   {portal}   jifen.v1.PortalService");
    for (channel_id, name, addr) in channels {
        println!("  {channel_id:<8} {addr}   jifen.v1.ChannelService  ({name})");
    }
    println!();
    println!(
        "Demo users {} hold {DEMO_POINTS} points in every channel; each channel has {DEMO_QUOTA} quota.",
        DEMO_USERS.join(", ")
    );
    println!("Try (grpcurl; `buf curl --protocol grpc --http2-prior-knowledge` works too):");
    println!();
    println!("  grpcurl -plaintext {portal} list");
    println!("  grpcurl -plaintext {portal} grpc.health.v1.Health/Check");
    println!("  grpcurl -plaintext {portal} jifen.v1.PortalService/ListChannels");
    println!(
        "  grpcurl -plaintext -d '{{\"user_id\":\"alice\"}}' {first} jifen.v1.ChannelService/GetUserPoints"
    );
    println!(
        "  grpcurl -plaintext -d '{{\"order_id\":\"demo-1\",\"user_id\":\"alice\",\"points\":100}}' {first} jifen.v1.ChannelService/DeductPoints"
    );
    println!(
        "  grpcurl -plaintext -d '{{\"order_id\":\"demo-1\",\"user_id\":\"alice\"}}' {first} jifen.v1.ChannelService/RefundPoints"
    );
    println!(
        "  grpcurl -plaintext -d '{{\"order_id\":\"demo-1\",\"channel_id\":\"{first_id}\",\"points\":100}}' {portal} jifen.v1.PortalService/DeductQuota"
    );
    println!();
}
