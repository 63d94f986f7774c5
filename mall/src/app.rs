//! Starting the mall: configuration, then [`MallApp::build`] (database, NATS and its streams,
//! the portal registry, the listener), then [`MallApp::run_until`] a shutdown token, which
//! runs the gRPC servers (`MallService`, `AdminService`), the outbox relay, the saga's consumer
//! group, the dead-letter forwarder and indexer, and the overdue-order sweeper together.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use jifen_mesh::bus::consume::{self, ConsumerSpec};
use jifen_mesh::bus::dead_letter::Forwarder;
use jifen_mesh::bus::publish::Publisher;
use jifen_mesh::bus::subjects::{
    ADVISORY_STREAM, DLQ_INDEX_CONSUMER, DLQ_STREAM, DLQ_SUBJECTS, EVT_STREAM, EVT_SUBJECTS,
    FORWARDER_CONSUMER, SAGA_CONSUMER,
};
use jifen_mesh::config::{BusArgs, RetryArgs, ShutdownArgs, parse_duration};
use jifen_mesh::grpc::{GrpcError, GrpcServer};
use jifen_mesh::startup::StartError;
use jifen_mesh::storage::{Database, Migrations};
use jifen_proto::v1::admin_service_server::AdminServiceServer;
use jifen_proto::v1::mall_service_server::MallServiceServer;
use tokio::sync::Notify;

use crate::changes::OrderChanges;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::server::NamedService;
use tonic::service::RoutesBuilder;

use crate::admin::{Admin, Gate, Guarded};
use crate::dead_letters::Indexer;
use crate::grpc::Mall;
use crate::operators::{Operators, Throttle};
use crate::precheck::Registry;
use crate::relay::Relay;
use crate::saga::Saga;
use crate::store::OrderStore;

static SQLITE: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// The mall's migrations, per backend.
pub const MIGRATIONS: Migrations = Migrations {
    sqlite: &SQLITE,
    postgres: &POSTGRES,
};

#[derive(Debug, Clone, clap::Args)]
pub struct MallConfig {
    /// Address the gRPC server listens on.
    #[arg(long, env = "JIFEN_LISTEN", default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,
    /// `sqlite://path` or `postgres://…`; migrated at start.
    #[arg(
        long,
        env = "JIFEN_DATABASE_URL",
        default_value = "sqlite://jifen-mall.db"
    )]
    pub database_url: String,
    /// Most database connections this process opens.
    #[arg(long, env = "JIFEN_DB_MAX_CONNECTIONS", default_value_t = jifen_mesh::storage::DEFAULT_MAX_CONNECTIONS)]
    pub db_max_connections: u32,
    /// The portal's gRPC endpoint; channel endpoints come from its registry.
    #[arg(
        long,
        env = "JIFEN_PORTAL_ENDPOINT",
        default_value = "http://127.0.0.1:50052"
    )]
    pub portal_endpoint: String,
    /// Deadline of each pre-check call to the portal and the channels.
    #[arg(long, env = "JIFEN_CALL_TIMEOUT", default_value = "3s", value_parser = parse_duration)]
    pub call_timeout: Duration,
    /// How often the outbox relay sweeps besides being woken by commits.
    #[arg(long, env = "JIFEN_OUTBOX_SWEEP", default_value = "1s", value_parser = parse_duration)]
    pub outbox_sweep: Duration,
    /// Operators of the admin API and the console: a TOML file of names, roles (`viewer`,
    /// `operator`) and token hashes, as `jifen operators add` writes it (DESIGN §11).
    #[arg(long, env = "JIFEN_OPERATORS_FILE")]
    pub operators_file: Option<std::path::PathBuf>,
    /// A single bearer token of the admin API, standing for one operator named `admin` (the
    /// form before named operators; both may be given). Without any, every admin call is
    /// refused.
    #[arg(long, env = "JIFEN_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// A file holding the admin token (a mounted secret), read at start.
    #[arg(long, env = "JIFEN_ADMIN_TOKEN_FILE", conflicts_with = "admin_token")]
    pub admin_token_file: Option<std::path::PathBuf>,
    /// Orders not settled this long after they were created are flagged `needs_attention`.
    #[arg(long, env = "JIFEN_STUCK_AFTER", default_value = "10m", value_parser = parse_duration)]
    pub stuck_after: Duration,
    /// Serve the operator's console (web pages, guarded by the admin token) here.
    #[arg(long, env = "JIFEN_CONSOLE_LISTEN")]
    pub console_listen: Option<SocketAddr>,
    /// Mark the console's session cookie `Secure` (when it is reached over HTTPS, e.g. behind
    /// a TLS-terminating ingress).
    #[arg(long, env = "JIFEN_CONSOLE_SECURE_COOKIE")]
    pub console_secure_cookie: bool,
    /// Adapter configs of the channels the portal's registry lists as HTTP, for the pre-check
    /// and reconciliation (the same files their connectors use); repeat for several.
    #[arg(
        long = "adapter-config",
        env = "JIFEN_ADAPTER_CONFIGS",
        value_delimiter = ','
    )]
    pub adapter_configs: Vec<std::path::PathBuf>,
    /// What the mall does by itself: redrive after recovery, continuous reconciliation.
    #[command(flatten)]
    pub routine: crate::routine::RoutineArgs,
    #[command(flatten)]
    pub bus: BusArgs,
    #[command(flatten)]
    pub tls: jifen_mesh::tls::TlsArgs,
    /// Retry schedule of the saga's consumer group.
    #[command(flatten)]
    pub retry: RetryArgs,
    #[command(flatten)]
    pub shutdown: ShutdownArgs,
}

