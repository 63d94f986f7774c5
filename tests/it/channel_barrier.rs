//! The channel's barrier (DESIGN §3) observed over gRPC.

use jifen_proto::v1::{
    CreditPointsRequest, DeductPointsRequest, DeductionState, GetDeductionRequest,
    GetUserPointsRequest, RefundPointsRequest,
};
use jifen_tests::TestChannel;
use jifen_tests::invariants::{assert_channel_consistent, channel_totals};
use tonic::Code;

use crate::assert_status;

pub async fn credit(channel: &mut TestChannel, user: &str, points: i64) -> i64 {
    channel
        .client
        .credit_points(CreditPointsRequest {
            request_id: format!("credit-{user}-{points}"),
            user_id: user.to_owned(),
            points,
        })
        .await
        .unwrap()
        .into_inner()
        .balance
}

pub async fn balance(channel: &mut TestChannel, user: &str) -> i64 {
    channel
        .client
        .get_user_points(GetUserPointsRequest {
            user_id: user.to_owned(),
        })
        .await
        .unwrap()
        .into_inner()
        .balance
}

pub fn deduct(order: &str, user: &str, points: i64) -> DeductPointsRequest {
    DeductPointsRequest {
        order_id: order.to_owned(),
        user_id: user.to_owned(),
        points,
    }
}

pub fn refund(order: &str, user: &str) -> RefundPointsRequest {
    RefundPointsRequest {
        order_id: order.to_owned(),
        user_id: user.to_owned(),
    }
}

#[tokio::test]
async fn a_deduct_takes_points_once_and_a_repeat_returns_the_recorded_outcome() {
    let mut channel = TestChannel::start("alpha").await;
    credit(&mut channel, "alice", 1_000).await;

    let first = channel
        .client
        .deduct_points(deduct("o-1", "alice", 300))
        .await
        .unwrap();
    let first = first.into_inner().deduction.unwrap();
    assert_eq!(first.state(), DeductionState::Deducted);
    assert_eq!((first.channel_id.as_str(), first.points), ("alpha", 300));

    let again = channel
        .client
        .deduct_points(deduct("o-1", "alice", 300))
        .await
        .unwrap();
    assert_eq!(again.into_inner().deduction.unwrap(), first);
    assert_eq!(balance(&mut channel, "alice").await, 700);
    assert_channel_consistent(&channel.ledger).await;
}

#[tokio::test]
async fn a_refund_restores_once_and_repeats_return_the_recorded_refund() {
    let mut channel = TestChannel::start("alpha").await;
    credit(&mut channel, "alice", 1_000).await;
    channel
        .client
        .deduct_points(deduct("o-1", "alice", 300))
        .await
        .unwrap();

    let refunded = channel
        .client
        .refund_points(refund("o-1", "alice"))
        .await
        .unwrap();
    let refunded = refunded.into_inner().deduction.unwrap();
    assert_eq!(refunded.state(), DeductionState::Refunded);
    assert_eq!(refunded.points, 300);
    assert_eq!(balance(&mut channel, "alice").await, 1_000);

    let again = channel
        .client
        .refund_points(refund("o-1", "alice"))
        .await
        .unwrap();
    assert_eq!(again.into_inner().deduction.unwrap(), refunded);
    assert_eq!(balance(&mut channel, "alice").await, 1_000);
    assert_channel_consistent(&channel.ledger).await;
}

#[tokio::test]
async fn a_refund_before_any_deduct_is_a_null_compensation_and_the_late_deduct_is_aborted() {
    let mut channel = TestChannel::start("alpha").await;
    credit(&mut channel, "alice", 1_000).await;

    let null = channel
        .client
        .refund_points(refund("o-1", "alice"))
        .await
        .unwrap();
    let null = null.into_inner().deduction.unwrap();
    assert_eq!((null.state(), null.points), (DeductionState::Refunded, 0));

    assert_status(
        channel
            .client
            .deduct_points(deduct("o-1", "alice", 300))
            .await,
        Code::Aborted,
        "already refunded",
    );
    assert_eq!(balance(&mut channel, "alice").await, 1_000);

    // A refund of a user who does not exist is still recorded: the key is what matters.
    let ghost = channel
        .client
        .refund_points(refund("o-2", "nobody"))
        .await
        .unwrap();
    assert_eq!(ghost.into_inner().deduction.unwrap().points, 0);
    assert_channel_consistent(&channel.ledger).await;
}

#[tokio::test]
async fn a_deduct_after_its_refund_is_aborted_and_takes_nothing() {
    let mut channel = TestChannel::start("alpha").await;
    credit(&mut channel, "alice", 1_000).await;
    channel
        .client
        .deduct_points(deduct("o-1", "alice", 300))
        .await
        .unwrap();
    channel
        .client
        .refund_points(refund("o-1", "alice"))
        .await
        .unwrap();

    assert_status(
        channel
            .client
            .deduct_points(deduct("o-1", "alice", 300))
            .await,
        Code::Aborted,
        "o-1",
    );
    assert_eq!(balance(&mut channel, "alice").await, 1_000);
}

