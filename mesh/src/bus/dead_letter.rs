//! Dead letters (RocketMQ's `%DLQ%`, DESIGN §5): a message that can never be handled, or whose
//! deliveries ran out, is copied into `JIFEN_DLQ` with headers naming its origin — and only once
//! that copy is stored is it removed from its work queue. Nothing is lost on the way.
//!
//! Two paths lead here. A handler that sees a poison message, or fails the last allowed
//! delivery, copies it itself ([`copy`]) and then terminates it. A message whose deliveries ran
//! out without a handler seeing the end (a crash, an ack timeout) raises the server's
//! MAX_DELIVERIES advisory; `JIFEN_ADVISORY` keeps it, and the [`Forwarder`] copies the
//! message, fetched by stream sequence, then deletes it.

use async_nats::HeaderMap;
use async_nats::jetstream;
use bytes::Bytes;
use serde::Deserialize;

use super::BusError;
use super::consume::{Delivery, Disposition, Handler};
use super::subjects::{
    CONSUMER_HEADER, DEAD_LETTER_KIND_HEADER, DELIVERIES_HEADER, LAST_ERROR_HEADER,
    ORDER_ID_HEADER, ORIGIN_MSG_ID_HEADER, ORIGIN_SEQUENCE_HEADER, ORIGIN_STREAM_HEADER,
    ORIGIN_SUBJECT_HEADER, TRACEPARENT_HEADER, dlq_message_id, dlq_subject,
};

/// A message on its way to the dead-letter queue.
#[derive(Debug, Clone)]
pub struct Origin<'a> {
    pub stream: &'a str,
    /// When the stream was created (ns since the epoch): sequences restart with a new stream.
    pub stream_created_ns: i128,
    pub sequence: u64,
    pub subject: &'a str,
    pub consumer: &'a str,
    pub deliveries: i64,
    pub last_error: &'a str,
    pub headers: Option<&'a HeaderMap>,
    pub payload: Bytes,
    /// [`DEAD_LETTER_KIND_HEADER`]'s value, when it is more than "could not be handled".
    pub kind: Option<&'a str>,
}

/// Copies a message into `JIFEN_DLQ` and waits until it is stored. A dead letter that is
/// dead-lettered again (the indexer ran out of deliveries) keeps its first origin, so a
/// redrive still goes to the subject that failed first.
pub async fn copy(js: &jetstream::Context, origin: &Origin<'_>) -> Result<(), BusError> {
    let header = |name: &str| {
        origin
            .headers
            .and_then(|h| h.get(name))
            .map(|v| v.as_str().to_owned())
    };
    let mut headers = HeaderMap::new();
    for name in [ORDER_ID_HEADER, TRACEPARENT_HEADER, DEAD_LETTER_KIND_HEADER] {
        if let Some(value) = header(name) {
            headers.insert(name, value.as_str());
        }
    }
    let first = header(ORIGIN_STREAM_HEADER).is_some();
    let (id, stream, consumer, last_error) = if first {
        // Already a dead letter: its origin headers stay, and it gets an id of its own (the
        // first id may still be in the duplicate window, which would drop this copy).
        for name in [
            ORIGIN_STREAM_HEADER,
            ORIGIN_SEQUENCE_HEADER,
            ORIGIN_SUBJECT_HEADER,
            ORIGIN_MSG_ID_HEADER,
            CONSUMER_HEADER,
        ] {
            if let Some(value) = header(name) {
                headers.insert(name, value.as_str());
            }
        }
        let first_id = header(async_nats::header::NATS_MESSAGE_ID.as_ref()).unwrap_or_default();
        (
            format!("{first_id}:again-{}", origin.sequence),
            header(ORIGIN_STREAM_HEADER).unwrap_or_default(),
            header(CONSUMER_HEADER).unwrap_or_else(|| origin.consumer.to_owned()),
            format!(
                "{}; then {} could not take it: {}",
                header(LAST_ERROR_HEADER).unwrap_or_default(),
                origin.consumer,
                origin.last_error
            ),
        )
    } else {
        if let Some(id) = header(async_nats::header::NATS_MESSAGE_ID.as_ref()) {
            headers.insert(ORIGIN_MSG_ID_HEADER, id.as_str());
        }
        headers.insert(ORIGIN_STREAM_HEADER, origin.stream);
        headers.insert(ORIGIN_SEQUENCE_HEADER, origin.sequence.to_string().as_str());
        headers.insert(ORIGIN_SUBJECT_HEADER, origin.subject);
        headers.insert(CONSUMER_HEADER, origin.consumer);
        (
            dlq_message_id(origin.stream, origin.stream_created_ns, origin.sequence),
            origin.stream.to_owned(),
            origin.consumer.to_owned(),
            origin.last_error.to_owned(),
        )
    };
    if let Some(kind) = origin.kind {
        headers.insert(DEAD_LETTER_KIND_HEADER, kind);
    }
    headers.insert(async_nats::header::NATS_MESSAGE_ID, id.as_str());
    headers.insert(DELIVERIES_HEADER, origin.deliveries.to_string().as_str());
    // Header values are one line.
    let last_error: String = last_error
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(1_000)
        .collect();
    headers.insert(LAST_ERROR_HEADER, last_error.as_str());
    let subject = dlq_subject(&stream, &consumer);
    let publish_error = |source| BusError::Publish {
        subject: subject.clone(),
        source,
    };
    js.publish_with_headers(subject.clone(), headers, origin.payload.clone())
        .await
        .map_err(publish_error)?
        .await
        .map_err(publish_error)?;
    Ok(())
}

