//! The saga under faults: duplicated and late messages, a mall that stops between commit and
//! publish, a nats-server killed mid-run, and many concurrent orders of which some must fail.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_nats::jetstream;
use futures_util::StreamExt;
use jifen_proto::v1::OrderState;
use jifen_tests::TestMesh;
use jifen_tests::invariants::assert_mesh_consistent;
use jifen_tests::mesh::{START_POINTS, order_request};
use sqlx::Row;
use tokio::task::JoinSet;

const DUPLICATE_HEADER: &str = "Jifen-Test-Duplicate";

/// Republishes every command and event once more under a new message id, so that the server
/// cannot deduplicate it: every handler sees each message twice, sometimes late.
async fn duplicate_everything(mesh: &TestMesh) -> Arc<AtomicUsize> {
    let client = mesh.nats.connect().await;
    let js = jetstream::new(client.clone());
    let mut messages = client.subscribe("jifen.>").await.unwrap();
    let copies = Arc::new(AtomicUsize::new(0));
    let counter = copies.clone();
    tokio::spawn(async move {
        while let Some(message) = messages.next().await {
            let subject = message.subject.to_string();
            if !(subject.starts_with("jifen.cmd.") || subject.starts_with("jifen.evt.")) {
                continue;
            }
            let Some(headers) = message.headers.clone() else {
                continue;
            };
            if headers.get(DUPLICATE_HEADER).is_some() {
                continue;
            }
            let mut copy = headers.clone();
            let id = headers
                .get(async_nats::header::NATS_MESSAGE_ID)
                .map(|v| v.as_str().to_owned())
                .unwrap_or_default();
            copy.insert(
                async_nats::header::NATS_MESSAGE_ID,
                format!("{id}:copy").as_str(),
            );
            copy.insert(DUPLICATE_HEADER, "1");
            if let Ok(ack) = js
                .publish_with_headers(subject, copy, message.payload.clone())
                .await
                && ack.await.is_ok()
            {
                counter.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    copies
}

#[tokio::test]
async fn every_command_and_event_delivered_twice_has_no_double_effect() {
    let mut mesh = TestMesh::start(&["alpha", "beta"], &["u1", "u2"]).await;
    let copies = duplicate_everything(&mesh).await;
    // Two orders race for u1's alpha points: both pass the pre-check (alpha's commands wait
    // until both are in), one must be cancelled and refunded at beta. A third completes.
    mesh.stop_connector("alpha").await;
    let mall = mesh.mall().client.clone();
    let mut submits = JoinSet::new();
    for (order_id, lines) in [
        (
            "race-1",
            vec![("alpha", "u1", 6_000), ("beta", "u1", 1_000)],
        ),
        (
            "race-2",
            vec![("alpha", "u1", 6_000), ("beta", "u1", 2_000)],
        ),
        ("calm", vec![("alpha", "u2", 10), ("beta", "u2", 20)]),
    ] {
        let mut mall = mall.clone();
        submits.spawn(async move { mall.submit_order(order_request(order_id, &lines)).await });
    }
    while let Some(submitted) = submits.join_next().await {
        submitted.unwrap().unwrap();
    }
    mesh.start_connector("alpha").await;
    let race_1 = mesh.settled("race-1").await;
    let race_2 = mesh.settled("race-2").await;
    let calm = mesh.settled("calm").await;
    assert_eq!(calm.state(), OrderState::Completed);
    let states = [race_1.state(), race_2.state()];
    assert!(
        states.contains(&OrderState::Completed) && states.contains(&OrderState::Cancelled),
        "one race order completes, the other is cancelled: {states:?}"
    );
    let beta_taken = if race_1.state() == OrderState::Completed {
        1_000
    } else {
        2_000
    };
    assert_eq!(mesh.balance("alpha", "u1").await, START_POINTS - 6_000);
    assert_eq!(mesh.balance("beta", "u1").await, START_POINTS - beta_taken);
    assert_eq!(mesh.balance("alpha", "u2").await, START_POINTS - 10);
    assert_eq!(mesh.quota_used("alpha").await, 6_010);
    assert_eq!(mesh.quota_used("beta").await, beta_taken + 20);
    // Let the late copies drain, then check nothing moved twice.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        copies.load(Ordering::Relaxed) > 10,
        "the copies were published"
    );
    assert_eq!(mesh.balance("beta", "u1").await, START_POINTS - beta_taken);
    assert_mesh_consistent(&mesh).await;
    assert_eq!(
        jifen_mesh::metrics::CORRECTIVE_REFUNDS
            .with_label_values(&["points"])
            .get(),
        0,
        "late duplicates at a reference channel are not late deducts"
    );
}

#[tokio::test]
async fn an_order_committed_but_not_published_completes_after_the_mall_restarts() {
    let mut mesh = TestMesh::start(&["alpha"], &["u1"]).await;
    // With the bus down, the order commits but its commands stay in the outbox.
    mesh.nats.kill().await;
    mesh.submit("o-1", &[("alpha", "u1", 250)]).await.unwrap();
    let pool = mesh.mall_db_pool().await;
    let waiting: i64 = sqlx::query("SELECT COUNT(*) FROM outbox WHERE order_id = 'o-1'")
        .fetch_one(&pool)
        .await
        .unwrap()
        .try_get(0)
        .unwrap();
    assert_eq!(waiting, 1, "the deduct command waits in the outbox");
    mesh.stop_mall().await;
    mesh.nats.restart().await;
    mesh.start_mall().await;

    let settled = mesh.settled("o-1").await;
    assert_eq!(settled.state(), OrderState::Completed, "{settled:?}");
    assert_eq!(mesh.balance("alpha", "u1").await, START_POINTS - 250);
    assert_mesh_consistent(&mesh).await;
}

#[tokio::test]
async fn orders_survive_nats_server_killed_and_restarted_mid_run() {
    let mut mesh = TestMesh::start(&["alpha", "beta"], &["u1", "u2"]).await;
    let mut ids = Vec::new();
    for i in 0..10 {
        let id = format!("before-{i}");
        mesh.submit(&id, &[("alpha", "u1", 10), ("beta", "u2", 10)])
            .await
            .unwrap();
        ids.push(id);
    }
    mesh.nats.kill().await;
    for i in 0..10 {
        let id = format!("during-{i}");
        mesh.submit(&id, &[("alpha", "u2", 10), ("beta", "u1", 10)])
            .await
            .unwrap();
        ids.push(id);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    mesh.nats.restart().await;
    for id in &ids {
        let settled = mesh.settled(id).await;
        assert_eq!(settled.state(), OrderState::Completed, "{settled:?}");
    }
    assert_eq!(mesh.balance("alpha", "u1").await, START_POINTS - 100);
    assert_eq!(mesh.balance("beta", "u1").await, START_POINTS - 100);
    assert_eq!(assert_mesh_consistent(&mesh).await, 20);
}

#[tokio::test]
async fn five_hundred_concurrent_orders_some_failing_keep_every_invariant() {
    let channels = ["alpha", "beta", "gamma"];
    let users = ["u0", "u1", "u2", "u3", "u4", "u5", "u6", "u7"];
    let mut mesh = TestMesh::start(&channels, &users).await;
    let mall = mesh.mall().client.clone();
    let mut submits = JoinSet::new();
    let limit = Arc::new(tokio::sync::Semaphore::new(32));
    for i in 0..500_usize {
        // Users spend more than they hold across all their orders, so the channels reject
        // some deductions after the pre-checks passed; those orders must be compensated.
        let user = users[i % users.len()];
        let lines: Vec<(&str, &str, i64)> = (0..=(i % 3))
            .map(|k| (channels[(i + k) % 3], user, 300 + (i as i64 % 7) * 20))
            .collect();
        let mut mall = mall.clone();
        let limit = limit.clone();
        submits.spawn(async move {
            let _permit = limit.acquire().await;
            mall.submit_order(order_request(&format!("bulk-{i}"), &lines))
                .await
        });
    }
    let mut accepted = Vec::new();
    while let Some(submitted) = submits.join_next().await {
        match submitted.unwrap() {
            Ok(response) => accepted.push(response.into_inner().order.unwrap().order_id),
            // The pre-check may already see a drained balance.
            Err(status) => assert_eq!(status.code(), tonic::Code::FailedPrecondition, "{status:?}"),
        }
    }
    let (mut completed, mut cancelled) = (0, 0);
    for id in &accepted {
        match mesh.settled(id).await.state() {
            OrderState::Completed => completed += 1,
            _ => cancelled += 1,
        }
    }
    assert!(
        completed > 0 && cancelled > 0,
        "completed {completed}, cancelled {cancelled}"
    );
    assert_eq!(assert_mesh_consistent(&mesh).await, accepted.len());
    // Reference ledgers have null compensation and anti-hanging: events that arrive out of
    // order must never be taken for late deducts.
    let corrections: u64 = ["points", "quota"]
        .iter()
        .map(|kind| {
            jifen_mesh::metrics::CORRECTIVE_REFUNDS
                .with_label_values(&[kind])
                .get()
        })
        .sum();
    assert_eq!(
        corrections, 0,
        "corrective refunds against reference ledgers"
    );
}
