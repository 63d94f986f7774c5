//! The ledger invariants of DESIGN §2, read straight from a system's database. They hold at
//! every quiet point, whatever crashed in between:
//! - channel: points credited = balances + points held by live (DEDUCTED) deductions, and no
//!   balance is negative;
//! - portal: per channel, used = quota held by live deductions, and 0 <= used <= total.

use jifen_channel::ledger::PointsLedger;
use jifen_portal::quota::QuotaBook;
use sqlx::Row;

/// What a channel's ledger adds up to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelTotals {
    pub credited: i64,
    pub balances: i64,
    pub held: i64,
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
            "SELECT CAST(COALESCE(SUM(points), 0) AS BIGINT) FROM deductions WHERE state = 'DEDUCTED'",
        )
        .await,
        negative_balances: sum(pool, "SELECT COUNT(*) FROM accounts WHERE balance < 0").await,
    }
}

/// Panics with the totals when a channel's ledger does not add up.
pub async fn assert_channel_consistent(ledger: &PointsLedger) {
    let totals = channel_totals(ledger).await;
    assert_eq!(
        totals.credited,
        totals.balances + totals.held,
        "channel {}: credited != balances + held: {totals:?}",
        ledger.channel_id()
    );
    assert_eq!(totals.negative_balances, 0, "negative balances: {totals:?}");
}

/// Panics when a channel's used quota differs from its live deductions or its total.
pub async fn assert_portal_consistent(quotas: &QuotaBook) {
    let pool = quotas.database().pool();
    let rows = sqlx::query(
        "SELECT c.channel_id, c.total, c.used, \
         CAST(COALESCE((SELECT SUM(d.points) FROM quota_deductions d \
                        WHERE d.channel_id = c.channel_id AND d.state = 'DEDUCTED'), 0) AS BIGINT) AS held \
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
        assert!(
            (0..=total).contains(&used),
            "portal channel {channel_id}: used {used} outside 0..={total}"
        );
    }
}
