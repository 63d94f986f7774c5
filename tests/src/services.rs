//! The real services, started in-process on port 0 the way `main` starts them, with a gRPC
//! client each. Dropping one cancels its shutdown token.

use std::net::SocketAddr;
use std::time::Duration;

use jifen_channel::ledger::PointsLedger;
use jifen_channel::{ChannelApp, ChannelConfig};
use jifen_mesh::config::ShutdownArgs;
use jifen_mesh::grpc::GrpcError;
use jifen_mesh::tls::{ClientTls, TlsArgs};
use jifen_mesh::tls_io::GrpcTarget;
use jifen_portal::quota::QuotaBook;
use jifen_portal::{PortalApp, PortalConfig};
use jifen_proto::v1::channel_service_client::ChannelServiceClient;
use jifen_proto::v1::portal_service_client::PortalServiceClient;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

use crate::TestDatabase;

const ANY_PORT: &str = "127.0.0.1:0";

/// Connections per pool in tests: many systems of several tests share one PostgreSQL server.
pub const TEST_POOL_SIZE: u32 = 4;

/// Mutual TLS for a test's services: each serves with a certificate of the test CA, asks
/// clients for one, and presents one when it calls another.
#[derive(Debug, Clone)]
pub struct TestTls {
    /// What every service is started with.
    pub args: TlsArgs,
    /// How the test's own clients call them.
    pub client: ClientTls,
}

impl TestTls {
    pub fn new(pki: &crate::pki::TestPki) -> Self {
        let service = pki.issue("service", false);
        let args = TlsArgs {
            tls_cert: Some(service.cert),
            tls_key: Some(service.key),
            tls_client_ca: Some(pki.ca_file.clone()),
            tls_ca: Some(pki.ca_file.clone()),
            plain_health_listen: None,
        };
        let client = args
            .client()
            .expect("the client TLS configuration")
            .expect("a CA is given");
        Self { args, client }
    }
}

/// The TLS flags of a service: the test's, or none.
pub fn tls_args(tls: Option<&TestTls>) -> TlsArgs {
    tls.map(|t| t.args.clone()).unwrap_or_default()
}

/// A server task and the token that stops it.
#[derive(Debug)]
pub struct Running {
    pub addr: SocketAddr,
    shutdown: CancellationToken,
    task: Option<JoinHandle<Result<(), GrpcError>>>,
    /// Set when the server speaks TLS: how clients reach it.
    tls: Option<ClientTls>,
}

impl Running {
    pub fn spawn<F>(addr: SocketAddr, run: impl FnOnce(CancellationToken) -> F) -> Self
    where
        F: Future<Output = Result<(), GrpcError>> + Send + 'static,
    {
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(run(shutdown.clone()));
        Self {
            addr,
            shutdown,
            task: Some(task),
            tls: None,
        }
    }

