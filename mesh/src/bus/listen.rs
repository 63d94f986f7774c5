//! Reading a core NATS subject for as long as a process runs (the connectors' health reports,
//! the mall replicas' order changes). Core NATS keeps nothing for a reader that was away, so
//! there is nothing to resume: the reader subscribes again when the connection comes back.

use std::time::Duration;

use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;

/// Calls `heard` with each message on `subject` until `shutdown`; subscribes again `retry`
/// after subscribing failed, and at once after the subscription ended.
pub async fn listen(
    client: &async_nats::Client,
    subject: &'static str,
    retry: Duration,
    shutdown: &CancellationToken,
    mut heard: impl FnMut(async_nats::Message),
) {
    loop {
        let mut messages = match client.subscribe(subject).await {
            Ok(subscriber) => subscriber,
            Err(error) => {
                tracing::warn!(%error, subject, "cannot subscribe yet");
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(retry) => continue,
                }
            }
        };
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                message = messages.next() => match message {
                    Some(message) => heard(message),
                    None => break,
                },
            }
        }
    }
}
