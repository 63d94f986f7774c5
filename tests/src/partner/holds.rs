//! Example 5 of docs/channels.md: a points API with holds in the style of card payments.
//! `POST /v2/holds` authorizes (answers the partner's own hold id), `POST /v2/holds/{id}/capture`
//! spends, `POST /v2/holds/{id}/void` releases; a hold it has not heard of cannot be voided (a
//! void names the id), a hold may arrive after its void was refused, and a hold lapses by
//! itself after its TTL (`EXPIRED`, its points back). `POST /v2/redemptions` takes points
//! outright; `GET /v2/transactions?reference=` finds either by our reference. Every call needs
//! `X-Api-Key`; errors are `{"error": {"code": …}}` with a 4xx.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use super::{Faults, Served};

pub const EXAMPLE: &str = include_str!("../../../docs/examples/holds-json.toml");
pub const API_KEY: &str = "holds-api-key-for-tests";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Completed,
    Authorized,
    Captured,
    Voided,
    Expired,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Self::Completed => "COMPLETED",
            Self::Authorized => "AUTHORIZED",
            Self::Captured => "CAPTURED",
            Self::Voided => "VOIDED",
            Self::Expired => "EXPIRED",
        }
    }
}

/// A hold or a redemption, under our reference and the partner's id.
#[derive(Debug, Clone)]
pub struct Entry {
    pub id: String,
    pub reference: String,
    pub member: String,
    pub points: i64,
    pub status: Status,
    expires: Instant,
}

#[derive(Debug, Default)]
struct Books {
    balances: HashMap<String, i64>,
    by_reference: HashMap<String, Entry>,
    references: HashMap<String, String>,
    next: u64,
}

#[derive(Debug)]
pub struct HoldsApi {
    books: Mutex<Books>,
    ttl: Mutex<Duration>,
    pub faults: Faults,
}

impl HoldsApi {
    /// Serves the API with `members` holding `points` each, and its example config.
    pub async fn start(members: &[&str], points: i64) -> (Arc<Self>, Served) {
        let mut books = Books::default();
        for member in members {
            books.balances.insert((*member).to_owned(), points);
        }
        let api = Arc::new(Self {
            books: Mutex::new(books),
            ttl: Mutex::new(Duration::from_secs(15 * 60)),
            faults: Faults::default(),
        });
        let router = axum::Router::new()
            .route("/v2/redemptions", post(redeem))
            .route("/v2/holds", post(authorize))
            .route("/v2/holds/{id}/capture", post(capture))
            .route("/v2/holds/{id}/void", post(void))
            .route("/v2/transactions", get(lookup))
            .route("/v2/members/{member}", get(member))
            .with_state(api.clone());
        let served = Served::start(router, EXAMPLE, &[("holds-api.key", API_KEY.as_bytes())]).await;
        (api, served)
    }

    /// Holds placed from now on lapse after `ttl`.
    pub fn hold_for(&self, ttl: Duration) {
        if let Ok(mut held) = self.ttl.lock() {
            *held = ttl;
        }
    }

    fn books(&self) -> std::sync::MutexGuard<'_, Books> {
        self.books
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// What a member can spend now (lapsed holds given back).
    pub fn available(&self, member: &str) -> Option<i64> {
        let mut books = self.books();
        books.lapse();
        books.balances.get(member).copied()
    }

    /// The entry of our reference, as the partner keeps it now.
    pub fn entry(&self, reference: &str) -> Option<Entry> {
        let mut books = self.books();
        books.lapse();
        books.by_reference.get(reference).cloned()
    }

    /// Holds that stand now (authorized, not lapsed).
    pub fn standing(&self) -> usize {
        let mut books = self.books();
        books.lapse();
        books
            .by_reference
            .values()
            .filter(|e| e.status == Status::Authorized)
            .count()
    }
}

impl Books {
    /// Gives back the points of every hold past its expiry.
    fn lapse(&mut self) {
        let now = Instant::now();
        let lapsed: Vec<String> = self
            .by_reference
            .values()
            .filter(|e| e.status == Status::Authorized && e.expires <= now)
            .map(|e| e.reference.clone())
            .collect();
        for reference in lapsed {
            if let Some(entry) = self.by_reference.get_mut(&reference) {
                entry.status = Status::Expired;
                let (member, points) = (entry.member.clone(), entry.points);
                *self.balances.entry(member).or_default() += points;
            }
        }
    }

    fn take(
        &mut self,
        reference: &str,
        member: &str,
        points: i64,
        status: Status,
        ttl: Duration,
    ) -> Result<Entry, &'static str> {
        self.lapse();
        if let Some(entry) = self.by_reference.get(reference) {
            return if entry.member == member && entry.points == points {
                Ok(entry.clone())
            } else {
                Err("REFERENCE_REUSED")
            };
        }
        let balance = self.balances.get_mut(member).ok_or("MEMBER_NOT_FOUND")?;
        if points <= 0 || *balance < points {
            return Err("INSUFFICIENT_POINTS");
        }
        *balance -= points;
        self.next += 1;
        let entry = Entry {
            id: format!("hx_{:08}", self.next),
            reference: reference.to_owned(),
            member: member.to_owned(),
            points,
            status,
            expires: Instant::now() + ttl,
        };
        self.references
            .insert(entry.id.clone(), reference.to_owned());
        self.by_reference
            .insert(reference.to_owned(), entry.clone());
        Ok(entry)
    }

    fn hold_mut(&mut self, id: &str) -> Option<&mut Entry> {
        self.lapse();
        let reference = self.references.get(id)?.clone();
        self.by_reference
            .get_mut(&reference)
            .filter(|e| e.status != Status::Completed)
    }
}

