//! The interleavings of holds that matter: a freeze whose answer was lost, a cancel that
//! overtook its freeze, a confirm delivered twice, a hold lapsing before its confirm.

use std::time::Duration;

use jifen_mesh::barrier::LedgerState;
use jifen_mesh::domain::{OrderId, Points, UserId};
use jifen_proto::v1::{ConfirmFreezeRequest, OrderState, StepState};
use jifen_tests::TestMesh;
use jifen_tests::eventually;
use jifen_tests::invariants::assert_mesh_consistent;
use jifen_tests::mesh::START_POINTS;

use super::hold_at;
use super::orders::channel_state;
use crate::admin::{admin, authed, one_dead_letter};
use jifen_proto::v1::{CompensateOrderRequest, SettleConfirmingOrderRequest};

const TTL: Duration = Duration::from_secs(600);

fn key(order_id: &str) -> (OrderId, UserId) {
    (
        OrderId::parse("order_id", order_id).unwrap(),
        UserId::parse("user_id", "u1").unwrap(),
    )
}

#[tokio::test]
async fn a_freeze_whose_answer_was_lost_is_answered_by_its_record_and_holds_once() {
    let mut mesh = TestMesh::start(&["alpha"], &["u1"]).await;
    hold_at(&mut mesh, "alpha", TTL).await;
    // The first call froze the points; its answer never came back. The command's next
    // delivery must find the hold, not place a second.
    let (order, user) = key("lost-1");
    mesh.channel("alpha")
        .ledger
        .freeze(&order, &user, Points::parse("points", 100).unwrap())
        .await
        .unwrap();
    mesh.submit("lost-1", &[("alpha", "u1", 100)])
        .await
        .unwrap();
    let settled = mesh.settled("lost-1").await;
    assert_eq!(settled.state(), OrderState::Completed, "{settled:?}");
    assert_eq!(mesh.balance("alpha", "u1").await, START_POINTS - 100);
    assert_eq!(
        channel_state(&mut mesh, "alpha", "lost-1", "u1").await,
        Some((LedgerState::Confirmed, 100))
    );
    assert_mesh_consistent(&mesh).await;
}

#[tokio::test]
async fn a_cancel_that_overtook_its_freeze_refuses_the_freeze_and_the_order_takes_nothing() {
    let mut mesh = TestMesh::start(&["alpha", "beta"], &["u1"]).await;
    hold_at(&mut mesh, "alpha", TTL).await;
    hold_at(&mut mesh, "beta", TTL).await;
    // A cancel of the key arrived first (null cancel): the freeze must not hang after it.
    let (order, user) = key("early-1");
    let null = mesh
        .channel("alpha")
        .ledger
        .cancel(&order, &user)
        .await
        .unwrap();
    assert_eq!((null.state, null.points), (LedgerState::Cancelled, 0));
    mesh.submit("early-1", &[("alpha", "u1", 100), ("beta", "u1", 40)])
        .await
        .unwrap();
    let settled = mesh.settled("early-1").await;
    assert_eq!(settled.state(), OrderState::Cancelled, "{settled:?}");
    assert_eq!(
        channel_state(&mut mesh, "alpha", "early-1", "u1").await,
        Some((LedgerState::Cancelled, 0)),
        "the freeze after the cancel took nothing"
    );
    assert_eq!(mesh.balance("alpha", "u1").await, START_POINTS);
    assert_eq!(mesh.balance("beta", "u1").await, START_POINTS);
    assert_eq!(mesh.quota_used("alpha").await, 0);
    assert_eq!(mesh.quota_used("beta").await, 0);
    assert_mesh_consistent(&mesh).await;
}

#[tokio::test]
async fn a_confirm_delivered_twice_spends_once() {
    let mut mesh = TestMesh::start(&["alpha"], &["u1"]).await;
    hold_at(&mut mesh, "alpha", TTL).await;
    mesh.submit("twice-1", &[("alpha", "u1", 100)])
        .await
        .unwrap();
    assert_eq!(mesh.settled("twice-1").await.state(), OrderState::Completed);
    for _ in 0..2 {
        let again = mesh
            .channel("alpha")
            .client
            .confirm_freeze(ConfirmFreezeRequest {
                order_id: "twice-1".into(),
                user_id: "u1".into(),
            })
            .await
            .unwrap()
            .into_inner()
            .deduction
            .unwrap();
        assert_eq!(again.points, 100);
        assert_eq!(again.state(), jifen_proto::v1::DeductionState::Confirmed);
    }
    assert_eq!(mesh.balance("alpha", "u1").await, START_POINTS - 100);
    assert_mesh_consistent(&mesh).await;
}

