//! `jifen admin channels`: every channel's health (from its connector's own calls), backlog,
//! dead letters, pauses and automatic redrive; pause, resume, declare a maintenance window,
//! switch the automatic redrive.

use std::time::Duration;

use jifen_mesh::time::{format_utc, now_unix_ms, relative};
use jifen_proto::v1::{
    ChannelHealth, ChannelPause, ListChannelHealthRequest, PauseChannelRequest,
    ResumeChannelRequest, SetAutoRedriveRequest,
};
use serde_json::json;
use tonic::Status;

use super::{AdminError, Clients};

#[derive(Debug, clap::Subcommand)]
pub(super) enum ChannelsCommand {
    /// Every channel and the portal: health, calls, errors, latency, backlog, dead letters,
    /// pauses (exits 1 when one is down).
    List,
    /// Stop a channel's connector taking commands and refuse its new orders: now or from
    /// `--from`, until `--until` (or for `--for`), or until resumed.
    Pause {
        channel: String,
        /// When it starts (RFC 3339, e.g. 2026-12-06T02:00:00Z); now without it.
        #[arg(long)]
        from: Option<String>,
        /// When it ends (RFC 3339).
        #[arg(long, conflicts_with = "for_")]
        until: Option<String>,
        /// How long it lasts (`30m`, `2h`).
        #[arg(long = "for", value_parser = jifen_mesh::config::parse_duration)]
        for_: Option<Duration>,
        #[arg(long)]
        note: String,
    },
    /// End a channel's pause and call off its windows ahead.
    Resume {
        channel: String,
        #[arg(long)]
        note: String,
    },
    /// Switch the automatic redrive of a channel's dead letters after it recovers.
    AutoRedrive {
        channel: String,
        #[arg(value_parser = ["on", "off"])]
        switch: String,
        #[arg(long)]
        note: String,
    },
}

fn rfc3339(field: &str, raw: &str) -> Result<i64, AdminError> {
    let at = time::OffsetDateTime::parse(raw, &time::format_description::well_known::Rfc3339)
        .map_err(|_| AdminError::Input(format!("--{field} {raw:?} is not an RFC 3339 time")))?;
    i64::try_from(at.unix_timestamp_nanos() / 1_000_000)
        .map_err(|_| AdminError::Input(format!("--{field} {raw:?} is out of range")))
}

/// Runs the command; `Ok(true)` when every channel listed is up (or the action was done).
pub(super) async fn execute(
    command: &ChannelsCommand,
    clients: &Clients,
    json: bool,
) -> Result<Result<bool, Status>, AdminError> {
    let mut admin = clients.admin.clone();
    Ok(match command {
        ChannelsCommand::List => admin
            .list_channel_health(clients.authed(ListChannelHealthRequest {})?)
            .await
            .map(|r| {
                let channels = r.into_inner().channels;
                print(&channels, json);
                !channels.iter().any(|c| c.health == "down")
            }),
        ChannelsCommand::Pause {
            channel,
            from,
            until,
            for_,
            note,
        } => {
            let starts = from
                .as_deref()
                .map(|raw| rfc3339("from", raw))
                .transpose()?;
            let base = starts.unwrap_or_else(now_unix_ms);
            let ends = match (until, for_) {
                (Some(raw), _) => rfc3339("until", raw)?,
                (None, Some(length)) => {
                    base.saturating_add(i64::try_from(length.as_millis()).unwrap_or(i64::MAX))
                }
                (None, None) => 0,
            };
            admin
                .pause_channel(clients.authed(PauseChannelRequest {
                    channel_id: channel.clone(),
                    note: note.clone(),
                    starts_at_unix_ms: starts.unwrap_or(0),
                    ends_at_unix_ms: ends,
                })?)
                .await
                .map(|r| {
                    if let Some(pause) = r.into_inner().pause {
                        let line = format!("{channel} paused {}", pause_text(&pause));
                        if json {
                            super::render::print_json(&pause_json(&pause));
                        } else {
                            println!("{line}");
                        }
                    }
                    true
                })
        }
        ChannelsCommand::Resume { channel, note } => admin
            .resume_channel(clients.authed(ResumeChannelRequest {
                channel_id: channel.clone(),
                note: note.clone(),
            })?)
            .await
            .map(|r| {
                let ended = r.into_inner().ended;
                if json {
                    super::render::print_json(&json!({ "channel_id": channel, "ended": ended }));
                } else {
                    println!("{channel} resumed ({ended} pause(s) or window(s) ended)");
                }
                true
            }),
        ChannelsCommand::AutoRedrive {
            channel,
            switch,
            note,
        } => admin
            .set_auto_redrive(clients.authed(SetAutoRedriveRequest {
                channel_id: channel.clone(),
                enabled: switch == "on",
                note: note.clone(),
            })?)
            .await
            .map(|_| {
                if json {
                    super::render::print_json(
                        &json!({ "channel_id": channel, "auto_redrive": switch == "on" }),
                    );
                } else {
                    println!("automatic redrive of {channel}: {switch}");
                }
                true
            }),
    })
}

