//! The channels page (issue 18): each channel's (and the portal's) health from its connector's
//! own calls, the last hour as a chart, its backlog and open dead letters, pauses and
//! maintenance windows, automatic redrive — and the forms that pause, resume, declare a window
//! and switch the automatic redrive. The page refreshes itself (a plain meta refresh: no
//! script, the CSP stays strict).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::Response;
use jifen_mesh::time::{format_utc, now_unix_ms, relative};
use jifen_proto::v1::admin_service_server::AdminService;
use jifen_proto::v1::{
    ChannelHealth, ChannelPause, PauseChannelRequest, ResumeChannelRequest, SetAutoRedriveRequest,
};
use maud::{Markup, html};

use super::Console;
use super::actions::{admitted, back};
use super::confirm::{Ask, admitted_and_confirmed, confirmed};
use super::pages::{Params, flash};
use super::session::Session;
use super::views::{csrf, enc, page};

/// Seconds between the page's own reloads.
const REFRESH_SECS: u32 = 10;

fn channel_page(channel_id: &str) -> String {
    format!("/channels/{}", enc(channel_id))
}

fn when(unix_ms: i64, now: i64) -> Markup {
    html! {
        @if unix_ms == 0 { "never" } @else {
            time datetime=(format_utc(unix_ms)) title=(format_utc(unix_ms)) { (relative(unix_ms, now)) }
        }
    }
}

fn pause_text(pause: &ChannelPause, now: i64) -> Markup {
    html! {
        "from " (format_utc(pause.starts_at_unix_ms))
        @if pause.ends_at_unix_ms == 0 { " until resumed" } @else {
            " until " (format_utc(pause.ends_at_unix_ms)) " (" (relative(pause.ends_at_unix_ms, now)) ")"
        }
        " — " (pause.note) " (" (pause.operator) ")"
    }
}

pub async fn channels(
    State(console): State<Console>,
    session: Session,
    params: Params,
) -> Response {
    let flash = flash(&session, &params);
    let channels = match console.admin.channel_health().await {
        Ok(channels) => channels,
        Err(error) => return console.error_page(&session, &error.to_string()),
    };
    let now = now_unix_ms();
    let content = html! {
        meta http-equiv="refresh" content=(REFRESH_SECS);
        h1 { "Channels" }
        p.muted { "Health comes from each connector's own calls over the last 5 minutes; this page reloads every " (REFRESH_SECS) " s. Times are UTC." }
        div.wrap { table {
            thead { tr {
                th { "Channel" } th { "Health" } th.num { "Calls (5 min)" } th.num { "Errors" }
                th.num { "p50 / p99" } th { "Last error" } th.num { "Pending" } th.num { "Ack pending" }
                th.num { "Open dead letters" } th { "Paused" } th { "Auto-redrive" }
            } }
            tbody { @for c in &channels { tr {
                td { a href=(channel_page(&c.channel_id)) { strong { (c.channel_id) } } br; span.muted { (c.name) " · " (protocol_text(c)) } }
                td { span class={ "badge h-" (c.health) } { (c.health) } br; span.muted { (c.why) } }
                td.num { (c.answered + c.failed) }
                td.num { (c.failed) " (" (format!("{:.1}", c.error_percent)) " %)" }
                td.num { @if c.answered + c.failed == 0 { "—" } @else { (c.p50_ms) " / " (c.p99_ms) " ms" } }
                td { @if c.last_error_unix_ms == 0 { span.muted { "none" } } @else { (when(c.last_error_unix_ms, now)) br; span.muted { (c.last_error) } } }
                td.num { @if c.pending < 0 { "no consumer" } @else { (c.pending) } }
                td.num { @if c.ack_pending < 0 { "—" } @else { (c.ack_pending) } }
                td.num { a href={ "/dead-letters?consumer=" (enc(&c.consumer)) } { (c.open_dead_letters) } }
                td { @if c.pause.is_some() { span.badge.h-down { "paused" } } @else if !c.windows_ahead.is_empty() { span.muted { "window ahead" } } @else { "no" } }
                td { @if c.auto_redrive { "on" } @else { span.badge.h-degraded { "off" } } }
            } } }
        } }
        @for c in &channels {
            (channel_facts(c, now))
            p { a href=(channel_page(&c.channel_id)) { "Pause, declare a window, automatic redrive →" } }
        }
    };
    page("Channels", &session, &flash, content)
}

