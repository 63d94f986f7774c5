//! Publishing with the headers every Jifen message carries, waiting for the server's ack: a
//! publish is done only when JetStream has stored it (a dropped ack future loses its error).

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
            .map_err(|e| BusError::Publish {
                subject: message.subject.clone(),
                reason: e.to_string(),
            })?;
        Ok(())
    }

    /// Publishes several messages, pipelined, and waits for every ack: one result per message,
    /// in order. A message after a failed send is not sent.
    pub async fn publish_all(&self, messages: &[Outgoing]) -> Vec<Result<(), BusError>> {
        let mut pending = Vec::with_capacity(messages.len());
        for message in messages {
            match self.send(message).await {
                Ok(ack) => pending.push(Ok(ack)),
                Err(error) => {
                    pending.push(Err(error));
                    break;
                }
            }
        }
        let mut results = Vec::with_capacity(messages.len());
        for (message, sent) in messages.iter().zip(pending) {
            results.push(match sent {
                Ok(ack) => ack.await.map(drop).map_err(|e| BusError::Publish {
                    subject: message.subject.clone(),
                    reason: e.to_string(),
                }),
                Err(error) => Err(error),
            });
        }
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
            .map_err(|e| BusError::Publish {
                subject: message.subject.clone(),
                reason: e.to_string(),
            })
    }
}