fn error(status: StatusCode, code: &str) -> Response {
    (status, Json(json!({ "error": { "code": code } }))).into_response()
}

fn entry_json(entry: &Entry) -> Value {
    json!({
        "id": entry.id,
        "reference": entry.reference,
        "member_id": entry.member,
        "points": entry.points,
        "status": entry.status.as_str(),
    })
}

fn authorized(headers: &HeaderMap) -> bool {
    headers
        .get("x-api-key")
        .is_some_and(|key| key.as_bytes() == API_KEY.as_bytes())
}

/// The fields of a request that takes points.
fn taking(body: &Value) -> Option<(&str, &str, i64)> {
    Some((
        body.get("reference")?.as_str()?,
        body.get("member_id")?.as_str()?,
        body.get("points")?.as_i64()?,
    ))
}

async fn take(api: &HoldsApi, headers: &HeaderMap, body: &Value, status: Status) -> Response {
    api.faults.wait().await;
    if !authorized(headers) {
        return error(StatusCode::UNAUTHORIZED, "BAD_API_KEY");
    }
    if Faults::take(&api.faults.unavailable) {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let Some((reference, member, points)) = taking(body) else {
        return error(StatusCode::BAD_REQUEST, "BAD_REQUEST");
    };
    let ttl = api.ttl.lock().map(|t| *t).unwrap_or_default();
    let taken = api.books().take(reference, member, points, status, ttl);
    match taken {
        Ok(entry) if Faults::take(&api.faults.lose_answer) => {
            let _ = entry;
            StatusCode::BAD_GATEWAY.into_response()
        }
        Ok(entry) => Json(entry_json(&entry)).into_response(),
        Err(code @ "MEMBER_NOT_FOUND") => error(StatusCode::NOT_FOUND, code),
        Err(code @ "REFERENCE_REUSED") => error(StatusCode::CONFLICT, code),
        Err(code) => error(StatusCode::PAYMENT_REQUIRED, code),
    }
}

async fn redeem(
    State(api): State<Arc<HoldsApi>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    take(&api, &headers, &body, Status::Completed).await
}

async fn authorize(
    State(api): State<Arc<HoldsApi>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    take(&api, &headers, &body, Status::Authorized).await
}

/// Captures or voids a hold: a repeat answers as before; a hold no longer active is refused.
async fn settle(api: &HoldsApi, headers: &HeaderMap, id: &str, to: Status) -> Response {
    api.faults.wait().await;
    if !authorized(headers) {
        return error(StatusCode::UNAUTHORIZED, "BAD_API_KEY");
    }
    if Faults::take(&api.faults.unavailable) {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let mut books = api.books();
    let Some(hold) = books.hold_mut(id) else {
        return error(StatusCode::NOT_FOUND, "HOLD_NOT_FOUND");
    };
    let settled = match (hold.status, to) {
        (Status::Authorized, Status::Captured) => {
            hold.status = Status::Captured;
            None
        }
        (Status::Authorized, _) => {
            hold.status = Status::Voided;
            Some((hold.member.clone(), hold.points))
        }
        (now, wanted) if now == wanted => None,
        // A void of a lapsed hold finds it released already.
        (Status::Expired, Status::Voided) => None,
        (Status::Captured, _) => return error(StatusCode::CONFLICT, "HOLD_CAPTURED"),
        _ => return error(StatusCode::CONFLICT, "HOLD_NOT_ACTIVE"),
    };
    let answer = entry_json(hold);
    if let Some((member, points)) = settled {
        *books.balances.entry(member).or_default() += points;
    }
    Json(answer).into_response()
}

async fn capture(
    State(api): State<Arc<HoldsApi>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    settle(&api, &headers, &id, Status::Captured).await
}

async fn void(
    State(api): State<Arc<HoldsApi>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    settle(&api, &headers, &id, Status::Voided).await
}

async fn lookup(
    State(api): State<Arc<HoldsApi>>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if !authorized(&headers) {
        return error(StatusCode::UNAUTHORIZED, "BAD_API_KEY");
    }
    let reference = query
        .get("reference")
        .map(String::as_str)
        .unwrap_or_default();
    match api.entry(reference) {
        Some(entry) => Json(entry_json(&entry)).into_response(),
        None => error(StatusCode::NOT_FOUND, "HOLD_NOT_FOUND"),
    }
}

async fn member(
    State(api): State<Arc<HoldsApi>>,
    headers: HeaderMap,
    Path(member): Path<String>,
) -> Response {
    if !authorized(&headers) {
        return error(StatusCode::UNAUTHORIZED, "BAD_API_KEY");
    }
    match api.available(&member) {
        Some(available) => {
            Json(json!({ "member_id": member, "available": available })).into_response()
        }
        None => error(StatusCode::NOT_FOUND, "MEMBER_NOT_FOUND"),
    }
}
