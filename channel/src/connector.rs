//! The channel connector: consumes one channel's commands from the bus and drives any endpoint
//! that speaks `ChannelService` (the reference channel or a third party's), with the policy of
//! [`jifen_mesh::connector`].

use std::time::Duration;

use jifen_mesh::barrier::LedgerState;
use jifen_mesh::bus::subjects::Step;
use jifen_mesh::capabilities::Capabilities;
use jifen_mesh::connector::{AnsweredKey, LedgerCommand, LedgerEndpoint, Recorded};
use jifen_mesh::domain::InvalidField;
use jifen_proto::v1::channel_service_client::ChannelServiceClient;
use jifen_proto::v1::{
    CancelFreezeRequest, ConfirmFreezeRequest, DeductPointsRequest, Deduction, FreezePointsRequest,
    GetDeductionRequest, RefundPointsRequest,
};
use tonic::Status;
use tonic::transport::Channel;

/// A `ChannelService` endpoint driven by its commands.
#[derive(Debug, Clone)]
pub struct ChannelEndpoint {
    channel_id: String,
    client: ChannelServiceClient<Channel>,
    capabilities: Capabilities,
    hold_ttl: Option<Duration>,
}

impl ChannelEndpoint {
    /// Connects lazily: the connector starts even while the channel is down.
    pub fn new(
        channel_id: &str,
        endpoint: &str,
        tls: Option<&jifen_mesh::tls::ClientTls>,
        timeout: Duration,
        capabilities: Capabilities,
    ) -> Result<Self, jifen_mesh::tls_io::TargetError> {
        let channel = jifen_mesh::tls_io::GrpcTarget::new(endpoint, tls)?
            .timeouts(timeout, timeout)
            .lazy();
        Ok(Self {
            channel_id: channel_id.to_owned(),
            client: ChannelServiceClient::new(channel),
            capabilities,
            hold_ttl: None,
        })
    }

    /// The channel holds points (TCC, DESIGN §12), a hold lapsing after `ttl`.
    pub fn holding(mut self, ttl: Option<Duration>) -> Self {
        self.hold_ttl = ttl;
        self
    }
}

fn recorded(deduction: Option<Deduction>) -> Result<Recorded, Status> {
    let deduction =
        deduction.ok_or_else(|| Status::internal("the channel answered without a deduction"))?;
    let state = LedgerState::try_from(deduction.state())
        .map_err(|_| Status::internal("the channel answered a deduction without a state"))?;
    Ok(Recorded {
        state,
        points: deduction.points,
        reason: deduction.reason,
        key: Some(AnsweredKey {
            order_id: deduction.order_id,
            channel_id: deduction.channel_id,
            user_id: deduction.user_id,
        }),
        deduct_may_follow: false,
        captured: Default::default(),
        exchanges: Vec::new(),
        hold_expires_at_ms: deduction.hold_expires_at_unix_ms,
    })
}

impl LedgerEndpoint for ChannelEndpoint {
    fn decode(&self, step: Step, payload: &[u8]) -> Result<LedgerCommand, String> {
        jifen_mesh::wire::decode_points_command(&self.channel_id, step, payload)
    }

    async fn deduct(&self, command: &LedgerCommand) -> Result<Recorded, Status> {
        let response = self
            .client
            .clone()
            .deduct_points(jifen_mesh::trace::request(DeductPointsRequest {
                order_id: command.order_id.clone(),
                user_id: command.user_id.clone(),
                points: command.points,
            }))
            .await?;
        recorded(response.into_inner().deduction)
    }

    async fn refund(&self, command: &LedgerCommand) -> Result<Recorded, Status> {
        let response = self
            .client
            .clone()
            .refund_points(jifen_mesh::trace::request(RefundPointsRequest {
                order_id: command.order_id.clone(),
                user_id: command.user_id.clone(),
            }))
            .await?;
        recorded(response.into_inner().deduction)
    }