#[tokio::test]
async fn a_rejection_is_recorded_and_replayed_even_after_the_balance_grows() {
    let mut channel = TestChannel::start("alpha").await;
    credit(&mut channel, "alice", 100).await;

    assert_status(
        channel
            .client
            .deduct_points(deduct("o-1", "alice", 300))
            .await,
        Code::FailedPrecondition,
        "too few points",
    );
    let recorded = channel
        .client
        .get_deduction(GetDeductionRequest {
            order_id: "o-1".into(),
            user_id: "alice".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .deduction
        .unwrap();
    assert_eq!(recorded.state(), DeductionState::Rejected);
    assert_eq!(recorded.reason, "insufficient points");

    credit(&mut channel, "alice", 1_000).await;
    assert_status(
        channel
            .client
            .deduct_points(deduct("o-1", "alice", 300))
            .await,
        Code::FailedPrecondition,
        "too few points",
    );
    assert_eq!(balance(&mut channel, "alice").await, 1_100);

    // Refunding a rejected key gives nothing back and keeps the rejection.
    let refunded = channel
        .client
        .refund_points(refund("o-1", "alice"))
        .await
        .unwrap();
    let refunded = refunded.into_inner().deduction.unwrap();
    assert_eq!(refunded.state(), DeductionState::Rejected);
    assert_eq!(balance(&mut channel, "alice").await, 1_100);
    assert_channel_consistent(&channel.ledger).await;
}

#[tokio::test]
async fn an_unknown_user_is_not_found_and_stays_so_for_that_key() {
    let mut channel = TestChannel::start("alpha").await;
    assert_status(
        channel
            .client
            .deduct_points(deduct("o-1", "nobody", 5))
            .await,
        Code::NotFound,
        "unknown user nobody",
    );
    credit(&mut channel, "nobody", 100).await;
    assert_status(
        channel
            .client
            .deduct_points(deduct("o-1", "nobody", 5))
            .await,
        Code::NotFound,
        "unknown user nobody",
    );
    assert_status(
        channel
            .client
            .get_user_points(GetUserPointsRequest {
                user_id: "ghost".into(),
            })
            .await,
        Code::NotFound,
        "ghost",
    );
    assert_eq!(balance(&mut channel, "nobody").await, 100);
}

#[tokio::test]
async fn a_repeated_deduct_with_another_amount_is_a_conflict() {
    let mut channel = TestChannel::start("alpha").await;
    credit(&mut channel, "alice", 1_000).await;
    channel
        .client
        .deduct_points(deduct("o-1", "alice", 300))
        .await
        .unwrap();
    assert_status(
        channel
            .client
            .deduct_points(deduct("o-1", "alice", 301))
            .await,
        Code::AlreadyExists,
        "300 points",
    );
    assert_eq!(balance(&mut channel, "alice").await, 700);
}

#[tokio::test]
async fn get_deduction_reports_nothing_recorded_as_not_found() {
    let mut channel = TestChannel::start("alpha").await;
    assert_status(
        channel
            .client
            .get_deduction(GetDeductionRequest {
                order_id: "o-1".into(),
                user_id: "alice".into(),
            })
            .await,
        Code::NotFound,
        "no deduction recorded",
    );
}

#[tokio::test]
async fn credits_are_idempotent_by_request_id() {
    let mut channel = TestChannel::start("alpha").await;
    let request = CreditPointsRequest {
        request_id: "r-1".into(),
        user_id: "alice".into(),
        points: 500,
    };
    assert_eq!(
        channel
            .client
            .credit_points(request.clone())
            .await
            .unwrap()
            .into_inner()
            .balance,
        500
    );
    assert_eq!(
        channel
            .client
            .credit_points(request.clone())
            .await
            .unwrap()
            .into_inner()
            .balance,
        500
    );
    assert_status(
        channel
            .client
            .credit_points(CreditPointsRequest {
                points: 600,
                ..request
            })
            .await,
        Code::AlreadyExists,
        "r-1",
    );
    let totals = channel_totals(&channel.ledger).await;
    assert_eq!((totals.credited, totals.balances), (500, 500));
}

#[tokio::test]
async fn the_ledger_survives_a_restart_on_the_same_database() {
    let mut channel = TestChannel::start("alpha").await;
    credit(&mut channel, "alice", 1_000).await;
    channel
        .client
        .deduct_points(deduct("o-1", "alice", 300))
        .await
        .unwrap();
    channel.server.stop().await;

    let app = jifen_channel::ChannelApp::build(jifen_channel::ChannelConfig {
        tls: jifen_mesh::tls::TlsArgs::default(),
        channel_id: "alpha".into(),
        listen: "127.0.0.1:0".parse().unwrap(),
        database_url: channel.db.url().to_owned(),
        db_max_connections: 2,
        hold_ttl: jifen_mesh::barrier::DEFAULT_HOLD_TTL,
        shutdown: jifen_mesh::config::ShutdownArgs {
            shutdown_grace_secs: 0,
        },
    })
    .await
    .unwrap();
    let ledger = app.ledger().clone();
    let user = jifen_mesh::domain::UserId::parse("user_id", "alice").unwrap();
    assert_eq!(ledger.balance(&user).await.unwrap(), 700);
    let order = jifen_mesh::domain::OrderId::parse("order_id", "o-1").unwrap();
    assert_eq!(ledger.deduction(&order, &user).await.unwrap().points, 300);
}
