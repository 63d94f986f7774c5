//! The operator's console over HTTP (DESIGN §10): login and sessions, CSRF on every change,
//! each action changing the order and its history, paging and filters.

use jifen_proto::v1::OrderState;
use jifen_tests::TestMesh;
use jifen_tests::mesh::ADMIN_TOKEN;
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, COOKIE, LOCATION, SET_COOKIE};
use tonic_health::pb::health_check_response::ServingStatus;

use crate::admin::dead_letter_alpha;

/// A browser without cookies of its own: the test carries the session cookie.
pub(crate) struct Browser {
    pub(crate) http: reqwest::Client,
    pub(crate) base: String,
    pub(crate) cookie: Option<String>,
}

impl Browser {
    pub(crate) fn new(mesh: &mut TestMesh) -> Self {
        Self {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            base: mesh.mall().console.clone(),
            cookie: None,
        }
    }

    pub(crate) fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header(ACCEPT, "text/html");
        if let Some(cookie) = &self.cookie {
            request = request.header(COOKIE, cookie);
        }
        request
    }

    pub(crate) async fn get(&self, path: &str) -> (StatusCode, String) {
        let response = self
            .request(reqwest::Method::GET, path)
            .send()
            .await
            .unwrap();
        (response.status(), response.text().await.unwrap())
    }

    /// Posts a form; answers the status and where it redirects (or, without a redirect, the
    /// page: a confirmation step).
    pub(crate) async fn post(&self, path: &str, form: &[(&str, &str)]) -> (StatusCode, String) {
        let body: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let response = self
            .request(reqwest::Method::POST, path)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        match response.headers().get(LOCATION) {
            Some(location) => (status, location.to_str().unwrap().to_owned()),
            None => (status, response.text().await.unwrap()),
        }
    }

    pub(crate) async fn login(&mut self, token: &str) -> reqwest::Response {
        let body: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("token", token)
            .finish();
        let response = self
            .http
            .post(format!("{}/login", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap();
        if let Some(set) = response.headers().get(SET_COOKIE) {
            let set = set.to_str().unwrap();
            self.cookie = set.split(';').next().map(str::to_owned);
        }
        response
    }

    /// The CSRF token of the session, read from a page's forms.
    pub(crate) async fn csrf(&self) -> String {
        let (_, page) = self.get("/orders").await;
        let at = page
            .find("name=\"csrf\" value=\"")
            .expect("a form with the CSRF token");
        let rest = &page[at + "name=\"csrf\" value=\"".len()..];
        rest[..rest.find('"').unwrap()].to_owned()
    }
}

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

#[tokio::test]
async fn dead_letters_are_read_redriven_one_or_many_and_discarded_from_the_console() {
    let mut mesh = TestMesh::start(&["alpha", "beta"], &["u1"]).await;
    let (dl, _) = dead_letter_alpha(&mut mesh).await;
    let mut browser = Browser::new(&mut mesh);
    browser.login(ADMIN_TOKEN).await;

    let (_, list) = browser.get("/dead-letters?consumer=channel-alpha").await;
    assert!(list.contains(&dl.id), "{list}");
    let path = format!(
        "/dead-letters/{}",
        form_urlencoded::byte_serialize(dl.id.as_bytes()).collect::<String>()
    );
    let (status, page) = browser.get(&path).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.contains("jifen.cmd.channel.alpha.deduct") && page.contains("&quot;points&quot;: 100"),
        "{page}"
    );
    let (_, order) = browser.get("/orders/o-1").await;
    assert!(
        order.contains(&dl.id) && order.contains("needs attention"),
        "{order}"
    );
    let (_, flagged) = browser.get("/orders?attention=1").await;
    assert!(flagged.contains("o-1"), "{flagged}");

    // Many at once: a result per item, the failure named.
    mesh.channel("alpha").restart().await;
    let csrf = browser.csrf().await;
    let body: Vec<(&str, &str)> = vec![
        ("csrf", &csrf),
        ("id", &dl.id),
        ("id", "dlq:nope:1:1"),
        ("note", "alpha is back"),
        ("confirmed", "yes"),
    ];
    let response = browser
        .request(reqwest::Method::POST, "/dead-letters/redrive")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(
            form_urlencoded::Serializer::new(String::new())
                .extend_pairs(&body)
                .finish(),
        )
        .send()
        .await
        .unwrap();
    let page = response.text().await.unwrap();
    assert!(page.contains("1 of 2 could not be sent again"), "{page}");
    assert!(
        page.contains("sent again") && page.contains("dlq:nope:1:1"),
        "{page}"
    );
    let done = mesh.settled("o-1").await;
    assert_eq!(done.state(), OrderState::Completed);
    assert!(done.history.iter().any(|h| h.kind == "admin_redrive"));
    let (_, list) = browser.get("/dead-letters").await;
    assert!(
        !list.contains(&dl.id),
        "redriven letters are closed: {list}"
    );

    // Discard needs its note, and keeps it in the order's history.
    mesh.stop_connector("alpha").await;
    mesh.submit("o-2", &[("alpha", "u1", 10)]).await.unwrap();
    mesh.channel("alpha").stop().await;
    mesh.start_connector("alpha").await;
    let admin = crate::admin::admin(&mut mesh).await;
    let second = crate::admin::one_dead_letter(&admin, "o-2").await;
    let path = format!(
        "/dead-letters/{}",
        form_urlencoded::byte_serialize(second.id.as_bytes()).collect::<String>()
    );
    let (status, to) = browser
        .post(
            &format!("{path}/discard"),
            &[("csrf", &csrf), ("note", ""), ("confirmed", "yes")],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(
        to.contains("err="),
        "a discard without a note is refused: {to}"
    );
    let (status, to) = browser
        .post(
            &format!("{path}/discard"),
            &[
                ("csrf", &csrf),
                ("note", "duplicate of o-1, OPS-3"),
                ("confirmed", "yes"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(to.starts_with("/dead-letters?ok="), "{to}");
    let (_, order) = browser.get("/orders/o-2").await;
    assert!(order.contains("OPS-3"), "{order}");
}

#[tokio::test]
async fn orders_page_by_state_and_keyset() {
    let mut mesh = TestMesh::start(&["alpha"], &["u1"]).await;
    for id in ["p-1", "p-2", "p-3"] {
        mesh.submit(id, &[("alpha", "u1", 10)]).await.unwrap();
        mesh.settled(id).await;
    }
    let rejected = mesh.submit("p-4", &[("alpha", "u1", 1_000_000)]).await;
    assert!(
        rejected.is_err(),
        "the pre-check refuses it: it is never stored"
    );
    let mut browser = Browser::new(&mut mesh);
    browser.login(ADMIN_TOKEN).await;

    let (_, first) = browser.get("/orders?limit=2").await;
    assert!(
        first.contains("p-3") && first.contains("p-2") && !first.contains(">p-1<"),
        "{first}"
    );
    assert!(
        first.contains("COMPLETED") && first.contains("<b>3</b>"),
        "counts per state: {first}"
    );
    let at = first.find("&amp;after=").expect("a link to the next page");
    let href_start = first[..at].rfind("href=\"").unwrap() + "href=\"".len();
    let href = first[href_start..first[href_start..].find('"').unwrap() + href_start]
        .replace("&amp;", "&");
    let (_, second) = browser.get(&href).await;
    assert!(
        second.contains("p-1") && !second.contains("p-3"),
        "{second}"
    );

    let (_, cancelled) = browser.get("/orders?state=CANCELLED").await;
    assert!(cancelled.contains("No orders."), "{cancelled}");
    let (status, to) = {
        let response = browser
            .request(reqwest::Method::GET, "/orders?q=p-2")
            .send()
            .await
            .unwrap();
        (
            response.status(),
            response.headers()[LOCATION].to_str().unwrap().to_owned(),
        )
    };
    assert_eq!(
        (status, to.as_str()),
        (StatusCode::SEE_OTHER, "/orders/p-2")
    );
    let (status, page) = browser.get("/channels").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.contains("alpha") && page.contains("channel-alpha"),
        "{page}"
    );
    let (status, page) = browser.get("/reconcile?order=p-1").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("1 order(s) checked"), "{page}");
    let (status, _) = browser.get("/stuck?older_than=1s").await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn a_bus_that_takes_nothing_shows_on_every_page_until_it_is_back() {
    let mut mesh = TestMesh::start(&["alpha"], &["u1"]).await;
    let mut browser = Browser::new(&mut mesh);
    browser.login(ADMIN_TOKEN).await;
    let (_, calm) = browser.get("/orders").await;
    assert!(!calm.contains("The bus does not take messages"), "{calm}");

    mesh.nats.kill().await;
    // The order is taken (its commands wait in the outbox), and the relay cannot send them.
    mesh.submit("bus-1", &[("alpha", "u1", 5)]).await.unwrap();
    jifen_tests::eventually(
        "the console to say the bus takes nothing",
        std::time::Duration::from_secs(30),
        || async {
            let (_, page) = browser.get("/orders").await;
            page.contains("The bus does not take messages")
                .then_some(())
        },
    )
    .await;
    assert_eq!(jifen_mesh::metrics::BUS_PUBLISH_FAILING.get(), 1);
    // The health service says so under `jifen.bus`; the server itself stays SERVING (orders
    // still wait safely in the outbox).
    let endpoint = mesh.mall().server.endpoint();
    let bus = || bus_health(endpoint.clone(), "jifen.bus");
    assert_eq!(bus().await, ServingStatus::NotServing);
    assert_eq!(
        bus_health(endpoint.clone(), "").await,
        ServingStatus::Serving
    );

    mesh.nats.restart().await;
    assert_eq!(mesh.settled("bus-1").await.state(), OrderState::Completed);
    jifen_tests::eventually(
        "the banner to go",
        std::time::Duration::from_secs(30),
        || async {
            let (_, page) = browser.get("/orders").await;
            (!page.contains("The bus does not take messages")).then_some(())
        },
    )
    .await;
    assert_eq!(jifen_mesh::metrics::BUS_PUBLISH_FAILING.get(), 0);
    assert_eq!(bus().await, ServingStatus::Serving);
}

async fn bus_health(endpoint: String, service: &str) -> ServingStatus {
    let channel = tonic::transport::Channel::from_shared(endpoint)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let status = tonic_health::pb::health_client::HealthClient::new(channel)
        .check(tonic_health::pb::HealthCheckRequest {
            service: service.to_owned(),
        })
        .await
        .unwrap()
        .into_inner()
        .status;
    ServingStatus::try_from(status).unwrap()
}

#[tokio::test]
async fn the_console_opens_on_what_needs_attention_when_anything_does() {
    let mut mesh = TestMesh::start(&["alpha"], &["u1"]).await;
    mesh.stop_connector("alpha").await;
    mesh.stop_mall().await;
    mesh.stuck_after = std::time::Duration::from_millis(300);
    mesh.start_mall().await;
    let mut browser = Browser::new(&mut mesh);
    browser.login(ADMIN_TOKEN).await;
    let opens_on = |browser: &Browser| {
        let request = browser.request(reqwest::Method::GET, "/");
        async move {
            let response = request.send().await.unwrap();
            response
                .headers()
                .get(LOCATION)
                .and_then(|l| l.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        }
    };
    assert_eq!(opens_on(&browser).await, "/orders");
    mesh.submit("late-o", &[("alpha", "u1", 5)]).await.unwrap();
    jifen_tests::eventually(
        "the console to open on the flagged order",
        std::time::Duration::from_secs(15),
        || async { (opens_on(&browser).await == "/orders?attention=1").then_some(()) },
    )
    .await;
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

#[tokio::test]
async fn dead_letters_are_counted_filtered_paged_and_all_matching_redriven() {
    let mut mesh = TestMesh::start(&["alpha", "beta"], &["u1"]).await;
    let (first, _) = dead_letter_alpha(&mut mesh).await;
    mesh.stop_connector("alpha").await;
    mesh.channel("alpha").restart().await;
    mesh.submit("o-2", &[("alpha", "u1", 10)]).await.unwrap();
    mesh.channel("alpha").stop().await;
    mesh.start_connector("alpha").await;
    let admin = crate::admin::admin(&mut mesh).await;
    crate::admin::one_dead_letter(&admin, "o-2").await;
    let mut browser = Browser::new(&mut mesh);
    browser.login(ADMIN_TOKEN).await;

    let (_, page) = browser.get("/dead-letters?consumer=channel-alpha").await;
    assert!(
        page.contains("of <strong>2</strong> open dead letter(s)"),
        "{page}"
    );
    assert!(
        page.contains("Redrive all 2 matching this filter"),
        "{page}"
    );
    let (_, page) = browser.get("/dead-letters?q=o-1").await;
    assert!(page.contains("of <strong>1</strong>"), "{page}");
    let (_, page) = browser.get("/dead-letters?q=no+such+text%25").await;
    assert!(page.contains("No open dead letter matches."), "{page}");
    let (_, page) = browser
        .get("/dead-letters?consumer=channel-alpha&from=2000-01-01T00:00&to=2000-01-02T00:00")
        .await;
    assert!(page.contains("No open dead letter matches."), "{page}");

    // All matching, after a confirmation that says how many.
    mesh.channel("alpha").restart().await;
    let csrf = browser.csrf().await;
    let all = [
        ("csrf", csrf.as_str()),
        ("all_matching", "1"),
        ("consumer", "channel-alpha"),
        ("note", "alpha is back, all of them"),
    ];
    let (status, asked) = browser.post("/dead-letters/redrive", &all).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        asked.contains("2 dead letter(s) are sent again") && asked.contains(&first.id),
        "{asked}"
    );
    let mut confirmed = all.to_vec();
    confirmed.push(("confirmed", "yes"));
    let (status, done) = browser.post("/dead-letters/redrive", &confirmed).await;
    assert_eq!(status, StatusCode::OK);
    assert!(done.contains("2 dead letter(s) sent again."), "{done}");
    assert_eq!(mesh.settled("o-1").await.state(), OrderState::Completed);
    assert_eq!(mesh.settled("o-2").await.state(), OrderState::Completed);
}
