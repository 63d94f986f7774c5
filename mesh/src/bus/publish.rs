//! Publishing with the headers every Jifen message carries, waiting for the server's ack: a
//! publish is done only when JetStream has stored it (a dropped ack future loses its error).
//! Batches are pipelined: every message is sent, then every ack awaited together.

use std::future::IntoFuture;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, context::PublishAckFuture};
use bytes::Bytes;

use super::BusError;
use super::subjects::{ORDER_ID_HEADER, TRACEPARENT_HEADER};

/// One message to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub subject: String,
    /// Deterministic id: the server drops a repeat within its duplicate window.
    pub msg_id: String,
    pub order_id: String,
    pub traceparent: Option<String>,
    pub payload: Bytes,
}

impl Outgoing {
    fn headers(&self) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(async_nats::header::NATS_MESSAGE_ID, self.msg_id.as_str());
        headers.insert(ORDER_ID_HEADER, self.order_id.as_str());
        if let Some(traceparent) = &self.traceparent {
            headers.insert(TRACEPARENT_HEADER, traceparent.as_str());
        }
        headers
    }
}

#[derive(Debug, Clone)]
pub struct Publisher {
    js: jetstream::Context,
}

impl Publisher {
    pub fn new(js: jetstream::Context) -> Self {
        Self { js }
    }

    /// Publishes one message and waits until JetStream stored it.
    pub async fn publish(&self, message: &Outgoing) -> Result<(), BusError> {
        self.send(message)
            .await?
            .await
            .map_err(|source| BusError::Publish {
                subject: message.subject.clone(),
                source,
            })?;
        Ok(())
    }

    /// Publishes several messages without waiting between them, then waits for all their acks
    /// at once, under one `deadline` (a lost leader must cost one deadline per batch, not one
    /// per message). One result per message, in order; a message after a failed send is not
    /// sent.
    pub async fn publish_all(
        &self,
        messages: &[Outgoing],
        deadline: Duration,
    ) -> Vec<Result<(), BusError>> {
        let until = tokio::time::Instant::now() + deadline;
        let mut acks = Vec::with_capacity(messages.len());
        for message in messages {
            match tokio::time::timeout_at(until, self.send(message)).await {
                Ok(Ok(ack)) => acks.push(Ok(ack)),
                Ok(Err(error)) => {
                    acks.push(Err(error));
                    break;
                }
                Err(_) => {
                    acks.push(Err(BusError::AckDeadline {
                        subject: message.subject.clone(),
                        deadline,
                    }));
                    break;
                }
            }
        }
        let waits = messages.iter().zip(acks).map(|(message, sent)| async move {
            let ack = sent?;
            match tokio::time::timeout_at(until, ack.into_future()).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(source)) => Err(BusError::Publish {
                    subject: message.subject.clone(),
                    source,
                }),
                Err(_) => Err(BusError::AckDeadline {
                    subject: message.subject.clone(),
                    deadline,
                }),
            }
        });
        let mut results = futures_util::future::join_all(waits).await;
        while results.len() < messages.len() {
            results.push(Err(BusError::NotSent));
        }
        results
    }

    async fn send(&self, message: &Outgoing) -> Result<PublishAckFuture, BusError> {
        self.js
            .publish_with_headers(
                message.subject.clone(),
                message.headers(),
                message.payload.clone(),
            )
            .await
            .map_err(|source| BusError::Publish {
                subject: message.subject.clone(),
                source,
            })
    }
}
