//! The dead-letter indexer: consumes `JIFEN_DLQ` (group `mall-dlq`) and records each dead
//! letter once, its order flagged `needs_attention`, in one transaction
//! ([`crate::store::dead_letters`], which also lists and closes them for operators).

use std::sync::Arc;

use crate::changes::OrderChanges;
use jifen_mesh::bus::consume::{Delivery, Disposition, Handler};
use jifen_mesh::bus::subjects::{
    CMD_STREAM, CONSUMER_HEADER, DEAD_LETTER_KIND_HEADER, DELIVERIES_HEADER, DLQ_INDEX_CONSUMER,
    LAST_ERROR_HEADER, MISMATCHED_EVENT, ORDER_ID_HEADER, ORIGIN_MSG_ID_HEADER,
    ORIGIN_SEQUENCE_HEADER, ORIGIN_STREAM_HEADER, ORIGIN_SUBJECT_HEADER, PORTAL_CONSUMER, Step,
    channel_command, consumer_channel, dlq_subject, portal_command,
};
use jifen_mesh::storage::Database;
use jifen_mesh::time::now_unix_ms;

use crate::store::dead_letters::{self, DeadLetter};

/// Consumes `JIFEN_DLQ` into the `dead_letters` table.
#[derive(Debug, Clone)]
pub struct Indexer {
    db: Database,
    changes: OrderChanges,
}

impl Indexer {
    pub fn new(db: Database, changes: OrderChanges) -> Arc<Self> {
        Arc::new(Self { db, changes })
    }

    async fn index(&self, delivery: &Delivery) -> Result<Option<String>, sqlx::Error> {
        let header = |name: &str| delivery.header(name).unwrap_or_default().to_owned();
        let number = |name: &str| header(name).parse::<i64>().unwrap_or(0);
        let id = delivery.msg_id().map(str::to_owned).unwrap_or_else(|| {
            format!(
                "dlq:{}:{}",
                header(ORIGIN_STREAM_HEADER),
                number(ORIGIN_SEQUENCE_HEADER)
            )
        });
        let mut letter = DeadLetter {
            id,
            order_id: header(ORDER_ID_HEADER),
            origin_stream: header(ORIGIN_STREAM_HEADER),
            origin_sequence: number(ORIGIN_SEQUENCE_HEADER),
            origin_msg_id: header(ORIGIN_MSG_ID_HEADER),
            subject: header(ORIGIN_SUBJECT_HEADER),
            consumer: header(CONSUMER_HEADER),
            deliveries: number(DELIVERIES_HEADER),
            last_error: header(LAST_ERROR_HEADER),
            payload: delivery.payload.to_vec(),
            redrives: 0,
            dead_at_ms: now_unix_ms(),
            kind: header(DEAD_LETTER_KIND_HEADER),
            state: "OPEN".to_owned(),
            note: String::new(),
        };
        if let Err(why) = origin_fits(&delivery.subject, &letter) {
            // Kept, so nothing an operator should see is lost, but marked as what it is: its
            // headers are not Jifen's word, and it is never redriven.
            jifen_mesh::metrics::MISMATCHED_EVENTS
                .with_label_values(&[DLQ_INDEX_CONSUMER])
                .inc();
            tracing::error!(subject = %delivery.subject, %why, "a dead letter whose origin does not fit its subject");
            letter.last_error = format!("not Jifen's: {why}; it says: {}", letter.last_error);
            letter.kind = MISMATCHED_EVENT.to_owned();
        }
        let mut tx = self.db.begin().await?;
        if !dead_letters::insert(&mut tx, &letter).await? {
            return Ok(None);
        }
        tx.commit().await?;
        Ok(Some(letter.order_id))
    }
}

/// A dead letter's headers against the subject it came on (DESIGN §11): a connector may
/// publish dead letters only on its own subject (`jifen.dlq.JIFEN_CMD.channel-<id>`), so what
/// it names as the origin must be one of its own commands.
fn origin_fits(dlq: &str, letter: &DeadLetter) -> Result<(), String> {
    let (stream, consumer, subject) = (
        letter.origin_stream.as_str(),
        letter.consumer.as_str(),
        letter.subject.as_str(),
    );
    if dlq != dlq_subject(stream, consumer) {
        return Err(format!(
            "it came on {dlq} but names stream {stream:?} and consumer {consumer:?}"
        ));
    }
    // A connector's own commands; any other consumer is the mall's, whose identity alone
    // may publish its dead letters.
    let steps = Step::ALL;
    let own = if let Some(channel) = consumer_channel(consumer) {
        steps.map(|step| channel_command(channel, step))
    } else if consumer == PORTAL_CONSUMER {
        steps.map(portal_command)
    } else {
        return Ok(());
    };
    if stream == CMD_STREAM && own.iter().any(|command| command == subject) {
        Ok(())
    } else {
        Err(format!(
            "consumer {consumer} names {stream} {subject:?}, not one of its commands"
        ))
    }
}

impl Handler for Indexer {
    async fn handle(&self, delivery: &Delivery) -> Disposition {
        match self.index(delivery).await {
            Ok(Some(order_id)) => {
                self.changes.announce(&order_id);
                Disposition::Ack
            }
            Ok(None) => Disposition::Ack,
            Err(error) => Disposition::Retry(format!("cannot index the dead letter: {error}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letter(stream: &str, consumer: &str, subject: &str) -> DeadLetter {
        DeadLetter {
            id: "d".into(),
            order_id: "o".into(),
            origin_stream: stream.into(),
            origin_sequence: 1,
            origin_msg_id: String::new(),
            subject: subject.into(),
            consumer: consumer.into(),
            deliveries: 1,
            last_error: String::new(),
            payload: Vec::new(),
            redrives: 0,
            dead_at_ms: 0,
            kind: String::new(),
            state: "OPEN".into(),
            note: String::new(),
        }
    }

    #[test]
    fn a_connector_dead_letters_only_its_own_commands() {
        let own = letter(
            "JIFEN_CMD",
            "channel-alpha",
            "jifen.cmd.channel.alpha.deduct",
        );
        assert!(origin_fits("jifen.dlq.JIFEN_CMD.channel-alpha", &own).is_ok());
        let forged = letter(
            "JIFEN_CMD",
            "channel-alpha",
            "jifen.cmd.channel.beta.deduct",
        );
        assert!(origin_fits("jifen.dlq.JIFEN_CMD.channel-alpha", &forged).is_err());
        let elsewhere = letter("JIFEN_CMD", "channel-beta", "jifen.cmd.channel.beta.deduct");
        assert!(origin_fits("jifen.dlq.JIFEN_CMD.channel-alpha", &elsewhere).is_err());
        let saga = letter("JIFEN_EVT", "mall-saga", "jifen.evt.channel.beta.deducted");
        assert!(origin_fits("jifen.dlq.JIFEN_EVT.mall-saga", &saga).is_ok());
        let portal = letter("JIFEN_CMD", "portal", "jifen.cmd.channel.beta.deduct");
        assert!(origin_fits("jifen.dlq.JIFEN_CMD.portal", &portal).is_err());
    }
}
