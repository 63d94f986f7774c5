//! What moves an order from one phase to the next, in the caller's transaction: ask for the
//! quotas (saga) or the deducts of lines that cannot be held (TCC), confirm the holds,
//! compensate, correct a late deduct or hold, complete, settle — each a few plain writes that
//! move steps and send their commands (the outbox), as the saga's plan or an operator says.

use jifen_mesh::bus::publish::Outgoing;
use jifen_mesh::bus::subjects::Step;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::steps::{next_generation, set_order, set_step};
use crate::commands;
use crate::history::history_detail;
use crate::order::{OrderState, Protocol, StepFacts, StepState};
use crate::store::{Appends, protocol};
use jifen_mesh::bus::subjects::outcome_token;
use jifen_mesh::wire::{Outcome, StepKey};

/// Every line is deducted: ask the portal for each channel's quota.
pub(crate) async fn request_quotas(
    tx: &mut AnyConnection,
    appends: &mut Appends,
    order_id: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    let sent = move_quotas(tx, appends, order_id, TAKE, "'WAITING'", now).await?;
    appends.record(
        order_id,
        "quota_requested",
        &format!("every line deducted; {sent} quota deduct(s) sent"),
        now,
    );
    Ok(())
}

/// Every hold of a TCC order stands: deduct its lines that cannot be held, which wait until
/// now so that a refused hold never leaves a deduct to refund (DESIGN §12).
pub(crate) async fn request_deducts(
    tx: &mut AnyConnection,
    appends: &mut Appends,
    order_id: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    let sent = move_lines(tx, appends, order_id, TAKE, "'WAITING'", now).await?;
    appends.record(
        order_id,
        "deducts_requested",
        &format!("every hold stands; {sent} deduct(s) of lines that cannot be held sent"),
        now,
    );
    Ok(())
}

/// How a writer moves steps: the state they take (an SQL expression over the row) and the
/// command each sends, by its protocol.
struct Moving {
    state: &'static str,
    command: fn(Protocol) -> Step,
}

/// Asked for: a deduct, or a hold.
const TAKE: Moving = Moving {
    state: "'PENDING'",
    command: take,
};

/// The command that takes a step's points: a deduct, or a hold.
pub(crate) fn take(protocol: Protocol) -> Step {
    match protocol {
        Protocol::Saga => Step::Deduct,
        Protocol::Tcc => Step::Freeze,
    }
}

/// What a step took is given back: a refund, or a cancel.
const UNDO: Moving = Moving {
    state: "CASE WHEN protocol = 'TCC' THEN 'CANCELLING' ELSE 'REFUNDING' END",
    command: |protocol| match protocol {
        Protocol::Saga => Step::Refund,
        Protocol::Tcc => Step::Cancel,
    },
};

/// A hold is spent.
const CONFIRM: Moving = Moving {
    state: "'CONFIRMING'",
    command: |_| Step::Confirm,
};

/// Moves an order's lines in states `from` (an SQL list) as `moving` says and sends each its
/// command, with what it captured and when its hold lapses; returns how many moved.
async fn move_lines(
    tx: &mut AnyConnection,
    appends: &mut Appends,
    order_id: &str,
    moving: Moving,
    from: &str,
    now: i64,
) -> Result<usize, sqlx::Error> {
    let rows = sqlx::query(&format!(
        "UPDATE order_lines SET state = {} WHERE order_id = $1 AND state IN ({from}) \
         RETURNING channel_id, user_id, points, captured, protocol, hold_expires_at_ms",
        moving.state
    ))
    .bind(order_id)
    .fetch_all(&mut *tx)
    .await?;
    for row in &rows {
        let step = (moving.command)(protocol(row.try_get("protocol")?)?);
        appends.enqueue(line_command(step, order_id, row)?, now);
    }
    Ok(rows.len())
}

/// `step`'s command for the line `row` holds (its channel, user, points, captured values and
/// hold expiry).
pub(crate) fn line_command(
    step: Step,
    order_id: &str,
    row: &AnyRow,
) -> Result<Outgoing, sqlx::Error> {
    let channel_id: String = row.try_get("channel_id")?;
    let user_id: String = row.try_get("user_id")?;
    let captured: String = row.try_get("captured")?;
    Ok(commands::points(
        step,
        order_id,
        &channel_id,
        &user_id,
        row.try_get("points")?,
        &captured,
        row.try_get("hold_expires_at_ms")?,
    ))
}

/// `step`'s command for the quota `row` holds (its channel, points and hold expiry).
pub(crate) fn quota_command(
    step: Step,
    order_id: &str,
    row: &AnyRow,
) -> Result<Outgoing, sqlx::Error> {
    let channel_id: String = row.try_get("channel_id")?;
    Ok(commands::quota(
        step,
        order_id,
        &channel_id,
        row.try_get("points")?,
        row.try_get("hold_expires_at_ms")?,
    ))
}