/// One channel with its forms. It does not reload itself: a note being typed would be lost.
pub async fn channel(
    State(console): State<Console>,
    session: Session,
    Path(channel_id): Path<String>,
    params: Params,
) -> Response {
    let flash = flash(&session, &params);
    let channels = match console.admin.channel_health().await {
        Ok(channels) => channels,
        Err(error) => return console.error_page(&session, &error.to_string()),
    };
    let Some(c) = channels.iter().find(|c| c.channel_id == channel_id) else {
        return console.error_page(&session, &format!("no channel {channel_id}"));
    };
    let now = now_unix_ms();
    let content = html! {
        (channel_facts(c, now))
        (channel_forms(&session, c))
        p { a href="/channels" { "← Channels" } }
    };
    page(&format!("Channel {channel_id}"), &session, &flash, content)
}

/// How new orders take the channel's points: holds (TCC, with their lifetime) or deducts.
fn protocol_text(c: &ChannelHealth) -> String {
    if c.hold_ttl_ms > 0 {
        format!(
            "holds (TCC), lapsing after {}",
            jifen_mesh::time::human_duration(std::time::Duration::from_millis(
                u64::try_from(c.hold_ttl_ms).unwrap_or(0)
            ))
        )
    } else {
        "deducts (saga)".to_owned()
    }
}

fn channel_facts(c: &ChannelHealth, now: i64) -> Markup {
    html! {
        section id=(c.channel_id) {
            h2 { (c.channel_id) " " span class={ "badge h-" (c.health) } { (c.health) } }
            (super::chart::activity(&c.minutes, now))
            dl.facts {
                dt { "Connector replicas reporting" } dd { (c.replicas) }
                dt { "Takes points by" } dd { (protocol_text(c)) }
                dt { "Last answered call" } dd { (when(c.last_ok_unix_ms, now)) }
                dt { "Answering every call since" } dd { @if c.answering_since_unix_ms == 0 { "—" } @else { (when(c.answering_since_unix_ms, now)) } }
                @if let Some(p) = &c.pause { dt { "Paused" } dd { (pause_text(p, now)) } }
                @for w in &c.windows_ahead { dt { "Maintenance window" } dd { (pause_text(w, now)) } }
            }
        }
    }
}

fn channel_forms(session: &Session, c: &ChannelHealth) -> Markup {
    let base = channel_page(&c.channel_id);
    html! {
        section {
            @if c.pause.is_some() || !c.windows_ahead.is_empty() {
                form method="post" action={ (base) "/resume" } {
                    (csrf(session))
                    div.row {
                        input.note type="text" name="note" required placeholder="why it may take commands again";
                        button type="submit" { "Resume (and call off windows ahead)" }
                    }
                }
            }
            form method="post" action={ (base) "/pause" } {
                (csrf(session))
                div.row {
                    label { "From " input type="datetime-local" name="starts" step="60"; }
                    label { "until " input type="datetime-local" name="ends" step="60"; }
                    span.muted { "(UTC; empty: now / until resumed)" }
                }
                div.row {
                    input.note type="text" name="note" required placeholder="why (the partner's maintenance notice, an incident)";
                    button.danger type="submit" { "Pause" }
                }
            }
            form method="post" action={ (base) "/auto-redrive" } {
                (csrf(session))
                input type="hidden" name="enabled" value=(if c.auto_redrive { "false" } else { "true" });
                div.row {
                    input.note type="text" name="note" required placeholder="why";
                    button.quiet type="submit" { @if c.auto_redrive { "Switch automatic redrive off" } @else { "Switch automatic redrive on" } }
                }
            }
        }
    }
}

