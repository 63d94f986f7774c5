//! Dead letters on the console: read, redriven one, picked or all matching, discarded; counted, filtered, paged.

use jifen_proto::v1::OrderState;
use jifen_tests::TestMesh;
use jifen_tests::mesh::ADMIN_TOKEN;
use reqwest::StatusCode;

use super::Browser;
use crate::admin::dead_letter_alpha;

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
