//! Writes to an order and its steps, in the caller's transaction: the saga's (what its pure
//! state machine decided) and the operator's (compensate, settle).

use jifen_mesh::bus::subjects::Step;
use jifen_mesh::storage::Backend;
use sqlx::{AnyConnection, Row};

use crate::commands;
use crate::history::history_detail;
use crate::order::StepFacts;
use crate::order::{OrderState, StepState};
use crate::store::{Appends, order_state, step_state};
use jifen_mesh::bus::subjects::outcome_token;
use jifen_mesh::wire::{Outcome, StepKey};

/// Bumps the order's version (which takes its row lock) and returns its state.
pub(crate) async fn lock_order(
    tx: &mut AnyConnection,
    order_id: &str,
    now: i64,
) -> Result<Option<OrderState>, sqlx::Error> {
    sqlx::query(
        "UPDATE orders SET version = version + 1, updated_at_ms = $2 WHERE order_id = $1 RETURNING state",
    )
    .bind(order_id)
    .bind(now)
    .fetch_optional(&mut *tx)
    .await?
    .map(|row| order_state(row.try_get("state")?))
    .transpose()
}

/// Reads the order's state and all its steps of the event's kind (lines, or quotas), in one
/// query holding their locks until the transaction ends, so concurrent events for one order
/// queue on it: on SQLite the transaction holds the database's write lock from its start
/// (`BEGIN IMMEDIATE`); on PostgreSQL `FOR UPDATE` locks every row read, and a read that
/// waited for a lock sees the latest version of each locked row — which is why the steps are
/// read as rows, not counted in a subquery (that would see them as before the commit it
/// waited for). Nothing is written: an event that turns out to change nothing leaves no trace,
/// and a batch needs no savepoint to undo it; [`Appends::touch`] bumps the version once it
/// does change. `None` when the order is unknown (or has no such steps).
pub(crate) async fn claim_step(
    tx: &mut AnyConnection,
    backend: Backend,
    outcome: &Outcome,
) -> Result<Option<Claimed>, sqlx::Error> {
    let lock = match backend {
        Backend::Postgres => " FOR UPDATE",
        Backend::Sqlite => "",
    };
    let (table, user_column, wanted) = match &outcome.step {
        StepKey::Line {
            channel_id,
            user_id,
        } => ("order_lines", "s.user_id", (channel_id, user_id.as_str())),
        StepKey::Quota { channel_id } => ("order_quotas", "''", (channel_id, "")),
    };
    let rows = sqlx::query(&format!(
        "SELECT o.state AS order_state, s.channel_id, {user_column} AS user_id, s.state, \
         s.deduct_seen, s.refunded_points, s.awaiting_deduct, s.points \
         FROM orders o JOIN {table} s ON s.order_id = o.order_id \
         WHERE o.order_id = $1{lock}"
    ))
    .bind(&outcome.order_id)
    .fetch_all(&mut *tx)
    .await?;
    let Some(first) = rows.first() else {
        return Ok(None);
    };
    let order = order_state(first.try_get("order_state")?)?;
    let (mut step, mut undeducted) = (None, 0_i64);
    for row in &rows {
        let state = step_state(row.try_get("state")?)?;
        if state != StepState::Deducted {
            undeducted += 1;
        }
        let key: (String, String) = (row.try_get("channel_id")?, row.try_get("user_id")?);
        if (&key.0, key.1.as_str()) == wanted {
            let facts = StepFacts {
                state,
                deduct_seen: row.try_get::<i64, _>("deduct_seen")? != 0,
                refunded_points: row.try_get("refunded_points")?,
                awaiting_deduct: row.try_get::<i64, _>("awaiting_deduct")? != 0,
            };
            step = Some((facts, row.try_get("points")?));
        }
    }
    Ok(Some(Claimed {
        order,
        step,
        undeducted,
    }))
}

/// What [`claim_step`] read under the order's lock.
pub(crate) struct Claimed {
    pub(crate) order: OrderState,
    /// The step and its points; `None` when the order has no such step.
    pub(crate) step: Option<(StepFacts, i64)>,
    /// How many steps of the event's kind (lines, or quotas) are not deducted: the event that
    /// deducts one of them deducts the last when this is 1 (the lock keeps it true meanwhile).
    pub(crate) undeducted: i64,
}

