//! A deduct that lands after its line was refunded (DESIGN §9: a channel without anti-hanging
//! takes a deduct that overtook its refund) is always refunded again — whether the channel
//! reports it or an operator does after its answer was lost.

use std::time::Duration;

use jifen_mesh::bus::subjects::ORDER_ID_HEADER;
use jifen_proto::v1::{
    Deduction, DeductionState, OrderState, PointsOutcomeEvent, RecordDeductOutcomeRequest,
    StepState,
};
use jifen_tests::TestMesh;
use jifen_tests::mesh::START_POINTS;
use prost::Message;

use crate::admin::{admin, authed};

/// What a channel's connector would publish for a line of `order_id`.
async fn report(
    mesh: &TestMesh,
    order_id: &str,
    channel_id: &str,
    state: DeductionState,
    points: i64,
) {
    let token = match state {
        DeductionState::Deducted => "deducted",
        DeductionState::Refunded => "refunded",
        _ => "rejected",
    };
    let payload = PointsOutcomeEvent {
        deduction: Some(Deduction {
            order_id: order_id.into(),
            channel_id: channel_id.into(),
            user_id: "u1".into(),
            points,
            state: state.into(),
            reason: "staged".into(),
            updated_at_unix_ms: 0,
            hold_expires_at_unix_ms: 0,
        }),
        deduct_may_follow: false,
        captured: Default::default(),
        exchanges: Vec::new(),
    }
    .encode_to_vec();
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(ORDER_ID_HEADER, order_id);
    let js = async_nats::jetstream::new(mesh.nats.connect().await);
    js.publish_with_headers(
        format!("jifen.evt.channel.{channel_id}.{token}"),
        headers,
        payload.into(),
    )
    .await
    .unwrap()
    .await
    .unwrap();
}

#[tokio::test]
async fn an_operator_who_finds_a_late_deduct_on_a_cancelled_order_gets_it_refunded() {
    let mut mesh = TestMesh::start(&["alpha", "beta"], &["u1"]).await;
    // Alpha's deduct is in flight (its connector is away); beta rejects its line.
    mesh.stop_connector("alpha").await;
    mesh.stop_connector("beta").await;
    mesh.submit("late-1", &[("alpha", "u1", 300), ("beta", "u1", 200)])
        .await
        .unwrap();
    report(&mesh, "late-1", "beta", DeductionState::Rejected, 0).await;
    // Alpha's refund found no trade (a channel without anti-hanging answers so while its
    // deduct is still on the way): nothing to give back, and the order is cancelled.
    report(&mesh, "late-1", "alpha", DeductionState::Refunded, 0).await;
    let cancelled = mesh
        .order_when("late-1", "to be cancelled", |o| {
            o.state() == OrderState::Cancelled
        })
        .await;
    assert!(
        cancelled
            .lines
            .iter()
            .any(|l| l.channel_id == "alpha" && l.state() == StepState::Refunded)
    );

    // The deduct landed and its answer was lost; the operator saw it at the channel.
    let mut admin = admin(&mut mesh).await;
    let recorded = admin
        .record_deduct_outcome(authed(RecordDeductOutcomeRequest {
            order_id: "late-1".into(),
            channel_id: "alpha".into(),
            user_id: "u1".into(),
            deducted: true,
            note: "300 points taken at alpha after the refund, ticket 5".into(),
        }))
        .await
        .unwrap()
        .into_inner()
        .order
        .unwrap();
    assert!(
        recorded
            .lines
            .iter()
            .any(|l| l.channel_id == "alpha" && l.state() == StepState::Refunding),
        "a refund of the late deduct is on its way: {recorded:?}"
    );

    // Alpha comes back: its deduct lands, and is given back.
    mesh.start_connector("alpha").await;
    mesh.start_connector("beta").await;
    let settled = mesh
        .order_when("late-1", "to hold nothing again", |o| {
            o.state() == OrderState::Cancelled
                && o.lines.iter().all(|l| l.state() != StepState::Refunding)
        })
        .await;
    assert_eq!(settled.state(), OrderState::Cancelled);
    jifen_tests::eventually("alpha's points back", Duration::from_secs(30), || {
        let balance = mesh.channels["alpha"].ledger.clone();
        async move {
            let user = jifen_mesh::domain::UserId::parse("user", "u1").unwrap();
            (balance.balance(&user).await.ok()? == START_POINTS).then_some(())
        }
    })
    .await;
    // Beta's own deduct, staged as rejected above, may still land now that its connector is
    // back: the saga gives it back too, so wait for it rather than read a moment's balance.
    jifen_tests::eventually("beta's points back", Duration::from_secs(30), || {
        let balance = mesh.channels["beta"].ledger.clone();
        async move {
            let user = jifen_mesh::domain::UserId::parse("user", "u1").unwrap();
            (balance.balance(&user).await.ok()? == START_POINTS).then_some(())
        }
    })
    .await;
}
