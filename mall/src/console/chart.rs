//! A channel's last hour as a small inline SVG (no script, so the CSP stays strict): per minute,
//! settled orders as green bars, failed calls as red bars in front of them, and a dark mark on
//! top of a minute with dead letters. Each minute carries a tooltip with its figures.

use jifen_proto::v1::ActivityMinute;
use maud::{Markup, html};

const MINUTES: i64 = 60;
const BAR: i64 = 6;
const HEIGHT: i64 = 64;
const TOP: i64 = 8;

/// The chart of the hour ending at `now`.
pub fn activity(minutes: &[ActivityMinute], now: i64) -> Markup {
    let first = now - now.rem_euclid(60_000) - (MINUTES - 1) * 60_000;
    let peak = minutes
        .iter()
        .map(|m| m.settled_orders.max(m.failed_calls))
        .max()
        .unwrap_or(0)
        .max(1);
    let scale = |n: u64| -> i64 {
        let n = i64::try_from(n).unwrap_or(i64::MAX);
        let peak = i64::try_from(peak).unwrap_or(i64::MAX);
        (n.saturating_mul(HEIGHT - TOP) / peak).max(i64::from(n > 0))
    };
    let slot = |m: &ActivityMinute| (m.start_unix_ms - first) / 60_000;
    let width = MINUTES * BAR;
    html! {
        svg.chart xmlns="http://www.w3.org/2000/svg" width=(width) height=(HEIGHT) viewBox={ "0 0 " (width) " " (HEIGHT) } role="img" aria-label="the last hour, per minute" {
            line x1="0" y1=(HEIGHT - 1) x2=(width) y2=(HEIGHT - 1) stroke="#c9ced8" stroke-width="1" {}
            @for m in minutes.iter().filter(|m| (0..MINUTES).contains(&slot(m))) {
                @let x = slot(m) * BAR;
                g {
                    title { (jifen_mesh::time::format_utc(m.start_unix_ms)) ": " (m.settled_orders) " settled, " (m.answered_calls) " calls answered, " (m.failed_calls) " failed, " (m.dead_letters) " dead letter(s)" }
                    rect x=(x) y=(HEIGHT - scale(m.settled_orders)) width=(BAR - 1) height=(scale(m.settled_orders)) fill="#2f9e6b" {}
                    @if m.failed_calls > 0 {
                        rect x=(x + 1) y=(HEIGHT - scale(m.failed_calls)) width=(BAR - 3) height=(scale(m.failed_calls)) fill="#d64541" {}
                    }
                    @if m.dead_letters > 0 {
                        rect x=(x) y="0" width=(BAR - 1) height="5" fill="#222" {}
                    }
                    // The whole minute takes the pointer, so its tooltip shows anywhere on it.
                    rect x=(x) y="0" width=(BAR) height=(HEIGHT) fill="transparent" {}
                }
            }
        }
        p.muted { small { "Last hour per minute: " span.legend-settled { "■" } " settled orders, " span.legend-failed { "■" } " failed calls, ▀ dead letters. Peak " (peak) "/min." } }
    }
}
