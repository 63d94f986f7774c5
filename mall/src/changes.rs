//! Which `WatchOrder` waits for which order: a committed change wakes only the watches of its
//! own order. A broadcast of every change to every watch woke each of them (and copied the
//! order id for each) for every other order's change: with 64 watches open, 64 wake-ups per
//! change, most of the mall's task polls under load (docs/performance.md).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::watch;

/// The orders being watched in this process, each with the signal its watches wait on.
#[derive(Debug, Clone, Default)]
pub struct OrderChanges {
    watched: Arc<Mutex<HashMap<String, watch::Sender<()>>>>,
}

impl OrderChanges {
    /// Tells `order_id`'s watches, if any, that it changed. Call after the change committed.
    pub fn announce(&self, order_id: &str) {
        if let Some(signal) = self.lock().get(order_id) {
            signal.send_replace(());
        }
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
