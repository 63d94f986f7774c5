//! The durable pull-consumer loop every handler runs on (RocketMQ's consumer group, DESIGN §5).
//!
//! It fetches batches and hands each message to a [`Handler`], several at a time. The handler
//! decides: [`Disposition::Ack`] once its effect is durable and its outcome event stored;
//! [`Disposition::Retry`] for a transient failure — nak'ed with the back-off delay for the
//! delivery count; [`Disposition::Poison`] for a message that can never succeed. A poison
//! message, and one whose last allowed delivery fails, is copied to the dead-letter queue and
//! then terminated with its reason (`+TERM <reason>`).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, AckKind, consumer::pull};
use bytes::Bytes;
use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;

use super::BusError;
use super::dead_letter::{self, Origin};
use crate::metrics;

/// RocketMQ's retry delay levels, DESIGN §5.
pub const DEFAULT_BACKOFF: [u64; 16] = [
    1, 5, 10, 30, 60, 120, 180, 240, 300, 360, 420, 480, 540, 600, 1200, 1800,
];

/// A consumer group and how it retries.
#[derive(Debug, Clone)]
pub struct ConsumerSpec {
    pub stream: String,
    pub durable: String,
    pub filter: String,
    /// Delay before each redelivery; the last one repeats. At most `max_deliver` long.
    pub backoff: Vec<Duration>,
    pub max_deliver: i64,
    /// Messages fetched and handled at once. A fetched message waits for no other: each one
    /// is handled (and reports progress) as soon as it arrives.
    pub concurrency: usize,
    /// How long a delivered message may stay unacked before the server redelivers it.
    pub ack_wait: Duration,
}

impl ConsumerSpec {
    pub fn new(stream: &str, durable: &str, filter: &str, retry: &RetryPolicy) -> Self {
        Self {
            stream: stream.to_owned(),
            durable: durable.to_owned(),
            filter: filter.to_owned(),
            backoff: retry.backoff.clone(),
            max_deliver: retry.max_deliver,
            concurrency: 16,
            ack_wait: Duration::from_secs(30),
        }
    }

    fn config(&self) -> pull::Config {
        let mut backoff = self.backoff.clone();
        backoff.truncate(usize::try_from(self.max_deliver).unwrap_or(usize::MAX));
        pull::Config {
            durable_name: Some(self.durable.clone()),
            filter_subject: self.filter.clone(),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            ack_wait: self.ack_wait,
            max_deliver: self.max_deliver,
            backoff,
            max_ack_pending: 10_000,
            ..Default::default()
        }
    }

    /// The ack wait the server applies: the first back-off step when there is one.
    pub fn effective_ack_wait(&self) -> Duration {
        self.backoff
            .first()
            .copied()
            .unwrap_or(self.ack_wait)
            .max(Duration::from_millis(20))
    }

    /// The delay before the next delivery, after `delivered` deliveries.
    pub fn delay_after(&self, delivered: i64) -> Duration {
        let index = usize::try_from(delivered.saturating_sub(1)).unwrap_or(0);
        self.backoff
            .get(index)
            .or(self.backoff.last())
            .copied()
            .unwrap_or(Duration::from_secs(1))
    }
}

/// Back-off and max deliveries of a consumer group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    pub backoff: Vec<Duration>,
    pub max_deliver: i64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            backoff: DEFAULT_BACKOFF
                .iter()
                .map(|s| Duration::from_secs(*s))
                .collect(),
            max_deliver: 16,
        }
    }
}

/// One delivered message, as a handler sees it.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub subject: String,
    pub payload: Bytes,
    pub headers: Option<HeaderMap>,
    /// 1 on the first delivery.
    pub delivered: i64,
    pub stream_sequence: u64,
}

impl Delivery {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .as_ref()
            .and_then(|h| h.get(name))
            .map(|v| v.as_str())
    }

    pub fn msg_id(&self) -> Option<&str> {
        self.header(async_nats::header::NATS_MESSAGE_ID.as_ref())
    }
}

/// What became of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// Handled: its effect is durable.
    Ack,
    /// A transient failure: deliver it again after the back-off.
    Retry(String),
    /// It can never succeed: stop delivering it.
    Poison(String),
}

pub trait Handler: Send + Sync + 'static {
    fn handle(&self, delivery: &Delivery) -> impl Future<Output = Disposition> + Send;
}

