//! A nats-server per test with JetStream: a child process on a free port with a temp store,
//! or, with `JIFEN_TEST_CONTAINERS=1`, a NATS container.

use jifen_mesh::nats_server::{NatsServer, NatsServerConfig};
use tempfile::TempDir;

#[derive(Debug)]
pub struct TestNats {
    backing: Backing,
    url: String,
}

// One per test: the size of its variants does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum Backing {
    // The server is declared first so it is killed before its folder goes.
    Child(NatsServer, #[allow(dead_code)] TempDir),
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
            };
        }
        crate::database::refuse_containers_without_feature();
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
        let url = server.url();
        Self {
            backing: Backing::Child(server, dir),
            url,
        }
    }

    pub fn url(&self) -> String {
        self.url.clone()
    }

    pub async fn connect(&self) -> async_nats::Client {
        jifen_mesh::bus::connect(&self.url)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to the test nats-server: {e}"))
    }

    /// Kills the server (SIGKILL; a stop for a container), as a crash would.
    pub async fn kill(&mut self) {
        match &mut self.backing {
            Backing::Child(server, _) => server.kill().await,
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
            #[cfg(feature = "containers")]
            Backing::Container(container) => {
                self.url = crate::containers::restart_nats(container).await;
            }
        }
    }
}
