//! Commands on the bus: the mall encodes them, the connectors decode them.

use jifen_proto::v1::{
    DeductPointsCommand, DeductQuotaCommand, RefundPointsCommand, RefundQuotaCommand,
};
use prost::Message;

use crate::bus::subjects::Step;
use crate::connector::LedgerCommand;

/// A line's command. A refund (or a confirm, a cancel) names what the line took and what the
/// answer that took it gave (`captured`), since a partner's reversal needs them; a confirm also
/// says when its hold lapses (`hold_expires_at_ms`). A freeze has a deduct's fields.
#[allow(clippy::too_many_arguments)]
pub fn encode_points_command(
    step: Step,
    order_id: &str,
    channel_id: &str,
    user_id: &str,
    points: i64,
    captured: impl IntoIterator<Item = (String, String)>,
    hold_expires_at_ms: i64,
) -> Vec<u8> {
    match step {
        Step::Deduct | Step::Freeze => DeductPointsCommand {
            order_id: order_id.to_owned(),
            channel_id: channel_id.to_owned(),
            user_id: user_id.to_owned(),
            points,
        }
        .encode_to_vec(),
        Step::Refund | Step::Confirm | Step::Cancel => RefundPointsCommand {
            order_id: order_id.to_owned(),
            channel_id: channel_id.to_owned(),
            user_id: user_id.to_owned(),
            points,
            captured: captured.into_iter().collect(),
            hold_expires_at_unix_ms: hold_expires_at_ms,
        }
        .encode_to_vec(),
    }
}

/// A channel quota's command at the portal.
pub fn encode_quota_command(
    step: Step,
    order_id: &str,
    channel_id: &str,
    points: i64,
    hold_expires_at_ms: i64,
) -> Vec<u8> {
    match step {
        Step::Deduct | Step::Freeze => DeductQuotaCommand {
            order_id: order_id.to_owned(),
            channel_id: channel_id.to_owned(),
            points,
        }
        .encode_to_vec(),
        Step::Refund | Step::Confirm | Step::Cancel => RefundQuotaCommand {
            order_id: order_id.to_owned(),
            channel_id: channel_id.to_owned(),
            hold_expires_at_unix_ms: hold_expires_at_ms,
        }
        .encode_to_vec(),
    }
}

/// A channel command from its payload, refused if it is for another channel.
pub fn decode_points_command(
    channel_id: &str,
    step: Step,
    payload: &[u8],
) -> Result<LedgerCommand, String> {
    let command = if step.takes() {
        let c = DeductPointsCommand::decode(payload).map_err(|e| e.to_string())?;
        LedgerCommand {
            step,
            order_id: c.order_id,
            channel_id: c.channel_id,
            user_id: c.user_id,
            points: c.points,
            captured: Default::default(),
            hold_expires_at_ms: 0,
        }
    } else {
        let c = RefundPointsCommand::decode(payload).map_err(|e| e.to_string())?;
        LedgerCommand {
            step,
            order_id: c.order_id,
            channel_id: c.channel_id,
            user_id: c.user_id,
            points: c.points,
            captured: c.captured.into_iter().collect(),
            hold_expires_at_ms: c.hold_expires_at_unix_ms,
        }
    };
    if command.channel_id != channel_id {
        return Err(format!(
            "command for channel {:?} reached the connector of {}",
            command.channel_id, channel_id
        ));
    }
    Ok(command)
}

/// Any command from its subject and payload (the subject says which kind it is).
pub fn decode_command(subject: &str, payload: &[u8]) -> Result<LedgerCommand, String> {
    match crate::bus::subjects::Subject::parse(subject) {
        Some(crate::bus::subjects::Subject::ChannelCommand { channel_id, step }) => {
            decode_points_command(channel_id, step, payload)
        }
        Some(crate::bus::subjects::Subject::PortalCommand { step }) => {
            decode_quota_command(step, payload)
        }
        _ => Err(format!("not a command subject: {subject}")),
    }
}

/// A quota command from its payload.
pub fn decode_quota_command(step: Step, payload: &[u8]) -> Result<LedgerCommand, String> {
    Ok(if step.takes() {
        let c = DeductQuotaCommand::decode(payload).map_err(|e| e.to_string())?;
        LedgerCommand {
            step,
            order_id: c.order_id,
            channel_id: c.channel_id,
            user_id: String::new(),
            points: c.points,
            captured: Default::default(),
            hold_expires_at_ms: 0,
        }
    } else {
        let c = RefundQuotaCommand::decode(payload).map_err(|e| e.to_string())?;
        LedgerCommand {
            step,
            order_id: c.order_id,
            channel_id: c.channel_id,
            user_id: String::new(),
            points: 0,
            captured: Default::default(),
            hold_expires_at_ms: c.hold_expires_at_unix_ms,
        }
    })
}
