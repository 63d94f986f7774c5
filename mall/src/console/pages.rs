//! The console's pages: orders, one order, dead letters, one dead letter, stuck orders,
//! reconcile, channels. They read through the same store and admin code as the gRPC API.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::response::Response;
use jifen_proto::v1::admin_service_server::AdminService;
use jifen_proto::v1::{GetDeadLetterRequest, ListStuckOrdersRequest, ReconcileRequest};
use maud::{Markup, html};
use tonic::Request;

use super::Console;
use super::session::{Session, redirect};
use super::views::{self, Flash, attention, badge, csrf, enc, page, time};
use crate::order::{Order, OrderState};
use crate::store::Selection;
use crate::store::dead_letters::{self, DeadLetter};

/// The query string of a page, as a map (a repeated key keeps its last value).
pub type Params = Query<HashMap<String, String>>;

fn param<'a>(params: &'a Params, key: &str) -> &'a str {
    params.get(key).map(String::as_str).unwrap_or_default()
}

pub fn flash(session: &Session, params: &Params) -> Flash {
    Flash::from_query(session, params)
}

/// Orders per page unless `?limit=` says otherwise (1–200).
const PAGE: i64 = 50;

/// The console opens on what needs an operator when anything does, else on the orders.
pub async fn home(State(console): State<Console>, session: Session) -> Response {
    match console.store.any_needing_attention().await {
        Ok(true) => redirect("/orders?attention=1"),
        Ok(false) => redirect("/orders"),
        Err(error) => console.storage_error(&session, &error),
    }
}

pub async fn orders(State(console): State<Console>, session: Session, params: Params) -> Response {
    let flash = flash(&session, &params);
    let search = param(&params, "q").trim();
    if !search.is_empty() {
        return match console.store.find(search).await {
            Ok(Some(_)) => redirect(&format!("/orders/{}", enc(search))),
            Ok(None) => redirect(&format!(
                "/orders?{}",
                Flash::query(&session, false, &format!("no order {search}"))
            )),
            Err(error) => console.storage_error(&session, &error),
        };
    }
    let state = OrderState::parse(param(&params, "state"));
    let flagged = param(&params, "attention") == "1";
    let after = match crate::grpc::parse_page_token(param(&params, "after")) {
        Ok(after) => after,
        Err(error) => return console.error_page(&session, &error.to_string()),
    };
    let limit = param(&params, "limit")
        .parse::<i64>()
        .map_or(PAGE, |n| n.clamp(1, 200));
    let selection = state.map_or(Selection::All, Selection::In);
    let listed = console
        .store
        .list_flagged(selection, flagged, None, after, limit)
        .await;
    let (orders, counts) = match (listed, console.store.counts().await) {
        (Ok(orders), Ok(counts)) => (orders, counts),
        (Err(error), _) | (_, Err(error)) => return console.storage_error(&session, &error),
    };
    let next = crate::grpc::page_token(&orders, limit);
    let filter = |s: &str, a: bool| {
        let mut query = Vec::new();
        if !s.is_empty() {
            query.push(format!("state={s}"));
        }
        if a {
            query.push("attention=1".to_owned());
        }
        format!("/orders?{}", query.join("&"))
    };
    let current = state.map(OrderState::as_str).unwrap_or_default();
    let content = html! {
        h1 { "Orders" }
        div.counts {
            a class=@if state.is_none() && !flagged { "on" } href="/orders" { "All" b { (counts.total) } }
            @for (name, count) in &counts.by_state {
                a class=@if current == name.as_str() { "on" } href=(filter(name, false)) { (name) b { (count) } }
            }
            a class=@if flagged { "on" } href=(filter(current, true)) { "Needs attention" b { (counts.attention) } }
        }
        form.filters method="get" action="/orders" {
            input type="text" name="q" placeholder="order id" aria-label="Find an order by id";
            button type="submit" { "Find" }
        }
        (order_table(&orders))
        @if !next.is_empty() {
            p { a href={ (filter(current, flagged)) "&limit=" (limit) "&after=" (enc(&next)) } { "Older orders →" } }
        }
    };
    page("Orders", &session, &flash, content)
}

pub fn order_table(orders: &[Order]) -> Markup {
    html! {
        @if orders.is_empty() { p.muted { "No orders." } } @else {
            div.wrap { table {
                thead { tr { th { "Order" } th { "State" } th { "Lines" } th { "Created" } th { "Reason" } } }
                tbody { @for order in orders { tr {
                    td { a href={ "/orders/" (enc(&order.order_id)) } { code { (order.order_id) } } }
                    td { (badge(order.state.as_str())) " " @if order.needs_attention { (attention()) } }
                    td { @for line in &order.lines { (line.channel_id) " " (line.points) " " } }
                    td { (time(order.created_at_ms)) }
                    td { (order.reason) }
                } } }
            } }
        }
    }
}

