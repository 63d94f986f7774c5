//! The channels page: the portal's registry and quotas, each consumer group's backlog on the
//! bus, and the open dead letters per consumer.

use axum::extract::State;
use axum::response::Response;
use jifen_mesh::bus::subjects::{
    CMD_STREAM, EVT_STREAM, PORTAL_CONSUMER, SAGA_CONSUMER, channel_consumer,
};
use jifen_proto::v1::{ChannelKind, ListChannelsRequest};
use maud::html;

use super::Console;
use super::pages::{Params, flash};
use super::session::Session;
use super::views::{enc, page};

/// A consumer group's backlog: messages not yet delivered, and delivered but not acked.
struct Backlog {
    pending: String,
    ack_pending: String,
}

impl Console {
    async fn backlog(&self, stream: &str, consumer: &str) -> Backlog {
        let info = async {
            let stream = self.js.get_stream(stream).await.ok()?;
            let info = stream.consumer_info(consumer).await.ok()?;
            Some((info.num_pending, info.num_ack_pending))
        };
        match info.await {
            Some((pending, ack_pending)) => Backlog {
                pending: pending.to_string(),
                ack_pending: ack_pending.to_string(),
            },
            None => Backlog {
                pending: "no consumer".to_owned(),
                ack_pending: "—".to_owned(),
            },
        }
    }
}

pub async fn channels(
    State(console): State<Console>,
    session: Session,
    params: Params,
) -> Response {
    let flash = flash(&session, &params);
    let listed = console
        .admin
        .registry
        .portal()
        .list_channels(ListChannelsRequest {})
        .await;
    let channels = match listed {
        Ok(r) => r.into_inner().channels,
        Err(status) => {
            return console.error_page(&session, &format!("the portal: {}", status.message()));
        }
    };
    let open = match crate::store::dead_letters::open_by_consumer(console.store.database()).await {
        Ok(open) => open,
        Err(error) => return console.storage_error(&session, &error),
    };
    let open_of = |consumer: &str| open.get(consumer).copied().unwrap_or(0);
    let mut rows = Vec::with_capacity(channels.len());
    for channel in &channels {
        let consumer = channel_consumer(&channel.channel_id);
        rows.push((
            channel,
            console.backlog(CMD_STREAM, &consumer).await,
            consumer,
        ));
    }
    let groups = [
        (
            PORTAL_CONSUMER,
            console.backlog(CMD_STREAM, PORTAL_CONSUMER).await,
        ),
        (
            SAGA_CONSUMER,
            console.backlog(EVT_STREAM, SAGA_CONSUMER).await,
        ),
    ];
    let content = html! {
        h1 { "Channels" }
        div.wrap { table {
            thead { tr {
                th { "Channel" } th { "Kind" } th { "Endpoint" } th.num { "Quota total" } th.num { "Used" } th.num { "Remaining" }
                th.num { "Pending" } th.num { "Ack pending" } th.num { "Open dead letters" }
            } }
            tbody { @for (channel, backlog, consumer) in &rows { tr {
                td { strong { (channel.channel_id) } br; span.muted { (channel.name) } }
                td { @if channel.kind() == ChannelKind::Http { "HTTP (adapter)" } @else { "gRPC" } }
                td { code { (channel.endpoint) } }
                td.num { (channel.total) } td.num { (channel.used) } td.num { (channel.remaining) }
                td.num { (backlog.pending) } td.num { (backlog.ack_pending) }
                td.num { a href={ "/dead-letters?consumer=" (enc(consumer)) } { (open_of(consumer)) } }
            } } }
        } }
        h2 { "Other consumer groups" }
        div.wrap { table {
            thead { tr { th { "Consumer" } th.num { "Pending" } th.num { "Ack pending" } th.num { "Open dead letters" } } }
            tbody { @for (consumer, backlog) in &groups { tr {
                td { (consumer) } td.num { (backlog.pending) } td.num { (backlog.ack_pending) }
                td.num { a href={ "/dead-letters?consumer=" (enc(consumer)) } { (open_of(consumer)) } }
            } } }
        } }
    };
    page("Channels", &session, &flash, content)
}
