//! The mall's database: orders, their steps and history, and the outbox. Writers take a
//! transaction so that a state change and the commands it causes commit together.

use jifen_mesh::bus::publish::Outgoing;
use jifen_mesh::bus::subjects::Step;
use jifen_mesh::group_commit::{Write, Writer};
use jifen_mesh::storage::Database;
use jifen_mesh::time::now_unix_ms;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use crate::commands;
use crate::order::{HistoryEntry, Line, NewOrder, Order, OrderState, Quota, StepState};

fn decode_error(what: &str, raw: &str) -> sqlx::Error {
    sqlx::Error::Decode(format!("unknown {what} {raw:?}").into())
}

pub fn step_state(raw: &str) -> Result<StepState, sqlx::Error> {
    StepState::parse(raw).ok_or_else(|| decode_error("step state", raw))
}

pub fn order_state(raw: &str) -> Result<OrderState, sqlx::Error> {
    OrderState::parse(raw).ok_or_else(|| decode_error("order state", raw))
}

/// Which orders a listing shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selection {
    All,
    In(OrderState),
    /// Pending or compensating.
    Unsettled,
}

impl Selection {
    fn token(self) -> &'static str {
        match self {
            Self::All => "ALL",
            Self::In(state) => state.as_str(),
            Self::Unsettled => "UNSETTLED",
        }
    }
}

/// What storing a new order came to.
#[derive(Debug, PartialEq, Eq)]
pub enum Inserted {
    /// Stored: the order as it was committed (its answer needs no read).
    New(Box<Order>),
    /// An order with this id exists; its fingerprint.
    Existing(String),
}

#[derive(Debug, Clone)]
pub struct OrderStore {
    db: Database,
    submits: Writer<Submits>,
}

const ORDER_COLUMNS: &str =
    "order_id, customer_id, state, needs_attention, reason, version, created_at_ms, updated_at_ms";

impl OrderStore {
    /// Needs a Tokio runtime: it starts the submits' writer task.
    pub fn new(db: Database) -> Self {
        Self {
            submits: Writer::spawn(Submits, db.clone()),
            db,
        }
    }

    pub fn database(&self) -> &Database {
        &self.db
    }

    pub async fn fingerprint(&self, order_id: &str) -> Result<Option<String>, sqlx::Error> {
        sqlx::query("SELECT fingerprint FROM orders WHERE order_id = $1")
            .bind(order_id)
            .fetch_optional(self.db.pool())
            .await?
            .map(|row| row.try_get("fingerprint"))
            .transpose()
    }

    /// Stores a new order, its steps and its deduct commands in one transaction — shared with
    /// the submits that arrive meanwhile (group commit); answers after the commit.
    pub async fn insert(&self, order: &NewOrder) -> Result<Inserted, sqlx::Error> {
        self.submits
            .call(Submit {
                order: order.clone(),
                // The writer task runs outside the caller's span: the trace goes with the order.
                traceparent: jifen_mesh::trace::current_traceparent(),
            })
            .await
    }

    /// The order's version (bumped by every change), or `None` when it does not exist.
    pub async fn version(&self, order_id: &str) -> Result<Option<i64>, sqlx::Error> {
        sqlx::query("SELECT version FROM orders WHERE order_id = $1")
            .bind(order_id)
            .fetch_optional(self.db.pool())
            .await?
            .map(|row| row.try_get("version"))
            .transpose()
    }

    pub async fn find(&self, order_id: &str) -> Result<Option<Order>, sqlx::Error> {
        let row = sqlx::query(&format!(
            "SELECT {ORDER_COLUMNS} FROM orders WHERE order_id = $1"
        ))
        .bind(order_id)
        .fetch_optional(self.db.pool())
        .await?;
        match row {
            Some(row) => Ok(Some(self.complete(&row).await?)),
            None => Ok(None),
        }
    }

