//! TCC (DESIGN §12): lines of channels that hold points are frozen with the portal's quota
//! holds, confirmed together once every line succeeded, cancelled on any failure — over the
//! reference channel's gRPC holds, beside saga lines in one order, through every interleaving
//! that matters, against a real nats-server and database.

use std::time::Duration;

use jifen_proto::v1::ListChannelHealthRequest;
use jifen_tests::eventually;
use jifen_tests::mesh::TestMesh;

use crate::admin::{admin, authed};

mod interleavings;
mod orders;
mod rest;

/// Makes `channel_id`'s connector declare holds lapsing after `ttl` (it restarts), and waits
/// until the mall takes that channel's new lines by TCC.
pub(super) async fn hold_at(mesh: &mut TestMesh, channel_id: &str, ttl: Duration) {
    mesh.holds.insert(channel_id.to_owned(), ttl);
    mesh.stop_connector(channel_id).await;
    mesh.start_connector(channel_id).await;
    holding(mesh, channel_id).await;
}

/// Waits until the mall takes `channel_id`'s new lines by TCC (its connector said it holds).
pub(super) async fn holding(mesh: &mut TestMesh, channel_id: &str) {
    let admin = admin(mesh).await;
    let admin = &admin;
    eventually(
        &format!("the mall to take {channel_id}'s lines by TCC"),
        Duration::from_secs(30),
        || async move {
            admin
                .clone()
                .list_channel_health(authed(ListChannelHealthRequest {}))
                .await
                .ok()?
                .into_inner()
                .channels
                .into_iter()
                .find(|c| c.channel_id == channel_id && c.hold_ttl_ms > 0)
                .map(|_| ())
        },
    )
    .await;
}
