//! The worked examples of docs/channels.md, each a partner API nobody here would design, run
//! through the very config file the docs show (DESIGN §9): orders end to end with faults, and
//! `channel-check` against each.

use std::sync::atomic::Ordering;

use jifen_adapter::{AdapterConfig, CallKey, HttpChannel};
use jifen_channel::check;
use jifen_proto::v1::{Order, OrderState};
use jifen_tests::TestMesh;
use jifen_tests::invariants::assert_mesh_consistent;
use jifen_tests::mesh::START_POINTS;
use jifen_tests::partner::gateway::Gateway;
use jifen_tests::partner::hmac_json::HmacApi;
use jifen_tests::partner::oauth::OauthApi;
use jifen_tests::partner::xml_api::XmlApi;
use jifen_tests::partner::{Book, Faults, Served, TradeState};
use tonic::Code;

const EVERYONE: [&str; 6] = ["u1", "u2", "u3", "u4", "d1", "d2"];

fn key<'a>(order_id: &'a str, user_id: &'a str, points: i64) -> CallKey<'a> {
    CallKey {
        order_id,
        user_id,
        points,
        captured: None,
    }
}

/// Runs a dozen orders over `channel` (a partner API with faults armed) beside alpha, and two
/// that alpha's rejection cancels after the partner deducted; checks that each completed order
/// holds exactly its points at the partner, each cancelled one nothing, and returns the
/// completed orders.
async fn orders_through(channel: &str, served: &Served, book: &Book) -> Vec<Order> {
    orders_through_with(channel, served, book, None, &|| {}).await
}

/// [`orders_through`], the connector taking notifications at `notify`, with `mid_run` done
/// halfway through the orders.
async fn orders_through_with(
    channel: &str,
    served: &Served,
    book: &Book,
    notify: Option<std::net::SocketAddr>,
    mid_run: &dyn Fn(),
) -> Vec<Order> {
    let users = ["u1", "u2", "u3", "u4"];
    let doomed = ["d1", "d2"];
    let everyone = [&users[..], &doomed[..]].concat();
    let mut mesh = TestMesh::start(&["alpha"], &everyone).await;
    if let Some(addr) = notify {
        mesh.notify.insert(channel.to_owned(), addr);
    }
    mesh.attach_http_channel(channel, &served.base_url, served.config.clone())
        .await;
    let mut spent = [0_i64; 4];
    for i in 0..12_usize {
        if i == 6 {
            mid_run();
        }
        let points = 125 + i64::try_from(i).unwrap();
        mesh.submit(
            &format!("{channel}-{i}"),
            &[(channel, users[i % 4], points), ("alpha", users[i % 4], 10)],
        )
        .await
        .unwrap();
        spent[i % 4] += points;
    }
    for (i, user) in doomed.iter().enumerate() {
        mesh.submit_doomed(channel, &format!("{channel}-doomed-{i}"), user, 300)
            .await;
    }
    let mut completed = Vec::new();
    for i in 0..12 {
        let order = mesh.settled(&format!("{channel}-{i}")).await;
        assert_eq!(order.state(), OrderState::Completed, "{order:?}");
        completed.push(order);
    }
    for (i, user) in doomed.iter().enumerate() {
        let order = mesh.settled(&format!("{channel}-doomed-{i}")).await;
        assert_eq!(order.state(), OrderState::Cancelled, "{order:?}");
        assert_eq!(
            book.points_of(user),
            Some(START_POINTS),
            "{user} got it back"
        );
    }
    let faults = &book.faults;
    assert_eq!(
        faults.unavailable.load(Ordering::SeqCst),
        0,
        "503s were met"
    );
    assert_eq!(
        faults.lose_answer.load(Ordering::SeqCst),
        0,
        "answers were lost"
    );
    assert_eq!(
        faults.slow.load(Ordering::SeqCst),
        0,
        "answers came too late"
    );
    assert_eq!(faults.too_many.load(Ordering::SeqCst), 0, "429s were met");
    for (user, spent) in users.iter().zip(spent) {
        assert_eq!(
            book.points_of(user),
            Some(START_POINTS - spent),
            "{user}: nothing taken twice, every cancelled order's points back"
        );
    }
    assert_eq!(book.held(), spent.iter().sum::<i64>());
    assert_mesh_consistent(&mesh).await;
    assert_evidence_kept(&mesh, channel).await;
    completed
}

