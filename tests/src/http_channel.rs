//! A third party's REST points API ([`PointsApi`]) on a free port, and adapter configs for it:
//! the repository's demo config (`deploy/local/delta-http.toml`) pointed at this server, with
//! the capabilities a test declares — so the tests drive the file a user copies.

use std::path::PathBuf;
use std::sync::Arc;

use jifen_channel::points_api::PointsApi;
use jifen_mesh::capabilities::Capabilities;
use tokio_util::sync::CancellationToken;

const DEMO_CONFIG: &str = include_str!("../../deploy/local/delta-http.toml");
pub const API_KEY: &str = "jifen-demo-key";

/// A test CA and a server certificate it signed for 127.0.0.1, as PEM files in `dir`.
#[derive(Debug)]
pub struct TestCa {
    /// The CA's certificate: what a client trusts (`tls.ca_file`).
    pub ca_file: PathBuf,
    server: rustls::ServerConfig,
}

impl TestCa {
    pub fn new(dir: &std::path::Path) -> Self {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
        let ca_key = KeyPair::generate().expect("a CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).expect("a CA certificate");
        let leaf_key = KeyPair::generate().expect("a server key");
        let leaf = CertificateParams::new(vec!["127.0.0.1".to_owned()])
            .expect("server params")
            .signed_by(&leaf_key, &ca, &ca_key)
            .expect("a server certificate");
        let ca_file = dir.join("ca.pem");
        std::fs::write(&ca_file, ca.pem()).expect("write the CA");
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into());
        let server = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(vec![leaf.der().clone()], key)
        .expect("a server config");
        Self { ca_file, server }
    }
}

/// A [`PointsApi`] serving on 127.0.0.1, stopped on drop.
#[derive(Debug)]
pub struct TestPointsApi {
    pub api: Arc<PointsApi>,
    pub base_url: String,
    shutdown: CancellationToken,
    dir: tempfile::TempDir,
}

impl TestPointsApi {
    /// Starts the API with `users` holding `points` each.
    pub async fn start(users: &[&str], points: i64) -> Self {
        let (api, listener, addr) = seeded(users, points).await;
        let base_url = format!("http://{addr}");
        let shutdown = CancellationToken::new();
        tokio::spawn(api.clone().serve(listener, shutdown.clone()));
        Self {
            api,
            base_url,
            shutdown,
            dir: tempfile::tempdir().expect("a temp folder"),
        }
    }

    /// Starts the API over HTTPS with a certificate of `ca` (`base_url` is `https://…`).
    pub async fn start_tls(users: &[&str], points: i64, ca: &TestCa) -> Self {
        let (api, listener, addr) = seeded(users, points).await;
        let base_url = format!("https://{addr}");
        let shutdown = CancellationToken::new();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(ca.server.clone()));
        let router = api.clone().router();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            loop {
                let (tcp, _) = tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok(accepted) => accepted,
                        Err(_) => continue,
                    },
                    () = stop.cancelled() => return,
                };
                let acceptor = acceptor.clone();
                let service = hyper_util::service::TowerToHyperService::new(router.clone());
                tokio::spawn(async move {
                    // A client that refuses the certificate ends here, as it should.
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        Self {
            api,
            base_url,
            shutdown,
            dir: tempfile::tempdir().expect("a temp folder"),
        }
    }

    /// The demo config as text, for `channel_id` at this server, declaring `capabilities`
    /// (without the calls the channel lacks) and with `timeout`.
    pub fn config_text(
        &self,
        channel_id: &str,
        capabilities: Capabilities,
        timeout: &str,
    ) -> String {
        let mut out = String::new();
        let mut section = String::new();
        for line in DEMO_CONFIG.lines() {
            if line.starts_with('[') {
                section = line.trim_matches(|c| c == '[' || c == ']').to_owned();
            }
            let dropped = (section == "refund" && !capabilities.refund)
                || (section == "query" && !capabilities.query);
            if dropped || (section == "capabilities" && !line.starts_with('[')) {
                continue;
            }
            let line = if line.starts_with("channel_id =") {
                format!("channel_id = \"{channel_id}\"")
            } else if line.starts_with("base_url =") {
                format!("base_url = \"{}\"", self.base_url)
            } else if line.starts_with("timeout =") {
                format!("timeout = \"{timeout}\"")
            } else {
                line.to_owned()
            };
            out.push_str(&line);
            out.push('\n');
            if line == "[capabilities]" {
                out.push_str(
                    capabilities
                        .toml_block()
                        .trim_start_matches("[capabilities]\n"),
                );
            }
        }
        out
    }

    /// [`config_text`](Self::config_text) written to a file.
    pub fn config(&self, channel_id: &str, capabilities: Capabilities, timeout: &str) -> PathBuf {
        let path = self.dir.path().join(format!("{channel_id}.toml"));
        std::fs::write(&path, self.config_text(channel_id, capabilities, timeout))
            .expect("write the adapter config");
        path
    }

    /// Makes the API itself guarantee what `capabilities` says.
    pub fn guarantee(&self, capabilities: Capabilities) {
        use std::sync::atomic::Ordering::Relaxed;
        let g = &self.api.guarantees;
        g.idempotent_deduct
            .store(capabilities.idempotent_deduct, Relaxed);
        g.refund.store(capabilities.refund, Relaxed);
        g.query.store(capabilities.query, Relaxed);
        g.null_compensation
            .store(capabilities.null_compensation, Relaxed);
        g.anti_hanging.store(capabilities.anti_hanging, Relaxed);
    }
}

/// The API with `users` holding `points` each, and a listener on a free port for it.
async fn seeded(
    users: &[&str],
    points: i64,
) -> (
    Arc<PointsApi>,
    tokio::net::TcpListener,
    std::net::SocketAddr,
) {
    let api = PointsApi::new(API_KEY);
    for user in users {
        api.credit_direct(user, points);
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a free port");
    let addr = listener.local_addr().expect("an address");
    (api, listener, addr)
}

impl Drop for TestPointsApi {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
