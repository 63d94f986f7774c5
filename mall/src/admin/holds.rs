//! What an operator settles by hand of an order that confirms its holds (TCC, DESIGN §12): a
//! confirm that could not land before its hold lapsed, or a hold gone when its confirm came,
//! leaves the order CONFIRMING; once the ledgers agree, by the partner's hand or the
//! operator's, the order is settled as they stand.

use jifen_mesh::time::now_unix_ms;

use super::Admin;
use crate::error::MallError;
use crate::order::{Order, OrderState};
use crate::store::{Appends, dead_letters, phases, record, steps};

impl Admin {
    /// Settles a CONFIRMING order: COMPLETED (every hold spent) or CANCELLED (everything given
    /// back), its open dead letters closed with the note.
    pub(super) async fn settle_confirming(
        &self,
        order_id: &str,
        completed: bool,
        note: &str,
        actor: &str,
    ) -> Result<Order, MallError> {
        let now = now_unix_ms();
        let mut tx = self.store.database().begin().await?;
        let state = steps::lock_order(&mut tx, order_id, now)
            .await?
            .ok_or_else(|| MallError::UnknownOrder(order_id.to_owned()))?;
        if state != OrderState::Confirming {
            return Err(MallError::NotConfirming {
                order_id: order_id.to_owned(),
                state: state.as_str(),
            });
        }
        let moved = phases::settle_holds_by_hand(&mut tx, order_id, completed, actor).await?;
        let mut closed = 0_usize;
        for letter in dead_letters::open_of_order(&mut tx, order_id).await? {
            if dead_letters::close(&mut tx, &letter.id, "DISCARDED", note, now).await? {
                closed += 1;
            }
        }
        let (to, what) = if completed {
            (OrderState::Completed, "every hold spent at its ledger")
        } else {
            (
                OrderState::Cancelled,
                "everything the order took given back by hand",
            )
        };
        record(
            &mut tx,
            order_id,
            "admin_settle",
            &format!(
                "settled by hand as {}: {what} ({note}); {moved} step(s) moved, {closed} dead \
                 letter(s) closed; the reconciliation compares it with the ledgers",
                to.as_str()
            ),
            actor,
            now,
        )
        .await?;
        let mut appends = Appends::default();
        steps::set_order(&mut tx, &mut appends, order_id, to, None, now).await?;
        let committed = appends.write(&mut tx).await?;
        dead_letters::clear_attention_if_settled(&mut tx, order_id, now).await?;
        tx.commit().await?;
        committed.observe();
        self.changes.announce(order_id);
        self.order(order_id).await
    }
}
