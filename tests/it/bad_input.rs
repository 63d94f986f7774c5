//! Bad input is refused with INVALID_ARGUMENT naming the field, and writes nothing.

use jifen_mesh::domain::MAX_POINTS;
use jifen_proto::v1::{
    CreditPointsRequest, GetChannelQuotaRequest, GetDeductionRequest, GetQuotaDeductionRequest,
    GetUserPointsRequest, GrantQuotaRequest, RegisterChannelRequest,
};
use jifen_tests::{TestChannel, TestPortal};
use sqlx::Row;
use tonic::Code;

use crate::assert_status;
use crate::channel_barrier::{self, credit};
use crate::portal_barrier::{self, register};

async fn count(pool: &sqlx::AnyPool, table: &str) -> i64 {
    sqlx::query(&format!("SELECT COUNT(*) FROM {table}"))
        .fetch_one(pool)
        .await
        .unwrap()
        .try_get(0)
        .unwrap()
}

fn long_id() -> String {
    "x".repeat(129)
}

#[tokio::test]
async fn the_channel_refuses_bad_fields_and_writes_nothing() {
    let mut channel = TestChannel::start("alpha").await;
    credit(&mut channel, "alice", 1_000).await;
    let c = &mut channel.client;

    let deducts = [
        (channel_barrier::deduct("", "alice", 1), "order_id"),
        (channel_barrier::deduct(&long_id(), "alice", 1), "order_id"),
        (channel_barrier::deduct("o:1", "alice", 1), "order_id"),
        (channel_barrier::deduct("o-1", "", 1), "user_id"),
        (channel_barrier::deduct("o-1", "al ice", 1), "user_id"),
        (channel_barrier::deduct("o-1", &long_id(), 1), "user_id"),
        (channel_barrier::deduct("o-1", "alice", 0), "points"),
        (channel_barrier::deduct("o-1", "alice", -5), "points"),
        (channel_barrier::deduct("o-1", "alice", i64::MIN), "points"),
        (channel_barrier::deduct("o-1", "alice", i64::MAX), "points"),
        (
            channel_barrier::deduct("o-1", "alice", MAX_POINTS + 1),
            "points",
        ),
    ];
    for (request, field) in deducts {
        assert_status(c.deduct_points(request).await, Code::InvalidArgument, field);
    }
    for (request, field) in [
        (channel_barrier::refund("", "alice"), "order_id"),
        (channel_barrier::refund("o-1", &long_id()), "user_id"),
    ] {
        assert_status(c.refund_points(request).await, Code::InvalidArgument, field);
    }
    assert_status(
        c.get_deduction(GetDeductionRequest {
            order_id: "o-1".into(),
            user_id: "\u{0}".into(),
        })
        .await,
        Code::InvalidArgument,
        "user_id",
    );
    assert_status(
        c.get_user_points(GetUserPointsRequest {
            user_id: String::new(),
        })
        .await,
        Code::InvalidArgument,
        "user_id",
    );
    for (request_id, points, field) in [
        ("", 1, "request_id"),
        ("r-9", 0, "points"),
        ("r-9", -1, "points"),
        ("r-9", i64::MAX, "points"),
    ] {
        let request = CreditPointsRequest {
            request_id: request_id.into(),
            user_id: "bob".into(),
            points,
        };
        assert_status(c.credit_points(request).await, Code::InvalidArgument, field);
    }

    let pool = channel.ledger.database().pool();
    assert_eq!(count(pool, "deductions").await, 0);
    assert_eq!(count(pool, "credits").await, 1);
    assert_eq!(count(pool, "accounts").await, 1);
}

#[tokio::test]
async fn a_credit_that_would_overflow_a_balance_is_refused_and_not_recorded() {
    let mut channel = TestChannel::start("alpha").await;
    credit(&mut channel, "alice", 1).await;
    let pool = channel.ledger.database().pool().clone();
    // Plant a balance near the top: reaching it through credits would take thousands of calls.
    sqlx::query("UPDATE accounts SET balance = $1 WHERE user_id = 'alice'")
        .bind(i64::MAX - 10)
        .execute(&pool)
        .await
        .unwrap();
    assert_status(
        channel
            .client
            .credit_points(CreditPointsRequest {
                request_id: "r-big".into(),
                user_id: "alice".into(),
                points: 11,
            })
            .await,
        Code::InvalidArgument,
        "invalid points: crediting 11 would overflow",
    );
    assert_eq!(
        channel_barrier::balance(&mut channel, "alice").await,
        i64::MAX - 10
    );
    assert_eq!(count(&pool, "credits").await, 1);
}

