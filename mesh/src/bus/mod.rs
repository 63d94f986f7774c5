//! NATS JetStream with RocketMQ's semantics (DESIGN §5): [`subjects`] names everything,
//! [`topology`] creates the streams, [`publish`] stores messages with their headers, and
//! [`consume`] runs durable consumer groups with back-off, max deliveries and poison handling.
//!
//! Jifen refuses servers older than 2.11 at connect, with a clear error, because they silently
//! ignore features it relies on (`filter_subjects`, `+TERM <reason>`).

pub mod consume;
pub mod dead_letter;
pub mod identity;
pub mod listen;
pub mod nats_auth;
pub mod publish;
pub mod subjects;
pub mod topology;

use crate::nats_server::{MIN_VERSION, parse_version};

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("cannot connect to NATS at {url}")]
    Connect {
        url: String,
        #[source]
        source: async_nats::ConnectError,
    },
    #[error("bad NATS url {url:?}")]
    BadUrl {
        url: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read the NATS credentials in {path}")]
    Credentials {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the NATS .creds file cannot be read as credentials")]
    BadCredentials {
        #[source]
        source: std::io::Error,
    },
    #[error("no NATS url given")]
    NoServers,
    #[error("NATS at {url} runs nats-server {found}; Jifen needs >= {}.{}", MIN_VERSION.0, MIN_VERSION.1)]
    ServerTooOld { url: String, found: String },
    #[error("cannot create or update stream {stream}: {reason}")]
    Stream { stream: String, reason: String },
    #[error("cannot create consumer {consumer}: {reason}")]
    Consumer { consumer: String, reason: String },
    #[error("cannot publish to {subject}: {source}")]
    Publish {
        subject: String,
        #[source]
        source: async_nats::jetstream::context::PublishError,
    },
    #[error("no ack for {subject} within {deadline:?}")]
    AckDeadline {
        subject: String,
        deadline: std::time::Duration,
    },
    #[error("not sent: an earlier message of the batch failed")]
    NotSent,
}

/// The seed servers of a comma-separated list (`nats://a:4222,nats://b:4222`).
pub fn seed_servers(urls: &str) -> Result<Vec<async_nats::ServerAddr>, BusError> {
    let servers = urls
        .split(',')
        .map(str::trim)
        .filter(|url| !url.is_empty())
        .map(|url| {
            url.parse::<async_nats::ServerAddr>()
                .map_err(|source| BusError::BadUrl {
                    url: url.to_owned(),
                    source,
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if servers.is_empty() {
        return Err(BusError::NoServers);
    }
    Ok(servers)
}

/// Connects without credentials (a server with no authorization, as in most tests). See
/// [`connect_as`].
pub async fn connect(urls: &str) -> Result<async_nats::Client, BusError> {
    connect_with(urls, &Credentials::default(), "jifen").await
}

/// Connects as `identity` with the credentials and TLS settings of `bus`. The identity names
/// the connection (`jifen-<identity>` in the server's monitoring) and its reply inboxes
/// (`_INBOX.<identity>.…`), so that the server can let each identity read its own replies and
/// nobody else's (DESIGN §11).
pub async fn connect_as(
    bus: &crate::config::BusArgs,
    identity: &str,
) -> Result<async_nats::Client, BusError> {
    let credentials = Credentials::read(&bus.auth)?;
    connect_with(&bus.nats_url, &credentials, identity).await
}

/// Creates the streams that are missing, as the mall (whose identity may) — for a process
/// that starts connectors before the mall, as `jifen dev` does.
pub async fn create_streams(bus: &crate::config::BusArgs) -> Result<(), BusError> {
    let client = connect_as(bus, &identity::Identity::Mall.name()).await?;
    bus.topology()
        .ensure(&async_nats::jetstream::new(client.clone()))
        .await?;
    if let Err(error) = client.drain().await {
        tracing::debug!(%error, "NATS connection not drained");
    }
    Ok(())
}

/// Whether the server answered and TLS failed (no or a wrong client certificate, a server
/// certificate not of the CA): async-nats reports it as I/O, but trying again cannot help.
fn tls_refused(error: &async_nats::ConnectError) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(error);
    while let Some(current) = cause {
        if current.is::<rustls::Error>() {
            return true;
        }
        if let Some(io) = current.downcast_ref::<std::io::Error>()
            && io
                .get_ref()
                .is_some_and(|inner| inner.is::<rustls::Error>())
        {
            return true;
        }
        cause = current.source();
    }
    false
}

/// What [`connect_as`] read from the credential files, once.
#[derive(Default)]
struct Credentials {
    creds: Option<String>,
    nkey_seed: Option<String>,
    user_password: Option<(String, String)>,
    tls_ca: Option<std::path::PathBuf>,
    tls_client: Option<(std::path::PathBuf, std::path::PathBuf)>,
}

impl Credentials {
    fn read(args: &crate::config::NatsAuthArgs) -> Result<Self, BusError> {
        let read = |path: &std::path::Path| {
            std::fs::read_to_string(path).map_err(|source| BusError::Credentials {
                path: path.to_owned(),
                source,
            })
        };
        let password = match (&args.nats_user, &args.nats_password_file) {
            (Some(user), Some(file)) => Some((
                user.clone(),
                read(file)?.trim_end_matches(['\r', '\n']).to_owned(),
            )),
            _ => None,
        };
        Ok(Self {
            creds: args.nats_creds.as_deref().map(read).transpose()?,
            nkey_seed: args
                .nats_nkey
                .as_deref()
                .map(read)
                .transpose()?
                .map(|seed| seed.trim().to_owned()),
            user_password: password,
            tls_ca: args.nats_tls_ca.clone(),
            tls_client: args.nats_tls_cert.clone().zip(args.nats_tls_key.clone()),
        })
    }

    fn options(&self, identity: &str) -> Result<async_nats::ConnectOptions, BusError> {
        let mut options = async_nats::ConnectOptions::new()
            .name(format!("jifen-{identity}"))
            .custom_inbox_prefix(format!("_INBOX.{identity}"));
        if let Some(creds) = &self.creds {
            options = options
                .credentials(creds)
                .map_err(|source| BusError::BadCredentials { source })?;
        } else if let Some(seed) = &self.nkey_seed {
            options = options.nkey(seed.clone());
        } else if let Some((user, password)) = &self.user_password {
            options = options.user_and_password(user.clone(), password.clone());
        }
        if let Some(ca) = &self.tls_ca {
            options = options.add_root_certificates(ca.clone()).require_tls(true);
        }
        if let Some((cert, key)) = &self.tls_client {
            options = options
                .add_client_certificate(cert.clone(), key.clone())
                .require_tls(true);
        }
        Ok(options)
    }
}

/// Connects to any of the seed servers in `urls` and checks the server version. While none
/// answers (a cluster still starting, a node down), it keeps trying with back-off — 250 ms
/// doubling to 5 s — and says so; a bad address, bad credentials or a server too old fail at
/// once.
/// Tries of an identity the server refuses before the refusal stands (≈ 5 s in all).
const AUTHORIZATION_TRIES: u32 = 5;

async fn connect_with(
    urls: &str,
    credentials: &Credentials,
    identity: &str,
) -> Result<async_nats::Client, BusError> {
    use async_nats::ConnectErrorKind;
    let servers = seed_servers(urls)?;
    let (mut attempts, mut refused) = (0_u32, 0_u32);
    let client = loop {
        match credentials
            .options(identity)?
            .connect(servers.clone())
            .await
        {
            Ok(client) => break client,
            Err(source)
                if matches!(
                    source.kind(),
                    ConnectErrorKind::Io | ConnectErrorKind::TimedOut | ConnectErrorKind::Dns
                ) && !tls_refused(&source) =>
            {
                attempts = attempts.saturating_add(1);
                let delay = crate::retry::doubling(
                    std::time::Duration::from_millis(250),
                    attempts,
                    std::time::Duration::from_secs(5),
                );
                tracing::warn!(url = urls, error = %source, attempts, ?delay, "NATS is not answering yet; retrying");
                tokio::time::sleep(delay).await;
            }
            // A server reloading its authorization (a channel's identity just added, one node
            // of a cluster after another) refuses for a moment: a few tries, then the refusal
            // is the answer (an identity the server does not know fails in seconds).
            Err(source)
                if source.kind() == ConnectErrorKind::AuthorizationViolation
                    && refused < AUTHORIZATION_TRIES =>
            {
                refused += 1;
                let delay = crate::retry::doubling(
                    std::time::Duration::from_millis(250),
                    refused,
                    std::time::Duration::from_secs(2),
                );
                tracing::warn!(
                    url = urls,
                    identity,
                    attempts = refused,
                    ?delay,
                    "NATS refused this identity; retrying in case its authorization is being reloaded"
                );
                tokio::time::sleep(delay).await;
            }
            Err(source) => {
                return Err(BusError::Connect {
                    url: urls.to_owned(),
                    source,
                });
            }
        }
    };
    if attempts > 0 {
        tracing::info!(url = urls, attempts, "connected to NATS");
    }
    let found = client.server_info().version;
    match parse_version(&found) {
        Some(version) if version >= MIN_VERSION => Ok(client),
        _ => Err(BusError::ServerTooOld {
            url: urls.to_owned(),
            found,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_servers_take_a_comma_separated_list() {
        assert_eq!(seed_servers("nats://a:4222").unwrap().len(), 1);
        assert_eq!(
            seed_servers("nats://a:4222, nats://b:4222,nats://c:4222")
                .unwrap()
                .len(),
            3
        );
        assert!(matches!(seed_servers(" , "), Err(BusError::NoServers)));
        assert!(matches!(
            seed_servers("nats://a:4222,nats://b:port"),
            Err(BusError::BadUrl { .. })
        ));
    }
}
