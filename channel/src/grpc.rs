//! The `ChannelService` edge: wire requests become domain types (a bad field is refused here,
//! naming it), ledger entries become `Deduction`s, errors become statuses.

use jifen_mesh::barrier::{LedgerEntry, Rejection};
use jifen_mesh::domain::{OrderId, Points, RequestId, UserId};
use jifen_proto::v1::channel_service_server::ChannelService;
use jifen_proto::v1::{
    CancelFreezeRequest, CancelFreezeResponse, ConfirmFreezeRequest, ConfirmFreezeResponse,
    CreditPointsRequest, CreditPointsResponse, DeductPointsRequest, DeductPointsResponse,
    Deduction, DeductionState, FreezePointsRequest, FreezePointsResponse, GetDeductionRequest,
    GetDeductionResponse, GetUserPointsRequest, GetUserPointsResponse, RefundPointsRequest,
    RefundPointsResponse,
};
use tonic::{Request, Response, Status};

use crate::error::ChannelError;
use crate::ledger::PointsLedger;

fn deduction(ledger: &PointsLedger, entry: LedgerEntry) -> Deduction {
    let state = DeductionState::from(entry.state);
    let reason = match entry.rejection() {
        Some(Rejection::Insufficient) => "insufficient points",
        Some(Rejection::UnknownParty) => "unknown user",
        None if entry.expired() => "the hold expired",
        None => "",
    }
    .to_owned();
    Deduction {
        order_id: entry.order_id,
        channel_id: ledger.channel_id().to_string(),
        user_id: entry.party,
        points: entry.points,
        state: state.into(),
        reason,
        updated_at_unix_ms: entry.updated_at_ms,
        hold_expires_at_unix_ms: entry.expires_at_ms,
    }
}

fn key(order_id: String, user_id: String) -> Result<(OrderId, UserId), ChannelError> {
    Ok((
        OrderId::parse("order_id", order_id)?,
        UserId::parse("user_id", user_id)?,
    ))
}

#[tonic::async_trait]
impl ChannelService for PointsLedger {
    async fn get_user_points(
        &self,
        request: Request<GetUserPointsRequest>,
    ) -> Result<Response<GetUserPointsResponse>, Status> {
        let user_id =
            UserId::parse("user_id", request.into_inner().user_id).map_err(ChannelError::from)?;
        let balance = self.balance(&user_id).await?;
        Ok(Response::new(GetUserPointsResponse {
            user_id: user_id.into_string(),
            balance,
        }))
    }

    #[tracing::instrument(skip_all, fields(order_id = %request.get_ref().order_id))]
    async fn deduct_points(
        &self,
        request: Request<DeductPointsRequest>,
    ) -> Result<Response<DeductPointsResponse>, Status> {
        let request = request.into_inner();
        let (order_id, user_id) = key(request.order_id, request.user_id)?;
        let points = Points::parse("points", request.points).map_err(ChannelError::from)?;
        let entry = self.deduct(&order_id, &user_id, points).await?;
        Ok(Response::new(DeductPointsResponse {
            deduction: Some(deduction(self, entry)),
        }))
    }

    #[tracing::instrument(skip_all, fields(order_id = %request.get_ref().order_id))]
    async fn refund_points(
        &self,
        request: Request<RefundPointsRequest>,
    ) -> Result<Response<RefundPointsResponse>, Status> {
        let request = request.into_inner();
        let (order_id, user_id) = key(request.order_id, request.user_id)?;
        let entry = self.refund(&order_id, &user_id).await?;
        Ok(Response::new(RefundPointsResponse {
            deduction: Some(deduction(self, entry)),
        }))
    }

    #[tracing::instrument(skip_all, fields(order_id = %request.get_ref().order_id))]
    async fn freeze_points(
        &self,
        request: Request<FreezePointsRequest>,
    ) -> Result<Response<FreezePointsResponse>, Status> {
        let request = request.into_inner();
        let (order_id, user_id) = key(request.order_id, request.user_id)?;
        let points = Points::parse("points", request.points).map_err(ChannelError::from)?;
        let entry = self.freeze(&order_id, &user_id, points).await?;
        Ok(Response::new(FreezePointsResponse {
            deduction: Some(deduction(self, entry)),
        }))
    }

    #[tracing::instrument(skip_all, fields(order_id = %request.get_ref().order_id))]
    async fn confirm_freeze(
        &self,
        request: Request<ConfirmFreezeRequest>,
    ) -> Result<Response<ConfirmFreezeResponse>, Status> {
        let request = request.into_inner();
        let (order_id, user_id) = key(request.order_id, request.user_id)?;
        let entry = self.confirm(&order_id, &user_id).await?;
        Ok(Response::new(ConfirmFreezeResponse {
            deduction: Some(deduction(self, entry)),
        }))
    }

    #[tracing::instrument(skip_all, fields(order_id = %request.get_ref().order_id))]
    async fn cancel_freeze(
        &self,
        request: Request<CancelFreezeRequest>,
    ) -> Result<Response<CancelFreezeResponse>, Status> {
        let request = request.into_inner();
        let (order_id, user_id) = key(request.order_id, request.user_id)?;
        let entry = self.cancel(&order_id, &user_id).await?;
        Ok(Response::new(CancelFreezeResponse {
            deduction: Some(deduction(self, entry)),
        }))
    }

    async fn get_deduction(
        &self,
        request: Request<GetDeductionRequest>,
    ) -> Result<Response<GetDeductionResponse>, Status> {
        let request = request.into_inner();
        let (order_id, user_id) = key(request.order_id, request.user_id)?;
        let entry = self.deduction(&order_id, &user_id).await?;
        Ok(Response::new(GetDeductionResponse {
            deduction: Some(deduction(self, entry)),
        }))
    }

    async fn credit_points(
        &self,
        request: Request<CreditPointsRequest>,
    ) -> Result<Response<CreditPointsResponse>, Status> {
        let request = request.into_inner();
        let parsed = (|| {
            Ok::<_, ChannelError>((
                RequestId::parse("request_id", request.request_id)?,
                UserId::parse("user_id", request.user_id)?,
                Points::parse("points", request.points)?,
            ))
        })();
        let (request_id, user_id, points) = parsed?;
        let balance = self.credit(&request_id, &user_id, points).await?;
        Ok(Response::new(CreditPointsResponse {
            user_id: user_id.into_string(),
            balance,
        }))
    }
}
