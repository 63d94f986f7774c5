//! A connector drives one ledger endpoint (a channel's `ChannelService`, the portal's
//! `PortalService`) from its commands on the bus, and publishes what the ledger recorded.
//!
//! The policy is the same for both, so it lives here; each side supplies a [`LedgerEndpoint`]
//! (decode a command, call the endpoint, encode the outcome event). Status codes decide, as
//! DESIGN §4 says: `FAILED_PRECONDITION` and `NOT_FOUND` are business rejections (published,
//! acked), `ABORTED` means the key was refunded first (the recorded state is published),
//! `INVALID_ARGUMENT` and `ALREADY_EXISTS` can never succeed (poison), anything else is
//! transient (retried with back-off). Before calling again a command whose first call may
//! have happened (a redelivery), the connector asks the endpoint what it recorded (check-back).
//!
//! An endpoint that guarantees less ([`Capabilities`]) changes the strategy: no check-back
//! without a query; a deduct at a channel whose deducts are not idempotent and cannot be asked
//! about is never sent twice blindly (an answer that may be lost dead-letters it as "outcome
//! unknown"); a refund at a channel without a refund call becomes a "manual refund" event.

use std::future::Future;

use tonic::Status;

use crate::barrier::LedgerState;
use crate::bus::consume::{Delivery, Disposition, Handler};
use crate::bus::publish::{Outgoing, Publisher};
use crate::bus::subjects::{
    MANUAL_REFUND_TOKEN, Step, TRACEPARENT_HEADER, command_step, event_message_id, outcome_token,
    points_message_id, quota_message_id,
};
use crate::capabilities::Capabilities;

pub mod health;
mod pending;
mod strategy;
mod watched;
pub use pending::{PendingBook, PollSchedule, is_pending, pending_status};
pub use strategy::answers;
use strategy::{Answer, describe};
pub use watched::{Noting, Watched};

/// A command for one ledger key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerCommand {
    pub step: Step,
    pub order_id: String,
    pub channel_id: String,
    /// The user at a channel; empty at the portal.
    pub user_id: String,
    /// Points to deduct; for a refund of a channel's line, what the line deducted (a
    /// partner's reversal names it); 0 for a refund at the portal.
    pub points: i64,
    /// Values the deduct's answer gave (the partner's transaction id), for a refund.
    pub captured: std::collections::BTreeMap<String, String>,
    /// For a confirm: when its hold lapses (0 when unknown); past it the confirm is an
    /// operator's task.
    pub hold_expires_at_ms: i64,
}

/// What a ledger recorded for a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub state: LedgerState,
    pub points: i64,
    pub reason: String,
    /// The key the ledger named in its answer; `None` when the connector inferred the record
    /// from a status code.
    pub key: Option<AnsweredKey>,
    /// A refund that found nothing, at a ledger that may still take the key's deduct.
    pub deduct_may_follow: bool,
    /// Values of the answer the line keeps (the partner's transaction id), DESIGN §9.
    pub captured: std::collections::BTreeMap<String, String>,
    /// The partner exchanges behind this record, kept with the order as evidence.
    pub exchanges: Vec<Exchange>,
    /// When a frozen key's hold lapses (0 when the ledger did not say).
    pub hold_expires_at_ms: i64,
}

/// One request to a partner's API and what came back (DESIGN §9), secrets redacted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Exchange {
    pub at_unix_ms: i64,
    pub call: String,
    pub request: String,
    /// 0 when no answer came.
    pub status: u16,
    pub answer: String,
}

/// The key a ledger says it answered for. An empty field is one the ledger did not state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AnsweredKey {
    pub order_id: String,
    pub channel_id: String,
    pub user_id: String,
}

impl Recorded {
    /// A record the connector infers from a status code: nothing from the ledger to check.
    fn inferred(state: LedgerState, points: i64, status: &Status) -> Self {
        Self {
            state,
            points,
            reason: status.message().to_owned(),
            key: None,
            deduct_may_follow: false,
            captured: Default::default(),
            exchanges: Vec::new(),
            hold_expires_at_ms: 0,
        }
    }
}

