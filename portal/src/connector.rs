//! The portal connector: consumes the portal's quota commands from the bus and drives the
//! `PortalService`, with the policy of [`jifen_mesh::connector`].

use std::time::Duration;

use jifen_mesh::barrier::LedgerState;
use jifen_mesh::bus::subjects::Step;
use jifen_mesh::connector::{AnsweredKey, LedgerCommand, LedgerEndpoint, Recorded};
use jifen_mesh::domain::InvalidField;
use jifen_proto::v1::portal_service_client::PortalServiceClient;
use jifen_proto::v1::{
    CancelQuotaRequest, ConfirmQuotaRequest, DeductQuotaRequest, FreezeQuotaRequest,
    GetQuotaDeductionRequest, QuotaDeduction, RefundQuotaRequest,
};
use tonic::Status;
use tonic::transport::Channel;

/// The `PortalService` driven by the quota commands.
#[derive(Debug, Clone)]
pub struct PortalEndpoint {
    client: PortalServiceClient<Channel>,
    hold_ttl: Duration,
}

impl PortalEndpoint {
    /// Connects lazily: the connector starts even while the portal is down.
    pub fn new(
        endpoint: &str,
        tls: Option<&jifen_mesh::tls::ClientTls>,
        timeout: Duration,
    ) -> Result<Self, jifen_mesh::tls_io::TargetError> {
        let channel = jifen_mesh::tls_io::GrpcTarget::new(endpoint, tls)?
            .timeouts(timeout, timeout)
            .lazy();
        Ok(Self {
            client: PortalServiceClient::new(channel),
            hold_ttl: jifen_mesh::barrier::DEFAULT_HOLD_TTL,
        })
    }

    /// How long the portal's holds live (its `--hold-ttl`).
    pub fn holding(mut self, ttl: Duration) -> Self {
        self.hold_ttl = ttl;
        self
    }
}

fn recorded(deduction: Option<QuotaDeduction>) -> Result<Recorded, Status> {
    let deduction =
        deduction.ok_or_else(|| Status::internal("the portal answered without a deduction"))?;
    let state = LedgerState::try_from(deduction.state())
        .map_err(|_| Status::internal("the portal answered a deduction without a state"))?;
    Ok(Recorded {
        state,
        points: deduction.points,
        reason: deduction.reason,
        key: Some(AnsweredKey {
            order_id: deduction.order_id,
            channel_id: deduction.channel_id,
            user_id: String::new(),
        }),
        deduct_may_follow: false,
        captured: Default::default(),
        exchanges: Vec::new(),
        hold_expires_at_ms: deduction.hold_expires_at_unix_ms,
    })
}

impl LedgerEndpoint for PortalEndpoint {
    fn decode(&self, step: Step, payload: &[u8]) -> Result<LedgerCommand, String> {
        jifen_mesh::wire::decode_quota_command(step, payload)
    }

    async fn deduct(&self, command: &LedgerCommand) -> Result<Recorded, Status> {
        let response = self
            .client
            .clone()
            .deduct_quota(jifen_mesh::trace::request(DeductQuotaRequest {
                order_id: command.order_id.clone(),
                channel_id: command.channel_id.clone(),
                points: command.points,
            }))
            .await?;
        recorded(response.into_inner().quota_deduction)
    }

    async fn refund(&self, command: &LedgerCommand) -> Result<Recorded, Status> {
        let response = self
            .client
            .clone()
            .refund_quota(jifen_mesh::trace::request(RefundQuotaRequest {
                order_id: command.order_id.clone(),
                channel_id: command.channel_id.clone(),
            }))
            .await?;
        recorded(response.into_inner().quota_deduction)
    }

    async fn freeze(&self, command: &LedgerCommand) -> Result<Recorded, Status> {
        let response = self
            .client
            .clone()
            .freeze_quota(jifen_mesh::trace::request(FreezeQuotaRequest {
                order_id: command.order_id.clone(),
                channel_id: command.channel_id.clone(),
                points: command.points,
            }))
            .await?;
        recorded(response.into_inner().quota_deduction)
    }

