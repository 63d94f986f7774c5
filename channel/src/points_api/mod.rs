//! A small HTTP/JSON points API in the style of real loyalty systems — not Jifen's contract —
//! served in-process: `jifen dev`'s HTTP demo channel (driven through the adapter with
//! `deploy/local/delta-http.toml`) and the tests' third party. It can be made to guarantee less
//! ([`Guarantees`]) and to misbehave ([`Faults`]) the way real ones do.
//!
//! - `GET  /v1/members/{member}` → `{"member", "points"}`; 404 `UNKNOWN_MEMBER`
//! - `POST /v1/members/{member}/credits` `{"reference", "points"}` (idempotent by reference)
//! - `POST /v1/deductions` `{"reference", "member", "points", "order"}` → `{"reference",
//!   "status": "DONE", "points"}`; too few points is a 200 with `{"result": "error", "error":
//!   {"code": "INSUFFICIENT_POINTS"}}`; 409 `ALREADY_REVERSED` after its reversal
//! - `POST /v1/deductions/{reference}/reversal` → `{"status": "REVERSED", "points"}`
//! - `GET  /v1/deductions/{reference}` → `{"status", "points"}`; 404 `NOT_FOUND`
//!
//! Every call needs the header `X-Api-Key`.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;

mod saved;
use serde_json::{Value, json};

/// What the API guarantees; each can be switched off while it runs.
#[derive(Debug)]
pub struct Guarantees {
    pub idempotent_deduct: AtomicBool,
    pub refund: AtomicBool,
    pub query: AtomicBool,
    pub null_compensation: AtomicBool,
    pub anti_hanging: AtomicBool,
}

impl Default for Guarantees {
    fn default() -> Self {
        Self {
            idempotent_deduct: AtomicBool::new(true),
            refund: AtomicBool::new(true),
            query: AtomicBool::new(true),
            null_compensation: AtomicBool::new(true),
            anti_hanging: AtomicBool::new(true),
        }
    }
}

/// Misbehaviour on demand: each counter covers the next calls that change something.
#[derive(Debug, Default)]
pub struct Faults {
    /// Answer 503 without doing anything.
    pub unavailable: AtomicU32,
    /// Apply, then answer 502 as if the answer were lost on the way.
    pub lose_answer: AtomicU32,
    /// Swallow the call: answer nothing for 10 s, then 503, having applied nothing (the
    /// request was lost before it reached the books).
    pub swallow: AtomicU32,
    /// Wait this long (ms) before a call that changes something is handled.
    pub delay_ms: AtomicU64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    member: String,
    points: i64,
    status: &'static str,
}

#[derive(Debug, Default)]
struct Books {
    members: HashMap<String, i64>,
    entries: HashMap<String, Entry>,
    credits: HashSet<String>,
}

/// The API's state.
#[derive(Debug)]
pub struct PointsApi {
    api_key: String,
    books: Mutex<Books>,
    /// Where the books are written after each change; in memory only without it.
    store: Option<std::path::PathBuf>,
    pub guarantees: Guarantees,
    pub faults: Faults,
    /// Deduct calls that changed a balance, for tests to count.
    pub applied_deducts: AtomicU32,
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(json!({"result": "error", "error": {"code": code, "message": message}})),
    )
        .into_response()
}

#[derive(Debug, Deserialize)]
struct DeductBody {
    reference: String,
    member: String,
    points: i64,
    #[serde(default)]
    order: String,
}

#[derive(Debug, Deserialize)]
struct CreditBody {
    reference: String,
    points: i64,
}

impl PointsApi {
    pub fn new(api_key: &str) -> Arc<Self> {
        Arc::new(Self {
            api_key: api_key.to_owned(),
            books: Mutex::new(Books::default()),
            store: None,
            guarantees: Guarantees::default(),
            faults: Faults::default(),
            applied_deducts: AtomicU32::new(0),
        })
    }

