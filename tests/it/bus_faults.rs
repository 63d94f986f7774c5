//! The bus under operators and failures: consumers deleted under running processes, streams
//! that must keep their settings, several seed servers.

use std::time::Duration;

use async_nats::jetstream;
use jifen_proto::v1::OrderState;
use jifen_tests::TestMesh;
use jifen_tests::invariants::assert_mesh_consistent;

fn fetch_failures(consumer: &str) -> u64 {
    jifen_mesh::metrics::FETCH_FAILURES
        .with_label_values(&[consumer])
        .get()
}

#[tokio::test]
async fn deleted_consumers_are_made_again_and_their_orders_settle_without_spinning() {
    let mut mesh = TestMesh::start(&["alpha"], &["u1"]).await;
    mesh.submit("before", &[("alpha", "u1", 10)]).await.unwrap();
    assert_eq!(mesh.settled("before").await.state(), OrderState::Completed);

    let js = jetstream::new(mesh.nats.connect().await);
    for (stream, consumer) in [("JIFEN_CMD", "channel-alpha"), ("JIFEN_EVT", "mall-saga")] {
        js.delete_consumer_from_stream(consumer, stream)
            .await
            .unwrap_or_else(|e| panic!("delete {consumer}: {e}"));
    }
    let deleted_at = std::time::Instant::now();
    mesh.submit("after", &[("alpha", "u1", 20)]).await.unwrap();
    assert_eq!(mesh.settled("after").await.state(), OrderState::Completed);
    let took = deleted_at.elapsed();
    assert!(
        took < Duration::from_secs(15),
        "settled {took:?} after the deletion"
    );
    for (stream, consumer) in [("JIFEN_CMD", "channel-alpha"), ("JIFEN_EVT", "mall-saga")] {
        js.get_consumer_from_stream::<jetstream::consumer::pull::Config, _, _>(consumer, stream)
            .await
            .unwrap_or_else(|e| panic!("{consumer} is back: {e}"));
        let failures = fetch_failures(consumer);
        // Each failure waits at least 250 ms, doubling: a spin would count thousands.
        assert!(
            (1..=20).contains(&failures),
            "{consumer}: {failures} failed fetches in {took:?}"
        );
    }
    // Quiet again: another order goes through with no failed fetch.
    let quiet = fetch_failures("mall-saga") + fetch_failures("channel-alpha");
    mesh.submit("later", &[("alpha", "u1", 30)]).await.unwrap();
    assert_eq!(mesh.settled("later").await.state(), OrderState::Completed);
    assert_eq!(
        fetch_failures("mall-saga") + fetch_failures("channel-alpha"),
        quiet
    );
    assert_mesh_consistent(&mesh).await;
}

#[tokio::test]
async fn a_batch_whose_acks_never_come_fails_once_after_one_deadline() {
    use jifen_mesh::bus::BusError;
    use jifen_mesh::bus::publish::{Outgoing, Publisher};
    let nats = jifen_tests::TestNats::start().await;
    let client = nats.connect().await;
    // A plain subscriber takes the messages and never answers: like a stream whose leader is
    // gone, the publishes wait for acks that do not come.
    let _silent = client.subscribe("silent.>").await.unwrap();
    let publisher = Publisher::new(jetstream::new(client));
    let messages: Vec<Outgoing> = (0..10)
        .map(|i| Outgoing {
            subject: format!("silent.{i}"),
            msg_id: format!("m-{i}"),
            order_id: format!("o-{i}"),
            traceparent: None,
            payload: bytes::Bytes::from_static(b"x"),
        })
        .collect();
    let deadline = Duration::from_secs(1);
    let started = std::time::Instant::now();
    let results = publisher.publish_all(&messages, deadline).await;
    let took = started.elapsed();
    assert_eq!(results.len(), 10);
    for result in &results {
        assert!(
            matches!(result, Err(BusError::AckDeadline { .. })),
            "{result:?}"
        );
    }
    // Waited for together: one deadline, not one per message.
    assert!(took < deadline * 3, "took {took:?}");
}

#[tokio::test]
async fn a_process_never_changes_the_settings_of_an_existing_stream() {
    use async_nats::jetstream::stream;
    let nats = jifen_tests::TestNats::start().await;
    let js = jetstream::new(nats.connect().await);
    // As an operator (or a process with other settings) left it: a longer duplicate window
    // and a limit on age that this process's configuration does not have.
    let tuned = stream::Config {
        name: "JIFEN_CMD".into(),
        subjects: vec!["jifen.cmd.>".into()],
        retention: stream::RetentionPolicy::WorkQueue,
        storage: stream::StorageType::File,
        duplicate_window: Duration::from_secs(600),
        max_age: Duration::from_secs(7 * 24 * 3600),
        ..Default::default()
    };
    js.create_stream(tuned.clone()).await.unwrap();
    jifen_mesh::bus::topology::Topology::default()
        .ensure(&js)
        .await
        .unwrap();
    let after = jifen_tests::nats::stream_info(&js, "JIFEN_CMD")
        .await
        .config;
    assert_eq!(after.duplicate_window, tuned.duplicate_window);
    assert_eq!(after.max_age, tuned.max_age);
    // What was missing was created.
    for name in ["JIFEN_EVT", "JIFEN_DLQ", "JIFEN_ADVISORY"] {
        js.get_stream(name)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[tokio::test]
async fn a_list_of_seed_servers_connects_while_one_is_down_and_a_first_connect_waits_for_nats() {
    let mut nats = jifen_tests::TestNats::start().await;
    // A dead first seed: the client moves on to the next.
    let seeds = format!("nats://127.0.0.1:1,{}", nats.url());
    let client = jifen_mesh::bus::connect(&seeds).await.unwrap();
    drop(client);

    nats.kill().await;
    let url = nats.url();
    let mut connecting = tokio::spawn(async move { jifen_mesh::bus::connect(&url).await });
    // Nobody answers: the connect keeps trying instead of failing.
    assert!(
        tokio::time::timeout(Duration::from_millis(700), &mut connecting)
            .await
            .is_err(),
        "the first connect gave up while NATS was down"
    );
    nats.restart().await;
    let connected = tokio::time::timeout(Duration::from_secs(15), connecting)
        .await
        .expect("connected once NATS is back")
        .unwrap();
    assert!(connected.is_ok(), "{connected:?}");

    // A malformed list is refused at once, naming the bad entry.
    let refused = jifen_mesh::bus::connect("nats://127.0.0.1:4222,nats://x:port").await;
    assert!(
        matches!(&refused, Err(jifen_mesh::bus::BusError::BadUrl { url, .. }) if url == "nats://x:port"),
        "{refused:?}"
    );
}