/// Keeps what a line's deduct answer gave (its own transaction id) for the line's refund.
pub(crate) async fn keep_captured(
    tx: &mut AnyConnection,
    outcome: &Outcome,
) -> Result<(), sqlx::Error> {
    let StepKey::Line {
        channel_id,
        user_id,
    } = &outcome.step
    else {
        return Ok(());
    };
    let captured = serde_json::to_string(&outcome.captured).unwrap_or_default();
    sqlx::query(
        "UPDATE order_lines SET captured = $4 WHERE order_id = $1 AND channel_id = $2 AND user_id = $3",
    )
    .bind(&outcome.order_id)
    .bind(channel_id)
    .bind(user_id)
    .bind(captured)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Keeps the partner exchanges behind a line's outcome, as evidence (a repeat adds nothing).
pub(crate) async fn keep_exchanges(
    tx: &mut AnyConnection,
    outcome: &Outcome,
) -> Result<(), sqlx::Error> {
    let StepKey::Line {
        channel_id,
        user_id,
    } = &outcome.step
    else {
        return Ok(());
    };
    for exchange in &outcome.exchanges {
        sqlx::query(
            "INSERT INTO partner_exchanges \
             (order_id, channel_id, user_id, at_ms, call, status, request, answer) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
        )
        .bind(&outcome.order_id)
        .bind(channel_id)
        .bind(user_id)
        .bind(exchange.at_unix_ms)
        .bind(&exchange.call)
        .bind(i64::from(exchange.status))
        .bind(&exchange.request)
        .bind(&exchange.answer)
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

pub(crate) async fn set_step(
    tx: &mut AnyConnection,
    outcome: &Outcome,
    step: StepFacts,
) -> Result<(), sqlx::Error> {
    let (state, deduct_seen) = (step.state, i64::from(step.deduct_seen));
    match &outcome.step {
        StepKey::Line {
            channel_id,
            user_id,
        } => {
            sqlx::query(
                "UPDATE order_lines SET state = $4, deduct_seen = $5, refunded_points = $6, \
                 awaiting_deduct = $7 WHERE order_id = $1 AND channel_id = $2 AND user_id = $3",
            )
            .bind(&outcome.order_id)
            .bind(channel_id)
            .bind(user_id)
            .bind(state.as_str())
            .bind(deduct_seen)
            .bind(step.refunded_points)
            .bind(i64::from(step.awaiting_deduct))
            .execute(&mut *tx)
            .await?;
        }
        StepKey::Quota { channel_id } => {
            sqlx::query(
                "UPDATE order_quotas SET state = $3, deduct_seen = $4, refunded_points = $5, \
                 awaiting_deduct = $6 WHERE order_id = $1 AND channel_id = $2",
            )
            .bind(&outcome.order_id)
            .bind(channel_id)
            .bind(state.as_str())
            .bind(deduct_seen)
            .bind(step.refunded_points)
            .bind(i64::from(step.awaiting_deduct))
            .execute(&mut *tx)
            .await?;
        }
    }
    Ok(())
}

pub(crate) async fn set_order(
    tx: &mut AnyConnection,
    order_id: &str,
    state: OrderState,
    reason: Option<&str>,
    now: i64,
) -> Result<(), sqlx::Error> {
    let row = sqlx::query(
        "UPDATE orders SET state = $2, reason = COALESCE($3, reason), updated_at_ms = $4 \
         WHERE order_id = $1 RETURNING created_at_ms, needs_attention",
    )
    .bind(order_id)
    .bind(state.as_str())
    .bind(reason)
    .bind(now)
    .fetch_one(&mut *tx)
    .await?;
    let created_at_ms: i64 = row.try_get("created_at_ms")?;
    if state.is_terminal() {
        let seconds = (now - created_at_ms).max(0) as f64 / 1000.0;
        jifen_mesh::metrics::ORDER_SETTLE_LATENCY
            .with_label_values(&[state.as_str()])
            .observe(seconds);
        if row.try_get::<i64, _>("needs_attention")? != 0 {
            clear_settled_flag(tx, order_id, state, now).await?;
        }
    }
    Ok(())
}

/// A flagged order that settled by itself (flagged "not settled in time", then completed)
/// needs nobody any more: its flag clears, with a history line, unless something of it is
/// still open for an operator (a dead letter, a manual refund).
async fn clear_settled_flag(
    tx: &mut AnyConnection,
    order_id: &str,
    state: OrderState,
    now: i64,
) -> Result<(), sqlx::Error> {
    let cleared = sqlx::query(
        "UPDATE orders SET needs_attention = 0 WHERE order_id = $1 AND needs_attention = 1 \
         AND NOT EXISTS (SELECT 1 FROM dead_letters WHERE order_id = $1 AND state = 'OPEN') \
         AND NOT EXISTS (SELECT 1 FROM order_lines WHERE order_id = $1 AND state = 'MANUAL_REFUND') \
         RETURNING order_id",
    )
    .bind(order_id)
    .fetch_optional(&mut *tx)
    .await?;
    if cleared.is_some() {
        crate::store::record(
            tx,
            order_id,
            "attention_cleared",
            &format!(
                "the order is {} by itself: nothing needs an operator, its flag is cleared",
                state.as_str()
            ),
            "",
            now,
        )
        .await?;
    }
    Ok(())
}

/// Every line is deducted: ask the portal for each channel's quota.
pub(crate) async fn request_quotas(
    tx: &mut AnyConnection,
    appends: &mut Appends,
    order_id: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    let quotas = sqlx::query(
        "UPDATE order_quotas SET state = 'PENDING' WHERE order_id = $1 AND state = 'WAITING' \
         RETURNING channel_id, points",
    )
    .bind(order_id)
    .fetch_all(&mut *tx)
    .await?;
    for row in &quotas {
        let channel_id: String = row.try_get("channel_id")?;
        let points: i64 = row.try_get("points")?;
        appends.enqueue(
            commands::quota(Step::Deduct, order_id, &channel_id, points),
            now,
        );
    }
    appends.record(
        order_id,
        "quota_requested",
        &format!("every line deducted; {} quota deduct(s) sent", quotas.len()),
        now,
    );
    Ok(())
}

/// Refunds a step whose deduct arrived after the step stopped holding points, under a new
/// generation of ids (the first refund's id may still be in the server's duplicate window).
/// The step waits in `REFUNDING`; a compensating order waits for it, a cancelled one stays
/// cancelled (it is what the customer was told) and its step settles when the refund does.
pub(crate) async fn correct(
    tx: &mut AnyConnection,
    appends: &mut Appends,
    outcome: &Outcome,
    step: StepState,
    now: i64,
) -> Result<&'static str, sqlx::Error> {
    let generation = next_generation(tx, &outcome.order_id).await?;
    set_step(tx, outcome, StepFacts::new(StepState::Refunding)).await?;
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
                    Step::Refund,
                    &outcome.order_id,
                    channel_id,
                    user_id,
                    line.try_get("points")?,
                    &captured,
                ),
                "points",
            )
        }
        StepKey::Quota { channel_id } => (
            commands::quota(Step::Refund, &outcome.order_id, channel_id, 0),
            "quota",
        ),
    };
    appends.enqueue(commands::regenerated(refund, generation), now);
    appends.record(
        &outcome.order_id,
        "corrective_refund",
        &format!(
            "{} reported {} with the step {}: refund sent again",
            history_detail(outcome),
            outcome_token(outcome.state),
            step.as_str()
        ),
        now,
    );
    tracing::warn!(order_id = %outcome.order_id, step = kind, was = step.as_str(), "late deduct: corrective refund sent");
    Ok(kind)
}

