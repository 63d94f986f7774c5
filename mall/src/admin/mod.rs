//! `AdminService`: the operator's side (DESIGN §4) — dead letters, manual compensation, retry,
//! stuck orders and reconciliation. Every call needs `authorization: Bearer <token>`
//! ([`Auth`]); every action that changes an order is written into its history with its note.

mod acting;
mod auth;
mod reconcile;
mod settle;

use std::sync::Arc;

use jifen_mesh::bus::publish::{Outgoing, Publisher};
use jifen_mesh::domain::{InvalidField, OrderId};
use jifen_mesh::time::now_unix_ms;
use jifen_proto::v1::admin_service_server::AdminService;
use jifen_proto::v1::{
    CompensateOrderRequest, CompensateOrderResponse, DeadLetter as WireDeadLetter,
    DiscardDeadLetterRequest, DiscardDeadLetterResponse, GetDeadLetterRequest,
    GetDeadLetterResponse, ListDeadLettersRequest, ListDeadLettersResponse, ListStuckOrdersRequest,
    ListStuckOrdersResponse, ReconcileRequest, ReconcileResponse, RecordDeductOutcomeRequest,
    RecordDeductOutcomeResponse, RecordManualRefundRequest, RecordManualRefundResponse,
    RedriveDeadLetterRequest, RedriveDeadLetterResponse, RetryOrderRequest, RetryOrderResponse,
};
use sqlx::AnyConnection;
use tokio::sync::{Notify, broadcast};
use tonic::{Request, Response, Status};

use crate::store::reemit::reemit;
use crate::store::steps;
pub use auth::Guarded;
pub(crate) use auth::{constant_time_eq, refused};
use settle::LineKey;

use crate::commands;
use crate::error::MallError;
use crate::grpc::{order_message, page_size};
use crate::order::{Order, OrderState, StepState};
use crate::precheck::Registry;
use crate::store::dead_letters::{self, DeadLetter};
use crate::store::{Appends, OrderStore, Selection, record};

/// Most orders one `Reconcile` call compares.
pub const RECONCILE_LIMIT: i64 = 10_000;

#[derive(Debug, Clone)]
pub struct Admin {
    pub(crate) store: OrderStore,
    pub(crate) registry: Arc<Registry>,
    pub(crate) publisher: Publisher,
    pub(crate) relay: Arc<Notify>,
    pub(crate) changes: broadcast::Sender<String>,
}

fn dead_letter_message(dl: DeadLetter) -> WireDeadLetter {
    WireDeadLetter {
        payload_json: commands::payload_json(&dl.subject, &dl.payload),
        headers: [
            ("Jifen-Origin-Msg-Id".to_owned(), dl.origin_msg_id.clone()),
            ("Jifen-Order-Id".to_owned(), dl.order_id.clone()),
        ]
        .into_iter()
        .collect(),
        id: dl.id,
        order_id: dl.order_id,
        origin_stream: dl.origin_stream,
        origin_sequence: u64::try_from(dl.origin_sequence).unwrap_or(0),
        subject: dl.subject,
        consumer: dl.consumer,
        deliveries: u64::try_from(dl.deliveries).unwrap_or(0),
        last_error: dl.last_error,
        dead_at_unix_ms: dl.dead_at_ms,
        redrives: u32::try_from(dl.redrives).unwrap_or(u32::MAX),
        kind: dl.kind,
    }
}

fn parse_token(raw: &str) -> Result<Option<(i64, String)>, InvalidField> {
    if raw.is_empty() {
        return Ok(None);
    }
    let bad = || InvalidField::new("page_token", "is not a token this server returned");
    let (ms, id) = raw.split_once('|').ok_or_else(bad)?;
    Ok(Some((ms.parse().map_err(|_| bad())?, id.to_owned())))
}

fn note(field: &str, raw: String) -> Result<String, InvalidField> {
    if raw.len() > 1_000 {
        return Err(InvalidField::new(field, "must be at most 1000 bytes"));
    }
    Ok(raw
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect())
}

impl Admin {
    async fn order(&self, order_id: &str) -> Result<Order, MallError> {
        self.store
            .find(order_id)
            .await?
            .ok_or_else(|| MallError::UnknownOrder(order_id.to_owned()))
    }

    async fn dead_letter(&self, id: &str) -> Result<DeadLetter, MallError> {
        dead_letters::get_open(self.store.database(), id)
            .await?
            .ok_or_else(|| MallError::UnknownDeadLetter(id.to_owned()))
    }