    async fn freeze(&self, command: &LedgerCommand) -> Result<Recorded, Status> {
        let response = self
            .client
            .clone()
            .freeze_points(jifen_mesh::trace::request(FreezePointsRequest {
                order_id: command.order_id.clone(),
                user_id: command.user_id.clone(),
                points: command.points,
            }))
            .await?;
        recorded(response.into_inner().deduction)
    }

    async fn confirm(&self, command: &LedgerCommand) -> Result<Recorded, Status> {
        let response = self
            .client
            .clone()
            .confirm_freeze(jifen_mesh::trace::request(ConfirmFreezeRequest {
                order_id: command.order_id.clone(),
                user_id: command.user_id.clone(),
            }))
            .await?;
        recorded(response.into_inner().deduction)
    }

    async fn cancel(&self, command: &LedgerCommand) -> Result<Recorded, Status> {
        let response = self
            .client
            .clone()
            .cancel_freeze(jifen_mesh::trace::request(CancelFreezeRequest {
                order_id: command.order_id.clone(),
                user_id: command.user_id.clone(),
            }))
            .await?;
        recorded(response.into_inner().deduction)
    }

    fn hold_ttl(&self) -> Option<Duration> {
        self.hold_ttl
    }

    async fn get(&self, command: &LedgerCommand) -> Result<Recorded, Status> {
        let response = self
            .client
            .clone()
            .get_deduction(jifen_mesh::trace::request(GetDeductionRequest {
                order_id: command.order_id.clone(),
                user_id: command.user_id.clone(),
            }))
            .await?;
        recorded(response.into_inner().deduction)
    }

    fn event(&self, command: &LedgerCommand, recorded: &Recorded) -> (String, Vec<u8>) {
        jifen_mesh::wire::points_event(command, recorded)
    }

    fn capabilities(&self) -> Capabilities {
        self.capabilities
    }

    fn manual_refund_event(
        &self,
        command: &LedgerCommand,
        points: i64,
    ) -> Option<(String, Vec<u8>)> {
        Some(jifen_mesh::wire::manual_refund_event(command, points))
    }
}