    /// Orders newest first, created before `created_before_ms`, after the
    /// `(created_at_ms, order_id)` position `after`.
    pub async fn list(
        &self,
        selection: Selection,
        created_before_ms: Option<i64>,
        after: Option<(i64, String)>,
        limit: i64,
    ) -> Result<Vec<Order>, sqlx::Error> {
        let (after_ms, after_id) = after.unwrap_or((i64::MAX, String::new()));
        let rows = sqlx::query(&format!(
            "SELECT {ORDER_COLUMNS} FROM orders \
             WHERE ($1 = 'ALL' OR state = $1 OR ($1 = 'UNSETTLED' AND state IN ('PENDING', 'COMPENSATING'))) \
             AND created_at_ms < $2 \
             AND (created_at_ms < $3 OR (created_at_ms = $3 AND ($4 = '' OR order_id < $4))) \
             ORDER BY created_at_ms DESC, order_id DESC LIMIT $5"
        ))
        .bind(selection.token())
        .bind(created_before_ms.unwrap_or(i64::MAX))
        .bind(after_ms)
        .bind(after_id)
        .bind(limit)
        .fetch_all(self.db.pool())
        .await?;
        let mut orders = Vec::with_capacity(rows.len());
        for row in &rows {
            orders.push(self.complete(row).await?);
        }
        Ok(orders)
    }

    /// Samples the mall's gauges: orders by state, orders needing attention, open dead
    /// letters, outbox backlog.
    pub async fn sample_metrics(&self) -> Result<(), sqlx::Error> {
        use jifen_mesh::metrics;
        let pool = self.db.pool();
        for state in ["PENDING", "COMPENSATING", "COMPLETED", "CANCELLED"] {
            let count: i64 = sqlx::query("SELECT COUNT(*) FROM orders WHERE state = $1")
                .bind(state)
                .fetch_one(pool)
                .await?
                .try_get(0)?;
            metrics::ORDERS.with_label_values(&[state]).set(count);
        }
        let scalar = |sql: &'static str| async move {
            sqlx::query(sql).fetch_one(pool).await?.try_get::<i64, _>(0)
        };
        metrics::ORDERS_NEEDING_ATTENTION
            .set(scalar("SELECT COUNT(*) FROM orders WHERE needs_attention = 1").await?);
        metrics::OPEN_DEAD_LETTERS
            .set(scalar("SELECT COUNT(*) FROM dead_letters WHERE state = 'OPEN'").await?);
        metrics::OUTBOX_BACKLOG.set(scalar("SELECT COUNT(*) FROM outbox").await?);
        Ok(())
    }

    /// Flags orders still not settled `deadline_ms` after they were created; returns how many.
    pub async fn flag_overdue(&self, deadline_ms: i64) -> Result<u64, sqlx::Error> {
        let now = now_unix_ms();
        let cutoff = now.saturating_sub(deadline_ms);
        let mut tx = self.db.begin().await?;
        let flagged = sqlx::query(
            "UPDATE orders SET needs_attention = 1, version = version + 1, updated_at_ms = $2, \
             reason = CASE WHEN reason = '' THEN 'not settled in time' ELSE reason END \
             WHERE state IN ('PENDING', 'COMPENSATING') AND needs_attention = 0 AND created_at_ms < $1 \
             RETURNING order_id",
        )
        .bind(cutoff)
        .bind(now)
        .fetch_all(&mut *tx)
        .await?;
        for row in &flagged {
            let order_id: String = row.try_get("order_id")?;
            record(
                &mut tx,
                &order_id,
                "overdue",
                "not settled in time; flagged for an operator",
                now,
            )
            .await?;
        }
        tx.commit().await?;
        Ok(flagged.len() as u64)
    }

    async fn complete(&self, row: &AnyRow) -> Result<Order, sqlx::Error> {
        let order_id: String = row.try_get("order_id")?;
        // One query for the order's lines, quotas and history: every statement on SQLite is a
        // hand-off to the connection's thread and back, and a watched order is read after each
        // of its changes. Each part ranks by its own key (`seq`, then `a`).
        let rows = sqlx::query(
            "SELECT 'L' AS part, position AS seq, channel_id AS a, user_id AS b, points AS n, state AS s \
               FROM order_lines WHERE order_id = $1 \
             UNION ALL SELECT 'Q', 0, channel_id, '', points, state \
               FROM order_quotas WHERE order_id = $1 \
             UNION ALL SELECT 'R', id, kind, detail, at_ms, '' \
               FROM order_events WHERE order_id = $1 \
             ORDER BY part, seq, a",
        )
        .bind(&order_id)
        .fetch_all(self.db.pool())
        .await?;
        let (mut lines, mut quotas, mut history) = (Vec::new(), Vec::new(), Vec::new());
        for r in &rows {
            match r.try_get::<String, _>("part")?.as_str() {
                "L" => lines.push(Line {
                    channel_id: r.try_get("a")?,
                    user_id: r.try_get("b")?,
                    points: r.try_get("n")?,
                    state: step_state(r.try_get("s")?)?,
                }),
                "Q" => quotas.push(Quota {
                    channel_id: r.try_get("a")?,
                    points: r.try_get("n")?,
                    state: step_state(r.try_get("s")?)?,
                }),
                _ => history.push(HistoryEntry {
                    at_ms: r.try_get("n")?,
                    kind: r.try_get("a")?,
                    detail: r.try_get("b")?,
                }),
            }
        }
        Ok(Order {
            customer_id: row.try_get("customer_id")?,
            state: order_state(row.try_get("state")?)?,
            needs_attention: row.try_get::<i64, _>("needs_attention")? != 0,
            reason: row.try_get("reason")?,
            version: row.try_get("version")?,
            created_at_ms: row.try_get("created_at_ms")?,
            updated_at_ms: row.try_get("updated_at_ms")?,
            order_id,
            lines,
            quotas,
            history,
        })
    }
}