/// [`move_lines`] for an order's quotas.
async fn move_quotas(
    tx: &mut AnyConnection,
    appends: &mut Appends,
    order_id: &str,
    moving: Moving,
    from: &str,
    now: i64,
) -> Result<usize, sqlx::Error> {
    let rows = sqlx::query(&format!(
        "UPDATE order_quotas SET state = {} WHERE order_id = $1 AND state IN ({from}) \
         RETURNING channel_id, points, protocol, hold_expires_at_ms",
        moving.state
    ))
    .bind(order_id)
    .fetch_all(&mut *tx)
    .await?;
    for row in &rows {
        let step = (moving.command)(protocol(row.try_get("protocol")?)?);
        appends.enqueue(quota_command(step, order_id, row)?, now);
    }
    Ok(rows.len())
}

/// Refunds (cancels) a step whose deduct (hold) arrived after the step stopped holding points,
/// under a new generation of ids (the first refund's id may still be in the server's duplicate
/// window). The step waits in `REFUNDING` (`CANCELLING`); a compensating order waits for it, a
/// cancelled one stays cancelled (it is what the customer was told) and its step settles when
/// the refund does.
pub(crate) async fn correct(
    tx: &mut AnyConnection,
    appends: &mut Appends,
    outcome: &Outcome,
    step: StepFacts,
    now: i64,
) -> Result<&'static str, sqlx::Error> {
    let generation = next_generation(tx, &outcome.order_id).await?;
    let (undo, waiting) = match step.protocol {
        Protocol::Saga => (Step::Refund, StepState::Refunding),
        Protocol::Tcc => (Step::Cancel, StepState::Cancelling),
    };
    set_step(tx, outcome, StepFacts::new(waiting).held(step.protocol)).await?;
    let (refund, kind) = match &outcome.step {
        StepKey::Line {
            channel_id,
            user_id,
        } => {
            let line = sqlx::query(
                "SELECT points, captured FROM order_lines \
                 WHERE order_id = $1 AND channel_id = $2 AND user_id = $3",
            )
            .bind(&outcome.order_id)
            .bind(channel_id)
            .bind(user_id)
            .fetch_one(&mut *tx)
            .await?;
            let captured: String = line.try_get("captured")?;
            (
                commands::points(
                    undo,
                    &outcome.order_id,
                    channel_id,
                    user_id,
                    line.try_get("points")?,
                    &captured,
                    0,
                ),
                "points",
            )
        }
        StepKey::Quota { channel_id } => (
            commands::quota(undo, &outcome.order_id, channel_id, 0, 0),
            "quota",
        ),
    };
    appends.enqueue(commands::regenerated(refund, generation), now);
    appends.record(
        &outcome.order_id,
        "corrective_refund",
        &format!(
            "{} reported {} with the step {}: {} sent again",
            history_detail(outcome),
            outcome_token(outcome.state),
            step.state.as_str(),
            undo.as_str()
        ),
        now,
    );
    tracing::warn!(order_id = %outcome.order_id, step = kind, was = step.state.as_str(), "late deduct: corrective refund sent");
    Ok(kind)
}

/// Starts compensation: a refund for every deducted step that may hold points, a cancel for
/// every held one; steps never asked for are skipped. Returns whether any command was written.
pub(crate) async fn compensate(
    tx: &mut AnyConnection,
    appends: &mut Appends,
    order_id: &str,
    reason: &str,
    now: i64,
) -> Result<bool, sqlx::Error> {
    set_order(
        tx,
        appends,
        order_id,
        OrderState::Compensating,
        Some(reason),
        now,
    )
    .await?;
    let holding = "'PENDING', 'DEDUCTED', 'FROZEN'";
    let sent = move_lines(tx, appends, order_id, UNDO, holding, now).await?
        + move_quotas(tx, appends, order_id, UNDO, holding, now).await?;
    for table in ["order_lines", "order_quotas"] {
        sqlx::query(&format!(
            "UPDATE {table} SET state = 'SKIPPED' WHERE order_id = $1 AND state = 'WAITING'"
        ))
        .bind(order_id)
        .execute(&mut *tx)
        .await?;
    }
    appends.record(
        order_id,
        "compensating",
        &format!("{reason}; {sent} refund(s) or cancel(s) sent"),
        now,
    );
    Ok(sent > 0)
}