/// Starts compensation: a refund for every step that may hold points; steps never asked for
/// are skipped. Returns whether any command was written.
pub(crate) async fn compensate(
    tx: &mut AnyConnection,
    appends: &mut Appends,
    order_id: &str,
    reason: &str,
    now: i64,
) -> Result<bool, sqlx::Error> {
    set_order(tx, order_id, OrderState::Compensating, Some(reason), now).await?;
    let lines = sqlx::query(
        "UPDATE order_lines SET state = 'REFUNDING' WHERE order_id = $1 AND state IN ('PENDING', 'DEDUCTED') \
         RETURNING channel_id, user_id, points, captured",
    )
    .bind(order_id)
    .fetch_all(&mut *tx)
    .await?;
    for row in &lines {
        let channel_id: String = row.try_get("channel_id")?;
        let user_id: String = row.try_get("user_id")?;
        let captured: String = row.try_get("captured")?;
        appends.enqueue(
            commands::points(
                Step::Refund,
                order_id,
                &channel_id,
                &user_id,
                row.try_get("points")?,
                &captured,
            ),
            now,
        );
    }
    let quotas = sqlx::query(
        "UPDATE order_quotas SET state = 'REFUNDING' WHERE order_id = $1 AND state IN ('PENDING', 'DEDUCTED') \
         RETURNING channel_id",
    )
    .bind(order_id)
    .fetch_all(&mut *tx)
    .await?;
    for row in &quotas {
        let channel_id: String = row.try_get("channel_id")?;
        appends.enqueue(commands::quota(Step::Refund, order_id, &channel_id, 0), now);
    }
    sqlx::query(
        "UPDATE order_quotas SET state = 'SKIPPED' WHERE order_id = $1 AND state = 'WAITING'",
    )
    .bind(order_id)
    .execute(&mut *tx)
    .await?;
    appends.record(
        order_id,
        "compensating",
        &format!("{reason}; {} refund(s) sent", lines.len() + quotas.len()),
        now,
    );
    Ok(!lines.is_empty() || !quotas.is_empty())
}