    /// Serves the API on `listener` until `shutdown`.
    pub async fn serve(
        self: Arc<Self>,
        listener: tokio::net::TcpListener,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> std::io::Result<()> {
        axum::serve(listener, self.router())
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await
    }

    /// The API's routes (to serve them another way, e.g. over TLS).
    pub fn router(self: Arc<Self>) -> axum::Router {
        axum::Router::new()
            .route("/v1/members/{member}", get(balance))
            .route("/v1/members/{member}/credits", post(credit))
            .route("/v1/deductions", post(deduct))
            .route("/v1/deductions/{reference}", get(query))
            .route("/v1/deductions/{reference}/reversal", post(reverse))
            .with_state(self)
    }

    /// A member's balance, for tests.
    pub fn points_of(&self, member: &str) -> Option<i64> {
        self.books().members.get(member).copied()
    }

    /// Points held by live (not reversed) deductions of an order's reference prefix.
    pub fn held_by(&self, reference_prefix: &str) -> i64 {
        self.books()
            .entries
            .iter()
            .filter(|(r, e)| r.starts_with(reference_prefix) && e.status == "DONE")
            .map(|(_, e)| e.points)
            .sum()
    }

    /// Opens or tops up an account directly (tests and demo seeding).
    pub fn credit_direct(&self, member: &str, points: i64) {
        let mut books = self.books();
        let balance = books.members.entry(member.to_owned()).or_insert(0);
        *balance = balance.saturating_add(points);
        self.saved(&books);
    }

    fn books(&self) -> std::sync::MutexGuard<'_, Books> {
        // A panic while holding the lock leaves the books as they were between two calls.
        self.books.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The common front of every call: the key, the delay, and a 503 on demand.
    async fn front(&self, headers: &HeaderMap, changes: bool) -> Result<(), Response> {
        let delay = self.faults.delay_ms.load(Ordering::Relaxed);
        if changes && delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        if headers.get("x-api-key").and_then(|v| v.to_str().ok()) != Some(self.api_key.as_str()) {
            return Err(error(
                StatusCode::UNAUTHORIZED,
                "UNAUTHORIZED",
                "bad or missing X-Api-Key",
            ));
        }
        if changes && take(&self.faults.swallow) {
            tokio::time::sleep(Duration::from_secs(10)).await;
            return Err(error(
                StatusCode::SERVICE_UNAVAILABLE,
                "BUSY",
                "try again later",
            ));
        }
        if changes && take(&self.faults.unavailable) {
            return Err(error(
                StatusCode::SERVICE_UNAVAILABLE,
                "BUSY",
                "try again later",
            ));
        }
        Ok(())
    }

    /// The answer of a call that changed something, unless it is to be lost.
    fn answer(&self, body: Value) -> Response {
        if take(&self.faults.lose_answer) {
            return error(StatusCode::BAD_GATEWAY, "UPSTREAM", "the answer was lost");
        }
        Json(body).into_response()
    }
}

fn take(counter: &AtomicU32) -> bool {
    counter
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}

async fn balance(
    State(api): State<Arc<PointsApi>>,
    Path(member): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(response) = api.front(&headers, false).await {
        return response;
    }
    match api.points_of(&member) {
        Some(points) => Json(json!({"member": member, "points": points})).into_response(),
        None => error(StatusCode::NOT_FOUND, "UNKNOWN_MEMBER", "no such member"),
    }
}

async fn credit(
    State(api): State<Arc<PointsApi>>,
    Path(member): Path<String>,
    headers: HeaderMap,
    Json(body): Json<CreditBody>,
) -> Response {
    if let Err(response) = api.front(&headers, false).await {
        return response;
    }
    if body.points <= 0 {
        return error(
            StatusCode::BAD_REQUEST,
            "BAD_POINTS",
            "points must be positive",
        );
    }
    let mut books = api.books();
    if books.credits.insert(body.reference) {
        let balance = books.members.entry(member.clone()).or_insert(0);
        *balance = balance.saturating_add(body.points);
        api.saved(&books);
    }
    let points = books.members.get(&member).copied().unwrap_or(0);
    Json(json!({"member": member, "points": points})).into_response()
}

async fn deduct(
    State(api): State<Arc<PointsApi>>,
    headers: HeaderMap,
    Json(body): Json<DeductBody>,
) -> Response {
    if let Err(response) = api.front(&headers, true).await {
        return response;
    }
    if body.points <= 0 || body.reference.is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
            "points must be positive",
        );
    }
    let g = &api.guarantees;
    let answer = {
        let mut books = api.books();
        let Some(balance) = books.members.get(&body.member).copied() else {
            return error(StatusCode::NOT_FOUND, "UNKNOWN_MEMBER", "no such member");
        };
        let previous = books.entries.get(&body.reference).cloned();
        match previous {
            Some(entry) if entry.status == "REVERSED" && g.anti_hanging.load(Ordering::Relaxed) => {
                return error(
                    StatusCode::CONFLICT,
                    "ALREADY_REVERSED",
                    "reference reversed",
                );
            }
            Some(entry)
                if entry.status == "DONE" && g.idempotent_deduct.load(Ordering::Relaxed) =>
            {
                json!({"reference": body.reference, "status": "DONE", "points": entry.points})
            }
            _ if balance < body.points => {
                // Real APIs often say "no" inside a 200.
                return Json(json!({"result": "error", "error": {
                    "code": "INSUFFICIENT_POINTS", "message": "not enough points"}}))
                .into_response();
            }
            previous => {
                books
                    .members
                    .insert(body.member.clone(), balance - body.points);
                // A repeated deduct at an API without idempotency takes the points again.
                let held = match previous {
                    Some(p) if p.status == "DONE" => p.points.saturating_add(body.points),
                    _ => body.points,
                };
                books.entries.insert(
                    body.reference.clone(),
                    Entry {
                        member: body.member.clone(),
                        points: held,
                        status: "DONE",
                    },
                );
                api.applied_deducts.fetch_add(1, Ordering::Relaxed);
                api.saved(&books);
                tracing::debug!(order = %body.order, reference = %body.reference, "points api: deducted");
                json!({"reference": body.reference, "status": "DONE", "points": body.points})
            }
        }
    };
    api.answer(answer)
}

