//! A nats-server per test with JetStream: a child process on a free port with a temp store,
//! or, with `JIFEN_TEST_CONTAINERS=1`, a NATS container.

use jifen_mesh::bus::identity::Identity;
use jifen_mesh::bus::nats_auth::NatsAuth;
use jifen_mesh::config::BusArgs;
use jifen_mesh::domain::ChannelId;
use jifen_mesh::nats_server::{ClusterNode, NatsServer, NatsServerConfig};
use tempfile::TempDir;

#[derive(Debug)]
pub struct TestNats {
    backing: Backing,
    url: String,
    /// The identities, when the server requires them ([`TestNats::start_secured`]).
    auth: Option<NatsAuth>,
    /// The CA and a client certificate, when the server requires TLS.
    tls: Option<(std::path::PathBuf, crate::pki::Issued)>,
}

// One per test: the size of its variants does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum Backing {
    // The server is declared first so it is killed before its folder goes.
    Child(NatsServer, #[allow(dead_code)] TempDir),
    /// A 3-node cluster on loopback, each node with its folder.
    Cluster(Vec<(NatsServer, TempDir)>),
    #[cfg(feature = "containers")]
    Container(Box<testcontainers::ContainerAsync<testcontainers::GenericImage>>),
}

impl TestNats {
    pub async fn start() -> Self {
        #[cfg(feature = "containers")]
        if crate::containers::enabled() {
            let (container, url) = crate::containers::nats().await;
            return Self {
                backing: Backing::Container(Box::new(container)),
                url,
                auth: None,
                tls: None,
            };
        }
        Self::start_child(None, None).await
    }

    /// A server that requires an identity (DESIGN §11): one NKEY user per Jifen process, for
    /// the mall, the portal, `channels` and `ops`, with their permissions.
    pub async fn start_secured(channels: &[&str]) -> Self {
        Self::start_child(Some(channels), None).await
    }

    /// [`start_secured`](Self::start_secured), and TLS: clients must present a certificate of
    /// `pki`'s CA, as the `prod` overlay's server asks.
    pub async fn start_secured_tls(channels: &[&str], pki: &crate::pki::TestPki) -> Self {
        Self::start_child(Some(channels), Some(pki)).await
    }

    async fn start_child(secured: Option<&[&str]>, pki: Option<&crate::pki::TestPki>) -> Self {
        crate::database::refuse_containers_without_feature();
        let dir = tempfile::Builder::new()
            .prefix("jifen-nats-")
            .tempdir()
            .expect("a temp folder");
        let auth = secured.map(|channels| {
            let channels: Vec<ChannelId> = channels
                .iter()
                .map(|c| ChannelId::parse("channel", *c).expect("a channel id"))
                .collect();
            NatsAuth::write(&dir.path().join("auth"), &channels).expect("the NATS identities")
        });
        let server = NatsServer::start(NatsServerConfig {
            binary: None,
            port: None,
            dir: dir.path().join("server"),
            cluster: None,
            authorization: auth.as_ref().map(NatsAuth::auth_conf),
            tls: pki.map(|pki| {
                let server = pki.issue("nats-server", false);
                jifen_mesh::nats_server::NatsServerTls {
                    cert: server.cert,
                    key: server.key,
                    ca: pki.ca_file.clone(),
                }
            }),
        })
        .await
        .unwrap_or_else(|e| panic!("cannot start nats-server: {e}"));
        let url = server.url();
        Self {
            backing: Backing::Child(server, dir),
            url,
            auth,
            tls: pki.map(|pki| (pki.ca_file.clone(), pki.issue("nats-client", false))),
        }
    }

    /// How `identity` reaches this server: with its seed when the server is secured.
    pub fn bus_for(&self, identity: &Identity) -> BusArgs {
        let mut bus = match &self.auth {
            Some(auth) => BusArgs::with_nkey(self.url(), self.replicas(), auth.seed_file(identity)),
            None => BusArgs::anonymous(self.url(), self.replicas()),
        };
        if let Some((ca, client)) = &self.tls {
            bus.auth.nats_tls_ca = Some(ca.clone());
            bus.auth.nats_tls_cert = Some(client.cert.clone());
            bus.auth.nats_tls_key = Some(client.key.clone());
        }
        bus
    }

    /// Gives channel `channel_id` an identity too, as `jifen nats-config` run again with one
    /// more channel does (the other seeds kept), and reloads the server — no restart. Nothing
    /// to do on a server without identities, or for a channel that has one.
    pub async fn add_channel_identity(&mut self, channel_id: &str) {
        let Some(auth) = self.auth.as_ref() else {
            return;
        };
        let wanted = Identity::channel(channel_id).expect("a channel id");
        if auth.identities().any(|identity| *identity == wanted) {
            return;
        }
        let mut channels: Vec<ChannelId> = auth
            .identities()
            .filter_map(|identity| match identity {
                Identity::Channel(id) => Some(id.clone()),
                _ => None,
            })
            .collect();
        channels.push(ChannelId::parse("channel", channel_id).expect("a channel id"));
        let dir = auth
            .auth_conf()
            .parent()
            .expect("the identities' folder")
            .to_owned();
        self.auth = Some(NatsAuth::write(&dir, &channels).expect("the NATS identities"));
        if let Backing::Child(server, _) = &self.backing {
            server
                .reload()
                .await
                .unwrap_or_else(|e| panic!("cannot reload nats-server: {e}"));
        }
        // The signal returns before the server has read its configuration again.
        crate::eventually(
            &format!("nats-server to know {}", wanted.name()),
            std::time::Duration::from_secs(10),
            || async { self.connect_as(&wanted).await.ok() },
        )
        .await;
    }

