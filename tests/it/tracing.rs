//! One order is one trace: the W3C trace context started at `SubmitOrder` rides the outbox and
//! the bus to the connectors and the ledgers' gRPC servers.

use std::collections::HashSet;

use jifen_mesh::telemetry::{LogFormat, init_with};
use jifen_proto::v1::OrderState;
use jifen_tests::TestMesh;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};

#[tokio::test]
async fn one_trace_spans_the_mall_the_connectors_and_the_channel_for_one_order() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    init_with(LogFormat::Text, Some(&provider));

    let mut mesh = TestMesh::start(&["alpha"], &["u1"]).await;
    mesh.submit("o-1", &[("alpha", "u1", 5)]).await.unwrap();
    assert_eq!(mesh.settled("o-1").await.state(), OrderState::Completed);
    provider.force_flush().unwrap();

    let spans = exporter.get_finished_spans().unwrap();
    let submit = spans
        .iter()
        .find(|s| s.name == "jifen.v1.MallService/SubmitOrder")
        .expect("a span for SubmitOrder");
    let trace_id = submit.span_context.trace_id();
    let in_trace: HashSet<String> = spans
        .iter()
        .filter(|s| s.span_context.trace_id() == trace_id)
        .map(|s| s.name.to_string())
        .collect();
    for expected in [
        "jifen.v1.ChannelService/GetUserPoints",
        "channel-alpha jifen.cmd.channel.alpha.deduct",
        "jifen.v1.ChannelService/DeductPoints",
        "mall-saga jifen.evt.channel.alpha.deducted",
        "portal jifen.cmd.portal.deduct",
        "jifen.v1.PortalService/DeductQuota",
        "mall-saga jifen.evt.portal.deducted",
    ] {
        assert!(
            in_trace.contains(expected),
            "{expected} not in the order's trace: {in_trace:?}"
        );
    }
}
