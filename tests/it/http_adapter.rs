//! The HTTP/JSON adapter against a third party's REST API (DESIGN §9): answers, errors inside
//! a 200, faults (5xx before and after applying, slow answers, refund before deduct), and the
//! config checks that name the key at fault.

use std::path::Path;
use std::sync::atomic::Ordering;

use jifen_channel::adapter::{AdapterConfig, AdapterConfigError, CallKey, HttpChannel};
use jifen_mesh::barrier::LedgerState;
use jifen_mesh::capabilities::Capabilities;
use jifen_tests::http_channel::TestPointsApi;
use tonic::Code;

fn key<'a>(order_id: &'a str, user_id: &'a str, points: i64) -> CallKey<'a> {
    CallKey {
        order_id,
        user_id,
        points,
        captured: None,
    }
}

async fn adapter(api: &TestPointsApi, timeout: &str) -> HttpChannel {
    let config = AdapterConfig::load(&api.config("delta", Capabilities::FULL, timeout)).unwrap();
    HttpChannel::new(config).unwrap()
}

#[tokio::test]
async fn answers_and_errors_inside_a_200_map_to_outcomes() {
    let api = TestPointsApi::start(&["u1"], 100).await;
    let http = adapter(&api, "5s").await;

    let deducted = http.deduct(key("o-1", "u1", 30)).await.unwrap();
    assert_eq!(
        (deducted.state, deducted.points),
        (LedgerState::Deducted, 30)
    );
    // Idempotent by key: the same deduct takes nothing more.
    http.deduct(key("o-1", "u1", 30)).await.unwrap();
    assert_eq!(api.api.points_of("u1"), Some(70));
    assert_eq!(http.balance("u1").await.unwrap(), Some(70));
    let found = http.query(key("o-1", "u1", 30)).await.unwrap();
    assert_eq!((found.state, found.points), (LedgerState::Deducted, 30));

    // "Not enough points" comes as a 200 with an error code: a business rejection.
    let short = http.deduct(key("o-2", "u1", 1_000)).await.unwrap_err();
    assert_eq!(short.code(), Code::FailedPrecondition, "{short:?}");
    assert!(short.message().contains("INSUFFICIENT_POINTS"));
    let unknown = http.deduct(key("o-3", "nobody", 1)).await.unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    let nothing = http.query(key("o-9", "u1", 1)).await.unwrap_err();
    assert_eq!(nothing.code(), Code::NotFound);
    let bad = http.deduct(key("o-4", "u1", 0)).await.unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);

    let refunded = http.refund(key("o-1", "u1", 0)).await.unwrap();
    assert_eq!(
        (refunded.state, refunded.points),
        (LedgerState::Refunded, 30)
    );
    let again = http.refund(key("o-1", "u1", 0)).await.unwrap();
    assert_eq!(again.points, 0, "a refund gives back once");
    assert_eq!(api.api.points_of("u1"), Some(100));
}

#[tokio::test]
async fn faults_say_whether_the_call_may_have_been_applied() {
    let api = TestPointsApi::start(&["u1"], 100).await;
    let http = adapter(&api, "1s").await;

    // A 503 the config maps to transient: nothing was applied.
    api.api.faults.unavailable.store(1, Ordering::SeqCst);
    let busy = http.deduct(key("o-1", "u1", 10)).await.unwrap_err();
    assert_eq!(busy.code(), Code::Unavailable, "{busy:?}");
    assert_eq!(api.api.points_of("u1"), Some(100));

    // Applied, then the answer was lost (a 502): unknown, and indeed applied.
    api.api.faults.lose_answer.store(1, Ordering::SeqCst);
    let lost = http.deduct(key("o-1", "u1", 10)).await.unwrap_err();
    assert_eq!(lost.code(), Code::Unknown, "{lost:?}");
    assert_eq!(api.api.points_of("u1"), Some(90));

    // Slower than the timeout: the deadline passes, and the call may yet be applied.
    api.api.faults.delay_ms.store(1_500, Ordering::SeqCst);
    let slow = http.deduct(key("o-2", "u1", 10)).await.unwrap_err();
    assert_eq!(slow.code(), Code::DeadlineExceeded, "{slow:?}");
    api.api.faults.delay_ms.store(0, Ordering::SeqCst);

    // Nobody listens: surely not applied.
    let gone = TestPointsApi::start(&[], 0).await;
    let config = gone.config_text("delta", Capabilities::FULL, "1s").replace(
        &gone.base_url,
        "http://127.0.0.1:9", // discard port: refused
    );
    let refused = HttpChannel::new(AdapterConfig::parse(Path::new("x.toml"), &config).unwrap())
        .unwrap()
        .deduct(key("o-3", "u1", 1))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
}

