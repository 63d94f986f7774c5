//! The commands the mall sends, as outbox messages with deterministic ids (DESIGN §5).

use jifen_mesh::bus::publish::Outgoing;
use jifen_mesh::bus::subjects::{
    Step, channel_command, points_message_id, portal_command, quota_message_id,
};
use jifen_proto::v1::{
    DeductPointsCommand, DeductQuotaCommand, RefundPointsCommand, RefundQuotaCommand,
};
use prost::Message;

pub fn points(
    step: Step,
    order_id: &str,
    channel_id: &str,
    user_id: &str,
    points: i64,
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
