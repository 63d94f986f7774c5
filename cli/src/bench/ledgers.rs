//! The bench's view of the ledgers: the channels and their endpoints from the portal, seeding
//! users (idempotent credits), balances and quotas before and after, the "purchase elsewhere"
//! that leaves a user short, and the check that everything moved by exactly what settled.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Context;
use futures_util::{StreamExt, TryStreamExt};
use jifen_proto::v1::ChannelKind;
use jifen_proto::v1::channel_service_client::ChannelServiceClient;
use jifen_proto::v1::portal_service_client::PortalServiceClient;
use jifen_proto::v1::{
    CreditPointsRequest, DeductPointsRequest, GetChannelQuotaRequest, GetUserPointsRequest,
    GrantQuotaRequest, ListChannelsRequest,
};
use tonic::transport::Channel;

/// Points each bench user gets at each channel it uses (once: the credit is idempotent).
const SEED_POINTS: i64 = 10_000_000;
/// Calls in flight while seeding and reading balances.
const SETUP_CONCURRENCY: usize = 64;

/// A user at a channel (by index).
pub type Pair = (usize, String);

pub struct Ledgers {
    pub ids: Vec<String>,
    channels: Vec<ChannelServiceClient<Channel>>,
    portal: PortalServiceClient<Channel>,
}

impl Ledgers {
    pub async fn connect(
        portal_url: &str,
        tls: Option<&jifen_mesh::tls::ClientTls>,
    ) -> anyhow::Result<Self> {
        let portal = jifen_mesh::tls_io::GrpcTarget::new(portal_url, tls)?
            .connect()
            .await
            .with_context(|| format!("cannot reach the portal at {portal_url}"))?;
        let mut portal = PortalServiceClient::new(portal);
        let listed = portal
            .list_channels(ListChannelsRequest {})
            .await?
            .into_inner()
            .channels;
        let mut ids = Vec::new();
        let mut channels = Vec::new();
        for channel in listed {
            // The bench seeds and reads balances through ChannelService (CreditPoints): a
            // REST channel has no such call, so it is left out of the load.
            if channel.kind() == ChannelKind::Http {
                eprintln!(
                    "bench: leaving out {}, an HTTP channel (the bench seeds users through ChannelService)",
                    channel.channel_id
                );
                continue;
            }
            let endpoint = jifen_mesh::tls_io::GrpcTarget::new(&channel.endpoint, tls)
                .with_context(|| format!("bad endpoint of {}", channel.channel_id))?
                .lazy();
            ids.push(channel.channel_id);
            channels.push(ChannelServiceClient::new(endpoint));
        }
        Ok(Self {
            ids,
            channels,
            portal,
        })
    }

    /// Credits every pair once; a second run credits nothing (same request ids).
    pub async fn seed(&self, pairs: &BTreeSet<Pair>) -> anyhow::Result<()> {
        futures_util::stream::iter(pairs.iter().cloned())
            .map(|(channel, user)| {
                let mut client = self.channels[channel].clone();
                async move {
                    client
                        .credit_points(CreditPointsRequest {
                            request_id: format!("bench-seed-{user}"),
                            user_id: user.clone(),
                            points: SEED_POINTS,
                        })
                        .await
                        .with_context(|| format!("cannot credit {user}"))
                }
            })
            .buffer_unordered(SETUP_CONCURRENCY)
            .try_collect::<Vec<_>>()
            .await?;
        Ok(())
    }

    pub async fn balances(&self, pairs: &BTreeSet<Pair>) -> anyhow::Result<BTreeMap<Pair, i64>> {
        futures_util::stream::iter(pairs.iter().cloned())
            .map(|pair| async move {
                let balance = self.balance(pair.0, &pair.1).await?;
                anyhow::Ok((pair, balance))
            })
            .buffer_unordered(SETUP_CONCURRENCY)
            .try_collect()
            .await
    }

    async fn balance(&self, channel: usize, user: &str) -> anyhow::Result<i64> {
        Ok(self.channels[channel]
            .clone()
            .get_user_points(GetUserPointsRequest {
                user_id: user.to_owned(),
            })
            .await
            .with_context(|| format!("cannot read {user} at {}", self.ids[channel]))?
            .into_inner()
            .balance)
    }

    /// Grants each channel the quota the run's orders need (once per run id), so that the run
    /// measures the saga, not an exhausted quota.
    pub async fn grant_quota(&self, needed: &BTreeMap<usize, i64>, run: i64) -> anyhow::Result<()> {
        for (channel, points) in needed {
            self.portal
                .clone()
                .grant_quota(GrantQuotaRequest {
                    request_id: format!("bench-quota-{}-{run}", self.ids[*channel]),
                    channel_id: self.ids[*channel].clone(),
                    points: *points,
                })
                .await
                .with_context(|| format!("cannot grant quota to {}", self.ids[*channel]))?;
        }
        Ok(())
    }

    /// Quota used per channel.
    pub async fn quota_used(&self) -> anyhow::Result<Vec<i64>> {
        let mut used = Vec::with_capacity(self.ids.len());
        for id in &self.ids {
            used.push(
                self.portal
                    .clone()
                    .get_channel_quota(GetChannelQuotaRequest {
                        channel_id: id.clone(),
                    })
                    .await?
                    .into_inner()
                    .used,
            );
        }
        Ok(used)
    }

    /// Spends what `user` holds at `channel` beyond `keep`, under a key of its own (a purchase
    /// made elsewhere), so that an order needing more than `keep` fails there: returns the
    /// points taken, 0 when there was nothing to take or the race went the other way.
    pub async fn spend_elsewhere(&self, channel: usize, user: &str, keep: i64, key: &str) -> i64 {
        let Ok(balance) = self.balance(channel, user).await else {
            return 0;
        };
        let Some(spend) = balance.checked_sub(keep).filter(|s| *s > 0) else {
            return 0;
        };
        let taken = self.channels[channel]
            .clone()
            .deduct_points(DeductPointsRequest {
                order_id: key.to_owned(),
                user_id: user.to_owned(),
                points: spend,
            })
            .await;
        taken.map_or(0, |_| spend)
    }
}

/// What moved, per pair and per channel, and whether it is exactly what settled.
#[derive(Debug, Default)]
pub struct Expected {
    /// Points each pair must have lost: completed orders' lines and purchases elsewhere.
    pub spent: BTreeMap<Pair, i64>,
    /// Quota each channel must have used: completed orders' lines.
    pub quota: BTreeMap<usize, i64>,
}

/// The mismatches between what the ledgers hold and what the settled orders explain.
pub fn mismatches(
    ids: &[String],
    before: &BTreeMap<Pair, i64>,
    after: &BTreeMap<Pair, i64>,
    quota_before: &[i64],
    quota_after: &[i64],
    expected: &Expected,
) -> Vec<String> {
    let mut found = Vec::new();
    for (pair, start) in before {
        let spent = expected.spent.get(pair).copied().unwrap_or(0);
        let end = after.get(pair).copied().unwrap_or(i64::MIN);
        if start.checked_sub(spent) != Some(end) {
            found.push(format!(
                "{} at {}: {start} before, {spent} spent, {end} now",
                pair.1, ids[pair.0]
            ));
        }
    }
    for (channel, id) in ids.iter().enumerate() {
        let used = expected.quota.get(&channel).copied().unwrap_or(0);
        let (start, end) = (quota_before[channel], quota_after[channel]);
        if start.checked_add(used) != Some(end) {
            found.push(format!(
                "quota of {id}: {start} used before, {used} by completed orders, {end} now"
            ));
        }
    }
    found
}