pub async fn pause(
    State(console): State<Console>,
    session: Session,
    Path(channel_id): Path<String>,
    body: Bytes,
) -> Response {
    let form = match admitted(&console, &session, &body, "PauseChannel", &channel_id).await {
        Ok(form) => form,
        Err(refused) => return refused,
    };
    let back_to = channel_page(&channel_id);
    let (starts, ends) = match (
        super::views::utc_input(form.get("starts")),
        super::views::utc_input(form.get("ends")),
    ) {
        (Ok(starts), Ok(ends)) => (starts, ends),
        (Err(why), _) | (_, Err(why)) => {
            return back(
                &session,
                "/channels",
                Err::<(), _>(tonic::Status::invalid_argument(why)),
                "",
            );
        }
    };
    let now = now_unix_ms();
    let from = if starts == 0 {
        "now".to_owned()
    } else {
        format_utc(starts)
    };
    let until = if ends == 0 {
        "an operator resumes it".to_owned()
    } else {
        format_utc(ends)
    };
    if let Some(ask) = confirmed(
        &session,
        form.fields(),
        &format!("/channels/{}/pause", enc(&channel_id)),
        "Pause",
        html! {
            p { "From " strong { (from) } " until " strong { (until) } ", channel " code { (channel_id) } "'s connector takes no commands (orders in flight wait on the bus) and new orders for it are refused with this note." }
            @if starts > now { p.muted { "A maintenance window: it applies itself when it starts." } }
        },
        &back_to,
    ) {
        return ask;
    }
    let result = AdminService::pause_channel(
        &console.admin,
        session.request(PauseChannelRequest {
            channel_id: channel_id.clone(),
            note: form.get("note").to_owned(),
            starts_at_unix_ms: starts,
            ends_at_unix_ms: ends,
        }),
    )
    .await;
    back(
        &session,
        &channel_page(&channel_id),
        result,
        &format!("Channel {channel_id} paused from {from} until {until}."),
    )
}

pub async fn resume(
    State(console): State<Console>,
    session: Session,
    Path(channel_id): Path<String>,
    body: Bytes,
) -> Response {
    let ask = Ask {
        action: format!("/channels/{}/resume", enc(&channel_id)),
        title: "Resume",
        what_happens: html! { p { "Channel " code { (channel_id) } "'s connector takes its commands again, new orders for it are accepted, and its maintenance windows ahead are called off." } },
        back: channel_page(&channel_id),
    };
    let form =
        match admitted_and_confirmed(&console, &session, &body, "ResumeChannel", &channel_id, ask)
            .await
        {
            Ok(form) => form,
            Err(page) => return page,
        };
    let result = AdminService::resume_channel(
        &console.admin,
        session.request(ResumeChannelRequest {
            channel_id: channel_id.clone(),
            note: form.get("note").to_owned(),
        }),
    )
    .await;
    back(
        &session,
        &channel_page(&channel_id),
        result,
        &format!("Channel {channel_id} resumed."),
    )
}

pub async fn auto_redrive(
    State(console): State<Console>,
    session: Session,
    Path(channel_id): Path<String>,
    body: Bytes,
) -> Response {
    let form = match admitted(&console, &session, &body, "SetAutoRedrive", &channel_id).await {
        Ok(form) => form,
        Err(refused) => return refused,
    };
    let enabled = form.get("enabled") == "true";
    let result = AdminService::set_auto_redrive(
        &console.admin,
        session.request(SetAutoRedriveRequest {
            channel_id: channel_id.clone(),
            enabled,
            note: form.get("note").to_owned(),
        }),
    )
    .await;
    let done = if enabled { "on" } else { "off" };
    back(
        &session,
        &channel_page(&channel_id),
        result,
        &format!("Automatic redrive of {channel_id} switched {done}."),
    )
}
