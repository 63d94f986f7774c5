//! The `PortalService` edge: wire requests become domain types (a bad field is refused here,
//! naming it), records become messages, errors become statuses.

use jifen_mesh::barrier::{LedgerEntry, Rejection};
use jifen_mesh::domain::{ChannelId, DisplayName, Endpoint, OrderId, Points, RequestId};
use jifen_proto::v1::portal_service_server::PortalService;
use jifen_proto::v1::{
    CancelQuotaRequest, CancelQuotaResponse, Channel, ConfirmQuotaRequest, ConfirmQuotaResponse,
    DeductQuotaRequest, DeductQuotaResponse, FreezeQuotaRequest, FreezeQuotaResponse,
    GetChannelQuotaRequest, GetChannelQuotaResponse, GetQuotaDeductionRequest,
    GetQuotaDeductionResponse, GrantQuotaRequest, GrantQuotaResponse, ListChannelsRequest,
    ListChannelsResponse, QuotaDeduction, QuotaDeductionState, RefundQuotaRequest,
    RefundQuotaResponse, RegisterChannelRequest, RegisterChannelResponse,
};
use tonic::{Request, Response, Status};

use crate::error::PortalError;
use crate::quota::{ChannelKind, ChannelRecord, QuotaBook};
use jifen_proto::v1::ChannelKind as WireKind;

fn channel(record: ChannelRecord) -> Channel {
    Channel {
        remaining: record.remaining(),
        channel_id: record.channel_id,
        name: record.name,
        endpoint: record.endpoint,
        total: record.total,
        used: record.used,
        kind: match record.kind {
            ChannelKind::Grpc => WireKind::Grpc,
            ChannelKind::Http => WireKind::Http,
        }
        .into(),
    }
}

fn quota_deduction(entry: LedgerEntry) -> QuotaDeduction {
    let state = QuotaDeductionState::from(entry.state);
    let reason = match entry.rejection() {
        Some(Rejection::Insufficient) => "insufficient quota",
        Some(Rejection::UnknownParty) => "unknown channel",
        None if entry.expired() => "the hold expired",
        None => "",
    }
    .to_owned();
    QuotaDeduction {
        order_id: entry.order_id,
        channel_id: entry.party,
        points: entry.points,
        state: state.into(),
        reason,
        updated_at_unix_ms: entry.updated_at_ms,
        hold_expires_at_unix_ms: entry.expires_at_ms,
    }
}

fn key(order_id: String, channel_id: String) -> Result<(OrderId, ChannelId), PortalError> {
    Ok((
        OrderId::parse("order_id", order_id)?,
        ChannelId::parse("channel_id", channel_id)?,
    ))
}

#[tonic::async_trait]
impl PortalService for QuotaBook {
    async fn register_channel(
        &self,
        request: Request<RegisterChannelRequest>,
    ) -> Result<Response<RegisterChannelResponse>, Status> {
        let request = request.into_inner();
        let kind = match request.kind() {
            WireKind::Unspecified | WireKind::Grpc => ChannelKind::Grpc,
            WireKind::Http => ChannelKind::Http,
        };
        let parsed = (|| {
            Ok::<_, PortalError>((
                ChannelId::parse("channel_id", request.channel_id)?,
                DisplayName::parse("name", request.name)?,
                Endpoint::parse("endpoint", request.endpoint)?,
            ))
        })();
        let (channel_id, name, endpoint) = parsed?;
        let record = self.register(&channel_id, &name, &endpoint, kind).await?;
        Ok(Response::new(RegisterChannelResponse {
            channel: Some(channel(record)),
        }))
    }

    async fn list_channels(
        &self,
        _request: Request<ListChannelsRequest>,
    ) -> Result<Response<ListChannelsResponse>, Status> {
        let channels = self.channels().await?.into_iter().map(channel).collect();
        Ok(Response::new(ListChannelsResponse { channels }))
    }

    async fn get_channel_quota(
        &self,
        request: Request<GetChannelQuotaRequest>,
    ) -> Result<Response<GetChannelQuotaResponse>, Status> {
        let channel_id = ChannelId::parse("channel_id", request.into_inner().channel_id)
            .map_err(PortalError::from)?;
        let record = self.channel(&channel_id).await?;
        Ok(Response::new(GetChannelQuotaResponse {
            remaining: record.remaining(),
            channel_id: record.channel_id,
            total: record.total,
            used: record.used,
        }))
    }