/// A submit queued for group commit.
#[derive(Debug)]
struct Submit {
    order: NewOrder,
    traceparent: Option<String>,
}

/// The submits' writer.
#[derive(Debug)]
struct Submits;

impl Write for Submits {
    type Op = Submit;
    type Answer = Inserted;
    type Staged = Appends;

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

    async fn finish(&self, tx: &mut AnyConnection, appends: Appends) -> Result<(), sqlx::Error> {
        appends.write(tx).await
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
             version, created_at_ms, updated_at_ms) VALUES ($1, $2, 'PENDING', 0, '', $3, 0, $4, $4) \
             ON CONFLICT (order_id) DO NOTHING",
        )
        .bind(order_id)
        .bind(order.customer_id.as_str())
        .bind(order.fingerprint())
        .bind(now)
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
    let sql = format!(
        "INSERT INTO order_lines (order_id, position, channel_id, user_id, points, state) VALUES {}",
        rows_of(order.lines.len(), "($1, ${}, ${}, ${}, ${}, 'PENDING')", 2)
    );
    let mut lines = sqlx::query(&sql).bind(order_id);
    for (position, line) in order.lines.iter().enumerate() {
        lines = lines
            .bind(i64::try_from(position).unwrap_or(i64::MAX))
            .bind(line.channel_id.as_str())
            .bind(line.user_id.as_str())
            .bind(line.points.get());
        let mut command = commands::points(
            Step::Deduct,
            order_id,
            line.channel_id.as_str(),
            line.user_id.as_str(),
            line.points.get(),
        );
        command.traceparent = traceparent.map(str::to_owned);
        appends.enqueue(&command, now);
    }
    lines.execute(&mut *tx).await?;
    let quotas = order.quotas();
    let sql = format!(
        "INSERT INTO order_quotas (order_id, channel_id, points, state) VALUES {}",
        rows_of(quotas.len(), "($1, ${}, ${}, 'WAITING')", 2)
    );
    let mut query = sqlx::query(&sql).bind(order_id);
    for (channel_id, points) in &quotas {
        query = query.bind(channel_id.as_str()).bind(*points);
    }
    query.execute(&mut *tx).await?;
    let detail = format!(
        "{} line(s) over {} channel(s); points deducts sent",
        order.lines.len(),
        order.quotas().len()
    );
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
        lines: order
            .lines
            .iter()
            .map(|line| Line {
                channel_id: line.channel_id.to_string(),
                user_id: line.user_id.to_string(),
                points: line.points.get(),
                state: StepState::Pending,
            })
            .collect(),
        quotas: order
            .quotas()
            .into_iter()
            .map(|(channel_id, points)| Quota {
                channel_id: channel_id.to_string(),
                points,
                state: StepState::Waiting,
            })
            .collect(),
        history: vec![HistoryEntry {
            at_ms: now,
            kind: "submitted".to_owned(),
            detail,
        }],
    })))
}

/// Adds a command to the outbox, in the caller's transaction.
pub async fn enqueue(
    tx: &mut AnyConnection,
    message: &Outgoing,
    now_ms: i64,
) -> Result<(), sqlx::Error> {
    let mut appends = Appends::default();
    appends.enqueue(message, now_ms);
    appends.write(tx).await
}

