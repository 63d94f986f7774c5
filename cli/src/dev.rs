//! `jifen dev`: the whole mesh in one process on SQLite — a nats-server child, the portal, demo
//! channels and their connectors, the portal connector and the mall — seeded with demo users
//! and quotas. Seeding goes through the public gRPC API with fixed request ids, so a restart on
//! the same data folder keeps every balance and credits nothing twice; the JetStream store
//! lives in the data folder too, so messages in flight survive a restart.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use jifen_channel::connector::ChannelConnectorConfig;
use jifen_channel::{ChannelApp, ChannelConfig};
use jifen_mall::{MallApp, MallConfig};
use jifen_mesh::bus::identity::Identity;
use jifen_mesh::bus::nats_auth::NatsAuth;
use jifen_mesh::config::{BusArgs, RetryArgs, ShutdownArgs};
use jifen_mesh::domain::ChannelId;
use jifen_mesh::nats_server::{NatsServer, NatsServerConfig};
use jifen_mesh::storage::DEFAULT_MAX_CONNECTIONS;
use jifen_portal::connector::PortalConnectorConfig;
use jifen_portal::{PortalApp, PortalConfig};
use jifen_proto::v1::channel_service_client::ChannelServiceClient;
use jifen_proto::v1::portal_service_client::PortalServiceClient;
use jifen_proto::v1::{CreditPointsRequest, GrantQuotaRequest, RegisterChannelRequest};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::dev_banner::{Banner, print_banner};

/// Demo channels, in the order they are started.
const DEMO_CHANNELS: &[(&str, &str)] = &[
    ("alpha", "Alpha Airlines Miles"),
    ("beta", "Beta Bank Rewards"),
    ("gamma", "Gamma Grocers Club"),
    // Not "delta": that is the REST demo channel's id.
    ("theta", "Theta Theatres Club"),
    ("epsilon", "Epsilon Hotels Stars"),
    ("zeta", "Zeta Fuel Card"),
];
pub const DEMO_USERS: &[&str] = &["alice", "bob", "carol"];
pub(crate) const DEMO_POINTS: i64 = 10_000;
pub(crate) const DEMO_QUOTA: i64 = 1_000_000;

#[derive(Debug, clap::Args)]
pub struct DevArgs {
    /// Folder for the databases and the JetStream store; kept across restarts.
    #[arg(long, env = "JIFEN_DATA_DIR", default_value = ".jifen")]
    data_dir: PathBuf,
    /// Mall gRPC address (MallService).
    #[arg(long, default_value = "127.0.0.1:50051")]
    mall_listen: SocketAddr,
    /// Portal gRPC address.
    #[arg(long, default_value = "127.0.0.1:50052")]
    portal_listen: SocketAddr,
    /// Address of the first demo channel; the others take the following ports.
    #[arg(long, default_value = "127.0.0.1:50061")]
    channel_listen: SocketAddr,
    /// How many demo channels to run.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(1..=6))]
    channels: u8,
    /// Demo channels that hold points: their connectors declare `freeze`, so orders take their
    /// lines by TCC (freeze, then confirm or cancel; DESIGN §12); the others by deduct and
    /// refund. Comma-separated; empty for none.
    #[arg(long, value_delimiter = ',', default_value = "gamma")]
    holding: Vec<String>,
    /// Address of the operator's console (web pages; log in with the admin token).
    #[arg(long, default_value = "127.0.0.1:8080")]
    console_listen: SocketAddr,
    /// Address of the HTTP demo channel (a REST points API driven through the adapter).
    #[arg(long, default_value = "127.0.0.1:50070")]
    http_channel_listen: SocketAddr,
    /// Adapter config of the HTTP demo channel; by default the repository's
    /// `deploy/local/delta-http.toml`, written into the data folder.
    #[arg(long)]
    http_channel_config: Option<PathBuf>,
    /// Client port of the nats-server child (0: any free port).
    #[arg(long, env = "JIFEN_DEV_NATS_PORT", default_value_t = 4223)]
    nats_port: u16,
    /// Bearer token of the admin API; a random one is made and printed when unset.
    #[arg(long, env = "JIFEN_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Run every system on its own database of this PostgreSQL server (`jifen_portal`,
    /// `jifen_mall`, `jifen_channel_<id>`, created when missing) instead of SQLite files.
    #[arg(long, env = "JIFEN_DEV_POSTGRES")]
    postgres: Option<String>,
    /// Mutual TLS on every gRPC hop: a local CA and certificates are made into `<data>/tls`
    /// (kept), and the printed grpcurl commands use them. Plain text on loopback without it.
    #[arg(long)]
    tls: bool,
    /// Orders not settled this long after they were created are flagged `needs_attention`
    /// (short, to watch the flag come and go while trying the runbook).
    #[arg(long, env = "JIFEN_STUCK_AFTER", default_value = "10m", value_parser = jifen_mesh::config::parse_duration)]
    stuck_after: Duration,
    /// Retry schedule of every consumer group.
    #[command(flatten)]
    retry: RetryArgs,
}

