//! Prometheus metrics: every process serves `/metrics` on its own port (`--metrics-listen`).
//!
//! The gRPC layer ([`GrpcMetricsLayer`]) counts requests by service, method and status code
//! and times them; the bus counts redeliveries and dead letters and samples each consumer's
//! pending and ack-pending messages; the mall samples orders by state, open dead letters and
//! the outbox backlog. Names: `jifen_*`.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::LazyLock;
use std::task::{Context, Poll};
use std::time::Instant;

use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The process's registry: every Jifen metric is registered here.
pub static REGISTRY: LazyLock<Registry> = LazyLock::new(Registry::new);

fn counter(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let metric = IntCounterVec::new(Opts::new(name, help), labels).expect("a valid metric");
    let _ = REGISTRY.register(Box::new(metric.clone()));
    metric
}

fn gauge(name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let metric = IntGaugeVec::new(Opts::new(name, help), labels).expect("a valid metric");
    let _ = REGISTRY.register(Box::new(metric.clone()));
    metric
}

fn float_gauge(name: &str, help: &str, labels: &[&str]) -> GaugeVec {
    let metric = GaugeVec::new(Opts::new(name, help), labels).expect("a valid metric");
    let _ = REGISTRY.register(Box::new(metric.clone()));
    metric
}

fn single_gauge(name: &str, help: &str) -> IntGauge {
    let metric = IntGauge::new(name, help).expect("a valid metric");
    let _ = REGISTRY.register(Box::new(metric.clone()));
    metric
}

fn histogram(name: &str, help: &str, labels: &[&str]) -> HistogramVec {
    let buckets = vec![
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    ];
    let metric = HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels)
        .expect("a valid metric");
    let _ = REGISTRY.register(Box::new(metric.clone()));
    metric
}

