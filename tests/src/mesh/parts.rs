//! Starting and stopping the parts of a [`TestMesh`]: connectors (each with its NATS
//! identity), channels attached later, the mall and its replicas.

use std::path::PathBuf;
use std::time::Duration;

use jifen_channel::connector::{ChannelConnectorConfig, run_connector as run_channel_connector};
use jifen_mall::{MallApp, MallConfig};
use jifen_mesh::bus::identity::Identity;
use jifen_mesh::config::ShutdownArgs;
use jifen_portal::connector::{PortalConnectorConfig, run_connector as run_portal_connector};
use jifen_proto::v1::ChannelKind;
use jifen_proto::v1::mall_service_client::MallServiceClient;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{
    ADMIN_TOKEN, OPERATOR_TOKEN, TestMall, TestMesh, VIEWER_TOKEN, credit_start_points,
    register_with_quota, register_with_quota_as,
};
use crate::TestChannel;
use crate::services::{Running, tls_args};

/// A connector running as a task.
#[derive(Debug)]
pub(super) struct Task {
    shutdown: CancellationToken,
    handle: JoinHandle<()>,
}

impl Task {
    pub(super) async fn stop(self) {
        self.shutdown.cancel();
        let _ = self.handle.await;
    }
}

impl TestMesh {
    /// Starts the connector of a channel, or of the portal with `"portal"`.
    pub async fn start_connector(&mut self, name: &str) {
        let endpoint = match self.channels.get(name) {
            Some(channel) => channel.server.endpoint(),
            None => self.external.get(name).cloned().unwrap_or_default(),
        };
        self.spawn_connector(name, Some(endpoint)).await;
    }

    /// Starts a channel (not registered at the portal yet) whose users hold
    /// [`START_POINTS`], and its connector, which finds the endpoint in the portal's registry.
    pub async fn add_unregistered_channel(&mut self, channel_id: &str, users: &[&str]) {
        let mut channel = TestChannel::start(channel_id).await;
        credit_start_points(&mut channel, users).await;
        self.channels.insert(channel_id.to_owned(), channel);
        self.spawn_connector(channel_id, None).await;
    }

    async fn spawn_connector(&mut self, name: &str, channel_endpoint: Option<String>) {
        if name != "portal" {
            self.nats.add_channel_identity(name).await;
        }
        let shutdown = CancellationToken::new();
        let token = shutdown.clone();
        let identity = if name == "portal" {
            Identity::Portal
        } else {
            Identity::channel(name).expect("a channel id")
        };
        let bus = self.bus(&identity);
        let handle = if name == "portal" {
            let config = PortalConnectorConfig {
                tls: tls_args(self.tls.as_ref()),
                portal_endpoint: self.portal.server.endpoint(),
                call_timeout: Duration::from_secs(2),
                concurrency: 16,
                hold_ttl: jifen_mesh::barrier::DEFAULT_HOLD_TTL,
                health_listen: None,
                bus,
                retry: self.retry.clone(),
            };
            tokio::spawn(async move {
                run_portal_connector(config, token)
                    .await
                    .expect("the portal connector runs");
            })
        } else {
            let config = ChannelConnectorConfig {
                tls: tls_args(self.tls.as_ref()),
                channel_id: name.to_owned(),
                channel_endpoint,
                portal_endpoint: self.portal.server.endpoint(),
                without: self.lacks.get(name).cloned().unwrap_or_default(),
                hold_ttl: self.holds.get(name).copied(),
                adapter_config: self.adapters.get(name).cloned(),
                // An adapter channel keeps its config's timeouts.
                call_timeout: (!self.adapters.contains_key(name)).then_some(Duration::from_secs(2)),
                concurrency: 16,
                health_listen: None,
                notify_listen: self.notify.get(name).copied(),
                bus,
                retry: self.retry.clone(),
            };
            tokio::spawn(async move {
                run_channel_connector(config, token)
                    .await
                    .expect("the channel connector runs");
            })
        };
        self.connectors
            .insert(name.to_owned(), Task { shutdown, handle });
    }

