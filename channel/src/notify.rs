//! A partner's notifications (DESIGN §9): `POST /notify/<channel>` on `--notify-listen`. A
//! notification whose signature verifies and which names a command this connector waits on
//! ("processing") publishes that command's outcome at once; its next poll finds the same and
//! changes nothing. One that names nothing pending (late, duplicate, after a restart) is
//! answered as accepted and ignored: polling settles those commands. A forged one is refused.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use jifen_mesh::bus::subjects::outcome_token;
use jifen_mesh::connector::{LedgerEndpoint, PendingBook, answers, mismatch, outcome_message};

use crate::adapter::HttpChannel;

#[derive(Debug, Clone)]
struct Notifications {
    channel: Arc<HttpChannel>,
    pending: Arc<PendingBook>,
}

/// Serves notifications on `listener` until `shutdown`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    channel: Arc<HttpChannel>,
    pending: Arc<PendingBook>,
    shutdown: tokio_util::sync::CancellationToken,
) -> std::io::Result<()> {
    let router = axum::Router::new()
        .route("/notify/{channel}", axum::routing::post(notified))
        .with_state(Notifications { channel, pending });
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

async fn notified(
    State(notifications): State<Notifications>,
    Path(channel_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let channel = &notifications.channel;
    if channel_id != channel.channel_id() {
        return (StatusCode::NOT_FOUND, "no such channel").into_response();
    }
    let counted = |outcome: &str| {
        jifen_mesh::metrics::NOTIFICATIONS
            .with_label_values(&[&channel_id, outcome])
            .inc();
    };
    let (key, recorded) = match channel.notification(&headers, body) {
        Ok(read) => read,
        Err(status) => {
            counted("refused");
            tracing::warn!(channel = %channel_id, code = ?status.code(), why = status.message(), "notification refused");
            let code = if status.code() == tonic::Code::Unauthenticated {
                StatusCode::UNAUTHORIZED
            } else {
                StatusCode::BAD_REQUEST
            };
            return (code, "refused").into_response();
        }
    };
    let reply = channel.notify_reply().unwrap_or("success").to_owned();
    let Some((command, command_id)) = notifications.pending.find(&key) else {
        tracing::debug!(channel = %channel_id, "a notification for nothing pending: polling settles it");
        counted("ignored");
        return reply.into_response();
    };
    if !answers(command.step, &recorded) {
        counted("ignored");
        return reply.into_response();
    }
    if let Some(why) = mismatch(&command, &recorded) {
        tracing::warn!(channel = %channel_id, order_id = %command.order_id, %why, "a notification that does not fit its command: left to polling");
        counted("refused");
        return reply.into_response();
    }
    let recorded = jifen_mesh::connector::Recorded {
        exchanges: channel.take_evidence(&command.order_id, &command.user_id),
        ..recorded
    };
    let event = outcome_message(
        &command,
        &command_id,
        outcome_token(recorded.state),
        channel.event(&command, &recorded),
        None,
    );
    match notifications.pending.publish(&event).await {
        Ok(()) => {
            counted("applied");
            tracing::info!(channel = %channel_id, order_id = %command.order_id, state = ?recorded.state, "settled by the partner's notification");
            reply.into_response()
        }
        // The partner sends it again; meanwhile polling goes on.
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, why).into_response(),
    }
}