/// An order with a held alpha line of 100 and a held beta line of 40, whose confirms go out
/// while alpha's channel is down: beta's connector waits until alpha's hold stands. Returns
/// when alpha's hold lapses.
async fn confirm_while_alpha_is_down(mesh: &mut TestMesh, order_id: &str) -> i64 {
    mesh.stop_connector("beta").await;
    mesh.submit(order_id, &[("alpha", "u1", 100), ("beta", "u1", 40)])
        .await
        .unwrap();
    mesh.order_when(order_id, "alpha's hold to stand", |order| {
        order
            .lines
            .iter()
            .any(|l| l.channel_id == "alpha" && l.state() == StepState::Frozen)
    })
    .await;
    let (order, user) = key(order_id);
    let lapses = mesh
        .channel("alpha")
        .ledger
        .deduction(&order, &user)
        .await
        .unwrap()
        .expires_at_ms;
    mesh.channel("alpha").stop().await;
    mesh.start_connector("beta").await;
    mesh.order_when(order_id, "to confirm", |order| {
        order.state() == OrderState::Confirming
    })
    .await;
    lapses
}

#[tokio::test]
async fn a_confirm_that_cannot_land_before_its_hold_lapses_is_an_operators_dead_letter() {
    let mut mesh = TestMesh::start(&["alpha", "beta"], &["u1"]).await;
    let lapse = Duration::from_secs(3);
    mesh.channel("alpha").stop().await;
    mesh.channel("alpha").restart_holding(lapse).await;
    hold_at(&mut mesh, "alpha", lapse).await;
    hold_at(&mut mesh, "beta", TTL).await;

    confirm_while_alpha_is_down(&mut mesh, "lapse-1").await;
    let admin = admin(&mut mesh).await;
    let letter = one_dead_letter(&admin, "lapse-1").await;
    assert_eq!(letter.kind, "hold_expiring", "{letter:?}");
    assert!(letter.subject.ends_with(".confirm"), "{letter:?}");
    let order = mesh.order("lapse-1").await;
    assert_eq!(order.state(), OrderState::Confirming, "{order:?}");
    assert!(order.needs_attention, "{order:?}");

    // Back up, the channel releases the lapsed hold by itself: the points are the user's again.
    mesh.channel("alpha").restart().await;
    eventually(
        "alpha's lapsed hold to be released",
        Duration::from_secs(30),
        || {
            let ledger = mesh.channels["alpha"].ledger.clone();
            async move {
                let (order, user) = key("lapse-1");
                let entry = ledger.deduction(&order, &user).await.ok()?;
                (entry.state == LedgerState::Cancelled).then_some(())
            }
        },
    )
    .await;
    assert_eq!(mesh.balance("alpha", "u1").await, START_POINTS);

    // The operator took alpha's points by hand: every hold is spent, the order completes and
    // its dead letter closes.
    let mut admin = admin.clone();
    let settled = admin
        .settle_confirming_order(authed(SettleConfirmingOrderRequest {
            order_id: "lapse-1".into(),
            completed: true,
            note: "alpha debited 100 by hand, ticket OPS-8".into(),
        }))
        .await
        .unwrap()
        .into_inner()
        .order
        .unwrap();
    assert_eq!(settled.state(), OrderState::Completed, "{settled:?}");
    assert!(!settled.needs_attention, "{settled:?}");
    assert!(
        crate::admin::dead_letters(&mut admin, "lapse-1")
            .await
            .is_empty()
    );
    let again = admin
        .settle_confirming_order(authed(SettleConfirmingOrderRequest {
            order_id: "lapse-1".into(),
            completed: true,
            note: "twice".into(),
        }))
        .await
        .unwrap_err();
    assert_eq!(again.code(), tonic::Code::FailedPrecondition, "{again:?}");
}

