//! TCC orders end to end: held, then confirmed; or held, then released — and mixed with saga
//! lines in one order.

use jifen_mesh::barrier::LedgerState;
use jifen_mesh::domain::{ChannelId, OrderId, UserId};
use jifen_proto::v1::{Order, OrderState, Protocol, StepState};
use jifen_tests::TestMesh;
use jifen_tests::invariants::assert_mesh_consistent;
use jifen_tests::mesh::START_POINTS;

use super::hold_at;

const TTL: std::time::Duration = std::time::Duration::from_secs(600);

/// What `channel` recorded for `user`'s line of `order_id`.
pub(super) async fn channel_state(
    mesh: &mut TestMesh,
    channel: &str,
    order_id: &str,
    user: &str,
) -> Option<(LedgerState, i64)> {
    let order = OrderId::parse("order_id", order_id).unwrap();
    let user = UserId::parse("user_id", user).unwrap();
    mesh.channel(channel)
        .ledger
        .deduction(&order, &user)
        .await
        .ok()
        .map(|e| (e.state, e.points))
}

/// What the portal recorded for `channel`'s quota of `order_id`.
pub(super) async fn quota_state(
    mesh: &TestMesh,
    channel: &str,
    order_id: &str,
) -> Option<(LedgerState, i64)> {
    let order = OrderId::parse("order_id", order_id).unwrap();
    let channel = ChannelId::parse("channel_id", channel).unwrap();
    mesh.portal
        .quotas
        .deduction(&order, &channel)
        .await
        .ok()
        .map(|e| (e.state, e.points))
}

fn history_kinds(order: &Order) -> Vec<String> {
    order.history.iter().map(|h| h.kind.clone()).collect()
}

#[tokio::test]
async fn a_tcc_order_holds_everything_at_once_then_confirms_and_never_refunds() {
    let mut mesh = TestMesh::start(&["alpha", "beta"], &["u1"]).await;
    hold_at(&mut mesh, "alpha", TTL).await;
    hold_at(&mut mesh, "beta", TTL).await;

    let submitted = mesh
        .submit("tcc-1", &[("alpha", "u1", 100), ("beta", "u1", 40)])
        .await
        .unwrap();
    // The quotas are held with the lines, not after them.
    assert!(
        submitted
            .quotas
            .iter()
            .all(|q| q.state() == StepState::Pending && q.protocol() == Protocol::Tcc),
        "{submitted:?}"
    );
    assert!(
        submitted
            .lines
            .iter()
            .all(|l| l.protocol() == Protocol::Tcc)
    );

    let settled = mesh.settled("tcc-1").await;
    assert_eq!(settled.state(), OrderState::Completed, "{settled:?}");
    assert!(
        settled
            .lines
            .iter()
            .all(|l| l.state() == StepState::Confirmed)
    );
    assert!(
        settled
            .quotas
            .iter()
            .all(|q| q.state() == StepState::Confirmed)
    );
    let kinds = history_kinds(&settled);
    assert!(kinds.contains(&"confirming".to_owned()), "{kinds:?}");
    assert!(
        !kinds
            .iter()
            .any(|k| k.contains("refund") || k == "compensating"),
        "a TCC order that succeeds never refunds: {kinds:?}"
    );

    assert_eq!(
        channel_state(&mut mesh, "alpha", "tcc-1", "u1").await,
        Some((LedgerState::Confirmed, 100))
    );
    assert_eq!(
        channel_state(&mut mesh, "beta", "tcc-1", "u1").await,
        Some((LedgerState::Confirmed, 40))
    );
    assert_eq!(
        quota_state(&mesh, "alpha", "tcc-1").await,
        Some((LedgerState::Confirmed, 100))
    );
    assert_eq!(mesh.balance("alpha", "u1").await, START_POINTS - 100);
    assert_eq!(mesh.balance("beta", "u1").await, START_POINTS - 40);
    assert_eq!(mesh.quota_used("alpha").await, 100);
    assert_mesh_consistent(&mesh).await;
}

#[tokio::test]
async fn a_failing_tcc_order_leaves_every_balance_as_before_with_holds_only_released() {
    let mut mesh = TestMesh::start(&["alpha", "beta"], &["u1"]).await;
    hold_at(&mut mesh, "alpha", TTL).await;
    hold_at(&mut mesh, "beta", TTL).await;
    // Beta's freeze is refused: the user has too few points there (the pre-check reads
    // balances, so the points go elsewhere after it).
    mesh.stop_connector("beta").await;
    mesh.submit("tcc-short", &[("alpha", "u1", 100), ("beta", "u1", 500)])
        .await
        .unwrap();
    mesh.channel("beta")
        .client
        .deduct_points(jifen_proto::v1::DeductPointsRequest {
            order_id: "elsewhere".into(),
            user_id: "u1".into(),
            points: START_POINTS - 10,
        })
        .await
        .unwrap();
    let before_beta = mesh.balance("beta", "u1").await;
    mesh.start_connector("beta").await;

    let settled = mesh.settled("tcc-short").await;
    assert_eq!(settled.state(), OrderState::Cancelled, "{settled:?}");
    let kinds = history_kinds(&settled);
    assert!(
        !kinds.iter().any(|k| k.contains("refund")),
        "a failing TCC order releases holds, it refunds nothing: {kinds:?}"
    );
    // Alpha's hold was placed and released; beta's never taken; the quota holds released.
    let alpha = channel_state(&mut mesh, "alpha", "tcc-short", "u1").await;
    assert!(
        matches!(alpha, Some((LedgerState::Cancelled, 0 | 100))),
        "{alpha:?}"
    );
    assert_eq!(
        channel_state(&mut mesh, "beta", "tcc-short", "u1")
            .await
            .map(|s| s.0),
        Some(LedgerState::Rejected)
    );
    for channel in ["alpha", "beta"] {
        let quota = quota_state(&mesh, channel, "tcc-short").await;
        assert!(
            matches!(quota, Some((LedgerState::Cancelled, _))),
            "{channel}: {quota:?}"
        );
        assert_eq!(mesh.quota_used(channel).await, 0);
    }
    assert_eq!(mesh.balance("alpha", "u1").await, START_POINTS);
    assert_eq!(mesh.balance("beta", "u1").await, before_beta);
    assert!(
        settled
            .lines
            .iter()
            .all(|l| matches!(l.state(), StepState::Cancelled | StepState::Rejected)),
        "{settled:?}"
    );
    assert_mesh_consistent(&mesh).await;
}

