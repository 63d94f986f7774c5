//! The outbox relay: publishes what committed transactions wrote to the outbox, then deletes
//! it. Woken right after each commit, and sweeping on a timer, so a row written by a process
//! that died before publishing is sent by the next relay that runs. A row published twice (a
//! crash between publish and delete) carries the same `Nats-Msg-Id`, so the server drops the
//! repeat; past the duplicate window the handlers' idempotency covers it.
//!
//! On PostgreSQL, rows are claimed with `FOR UPDATE SKIP LOCKED`, so mall replicas share the
//! work without sending a row twice at once.

use std::sync::Arc;
use std::time::Duration;

use jifen_mesh::bus::publish::{Outgoing, Publisher};
use jifen_mesh::storage::{Backend, Database};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::store::outbox;

/// Rows published per round.
const BATCH: i64 = 256;
/// How long a round waits for the acks of its batch. Past it the unacknowledged rows stay in
/// the outbox for the next round: a lost stream leader costs one deadline, not one per row.
const ACK_DEADLINE: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct Relay {
    db: Database,
    publisher: Publisher,
    wake: Arc<Notify>,
    sweep: Duration,
}

impl Relay {
    pub fn new(db: Database, publisher: Publisher, wake: Arc<Notify>, sweep: Duration) -> Self {
        Self {
            db,
            publisher,
            wake,
            sweep,
        }
    }

    pub async fn run(self, shutdown: CancellationToken) {
        let mut failures = 0_u32;
        loop {
            match self.drain().await {
                Ok(sent) => {
                    crate::bus_health::published();
                    if failures > 0 {
                        tracing::info!(failures, "outbox relay publishing again");
                    }
                    failures = 0;
                    if sent > 0 {
                        tracing::debug!(sent, "outbox relayed");
                    }
                }
                Err(error) => {
                    failures = failures.saturating_add(1);
                    crate::bus_health::failed(&jifen_mesh::telemetry::chain(&error));
                    // During an election every publish fails at once ("no responders"): wait
                    // out a back-off, deaf to commits, instead of spinning on them.
                    let delay = jifen_mesh::retry::doubling(
                        Duration::from_millis(200),
                        failures,
                        self.sweep.max(Duration::from_millis(100)),
                    );
                    tracing::warn!(error = %jifen_mesh::telemetry::chain(&error), failures, ?delay, "outbox relay failed; retrying");
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(delay) => {}
                    }
                    continue;
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(self.sweep) => {}
            }
        }
        // Whatever was committed before the stop still goes out.
        if let Err(error) = self.drain().await {
            tracing::warn!(error = %jifen_mesh::telemetry::chain(&error), "outbox not drained at shutdown; the next start sends it");
        }
    }

    /// Publishes rows until the outbox is empty; returns how many were sent.
    pub async fn drain(&self) -> Result<usize, RelayError> {
        let mut total = 0;
        loop {
            let sent = self.round().await?;
            total += sent;
            if sent < usize::try_from(BATCH).unwrap_or(usize::MAX) {
                return Ok(total);
            }
        }
    }

    async fn round(&self) -> Result<usize, RelayError> {
        let backend = self.db.backend();
        // On SQLite a transaction held across the publishes would block every writer: the rows
        // are read without one, and deleted in a transaction of their own, which takes the
        // process's write turn like every other writer (an autocommit delete would fight them
        // for SQLite's lock and sleep in its busy handler).
        let mut claim_tx = match backend {
            Backend::Postgres => Some(self.db.begin().await?),
            Backend::Sqlite => None,
        };
        let rows = match claim_tx.as_mut() {
            Some(tx) => outbox::oldest(&mut **tx, backend, BATCH).await?,
            None => outbox::oldest(self.db.pool(), backend, BATCH).await?,
        };
        if rows.is_empty() {
            return Ok(0);
        }
        let (ids, messages): (Vec<i64>, Vec<Outgoing>) = rows.into_iter().unzip();
        let results = self.publisher.publish_all(&messages, ACK_DEADLINE).await;
        let sent: Vec<i64> = ids
            .iter()
            .zip(&results)
            .filter(|(_, result)| result.is_ok())
            .map(|(id, _)| *id)
            .collect();
        if !sent.is_empty() {
            let mut tx = match claim_tx.take() {
                Some(tx) => tx,
                None => self.db.begin().await?,
            };
            outbox::delete(&mut tx, &sent).await?;
            tx.commit().await?;
        }
        if let Some(tx) = claim_tx {
            tx.commit().await?;
        }
        if let Some(Err(error)) = results.into_iter().find(Result::is_err) {
            return Err(RelayError::Publish(error));
        }
        Ok(sent.len())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("outbox storage")]
    Storage(#[from] sqlx::Error),
    #[error("outbox publish")]
    Publish(#[source] jifen_mesh::bus::BusError),
}
