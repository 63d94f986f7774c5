//! Example 2 of docs/channels.md: a JSON API signed with HMAC-SHA256 over the request's lines —
//! method, path, `X-Timestamp` (unix seconds), `X-Nonce`, body, joined by newlines — in
//! `X-Signature` (lower-case hex). A request five minutes off or a nonce seen before is refused
//! (401). It signs its answers the same way: `X-Signature` over `X-Timestamp` and the body.
//! Keyed by our `request_id`; a refund of an id it never saw is recorded (null compensation)
//! and blocks that id's deduct later (anti-hanging).
//!
//! - `POST /v2/points/deduct` `{"request_id", "member_id", "points"}` → `{"transaction_id",
//!   "status": "SUCCEEDED", "points"}`; 422 `INSUFFICIENT_BALANCE`, 404 `MEMBER_NOT_FOUND`,
//!   409 `IDEMPOTENCY_CONFLICT` (another amount), 409 `TRANSACTION_CANCELLED` (refunded first)
//! - `POST /v2/points/refund` `{"request_id"}` → `{"status": "REFUNDED", "points"}`
//! - `GET /v2/points/transactions/{request_id}` → `{"status", "points"}`; 404
//!   `TRANSACTION_NOT_FOUND`
//! - `GET /v2/members/{member_id}/balance` → `{"balance"}`

use std::collections::{HashMap, HashSet};
use std::sync::atomic::AtomicU32;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{Book, BookError, Faults, Served, TradeState};
use jifen_adapter::crypto::{Algorithm, Key, Output, sign};

pub const EXAMPLE: &str = include_str!("../../../docs/examples/hmac-json.toml");
pub const SECRET: &str = "hmac-json-secret-for-tests";

#[derive(Debug, Default)]
pub struct HmacApi {
    pub book: Book,
    nonces: Mutex<HashSet<String>>,
    /// Ids refunded before any deduct: their deduct is refused.
    cancelled: Mutex<HashSet<String>>,
    /// Our request ids → the book's trade numbers.
    trades: Mutex<HashMap<String, String>>,
    /// Answer with a signature that does not verify (after applying), as a tampering proxy
    /// or a partner's bug would.
    pub bad_signature: AtomicU32,
}

impl HmacApi {
    pub async fn start(members: &[&str], points: i64) -> (Arc<Self>, Served) {
        let api = Arc::new(Self {
            book: Book::new(members, points),
            ..Self::default()
        });
        let router = axum::Router::new().fallback(handle).with_state(api.clone());
        let served = Served::start(router, EXAMPLE, &[("hmac-json.key", SECRET.as_bytes())]).await;
        (api, served)
    }
}

fn hmac(message: &str) -> String {
    sign(
        Algorithm::HmacSha256,
        &Key::Secret(SECRET.as_bytes().to_vec()),
        message.as_bytes(),
        Output::Hex,
    )
    .unwrap_or_default()
}

fn unix_now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// An answer signed over its timestamp and body.
fn signed(status: StatusCode, body: &Value, corrupt: bool) -> Response {
    let body = body.to_string();
    let timestamp = unix_now().to_string();
    let mut signature = hmac(&format!("{timestamp}\n{body}"));
    if corrupt {
        signature = hmac(&format!("{timestamp}\n{{}}"));
    }
    (
        status,
        [
            ("content-type", "application/json".to_owned()),
            ("x-timestamp", timestamp),
            ("x-signature", signature),
        ],
        body,
    )
        .into_response()
}

fn error(status: StatusCode, code: &str) -> Response {
    signed(status, &json!({ "error": { "code": code } }), false)
}

fn authenticate(
    api: &HmacApi,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), &'static str> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let (timestamp, nonce) = (header("x-timestamp"), header("x-nonce"));
    let path = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
    let expected = hmac(&format!(
        "{method}\n{path}\n{timestamp}\n{nonce}\n{}",
        String::from_utf8_lossy(body)
    ));
    if header("x-app-id") != "jifen-test" || !header("x-signature").eq_ignore_ascii_case(&expected)
    {
        return Err("INVALID_SIGNATURE");
    }
    let at: i64 = timestamp.parse().unwrap_or_default();
    if (unix_now() - at).abs() > 300 {
        return Err("STALE_REQUEST");
    }
    let fresh = api
        .nonces
        .lock()
        .map(|mut seen| seen.insert(nonce.clone()))
        .unwrap_or(false);
    if nonce.len() < 16 || !fresh {
        return Err("REPLAYED_NONCE");
    }
    Ok(())
}