    /// Adds a channel served elsewhere (a third party's endpoint): registers it at the portal
    /// with [`START_QUOTA`] and starts its connector.
    pub async fn attach_channel(&mut self, channel_id: &str, endpoint: &str) {
        let name = format!("{channel_id} (third party)");
        register_with_quota(&mut self.portal, channel_id, &name, endpoint).await;
        self.external
            .insert(channel_id.to_owned(), endpoint.to_owned());
        self.start_connector(channel_id).await;
    }

    /// Adds a channel served as an HTTP/JSON API, driven through the adapter config at
    /// `config`: registers it (kind HTTP) with [`START_QUOTA`], starts its connector, and
    /// restarts the mall so that its pre-check reads the API through the same file.
    pub async fn attach_http_channel(&mut self, channel_id: &str, base_url: &str, config: PathBuf) {
        let name = format!("{channel_id} (REST API)");
        register_with_quota_as(
            &mut self.portal,
            channel_id,
            &name,
            base_url,
            ChannelKind::Http,
        )
        .await;
        self.adapters.insert(channel_id.to_owned(), config);
        self.spawn_connector(channel_id, None).await;
        if self.mall.is_some() {
            self.stop_mall().await;
            self.start_mall().await;
        }
    }

    pub async fn stop_connector(&mut self, name: &str) {
        if let Some(task) = self.connectors.remove(name) {
            task.stop().await;
        }
    }

    pub fn mall_config(&self) -> MallConfig {
        MallConfig {
            tls: tls_args(self.tls.as_ref()),
            listen: "127.0.0.1:0".parse().expect("an address"),
            database_url: self.mall_db.url().to_owned(),
            db_max_connections: crate::services::TEST_POOL_SIZE,
            portal_endpoint: self.portal.server.endpoint(),
            call_timeout: Duration::from_secs(3),
            outbox_sweep: Duration::from_millis(200),
            admin_token: Some(ADMIN_TOKEN.to_owned()),
            admin_token_file: None,
            operators_file: Some(self.operators_file.path().to_owned()),
            stuck_after: self.stuck_after,
            routine: self.routine.clone(),
            adapter_configs: self.adapters.values().cloned().collect(),
            console_listen: Some("127.0.0.1:0".parse().expect("an address")),
            console_secure_cookie: false,
            bus: self.bus(&Identity::Mall),
            retry: self.retry.clone(),
            shutdown: ShutdownArgs {
                shutdown_grace_secs: 0,
            },
        }
    }

    /// Starts the mall on its database (again, after [`stop_mall`](Self::stop_mall)).
    pub async fn start_mall(&mut self) {
        self.mall = Some(self.start_replica().await);
    }

    /// Starts another mall replica on the same database and bus (as a second pod would run).
    pub async fn start_replica(&self) -> TestMall {
        let app = MallApp::build(self.mall_config())
            .await
            .unwrap_or_else(|e| panic!("the replica starts: {e:?}"));
        let store = app.store().clone();
        let addr = app.local_addr();
        let console = format!(
            "http://{}",
            app.console_addr()
                .expect("the test mall serves its console")
        );
        let server = Running::spawn(addr, |token| app.run_until(token)).with_tls(self.tls.as_ref());
        let channel = server.channel().await;
        TestMall {
            server,
            client: MallServiceClient::new(channel),
            store,
            console,
        }
    }

    pub async fn stop_mall(&mut self) {
        if let Some(mut mall) = self.mall.take() {
            mall.server.stop().await;
        }
    }
}

/// A file naming operator `li` and viewer `vera` with their tokens' hashes.
pub(super) fn operators_file() -> tempfile::NamedTempFile {
    use jifen_mall::operators::token_hash;
    use std::io::Write as _;
    let mut file = tempfile::NamedTempFile::new().expect("a temp file");
    write!(
        file,
        "[[operators]]\nname = \"li\"\nrole = \"operator\"\ntoken_sha256 = \"{}\"\n\n\
         [[operators]]\nname = \"vera\"\nrole = \"viewer\"\ntoken_sha256 = \"{}\"\n",
        token_hash(OPERATOR_TOKEN),
        token_hash(VIEWER_TOKEN),
    )
    .expect("the operators file");
    file
}