/// Why a ledger's answer cannot be the answer to `command`: another key, or a deduct of
/// another amount. Such an answer must never mark a step.
pub fn mismatch(command: &LedgerCommand, recorded: &Recorded) -> Option<String> {
    if let Some(key) = &recorded.key {
        for (field, stated, expected) in [
            ("order_id", &key.order_id, &command.order_id),
            ("channel_id", &key.channel_id, &command.channel_id),
            ("user_id", &key.user_id, &command.user_id),
        ] {
            if !stated.is_empty() && stated != expected {
                return Some(format!(
                    "the ledger answered {} for {field} {stated:?}, not {expected:?}",
                    command.step.as_str()
                ));
            }
        }
    }
    (command.step.takes()
        && matches!(recorded.state, LedgerState::Deducted | LedgerState::Frozen)
        && recorded.points != command.points)
        .then(|| {
            format!(
                "the ledger {} {} points for a command of {}",
                if recorded.state == LedgerState::Frozen {
                    "froze"
                } else {
                    "deducted"
                },
                recorded.points,
                command.points
            )
        })
}

/// One ledger endpoint as a connector drives it.
pub trait LedgerEndpoint: Send + Sync + 'static {
    /// Decodes a command from its payload; the step comes from the subject.
    fn decode(&self, step: Step, payload: &[u8]) -> Result<LedgerCommand, String>;
    fn deduct(
        &self,
        command: &LedgerCommand,
    ) -> impl Future<Output = Result<Recorded, Status>> + Send;
    fn refund(
        &self,
        command: &LedgerCommand,
    ) -> impl Future<Output = Result<Recorded, Status>> + Send;
    /// Holds points for the key until the hold lapses (TCC, DESIGN §12); only called at a
    /// ledger with [`Self::hold_ttl`].
    fn freeze(
        &self,
        command: &LedgerCommand,
    ) -> impl Future<Output = Result<Recorded, Status>> + Send {
        let _ = command;
        std::future::ready(Err(Status::unimplemented("the ledger holds no points")))
    }
    /// Spends the key's hold.
    fn confirm(
        &self,
        command: &LedgerCommand,
    ) -> impl Future<Output = Result<Recorded, Status>> + Send {
        let _ = command;
        std::future::ready(Err(Status::unimplemented("the ledger holds no points")))
    }
    /// Releases the key's hold.
    fn cancel(
        &self,
        command: &LedgerCommand,
    ) -> impl Future<Output = Result<Recorded, Status>> + Send {
        let _ = command;
        std::future::ready(Err(Status::unimplemented("the ledger holds no points")))
    }
    /// How long the ledger's holds live, where it holds points (declares `freeze`); the mall
    /// sends TCC lines only to such a ledger.
    fn hold_ttl(&self) -> Option<std::time::Duration> {
        None
    }
    /// The recorded entry; `NOT_FOUND` when there is none.
    fn get(&self, command: &LedgerCommand)
    -> impl Future<Output = Result<Recorded, Status>> + Send;
    /// The outcome event of a command: subject and payload.
    fn event(&self, command: &LedgerCommand, recorded: &Recorded) -> (String, Vec<u8>);
    /// What the ledger guarantees; a ledger speaking Jifen's contract guarantees everything.
    fn capabilities(&self) -> Capabilities {
        Capabilities::FULL
    }
    /// When a command the ledger answered "processing" is asked about again; `None` where a
    /// ledger never answers so (its "processing" is then an operator's unknown outcome).
    fn poll_schedule(&self) -> Option<PollSchedule> {
        None
    }
    /// The key the ledger knows a command by, which its notifications name.
    fn partner_key(&self, command: &LedgerCommand) -> Option<String> {
        let _ = command;
        None
    }
    /// The event that asks an operator to refund `points` held by `command`'s key by hand, at
    /// a ledger without a refund call; `None` where every ledger can refund.
    fn manual_refund_event(
        &self,
        command: &LedgerCommand,
        points: i64,
    ) -> Option<(String, Vec<u8>)> {
        let _ = (command, points);
        None
    }
}

/// The consumer handler of a connector.
#[derive(Debug)]
pub struct Connector<E> {
    endpoint: E,
    publisher: Publisher,
    pending: std::sync::Arc<PendingBook>,
}

impl<E: LedgerEndpoint> Connector<E> {
    pub fn new(endpoint: E, publisher: Publisher) -> Self {
        Self::with_pending(endpoint, publisher, std::sync::Arc::default())
    }