    async fn confirm(&self, command: &LedgerCommand) -> Result<Recorded, Status> {
        let response = self
            .client
            .clone()
            .confirm_quota(jifen_mesh::trace::request(ConfirmQuotaRequest {
                order_id: command.order_id.clone(),
                channel_id: command.channel_id.clone(),
            }))
            .await?;
        recorded(response.into_inner().quota_deduction)
    }

    async fn cancel(&self, command: &LedgerCommand) -> Result<Recorded, Status> {
        let response = self
            .client
            .clone()
            .cancel_quota(jifen_mesh::trace::request(CancelQuotaRequest {
                order_id: command.order_id.clone(),
                channel_id: command.channel_id.clone(),
            }))
            .await?;
        recorded(response.into_inner().quota_deduction)
    }

    fn hold_ttl(&self) -> Option<Duration> {
        Some(self.hold_ttl)
    }

    async fn get(&self, command: &LedgerCommand) -> Result<Recorded, Status> {
        let response = self
            .client
            .clone()
            .get_quota_deduction(jifen_mesh::trace::request(GetQuotaDeductionRequest {
                order_id: command.order_id.clone(),
                channel_id: command.channel_id.clone(),
            }))
            .await?;
        recorded(response.into_inner().quota_deduction)
    }

    fn event(&self, command: &LedgerCommand, recorded: &Recorded) -> (String, Vec<u8>) {
        jifen_mesh::wire::quota_event(command, recorded)
    }
}

/// How the portal connector runs.
#[derive(Debug, Clone, clap::Args)]
pub struct PortalConnectorConfig {
    /// The portal's `PortalService`.
    #[arg(
        long,
        env = "JIFEN_PORTAL_ENDPOINT",
        default_value = "http://127.0.0.1:50052"
    )]
    pub portal_endpoint: String,
    /// Deadline of each call to the portal.
    #[arg(long, env = "JIFEN_CALL_TIMEOUT", default_value = "5s", value_parser = jifen_mesh::config::parse_duration)]
    pub call_timeout: Duration,
    /// Commands handled at once.
    #[arg(long, env = "JIFEN_CONCURRENCY", default_value_t = 64)]
    pub concurrency: usize,
    /// How long the portal's quota holds live: the portal's own `--hold-ttl`.
    #[arg(long, env = "JIFEN_HOLD_TTL", default_value = "10m", value_parser = jifen_mesh::config::parse_duration)]
    pub hold_ttl: Duration,
    /// Serves gRPC health here (for probes) when set.
    #[arg(long, env = "JIFEN_HEALTH_LISTEN")]
    pub health_listen: Option<std::net::SocketAddr>,
    #[command(flatten)]
    pub bus: jifen_mesh::config::BusArgs,
    #[command(flatten)]
    pub retry: jifen_mesh::config::RetryArgs,
    #[command(flatten)]
    pub tls: jifen_mesh::tls::TlsArgs,
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectorError {
    #[error(transparent)]
    Invalid(#[from] InvalidField),
    #[error(transparent)]
    Bus(#[from] jifen_mesh::connector::ConnectorRunError),
    #[error(transparent)]
    Target(#[from] jifen_mesh::tls_io::TargetError),
    #[error(transparent)]
    Tls(#[from] jifen_mesh::tls::TlsError),
}

/// Runs the portal connector until `shutdown`.
pub async fn run_connector(
    config: PortalConnectorConfig,
    shutdown: tokio_util::sync::CancellationToken,
) -> Result<(), ConnectorError> {
    let spec = jifen_mesh::bus::consume::ConsumerSpec {
        concurrency: config.concurrency.max(1),
        ..jifen_mesh::bus::consume::ConsumerSpec::new(
            jifen_mesh::bus::subjects::CMD_STREAM,
            jifen_mesh::bus::subjects::PORTAL_CONSUMER,
            jifen_mesh::bus::subjects::PORTAL_COMMANDS,
            &config.retry.policy(),
        )
    };
    let tls = config.tls.client()?;
    let target = PortalEndpoint::new(&config.portal_endpoint, tls.as_ref(), config.call_timeout)?
        .holding(config.hold_ttl);
    tracing::info!(endpoint = %config.portal_endpoint, "portal connector starting");
    jifen_mesh::connector::run(&config.bus, spec, target, config.health_listen, shutdown).await?;
    Ok(())
}
