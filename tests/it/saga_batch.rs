//! The saga applies a fetched batch of events in one transaction: every event takes effect
//! once, in its order, and one that fails neither fails nor repeats its neighbours.

use std::sync::Arc;

use jifen_mall::order::NewOrder;
use jifen_mall::saga::{Outcome, Saga, StepKey};
use jifen_mall::store::OrderStore;
use jifen_mesh::barrier::LedgerState;
use jifen_mesh::storage::Database;
use sqlx::Row;

use jifen_tests::mesh::order_request;

fn deducted(order_id: &str) -> Outcome {
    Outcome {
        order_id: order_id.to_owned(),
        step: StepKey::Line {
            channel_id: "alpha".into(),
            user_id: "u1".into(),
        },
        state: LedgerState::Deducted,
        points: 10,
        reason: String::new(),
        refund_by_hand: false,
        deduct_may_follow: false,
        captured: Default::default(),
        exchanges: Vec::new(),
        hold_expires_at_ms: 0,
    }
}

#[tokio::test]
async fn a_batch_applies_each_event_once_and_a_failing_one_alone_is_left_to_retry() {
    let test_db = jifen_tests::TestDatabase::create("mall").await;
    let db = Database::open_with(test_db.url(), &jifen_mall::app::MIGRATIONS, 4)
        .await
        .unwrap();
    let store = OrderStore::new(db.clone());
    for order_id in ["a", "b", "c"] {
        let order = NewOrder::parse(order_request(order_id, &[("alpha", "u1", 10)])).unwrap();
        store.insert(&order).await.unwrap();
    }
    // b's line holds a state no code wrote: applying its event fails.
    sqlx::query("UPDATE order_lines SET state = 'BOGUS' WHERE order_id = 'b'")
        .execute(db.pool())
        .await
        .unwrap();
    sqlx::query("DELETE FROM outbox")
        .execute(db.pool())
        .await
        .unwrap();
    let saga = Saga::new(
        db.clone(),
        Arc::new(tokio::sync::Notify::new()),
        Default::default(),
    );
    let span = tracing::Span::none();
    let (a, b, c) = (deducted("a"), deducted("b"), deducted("c"));
    let events = [(&a, &span), (&b, &span), (&c, &span), (&a, &span)];
    let results = saga.apply_batch(&events).await;
    assert!(results[0].is_ok(), "{results:?}");
    assert!(results[1].is_err(), "{results:?}");
    assert!(results[2].is_ok(), "{results:?}");
    assert!(
        matches!(results[3], Ok(jifen_mall::saga::Applied::Ignored(_))),
        "the repeat changes nothing: {results:?}"
    );

    let line = |order_id: &'static str| {
        let pool = db.pool().clone();
        async move {
            sqlx::query("SELECT state FROM order_lines WHERE order_id = $1")
                .bind(order_id)
                .fetch_one(&pool)
                .await
                .unwrap()
                .try_get::<String, _>("state")
                .unwrap()
        }
    };
    assert_eq!(line("a").await, "DEDUCTED");
    assert_eq!(line("b").await, "BOGUS", "the failed event left nothing");
    assert_eq!(line("c").await, "DEDUCTED");
    let count = |sql: &'static str| {
        let pool = db.pool().clone();
        async move {
            sqlx::query_scalar::<_, i64>(sql)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    // One quota command each for a and c, none for b; one history entry per applied event.
    assert_eq!(count("SELECT COUNT(*) FROM outbox").await, 2);
    assert_eq!(
        count("SELECT COUNT(*) FROM outbox WHERE order_id = 'b'").await,
        0
    );
    assert_eq!(
        count(
            "SELECT COUNT(*) FROM order_events WHERE order_id = 'a' AND kind = 'points_deducted'"
        )
        .await,
        1
    );
    // The ignored repeat did not move a's version beyond its one change.
    assert_eq!(
        count("SELECT version FROM orders WHERE order_id = 'a'").await,
        1
    );

    // Fixed, b's event applies when it is delivered again.
    sqlx::query("UPDATE order_lines SET state = 'PENDING' WHERE order_id = 'b'")
        .execute(db.pool())
        .await
        .unwrap();
    let again = saga.apply_batch(&[(&b, &span)]).await;
    assert!(again[0].is_ok(), "{again:?}");
    assert_eq!(line("b").await, "DEDUCTED");
}