/// Flags the order for an operator: a line's channel cannot refund it (DESIGN §9).
pub(crate) async fn flag_manual_refund(
    tx: &mut AnyConnection,
    outcome: &Outcome,
    now: i64,
) -> Result<(), sqlx::Error> {
    let reason = format!(
        "manual refund needed: {} has no refund call; refund it there, then record it \
         (AdminService.RecordManualRefund)",
        history_detail(outcome)
    );
    sqlx::query(
        "UPDATE orders SET needs_attention = 1, reason = $2, updated_at_ms = $3 WHERE order_id = $1",
    )
    .bind(&outcome.order_id)
    .bind(&reason)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    tracing::warn!(order_id = %outcome.order_id, "manual refund needed");
    Ok(())
}

/// Cancels a compensating order once no refund is outstanding (a manual refund is one).
pub(crate) async fn settle_if_done(
    tx: &mut AnyConnection,
    appends: &mut Appends,
    order_id: &str,
    now: i64,
) -> Result<OrderState, sqlx::Error> {
    let refunding: i64 = sqlx::query(
        "SELECT (SELECT COUNT(*) FROM order_lines WHERE order_id = $1 AND state IN ('REFUNDING', 'MANUAL_REFUND')) + \
                (SELECT COUNT(*) FROM order_quotas WHERE order_id = $1 AND state = 'REFUNDING')",
    )
    .bind(order_id)
    .fetch_one(&mut *tx)
    .await?
    .try_get(0)?;
    if refunding > 0 {
        return Ok(OrderState::Compensating);
    }
    set_order(tx, order_id, OrderState::Cancelled, None, now).await?;
    appends.record(order_id, "cancelled", "every deduction refunded", now);
    Ok(OrderState::Cancelled)
}

/// Moves the order to its next generation of command ids and returns it: a command sent again
/// (an operator's re-emission, a corrective refund) must get past the server's duplicate window.
pub async fn next_generation(tx: &mut AnyConnection, order_id: &str) -> Result<i64, sqlx::Error> {
    sqlx::query(
        "UPDATE orders SET generation = generation + 1 WHERE order_id = $1 RETURNING generation",
    )
    .bind(order_id)
    .fetch_one(&mut *tx)
    .await?
    .try_get("generation")
}

/// A line's state and points, read in the caller's transaction (after [`lock_order`]).
pub(crate) async fn line(
    tx: &mut AnyConnection,
    order_id: &str,
    channel_id: &str,
    user_id: &str,
) -> Result<Option<(StepState, i64)>, sqlx::Error> {
    sqlx::query(
        "SELECT state, points FROM order_lines WHERE order_id = $1 AND channel_id = $2 AND user_id = $3",
    )
    .bind(order_id)
    .bind(channel_id)
    .bind(user_id)
    .fetch_optional(&mut *tx)
    .await?
    .map(|row| Ok((step_state(row.try_get("state")?)?, row.try_get("points")?)))
    .transpose()
}
