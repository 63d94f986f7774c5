//! One order's page: its state and what to do next in plain words, lines (with a waiting
//! line's attempt, last error and next try), quotas, dead letters, the partner exchanges kept
//! as evidence, its history, and the actions that fit its state.

use axum::extract::{Path, State};
use axum::response::Response;
use maud::html;

use super::Console;
use super::pages::{Params, flash};
use super::session::Session;
use super::views::{attention, badge, csrf, enc, page, time};
use crate::order::{Order, StepState};
use crate::store::dead_letters::{self, DeadLetter};

/// What an operator should do about a flagged order, from its lines and open dead letters
/// (typed states, not the reason's text); `None` when nothing needs them.
fn next_step(order: &Order, letters: &[DeadLetter]) -> Option<&'static str> {
    if !order.needs_attention {
        return None;
    }
    if order.state == crate::order::OrderState::Confirming {
        return Some(
            "Its holds are being confirmed and one could not be: a confirm that cannot land before its hold lapses (its dead letter below), or a hold gone when its confirm came. Look at that channel: if the hold still stands, redrive the confirm; if it is gone, take the points there by hand, or give back what the other channels spent — then settle the order below as it stands at the ledgers.",
        );
    }
    if letters
        .iter()
        .any(|l| l.kind == jifen_mesh::bus::subjects::OUTCOME_UNKNOWN)
    {
        return Some(
            "A deduct's outcome is unknown: look at the channel (its exchanges are below), then record what it did. Do not redrive it: that could deduct twice.",
        );
    }
    if order
        .lines
        .iter()
        .any(|l| l.state == StepState::ManualRefund)
    {
        return Some(
            "A channel without a refund call holds points of this order: refund them there by hand, then record the refund below.",
        );
    }
    if !letters.is_empty() {
        return Some(
            "A command could not be delivered: read its dead letter below and redrive it once its channel answers (the mall redrives safe ones by itself when the channel recovers), or compensate the order.",
        );
    }
    if !order.state.is_terminal() {
        return Some(
            "Not settled in time: its waiting lines show the attempt and the last error. Retry once the channel answers, or compensate to cancel it.",
        );
    }
    Some(
        "Settled, but flagged: compare it in Reconcile (the history says what differed), deal with it at the channel, then clear the flag with a note.",
    )
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
            @if let Some(step) = next_step(&order, &letters) {
                dt { "What to do" } dd { strong { (step) } }
            }
            @if open {
                dt { "Reason" } dd { @if order.reason.is_empty() { span.muted { "—" } } @else { span.muted { (order.reason) } } }
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
            thead { tr { th { "Channel" } th { "User" } th.num { "Points" } th { "Taken by" } th { "State" } th { "Channel's reference" } } }
            tbody { @for line in &order.lines { tr {
                td { (line.channel_id) } td { (line.user_id) } td.num { (line.points) }
                td { (taken_by(line.protocol)) }
                td {
                    (badge(line.state.as_str()))
                    @if let Some(r) = retrying(&console, &order.order_id, line) {
                        br; span.muted {
                            "attempt " (r.attempt) " of " (r.max_attempts) ", next "
                            time datetime=(time(r.next_at_unix_ms)) { (jifen_mesh::time::relative(r.next_at_unix_ms, jifen_mesh::time::now_unix_ms())) }
                            br; "last error: " (r.last_error)
                        }
                    }
                }
                td { @for (name, value) in &line.captured { span.muted { (name) "=" } code { (value) } " " } }
            } } }
        } }
        @for line in order.lines.iter().filter(|l| l.state == StepState::ManualRefund) {
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
            thead { tr { th { "Channel" } th.num { "Points" } th { "Taken by" } th { "State" } } }
            tbody { @for quota in &order.quotas { tr {
                td { (quota.channel_id) } td.num { (quota.points) } td { (taken_by(quota.protocol)) } td { (badge(quota.state.as_str())) }
            } } }
        } }
        @if order.needs_attention {
            form.action method="post" action={ "/orders/" (id) "/clear-flag" } {
                (csrf(&session))
                input.note type="text" name="note" required placeholder="note (why it needs nobody now)";
                button.quiet type="submit" { "Clear flag" }
            }
        }
        @if order.state == crate::order::OrderState::Confirming {
            h2 { "Settle by hand" }
            p.muted { "Once the ledgers agree: completed when every hold is spent at its channel (confirmed at last, or taken by hand); cancelled when everything the order took was given back by hand. The reconciliation then compares the order with the ledgers." }
            form.action method="post" action={ "/orders/" (id) "/settle" } {
                (csrf(&session))
                select name="completed" aria-label="Settle as" {
                    option value="true" { "completed: every hold spent" }
                    option value="false" { "cancelled: everything given back" }
                }
                input.note type="text" name="note" required placeholder="note: what was done at each channel";
                button.danger type="submit" { "Settle" }
            }
        }
        @if open && order.state != crate::order::OrderState::Confirming {
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
        (super::dead_letters::letter_table(&session, &letters, false))
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

/// How a step is taken, in words: a hold (TCC) or a deduct (saga).
fn taken_by(protocol: crate::order::Protocol) -> &'static str {
    match protocol {
        crate::order::Protocol::Saga => "deduct",
        crate::order::Protocol::Tcc => "hold",
    }
}

/// What the channel's connector says of a line waiting for its next try.
fn retrying(
    console: &Console,
    order_id: &str,
    line: &crate::order::Line,
) -> Option<jifen_proto::v1::RetryingCommand> {
    line.protocol.outstanding(line.state)?;
    console.admin.health.retrying(
        &jifen_mesh::bus::subjects::channel_consumer(&line.channel_id),
        order_id,
        &line.user_id,
    )
}

/// The line a dead-lettered deduct is for: its subject names the channel, its payload the user.
fn unknown_line(order: &Order, letter: &DeadLetter) -> Option<(String, String)> {
    let command = jifen_mesh::wire::decode_command(&letter.subject, &letter.payload).ok()?;
    order
        .lines
        .iter()
        .find(|l| l.channel_id == command.channel_id && l.user_id == command.user_id)
        .map(|l| (l.channel_id.clone(), l.user_id.clone()))
}
