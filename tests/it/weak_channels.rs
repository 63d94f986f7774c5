//! Third-party channels that guarantee less than the reference channel (DESIGN §9): no null
//! compensation, no anti-hanging, flaky and slow. The mall heals what they let through: a
//! deduct that lands after its step stopped holding points gets a corrective refund, so a
//! cancelled order never keeps anybody's points.

use std::sync::atomic::Ordering;
use std::time::Duration;

use async_nats::jetstream;
use jifen_proto::v1::{
    DeductPointsRequest, DeductQuotaRequest, DeductionState, OrderState, QuotaDeduction,
    QuotaDeductionState, QuotaOutcomeEvent, StepState,
};
use jifen_tests::invariants::assert_mesh_consistent;
use jifen_tests::mesh::START_POINTS;
use jifen_tests::{TestMesh, WeakChannel, eventually};
use prost::Message;
use tokio::task::JoinSet;

/// The user spends all its points at the channel on something else (after a pre-check passed).
async fn spend_everything_elsewhere(mesh: &mut TestMesh, channel_id: &str, user_id: &str) {
    mesh.channel(channel_id)
        .client
        .deduct_points(DeductPointsRequest {
            order_id: "elsewhere".into(),
            user_id: user_id.into(),
            points: START_POINTS,
        })
        .await
        .unwrap();
}

fn corrective_refunds() -> u64 {
    jifen_mesh::metrics::CORRECTIVE_REFUNDS
        .with_label_values(&["points"])
        .get()
}

#[tokio::test]
async fn a_deduct_that_lands_after_its_refund_at_a_channel_without_anti_hanging_is_refunded() {
    let mut mesh = TestMesh::start(&["alpha"], &["u1"]).await;
    let weak = WeakChannel::start("weak", &["u1"], START_POINTS).await;
    mesh.attach_channel("weak", &weak.endpoint()).await;
    let corrected_before = corrective_refunds();

    // The weak channel is in maintenance: its deduct waits in back-off. Meanwhile alpha's line
    // is rejected (u1's alpha points are spent after the pre-check), so the order compensates
    // and the refund reaches the weak channel first: NOT_FOUND, nothing recorded.
    weak.faults.refuse_deducts.store(true, Ordering::Relaxed);
    mesh.stop_connector("alpha").await;
    mesh.submit("late-1", &[("weak", "u1", 300), ("alpha", "u1", 6_000)])
        .await
        .unwrap();
    spend_everything_elsewhere(&mut mesh, "alpha", "u1").await;
    mesh.start_connector("alpha").await;
    let cancelled = mesh.settled("late-1").await;
    assert_eq!(cancelled.state(), OrderState::Cancelled);
    assert_eq!(
        weak.deduction("late-1", "u1"),
        None,
        "the refund found nothing"
    );
    assert_eq!(weak.deducts_applied(), 0);

    // Maintenance ends: the deduct is delivered again and takes the points.
    weak.faults.refuse_deducts.store(false, Ordering::Relaxed);
    eventually(
        "the late deduct to land",
        Duration::from_secs(20),
        || async { (weak.deducts_applied() == 1).then_some(()) },
    )
    .await;
    eventually(
        "the corrective refund to give the points back",
        Duration::from_secs(20),
        || async {
            (weak.deduction("late-1", "u1") == Some((DeductionState::Refunded, 300))).then_some(())
        },
    )
    .await;
    assert_eq!(weak.balance("u1"), START_POINTS);
    let healed = mesh
        .order_when("late-1", "the step to settle", |order| {
            order
                .lines
                .iter()
                .all(|l| matches!(l.state(), StepState::Refunded | StepState::Rejected))
        })
        .await;
    assert_eq!(healed.state(), OrderState::Cancelled, "it stays cancelled");
    let correction = healed
        .history
        .iter()
        .find(|h| h.kind == "corrective_refund")
        .expect("the correction is in the history");
    assert!(correction.detail.contains("channel weak"), "{correction:?}");
    assert!(corrective_refunds() > corrected_before);
    let totals = weak.totals();
    assert_eq!(totals.credited, totals.balances + totals.held, "{totals:?}");
    assert_mesh_consistent(&mesh).await;
}

