//! The order saga end to end: real nats-server, real databases, every system in process.

use jifen_proto::v1::{OrderState, StepState};
use jifen_tests::TestMesh;
use jifen_tests::invariants::assert_mesh_consistent;
use jifen_tests::mesh::{START_POINTS, START_QUOTA};
use tonic::Code;

use crate::assert_status;

const CHANNELS: [&str; 3] = ["alpha", "beta", "gamma"];
const USERS: [&str; 3] = ["u1", "u2", "u3"];

/// `(channel, user, points)` lines of an order.
type Lines<'a> = &'a [(&'a str, &'a str, i64)];

#[tokio::test]
async fn orders_over_one_two_and_three_channels_complete_and_move_exactly_their_points() {
    let mut mesh = TestMesh::start(&CHANNELS, &USERS).await;
    let orders: [(&str, Lines); 3] = [
        ("one", &[("alpha", "u1", 100)]),
        ("two", &[("alpha", "u2", 30), ("beta", "u2", 70)]),
        (
            "three",
            &[("alpha", "u3", 5), ("beta", "u1", 6), ("gamma", "u2", 7)],
        ),
    ];
    for (order_id, lines) in orders {
        let submitted = mesh.submit(order_id, lines).await.unwrap();
        assert_eq!(submitted.state(), OrderState::Pending);
        let settled = mesh.settled(order_id).await;
        assert_eq!(settled.state(), OrderState::Completed, "{settled:?}");
        assert!(
            settled
                .lines
                .iter()
                .all(|l| l.state() == StepState::Deducted)
        );
        assert!(
            settled
                .quotas
                .iter()
                .all(|q| q.state() == StepState::Deducted)
        );
        let kinds: Vec<&str> = settled.history.iter().map(|h| h.kind.as_str()).collect();
        assert_eq!(kinds.first(), Some(&"submitted"));
        assert_eq!(kinds.last(), Some(&"completed"));
    }
    assert_eq!(mesh.balance("alpha", "u1").await, START_POINTS - 100);
    assert_eq!(mesh.balance("alpha", "u2").await, START_POINTS - 30);
    assert_eq!(mesh.balance("beta", "u2").await, START_POINTS - 70);
    assert_eq!(mesh.balance("alpha", "u3").await, START_POINTS - 5);
    assert_eq!(mesh.balance("beta", "u1").await, START_POINTS - 6);
    assert_eq!(mesh.balance("gamma", "u2").await, START_POINTS - 7);
    assert_eq!(mesh.quota_used("alpha").await, 135);
    assert_eq!(mesh.quota_used("beta").await, 76);
    assert_eq!(mesh.quota_used("gamma").await, 7);
    assert_eq!(assert_mesh_consistent(&mesh).await, 3);
}

#[tokio::test]
async fn short_points_or_quota_fail_the_submit_and_store_nothing() {
    let mut mesh = TestMesh::start(&["alpha"], &["u1"]).await;
    assert_status(
        mesh.submit("o-1", &[("alpha", "u1", START_POINTS + 1)])
            .await,
        Code::FailedPrecondition,
        "has 10000 points",
    );
    assert_status(
        mesh.submit("o-2", &[("alpha", "nobody", 1)]).await,
        Code::NotFound,
        "unknown user nobody",
    );
    assert_status(
        mesh.submit("o-3", &[("ghost", "u1", 1)]).await,
        Code::NotFound,
        "unknown channel ghost",
    );
    assert_status(
        mesh.submit("o-4", &[("alpha", "u1", 0)]).await,
        Code::InvalidArgument,
        "lines[0].points",
    );
    let pool = mesh.mall_db_pool().await;
    let stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM orders")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(stored, 0);
    let _ = START_QUOTA;
}

#[tokio::test]
async fn a_resubmission_returns_the_same_order_and_other_content_is_a_conflict() {
    let mut mesh = TestMesh::start(&["alpha"], &["u1"]).await;
    let first = mesh.submit("o-1", &[("alpha", "u1", 10)]).await.unwrap();
    mesh.settled("o-1").await;
    let again = mesh.submit("o-1", &[("alpha", "u1", 10)]).await.unwrap();
    assert_eq!(again.order_id, first.order_id);
    assert_eq!(again.state(), OrderState::Completed);
    assert_status(
        mesh.submit("o-1", &[("alpha", "u1", 11)]).await,
        Code::AlreadyExists,
        "o-1",
    );
    assert_eq!(mesh.balance("alpha", "u1").await, START_POINTS - 10);
}

