//! The connector's side of its ledger's health (issue 18): [`Watched`] counts every call of an
//! endpoint in its [`CallBook`], and [`Noting`] notes after each delivery whether its command
//! waits for another, and why.

use std::sync::Arc;
use std::time::Instant;

use jifen_proto::v1::RetryingCommand;
use tonic::Status;

use super::health::{CallBook, MAX_ERROR_CHARS, PROBE_KEY};
use super::{LedgerCommand, LedgerEndpoint, PollSchedule, Recorded};
use crate::bus::subjects::{Step, consumer_channel};
use crate::capabilities::Capabilities;
use crate::time::now_unix_ms;

/// An endpoint whose deducts, refunds and queries are counted in a [`CallBook`].
#[derive(Debug)]
pub struct Watched<E> {
    inner: Arc<E>,
    book: Arc<CallBook>,
}

impl<E> Clone for Watched<E> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
            book: Arc::clone(&self.book),
        }
    }
}

impl<E: LedgerEndpoint> Watched<E> {
    pub fn new(inner: E) -> Self {
        Self {
            inner: Arc::new(inner),
            book: Arc::default(),
        }
    }

    pub fn book(&self) -> &CallBook {
        &self.book
    }

    async fn timed(
        &self,
        call: impl std::future::Future<Output = Result<Recorded, Status>>,
    ) -> Result<Recorded, Status> {
        let started = Instant::now();
        let result = call.await;
        self.book.record(&result, started.elapsed());
        result
    }

    /// Asks the ledger about a key that never exists; any answer (found or not) is health.
    pub(super) async fn probe(&self, consumer: &str) {
        let command = LedgerCommand {
            step: Step::Deduct,
            order_id: PROBE_KEY.to_owned(),
            channel_id: consumer_channel(consumer).unwrap_or(PROBE_KEY).to_owned(),
            user_id: if consumer_channel(consumer).is_some() {
                PROBE_KEY.to_owned()
            } else {
                String::new()
            },
            points: 0,
            captured: Default::default(),
            hold_expires_at_ms: 0,
        };
        let _ = self.get(&command).await;
    }
}

impl<E: LedgerEndpoint> LedgerEndpoint for Watched<E> {
    fn decode(&self, step: Step, payload: &[u8]) -> Result<LedgerCommand, String> {
        self.inner.decode(step, payload)
    }
    async fn deduct(&self, command: &LedgerCommand) -> Result<Recorded, Status> {
        self.timed(self.inner.deduct(command)).await
    }
    async fn refund(&self, command: &LedgerCommand) -> Result<Recorded, Status> {
        self.timed(self.inner.refund(command)).await
    }
    async fn freeze(&self, command: &LedgerCommand) -> Result<Recorded, Status> {
        self.timed(self.inner.freeze(command)).await
    }
    async fn confirm(&self, command: &LedgerCommand) -> Result<Recorded, Status> {
        self.timed(self.inner.confirm(command)).await
    }
    async fn cancel(&self, command: &LedgerCommand) -> Result<Recorded, Status> {
        self.timed(self.inner.cancel(command)).await
    }
    fn hold_ttl(&self) -> Option<std::time::Duration> {
        self.inner.hold_ttl()
    }
    async fn get(&self, command: &LedgerCommand) -> Result<Recorded, Status> {
        self.timed(self.inner.get(command)).await
    }
    fn event(&self, command: &LedgerCommand, recorded: &Recorded) -> (String, Vec<u8>) {
        self.inner.event(command, recorded)
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    fn poll_schedule(&self) -> Option<PollSchedule> {
        self.inner.poll_schedule()
    }
    fn partner_key(&self, command: &LedgerCommand) -> Option<String> {
        self.inner.partner_key(command)
    }
    fn manual_refund_event(
        &self,
        command: &LedgerCommand,
        points: i64,
    ) -> Option<(String, Vec<u8>)> {
        self.inner.manual_refund_event(command, points)
    }
}

/// A connector's handler that notes, after each delivery, whether its command waits for
/// another and why — what a pending line on the console shows. Only a command that waits is
/// decoded again; one that is done with is forgotten by its message's sequence.
#[derive(Debug)]
pub struct Noting<H, E> {
    inner: H,
    watched: Watched<E>,
    spec: crate::bus::consume::ConsumerSpec,
}

impl<H, E: LedgerEndpoint> Noting<H, E> {
    pub fn new(inner: H, watched: Watched<E>, spec: &crate::bus::consume::ConsumerSpec) -> Self {
        Self {
            inner,
            watched,
            spec: spec.clone(),
        }
    }
}

impl<H: crate::bus::consume::Handler, E: LedgerEndpoint> crate::bus::consume::Handler
    for Noting<H, E>
{
    async fn handle(
        &self,
        delivery: &crate::bus::consume::Delivery,
    ) -> crate::bus::consume::Disposition {
        use crate::bus::consume::Disposition;
        let disposition = self.inner.handle(delivery).await;
        let book = self.watched.book();
        let attempt = delivery.delivered;
        let (delay, why) = match &disposition {
            Disposition::Retry(why) if attempt < self.spec.max_deliver => {
                (self.spec.delay_after(attempt), why)
            }
            Disposition::RetryAfter(delay, why) if attempt < self.spec.max_deliver => (*delay, why),
            _ => {
                book.done(delivery.stream_sequence);
                return disposition;
            }
        };
        let Some(step) = crate::bus::subjects::command_step(&delivery.subject) else {
            return disposition;
        };
        let Ok(command) = self.watched.decode(step, &delivery.payload) else {
            return disposition;
        };
        book.waiting(
            delivery.stream_sequence,
            RetryingCommand {
                order_id: command.order_id,
                user_id: command.user_id,
                step: step.as_str().to_owned(),
                attempt: u32::try_from(attempt).unwrap_or(u32::MAX),
                max_attempts: u32::try_from(self.spec.max_deliver).unwrap_or(u32::MAX),
                last_error: why.chars().take(MAX_ERROR_CHARS).collect(),
                next_at_unix_ms: now_unix_ms()
                    .saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX)),
            },
        );
        disposition
    }
}