    async fn grant_quota(
        &self,
        request: Request<GrantQuotaRequest>,
    ) -> Result<Response<GrantQuotaResponse>, Status> {
        let request = request.into_inner();
        let parsed = (|| {
            Ok::<_, PortalError>((
                RequestId::parse("request_id", request.request_id)?,
                ChannelId::parse("channel_id", request.channel_id)?,
                Points::parse("points", request.points)?,
            ))
        })();
        let (request_id, channel_id, points) = parsed?;
        let record = self.grant(&request_id, &channel_id, points).await?;
        Ok(Response::new(GrantQuotaResponse {
            remaining: record.remaining(),
            channel_id: record.channel_id,
            total: record.total,
            used: record.used,
        }))
    }

    #[tracing::instrument(skip_all, fields(order_id = %request.get_ref().order_id))]
    async fn deduct_quota(
        &self,
        request: Request<DeductQuotaRequest>,
    ) -> Result<Response<DeductQuotaResponse>, Status> {
        let request = request.into_inner();
        let (order_id, channel_id) = key(request.order_id, request.channel_id)?;
        let points = Points::parse("points", request.points).map_err(PortalError::from)?;
        let entry = self.deduct(&order_id, &channel_id, points).await?;
        Ok(Response::new(DeductQuotaResponse {
            quota_deduction: Some(quota_deduction(entry)),
        }))
    }

    #[tracing::instrument(skip_all, fields(order_id = %request.get_ref().order_id))]
    async fn refund_quota(
        &self,
        request: Request<RefundQuotaRequest>,
    ) -> Result<Response<RefundQuotaResponse>, Status> {
        let request = request.into_inner();
        let (order_id, channel_id) = key(request.order_id, request.channel_id)?;
        let entry = self.refund(&order_id, &channel_id).await?;
        Ok(Response::new(RefundQuotaResponse {
            quota_deduction: Some(quota_deduction(entry)),
        }))
    }

    #[tracing::instrument(skip_all, fields(order_id = %request.get_ref().order_id))]
    async fn freeze_quota(
        &self,
        request: Request<FreezeQuotaRequest>,
    ) -> Result<Response<FreezeQuotaResponse>, Status> {
        let request = request.into_inner();
        let (order_id, channel_id) = key(request.order_id, request.channel_id)?;
        let points = Points::parse("points", request.points).map_err(PortalError::from)?;
        let entry = self.freeze(&order_id, &channel_id, points).await?;
        Ok(Response::new(FreezeQuotaResponse {
            quota_deduction: Some(quota_deduction(entry)),
        }))
    }

    #[tracing::instrument(skip_all, fields(order_id = %request.get_ref().order_id))]
    async fn confirm_quota(
        &self,
        request: Request<ConfirmQuotaRequest>,
    ) -> Result<Response<ConfirmQuotaResponse>, Status> {
        let request = request.into_inner();
        let (order_id, channel_id) = key(request.order_id, request.channel_id)?;
        let entry = self.confirm(&order_id, &channel_id).await?;
        Ok(Response::new(ConfirmQuotaResponse {
            quota_deduction: Some(quota_deduction(entry)),
        }))
    }

    #[tracing::instrument(skip_all, fields(order_id = %request.get_ref().order_id))]
    async fn cancel_quota(
        &self,
        request: Request<CancelQuotaRequest>,
    ) -> Result<Response<CancelQuotaResponse>, Status> {
        let request = request.into_inner();
        let (order_id, channel_id) = key(request.order_id, request.channel_id)?;
        let entry = self.cancel(&order_id, &channel_id).await?;
        Ok(Response::new(CancelQuotaResponse {
            quota_deduction: Some(quota_deduction(entry)),
        }))
    }

    async fn get_quota_deduction(
        &self,
        request: Request<GetQuotaDeductionRequest>,
    ) -> Result<Response<GetQuotaDeductionResponse>, Status> {
        let request = request.into_inner();
        let (order_id, channel_id) = key(request.order_id, request.channel_id)?;
        let entry = self.deduction(&order_id, &channel_id).await?;
        Ok(Response::new(GetQuotaDeductionResponse {
            quota_deduction: Some(quota_deduction(entry)),
        }))
    }
}
