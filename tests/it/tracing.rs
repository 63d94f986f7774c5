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

mod collector {
    use std::sync::{Arc, Mutex};

    use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
        TraceService, TraceServiceServer,
    };
    use opentelemetry_proto::tonic::collector::trace::v1::{
        ExportTraceServiceRequest, ExportTraceServiceResponse,
    };
    use tonic::{Request, Response, Status};

    /// A stand-in OpenTelemetry collector that keeps what it receives.
    #[derive(Clone, Default)]
    pub struct Collector(pub Arc<Mutex<Vec<ExportTraceServiceRequest>>>);

    #[tonic::async_trait]
    impl TraceService for Collector {
        async fn export(
            &self,
            request: Request<ExportTraceServiceRequest>,
        ) -> Result<Response<ExportTraceServiceResponse>, Status> {
            self.0.lock().unwrap().push(request.into_inner());
            Ok(Response::new(ExportTraceServiceResponse {
                partial_success: None,
            }))
        }
    }

    pub fn server(collector: Collector) -> TraceServiceServer<Collector> {
        TraceServiceServer::new(collector)
    }
}

// The batch exporter flushes from its own thread through a channel served by this runtime:
// the runtime needs a thread free while the test blocks on the flush.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_are_exported_over_otlp_when_an_endpoint_is_configured() {
    use opentelemetry::trace::{Tracer, TracerProvider as _};

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let received = collector::Collector::default();
    let server = tonic::transport::Server::builder()
        .add_service(collector::server(received.clone()))
        .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener));
    tokio::spawn(server);

    let provider =
        jifen_mesh::telemetry::otlp_provider(&format!("http://{addr}"), "jifen-test").unwrap();
    provider.tracer("jifen").in_span("exported-span", |_| {});
    let flushed = provider.clone();
    tokio::task::spawn_blocking(move || flushed.force_flush())
        .await
        .unwrap()
        .unwrap();

    let requests = received.0.lock().unwrap().clone();
    let names: Vec<String> = requests
        .iter()
        .flat_map(|r| &r.resource_spans)
        .flat_map(|rs| &rs.scope_spans)
        .flat_map(|ss| &ss.spans)
        .map(|s| s.name.clone())
        .collect();
    assert_eq!(names, ["exported-span"]);
    let service = requests[0].resource_spans[0]
        .resource
        .as_ref()
        .unwrap()
        .attributes
        .iter()
        .find(|kv| kv.key == "service.name")
        .and_then(|kv| kv.value.as_ref())
        .map(|v| format!("{v:?}"))
        .unwrap_or_default();
    assert!(service.contains("jifen-test"), "{service}");
}
