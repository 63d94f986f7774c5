//! The two checks before an order is stored (DESIGN §2, steps 1 and 2): every channel has the
//! quota at the portal, and every user has the points at their channel. All calls run at once,
//! each with a deadline. Channel endpoints come from the portal's registry, which also says
//! how each is reached: `ChannelService` over gRPC, or an HTTP/JSON API through its adapter.
//!
//! A channel's quota is read from the portal at most once per [`QUOTA_FRESH`] and shared by
//! every order checked meanwhile: the check only turns away early what the portal's deduct
//! would refuse anyway, so an answer a few milliseconds old admits nothing the portal does not
//! decide again; a refusal is always made on an answer read after the order arrived.

use jifen_mesh::domain::InvalidField;
use jifen_mesh::tls::ClientTls;
use jifen_mesh::tls_io::GrpcTarget;
use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures_util::future::try_join_all;
use jifen_adapter::{CallKey, HttpChannel};
use jifen_proto::v1::channel_service_client::ChannelServiceClient;
use jifen_proto::v1::portal_service_client::PortalServiceClient;
use jifen_proto::v1::{
    ChannelKind, DeductionState, GetChannelQuotaRequest, GetDeductionRequest, GetUserPointsRequest,
    ListChannelsRequest,
};
use std::sync::Arc;
use tokio::sync::{Mutex, RwLock};
use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::error::MallError;
use crate::order::NewOrder;

/// The portal, and the channels it lists, as clients.
#[derive(Debug)]
pub struct Registry {
    portal: PortalServiceClient<Channel>,
    channels: RwLock<HashMap<String, ChannelClient>>,
    /// The HTTP channels' adapters, by channel id.
    adapters: HashMap<String, Arc<HttpChannel>>,
    timeout: Duration,
    /// How `https://` channel endpoints are reached.
    tls: Option<ClientTls>,
    /// The last quota read of each channel; a channel's lock also makes concurrent checks
    /// wait for one read instead of each making its own.
    quotas: std::sync::Mutex<HashMap<String, Arc<Mutex<Option<QuotaSeen>>>>>,
}

/// How long a quota read from the portal serves the checks of other orders: about a hundred
/// orders' worth under load (two gRPC calls and two ledger reads fewer per order, DESIGN §6).
pub const QUOTA_FRESH: Duration = Duration::from_millis(100);

/// What the portal answered for a channel's remaining quota, and when the answer came.
#[derive(Debug, Clone)]
struct QuotaSeen {
    read: Result<i64, Status>,
    at: Instant,
}

/// A channel as the mall reads it: balances (pre-check) and deductions (reconciliation).
#[derive(Debug, Clone)]
pub enum ChannelClient {
    Grpc(ChannelServiceClient<Channel>),
    Http(Arc<HttpChannel>),
    /// Listed as HTTP, but the mall was given no adapter config for it.
    Unconfigured(String),
}

impl ChannelClient {
    /// A user's balance; `None` when the channel offers no balance call.
    pub async fn balance(&self, user_id: &str) -> Result<Option<i64>, Status> {
        match self {
            Self::Grpc(client) => Ok(Some(
                client
                    .clone()
                    .get_user_points(jifen_mesh::trace::request(GetUserPointsRequest {
                        user_id: user_id.to_owned(),
                    }))
                    .await?
                    .into_inner()
                    .balance,
            )),
            Self::Http(api) => api.balance(user_id).await,
            Self::Unconfigured(why) => Err(Status::failed_precondition(why.clone())),
        }
    }

