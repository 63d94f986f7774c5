//! Dead letters keep who they are: ids that stay unique when a stream is recreated, the first
//! origin of a dead letter that is dead-lettered again, and an attention flag that a
//! concurrent clear cannot overwrite.

use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream;
use futures_util::StreamExt;
use jifen_mesh::bus::dead_letter::{Origin, copy};
use jifen_mesh::bus::subjects::{
    CONSUMER_HEADER, LAST_ERROR_HEADER, ORIGIN_MSG_ID_HEADER, ORIGIN_SEQUENCE_HEADER,
    ORIGIN_STREAM_HEADER, ORIGIN_SUBJECT_HEADER,
};
use jifen_tests::{TestMesh, eventually};

use crate::admin::{admin, dead_letters};

async fn poison(js: &jetstream::Context, id: &str, order_id: &str) {
    let mut headers = HeaderMap::new();
    headers.insert(async_nats::header::NATS_MESSAGE_ID, id);
    headers.insert("Jifen-Order-Id", order_id);
    js.publish_with_headers(
        "jifen.cmd.channel.alpha.deduct",
        headers,
        "\u{ff}not protobuf".into(),
    )
    .await
    .unwrap()
    .await
    .unwrap();
}

#[tokio::test]
async fn a_dead_letter_after_its_stream_was_recreated_is_not_taken_for_an_old_one() {
    let mut mesh = TestMesh::start(&["alpha"], &["u1"]).await;
    let js = jetstream::new(mesh.nats.connect().await);
    let mut admin = admin(&mut mesh).await;
    poison(&js, "poison-1", "o-first").await;
    let first = eventually("the first dead letter", Duration::from_secs(20), || {
        let mut admin = admin.clone();
        async move { dead_letters(&mut admin, "o-first").await.into_iter().next() }
    })
    .await;

    // The command stream is deleted and made again: its sequences start over.
    mesh.stop_connector("alpha").await;
    mesh.stop_connector("portal").await;
    js.delete_stream("JIFEN_CMD").await.unwrap();
    // Made again as the mall does at its start (connectors only look streams up).
    jifen_mesh::bus::topology::Topology::default()
        .ensure(&js)
        .await
        .unwrap();
    mesh.start_connector("alpha").await;
    mesh.start_connector("portal").await;
    eventually("the stream again", Duration::from_secs(10), || async {
        js.get_stream("JIFEN_CMD").await.ok().map(drop)
    })
    .await;
    poison(&js, "poison-2", "o-second").await;
    let second = eventually("the second dead letter", Duration::from_secs(20), || {
        let mut admin = admin.clone();
        async move {
            dead_letters(&mut admin, "o-second")
                .await
                .into_iter()
                .next()
        }
    })
    .await;
    assert_eq!(
        first.origin_sequence, second.origin_sequence,
        "same sequence"
    );
    assert_ne!(first.id, second.id);
    assert_eq!(dead_letters(&mut admin, "o-first").await.len(), 1);
}

#[tokio::test]
async fn a_dead_letter_dead_lettered_again_keeps_its_first_origin() {
    let nats = jifen_tests::TestNats::start().await;
    let js = jetstream::new(nats.connect().await);
    jifen_mesh::bus::topology::Topology::default()
        .ensure(&js)
        .await
        .unwrap();
    let mut watch = js
        .get_stream("JIFEN_DLQ")
        .await
        .unwrap()
        .create_consumer(jetstream::consumer::pull::Config {
            durable_name: Some("test-watch".into()),
            ..Default::default()
        })
        .await
        .unwrap()
        .messages()
        .await
        .unwrap();
    let command = HeaderMap::from_iter([(
        async_nats::header::NATS_MESSAGE_ID,
        async_nats::HeaderValue::from("o-1:deduct:alpha:u1"),
    )]);
    let origin = |stream: &'static str, consumer: &'static str, headers| Origin {
        stream,
        stream_created_ns: 1,
        sequence: 7,
        subject: "jifen.cmd.channel.alpha.deduct",
        consumer,
        deliveries: 16,
        last_error: "channel down",
        headers,
        payload: "payload".into(),
        kind: None,
    };
    copy(&js, &origin("JIFEN_CMD", "channel-alpha", Some(&command)))
        .await
        .unwrap();
    let first = watch.next().await.unwrap().unwrap();
    first.ack().await.unwrap();
    let first_headers = first.headers.clone().unwrap();

    // The indexer could not take it: it is dead-lettered from JIFEN_DLQ.
    let mut again = origin("JIFEN_DLQ", "mall-dlq", Some(&first_headers));
    again.sequence = 1;
    again.subject = "jifen.dlq.JIFEN_CMD.channel-alpha";
    again.last_error = "database down";
    copy(&js, &again).await.unwrap();
    let second = watch.next().await.unwrap().unwrap();
    let headers = second.headers.clone().unwrap();
    let header = |name: &str| headers.get(name).map(|v| v.as_str().to_owned());
    assert_eq!(header(ORIGIN_STREAM_HEADER).as_deref(), Some("JIFEN_CMD"));
    assert_eq!(header(ORIGIN_SEQUENCE_HEADER).as_deref(), Some("7"));
    assert_eq!(
        header(ORIGIN_SUBJECT_HEADER).as_deref(),
        Some("jifen.cmd.channel.alpha.deduct")
    );
    assert_eq!(
        header(ORIGIN_MSG_ID_HEADER).as_deref(),
        Some("o-1:deduct:alpha:u1")
    );
    assert_eq!(header(CONSUMER_HEADER).as_deref(), Some("channel-alpha"));
    assert_eq!(second.subject.as_str(), "jifen.dlq.JIFEN_CMD.channel-alpha");
    let last_error = header(LAST_ERROR_HEADER).unwrap();
    assert!(
        last_error.contains("channel down") && last_error.contains("database down"),
        "{last_error}"
    );
    let first_id = first_headers
        .get(async_nats::header::NATS_MESSAGE_ID)
        .unwrap()
        .as_str()
        .to_owned();
    let second_id = header(async_nats::header::NATS_MESSAGE_ID.as_ref()).unwrap();
    assert_ne!(
        second_id, first_id,
        "an id of its own, past the duplicate window"
    );
    assert!(second_id.starts_with(&first_id), "{second_id}");
}

