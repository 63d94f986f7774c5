//! Any of Jifen's bus payloads as JSON, for operators (a dead letter's page, `jifen admin
//! dead-letters show`): the command or event its subject names.

use jifen_proto::v1::{
    DeductPointsCommand, DeductQuotaCommand, PointsOutcomeEvent, QuotaOutcomeEvent,
    RefundPointsCommand, RefundQuotaCommand,
};
use prost::Message;
use serde_json::json;

use crate::bus::subjects::Subject;

/// A bus payload as JSON, for operators: the command or event its subject names.
pub fn payload_json(subject: &str, payload: &[u8]) -> String {
    let decoded = match Subject::parse(subject) {
        Some(Subject::ChannelCommand { step, .. }) if step.takes() => {
            DeductPointsCommand::decode(payload).ok().map(|c| {
                json!({"order_id": c.order_id, "channel_id": c.channel_id, "user_id": c.user_id, "points": c.points})
            })
        }
        Some(Subject::ChannelCommand { .. }) => RefundPointsCommand::decode(payload).ok().map(|c| {
            json!({"order_id": c.order_id, "channel_id": c.channel_id, "user_id": c.user_id,
                   "hold_expires_at_unix_ms": c.hold_expires_at_unix_ms})
        }),
        Some(Subject::PortalCommand { step }) if step.takes() => {
            DeductQuotaCommand::decode(payload).ok().map(
                |c| json!({"order_id": c.order_id, "channel_id": c.channel_id, "points": c.points}),
            )
        }
        Some(Subject::PortalCommand { .. }) => RefundQuotaCommand::decode(payload).ok().map(|c| {
            json!({"order_id": c.order_id, "channel_id": c.channel_id,
                   "hold_expires_at_unix_ms": c.hold_expires_at_unix_ms})
        }),
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
