//! The mall's database: orders, their steps and history, and the outbox. Writers take a
//! transaction so that a state change and the commands it causes commit together.
//!
//! [`submit`] stores new orders (group commit); [`steps`] reads and writes an order and its
//! steps, [`phases`] moves them from phase to phase (the saga's and the operator's writes);
//! [`reemit`] sends an order's open commands again;
//! [`appends`] writes history entries, outbox rows and versions, many per statement;
//! [`outbox`] is the relay's reading and deleting; [`dead_letters`] holds what operators settle.

mod appends;
pub mod audit;
pub mod books;
pub mod controls;
pub mod dead_letters;
pub(crate) mod outbox;
mod paging;
pub(crate) mod phases;
pub(crate) mod reemit;
pub mod statements;
pub(crate) mod steps;
mod submit;

pub use appends::{Appends, Committed, record};

use jifen_mesh::group_commit::Writer;
use jifen_mesh::storage::Database;
use jifen_mesh::time::now_unix_ms;
use sqlx::Row;

use crate::order::{HistoryEntry, Line, NewOrder, Order, OrderState, Protocol, Quota, StepState};
use submit::{Submit, Submits};

fn decode_error(what: &str, raw: &str) -> sqlx::Error {
    sqlx::Error::Decode(format!("unknown {what} {raw:?}").into())
}

pub fn step_state(raw: &str) -> Result<StepState, sqlx::Error> {
    StepState::parse(raw).ok_or_else(|| decode_error("step state", raw))
}

pub fn protocol(raw: &str) -> Result<Protocol, sqlx::Error> {
    Protocol::parse(raw).ok_or_else(|| decode_error("protocol", raw))
}

pub fn order_state(raw: &str) -> Result<OrderState, sqlx::Error> {
    OrderState::parse(raw).ok_or_else(|| decode_error("order state", raw))
}

/// Orders per state, for the console's header.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrderCounts {
    pub by_state: Vec<(String, i64)>,
    pub total: i64,
    pub attention: i64,
}

/// Which orders a listing shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selection {
    All,
    In(OrderState),
    /// Pending, confirming or compensating.
    Unsettled,
}

impl Selection {
    pub(crate) fn token(self) -> &'static str {
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

