//! Starting the portal: configuration, then [`PortalApp::build`] (open and migrate the
//! database, bind the listener), then [`PortalApp::run_until`] a shutdown token.

use std::net::SocketAddr;

use jifen_mesh::config::ShutdownArgs;
use jifen_mesh::grpc::{GrpcError, GrpcServer};
use jifen_mesh::startup::StartError;
use jifen_mesh::storage::{Database, Migrations};
use jifen_proto::v1::portal_service_server::PortalServiceServer;
use tokio_util::sync::CancellationToken;
use tonic::server::NamedService;
use tonic::service::RoutesBuilder;

use crate::bootstrap::{self, BootstrapError};
use crate::quota::QuotaBook;

static SQLITE: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// The portal's migrations, per backend.
pub const MIGRATIONS: Migrations = Migrations {
    sqlite: &SQLITE,
    postgres: &POSTGRES,
};

#[derive(Debug, Clone, clap::Args)]
pub struct PortalConfig {
    /// Address the gRPC server listens on.
    #[arg(long, env = "JIFEN_LISTEN", default_value = "127.0.0.1:50052")]
    pub listen: SocketAddr,
    /// `sqlite://path` or `postgres://…`; migrated at start.
    #[arg(
        long,
        env = "JIFEN_DATABASE_URL",
        default_value = "sqlite://jifen-portal.db"
    )]
    pub database_url: String,
    /// Most database connections this process opens.
    #[arg(long, env = "JIFEN_DB_MAX_CONNECTIONS", default_value_t = jifen_mesh::storage::DEFAULT_MAX_CONNECTIONS)]
    pub db_max_connections: u32,
    /// A JSON file of the channels to register (and the quota each must at least have),
    /// applied at every start; see `portal::bootstrap`.
    #[arg(long, env = "JIFEN_CHANNELS_FILE")]
    pub channels_file: Option<std::path::PathBuf>,
    /// How long a quota hold (`FreezeQuota`) lives before the portal releases it by itself.
    #[arg(long, env = "JIFEN_HOLD_TTL", default_value = "10m", value_parser = jifen_mesh::config::parse_duration)]
    pub hold_ttl: std::time::Duration,
    #[command(flatten)]
    pub shutdown: ShutdownArgs,
    #[command(flatten)]
    pub tls: jifen_mesh::tls::TlsArgs,
}

#[derive(Debug, thiserror::Error)]
pub enum PortalStartError {
    #[error(transparent)]
    Start(#[from] StartError),
    #[error(transparent)]
    Bootstrap(#[from] BootstrapError),
}

/// The portal, bound and migrated, ready to serve.
pub struct PortalApp {
    server: GrpcServer,
    quotas: QuotaBook,
    config: PortalConfig,
}

impl PortalApp {
    pub async fn build(config: PortalConfig) -> Result<Self, PortalStartError> {
        // A bad file stops the start before anything is written.
        let declared = match &config.channels_file {
            Some(path) => Some(bootstrap::read(path)?),
            None => None,
        };
        let db = Database::open_with(&config.database_url, &MIGRATIONS, config.db_max_connections)
            .await
            .map_err(StartError::from)?;
        let quotas = QuotaBook::new(db).with_hold_ttl(config.hold_ttl);
        if let Some(declared) = declared {
            bootstrap::apply(&quotas, &declared).await?;
        }
        let server = GrpcServer::bind(config.listen)
            .await
            .map_err(StartError::from)?
            .with_tls(config.tls.server().map_err(StartError::from)?)
            .with_plain_health(config.tls.plain_health_listen)
            .await
            .map_err(StartError::from)?;
        Ok(Self {
            server,
            quotas,
            config,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    pub fn quotas(&self) -> &QuotaBook {
        &self.quotas
    }

    pub async fn run_until(self, shutdown: CancellationToken) -> Result<(), GrpcError> {
        let mut routes = RoutesBuilder::default();
        routes.add_service(PortalServiceServer::new(self.quotas.clone()));
        let lapsed = tokio::spawn(jifen_mesh::barrier::release_lapsed_holds(
            self.quotas.barrier().clone(),
            std::time::Duration::from_secs(1),
            shutdown.child_token(),
        ));
        let result = self
            .server
            .serve(
                routes,
                &[PortalServiceServer::<QuotaBook>::NAME],
                shutdown,
                self.config.shutdown.grace(),
            )
            .await;
        lapsed.abort();
        self.quotas.database().close().await;
        result
    }
}