    /// Locks a non-terminal order for an admin action; `None` when it does not exist.
    async fn lock_open(
        &self,
        tx: &mut AnyConnection,
        order_id: &str,
        action: &'static str,
        now: i64,
    ) -> Result<OrderState, MallError> {
        let state = steps::lock_order(tx, order_id, now)
            .await?
            .ok_or_else(|| MallError::UnknownOrder(order_id.to_owned()))?;
        if state.is_terminal() {
            return Err(MallError::Settled {
                order_id: order_id.to_owned(),
                state: state.as_str(),
                action,
            });
        }
        Ok(state)
    }

    async fn compensate(
        &self,
        order_id: &str,
        reason: &str,
        actor: &str,
    ) -> Result<Order, MallError> {
        let now = now_unix_ms();
        let mut tx = self.store.database().begin().await?;
        let state = self.lock_open(&mut tx, order_id, "compensate", now).await?;
        record(&mut tx, order_id, "admin_compensate", reason, actor, now).await?;
        let mut appends = Appends::default();
        match state {
            OrderState::Pending => {
                let reason = format!("operator: {reason}");
                steps::compensate(&mut tx, &mut appends, order_id, &reason, now).await?;
            }
            // Already compensating: send the refunds still open again, under new ids.
            _ => {
                reemit(&mut tx, order_id, &[StepState::Refunding], now).await?;
            }
        }
        steps::settle_if_done(&mut tx, &mut appends, order_id, now).await?;
        // Written before what follows, so the history keeps its order.
        appends.write(&mut tx).await?;
        dead_letters::clear_attention_if_settled(&mut tx, order_id, now).await?;
        tx.commit().await?;
        self.after_change(order_id);
        self.order(order_id).await
    }

    async fn retry(&self, order_id: &str, note: &str, actor: &str) -> Result<Order, MallError> {
        let now = now_unix_ms();
        let mut tx = self.store.database().begin().await?;
        self.lock_open(&mut tx, order_id, "retry", now).await?;
        let sent = reemit(
            &mut tx,
            order_id,
            &[StepState::Pending, StepState::Refunding],
            now,
        )
        .await?;
        record(
            &mut tx,
            order_id,
            "admin_retry",
            &if note.is_empty() {
                format!("{sent} open command(s) sent again")
            } else {
                format!("{sent} open command(s) sent again: {note}")
            },
            actor,
            now,
        )
        .await?;
        dead_letters::clear_attention_if_settled(&mut tx, order_id, now).await?;
        tx.commit().await?;
        self.after_change(order_id);
        self.order(order_id).await
    }

    async fn redrive(&self, id: &str, actor: &str) -> Result<DeadLetter, MallError> {
        let dl = self.dead_letter(id).await?;
        // Sending it again is the blind repeat the dead letter exists to prevent (DESIGN §9).
        if dl.kind == jifen_mesh::bus::subjects::OUTCOME_UNKNOWN {
            return Err(MallError::OutcomeUnknown(id.to_owned()));
        }
        // It was refused because it does not fit its order: sent again, it would not either.
        if dl.kind == jifen_mesh::bus::subjects::MISMATCHED_EVENT {
            return Err(MallError::MismatchedEvent(id.to_owned()));
        }
        let base = if dl.origin_msg_id.is_empty() {
            dl.id.clone()
        } else {
            dl.origin_msg_id.clone()
        };
        let message = Outgoing {
            subject: dl.subject.clone(),
            msg_id: format!("{base}:redrive-{}", dl.redrives + 1),
            order_id: dl.order_id.clone(),
            traceparent: None,
            payload: dl.payload.clone().into(),
        };
        self.publisher
            .publish(&message)
            .await
            .map_err(|e| MallError::Bus(e.to_string()))?;
        let now = now_unix_ms();
        let mut tx = self.store.database().begin().await?;
        if !dead_letters::close(&mut tx, id, "REDRIVEN", "", now).await? {
            // Closed by someone else meanwhile; the message went out again, which the
            // barrier makes harmless, but this redrive is not recorded.
            tracing::warn!(%id, "dead letter closed while it was being redriven");
            return Err(MallError::UnknownDeadLetter(id.to_owned()));
        }
        record(
            &mut tx,
            &dl.order_id,
            "admin_redrive",
            &format!("dead letter {id} sent again to {}", dl.subject),
            actor,
            now,
        )
        .await?;
        dead_letters::clear_attention_if_settled(&mut tx, &dl.order_id, now).await?;
        tx.commit().await?;
        self.after_change(&dl.order_id);
        Ok(DeadLetter {
            redrives: dl.redrives + 1,
            ..dl
        })
    }

