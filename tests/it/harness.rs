//! The harness itself: a real nats-server with JetStream, and the database helpers.

use std::time::Duration;

use async_nats::jetstream::{self, stream};
use jifen_tests::database::with_database;
use jifen_tests::{TestDatabase, TestNats};

#[tokio::test]
async fn a_test_nats_server_runs_jetstream_and_keeps_file_streams_across_a_restart() {
    let mut nats = TestNats::start().await;
    let client = nats.connect().await;
    let js = jetstream::new(client);
    js.create_stream(stream::Config {
        name: "HARNESS".into(),
        subjects: vec!["harness.>".into()],
        storage: stream::StorageType::File,
        ..Default::default()
    })
    .await
    .unwrap();
    let ack = js
        .publish("harness.one", "payload".into())
        .await
        .unwrap()
        .await
        .unwrap();
    assert_eq!(ack.sequence, 1);

    nats.restart().await;
    let client = nats.connect().await;
    let js = jetstream::new(client);
    let mut stream = js.get_stream("HARNESS").await.unwrap();
    let info = stream.info().await.unwrap();
    assert_eq!(info.state.messages, 1);
    let message = stream.get_raw_message(1).await.unwrap();
    assert_eq!(message.payload.as_ref(), b"payload");
}

#[tokio::test]
async fn the_test_nats_server_is_recent_enough() {
    let nats = TestNats::start().await;
    let client = nats.connect().await;
    let version = jifen_mesh::nats_server::parse_version(&client.server_info().version).unwrap();
    assert!(
        version >= jifen_mesh::nats_server::MIN_VERSION,
        "{version:?}"
    );
    client.flush().await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), client.drain())
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn each_test_database_is_fresh_and_migrations_can_run_twice() {
    let db = TestDatabase::create("portal").await;
    let first = jifen_mesh::storage::Database::open(db.url(), &jifen_portal::app::MIGRATIONS)
        .await
        .unwrap();
    let again = jifen_mesh::storage::Database::open(db.url(), &jifen_portal::app::MIGRATIONS)
        .await
        .unwrap();
    let quotas = jifen_portal::quota::QuotaBook::new(again);
    assert!(quotas.channels().await.unwrap().is_empty());
    first.close().await;
    let other = TestDatabase::create("portal").await;
    assert_ne!(db.url(), other.url());
}

#[tokio::test]
async fn an_unsupported_database_url_is_refused_with_a_clear_error() {
    let error = jifen_mesh::storage::Database::open(
        "mysql://root@127.0.0.1/test",
        &jifen_portal::app::MIGRATIONS,
    )
    .await
    .unwrap_err();
    assert!(
        error.to_string().contains("sqlite: or postgres:"),
        "{error}"
    );
}

#[test]
fn the_postgres_database_name_is_replaced_in_the_url() {
    assert_eq!(
        with_database("postgres://postgres@127.0.0.1:5432/test", "x"),
        "postgres://postgres@127.0.0.1:5432/x"
    );
    assert_eq!(
        with_database("postgres://u:p@h/db?sslmode=disable", "x"),
        "postgres://u:p@h/x?sslmode=disable"
    );
    assert_eq!(
        with_database("postgres://h:5432", "x"),
        "postgres://h:5432/x"
    );
}
