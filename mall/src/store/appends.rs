//! History entries, outbox rows and order versions, written many per statement.

use jifen_mesh::bus::publish::Outgoing;
use sqlx::AnyConnection;

/// History entries and outbox rows a transaction writes at its end, many rows per statement:
/// a batch of events or submits writes several of each per order, and on SQLite every
/// statement is a hand-off to the connection's thread and back. Staged rows keep their order
/// (history and outbox ids follow it). Orders marked changed get one new version per
/// transaction, however many of their events it applied. Write them with [`Appends::write`]
/// before the commit.
#[derive(Debug, Default)]
pub struct Appends {
    history: Vec<HistoryRow>,
    outbox: Vec<(Outgoing, i64)>,
    touched: Vec<String>,
    touched_at_ms: i64,
    settled: Vec<(&'static str, f64)>,
}

/// What a written [`Appends`] leaves to do once its transaction commits: the settle times of
/// the orders it settled, observed then — a transaction undone (a batch applied again one by
/// one) must not count them.
#[derive(Debug, Default)]
#[must_use = "observe it once the transaction commits"]
pub struct Committed {
    settled: Vec<(&'static str, f64)>,
}

impl Committed {
    pub fn observe(self) {
        for (state, seconds) in self.settled {
            jifen_mesh::metrics::ORDER_SETTLE_LATENCY
                .with_label_values(&[state])
                .observe(seconds);
        }
    }
}

/// Rows per multi-row INSERT: far below SQLite's 32 766 bound parameters.
const ROWS_PER_INSERT: usize = 256;

impl Appends {
    /// Marks an order changed: a new version for its watchers, and the time of the change.
    pub fn touch(&mut self, order_id: &str, now_ms: i64) {
        self.touched.push(order_id.to_owned());
        self.touched_at_ms = self.touched_at_ms.max(now_ms);
    }

    /// Stages an order's settle time (`state`: how it ended), observed after the commit.
    pub fn settled(&mut self, state: &'static str, seconds: f64) {
        self.settled.push((state, seconds));
    }

    /// Stages an entry of an order's history, of the machine's own doing.
    pub fn record(&mut self, order_id: &str, kind: &str, detail: &str, now_ms: i64) {
        self.record_by(order_id, kind, detail, "", now_ms);
    }

    /// Stages an entry of an order's history that `actor` (an operator's name) caused.
    pub fn record_by(
        &mut self,
        order_id: &str,
        kind: &str,
        detail: &str,
        actor: &str,
        now_ms: i64,
    ) {
        self.history.push(HistoryRow {
            order_id: order_id.to_owned(),
            at_ms: now_ms,
            kind: kind.to_owned(),
            detail: detail.to_owned(),
            actor: actor.to_owned(),
        });
    }

    /// Stages a command for the outbox, with the trace of whatever causes it (the submit, or
    /// the event applied) when it carries none of its own.
    pub fn enqueue(&mut self, mut message: Outgoing, now_ms: i64) {
        if message.traceparent.is_none() {
            message.traceparent = jifen_mesh::trace::current_traceparent();
        }
        self.outbox.push((message, now_ms));
    }

