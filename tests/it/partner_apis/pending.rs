//! Tokens and "processing": an OAuth2 API whose redemptions settle later (by poll or signed
//! notification), a token endpoint that fails, a login token refreshed when refused.

use super::*;

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
