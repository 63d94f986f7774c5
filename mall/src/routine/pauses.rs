//! Pauses and maintenance windows (issue 18). An operator's pause, or a window declared ahead,
//! is a row ([`crate::store::controls`]); this loop keeps the bus in line with the rows: while
//! one is in force the connector's JetStream consumer is paused (nats-server ≥ 2.11: it
//! delivers nothing, so the connector calls nothing), up to the window's end, which the server
//! keeps by itself even while the mall is down. The pre-check reads the [`PauseBoard`] and
//! refuses new orders for a paused channel, saying why and until when.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use jifen_mesh::bus::subjects::CMD_STREAM;
use jifen_mesh::storage::Database;
use jifen_mesh::time::now_unix_ms;
use tokio_util::sync::CancellationToken;

use crate::store::controls::{self, Pause};

/// How often the rows are read and the bus set.
pub const EVERY: Duration = Duration::from_secs(2);
/// What "until resumed" means to the server, which needs a time.
const INDEFINITE: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// The pauses in force or ahead, as last read.
#[derive(Debug, Default)]
pub struct PauseBoard {
    standing: RwLock<Vec<Pause>>,
}

impl PauseBoard {
    pub fn set(&self, standing: Vec<Pause>) {
        *self
            .standing
            .write()
            .unwrap_or_else(PoisonError::into_inner) = standing;
    }

    /// Pauses in force or ahead, soonest first.
    pub fn standing(&self) -> Vec<Pause> {
        self.standing
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The pause of `consumer` in force at `now` that lasts longest.
    pub fn in_force(&self, consumer: &str, now: i64) -> Option<Pause> {
        self.standing
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|p| p.consumer == consumer && p.in_force(now))
            .max_by_key(|p| end_key(p))
            .cloned()
    }
}

/// Orders pauses by how long they last: "until resumed" longest.
fn end_key(pause: &Pause) -> i64 {
    if pause.ends_at_ms == 0 {
        i64::MAX
    } else {
        pause.ends_at_ms
    }
}

/// Keeps the bus's consumers paused as the rows say until `shutdown`.
pub async fn run(
    db: Database,
    js: async_nats::jetstream::Context,
    board: Arc<PauseBoard>,
    changed: Arc<tokio::sync::Notify>,
    shutdown: CancellationToken,
) {
    // Consumers this process paused, with until when; at start, those the server has paused.
    let mut applied: HashMap<String, i64> = HashMap::new();
    match controls::paused_ever(&db).await {
        Ok(consumers) => {
            for consumer in consumers {
                if let Some(true) = paused_at_server(&js, &consumer).await {
                    applied.insert(consumer, 0);
                }
            }
        }
        Err(error) => tracing::warn!(%error, "cannot read the pauses"),
    }
    loop {
        if let Err(error) = enforce(&db, &js, &board, &mut applied).await {
            tracing::warn!(%error, "cannot read the pauses");
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(EVERY) => {}
            () = changed.notified() => {}
        }
    }
}

async fn enforce(
    db: &Database,
    js: &async_nats::jetstream::Context,
    board: &PauseBoard,
    applied: &mut HashMap<String, i64>,
) -> Result<(), sqlx::Error> {
    let now = now_unix_ms();
    board.set(controls::standing(db, now).await?);
    let mut wanted: HashMap<String, Pause> = HashMap::new();
    for pause in board.standing().into_iter().filter(|p| p.in_force(now)) {
        match wanted.get(&pause.consumer) {
            Some(kept) if end_key(kept) >= end_key(&pause) => {}
            _ => {
                wanted.insert(pause.consumer.clone(), pause);
            }
        }
    }
    for (consumer, pause) in &wanted {
        let until = end_key(pause);
        // A connector that re-creates its consumer may lift the pause: look each round.
        let held = applied.get(consumer) == Some(&until)
            && paused_at_server(js, consumer).await != Some(false);
        if held {
            continue;
        }
        let deadline = if pause.ends_at_ms == 0 {
            time::OffsetDateTime::now_utc() + INDEFINITE
        } else {
            match time::OffsetDateTime::from_unix_timestamp_nanos(
                i128::from(pause.ends_at_ms) * 1_000_000,
            ) {
                Ok(at) => at,
                Err(_) => continue,
            }
        };
        match set_pause(js, consumer, Some(deadline)).await {
            Ok(()) => {
                if applied.insert(consumer.clone(), until).is_none() {
                    tracing::warn!(consumer, note = %pause.note, ends_at_ms = pause.ends_at_ms, "consumer paused");
                }
            }
            Err(error) => {
                tracing::warn!(consumer, %error, "cannot pause the consumer yet");
            }
        }
    }
    let lifted: Vec<String> = applied
        .keys()
        .filter(|c| !wanted.contains_key(*c))
        .cloned()
        .collect();
    for consumer in lifted {
        match set_pause(js, &consumer, None).await {
            Ok(()) => {
                applied.remove(&consumer);
                tracing::info!(consumer, "consumer resumed");
            }
            Err(error) => tracing::warn!(consumer, %error, "cannot resume the consumer yet"),
        }
    }
    Ok(())
}

async fn set_pause(
    js: &async_nats::jetstream::Context,
    consumer: &str,
    until: Option<time::OffsetDateTime>,
) -> Result<(), String> {
    let stream = js.get_stream(CMD_STREAM).await.map_err(|e| e.to_string())?;
    let done = match until {
        Some(until) => stream.pause_consumer(consumer, until).await,
        None => stream.resume_consumer(consumer).await,
    };
    done.map(|_| ()).map_err(|e| e.to_string())
}

/// Whether the server holds `consumer` paused; `None` when it cannot tell.
pub async fn paused_at_server(js: &async_nats::jetstream::Context, consumer: &str) -> Option<bool> {
    let stream = js.get_stream(CMD_STREAM).await.ok()?;
    let info = stream.consumer_info(consumer).await.ok()?;
    Some(info.paused)
}
