//! Many watchers (issue 20): web backends open a `WatchOrder` per page view and drop it once it
//! answered. A client that cancels streams by the thousand must keep its HTTP/2 connection, and
//! its other calls on it must go on.

use futures_util::StreamExt;
use jifen_proto::v1::{GetOrderRequest, OrderState, WatchOrderRequest};
use jifen_tests::TestMesh;

#[tokio::test]
async fn a_client_that_drops_ten_thousand_watches_keeps_its_connection() {
    let mut mesh = TestMesh::start(&["alpha"], &["u1"]).await;
    // The order stays pending: every watch answers once and then waits, until it is dropped.
    mesh.stop_connector("alpha").await;
    mesh.submit("w-1", &[("alpha", "u1", 10)]).await.unwrap();
    let client = mesh.mall().client.clone();
    let answered = futures_util::stream::iter(0..10_000)
        .map(|_| {
            let mut client = client.clone();
            async move {
                let mut watch = client
                    .watch_order(WatchOrderRequest {
                        order_id: "w-1".into(),
                    })
                    .await
                    .map_err(|status| format!("{:?} {}", status.code(), status.message()))?
                    .into_inner();
                let first = watch.next().await;
                // Dropped here, after its first answer, as a web backend does.
                match first {
                    Some(Ok(update)) => Ok(update.order.map(|o| o.state())),
                    Some(Err(status)) => Err(format!("{:?} {}", status.code(), status.message())),
                    None => Err("the watch ended without an answer".to_owned()),
                }
            }
        })
        .buffer_unordered(64)
        .collect::<Vec<_>>()
        .await;
    let failed: Vec<&String> = answered.iter().filter_map(|a| a.as_ref().err()).collect();
    assert!(
        failed.is_empty(),
        "{} of 10,000 watches failed, the first: {:?}",
        failed.len(),
        failed.first()
    );
    assert!(answered.iter().all(|a| *a == Ok(Some(OrderState::Pending))));
    // The same connection still takes other calls.
    let order = client
        .clone()
        .get_order(GetOrderRequest {
            order_id: "w-1".into(),
        })
        .await
        .expect("the connection still answers")
        .into_inner()
        .order
        .unwrap();
    assert_eq!(order.state(), OrderState::Pending);
}
