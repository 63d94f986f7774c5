//! Operators with names and roles (DESIGN §11): a viewer reads and cannot act, over gRPC or
//! the console; every action carries its operator's name into the order's history and the
//! audit log; wrong tokens are slowed down, then refused with 429 / RESOURCE_EXHAUSTED.

use jifen_proto::v1::admin_service_client::AdminServiceClient;
use jifen_proto::v1::{CompensateOrderRequest, ListStuckOrdersRequest, OrderState};
use jifen_tests::TestMesh;
use jifen_tests::mesh::{ADMIN_TOKEN, OPERATOR_TOKEN, VIEWER_TOKEN};
use reqwest::StatusCode;
use sqlx::Row;
use tonic::transport::Channel;
use tonic::{Code, Request};

use crate::admin::admin;
use crate::console::Browser;

fn as_operator<T>(token: &str, message: T) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

async fn compensate(
    admin: &mut AdminServiceClient<Channel>,
    token: &str,
    order_id: &str,
    reason: &str,
) -> Result<(), tonic::Status> {
    admin
        .compensate_order(as_operator(
            token,
            CompensateOrderRequest {
                order_id: order_id.into(),
                reason: reason.into(),
            },
        ))
        .await
        .map(drop)
}

/// The audit log's lines: (operator, action, target, result), oldest first.
async fn audit(mesh: &TestMesh) -> Vec<(String, String, String, String)> {
    let pool = mesh.mall_db_pool().await;
    sqlx::query("SELECT operator, action, target, result FROM audit_log ORDER BY id")
        .fetch_all(&pool)
        .await
        .unwrap()
        .iter()
        .map(|r| {
            (
                r.get("operator"),
                r.get("action"),
                r.get("target"),
                r.get("result"),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_viewer_reads_and_an_operator_acts_under_their_name() {
    let mut mesh = TestMesh::start(&["alpha", "beta"], &["u1"]).await;
    mesh.stop_connector("alpha").await;
    mesh.submit("o-1", &[("alpha", "u1", 100), ("beta", "u1", 50)])
        .await
        .unwrap();
    let mut admin = admin(&mut mesh).await;

    // The viewer reads; acting is refused and changes nothing.
    admin
        .list_stuck_orders(as_operator(
            VIEWER_TOKEN,
            ListStuckOrdersRequest {
                older_than_seconds: 0,
                page_size: 10,
                page_token: String::new(),
            },
        ))
        .await
        .unwrap();
    let refused = compensate(&mut admin, VIEWER_TOKEN, "o-1", "vera tries").await;
    assert_eq!(refused.unwrap_err().code(), Code::PermissionDenied);
    assert_eq!(mesh.order("o-1").await.state(), OrderState::Pending);

    // The operator acts; the history and the audit name them.
    compensate(&mut admin, OPERATOR_TOKEN, "o-1", "ticket 9")
        .await
        .unwrap();
    mesh.start_connector("alpha").await;
    let order = mesh.settled("o-1").await;
    assert_eq!(order.state(), OrderState::Cancelled);
    let by_li = order
        .history
        .iter()
        .find(|h| h.kind == "admin_compensate")
        .expect("the compensation in the history");
    assert_eq!(by_li.actor, "li");
    assert!(
        order
            .history
            .iter()
            .filter(|h| h.kind != "admin_compensate")
            .all(|h| h.actor.is_empty()),
        "the machine's own steps name nobody: {:?}",
        order.history
    );
    let lines = audit(&mesh).await;
    assert!(
        lines
            .iter()
            .any(|(who, action, target, result)| who == "vera"
                && action == "CompensateOrder"
                && target == "o-1"
                && result.starts_with("refused")),
        "{lines:?}"
    );
    assert!(
        lines.contains(&(
            "li".into(),
            "CompensateOrder".into(),
            "o-1".into(),
            "ok".into()
        )),
        "{lines:?}"
    );

    // The single legacy token still works, as operator `admin`.
    let settled = compensate(&mut admin, ADMIN_TOKEN, "o-1", "again").await;
    assert_eq!(settled.unwrap_err().code(), Code::FailedPrecondition);
    assert!(
        audit(&mesh)
            .await
            .iter()
            .any(|(who, _, _, result)| who == "admin" && result.starts_with("failed")),
    );
}

#[tokio::test]
async fn the_console_shows_who_acted_and_refuses_a_viewer_with_403() {
    let mut mesh = TestMesh::start(&["alpha", "beta"], &["u1"]).await;
    mesh.stop_connector("alpha").await;
    mesh.submit("c-1", &[("alpha", "u1", 100), ("beta", "u1", 50)])
        .await
        .unwrap();

    let mut vera = Browser::new(&mut mesh);
    assert_eq!(
        vera.login(VIEWER_TOKEN).await.status(),
        StatusCode::SEE_OTHER
    );
    let (status, page) = vera.get("/orders/c-1").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("vera"), "the page names who is logged in");
    let csrf = vera.csrf().await;
    let (status, _) = vera
        .post("/orders/c-1/compensate", &[("csrf", &csrf), ("note", "x")])
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(mesh.order("c-1").await.state(), OrderState::Pending);

    let mut li = Browser::new(&mut mesh);
    li.login(OPERATOR_TOKEN).await;
    let csrf = li.csrf().await;
    let (status, to) = li
        .post(
            "/orders/c-1/compensate",
            &[("csrf", &csrf), ("note", "ticket 12"), ("confirmed", "yes")],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(to.contains("ok="), "{to}");
    let (_, page) = li.get("/orders/c-1").await;
    assert!(page.contains("by li"), "{page}");
    // The audit page shows both: vera refused, li done.
    let (status, audit) = vera.get("/audit").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        audit.contains("vera") && audit.contains("refused") && audit.contains("ticket 12"),
        "{audit}"
    );
}

#[tokio::test]
async fn wrong_tokens_slow_down_then_are_refused_with_retry_after() {
    let mut mesh = TestMesh::start(&["alpha"], &["u1"]).await;
    let admin = admin(&mut mesh).await;
    let started = std::time::Instant::now();
    let guesses = (0..jifen_mall::operators::Throttle::LIMIT).map(|i| {
        let mut admin = admin.clone();
        async move { compensate(&mut admin, &format!("guess-{i}"), "o", "x").await }
    });
    for result in futures_util::future::join_all(guesses).await {
        assert_eq!(result.unwrap_err().code(), Code::Unauthenticated);
    }
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(250),
        "wrong tokens are answered late"
    );
    // Now even the right token from this address waits out the window.
    let locked = compensate(&mut admin.clone(), OPERATOR_TOKEN, "o", "x")
        .await
        .unwrap_err();
    assert_eq!(locked.code(), Code::ResourceExhausted);
    assert!(locked.metadata().get("retry-after").is_some(), "{locked:?}");
    let refusals = audit(&mesh)
        .await
        .into_iter()
        .filter(|(who, _, _, result)| who.is_empty() && result.starts_with("refused"))
        .count();
    assert_eq!(refusals, jifen_mall::operators::Throttle::LIMIT as usize);

    // The console shares the count: the login page answers 429 with Retry-After.
    let mut browser = Browser::new(&mut mesh);
    let answer = browser.login(OPERATOR_TOKEN).await;
    assert_eq!(answer.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(answer.headers().get("retry-after").is_some());
}