#[tokio::test]
async fn a_flaky_slow_channel_without_null_compensation_never_leaves_points_with_a_cancelled_order()
{
    let mut mesh = TestMesh::start(&["alpha"], &["u1", "u2", "u3"]).await;
    let users = ["u1", "u2", "u3"];
    let weak = WeakChannel::start("weak", &users, START_POINTS).await;
    mesh.attach_channel("weak", &weak.endpoint()).await;
    weak.faults
        .fail_before_permille
        .store(150, Ordering::Relaxed);
    weak.faults
        .fail_after_permille
        .store(150, Ordering::Relaxed);
    weak.faults.max_delay_ms.store(40, Ordering::Relaxed);

    // 30 orders race for alpha's points: each user can pay 3 of their 10. Alpha's commands
    // wait until every order is in, so all pass the pre-check and most are compensated,
    // while the weak channel's deducts and refunds cross each other.
    mesh.stop_connector("alpha").await;
    let mall = mesh.mall().client.clone();
    let mut submits = JoinSet::new();
    for i in 0..30 {
        let user = users[i % users.len()];
        let mut mall = mall.clone();
        submits.spawn(async move {
            let order_id = format!("race-{i}");
            let lines = [("weak", user, 100), ("alpha", user, 3_000)];
            mall.submit_order(jifen_tests::mesh::order_request(&order_id, &lines))
                .await
                .map(|_| order_id)
        });
    }
    let mut order_ids = Vec::new();
    while let Some(submitted) = submits.join_next().await {
        order_ids.push(submitted.unwrap().unwrap());
    }
    mesh.start_connector("alpha").await;

    let mut completed = 0;
    for order_id in &order_ids {
        let settled = mesh.settled(order_id).await;
        if settled.state() == OrderState::Completed {
            completed += 1;
        }
    }
    assert_eq!(completed, 9, "three orders per user fit in alpha's points");
    // Late deducts keep arriving after their orders settled: wait until no command is left on
    // the bus, and every order holds at the weak channel exactly what its state says.
    let mut states = Vec::new();
    for order_id in &order_ids {
        let user = users[order_id[5..].parse::<usize>().unwrap() % users.len()];
        states.push((order_id.clone(), user, mesh.order(order_id).await.state()));
    }
    let js = jetstream::new(mesh.nats.connect().await);
    eventually(
        "every order to hold what its state says, with the bus quiet",
        Duration::from_secs(60),
        || {
            let (js, weak, states) = (js.clone(), &weak, &states);
            async move {
                let commands = js
                    .get_stream("JIFEN_CMD")
                    .await
                    .ok()?
                    .info()
                    .await
                    .ok()?
                    .state
                    .messages;
                let events = js
                    .get_stream("JIFEN_EVT")
                    .await
                    .ok()?
                    .info()
                    .await
                    .ok()?
                    .state
                    .messages;
                let holds_right = states.iter().all(|(order_id, user, state)| {
                    let held = weak.deduction(order_id, user);
                    match state {
                        OrderState::Completed => held == Some((DeductionState::Deducted, 100)),
                        _ => !matches!(held, Some((DeductionState::Deducted, _))),
                    }
                });
                (commands == 0 && events == 0 && holds_right).then_some(())
            }
        },
    )
    .await;
    let totals = weak.totals();
    assert_eq!(totals.credited, totals.balances + totals.held, "{totals:?}");
    assert_eq!(totals.held, 100 * completed);
    assert_mesh_consistent(&mesh).await;
}

#[tokio::test]
async fn a_quota_deducted_for_a_cancelled_order_is_refunded_at_the_portal() {
    let mut mesh = TestMesh::start(&["alpha", "beta"], &["u1"]).await;
    // Cancelled before any quota was asked for: beta rejects (u1's points spent meanwhile).
    mesh.stop_connector("beta").await;
    mesh.submit("q-1", &[("alpha", "u1", 100), ("beta", "u1", 200)])
        .await
        .unwrap();
    spend_everything_elsewhere(&mut mesh, "beta", "u1").await;
    mesh.start_connector("beta").await;
    assert_eq!(mesh.settled("q-1").await.state(), OrderState::Cancelled);
    let used_before = mesh.quota_used("alpha").await;

    // Its quota step was skipped (never asked for). A quota deduct for it lands anyway (a
    // stray command, a weak ledger), and its event reaches the saga.
    let deduction = mesh
        .portal
        .client
        .deduct_quota(DeductQuotaRequest {
            order_id: "q-1".into(),
            channel_id: "alpha".into(),
            points: 100,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(deduction.quota_deduction.is_some());
    assert_eq!(mesh.quota_used("alpha").await, used_before + 100);
    let js = jetstream::new(mesh.nats.connect().await);
    let event = QuotaOutcomeEvent {
        quota_deduction: Some(QuotaDeduction {
            order_id: "q-1".into(),
            channel_id: "alpha".into(),
            points: 100,
            state: QuotaDeductionState::Deducted.into(),
            reason: String::new(),
            updated_at_unix_ms: 0,
            hold_expires_at_unix_ms: 0,
        }),
    };
    js.publish("jifen.evt.portal.deducted", event.encode_to_vec().into())
        .await
        .unwrap()
        .await
        .unwrap();
    let healed = mesh
        .order_when("q-1", "the quota correction", |order| {
            order
                .history
                .iter()
                .any(|h| h.kind == "corrective_refund" && h.detail.contains("portal quota"))
                && order
                    .quotas
                    .iter()
                    .all(|q| q.state() != StepState::Refunding)
        })
        .await;
    assert_eq!(healed.state(), OrderState::Cancelled);
    assert!(
        healed
            .quotas
            .iter()
            .any(|q| q.channel_id == "alpha" && q.state() == StepState::Refunded),
        "{:?}",
        healed.quotas
    );
    eventually(
        "the quota to be given back",
        Duration::from_secs(20),
        || async { (mesh.quota_used("alpha").await == used_before).then_some(()) },
    )
    .await;
    assert!(
        jifen_mesh::metrics::CORRECTIVE_REFUNDS
            .with_label_values(&["quota"])
            .get()
            >= 1
    );
}

#[tokio::test]
async fn an_answer_that_is_not_the_commands_never_marks_a_step_and_is_dead_lettered() {
    let mut mesh = TestMesh::start(&["alpha"], &["u1"]).await;
    let weak = WeakChannel::start("weak", &["u1"], START_POINTS).await;
    mesh.attach_channel("weak", &weak.endpoint()).await;
    weak.faults.misreport_points.store(true, Ordering::Relaxed);
    mesh.submit("odd-1", &[("weak", "u1", 100)]).await.unwrap();
    let flagged = mesh
        .order_when("odd-1", "the order to be flagged", |order| {
            order.needs_attention
        })
        .await;
    assert!(
        flagged
            .reason
            .contains("deducted 101 points for a command of 100"),
        "{}",
        flagged.reason
    );
    assert_eq!(flagged.state(), OrderState::Pending);
    assert_eq!(
        flagged.lines[0].state(),
        StepState::Pending,
        "no step marked"
    );
}
