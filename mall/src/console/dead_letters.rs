//! The dead letters page: open dead letters filtered by order, consumer, error text and time,
//! counted, paged both ways, each with a checkbox — and "redrive all N matching this filter".

use axum::extract::State;
use axum::response::Response;
use maud::{Markup, html};

use super::Console;
use super::pages::{Params, flash};
use super::session::Session;
use super::views::{csrf, enc, page, time, utc_input};
use crate::store::dead_letters::{self, DeadLetter, Filter};

/// Dead letters per page.
const PAGE: i64 = 100;
/// Most dead letters one "redrive all matching" sends.
pub const MATCHING_AT_MOST: i64 = 10_000;

/// The filter a form or a query names: `order`, `consumer`, `q` (error text), `from` and `to`
/// (`datetime-local`, UTC).
pub(super) fn filter_of(get: impl Fn(&str) -> String) -> Result<Filter, String> {
    Ok(Filter {
        order_id: get("order").trim().to_owned(),
        consumer: get("consumer").trim().to_owned(),
        text: get("q").trim().chars().take(200).collect(),
        from_ms: utc_input(&get("from"))?,
        to_ms: utc_input(&get("to"))?,
    })
}

fn query_of(filter: &Filter, raw_from: &str, raw_to: &str) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (key, value) in [
        ("order", filter.order_id.as_str()),
        ("consumer", filter.consumer.as_str()),
        ("q", filter.text.as_str()),
        ("from", raw_from),
        ("to", raw_to),
    ] {
        if !value.is_empty() {
            query.append_pair(key, value);
        }
    }
    query.finish()
}

/// Dead letters, each with a checkbox (for redriving many) when `select` is set.
pub(super) fn letter_table(session: &Session, letters: &[DeadLetter], select: bool) -> Markup {
    let rows = html! {
        div.wrap { table {
            thead { tr {
                @if select { th { span.muted { "pick" } } }
                th { "Id" } th { "Order" } th { "Consumer" } th { "Kind" } th { "Error" } th { "Dead at" }
            } }
            tbody { @for dl in letters { tr {
                @if select { td { input type="checkbox" name="id" value=(dl.id) aria-label={ "pick " (dl.id) }; } }
                td { a href={ "/dead-letters/" (enc(&dl.id)) } { code { (dl.id) } } }
                td { a href={ "/orders/" (enc(&dl.order_id)) } { (dl.order_id) } }
                td { (dl.consumer) }
                td { @if !dl.kind.is_empty() { span.badge.attention { (dl.kind) } } }
                td { (dl.last_error.chars().take(160).collect::<String>()) }
                td { (time(dl.dead_at_ms)) }
            } } }
        } }
    };
    html! {
        @if letters.is_empty() { p.muted { "None open." } }
        @else if select {
            form method="post" action="/dead-letters/redrive" {
                (csrf(session))
                (rows)
                p {
                    input.note type="text" name="note" required placeholder="note (why send them again)";
                    " "
                    button type="submit" { "Redrive the picked ones" }
                }
            }
        } @else { (rows) }
    }
}

pub async fn dead_letters_page(
    State(console): State<Console>,
    session: Session,
    params: Params,
) -> Response {
    let flash = flash(&session, &params);
    let raw = |key: &str| params.get(key).cloned().unwrap_or_default();
    let filter = match filter_of(raw) {
        Ok(filter) => filter,
        Err(why) => return console.error_page(&session, &why),
    };
    let page_no = raw("page").parse::<i64>().map_or(1, |n| n.max(1));
    let db = console.store.database();
    let found = dead_letters::search(db, &filter, (page_no - 1) * PAGE, PAGE).await;
    let counted = dead_letters::count(db, &filter).await;
    let (letters, total) = match (found, counted) {
        (Ok(letters), Ok(total)) => (letters, total),
        (Err(error), _) | (_, Err(error)) => return console.storage_error(&session, &error),
    };
    let pages = ((total + PAGE - 1) / PAGE).max(1);
    let query = query_of(&filter, &raw("from"), &raw("to"));
    let link = |n: i64| format!("/dead-letters?{query}&page={n}");
    let first = (page_no - 1) * PAGE + 1;
    let shown_to = (first - 1) + letters.len() as i64;
    let content = html! {
        h1 { "Dead letters" }
        form.filters method="get" action="/dead-letters" {
            input type="text" name="consumer" value=(filter.consumer) placeholder="consumer, e.g. channel-alpha" aria-label="Consumer";
            input type="text" name="order" value=(filter.order_id) placeholder="order id" aria-label="Order id";
            input type="text" name="q" value=(filter.text) placeholder="error text" aria-label="Error text";
            label { "from " input type="datetime-local" name="from" value=(raw("from")) step="60"; }
            label { "to " input type="datetime-local" name="to" value=(raw("to")) step="60"; }
            span.muted { "(UTC)" }
            button type="submit" { "Filter" }
        }
        p.muted {
            @if total == 0 { "No open dead letter matches." }
            @else { "Showing " (first) "–" (shown_to) " of " strong { (total) } " open dead letter(s) matching; page " (page_no) " of " (pages) "." }
        }
        (letter_table(&session, &letters, true))
        p.pager {
            @if page_no > 1 { a href=(link(page_no - 1)) { "← Newer" } " " }
            @if page_no < pages { a href=(link(page_no + 1)) { "Older →" } }
        }
        @if total > 0 {
            form.action method="post" action="/dead-letters/redrive" {
                (csrf(&session))
                input type="hidden" name="all_matching" value="1";
                input type="hidden" name="order" value=(filter.order_id);
                input type="hidden" name="consumer" value=(filter.consumer);
                input type="hidden" name="q" value=(filter.text);
                input type="hidden" name="from" value=(raw("from"));
                input type="hidden" name="to" value=(raw("to"));
                input.note type="text" name="note" required placeholder="note (why send them all again)";
                " "
                button.danger type="submit" {
                    "Redrive all " (total.min(MATCHING_AT_MOST)) " matching this filter"
                }
            }
            @if total > MATCHING_AT_MOST { p.muted { "At most " (MATCHING_AT_MOST) " go at once; run it again for the rest." } }
        }
    };
    page("Dead letters", &session, &flash, content)
}
