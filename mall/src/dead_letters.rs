//! The dead-letter indexer: consumes `JIFEN_DLQ` (group `mall-dlq`) and records each dead
//! letter once, its order flagged `needs_attention`, in one transaction
//! ([`crate::store::dead_letters`], which also lists and closes them for operators).

use std::sync::Arc;

use jifen_mesh::bus::consume::{Delivery, Disposition, Handler};
use jifen_mesh::bus::subjects::{
    CONSUMER_HEADER, DEAD_LETTER_KIND_HEADER, DELIVERIES_HEADER, LAST_ERROR_HEADER,
    ORDER_ID_HEADER, ORIGIN_MSG_ID_HEADER, ORIGIN_SEQUENCE_HEADER, ORIGIN_STREAM_HEADER,
    ORIGIN_SUBJECT_HEADER,
};
use jifen_mesh::storage::Database;
use jifen_mesh::time::now_unix_ms;
use tokio::sync::broadcast;

use crate::store::dead_letters::{self, DeadLetter};

/// Consumes `JIFEN_DLQ` into the `dead_letters` table.
#[derive(Debug, Clone)]
pub struct Indexer {
    db: Database,
    changes: broadcast::Sender<String>,
}

impl Indexer {
    pub fn new(db: Database, changes: broadcast::Sender<String>) -> Arc<Self> {
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
        let letter = DeadLetter {
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
        };
        let mut tx = self.db.begin().await?;
        if !dead_letters::insert(&mut tx, &letter).await? {
            return Ok(None);
        }
        tx.commit().await?;
        Ok(Some(letter.order_id))
    }
}

impl Handler for Indexer {
    async fn handle(&self, delivery: &Delivery) -> Disposition {
        match self.index(delivery).await {
            Ok(Some(order_id)) => {
                let _ = self.changes.send(order_id);
                Disposition::Ack
            }
            Ok(None) => Disposition::Ack,
            Err(error) => Disposition::Retry(format!("cannot index the dead letter: {error}")),
        }
    }
}