pub static GRPC_REQUESTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "jifen_grpc_requests_total",
        "gRPC requests served, by service, method and status code",
        &["service", "method", "code"],
    )
});
pub static GRPC_LATENCY: LazyLock<HistogramVec> = LazyLock::new(|| {
    histogram(
        "jifen_grpc_request_duration_seconds",
        "Time to the response headers of a gRPC request",
        &["service", "method"],
    )
});
pub static REDELIVERIES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "jifen_redeliveries_total",
        "Messages delivered more than once to a consumer group",
        &["consumer"],
    )
});
pub static DEAD_LETTERS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "jifen_dead_letters_total",
        "Messages copied to the dead-letter queue, by consumer group",
        &["consumer"],
    )
});
pub static CORRECTIVE_REFUNDS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "jifen_corrective_refunds_total",
        "Refunds the saga sent for a deduct that arrived after its step stopped holding points \
         (a channel without anti-hanging), by step kind (points, quota)",
        &["step"],
    )
});
pub static FETCH_FAILURES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "jifen_consumer_fetch_failures_total",
        "Failed fetches of a consumer group (consumer deleted, no responders, server lost); \
         each is followed by a back-off and the consumer's re-creation",
        &["consumer"],
    )
});
pub static HANDLED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "jifen_messages_handled_total",
        "Messages handled by a consumer group, by outcome (ack, retry, dead_letter)",
        &["consumer", "outcome"],
    )
});
pub static HANDLE_LATENCY: LazyLock<HistogramVec> = LazyLock::new(|| {
    histogram(
        "jifen_message_handle_duration_seconds",
        "Time a consumer group's handler took per message (for the saga: one step)",
        &["consumer"],
    )
});
pub static CONSUMER_PENDING: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    gauge(
        "jifen_consumer_pending_messages",
        "Messages waiting for a consumer group",
        &["consumer"],
    )
});
pub static CONSUMER_ACK_PENDING: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    gauge(
        "jifen_consumer_ack_pending_messages",
        "Messages delivered to a consumer group and not yet acknowledged",
        &["consumer"],
    )
});
pub static ORDERS: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    gauge(
        "jifen_orders",
        "Orders in the mall's database, by state",
        &["state"],
    )
});
pub static ORDERS_NEEDING_ATTENTION: LazyLock<IntGauge> = LazyLock::new(|| {
    single_gauge(
        "jifen_orders_needing_attention",
        "Orders flagged for an operator",
    )
});
pub static ADAPTER_TOKEN_FAILURES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "jifen_adapter_token_failures_total",
        "Failed fetches of a partner's access token by an adapter connector, by channel (calls wait; nothing is dead-lettered for it)",
        &["channel"],
    )
});
pub static BUS_PUBLISH_FAILING: LazyLock<IntGauge> = LazyLock::new(|| {
    single_gauge(
        "jifen_bus_publish_failing",
        "1 while the mall's outbox relay cannot publish to NATS (down, or a stream that cannot store: a full disk); orders wait in the outbox meanwhile",
    )
});
pub static OUTBOX_PUBLISH_FAILURES: LazyLock<IntCounter> = LazyLock::new(|| {
    let metric = IntCounter::new(
        "jifen_outbox_publish_failures_total",
        "Rounds of the outbox relay that could not publish",
    )
    .expect("a valid metric");
    let _ = REGISTRY.register(Box::new(metric.clone()));
    metric
});
pub static NOTIFICATIONS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "jifen_partner_notifications_total",
        "Partners' notifications by channel and outcome: applied (settled a pending command), ignored (nothing pending: polling settles it), refused (bad signature or body)",
        &["channel", "outcome"],
    )
});
pub static MISMATCHED_EVENTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "jifen_mismatched_events_total",
        "Outcome events that did not fit their order (channel, step or points) and were dead-lettered unapplied, by consumer group",
        &["consumer"],
    )
});
pub static OPEN_DEAD_LETTERS: LazyLock<IntGauge> = LazyLock::new(|| {
    single_gauge(
        "jifen_open_dead_letters",
        "Dead letters neither redriven nor discarded",
    )
});
pub static OUTBOX_BACKLOG: LazyLock<IntGauge> = LazyLock::new(|| {
    single_gauge(
        "jifen_outbox_backlog",
        "Outbox messages committed and not yet published",
    )
});
pub static ORDER_SETTLE_LATENCY: LazyLock<HistogramVec> = LazyLock::new(|| {
    histogram(
        "jifen_order_settle_duration_seconds",
        "Time from an order's submit to COMPLETED or CANCELLED",
        &["state"],
    )
});
pub static LEDGER_HEALTH: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    gauge(
        "jifen_ledger_health",
        "A ledger's health as its connector's calls show it, by consumer group: 2 up, 1 degraded, 0 down, -1 no reports (the mall's view)",
        &["consumer"],
    )
});
pub static LEDGER_ERROR_RATIO: LazyLock<GaugeVec> = LazyLock::new(|| {
    float_gauge(
        "jifen_ledger_error_ratio",
        "Share of a connector's calls of the last 5 minutes its ledger did not answer, by consumer group",
        &["consumer"],
    )
});
pub static LEDGER_LATENCY_P99: LazyLock<GaugeVec> = LazyLock::new(|| {
    float_gauge(
        "jifen_ledger_latency_p99_seconds",
        "p99 of a connector's calls of the last 5 minutes (a bucket's bound), by consumer group",
        &["consumer"],
    )
});
pub static AUTO_REDRIVES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "jifen_auto_redrives_total",
        "Dead letters the mall redrove by itself after their ledger recovered, by consumer group",
        &["consumer"],
    )
});
pub static STREAMS_RECREATED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "jifen_streams_recreated_total",
        "Streams the mall found missing (deleted, or lost with a server's storage) and created again, by stream",
        &["stream"],
    )
});
pub static RECONCILE_MISMATCHES: LazyLock<IntCounter> = LazyLock::new(|| {
    let metric = IntCounter::new(
        "jifen_reconcile_mismatches_total",
        "Orders the continuous reconciliation found differing from a ledger (each flagged)",
    )
    .expect("a valid metric");
    let _ = REGISTRY.register(Box::new(metric.clone()));
    metric
});

/// The text exposition of every registered metric.
pub fn render() -> String {
    let mut out = Vec::new();
    if let Err(error) = TextEncoder::new().encode(&REGISTRY.gather(), &mut out) {
        tracing::warn!(%error, "cannot encode metrics");
    }
    String::from_utf8(out).unwrap_or_default()
}

