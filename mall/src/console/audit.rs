//! The audit log's page (DESIGN §11): the newest actions and refusals, who, what, on what, with
//! the note and the result; filtered by operator.

use axum::extract::State;
use axum::response::Response;
use maud::html;

use super::Console;
use super::pages::{Params, flash};
use super::session::Session;
use super::views::{enc, page, time};
use crate::store::audit;

/// Lines shown at most.
const SHOWN: i64 = 200;

pub async fn audit_page(
    State(console): State<Console>,
    session: Session,
    params: Params,
) -> Response {
    let flash = flash(&session, &params);
    let operator = params.get("operator").map_or("", String::as_str);
    let entries = match audit::recent(console.store.database(), operator, SHOWN).await {
        Ok(entries) => entries,
        Err(error) => return console.storage_error(&session, &error),
    };
    let content = html! {
        h1 { "Audit log" }
        form.filters method="get" action="/audit" {
            label for="operator" { "Operator" }
            input #operator type="text" name="operator" value=(operator);
            button type="submit" { "Show" }
        }
        div.wrap { table {
            thead { tr { th { "When" } th { "Operator" } th { "Action" } th { "On" } th { "Note" } th { "Result" } th { "From" } } }
            tbody { @for entry in &entries { tr {
                td { (time(entry.at_ms)) }
                td { @if entry.operator.is_empty() { em { "unknown token" } } @else {
                    a href=(format!("/audit?operator={}", enc(&entry.operator))) { (entry.operator) }
                } }
                td { (entry.action) }
                td { code { (entry.target) } }
                td { (entry.note) }
                td { (entry.result) }
                td { (entry.client) }
            } } }
        } }
        p { "The newest " (SHOWN) " lines at most." }
    };
    page("Audit log", &session, &flash, content)
}
