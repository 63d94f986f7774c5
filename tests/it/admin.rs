//! The operator's side: retries, dead letters, redrive, manual compensation, stuck orders,
//! reconciliation — over the real admin API with its bearer token.

use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use async_nats::jetstream::{self, consumer::pull};
use futures_util::StreamExt;
use jifen_mesh::config::RetryArgs;
use jifen_proto::v1::admin_service_client::AdminServiceClient;
use jifen_proto::v1::{
    CompensateOrderRequest, DeadLetter, DiscardDeadLetterRequest, GetOrderRequest,
    ListDeadLettersRequest, OrderState, RedriveDeadLetterRequest,
};
use jifen_tests::invariants::assert_mesh_consistent;
use jifen_tests::mesh::{ADMIN_TOKEN, START_POINTS};
use jifen_tests::{TestMesh, eventually};
use tonic::transport::Channel;
use tonic::{Code, Request};

use crate::assert_status;

pub(crate) fn authed<T>(message: T) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {ADMIN_TOKEN}").parse().unwrap(),
    );
    request
}

pub(crate) async fn admin(mesh: &mut TestMesh) -> AdminServiceClient<Channel> {
    let channel = Channel::from_shared(mesh.mall().server.endpoint())
        .unwrap()
        .connect()
        .await
        .unwrap();
    AdminServiceClient::new(channel)
}

pub(crate) async fn dead_letters(
    admin: &mut AdminServiceClient<Channel>,
    order_id: &str,
) -> Vec<DeadLetter> {
    admin
        .list_dead_letters(authed(ListDeadLettersRequest {
            order_id: order_id.into(),
            consumer: String::new(),
            page_size: 0,
            page_token: String::new(),
        }))
        .await
        .unwrap()
        .into_inner()
        .dead_letters
}

pub(crate) async fn one_dead_letter(
    admin: &AdminServiceClient<Channel>,
    order_id: &str,
) -> DeadLetter {
    eventually(
        &format!("a dead letter for {order_id}"),
        Duration::from_secs(30),
        || {
            let mut admin = admin.clone();
            async move { dead_letters(&mut admin, order_id).await.into_iter().next() }
        },
    )
    .await
}