/// Creates (or updates) the durable consumer, then handles its messages until `shutdown`.
/// Losing the server is not fatal: the loop waits and tries again.
pub async fn run<H: Handler>(
    js: jetstream::Context,
    spec: ConsumerSpec,
    handler: Arc<H>,
    shutdown: CancellationToken,
) {
    let (mut consumer, mut stream_created) = loop {
        match create(&js, &spec).await {
            Ok(bound) => break bound,
            Err(error) => {
                tracing::warn!(consumer = %spec.durable, %error, "cannot create the consumer; retrying");
                if pause(&shutdown, Duration::from_secs(1)).await {
                    return;
                }
            }
        }
    };
    tracing::info!(consumer = %spec.durable, filter = %spec.filter, "consumer running");
    let client = js.client();
    let mut failures = 0_u32;
    let mut sampled = std::time::Instant::now() - Duration::from_secs(60);
    while !shutdown.is_cancelled() {
        if sampled.elapsed() >= Duration::from_secs(5) {
            sampled = std::time::Instant::now();
            if let Ok(info) = consumer.info().await {
                let gauge = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
                metrics::CONSUMER_PENDING
                    .with_label_values(&[spec.durable.as_str()])
                    .set(gauge(info.num_pending));
                metrics::CONSUMER_ACK_PENDING
                    .with_label_values(&[spec.durable.as_str()])
                    .set(gauge(info.num_ack_pending as u64));
            }
        }
        let fetched = tokio::select! {
            () = shutdown.cancelled() => break,
            fetched = consumer
                .fetch()
                .max_messages(spec.concurrency.max(1))
                .expires(Duration::from_secs(1))
                .messages() => fetched,
        };
        // A fetch can fail outright, or "succeed" and carry the failure as an item of the
        // batch (409 consumer deleted, 503 no responders during an election): both mean the
        // consumer may be gone. Back off and make it again; never spin.
        let failure = match fetched {
            Ok(batch) => {
                let failure = std::sync::Mutex::new(None::<String>);
                batch
                    .for_each_concurrent(spec.concurrency, |message| {
                        let (handler, spec, client, js) = (&handler, &spec, &client, &js);
                        let stream_created = stream_created;
                        let failure = &failure;
                        async move {
                            match message {
                                Ok(message) => {
                                    settle(
                                        handler.as_ref(),
                                        spec,
                                        js,
                                        client,
                                        stream_created,
                                        message,
                                    )
                                    .await
                                }
                                Err(error) => {
                                    if let Ok(mut first) = failure.lock() {
                                        first.get_or_insert_with(|| error.to_string());
                                    }
                                }
                            }
                        }
                    })
                    .await;
                failure.into_inner().ok().flatten()
            }
            Err(error) => Some(error.to_string()),
        };
        let Some(error) = failure else {
            if failures > 0 {
                tracing::info!(consumer = %spec.durable, "consumer fetching again");
            }
            failures = 0;
            continue;
        };
        failures = failures.saturating_add(1);
        metrics::FETCH_FAILURES
            .with_label_values(&[spec.durable.as_str()])
            .inc();
        let delay = retry_delay(failures);
        tracing::warn!(consumer = %spec.durable, %error, failures, ?delay, "fetch failed; re-creating the consumer");
        if pause(&shutdown, delay).await {
            break;
        }
        match create(&js, &spec).await {
            Ok((again, created)) => (consumer, stream_created) = (again, created),
            Err(error) => {
                tracing::warn!(consumer = %spec.durable, %error, "cannot re-create the consumer yet")
            }
        }
    }
    tracing::info!(consumer = %spec.durable, "consumer stopped");
}

/// A consumer, and when its stream was created (which names the stream's incarnation in
/// dead-letter ids).
type Bound = (jetstream::consumer::Consumer<pull::Config>, i128);

async fn create(js: &jetstream::Context, spec: &ConsumerSpec) -> Result<Bound, BusError> {
    let consumer_error = |e: &dyn std::fmt::Display| BusError::Consumer {
        consumer: spec.durable.clone(),
        reason: e.to_string(),
    };
    let stream = js
        .get_stream(&spec.stream)
        .await
        .map_err(|e| consumer_error(&e))?;
    let created = stream.cached_info().created.unix_timestamp_nanos();
    let consumer = stream
        .create_consumer(spec.config())
        .await
        .map_err(|e| consumer_error(&e))?;
    Ok((consumer, created))
}

/// The wait after `failures` failed fetches in a row: 250 ms, doubling, at most 5 s.
fn retry_delay(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(5);
    (Duration::from_millis(250) * 2_u32.pow(doublings)).min(Duration::from_secs(5))
}

/// Sleeps for `delay`; true when shutdown came first.
async fn pause(shutdown: &CancellationToken, delay: Duration) -> bool {
    tokio::select! {
        () = shutdown.cancelled() => true,
        () = tokio::time::sleep(delay) => false,
    }
}

/// Terminates a message with a reason; async-nats has no such call, so this sends the
/// protocol's `+TERM <reason>` itself.
async fn terminate(
    client: &async_nats::Client,
    message: &jetstream::Message,
    reason: &str,
) -> Result<(), async_nats::Error> {
    match &message.reply {
        Some(reply) => client
            .publish(reply.clone(), Bytes::from(format!("+TERM {reason}")))
            .await
            .map_err(Into::into),
        None => message.ack_with(AckKind::Term).await,
    }
}