#[tokio::test]
async fn a_balance_drained_after_the_pre_check_cancels_the_order_and_restores_everything() {
    let mut mesh = TestMesh::start(&["alpha", "beta"], &["u1"]).await;
    // Hold alpha's commands until the balance is gone.
    mesh.stop_connector("alpha").await;
    mesh.submit("o-1", &[("alpha", "u1", 600), ("beta", "u1", 400)])
        .await
        .unwrap();
    mesh.channel("alpha")
        .client
        .deduct_points(jifen_proto::v1::DeductPointsRequest {
            order_id: "elsewhere".into(),
            user_id: "u1".into(),
            points: START_POINTS - 100,
        })
        .await
        .unwrap();
    mesh.start_connector("alpha").await;

    let settled = mesh.settled("o-1").await;
    assert_eq!(settled.state(), OrderState::Cancelled, "{settled:?}");
    assert!(
        settled.reason.contains("too few points"),
        "{}",
        settled.reason
    );
    assert_eq!(mesh.balance("alpha", "u1").await, 100);
    assert_eq!(mesh.balance("beta", "u1").await, START_POINTS);
    assert_eq!(mesh.quota_used("alpha").await, 0);
    assert_eq!(mesh.quota_used("beta").await, 0);
    assert_mesh_consistent(&mesh).await;
}

#[tokio::test]
async fn quota_exhausted_after_the_channels_deducted_cancels_and_refunds_every_channel() {
    let mut mesh = TestMesh::start(&["alpha", "beta"], &["u1"]).await;
    mesh.stop_connector("portal").await;
    mesh.submit("o-1", &[("alpha", "u1", 600), ("beta", "u1", 400)])
        .await
        .unwrap();
    // Wait until both channels took their points, then spend beta's quota elsewhere.
    jifen_tests::eventually(
        "both lines deducted",
        std::time::Duration::from_secs(30),
        || {
            let mut client = mesh.mall.as_ref().unwrap().client.clone();
            async move {
                let order = client
                    .get_order(jifen_proto::v1::GetOrderRequest {
                        order_id: "o-1".into(),
                    })
                    .await
                    .ok()?
                    .into_inner()
                    .order?;
                order
                    .lines
                    .iter()
                    .all(|l| l.state() == StepState::Deducted)
                    .then_some(())
            }
        },
    )
    .await;
    mesh.portal
        .client
        .deduct_quota(jifen_proto::v1::DeductQuotaRequest {
            order_id: "elsewhere".into(),
            channel_id: "beta".into(),
            points: START_QUOTA - 10,
        })
        .await
        .unwrap();
    mesh.start_connector("portal").await;

    let settled = mesh.settled("o-1").await;
    assert_eq!(settled.state(), OrderState::Cancelled, "{settled:?}");
    assert!(settled.reason.contains("quota"), "{}", settled.reason);
    assert_eq!(mesh.balance("alpha", "u1").await, START_POINTS);
    assert_eq!(mesh.balance("beta", "u1").await, START_POINTS);
    assert_eq!(mesh.quota_used("alpha").await, 0);
    assert_eq!(mesh.quota_used("beta").await, START_QUOTA - 10);
    assert_mesh_consistent(&mesh).await;
}