/// The mall, bound, migrated and connected, ready to run.
pub struct MallApp {
    server: GrpcServer,
    mall: Mall,
    operators: Operators,
    js: async_nats::jetstream::Context,
    client: async_nats::Client,
    /// The console's socket, bound at build so a taken port fails the start.
    console: Option<tokio::net::TcpListener>,
    config: MallConfig,
}

impl MallApp {
    pub async fn build(config: MallConfig) -> Result<Self, MallStartError> {
        let db = Database::open_with(&config.database_url, &MIGRATIONS, config.db_max_connections)
            .await
            .map_err(StartError::from)?;
        let client = jifen_mesh::bus::connect_as(
            &config.bus,
            &jifen_mesh::bus::identity::Identity::Mall.name(),
        )
        .await?;
        let js = async_nats::jetstream::new(client.clone());
        config.bus.topology().ensure(&js).await?;
        let mut adapters = Vec::new();
        for path in &config.adapter_configs {
            let adapter = jifen_adapter::AdapterConfig::load(path)
                .and_then(jifen_adapter::HttpChannel::new)
                .map_err(|e| MallStartError::Config(e.to_string()))?;
            adapters.push(adapter);
        }
        let client_tls = config
            .tls
            .client()
            .map_err(|e| MallStartError::Config(e.to_string()))?;
        let server_tls = config
            .tls
            .server()
            .map_err(|e| MallStartError::Config(e.to_string()))?;
        let registry = Registry::new(
            &config.portal_endpoint,
            config.call_timeout,
            adapters,
            client_tls,
        )
        .map_err(|e| MallStartError::Config(e.to_string()))?;
        let admin_token = match &config.admin_token_file {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .map_err(|e| {
                        MallStartError::Config(format!("cannot read {}: {e}", path.display()))
                    })?
                    .trim()
                    .to_owned(),
            ),
            None => config.admin_token.clone(),
        };
        let operators = Operators::load(config.operators_file.as_deref(), admin_token.as_deref())
            .map_err(|e| MallStartError::Config(e.to_string()))?;
        if operators.is_empty() {
            tracing::warn!(
                "no operators (JIFEN_OPERATORS_FILE, JIFEN_ADMIN_TOKEN): the admin API and the console refuse everyone"
            );
        }
        let server = GrpcServer::bind(config.listen)
            .await
            .map_err(StartError::from)?
            .with_tls(server_tls)
            .with_plain_health(config.tls.plain_health_listen)
            .await
            .map_err(StartError::from)?
            .with_watched_status(crate::bus_health::HEALTH_NAME, crate::bus_health::watch());
        let console = match config.console_listen {
            Some(addr) => Some(tokio::net::TcpListener::bind(addr).await.map_err(|e| {
                MallStartError::Config(format!("cannot serve the console on {addr}: {e}"))
            })?),
            None => None,
        };
        Ok(Self {
            server,
            mall: Mall {
                store: OrderStore::new(db),
                registry: Arc::new(registry),
                relay: Arc::new(Notify::new()),
                changes: OrderChanges::default(),
                shutdown: CancellationToken::new(),
                tasks: TaskTracker::new(),
                pauses: Arc::default(),
                health: Arc::default(),
            },
            operators,
            js,
            client,
            console,
            config,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// Where the console listens, when it does.
    pub fn console_addr(&self) -> Option<SocketAddr> {
        self.console.as_ref().and_then(|l| l.local_addr().ok())
    }

    pub fn store(&self) -> &OrderStore {
        &self.mall.store
    }

    pub async fn run_until(self, shutdown: CancellationToken) -> Result<(), GrpcError> {
        let db = self.mall.store.database().clone();
        let workers = CancellationToken::new();
        let tracker = TaskTracker::new();
        let relay = Relay::new(
            db.clone(),
            Publisher::new(self.js.clone()),
            self.mall.relay.clone(),
            self.config.outbox_sweep,
        );
        supervise(
            &tracker,
            &shutdown,
            "outbox relay",
            relay.run(workers.clone()),
        );
        let retry = self.config.retry.policy();
        let changes = self.mall.changes.clone();
        let saga = Saga::new(db.clone(), self.mall.relay.clone(), changes.clone());
        supervise(
            &tracker,
            &shutdown,
            SAGA_CONSUMER,
            consume::run(
                self.js.clone(),
                // Events of a batch share one commit: room for large batches.
                ConsumerSpec {
                    concurrency: SAGA_IN_FLIGHT,
                    ..ConsumerSpec::new(EVT_STREAM, SAGA_CONSUMER, EVT_SUBJECTS, &retry)
                },
                Arc::new(saga),
                workers.clone(),
            ),
        );
        supervise(
            &tracker,
            &shutdown,
            FORWARDER_CONSUMER,
            consume::run(
                self.js.clone(),
                ConsumerSpec::new(
                    ADVISORY_STREAM,
                    FORWARDER_CONSUMER,
                    "$JS.EVENT.ADVISORY.>",
                    &retry,
                ),
                Arc::new(Forwarder::new(self.js.clone())),
                workers.clone(),
            ),
        );
        supervise(
            &tracker,
            &shutdown,
            DLQ_INDEX_CONSUMER,
            consume::run(
                self.js.clone(),
                ConsumerSpec::new(DLQ_STREAM, DLQ_INDEX_CONSUMER, DLQ_SUBJECTS, &retry),
                Indexer::new(db.clone(), changes.clone()),
                workers.clone(),
            ),
        );
        supervise(
            &tracker,
            &shutdown,
            "overdue sweeper",
            sweep_overdue(
                self.mall.store.clone(),
                self.config.stuck_after,
                workers.clone(),
            ),
        );
        // Open watches end as soon as the shutdown starts.
        let watches = self.mall.shutdown.clone();
        let stopping = shutdown.clone();
        tracker.spawn(async move {
            tokio::select! {
                () = stopping.cancelled() => watches.cancel(),
                () = watches.cancelled() => {}
            }
        });
        let health = self.mall.health.clone();
        supervise(
            &tracker,
            &shutdown,
            "ledger health",
            crate::ledger_health::listen(self.client.clone(), health.clone(), workers.clone()),
        );
        supervise(
            &tracker,
            &shutdown,
            "order changes",
            changes.clone().spread(self.client.clone(), workers.clone()),
        );
        let admin = Admin {
            store: self.mall.store.clone(),
            registry: self.mall.registry.clone(),
            publisher: Publisher::new(self.js.clone()),
            relay: self.mall.relay.clone(),
            changes,
            health,
            pauses: self.mall.pauses.clone(),
            pauses_changed: Arc::new(Notify::new()),
            activity: Arc::default(),
            js: self.js.clone(),
        };
        crate::routine::start(
            &admin,
            &self.js,
            self.config.bus.topology(),
            &self.config.routine,
            &tracker,
            &shutdown,
            &workers,
        );
        let gate = Gate::new(
            self.operators.clone(),
            Throttle::default(),
            admin.store.database().clone(),
        );
        if let Some(listener) = self.console {
            let console = crate::console::Console::new(
                admin.clone(),
                gate.clone(),
                self.config.console_secure_cookie,
            );
            let stop = shutdown.clone();
            tracker.spawn(async move {
                if let Err(error) = crate::console::serve(console, listener, stop).await {
                    tracing::error!(%error, "the console stopped");
                }
            });
        }

        let mut routes = RoutesBuilder::default();
        routes.add_service(MallServiceServer::new(self.mall.clone()));
        // A partner's statement comes in one message.
        routes.add_service(Guarded::new(
            AdminServiceServer::new(admin)
                .max_decoding_message_size(crate::statement::MAX_BYTES + 64 * 1024),
            gate,
        ));
        let served = self
            .server
            .serve(
                routes,
                &[
                    MallServiceServer::<Mall>::NAME,
                    AdminServiceServer::<Admin>::NAME,
                ],
                shutdown,
                self.config.shutdown.grace(),
            )
            .await;
        // No new orders now: let the saga finish its batch and the relay send what is committed.
        self.mall.shutdown.cancel();
        workers.cancel();
        tracker.close();
        let watch_tasks = self.mall.tasks.clone();
        watch_tasks.close();
        let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
            tracker.wait().await;
            watch_tasks.wait().await;
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                timeout = ?DRAIN_TIMEOUT,
                "background workers did not stop in time; what they had not finished is redone at the next start"
            );
        }
        if let Err(error) = self.client.drain().await {
            tracing::warn!(%error, "NATS connection not drained");
        }
        db.close().await;
        served
    }
}