#[tokio::test]
async fn a_hold_gone_when_its_confirm_lands_flags_the_order_for_an_operator() {
    let mut mesh = TestMesh::start(&["alpha", "beta"], &["u1"]).await;
    hold_at(&mut mesh, "alpha", TTL).await;
    hold_at(&mut mesh, "beta", TTL).await;
    // Alpha's hold stands; then the partner releases it by itself (its own timeout, its
    // operator) before the confirm reaches it. The portal's confirms land last, after the loss
    // is known: they must not complete the order.
    mesh.stop_connector("beta").await;
    mesh.submit("gone-1", &[("alpha", "u1", 100), ("beta", "u1", 40)])
        .await
        .unwrap();
    mesh.order_when(
        "gone-1",
        "alpha's hold and the quota holds to stand",
        |order| {
            order
                .lines
                .iter()
                .any(|l| l.channel_id == "alpha" && l.state() == StepState::Frozen)
                && order.quotas.iter().all(|q| q.state() == StepState::Frozen)
        },
    )
    .await;
    mesh.stop_connector("alpha").await;
    mesh.stop_connector("portal").await;
    let (order, user) = key("gone-1");
    let released = mesh
        .channel("alpha")
        .ledger
        .cancel(&order, &user)
        .await
        .unwrap();
    assert_eq!(
        (released.state, released.points),
        (LedgerState::Cancelled, 100)
    );
    mesh.start_connector("beta").await;
    mesh.order_when("gone-1", "beta's hold to be confirmed", |order| {
        order
            .lines
            .iter()
            .any(|l| l.channel_id == "beta" && l.state() == StepState::Confirmed)
    })
    .await;
    mesh.start_connector("alpha").await;
    mesh.order_when("gone-1", "alpha's hold to be found gone", |order| {
        order
            .lines
            .iter()
            .any(|l| l.channel_id == "alpha" && l.state() == StepState::Cancelled)
    })
    .await;
    mesh.start_connector("portal").await;
    mesh.order_when("gone-1", "the quota holds to be confirmed", |order| {
        order
            .quotas
            .iter()
            .all(|q| q.state() == StepState::Confirmed)
    })
    .await;
    let flagged = mesh
        .order_when("gone-1", "to be flagged", |order| order.needs_attention)
        .await;
    assert_eq!(flagged.state(), OrderState::Confirming, "{flagged:?}");
    assert!(
        flagged.reason.contains("hold was gone"),
        "{}",
        flagged.reason
    );
    let alpha = flagged
        .lines
        .iter()
        .find(|l| l.channel_id == "alpha")
        .unwrap();
    assert_eq!(alpha.state(), StepState::Cancelled);
    let beta = flagged
        .lines
        .iter()
        .find(|l| l.channel_id == "beta")
        .unwrap();
    assert_eq!(beta.state(), StepState::Confirmed);
    assert_eq!(mesh.balance("alpha", "u1").await, START_POINTS);

    // Giving up is no longer the machine's to do (beta's points are spent): refused.
    let mut admin = admin(&mut mesh).await;
    let refused = admin
        .compensate_order(authed(CompensateOrderRequest {
            order_id: "gone-1".into(),
            reason: "give up".into(),
        }))
        .await
        .unwrap_err();
    assert_eq!(
        refused.code(),
        tonic::Code::FailedPrecondition,
        "{refused:?}"
    );
    // The operator gave beta's points back by hand: the order ends cancelled as it stands.
    let settled = admin
        .settle_confirming_order(authed(SettleConfirmingOrderRequest {
            order_id: "gone-1".into(),
            completed: false,
            note: "beta credited 40 back by hand, ticket OPS-7".into(),
        }))
        .await
        .unwrap()
        .into_inner()
        .order
        .unwrap();
    assert_eq!(settled.state(), OrderState::Cancelled, "{settled:?}");
    assert!(!settled.needs_attention, "{settled:?}");
    assert!(
        settled
            .lines
            .iter()
            .all(|l| l.state() == StepState::Cancelled),
        "{settled:?}"
    );
    assert!(
        settled.history.iter().any(|h| h.kind == "admin_settle"),
        "{settled:?}"
    );
}
