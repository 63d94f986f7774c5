//! `jifen dev`'s fault switches: each demo channel runs under a supervisor that stops its server
//! while `<data>/faults/<channel>.down` exists and its connector while `….paused` does, so an
//! outage can be staged by touching a file (docs/operations.md).

use std::path::PathBuf;
use std::time::Duration;

use jifen_channel::connector::ChannelConnectorConfig;
use jifen_channel::{ChannelApp, ChannelConfig};
use jifen_mesh::grpc::GrpcError;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Runs one demo channel and its connector, and honours the dev fault switches: while
/// `<data>/faults/<channel>.down` exists the channel's server is stopped (its port closed, as
/// in an outage); while `<data>/faults/<channel>.paused` exists its connector is stopped (its
/// commands wait on the bus).
pub async fn supervise_channel(
    first: ChannelApp,
    server_config: ChannelConfig,
    connector_config: ChannelConnectorConfig,
    faults: PathBuf,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let id = server_config.channel_id.clone();
    let down = faults.join(format!("{id}.down"));
    let paused = faults.join(format!("{id}.paused"));
    let mut first = Some(first);
    let mut server: Option<(CancellationToken, JoinHandle<Result<(), GrpcError>>)> = None;
    let mut connector: Option<(CancellationToken, JoinHandle<anyhow::Result<()>>)> = None;
    loop {
        if server.as_ref().is_some_and(|(_, h)| h.is_finished())
            || connector.as_ref().is_some_and(|(_, h)| h.is_finished())
        {
            break;
        }
        match (down.exists(), server.is_some()) {
            (false, false) => {
                let app = match first.take() {
                    Some(app) => app,
                    None => {
                        let app = ChannelApp::build(server_config.clone()).await?;
                        println!("channel {id} is up again");
                        app
                    }
                };
                let token = shutdown.child_token();
                server = Some((token.clone(), tokio::spawn(app.run_until(token))));
            }
            (true, true) => {
                if let Some((token, handle)) = server.take() {
                    token.cancel();
                    handle.await??;
                    println!(
                        "channel {id} is down (remove {} to bring it back)",
                        down.display()
                    );
                }
            }
            _ => {}
        }
        match (paused.exists(), connector.is_some()) {
            (false, false) => {
                let token = shutdown.child_token();
                let config = connector_config.clone();
                let child = token.clone();
                connector = Some((
                    token,
                    tokio::spawn(async move {
                        Ok(jifen_channel::connector::run_connector(config, child).await?)
                    }),
                ));
            }
            (true, true) => {
                if let Some((token, handle)) = connector.take() {
                    token.cancel();
                    handle.await??;
                    println!(
                        "connector of {id} is paused (remove {} to resume)",
                        paused.display()
                    );
                }
            }
            _ => {}
        }
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(Duration::from_millis(300)) => {}
        }
    }
    shutdown.cancel();
    if let Some((_, handle)) = server {
        handle.await??;
    }
    if let Some((_, handle)) = connector {
        handle.await??;
    }
    Ok(())
}
