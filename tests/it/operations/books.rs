//! The books kept whole without asking: continuous reconciliation, a deleted stream coming back.

use std::time::Duration;

use async_nats::jetstream;
use jifen_mesh::bus::identity::Identity;
use jifen_mesh::bus::subjects::CMD_STREAM;
use jifen_proto::v1::OrderState;
use jifen_tests::{TestMesh, eventually};

#[tokio::test]
async fn a_drift_between_the_books_and_a_ledger_is_flagged_without_asking() {
    let mut mesh = TestMesh::start(&["alpha"], &["u1"]).await;
    mesh.routine.reconcile_after = Duration::from_millis(500);
    mesh.stop_mall().await;
    mesh.start_mall().await;
    mesh.submit("d-1", &[("alpha", "u1", 100)]).await.unwrap();
    assert_eq!(mesh.settled("d-1").await.state(), OrderState::Completed);
    // The partner reverses the deduction on its own: the books now differ.
    mesh.channel("alpha")
        .client
        .refund_points(jifen_proto::v1::RefundPointsRequest {
            order_id: "d-1".into(),
            user_id: "u1".into(),
        })
        .await
        .unwrap();
    let flagged = mesh
        .order_when("d-1", "flagged by the continuous reconciliation", |o| {
            o.needs_attention
        })
        .await;
    assert!(flagged.reason.contains("books differ"), "{flagged:?}");
    assert!(
        flagged.history.iter().any(|h| h.kind == "books_differ"),
        "{flagged:?}"
    );
}

#[tokio::test]
async fn a_deleted_stream_comes_back_and_the_orders_it_held_complete() {
    let mut mesh = TestMesh::start(&["alpha"], &["u1"]).await;
    mesh.stop_connector("alpha").await;
    mesh.submit("z-1", &[("alpha", "u1", 100)]).await.unwrap();
    let js = jetstream::new(mesh.nats.connect_as(&Identity::Ops).await.unwrap());
    eventually("z-1's deduct on the bus", Duration::from_secs(20), || {
        let js = js.clone();
        async move {
            let mut stream = js.get_stream(CMD_STREAM).await.ok()?;
            let info = stream.info().await.ok()?;
            (info.state.messages >= 1).then_some(())
        }
    })
    .await;
    // Someone deletes the command stream with z-1's deduct in it.
    js.delete_stream(CMD_STREAM).await.unwrap();
    mesh.start_connector("alpha").await;
    let done = mesh.settled("z-1").await;
    assert_eq!(done.state(), OrderState::Completed);
    assert!(
        done.history.iter().any(|h| h.kind == "streams_recreated"),
        "{:?}",
        done.history
    );
    // Later orders go through the new stream.
    mesh.submit("z-2", &[("alpha", "u1", 10)]).await.unwrap();
    assert_eq!(mesh.settled("z-2").await.state(), OrderState::Completed);
}