#[tokio::test]
async fn a_refund_before_its_deduct_blocks_the_deduct_where_the_api_guards_against_hanging() {
    let api = TestPointsApi::start(&["u1"], 100).await;
    let http = adapter(&api, "5s").await;
    let null = http.refund(key("o-1", "u1", 0)).await.unwrap();
    assert_eq!((null.state, null.points), (LedgerState::Refunded, 0));
    let late = http.deduct(key("o-1", "u1", 10)).await.unwrap_err();
    assert_eq!(late.code(), Code::Aborted, "{late:?}");
    assert_eq!(api.api.points_of("u1"), Some(100));

    // Without null compensation or anti-hanging, the refund finds nothing and the deduct takes.
    api.guarantee(Capabilities::without(&["null_compensation", "anti_hanging"]).unwrap());
    let nothing = http.refund(key("o-2", "u1", 0)).await.unwrap_err();
    assert_eq!(nothing.code(), Code::NotFound);
    http.deduct(key("o-2", "u1", 10)).await.unwrap();
    assert_eq!(api.api.points_of("u1"), Some(90));
}

fn invalid_key(text: &str) -> String {
    match AdapterConfig::parse(Path::new("c.toml"), text) {
        Err(AdapterConfigError::Invalid { key, .. }) => key,
        Err(AdapterConfigError::Syntax { message, .. }) => format!("syntax: {message}"),
        other => panic!("expected a config error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_bad_config_is_refused_at_start_naming_the_key() {
    let api = TestPointsApi::start(&[], 0).await;
    let good = api.config_text("delta", Capabilities::FULL, "5s");
    AdapterConfig::parse(Path::new("c.toml"), &good).unwrap();

    let no_refund = api.config_text("delta", Capabilities::without(&["refund"]).unwrap(), "5s");
    let claims_refund = no_refund.replace("refund = false", "refund = true");
    assert_eq!(invalid_key(&claims_refund), "refund");
    assert_eq!(
        invalid_key(&good.replace("/v1/deductions/{key}\"", "/v1/deductions/{ref}\"")),
        "query.url"
    );
    assert_eq!(
        invalid_key(&good.replace("\"points\": {points}, ", "\"points\": {points, ")),
        "deduct.body"
    );
    assert_eq!(
        invalid_key(&good.replace("state = \"/status\"", "state = \"status\"")),
        "deduct.state"
    );
    assert_eq!(
        invalid_key(&good.replace("503 = \"transient\"", "99 = \"transient\"")),
        "errors.status.99"
    );
    assert_eq!(
        invalid_key(&good.replace("timeout = \"5s\"", "timeout = \"5\"")),
        "timeout"
    );
    assert_eq!(
        invalid_key(&good.replace("base_url = \"http", "base_url = \"ftp")),
        "base_url"
    );
    let from_env = good.replace(
        "X-Api-Key = \"jifen-demo-key\"",
        "X-Api-Key = { env = \"JIFEN_TEST_NO_SUCH_VARIABLE\" }",
    );
    assert_eq!(invalid_key(&from_env), "headers.X-Api-Key");
    // Unknown keys and outcomes are syntax errors that quote the key.
    let typo = invalid_key(&good.replace("[deduct]\n", "[deduct]\nbody_template = \"\"\n"));
    assert!(typo.contains("body_template"), "{typo}");
    let outcome = invalid_key(&good.replace("409 = \"conflict\"", "409 = \"clash\""));
    assert!(outcome.contains("clash"), "{outcome}");
    let missing = invalid_key(&good.replace("anti_hanging = true\n", ""));
    assert!(missing.contains("anti_hanging"), "{missing}");

    // A secret never shows in what is logged.
    let config = AdapterConfig::parse(Path::new("c.toml"), &good).unwrap();
    assert!(!format!("{config:?}").contains("jifen-demo-key"));
}

#[tokio::test]
async fn tls_trusts_the_configured_ca_and_refuses_an_unknown_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ca = jifen_tests::http_channel::TestCa::new(dir.path());
    let api = TestPointsApi::start_tls(&["u1"], 100, &ca).await;
    let plain = api.config_text("delta", Capabilities::FULL, "2s");

    // The public roots do not know the test CA: the handshake fails, nothing is sent.
    let untrusted = HttpChannel::new(AdapterConfig::parse(Path::new("c.toml"), &plain).unwrap())
        .unwrap()
        .deduct(key("o-1", "u1", 10))
        .await
        .unwrap_err();
    assert_eq!(untrusted.code(), Code::Unavailable, "{untrusted:?}");
    assert_eq!(api.api.points_of("u1"), Some(100));

    let trusted = plain.replace(
        "[capabilities]",
        &format!(
            "[tls]\nca_file = {:?}\n\n[capabilities]",
            ca.ca_file.display().to_string()
        ),
    );
    let http =
        HttpChannel::new(AdapterConfig::parse(Path::new("c.toml"), &trusted).unwrap()).unwrap();
    let deducted = http.deduct(key("o-1", "u1", 10)).await.unwrap();
    assert_eq!(deducted.state, LedgerState::Deducted);
    assert_eq!(http.balance("u1").await.unwrap(), Some(90));

    let missing = trusted.replace(&ca.ca_file.display().to_string(), "/nonexistent/ca.pem");
    assert_eq!(invalid_key(&missing), "tls.ca_file");
}

#[tokio::test]
async fn a_code_can_mean_a_state_or_another_amount_and_file_headers_are_no_templates() {
    let api = TestPointsApi::start(&["u1"], 100).await;
    let path = api.config("delta", Capabilities::FULL, "5s");
    let text = std::fs::read_to_string(&path).unwrap();
    // The API answers a deduct after its reversal with 409 ALREADY_REVERSED: declared as the
    // state it is, the key reads as refunded instead of a failure.
    let as_state = text.replace(
        "ALREADY_REVERSED = \"conflict\"",
        "ALREADY_REVERSED = \"refunded\"",
    );
    assert_ne!(as_state, text, "the demo config maps ALREADY_REVERSED");
    std::fs::write(&path, &as_state).unwrap();
    let http = HttpChannel::new(AdapterConfig::load(&path).unwrap()).unwrap();
    http.deduct(key("o-1", "u1", 30)).await.unwrap();
    http.refund(key("o-1", "u1", 0)).await.unwrap();
    let late = http.deduct(key("o-1", "u1", 30)).await.unwrap();
    assert_eq!(late.state, LedgerState::Refunded, "{late:?}");
    assert_eq!(api.api.points_of("u1"), Some(100));

    // "Same key, other amount" can be said (mapped here onto the API's one 409 code):
    // ALREADY_EXISTS, as the contract has it.
    let other_amount = text.replace(
        "ALREADY_REVERSED = \"conflict\"",
        "ALREADY_REVERSED = \"other_amount\"",
    );
    std::fs::write(&path, &other_amount).unwrap();
    let http = HttpChannel::new(AdapterConfig::load(&path).unwrap()).unwrap();
    let refused = http.deduct(key("o-1", "u1", 30)).await.unwrap_err();
    assert_eq!(refused.code(), Code::AlreadyExists, "{refused:?}");

    // A file-level header is sent as it is: a placeholder there is refused, naming it.
    let templated = text.replace(
        "X-Api-Key = \"jifen-demo-key\"",
        "X-Api-Key = \"jifen-demo-key\"\nX-Timestamp = \"{timestamp}\"",
    );
    assert_ne!(templated, text);
    std::fs::write(&path, &templated).unwrap();
    match AdapterConfig::load(&path) {
        Err(AdapterConfigError::Invalid { key, message, .. }) => {
            assert_eq!(key, "headers.X-Timestamp");
            assert!(message.contains("{timestamp}"), "{message}");
        }
        other => panic!("expected the header to be refused, got {other:?}"),
    }
}

#[tokio::test]
async fn a_hashed_key_fits_a_partners_limit_and_keeps_idempotency() {
    let api = TestPointsApi::start(&["u1"], 100).await;
    let path = api.config("delta", Capabilities::FULL, "5s");
    let text = std::fs::read_to_string(&path).unwrap();
    let hashed = format!("key_hash = \"sha256\"\nkey_length = 32\n{text}");
    std::fs::write(&path, &hashed).unwrap();
    let http = HttpChannel::new(AdapterConfig::load(&path).unwrap()).unwrap();
    let long_order = "o".repeat(120);
    http.deduct(key(&long_order, "u1", 30)).await.unwrap();
    // The same key hashes the same: a repeat takes nothing more, the query finds it.
    http.deduct(key(&long_order, "u1", 30)).await.unwrap();
    assert_eq!(api.api.points_of("u1"), Some(70));
    let found = http.query(key(&long_order, "u1", 30)).await.unwrap();
    assert_eq!(found.state, LedgerState::Deducted);
    // The partner saw the first 32 hex digits of the key's SHA-256, not the 120-byte id.
    let reference = &jifen_mall::operators::token_hash(&format!("{long_order}:u1"))[..32];
    assert_eq!(
        api.api.held_by(reference),
        30,
        "one deduction, under the hashed key"
    );
    // A length that would collide is refused at start.
    std::fs::write(&path, hashed.replace("key_length = 32", "key_length = 8")).unwrap();
    assert!(matches!(
        AdapterConfig::load(&path),
        Err(AdapterConfigError::Invalid { key, .. }) if key == "key_length"
    ));
}
