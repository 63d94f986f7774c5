//! Changes from the console: the CSRF token, the confirmation step, the order's history.

use jifen_proto::v1::OrderState;
use jifen_tests::TestMesh;
use jifen_tests::mesh::ADMIN_TOKEN;
use reqwest::StatusCode;

use super::Browser;

#[tokio::test]
async fn a_change_without_the_csrf_token_changes_nothing_and_with_it_goes_into_the_history() {
    let mut mesh = TestMesh::start(&["alpha", "beta"], &["u1"]).await;
    mesh.stop_connector("alpha").await;
    mesh.submit("c-1", &[("alpha", "u1", 100), ("beta", "u1", 50)])
        .await
        .unwrap();
    let mut browser = Browser::new(&mut mesh);
    browser.login(ADMIN_TOKEN).await;

    let forged = browser
        .post("/orders/c-1/compensate", &[("note", "forged")])
        .await;
    assert_eq!(forged.0, StatusCode::FORBIDDEN);
    let wrong = browser
        .post(
            "/orders/c-1/compensate",
            &[("csrf", "guess"), ("note", "forged")],
        )
        .await;
    assert_eq!(wrong.0, StatusCode::FORBIDDEN);
    let untouched = mesh.order_when("c-1", "to stay pending", |_| true).await;
    assert_eq!(untouched.state(), OrderState::Pending);

    let csrf = browser.csrf().await;
    let (status, to) = browser
        .post(
            "/orders/c-1/retry",
            &[("csrf", &csrf), ("note", "alpha back soon")],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(to.starts_with("/orders/c-1?ok="), "{to}");
    // The banner shows what the console itself said, signed for this session...
    let (_, shown) = browser.get(&to).await;
    assert!(shown.contains("Open commands sent again."), "{shown}");
    // ...and never words a link of anyone else's puts in the URL.
    let (_, forged) = browser
        .get("/orders/c-1?err=Your+account+is+locked.+Call+0800-FAKE")
        .await;
    assert!(!forged.contains("0800-FAKE"), "{forged}");
    let tampered = to.replace("ok=Open", "ok=Closed");
    let (_, tampered) = browser.get(&tampered).await;
    assert!(!tampered.contains("Closed commands"), "{tampered}");
    // A destructive action first asks, saying what will happen, and changes nothing.
    let (status, asked) = browser
        .post(
            "/orders/c-1/compensate",
            &[("csrf", &csrf), ("note", "customer gave up, ticket 77")],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        asked.contains("Yes, compensate")
            && asked.contains("CANCELLED")
            && asked.contains("ticket 77"),
        "{asked}"
    );
    let still = mesh.order_when("c-1", "to stay pending", |_| true).await;
    assert_eq!(still.state(), OrderState::Pending);
    let (status, to) = browser
        .post(
            "/orders/c-1/compensate",
            &[
                ("csrf", &csrf),
                ("note", "customer gave up, ticket 77"),
                ("confirmed", "yes"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(to.starts_with("/orders/c-1?ok="), "{to}");
    mesh.start_connector("alpha").await;
    let cancelled = mesh.settled("c-1").await;
    assert_eq!(cancelled.state(), OrderState::Cancelled);
    let kinds: Vec<&str> = cancelled.history.iter().map(|h| h.kind.as_str()).collect();
    assert!(
        kinds.contains(&"admin_retry") && kinds.contains(&"admin_compensate"),
        "{kinds:?}"
    );
    assert!(
        cancelled
            .history
            .iter()
            .any(|h| h.detail.contains("ticket 77"))
    );
    assert!(
        cancelled
            .history
            .iter()
            .any(|h| h.detail.contains("alpha back soon"))
    );
    let (_, page) = browser.get("/orders/c-1").await;
    assert!(
        page.contains("ticket 77") && page.contains("CANCELLED"),
        "{page}"
    );

    // A settled order refuses, and the page says why.
    let (status, to) = browser
        .post(
            "/orders/c-1/compensate",
            &[("csrf", &csrf), ("note", "again"), ("confirmed", "yes")],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(to.contains("err="), "{to}");
}
