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

/// The same client at the wire: each stream is cancelled right after its HEADERS, before the
/// server has taken it (a page closed while its request was still queued). HTTP/2 servers
/// count such resets to tell a rapid-reset attack from a client, and by default send
/// `ENHANCE_YOUR_CALM` after 20 queued at once — which failed every other call on the
/// connection. The mall allows a bounded number fitting its many watchers.
#[tokio::test]
async fn a_client_that_resets_ten_thousand_streams_before_they_are_served_keeps_its_connection() {
    let mut mesh = TestMesh::start(&["alpha"], &["u1"]).await;
    mesh.stop_connector("alpha").await;
    mesh.submit("w-2", &[("alpha", "u1", 10)]).await.unwrap();
    let addr = mesh.mall().server.addr;
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    let connection = tokio::spawn(connection);
    let call = |method: &str| {
        http::Request::builder()
            .method("POST")
            .uri(format!("http://{addr}/jifen.v1.MallService/{method}"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(())
            .unwrap()
    };
    let mut client = client.ready().await.unwrap();
    for reset in 0..10_000 {
        let (_answer, mut request) = client
            .send_request(call("WatchOrder"), false)
            .unwrap_or_else(|e| panic!("the connection was closed after {reset} resets: {e}"));
        request.send_reset(h2::Reason::CANCEL);
        // Written in bursts of a hundred, so the server meets them faster than it takes them.
        if reset % 100 == 99 {
            client = client
                .ready()
                .await
                .unwrap_or_else(|e| panic!("the connection was closed after {reset} resets: {e}"));
        }
    }
    // The same connection still takes a call, and answers it.
    let (answer, mut request) = client.send_request(call("GetOrder"), false).unwrap();
    let message = prost::Message::encode_to_vec(&GetOrderRequest {
        order_id: "w-2".into(),
    });
    let mut frame = vec![0_u8];
    frame.extend_from_slice(&u32::try_from(message.len()).unwrap().to_be_bytes());
    frame.extend_from_slice(&message);
    request.send_data(frame.into(), true).unwrap();
    let answer = answer.await.expect("the connection still answers");
    assert_eq!(answer.status(), 200);
    let mut body = answer.into_body();
    let mut bytes = 0;
    while let Some(data) = body.data().await {
        let data = data.unwrap();
        bytes += data.len();
        let _ = body.flow_control().release_capacity(data.len());
    }
    let trailers = body.trailers().await.unwrap().expect("grpc trailers");
    assert_eq!(
        trailers.get("grpc-status").map(|v| v.as_bytes()),
        Some(&b"0"[..]),
        "{trailers:?}"
    );
    assert!(bytes > 5, "an order came back");
    assert!(!connection.is_finished(), "the connection is still open");
}

/// Replicas hear each other's order changes over NATS: a change one replica announces wakes
/// that order's watches at another at once, not at their next poll — and nothing else, however
/// the subject is abused.
#[tokio::test]
async fn a_change_announced_at_one_replica_wakes_that_orders_watches_at_another() {
    use futures_util::FutureExt;
    use jifen_mall::changes::OrderChanges;
    use std::time::Duration;

    let nats = jifen_tests::TestNats::start().await;
    let (here, there) = (OrderChanges::default(), OrderChanges::default());
    let stop = tokio_util::sync::CancellationToken::new();
    tokio::spawn(here.clone().spread(nats.connect().await, stop.clone()));
    tokio::spawn(there.clone().spread(nats.connect().await, stop.clone()));
    let mut watched = there.subscribe("o-1");
    let mut other = there.subscribe("o-2");
    // The replicas subscribe as they start: announce until the other one hears.
    let heard = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            here.announce("o-1");
            tokio::select! {
                () = watched.changed() => break,
                () = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
        }
    })
    .await;
    assert!(
        heard.is_ok(),
        "the other replica never heard of o-1's change"
    );
    assert!(
        other.changed().now_or_never().is_none(),
        "o-2 did not change"
    );

    // Garbage on the subject wakes nothing and stops nothing.
    let client = nats.connect().await;
    for payload in [
        "o-2 with spaces\n\u{0}".as_bytes().to_vec(),
        vec![0xff; 16],
        "o-2\n".repeat(100_000).into_bytes(),
    ] {
        client
            .publish(
                jifen_mesh::bus::subjects::ORDER_CHANGES_SUBJECT,
                payload.into(),
            )
            .await
            .unwrap();
    }
    // A good message after the garbage, from the same connection, so heard after it.
    let mut marker = there.subscribe("o-3");
    client
        .publish(
            jifen_mesh::bus::subjects::ORDER_CHANGES_SUBJECT,
            "o-3".into(),
        )
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), marker.changed())
        .await
        .expect("o-3's change is heard after the garbage");
    assert!(
        other.changed().now_or_never().is_none(),
        "the garbage woke o-2's watch"
    );
    here.announce("o-2");
    tokio::time::timeout(Duration::from_secs(10), other.changed())
        .await
        .expect("o-2's change is heard after the garbage");
    stop.cancel();
}