    async fn discard(&self, id: &str, note: &str, actor: &str) -> Result<(), MallError> {
        let dl = self.dead_letter(id).await?;
        let now = now_unix_ms();
        let mut tx = self.store.database().begin().await?;
        if !dead_letters::close(&mut tx, id, "DISCARDED", note, now).await? {
            return Err(MallError::UnknownDeadLetter(id.to_owned()));
        }
        record(
            &mut tx,
            &dl.order_id,
            "admin_discard",
            &format!("dead letter {id} discarded: {note}"),
            actor,
            now,
        )
        .await?;
        dead_letters::clear_attention_if_settled(&mut tx, &dl.order_id, now).await?;
        tx.commit().await?;
        self.after_change(&dl.order_id);
        Ok(())
    }

    fn after_change(&self, order_id: &str) {
        self.relay.notify_one();
        let _ = self.changes.send(order_id.to_owned());
    }
}

#[tonic::async_trait]
impl AdminService for Admin {
    async fn list_dead_letters(
        &self,
        request: Request<ListDeadLettersRequest>,
    ) -> Result<Response<ListDeadLettersResponse>, Status> {
        let request = request.into_inner();
        let limit = page_size(request.page_size).map_err(MallError::from)?;
        let after = parse_token(&request.page_token).map_err(MallError::from)?;
        let found = dead_letters::list_open(
            self.store.database(),
            &request.order_id,
            &request.consumer,
            after,
            limit,
        )
        .await
        .map_err(MallError::from)?;
        let next_page_token = match found.last() {
            Some(last) if i64::try_from(found.len()).unwrap_or(0) == limit => {
                format!("{}|{}", last.dead_at_ms, last.id)
            }
            _ => String::new(),
        };
        Ok(Response::new(ListDeadLettersResponse {
            dead_letters: found.into_iter().map(dead_letter_message).collect(),
            next_page_token,
        }))
    }

    async fn get_dead_letter(
        &self,
        request: Request<GetDeadLetterRequest>,
    ) -> Result<Response<GetDeadLetterResponse>, Status> {
        let dl = self.dead_letter(&request.into_inner().id).await?;
        Ok(Response::new(GetDeadLetterResponse {
            dead_letter: Some(dead_letter_message(dl)),
        }))
    }

    async fn redrive_dead_letter(
        &self,
        request: Request<RedriveDeadLetterRequest>,
    ) -> Result<Response<RedriveDeadLetterResponse>, Status> {
        const ACTION: &str = "RedriveDeadLetter";
        let caller = self.acting(&request, ACTION, &request.get_ref().id).await?;
        let id = request.into_inner().id;
        let result = self.redrive(&id, &caller.operator.name).await;
        let dl = self.audited(&caller, ACTION, &id, "", result).await?;
        tracing::info!(id = %dl.id, order_id = %dl.order_id, "dead letter redriven");
        Ok(Response::new(RedriveDeadLetterResponse {
            dead_letter: Some(dead_letter_message(dl)),
        }))
    }

    async fn discard_dead_letter(
        &self,
        request: Request<DiscardDeadLetterRequest>,
    ) -> Result<Response<DiscardDeadLetterResponse>, Status> {
        const ACTION: &str = "DiscardDeadLetter";
        let caller = self.acting(&request, ACTION, &request.get_ref().id).await?;
        let request = request.into_inner();
        let note = note("note", request.note).map_err(MallError::from)?;
        let result = self
            .discard(&request.id, &note, &caller.operator.name)
            .await;
        self.audited(&caller, ACTION, &request.id, &note, result)
            .await?;
        tracing::info!(id = %request.id, %note, "dead letter discarded");
        Ok(Response::new(DiscardDeadLetterResponse {}))
    }

    async fn compensate_order(
        &self,
        request: Request<CompensateOrderRequest>,
    ) -> Result<Response<CompensateOrderResponse>, Status> {
        const ACTION: &str = "CompensateOrder";
        let caller = self
            .acting(&request, ACTION, &request.get_ref().order_id)
            .await?;
        let request = request.into_inner();
        let order_id = OrderId::parse("order_id", request.order_id).map_err(MallError::from)?;
        let reason = note("reason", request.reason).map_err(MallError::from)?;
        let reason = if reason.is_empty() {
            "compensated by an operator".to_owned()
        } else {
            reason
        };
        let result = self
            .compensate(order_id.as_str(), &reason, &caller.operator.name)
            .await;
        let order = self
            .audited(&caller, ACTION, order_id.as_str(), &reason, result)
            .await?;
        tracing::info!(order_id = %order_id, %reason, "order compensated by an operator");
        Ok(Response::new(CompensateOrderResponse {
            order: Some(order_message(order)),
        }))
    }

