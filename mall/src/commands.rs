//! The commands the mall sends, as outbox messages with deterministic ids (DESIGN §5).

use jifen_mesh::bus::publish::Outgoing;
use jifen_mesh::bus::subjects::{
    Step, channel_command, points_message_id, portal_command, quota_message_id,
};

/// A line's command. A refund (confirm, cancel) names what the line took and what the answer
/// that took it gave (`captured`, the JSON object the line keeps), since a partner's reversal
/// needs them; a confirm says when its hold lapses (`hold_expires_at_ms`, else 0).
#[allow(clippy::too_many_arguments)]
pub fn points(
    step: Step,
    order_id: &str,
    channel_id: &str,
    user_id: &str,
    points: i64,
    captured: &str,
    hold_expires_at_ms: i64,
) -> Outgoing {
    // The line's captured values, as the store keeps them (a JSON object).
    let captured: std::collections::BTreeMap<String, String> =
        serde_json::from_str(captured).unwrap_or_default();
    let payload = jifen_mesh::wire::encode_points_command(
        step,
        order_id,
        channel_id,
        user_id,
        points,
        captured,
        hold_expires_at_ms,
    );
    Outgoing {
        subject: channel_command(channel_id, step),
        msg_id: points_message_id(order_id, step, channel_id, user_id),
        order_id: order_id.to_owned(),
        traceparent: None,
        payload: payload.into(),
    }
}

pub fn quota(
    step: Step,
    order_id: &str,
    channel_id: &str,
    points: i64,
    hold_expires_at_ms: i64,
) -> Outgoing {
    let payload = jifen_mesh::wire::encode_quota_command(
        step,
        order_id,
        channel_id,
        points,
        hold_expires_at_ms,
    );
    Outgoing {
        subject: portal_command(step),
        msg_id: quota_message_id(order_id, step, channel_id),
        order_id: order_id.to_owned(),
        traceparent: None,
        payload: payload.into(),
    }
}

/// The same command under a new id, for an operator's re-emission: generation `n` must get past
/// the server's duplicate window, and the barrier keeps a repeat harmless.
pub fn regenerated(mut message: Outgoing, generation: i64) -> Outgoing {
    message.msg_id = format!("{}:g{generation}", message.msg_id);
    message
}