    /// A connector whose pending commands are kept in `pending` (shared with whoever receives
    /// the partner's notifications).
    pub fn with_pending(
        endpoint: E,
        publisher: Publisher,
        pending: std::sync::Arc<PendingBook>,
    ) -> Self {
        pending.set_publisher(publisher.clone());
        Self {
            endpoint,
            publisher,
            pending,
        }
    }
}

impl<E: LedgerEndpoint> Handler for Connector<E> {
    async fn handle(&self, delivery: &Delivery) -> Disposition {
        let Some(step) = command_step(&delivery.subject) else {
            return Disposition::Poison(format!("unknown command subject {}", delivery.subject));
        };
        let command = match self.endpoint.decode(step, &delivery.payload) {
            Ok(command) => command,
            Err(reason) => return Disposition::Poison(format!("undecodable command: {reason}")),
        };
        // The delivered command's id, so that a re-sent command (new generation, redrive) has
        // a fresh outcome event rather than one the server drops as a duplicate.
        let command_id = if let Some(id) = delivery.msg_id() {
            id.to_owned()
        } else if command.user_id.is_empty() {
            quota_message_id(&command.order_id, command.step, &command.channel_id)
        } else {
            points_message_id(
                &command.order_id,
                command.step,
                &command.channel_id,
                &command.user_id,
            )
        };
        let answer = match self
            .outcome(&command, delivery.delivered, &command_id)
            .await
        {
            Ok(answer) => answer,
            Err(disposition) => return disposition,
        };
        self.pending.settled(&command);
        let (subject, payload, token) = match &answer {
            Answer::Recorded(recorded) => {
                if let Some(why) = mismatch(&command, recorded) {
                    return Disposition::Poison(format!("{}: {why}", describe(&command)));
                }
                let (subject, payload) = self.endpoint.event(&command, recorded);
                (subject, payload, outcome_token(recorded.state))
            }
            Answer::RefundByHand { points } => {
                match self.endpoint.manual_refund_event(&command, *points) {
                    Some((subject, payload)) => (subject, payload, MANUAL_REFUND_TOKEN),
                    None => {
                        return Disposition::Poison(format!(
                            "{}: the ledger has no refund call",
                            describe(&command)
                        ));
                    }
                }
            }
        };
        let traceparent = crate::trace::current_traceparent()
            .or_else(|| delivery.header(TRACEPARENT_HEADER).map(str::to_owned));
        let event = outcome_message(
            &command,
            &command_id,
            token,
            (subject, payload),
            traceparent,
        );
        match self.publisher.publish(&event).await {
            Ok(()) => Disposition::Ack,
            Err(error) => Disposition::Retry(error.to_string()),
        }
    }
}

/// The outcome event of the command delivered as `command_id`: its id derives from the
/// command's and the outcome, so the same outcome published twice (a notification, then a
/// poll) is one message to the server.
pub fn outcome_message(
    command: &LedgerCommand,
    command_id: &str,
    token: &str,
    (subject, payload): (String, Vec<u8>),
    traceparent: Option<String>,
) -> Outgoing {
    Outgoing {
        subject,
        msg_id: event_message_id(command_id, token),
        order_id: command.order_id.clone(),
        traceparent,
        payload: payload.into(),
    }
}

/// Runs a connector's consumer group until `shutdown`: connects to NATS, makes sure the
/// streams exist, consumes (reporting its ledger's health, [`health`]), and drains the
/// connection at the end. With `health`, it also
/// serves `grpc.health.v1.Health` there (SERVING while the consumer runs), for probes.
pub async fn run<E: LedgerEndpoint>(
    bus: &crate::config::BusArgs,
    spec: crate::bus::consume::ConsumerSpec,
    endpoint: E,
    health: Option<std::net::SocketAddr>,
    shutdown: tokio_util::sync::CancellationToken,
) -> Result<(), ConnectorRunError> {
    run_with(
        bus,
        spec,
        endpoint,
        health,
        shutdown,
        std::sync::Arc::default(),
    )
    .await
}

