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
    let before = match crate::grpc::parse_page_token(param(&params, "before")) {
        Ok(before) => before,
        Err(error) => return console.error_page(&session, &error.to_string()),
    };
    let listed = match before {
        Some(before) => {
            console
                .store
                .list_newer(selection, flagged, before, limit)
                .await
        }
        None => {
            console
                .store
                .list_flagged(selection, flagged, None, after, limit)
                .await
        }
    };
    let (orders, counts) = match (listed, console.store.counts().await) {
        (Ok(orders), Ok(counts)) => (orders, counts),
        (Err(error), _) | (_, Err(error)) => return console.storage_error(&session, &error),
    };
    let position = |o: &Order| (o.created_at_ms, o.order_id.clone());
    let (total, newer) = match (
        console.store.count_selected(selection, flagged, None).await,
        match orders.first() {
            Some(first) => {
                console
                    .store
                    .count_selected(selection, flagged, Some(position(first)))
                    .await
            }
            None => Ok(0),
        },
    ) {
        (Ok(total), Ok(newer)) => (total, newer),
        (Err(error), _) | (_, Err(error)) => return console.storage_error(&session, &error),
    };
    let shown_to = newer + orders.len() as i64;
    let token = |o: &Order| enc(&format!("{}:{}", o.created_at_ms, o.order_id));
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
        p.muted {
            @if total == 0 { "No orders match." }
            @else { "Showing " (newer + 1) "–" (shown_to) " of " strong { (total) } " (newest first)." }
        }
        (order_table(&orders))
        p.pager {
            @if let (true, Some(first)) = (newer > 0, orders.first()) {
                a href={ (filter(current, flagged)) "&limit=" (limit) "&before=" (token(first)) } { "← Newer orders" } " "
            }
            @if let (true, Some(last)) = (shown_to < total, orders.last()) {
                a href={ (filter(current, flagged)) "&limit=" (limit) "&after=" (token(last)) } { "Older orders →" }
            }
        }
    };
    page("Orders", &session, &flash, content)
}

pub fn order_table(orders: &[Order]) -> Markup {
    use crate::order::StepState;
    let now = jifen_mesh::time::now_unix_ms();
    // What an unsettled order waits for: its lines' open steps.
    let waiting = |order: &Order| -> Vec<String> {
        order
            .lines
            .iter()
            .filter_map(|l| match l.state {
                StepState::ManualRefund => Some(format!("{} manual refund", l.channel_id)),
                state => l
                    .protocol
                    .outstanding(state)
                    .map(|step| format!("{} {}", l.channel_id, step.as_str())),
            })
            .collect()
    };
    html! {
        @if orders.is_empty() { p.muted { "No orders." } } @else {
            div.wrap { table {
                thead { tr { th { "Order" } th { "State" } th { "Lines" } th { "Created (UTC)" } th { "Waiting for" } th { "Reason" } } }
                tbody { @for order in orders { tr {
                    td { a href={ "/orders/" (enc(&order.order_id)) } { code { (order.order_id) } } }
                    td { (badge(order.state.as_str())) " " @if order.needs_attention { (attention()) } }
                    td { @for line in &order.lines { (line.channel_id) " " (line.points) " " } }
                    td { (time(order.created_at_ms)) br; span.muted { (jifen_mesh::time::relative(order.created_at_ms, now)) } }
                    td { @if !order.state.is_terminal() { (waiting(order).join(", ")) } }
                    td { (order.reason) }
                } } }
            } }
        }
    }
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