pub async fn order(
    State(console): State<Console>,
    session: Session,
    Path(order_id): Path<String>,
    params: Params,
) -> Response {
    let flash = flash(&session, &params);
    let found = console.store.find(&order_id).await;
    let letters = dead_letters::list_open(console.store.database(), &order_id, "", None, 100).await;
    let exchanges = console.store.exchanges(&order_id).await;
    let (order, letters, exchanges) = match (found, letters, exchanges) {
        (Ok(Some(order)), Ok(letters), Ok(exchanges)) => (order, letters, exchanges),
        (Ok(None), _, _) => return console.error_page(&session, &format!("no order {order_id}")),
        (Err(error), _, _) | (_, Err(error), _) | (_, _, Err(error)) => {
            return console.storage_error(&session, &error);
        }
    };
    let id = enc(&order.order_id);
    let open = !order.state.is_terminal();
    let content = html! {
        h1 { "Order " code { (order.order_id) } }
        dl.facts {
            dt { "State" } dd { (badge(order.state.as_str())) " " @if order.needs_attention { (attention()) } }
            dt { "Customer" } dd { (order.customer_id) }
            @if open {
                dt { "Reason" } dd { @if order.reason.is_empty() { span.muted { "—" } } @else { (order.reason) } }
            } @else if !order.reason.is_empty() {
                // A settled order's reason is history: what it went through, not what is wrong.
                dt { "Earlier" } dd { (order.reason) span.muted { " — since settled" } }
            }
            dt { "Created" } dd { (time(order.created_at_ms)) }
            dt { "Updated" } dd { (time(order.updated_at_ms)) }
            dt { "Trace id" } dd { @if order.trace_id.is_empty() { span.muted { "not traced" } } @else { code { (order.trace_id) } } }
        }
        h2 { "Lines" }
        div.wrap { table {
            thead { tr { th { "Channel" } th { "User" } th.num { "Points" } th { "State" } th { "Channel's reference" } } }
            tbody { @for line in &order.lines { tr {
                td { (line.channel_id) } td { (line.user_id) } td.num { (line.points) }
                td { (badge(line.state.as_str())) }
                td { @for (name, value) in &line.captured { span.muted { (name) "=" } code { (value) } " " } }
            } } }
        } }
        @for line in order.lines.iter().filter(|l| l.state == crate::order::StepState::ManualRefund) {
            form.action method="post" action={ "/orders/" (id) "/manual-refund" } {
                (csrf(&session))
                input type="hidden" name="channel" value=(line.channel_id);
                input type="hidden" name="user" value=(line.user_id);
                span { "Refunded " (line.points) " points to " (line.user_id) " at " (line.channel_id) " by hand?" }
                input.note type="text" name="note" required placeholder="note: the channel's reference, who did it";
                button type="submit" { "Record manual refund" }
            }
        }
        @for letter in letters.iter().filter(|l| l.kind == jifen_mesh::bus::subjects::OUTCOME_UNKNOWN) {
            @if let Some((channel, user)) = unknown_line(&order, letter) {
                form.action method="post" action={ "/orders/" (id) "/record-outcome" } {
                    (csrf(&session))
                    input type="hidden" name="channel" value=(channel);
                    input type="hidden" name="user" value=(user);
                    span { "Outcome unknown at " (channel) " for " (user) ": what does the channel show?" }
                    select name="deducted" aria-label="Outcome" {
                        option value="true" { "deducted" }
                        option value="false" { "not deducted" }
                    }
                    input.note type="text" name="note" required placeholder="note: what you saw at the channel";
                    button type="submit" { "Record outcome" }
                }
            }
        }
        h2 { "Quota" }
        div.wrap { table {
            thead { tr { th { "Channel" } th.num { "Points" } th { "State" } } }
            tbody { @for quota in &order.quotas { tr {
                td { (quota.channel_id) } td.num { (quota.points) } td { (badge(quota.state.as_str())) }
            } } }
        } }
        @if order.needs_attention {
            form.action method="post" action={ "/orders/" (id) "/clear-flag" } {
                (csrf(&session))
                input.note type="text" name="note" required placeholder="note (why it needs nobody now)";
                button.quiet type="submit" { "Clear flag" }
            }
        }
        @if open {
            h2 { "Actions" }
            form.action method="post" action={ "/orders/" (id) "/retry" } {
                (csrf(&session))
                input.note type="text" name="note" placeholder="note (why)";
                button.quiet type="submit" { "Retry open commands" }
            }
            form.action method="post" action={ "/orders/" (id) "/compensate" } {
                (csrf(&session))
                input.note type="text" name="note" required placeholder="note (why give up on it)";
                button.danger type="submit" { "Compensate" }
            }
        }
        h2 { "Dead letters" }
        (letter_table(&session, &letters, false))
        @if !exchanges.is_empty() {
            h2 { "Partner exchanges" }
            p.muted { "What was sent to each partner's API and what it answered, secrets and signatures redacted: the evidence when a partner says it never got a request." }
            div.wrap { table {
                thead { tr { th { "Time" } th { "Channel" } th { "User" } th { "Call" } th.num { "Status" } th { "Request" } th { "Answer" } } }
                tbody { @for exchange in &exchanges { tr {
                    td { (time(exchange.at_ms)) } td { (exchange.channel_id) } td { (exchange.user_id) }
                    td { (exchange.call) }
                    td.num { @if exchange.status == 0 { span.muted { "no answer" } } @else { (exchange.status) } }
                    td { pre { (exchange.request) } } td { pre { (exchange.answer) } }
                } } }
            } }
        }
        h2 { "History" }
        ol.timeline { @for entry in &order.history { li {
            span.when { (time(entry.at_ms)) } strong { (entry.kind) } " " (entry.detail)
            @if !entry.actor.is_empty() { " " span.actor { "— by " (entry.actor) } }
        } } }
    };
    page(
        &format!("Order {}", order.order_id),
        &session,
        &flash,
        content,
    )
}

