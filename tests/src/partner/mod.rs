//! Partner points APIs nobody here would design (DESIGN §9), as the worked examples of
//! docs/channels.md describe them: each serves a [`Book`] of members and trades through its
//! own habits — signatures, tokens, forms, XML, its own transaction ids, "processing" — and
//! misbehaves on demand ([`Faults`]). The example configs in `docs/examples/` drive them.

pub mod gateway;
pub mod hmac_json;
pub mod holds;
pub mod oauth;
pub mod xml_api;

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use tokio_util::sync::CancellationToken;

/// Misbehaviour on demand; each counter covers the next calls that change something.
#[derive(Debug, Default)]
pub struct Faults {
    /// Answer 503 without doing anything.
    pub unavailable: AtomicU32,
    /// Apply, then answer 502 as if the answer were lost on the way.
    pub lose_answer: AtomicU32,
    /// Milliseconds every call waits before it is handled.
    pub delay_ms: AtomicU64,
    /// Answer 429 with `Retry-After: 1` without doing anything (a rate limit).
    pub too_many: AtomicU32,
    /// Apply, then answer only after this many milliseconds (past the caller's timeout).
    pub slow_ms: AtomicU64,
    /// How many calls `slow_ms` covers.
    pub slow: AtomicU32,
}

impl Faults {
    pub fn take(counter: &AtomicU32) -> bool {
        counter
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }

    /// A 429 when the rate-limit fault is armed.
    pub fn rate_limited(&self) -> Option<axum::response::Response> {
        use axum::response::IntoResponse;
        Self::take(&self.too_many).then(|| {
            (
                axum::http::StatusCode::TOO_MANY_REQUESTS,
                [("retry-after", "1")],
                "slow down",
            )
                .into_response()
        })
    }

    /// Holds an answer back past the caller's timeout when the slow fault is armed.
    pub async fn answer_late(&self) {
        if Self::take(&self.slow) {
            let ms = self.slow_ms.load(Ordering::SeqCst);
            tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
        }
    }

    pub async fn wait(&self) {
        let ms = self.delay_ms.load(Ordering::SeqCst);
        if ms > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TradeState {
    Done,
    Reversed,
}

/// One deduction at the partner, under our order number and the partner's own id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trade {
    pub trade_no: String,
    pub out_trade_no: String,
    pub member: String,
    pub points: i64,
    pub state: TradeState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BookError {
    UnknownMember,
    Insufficient,
    /// The order number was used with another amount.
    OtherAmount,
    NotFound,
}

#[derive(Debug, Default)]
struct Books {
    balances: HashMap<String, i64>,
    trades: HashMap<String, Trade>,
    by_trade_no: HashMap<String, String>,
    next: u64,
}

/// A partner's members and trades.
#[derive(Debug, Default)]
pub struct Book {
    books: Mutex<Books>,
    pub faults: Faults,
}

impl Book {
    pub fn new(members: &[&str], points: i64) -> Self {
        let book = Self::default();
        if let Ok(mut books) = book.books.lock() {
            for member in members {
                books.balances.insert((*member).to_owned(), points);
            }
        }
        book
    }

    fn books(&self) -> std::sync::MutexGuard<'_, Books> {
        // A panic while holding the lock fails the test that caused it; the books stay usable.
        self.books
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn points_of(&self, member: &str) -> Option<i64> {
        self.books().balances.get(member).copied()
    }

    /// Points held by trades not reversed.
    pub fn held(&self) -> i64 {
        self.books()
            .trades
            .values()
            .filter(|t| t.state == TradeState::Done)
            .map(|t| t.points)
            .sum()
    }

    /// Deducts under `out_trade_no`, once: the same number and amount answer the same trade.
    pub fn deduct(
        &self,
        out_trade_no: &str,
        member: &str,
        points: i64,
    ) -> Result<Trade, BookError> {
        let mut books = self.books();
        if let Some(trade) = books.trades.get(out_trade_no) {
            return if trade.points == points && trade.member == member {
                Ok(trade.clone())
            } else {
                Err(BookError::OtherAmount)
            };
        }
        let balance = books
            .balances
            .get_mut(member)
            .ok_or(BookError::UnknownMember)?;
        if *balance < points {
            return Err(BookError::Insufficient);
        }
        *balance -= points;
        books.next += 1;
        let trade = Trade {
            trade_no: format!("2026{:010}", books.next),
            out_trade_no: out_trade_no.to_owned(),
            member: member.to_owned(),
            points,
            state: TradeState::Done,
        };
        books
            .by_trade_no
            .insert(trade.trade_no.clone(), out_trade_no.to_owned());
        books.trades.insert(out_trade_no.to_owned(), trade.clone());
        Ok(trade)
    }

    /// Reverses a trade named by the partner's own id, once.
    pub fn reverse(&self, trade_no: &str) -> Result<Trade, BookError> {
        let mut books = self.books();
        let out = books
            .by_trade_no
            .get(trade_no)
            .cloned()
            .ok_or(BookError::NotFound)?;
        let trade = books.trades.get(&out).cloned().ok_or(BookError::NotFound)?;
        if trade.state == TradeState::Reversed {
            return Ok(trade);
        }
        if let Some(balance) = books.balances.get_mut(&trade.member) {
            *balance += trade.points;
        }
        let reversed = Trade {
            state: TradeState::Reversed,
            ..trade
        };
        books.trades.insert(out, reversed.clone());
        Ok(reversed)
    }

    pub fn query_by_trade_no(&self, trade_no: &str) -> Option<Trade> {
        let books = self.books();
        let out = books.by_trade_no.get(trade_no)?;
        books.trades.get(out).cloned()
    }

    pub fn query(&self, out_trade_no: &str) -> Option<Trade> {
        self.books().trades.get(out_trade_no).cloned()
    }
}

/// A partner API on a free port of 127.0.0.1, stopped on drop, with its config written
/// beside its secrets in a temp folder.
#[derive(Debug)]
pub struct Served {
    pub base_url: String,
    pub config: std::path::PathBuf,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Served {
    /// Serves `router`, and writes the example config `example` (its `base_url` pointed here)
    /// with `files` (name, contents: the secrets it names) beside it.
    pub async fn start(router: axum::Router, example: &str, files: &[(&str, &[u8])]) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a free port");
        let addr = listener.local_addr().expect("an address");
        let base_url = format!("http://{addr}");
        let shutdown = CancellationToken::new();
        let token = shutdown.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(token.cancelled_owned())
                .await;
        });
        let dir = tempfile::tempdir().expect("a temp folder");
        for (name, contents) in files {
            std::fs::write(dir.path().join(name), contents).expect("write a secret");
        }
        let text: String = example
            .lines()
            .map(|line| {
                if line.starts_with("base_url =") {
                    format!("base_url = \"{base_url}\"\n")
                } else {
                    format!("{line}\n")
                }
            })
            .collect();
        let config = dir.path().join("adapter.toml");
        std::fs::write(&config, text).expect("write the config");
        Self {
            base_url,
            config,
            shutdown,
            _dir: dir,
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
