//! The durable pull-consumer loop every handler runs on (RocketMQ's consumer group, DESIGN §5).
//!
//! It flows: up to [`ConsumerSpec::concurrency`] messages are in flight, and a new fetch goes
//! out as soon as room frees, not when a whole batch is done. What a fetch brings at once is
//! handed to the [`Handler`] as one batch ([`Handler::handle_batch`]; by default each message
//! on its own, concurrently), so a handler can apply many messages in one transaction; one slow
//! batch never holds the next. For each message the handler decides: [`Disposition::Ack`] once its effect is durable and its outcome event stored;
//! [`Disposition::Retry`] for a transient failure — nak'ed with the back-off delay for the
//! delivery count; [`Disposition::Poison`] for a message that can never succeed. A poison
//! message, and one whose last allowed delivery fails, is copied to the dead-letter queue and
//! then terminated with its reason (`+TERM <reason>`).

mod settle;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, consumer::pull};
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::BusError;
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
    /// Messages in flight at most (fetched, not yet settled); also the largest batch.
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
    /// The `bus.handle` span of this message, in the trace its publisher started: work done
    /// for it (a batch handler's share included) is recorded in it.
    pub span: tracing::Span,
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
    /// Not settled yet (a ledger's "processing"): deliver it again after this delay.
    RetryAfter(Duration, String),
    /// It can never succeed: stop delivering it.
    Poison(String),
    /// A deduct whose effect at its ledger cannot be known and must not be tried again
    /// blindly: dead-lettered as "outcome unknown" for an operator (DESIGN §9).
    OutcomeUnknown(String),
    /// An event that does not fit what it claims to answer (DESIGN §11): never applied,
    /// dead-lettered as "mismatched event" for an operator.
    Mismatched(String),
    /// A confirm that cannot land before its hold lapses (DESIGN §12): dead-lettered as
    /// "hold expiring" for an operator.
    HoldExpiring(String),
}

pub trait Handler: Send + Sync + 'static {
    fn handle(&self, delivery: &Delivery) -> impl Future<Output = Disposition> + Send;

    /// Handles what one fetch brought: one disposition per delivery, in their order. By
    /// default each on its own, all at once; a handler that can do better (one transaction
    /// for the batch) overrides it, and must never let one bad delivery fail or repeat the
    /// others.
    fn handle_batch(
        &self,
        deliveries: &[Delivery],
    ) -> impl Future<Output = Vec<Disposition>> + Send {
        futures_util::future::join_all(deliveries.iter().map(|delivery| {
            tracing::Instrument::instrument(self.handle(delivery), delivery.span.clone())
        }))
    }
}

/// How long a fetch waits for messages when none are there.
const FETCH_EXPIRES: Duration = Duration::from_secs(1);
/// How long past its expiry an unanswered fetch is waited for.
const LOST_PULL_GRACE: Duration = Duration::from_millis(500);
/// How long sampling a consumer's counts may take (they are only metrics).
const SAMPLE_TIMEOUT: Duration = Duration::from_millis(500);

/// How long re-creating a vanished consumer may take before the loop fetches again.
const RECREATE_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a batch waits for more messages of the same fetch once its first has arrived.
const LINGER: Duration = Duration::from_millis(2);

