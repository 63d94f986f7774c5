//! The whole mesh in one process: a nats-server, the portal, channels with their connectors,
//! the portal connector and the mall, each on its own fresh database, with short retry
//! schedules. Parts can be stopped and started again to stage failures ([`parts`]: connectors,
//! the mall and its replicas).

use std::collections::BTreeMap;
use std::time::Duration;

use jifen_mesh::bus::identity::Identity;
use jifen_mesh::config::{BusArgs, RetryArgs};
use jifen_proto::v1::mall_service_client::MallServiceClient;
use jifen_proto::v1::{
    ChannelKind, CreditPointsRequest, GetOrderRequest, GrantQuotaRequest, Order, OrderState,
    RegisterChannelRequest, SubmitOrderLine, SubmitOrderRequest,
};
use tonic::transport::Channel;

mod parts;

use crate::services::{Running, TestTls};
use crate::{TestChannel, TestDatabase, TestNats, TestPortal, eventually};
use parts::{Task, operators_file};

/// Points every demo user starts with, in every channel.
pub const START_POINTS: i64 = 10_000;
/// Quota every channel starts with.
pub const START_QUOTA: i64 = 1_000_000;
/// The mall's admin token in tests (the legacy single token: operator `admin`).
pub const ADMIN_TOKEN: &str = "test-admin-token";
/// The token of operator `li` (role operator) in tests.
pub const OPERATOR_TOKEN: &str = "test-operator-li-token";
/// The token of operator `vera` (role viewer) in tests.
pub const VIEWER_TOKEN: &str = "test-viewer-vera-token";

/// A retry schedule fast enough for tests.
pub fn test_retry() -> RetryArgs {
    RetryArgs {
        backoff: [200, 300, 500, 800, 1000]
            .into_iter()
            .map(Duration::from_millis)
            .collect(),
        max_deliver: 50,
    }
}

#[derive(Debug)]
pub struct TestMall {
    pub server: Running,
    pub client: MallServiceClient<Channel>,
    pub store: jifen_mall::store::OrderStore,
    /// The operator's console, `http://127.0.0.1:<port>`.
    pub console: String,
}

#[derive(Debug)]
pub struct TestMesh {
    pub mall: Option<TestMall>,
    pub channels: BTreeMap<String, TestChannel>,
    pub portal: TestPortal,
    pub mall_db: TestDatabase,
    connectors: BTreeMap<String, Task>,
    /// Channels served outside the harness (third-party fakes): their endpoints.
    external: BTreeMap<String, String>,
    /// What each channel's connector is told the channel lacks (`--without`).
    pub lacks: BTreeMap<String, Vec<String>>,
    /// Channels whose connectors declare holds (`--hold-ttl`): their hold TTL (DESIGN §12).
    pub holds: BTreeMap<String, Duration>,
    /// Channels driven through the HTTP adapter: their config files.
    pub adapters: BTreeMap<String, std::path::PathBuf>,
    /// Where adapter channels' connectors take their partner's notifications.
    pub notify: BTreeMap<String, std::net::SocketAddr>,
    pub nats: TestNats,
    /// How long the mall lets an order stay unsettled before flagging it (at its next start).
    pub stuck_after: Duration,
    /// The retry schedule of every consumer group started from now on.
    pub retry: RetryArgs,
    /// What the mall does by itself (at its next start); the automatic redrive is off unless
    /// a test turns it on, so that tests of operators' redrives see their dead letters stay.
    pub routine: jifen_mall::routine::RoutineArgs,
    /// Operators `li` ([`OPERATOR_TOKEN`]) and `vera` ([`VIEWER_TOKEN`]).
    operators_file: tempfile::NamedTempFile,
    /// Mutual TLS between every service, when the mesh was started with it.
    pub tls: Option<TestTls>,
}

