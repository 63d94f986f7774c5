//! The console's order pages both ways (issue 18): newer than a position as well as older, and
//! how many orders a selection holds and how many come before a position, so a page can say
//! "51–100 of 1,234".

use sqlx::Row;

use super::{OrderStore, Selection};
use crate::order::Order;

const SELECTED: &str = "($1 = 'ALL' OR state = $1 OR ($1 = 'UNSETTLED' AND state IN ('PENDING', 'CONFIRMING', 'COMPENSATING'))) \
     AND ($2 = 0 OR needs_attention = 1)";

impl OrderStore {
    /// The `limit` orders just newer than the `(created_at_ms, order_id)` position `before`,
    /// newest first.
    pub async fn list_newer(
        &self,
        selection: Selection,
        flagged_only: bool,
        before: (i64, String),
        limit: i64,
    ) -> Result<Vec<Order>, sqlx::Error> {
        let rows = sqlx::query(&format!(
            "SELECT order_id FROM orders WHERE {SELECTED} \
             AND (created_at_ms > $3 OR (created_at_ms = $3 AND order_id > $4)) \
             ORDER BY created_at_ms, order_id LIMIT $5"
        ))
        .bind(selection.token())
        .bind(i64::from(flagged_only))
        .bind(before.0)
        .bind(before.1)
        .bind(limit)
        .fetch_all(self.db.pool())
        .await?;
        let mut orders = Vec::with_capacity(rows.len());
        for row in rows.iter().rev() {
            if let Some(order) = self.find(row.try_get("order_id")?).await? {
                orders.push(order);
            }
        }
        Ok(orders)
    }

    /// How many orders the selection holds; with `newer_than`, only those newer than that
    /// position.
    pub async fn count_selected(
        &self,
        selection: Selection,
        flagged_only: bool,
        newer_than: Option<(i64, String)>,
    ) -> Result<i64, sqlx::Error> {
        let (ms, id) = newer_than.unwrap_or((i64::MIN, String::new()));
        sqlx::query(&format!(
            "SELECT COUNT(*) AS n FROM orders WHERE {SELECTED} \
             AND (created_at_ms > $3 OR (created_at_ms = $3 AND order_id > $4))"
        ))
        .bind(selection.token())
        .bind(i64::from(flagged_only))
        .bind(ms)
        .bind(id)
        .fetch_one(self.db.pool())
        .await?
        .try_get("n")
    }
}