/// A bound `/metrics` listener.
pub struct MetricsServer {
    listener: TcpListener,
    local_addr: SocketAddr,
}

impl MetricsServer {
    pub async fn bind(addr: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let local_addr = listener.local_addr()?;
        Ok(Self {
            listener,
            local_addr,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Answers `GET /metrics` (anything else: 404) until `shutdown`.
    pub async fn serve(self, shutdown: CancellationToken) {
        use hyper::server::conn::http1;
        use hyper_util::rt::TokioIo;
        tracing::info!(addr = %self.local_addr, "metrics at /metrics");
        loop {
            let (stream, _) = tokio::select! {
                () = shutdown.cancelled() => return,
                accepted = self.listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        tracing::warn!(%error, "metrics listener");
                        continue;
                    }
                },
            };
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|request| async move {
                    Ok::<_, Infallible>(metrics_response(&request))
                });
                if let Err(error) = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await
                {
                    tracing::debug!(%error, "metrics connection");
                }
            });
        }
    }
}

fn metrics_response<B>(
    request: &hyper::Request<B>,
) -> hyper::Response<http_body_util::Full<bytes::Bytes>> {
    let (status, body) = if request.uri().path() == "/metrics" {
        (200, render())
    } else {
        (404, "not found: try /metrics\n".to_owned())
    };
    hyper::Response::builder()
        .status(status)
        .header("content-type", "text/plain; version=0.0.4")
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .unwrap_or_default()
}

/// A tower layer that counts and times every gRPC request, and opens its server span.
#[derive(Debug, Clone, Copy, Default)]
pub struct GrpcMetricsLayer;

impl<S> tower::Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcMetrics { inner }
    }
}

#[derive(Debug, Clone)]
pub struct GrpcMetrics<S> {
    inner: S,
}

/// `/jifen.v1.MallService/SubmitOrder` → (`jifen.v1.MallService`, `SubmitOrder`).
fn service_and_method(path: &str) -> (String, String) {
    let mut parts = path.trim_start_matches('/').splitn(2, '/');
    let service = parts.next().unwrap_or_default().to_owned();
    let method = parts.next().unwrap_or_default().to_owned();
    (service, method)
}

/// The status of a response: `grpc-status` in its headers (an error answered at once), else
/// OK (a successful unary answer carries its status in the trailers).
fn status_code(headers: &http::HeaderMap) -> String {
    let code = headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
        .unwrap_or(0);
    format!("{:?}", tonic::Code::from_i32(code))
}

impl<S, B, R> tower::Service<http::Request<B>> for GrpcMetrics<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>> + Send,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        use tracing::Instrument;
        let (service, method) = service_and_method(request.uri().path());
        // One server span per call, child of the caller's span when it sent `traceparent`.
        let span = tracing::info_span!(
            "grpc.server",
            otel.name = %format!("{service}/{method}"),
            rpc.service = %service,
            rpc.method = %method,
        );
        crate::trace::adopt(
            &span,
            request
                .headers()
                .get(crate::trace::TRACEPARENT)
                .and_then(|v| v.to_str().ok()),
        );
        let started = Instant::now();
        let response = self.inner.call(request).instrument(span);
        Box::pin(async move {
            let response = response.await?;
            let code = status_code(response.headers());
            GRPC_REQUESTS
                .with_label_values(&[service.as_str(), method.as_str(), code.as_str()])
                .inc();
            GRPC_LATENCY
                .with_label_values(&[service.as_str(), method.as_str()])
                .observe(started.elapsed().as_secs_f64());
            Ok(response)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_split_into_service_and_method() {
        assert_eq!(
            service_and_method("/jifen.v1.MallService/SubmitOrder"),
            ("jifen.v1.MallService".to_owned(), "SubmitOrder".to_owned())
        );
        let mut headers = http::HeaderMap::new();
        assert_eq!(status_code(&headers), "Ok");
        headers.insert("grpc-status", "9".parse().unwrap());
        assert_eq!(status_code(&headers), "FailedPrecondition");
    }

    #[test]
    fn rendered_metrics_carry_their_names() {
        REDELIVERIES.with_label_values(&["test"]).inc();
        assert!(render().contains("jifen_redeliveries_total{consumer=\"test\"} 1"));
    }
}