#[tokio::test]
async fn clearing_the_attention_flag_never_overwrites_one_set_meanwhile() {
    use jifen_mesh::storage::{Backend, Database};
    let test_db = jifen_tests::TestDatabase::create("mall").await;
    let db = Database::open_with(test_db.url(), &jifen_mall::app::MIGRATIONS, 4)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO orders (order_id, customer_id, state, needs_attention, reason, fingerprint, \
         version, created_at_ms, updated_at_ms) VALUES ('o-1', 'c', 'PENDING', 1, '', 'f', 0, 0, 0)",
    )
    .execute(db.pool())
    .await
    .unwrap();
    let dead_letter = |id: &'static str| {
        sqlx::query(
            "INSERT INTO dead_letters (id, order_id, origin_stream, origin_sequence, origin_msg_id, \
             subject, consumer, deliveries, last_error, payload, state, dead_at_ms, updated_at_ms) \
             VALUES ($1, 'o-1', 'JIFEN_CMD', 1, 'm', 's', 'c', 3, 'e', $2, 'OPEN', 0, 0)",
        )
        .bind(id)
        .bind(b"x".to_vec())
    };
    dead_letter("dl-1").execute(db.pool()).await.unwrap();

    // The indexer records a second dead letter and flags the order, not committed yet...
    let mut indexer = db.begin().await.unwrap();
    dead_letter("dl-2").execute(&mut *indexer).await.unwrap();
    sqlx::query(
        "UPDATE orders SET needs_attention = 1, version = version + 1 WHERE order_id = 'o-1'",
    )
    .execute(&mut *indexer)
    .await
    .unwrap();
    // ...while an operator closes the first one and clears the flag if nothing is open.
    let operator = {
        let db = db.clone();
        tokio::spawn(async move {
            let mut tx = db.begin().await.unwrap();
            sqlx::query("UPDATE dead_letters SET state = 'DISCARDED' WHERE id = 'dl-1'")
                .execute(&mut *tx)
                .await
                .unwrap();
            jifen_mall::store::dead_letters::clear_attention_if_settled(&mut tx, "o-1", 1)
                .await
                .unwrap();
            tx.commit().await.unwrap();
        })
    };
    if db.backend() == Backend::Postgres {
        // Wait until the operator's transaction waits for the order's row.
        eventually(
            "the operator to wait for the lock",
            Duration::from_secs(10),
            || {
                let pool = db.pool().clone();
                async move {
                    let waiting: i64 = sqlx::query_scalar(
                        "SELECT COUNT(*) FROM pg_stat_activity \
                     WHERE datname = current_database() AND wait_event_type = 'Lock'",
                    )
                    .fetch_one(&pool)
                    .await
                    .ok()?;
                    (waiting > 0).then_some(())
                }
            },
        )
        .await;
    }
    indexer.commit().await.unwrap();
    operator.await.unwrap();
    let (flag, version): (i64, i64) =
        sqlx::query_as("SELECT needs_attention, version FROM orders WHERE order_id = 'o-1'")
            .fetch_one(db.pool())
            .await
            .unwrap();
    assert_eq!(flag, 1, "dl-2 is open: the flag must stay");
    assert_eq!(version, 2, "both changes moved the version");
}