/// Events the saga has in flight at most; a batch is up to this many.
const SAGA_IN_FLIGHT: usize = 64;

/// How long a stopping mall waits for its background workers.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs a background worker on the tracker. A worker that panics is logged with its name and
/// stops the whole process (`stop`): a mall without its saga or relay must not look healthy,
/// and a restart resumes from what is durable.
pub(crate) fn supervise(
    tracker: &TaskTracker,
    stop: &CancellationToken,
    name: &'static str,
    worker: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let handle = tokio::spawn(worker);
    let stop = stop.clone();
    tracker.spawn(async move {
        if let Err(error) = handle.await
            && error.is_panic()
        {
            tracing::error!(worker = name, %error, "background worker panicked; stopping the mall");
            stop.cancel();
        }
    });
}

#[derive(Debug, thiserror::Error)]
pub enum MallStartError {
    #[error(transparent)]
    Start(#[from] StartError),
    #[error(transparent)]
    Bus(#[from] jifen_mesh::bus::BusError),
    #[error("bad configuration: {0}")]
    Config(String),
}

/// Flags orders that stay unsettled past `deadline`, checking a few times per deadline (and at
/// least every 5 s, when it also samples the mall's gauges).
async fn sweep_overdue(store: OrderStore, deadline: Duration, shutdown: CancellationToken) {
    let every = (deadline / 4).clamp(Duration::from_millis(100), Duration::from_secs(5));
    let deadline_ms = i64::try_from(deadline.as_millis()).unwrap_or(i64::MAX);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        if let Err(error) = store.sample_metrics().await {
            tracing::debug!(%error, "cannot sample the mall's metrics");
        }
        match store.flag_overdue(deadline_ms).await {
            Ok(0) => {}
            Ok(flagged) => tracing::warn!(flagged, ?deadline, "orders not settled in time flagged"),
            Err(error) => tracing::warn!(%error, "cannot flag overdue orders"),
        }
    }
}