#[tokio::test]
async fn concurrent_submits_share_commits_and_each_gets_its_own_answer() {
    use jifen_proto::v1::OrderState;
    let mut mesh = jifen_tests::TestMesh::start(&["alpha", "beta"], &["u1", "u2"]).await;
    let mall = mesh.mall().client.clone();
    let mut submits = tokio::task::JoinSet::new();
    // 20 orders, each submitted twice at once.
    for i in 0..20 {
        for copy in 0..2 {
            let mut mall = mall.clone();
            submits.spawn(async move {
                let lines = [("alpha", "u1", 10 + i), ("beta", "u2", 5)];
                let result = mall
                    .submit_order(order_request(&format!("g-{i}"), &lines))
                    .await;
                (i, copy, result.map(|r| r.into_inner().order.unwrap()))
            });
        }
    }
    while let Some(done) = submits.join_next().await {
        let (i, copy, order) = done.unwrap();
        let order = order.unwrap_or_else(|e| panic!("g-{i} copy {copy}: {e}"));
        assert_eq!(order.order_id, format!("g-{i}"));
        assert_eq!(order.lines.len(), 2);
    }
    // Other content under a stored id is refused.
    let conflict = mall
        .clone()
        .submit_order(order_request("g-0", &[("alpha", "u1", 999)]))
        .await;
    assert_eq!(
        conflict.map(drop).unwrap_err().code(),
        tonic::Code::AlreadyExists
    );
    for i in 0..20 {
        assert_eq!(
            mesh.settled(&format!("g-{i}")).await.state(),
            OrderState::Completed
        );
    }
    let expected: i64 = (0..20).map(|i| 10 + i).sum();
    assert_eq!(
        mesh.balance("alpha", "u1").await,
        jifen_tests::mesh::START_POINTS - expected
    );
    assert_eq!(
        jifen_tests::invariants::assert_mesh_consistent(&mesh).await,
        20
    );
}

/// An order settled by an event of a batch that failed and was applied again one by one counts
/// once in `jifen_order_settle_duration_seconds`: the settle time is observed after the commit
/// that kept it, not inside the transaction that was undone.
#[tokio::test]
async fn an_order_settled_in_a_retried_batch_counts_once_in_the_settle_metric() {
    let test_db = jifen_tests::TestDatabase::create("mall").await;
    let db = Database::open_with(test_db.url(), &jifen_mall::app::MIGRATIONS, 4)
        .await
        .unwrap();
    let store = OrderStore::new(db.clone());
    for order_id in ["a", "b"] {
        let order = NewOrder::parse(order_request(order_id, &[("alpha", "u1", 10)])).unwrap();
        store.insert(&order).await.unwrap();
    }
    // a's line is deducted and its quota asked for: its quota's deduct completes it.
    for sql in [
        "UPDATE order_lines SET state = 'DEDUCTED' WHERE order_id = 'a'",
        "UPDATE order_quotas SET state = 'PENDING' WHERE order_id = 'a'",
        // b's line holds a state no code wrote: applying its event fails the batch.
        "UPDATE order_lines SET state = 'BOGUS' WHERE order_id = 'b'",
    ] {
        sqlx::query(sql).execute(db.pool()).await.unwrap();
    }
    let saga = Saga::new(
        db.clone(),
        Arc::new(tokio::sync::Notify::new()),
        Default::default(),
    );
    let span = tracing::Span::none();
    let quota = Outcome {
        step: StepKey::Quota {
            channel_id: "alpha".into(),
        },
        ..deducted("a")
    };
    let b = deducted("b");
    let completed = || {
        jifen_mesh::metrics::ORDER_SETTLE_LATENCY
            .with_label_values(&["COMPLETED"])
            .get_sample_count()
    };
    let before = completed();
    let results = saga.apply_batch(&[(&quota, &span), (&b, &span)]).await;
    assert!(
        matches!(
            results[0],
            Ok(jifen_mall::saga::Applied::Moved {
                order_state: jifen_mall::order::OrderState::Completed
            })
        ),
        "{results:?}"
    );
    assert!(results[1].is_err(), "{results:?}");
    assert_eq!(completed() - before, 1, "one settled order, one sample");
}