async fn handle(
    State(api): State<Arc<HmacApi>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let faults = &api.book.faults;
    faults.wait().await;
    if let Err(code) = authenticate(&api, &method, &uri, &headers, &body) {
        return error(StatusCode::UNAUTHORIZED, code);
    }
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let field = |name: &str| {
        request
            .get(name)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let path = percent_decoded(uri.path());
    let changes = method == Method::POST;
    if changes && Faults::take(&faults.unavailable) {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    if changes && let Some(limited) = faults.rate_limited() {
        return limited;
    }
    let trade_of = |id: &str| api.trades.lock().ok().and_then(|t| t.get(id).cloned());
    let (status, answer) = match (method.as_str(), path.as_str()) {
        ("POST", "/v2/points/deduct") => {
            let id = field("request_id");
            let points = request.get("points").and_then(Value::as_i64).unwrap_or(0);
            if id.is_empty() || points <= 0 {
                return error(StatusCode::BAD_REQUEST, "INVALID_REQUEST");
            }
            if api.cancelled.lock().is_ok_and(|c| c.contains(&id)) {
                return error(StatusCode::CONFLICT, "TRANSACTION_CANCELLED");
            }
            match api.book.deduct(&id, &field("member_id"), points) {
                Ok(trade) => {
                    if let Ok(mut trades) = api.trades.lock() {
                        trades.insert(id.clone(), trade.trade_no.clone());
                    }
                    let status = match trade.state {
                        TradeState::Done => "SUCCEEDED",
                        TradeState::Reversed => "REFUNDED",
                    };
                    (
                        StatusCode::OK,
                        json!({ "transaction_id": trade.trade_no, "status": status, "points": trade.points }),
                    )
                }
                Err(BookError::Insufficient) => {
                    return error(StatusCode::UNPROCESSABLE_ENTITY, "INSUFFICIENT_BALANCE");
                }
                Err(BookError::UnknownMember) => {
                    return error(StatusCode::NOT_FOUND, "MEMBER_NOT_FOUND");
                }
                Err(_) => return error(StatusCode::CONFLICT, "IDEMPOTENCY_CONFLICT"),
            }
        }
        ("POST", "/v2/points/refund") => {
            let id = field("request_id");
            match trade_of(&id) {
                Some(trade_no) => match api.book.reverse(&trade_no) {
                    Ok(trade) => (
                        StatusCode::OK,
                        json!({ "status": "REFUNDED", "points": trade.points }),
                    ),
                    Err(_) => return error(StatusCode::NOT_FOUND, "TRANSACTION_NOT_FOUND"),
                },
                None => {
                    if let Ok(mut cancelled) = api.cancelled.lock() {
                        cancelled.insert(id);
                    }
                    (StatusCode::OK, json!({ "status": "REFUNDED", "points": 0 }))
                }
            }
        }
        ("GET", p) if p.starts_with("/v2/points/transactions/") => {
            let id = p.trim_start_matches("/v2/points/transactions/");
            match trade_of(id).and_then(|n| api.book.query_by_trade_no(&n)) {
                Some(trade) => {
                    let status = match trade.state {
                        TradeState::Done => "SUCCEEDED",
                        TradeState::Reversed => "REFUNDED",
                    };
                    (
                        StatusCode::OK,
                        json!({ "status": status, "points": trade.points }),
                    )
                }
                None if api.cancelled.lock().is_ok_and(|c| c.contains(id)) => {
                    (StatusCode::OK, json!({ "status": "REFUNDED", "points": 0 }))
                }
                None => return error(StatusCode::NOT_FOUND, "TRANSACTION_NOT_FOUND"),
            }
        }
        ("GET", p) if p.starts_with("/v2/members/") && p.ends_with("/balance") => {
            let member = p
                .trim_start_matches("/v2/members/")
                .trim_end_matches("/balance");
            match api.book.points_of(member) {
                Some(balance) => (StatusCode::OK, json!({ "balance": balance })),
                None => return error(StatusCode::NOT_FOUND, "MEMBER_NOT_FOUND"),
            }
        }
        _ => return error(StatusCode::NOT_FOUND, "NO_SUCH_ROUTE"),
    };
    if changes && Faults::take(&faults.lose_answer) {
        return StatusCode::BAD_GATEWAY.into_response();
    }
    if changes {
        faults.answer_late().await;
    }
    let corrupt = changes && Faults::take(&api.bad_signature);
    signed(status, &answer, corrupt)
}

fn percent_decoded(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
