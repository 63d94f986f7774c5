//! Who may say what on the bus (DESIGN §11): each process connects as an identity of its own,
//! and the server enforces what each identity may publish and subscribe to — the JetStream API
//! subjects included, since creating a consumer, fetching from it, acking and deleting are all
//! publishes to `$JS.…` subjects.
//!
//! | identity | publishes | consumes |
//! |---|---|---|
//! | `mall` | commands, dead letters, redriven events, `jifen.changes.orders` | `mall-saga`, `mall-dlq`, `dlq-forwarder`; every `jifen.health.>` report; `jifen.changes.orders` |
//! | `channel-<id>` | `jifen.evt.channel.<id>.>`, its own dead letters and `jifen.health.channel-<id>` | `channel-<id>` on `jifen.cmd.channel.<id>.*` |
//! | `portal` | `jifen.evt.portal.>`, its own dead letters | `portal` on `jifen.cmd.portal.*` |
//! | `ops` | anything (break-glass, for the `nats` CLI; no service uses it) | anything |
//!
//! Nobody but `ops` may delete or purge a stream or a consumer. A connector may read its own
//! consumer, never create one with another filter: the server checks that the filter in the
//! create subject is the filter of the request. Replies come on `_INBOX.<identity>.>`, which
//! only that identity may read, so no identity sees the messages another one fetches.

use super::subjects::{
    ADVISORY_STREAM, CMD_STREAM, DLQ_INDEX_CONSUMER, DLQ_STREAM, EVT_STREAM, FORWARDER_CONSUMER,
    HEALTH_SUBJECTS, ORDER_CHANGES_SUBJECT, PORTAL_CONSUMER, SAGA_CONSUMER, channel_commands,
    channel_consumer, dlq_subject, health_subject,
};
use crate::domain::{ChannelId, InvalidField};

/// A process's identity on the bus.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Identity {
    Mall,
    Portal,
    Channel(ChannelId),
    Ops,
}

/// What an identity may publish and subscribe to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permissions {
    pub publish: Vec<String>,
    pub subscribe: Vec<String>,
}

impl Identity {
    /// The identity of channel `id`'s connector.
    pub fn channel(id: &str) -> Result<Self, InvalidField> {
        ChannelId::parse("channel_id", id).map(Self::Channel)
    }

    /// Its name: the connection's name, its inbox and its seed file's stem.
    pub fn name(&self) -> String {
        match self {
            Self::Mall => "mall".to_owned(),
            Self::Portal => "portal".to_owned(),
            Self::Channel(id) => channel_consumer(id.as_str()),
            Self::Ops => "ops".to_owned(),
        }
    }

    pub fn permissions(&self) -> Permissions {
        let inbox = format!("_INBOX.{}.>", self.name());
        match self {
            Self::Mall => Permissions {
                publish: mall_publishes(),
                subscribe: vec![
                    inbox,
                    HEALTH_SUBJECTS.to_owned(),
                    ORDER_CHANGES_SUBJECT.to_owned(),
                ],
            },
            Self::Portal => Permissions {
                publish: connector_publishes(
                    PORTAL_CONSUMER,
                    "jifen.cmd.portal.*",
                    "jifen.evt.portal.>",
                ),
                subscribe: vec![inbox],
            },
            Self::Channel(id) => {
                let id = id.as_str();
                Permissions {
                    publish: connector_publishes(
                        &channel_consumer(id),
                        &channel_commands(id),
                        &format!("jifen.evt.channel.{id}.>"),
                    ),
                    subscribe: vec![inbox],
                }
            }
            Self::Ops => Permissions {
                publish: vec![">".to_owned()],
                subscribe: vec![">".to_owned()],
            },
        }
    }
}

/// A connector: its one durable consumer on the command stream, its events, and the dead
/// letters of its own consumer (a poison command it copies before terminating it).
fn connector_publishes(consumer: &str, filter: &str, events: &str) -> Vec<String> {
    let mut publish = vec![
        events.to_owned(),
        dlq_subject(CMD_STREAM, consumer),
        health_subject(consumer),
        "$JS.API.INFO".to_owned(),
    ];
    // Looking the streams up is how a process checks they exist before it starts.
    for stream in [CMD_STREAM, EVT_STREAM, DLQ_STREAM, ADVISORY_STREAM] {
        publish.push(format!("$JS.API.STREAM.INFO.{stream}"));
    }
    publish.extend(consumer_api(CMD_STREAM, consumer, Some(filter)));
    publish
}