    async fn retry_order(
        &self,
        request: Request<RetryOrderRequest>,
    ) -> Result<Response<RetryOrderResponse>, Status> {
        const ACTION: &str = "RetryOrder";
        let caller = self
            .acting(&request, ACTION, &request.get_ref().order_id)
            .await?;
        let request = request.into_inner();
        let order_id = OrderId::parse("order_id", request.order_id).map_err(MallError::from)?;
        let note = note("note", request.note).map_err(MallError::from)?;
        let result = self
            .retry(order_id.as_str(), &note, &caller.operator.name)
            .await;
        let order = self
            .audited(&caller, ACTION, order_id.as_str(), &note, result)
            .await?;
        Ok(Response::new(RetryOrderResponse {
            order: Some(order_message(order)),
        }))
    }

    async fn list_stuck_orders(
        &self,
        request: Request<ListStuckOrdersRequest>,
    ) -> Result<Response<ListStuckOrdersResponse>, Status> {
        let request = request.into_inner();
        if request.older_than_seconds < 0 {
            return Err(MallError::from(InvalidField::new(
                "older_than_seconds",
                "must not be negative",
            ))
            .into());
        }
        let limit = page_size(request.page_size).map_err(MallError::from)?;
        let after = crate::grpc::parse_page_token(&request.page_token).map_err(MallError::from)?;
        let cutoff = now_unix_ms().saturating_sub(request.older_than_seconds.saturating_mul(1000));
        let orders = self
            .store
            .list(Selection::Unsettled, Some(cutoff), after, limit)
            .await
            .map_err(MallError::from)?;
        let next_page_token = crate::grpc::page_token(&orders, limit);
        Ok(Response::new(ListStuckOrdersResponse {
            orders: orders.into_iter().map(order_message).collect(),
            next_page_token,
        }))
    }

    async fn reconcile(
        &self,
        request: Request<ReconcileRequest>,
    ) -> Result<Response<ReconcileResponse>, Status> {
        Ok(Response::new(self.reconcile(request.into_inner()).await?))
    }

    async fn record_deduct_outcome(
        &self,
        request: Request<RecordDeductOutcomeRequest>,
    ) -> Result<Response<RecordDeductOutcomeResponse>, Status> {
        const ACTION: &str = "RecordDeductOutcome";
        let caller = self
            .acting(&request, ACTION, &request.get_ref().order_id)
            .await?;
        let request = request.into_inner();
        let line = LineKey::parse(request.order_id, request.channel_id, request.user_id)?;
        let note = required_note(request.note)?;
        let result = self
            .record_deduct_outcome(&line, request.deducted, &note, &caller.operator.name)
            .await;
        let target = line.target();
        let order = self
            .audited(&caller, ACTION, &target, &note, result)
            .await?;
        tracing::info!(order_id = %line.order_id, channel_id = %line.channel_id, deducted = request.deducted, %note, "deduct outcome recorded by an operator");
        Ok(Response::new(RecordDeductOutcomeResponse {
            order: Some(order_message(order)),
        }))
    }

    async fn record_manual_refund(
        &self,
        request: Request<RecordManualRefundRequest>,
    ) -> Result<Response<RecordManualRefundResponse>, Status> {
        const ACTION: &str = "RecordManualRefund";
        let caller = self
            .acting(&request, ACTION, &request.get_ref().order_id)
            .await?;
        let request = request.into_inner();
        let line = LineKey::parse(request.order_id, request.channel_id, request.user_id)?;
        let note = required_note(request.note)?;
        let result = self
            .record_manual_refund(&line, &note, &caller.operator.name)
            .await;
        let target = line.target();
        let order = self
            .audited(&caller, ACTION, &target, &note, result)
            .await?;
        tracing::info!(order_id = %line.order_id, channel_id = %line.channel_id, %note, "manual refund recorded by an operator");
        Ok(Response::new(RecordManualRefundResponse {
            order: Some(order_message(order)),
        }))
    }
}

/// A note an operator must give: what they saw or did, for the order's history.
fn required_note(raw: String) -> Result<String, MallError> {
    let note = note("note", raw)?;
    if note.trim().is_empty() {
        return Err(
            InvalidField::new("note", "must say what was seen or done at the channel").into(),
        );
    }
    Ok(note)
}
