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
        let api = PointsApi::new(API_KEY);
        for user in users {
            api.credit_direct(user, points);
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a free port");
        let base_url = format!("http://{}", listener.local_addr().expect("an address"));
        let shutdown = CancellationToken::new();
        tokio::spawn(api.clone().serve(listener, shutdown.clone()));
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

impl Drop for TestPointsApi {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
