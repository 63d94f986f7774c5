//! How `jifen admin` prints what the mall answered: tables for people, JSON for scripts.

/// `println!` that stops quietly when stdout is gone (`jifen admin … | head`): the pipe's
/// reader has what it wanted, and a panic there would only be noise.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

use jifen_proto::v1::{DeadLetter, Order, ReconcileResponse};
use serde_json::{Value, json};

/// An enum's name without its type prefix: `ORDER_STATE_PENDING` → `PENDING`.
fn short(name: &str, prefix: &str) -> String {
    name.strip_prefix(prefix).unwrap_or(name).to_owned()
}

fn time(unix_ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(unix_ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| unix_ms.to_string())
}

fn order_json(order: &Order) -> Value {
    json!({
        "order_id": order.order_id,
        "customer_id": order.customer_id,
        "state": short(order.state().as_str_name(), "ORDER_STATE_"),
        "needs_attention": order.needs_attention,
        "reason": order.reason,
        "lines": order.lines.iter().map(|l| json!({
            "channel_id": l.channel_id, "user_id": l.user_id, "points": l.points,
            "state": short(l.state().as_str_name(), "STEP_STATE_"),
            "protocol": short(l.protocol().as_str_name(), "PROTOCOL_"),
            "captured": l.captured,
        })).collect::<Vec<_>>(),
        "quotas": order.quotas.iter().map(|q| json!({
            "channel_id": q.channel_id, "points": q.points,
            "state": short(q.state().as_str_name(), "STEP_STATE_"),
            "protocol": short(q.protocol().as_str_name(), "PROTOCOL_"),
        })).collect::<Vec<_>>(),
        "history": order.history.iter().map(|h| json!({
            "at_unix_ms": h.at_unix_ms, "kind": h.kind, "detail": h.detail, "actor": h.actor,
        })).collect::<Vec<_>>(),
        "created_at_unix_ms": order.created_at_unix_ms,
        "updated_at_unix_ms": order.updated_at_unix_ms,
    })
}

fn dead_letter_json(dl: &DeadLetter) -> Value {
    let payload: Value =
        serde_json::from_str(&dl.payload_json).unwrap_or(Value::String(dl.payload_json.clone()));
    json!({
        "id": dl.id, "order_id": dl.order_id, "kind": dl.kind, "subject": dl.subject,
        "consumer": dl.consumer, "deliveries": dl.deliveries, "last_error": dl.last_error,
        "origin_stream": dl.origin_stream, "origin_sequence": dl.origin_sequence,
        "headers": dl.headers, "payload": payload, "redrives": dl.redrives,
        "dead_at_unix_ms": dl.dead_at_unix_ms,
    })
}

pub(super) fn print_json(value: &Value) {
    out!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
    );
}

pub fn orders(orders: &[Order], next_page_token: &str, as_json: bool) {
    if as_json {
        print_json(&json!({
            "orders": orders.iter().map(order_json).collect::<Vec<_>>(),
            "next_page_token": next_page_token,
        }));
        return;
    }
    out!(
        "{:<28} {:<13} {:<9} {:<26} REASON",
        "ORDER",
        "STATE",
        "ATTENTION",
        "CREATED"
    );
    for order in orders {
        out!(
            "{:<28} {:<13} {:<9} {:<26} {}",
            order.order_id,
            short(order.state().as_str_name(), "ORDER_STATE_"),
            if order.needs_attention { "yes" } else { "" },
            time(order.created_at_unix_ms),
            order.reason
        );
    }
    if orders.is_empty() {
        out!("(none)");
    }
    if !next_page_token.is_empty() {
        out!("more: --page-token '{next_page_token}'");
    }
}

pub fn order(order: Option<Order>, as_json: bool) {
    let Some(order) = order else {
        out!("(no order in the answer)");
        return;
    };
    if as_json {
        print_json(&order_json(&order));
        return;
    }
    out!(
        "order {}  {}{}",
        order.order_id,
        short(order.state().as_str_name(), "ORDER_STATE_"),
        if order.needs_attention {
            "  NEEDS ATTENTION"
        } else {
            ""
        }
    );
    if !order.reason.is_empty() {
        out!("reason: {}", order.reason);
    }
    out!(
        "\n{:<6} {:<12} {:<16} {:>10}  STATE",
        "STEP",
        "CHANNEL",
        "USER",
        "POINTS"
    );
    for line in &order.lines {
        let captured: Vec<String> = line
            .captured
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect();
        out!(
            "{:<6} {:<12} {:<16} {:>10}  {}  {}",
            "line",
            line.channel_id,
            line.user_id,
            line.points,
            step_state(line.state(), line.protocol()),
            captured.join(" ")
        );
    }
    for quota in &order.quotas {
        out!(
            "{:<6} {:<12} {:<16} {:>10}  {}",
            "quota",
            quota.channel_id,
            "",
            quota.points,
            step_state(quota.state(), quota.protocol())
        );
    }
    out!("\nhistory:");
    for entry in &order.history {
        out!(
            "  {}  {:<22} {}",
            time(entry.at_unix_ms),
            entry.kind,
            entry.detail
        );
    }
}