/// The part of a JetStream consumer advisory that matters here.
#[derive(Debug, Deserialize, PartialEq, Eq)]
pub struct Advisory {
    #[serde(rename = "type")]
    pub kind: String,
    pub stream: String,
    pub consumer: String,
    pub stream_seq: u64,
    #[serde(default)]
    pub deliveries: i64,
    #[serde(default)]
    pub reason: String,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub timestamp: Option<time::OffsetDateTime>,
}

pub const MAX_DELIVER_ADVISORY: &str = "io.nats.jetstream.advisory.v1.max_deliver";

/// Handles `JIFEN_ADVISORY`: copies every message whose deliveries ran out into the dead-letter
/// queue, then deletes it from its work queue. Terminated messages need nothing: Jifen's
/// handlers copy them before terminating.
#[derive(Debug, Clone)]
pub struct Forwarder {
    js: jetstream::Context,
}

impl Forwarder {
    pub fn new(js: jetstream::Context) -> Self {
        Self { js }
    }

    async fn forward(&self, advisory: &Advisory) -> Result<(), String> {
        let stream = self
            .js
            .get_stream(&advisory.stream)
            .await
            .map_err(|e| format!("stream {}: {e}", advisory.stream))?;
        let created = stream.cached_info().created;
        if advisory.timestamp.is_some_and(|at| at < created) {
            // The stream was recreated since: its sequence now names another message.
            tracing::warn!(stream = %advisory.stream, sequence = advisory.stream_seq, "advisory older than its stream; ignored");
            return Ok(());
        }
        let message = match stream.get_raw_message(advisory.stream_seq).await {
            Ok(message) => message,
            Err(error)
                if error.kind() == jetstream::stream::RawMessageErrorKind::NoMessageFound =>
            {
                // Already copied and deleted (the advisory repeats after a leader change).
                return Ok(());
            }
            Err(error) => return Err(format!("fetching {}: {error}", advisory.stream_seq)),
        };
        let last_error = format!(
            "deliveries ran out ({}) without the handler settling the message",
            advisory.deliveries
        );
        copy(
            &self.js,
            &Origin {
                stream: &advisory.stream,
                stream_created_ns: created.unix_timestamp_nanos(),
                sequence: advisory.stream_seq,
                subject: message.subject.as_str(),
                consumer: &advisory.consumer,
                deliveries: advisory.deliveries,
                last_error: &last_error,
                headers: Some(&message.headers),
                payload: message.payload.clone(),
                // The server ran out of deliveries: every one failed or timed out.
                kind: Some(crate::bus::subjects::RETRIES_EXHAUSTED),
            },
        )
        .await
        .map_err(|e| e.to_string())?;
        stream
            .delete_message(advisory.stream_seq)
            .await
            .map(drop)
            .or_else(|e| match e.kind() {
                // Someone deleted it between our fetch and now: the copy is what matters.
                jetstream::stream::DeleteMessageErrorKind::JetStream(inner)
                    if inner.error_code() == jetstream::ErrorCode::NO_MESSAGE_FOUND =>
                {
                    Ok(())
                }
                _ => Err(format!("deleting {}: {e}", advisory.stream_seq)),
            })
    }
}

impl Handler for Forwarder {
    async fn handle(&self, delivery: &Delivery) -> Disposition {
        let advisory: Advisory = match serde_json::from_slice(&delivery.payload) {
            Ok(advisory) => advisory,
            Err(error) => return Disposition::Poison(format!("unreadable advisory: {error}")),
        };
        if advisory.kind != MAX_DELIVER_ADVISORY {
            return Disposition::Ack;
        }
        match self.forward(&advisory).await {
            Ok(()) => {
                crate::metrics::DEAD_LETTERS
                    .with_label_values(&[advisory.consumer.as_str()])
                    .inc();
                tracing::warn!(stream = %advisory.stream, consumer = %advisory.consumer, sequence = advisory.stream_seq, "message dead-lettered after its deliveries ran out");
                Disposition::Ack
            }
            Err(reason) => Disposition::Retry(reason),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advisories_parse_from_the_server_json() {
        let json = r#"{"type":"io.nats.jetstream.advisory.v1.max_deliver","id":"x","timestamp":"2026-01-01T00:00:00Z","stream":"JIFEN_CMD","consumer":"channel-alpha","stream_seq":42,"deliveries":16}"#;
        let advisory: Advisory = serde_json::from_str(json).unwrap();
        assert_eq!(advisory.kind, MAX_DELIVER_ADVISORY);
        assert_eq!((advisory.stream_seq, advisory.deliveries), (42, 16));
        let terminated = r#"{"type":"io.nats.jetstream.advisory.v1.terminated","stream":"JIFEN_EVT","consumer":"mall-saga","stream_seq":7,"deliveries":1,"reason":"bad"}"#;
        let advisory: Advisory = serde_json::from_str(terminated).unwrap();
        assert_eq!(advisory.reason, "bad");
    }
}
