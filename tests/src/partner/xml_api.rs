//! Example 4 of docs/channels.md: an XML API in the style of the older payment gateways. Every
//! request is `<xml>…</xml>` with a `nonce_str` and a `sign` — HMAC-SHA256 (key = the secret)
//! of the sorted non-empty fields but `sign`, then `&key=<secret>`, upper-case hex — and every
//! answer is signed the same way. `return_code` says whether the call was understood,
//! `result_code` whether it succeeded, `err_code` why not. Amounts are fen, as numbers in text.
//!
//! - `POST /pay/deduct` `appid mch_id nonce_str out_trade_no openid total_fee` →
//!   `transaction_id total_fee`; `err_code` NOTENOUGH, USER_NOT_EXIST, OUT_TRADE_NO_USED
//! - `POST /pay/refund` `… out_trade_no out_refund_no total_fee refund_fee` → `refund_fee`;
//!   ORDERNOTEXIST
//! - `POST /pay/query` `… out_trade_no` → `trade_state` SUCCESS or REFUND, `total_fee`
//! - `POST /pay/balance` `… openid` → `points`

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::{Book, BookError, Faults, Served, TradeState};
use jifen_adapter::crypto::{Algorithm, Key, Output, sign};

pub const EXAMPLE: &str = include_str!("../../../docs/examples/xml-api.toml");
pub const SECRET: &str = "xml-api-secret-for-tests";

#[derive(Debug, Default)]
pub struct XmlApi {
    pub book: Book,
}

impl XmlApi {
    pub async fn start(members: &[&str], points: i64) -> (Arc<Self>, Served) {
        let api = Arc::new(Self {
            book: Book::new(members, points),
        });
        let router = axum::Router::new()
            .route("/pay/{call}", axum::routing::post(handle))
            .with_state(api.clone());
        let served = Served::start(router, EXAMPLE, &[("xml-api.key", SECRET.as_bytes())]).await;
        (api, served)
    }
}

/// The gateway's signature, written apart from the adapter's.
fn signature(fields: &BTreeMap<String, String>) -> String {
    let text = fields
        .iter()
        .filter(|(k, v)| k.as_str() != "sign" && !v.is_empty())
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    sign(
        Algorithm::HmacSha256,
        &Key::Secret(SECRET.as_bytes().to_vec()),
        format!("{text}&key={SECRET}").as_bytes(),
        Output::HexUpper,
    )
    .unwrap_or_default()
}

/// The fields of a flat `<xml>` document.
fn fields(body: &[u8]) -> Option<BTreeMap<String, String>> {
    let tree = jifen_adapter::xml::to_json(body)?;
    let object = tree.get("xml")?.as_object()?;
    Some(
        object
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
            .collect(),
    )
}

fn answer(mut fields: BTreeMap<String, String>) -> Response {
    fields.insert("return_code".into(), "SUCCESS".into());
    fields.insert("nonce_str".into(), jifen_adapter::crypto::nonce());
    let sign = signature(&fields);
    fields.insert("sign".into(), sign);
    let pairs: Vec<(String, String)> = fields.into_iter().collect();
    (
        [("content-type", "application/xml")],
        jifen_adapter::xml::encode("xml", &pairs),
    )
        .into_response()
}

fn success(pairs: &[(&str, String)]) -> Response {
    let mut fields: BTreeMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect();
    fields.insert("result_code".into(), "SUCCESS".into());
    answer(fields)
}

fn failure(err_code: &str) -> Response {
    answer(BTreeMap::from([
        ("result_code".to_owned(), "FAIL".to_owned()),
        ("err_code".to_owned(), err_code.to_owned()),
    ]))
}

async fn handle(State(api): State<Arc<XmlApi>>, Path(call): Path<String>, body: Bytes) -> Response {
    let faults = &api.book.faults;
    faults.wait().await;
    let Some(request) = fields(&body) else {
        return (StatusCode::BAD_REQUEST, "not xml").into_response();
    };
    let field = |name: &str| request.get(name).cloned().unwrap_or_default();
    if field("appid") != "jifen-test" || field("nonce_str").len() < 16 {
        return failure("PARAM_ERROR");
    }
    if !field("sign").eq_ignore_ascii_case(&signature(&request)) {
        return failure("SIGNERROR");
    }
    let changes = matches!(call.as_str(), "deduct" | "refund");
    if changes && Faults::take(&faults.unavailable) {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    if changes && let Some(limited) = faults.rate_limited() {
        return limited;
    }
    let out_trade_no = field("out_trade_no");
    let answered = match call.as_str() {
        "deduct" => {
            let Ok(fee) = field("total_fee").parse::<i64>() else {
                return failure("PARAM_ERROR");
            };
            if fee <= 0 {
                return failure("PARAM_ERROR");
            }
            match api.book.deduct(&out_trade_no, &field("openid"), fee) {
                Ok(trade) => success(&[
                    ("transaction_id", trade.trade_no),
                    ("total_fee", trade.points.to_string()),
                ]),
                Err(BookError::Insufficient) => failure("NOTENOUGH"),
                Err(BookError::UnknownMember) => failure("USER_NOT_EXIST"),
                Err(BookError::OtherAmount) => failure("OUT_TRADE_NO_USED"),
                Err(BookError::NotFound) => failure("SYSTEMERROR"),
            }
        }
        "refund" => match api.book.query(&out_trade_no) {
            Some(trade) if field("refund_fee") != trade.points.to_string() => {
                failure("INVALID_REQUEST")
            }
            Some(trade) => match api.book.reverse(&trade.trade_no) {
                Ok(trade) => success(&[("refund_fee", trade.points.to_string())]),
                Err(_) => failure("ORDERNOTEXIST"),
            },
            None => failure("ORDERNOTEXIST"),
        },
        "query" => match api.book.query(&out_trade_no) {
            Some(trade) => success(&[
                ("transaction_id", trade.trade_no),
                ("total_fee", trade.points.to_string()),
                (
                    "trade_state",
                    match trade.state {
                        TradeState::Done => "SUCCESS",
                        TradeState::Reversed => "REFUND",
                    }
                    .to_owned(),
                ),
            ]),
            None => failure("ORDERNOTEXIST"),
        },
        "balance" => match api.book.points_of(&field("openid")) {
            Some(points) => success(&[("points", points.to_string())]),
            None => failure("USER_NOT_EXIST"),
        },
        _ => return (StatusCode::NOT_FOUND, "no such call").into_response(),
    };
    if changes && Faults::take(&faults.lose_answer) {
        return StatusCode::BAD_GATEWAY.into_response();
    }
    if changes {
        faults.answer_late().await;
    }
    answered
}