pub fn dead_letters(letters: &[DeadLetter], as_json: bool) {
    if as_json {
        print_json(&Value::Array(
            letters.iter().map(dead_letter_json).collect(),
        ));
        return;
    }
    out!(
        "{:<44} {:<24} {:<16} {:<16} ERROR",
        "ID",
        "ORDER",
        "CONSUMER",
        "KIND"
    );
    for dl in letters {
        let error: String = dl.last_error.chars().take(80).collect();
        out!(
            "{:<44} {:<24} {:<16} {:<16} {error}",
            dl.id,
            dl.order_id,
            dl.consumer,
            dl.kind
        );
    }
    if letters.is_empty() {
        out!("(none open)");
    }
}

pub fn dead_letter(letter: Option<DeadLetter>, as_json: bool) {
    let Some(dl) = letter else {
        out!("(no dead letter in the answer)");
        return;
    };
    if as_json {
        print_json(&dead_letter_json(&dl));
        return;
    }
    let value = dead_letter_json(&dl);
    out!("dead letter {}", dl.id);
    for key in [
        "order_id",
        "kind",
        "subject",
        "consumer",
        "deliveries",
        "redrives",
        "origin_stream",
        "origin_sequence",
    ] {
        out!("  {key:<16} {}", value[key]);
    }
    out!("  dead at          {}", time(dl.dead_at_unix_ms));
    out!("  last error       {}", dl.last_error);
    out!("  headers          {}", value["headers"]);
    out!(
        "  payload\n{}",
        serde_json::to_string_pretty(&value["payload"]).unwrap_or_default()
    );
}

/// One result per item; never "all done" when some failed.
pub fn results(action: &str, results: &[(String, Result<(), String>)], as_json: bool) {
    if as_json {
        print_json(&Value::Array(
            results
                .iter()
                .map(|(id, r)| match r {
                    Ok(()) => json!({"id": id, "ok": true}),
                    Err(e) => json!({"id": id, "ok": false, "error": e}),
                })
                .collect(),
        ));
        return;
    }
    for (id, result) in results {
        match result {
            Ok(()) => out!("{action} {id}: done"),
            Err(error) => out!("{action} {id}: FAILED: {error}"),
        }
    }
    let failed = results.iter().filter(|(_, r)| r.is_err()).count();
    if results.len() > 1 {
        out!("{} done, {failed} failed", results.len() - failed);
    }
}

pub fn reconcile(answer: &ReconcileResponse, as_json: bool) {
    if as_json {
        print_json(&json!({
            "orders_checked": answer.orders_checked,
            "mismatches": answer.mismatches.iter().map(|m| json!({
                "order_id": m.order_id, "system": m.system, "key": m.key,
                "expected": m.expected, "actual": m.actual,
            })).collect::<Vec<_>>(),
            "unchecked": answer.unchecked.iter().map(|g| json!({
                "system": g.system, "reason": g.reason, "keys": g.keys,
            })).collect::<Vec<_>>(),
            "operator_settled": answer.operator_settled.iter().map(|s| json!({
                "order_id": s.order_id, "system": s.system, "key": s.key,
                "operator": s.operator, "actual": s.actual,
            })).collect::<Vec<_>>(),
        }));
        return;
    }
    out!(
        "{} order(s) checked, {} mismatch(es)",
        answer.orders_checked,
        answer.mismatches.len()
    );
    for m in &answer.mismatches {
        out!(
            "  {}  {}  {}: expected {}, found {}",
            m.order_id,
            m.system,
            m.key,
            m.expected,
            m.actual
        );
    }
    for gap in &answer.unchecked {
        out!(
            "  not checked: {} key(s) at {}: {}",
            gap.keys,
            gap.system,
            gap.reason
        );
    }
    for settled in &answer.operator_settled {
        out!(
            "  refunded by hand by {}: {}  {}  {} still shows {} (no mismatch until the partner's refund shows)",
            settled.operator,
            settled.order_id,
            settled.system,
            settled.key,
            settled.actual
        );
    }
}

/// A step's state, marked when the step is a hold (TCC): `FROZEN (hold)`.
fn step_state(state: jifen_proto::v1::StepState, protocol: jifen_proto::v1::Protocol) -> String {
    let state = short(state.as_str_name(), "STEP_STATE_");
    if protocol == jifen_proto::v1::Protocol::Tcc {
        format!("{state} (hold)")
    } else {
        state
    }
}