#[tokio::test]
async fn watch_order_streams_until_the_order_settles() {
    use futures_util::StreamExt;
    let mut mesh = TestMesh::start(&["alpha", "beta"], &["u1"]).await;
    mesh.submit("o-1", &[("alpha", "u1", 10), ("beta", "u1", 20)])
        .await
        .unwrap();
    let mut stream = mesh
        .mall()
        .client
        .watch_order(jifen_proto::v1::WatchOrderRequest {
            order_id: "o-1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut states = Vec::new();
    while let Some(update) = stream.next().await {
        states.push(update.unwrap().order.unwrap().state());
    }
    assert_eq!(states.last(), Some(&OrderState::Completed), "{states:?}");
    assert!(
        states[..states.len() - 1]
            .iter()
            .all(|s| *s == OrderState::Pending)
    );
    assert_status(
        mesh.mall()
            .client
            .watch_order(jifen_proto::v1::WatchOrderRequest {
                order_id: "nope".into(),
            })
            .await,
        Code::NotFound,
        "unknown order nope",
    );
}

#[tokio::test]
async fn list_orders_filters_by_state_and_pages_newest_first() {
    let mut mesh = TestMesh::start(&["alpha"], &["u1"]).await;
    for i in 0..5 {
        let id = format!("o-{i}");
        mesh.submit(&id, &[("alpha", "u1", 1)]).await.unwrap();
        mesh.settled(&id).await;
    }
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = mesh
            .mall()
            .client
            .list_orders(jifen_proto::v1::ListOrdersRequest {
                state: OrderState::Completed.into(),
                page_size: 2,
                page_token: token.clone(),
                needs_attention: false,
            })
            .await
            .unwrap()
            .into_inner();
        assert!(page.orders.len() <= 2);
        seen.extend(page.orders.into_iter().map(|o| o.order_id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    // Each order settled before the next was submitted, so creation times are distinct.
    let newest_first: Vec<String> = (0..5).rev().map(|i| format!("o-{i}")).collect();
    assert_eq!(seen, newest_first);
    let cancelled = mesh
        .mall()
        .client
        .list_orders(jifen_proto::v1::ListOrdersRequest {
            state: OrderState::Cancelled.into(),
            page_size: 0,
            page_token: String::new(),
            needs_attention: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(cancelled.orders.is_empty());
    assert_status(
        mesh.mall()
            .client
            .list_orders(jifen_proto::v1::ListOrdersRequest {
                state: 0,
                page_size: 1,
                page_token: "garbage".into(),
                needs_attention: false,
            })
            .await,
        Code::InvalidArgument,
        "page_token",
    );
}

#[tokio::test]
async fn watches_on_another_replica_see_every_order_settle_under_traffic() {
    use futures_util::StreamExt;
    let mut mesh = TestMesh::start(&["alpha", "beta"], &["u1", "u2"]).await;
    // Orders go in at one replica; watches are opened at another. Both run the saga, so the
    // watching replica is told of only part of the changes and must catch the rest itself.
    let watcher = mesh.start_replica().await;
    let submitter = mesh.mall().client.clone();
    let mut watches = tokio::task::JoinSet::new();
    for i in 0..40 {
        let (mut submitter, mut watcher) = (submitter.clone(), watcher.client.clone());
        watches.spawn(async move {
            let order_id = format!("w-{i}");
            let user = if i % 2 == 0 { "u1" } else { "u2" };
            let lines = [("alpha", user, 10), ("beta", user, 20)];
            submitter
                .submit_order(jifen_tests::mesh::order_request(&order_id, &lines))
                .await
                .unwrap();
            let mut stream = watcher
                .watch_order(jifen_proto::v1::WatchOrderRequest {
                    order_id: order_id.clone(),
                })
                .await
                .unwrap()
                .into_inner();
            let watched = tokio::time::timeout(std::time::Duration::from_secs(30), async {
                let mut last = None;
                while let Some(update) = stream.next().await {
                    last = Some(update.unwrap().order.unwrap().state());
                }
                last
            })
            .await;
            (order_id, watched)
        });
    }
    while let Some(done) = watches.join_next().await {
        let (order_id, watched) = done.unwrap();
        let last = watched.unwrap_or_else(|_| panic!("the watch of {order_id} never ended"));
        assert_eq!(last, Some(OrderState::Completed), "{order_id}");
        assert_eq!(mesh.settled(&order_id).await.state(), OrderState::Completed);
    }
    assert_mesh_consistent(&mesh).await;
}

#[tokio::test]
async fn a_stopping_mall_ends_its_open_watches() {
    use futures_util::StreamExt;
    let mut mesh = TestMesh::start(&["alpha"], &["u1"]).await;
    mesh.stop_connector("alpha").await;
    mesh.submit("held", &[("alpha", "u1", 10)]).await.unwrap();
    let mut stream = mesh
        .mall()
        .client
        .watch_order(jifen_proto::v1::WatchOrderRequest {
            order_id: "held".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let first = stream.next().await.unwrap().unwrap().order.unwrap();
    assert_eq!(first.state(), OrderState::Pending);
    tokio::time::timeout(std::time::Duration::from_secs(20), mesh.stop_mall())
        .await
        .expect("the mall stops although a watch is open");
    let end = tokio::time::timeout(std::time::Duration::from_secs(5), stream.next())
        .await
        .expect("the watch ends");
    assert!(
        matches!(&end, None | Some(Err(_))),
        "the watch ends without a terminal state: {end:?}"
    );
}

#[tokio::test]
async fn a_connector_started_before_its_channel_is_registered_waits_and_then_serves() {
    use jifen_tests::mesh::register_with_quota;
    let mut mesh = TestMesh::start(&["alpha"], &["u1"]).await;
    mesh.add_unregistered_channel("late", &["u1"]).await;
    // The connector looked in the registry, found nothing, and did not give up.
    let lookups = || {
        jifen_mesh::metrics::REGISTRY
            .gather()
            .iter()
            .filter(|family| family.name() == "jifen_grpc_requests_total")
            .flat_map(|family| family.get_metric())
            .filter(|m| {
                m.get_label()
                    .iter()
                    .any(|l| l.name() == "method" && l.value() == "ListChannels")
            })
            .map(|m| m.get_counter().get_value() as u64)
            .sum::<u64>()
    };
    jifen_tests::eventually(
        "a look in the registry",
        std::time::Duration::from_secs(10),
        || async { (lookups() >= 1).then_some(()) },
    )
    .await;
    let endpoint = mesh.channel("late").server.endpoint();
    register_with_quota(&mut mesh.portal, "late", "Late points", &endpoint).await;
    mesh.submit("o-late", &[("late", "u1", 40), ("alpha", "u1", 10)])
        .await
        .unwrap();
    assert_eq!(mesh.settled("o-late").await.state(), OrderState::Completed);
    assert_eq!(mesh.balance("late", "u1").await, START_POINTS - 40);
    assert_mesh_consistent(&mesh).await;
}