async fn settle<H: Handler>(
    handler: &H,
    spec: &ConsumerSpec,
    js: &jetstream::Context,
    client: &async_nats::Client,
    stream_created_ns: i128,
    message: jetstream::Message,
) {
    let (delivered, stream_sequence) = match message.info() {
        Ok(info) => (info.delivered, info.stream_sequence),
        Err(error) => {
            // Without its sequence it could not be dead-lettered safely: leave it for later.
            tracing::warn!(consumer = %spec.durable, %error, "message without delivery info");
            let _ = message
                .ack_with(AckKind::Nak(Some(spec.delay_after(1))))
                .await;
            return;
        }
    };
    let delivery = Delivery {
        subject: message.subject.to_string(),
        payload: message.payload.clone(),
        headers: message.headers.clone(),
        delivered,
        stream_sequence,
    };
    // The server takes the first back-off step as the ack wait (nats-server overrides AckWait
    // with BackOff[0]): a handler slower than that would see its message delivered again while
    // it works, so it reports progress at half that period.
    let consumer = spec.durable.as_str();
    if delivered > 1 {
        metrics::REDELIVERIES.with_label_values(&[consumer]).inc();
    }
    let started = std::time::Instant::now();
    let span = tracing::info_span!(
        "bus.handle",
        otel.name = %format!("{consumer} {}", delivery.subject),
        messaging.consumer = %consumer,
        messaging.subject = %delivery.subject,
        delivered,
    );
    crate::trace::adopt(&span, delivery.header(crate::trace::TRACEPARENT));
    let handling = tracing::Instrument::instrument(handler.handle(&delivery), span);
    tokio::pin!(handling);
    let mut progress = tokio::time::interval(spec.effective_ack_wait() / 2);
    progress.tick().await;
    let disposition = loop {
        tokio::select! {
            disposition = &mut handling => break disposition,
            _ = progress.tick() => {
                if let Err(error) = message.ack_with(AckKind::Progress).await {
                    tracing::debug!(%error, "cannot report progress");
                }
            }
        }
    };
    metrics::HANDLE_LATENCY
        .with_label_values(&[consumer])
        .observe(started.elapsed().as_secs_f64());
    let outcome = match &disposition {
        Disposition::Ack => "ack",
        Disposition::Retry(_) if delivered < spec.max_deliver => "retry",
        _ => "dead_letter",
    };
    metrics::HANDLED
        .with_label_values(&[consumer, outcome])
        .inc();
    let result = match &disposition {
        Disposition::Ack => message.ack().await,
        Disposition::Retry(why) if delivered < spec.max_deliver => {
            let delay = spec.delay_after(delivered);
            tracing::info!(consumer = %spec.durable, subject = %delivery.subject, delivered, ?delay, %why, "retrying later");
            message.ack_with(AckKind::Nak(Some(delay))).await
        }
        // The last delivery failed, or the message can never succeed: into the dead-letter
        // queue, and off the work queue only once the copy is stored.
        Disposition::Retry(reason) | Disposition::Poison(reason) => {
            let origin = Origin {
                stream: &spec.stream,
                stream_created_ns,
                sequence: stream_sequence,
                subject: &delivery.subject,
                consumer: &spec.durable,
                deliveries: delivered,
                last_error: reason,
                headers: delivery.headers.as_ref(),
                payload: delivery.payload.clone(),
            };
            match dead_letter::copy(js, &origin).await {
                Ok(()) => {
                    metrics::DEAD_LETTERS.with_label_values(&[consumer]).inc();
                    tracing::error!(consumer = %spec.durable, subject = %delivery.subject, delivered, %reason, "message dead-lettered");
                    terminate(client, &message, reason).await
                }
                Err(error) => {
                    // Past its last delivery the server raises an advisory and the forwarder
                    // copies it; a poison message comes back and is tried again.
                    tracing::warn!(consumer = %spec.durable, %error, "cannot dead-letter a message yet");
                    message
                        .ack_with(AckKind::Nak(Some(spec.delay_after(delivered))))
                        .await
                }
            }
        }
    };
    if let Err(error) = result {
        // The server redelivers after ack_wait; the handlers are idempotent.
        tracing::warn!(consumer = %spec.durable, %error, ?disposition, "cannot settle a message");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_delay_follows_the_backoff_and_repeats_its_last_step() {
        let retry = RetryPolicy {
            backoff: vec![Duration::from_secs(1), Duration::from_secs(5)],
            max_deliver: 4,
        };
        let spec = ConsumerSpec::new("S", "d", "f", &retry);
        assert_eq!(spec.delay_after(1), Duration::from_secs(1));
        assert_eq!(spec.delay_after(2), Duration::from_secs(5));
        assert_eq!(spec.delay_after(9), Duration::from_secs(5));
        assert_eq!(RetryPolicy::default().backoff.len(), 16);
    }

    #[test]
    fn failed_fetches_back_off_up_to_five_seconds() {
        assert_eq!(retry_delay(1), Duration::from_millis(250));
        assert_eq!(retry_delay(2), Duration::from_millis(500));
        assert_eq!(retry_delay(6), Duration::from_secs(5));
        assert_eq!(retry_delay(u32::MAX), Duration::from_secs(5));
    }

    #[test]
    fn the_backoff_never_exceeds_max_deliveries() {
        let retry = RetryPolicy {
            backoff: vec![Duration::from_secs(1); 5],
            max_deliver: 3,
        };
        assert_eq!(
            ConsumerSpec::new("S", "d", "f", &retry)
                .config()
                .backoff
                .len(),
            3
        );
    }
}