/// History entries and outbox rows a transaction writes at its end, many rows per statement:
/// a batch of events or submits writes several of each per order, and on SQLite every
/// statement is a hand-off to the connection's thread and back. Staged rows keep their order
/// (history and outbox ids follow it). Write them with [`Appends::write`] before the commit.
#[derive(Debug, Default)]
pub struct Appends {
    history: Vec<(String, i64, String, String)>,
    outbox: Vec<(Outgoing, i64)>,
}

/// Rows per multi-row INSERT: far below SQLite's 32 766 bound parameters.
const ROWS_PER_INSERT: usize = 256;

impl Appends {
    /// Stages an entry of an order's history.
    pub fn record(&mut self, order_id: &str, kind: &str, detail: &str, now_ms: i64) {
        self.history.push((
            order_id.to_owned(),
            now_ms,
            kind.to_owned(),
            detail.to_owned(),
        ));
    }

    /// Stages a command for the outbox, with the trace of whatever causes it (the submit, or
    /// the event applied) when it carries none of its own.
    pub fn enqueue(&mut self, message: &Outgoing, now_ms: i64) {
        let mut message = message.clone();
        if message.traceparent.is_none() {
            message.traceparent = jifen_mesh::trace::current_traceparent();
        }
        self.outbox.push((message, now_ms));
    }

    /// Writes what is staged, in the caller's transaction.
    pub async fn write(self, tx: &mut AnyConnection) -> Result<(), sqlx::Error> {
        for rows in self.history.chunks(ROWS_PER_INSERT) {
            let sql = format!(
                "INSERT INTO order_events (order_id, at_ms, kind, detail) VALUES {}",
                placeholders(rows.len(), 4)
            );
            let mut query = sqlx::query(&sql);
            for (order_id, at_ms, kind, detail) in rows {
                query = query.bind(order_id).bind(*at_ms).bind(kind).bind(detail);
            }
            query.execute(&mut *tx).await?;
        }
        for rows in self.outbox.chunks(ROWS_PER_INSERT) {
            let sql = format!(
                "INSERT INTO outbox (subject, msg_id, order_id, traceparent, payload, created_at_ms) \
                 VALUES {}",
                placeholders(rows.len(), 6)
            );
            let mut query = sqlx::query(&sql);
            for (message, now_ms) in rows {
                query = query
                    .bind(&message.subject)
                    .bind(&message.msg_id)
                    .bind(&message.order_id)
                    .bind(&message.traceparent)
                    .bind(message.payload.to_vec())
                    .bind(*now_ms);
            }
            query.execute(&mut *tx).await?;
        }
        Ok(())
    }
}

/// `rows` copies of `template`, each `${}` in them numbered on from `first`:
/// `rows_of(2, "($1, ${}, ${})", 2)` is `($1, $2, $3), ($1, $4, $5)`.
fn rows_of(rows: usize, template: &str, first: usize) -> String {
    let mut next = first;
    let mut out = String::new();
    for row in 0..rows {
        if row > 0 {
            out.push_str(", ");
        }
        let mut parts = template.split("${}");
        out.push_str(parts.next().unwrap_or_default());
        for part in parts {
            out.push_str(&format!("${next}"));
            next += 1;
            out.push_str(part);
        }
    }
    out
}

/// `($1, $2), ($3, $4)` for two rows of two columns.
fn placeholders(rows: usize, columns: usize) -> String {
    rows_of(rows, &format!("({})", vec!["${}"; columns].join(", ")), 1)
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

/// Adds an entry to an order's history, in the caller's transaction.
pub async fn record(
    tx: &mut AnyConnection,
    order_id: &str,
    kind: &str,
    detail: &str,
    now_ms: i64,
) -> Result<(), sqlx::Error> {
    let mut appends = Appends::default();
    appends.record(order_id, kind, detail, now_ms);
    appends.write(tx).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_row_placeholders_number_on() {
        assert_eq!(placeholders(2, 2), "($1, $2), ($3, $4)");
        assert_eq!(placeholders(0, 3), "");
        assert_eq!(
            rows_of(2, "($1, ${}, ${}, 'X')", 2),
            "($1, $2, $3, 'X'), ($1, $4, $5, 'X')"
        );
    }
}
