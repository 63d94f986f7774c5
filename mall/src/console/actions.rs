//! The console's changes: each a POST carrying the session's CSRF token, each done through the
//! admin gRPC API's own code (so it is recorded in the order's history with its note), each
//! answered by a redirect to the page it changed with a message saying what happened.

use axum::body::Bytes;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Path, State};
use axum::response::Response;
use jifen_proto::v1::admin_service_server::AdminService;
use jifen_proto::v1::{
    CompensateOrderRequest, RecordDeductOutcomeRequest, RecordManualRefundRequest,
    RetryOrderRequest, SettleConfirmingOrderRequest,
};
use maud::html;
use tonic::Status;

use super::Console;
use super::confirm::{Ask, admitted_and_confirmed};
use super::session::{Session, redirect};
use super::views::{Flash, enc, forbidden};
use crate::admin::Refusal;

/// A submitted form: every value of every field, in order.
pub(super) struct Form(Vec<(String, String)>);

impl Form {
    fn parse(body: &[u8]) -> Self {
        Self(form_urlencoded::parse(body).into_owned().collect())
    }

    pub(super) fn fields(&self) -> &[(String, String)] {
        &self.0
    }

    pub(super) fn get(&self, key: &str) -> &str {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .unwrap_or_default()
    }

    pub(super) fn all(&self, key: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .collect()
    }
}

/// The form, if it carries the session's CSRF token.
fn checked(session: &Session, body: &[u8]) -> Option<Form> {
    let form = Form::parse(body);
    session.csrf_ok(form.get("csrf")).then_some(form)
}

/// Back to `page` with what the call did.
pub(super) fn back<T>(
    session: &Session,
    page: &str,
    result: Result<T, Status>,
    done: &str,
) -> Response {
    let flash = match result {
        Ok(_) => Flash::query(session, true, done),
        Err(status) => Flash::query(session, false, status.message()),
    };
    redirect(&format!("{page}?{flash}"))
}

pub async fn login(
    State(console): State<Console>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: Bytes,
) -> Response {
    let form = Form::parse(&body);
    let token = Some(form.get("token")).filter(|t| !t.is_empty());
    let operator = match console
        .gate
        .admit(token, Some(peer.ip()), "console login")
        .await
    {
        Ok(operator) => operator,
        Err(Refusal::LockedOut(retry_after)) => return super::views::too_many(retry_after),
        Err(Refusal::WrongToken) => {
            let why = if console.gate.operators().is_empty() {
                "The mall has no operators configured (JIFEN_OPERATORS_FILE or JIFEN_ADMIN_TOKEN): the console is closed."
            } else {
                "Wrong token."
            };
            return super::views::login(Some(why), form.get("next"));
        }
    };
    let next = super::views::safe_next(form.get("next")).unwrap_or("/");
    match console.open_session(&operator, next).await {
        Ok(response) => response,
        Err(error) => {
            tracing::error!(%error, "console: cannot open a session");
            super::views::login(
                Some("The session could not be stored; try again."),
                form.get("next"),
            )
        }
    }
}

/// `Err(403 page)` unless the session's operator may act (a viewer's attempt is audited).
/// The form of a change the session may make: its CSRF token checked (403 without), then the
/// operator's right to `action` on `target` (the admin API's own check, so the console can
/// never do more than the API).
pub(super) async fn admitted(
    console: &Console,
    session: &Session,
    body: &[u8],
    action: &str,
    target: &str,
) -> Result<Form, Response> {
    let form = checked(session, body).ok_or_else(forbidden)?;
    console
        .admin
        .acting(&session.request(()), action, target)
        .await
        .map_err(|status| super::views::denied(session, status.message()))?;
    Ok(form)
}

pub async fn logout(State(console): State<Console>, session: Session, body: Bytes) -> Response {
    if checked(&session, &body).is_none() {
        return forbidden();
    }
    match console.close_session(&session).await {
        Ok(response) => response,
        Err(error) => console.storage_error(&session, &error),
    }
}

pub async fn compensate(
    State(console): State<Console>,
    session: Session,
    Path(order_id): Path<String>,
    body: Bytes,
) -> Response {
    let page_of = order_page(&order_id);
    let ask = Ask {
        action: format!("{page_of}/compensate"),
        title: "Compensate",
        what_happens: html! { p { "Order " code { (order_id) } ": every line deducted so far is refunded at its channel and its quota given back at the portal; the order ends " strong { "CANCELLED" } ". This cannot be undone." } },
        back: page_of,
    };
    let form =
        match admitted_and_confirmed(&console, &session, &body, "CompensateOrder", &order_id, ask)
            .await
        {
            Ok(form) => form,
            Err(page) => return page,
        };
    let result = AdminService::compensate_order(
        &console.admin,
        session.request(CompensateOrderRequest {
            order_id: order_id.clone(),
            reason: form.get("note").to_owned(),
        }),
    )
    .await;
    back(
        &session,
        &order_page(&order_id),
        result,
        "Compensation started.",
    )
}