    /// A client connected as `identity` (see [`bus_for`](Self::bus_for)).
    pub async fn connect_as(
        &self,
        identity: &Identity,
    ) -> Result<async_nats::Client, jifen_mesh::bus::BusError> {
        jifen_mesh::bus::connect_as(&self.bus_for(identity), &identity.name()).await
    }

    /// A 3-node JetStream cluster on loopback (routes between the nodes), ready for R3
    /// streams: it returns once the cluster has elected its JetStream meta leader.
    pub async fn start_cluster() -> Self {
        crate::database::refuse_containers_without_feature();
        let ports = free_ports(6);
        let (client_ports, route_ports) = ports.split_at(3);
        let mut nodes = Vec::new();
        for (i, client_port) in client_ports.iter().enumerate() {
            let dir = tempfile::Builder::new()
                .prefix("jifen-nats-cluster-")
                .tempdir()
                .expect("a temp folder");
            let server = NatsServer::start(NatsServerConfig {
                binary: None,
                port: Some(*client_port),
                dir: dir.path().to_owned(),
                cluster: Some(ClusterNode {
                    cluster_name: "jifen-test".into(),
                    server_name: node_name(i),
                    route_port: route_ports[i],
                    route_ports: route_ports.to_vec(),
                }),
                authorization: None,
                tls: None,
            })
            .await
            .unwrap_or_else(|e| panic!("cannot start nats-server node {i}: {e}"));
            nodes.push((server, dir));
        }
        let url = nodes
            .iter()
            .map(|(server, _)| server.url())
            .collect::<Vec<_>>()
            .join(",");
        let cluster = Self {
            backing: Backing::Cluster(nodes),
            url,
            auth: None,
            tls: None,
        };
        // Ready when it takes R3 streams: a meta leader is elected and every node is in.
        let js = async_nats::jetstream::new(cluster.connect().await);
        let topology = jifen_mesh::bus::topology::Topology {
            replicas: 3,
            ..Default::default()
        };
        crate::eventually(
            "the cluster to take R3 streams",
            std::time::Duration::from_secs(60),
            || {
                let (js, topology) = (js.clone(), topology.clone());
                async move { topology.ensure(&js).await.ok() }
            },
        )
        .await;
        cluster
    }

    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// The stream replicas this server (or cluster) takes.
    pub fn replicas(&self) -> usize {
        match &self.backing {
            Backing::Cluster(nodes) => nodes.len(),
            _ => 1,
        }
    }

    /// The cluster node named `server_name` (a stream's leader, say).
    pub fn node_index(&self, server_name: &str) -> Option<usize> {
        match &self.backing {
            Backing::Cluster(nodes) => (0..nodes.len()).find(|i| node_name(*i) == server_name),
            _ => None,
        }
    }

    /// Kills one node of a cluster (SIGKILL).
    pub async fn kill_node(&mut self, index: usize) {
        if let Backing::Cluster(nodes) = &mut self.backing {
            nodes[index].0.kill().await;
        }
    }

    /// Starts a killed node of a cluster again on its store.
    pub async fn restart_node(&mut self, index: usize) {
        if let Backing::Cluster(nodes) = &mut self.backing {
            nodes[index]
                .0
                .restart()
                .await
                .unwrap_or_else(|e| panic!("cannot restart node {index}: {e}"));
        }
    }

    /// A client with every permission (`ops` on a secured server).
    pub async fn connect(&self) -> async_nats::Client {
        self.connect_as(&Identity::Ops)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to the test nats-server: {e}"))
    }

    /// Kills the server (SIGKILL; a stop for a container), as a crash would.
    pub async fn kill(&mut self) {
        match &mut self.backing {
            Backing::Child(server, _) => server.kill().await,
            Backing::Cluster(nodes) => {
                for (server, _) in nodes {
                    server.kill().await;
                }
            }
            #[cfg(feature = "containers")]
            Backing::Container(container) => {
                let _ = container.stop().await;
            }
        }
    }

    /// Kills the server if it runs and starts it again on the same store, as after a crash.
    pub async fn restart(&mut self) {
        match &mut self.backing {
            Backing::Child(server, _) => {
                server
                    .restart()
                    .await
                    .unwrap_or_else(|e| panic!("cannot restart nats-server: {e}"));
            }
            Backing::Cluster(nodes) => {
                for (server, _) in nodes {
                    server
                        .restart()
                        .await
                        .unwrap_or_else(|e| panic!("cannot restart nats-server: {e}"));
                }
            }
            #[cfg(feature = "containers")]
            Backing::Container(container) => {
                self.url = crate::containers::restart_nats(container).await;
            }
        }
    }
}

fn node_name(index: usize) -> String {
    format!("n{index}")
}

/// `count` ports free on loopback right now (bound, noted, released).
fn free_ports(count: usize) -> Vec<u16> {
    let listeners: Vec<std::net::TcpListener> = (0..count)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("a free port"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("an address").port())
        .collect()
}

/// What the server says of a stream now (configuration, state, cluster and leader).
pub async fn stream_info(
    js: &async_nats::jetstream::Context,
    name: &str,
) -> async_nats::jetstream::stream::Info {
    js.get_stream(name)
        .await
        .unwrap_or_else(|e| panic!("stream {name}: {e}"))
        .info()
        .await
        .unwrap_or_else(|e| panic!("info of stream {name}: {e}"))
        .clone()
}
