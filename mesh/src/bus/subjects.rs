//! Names on the bus (DESIGN §5): streams, subjects, consumers, headers and message ids.
//!
//! Commands: `jifen.cmd.channel.<id>.<step>`, `jifen.cmd.portal.<step>`, the step one of
//! `deduct`, `refund` and, for holds (TCC), `freeze`, `confirm`, `cancel`.
//! Events: `jifen.evt.channel.<id>.<outcome>`, `jifen.evt.portal.<outcome>`, where the outcome
//! is the ledger state the command left (`deducted`, `rejected`, `refunded`, `frozen`,
//! `confirmed`, `cancelled`).

use crate::barrier::LedgerState;

pub const CMD_STREAM: &str = "JIFEN_CMD";
pub const EVT_STREAM: &str = "JIFEN_EVT";
pub const DLQ_STREAM: &str = "JIFEN_DLQ";
pub const ADVISORY_STREAM: &str = "JIFEN_ADVISORY";
pub const CMD_SUBJECTS: &str = "jifen.cmd.>";
pub const EVT_SUBJECTS: &str = "jifen.evt.>";
pub const DLQ_SUBJECTS: &str = "jifen.dlq.>";
/// The server's advisories that Jifen keeps: deliveries run out, and messages terminated, on
/// its work-queue streams.
pub const ADVISORY_SUBJECTS: [&str; 4] = [
    "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.JIFEN_CMD.*",
    "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.JIFEN_EVT.*",
    "$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED.JIFEN_CMD.*",
    "$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED.JIFEN_EVT.*",
];

/// The consumer group that copies exhausted messages into the dead-letter queue.
pub const FORWARDER_CONSUMER: &str = "dlq-forwarder";
/// The consumer group that indexes dead letters into the mall's database.
pub const DLQ_INDEX_CONSUMER: &str = "mall-dlq";

/// Headers of a dead letter, naming where it came from.
pub const ORIGIN_STREAM_HEADER: &str = "Jifen-Origin-Stream";
pub const ORIGIN_SEQUENCE_HEADER: &str = "Jifen-Origin-Sequence";
pub const ORIGIN_SUBJECT_HEADER: &str = "Jifen-Origin-Subject";
pub const ORIGIN_MSG_ID_HEADER: &str = "Jifen-Origin-Msg-Id";
pub const CONSUMER_HEADER: &str = "Jifen-Consumer";
pub const DELIVERIES_HEADER: &str = "Jifen-Deliveries";
pub const LAST_ERROR_HEADER: &str = "Jifen-Last-Error";
/// What kind of dead letter it is, when it is more than "could not be handled".
pub const DEAD_LETTER_KIND_HEADER: &str = "Jifen-Dead-Letter-Kind";
/// A deduct whose outcome the connector cannot know (DESIGN §9): an operator looks at the
/// channel and records what happened.
pub const OUTCOME_UNKNOWN: &str = "outcome_unknown";
/// A message whose every delivery failed for a passing reason (its ledger unreachable or
/// answering "later"): it never took effect, so it may be sent again once the ledger answers
/// (issue 18's automatic redrive).
pub const RETRIES_EXHAUSTED: &str = "retries_exhausted";
/// An event that does not fit the order it names (DESIGN §11): never applied.
pub const MISMATCHED_EVENT: &str = "mismatched_event";
/// A confirm that could not land before its hold lapses (DESIGN §12): an operator looks at the
/// ledger — the hold may still be there (redrive it) or gone (the order's line holds nothing).
pub const HOLD_EXPIRING: &str = "hold_expiring";

/// Where a dead letter of `stream` and `consumer` goes.
pub fn dlq_subject(stream: &str, consumer: &str) -> String {
    format!("jifen.dlq.{stream}.{consumer}")
}

/// The id of a dead letter: one per original message, however often it is dead-lettered
/// (advisories can repeat after a leader change). Sequences restart when a stream is
/// recreated, so the id also names the stream's incarnation: its creation time.
pub fn dlq_message_id(stream: &str, stream_created_ns: i128, sequence: u64) -> String {
    format!("dlq:{stream}:{sequence}:{stream_created_ns}")
}

/// The consumer group of the mall's saga.
pub const SAGA_CONSUMER: &str = "mall-saga";
/// The consumer group of the portal connector.
pub const PORTAL_CONSUMER: &str = "portal";

/// Header naming the order a message belongs to.
pub const ORDER_ID_HEADER: &str = "Jifen-Order-Id";
/// W3C trace context.
pub const TRACEPARENT_HEADER: &str = "traceparent";

