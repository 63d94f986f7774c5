//! Evidence for disputes (DESIGN §9): each exchange of a line with the partner — request as
//! sent (secrets and signatures redacted), status, answer — kept until the line's outcome is
//! published with them, so the order shows what was asked and answered when a partner says
//! "we never got it". A `--trace` sink sees each one as it happens.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use jifen_mesh::connector::Exchange;

/// Exchanges kept per line at most (the latest), and lines at most.
const PER_LINE: usize = 12;
const LINES: usize = 4096;
/// Bytes of an answer kept.
const ANSWER_BYTES: usize = 2048;

/// Who sees each exchange as it happens (`channel-check --trace`).
pub type Trace = Arc<dyn Fn(&Exchange) + Send + Sync>;

#[derive(Default)]
pub struct Evidence {
    lines: Mutex<HashMap<(String, String), Vec<Exchange>>>,
    trace: Option<Trace>,
    /// Only a connector hands exchanges over; elsewhere (the mall's reads, checks) they are
    /// at most traced.
    keep: bool,
}

impl std::fmt::Debug for Evidence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Evidence")
            .field("traced", &self.trace.is_some())
            .finish_non_exhaustive()
    }
}

/// An answer's body as kept: text, cut at [`ANSWER_BYTES`] on a character boundary.
pub fn kept(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    if text.len() <= ANSWER_BYTES {
        return text.into_owned();
    }
    let mut end = ANSWER_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

impl Evidence {
    pub fn traced(trace: Trace) -> Self {
        Self {
            trace: Some(trace),
            ..Self::default()
        }
    }

    pub fn kept() -> Self {
        Self {
            keep: true,
            ..Self::default()
        }
    }

    fn lines(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Vec<Exchange>>> {
        self.lines
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Keeps an exchange of the line (`order_id`, `user_id`); one of no line (a balance read)
    /// is only traced.
    pub fn record(&self, order_id: &str, user_id: &str, exchange: Exchange) {
        if let Some(trace) = &self.trace {
            trace(&exchange);
        }
        if !self.keep || order_id.is_empty() {
            return;
        }
        let mut lines = self.lines();
        if lines.len() >= LINES && !lines.contains_key(&(order_id.to_owned(), user_id.to_owned())) {
            // Lines whose outcome never came (dead-lettered) would pile up: the oldest go.
            if let Some(oldest) = lines
                .iter()
                .min_by_key(|(_, e)| e.last().map_or(0, |x| x.at_unix_ms))
                .map(|(k, _)| k.clone())
            {
                lines.remove(&oldest);
            }
        }
        let kept = lines
            .entry((order_id.to_owned(), user_id.to_owned()))
            .or_default();
        if kept.len() >= PER_LINE {
            kept.remove(0);
        }
        kept.push(exchange);
    }

    /// The line's exchanges so far, handed over with its outcome.
    pub fn take(&self, order_id: &str, user_id: &str) -> Vec<Exchange> {
        self.lines()
            .remove(&(order_id.to_owned(), user_id.to_owned()))
            .unwrap_or_default()
    }
}
