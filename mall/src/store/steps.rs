//! Writes to an order and its steps, in the caller's transaction: the saga's (what its pure
//! state machine decided) and the operator's (compensate, settle).

use jifen_mesh::bus::subjects::Step;
use jifen_mesh::storage::Backend;
use sqlx::{AnyConnection, Row};

use crate::commands;
use crate::history::history_detail;
use crate::order::{OrderFacts, OrderState, Protocol, StepFacts, StepState};
use crate::store::{Appends, order_state, protocol, step_state};
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
        let channel_id: String = row.try_get("channel_id")?;
        let user_id: String = row.try_get("user_id")?;
        let captured: String = row.try_get("captured")?;
        appends.enqueue(
            commands::points(
                (moving.command)(protocol(row.try_get("protocol")?)?),
                order_id,
                &channel_id,
                &user_id,
                row.try_get("points")?,
                &captured,
                row.try_get("hold_expires_at_ms")?,
            ),
            now,
        );
    }
    Ok(rows.len())
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
        let channel_id: String = row.try_get("channel_id")?;
        appends.enqueue(
            commands::quota(
                (moving.command)(protocol(row.try_get("protocol")?)?),
                order_id,
                &channel_id,
                row.try_get("points")?,
                row.try_get("hold_expires_at_ms")?,
            ),
            now,
        );
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
    set_order(tx, order_id, OrderState::Compensating, Some(reason), now).await?;
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
    set_order(tx, order_id, OrderState::Confirming, None, now).await?;
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
    set_order(tx, order_id, OrderState::Completed, None, now).await?;
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
    set_order(tx, order_id, OrderState::Cancelled, None, now).await?;
    appends.record(
        order_id,
        "cancelled",
        "every deduction refunded, every hold released",
        now,
    );
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