    /// The order with its steps and history, in one query: every statement on SQLite is a
    /// hand-off to the connection's thread and back, on PostgreSQL a round trip, and a watched
    /// order is read after each of its changes. Each part (`A` the order, `L` lines, `Q`
    /// quotas, `R` history) ranks by its own key (`seq`, then `a`).
    pub async fn find(&self, order_id: &str) -> Result<Option<Order>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT 'A' AS part, needs_attention AS seq, customer_id AS a, reason AS b, \
                    version AS n, state AS s, created_at_ms AS n2, updated_at_ms AS n3, trace_id AS t, '' AS u, '' AS p \
               FROM orders WHERE order_id = $1 \
             UNION ALL SELECT 'L', position, channel_id, user_id, points, state, 0, 0, captured, settled_by, protocol \
               FROM order_lines WHERE order_id = $1 \
             UNION ALL SELECT 'Q', 0, channel_id, '', points, state, 0, 0, '', '', protocol \
               FROM order_quotas WHERE order_id = $1 \
             UNION ALL SELECT 'R', id, kind, detail, at_ms, '', 0, 0, actor, '', '' \
               FROM order_events WHERE order_id = $1 \
             ORDER BY part, seq, a",
        )
        .bind(order_id)
        .fetch_all(self.db.pool())
        .await?;
        let mut order: Option<Order> = None;
        for r in &rows {
            let part: String = r.try_get("part")?;
            if part == "A" {
                order = Some(Order {
                    order_id: order_id.to_owned(),
                    customer_id: r.try_get("a")?,
                    state: order_state(r.try_get("s")?)?,
                    needs_attention: r.try_get::<i64, _>("seq")? != 0,
                    reason: r.try_get("b")?,
                    version: r.try_get("n")?,
                    created_at_ms: r.try_get("n2")?,
                    updated_at_ms: r.try_get("n3")?,
                    trace_id: r.try_get("t")?,
                    lines: Vec::new(),
                    quotas: Vec::new(),
                    history: Vec::new(),
                });
                continue;
            }
            // The order's row sorts first: steps without it were read as it was deleted.
            let Some(order) = order.as_mut() else {
                return Ok(None);
            };
            match part.as_str() {
                "L" => order.lines.push(Line {
                    channel_id: r.try_get("a")?,
                    user_id: r.try_get("b")?,
                    points: r.try_get("n")?,
                    state: step_state(r.try_get("s")?)?,
                    captured: serde_json::from_str(&r.try_get::<String, _>("t")?)
                        .unwrap_or_default(),
                    settled_by: r.try_get("u")?,
                    protocol: protocol(r.try_get("p")?)?,
                }),
                "Q" => order.quotas.push(Quota {
                    channel_id: r.try_get("a")?,
                    points: r.try_get("n")?,
                    state: step_state(r.try_get("s")?)?,
                    protocol: protocol(r.try_get("p")?)?,
                }),
                _ => order.history.push(HistoryEntry {
                    at_ms: r.try_get("n")?,
                    kind: r.try_get("a")?,
                    detail: r.try_get("b")?,
                    actor: r.try_get("t")?,
                }),
            }
        }
        Ok(order)
    }

    /// Whether any order is flagged for an operator.
    pub async fn any_needing_attention(&self) -> Result<bool, sqlx::Error> {
        Ok(
            sqlx::query("SELECT 1 AS flagged FROM orders WHERE needs_attention = 1 LIMIT 1")
                .fetch_optional(self.db.pool())
                .await?
                .is_some(),
        )
    }

    /// The partner exchanges kept with an order's lines (DESIGN §9), oldest first.
    pub async fn exchanges(&self, order_id: &str) -> Result<Vec<PartnerExchange>, sqlx::Error> {
        sqlx::query(
            "SELECT channel_id, user_id, at_ms, call, status, request, answer \
             FROM partner_exchanges WHERE order_id = $1 ORDER BY at_ms, call LIMIT 200",
        )
        .bind(order_id)
        .fetch_all(self.db.pool())
        .await?
        .iter()
        .map(|row| {
            Ok(PartnerExchange {
                channel_id: row.try_get("channel_id")?,
                user_id: row.try_get("user_id")?,
                at_ms: row.try_get("at_ms")?,
                call: row.try_get("call")?,
                status: row.try_get("status")?,
                request: row.try_get("request")?,
                answer: row.try_get("answer")?,
            })
        })
        .collect()
    }

    /// Ids of the orders created in `[from_ms, to_ms)`, oldest first, `limit` at most.
    pub async fn created_between(
        &self,
        from_ms: i64,
        to_ms: i64,
        limit: i64,
    ) -> Result<Vec<String>, sqlx::Error> {
        sqlx::query(
            "SELECT order_id FROM orders WHERE created_at_ms >= $1 AND created_at_ms < $2 \
             ORDER BY created_at_ms LIMIT $3",
        )
        .bind(from_ms)
        .bind(to_ms)
        .bind(limit)
        .fetch_all(self.db.pool())
        .await?
        .iter()
        .map(|row| row.try_get("order_id"))
        .collect()
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
        self.list_flagged(selection, false, created_before_ms, after, limit)
            .await
    }

    /// [`list`](Self::list), only orders flagged `needs_attention` when `flagged_only`.
    pub async fn list_flagged(
        &self,
        selection: Selection,
        flagged_only: bool,
        created_before_ms: Option<i64>,
        after: Option<(i64, String)>,
        limit: i64,
    ) -> Result<Vec<Order>, sqlx::Error> {
        let (after_ms, after_id) = after.unwrap_or((i64::MAX, String::new()));
        // Ids only: each order is then read whole by `find`.
        let rows = sqlx::query(
            "SELECT order_id FROM orders \
             WHERE ($1 = 'ALL' OR state = $1 OR ($1 = 'UNSETTLED' AND state IN ('PENDING', 'CONFIRMING', 'COMPENSATING'))) \
             AND created_at_ms < $2 \
             AND (created_at_ms < $3 OR (created_at_ms = $3 AND ($4 = '' OR order_id < $4))) \
             AND ($6 = 0 OR needs_attention = 1) \
             ORDER BY created_at_ms DESC, order_id DESC LIMIT $5",
        )
        .bind(selection.token())
        .bind(created_before_ms.unwrap_or(i64::MAX))
        .bind(after_ms)
        .bind(after_id)
        .bind(limit)
        .bind(i64::from(flagged_only))
        .fetch_all(self.db.pool())
        .await?;
        let mut orders = Vec::with_capacity(rows.len());
        for row in &rows {
            if let Some(order) = self.find(row.try_get("order_id")?).await? {
                orders.push(order);
            }
        }
        Ok(orders)
    }

    /// How many orders are in each state, and how many need attention, for the console.
    pub async fn counts(&self) -> Result<OrderCounts, sqlx::Error> {
        let rows = sqlx::query(
            // PostgreSQL sums a BIGINT column as NUMERIC: cast it back.
            "SELECT state, COUNT(*) AS n, CAST(SUM(needs_attention) AS BIGINT) AS flagged \
             FROM orders GROUP BY state",
        )
        .fetch_all(self.db.pool())
        .await?;
        let mut counts = OrderCounts::default();
        for state in [
            "PENDING",
            "CONFIRMING",
            "COMPENSATING",
            "COMPLETED",
            "CANCELLED",
        ] {
            let row = rows
                .iter()
                .find(|r| r.try_get::<String, _>("state").is_ok_and(|s| s == state));
            let (n, flagged) = match row {
                Some(r) => (
                    r.try_get::<i64, _>("n")?,
                    r.try_get::<Option<i64>, _>("flagged")?.unwrap_or(0),
                ),
                None => (0, 0),
            };
            counts.total += n;
            counts.attention += flagged;
            counts.by_state.push((state.to_owned(), n));
        }
        Ok(counts)
    }

    /// Samples the mall's gauges: orders by state, orders needing attention, open dead
    /// letters, outbox backlog.
    pub async fn sample_metrics(&self) -> Result<(), sqlx::Error> {
        use jifen_mesh::metrics;
        let pool = self.db.pool();
        for state in [
            "PENDING",
            "CONFIRMING",
            "COMPENSATING",
            "COMPLETED",
            "CANCELLED",
        ] {
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
             WHERE state IN ('PENDING', 'CONFIRMING', 'COMPENSATING') AND needs_attention = 0 AND created_at_ms < $1 \
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
                "",
                now,
            )
            .await?;
        }
        tx.commit().await?;
        Ok(flagged.len() as u64)
    }
}

/// One exchange of an order's line with a partner's API, as kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartnerExchange {
    pub channel_id: String,
    pub user_id: String,
    pub at_ms: i64,
    pub call: String,
    /// 0 when no answer came.
    pub status: i64,
    pub request: String,
    pub answer: String,
}
