//! Which `WatchOrder` waits for which order: a committed change wakes only the watches of its
//! own order. A broadcast of every change to every watch woke each of them (and copied the
//! order id for each) for every other order's change: with 64 watches open, 64 wake-ups per
//! change, most of the mall's task polls under load (docs/performance.md).
//!
//! Replicas tell each other ([`OrderChanges::spread`]): each publishes the ids of the orders it
//! changed on a core NATS subject and wakes its own watches of the ids the others publish, so
//! a watch hears of a change whichever replica's saga made it — not only at its next poll
//! (500 ms: the p50 of two replicas in `deploy/local/cluster-bench.sh`, docs/scaling.md).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use jifen_mesh::bus::subjects::ORDER_CHANGES_SUBJECT;
use jifen_mesh::domain::{MAX_ID_LEN, OrderId};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

/// Which replica published a batch of changes: a replica skips its own.
const REPLICA_HEADER: &str = "Jifen-Replica";
/// Ids queued for the other replicas at most; past it they rely on their polls.
const QUEUED: usize = 4_096;
/// Ids in one message at most (a message stays well under NATS's 1 MiB payload limit).
const IDS_PER_MESSAGE: usize = 512;
/// The largest message read from the subject; larger ones are ignored.
const MAX_PAYLOAD: usize = IDS_PER_MESSAGE * (MAX_ID_LEN + 1);

/// The orders being watched in this process, each with the signal its watches wait on.
#[derive(Debug, Clone, Default)]
pub struct OrderChanges {
    watched: Arc<Mutex<HashMap<String, watch::Sender<()>>>>,
    /// The other replicas, once [`Self::spread`] runs.
    others: Arc<OnceLock<mpsc::Sender<String>>>,
}

impl OrderChanges {
    /// Tells `order_id`'s watches, here and at the other replicas, that it changed. Call after
    /// the change committed.
    pub fn announce(&self, order_id: &str) {
        self.wake(order_id);
        if let Some(others) = self.others.get() {
            // Full: the others' watches see this change at their poll.
            let _ = others.try_send(order_id.to_owned());
        }
    }

    /// Wakes this process's watches of `order_id`.
    fn wake(&self, order_id: &str) {
        if let Some(signal) = self.lock().get(order_id) {
            signal.send_replace(());
        }
    }

    /// Publishes this replica's changes to the others and wakes its watches of theirs, until
    /// `shutdown`.
    pub async fn spread(self, client: async_nats::Client, shutdown: CancellationToken) {
        static REPLICAS: AtomicU64 = AtomicU64::new(0);
        let replica = format!(
            "{}-{}-{}",
            std::process::id(),
            jifen_mesh::time::now_unix_ms(),
            REPLICAS.fetch_add(1, Ordering::Relaxed)
        );
        let (others, queue) = mpsc::channel(QUEUED);
        if self.others.set(others).is_err() {
            tracing::warn!("order changes are spread already");
            return;
        }
        tokio::join!(
            publish(client.clone(), &replica, queue, &shutdown),
            self.hear(client, &replica, &shutdown)
        );
    }

    /// Wakes the watches of the orders other replicas changed.
    async fn hear(&self, client: async_nats::Client, replica: &str, shutdown: &CancellationToken) {
        let retry = std::time::Duration::from_secs(1);
        jifen_mesh::bus::listen::listen(&client, ORDER_CHANGES_SUBJECT, retry, shutdown, |heard| {
            let from = heard
                .headers
                .as_ref()
                .and_then(|h| h.get(REPLICA_HEADER))
                .map(|v| v.as_str());
            if from == Some(replica) || heard.payload.len() > MAX_PAYLOAD {
                return;
            }
            // Only ids that could be orders wake anything; a watch then reads its order anew
            // and believes only the database.
            let ids = std::str::from_utf8(&heard.payload).unwrap_or_default();
            for id in ids.split('\n').take(IDS_PER_MESSAGE) {
                if OrderId::parse("order_id", id).is_ok() {
                    self.wake(id);
                }
            }
        })
        .await;
    }

    /// Starts listening for `order_id`'s changes; take it before reading the order, so that a
    /// change committed in between is announced.
    pub fn subscribe(&self, order_id: &str) -> Subscription {
        let changed = self
            .lock()
            .entry(order_id.to_owned())
            .or_insert_with(|| watch::channel(()).0)
            .subscribe();
        Subscription {
            changes: self.clone(),
            order_id: order_id.to_owned(),
            changed: Some(changed),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, watch::Sender<()>>> {
        self.watched.lock().unwrap_or_else(PoisonError::into_inner)
    }

    #[cfg(test)]
    fn watched(&self) -> usize {
        self.lock().len()
    }
}

/// Publishes the ids this replica's changes queue, many per message.
async fn publish(
    client: async_nats::Client,
    replica: &str,
    mut queue: mpsc::Receiver<String>,
    shutdown: &CancellationToken,
) {
    let mut ids = Vec::with_capacity(IDS_PER_MESSAGE);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            taken = queue.recv_many(&mut ids, IDS_PER_MESSAGE) => if taken == 0 { return },
        }
        ids.sort_unstable();
        ids.dedup();
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(REPLICA_HEADER, replica);
        let payload = ids.join("\n");
        ids.clear();
        if let Err(error) = client
            .publish_with_headers(ORDER_CHANGES_SUBJECT, headers, payload.into())
            .await
        {
            tracing::debug!(%error, "order changes not spread; the other replicas poll");
        }
    }
}

/// One watch's subscription to one order; its order is forgotten when its last one is dropped.
#[derive(Debug)]
pub struct Subscription {
    changes: OrderChanges,
    order_id: String,
    changed: Option<watch::Receiver<()>>,
}

impl Subscription {
    /// Waits until the order changed after the last wait returned (or after subscribing).
    pub async fn changed(&mut self) {
        let Some(changed) = self.changed.as_mut() else {
            return std::future::pending().await;
        };
        if changed.changed().await.is_err() {
            // The signal lives while any subscription does: not reached, but never spin.
            std::future::pending::<()>().await;
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut watched = self.changes.lock();
        drop(self.changed.take());
        if watched
            .get(&self.order_id)
            .is_some_and(|signal| signal.receiver_count() == 0)
        {
            watched.remove(&self.order_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;

    #[tokio::test]
    async fn a_change_wakes_only_its_orders_watches_and_none_is_lost() {
        let changes = OrderChanges::default();
        let mut a1 = changes.subscribe("o-a");
        let mut a2 = changes.subscribe("o-a");
        let mut b = changes.subscribe("o-b");
        changes.announce("o-a");
        changes.announce("o-unwatched");
        assert!(a1.changed().now_or_never().is_some());
        assert!(a2.changed().now_or_never().is_some());
        assert!(b.changed().now_or_never().is_none());
        // Seen once: the next wait waits for the next change.
        assert!(a1.changed().now_or_never().is_none());
        // Two changes before a wait are one wake-up, not lost and not two.
        changes.announce("o-b");
        changes.announce("o-b");
        assert!(b.changed().now_or_never().is_some());
        assert!(b.changed().now_or_never().is_none());
    }

    #[tokio::test]
    async fn an_order_is_forgotten_with_its_last_watch() {
        let changes = OrderChanges::default();
        let first = changes.subscribe("o-a");
        let second = changes.subscribe("o-a");
        drop(first);
        assert_eq!(changes.watched(), 1);
        drop(second);
        assert_eq!(changes.watched(), 0);
        changes.announce("o-a");
        assert_eq!(changes.watched(), 0);
    }
}