pub async fn clear_flag(
    State(console): State<Console>,
    session: Session,
    Path(order_id): Path<String>,
    body: Bytes,
) -> Response {
    let form = match admitted(&console, &session, &body, "ClearAttention", &order_id).await {
        Ok(form) => form,
        Err(refused) => return refused,
    };
    let result = AdminService::clear_attention(
        &console.admin,
        session.request(jifen_proto::v1::ClearAttentionRequest {
            order_id: order_id.clone(),
            note: form.get("note").to_owned(),
        }),
    )
    .await;
    back(&session, &order_page(&order_id), result, "Flag cleared.")
}

pub async fn retry(
    State(console): State<Console>,
    session: Session,
    Path(order_id): Path<String>,
    body: Bytes,
) -> Response {
    let form = match admitted(&console, &session, &body, "RetryOrder", &order_id).await {
        Ok(form) => form,
        Err(refused) => return refused,
    };
    let result = AdminService::retry_order(
        &console.admin,
        session.request(RetryOrderRequest {
            order_id: order_id.clone(),
            note: form.get("note").to_owned(),
        }),
    )
    .await;
    back(
        &session,
        &order_page(&order_id),
        result,
        "Open commands sent again.",
    )
}

pub async fn record_outcome(
    State(console): State<Console>,
    session: Session,
    Path(order_id): Path<String>,
    body: Bytes,
) -> Response {
    let form = match admitted(&console, &session, &body, "RecordDeductOutcome", &order_id).await {
        Ok(form) => form,
        Err(refused) => return refused,
    };
    let result = AdminService::record_deduct_outcome(
        &console.admin,
        session.request(RecordDeductOutcomeRequest {
            order_id: order_id.clone(),
            channel_id: form.get("channel").to_owned(),
            user_id: form.get("user").to_owned(),
            deducted: form.get("deducted") == "true",
            note: form.get("note").to_owned(),
        }),
    )
    .await;
    back(
        &session,
        &order_page(&order_id),
        result,
        "Outcome recorded.",
    )
}

pub async fn manual_refund(
    State(console): State<Console>,
    session: Session,
    Path(order_id): Path<String>,
    body: Bytes,
) -> Response {
    let form = match admitted(&console, &session, &body, "RecordManualRefund", &order_id).await {
        Ok(form) => form,
        Err(refused) => return refused,
    };
    let result = AdminService::record_manual_refund(
        &console.admin,
        session.request(RecordManualRefundRequest {
            order_id: order_id.clone(),
            channel_id: form.get("channel").to_owned(),
            user_id: form.get("user").to_owned(),
            note: form.get("note").to_owned(),
        }),
    )
    .await;
    back(
        &session,
        &order_page(&order_id),
        result,
        "Manual refund recorded.",
    )
}

pub async fn settle(
    State(console): State<Console>,
    session: Session,
    Path(order_id): Path<String>,
    body: Bytes,
) -> Response {
    let page_of = order_page(&order_id);
    let completed = form_urlencoded::parse(&body).any(|(k, v)| k == "completed" && v == "true");
    let ask = Ask {
        action: format!("{page_of}/settle"),
        title: "Settle by hand",
        what_happens: if completed {
            html! { p { "Order " code { (order_id) } " ends " strong { "COMPLETED" } ": you say every hold is spent at its channel. Its open dead letters are closed with your note, and the reconciliation checks your word against the ledgers." } }
        } else {
            html! { p { "Order " code { (order_id) } " ends " strong { "CANCELLED" } ": you say everything it took was given back by hand at every channel. Its open dead letters are closed with your note, and the reconciliation checks your word against the ledgers." } }
        },
        back: page_of,
    };
    let form = match admitted_and_confirmed(
        &console,
        &session,
        &body,
        "SettleConfirmingOrder",
        &order_id,
        ask,
    )
    .await
    {
        Ok(form) => form,
        Err(page) => return page,
    };
    let result = AdminService::settle_confirming_order(
        &console.admin,
        session.request(SettleConfirmingOrderRequest {
            order_id: order_id.clone(),
            completed: form.get("completed") == "true",
            note: form.get("note").to_owned(),
        }),
    )
    .await;
    back(&session, &order_page(&order_id), result, "Order settled.")
}

pub(super) fn order_page(order_id: &str) -> String {
    format!("/orders/{}", enc(order_id))
}
