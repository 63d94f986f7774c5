//! The console's dead-letter actions: redrive one, discard one (with its note), redrive many
//! — the picked ones, or all matching a filter — each after a confirmation step.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::Response;
use jifen_proto::v1::admin_service_server::AdminService;
use jifen_proto::v1::{DiscardDeadLetterRequest, RedriveDeadLetterRequest};
use maud::html;
use tonic::Status;

use super::Console;
use super::actions::{admitted, back, order_page};
use super::confirm::{Ask, admitted_and_confirmed, confirmed};
use super::session::{Session, redirect};
use super::views::{Flash, enc, page};

pub async fn redrive(
    State(console): State<Console>,
    session: Session,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let page_of = letter_page(&id);
    let ask = Ask {
        action: format!("{page_of}/redrive"),
        title: "Redrive",
        what_happens: html! { p { "Dead letter " code { (id) } " is sent again to its consumer under a new message id. If its ledger still fails, it comes back as a new dead letter." } },
        back: page_of,
    };
    let form = match admitted_and_confirmed(
        &console,
        &session,
        &body,
        "RedriveDeadLetter",
        &id,
        ask,
    )
    .await
    {
        Ok(form) => form,
        Err(page) => return page,
    };
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
    let page_of = letter_page(&id);
    let ask = Ask {
        action: format!("{page_of}/discard"),
        title: "Discard",
        what_happens: html! { p { "Dead letter " code { (id) } " is closed without being sent again: what it asked for never happens unless someone does it by hand. Its order stays as it is." } },
        back: page_of,
    };
    let form = match admitted_and_confirmed(
        &console,
        &session,
        &body,
        "DiscardDeadLetter",
        &id,
        ask,
    )
    .await
    {
        Ok(form) => form,
        Err(page) => return page,
    };
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
    let ids = if form.get("all_matching") == "1" {
        let filter = match super::dead_letters::filter_of(|key| form.get(key).to_owned()) {
            Ok(filter) => filter,
            Err(why) => {
                return back(
                    &session,
                    "/dead-letters",
                    Err::<(), _>(Status::invalid_argument(why)),
                    "",
                );
            }
        };
        match crate::store::dead_letters::search(
            console.store.database(),
            &filter,
            0,
            super::dead_letters::MATCHING_AT_MOST,
        )
        .await
        {
            Ok(letters) => letters.into_iter().map(|l| l.id).collect(),
            Err(error) => return console.storage_error(&session, &error),
        }
    } else {
        form.all("id")
    };
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

fn letter_page(id: &str) -> String {
    format!("/dead-letters/{}", enc(id))
}
