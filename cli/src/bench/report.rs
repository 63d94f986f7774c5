//! The bench's report: for people (throughput, latencies, counts, the invariant check), one
//! last machine-readable line, and every figure as JSON.

use std::time::Duration;

use jifen_proto::v1::OrderState;

/// How one order went.
#[derive(Debug, Default)]
pub struct Sample {
    pub submit: Option<Duration>,
    /// Submit → settled, and how it settled.
    pub settled: Option<(Duration, OrderState)>,
    /// When it settled, since the timed run began.
    pub settled_at: Option<Duration>,
    pub error: Option<String>,
}

/// Every figure of a run.
#[derive(Debug)]
pub struct Figures {
    pub orders: usize,
    pub completed: usize,
    pub cancelled: usize,
    pub failed: usize,
    pub wall: Duration,
    pub orders_per_s: f64,
    pub submit_p50: Duration,
    pub submit_p99: Duration,
    pub settled_p50: Duration,
    pub settled_p99: Duration,
    pub first_error: Option<String>,
    /// Errors by kind (their text up to the first `:`), most frequent first, with one of each.
    pub errors: Vec<(String, usize, String)>,
    pub mismatches: Vec<String>,
}

fn error_kinds(samples: &[Sample]) -> Vec<(String, usize, String)> {
    let mut kinds = std::collections::BTreeMap::<&str, (usize, &str)>::new();
    for error in samples.iter().filter_map(|s| s.error.as_deref()) {
        let kind = error.split(':').next().unwrap_or(error).trim();
        kinds.entry(kind).or_insert((0, error)).0 += 1;
    }
    let mut kinds: Vec<_> = kinds
        .into_iter()
        .map(|(kind, (count, example))| (kind.to_owned(), count, example.to_owned()))
        .collect();
    kinds.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    kinds
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * (sorted.len() as f64)).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

impl Figures {
    pub fn new(samples: &[Sample], wall: Duration, mismatches: Vec<String>) -> Self {
        let mut submit: Vec<Duration> = samples.iter().filter_map(|s| s.submit).collect();
        let mut settle: Vec<Duration> = samples
            .iter()
            .filter_map(|s| s.settled.map(|x| x.0))
            .collect();
        submit.sort();
        settle.sort();
        let count = |state| {
            samples
                .iter()
                .filter(|s| matches!(s.settled, Some((_, found)) if found == state))
                .count()
        };
        Self {
            orders: samples.len(),
            completed: count(OrderState::Completed),
            cancelled: count(OrderState::Cancelled),
            failed: samples.iter().filter(|s| s.error.is_some()).count(),
            wall,
            orders_per_s: settle.len() as f64 / wall.as_secs_f64().max(f64::EPSILON),
            submit_p50: percentile(&submit, 50.0),
            submit_p99: percentile(&submit, 99.0),
            settled_p50: percentile(&settle, 50.0),
            settled_p99: percentile(&settle, 99.0),
            first_error: samples.iter().find_map(|s| s.error.clone()),
            errors: error_kinds(samples),
            mismatches,
        }
    }

    pub fn invariants_ok(&self) -> bool {
        self.mismatches.is_empty()
    }

    pub fn print(&self) {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!(
            "orders           {} in {:.2}s",
            self.orders,
            self.wall.as_secs_f64()
        );
        println!("throughput       {:.1} settled orders/s", self.orders_per_s);
        println!("completed        {}", self.completed);
        println!("cancelled        {}", self.cancelled);
        println!("failed submits   {}", self.failed);
        println!(
            "submit latency   p50 {:.1} ms   p99 {:.1} ms",
            ms(self.submit_p50),
            ms(self.submit_p99)
        );
        println!(
            "to settled       p50 {:.1} ms   p99 {:.1} ms",
            ms(self.settled_p50),
            ms(self.settled_p99)
        );
        for (_, count, example) in self.errors.iter().take(5) {
            println!("errors           {count} × {example}");
        }
        if self.invariants_ok() {
            println!("invariants       ok: every balance and quota moved by exactly what settled");
        } else {
            println!(
                "invariants       FAIL: {} mismatch(es)",
                self.mismatches.len()
            );
            for mismatch in self.mismatches.iter().take(10) {
                println!("  {mismatch}");
            }
        }
        println!(
            "bench: orders={} completed={} cancelled={} failed={} wall_s={:.2} orders_per_s={:.1} p50_ms={:.1} p99_ms={:.1} invariants={}",
            self.orders,
            self.completed,
            self.cancelled,
            self.failed,
            self.wall.as_secs_f64(),
            self.orders_per_s,
            ms(self.settled_p50),
            ms(self.settled_p99),
            if self.invariants_ok() { "ok" } else { "FAIL" }
        );
    }

    pub fn json(&self) -> serde_json::Value {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        serde_json::json!({
            "orders": self.orders,
            "completed": self.completed,
            "cancelled": self.cancelled,
            "failed": self.failed,
            "wall_s": self.wall.as_secs_f64(),
            "orders_per_s": self.orders_per_s,
            "submit_p50_ms": ms(self.submit_p50),
            "submit_p99_ms": ms(self.submit_p99),
            "settled_p50_ms": ms(self.settled_p50),
            "settled_p99_ms": ms(self.settled_p99),
            "first_error": self.first_error,
            "errors": self.errors.iter().map(|(kind, count, example)| serde_json::json!({"kind": kind, "count": count, "example": example})).collect::<Vec<_>>(),
            "invariants": if self.invariants_ok() { "ok" } else { "FAIL" },
            "mismatches": self.mismatches,
        })
    }
}