#[tokio::test]
async fn a_mixed_order_deducts_its_saga_line_and_confirms_its_holds() {
    let mut mesh = TestMesh::start(&["alpha", "beta"], &["u1"]).await;
    hold_at(&mut mesh, "alpha", TTL).await;

    let settled = {
        mesh.submit("mixed-1", &[("alpha", "u1", 100), ("beta", "u1", 30)])
            .await
            .unwrap();
        mesh.settled("mixed-1").await
    };
    assert_eq!(settled.state(), OrderState::Completed, "{settled:?}");
    let line = |channel: &str| {
        settled
            .lines
            .iter()
            .find(|l| l.channel_id == channel)
            .cloned()
            .unwrap()
    };
    assert_eq!(line("alpha").protocol(), Protocol::Tcc);
    assert_eq!(line("alpha").state(), StepState::Confirmed);
    assert_eq!(line("beta").protocol(), Protocol::Saga);
    assert_eq!(line("beta").state(), StepState::Deducted);
    // The quotas of an order with a held line are held with it, both of them.
    assert!(
        settled
            .quotas
            .iter()
            .all(|q| q.protocol() == Protocol::Tcc && q.state() == StepState::Confirmed),
        "{settled:?}"
    );
    assert_eq!(
        channel_state(&mut mesh, "beta", "mixed-1", "u1").await,
        Some((LedgerState::Deducted, 30))
    );

    // The same mix failing at the saga line: the hold is released, nothing spent anywhere.
    mesh.stop_connector("beta").await;
    mesh.submit("mixed-2", &[("alpha", "u1", 50), ("beta", "u1", 6_000)])
        .await
        .unwrap();
    mesh.channel("beta")
        .client
        .deduct_points(jifen_proto::v1::DeductPointsRequest {
            order_id: "elsewhere".into(),
            user_id: "u1".into(),
            points: START_POINTS - 30,
        })
        .await
        .unwrap();
    mesh.start_connector("beta").await;
    let failed = mesh.settled("mixed-2").await;
    assert_eq!(failed.state(), OrderState::Cancelled, "{failed:?}");
    let alpha = channel_state(&mut mesh, "alpha", "mixed-2", "u1").await;
    assert!(
        matches!(alpha, Some((LedgerState::Cancelled, _))),
        "{alpha:?}"
    );
    assert_eq!(
        mesh.quota_used("alpha").await,
        100,
        "only the completed order's quota"
    );
    assert_eq!(mesh.balance("alpha", "u1").await, START_POINTS - 100);
    assert_mesh_consistent(&mesh).await;
}

#[tokio::test]
async fn a_mixed_order_whose_hold_is_refused_never_deducts_its_saga_line() {
    let mut mesh = TestMesh::start(&["alpha", "beta"], &["u1"]).await;
    hold_at(&mut mesh, "alpha", TTL).await;
    mesh.stop_connector("alpha").await;
    let submitted = mesh
        .submit("mixed-3", &[("alpha", "u1", 500), ("beta", "u1", 30)])
        .await
        .unwrap();
    let beta = |order: &Order| {
        order
            .lines
            .iter()
            .find(|l| l.channel_id == "beta")
            .map(|l| l.state())
    };
    // The line that cannot be held waits for the holds.
    assert_eq!(beta(&submitted), Some(StepState::Waiting), "{submitted:?}");
    mesh.channel("alpha")
        .client
        .deduct_points(jifen_proto::v1::DeductPointsRequest {
            order_id: "elsewhere".into(),
            user_id: "u1".into(),
            points: START_POINTS - 10,
        })
        .await
        .unwrap();
    mesh.start_connector("alpha").await;
    let settled = mesh.settled("mixed-3").await;
    assert_eq!(settled.state(), OrderState::Cancelled, "{settled:?}");
    assert_eq!(beta(&settled), Some(StepState::Skipped), "{settled:?}");
    assert_eq!(
        channel_state(&mut mesh, "beta", "mixed-3", "u1").await,
        None,
        "beta never saw the order: nothing to refund"
    );
    assert_eq!(mesh.balance("beta", "u1").await, START_POINTS);
    assert_mesh_consistent(&mesh).await;
}
