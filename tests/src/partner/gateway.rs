//! Example 1 of docs/channels.md: an MD5-signed form gateway in the style of the Chinese open
//! platforms. One URL, `POST /gateway`, a form whose `method` names the call and whose
//! `biz_content` is a JSON document; every request signed — the parameters but `sign` and
//! empty ones, sorted, `k=v` joined by `&`, then `&key=<secret>`, MD5, upper-case hex — and
//! stamped with Beijing time (`yyyy-MM-dd HH:mm:ss`), refused when five minutes off. Amounts
//! are yuan with two decimals (100 points = 1.00). Our order number (`out_trade_no`) may be 32
//! characters at most. The deduct answers the gateway's own `trade_no`, and the refund takes
//! only that. Answers: `{"response": {"code": "10000", …}}`, or a `code` 40004 with a
//! `sub_code` saying why — always HTTP 200.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Form, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{Book, BookError, Faults, Served, Trade, TradeState};

pub const EXAMPLE: &str = include_str!("../../../docs/examples/gateway-md5.toml");
pub const SECRET: &str = "gateway-md5-secret-for-tests";
const APP_ID: &str = "jifen-test";

#[derive(Debug)]
pub struct Gateway {
    pub book: Book,
}

impl Gateway {
    /// Serves the gateway with `members` holding `points` each, and its example config.
    pub async fn start(members: &[&str], points: i64) -> (Arc<Self>, Served) {
        let gateway = Arc::new(Self {
            book: Book::new(members, points),
        });
        let router = axum::Router::new()
            .route("/gateway", axum::routing::post(handle))
            .with_state(gateway.clone());
        let served = Served::start(
            router,
            EXAMPLE,
            &[("gateway-md5.key", format!("{SECRET}\n").as_bytes())],
        )
        .await;
        (gateway, served)
    }
}

fn answer(fields: Value) -> Response {
    Json(json!({ "response": fields })).into_response()
}

use axum::Json;

fn failed(sub_code: &str) -> Response {
    answer(json!({ "code": "40004", "msg": "Business Failed", "sub_code": sub_code }))
}

fn yuan(points: i64) -> String {
    format!("{}.{:02}", points / 100, points % 100)
}

fn points_of(yuan: &str) -> Option<i64> {
    let (whole, cents) = yuan.split_once('.')?;
    if cents.len() != 2 {
        return None;
    }
    whole
        .parse::<i64>()
        .ok()?
        .checked_mul(100)?
        .checked_add(cents.parse().ok()?)
}

/// The signature as the gateway's own documentation defines it, written here apart from the
/// adapter's so the two are checked against each other.
fn signature(params: &BTreeMap<String, String>) -> String {
    let text = params
        .iter()
        .filter(|(k, v)| k.as_str() != "sign" && !v.is_empty())
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    jifen_adapter::crypto::sign(
        jifen_adapter::crypto::Algorithm::Md5,
        &jifen_adapter::crypto::Key::Secret(Vec::new()),
        format!("{text}&key={SECRET}").as_bytes(),
        jifen_adapter::crypto::Output::HexUpper,
    )
    .unwrap_or_default()
}

fn fresh(timestamp: &str) -> bool {
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    let Ok(at) = time::PrimitiveDateTime::parse(timestamp, format) else {
        return false;
    };
    let at = at.assume_offset(time::macros::offset!(+8));
    (time::OffsetDateTime::now_utc() - at).abs() < time::Duration::minutes(5)
}

fn trade_fields(trade: &Trade) -> Value {
    json!({
        "code": "10000",
        "msg": "Success",
        "trade_no": trade.trade_no,
        "out_trade_no": trade.out_trade_no,
        "total_amount": yuan(trade.points),
        "trade_status": match trade.state {
            TradeState::Done => "TRADE_SUCCESS",
            TradeState::Reversed => "TRADE_CLOSED",
        },
    })
}

async fn handle(
    State(gateway): State<Arc<Gateway>>,
    Form(params): Form<BTreeMap<String, String>>,
) -> Response {
    let faults = &gateway.book.faults;
    faults.wait().await;
    let field = |name: &str| params.get(name).map(String::as_str).unwrap_or_default();
    if field("app_id") != APP_ID || field("sign_type") != "MD5" {
        return failed("isv.invalid-app-id");
    }
    if !field("sign").eq_ignore_ascii_case(&signature(&params)) {
        return failed("isv.invalid-signature");
    }
    if !fresh(field("timestamp")) {
        return failed("isv.invalid-timestamp");
    }
    let Ok(biz) = serde_json::from_str::<Value>(field("biz_content")) else {
        return failed("isv.invalid-biz-content");
    };
    let biz_field = |name: &str| biz.get(name).and_then(Value::as_str).unwrap_or_default();
    let changes = matches!(field("method"), "points.deduct" | "points.refund");
    if changes && Faults::take(&faults.unavailable) {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    if changes && let Some(limited) = faults.rate_limited() {
        return limited;
    }
    let answered = match field("method") {
        "points.deduct" => {
            let out_trade_no = biz_field("out_trade_no");
            if out_trade_no.is_empty() || out_trade_no.len() > 32 {
                return failed("isv.invalid-out-trade-no");
            }
            let Some(points) = points_of(biz_field("total_amount")).filter(|p| *p > 0) else {
                return failed("isv.invalid-amount");
            };
            match gateway
                .book
                .deduct(out_trade_no, biz_field("user_id"), points)
            {
                Ok(trade) => answer(trade_fields(&trade)),
                Err(BookError::Insufficient) => failed("ACQ.BALANCE_NOT_ENOUGH"),
                Err(BookError::UnknownMember) => failed("ACQ.BUYER_NOT_EXIST"),
                Err(BookError::OtherAmount) => failed("ACQ.OUT_TRADE_NO_USED"),
                Err(BookError::NotFound) => failed("ACQ.SYSTEM_ERROR"),
            }
        }
        "points.refund" => {
            let trade_no = biz_field("trade_no");
            match gateway.book.query_by_trade_no(trade_no) {
                Some(trade) if Some(trade.points) != points_of(biz_field("refund_amount")) => {
                    failed("ACQ.REFUND_AMT_NOT_EQUAL")
                }
                Some(_) => match gateway.book.reverse(trade_no) {
                    Ok(trade) => answer(json!({
                        "code": "10000",
                        "msg": "Success",
                        "trade_no": trade.trade_no,
                        "refund_fee": yuan(trade.points),
                    })),
                    Err(_) => failed("ACQ.TRADE_NOT_EXIST"),
                },
                None => failed("ACQ.TRADE_NOT_EXIST"),
            }
        }
        "points.balance" => match gateway.book.points_of(biz_field("user_id")) {
            // Numbers as strings, as such gateways write them.
            Some(points) => {
                answer(json!({ "code": "10000", "msg": "Success", "points": points.to_string() }))
            }
            None => failed("ACQ.BUYER_NOT_EXIST"),
        },
        "points.query" => match gateway.book.query(biz_field("out_trade_no")) {
            Some(trade) => answer(trade_fields(&trade)),
            None => failed("ACQ.TRADE_NOT_EXIST"),
        },
        _ => failed("isv.invalid-method"),
    };
    if changes && Faults::take(&faults.lose_answer) {
        return StatusCode::BAD_GATEWAY.into_response();
    }
    if changes {
        faults.answer_late().await;
    }
    answered
}