async fn needs_attention(mesh: &mut TestMesh, order_id: &str) -> bool {
    mesh.mall()
        .client
        .get_order(GetOrderRequest {
            order_id: order_id.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .order
        .unwrap()
        .needs_attention
}

/// Short schedule for the tests that wait for deliveries to run out.
fn three_deliveries() -> RetryArgs {
    RetryArgs {
        backoff: vec![Duration::from_millis(150), Duration::from_millis(300)],
        max_deliver: 3,
    }
}

/// Submits `o-1` (alpha 100, beta 50) while alpha is up, then takes alpha's server down and
/// lets its connector exhaust three deliveries. Returns the dead letter.
pub(crate) async fn dead_letter_alpha(mesh: &mut TestMesh) -> (DeadLetter, Duration) {
    mesh.stop_connector("alpha").await;
    mesh.submit("o-1", &[("alpha", "u1", 100), ("beta", "u1", 50)])
        .await
        .unwrap();
    mesh.channel("alpha").stop().await;
    mesh.retry = three_deliveries();
    let started = Instant::now();
    mesh.start_connector("alpha").await;
    let admin = admin(mesh).await;
    let dl = one_dead_letter(&admin, "o-1").await;
    (dl, started.elapsed())
}

#[tokio::test]
async fn a_channel_down_is_dead_lettered_after_its_retries_and_a_redrive_completes_the_order() {
    let mut mesh = TestMesh::start(&["alpha", "beta"], &["u1"]).await;
    let (dl, waited) = dead_letter_alpha(&mut mesh).await;
    assert_eq!(dl.consumer, "channel-alpha");
    assert_eq!(dl.subject, "jifen.cmd.channel.alpha.deduct");
    assert_eq!(dl.origin_stream, "JIFEN_CMD");
    assert_eq!(dl.deliveries, 3);
    assert!(
        dl.last_error.contains("deduct alpha for order o-1"),
        "{}",
        dl.last_error
    );
    assert!(
        dl.payload_json.contains(r#""points":100"#),
        "{}",
        dl.payload_json
    );
    // Three deliveries are two back-off steps apart at least.
    assert!(waited >= Duration::from_millis(450), "{waited:?}");
    assert!(needs_attention(&mut mesh, "o-1").await);

    mesh.channel("alpha").restart().await;
    let mut admin = admin(&mut mesh).await;
    let redriven = admin
        .redrive_dead_letter(authed(RedriveDeadLetterRequest {
            id: dl.id.clone(),
            note: "the channel is back".into(),
        }))
        .await
        .unwrap()
        .into_inner()
        .dead_letter
        .unwrap();
    assert_eq!(redriven.redrives, 1);
    let settled = mesh.settled("o-1").await;
    assert_eq!(settled.state(), OrderState::Completed, "{settled:?}");
    assert!(!settled.needs_attention);
    assert!(settled.history.iter().any(|h| h.kind == "admin_redrive"));
    assert_eq!(mesh.balance("alpha", "u1").await, START_POINTS - 100);
    assert_eq!(mesh.balance("beta", "u1").await, START_POINTS - 50);
    assert!(dead_letters(&mut admin, "o-1").await.is_empty());
    assert_mesh_consistent(&mesh).await;
}

#[tokio::test]
async fn a_dead_lettered_order_compensated_by_hand_is_cancelled_with_everything_restored() {
    let mut mesh = TestMesh::start(&["alpha", "beta"], &["u1"]).await;
    let (dl, _) = dead_letter_alpha(&mut mesh).await;
    mesh.channel("alpha").restart().await;
    let mut admin = admin(&mut mesh).await;
    let order = admin
        .compensate_order(authed(CompensateOrderRequest {
            order_id: "o-1".into(),
            reason: "channel alpha was down for an hour".into(),
        }))
        .await
        .unwrap()
        .into_inner()
        .order
        .unwrap();
    assert!(matches!(
        order.state(),
        OrderState::Compensating | OrderState::Cancelled
    ));
    let settled = mesh.settled("o-1").await;
    assert_eq!(settled.state(), OrderState::Cancelled, "{settled:?}");
    let compensated = settled
        .history
        .iter()
        .find(|h| h.kind == "admin_compensate")
        .expect("the admin action is in the history");
    assert_eq!(compensated.detail, "channel alpha was down for an hour");
    assert_eq!(mesh.balance("alpha", "u1").await, START_POINTS);
    assert_eq!(mesh.balance("beta", "u1").await, START_POINTS);

    // The stale deduct, sent again after its refund, is refused by the barrier.
    admin
        .redrive_dead_letter(authed(RedriveDeadLetterRequest {
            id: dl.id.clone(),
            note: "the channel is back".into(),
        }))
        .await
        .unwrap();
    let alpha = mesh.channels["alpha"].ledger.clone();
    let (order_id, user) = (
        jifen_mesh::domain::OrderId::parse("o", "o-1").unwrap(),
        jifen_mesh::domain::UserId::parse("u", "u1").unwrap(),
    );
    let entry = alpha.deduction(&order_id, &user).await.unwrap();
    assert_eq!(
        (entry.state, entry.points),
        (jifen_mesh::barrier::LedgerState::Refunded, 0)
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(mesh.balance("alpha", "u1").await, START_POINTS);
    assert_eq!(mesh.settled("o-1").await.state(), OrderState::Cancelled);
    assert_mesh_consistent(&mesh).await;
}

#[tokio::test]
async fn a_poison_message_is_dead_lettered_at_once_with_its_reason() {
    let mut mesh = TestMesh::start(&["alpha"], &["u1"]).await;
    let js = jetstream::new(mesh.nats.connect().await);
    let mut headers = HeaderMap::new();
    headers.insert(async_nats::header::NATS_MESSAGE_ID, "poison-1");
    headers.insert("Jifen-Order-Id", "o-poison");
    js.publish_with_headers(
        "jifen.cmd.channel.alpha.deduct",
        headers,
        "\u{ff}\u{ff}not protobuf".into(),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    let admin = admin(&mut mesh).await;
    let dl = one_dead_letter(&admin, "o-poison").await;
    assert_eq!(dl.deliveries, 1);
    assert!(
        dl.last_error.contains("undecodable command"),
        "{}",
        dl.last_error
    );
    assert!(
        dl.payload_json.contains("undecodable_hex"),
        "{}",
        dl.payload_json
    );
}

#[tokio::test]
async fn deliveries_that_run_out_while_the_forwarder_is_down_are_dead_lettered_when_it_returns() {
    let mut mesh = TestMesh::start(&["alpha"], &["u1"]).await;
    mesh.stop_connector("alpha").await;
    mesh.stop_mall().await;
    let js = jetstream::new(mesh.nats.connect().await);
    // A handler that takes messages and dies before acking them: the same consumer group as
    // alpha's connector, two deliveries, a short ack wait.
    let stream = js.get_stream("JIFEN_CMD").await.unwrap();
    let consumer = stream
        .create_consumer(pull::Config {
            durable_name: Some("channel-alpha".into()),
            filter_subject: "jifen.cmd.channel.alpha.*".into(),
            ack_wait: Duration::from_millis(300),
            max_deliver: 2,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut headers = HeaderMap::new();
    headers.insert(
        async_nats::header::NATS_MESSAGE_ID,
        "o-lost:deduct:alpha:u1",
    );
    headers.insert("Jifen-Order-Id", "o-lost");
    let sequence = js
        .publish_with_headers("jifen.cmd.channel.alpha.deduct", headers, "x".into())
        .await
        .unwrap()
        .await
        .unwrap()
        .sequence;
    for _ in 0..2 {
        let mut batch = consumer
            .fetch()
            .max_messages(1)
            .expires(Duration::from_secs(2))
            .messages()
            .await
            .unwrap();
        assert!(batch.next().await.is_some(), "a delivery");
    }
    // Deliveries are exhausted once the last ack wait passes; the server notices on the next
    // pull, raises the advisory, and the advisory stream keeps it.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let mut batch = consumer
        .fetch()
        .max_messages(1)
        .expires(Duration::from_secs(1))
        .messages()
        .await
        .unwrap();
    assert!(batch.next().await.is_none(), "no third delivery");
    let advisories = js.get_stream("JIFEN_ADVISORY").await.unwrap();
    eventually(
        "the max-deliveries advisory",
        Duration::from_secs(10),
        || {
            let mut advisories = advisories.clone();
            async move { (advisories.info().await.ok()?.state.messages > 0).then_some(()) }
        },
    )
    .await;

    mesh.start_mall().await;
    let admin = admin(&mut mesh).await;
    let dl = one_dead_letter(&admin, "o-lost").await;
    assert_eq!(dl.consumer, "channel-alpha");
    assert_eq!(dl.origin_sequence, sequence);
    assert_eq!(dl.deliveries, 2);
    assert!(
        dl.last_error.contains("deliveries ran out"),
        "{}",
        dl.last_error
    );
    // The original left its work queue once the copy was stored.
    let gone = eventually("the original deleted", Duration::from_secs(10), || {
        let stream = stream.clone();
        async move { stream.get_raw_message(sequence).await.err() }
    })
    .await;
    assert_eq!(
        gone.kind(),
        jetstream::stream::RawMessageErrorKind::NoMessageFound
    );
}

#[tokio::test]
async fn admin_calls_need_the_token_and_unknown_or_discarded_letters_are_not_found() {
    let mut mesh = TestMesh::start(&["alpha"], &["u1"]).await;
    let mut admin = admin(&mut mesh).await;
    let list = ListDeadLettersRequest {
        order_id: String::new(),
        consumer: String::new(),
        page_size: 0,
        page_token: String::new(),
    };
    assert_status(
        admin.list_dead_letters(Request::new(list.clone())).await,
        Code::Unauthenticated,
        "token",
    );
    let mut wrong = Request::new(list.clone());
    wrong
        .metadata_mut()
        .insert("authorization", "Bearer not-the-token".parse().unwrap());
    assert_status(
        admin.list_dead_letters(wrong).await,
        Code::Unauthenticated,
        "token",
    );
    // Every action says why, a redrive too.
    assert_status(
        admin
            .redrive_dead_letter(authed(RedriveDeadLetterRequest {
                id: "dlq:JIFEN_CMD:999".into(),
                note: String::new(),
            }))
            .await,
        Code::InvalidArgument,
        "note",
    );
    assert_status(
        admin
            .redrive_dead_letter(authed(RedriveDeadLetterRequest {
                id: "dlq:JIFEN_CMD:999".into(),
                note: "the channel is back".into(),
            }))
            .await,
        Code::NotFound,
        "unknown dead letter",
    );

    // A real dead letter: discarded, it cannot be redriven.
    let js = jetstream::new(mesh.nats.connect().await);
    let mut headers = HeaderMap::new();
    headers.insert(async_nats::header::NATS_MESSAGE_ID, "poison-2");
    headers.insert("Jifen-Order-Id", "o-x");
    js.publish_with_headers("jifen.cmd.channel.alpha.refund", headers, "\u{ff}".into())
        .await
        .unwrap()
        .await
        .unwrap();
    let dl = one_dead_letter(&admin, "o-x").await;
    // A discard leaves only its note behind: one is required, by the server too.
    assert_status(
        admin
            .discard_dead_letter(authed(DiscardDeadLetterRequest {
                id: dl.id.clone(),
                note: " ".into(),
            }))
            .await,
        Code::InvalidArgument,
        "note",
    );
    admin
        .discard_dead_letter(authed(DiscardDeadLetterRequest {
            id: dl.id.clone(),
            note: "garbage from a test".into(),
        }))
        .await
        .unwrap();
    assert_status(
        admin
            .redrive_dead_letter(authed(RedriveDeadLetterRequest {
                id: dl.id.clone(),
                note: "the channel is back".into(),
            }))
            .await,
        Code::NotFound,
        "unknown dead letter",
    );
    assert!(dead_letters(&mut admin, "o-x").await.is_empty());
    // Closed, it still answers: the id in the order's history leads to what was done and why.
    let closed = admin
        .get_dead_letter(authed(jifen_proto::v1::GetDeadLetterRequest {
            id: dl.id.clone(),
        }))
        .await
        .unwrap()
        .into_inner()
        .dead_letter
        .unwrap();
    assert_eq!(closed.state, "DISCARDED");
    assert_eq!(closed.note, "garbage from a test");
}
