//! Example 3 of docs/channels.md: an OAuth2 API (client credentials, short-lived bearer tokens)
//! whose redemptions answer `202 PROCESSING` and settle a moment later; the result is read by a
//! query or arrives as a signed notification (HMAC-SHA256 of the body in `X-Signature`). The
//! reversal takes the redemption's own id.
//!
//! - `POST /oauth/token` (HTTP Basic client credentials) → `{"access_token", "expires_in"}`
//! - `POST /v1/redemptions` `{"reference", "member", "amount"}` → 202 `{"id", "status":
//!   "PROCESSING"}`, then COMPLETED (or FAILED, its points given back); idempotent by reference
//! - `GET /v1/redemptions?reference=` → `{"id", "status", "amount"}`; 404 `{"error": "not_found"}`
//! - `POST /v1/redemptions/{id}/cancel` → `{"status": "CANCELLED", "amount"}`; 409
//!   `still_processing`
//! - `GET /v1/members/{member}` → `{"points"}`
//!
//! Without a valid token: 401 `{"error": "invalid_token"}`.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use super::{Book, BookError, Faults, Served};
use jifen_adapter::crypto::{Algorithm, Key, Output, sign};

pub const EXAMPLE: &str = include_str!("../../../docs/examples/oauth-pending.toml");
pub const CLIENT_SECRET: &str = "oauth-client-secret-for-tests";
pub const NOTIFY_SECRET: &str = "oauth-notify-secret-for-tests";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Processing,
    Completed,
    Failed,
    Cancelled,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Self::Processing => "PROCESSING",
            Self::Completed => "COMPLETED",
            Self::Failed => "FAILED",
            Self::Cancelled => "CANCELLED",
        }
    }
}

#[derive(Debug, Clone)]
struct Redemption {
    id: String,
    trade_no: String,
    reference: String,
    amount: i64,
    status: Status,
    settles_at: Instant,
    fails: bool,
}

#[derive(Debug, Default)]
pub struct OauthApi {
    pub book: Book,
    tokens: Mutex<HashMap<String, Instant>>,
    redemptions: Mutex<HashMap<String, Redemption>>,
    next: AtomicU64,
    /// Seconds a token lives.
    pub token_lifetime: AtomicU64,
    /// Token requests answered.
    pub tokens_issued: AtomicU32,
    /// Answer the next token requests with 503.
    pub token_unavailable: AtomicU32,
    /// How long a redemption stays PROCESSING, in milliseconds.
    pub processing_ms: AtomicU64,
    /// The next redemptions end FAILED (their points given back).
    pub fail_next: AtomicU32,
    /// Status queries, by reference.
    queries: Mutex<HashMap<String, u32>>,
    /// Where notifications go; none are sent without it.
    notify_to: Mutex<Option<String>>,
    /// References whose notification was sent.
    pub notified: Mutex<HashSet<String>>,
}

impl OauthApi {
    pub async fn start(members: &[&str], points: i64) -> (Arc<Self>, Served) {
        let api = Arc::new(Self {
            book: Book::new(members, points),
            token_lifetime: AtomicU64::new(3600),
            processing_ms: AtomicU64::new(200),
            ..Self::default()
        });
        let router = axum::Router::new()
            .route("/oauth/token", post(token))
            .route("/v1/redemptions", post(redeem).get(lookup))
            .route("/v1/redemptions/{id}/cancel", post(cancel))
            .route("/v1/members/{member}", get(member))
            .with_state(api.clone());
        let served = Served::start(
            router,
            EXAMPLE,
            &[
                ("oauth-client.secret", CLIENT_SECRET.as_bytes()),
                ("oauth-notify.secret", NOTIFY_SECRET.as_bytes()),
            ],
        )
        .await;
        (api, served)
    }

    /// Sends notifications to `url` from now on.
    pub fn notify_to(&self, url: &str) {
        if let Ok(mut to) = self.notify_to.lock() {
            *to = Some(url.to_owned());
        }
    }

