//! The portal connector: consumes the portal's quota commands from the bus and drives the
//! `PortalService`, with the policy of [`jifen_mesh::connector`].

use std::time::Duration;

use jifen_mesh::barrier::LedgerState;
use jifen_mesh::bus::subjects::{Step, portal_event};
use jifen_mesh::connector::{LedgerCommand, LedgerEndpoint, Recorded};
use jifen_mesh::domain::InvalidField;
use jifen_proto::v1::portal_service_client::PortalServiceClient;
use jifen_proto::v1::{
    DeductQuotaCommand, DeductQuotaRequest, GetQuotaDeductionRequest, QuotaDeduction,
    QuotaDeductionState, QuotaOutcomeEvent, RefundQuotaCommand, RefundQuotaRequest,
};
use prost::Message;
use tonic::Status;
use tonic::transport::Channel;

/// The `PortalService` driven by the quota commands.
#[derive(Debug, Clone)]
pub struct PortalEndpoint {
    client: PortalServiceClient<Channel>,
}

impl PortalEndpoint {
    /// Connects lazily: the connector starts even while the portal is down.
    pub fn new(endpoint: &str, timeout: Duration) -> Result<Self, InvalidField> {
        let channel = Channel::from_shared(endpoint.to_owned())
            .map_err(|e| InvalidField::new("portal_endpoint", e.to_string()))?
            .timeout(timeout)
            .connect_timeout(timeout)
            .connect_lazy();
        Ok(Self {
            client: PortalServiceClient::new(channel),
        })
    }
}

fn recorded(deduction: Option<QuotaDeduction>) -> Result<Recorded, Status> {
    let deduction =
        deduction.ok_or_else(|| Status::internal("the portal answered without a deduction"))?;
    let state = match deduction.state() {
        QuotaDeductionState::Deducted => LedgerState::Deducted,
        QuotaDeductionState::Refunded => LedgerState::Refunded,
        QuotaDeductionState::Rejected => LedgerState::Rejected,
        QuotaDeductionState::Unspecified => {
            return Err(Status::internal(
                "the portal answered a deduction without a state",
            ));
        }
    };
    Ok(Recorded {
        state,
        points: deduction.points,
        reason: deduction.reason,
    })
}

impl LedgerEndpoint for PortalEndpoint {
    fn decode(&self, step: Step, payload: &[u8]) -> Result<LedgerCommand, String> {
        Ok(match step {
            Step::Deduct => {
                let c = DeductQuotaCommand::decode(payload).map_err(|e| e.to_string())?;
                LedgerCommand {
                    step,
                    order_id: c.order_id,
                    channel_id: c.channel_id,
                    user_id: String::new(),
                    points: c.points,
                }
            }
            Step::Refund => {
                let c = RefundQuotaCommand::decode(payload).map_err(|e| e.to_string())?;
                LedgerCommand {
                    step,
                    order_id: c.order_id,
                    channel_id: c.channel_id,
                    user_id: String::new(),
                    points: 0,
                }
            }
        })
    }

    async fn deduct(&self, command: &LedgerCommand) -> Result<Recorded, Status> {
        let response = self
            .client
            .clone()
            .deduct_quota(DeductQuotaRequest {
                order_id: command.order_id.clone(),
                channel_id: command.channel_id.clone(),
                points: command.points,
            })
            .await?;
        recorded(response.into_inner().quota_deduction)
    }

    async fn refund(&self, command: &LedgerCommand) -> Result<Recorded, Status> {
        let response = self
            .client
            .clone()
            .refund_quota(RefundQuotaRequest {
                order_id: command.order_id.clone(),
                channel_id: command.channel_id.clone(),
            })
            .await?;
        recorded(response.into_inner().quota_deduction)
    }

    async fn get(&self, command: &LedgerCommand) -> Result<Recorded, Status> {
        let response = self
            .client
            .clone()
            .get_quota_deduction(GetQuotaDeductionRequest {
                order_id: command.order_id.clone(),
                channel_id: command.channel_id.clone(),
            })
            .await?;
        recorded(response.into_inner().quota_deduction)
    }

    fn event(&self, command: &LedgerCommand, recorded: &Recorded) -> (String, Vec<u8>) {
        let state = match recorded.state {
            LedgerState::Deducted => QuotaDeductionState::Deducted,
            LedgerState::Refunded => QuotaDeductionState::Refunded,
            LedgerState::Rejected => QuotaDeductionState::Rejected,
        };
        let event = QuotaOutcomeEvent {
            quota_deduction: Some(QuotaDeduction {
                order_id: command.order_id.clone(),
                channel_id: command.channel_id.clone(),
                points: recorded.points,
                state: state.into(),
                reason: recorded.reason.clone(),
                updated_at_unix_ms: jifen_mesh::time::now_unix_ms(),
            }),
        };
        (portal_event(recorded.state), event.encode_to_vec())
    }
}