/// How a channel connector runs.
#[derive(Debug, Clone, clap::Args)]
pub struct ChannelConnectorConfig {
    /// The channel whose commands this connector consumes.
    #[arg(long, env = "JIFEN_CHANNEL_ID")]
    pub channel_id: String,
    /// The channel's `ChannelService`; looked up in the portal's registry when not given.
    #[arg(
        long,
        env = "JIFEN_CHANNEL_ENDPOINT",
        conflicts_with = "adapter_config"
    )]
    pub channel_endpoint: Option<String>,
    /// Drive an HTTP/JSON points API described by this file instead of a `ChannelService`
    /// (docs/channels.md); its `[capabilities]` say what the channel guarantees.
    #[arg(long, env = "JIFEN_ADAPTER_CONFIG", conflicts_with = "without")]
    pub adapter_config: Option<std::path::PathBuf>,
    /// The portal, for the registry lookup.
    #[arg(
        long,
        env = "JIFEN_PORTAL_ENDPOINT",
        default_value = "http://127.0.0.1:50052"
    )]
    pub portal_endpoint: String,
    /// Guarantees this channel lacks, comma-separated (`idempotent_deduct`, `refund`, `query`,
    /// `null_compensation`, `anti_hanging`); the strategy follows (docs/channels.md).
    #[arg(long, env = "JIFEN_CHANNEL_WITHOUT", value_delimiter = ',')]
    pub without: Vec<String>,
    /// Declares that the channel holds points (`FreezePoints`, `ConfirmFreeze`, `CancelFreeze`)
    /// and releases a hold after this long: the mall then takes this channel's lines by TCC
    /// (DESIGN §12). Unset: by deduct and refund.
    #[arg(long, env = "JIFEN_HOLD_TTL", value_parser = jifen_mesh::config::parse_duration, conflicts_with = "adapter_config")]
    pub hold_ttl: Option<Duration>,
    /// Deadline of each call to the channel [default: 5s]. For a channel driven through an
    /// adapter config, given, it replaces the config's `timeout`.
    #[arg(long, env = "JIFEN_CALL_TIMEOUT", value_parser = jifen_mesh::config::parse_duration)]
    pub call_timeout: Option<Duration>,
    /// Commands handled at once.
    #[arg(long, env = "JIFEN_CONCURRENCY", default_value_t = 64)]
    pub concurrency: usize,
    /// Serves gRPC health here (for probes) when set.
    #[arg(long, env = "JIFEN_HEALTH_LISTEN")]
    pub health_listen: Option<std::net::SocketAddr>,
    /// Serves the partner's notifications here (`POST /notify/<channel>`), for an adapter
    /// config with `[notify]` (docs/channels.md).
    #[arg(long, env = "JIFEN_NOTIFY_LISTEN", requires = "adapter_config")]
    pub notify_listen: Option<std::net::SocketAddr>,
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
    Adapter(#[from] crate::adapter::AdapterConfigError),
    #[error("the adapter config is for channel {file}, but the connector runs channel {flag}")]
    OtherChannel { file: String, flag: String },
    #[error(transparent)]
    Bus(#[from] jifen_mesh::connector::ConnectorRunError),
    #[error(transparent)]
    Target(#[from] jifen_mesh::tls_io::TargetError),
    #[error(transparent)]
    Tls(#[from] jifen_mesh::tls::TlsError),
    #[error("{0}")]
    Setting(String),
    #[error("cannot serve notifications on {addr}")]
    NotifyListen {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// How long a call to a gRPC channel may take unless `--call-timeout` says otherwise.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs the connector of one channel until `shutdown`.
pub async fn run_connector(
    config: ChannelConnectorConfig,
    shutdown: tokio_util::sync::CancellationToken,
) -> Result<(), ConnectorError> {
    let channel_id = jifen_mesh::domain::ChannelId::parse("channel_id", config.channel_id.clone())?;
    let capabilities = Capabilities::without(&config.without)
        .map_err(|e| InvalidField::new("without", e.to_string()))?;
    let spec = jifen_mesh::bus::consume::ConsumerSpec {
        concurrency: config.concurrency.max(1),
        ..jifen_mesh::bus::consume::ConsumerSpec::new(
            jifen_mesh::bus::subjects::CMD_STREAM,
            &jifen_mesh::bus::subjects::channel_consumer(channel_id.as_str()),
            &jifen_mesh::bus::subjects::channel_commands(channel_id.as_str()),
            &config.retry.policy(),
        )
    };
    let tls = config.tls.client()?;
    if let Some(path) = &config.adapter_config {
        let mut adapter = crate::adapter::AdapterConfig::load(path)?;
        if adapter.channel_id != channel_id {
            return Err(ConnectorError::OtherChannel {
                file: adapter.channel_id.to_string(),
                flag: channel_id.to_string(),
            });
        }
        if let Some(timeout) = config.call_timeout {
            adapter.timeout = timeout;
        }
        // Like any connector, it starts on a channel the portal knows (and gives quota).
        let registered =
            wait_for_registration(&config.portal_endpoint, tls.as_ref(), channel_id.as_str());
        tokio::select! {
            _ = registered => {}
            () = shutdown.cancelled() => return Ok(()),
        }
        if let Some(schedule) = &adapter.poll {
            let polls = i64::try_from(schedule.polls()).unwrap_or(i64::MAX);
            if polls >= spec.max_deliver {
                return Err(ConnectorError::Setting(format!(
                    "the adapter config's [pending] polls up to {polls} times before its \
                     deadline, and --max-deliver is {}: raise --max-deliver above {polls} or \
                     shorten pending.deadline",
                    spec.max_deliver
                )));
            }
        }
        if config.notify_listen.is_some() && adapter.notify.is_none() {
            return Err(ConnectorError::Setting(
                "--notify-listen is set, but the adapter config has no [notify]".into(),
            ));
        }
        let target = crate::adapter::HttpChannel::new(adapter)?.keeping_evidence();
        let pending = std::sync::Arc::new(jifen_mesh::connector::PendingBook::default());
        let notifications = match config.notify_listen {
            Some(addr) => {
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|source| ConnectorError::NotifyListen { addr, source })?;
                tracing::info!(%addr, "serving the partner's notifications");
                Some(tokio::spawn(crate::notify::serve(
                    listener,
                    std::sync::Arc::new(target.clone()),
                    pending.clone(),
                    shutdown.clone(),
                )))
            }
            None => None,
        };
        tracing::info!(channel_id = %channel_id, api = target.base_url(), missing = ?target.capabilities().missing(), "channel connector starting (HTTP adapter)");
        let ran = jifen_mesh::connector::run_with(
            &config.bus,
            spec,
            target,
            config.health_listen,
            shutdown.clone(),
            pending,
        )
        .await;
        if let Some(task) = notifications {
            shutdown.cancel();
            match task.await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => tracing::warn!(%error, "the notification server stopped"),
                Err(error) => tracing::error!(%error, "the notification server's task failed"),
            }
        }
        ran?;
        return Ok(());
    }
    let endpoint = match &config.channel_endpoint {
        Some(endpoint) => endpoint.clone(),
        None => {
            let lookup =
                wait_for_registration(&config.portal_endpoint, tls.as_ref(), channel_id.as_str());
            tokio::select! {
                endpoint = lookup => endpoint,
                () = shutdown.cancelled() => return Ok(()),
            }
        }
    };
    let target = ChannelEndpoint::new(
        channel_id.as_str(),
        &endpoint,
        tls.as_ref(),
        config.call_timeout.unwrap_or(DEFAULT_CALL_TIMEOUT),
        capabilities,
    )?
    .holding(config.hold_ttl);
    tracing::info!(channel_id = %channel_id, %endpoint, missing = ?capabilities.missing(), hold_ttl = ?config.hold_ttl, "channel connector starting");
    jifen_mesh::connector::run(&config.bus, spec, target, config.health_listen, shutdown).await?;
    Ok(())
}

/// The channel's endpoint from the portal's registry. A connector may start before its
/// channel is registered (or before the portal answers): it waits, saying why, and retries
/// with back-off — 1 s doubling to 30 s.
async fn wait_for_registration(
    portal: &str,
    tls: Option<&jifen_mesh::tls::ClientTls>,
    channel_id: &str,
) -> String {
    let mut attempts = 0_u32;
    loop {
        let why = match registered_endpoint(portal, tls, channel_id).await {
            Ok(Some(endpoint)) => return endpoint,
            Ok(None) => format!("channel {channel_id} is not in the portal's registry yet"),
            Err(error) => format!("cannot read the portal's registry: {error}"),
        };
        attempts = attempts.saturating_add(1);
        let delay =
            jifen_mesh::retry::doubling(Duration::from_secs(1), attempts, Duration::from_secs(30));
        tracing::warn!(%portal, channel_id, attempts, ?delay, "{why}; waiting");
        tokio::time::sleep(delay).await;
    }
}

async fn registered_endpoint(
    portal: &str,
    tls: Option<&jifen_mesh::tls::ClientTls>,
    channel_id: &str,
) -> Result<Option<String>, String> {
    use jifen_proto::v1::ListChannelsRequest;
    use jifen_proto::v1::portal_service_client::PortalServiceClient;
    let channel = jifen_mesh::tls_io::GrpcTarget::new(portal, tls)
        .map_err(|e| e.to_string())?
        .connect()
        .await
        .map_err(|e| e.to_string())?;
    let mut client = PortalServiceClient::new(channel);
    let channels = client
        .list_channels(ListChannelsRequest {})
        .await
        .map_err(|e| e.message().to_owned())?
        .into_inner()
        .channels;
    Ok(channels
        .into_iter()
        .find(|c| c.channel_id == channel_id)
        .map(|c| c.endpoint))
}
