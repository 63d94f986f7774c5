//! Sending an order's open commands again under a new generation of message ids (RetryOrder,
//! CompensateOrder on a compensating order): the server's duplicate window would drop the old
//! ids, and the barrier makes a repeat harmless.

use jifen_mesh::bus::subjects::Step;
use sqlx::{AnyConnection, Row};

use crate::commands;
use crate::order::StepState;
use crate::store::Appends;
use crate::store::phases::{line_command, quota_command};
use crate::store::steps::next_generation;

/// The command to send again for a step stored in `raw` state and taken by `protocol`, when
/// that state is one of `states` (a held step's states count as the saga states they stand
/// for: cancelling as refunding, confirming as pending).
fn resend(raw: &str, protocol: &str, states: &[StepState]) -> Result<Option<Step>, sqlx::Error> {
    let state = crate::store::step_state(raw)?;
    let stands_for = match state {
        StepState::Cancelling => StepState::Refunding,
        StepState::Confirming => StepState::Pending,
        other => other,
    };
    Ok(if states.contains(&stands_for) {
        crate::store::protocol(protocol)?.outstanding(state)
    } else {
        None
    })
}

/// Sends again, under the order's next generation of ids, the command of every step in one
/// of `states`: deducts for pending steps, refunds for refunding ones. Returns how many.
pub(crate) async fn reemit(
    tx: &mut AnyConnection,
    order_id: &str,
    states: &[StepState],
    now: i64,
) -> Result<usize, sqlx::Error> {
    let generation = next_generation(tx, order_id).await?;
    let mut messages = Vec::new();
    for row in sqlx::query(
        "SELECT channel_id, user_id, points, state, captured, protocol, hold_expires_at_ms \
         FROM order_lines WHERE order_id = $1",
    )
    .bind(order_id)
    .fetch_all(&mut *tx)
    .await?
    {
        let Some(step) = resend(row.try_get("state")?, row.try_get("protocol")?, states)? else {
            continue;
        };
        messages.push(line_command(step, order_id, &row)?);
    }
    for row in sqlx::query(
        "SELECT channel_id, points, state, protocol, hold_expires_at_ms FROM order_quotas \
         WHERE order_id = $1",
    )
    .bind(order_id)
    .fetch_all(&mut *tx)
    .await?
    {
        let Some(step) = resend(row.try_get("state")?, row.try_get("protocol")?, states)? else {
            continue;
        };
        messages.push(quota_command(step, order_id, &row)?);
    }
    let sent = messages.len();
    let mut appends = Appends::default();
    for message in messages {
        appends.enqueue(commands::regenerated(message, generation), now);
    }
    // Commands only: nothing settles here.
    let _nothing_settled = appends.write(tx).await?;
    Ok(sent)
}