/// Where the systems of `jifen dev` keep their data.
enum Storage<'a> {
    Sqlite(&'a Path),
    Postgres(&'a str),
}

impl Storage<'_> {
    /// The database URL of system `name` (`portal`, `mall`, `channel-alpha`).
    async fn url(&self, name: &str) -> anyhow::Result<String> {
        match self {
            Self::Sqlite(dir) => Ok(format!(
                "sqlite://{}",
                dir.join(format!("{name}.db")).display()
            )),
            Self::Postgres(server) => {
                let database = format!("jifen_{}", name.replace('-', "_"));
                jifen_mesh::storage::ensure_postgres_database(server, &database)
                    .await
                    .with_context(|| format!("cannot prepare database {database} on --postgres"))
            }
        }
    }
}

type Task = JoinSet<anyhow::Result<()>>;

pub async fn run(args: DevArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create the data folder {}", args.data_dir.display()))?;
    let data_dir = std::path::absolute(&args.data_dir)
        .with_context(|| format!("cannot resolve {}", args.data_dir.display()))?;
    let storage = match &args.postgres {
        Some(server) => Storage::Postgres(server),
        None => Storage::Sqlite(&data_dir),
    };
    let quick = ShutdownArgs {
        shutdown_grace_secs: 0,
    };
    let tls = if args.tls {
        crate::dev_tls::DevTls::prepare(&data_dir)?
    } else {
        crate::dev_tls::DevTls::off()
    };

    // NATS with an identity per process (DESIGN §11): nobody types credentials, and a client
    // without them is refused, as in production.
    let http_channel_id = crate::dev_http::channel_id(args.http_channel_config.as_deref())?;
    let mut bus_channels = DEMO_CHANNELS
        .iter()
        .take(usize::from(args.channels))
        .map(|(id, _)| ChannelId::parse("channel", *id))
        .collect::<Result<Vec<_>, _>>()?;
    bus_channels.push(http_channel_id.clone());
    let nats_auth = NatsAuth::write(&data_dir.join("nats-auth"), &bus_channels)
        .context("cannot write the NATS identities")?;
    // Dropped last: every task below stops before the bus does.
    let nats = NatsServer::start(NatsServerConfig {
        binary: None,
        port: (args.nats_port != 0).then_some(args.nats_port),
        dir: data_dir.join("nats"),
        cluster: None,
        authorization: Some(nats_auth.auth_conf()),
        tls: tls.nats_server(),
    })
    .await
    .context("cannot start nats-server (pick another port with --nats-port)")?;
    let bus = |identity: &Identity| {
        tls.on_bus(BusArgs::with_nkey(
            nats.url(),
            1,
            nats_auth.seed_file(identity),
        ))
    };
    // The streams first, as the mall makes them: the connectors started below only look
    // them up.
    jifen_mesh::bus::create_streams(&bus(&Identity::Mall))
        .await
        .context("cannot create the streams")?;
    let mut tasks: Task = JoinSet::new();

    let portal = PortalApp::build(PortalConfig {
        tls: tls.args.clone(),
        listen: args.portal_listen,
        database_url: storage.url("portal").await?,
        db_max_connections: DEFAULT_MAX_CONNECTIONS,
        channels_file: None,
        hold_ttl: jifen_mesh::barrier::DEFAULT_HOLD_TTL,
        shutdown: quick.clone(),
    })
    .await
    .context(
        "cannot start the portal (is another `jifen dev` running? pick ports with --portal-listen)",
    )?;
    let portal_addr = portal.local_addr();
    let portal_endpoint = tls.endpoint(portal_addr);
    let token = shutdown.clone();
    tasks.spawn(async move { Ok(portal.run_until(token).await?) });

    let mut channels = Vec::new();
    let mut apps = Vec::new();
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
            tls: tls.args.clone(),
            channel_id: (*channel_id).to_owned(),
            listen,
            database_url: storage.url(&format!("channel-{channel_id}")).await?,
            db_max_connections: DEFAULT_MAX_CONNECTIONS,
            hold_ttl: jifen_mesh::barrier::DEFAULT_HOLD_TTL,
            shutdown: quick.clone(),
        })
        .await
        .with_context(|| {
            format!("cannot start demo channel {channel_id} (pick ports with --channel-listen)")
        })?;
        channels.push((*channel_id, *name, channel.local_addr()));
        apps.push(channel);
    }

    let faults = data_dir.join("faults");
    std::fs::create_dir_all(&faults)
        .with_context(|| format!("cannot create {}", faults.display()))?;
    for (app, (channel_id, _, addr)) in apps.into_iter().zip(&channels) {
        let server = ChannelConfig {
            tls: tls.args.clone(),
            channel_id: (*channel_id).to_owned(),
            listen: *addr,
            database_url: storage.url(&format!("channel-{channel_id}")).await?,
            db_max_connections: DEFAULT_MAX_CONNECTIONS,
            hold_ttl: jifen_mesh::barrier::DEFAULT_HOLD_TTL,
            shutdown: quick.clone(),
        };
        let connector = ChannelConnectorConfig {
            tls: tls.args.clone(),
            without: Vec::new(),
            hold_ttl: args
                .holding
                .iter()
                .any(|h| h.trim() == *channel_id)
                .then_some(jifen_mesh::barrier::DEFAULT_HOLD_TTL),
            adapter_config: None,
            channel_id: (*channel_id).to_owned(),
            channel_endpoint: Some(tls.endpoint(*addr)),
            portal_endpoint: portal_endpoint.clone(),
            call_timeout: Some(Duration::from_secs(5)),
            concurrency: 64,
            health_listen: None,
            notify_listen: None,
            bus: bus(&Identity::channel(channel_id)?),
            retry: args.retry.clone(),
        };
        tasks.spawn(crate::dev_faults::supervise_channel(
            app,
            server,
            connector,
            faults.clone(),
            shutdown.clone(),
        ));
    }
    seed(&tls, portal_addr, &channels)
        .await
        .context("cannot seed the demo data")?;

    let config = PortalConnectorConfig {
        tls: tls.args.clone(),
        portal_endpoint: portal_endpoint.clone(),
        call_timeout: Duration::from_secs(5),
        concurrency: 64,
        hold_ttl: jifen_mesh::barrier::DEFAULT_HOLD_TTL,
        health_listen: None,
        bus: bus(&Identity::Portal),
        retry: args.retry.clone(),
    };
    let token = shutdown.clone();
    tasks.spawn(async move { Ok(jifen_portal::connector::run_connector(config, token).await?) });

    let http = crate::dev_http::start(
        args.http_channel_listen,
        args.http_channel_config.as_deref(),
        &data_dir,
        DEMO_USERS,
        DEMO_POINTS,
        DEMO_QUOTA,
        &portal_endpoint,
        &tls,
        &bus(&Identity::Channel(http_channel_id)),
        &args.retry,
        &mut tasks,
        &shutdown,
    )
    .await
    .context("cannot start the HTTP demo channel")?;
    let delta_config = http.config.clone();

    let admin_token = match &args.admin_token {
        Some(token) => token.clone(),
        None => {
            jifen_mall::console::session::random_token().context("cannot make an admin token")?
        }
    };
    let mall = MallApp::build(MallConfig {
        tls: tls.args.clone(),
        listen: args.mall_listen,
        database_url: storage.url("mall").await?,
        db_max_connections: DEFAULT_MAX_CONNECTIONS,
        portal_endpoint,
        call_timeout: Duration::from_secs(3),
        outbox_sweep: Duration::from_secs(1),
        admin_token: Some(admin_token.clone()),
        admin_token_file: None,
        operators_file: None,
        stuck_after: args.stuck_after,
        // A recovered channel's dead letters go out again after 10 s of answers.
        routine: jifen_mall::routine::RoutineArgs {
            auto_redrive_after: Duration::from_secs(10),
            ..Default::default()
        },
        adapter_configs: vec![delta_config.clone()],
        console_listen: Some(args.console_listen),
        console_secure_cookie: false,
        bus: bus(&Identity::Mall),
        retry: args.retry.clone(),
        shutdown: quick,
    })
    .await
    .map_err(|e| anyhow::anyhow!(e))
    .context("cannot start the mall (pick its port with --mall-listen)")?;
    let mall_addr = mall.local_addr();
    let console_addr = mall.console_addr();
    let token = shutdown.clone();
    tasks.spawn(async move { Ok(mall.run_until(token).await?) });

    print_banner(&Banner {
        data_dir: &data_dir,
        nats: &nats.url(),
        nats_ops_seed: &nats_auth.seed_file(&Identity::Ops),
        mall: mall_addr,
        portal: portal_addr,
        channels: &channels,
        holding: &args.holding,
        http: &http,
        console: console_addr,
        admin_token: &admin_token,
        tls: &tls,
    });

    // Every part runs until the token is cancelled; one that stops early stops them all.
    let mut failure = None;
    while let Some(joined) = tasks.join_next().await {
        shutdown.cancel();
        let error = match joined {
            Ok(Ok(())) => continue,
            Ok(Err(error)) => error,
            Err(error) => anyhow::Error::new(error),
        };
        failure.get_or_insert(error);
    }
    drop(nats);
    match failure {
        Some(error) => Err(error.context("a part of the mesh stopped")),
        None => {
            println!("jifen dev stopped; data kept in {}", data_dir.display());
            Ok(())
        }
    }
}

async fn seed(
    tls: &crate::dev_tls::DevTls,
    portal_addr: SocketAddr,
    channels: &[(&str, &str, SocketAddr)],
) -> anyhow::Result<()> {
    let mut portal = PortalServiceClient::new(tls.connect(&tls.endpoint(portal_addr)).await?);
    for (channel_id, name, addr) in channels {
        portal
            .register_channel(RegisterChannelRequest {
                channel_id: (*channel_id).to_owned(),
                name: (*name).to_owned(),
                endpoint: tls.endpoint(*addr),
                kind: 0,
            })
            .await?;
        portal
            .grant_quota(GrantQuotaRequest {
                request_id: format!("dev-seed-quota-{channel_id}"),
                channel_id: (*channel_id).to_owned(),
                points: DEMO_QUOTA,
            })
            .await?;
        let mut channel = ChannelServiceClient::new(tls.connect(&tls.endpoint(*addr)).await?);
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
