//! What the pages show: orders by state and page, what needs attention first, the bus's state.

use jifen_proto::v1::OrderState;
use jifen_tests::TestMesh;
use jifen_tests::mesh::ADMIN_TOKEN;
use reqwest::StatusCode;
use reqwest::header::LOCATION;
use tonic_health::pb::health_check_response::ServingStatus;

use super::Browser;

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
