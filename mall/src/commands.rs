//! The commands the mall sends, as outbox messages with deterministic ids (DESIGN §5).

use jifen_mesh::bus::publish::Outgoing;
use jifen_mesh::bus::subjects::{
    Step, channel_command, points_message_id, portal_command, quota_message_id,
};
use jifen_proto::v1::{
    DeductPointsCommand, DeductQuotaCommand, RefundPointsCommand, RefundQuotaCommand,
};
use prost::Message;

/// A line's command. A refund names what the line deducted and what the deduct's answer gave
/// (`captured`, the JSON object the line keeps), since a partner's reversal needs them.
pub fn points(
    step: Step,
    order_id: &str,
    channel_id: &str,
    user_id: &str,
    points: i64,
    captured: &str,
) -> Outgoing {
    let payload = match step {
        Step::Deduct => DeductPointsCommand {
            order_id: order_id.to_owned(),
            channel_id: channel_id.to_owned(),
            user_id: user_id.to_owned(),
            points,
        }
        .encode_to_vec(),
        Step::Refund => RefundPointsCommand {
            order_id: order_id.to_owned(),
            channel_id: channel_id.to_owned(),
            user_id: user_id.to_owned(),
            points,
            captured: serde_json::from_str(captured).unwrap_or_default(),
        }
        .encode_to_vec(),
    };
    Outgoing {
        subject: channel_command(channel_id, step),
        msg_id: points_message_id(order_id, step, channel_id, user_id),
        order_id: order_id.to_owned(),
        traceparent: None,
        payload: payload.into(),
    }
}

pub fn quota(step: Step, order_id: &str, channel_id: &str, points: i64) -> Outgoing {
    let payload = match step {
        Step::Deduct => DeductQuotaCommand {
            order_id: order_id.to_owned(),
            channel_id: channel_id.to_owned(),
            points,
        }
        .encode_to_vec(),
        Step::Refund => RefundQuotaCommand {
            order_id: order_id.to_owned(),
            channel_id: channel_id.to_owned(),
        }
        .encode_to_vec(),
    };
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

/// A bus payload as JSON, for operators: the command or event its subject names.
pub fn payload_json(subject: &str, payload: &[u8]) -> String {
    use jifen_mesh::bus::subjects::{Step, Subject};
    use jifen_proto::v1::{PointsOutcomeEvent, QuotaOutcomeEvent};
    use serde_json::json;
    let decoded = match Subject::parse(subject) {
        Some(Subject::ChannelCommand { step: Step::Deduct, .. }) => {
            DeductPointsCommand::decode(payload).ok().map(|c| {
                json!({"order_id": c.order_id, "channel_id": c.channel_id, "user_id": c.user_id, "points": c.points})
            })
        }
        Some(Subject::ChannelCommand { step: Step::Refund, .. }) => {
            RefundPointsCommand::decode(payload).ok().map(
                |c| json!({"order_id": c.order_id, "channel_id": c.channel_id, "user_id": c.user_id}),
            )
        }
        Some(Subject::PortalCommand { step: Step::Deduct }) => {
            DeductQuotaCommand::decode(payload).ok().map(
                |c| json!({"order_id": c.order_id, "channel_id": c.channel_id, "points": c.points}),
            )
        }
        Some(Subject::PortalCommand { step: Step::Refund }) => RefundQuotaCommand::decode(payload)
            .ok()
            .map(|c| json!({"order_id": c.order_id, "channel_id": c.channel_id})),
        Some(Subject::ChannelEvent { .. }) => PointsOutcomeEvent::decode(payload)
            .ok()
            .and_then(|e| e.deduction)
            .map(|d| {
                json!({"order_id": d.order_id, "channel_id": d.channel_id, "user_id": d.user_id,
                   "points": d.points, "state": d.state().as_str_name(), "reason": d.reason})
            }),
        Some(Subject::PortalEvent { .. }) => QuotaOutcomeEvent::decode(payload)
            .ok()
            .and_then(|e| e.quota_deduction)
            .map(|d| {
                json!({"order_id": d.order_id, "channel_id": d.channel_id, "points": d.points,
                   "state": d.state().as_str_name(), "reason": d.reason})
            }),
        _ => None,
    };
    decoded
        .unwrap_or_else(|| {
            let hex: String = payload.iter().map(|b| format!("{b:02x}")).collect();
            json!({ "undecodable_hex": hex })
        })
        .to_string()
}
