//! `jifen dev`'s HTTP demo channel: a REST points API served in-process
//! ([`PointsApi`]), connected the way a third party's API is — through the adapter, with the
//! config file `deploy/local/delta-http.toml` (a copy of which is written into the data folder
//! for the user to read and edit, unless `--http-channel-config` names one).
//!
//! The API keeps its books in memory: a restart of `jifen dev` seeds it afresh.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use jifen_channel::adapter::AdapterConfig;
use jifen_channel::connector::{ChannelConnectorConfig, run_connector};
use jifen_channel::points_api::PointsApi;
use jifen_mesh::config::{BusArgs, RetryArgs};
use jifen_mesh::domain::ChannelId;
use jifen_proto::v1::portal_service_client::PortalServiceClient;
use jifen_proto::v1::{ChannelKind, GrantQuotaRequest, RegisterChannelRequest};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

const DEMO_CONFIG: &str = include_str!("../../deploy/local/delta-http.toml");
const DEMO_BASE_URL: &str = "http://127.0.0.1:50070";
/// The channel id in [`DEMO_CONFIG`] (its bus identity is made before the config is read).
const DEMO_CHANNEL_ID: &str = "delta";
const DEMO_API_KEY: &str = "jifen-demo-key";

/// The running HTTP demo channel.
pub struct HttpDemo {
    pub channel_id: String,
    pub addr: SocketAddr,
    pub config: PathBuf,
}

/// The channel id of the HTTP demo channel: the given adapter config's, else the demo's.
pub fn channel_id(given_config: Option<&Path>) -> anyhow::Result<ChannelId> {
    match given_config {
        Some(path) => Ok(AdapterConfig::load(path)?.channel_id),
        None => Ok(ChannelId::parse("channel_id", DEMO_CHANNEL_ID)?),
    }
}

/// Starts the API on `listen`, seeds `users`, registers the channel (kind HTTP) and starts
/// its connector on the adapter config.
#[allow(clippy::too_many_arguments)]
pub async fn start(
    listen: SocketAddr,
    given_config: Option<&Path>,
    data_dir: &Path,
    users: &[&str],
    points: i64,
    quota: i64,
    portal_endpoint: &str,
    tls: &crate::dev_tls::DevTls,
    bus: &BusArgs,
    retry: &RetryArgs,
    tasks: &mut JoinSet<anyhow::Result<()>>,
    shutdown: &CancellationToken,
) -> anyhow::Result<HttpDemo> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| {
            format!("cannot serve the HTTP demo channel on {listen} (pick --http-channel-listen)")
        })?;
    let addr = listener.local_addr()?;
    let config = match given_config {
        Some(path) => path.to_owned(),
        None => {
            let path = data_dir.join("delta-http.toml");
            let text = DEMO_CONFIG.replace(DEMO_BASE_URL, &format!("http://{addr}"));
            std::fs::write(&path, text)
                .with_context(|| format!("cannot write {}", path.display()))?;
            path
        }
    };
    let adapter = AdapterConfig::load(&config)?;
    let channel_id = adapter.channel_id.to_string();
    // Its books live beside the other systems' data: a restart keeps them (and seeds nothing).
    let books = data_dir.join("delta-books.json");
    let (api, fresh) = PointsApi::persistent(DEMO_API_KEY, &books)
        .with_context(|| format!("cannot read {}", books.display()))?;
    if fresh {
        for user in users {
            api.credit_direct(user, points);
        }
    }
    let token = shutdown.clone();
    let served = Arc::clone(&api);
    tasks.spawn(async move { Ok(served.serve(listener, token).await?) });

    let mut portal = PortalServiceClient::new(tls.connect(portal_endpoint).await?);
    portal
        .register_channel(RegisterChannelRequest {
            channel_id: channel_id.clone(),
            name: "Delta Telecom Points (REST API)".to_owned(),
            endpoint: adapter.base_url.to_string(),
            kind: ChannelKind::Http.into(),
        })
        .await?;
    portal
        .grant_quota(GrantQuotaRequest {
            request_id: format!("dev-seed-quota-{channel_id}"),
            channel_id: channel_id.clone(),
            points: quota,
        })
        .await?;

    let connector = ChannelConnectorConfig {
        tls: tls.args.clone(),
        channel_id: channel_id.clone(),
        channel_endpoint: None,
        adapter_config: Some(config.clone()),
        without: Vec::new(),
        // The adapter config declares holds itself.
        hold_ttl: None,
        portal_endpoint: portal_endpoint.to_owned(),
        // The adapter config's own timeouts apply.
        call_timeout: None,
        concurrency: 64,
        health_listen: None,
        notify_listen: None,
        bus: bus.clone(),
        retry: retry.clone(),
    };
    let token = shutdown.clone();
    tasks.spawn(async move { Ok(run_connector(connector, token).await?) });
    Ok(HttpDemo {
        channel_id,
        addr,
        config,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_config_names_the_demo_channel() {
        assert!(DEMO_CONFIG.contains(&format!("channel_id = \"{DEMO_CHANNEL_ID}\"")));
    }
}