    /// Writes what is staged, in the caller's transaction; what is left for after its commit
    /// comes back.
    pub async fn write(mut self, tx: &mut AnyConnection) -> Result<Committed, sqlx::Error> {
        let marks = Marks::of(tx);
        self.touched.sort_unstable();
        self.touched.dedup();
        for ids in self.touched.chunks(ROWS_PER_INSERT) {
            let sql = format!(
                "UPDATE orders SET version = version + 1, updated_at_ms = {} WHERE order_id IN ({})",
                marks.values(1, 1),
                marks.values(ids.len(), 2)
            );
            let mut query = sqlx::query(&sql).bind(self.touched_at_ms);
            for id in ids {
                query = query.bind(id);
            }
            query.execute(&mut *tx).await?;
        }
        for rows in self.history.chunks(ROWS_PER_INSERT) {
            let sql = format!(
                "INSERT INTO order_events (order_id, at_ms, kind, detail, actor) VALUES {}",
                marks.rows(rows.len(), 5)
            );
            let mut query = sqlx::query(&sql);
            for row in rows {
                query = query
                    .bind(&row.order_id)
                    .bind(row.at_ms)
                    .bind(&row.kind)
                    .bind(&row.detail)
                    .bind(&row.actor);
            }
            query.execute(&mut *tx).await?;
        }
        for rows in self.outbox.chunks(ROWS_PER_INSERT) {
            let sql = format!(
                "INSERT INTO outbox (subject, msg_id, order_id, traceparent, payload, created_at_ms) \
                 VALUES {}",
                marks.rows(rows.len(), 6)
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
        Ok(Committed {
            settled: self.settled,
        })
    }
}

/// `rows` copies of `template`, each `${}` in them numbered on from `first`:
/// `rows_of(2, "($1, ${}, ${})", 2)` is `($1, $2, $3), ($1, $4, $5)`.
pub(super) fn rows_of(rows: usize, template: &str, first: usize) -> String {
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

/// How a statement whose values are bound in the order they appear marks them: numbered
/// (`$1, $2`) on PostgreSQL; anonymous (`?, ?`) on SQLite, which looks every numbered or named
/// parameter up in a list — when it parses the statement and again when sqlx binds it — so
/// that a statement of many rows cost time quadratic in its values (a few % of the mall's CPU
/// under load, docs/performance.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Marks {
    Numbered,
    Anonymous,
}

impl Marks {
    pub(crate) fn of(conn: &AnyConnection) -> Self {
        if conn.backend_name().eq_ignore_ascii_case("sqlite") {
            Self::Anonymous
        } else {
            Self::Numbered
        }
    }

    /// `count` values, the first bound `first`-th: `$first, $first+1, …` or `?, ?, …`.
    pub(crate) fn values(self, count: usize, first: usize) -> String {
        match self {
            Self::Numbered => rows_of(count, "${}", first),
            Self::Anonymous => vec!["?"; count].join(", "),
        }
    }

    /// `rows` parenthesised rows of `columns` values: `($1, $2), ($3, $4)` or `(?, ?), (?, ?)`.
    pub(crate) fn rows(self, rows: usize, columns: usize) -> String {
        let row = match self {
            Self::Numbered => format!("({})", vec!["${}"; columns].join(", ")),
            Self::Anonymous => format!("({})", vec!["?"; columns].join(", ")),
        };
        rows_of(rows, &row, 1)
    }
}

/// Adds an entry to an order's history that `actor` caused (empty: the machine), in the
/// caller's transaction.
pub async fn record(
    tx: &mut AnyConnection,
    order_id: &str,
    kind: &str,
    detail: &str,
    actor: &str,
    now_ms: i64,
) -> Result<(), sqlx::Error> {
    let mut appends = Appends::default();
    appends.record_by(order_id, kind, detail, actor, now_ms);
    // A history entry settles nothing: nothing is left for after the commit.
    appends.write(tx).await.map(drop)
}

/// One staged history entry.
#[derive(Debug)]
struct HistoryRow {
    order_id: String,
    at_ms: i64,
    kind: String,
    detail: String,
    actor: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_row_placeholders_number_on_or_stay_anonymous() {
        assert_eq!(Marks::Numbered.rows(2, 2), "($1, $2), ($3, $4)");
        assert_eq!(Marks::Numbered.rows(0, 3), "");
        assert_eq!(Marks::Anonymous.rows(2, 2), "(?, ?), (?, ?)");
        assert_eq!(Marks::Numbered.values(3, 2), "$2, $3, $4");
        assert_eq!(Marks::Anonymous.values(3, 2), "?, ?, ?");
        assert_eq!(
            rows_of(2, "($1, ${}, ${}, 'X')", 2),
            "($1, $2, $3, 'X'), ($1, $4, $5, 'X')"
        );
    }
}
