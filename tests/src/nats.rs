//! A `nats-server` child per test, with JetStream on a free port and a temp store.

use jifen_mesh::nats_server::{NatsServer, NatsServerConfig};
use tempfile::TempDir;

#[derive(Debug)]
pub struct TestNats {
    server: NatsServer,
    // Dropped after the server, which is killed when dropped.
    _dir: TempDir,
}

impl TestNats {
    pub async fn start() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("jifen-nats-")
            .tempdir()
            .expect("a temp folder");
        let server = NatsServer::start(NatsServerConfig {
            binary: None,
            port: None,
            dir: dir.path().to_owned(),
        })
        .await
        .unwrap_or_else(|e| panic!("cannot start nats-server: {e}"));
        Self { server, _dir: dir }
    }

    pub fn url(&self) -> String {
        self.server.url()
    }

    pub async fn connect(&self) -> async_nats::Client {
        jifen_mesh::bus::connect(&self.url())
            .await
            .unwrap_or_else(|e| panic!("cannot connect to the test nats-server: {e}"))
    }

    pub fn server(&mut self) -> &mut NatsServer {
        &mut self.server
    }
}
