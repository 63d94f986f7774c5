//! The channel registry from configuration: a JSON file (a ConfigMap in Kubernetes) naming each
//! channel, its endpoint and the quota it must at least have, applied idempotently at every
//! start — so a fresh cluster needs no hand-made `RegisterChannel` / `GrantQuota` calls.
//!
//! ```json
//! {"channels": [{"channel_id": "alpha", "name": "Alpha Air miles",
//!                "endpoint": "http://channel-alpha:50061", "quota": 1000000},
//!               {"channel_id": "delta", "name": "Delta Telecom Points", "kind": "http",
//!                "endpoint": "https://points.delta.example/api", "quota": 1000000}]}
//! ```
//!
//! `quota` is a floor on the channel's granted total: when the total is below it, the
//! difference is granted once, under the request id `config-<channel>-<quota>` (so portal
//! replicas starting together grant it once). A total already at or above it is left alone;
//! top-ups beyond the file go through `GrantQuota`.

use std::path::{Path, PathBuf};

use jifen_mesh::domain::{ChannelId, DisplayName, Endpoint, InvalidField, Points, RequestId};
use serde::Deserialize;

use crate::error::PortalError;
use crate::quota::{ChannelKind, QuotaBook};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    channels: Vec<Entry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    channel_id: String,
    name: String,
    endpoint: String,
    #[serde(default)]
    quota: i64,
    /// `grpc` (the default) or `http`.
    #[serde(default)]
    kind: ChannelKind,
}

/// One channel as the configuration declares it, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeclaredChannel {
    pub channel_id: ChannelId,
    pub name: DisplayName,
    pub endpoint: Endpoint,
    /// The least total quota the channel must have; `None` for no grant.
    pub quota: Option<Points>,
    pub kind: ChannelKind,
}

#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error("cannot read the channels file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the channels file {path} is not valid: {source}")]
    Syntax {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("the channels file {path}: channels[{index}]: {source}")]
    Invalid {
        path: PathBuf,
        index: usize,
        #[source]
        source: InvalidField,
    },
    #[error("the channels file {path} declares channel {channel_id} twice")]
    Repeated { path: PathBuf, channel_id: String },
    #[error("cannot apply the channel registry")]
    Apply(#[from] PortalError),
}

/// Reads and checks the channels file.
pub fn read(path: &Path) -> Result<Vec<DeclaredChannel>, BootstrapError> {
    let text = std::fs::read_to_string(path).map_err(|source| BootstrapError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse(path, &text)
}

fn parse(path: &Path, text: &str) -> Result<Vec<DeclaredChannel>, BootstrapError> {
    let file: File = serde_json::from_str(text).map_err(|source| BootstrapError::Syntax {
        path: path.to_owned(),
        source,
    })?;
    let mut declared: Vec<DeclaredChannel> = Vec::with_capacity(file.channels.len());
    for (index, entry) in file.channels.into_iter().enumerate() {
        let invalid = |source| BootstrapError::Invalid {
            path: path.to_owned(),
            index,
            source,
        };
        let channel = DeclaredChannel {
            channel_id: ChannelId::parse("channel_id", entry.channel_id).map_err(invalid)?,
            name: DisplayName::parse("name", entry.name).map_err(invalid)?,
            endpoint: Endpoint::parse("endpoint", entry.endpoint).map_err(invalid)?,
            quota: match entry.quota {
                0 => None,
                quota => Some(Points::parse("quota", quota).map_err(invalid)?),
            },
            kind: entry.kind,
        };
        if declared.iter().any(|c| c.channel_id == channel.channel_id) {
            return Err(BootstrapError::Repeated {
                path: path.to_owned(),
                channel_id: channel.channel_id.to_string(),
            });
        }
        declared.push(channel);
    }
    Ok(declared)
}

/// Registers every declared channel (or updates its name and endpoint) and grants what its
/// total lacks of the declared quota.
pub async fn apply(quotas: &QuotaBook, channels: &[DeclaredChannel]) -> Result<(), BootstrapError> {
    for channel in channels {
        let record = quotas
            .register(
                &channel.channel_id,
                &channel.name,
                &channel.endpoint,
                channel.kind,
            )
            .await?;
        let Some(floor) = channel.quota else {
            continue;
        };
        let Some(missing) = floor
            .get()
            .checked_sub(record.total)
            .filter(|missing| *missing > 0)
        else {
            continue;
        };
        let request_id = RequestId::parse(
            "request_id",
            format!("config-{}-{}", channel.channel_id, floor.get()),
        )
        .map_err(PortalError::from)?;
        let points = Points::parse("quota", missing).map_err(PortalError::from)?;
        match quotas.grant(&request_id, &channel.channel_id, points).await {
            Ok(record) => {
                tracing::info!(channel_id = %channel.channel_id, granted = missing, total = record.total, "quota granted from the configuration")
            }
            // Another replica granted it first, from another reading of the total.
            Err(PortalError::Conflict(_)) => {}
            Err(error) => return Err(error.into()),
        }
    }
    tracing::info!(
        channels = channels.len(),
        "channel registry applied from the configuration"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_is_parsed_and_bad_entries_are_named() {
        let path = Path::new("channels.json");
        let good = parse(
            path,
            r#"{"channels": [{"channel_id": "alpha", "name": "Alpha", "endpoint": "http://a:1", "quota": 100},
                             {"channel_id": "beta", "name": "Beta", "endpoint": "http://b:1"}]}"#,
        )
        .unwrap();
        assert_eq!(good.len(), 2);
        assert_eq!(good[0].quota.map(Points::get), Some(100));
        assert_eq!(good[1].quota, None);
        let bad_id = parse(
            path,
            r#"{"channels": [{"channel_id": "a b", "name": "A", "endpoint": "http://a:1"}]}"#,
        )
        .unwrap_err();
        assert!(
            matches!(bad_id, BootstrapError::Invalid { index: 0, .. }),
            "{bad_id}"
        );
        let twice = parse(
            path,
            r#"{"channels": [{"channel_id": "a", "name": "A", "endpoint": "http://a:1"},
                             {"channel_id": "a", "name": "A", "endpoint": "http://a:2"}]}"#,
        )
        .unwrap_err();
        assert!(matches!(twice, BootstrapError::Repeated { .. }), "{twice}");
        let unknown = parse(path, r#"{"channels": [], "extra": 1}"#).unwrap_err();
        assert!(
            matches!(unknown, BootstrapError::Syntax { .. }),
            "{unknown}"
        );
    }
}