/// Every completed line's exchanges are kept with its order — the faults among them — and
/// none shows a secret, a token or a signature.
async fn assert_evidence_kept(mesh: &TestMesh, channel: &str) {
    use sqlx::Row;
    let pool = mesh.mall_db_pool().await;
    let rows = sqlx::query(
        "SELECT order_id, call, status, request, answer FROM partner_exchanges WHERE channel_id = $1",
    )
    .bind(channel)
    .fetch_all(&pool)
    .await
    .unwrap();
    let statuses: Vec<i64> = rows.iter().map(|r| r.try_get("status").unwrap()).collect();
    assert!(
        statuses.contains(&200) || statuses.contains(&202),
        "{statuses:?}"
    );
    assert!(
        statuses.iter().any(|s| *s == 503 || *s == 502),
        "the faults are in the evidence: {statuses:?}"
    );
    let deducts = rows
        .iter()
        .filter(|r| r.try_get::<String, _>("call").unwrap() == "deduct")
        .map(|r| r.try_get::<String, _>("order_id").unwrap())
        .collect::<std::collections::HashSet<_>>();
    assert!(
        deducts.len() >= 12,
        "each order's deduct is kept: {deducts:?}"
    );
    for row in &rows {
        let request: String = row.try_get("request").unwrap();
        for secret in ["secret-for-tests", "Bearer tok-"] {
            assert!(!request.contains(secret), "{request}");
        }
        for signed in ["sign=", "X-Signature: ", "x-signature: "] {
            if let Some(at) = request.find(signed) {
                assert!(
                    request[at + signed.len()..].starts_with("<redacted>"),
                    "{request}"
                );
            }
        }
    }
}

fn arm(faults: &Faults) {
    faults.unavailable.store(3, Ordering::SeqCst);
    faults.lose_answer.store(3, Ordering::SeqCst);
    faults.delay_ms.store(20, Ordering::SeqCst);
    faults.too_many.store(3, Ordering::SeqCst);
    // Two answers come after the caller gave up (the examples' timeout is 3 s).
    faults.slow_ms.store(3_500, Ordering::SeqCst);
    faults.slow.store(2, Ordering::SeqCst);
}

#[tokio::test]
async fn a_signed_form_gateway_refunds_by_its_own_trade_no_through_faults() {
    let (gateway, served) = Gateway::start(&EVERYONE, START_POINTS).await;
    arm(&gateway.book.faults);
    for order in orders_through("gamma", &served, &gateway.book).await {
        let line = order
            .lines
            .iter()
            .find(|l| l.channel_id == "gamma")
            .unwrap();
        let trade_no = line.captured.get("trade_no").expect("the trade_no is kept");
        let trade = gateway.book.query_by_trade_no(trade_no).unwrap();
        assert_eq!(trade.state, TradeState::Done);
        assert_eq!(trade.points, line.points, "1.25 yuan is 125 points");
    }
}

#[tokio::test]
async fn an_hmac_signed_api_with_signed_answers_runs_through_faults_and_forgeries() {
    let (api, served) = HmacApi::start(&EVERYONE, START_POINTS).await;
    arm(&api.book.faults);
    api.bad_signature.store(3, Ordering::SeqCst);
    orders_through("epsilon", &served, &api.book).await;
    assert_eq!(
        api.bad_signature.load(Ordering::SeqCst),
        0,
        "forged answers were met"
    );
}

#[tokio::test]
async fn an_answer_whose_signature_fails_settles_nothing() {
    let (api, served) = HmacApi::start(&["u1"], 1_000).await;
    let channel = HttpChannel::new(AdapterConfig::load(&served.config).unwrap()).unwrap();
    api.bad_signature.store(1, Ordering::SeqCst);
    let forged = channel.deduct(key("o-1", "u1", 250)).await.unwrap_err();
    assert_eq!(forged.code(), Code::Unknown, "{forged:?}");
    assert!(forged.message().contains("signature"), "{forged:?}");
    // Asked again, signed afresh (the partner refuses a nonce it has seen): the truth.
    let asked = channel.query(key("o-1", "u1", 250)).await.unwrap();
    assert_eq!(asked.state, jifen_mesh::barrier::LedgerState::Deducted);
    assert_eq!(asked.points, 250);
    let again = channel.deduct(key("o-1", "u1", 250)).await.unwrap();
    assert_eq!(again.points, 250, "the same request_id, deducted once");
    assert_eq!(api.book.points_of("u1"), Some(750));
}