/// What a command asks of a ledger: take or give back (saga), or hold, spend the hold or
/// release it (TCC, DESIGN §12).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Step {
    Deduct,
    Refund,
    Freeze,
    Confirm,
    Cancel,
}

impl Step {
    pub const ALL: [Self; 5] = [
        Self::Deduct,
        Self::Refund,
        Self::Freeze,
        Self::Confirm,
        Self::Cancel,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Deduct => "deduct",
            Self::Refund => "refund",
            Self::Freeze => "freeze",
            Self::Confirm => "confirm",
            Self::Cancel => "cancel",
        }
    }

    pub fn parse(token: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|step| step.as_str() == token)
    }

    /// Whether the command takes points for its key (a deduct, a freeze): its first call may
    /// have happened unseen, and any record of the key answers it.
    pub fn takes(self) -> bool {
        matches!(self, Self::Deduct | Self::Freeze)
    }

    /// Whether the command belongs to holds (TCC).
    pub fn is_hold(self) -> bool {
        matches!(self, Self::Freeze | Self::Confirm | Self::Cancel)
    }

    /// Whether the command undoes what its key took (a refund, a cancel).
    pub fn gives_back(self) -> bool {
        matches!(self, Self::Refund | Self::Cancel)
    }
}

pub fn channel_command(channel_id: &str, step: Step) -> String {
    format!("jifen.cmd.channel.{channel_id}.{}", step.as_str())
}

pub fn portal_command(step: Step) -> String {
    format!("jifen.cmd.portal.{}", step.as_str())
}

/// Every command for one channel: what its connector's consumer filters on.
pub fn channel_commands(channel_id: &str) -> String {
    format!("jifen.cmd.channel.{channel_id}.*")
}

pub const PORTAL_COMMANDS: &str = "jifen.cmd.portal.*";

/// The consumer group of a channel's connector.
pub fn channel_consumer(channel_id: &str) -> String {
    format!("channel-{channel_id}")
}

/// Where a connector reports its ledger's health (core NATS, not stored): one subject per
/// consumer group, which only that group's identity may publish on.
pub fn health_subject(consumer: &str) -> String {
    format!("jifen.health.{consumer}")
}

/// Every connector's health reports, which the mall reads.
pub const HEALTH_SUBJECTS: &str = "jifen.health.>";

/// The orders each mall replica changed, for the other replicas' watches (core NATS: nothing
/// is kept; a change missed here is seen by the watch's poll).
pub const ORDER_CHANGES_SUBJECT: &str = "jifen.changes.orders";

/// The consumer group a health subject names (the inverse of [`health_subject`]).
pub fn health_consumer(subject: &str) -> Option<&str> {
    match Subject::parse(subject)? {
        Subject::Health { consumer } => Some(consumer),
        _ => None,
    }
}

/// The channel whose connector's consumer group this is (the inverse of [`channel_consumer`]).
pub fn consumer_channel(consumer: &str) -> Option<&str> {
    consumer.strip_prefix("channel-")
}

pub fn outcome_token(state: LedgerState) -> &'static str {
    match state {
        LedgerState::Deducted => "deducted",
        LedgerState::Refunded => "refunded",
        LedgerState::Rejected => "rejected",
        LedgerState::Frozen => "frozen",
        LedgerState::Confirmed => "confirmed",
        LedgerState::Cancelled => "cancelled",
    }
}

pub fn channel_event(channel_id: &str, state: LedgerState) -> String {
    format!("jifen.evt.channel.{channel_id}.{}", outcome_token(state))
}

/// A refund the channel cannot make (it has no refund call): an operator's task.
pub fn channel_manual_refund_event(channel_id: &str) -> String {
    format!("jifen.evt.channel.{channel_id}.{MANUAL_REFUND_TOKEN}")
}

/// The last token of a manual-refund event's subject.
pub const MANUAL_REFUND_TOKEN: &str = "manual_refund";

pub fn portal_event(state: LedgerState) -> String {
    format!("jifen.evt.portal.{}", outcome_token(state))
}

