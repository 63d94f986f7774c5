//! A test CA that issues certificates for the gRPC hops' TLS (PEM files in a folder), as
//! cert-manager would into a Secret: a server's (for 127.0.0.1 and localhost), a client's,
//! expired ones, and new ones over old files to stage a rotation.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, Certificate, CertificateParams, IsCa, KeyPair};

/// A CA and the folder its files go to.
pub struct TestPki {
    dir: tempfile::TempDir,
    ca: Certificate,
    ca_key: KeyPair,
    /// The CA's certificate: what clients (`--tls-ca`) and servers (`--tls-client-ca`) trust.
    pub ca_file: PathBuf,
}

impl std::fmt::Debug for TestPki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestPki")
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

/// A certificate and its key, as files.
#[derive(Debug, Clone)]
pub struct Issued {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TestPki {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("a temp folder");
        let key = KeyPair::generate().expect("a CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = params.self_signed(&key).expect("a CA certificate");
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, ca.pem()).expect("write the CA");
        Self {
            ca,
            ca_key: key,
            ca_file,
            dir,
        }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A certificate for 127.0.0.1 and localhost, written to `<name>.pem` and `<name>.key`
    /// (replacing what was there: a rotation); `expired` makes one that ended in 2020.
    pub fn issue(&self, name: &str, expired: bool) -> Issued {
        let key = KeyPair::generate().expect("a key");
        let mut params =
            CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
                .expect("params");
        if expired {
            params.not_before = rcgen::date_time_ymd(2019, 1, 1);
            params.not_after = rcgen::date_time_ymd(2020, 1, 1);
        }
        let cert = params
            .signed_by(&key, &self.ca, &self.ca_key)
            .expect("a certificate");
        let issued = Issued {
            cert: self.dir.path().join(format!("{name}.pem")),
            key: self.dir.path().join(format!("{name}.key")),
        };
        // Key first, then the certificate, each replaced whole, as a Secret update lands.
        replace(&issued.key, &key.serialize_pem());
        replace(&issued.cert, &cert.pem());
        issued
    }
}

impl Default for TestPki {
    fn default() -> Self {
        Self::new()
    }
}

fn replace(path: &Path, contents: &str) {
    let partial = path.with_extension("partial");
    std::fs::write(&partial, contents).expect("write a PEM file");
    std::fs::rename(&partial, path).expect("move a PEM file in place");
}