/// A free port on 127.0.0.1 for a server to take.
fn free_addr() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
}

#[tokio::test]
async fn an_oauth_api_answering_processing_settles_by_notification_and_poll_through_faults() {
    let (api, served) = OauthApi::start(&EVERYONE, START_POINTS).await;
    arm(&api.book.faults);
    // Tokens live 2 s: refreshed before expiry while orders run, and all revoked halfway.
    api.token_lifetime.store(2, Ordering::SeqCst);
    let notify = free_addr();
    api.notify_to(&format!("http://{notify}/notify/zeta"));
    let completed = orders_through_with("zeta", &served, &api.book, Some(notify), &|| {
        api.expire_tokens()
    })
    .await;
    assert!(
        api.tokens_issued.load(Ordering::SeqCst) >= 2,
        "a token was refreshed"
    );
    let notified = api.notified.lock().unwrap().len();
    assert!(
        notified >= 6,
        "the partner notified most redemptions ({notified})"
    );
    let applied = jifen_mesh::metrics::NOTIFICATIONS
        .with_label_values(&["zeta", "applied"])
        .get();
    assert!(
        applied >= 1,
        "notifications settled pending deducts before their poll"
    );
    for order in &completed {
        let line = order.lines.iter().find(|l| l.channel_id == "zeta").unwrap();
        assert!(line.captured["id"].starts_with("R-"), "{line:?}");
    }
}

#[tokio::test]
async fn a_processing_answer_is_polled_until_final_without_notifications() {
    let users = ["u1", "u2"];
    let (api, served) = OauthApi::start(&users, 1_000).await;
    api.processing_ms.store(1_500, Ordering::SeqCst);
    api.fail_next.store(1, Ordering::SeqCst);
    let mut mesh = TestMesh::start(&["alpha"], &users).await;
    mesh.attach_http_channel("zeta", &served.base_url, served.config.clone())
        .await;
    mesh.submit("z-fails", &[("zeta", "u1", 100), ("alpha", "u1", 10)])
        .await
        .unwrap();
    mesh.submit("z-ok", &[("zeta", "u2", 200), ("alpha", "u2", 10)])
        .await
        .unwrap();
    let failed = mesh.settled("z-fails").await;
    assert_eq!(
        failed.state(),
        OrderState::Cancelled,
        "FAILED after processing: {failed:?}"
    );
    let ok = mesh.settled("z-ok").await;
    assert_eq!(ok.state(), OrderState::Completed, "{ok:?}");
    assert!(
        api.queries_for("z-ok:u2") >= 1,
        "settled by polling the query"
    );
    assert_eq!(api.book.points_of("u1"), Some(1_000));
    assert_eq!(api.book.points_of("u2"), Some(800));
    assert_mesh_consistent(&mesh).await;
}