    /// What the channel recorded for a key, as `(state name, points)`; `NOT_FOUND` for nothing.
    pub async fn deduction(&self, order_id: &str, user_id: &str) -> Result<(String, i64), Status> {
        match self {
            Self::Grpc(client) => {
                let deduction = client
                    .clone()
                    .get_deduction(GetDeductionRequest {
                        order_id: order_id.to_owned(),
                        user_id: user_id.to_owned(),
                    })
                    .await?
                    .into_inner()
                    .deduction
                    .ok_or_else(|| Status::not_found("no deduction"))?;
                Ok((deduction.state().as_str_name().to_owned(), deduction.points))
            }
            Self::Http(api) => {
                let recorded = api
                    .query(CallKey {
                        order_id,
                        user_id,
                        points: 0,
                        captured: None,
                    })
                    .await?;
                let state = DeductionState::from(recorded.state);
                Ok((state.as_str_name().to_owned(), recorded.points))
            }
            Self::Unconfigured(why) => Err(Status::failed_precondition(why.clone())),
        }
    }
}

fn lazy(
    endpoint: &str,
    tls: Option<&ClientTls>,
    timeout: Duration,
) -> Result<Channel, jifen_mesh::tls_io::TargetError> {
    Ok(GrpcTarget::new(endpoint, tls)?
        .timeouts(timeout, timeout)
        .lazy())
}

/// The portal's refusal to tell a channel's quota, as the mall answers it.
fn quota_error(channel_id: &str, status: &Status) -> MallError {
    match status.code() {
        Code::NotFound => MallError::UnknownChannel(channel_id.to_owned()),
        _ => upstream("the portal", status),
    }
}

fn upstream(what: impl Into<String>, status: &Status) -> MallError {
    MallError::Upstream {
        what: what.into(),
        code: status.code(),
        message: status.message().to_owned(),
    }
}

impl Registry {
    pub fn new(
        portal_endpoint: &str,
        timeout: Duration,
        adapters: Vec<HttpChannel>,
        tls: Option<ClientTls>,
    ) -> Result<Self, MallError> {
        let portal = lazy(portal_endpoint, tls.as_ref(), timeout)
            .map_err(|e| InvalidField::new("portal_endpoint", e.to_string()))?;
        Ok(Self {
            portal: PortalServiceClient::new(portal),
            tls,
            channels: RwLock::new(HashMap::new()),
            adapters: adapters
                .into_iter()
                .map(|a| (a.channel_id().to_owned(), Arc::new(a)))
                .collect(),
            timeout,
            quotas: std::sync::Mutex::new(HashMap::new()),
        })
    }

    pub fn portal(&self) -> PortalServiceClient<Channel> {
        self.portal.clone()
    }

    /// A client for a registered channel; the registry is read again on a miss.
    /// How `channel_id`'s partner statement reads, as its adapter config says (`[statement]`).
    pub fn statement_format(
        &self,
        channel_id: &str,
    ) -> Option<jifen_adapter::config::StatementFormat> {
        self.adapters
            .get(channel_id)
            .and_then(|adapter| adapter.statement_format().cloned())
    }

    /// The channels the portal's registry lists, as it answers now.
    pub async fn listed(&self) -> Result<Vec<jifen_proto::v1::Channel>, MallError> {
        Ok(self
            .portal
            .clone()
            .list_channels(ListChannelsRequest {})
            .await
            .map_err(|s| upstream("the portal", &s))?
            .into_inner()
            .channels)
    }

    pub async fn channel(&self, channel_id: &str) -> Result<ChannelClient, MallError> {
        if let Some(client) = self.channels.read().await.get(channel_id) {
            return Ok(client.clone());
        }
        let listed = self.listed().await?;
        let mut channels = self.channels.write().await;
        for channel in listed {
            let client = match channel.kind() {
                ChannelKind::Http => match self.adapters.get(&channel.channel_id) {
                    Some(api) => ChannelClient::Http(api.clone()),
                    None => ChannelClient::Unconfigured(format!(
                        "channel {} is an HTTP channel, but the mall was started without its \
                         adapter config (--adapter-config)",
                        channel.channel_id
                    )),
                },
                ChannelKind::Grpc | ChannelKind::Unspecified => {
                    match lazy(&channel.endpoint, self.tls.as_ref(), self.timeout) {
                        Ok(lazy) => ChannelClient::Grpc(ChannelServiceClient::new(lazy)),
                        Err(error) => ChannelClient::Unconfigured(format!(
                            "channel {}: {error}",
                            channel.channel_id
                        )),
                    }
                }
            };
            channels.insert(channel.channel_id, client);
        }
        channels
            .get(channel_id)
            .cloned()
            .ok_or_else(|| MallError::UnknownChannel(channel_id.to_owned()))
    }

