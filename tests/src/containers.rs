//! The testcontainers path, for machines with Docker and without local services: with
//! `JIFEN_TEST_CONTAINERS=1` (and the crate feature `containers`), each test database lives in
//! a PostgreSQL container and each test nats-server in a NATS container.

use std::time::Duration;

use testcontainers::core::{IntoContainerPort, WaitFor};
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, GenericImage, ImageExt};

/// The environment variable that selects containers.
pub const CONTAINERS_VAR: &str = "JIFEN_TEST_CONTAINERS";

pub fn enabled() -> bool {
    std::env::var(CONTAINERS_VAR).is_ok_and(|v| v == "1")
}

/// A PostgreSQL container; its admin url names the `postgres` database.
pub async fn postgres() -> (ContainerAsync<GenericImage>, String) {
    let container = GenericImage::new("postgres", "16-alpine")
        .with_exposed_port(5432.tcp())
        .with_wait_for(WaitFor::message_on_stderr(
            "database system is ready to accept connections",
        ))
        .with_env_var("POSTGRES_HOST_AUTH_METHOD", "trust")
        .start()
        .await
        .unwrap_or_else(|e| panic!("cannot start a PostgreSQL container: {e}"));
    let host = container.get_host().await.expect("the container's host");
    let port = container
        .get_host_port_ipv4(5432)
        .await
        .expect("the container's port");
    let url = format!("postgres://postgres@{host}:{port}/postgres");
    // The image restarts the server once after initdb: wait until it answers for good.
    crate::eventually(
        "PostgreSQL in its container",
        Duration::from_secs(30),
        || {
            let url = url.clone();
            async move {
                use sqlx::Connection;
                sqlx::postgres::PgConnection::connect(&url)
                    .await
                    .ok()
                    .map(|_| ())
            }
        },
    )
    .await;
    (container, url)
}

/// A NATS container with JetStream; returns it and its client url.
pub async fn nats() -> (ContainerAsync<GenericImage>, String) {
    let container = GenericImage::new("nats", "2.11-alpine")
        .with_exposed_port(4222.tcp())
        .with_wait_for(WaitFor::message_on_stderr("Server is ready"))
        .with_cmd(["-js", "-sd", "/data"])
        .start()
        .await
        .unwrap_or_else(|e| panic!("cannot start a NATS container: {e}"));
    let url = nats_url(&container).await;
    (container, url)
}

pub async fn nats_url(container: &ContainerAsync<GenericImage>) -> String {
    let host = container.get_host().await.expect("the container's host");
    let port = container
        .get_host_port_ipv4(4222)
        .await
        .expect("the container's port");
    format!("nats://{host}:{port}")
}

/// Kills (stops) the NATS container and starts it again on the same store; the host port may
/// change, so the new url is returned.
pub async fn restart_nats(container: &ContainerAsync<GenericImage>) -> String {
    container.stop().await.expect("the NATS container stops");
    container
        .start()
        .await
        .expect("the NATS container starts again");
    let url = nats_url(container).await;
    crate::eventually("NATS after its restart", Duration::from_secs(30), || {
        let url = url.clone();
        async move { async_nats::connect(&url).await.ok().map(|_| ()) }
    })
    .await;
    url
}