fn pause_text(pause: &ChannelPause) -> String {
    let until = if pause.ends_at_unix_ms == 0 {
        "until resumed".to_owned()
    } else {
        format!("until {}", format_utc(pause.ends_at_unix_ms))
    };
    format!(
        "from {} {until}: {} ({})",
        format_utc(pause.starts_at_unix_ms),
        pause.note,
        pause.operator
    )
}

fn pause_json(pause: &ChannelPause) -> serde_json::Value {
    json!({
        "id": pause.id, "channel_id": pause.channel_id,
        "starts_at_unix_ms": pause.starts_at_unix_ms, "ends_at_unix_ms": pause.ends_at_unix_ms,
        "note": pause.note, "operator": pause.operator,
    })
}

fn print(channels: &[ChannelHealth], as_json: bool) {
    if as_json {
        let list: Vec<_> = channels
            .iter()
            .map(|c| {
                json!({
                    "channel_id": c.channel_id, "consumer": c.consumer, "name": c.name,
                    "health": c.health, "why": c.why,
                    "answered": c.answered, "failed": c.failed, "error_percent": c.error_percent,
                    "p50_ms": c.p50_ms, "p99_ms": c.p99_ms,
                    "last_error": c.last_error, "last_error_unix_ms": c.last_error_unix_ms,
                    "last_ok_unix_ms": c.last_ok_unix_ms, "replicas": c.replicas,
                    "answering_since_unix_ms": c.answering_since_unix_ms,
                    "pending": c.pending, "ack_pending": c.ack_pending,
                    "open_dead_letters": c.open_dead_letters,
                    "pause": c.pause.as_ref().map(pause_json),
                    "windows_ahead": c.windows_ahead.iter().map(pause_json).collect::<Vec<_>>(),
                    "auto_redrive": c.auto_redrive,
                    "hold_ttl_ms": c.hold_ttl_ms,
                })
            })
            .collect();
        super::render::print_json(&json!(list));
        return;
    }
    let now = now_unix_ms();
    println!(
        "{:<14} {:<9} {:>7} {:>8} {:>13} {:>8} {:>6} {:<8} {:<5} LAST ERROR",
        "CHANNEL", "HEALTH", "CALLS", "ERRORS", "P50/P99 MS", "PENDING", "DEAD", "PAUSED", "AUTO"
    );
    for c in channels {
        let last_error = if c.last_error_unix_ms == 0 {
            "-".to_owned()
        } else {
            format!("{} {}", relative(c.last_error_unix_ms, now), c.last_error)
        };
        println!(
            "{:<14} {:<9} {:>7} {:>7.1}% {:>13} {:>8} {:>6} {:<8} {:<5} {}",
            c.channel_id,
            c.health,
            c.answered + c.failed,
            c.error_percent,
            format!("{}/{}", c.p50_ms, c.p99_ms),
            c.pending,
            c.open_dead_letters,
            if c.pause.is_some() { "yes" } else { "no" },
            if c.auto_redrive { "on" } else { "off" },
            last_error
        );
        if c.hold_ttl_ms > 0 {
            println!(
                "  takes points by holds (TCC), lapsing after {}",
                jifen_mesh::time::human_duration(std::time::Duration::from_millis(
                    u64::try_from(c.hold_ttl_ms).unwrap_or(0)
                ))
            );
        }
        if let Some(pause) = &c.pause {
            println!("  paused {}", pause_text(pause));
        }
        for window in &c.windows_ahead {
            println!("  window {}", pause_text(window));
        }
    }
}