#[tokio::test]
async fn points_held_by_a_deduction_count_against_credits_so_its_refund_always_fits() {
    use jifen_proto::v1::{DeductPointsRequest, RefundPointsRequest};
    let mut channel = TestChannel::start("alpha").await;
    credit(&mut channel, "alice", 1_000).await;
    channel
        .client
        .deduct_points(DeductPointsRequest {
            order_id: "o-1".into(),
            user_id: "alice".into(),
            points: 1_000,
        })
        .await
        .unwrap();
    let pool = channel.ledger.database().pool().clone();
    // Plant a balance that leaves room for 10 more points beside the 1000 held.
    sqlx::query("UPDATE accounts SET balance = $1 WHERE user_id = 'alice'")
        .bind(i64::MAX - 1_010)
        .execute(&pool)
        .await
        .unwrap();
    assert_status(
        channel
            .client
            .credit_points(CreditPointsRequest {
                request_id: "r-too-much".into(),
                user_id: "alice".into(),
                points: 11,
            })
            .await,
        Code::InvalidArgument,
        "would overflow",
    );
    credit(&mut channel, "alice", 10).await;
    // The refund brings the balance to exactly i64::MAX: it fits.
    channel
        .client
        .refund_points(RefundPointsRequest {
            order_id: "o-1".into(),
            user_id: "alice".into(),
        })
        .await
        .unwrap();
    assert_eq!(
        channel_barrier::balance(&mut channel, "alice").await,
        i64::MAX
    );
}

#[tokio::test]
async fn the_portal_refuses_bad_fields_and_writes_nothing() {
    let mut portal = TestPortal::start().await;
    register(&mut portal, "alpha", 1_000).await;
    let p = &mut portal.client;

    for (channel_id, name, endpoint, field) in [
        ("a.b", "A", "http://127.0.0.1:1", "channel_id"),
        ("", "A", "http://127.0.0.1:1", "channel_id"),
        ("gamma", "", "http://127.0.0.1:1", "name"),
        ("gamma", "G", "", "endpoint"),
        ("gamma", "G", "ftp://127.0.0.1:1", "endpoint"),
        ("gamma", "G", "127.0.0.1:1", "endpoint"),
    ] {
        let request = RegisterChannelRequest {
            channel_id: channel_id.into(),
            name: name.into(),
            endpoint: endpoint.into(),
            kind: 0,
        };
        assert_status(
            p.register_channel(request).await,
            Code::InvalidArgument,
            field,
        );
    }
    for (request_id, channel_id, points, field) in [
        ("", "alpha", 1, "request_id"),
        ("g-9", "al pha", 1, "channel_id"),
        ("g-9", "alpha", 0, "points"),
        ("g-9", "alpha", -1, "points"),
        ("g-9", "alpha", i64::MAX, "points"),
    ] {
        let request = GrantQuotaRequest {
            request_id: request_id.into(),
            channel_id: channel_id.into(),
            points,
        };
        assert_status(p.grant_quota(request).await, Code::InvalidArgument, field);
    }
    for (request, field) in [
        (portal_barrier::deduct("", "alpha", 1), "order_id"),
        (portal_barrier::deduct("o-1", "*", 1), "channel_id"),
        (portal_barrier::deduct("o-1", "alpha", -1), "points"),
        (
            portal_barrier::deduct("o-1", "alpha", MAX_POINTS + 1),
            "points",
        ),
    ] {
        assert_status(p.deduct_quota(request).await, Code::InvalidArgument, field);
    }
    assert_status(
        p.refund_quota(portal_barrier::refund(&long_id(), "alpha"))
            .await,
        Code::InvalidArgument,
        "order_id",
    );
    assert_status(
        p.get_quota_deduction(GetQuotaDeductionRequest {
            order_id: "o-1".into(),
            channel_id: long_id(),
        })
        .await,
        Code::InvalidArgument,
        "channel_id",
    );
    assert_status(
        p.get_channel_quota(GetChannelQuotaRequest {
            channel_id: String::new(),
        })
        .await,
        Code::InvalidArgument,
        "channel_id",
    );

    let pool = portal.quotas.database().pool();
    assert_eq!(count(pool, "channels").await, 1);
    assert_eq!(count(pool, "grants").await, 1);
    assert_eq!(count(pool, "quota_deductions").await, 0);
}

#[tokio::test]
async fn a_grant_that_would_overflow_the_quota_is_refused_and_not_recorded() {
    let mut portal = TestPortal::start().await;
    register(&mut portal, "alpha", 1).await;
    let pool = portal.quotas.database().pool().clone();
    sqlx::query("UPDATE channels SET total = $1 WHERE channel_id = 'alpha'")
        .bind(i64::MAX - 10)
        .execute(&pool)
        .await
        .unwrap();
    assert_status(
        portal
            .client
            .grant_quota(GrantQuotaRequest {
                request_id: "g-big".into(),
                channel_id: "alpha".into(),
                points: 11,
            })
            .await,
        Code::InvalidArgument,
        "invalid points: granting 11 would overflow",
    );
    assert_eq!(
        portal_barrier::quota(&mut portal, "alpha").await.total,
        i64::MAX - 10
    );
    assert_eq!(count(&pool, "grants").await, 1);
}