/// Creates (or updates) the durable consumer, then handles its messages until `shutdown`, and
/// lets the batches in flight finish. Losing the server is not fatal: the loop waits and tries
/// again.
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
    let capacity = spec.concurrency.max(1);
    let cx = Arc::new(settle::Context {
        handler,
        spec: spec.clone(),
        js: js.clone(),
        client: js.client(),
    });
    let room = Arc::new(Semaphore::new(capacity));
    let mut batches = JoinSet::new();
    let mut failures = 0_u32;
    let mut sampled = std::time::Instant::now() - Duration::from_secs(60);
    while !shutdown.is_cancelled() {
        while let Some(done) = batches.try_join_next() {
            report_panic(&spec, done);
        }
        if sampled.elapsed() >= Duration::from_secs(5) {
            sampled = std::time::Instant::now();
            sample(&spec, &mut consumer).await;
        }
        // Room for the next fetch: any when idle; under load at least half the capacity, so
        // that batches stay large while the ones in flight run.
        let busy = capacity - room.available_permits();
        let wanted = if busy == 0 { 1 } else { (capacity / 2).max(1) };
        let mut permits = tokio::select! {
            () = shutdown.cancelled() => break,
            permits = room.clone().acquire_many_owned(u32::try_from(wanted).unwrap_or(1)) => match permits {
                Ok(permits) => permits,
                Err(_) => break,
            },
        };
        let free = u32::try_from(room.available_permits()).unwrap_or(0);
        if free > 0
            && let Ok(more) = room.clone().try_acquire_many_owned(free)
        {
            permits.merge(more);
        }
        tracing::trace!(consumer = %spec.durable, room = permits.num_permits(), "fetching");
        let fetched = tokio::select! {
            () = shutdown.cancelled() => break,
            fetched = consumer
                .fetch()
                .max_messages(permits.num_permits())
                .expires(FETCH_EXPIRES)
                .messages() => fetched,
        };
        // A fetch can fail outright, or "succeed" and carry the failure as an item of the
        // batch (409 consumer deleted, 503 no responders during an election): both mean the
        // consumer may be gone. Back off and make it again; never spin.
        let failure = match fetched {
            Ok(mut fetch) => loop {
                let group = next_group(&mut fetch, &shutdown).await;
                tracing::trace!(consumer = %spec.durable, messages = group.messages.len(), ended = group.ended, "fetched");
                if !group.messages.is_empty() {
                    let held = permits.split(group.messages.len());
                    let (cx, created) = (cx.clone(), stream_created);
                    batches.spawn(async move {
                        settle::batch(&cx, created, group.messages).await;
                        drop(held);
                    });
                }
                if group.ended || group.failure.is_some() {
                    break group.failure;
                }
            },
            Err(error) => Some(error.to_string()),
        };
        drop(permits);
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
        tracing::warn!(consumer = %spec.durable, %error, failures, ?delay, "fetch failed; retrying");
        if pause(&shutdown, delay).await {
            break;
        }
        // One failure is often an election (409 Leadership Change): the consumer is still there.
        // Twice in a row, it may be gone: make it again — briefly, since during an election
        // the request would wait out the whole API timeout.
        if failures >= 2 {
            match tokio::time::timeout(RECREATE_TIMEOUT, create(&js, &spec)).await {
                Ok(Ok((again, created))) => {
                    tracing::info!(consumer = %spec.durable, "consumer re-created");
                    (consumer, stream_created) = (again, created);
                }
                Ok(Err(error)) => {
                    tracing::warn!(consumer = %spec.durable, %error, "cannot re-create the consumer yet")
                }
                Err(_) => {
                    tracing::warn!(consumer = %spec.durable, timeout = ?RECREATE_TIMEOUT, "re-creating the consumer timed out")
                }
            }
        }
    }
    // Batches in flight finish: their effects are durable, so their acks should go out.
    while let Some(done) = batches.join_next().await {
        report_panic(&spec, done);
    }
    tracing::info!(consumer = %spec.durable, "consumer stopped");
}

/// Messages of one fetch that arrived together.
struct Group {
    messages: Vec<jetstream::Message>,
    /// The fetch has nothing more to bring.
    ended: bool,
    failure: Option<String>,
}

/// Waits for the next message of a fetch, then takes whatever follows it within [`LINGER`].
async fn next_group(fetch: &mut pull::Batch, shutdown: &CancellationToken) -> Group {
    let mut group = Group {
        messages: Vec::new(),
        ended: false,
        failure: None,
    };
    // A pull request lost with a dead node is answered by nobody: async-nats gives up on it
    // only 5 s after its expiry, so give up sooner.
    let first = tokio::select! {
        () = shutdown.cancelled() => None,
        item = tokio::time::timeout(FETCH_EXPIRES + LOST_PULL_GRACE, fetch.next()) => item.unwrap_or(None),
    };
    let mut item = first;
    loop {
        match item {
            None => {
                group.ended = true;
                return group;
            }
            Some(Err(error)) => {
                group.failure = Some(error.to_string());
                return group;
            }
            Some(Ok(message)) => group.messages.push(message),
        }
        match tokio::time::timeout(LINGER, fetch.next()).await {
            Ok(next) => item = next,
            Err(_) => return group,
        }
    }
}

fn report_panic(spec: &ConsumerSpec, done: Result<(), tokio::task::JoinError>) {
    if let Err(error) = done
        && error.is_panic()
    {
        // Its messages come back after the ack wait; the handlers are idempotent.
        tracing::error!(consumer = %spec.durable, %error, "a batch handler panicked");
    }
}

/// Samples the consumer's pending and ack-pending messages into the metrics.
async fn sample(spec: &ConsumerSpec, consumer: &mut jetstream::consumer::Consumer<pull::Config>) {
    if let Ok(Ok(info)) = tokio::time::timeout(SAMPLE_TIMEOUT, consumer.info()).await {
        let gauge = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        metrics::CONSUMER_PENDING
            .with_label_values(&[spec.durable.as_str()])
            .set(gauge(info.num_pending));
        metrics::CONSUMER_ACK_PENDING
            .with_label_values(&[spec.durable.as_str()])
            .set(gauge(info.num_ack_pending as u64));
    }
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
    crate::retry::doubling(Duration::from_millis(250), failures, Duration::from_secs(5))
}

/// Sleeps for `delay`; true when shutdown came first.
async fn pause(shutdown: &CancellationToken, delay: Duration) -> bool {
    tokio::select! {
        () = shutdown.cancelled() => true,
        () = tokio::time::sleep(delay) => false,
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
