//! Logging in: nothing without a session, the page asked for kept through the login.

use jifen_tests::TestMesh;
use jifen_tests::mesh::ADMIN_TOKEN;
use reqwest::StatusCode;
use reqwest::header::{LOCATION, SET_COOKIE};

use super::Browser;

#[tokio::test]
async fn nothing_is_shown_without_logging_in_with_the_token() {
    let mut mesh = TestMesh::start(&["alpha"], &["u1"]).await;
    let mut browser = Browser::new(&mut mesh);

    let page = browser
        .request(reqwest::Method::GET, "/orders")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::SEE_OTHER);
    assert_eq!(page.headers()[LOCATION], "/login?next=%2Forders");
    // A client that is no browser gets 401.
    let api = browser
        .http
        .get(format!("{}/orders", browser.base))
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), StatusCode::UNAUTHORIZED);
    // A forged cookie is no session.
    browser.cookie = Some("jifen_console=forged".into());
    assert_eq!(browser.get("/orders").await.0, StatusCode::SEE_OTHER);

    let wrong = browser.login("not-the-token").await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert!(wrong.text().await.unwrap().contains("Wrong token"));
    let right = browser.login(ADMIN_TOKEN).await;
    assert_eq!(right.status(), StatusCode::SEE_OTHER);
    let cookie = right.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let (status, page) = browser.get("/orders").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("<h1>Orders</h1>"), "{page}");
    let headers = browser
        .request(reqwest::Method::GET, "/orders")
        .send()
        .await
        .unwrap();
    let csp = headers.headers()["content-security-policy"]
        .to_str()
        .unwrap();
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");

    // Logging out needs the CSRF token too, and ends the session.
    assert_eq!(browser.post("/logout", &[]).await.0, StatusCode::FORBIDDEN);
    let csrf = browser.csrf().await;
    let (status, to) = browser.post("/logout", &[("csrf", &csrf)]).await;
    assert_eq!((status, to.as_str()), (StatusCode::SEE_OTHER, "/login"));
    assert_eq!(browser.get("/orders").await.0, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn the_page_asked_for_is_kept_through_the_login_and_only_pages_of_the_console() {
    let mut mesh = TestMesh::start(&["alpha"], &["u1"]).await;
    mesh.submit("k-1", &[("alpha", "u1", 10)]).await.unwrap();
    let mut browser = Browser::new(&mut mesh);
    let response = browser
        .request(reqwest::Method::GET, "/orders/k-1?x=1")
        .send()
        .await
        .unwrap();
    let to = response.headers().get(LOCATION).unwrap().to_str().unwrap();
    assert_eq!(to, "/login?next=%2Forders%2Fk-1%3Fx%3D1");
    let (_, login) = browser.get(to).await;
    assert!(
        login.contains("name=\"next\" value=\"/orders/k-1?x=1\""),
        "{login}"
    );
    let login_with = |next: &str| {
        form_urlencoded::Serializer::new(String::new())
            .append_pair("token", ADMIN_TOKEN)
            .append_pair("next", next)
            .finish()
    };
    for (next, expected) in [
        ("/orders/k-1?x=1", "/orders/k-1?x=1"),
        ("https://evil.example/", "/"),
        ("//evil.example/", "/"),
    ] {
        let response = browser
            .http
            .post(format!("{}/login", browser.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(login_with(next))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        assert_eq!(
            response.headers().get(LOCATION).unwrap().to_str().unwrap(),
            expected
        );
    }
    // A forged form is refused with a page that leads back.
    browser.login(ADMIN_TOKEN).await;
    let (status, page) = browser
        .post("/orders/k-1/retry", &[("csrf", "guess"), ("note", "x")])
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(page.contains("Back to the console"), "{page}");
}
