//! `/metrics` while orders run: gRPC requests by method and code, orders by state, consumer
//! gauges, handled messages and dead letters.

use std::time::Duration;

use jifen_mesh::metrics::MetricsServer;
use jifen_tests::{TestMesh, eventually};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

async fn scrape(addr: std::net::SocketAddr, path: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: metrics\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
}

/// The value of the sample line starting with `series`.
fn value(body: &str, series: &str) -> f64 {
    body.lines()
        .find_map(|line| line.strip_prefix(series))
        .and_then(|rest| rest.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn metrics_show_requests_orders_and_consumers_while_orders_run() {
    let mut mesh = TestMesh::start(&["alpha"], &["u1"]).await;
    let shutdown = CancellationToken::new();
    let server = MetricsServer::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let addr = server.local_addr();
    tokio::spawn(server.serve(shutdown.clone()));

    mesh.submit("o-1", &[("alpha", "u1", 5)]).await.unwrap();
    mesh.settled("o-1").await;
    let _ = mesh.submit("o-2", &[("alpha", "u1", 1_000_000)]).await;

    let body = eventually(
        "the mall's gauges sampled",
        Duration::from_secs(15),
        || async move {
            let body = scrape(addr, "/metrics").await;
            // The relay deletes a published row just after the saga may have moved on:
            // wait for both.
            (body.contains("jifen_orders{state=\"COMPLETED\"} 1")
                && body.contains("jifen_outbox_backlog 0"))
            .then_some(body)
        },
    )
    .await;
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    for expected in [
        r#"jifen_grpc_requests_total{code="Ok",method="SubmitOrder",service="jifen.v1.MallService"} 1"#,
        r#"jifen_grpc_requests_total{code="FailedPrecondition",method="SubmitOrder",service="jifen.v1.MallService"} 1"#,
        r#"jifen_grpc_requests_total{code="Ok",method="DeductPoints",service="jifen.v1.ChannelService"} 1"#,
        r#"jifen_messages_handled_total{consumer="mall-saga",outcome="ack"}"#,
        r#"jifen_messages_handled_total{consumer="channel-alpha",outcome="ack"}"#,
        "jifen_grpc_request_duration_seconds_bucket",
        "jifen_order_settle_duration_seconds_count{state=\"COMPLETED\"} 1",
        "jifen_consumer_pending_messages{consumer=\"mall-saga\"}",
        "jifen_outbox_backlog 0",
        "jifen_open_dead_letters 0",
    ] {
        assert!(body.contains(expected), "missing {expected} in\n{body}");
    }
    // A redelivery under load may add a second handling; there is at least the one.
    let handled = value(
        &body,
        r#"jifen_messages_handled_total{consumer="channel-alpha",outcome="ack"}"#,
    );
    assert!(handled >= 1.0, "{handled}");
    assert!(scrape(addr, "/other").await.starts_with("HTTP/1.1 404"));
    shutdown.cancel();
}
