//! Operations that run themselves (issue 18): a ledger's health from its connector's calls,
//! redrive after recovery, pauses and maintenance windows, continuous reconciliation — over the
//! real admin API, the console and a real nats-server.

use std::time::Duration;

use jifen_proto::v1::admin_service_client::AdminServiceClient;
use jifen_proto::v1::{ChannelHealth, ListChannelHealthRequest};
use jifen_tests::eventually;
use tonic::transport::Channel;

use crate::admin::authed;

mod books;
mod pauses;
mod redrive;

pub(super) async fn health_of(
    admin: &AdminServiceClient<Channel>,
    channel_id: &str,
) -> ChannelHealth {
    admin
        .clone()
        .list_channel_health(authed(ListChannelHealthRequest {}))
        .await
        .unwrap()
        .into_inner()
        .channels
        .into_iter()
        .find(|c| c.channel_id == channel_id)
        .unwrap_or_else(|| panic!("{channel_id} is listed"))
}

pub(super) async fn health_becomes(
    admin: &AdminServiceClient<Channel>,
    channel_id: &str,
    wanted: &str,
) {
    eventually(
        &format!("{channel_id} {wanted}"),
        Duration::from_secs(40),
        || async move { (health_of(admin, channel_id).await.health == wanted).then_some(()) },
    )
    .await;
}