    /// Checks quota and points for every line of `order`, all at once.
    pub async fn check(&self, order: &NewOrder) -> Result<(), MallError> {
        let asked = Instant::now();
        let quotas = order
            .quotas()
            .into_iter()
            .map(|(channel_id, needed)| async move {
                let remaining = self
                    .remaining_quota(channel_id.as_str(), needed, asked)
                    .await?;
                if remaining < needed {
                    return Err(MallError::InsufficientQuota {
                        channel_id: channel_id.to_string(),
                        remaining,
                        needed,
                    });
                }
                Ok(())
            });
        let points = order.lines.iter().map(|line| async move {
            let client = self.channel(line.channel_id.as_str()).await?;
            let balance = client
                .balance(line.user_id.as_str())
                .await
                .map_err(|s| match s.code() {
                    Code::NotFound => MallError::UnknownUser {
                        channel_id: line.channel_id.to_string(),
                        user_id: line.user_id.to_string(),
                    },
                    _ => upstream(format!("channel {}", line.channel_id), &s),
                });
            if let Err(MallError::Upstream {
                code: Code::Unavailable,
                ..
            }) = &balance
            {
                // The endpoint may have moved: read the registry again next time.
                self.channels.write().await.remove(line.channel_id.as_str());
            }
            // A channel without a balance call: its deduct alone decides.
            let Some(balance) = balance? else {
                return Ok(());
            };
            if balance < line.points.get() {
                return Err(MallError::InsufficientPoints {
                    channel_id: line.channel_id.to_string(),
                    user_id: line.user_id.to_string(),
                    balance,
                    needed: line.points.get(),
                });
            }
            Ok(())
        });
        let (quotas, points) = tokio::join!(try_join_all(quotas), try_join_all(points));
        quotas?;
        points?;
        Ok(())
    }

    /// `channel_id`'s remaining quota: the last read while it is fresh and enough for
    /// `needed`, else a new read (one at a time per channel; a read made after `asked` by a
    /// check that waited ahead of this one serves it too).
    async fn remaining_quota(
        &self,
        channel_id: &str,
        needed: i64,
        asked: Instant,
    ) -> Result<i64, MallError> {
        let slot = {
            let mut quotas = self
                .quotas
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            quotas.entry(channel_id.to_owned()).or_default().clone()
        };
        let mut seen = slot.lock().await;
        if let Some(last) = seen.as_ref() {
            let fresh = last.at.elapsed() < QUOTA_FRESH;
            match &last.read {
                Ok(remaining) if (fresh && *remaining >= needed) || last.at >= asked => {
                    return Ok(*remaining);
                }
                // A read that failed after this order arrived answers it too: a portal that
                // hangs costs the checks waiting here one deadline, not one each in turn.
                Err(status) if last.at >= asked => return Err(quota_error(channel_id, status)),
                _ => {}
            }
        }
        let read = self
            .portal
            .clone()
            .get_channel_quota(jifen_mesh::trace::request(GetChannelQuotaRequest {
                channel_id: channel_id.to_owned(),
            }))
            .await
            .map(|answer| answer.into_inner().remaining);
        if matches!(&read, Err(status) if status.code() == Code::NotFound) {
            // No such channel: keep nothing for it, or orders naming made-up channels would
            // grow this map without end. The checks waiting here still get this answer.
            self.quotas
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .remove(channel_id);
        }
        *seen = Some(QuotaSeen {
            read: read.clone(),
            at: Instant::now(),
        });
        read.map_err(|status| quota_error(channel_id, &status))
    }
}