/// The mall: creates the streams, publishes commands (and, redriving, any dead letter's
/// original), consumes events, dead letters and advisories, and — as the dead-letter
/// forwarder — reads and removes a message whose deliveries ran out.
fn mall_publishes() -> Vec<String> {
    let mut publish = vec![
        "jifen.cmd.>".to_owned(),
        "jifen.evt.>".to_owned(),
        "jifen.dlq.>".to_owned(),
        ORDER_CHANGES_SUBJECT.to_owned(),
        "$JS.API.INFO".to_owned(),
    ];
    for stream in [CMD_STREAM, EVT_STREAM, DLQ_STREAM, ADVISORY_STREAM] {
        publish.push(format!("$JS.API.STREAM.INFO.{stream}"));
        publish.push(format!("$JS.API.STREAM.CREATE.{stream}"));
        // The console shows every consumer group's backlog.
        publish.push(format!("$JS.API.CONSUMER.INFO.{stream}.*"));
    }
    // Pauses and maintenance windows of the connectors' consumers (issue 18).
    publish.push(format!("$JS.API.CONSUMER.PAUSE.{CMD_STREAM}.*"));
    for stream in [CMD_STREAM, EVT_STREAM] {
        publish.push(format!("$JS.API.STREAM.MSG.GET.{stream}"));
        publish.push(format!("$JS.API.STREAM.MSG.DELETE.{stream}"));
    }
    publish.extend(consumer_api(EVT_STREAM, SAGA_CONSUMER, None));
    publish.extend(consumer_api(DLQ_STREAM, DLQ_INDEX_CONSUMER, None));
    publish.extend(consumer_api(ADVISORY_STREAM, FORWARDER_CONSUMER, None));
    publish
}

/// Creating, reading, fetching from and acking one durable consumer; with `filter`, only a
/// consumer on that filter may be created.
fn consumer_api(stream: &str, consumer: &str, filter: Option<&str>) -> Vec<String> {
    vec![
        format!(
            "$JS.API.CONSUMER.CREATE.{stream}.{consumer}.{}",
            filter.unwrap_or(">")
        ),
        format!("$JS.API.CONSUMER.INFO.{stream}.{consumer}"),
        format!("$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}"),
        format!("$JS.ACK.{stream}.{consumer}.>"),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_channel_may_speak_only_for_itself() {
        let alpha = Identity::channel("alpha").unwrap().permissions();
        assert!(
            alpha
                .publish
                .contains(&"jifen.evt.channel.alpha.>".to_owned())
        );
        assert!(
            alpha
                .publish
                .contains(&"jifen.dlq.JIFEN_CMD.channel-alpha".to_owned())
        );
        assert!(alpha.publish.contains(
            &"$JS.API.CONSUMER.CREATE.JIFEN_CMD.channel-alpha.jifen.cmd.channel.alpha.*".to_owned()
        ));
        assert_eq!(alpha.subscribe, vec!["_INBOX.channel-alpha.>".to_owned()]);
        assert!(
            alpha
                .publish
                .contains(&"jifen.health.channel-alpha".to_owned())
        );
        for subject in &alpha.publish {
            assert!(!subject.contains("beta"), "{subject}");
            assert!(!subject.contains("DELETE"), "{subject}");
            assert!(!subject.contains("PURGE"), "{subject}");
            assert!(!subject.starts_with("jifen.cmd"), "{subject}");
            assert_ne!(subject, ">");
        }
        assert!(Identity::channel("al.pha").is_err());
        assert!(Identity::channel("*").is_err());
    }

    #[test]
    fn the_mall_deletes_messages_but_never_streams_or_consumers() {
        let mall = Identity::Mall.permissions();
        assert!(
            mall.publish
                .contains(&"$JS.API.STREAM.MSG.DELETE.JIFEN_CMD".to_owned())
        );
        for subject in &mall.publish {
            assert!(!subject.starts_with("$JS.API.STREAM.DELETE"), "{subject}");
            assert!(!subject.starts_with("$JS.API.STREAM.PURGE"), "{subject}");
            assert!(!subject.starts_with("$JS.API.CONSUMER.DELETE"), "{subject}");
            assert!(!subject.starts_with("$JS.API.STREAM.UPDATE"), "{subject}");
        }
    }
}