    /// The server speaks TLS: clients reach it at `https://` with `tls`.
    pub fn with_tls(mut self, tls: Option<&TestTls>) -> Self {
        self.tls = tls.map(|t| t.client.clone());
        self
    }

    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Cancels the token and waits for the server to finish.
    pub async fn stop(&mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            let result = task.await.expect("the server task does not panic");
            result.expect("the server stops cleanly");
        }
    }

    pub fn endpoint(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    pub async fn channel(&self) -> Channel {
        GrpcTarget::new(&self.endpoint(), self.tls.as_ref())
            .expect("a valid endpoint")
            .timeouts(Duration::from_secs(5), Duration::from_secs(30))
            .connect()
            .await
            .expect("the server accepts connections")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn quick_shutdown(grace: Duration) -> ShutdownArgs {
    ShutdownArgs {
        shutdown_grace_secs: grace.as_secs(),
    }
}

/// A running portal on its own database.
#[derive(Debug)]
pub struct TestPortal {
    pub server: Running,
    pub client: PortalServiceClient<Channel>,
    pub quotas: QuotaBook,
    // Dropped last: the server must stop before its database goes.
    pub db: TestDatabase,
}

impl TestPortal {
    pub async fn start() -> Self {
        Self::start_with_grace(Duration::ZERO).await
    }

    pub async fn start_with_grace(grace: Duration) -> Self {
        Self::start_with(grace, None).await
    }

    pub async fn start_with(grace: Duration, tls: Option<&TestTls>) -> Self {
        crate::init_logs();
        let db = TestDatabase::create("portal").await;
        let app = PortalApp::build(PortalConfig {
            tls: tls_args(tls),
            listen: ANY_PORT.parse().expect("an address"),
            database_url: db.url().to_owned(),
            db_max_connections: TEST_POOL_SIZE,
            channels_file: None,
            hold_ttl: jifen_mesh::barrier::DEFAULT_HOLD_TTL,
            shutdown: quick_shutdown(grace),
        })
        .await
        .expect("the portal starts");
        let quotas = app.quotas().clone();
        let server = Running::spawn(app.local_addr(), |token| app.run_until(token)).with_tls(tls);
        let client = PortalServiceClient::new(server.channel().await);
        Self {
            server,
            client,
            quotas,
            db,
        }
    }
}

impl TestChannel {
    /// Stops the channel's server, as an outage would; its database stays.
    pub async fn stop(&mut self) {
        self.server.stop().await;
    }

    /// Starts the channel again on the same address and database, its holds lapsing after
    /// `hold_ttl` from now on.
    pub async fn restart_holding(&mut self, hold_ttl: Duration) {
        self.hold_ttl = hold_ttl;
        self.restart().await;
    }

    /// Starts the channel again on the same address and database.
    pub async fn restart(&mut self) {
        let app = ChannelApp::build(ChannelConfig {
            tls: tls_args(self.tls.as_ref()),
            channel_id: self.channel_id.clone(),
            listen: self.server.addr,
            database_url: self.db.url().to_owned(),
            db_max_connections: TEST_POOL_SIZE,
            hold_ttl: self.hold_ttl,
            shutdown: quick_shutdown(Duration::ZERO),
        })
        .await
        .expect("the channel starts again");
        self.ledger = app.ledger().clone();
        self.server = Running::spawn(app.local_addr(), |token| app.run_until(token))
            .with_tls(self.tls.as_ref());
    }
}

/// A running reference channel on its own database.
#[derive(Debug)]
pub struct TestChannel {
    pub channel_id: String,
    pub server: Running,
    pub client: ChannelServiceClient<Channel>,
    pub ledger: PointsLedger,
    pub db: TestDatabase,
    tls: Option<TestTls>,
    hold_ttl: Duration,
}

impl TestChannel {
    pub async fn start(channel_id: &str) -> Self {
        Self::start_with_grace(channel_id, Duration::ZERO).await
    }

    pub async fn start_with_grace(channel_id: &str, grace: Duration) -> Self {
        Self::start_with(channel_id, grace, None).await
    }

    pub async fn start_with(channel_id: &str, grace: Duration, tls: Option<&TestTls>) -> Self {
        Self::start_holding(
            channel_id,
            grace,
            tls,
            jifen_mesh::barrier::DEFAULT_HOLD_TTL,
        )
        .await
    }

    /// A channel whose holds lapse after `hold_ttl`.
    pub async fn start_holding(
        channel_id: &str,
        grace: Duration,
        tls: Option<&TestTls>,
        hold_ttl: Duration,
    ) -> Self {
        crate::init_logs();
        let db = TestDatabase::create(&format!("channel_{channel_id}")).await;
        let app = ChannelApp::build(ChannelConfig {
            tls: tls_args(tls),
            channel_id: channel_id.to_owned(),
            listen: ANY_PORT.parse().expect("an address"),
            database_url: db.url().to_owned(),
            db_max_connections: TEST_POOL_SIZE,
            hold_ttl,
            shutdown: quick_shutdown(grace),
        })
        .await
        .expect("the channel starts");
        let ledger = app.ledger().clone();
        let server = Running::spawn(app.local_addr(), |token| app.run_until(token)).with_tls(tls);
        let client = ChannelServiceClient::new(server.channel().await);
        Self {
            channel_id: channel_id.to_owned(),
            server,
            client,
            ledger,
            db,
            tls: tls.cloned(),
            hold_ttl,
        }
    }
}
