//! The ledger invariants of DESIGN §2, read straight from a system's database. They hold at
//! every quiet point, whatever crashed in between:
//! - channel: points credited = balances + points taken by live deductions (DEDUCTED, and holds
//!   CONFIRMED) + points frozen by live holds (FROZEN), each account's frozen balance is its
//!   holds', and no balance is negative;
//! - portal: per channel, used = quota taken by live deductions and holds (DEDUCTED, FROZEN,
//!   CONFIRMED), frozen = quota of live holds, and 0 <= used <= total.

use jifen_channel::ledger::PointsLedger;
use jifen_portal::quota::QuotaBook;
use sqlx::Row;

/// What a channel's ledger adds up to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelTotals {
    pub credited: i64,
    pub balances: i64,
    pub held: i64,
    /// Points of live holds, by the ledger, and by the accounts' frozen balances.
    pub frozen: i64,
    pub accounts_frozen: i64,
    pub negative_balances: i64,
}

async fn sum(pool: &sqlx::AnyPool, sql: &str) -> i64 {
    sqlx::query(sql)
        .fetch_one(pool)
        .await
        .and_then(|row| row.try_get::<i64, _>(0))
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

pub async fn channel_totals(ledger: &PointsLedger) -> ChannelTotals {
    let pool = ledger.database().pool();
    ChannelTotals {
        credited: sum(pool, "SELECT CAST(COALESCE(SUM(points), 0) AS BIGINT) FROM credits").await,
        balances: sum(pool, "SELECT CAST(COALESCE(SUM(balance), 0) AS BIGINT) FROM accounts").await,
        held: sum(
            pool,
            "SELECT CAST(COALESCE(SUM(points), 0) AS BIGINT) FROM deductions WHERE state IN ('DEDUCTED', 'CONFIRMED')",
        )
        .await,
        frozen: sum(
            pool,
            "SELECT CAST(COALESCE(SUM(points), 0) AS BIGINT) FROM deductions WHERE state = 'FROZEN'",
        )
        .await,
        accounts_frozen: sum(pool, "SELECT CAST(COALESCE(SUM(frozen), 0) AS BIGINT) FROM accounts").await,
        negative_balances: sum(pool, "SELECT COUNT(*) FROM accounts WHERE balance < 0").await,
    }
}

/// Panics with the totals when a channel's ledger does not add up.
pub async fn assert_channel_consistent(ledger: &PointsLedger) {
    let totals = channel_totals(ledger).await;
    assert_eq!(
        totals.credited,
        totals.balances + totals.held + totals.frozen,
        "channel {}: credited != balances + held + frozen: {totals:?}",
        ledger.channel_id()
    );
    assert_eq!(
        totals.frozen,
        totals.accounts_frozen,
        "channel {}: live holds != frozen balances: {totals:?}",
        ledger.channel_id()
    );
    assert_eq!(totals.negative_balances, 0, "negative balances: {totals:?}");
}

/// Panics when a channel's used quota differs from its live deductions or its total.
pub async fn assert_portal_consistent(quotas: &QuotaBook) {
    let pool = quotas.database().pool();
    let rows = sqlx::query(
        "SELECT c.channel_id, c.total, c.used, c.frozen, \
         CAST(COALESCE((SELECT SUM(d.points) FROM quota_deductions d \
                        WHERE d.channel_id = c.channel_id \
                        AND d.state IN ('DEDUCTED', 'FROZEN', 'CONFIRMED')), 0) AS BIGINT) AS held, \
         CAST(COALESCE((SELECT SUM(d.points) FROM quota_deductions d \
                        WHERE d.channel_id = c.channel_id AND d.state = 'FROZEN'), 0) AS BIGINT) AS holds \
         FROM channels c",
    )
    .fetch_all(pool)
    .await
    .expect("the portal's channels");
    for row in rows {
        let channel_id: String = row.try_get("channel_id").expect("channel_id");
        let total: i64 = row.try_get("total").expect("total");
        let used: i64 = row.try_get("used").expect("used");
        let held: i64 = row.try_get("held").expect("held");
        assert_eq!(
            used, held,
            "portal channel {channel_id}: used != live deductions"
        );
        let frozen: i64 = row.try_get("frozen").expect("frozen");
        let holds: i64 = row.try_get("holds").expect("holds");
        assert_eq!(
            frozen, holds,
            "portal channel {channel_id}: frozen != live holds"
        );
        assert!(
            (0..=total).contains(&used),
            "portal channel {channel_id}: used {used} outside 0..={total}"
        );
    }
}

/// Every invariant of DESIGN §2 over a quiet mesh: each ledger adds up, every order is settled,
/// a `COMPLETED` order holds exactly one live deduction per line and per channel quota, and a
/// `CANCELLED` order holds none. Returns how many orders were checked.
pub async fn assert_mesh_consistent(mesh: &crate::TestMesh) -> usize {
    use jifen_mesh::domain::{ChannelId, OrderId, UserId};

    for channel in mesh.channels.values() {
        assert_channel_consistent(&channel.ledger).await;
    }
    assert_portal_consistent(&mesh.portal.quotas).await;

    let pool = mesh.mall_db_pool().await;
    let orders = sqlx::query("SELECT order_id, state FROM orders")
        .fetch_all(&pool)
        .await
        .expect("the mall's orders");
    for order in &orders {
        let order_id: String = order.try_get("order_id").expect("order_id");
        let state: String = order.try_get("state").expect("state");
        assert!(
            state == "COMPLETED" || state == "CANCELLED",
            "order {order_id} is {state} at a quiet point"
        );
        let completed = state == "COMPLETED";
        let open_steps: i64 = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM order_lines WHERE order_id = $1 AND state IN ('PENDING', 'REFUNDING', 'MANUAL_REFUND', 'FROZEN', 'CONFIRMING', 'CANCELLING')) + \
                    (SELECT COUNT(*) FROM order_quotas WHERE order_id = $1 AND state IN ('PENDING', 'REFUNDING', 'FROZEN', 'CONFIRMING', 'CANCELLING'))",
        )
        .bind(&order_id)
        .fetch_one(&pool)
        .await
        .and_then(|row| row.try_get(0))
        .expect("open steps");
        assert_eq!(
            open_steps, 0,
            "order {order_id} is {state} with steps still open"
        );
        let id = OrderId::parse("order_id", order_id.clone()).expect("an order id");
        let lines = sqlx::query(
            "SELECT channel_id, user_id, points, protocol FROM order_lines WHERE order_id = $1",
        )
        .bind(&order_id)
        .fetch_all(&pool)
        .await
        .expect("lines");
        for line in &lines {
            let channel_id: String = line.try_get("channel_id").expect("channel_id");
            let user_id: String = line.try_get("user_id").expect("user_id");
            let points: i64 = line.try_get("points").expect("points");
            let spent = spent_state(&line.try_get::<String, _>("protocol").expect("protocol"));
            let user = UserId::parse("user_id", user_id.clone()).expect("a user id");
            // A channel served outside the harness (a third-party fake) is checked by its test.
            let Some(channel) = mesh.channels.get(&channel_id) else {
                continue;
            };
            let entry = channel.ledger.deduction(&id, &user).await.ok();
            let live = entry.as_ref().filter(|e| e.state == spent);
            let taking = entry.as_ref().filter(|e| takes(e.state));
            if completed {
                let live = live.unwrap_or_else(|| {
                    panic!("completed order {order_id}: no live deduction at {channel_id} for {user_id}: {entry:?}")
                });
                assert_eq!(
                    live.points, points,
                    "order {order_id} line {channel_id}/{user_id}"
                );
            } else {
                assert!(
                    taking.is_none(),
                    "cancelled order {order_id} still holds {channel_id}/{user_id}: {entry:?}"
                );
            }
        }
        let quotas = sqlx::query(
            "SELECT channel_id, points, protocol FROM order_quotas WHERE order_id = $1",
        )
        .bind(&order_id)
        .fetch_all(&pool)
        .await
        .expect("quotas");
        for quota in &quotas {
            let channel_id: String = quota.try_get("channel_id").expect("channel_id");
            let points: i64 = quota.try_get("points").expect("points");
            let spent = spent_state(&quota.try_get::<String, _>("protocol").expect("protocol"));
            let channel = ChannelId::parse("channel_id", channel_id.clone()).expect("a channel id");
            let entry = mesh.portal.quotas.deduction(&id, &channel).await.ok();
            let live = entry.as_ref().filter(|e| e.state == spent);
            let taking = entry.as_ref().filter(|e| takes(e.state));
            if completed {
                let live = live.unwrap_or_else(|| {
                    panic!("completed order {order_id}: no live quota deduction for {channel_id}: {entry:?}")
                });
                assert_eq!(live.points, points, "order {order_id} quota {channel_id}");
            } else {
                assert!(
                    taking.is_none(),
                    "cancelled order {order_id} still holds quota of {channel_id}: {entry:?}"
                );
            }
        }
    }
    orders.len()
}

/// The ledger state of a completed order's step: deducted (saga), or a confirmed hold (TCC).
fn spent_state(protocol: &str) -> jifen_mesh::barrier::LedgerState {
    if protocol == "TCC" {
        jifen_mesh::barrier::LedgerState::Confirmed
    } else {
        jifen_mesh::barrier::LedgerState::Deducted
    }
}

/// Whether a key takes points in this state (deducted, held, or spent by a confirm).
fn takes(state: jifen_mesh::barrier::LedgerState) -> bool {
    use jifen_mesh::barrier::LedgerState;
    matches!(
        state,
        LedgerState::Deducted | LedgerState::Frozen | LedgerState::Confirmed
    )
}