/// The line a dead-lettered deduct is for: its subject names the channel, its payload the user.
fn unknown_line(order: &Order, letter: &DeadLetter) -> Option<(String, String)> {
    use prost::Message;
    let command = jifen_proto::v1::DeductPointsCommand::decode(letter.payload.as_slice()).ok()?;
    order
        .lines
        .iter()
        .find(|l| l.channel_id == command.channel_id && l.user_id == command.user_id)
        .map(|l| (l.channel_id.clone(), l.user_id.clone()))
}

/// Dead letters, each with a checkbox (for redriving many) when `select` is set.
fn letter_table(session: &Session, letters: &[DeadLetter], select: bool) -> Markup {
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
    let (order, consumer) = (param(&params, "order"), param(&params, "consumer"));
    let letters =
        match dead_letters::list_open(console.store.database(), order, consumer, None, 200).await {
            Ok(letters) => letters,
            Err(error) => return console.storage_error(&session, &error),
        };
    let content = html! {
        h1 { "Dead letters" }
        form.filters method="get" action="/dead-letters" {
            input type="text" name="consumer" value=(consumer) placeholder="consumer, e.g. channel-alpha" aria-label="Consumer";
            input type="text" name="order" value=(order) placeholder="order id" aria-label="Order id";
            button type="submit" { "Filter" }
        }
        (letter_table(&session, &letters, true))
    };
    page("Dead letters", &session, &flash, content)
}

pub async fn dead_letter(
    State(console): State<Console>,
    session: Session,
    Path(id): Path<String>,
    params: Params,
) -> Response {
    let flash = flash(&session, &params);
    let answer = AdminService::get_dead_letter(
        &console.admin,
        Request::new(GetDeadLetterRequest { id: id.clone() }),
    )
    .await;
    let dl = match answer.map(|r| r.into_inner().dead_letter) {
        Ok(Some(dl)) => dl,
        Ok(None) => return console.error_page(&session, "no dead letter in the answer"),
        Err(status) => return console.error_page(&session, status.message()),
    };
    let target = enc(&dl.id);
    let content = html! {
        h1 { "Dead letter " code { (dl.id) } }
        dl.facts {
            dt { "Order" } dd { a href={ "/orders/" (enc(&dl.order_id)) } { (dl.order_id) } }
            dt { "Kind" } dd { @if dl.kind.is_empty() { "could not be handled" } @else { span.badge.attention { (dl.kind) } } }
            dt { "Subject" } dd { code { (dl.subject) } }
            dt { "Consumer" } dd { (dl.consumer) }
            dt { "Deliveries" } dd { (dl.deliveries) }
            dt { "Redrives" } dd { (dl.redrives) }
            dt { "Origin" } dd { (dl.origin_stream) " #" (dl.origin_sequence) }
            dt { "Dead at" } dd { (time(dl.dead_at_unix_ms)) }
        }
        h2 { "Error" }
        pre { (dl.last_error) }
        h2 { "Headers" }
        (views::json_block(&serde_json::to_string(&dl.headers).unwrap_or_default()))
        h2 { "Payload" }
        (views::json_block(&dl.payload_json))
        h2 { "Actions" }
        @if dl.state != "OPEN" {
            p { "This dead letter is " strong { (dl.state.to_lowercase()) } ": " (dl.note) }
        } @else if dl.kind == jifen_mesh::bus::subjects::OUTCOME_UNKNOWN {
            p.flash.err { "Its outcome is unknown: do not redrive it (that would deduct blindly again). Look at the channel and record the outcome on the "
                a href={ "/orders/" (enc(&dl.order_id)) } { "order's page" } "." }
        } @else {
            form.action method="post" action={ "/dead-letters/" (target) "/redrive" } {
                (csrf(&session))
                input.note type="text" name="note" required placeholder="note (why send it again)";
                button type="submit" { "Redrive" }
            }
        }
        @if dl.state == "OPEN" {
            form.action method="post" action={ "/dead-letters/" (target) "/discard" } {
                (csrf(&session))
                input.note type="text" name="note" required placeholder="note (why it needs no redrive)";
                button.danger type="submit" { "Discard" }
            }
        }
    };
    page(&format!("Dead letter {}", dl.id), &session, &flash, content)
}