/// Every hold and deduct of a TCC order succeeded: the order confirms every held step.
pub(crate) async fn confirm(
    tx: &mut AnyConnection,
    appends: &mut Appends,
    order_id: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    set_order(tx, appends, order_id, OrderState::Confirming, None, now).await?;
    let sent = move_lines(tx, appends, order_id, CONFIRM, "'FROZEN'", now).await?
        + move_quotas(tx, appends, order_id, CONFIRM, "'FROZEN'", now).await?;
    appends.record(
        order_id,
        "confirming",
        &format!("every hold and deduct succeeded; {sent} confirm(s) sent"),
        now,
    );
    Ok(())
}

/// Completes a confirming order once no confirm is outstanding and no hold was lost (a held
/// step `CANCELLED` under a confirming order was gone when confirmed: the order waits for an
/// operator, whatever the other confirms do).
pub(crate) async fn complete_if_confirmed(
    tx: &mut AnyConnection,
    appends: &mut Appends,
    order_id: &str,
    now: i64,
) -> Result<OrderState, sqlx::Error> {
    let open: i64 = sqlx::query(
        "SELECT (SELECT COUNT(*) FROM order_lines WHERE order_id = $1 AND state IN ('CONFIRMING', 'CANCELLED')) + \
                (SELECT COUNT(*) FROM order_quotas WHERE order_id = $1 AND state IN ('CONFIRMING', 'CANCELLED'))",
    )
    .bind(order_id)
    .fetch_one(&mut *tx)
    .await?
    .try_get(0)?;
    if open > 0 {
        return Ok(OrderState::Confirming);
    }
    set_order(tx, appends, order_id, OrderState::Completed, None, now).await?;
    appends.record(order_id, "completed", "every hold confirmed", now);
    Ok(OrderState::Completed)
}

/// Moves a confirming order's steps as an operator settled them by hand: every hold spent
/// (`completed`), or everything the order took given back (held steps cancelled, deducted
/// ones refunded, `settled_by` naming the operator). Returns how many steps moved.
pub(crate) async fn settle_holds_by_hand(
    tx: &mut AnyConnection,
    order_id: &str,
    completed: bool,
    actor: &str,
) -> Result<u64, sqlx::Error> {
    let statements: &[&str] = if completed {
        &[
            "UPDATE order_lines SET state = 'CONFIRMED', settled_by = $2 WHERE order_id = $1 \
             AND protocol = 'TCC' AND state IN ('FROZEN', 'CONFIRMING', 'CANCELLED')",
            "UPDATE order_quotas SET state = 'CONFIRMED' WHERE order_id = $1 AND $2 <> '' \
             AND protocol = 'TCC' AND state IN ('FROZEN', 'CONFIRMING', 'CANCELLED')",
        ]
    } else {
        &[
            "UPDATE order_lines SET state = CASE WHEN protocol = 'TCC' THEN 'CANCELLED' ELSE 'REFUNDED' END, \
             settled_by = $2 WHERE order_id = $1 \
             AND state IN ('FROZEN', 'CONFIRMING', 'CONFIRMED', 'DEDUCTED')",
            "UPDATE order_quotas SET state = CASE WHEN protocol = 'TCC' THEN 'CANCELLED' ELSE 'REFUNDED' END \
             WHERE order_id = $1 AND $2 <> '' \
             AND state IN ('FROZEN', 'CONFIRMING', 'CONFIRMED', 'DEDUCTED')",
        ]
    };
    let mut moved = 0;
    for sql in statements {
        moved += sqlx::query(sql)
            .bind(order_id)
            .bind(actor)
            .execute(&mut *tx)
            .await?
            .rows_affected();
    }
    Ok(moved)
}

/// Cancels a compensating order once no refund is outstanding (a manual refund is one).
pub(crate) async fn settle_if_done(
    tx: &mut AnyConnection,
    appends: &mut Appends,
    order_id: &str,
    now: i64,
) -> Result<OrderState, sqlx::Error> {
    let refunding: i64 = sqlx::query(
        "SELECT (SELECT COUNT(*) FROM order_lines WHERE order_id = $1 AND state IN ('REFUNDING', 'CANCELLING', 'MANUAL_REFUND')) + \
                (SELECT COUNT(*) FROM order_quotas WHERE order_id = $1 AND state IN ('REFUNDING', 'CANCELLING'))",
    )
    .bind(order_id)
    .fetch_one(&mut *tx)
    .await?
    .try_get(0)?;
    if refunding > 0 {
        return Ok(OrderState::Compensating);
    }
    set_order(tx, appends, order_id, OrderState::Cancelled, None, now).await?;
    appends.record(
        order_id,
        "cancelled",
        "every deduction refunded, every hold released",
        now,
    );
    Ok(OrderState::Cancelled)
}
