//! Starting a channel: configuration, then [`ChannelApp::build`] (open and migrate the
//! database, bind the listener), then [`ChannelApp::run_until`] a shutdown token.

use std::net::SocketAddr;

use jifen_mesh::config::ShutdownArgs;
use jifen_mesh::domain::ChannelId;
use jifen_mesh::grpc::{GrpcError, GrpcServer};
use jifen_mesh::startup::StartError;
use jifen_mesh::storage::{Database, Migrations};
use jifen_proto::v1::channel_service_server::ChannelServiceServer;
use tokio_util::sync::CancellationToken;
use tonic::server::NamedService;
use tonic::service::RoutesBuilder;

use crate::ledger::PointsLedger;

static SQLITE: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// The channel's migrations, per backend.
pub const MIGRATIONS: Migrations = Migrations {
    sqlite: &SQLITE,
    postgres: &POSTGRES,
};

#[derive(Debug, Clone, clap::Args)]
pub struct ChannelConfig {
    /// The channel this process serves (letters, digits, `-`, `_`).
    #[arg(long, env = "JIFEN_CHANNEL_ID")]
    pub channel_id: String,
    /// Address the gRPC server listens on.
    #[arg(long, env = "JIFEN_LISTEN", default_value = "127.0.0.1:50061")]
    pub listen: SocketAddr,
    /// `sqlite://path` or `postgres://…`; migrated at start.
    #[arg(
        long,
        env = "JIFEN_DATABASE_URL",
        default_value = "sqlite://jifen-channel.db"
    )]
    pub database_url: String,
    /// Most database connections this process opens.
    #[arg(long, env = "JIFEN_DB_MAX_CONNECTIONS", default_value_t = jifen_mesh::storage::DEFAULT_MAX_CONNECTIONS)]
    pub db_max_connections: u32,
    /// How long a hold (`FreezePoints`) lives before the channel releases it by itself.
    #[arg(long, env = "JIFEN_HOLD_TTL", default_value = "10m", value_parser = jifen_mesh::config::parse_duration)]
    pub hold_ttl: std::time::Duration,
    #[command(flatten)]
    pub shutdown: ShutdownArgs,
    #[command(flatten)]
    pub tls: jifen_mesh::tls::TlsArgs,
}

/// How often holds past their expiry are released.
const LAPSED_HOLDS_PERIOD: std::time::Duration = std::time::Duration::from_secs(1);

/// A channel that is bound and migrated, ready to serve.
pub struct ChannelApp {
    server: GrpcServer,
    ledger: PointsLedger,
    config: ChannelConfig,
}

impl ChannelApp {
    pub async fn build(config: ChannelConfig) -> Result<Self, StartError> {
        let channel_id = ChannelId::parse("channel_id", config.channel_id.clone())?;
        let db = Database::open_with(&config.database_url, &MIGRATIONS, config.db_max_connections)
            .await?;
        let server = GrpcServer::bind(config.listen)
            .await?
            .with_tls(config.tls.server()?)
            .with_plain_health(config.tls.plain_health_listen)
            .await?;
        Ok(Self {
            server,
            ledger: PointsLedger::new(db, channel_id).with_hold_ttl(config.hold_ttl),
            config,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    pub fn ledger(&self) -> &PointsLedger {
        &self.ledger
    }

    pub async fn run_until(self, shutdown: CancellationToken) -> Result<(), GrpcError> {
        let mut routes = RoutesBuilder::default();
        routes.add_service(ChannelServiceServer::new(self.ledger.clone()));
        let lapsed = tokio::spawn(jifen_mesh::barrier::release_lapsed_holds(
            self.ledger.barrier().clone(),
            LAPSED_HOLDS_PERIOD,
            shutdown.child_token(),
        ));
        let result = self
            .server
            .serve(
                routes,
                &[ChannelServiceServer::<PointsLedger>::NAME],
                shutdown,
                self.config.shutdown.grace(),
            )
            .await;
        lapsed.abort();
        self.ledger.database().close().await;
        result
    }
}