/// [`run`], keeping the pending commands in `pending` (for a partner's notifications).
pub async fn run_with<E: LedgerEndpoint>(
    bus: &crate::config::BusArgs,
    spec: crate::bus::consume::ConsumerSpec,
    endpoint: E,
    health: Option<std::net::SocketAddr>,
    shutdown: tokio_util::sync::CancellationToken,
    pending: std::sync::Arc<PendingBook>,
) -> Result<(), ConnectorRunError> {
    // A probe port: plain text, as kubelet's gRPC probes speak no TLS; it tells nothing but
    // whether the consumer runs.
    let health = match health {
        Some(addr) => {
            let server = crate::grpc::GrpcServer::bind(addr).await?;
            let token = shutdown.clone();
            Some(tokio::spawn(async move {
                server
                    .serve(
                        tonic::service::RoutesBuilder::default(),
                        &[],
                        token,
                        std::time::Duration::ZERO,
                    )
                    .await
            }))
        }
        None => None,
    };
    // A connector's identity on the bus is its consumer group's name (`channel-<id>`,
    // `portal`), as `jifen nats-config` names it.
    let client = tokio::select! {
        client = crate::bus::connect_as(bus, &spec.durable) => client?,
        () = shutdown.cancelled() => return Ok(()),
    };
    let js = async_nats::jetstream::new(client.clone());
    // The mall creates the streams; a connector only checks that they are there, and waits
    // for them (its consumer loop does) when it starts first.
    if let Err(error) = bus.topology().check(&js).await {
        tracing::warn!(%error, "the streams are not all there yet; waiting for the mall to create them");
    }
    let endpoint = Watched::new(endpoint);
    let reports = tokio::spawn(health::report(
        client.clone(),
        spec.durable.clone(),
        endpoint.clone(),
        shutdown.child_token(),
    ));
    let handler = Noting::new(
        Connector::with_pending(endpoint.clone(), Publisher::new(js.clone()), pending),
        endpoint,
        &spec,
    );
    crate::bus::consume::run(js, spec, std::sync::Arc::new(handler), shutdown.clone()).await;
    reports.abort();
    if let Err(error) = client.drain().await {
        tracing::warn!(%error, "NATS connection not drained");
    }
    if let Some(health) = health {
        shutdown.cancel();
        match health.await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => return Err(error.into()),
            Err(error) => tracing::error!(%error, "the health server's task failed"),
        }
    }
    Ok(())
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectorRunError {
    #[error(transparent)]
    Bus(#[from] crate::bus::BusError),
    #[error(transparent)]
    Health(#[from] crate::grpc::GrpcError),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deduct() -> LedgerCommand {
        LedgerCommand {
            step: Step::Deduct,
            order_id: "o-1".into(),
            channel_id: "alpha".into(),
            user_id: "u1".into(),
            points: 100,
            captured: Default::default(),
            hold_expires_at_ms: 0,
        }
    }

    fn answer(order_id: &str, user_id: &str, points: i64) -> Recorded {
        Recorded {
            state: LedgerState::Deducted,
            points,
            reason: String::new(),
            key: Some(AnsweredKey {
                order_id: order_id.into(),
                channel_id: "alpha".into(),
                user_id: user_id.into(),
            }),
            deduct_may_follow: false,
            captured: Default::default(),
            exchanges: Vec::new(),
            hold_expires_at_ms: 0,
        }
    }

    #[test]
    fn an_answer_for_another_key_or_amount_is_a_mismatch() {
        assert_eq!(mismatch(&deduct(), &answer("o-1", "u1", 100)), None);
        assert!(mismatch(&deduct(), &answer("o-2", "u1", 100)).is_some());
        assert!(mismatch(&deduct(), &answer("o-1", "u2", 100)).is_some());
        assert!(mismatch(&deduct(), &answer("o-1", "u1", 99)).is_some());
        // Fields a ledger leaves empty are not contradicted.
        assert_eq!(mismatch(&deduct(), &answer("", "", 100)), None);
        // A refund gives back what was deducted, whatever the command says.
        let refund = LedgerCommand {
            step: Step::Refund,
            points: 0,
            ..deduct()
        };
        let refunded = Recorded {
            state: LedgerState::Refunded,
            ..answer("o-1", "u1", 100)
        };
        assert_eq!(mismatch(&refund, &refunded), None);
    }
}
