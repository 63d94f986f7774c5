//! The two checks before an order is stored (DESIGN §2, steps 1 and 2): every channel has the
//! quota at the portal, and every user has the points at their channel. All calls run at once,
//! each with a deadline. Channel endpoints come from the portal's registry.

use std::collections::HashMap;
use std::time::Duration;

use futures_util::future::try_join_all;
use jifen_proto::v1::channel_service_client::ChannelServiceClient;
use jifen_proto::v1::portal_service_client::PortalServiceClient;
use jifen_proto::v1::{GetChannelQuotaRequest, GetUserPointsRequest, ListChannelsRequest};
use tokio::sync::RwLock;
use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::error::MallError;
use crate::order::NewOrder;

/// The portal, and the channels it lists, as gRPC clients.
#[derive(Debug)]
pub struct Registry {
    portal: PortalServiceClient<Channel>,
    channels: RwLock<HashMap<String, ChannelServiceClient<Channel>>>,
    timeout: Duration,
}

fn lazy(endpoint: &str, timeout: Duration) -> Result<Channel, MallError> {
    Ok(Channel::from_shared(endpoint.to_owned())
        .map_err(|e| jifen_mesh::domain::InvalidField::new("endpoint", e.to_string()))?
        .timeout(timeout)
        .connect_timeout(timeout)
        .connect_lazy())
}

fn upstream(what: impl Into<String>, status: &Status) -> MallError {
    MallError::Upstream {
        what: what.into(),
        code: status.code(),
        message: status.message().to_owned(),
    }
}

impl Registry {
    pub fn new(portal_endpoint: &str, timeout: Duration) -> Result<Self, MallError> {
        Ok(Self {
            portal: PortalServiceClient::new(lazy(portal_endpoint, timeout)?),
            channels: RwLock::new(HashMap::new()),
            timeout,
        })
    }

    pub fn portal(&self) -> PortalServiceClient<Channel> {
        self.portal.clone()
    }

    /// A client for a registered channel; the registry is read again on a miss.
    pub async fn channel(
        &self,
        channel_id: &str,
    ) -> Result<ChannelServiceClient<Channel>, MallError> {
        if let Some(client) = self.channels.read().await.get(channel_id) {
            return Ok(client.clone());
        }
        let listed = self
            .portal
            .clone()
            .list_channels(ListChannelsRequest {})
            .await
            .map_err(|s| upstream("the portal", &s))?
            .into_inner()
            .channels;
        let mut channels = self.channels.write().await;
        for channel in listed {
            let client = ChannelServiceClient::new(lazy(&channel.endpoint, self.timeout)?);
            channels.insert(channel.channel_id, client);
        }
        channels
            .get(channel_id)
            .cloned()
            .ok_or_else(|| MallError::UnknownChannel(channel_id.to_owned()))
    }

    /// Checks quota and points for every line of `order`, all at once.
    pub async fn check(&self, order: &NewOrder) -> Result<(), MallError> {
        let quotas = order
            .quotas()
            .into_iter()
            .map(|(channel_id, needed)| async move {
                let quota = self
                    .portal
                    .clone()
                    .get_channel_quota(jifen_mesh::trace::request(GetChannelQuotaRequest {
                        channel_id: channel_id.to_string(),
                    }))
                    .await
                    .map_err(|s| match s.code() {
                        Code::NotFound => MallError::UnknownChannel(channel_id.to_string()),
                        _ => upstream("the portal", &s),
                    })?
                    .into_inner();
                if quota.remaining < needed {
                    return Err(MallError::InsufficientQuota {
                        channel_id: channel_id.to_string(),
                        remaining: quota.remaining,
                        needed,
                    });
                }
                Ok(())
            });
        let points = order.lines.iter().map(|line| async move {
            let mut client = self.channel(line.channel_id.as_str()).await?;
            let balance = client
                .get_user_points(jifen_mesh::trace::request(GetUserPointsRequest {
                    user_id: line.user_id.to_string(),
                }))
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
            let balance = balance?.into_inner().balance;
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
}