#[tokio::test]
async fn a_token_endpoint_that_keeps_failing_holds_calls_back_and_never_refuses_them() {
    let (api, served) = OauthApi::start(&["u1"], 1_000).await;
    let channel = HttpChannel::new(AdapterConfig::load(&served.config).unwrap()).unwrap();
    api.token_unavailable.store(100, Ordering::SeqCst);
    let held = channel.deduct(key("o-1", "u1", 100)).await.unwrap_err();
    assert_eq!(
        held.code(),
        Code::Unavailable,
        "not sent, try later: {held:?}"
    );
    api.token_unavailable.store(0, Ordering::SeqCst);
    let processing = channel.deduct(key("o-1", "u1", 100)).await.unwrap_err();
    assert!(
        jifen_mesh::connector::is_pending(&processing),
        "{processing:?}"
    );
    // A token revoked mid-run: refreshed once, the call repeated, nothing taken twice.
    api.expire_tokens();
    let again = channel.deduct(key("o-1", "u1", 100)).await.unwrap_err();
    assert!(jifen_mesh::connector::is_pending(&again), "{again:?}");
    assert_eq!(api.book.points_of("u1"), Some(900));
    assert_eq!(api.tokens_issued.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_forged_or_unknown_notification_changes_nothing() {
    let (_api, served) = OauthApi::start(&["u1"], 1_000).await;
    let channel = HttpChannel::new(AdapterConfig::load(&served.config).unwrap()).unwrap();
    let body = br#"{"reference": "o-1:u1", "id": "R-9", "status": "COMPLETED", "amount": 100}"#;
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("x-signature", "00ff".parse().unwrap());
    let forged = channel
        .notification(&headers, bytes::Bytes::from_static(body))
        .unwrap_err();
    assert_eq!(forged.code(), Code::Unauthenticated);
    let signature = jifen_adapter::crypto::sign(
        jifen_adapter::crypto::Algorithm::HmacSha256,
        &jifen_adapter::crypto::Key::Secret(
            jifen_tests::partner::oauth::NOTIFY_SECRET
                .as_bytes()
                .to_vec(),
        ),
        body,
        jifen_adapter::crypto::Output::Hex,
    )
    .unwrap();
    headers.insert("x-signature", signature.parse().unwrap());
    let (partner_key, recorded) = channel
        .notification(&headers, bytes::Bytes::from_static(body))
        .unwrap();
    assert_eq!(partner_key, "o-1:u1");
    assert_eq!(recorded.points, 100);
    assert_eq!(recorded.captured["id"], "R-9");
}

#[tokio::test]
async fn a_refund_whose_deduct_answer_was_lost_learns_the_trade_no_from_the_query() {
    let (gateway, served) = Gateway::start(&["u1"], 1_000).await;
    let channel = HttpChannel::new(AdapterConfig::load(&served.config).unwrap()).unwrap();
    gateway.book.faults.lose_answer.store(1, Ordering::SeqCst);
    let lost = channel.deduct(key("o-lost", "u1", 250)).await.unwrap_err();
    assert_eq!(lost.code(), Code::Unknown, "{lost:?}");
    assert_eq!(gateway.book.points_of("u1"), Some(750), "it was applied");
    // The refund carries no trade_no: the query by our order number gives it.
    let refunded = channel.refund(key("o-lost", "u1", 250)).await.unwrap();
    assert_eq!(refunded.state, jifen_mesh::barrier::LedgerState::Refunded);
    assert_eq!(gateway.book.points_of("u1"), Some(1_000));
    // A refund of an order the gateway never saw gives nothing back, and says so.
    let never = channel.refund(key("o-never", "u1", 100)).await.unwrap_err();
    assert_eq!(never.code(), Code::NotFound, "{never:?}");
    // An order number is 32 characters there, whatever our ids: the key is hashed to fit.
    let long_order = "o-".repeat(60);
    let deducted = channel.deduct(key(&long_order, "u1", 100)).await.unwrap();
    assert_eq!(deducted.points, 100);
    assert!(deducted.captured.contains_key("trade_no"), "{deducted:?}");
}

#[tokio::test]
async fn a_request_signed_with_another_secret_or_stale_is_refused_not_applied() {
    let (gateway, served) = Gateway::start(&["u1"], 1_000).await;
    let text = std::fs::read_to_string(&served.config).unwrap();
    let dir = served.config.parent().unwrap();
    std::fs::write(dir.join("gateway-md5.key"), "another-secret").unwrap();
    let channel = HttpChannel::new(AdapterConfig::load(&served.config).unwrap()).unwrap();
    let refused = channel.deduct(key("o-1", "u1", 100)).await.unwrap_err();
    assert_eq!(
        refused.code(),
        Code::Unknown,
        "an unmapped refusal is never a success"
    );
    assert!(refused.message().contains("40004"), "{refused:?}");
    assert_eq!(gateway.book.points_of("u1"), Some(1_000));
    // Stamped an hour off: the gateway refuses it, nothing is taken.
    std::fs::write(
        dir.join("gateway-md5.key"),
        jifen_tests::partner::gateway::SECRET,
    )
    .unwrap();
    let stale = text.replace("utc_offset = \"+08:00\"", "utc_offset = \"+09:00\"");
    std::fs::write(&served.config, stale).unwrap();
    let channel = HttpChannel::new(AdapterConfig::load(&served.config).unwrap()).unwrap();
    assert!(channel.deduct(key("o-2", "u1", 100)).await.is_err());
    assert_eq!(gateway.book.points_of("u1"), Some(1_000));
}

#[tokio::test]
async fn an_xml_api_with_signed_xml_answers_runs_through_faults() {
    let (api, served) = XmlApi::start(&EVERYONE, START_POINTS).await;
    arm(&api.book.faults);
    for order in orders_through("eta", &served, &api.book).await {
        let line = order.lines.iter().find(|l| l.channel_id == "eta").unwrap();
        assert!(line.captured.contains_key("transaction_id"), "{line:?}");
    }
}

#[tokio::test]
async fn channel_check_traces_every_exchange_with_secrets_and_signatures_redacted() {
    let (_gateway, served) = Gateway::start(&["tester"], 10_000).await;
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = seen.clone();
    let trace: jifen_adapter::evidence::Trace =
        std::sync::Arc::new(move |exchange: &jifen_mesh::connector::Exchange| {
            sink.lock().unwrap().push(exchange.clone());
        });
    let target = check::Target::http_traced(&served.config, Some(trace)).unwrap();
    check::run_on(target, "tester", 5, "trace-k-")
        .await
        .unwrap();
    let seen = seen.lock().unwrap();
    for call in ["balance", "deduct", "refund", "query"] {
        assert!(seen.iter().any(|e| e.call == call), "{call} traced");
    }
    for exchange in seen.iter() {
        assert!(
            !exchange
                .request
                .contains(jifen_tests::partner::gateway::SECRET)
        );
        assert!(
            exchange.request.contains("sign=<redacted>"),
            "{}",
            exchange.request
        );
        assert!(
            exchange.request.starts_with("POST http://"),
            "{}",
            exchange.request
        );
    }
}

/// The key a config error names, or the syntax error's text (which quotes the key).
fn refused_key(path: &std::path::Path, text: &str) -> String {
    match AdapterConfig::parse(path, text) {
        Err(jifen_adapter::AdapterConfigError::Invalid { key, .. }) => key,
        Err(jifen_adapter::AdapterConfigError::Syntax { message, .. }) => message,
        Ok(_) => panic!("accepted: {text}"),
        Err(other) => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_mistake_in_any_new_key_is_refused_at_start_naming_the_key() {
    let (_gateway, gateway) = Gateway::start(&[], 0).await;
    let (_oauth, oauth) = OauthApi::start(&[], 0).await;
    let (_hmac, hmac) = HmacApi::start(&[], 0).await;
    let (_xml, xml) = XmlApi::start(&[], 0).await;
    let text = |served: &Served| std::fs::read_to_string(&served.config).unwrap();
    let cases: Vec<(&Served, &str, &str, &str)> = vec![
        (
            &gateway,
            "algorithm = \"md5\"",
            "algorithm = \"md4\"",
            "md4",
        ),
        (
            &gateway,
            "key = { file = \"gateway-md5.key\" }",
            "key = \"s3cret\"",
            "signing.key",
        ),
        (
            &gateway,
            "key = { file = \"gateway-md5.key\" }",
            "key = { file = \"nope.key\" }",
            "signing.key",
        ),
        (
            &gateway,
            "message = \"{string}&key={secret}\"",
            "message = \"{string}\"",
            "signing.message",
        ),
        (&gateway, "param = \"sign\"", "", "signing"),
        (
            &gateway,
            "timestamp = \"yyyy-MM-dd HH:mm:ss\"",
            "timestamp = \"yyyy-MM-dd hh:mm\"",
            "timestamp",
        ),
        (
            &gateway,
            "utc_offset = \"+08:00\"",
            "utc_offset = \"8\"",
            "utc_offset",
        ),
        (
            &gateway,
            "points_per_unit = 100",
            "points_per_unit = 3",
            "amount",
        ),
        (&gateway, "ok = [\"10000\"]", "", "errors.ok"),
        (
            &gateway,
            "capture = { trade_no = \"/trade_no\" }\n\n[refund]",
            "capture = { Trade = \"/trade_no\" }\n\n[refund]",
            "deduct.capture.Trade",
        ),
        (&gateway, "{deduct.trade_no}", "{deduct.trade_id}", "refund"),
        (
            &gateway,
            "json_params = [\"biz_content\"]\namount",
            "json_params = [\"biz\"]\namount",
            "deduct.json_params",
        ),
        (
            &gateway,
            "[amount]\npoints_per_unit = 100\ndecimals = 2\n",
            "",
            "deduct.amount",
        ),
        (
            &hmac,
            "canonical = \"lines\"\nlines = [\"{method}\"",
            "canonical = \"lines\"\nlinez = [\"{method}\"",
            "linez",
        ),
        (
            &hmac,
            "lines = [\"{header.x-timestamp}\", \"{body}\"]",
            "lines = []",
            "verify.lines",
        ),
        (
            &hmac,
            "header = \"X-Signature\"",
            "header = \"X-Signature\"\nfield = \"/sign\"",
            "verify",
        ),
        (&oauth, "client_id = \"jifen\"\n", "", "auth.client_id"),
        (
            &oauth,
            "poll = \"1s,2s,5s,10s,30s\"",
            "poll = \"1s,2x\"",
            "pending.poll",
        ),
        (
            &oauth,
            "deadline = \"5m\"",
            "deadline = \"1ms\"",
            "pending.deadline",
        ),
        (&oauth, "per_second = 50", "per_second = 0", "rate"),
        (&oauth, "[pending]\npoll", "[pendingz]\npoll", "pendingz"),
        (
            &oauth,
            "key = \"/reference\"\n",
            "key = \"reference\"\n",
            "notify.key",
        ),
        (
            &oauth,
            "points = \"/amount\"\ncapture = { id = \"/id\" }\nreply",
            "capture = { id = \"/id\" }\nreply",
            "notify.points",
        ),
        (
            &oauth,
            "canonical = \"body\"",
            "canonical = \"sorted\"",
            "sorted",
        ),
        (&xml, "answer = \"xml\"", "answer = \"yaml\"", "yaml"),
        (
            &xml,
            "encoding = \"xml\"\nparams = { out_trade_no = \"{key}\", openid",
            "encoding = \"xml\"\nbody = \"{}\"\nparams = { out_trade_no = \"{key}\", openid",
            "deduct.body",
        ),
    ];
    for (served, from, to, key) in cases {
        let good = text(served);
        assert!(good.contains(from), "{from:?} is not in the example");
        AdapterConfig::parse(&served.config, &good).unwrap();
        let refused = refused_key(&served.config, &good.replacen(from, to, 1));
        assert!(refused.contains(key), "{from:?} → {to:?}: {refused}");
    }
    // A token with no [auth] to give it, an amount with no [amount] to make it.
    let gateway_text = text(&gateway);
    let token = gateway_text.replace(
        "[params]\n",
        "[header_templates]\nAuthorization = \"Bearer {token}\"\n\n[params]\n",
    );
    assert!(refused_key(&gateway.config, &token).contains("header_templates"));
}

#[test]
fn the_docs_show_each_example_as_the_suite_runs_it() {
    let docs = include_str!("../../docs/channels.md");
    for example in [
        jifen_tests::partner::gateway::EXAMPLE,
        jifen_tests::partner::hmac_json::EXAMPLE,
        jifen_tests::partner::oauth::EXAMPLE,
        jifen_tests::partner::xml_api::EXAMPLE,
    ] {
        let block = format!("```toml\n{}\n```", example.trim_end());
        assert!(
            docs.contains(&block),
            "docs/channels.md differs from:\n{example}"
        );
    }
}

#[tokio::test]
async fn channel_check_runs_through_each_example_and_names_exactly_what_it_lacks() {
    let lacking = ["null_compensation", "anti_hanging"];
    let (_a, gateway) = Gateway::start(&["tester"], 10_000).await;
    let (_b, hmac) = HmacApi::start(&["tester"], 10_000).await;
    let (_c, oauth) = OauthApi::start(&["tester"], 10_000).await;
    let (_d, xml) = XmlApi::start(&["tester"], 10_000).await;
    for (served, expected) in [
        (&gateway, &lacking[..]),
        (&hmac, &[][..]),
        (&oauth, &lacking[..]),
        (&xml, &lacking[..]),
    ] {
        let target = check::Target::http(&served.config).unwrap();
        let report = check::run_on(target, "tester", 5, "check-k-")
            .await
            .unwrap();
        assert_eq!(report.missing(), expected, "{report:#?}");
        assert_eq!(
            report.balance_after, report.balance_before,
            "all given back"
        );
    }
}

/// A partner whose login call hands out a token (in `{"data": {"token", "expires_in"}}`) that
/// its API wants in `X-Token`; `rotate` makes the next login give a new one and the old stop.
#[derive(Debug, Default)]
struct LoginApi {
    current: std::sync::Mutex<String>,
    logins: std::sync::atomic::AtomicU32,
}

async fn serve_login_api() -> (std::sync::Arc<LoginApi>, String) {
    use axum::routing::{get, post};
    let api = std::sync::Arc::new(LoginApi::default());
    let login = {
        let api = api.clone();
        move |body: String| {
            let api = api.clone();
            async move {
                let ok = serde_json::from_str::<serde_json::Value>(&body)
                    .is_ok_and(|b| b["password"] == "pa\"ss");
                if !ok {
                    return (axum::http::StatusCode::UNAUTHORIZED, "{}".to_owned());
                }
                let n = api.logins.fetch_add(1, Ordering::SeqCst) + 1;
                let token = format!("T{n}");
                *api.current.lock().unwrap() = token.clone();
                let answer =
                    serde_json::json!({ "data": { "token": token, "expires_in": "3600" } });
                (axum::http::StatusCode::OK, answer.to_string())
            }
        }
    };
    let balance = {
        let api = api.clone();
        move |headers: axum::http::HeaderMap| {
            let api = api.clone();
            async move {
                let sent = headers
                    .get("x-token")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                if sent.is_empty() || sent != *api.current.lock().unwrap() {
                    return (axum::http::StatusCode::UNAUTHORIZED, "{}".to_owned());
                }
                (axum::http::StatusCode::OK, r#"{"points": 700}"#.to_owned())
            }
        }
    };
    let router = axum::Router::new()
        .route("/login", post(login))
        .route("/members/{member}", get(balance));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    (api, base)
}

#[tokio::test]
async fn a_login_token_is_fetched_once_and_refreshed_when_refused() {
    let (api, base) = serve_login_api().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("login.secret"), "pa\"ss\n").unwrap();
    let config = dir.path().join("login.toml");
    std::fs::write(
        &config,
        format!(
            r#"
channel_id = "theta"
base_url = "{base}"
[auth]
kind = "login"
url = "/login"
body = '{{"user": "jifen", "password": "{{password}}"}}'
password = {{ file = "login.secret" }}
token = "/data/token"
expires_in = "/data/expires_in"
[header_templates]
X-Token = "{{token}}"
[capabilities]
idempotent_deduct = true
refund = false
query = false
null_compensation = false
anti_hanging = false
[deduct]
url = "/deduct"
body = '{{"points": {{points}}}}'
[balance]
method = "GET"
url = "/members/{{user_id}}"
balance = "/points"
"#
        ),
    )
    .unwrap();
    let channel = HttpChannel::new(AdapterConfig::load(&config).unwrap()).unwrap();
    assert_eq!(channel.balance("u1").await.unwrap(), Some(700));
    assert_eq!(channel.balance("u1").await.unwrap(), Some(700));
    assert_eq!(
        api.logins.load(Ordering::SeqCst),
        1,
        "one token for both calls"
    );
    // The partner rotates its tokens: the next call is refused once, logs in, and goes on.
    *api.current.lock().unwrap() = "rotated".into();
    assert_eq!(channel.balance("u1").await.unwrap(), Some(700));
    assert_eq!(api.logins.load(Ordering::SeqCst), 2);
}
