//! One batch of deliveries from fetch to settlement: read each message's delivery info, hand the
//! batch to the handler while reporting progress for every message, then ack, nak with the
//! back-off delay, or dead-letter each one by its disposition.

use async_nats::jetstream::{self, AckKind};
use bytes::Bytes;

use super::{ConsumerSpec, Delivery, Disposition, Handler};
use crate::bus::dead_letter::{self, Origin};
use crate::metrics;

/// What every batch of one consumer shares.
pub(super) struct Context<H> {
    pub handler: std::sync::Arc<H>,
    pub spec: ConsumerSpec,
    pub js: jetstream::Context,
    pub client: async_nats::Client,
}

/// Handles one fetched batch to the end: every message is settled when this returns.
pub(super) async fn batch<H: Handler>(
    cx: &Context<H>,
    stream_created_ns: i128,
    messages: Vec<jetstream::Message>,
) {
    let consumer = cx.spec.durable.as_str();
    let mut held = Vec::with_capacity(messages.len());
    let mut deliveries = Vec::with_capacity(messages.len());
    for message in messages {
        let (delivered, stream_sequence) = match message.info() {
            Ok(info) => (info.delivered, info.stream_sequence),
            Err(error) => {
                // Without its sequence it could not be dead-lettered safely: leave it for later.
                tracing::warn!(consumer, %error, "message without delivery info");
                let _ = message
                    .ack_with(AckKind::Nak(Some(cx.spec.delay_after(1))))
                    .await;
                continue;
            }
        };
        if delivered > 1 {
            metrics::REDELIVERIES.with_label_values(&[consumer]).inc();
        }
        let subject = message.subject.to_string();
        let span = tracing::info_span!(
            "bus.handle",
            otel.name = %format!("{consumer} {subject}"),
            messaging.consumer = %consumer,
            messaging.subject = %subject,
            delivered,
        );
        let delivery = Delivery {
            subject,
            payload: message.payload.clone(),
            headers: message.headers.clone(),
            delivered,
            stream_sequence,
            span,
        };
        crate::trace::adopt(&delivery.span, delivery.header(crate::trace::TRACEPARENT));
        held.push(message);
        deliveries.push(delivery);
    }
    if deliveries.is_empty() {
        return;
    }
    let started = std::time::Instant::now();
    let handling = cx.handler.handle_batch(&deliveries);
    tokio::pin!(handling);
    // The server takes the first back-off step as the ack wait (nats-server overrides AckWait
    // with BackOff[0]): a handler slower than that would see its messages delivered again
    // while it works, so every message of the batch reports progress at half that period.
    let mut progress = tokio::time::interval(cx.spec.effective_ack_wait() / 2);
    progress.tick().await;
    let dispositions = loop {
        tokio::select! {
            dispositions = &mut handling => break dispositions,
            _ = progress.tick() => {
                for message in &held {
                    if let Err(error) = message.ack_with(AckKind::Progress).await {
                        tracing::debug!(%error, "cannot report progress");
                    }
                }
            }
        }
    };
    let elapsed = started.elapsed().as_secs_f64();
    let settles =
        held.iter()
            .zip(&deliveries)
            .zip(dispositions)
            .map(|((message, delivery), disposition)| {
                metrics::HANDLE_LATENCY
                    .with_label_values(&[consumer])
                    .observe(elapsed);
                dispose(cx, stream_created_ns, message, delivery, disposition)
            });
    futures_util::future::join_all(settles).await;
}

/// Acks, naks with the back-off delay, or dead-letters one message.
async fn dispose<H>(
    cx: &Context<H>,
    stream_created_ns: i128,
    message: &jetstream::Message,
    delivery: &Delivery,
    disposition: Disposition,
) {
    let spec = &cx.spec;
    let consumer = spec.durable.as_str();
    let delivered = delivery.delivered;
    let outcome = match &disposition {
        Disposition::Ack => "ack",
        Disposition::Retry(_) | Disposition::RetryAfter(..) if delivered < spec.max_deliver => {
            "retry"
        }
        _ => "dead_letter",
    };
    metrics::HANDLED
        .with_label_values(&[consumer, outcome])
        .inc();
    let result = match &disposition {
        Disposition::Ack => message.ack().await,
        Disposition::Retry(why) if delivered < spec.max_deliver => {
            let delay = spec.delay_after(delivered);
            tracing::debug!(consumer, subject = %delivery.subject, delivered, ?delay, %why, "retrying later");
            message.ack_with(AckKind::Nak(Some(delay))).await
        }
        Disposition::RetryAfter(delay, why) if delivered < spec.max_deliver => {
            tracing::debug!(consumer, subject = %delivery.subject, delivered, ?delay, %why, "asking again later");
            message.ack_with(AckKind::Nak(Some(*delay))).await
        }
        // The last delivery failed, or the message can never succeed: into the dead-letter
        // queue, and off the work queue only once the copy is stored.
        Disposition::Retry(reason)
        | Disposition::RetryAfter(_, reason)
        | Disposition::Poison(reason)
        | Disposition::OutcomeUnknown(reason)
        | Disposition::Mismatched(reason)
        | Disposition::HoldExpiring(reason) => {
            let origin = Origin {
                kind: match disposition {
                    Disposition::OutcomeUnknown(_) => Some(crate::bus::subjects::OUTCOME_UNKNOWN),
                    Disposition::Mismatched(_) => Some(crate::bus::subjects::MISMATCHED_EVENT),
                    Disposition::HoldExpiring(_) => Some(crate::bus::subjects::HOLD_EXPIRING),
                    Disposition::Retry(_) | Disposition::RetryAfter(..) => {
                        Some(crate::bus::subjects::RETRIES_EXHAUSTED)
                    }
                    Disposition::Ack | Disposition::Poison(_) => None,
                },
                stream: &spec.stream,
                stream_created_ns,
                sequence: delivery.stream_sequence,
                subject: &delivery.subject,
                consumer,
                deliveries: delivered,
                last_error: reason,
                headers: delivery.headers.as_ref(),
                payload: delivery.payload.clone(),
            };
            match dead_letter::copy(&cx.js, &origin).await {
                Ok(()) => {
                    metrics::DEAD_LETTERS.with_label_values(&[consumer]).inc();
                    tracing::error!(consumer, subject = %delivery.subject, delivered, %reason, "message dead-lettered");
                    terminate(&cx.client, message, reason).await
                }
                Err(error) => {
                    // Past its last delivery the server raises an advisory and the forwarder
                    // copies it; a poison message comes back and is tried again.
                    tracing::warn!(consumer, %error, "cannot dead-letter a message yet");
                    message
                        .ack_with(AckKind::Nak(Some(spec.delay_after(delivered))))
                        .await
                }
            }
        }
    };
    if let Err(error) = result {
        // The server redelivers after ack_wait; the handlers are idempotent.
        tracing::warn!(consumer, %error, ?disposition, "cannot settle a message");
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
