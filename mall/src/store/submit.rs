//! `SubmitOrder`'s writes: an order, its steps and its deduct commands, group-committed with
//! the submits that arrive meanwhile.

use jifen_mesh::bus::subjects::Step;
use jifen_mesh::group_commit::Write;
use sqlx::{AnyConnection, Row};

use super::Inserted;
use super::appends::{Appends, rows_of};
use crate::commands;
use crate::order::{HistoryEntry, Line, NewOrder, Order, OrderState, Protocol, Quota, StepState};

/// A submit queued for group commit.
#[derive(Debug)]
pub(super) struct Submit {
    pub(super) order: NewOrder,
    pub(super) traceparent: Option<String>,
}

/// The submits' writer.
#[derive(Debug)]
pub(super) struct Submits;

impl Write for Submits {
    type Op = Submit;
    type Answer = Inserted;
    type Staged = Appends;
    type Committed = super::Committed;

    async fn apply(
        &self,
        tx: &mut AnyConnection,
        appends: &mut Appends,
        submit: &Submit,
        now: i64,
    ) -> Result<Inserted, sqlx::Error> {
        insert_in(
            tx,
            appends,
            &submit.order,
            submit.traceparent.as_deref(),
            now,
        )
        .await
    }

    async fn finish(
        &self,
        tx: &mut AnyConnection,
        appends: Appends,
    ) -> Result<super::Committed, sqlx::Error> {
        appends.write(tx).await
    }

    fn committed(&self, committed: super::Committed) {
        committed.observe();
    }
}

/// Stores a new order, its steps and its deduct commands in the caller's transaction.
async fn insert_in(
    tx: &mut AnyConnection,
    appends: &mut Appends,
    order: &NewOrder,
    traceparent: Option<&str>,
    now: i64,
) -> Result<Inserted, sqlx::Error> {
    let order_id = order.order_id.as_str();
    let inserted = sqlx::query(
        "INSERT INTO orders (order_id, customer_id, state, needs_attention, reason, fingerprint, \
             version, created_at_ms, updated_at_ms, trace_id, protocol) \
             VALUES ($1, $2, 'PENDING', 0, '', $3, 0, $4, $4, $5, $6) \
             ON CONFLICT (order_id) DO NOTHING",
    )
    .bind(order_id)
    .bind(order.customer_id.as_str())
    .bind(order.fingerprint())
    .bind(now)
    .bind(trace_id(traceparent))
    .bind(order.protocol().as_str())
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if inserted == 0 {
        let fingerprint: String = sqlx::query("SELECT fingerprint FROM orders WHERE order_id = $1")
            .bind(order_id)
            .fetch_one(&mut *tx)
            .await?
            .try_get("fingerprint")?;
        return Ok(Inserted::Existing(fingerprint));
    }
    // One statement for the lines, one for the quotas (an order's lines are bounded by
    // `NewOrder::parse`, far below SQLite's bound-parameter limit).
    let protocol = order.protocol();
    let sql = format!(
        "INSERT INTO order_lines (order_id, position, channel_id, user_id, points, state, protocol) VALUES {}",
        rows_of(order.lines.len(), "($1, ${}, ${}, ${}, ${}, ${}, ${})", 2)
    );
    let mut lines = sqlx::query(&sql).bind(order_id);
    for (position, line) in order.lines.iter().enumerate() {
        let line_protocol = order.protocol_of(line);
        let state = line_state(protocol, line_protocol);
        lines = lines
            .bind(i64::try_from(position).unwrap_or(i64::MAX))
            .bind(line.channel_id.as_str())
            .bind(line.user_id.as_str())
            .bind(line.points.get())
            .bind(state.as_str())
            .bind(line_protocol.as_str());
        if state == StepState::Waiting {
            continue;
        }
        let mut command = commands::points(
            super::phases::take(line_protocol),
            order_id,
            line.channel_id.as_str(),
            line.user_id.as_str(),
            line.points.get(),
            "",
            0,
        );
        command.traceparent = traceparent.map(str::to_owned);
        appends.enqueue(command, now);
    }
    lines.execute(&mut *tx).await?;
    // A saga order asks for its quotas once every line is deducted; a TCC order holds them
    // with its lines (DESIGN §12).
    let quota_state = match protocol {
        Protocol::Saga => StepState::Waiting,
        Protocol::Tcc => StepState::Pending,
    };
    let quotas = order.quotas();
    let sql = format!(
        "INSERT INTO order_quotas (order_id, channel_id, points, state, protocol) VALUES {}",
        rows_of(quotas.len(), "($1, ${}, ${}, ${}, ${})", 2)
    );
    let mut query = sqlx::query(&sql).bind(order_id);
    for (channel_id, points) in &quotas {
        query = query
            .bind(channel_id.as_str())
            .bind(*points)
            .bind(quota_state.as_str())
            .bind(protocol.as_str());
        if protocol == Protocol::Tcc {
            let mut command =
                commands::quota(Step::Freeze, order_id, channel_id.as_str(), *points, 0);
            command.traceparent = traceparent.map(str::to_owned);
            appends.enqueue(command, now);
        }
    }
    query.execute(&mut *tx).await?;
    let detail = match protocol {
        Protocol::Saga => format!(
            "{} line(s) over {} channel(s); points deducts sent",
            order.lines.len(),
            quotas.len()
        ),
        Protocol::Tcc => format!(
            "{} line(s) over {} channel(s); holds sent with the quota holds (lines that cannot \
             be held are deducted once every hold stands)",
            order.lines.len(),
            quotas.len()
        ),
    };
    appends.record(order_id, "submitted", &detail, now);
    Ok(Inserted::New(Box::new(Order {
        order_id: order_id.to_owned(),
        customer_id: order.customer_id.to_string(),
        state: OrderState::Pending,
        needs_attention: false,
        reason: String::new(),
        version: 0,
        created_at_ms: now,
        updated_at_ms: now,
        trace_id: trace_id(traceparent).to_owned(),
        lines: order
            .lines
            .iter()
            .map(|line| Line {
                channel_id: line.channel_id.to_string(),
                user_id: line.user_id.to_string(),
                points: line.points.get(),
                state: line_state(protocol, order.protocol_of(line)),
                captured: Default::default(),
                settled_by: String::new(),
                protocol: order.protocol_of(line),
            })
            .collect(),
        quotas: order
            .quotas()
            .into_iter()
            .map(|(channel_id, points)| Quota {
                channel_id: channel_id.to_string(),
                points,
                state: quota_state,
                protocol,
            })
            .collect(),
        history: vec![HistoryEntry {
            at_ms: now,
            kind: "submitted".to_owned(),
            detail,
            actor: String::new(),
        }],
    })))
}

/// Where a new line starts: asked for at once, but for a line of a TCC order that cannot be
/// held — deducted only once every hold stands, so that a refused hold leaves nothing to
/// refund (DESIGN §12).
fn line_state(order: Protocol, line: Protocol) -> StepState {
    match (order, line) {
        (Protocol::Tcc, Protocol::Saga) => StepState::Waiting,
        _ => StepState::Pending,
    }
}

/// The trace id of a W3C `traceparent` (`00-<trace id>-<span id>-<flags>`).
fn trace_id(traceparent: Option<&str>) -> &str {
    traceparent
        .and_then(|t| t.split('-').nth(1))
        .unwrap_or_default()
}
