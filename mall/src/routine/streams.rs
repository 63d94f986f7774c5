//! A deleted stream comes back (issue 18). The mall looks for its streams every few seconds;
//! one that is gone — deleted by hand, or lost with a server's storage — is created again
//! (only the mall may, DESIGN §11), said in the log and in `jifen_streams_recreated_total`.
//! The connectors' and the mall's consumers then find their stream and re-create themselves
//! (the consume loop does after two failed fetches). Commands and events the lost stream held
//! are gone with it, so every unsettled order sends its open commands again under a new
//! generation: the ledgers' barriers make that harmless, and the outcomes come back.

use std::sync::Arc;
use std::time::Duration;

use jifen_mesh::bus::subjects::{CMD_STREAM, EVT_STREAM};
use jifen_mesh::bus::topology::Topology;
use jifen_mesh::time::now_unix_ms;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::order::StepState;
use crate::store::reemit::reemit;
use crate::store::{OrderStore, Selection, record, steps};

const EVERY: Duration = Duration::from_secs(5);
/// Unsettled orders read per page when sending open commands again.
const PAGE: i64 = 500;

pub async fn run(
    store: OrderStore,
    js: async_nats::jetstream::Context,
    topology: Topology,
    relay: Arc<Notify>,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(EVERY) => {}
        }
        let missing = topology.missing(&js).await;
        if missing.is_empty() {
            continue;
        }
        tracing::error!(
            ?missing,
            "streams are missing (deleted, or lost with a server's storage): creating them again"
        );
        if let Err(error) = topology.ensure(&js).await {
            tracing::error!(%error, "cannot create the missing streams yet");
            continue;
        }
        for stream in &missing {
            jifen_mesh::metrics::STREAMS_RECREATED
                .with_label_values(&[stream])
                .inc();
        }
        if missing.iter().any(|s| *s == CMD_STREAM || *s == EVT_STREAM) {
            match resend_open(&store, &missing).await {
                Ok(orders) => tracing::warn!(
                    orders,
                    ?missing,
                    "streams re-created; the open commands of unsettled orders sent again"
                ),
                Err(error) => {
                    tracing::error!(%error, "streams re-created, but the open commands could not all be sent again: retry the stuck orders")
                }
            }
            relay.notify_one();
        } else {
            tracing::warn!(?missing, "streams re-created");
        }
    }
}

/// Sends every unsettled order's open commands again; how many orders.
async fn resend_open(store: &OrderStore, lost: &[&str]) -> Result<usize, sqlx::Error> {
    let mut after = None;
    let mut orders = 0;
    loop {
        let page = store
            .list(Selection::Unsettled, None, after.clone(), PAGE)
            .await?;
        for order in &page {
            let now = now_unix_ms();
            let mut tx = store.database().begin().await?;
            let Some(state) = steps::lock_order(&mut tx, &order.order_id, now).await? else {
                continue;
            };
            if state.is_terminal() {
                continue;
            }
            let sent = reemit(
                &mut tx,
                &order.order_id,
                &[StepState::Pending, StepState::Refunding],
                now,
            )
            .await?;
            record(
                &mut tx,
                &order.order_id,
                "streams_recreated",
                &format!(
                    "streams {} were lost and created again: {sent} open command(s) sent again",
                    lost.join(", ")
                ),
                "",
                now,
            )
            .await?;
            tx.commit().await?;
            orders += 1;
        }
        match page.last() {
            Some(last) if page.len() as i64 == PAGE => {
                after = Some((last.created_at_ms, last.order_id.clone()));
            }
            _ => return Ok(orders),
        }
    }
}
