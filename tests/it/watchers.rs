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
