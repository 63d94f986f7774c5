//! The `AdminService` gRPC methods: each parses and checks its request, asks whether the
//! caller may act, runs the action of [`Admin`] and records it in the audit log.

use jifen_mesh::domain::{InvalidField, OrderId};
use jifen_mesh::time::now_unix_ms;
use jifen_proto::v1::admin_service_server::AdminService;
use jifen_proto::v1::{
    ClearAttentionRequest, ClearAttentionResponse, CompensateOrderRequest, CompensateOrderResponse,
    DeadLetter as WireDeadLetter, DiscardDeadLetterRequest, DiscardDeadLetterResponse,
    GetDeadLetterRequest, GetDeadLetterResponse, ListChannelHealthRequest,
    ListChannelHealthResponse, ListDeadLettersRequest, ListDeadLettersResponse,
    ListStuckOrdersRequest, ListStuckOrdersResponse, PauseChannelRequest, PauseChannelResponse,
    ReconcileRequest, ReconcileResponse, RecordDeductOutcomeRequest, RecordDeductOutcomeResponse,
    RecordManualRefundRequest, RecordManualRefundResponse, RedriveDeadLetterRequest,
    RedriveDeadLetterResponse, ResumeChannelRequest, ResumeChannelResponse, RetryOrderRequest,
    RetryOrderResponse, SetAutoRedriveRequest, SetAutoRedriveResponse,
    SettleConfirmingOrderRequest, SettleConfirmingOrderResponse,
};
use jifen_proto::v1::{
    GetStatementReportRequest, GetStatementReportResponse, ListStatementReportsRequest,
    ListStatementReportsResponse, ReconcileStatementRequest, ReconcileStatementResponse,
};
use tonic::{Request, Response, Status};

use super::Admin;
use super::settle::LineKey;
use crate::error::MallError;
use crate::grpc::{order_message, page_size};
use crate::store::Selection;
use crate::store::dead_letters::{self, DeadLetter};

fn dead_letter_message(dl: DeadLetter) -> WireDeadLetter {
    WireDeadLetter {
        payload_json: jifen_mesh::wire::payload_json(&dl.subject, &dl.payload),
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
        state: dl.state,
        note: dl.note,
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

#[tonic::async_trait]
impl AdminService for Admin {
    async fn reconcile_statement(
        &self,
        request: Request<ReconcileStatementRequest>,
    ) -> Result<Response<ReconcileStatementResponse>, Status> {
        self.reconcile_statement_call(request).await
    }

    async fn list_statement_reports(
        &self,
        request: Request<ListStatementReportsRequest>,
    ) -> Result<Response<ListStatementReportsResponse>, Status> {
        self.list_statement_reports_call(request).await
    }

    async fn get_statement_report(
        &self,
        request: Request<GetStatementReportRequest>,
    ) -> Result<Response<GetStatementReportResponse>, Status> {
        self.get_statement_report_call(request).await
    }

    async fn list_channel_health(
        &self,
        _request: Request<ListChannelHealthRequest>,
    ) -> Result<Response<ListChannelHealthResponse>, Status> {
        Ok(Response::new(ListChannelHealthResponse {
            channels: self.channel_health().await?,
        }))
    }

    async fn pause_channel(
        &self,
        request: Request<PauseChannelRequest>,
    ) -> Result<Response<PauseChannelResponse>, Status> {
        self.pause_channel_call(request).await
    }

    async fn resume_channel(
        &self,
        request: Request<ResumeChannelRequest>,
    ) -> Result<Response<ResumeChannelResponse>, Status> {
        self.resume_channel_call(request).await
    }

    async fn set_auto_redrive(
        &self,
        request: Request<SetAutoRedriveRequest>,
    ) -> Result<Response<SetAutoRedriveResponse>, Status> {
        self.set_auto_redrive_call(request).await
    }

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
        let id = request.into_inner().id;
        let dl = dead_letters::get(self.store.database(), &id)
            .await
            .map_err(MallError::from)?
            .ok_or(MallError::UnknownDeadLetter(id))?;
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
        let request = request.into_inner();
        let id = request.id;
        let note = required_note(request.note)?;
        let result = self.redrive(&id, &note, &caller.operator.name).await;
        let dl = self.audited(&caller, ACTION, &id, &note, result).await?;
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
        // What was given up on, and why, is the only trace a discard leaves: required.
        let note = required_note(request.note)?;
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

    async fn clear_attention(
        &self,
        request: Request<ClearAttentionRequest>,
    ) -> Result<Response<ClearAttentionResponse>, Status> {
        self.clear_attention_call(request).await
    }

    async fn settle_confirming_order(
        &self,
        request: Request<SettleConfirmingOrderRequest>,
    ) -> Result<Response<SettleConfirmingOrderResponse>, Status> {
        self.settle_confirming_call(request).await
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

impl Admin {
    pub(super) async fn settle_confirming_call(
        &self,
        request: Request<SettleConfirmingOrderRequest>,
    ) -> Result<Response<SettleConfirmingOrderResponse>, Status> {
        const ACTION: &str = "SettleConfirmingOrder";
        let caller = self
            .acting(&request, ACTION, &request.get_ref().order_id)
            .await?;
        let request = request.into_inner();
        let order_id = jifen_mesh::domain::OrderId::parse("order_id", request.order_id)
            .map_err(MallError::from)?;
        let note = required_note(request.note)?;
        let result = self
            .settle_confirming(
                order_id.as_str(),
                request.completed,
                &note,
                &caller.operator.name,
            )
            .await;
        let order = self
            .audited(&caller, ACTION, order_id.as_str(), &note, result)
            .await?;
        tracing::info!(%order_id, completed = request.completed, %note, "confirming order settled by an operator");
        Ok(Response::new(SettleConfirmingOrderResponse {
            order: Some(order_message(order)),
        }))
    }

    pub(super) async fn clear_attention_call(
        &self,
        request: Request<ClearAttentionRequest>,
    ) -> Result<Response<ClearAttentionResponse>, Status> {
        const ACTION: &str = "ClearAttention";
        let caller = self
            .acting(&request, ACTION, &request.get_ref().order_id)
            .await?;
        let request = request.into_inner();
        let order_id = jifen_mesh::domain::OrderId::parse("order_id", request.order_id)
            .map_err(MallError::from)?;
        let note = required_note(request.note)?;
        let result = self
            .clear_attention(order_id.as_str(), &note, &caller.operator.name)
            .await;
        let order = self
            .audited(&caller, ACTION, order_id.as_str(), &note, result)
            .await?;
        tracing::info!(order_id = %order_id, %note, "flag cleared by an operator");
        Ok(Response::new(ClearAttentionResponse {
            order: Some(order_message(order)),
        }))
    }
}

/// A note an operator must give: what they saw or did, for the order's history.
pub(super) fn required_note(raw: String) -> Result<String, MallError> {
    let note = note("note", raw)?;
    if note.trim().is_empty() {
        return Err(
            InvalidField::new("note", "must say what was seen or done at the channel").into(),
        );
    }
    Ok(note)
}
