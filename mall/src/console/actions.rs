//! The console's changes: each a POST carrying the session's CSRF token, each done through the
//! admin gRPC API's own code (so it is recorded in the order's history with its note), each
//! answered by a redirect to the page it changed with a message saying what happened.

use axum::body::Bytes;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Path, State};
use axum::response::Response;
use jifen_proto::v1::admin_service_server::AdminService;
use jifen_proto::v1::{
    CompensateOrderRequest, DiscardDeadLetterRequest, RecordDeductOutcomeRequest,
    RecordManualRefundRequest, RedriveDeadLetterRequest, RetryOrderRequest,
};
use maud::html;
use tonic::Status;

use super::Console;
use super::confirm::confirmed;
use super::session::{Session, redirect};
use super::views::{Flash, enc, forbidden, page};
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

    fn all(&self, key: &str) -> Vec<String> {
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
            return super::views::login(Some(why));
        }
    };
    match console.open_session(&operator).await {
        Ok(response) => response,
        Err(error) => {
            tracing::error!(%error, "console: cannot open a session");
            super::views::login(Some("The session could not be stored; try again."))
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
    let form = match admitted(&console, &session, &body, "CompensateOrder", &order_id).await {
        Ok(form) => form,
        Err(refused) => return refused,
    };
    let page_of = order_page(&order_id);
    if let Some(ask) = confirmed(
        &session,
        form.fields(),
        &format!("{page_of}/compensate"),
        "Compensate",
        html! { p { "Order " code { (order_id) } ": every line deducted so far is refunded at its channel and its quota given back at the portal; the order ends " strong { "CANCELLED" } ". This cannot be undone." } },
        &page_of,
    ) {
        return ask;
    }
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

pub async fn redrive(
    State(console): State<Console>,
    session: Session,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let form = match admitted(&console, &session, &body, "RedriveDeadLetter", &id).await {
        Ok(form) => form,
        Err(refused) => return refused,
    };
    let page_of = letter_page(&id);
    if let Some(ask) = confirmed(
        &session,
        form.fields(),
        &format!("{page_of}/redrive"),
        "Redrive",
        html! { p { "Dead letter " code { (id) } " is sent again to its consumer under a new message id. If its ledger still fails, it comes back as a new dead letter." } },
        &page_of,
    ) {
        return ask;
    }
    let result = AdminService::redrive_dead_letter(
        &console.admin,
        session.request(RedriveDeadLetterRequest {
            id: id.clone(),
            note: form.get("note").to_owned(),
        }),
    )
    .await;
    match result {
        // The letter is closed: its page is gone, its order shows what follows.
        Ok(answer) => {
            let order_id = answer
                .into_inner()
                .dead_letter
                .map(|dl| dl.order_id)
                .unwrap_or_default();
            redirect(&format!(
                "{}?{}",
                order_page(&order_id),
                Flash::query(&session, true, &format!("Dead letter {id} sent again."))
            ))
        }
        Err(status) => back(&session, &letter_page(&id), Err::<(), _>(status), ""),
    }
}

pub async fn discard(
    State(console): State<Console>,
    session: Session,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let form = match admitted(&console, &session, &body, "DiscardDeadLetter", &id).await {
        Ok(form) => form,
        Err(refused) => return refused,
    };
    let page_of = letter_page(&id);
    if let Some(ask) = confirmed(
        &session,
        form.fields(),
        &format!("{page_of}/discard"),
        "Discard",
        html! { p { "Dead letter " code { (id) } " is closed without being sent again: what it asked for never happens unless someone does it by hand. Its order stays as it is." } },
        &page_of,
    ) {
        return ask;
    }
    if form.get("note").trim().is_empty() {
        let why = Status::invalid_argument("say why it needs no redrive (the note)");
        return back(&session, &letter_page(&id), Err::<(), _>(why), "");
    }
    let result = AdminService::discard_dead_letter(
        &console.admin,
        session.request(DiscardDeadLetterRequest {
            id: id.clone(),
            note: form.get("note").to_owned(),
        }),
    )
    .await;
    match result {
        Ok(_) => redirect(&format!(
            "/dead-letters?{}",
            Flash::query(&session, true, &format!("Dead letter {id} discarded."))
        )),
        Err(status) => back(&session, &letter_page(&id), Err::<(), _>(status), ""),
    }
}

/// Redrives every picked dead letter and shows a result per item (never "all done" when some
/// failed).
pub async fn redrive_many(
    State(console): State<Console>,
    session: Session,
    body: Bytes,
) -> Response {
    let form = match admitted(&console, &session, &body, "RedriveDeadLetter", "(many)").await {
        Ok(form) => form,
        Err(refused) => return refused,
    };
    let ids = form.all("id");
    if let Some(ask) = confirmed(
        &session,
        form.fields(),
        "/dead-letters/redrive",
        "Redrive",
        html! {
            p { (ids.len()) " dead letter(s) are sent again, each under a new message id:" }
            ul { @for id in ids.iter().take(50) { li { code { (id) } } } }
            @if ids.len() > 50 { p.muted { "… and " (ids.len() - 50) " more." } }
        },
        "/dead-letters",
    ) {
        return ask;
    }
    let note = form.get("note").to_owned();
    let mut results = Vec::with_capacity(ids.len());
    for id in ids {
        let result = AdminService::redrive_dead_letter(
            &console.admin,
            session.request(RedriveDeadLetterRequest {
                id: id.clone(),
                note: note.clone(),
            }),
        )
        .await;
        results.push((id, result.map(drop).map_err(|s| s.message().to_owned())));
    }
    let failed = results.iter().filter(|(_, r)| r.is_err()).count();
    let flash = Flash {
        ok: (failed == 0 && !results.is_empty())
            .then(|| format!("{} dead letter(s) sent again.", results.len())),
        error: if results.is_empty() {
            Some("Nothing was picked.".to_owned())
        } else {
            (failed > 0).then(|| format!("{failed} of {} could not be sent again.", results.len()))
        },
    };
    let content = html! {
        h1 { "Redrive" }
        div.wrap { table {
            thead { tr { th { "Dead letter" } th { "Result" } } }
            tbody { @for (id, result) in &results { tr {
                td { code { (id) } }
                td { @match result {
                    Ok(()) => span.badge.s-COMPLETED { "sent again" },
                    Err(why) => { span.badge.s-CANCELLED { "failed" } " " (why) " " a href=(letter_page(id)) { "open" } },
                } }
            } } }
        } }
        p { a href="/dead-letters" { "← Dead letters" } }
    };
    page("Redrive", &session, &flash, content)
}

fn order_page(order_id: &str) -> String {
    format!("/orders/{}", enc(order_id))
}

fn letter_page(id: &str) -> String {
    format!("/dead-letters/{}", enc(id))
}
