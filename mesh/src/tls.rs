//! TLS on every gRPC hop (DESIGN §11), with rustls: a server with `--tls-cert`/`--tls-key`
//! speaks TLS only, and with `--tls-client-ca` asks every client for a certificate signed by
//! that CA (mutual TLS); a client reaching an `https://` endpoint verifies it against
//! `--tls-ca` and presents its own `--tls-cert`/`--tls-key` when it has them.
//!
//! The files are read again when they change (Kubernetes rotates mounted Secrets by swapping a
//! symlink): whoever uses a configuration looks at the files' size and modification time at
//! most once a second and rebuilds it when they moved, so rotation needs no restart and no
//! task of its own. A file that no longer parses keeps the last good configuration, loudly.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The TLS flags every service shares.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TlsArgs {
    /// This service's certificate chain (PEM). With --tls-key its gRPC server speaks TLS only;
    /// it is also its client certificate where a server asks for one (mutual TLS).
    #[arg(long, env = "JIFEN_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, env = "JIFEN_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Require clients to present a certificate signed by this CA (PEM): mutual TLS.
    #[arg(long, env = "JIFEN_TLS_CLIENT_CA", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,
    /// The CA (PEM) that signs the services this one calls at `https://` endpoints.
    #[arg(long, env = "JIFEN_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// Also serve `grpc.health.v1` — and nothing else — in plain text here: kubelet's gRPC
    /// probes speak no TLS.
    #[arg(long, env = "JIFEN_PLAIN_HEALTH_LISTEN")]
    pub plain_health_listen: Option<std::net::SocketAddr>,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("{path} holds no {what}")]
    Empty { path: PathBuf, what: &'static str },
    #[error("TLS configuration: {0}")]
    Config(String),
    #[error("{endpoint} is https:// but no CA to check it against was given (--tls-ca)")]
    NoCa { endpoint: String },
}

impl TlsArgs {
    /// The server side, when a certificate is given.
    pub fn server(&self) -> Result<Option<ServerTls>, TlsError> {
        let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) else {
            return Ok(None);
        };
        let mut files = vec![cert.clone(), key.clone()];
        files.extend(self.tls_client_ca.clone());
        Reloading::new(files, server_config).map(|r| Some(Arc::new(r)))
    }

    /// The client side, when a CA to trust is given.
    pub fn client(&self) -> Result<Option<ClientTls>, TlsError> {
        let Some(ca) = &self.tls_ca else {
            return Ok(None);
        };
        let mut files = vec![ca.clone()];
        if let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) {
            files.push(cert.clone());
            files.push(key.clone());
        }
        Reloading::new(files, client_config).map(|r| Some(Arc::new(r)))
    }
}

/// A server's TLS configuration, re-read when its files change.
pub type ServerTls = Arc<Reloading<rustls::ServerConfig>>;
/// A client's TLS configuration, re-read when its files change.
pub type ClientTls = Arc<Reloading<rustls::ClientConfig>>;

/// How often the files are looked at, at most.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// A configuration built from files, rebuilt when they change.
pub struct Reloading<T> {
    files: Vec<PathBuf>,
    build: fn(&[PathBuf]) -> Result<T, TlsError>,
    state: Mutex<State<T>>,
}

struct State<T> {
    current: Arc<T>,
    stamps: Vec<Option<(SystemTime, u64)>>,
    checked: Instant,
}

impl<T> std::fmt::Debug for Reloading<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloading")
            .field("files", &self.files)
            .finish()
    }
}

impl<T> Reloading<T> {
    fn new(
        files: Vec<PathBuf>,
        build: fn(&[PathBuf]) -> Result<T, TlsError>,
    ) -> Result<Self, TlsError> {
        let stamps = stamps(&files);
        let current = Arc::new(build(&files)?);
        Ok(Self {
            files,
            build,
            state: Mutex::new(State {
                current,
                stamps,
                checked: Instant::now(),
            }),
        })
    }

    /// The configuration now: rebuilt first if the files changed since the last look.
    pub fn get(&self) -> Arc<T> {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if state.checked.elapsed() >= CHECK_EVERY {
            state.checked = Instant::now();
            let now = stamps(&self.files);
            if now != state.stamps {
                // Noted even when the build fails: the next change (the key written after the
                // certificate, say) tries again, an unchanged broken file does not every second.
                state.stamps = now;
                match (self.build)(&self.files) {
                    Ok(config) => {
                        tracing::info!(files = ?self.files, "TLS files changed: reloaded");
                        state.current = Arc::new(config);
                    }
                    Err(error) => {
                        tracing::error!(%error, "TLS files changed but cannot be used; keeping the previous ones");
                    }
                }
            }
        }
        state.current.clone()
    }
}

fn stamps(files: &[PathBuf]) -> Vec<Option<(SystemTime, u64)>> {
    files
        .iter()
        .map(|path| {
            let meta = std::fs::metadata(path).ok()?;
            Some((meta.modified().ok()?, meta.len()))
        })
        .collect()
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let file_error = |e: &dyn std::fmt::Display| TlsError::File {
        path: path.to_owned(),
        reason: e.to_string(),
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_error(&e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(&e))?;
    if certs.is_empty() {
        return Err(TlsError::Empty {
            path: path.to_owned(),
            what: "PEM certificate",
        });
    }
    Ok(certs)
}

fn key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| TlsError::File {
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

fn roots(path: &Path) -> Result<rustls::RootCertStore, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in certs(path)? {
        roots
            .add(cert)
            .map_err(|e| TlsError::Config(format!("{}: {e}", path.display())))?;
    }
    Ok(roots)
}

fn config_error(e: impl std::fmt::Display) -> TlsError {
    TlsError::Config(e.to_string())
}

/// `files`: certificate, key, and the client CA when clients must present a certificate.
fn server_config(files: &[PathBuf]) -> Result<rustls::ServerConfig, TlsError> {
    let (cert, key_file, client_ca) = match files {
        [cert, key, rest @ ..] => (cert, key, rest.first()),
        _ => {
            return Err(TlsError::Config(
                "a server needs a certificate and a key".into(),
            ));
        }
    };
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(config_error)?;
    let builder = match client_ca {
        Some(ca) => {
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots(ca)?),
                provider(),
            )
            .build()
            .map_err(config_error)?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(certs(cert)?, key(key_file)?)
        .map_err(|e| {
            TlsError::Config(format!(
                "{} and {}: {e}",
                cert.display(),
                key_file.display()
            ))
        })?;
    // gRPC is HTTP/2, which clients (grpcurl, grpc-go) insist on agreeing through ALPN.
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// `files`: the CA, then the client certificate and key when there are.
fn client_config(files: &[PathBuf]) -> Result<rustls::ClientConfig, TlsError> {
    let (ca, identity) = match files {
        [ca] => (ca, None),
        [ca, cert, key] => (ca, Some((cert, key))),
        _ => return Err(TlsError::Config("a client needs a CA".into())),
    };
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(config_error)?
        .with_root_certificates(roots(ca)?);
    let mut config = match identity {
        Some((cert, key_file)) => builder
            .with_client_auth_cert(certs(cert)?, key(key_file)?)
            .map_err(config_error)?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}