impl TestMesh {
    /// Starts everything, with channels `channel_ids`, users `users` holding
    /// [`START_POINTS`] in each, and [`START_QUOTA`] per channel.
    /// NATS runs with an identity per process, as `jifen dev` and the `prod` overlay do, so
    /// every test also checks that each process's permissions are enough.
    pub async fn start(channel_ids: &[&str], users: &[&str]) -> Self {
        Self::start_on(
            TestNats::start_secured(channel_ids).await,
            channel_ids,
            users,
        )
        .await
    }

    /// [`start`](Self::start) on a given NATS: a single server or a cluster (whose streams
    /// then get one replica per node).
    pub async fn start_on(nats: TestNats, channel_ids: &[&str], users: &[&str]) -> Self {
        Self::start_with(nats, channel_ids, users, None).await
    }

    /// [`start_on`](Self::start_on), every gRPC hop over mutual TLS when `tls` is given.
    pub async fn start_with(
        nats: TestNats,
        channel_ids: &[&str],
        users: &[&str],
        tls: Option<TestTls>,
    ) -> Self {
        let mut portal = TestPortal::start_with(Duration::ZERO, tls.as_ref()).await;
        let mut channels = BTreeMap::new();
        for channel_id in channel_ids {
            let mut channel =
                TestChannel::start_with(channel_id, Duration::ZERO, tls.as_ref()).await;
            let name = format!("{channel_id} points");
            register_with_quota(&mut portal, channel_id, &name, &channel.server.endpoint()).await;
            credit_start_points(&mut channel, users).await;
            channels.insert((*channel_id).to_owned(), channel);
        }
        let mut mesh = Self {
            mall: None,
            channels,
            portal,
            mall_db: TestDatabase::create("mall").await,
            connectors: BTreeMap::new(),
            external: BTreeMap::new(),
            lacks: BTreeMap::new(),
            holds: BTreeMap::new(),
            adapters: BTreeMap::new(),
            notify: BTreeMap::new(),
            nats,
            stuck_after: Duration::from_secs(600),
            retry: test_retry(),
            routine: jifen_mall::routine::RoutineArgs {
                auto_redrive_after: Duration::ZERO,
                ..Default::default()
            },
            operators_file: operators_file(),
            tls,
        };
        // The mall first: it creates the streams, which the connectors only look up.
        mesh.start_mall().await;
        for channel_id in channel_ids {
            mesh.start_connector(channel_id).await;
        }
        mesh.start_connector("portal").await;
        mesh
    }

    /// How `identity` reaches the mesh's NATS (with its own NKEY on a secured server).
    pub fn bus(&self, identity: &Identity) -> BusArgs {
        self.nats.bus_for(identity)
    }

    pub fn mall(&mut self) -> &mut TestMall {
        self.mall.as_mut().expect("the mall is running")
    }

    pub fn channel(&mut self, channel_id: &str) -> &mut TestChannel {
        self.channels
            .get_mut(channel_id)
            .expect("a channel of this mesh")
    }

    /// Submits an order of `(channel, user, points)` lines.
    pub async fn submit(
        &mut self,
        order_id: &str,
        lines: &[(&str, &str, i64)],
    ) -> Result<Order, tonic::Status> {
        let request = order_request(order_id, lines);
        let order = self
            .mall()
            .client
            .submit_order(request)
            .await?
            .into_inner()
            .order;
        Ok(order.expect("an order in the response"))
    }

    /// Submits an order of `points` at `channel` and 6,000 at alpha that alpha will reject
    /// once `channel` has deducted: alpha's connector waits while the user spends all their
    /// alpha points elsewhere (after the pre-check passed), so the order compensates.
    pub async fn submit_doomed(&mut self, channel: &str, order_id: &str, user: &str, points: i64) {
        self.stop_connector("alpha").await;
        self.submit(order_id, &[(channel, user, points), ("alpha", user, 6_000)])
            .await
            .expect("the order is taken");
        self.channel("alpha")
            .client
            .deduct_points(jifen_proto::v1::DeductPointsRequest {
                order_id: format!("elsewhere-{order_id}"),
                user_id: user.into(),
                points: START_POINTS,
            })
            .await
            .expect("the user spends their alpha points elsewhere");
        self.start_connector("alpha").await;
    }