    /// Every token issued so far stops working, as a partner's rotation does mid-run.
    pub fn expire_tokens(&self) {
        if let Ok(mut tokens) = self.tokens.lock() {
            tokens.clear();
        }
    }

    /// Status queries made for the redemption of `reference`.
    pub fn queries_for(&self, reference: &str) -> u32 {
        self.queries
            .lock()
            .ok()
            .and_then(|q| q.get(reference).copied())
            .unwrap_or(0)
    }

    fn authorized(&self, headers: &HeaderMap) -> bool {
        let token = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        self.tokens
            .lock()
            .is_ok_and(|t| t.get(token).is_some_and(|until| Instant::now() < *until))
    }

    /// The redemption as of now: a PROCESSING one past its time has settled.
    fn settled(&self, reference: &str) -> Option<Redemption> {
        let mut redemptions = self.redemptions.lock().ok()?;
        let redemption = redemptions.get_mut(reference)?;
        if redemption.status == Status::Processing && Instant::now() >= redemption.settles_at {
            if redemption.fails {
                let _ = self.book.reverse(&redemption.trade_no);
                redemption.status = Status::Failed;
            } else {
                redemption.status = Status::Completed;
            }
        }
        Some(redemption.clone())
    }

    fn notify(self: &Arc<Self>, reference: String, after: Duration) {
        let Some(url) = self.notify_to.lock().ok().and_then(|to| to.clone()) else {
            return;
        };
        let api = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            let Some(redemption) = api.settled(&reference) else {
                return;
            };
            let body = fields(&redemption).to_string();
            let signature = sign(
                Algorithm::HmacSha256,
                &Key::Secret(NOTIFY_SECRET.as_bytes().to_vec()),
                body.as_bytes(),
                Output::Hex,
            )
            .unwrap_or_default();
            let sent = reqwest::Client::new()
                .post(&url)
                .header("content-type", "application/json")
                .header("x-signature", signature)
                .body(body)
                .send()
                .await;
            if sent.is_ok_and(|r| r.status().is_success())
                && let Ok(mut notified) = api.notified.lock()
            {
                notified.insert(reference);
            }
        });
    }
}

fn fields(r: &Redemption) -> Value {
    let amount = if r.status == Status::Failed {
        0
    } else {
        r.amount
    };
    json!({ "id": r.id, "reference": r.reference, "status": r.status.as_str(), "amount": amount })
}

fn refused(status: StatusCode, error: &str) -> Response {
    (status, axum::Json(json!({ "error": error }))).into_response()
}

async fn token(State(api): State<Arc<OauthApi>>, headers: HeaderMap, body: Bytes) -> Response {
    if Faults::take(&api.token_unavailable) {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    use base64::Engine as _;
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("jifen:{CLIENT_SECRET}"))
    );
    let form: HashMap<String, String> = form_urlencoded::parse(&body).into_owned().collect();
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(expected.as_str())
        || form.get("grant_type").map(String::as_str) != Some("client_credentials")
    {
        return refused(StatusCode::UNAUTHORIZED, "invalid_client");
    }
    let n = api.next.fetch_add(1, Ordering::SeqCst);
    let access_token = format!("tok-{n}");
    let lifetime = api.token_lifetime.load(Ordering::SeqCst);
    if let Ok(mut tokens) = api.tokens.lock() {
        tokens.insert(
            access_token.clone(),
            Instant::now() + Duration::from_secs(lifetime),
        );
    }
    api.tokens_issued.fetch_add(1, Ordering::SeqCst);
    axum::Json(
        json!({ "access_token": access_token, "token_type": "Bearer", "expires_in": lifetime }),
    )
    .into_response()
}