pub async fn stuck(State(console): State<Console>, session: Session, params: Params) -> Response {
    let flash = flash(&session, &params);
    let raw = params.get("older_than").map_or("10m", String::as_str);
    let older_than = match jifen_mesh::config::parse_duration(raw) {
        Ok(d) => d,
        Err(error) => return console.error_page(&session, &format!("older than: {error}")),
    };
    let answer = AdminService::list_stuck_orders(
        &console.admin,
        Request::new(ListStuckOrdersRequest {
            older_than_seconds: i64::try_from(older_than.as_secs()).unwrap_or(i64::MAX),
            page_size: 200,
            page_token: String::new(),
        }),
    )
    .await;
    let ids: Vec<String> = match answer {
        Ok(r) => r
            .into_inner()
            .orders
            .into_iter()
            .map(|o| o.order_id)
            .collect(),
        Err(status) => return console.error_page(&session, status.message()),
    };
    let mut orders = Vec::with_capacity(ids.len());
    for id in ids {
        match console.store.find(&id).await {
            Ok(Some(order)) => orders.push(order),
            Ok(None) => {}
            Err(error) => return console.storage_error(&session, &error),
        }
    }
    let content = html! {
        h1 { "Stuck orders" }
        form.filters method="get" action="/stuck" {
            label for="older" { "Unsettled for longer than" }
            input #older type="text" name="older_than" value=(raw);
            button type="submit" { "Show" }
        }
        (order_table(&orders))
    };
    page("Stuck orders", &session, &flash, content)
}

pub async fn reconcile(
    State(console): State<Console>,
    session: Session,
    params: Params,
) -> Response {
    let flash = flash(&session, &params);
    let order = param(&params, "order").trim();
    let since = param(&params, "since");
    let ran = !order.is_empty() || !since.is_empty();
    let result = if ran {
        let now = jifen_mesh::time::now_unix_ms();
        let since_ms = match jifen_mesh::config::parse_duration(if since.is_empty() {
            "24h"
        } else {
            since
        }) {
            Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
            Err(error) => return console.error_page(&session, &format!("since: {error}")),
        };
        let answer = AdminService::reconcile(
            &console.admin,
            Request::new(ReconcileRequest {
                order_id: order.to_owned(),
                from_unix_ms: now.saturating_sub(since_ms),
                to_unix_ms: now.saturating_add(1),
            }),
        )
        .await;
        match answer {
            Ok(r) => Some(r.into_inner()),
            Err(status) => return console.error_page(&session, status.message()),
        }
    } else {
        None
    };
    let content = html! {
        h1 { "Reconcile" }
        p.muted { "Compares the mall's view of each settled step with the channel's or the portal's ledger." }
        form.filters method="get" action="/reconcile" {
            input type="text" name="order" value=(order) placeholder="one order id" aria-label="Order id";
            span.muted { "or every order of the last" }
            input type="text" name="since" value=(since) placeholder="24h" aria-label="Since";
            button type="submit" { "Reconcile" }
        }
        @if let Some(result) = &result {
            p { (result.orders_checked) " order(s) checked, " strong { (result.mismatches.len()) " mismatch(es)" } }
            @for gap in &result.unchecked {
                div.flash.err { "Not checked: " (gap.keys) " key(s) at " (gap.system) " — " (gap.reason) }
            }
            @for settled in &result.operator_settled {
                p.muted { "Refunded by hand by " (settled.operator) ": " a href={ "/orders/" (enc(&settled.order_id)) } { (settled.order_id) } " " (settled.key) " — " (settled.system) " still shows " (settled.actual) " until the partner's own refund does (no mismatch; look at the channel if it never does)." }
            }
            @if !result.mismatches.is_empty() {
                div.wrap { table {
                    thead { tr { th { "Order" } th { "System" } th { "Key" } th { "Mall expects" } th { "Ledger holds" } } }
                    tbody { @for m in &result.mismatches { tr {
                        td { a href={ "/orders/" (enc(&m.order_id)) } { (m.order_id) } }
                        td { (m.system) } td { (m.key) } td { (m.expected) } td { (m.actual) }
                    } } }
                } }
            }
        }
    };
    page("Reconcile", &session, &flash, content)
}