/// A subject of Jifen's, read: the one place that takes subjects apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject<'a> {
    /// `jifen.cmd.channel.<id>.<step>`
    ChannelCommand { channel_id: &'a str, step: Step },
    /// `jifen.cmd.portal.<step>`
    PortalCommand { step: Step },
    /// `jifen.evt.channel.<id>.<outcome>`: a ledger state's token or [`MANUAL_REFUND_TOKEN`].
    ChannelEvent {
        channel_id: &'a str,
        outcome: &'a str,
    },
    /// `jifen.evt.portal.<outcome>`
    PortalEvent { outcome: &'a str },
    /// `jifen.health.<consumer>`
    Health { consumer: &'a str },
}

impl<'a> Subject<'a> {
    /// `None` for anything that is not one of Jifen's subjects, whole (no wildcards, no empty
    /// or extra tokens).
    pub fn parse(subject: &'a str) -> Option<Self> {
        let tokens: Vec<&str> = subject.split('.').collect();
        if tokens
            .iter()
            .any(|t| t.is_empty() || *t == "*" || *t == ">")
        {
            return None;
        }
        match tokens.as_slice() {
            ["jifen", "cmd", "channel", channel_id, step] => Some(Self::ChannelCommand {
                channel_id,
                step: Step::parse(step)?,
            }),
            ["jifen", "cmd", "portal", step] => Some(Self::PortalCommand {
                step: Step::parse(step)?,
            }),
            ["jifen", "evt", "channel", channel_id, outcome] => Some(Self::ChannelEvent {
                channel_id,
                outcome,
            }),
            ["jifen", "evt", "portal", outcome] => Some(Self::PortalEvent { outcome }),
            ["jifen", "health", consumer] => Some(Self::Health { consumer }),
            _ => None,
        }
    }

    /// The step a command asks for.
    pub fn step(self) -> Option<Step> {
        match self {
            Self::ChannelCommand { step, .. } | Self::PortalCommand { step } => Some(step),
            _ => None,
        }
    }
}

/// The step a command subject asks for.
pub fn command_step(subject: &str) -> Option<Step> {
    Subject::parse(subject).and_then(Subject::step)
}

/// Deterministic message id of a points command: `<order>:<step>:<channel>:<user>`, so a relay
/// that publishes one outbox row twice is deduplicated by the server. Ids never contain `:`.
pub fn points_message_id(order_id: &str, step: Step, channel_id: &str, user_id: &str) -> String {
    format!("{order_id}:{}:{channel_id}:{user_id}", step.as_str())
}

/// Deterministic message id of a quota command: `<order>:quota-<step>:<channel>`.
pub fn quota_message_id(order_id: &str, step: Step, channel_id: &str) -> String {
    format!("{order_id}:quota-{}:{channel_id}", step.as_str())
}

/// The id of the event answering a command: the command's id and the outcome.
/// The id of the outcome event of a command; `token` is [`outcome_token`] of the state (or
/// [`MANUAL_REFUND_TOKEN`]).
pub fn event_message_id(command_id: &str, token: &str) -> String {
    format!("{command_id}:{token}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_and_ids_follow_the_design() {
        assert_eq!(
            channel_command("alpha", Step::Deduct),
            "jifen.cmd.channel.alpha.deduct"
        );
        assert_eq!(portal_command(Step::Refund), "jifen.cmd.portal.refund");
        assert_eq!(
            channel_event("alpha", LedgerState::Rejected),
            "jifen.evt.channel.alpha.rejected"
        );
        assert_eq!(command_step("jifen.cmd.portal.refund"), Some(Step::Refund));
        assert_eq!(command_step("jifen.cmd.portal.other"), None);
        assert_eq!(command_step("jifen.evt.portal.refund"), None);
        assert_eq!(
            Subject::parse("jifen.evt.channel.alpha.manual_refund"),
            Some(Subject::ChannelEvent {
                channel_id: "alpha",
                outcome: MANUAL_REFUND_TOKEN
            })
        );
        assert_eq!(
            Subject::parse("jifen.cmd.channel.alpha.deduct"),
            Some(Subject::ChannelCommand {
                channel_id: "alpha",
                step: Step::Deduct
            })
        );
        for foreign in [
            "jifen.cmd.channel.*.deduct",
            "jifen.cmd.channel.alpha.beta.deduct",
            "jifen.health.",
            "jifen.health.a.b",
            "other.cmd.portal.deduct",
            "jifen.evt.portal",
        ] {
            assert_eq!(Subject::parse(foreign), None, "{foreign}");
        }
        assert_eq!(
            points_message_id("o-1", Step::Deduct, "alpha", "alice"),
            "o-1:deduct:alpha:alice"
        );
        assert_eq!(
            quota_message_id("o-1", Step::Refund, "alpha"),
            "o-1:quota-refund:alpha"
        );
    }
}