async fn reverse(
    State(api): State<Arc<PointsApi>>,
    Path(reference): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(response) = api.front(&headers, true).await {
        return response;
    }
    if !api.guarantees.refund.load(Ordering::Relaxed) {
        return error(
            StatusCode::NOT_FOUND,
            "NO_ROUTE",
            "reversals are not offered",
        );
    }
    let answer = {
        let mut books = api.books();
        match books.entries.get(&reference).cloned() {
            Some(entry) if entry.status == "DONE" => {
                let balance = books.members.entry(entry.member.clone()).or_insert(0);
                *balance = balance.saturating_add(entry.points);
                books.entries.insert(
                    reference.clone(),
                    Entry {
                        status: "REVERSED",
                        ..entry.clone()
                    },
                );
                api.saved(&books);
                json!({"reference": reference, "status": "REVERSED", "points": entry.points})
            }
            Some(_) => json!({"reference": reference, "status": "REVERSED", "points": 0}),
            None if api.guarantees.null_compensation.load(Ordering::Relaxed) => {
                books.entries.insert(
                    reference.clone(),
                    Entry {
                        member: String::new(),
                        points: 0,
                        status: "REVERSED",
                    },
                );
                api.saved(&books);
                json!({"reference": reference, "status": "REVERSED", "points": 0})
            }
            None => return error(StatusCode::NOT_FOUND, "NOT_FOUND", "no such deduction"),
        }
    };
    api.answer(answer)
}

async fn query(
    State(api): State<Arc<PointsApi>>,
    Path(reference): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(response) = api.front(&headers, false).await {
        return response;
    }
    if !api.guarantees.query.load(Ordering::Relaxed) {
        return error(StatusCode::NOT_FOUND, "NO_ROUTE", "lookups are not offered");
    }
    match api.books().entries.get(&reference) {
        Some(entry) => {
            Json(json!({"reference": reference, "status": entry.status, "points": entry.points}))
                .into_response()
        }
        None => error(StatusCode::NOT_FOUND, "NOT_FOUND", "no such deduction"),
    }
}
