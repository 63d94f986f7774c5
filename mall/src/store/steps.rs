//! Reads and writes of an order and its steps, in the caller's transaction: the claim under
//! the order's lock, a step's new facts, the order's state, its flags; what moves it from phase
//! to phase is in [`super::phases`].

use jifen_mesh::storage::Backend;
use sqlx::{AnyConnection, Row};

use crate::history::history_detail;
use crate::order::{OrderFacts, OrderState, Protocol, StepFacts, StepState};
use crate::store::{order_state, protocol, step_state};
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
        "SELECT o.state AS order_state, o.protocol AS order_protocol, s.channel_id, \
         {user_column} AS user_id, s.state, s.protocol, \
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
    let state = order_state(first.try_get("order_state")?)?;
    let order_protocol = protocol(first.try_get("order_protocol")?)?;
    let (mut step, mut unready, mut waiting) = (None, 0_i64, 0_i64);
    for row in &rows {
        let state = step_state(row.try_get("state")?)?;
        if !state.is_ready() {
            unready += 1;
        }
        if state == StepState::Waiting {
            waiting += 1;
        }
        let key: (String, String) = (row.try_get("channel_id")?, row.try_get("user_id")?);
        if (&key.0, key.1.as_str()) == wanted {
            let facts = StepFacts {
                state,
                protocol: protocol(row.try_get("protocol")?)?,
                deduct_seen: row.try_get::<i64, _>("deduct_seen")? != 0,
                refunded_points: row.try_get("refunded_points")?,
                awaiting_deduct: row.try_get::<i64, _>("awaiting_deduct")? != 0,
            };
            step = Some((facts, row.try_get("points")?));
        }
    }
    if order_protocol == Protocol::Tcc {
        // A TCC order's lines and quotas are taken together: its phase needs both. A
        // statement of its own sees what the transaction that held the order's lock wrote.
        let other = match outcome.step {
            StepKey::Line { .. } => "order_quotas",
            StepKey::Quota { .. } => "order_lines",
        };
        let others = sqlx::query(&format!(
            "SELECT COUNT(*) AS unready, \
             CAST(COALESCE(SUM(CASE WHEN state = 'WAITING' THEN 1 ELSE 0 END), 0) AS BIGINT) AS waiting \
             FROM {other} WHERE order_id = $1 AND state NOT IN ('DEDUCTED', 'FROZEN')"
        ))
        .bind(&outcome.order_id)
        .fetch_one(&mut *tx)
        .await?;
        unready += others.try_get::<i64, _>("unready")?;
        waiting += others.try_get::<i64, _>("waiting")?;
    }
    Ok(Some(Claimed {
        order: OrderFacts {
            state,
            protocol: order_protocol,
            unready,
            waiting,
        },
        step,
    }))
}

/// What [`claim_step`] read under the order's lock.
pub(crate) struct Claimed {
    /// The order, with how many of its steps are not taken yet (the lock keeps it true while
    /// the event applies).
    pub(crate) order: OrderFacts,
    /// The step and its points; `None` when the order has no such step.
    pub(crate) step: Option<(StepFacts, i64)>,
}

/// Keeps when a frozen step's hold lapses, for its confirm's deadline.
pub(crate) async fn keep_hold_expiry(
    tx: &mut AnyConnection,
    outcome: &Outcome,
) -> Result<(), sqlx::Error> {
    let (sql, user_id, channel_id) = match &outcome.step {
        StepKey::Line {
            channel_id,
            user_id,
        } => (
            "UPDATE order_lines SET hold_expires_at_ms = $4 \
             WHERE order_id = $1 AND channel_id = $2 AND user_id = $3",
            user_id.as_str(),
            channel_id,
        ),
        StepKey::Quota { channel_id } => (
            "UPDATE order_quotas SET hold_expires_at_ms = $4 \
             WHERE order_id = $1 AND channel_id = $2 AND $3 = ''",
            "",
            channel_id,
        ),
    };
    sqlx::query(sql)
        .bind(&outcome.order_id)
        .bind(channel_id)
        .bind(user_id)
        .bind(outcome.hold_expires_at_ms)
        .execute(&mut *tx)
        .await?;
    Ok(())
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
    appends: &mut super::Appends,
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
        appends.settled(state.as_str(), seconds);
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

/// Flags a confirming order whose hold was gone when confirmed: an operator's (DESIGN §12).
pub(crate) async fn flag_hold_lost(
    tx: &mut AnyConnection,
    order_id: &str,
    reason: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE orders SET needs_attention = 1, reason = $2, updated_at_ms = $3 WHERE order_id = $1",
    )
    .bind(order_id)
    .bind(format!(
        "{reason}; the other holds are confirmed: take these points by hand or give the \
         others back, then settle the order (docs/operations.md, a hold lapsed)"
    ))
    .bind(now)
    .execute(&mut *tx)
    .await?;
    tracing::warn!(order_id, "a hold was gone when confirmed");
    Ok(())
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