async fn redeem(State(api): State<Arc<OauthApi>>, headers: HeaderMap, body: Bytes) -> Response {
    let faults = &api.book.faults;
    faults.wait().await;
    if !api.authorized(&headers) {
        return refused(StatusCode::UNAUTHORIZED, "invalid_token");
    }
    if Faults::take(&faults.unavailable) {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    if let Some(limited) = faults.rate_limited() {
        return limited;
    }
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let reference = request["reference"].as_str().unwrap_or_default().to_owned();
    let member = request["member"].as_str().unwrap_or_default();
    let amount = request["amount"].as_i64().unwrap_or(0);
    if reference.is_empty() || amount <= 0 {
        return refused(StatusCode::BAD_REQUEST, "invalid_request");
    }
    if let Some(existing) = api.settled(&reference) {
        return (StatusCode::ACCEPTED, axum::Json(fields(&existing))).into_response();
    }
    let trade = match api.book.deduct(&reference, member, amount) {
        Ok(trade) => trade,
        Err(BookError::Insufficient) => {
            return refused(StatusCode::UNPROCESSABLE_ENTITY, "insufficient_points");
        }
        Err(BookError::UnknownMember) => return refused(StatusCode::NOT_FOUND, "unknown_member"),
        Err(_) => return refused(StatusCode::CONFLICT, "reference_conflict"),
    };
    let after = Duration::from_millis(api.processing_ms.load(Ordering::SeqCst));
    let redemption = Redemption {
        id: format!("R-{}", api.next.fetch_add(1, Ordering::SeqCst)),
        trade_no: trade.trade_no,
        reference: reference.clone(),
        amount,
        status: Status::Processing,
        settles_at: Instant::now() + after,
        fails: Faults::take(&api.fail_next),
    };
    let answer = fields(&redemption);
    if let Ok(mut redemptions) = api.redemptions.lock() {
        redemptions.insert(reference.clone(), redemption);
    }
    api.notify(reference, after);
    if Faults::take(&faults.lose_answer) {
        return StatusCode::BAD_GATEWAY.into_response();
    }
    faults.answer_late().await;
    (StatusCode::ACCEPTED, axum::Json(answer)).into_response()
}

async fn lookup(
    State(api): State<Arc<OauthApi>>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if !api.authorized(&headers) {
        return refused(StatusCode::UNAUTHORIZED, "invalid_token");
    }
    let reference = query.get("reference").cloned().unwrap_or_default();
    if let Ok(mut queries) = api.queries.lock() {
        *queries.entry(reference.clone()).or_default() += 1;
    }
    match api.settled(&reference) {
        Some(redemption) => axum::Json(fields(&redemption)).into_response(),
        None => refused(StatusCode::NOT_FOUND, "not_found"),
    }
}

async fn cancel(
    State(api): State<Arc<OauthApi>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if !api.authorized(&headers) {
        return refused(StatusCode::UNAUTHORIZED, "invalid_token");
    }
    if Faults::take(&api.book.faults.unavailable) {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let reference = api
        .redemptions
        .lock()
        .ok()
        .and_then(|r| r.values().find(|r| r.id == id).map(|r| r.reference.clone()));
    let Some(redemption) = reference.and_then(|r| api.settled(&r)) else {
        return refused(StatusCode::NOT_FOUND, "not_found");
    };
    match redemption.status {
        Status::Processing => refused(StatusCode::CONFLICT, "still_processing"),
        Status::Failed | Status::Cancelled => axum::Json(fields(&redemption)).into_response(),
        Status::Completed => {
            let _ = api.book.reverse(&redemption.trade_no);
            let cancelled = Redemption {
                status: Status::Cancelled,
                ..redemption
            };
            let answer = fields(&cancelled);
            if let Ok(mut redemptions) = api.redemptions.lock() {
                redemptions.insert(cancelled.reference.clone(), cancelled);
            }
            axum::Json(answer).into_response()
        }
    }
}

async fn member(
    State(api): State<Arc<OauthApi>>,
    headers: HeaderMap,
    Path(member): Path<String>,
) -> Response {
    if !api.authorized(&headers) {
        return refused(StatusCode::UNAUTHORIZED, "invalid_token");
    }
    match api.book.points_of(&member) {
        Some(points) => axum::Json(json!({ "points": points })).into_response(),
        None => refused(StatusCode::NOT_FOUND, "unknown_member"),
    }
}
