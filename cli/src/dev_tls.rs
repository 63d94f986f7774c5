//! `jifen dev --tls`: a local CA and one certificate for every service (127.0.0.1 and
//! localhost), made once into `<data>/tls` and kept, so that the mesh runs with mutual TLS on
//! every gRPC hop as the `prod` overlay does, and grpcurl can be pointed at the same files.

use std::path::Path;

use anyhow::Context;
use jifen_mesh::tls::{ClientTls, TlsArgs};
use jifen_mesh::tls_io::GrpcTarget;
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use tonic::transport::Channel;

/// How the dev mesh's gRPC hops are protected.
#[derive(Debug, Clone)]
pub struct DevTls {
    /// Every service's flags: its certificate, the CA for clients and for whom it calls.
    pub args: TlsArgs,
    client: Option<ClientTls>,
}

impl DevTls {
    /// Plain text on loopback.
    pub fn off() -> Self {
        Self {
            args: TlsArgs::default(),
            client: None,
        }
    }

    /// Mutual TLS with the certificates in `data_dir/tls`, made now when missing.
    pub fn prepare(data_dir: &Path) -> anyhow::Result<Self> {
        let dir = data_dir.join("tls");
        let (ca, cert, key) = (
            dir.join("ca.pem"),
            dir.join("service.pem"),
            dir.join("service.key"),
        );
        if !(ca.exists() && cert.exists() && key.exists()) {
            make(&dir, &ca, &cert, &key).with_context(|| {
                format!("cannot make the dev certificates in {}", dir.display())
            })?;
        }
        let args = TlsArgs {
            tls_cert: Some(cert),
            tls_key: Some(key),
            tls_client_ca: Some(ca.clone()),
            tls_ca: Some(ca),
            plain_health_listen: None,
        };
        let client = args.client()?;
        Ok(Self { args, client })
    }

    pub fn on(&self) -> bool {
        self.client.is_some()
    }

    /// The endpoint of a service at `addr`.
    pub fn endpoint(&self, addr: std::net::SocketAddr) -> String {
        let scheme = if self.on() { "https" } else { "http" };
        format!("{scheme}://{addr}")
    }

    /// A client channel to `endpoint`, connected now.
    pub async fn connect(&self, endpoint: &str) -> anyhow::Result<Channel> {
        GrpcTarget::new(endpoint, self.client.as_ref())?
            .connect()
            .await
            .with_context(|| format!("cannot reach {endpoint}"))
    }

    /// The NATS server's TLS: the service certificate, clients checked against the CA.
    pub fn nats_server(&self) -> Option<jifen_mesh::nats_server::NatsServerTls> {
        match (&self.args.tls_cert, &self.args.tls_key, &self.args.tls_ca) {
            (Some(cert), Some(key), Some(ca)) => Some(jifen_mesh::nats_server::NatsServerTls {
                cert: cert.clone(),
                key: key.clone(),
                ca: ca.clone(),
            }),
            _ => None,
        }
    }

    /// `bus` with TLS to NATS (the CA, and the certificate as the client's), when on.
    pub fn on_bus(&self, mut bus: jifen_mesh::config::BusArgs) -> jifen_mesh::config::BusArgs {
        if self.on() {
            bus.auth.nats_tls_ca = self.args.tls_ca.clone();
            bus.auth.nats_tls_cert = self.args.tls_cert.clone();
            bus.auth.nats_tls_key = self.args.tls_key.clone();
        }
        bus
    }

    /// grpcurl's flags: `-plaintext`, or the CA and the client certificate.
    pub fn grpcurl(&self) -> String {
        match (&self.args.tls_ca, &self.args.tls_cert, &self.args.tls_key) {
            (Some(ca), Some(cert), Some(key)) if self.on() => format!(
                "-cacert {} -cert {} -key {}",
                ca.display(),
                cert.display(),
                key.display()
            ),
            _ => "-plaintext".to_owned(),
        }
    }
}

fn make(dir: &Path, ca_file: &Path, cert_file: &Path, key_file: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Jifen dev CA");
    let ca = ca_params.self_signed(&ca_key)?;
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "jifen dev service");
    let cert = params.signed_by(&key, &ca, &ca_key)?;
    jifen_mesh::private_file::write(key_file, key.serialize_pem().as_bytes())?;
    std::fs::write(cert_file, cert.pem())?;
    std::fs::write(ca_file, ca.pem())?;
    Ok(())
}