    /// The order as the mall shows it now.
    pub async fn order(&mut self, order_id: &str) -> Order {
        self.order_when(order_id, "to be read", |_| true).await
    }

    /// Waits until the order is COMPLETED or CANCELLED and returns it.
    pub async fn settled(&mut self, order_id: &str) -> Order {
        self.order_when(order_id, "to settle", |order| {
            matches!(order.state(), OrderState::Completed | OrderState::Cancelled)
        })
        .await
    }

    /// Waits (60 s at most) until `order_id` as the mall shows it meets `ready`, and returns it.
    pub async fn order_when(
        &mut self,
        order_id: &str,
        what: &str,
        ready: impl Fn(&Order) -> bool,
    ) -> Order {
        let client = self.mall().client.clone();
        let ready = &ready;
        eventually(
            &format!("order {order_id} {what}"),
            Duration::from_secs(60),
            || {
                let mut client = client.clone();
                async move {
                    let order = client
                        .get_order(GetOrderRequest {
                            order_id: order_id.to_owned(),
                        })
                        .await
                        .ok()?
                        .into_inner()
                        .order?;
                    ready(&order).then_some(order)
                }
            },
        )
        .await
    }

    pub async fn balance(&mut self, channel_id: &str, user: &str) -> i64 {
        let user = jifen_mesh::domain::UserId::parse("user_id", user).expect("a user id");
        self.channel(channel_id)
            .ledger
            .balance(&user)
            .await
            .expect("a balance")
    }

    /// A pool on the mall's database, whether or not the mall runs.
    pub async fn mall_db_pool(&self) -> sqlx::AnyPool {
        jifen_mesh::storage::Database::open_with(
            self.mall_db.url(),
            &jifen_mall::app::MIGRATIONS,
            2,
        )
        .await
        .expect("the mall's database")
        .pool()
        .clone()
    }

    pub async fn quota_used(&self, channel_id: &str) -> i64 {
        let id = jifen_mesh::domain::ChannelId::parse("channel_id", channel_id).expect("an id");
        self.portal
            .quotas
            .channel(&id)
            .await
            .expect("a channel")
            .used
    }
}

/// Registers a channel at the portal and grants it [`START_QUOTA`].
pub async fn register_with_quota(
    portal: &mut TestPortal,
    channel_id: &str,
    name: &str,
    endpoint: &str,
) {
    register_with_quota_as(portal, channel_id, name, endpoint, ChannelKind::Grpc).await;
}

/// [`register_with_quota`] for a channel of `kind`.
pub async fn register_with_quota_as(
    portal: &mut TestPortal,
    channel_id: &str,
    name: &str,
    endpoint: &str,
    kind: ChannelKind,
) {
    portal
        .client
        .register_channel(RegisterChannelRequest {
            channel_id: channel_id.to_owned(),
            name: name.to_owned(),
            endpoint: endpoint.to_owned(),
            kind: kind.into(),
        })
        .await
        .expect("register");
    portal
        .client
        .grant_quota(GrantQuotaRequest {
            request_id: format!("start-{channel_id}"),
            channel_id: channel_id.to_owned(),
            points: START_QUOTA,
        })
        .await
        .expect("grant");
}

/// Gives every user [`START_POINTS`] at the channel.
async fn credit_start_points(channel: &mut TestChannel, users: &[&str]) {
    for user in users {
        channel
            .client
            .credit_points(CreditPointsRequest {
                request_id: format!("start-{user}"),
                user_id: (*user).to_owned(),
                points: START_POINTS,
            })
            .await
            .expect("credit");
    }
}

pub fn order_request(order_id: &str, lines: &[(&str, &str, i64)]) -> SubmitOrderRequest {
    SubmitOrderRequest {
        order_id: order_id.to_owned(),
        customer_id: "customer-1".to_owned(),
        lines: lines
            .iter()
            .map(|(channel_id, user_id, points)| SubmitOrderLine {
                channel_id: (*channel_id).to_owned(),
                user_id: (*user_id).to_owned(),
                points: *points,
            })
            .collect(),
    }
}
