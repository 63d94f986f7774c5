//! The orders a bench run submits, drawn from a seed so that a run can be repeated exactly:
//! each order's user among `--user-count`, an amount in 10..=1000 per line, and for
//! `--fail-pct` of the orders one line whose user is left short at that channel (the bench
//! spends the user's points there right after the submit, as a purchase elsewhere would), so
//! that the order is compensated.

/// splitmix64: small, fast, and the same sequence on every platform and version (a crate's
/// generator may change its stream between releases, and runs must stay comparable).
#[derive(Debug, Clone)]
pub struct Draw(u64);

impl Draw {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// One line of a planned order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub channel: usize,
    pub user: String,
    pub points: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedOrder {
    pub order_id: String,
    pub lines: Vec<Line>,
    /// The line whose user is left short, for an order meant to be compensated.
    pub short: Option<usize>,
}

/// What to draw.
#[derive(Debug, Clone, Copy)]
pub struct Shape<'a> {
    pub orders: usize,
    /// The channels (by index) each line is drawn from: the first line from `first`, the others
    /// from `rest` (both the same but in `--mode mixed`). Neither is empty.
    pub first: &'a [usize],
    pub rest: &'a [usize],
    pub per_order: usize,
    pub user_count: u64,
    pub fail_pct: u64,
}

/// The orders of a run, `prefix-<i>` for i in 0..orders.
pub fn plan(draw: &mut Draw, shape: Shape<'_>, prefix: &str) -> Vec<PlannedOrder> {
    let pick = |pool: &[usize], at: usize| pool[at % pool.len().max(1)];
    (0..shape.orders)
        .map(|i| {
            let user = format!("bench-u{}", draw.below(shape.user_count));
            let mixed = shape.first != shape.rest;
            let first = usize::try_from(draw.below(shape.first.len() as u64)).unwrap_or(0);
            let lines = (0..shape.per_order)
                .map(|k| Line {
                    channel: match (mixed, k) {
                        (false, k) => pick(shape.first, first + k),
                        (true, 0) => pick(shape.first, first),
                        (true, k) => pick(shape.rest, first + k - 1),
                    },
                    user: user.clone(),
                    points: 10 + i64::try_from(draw.below(991)).unwrap_or(0),
                })
                .collect();
            let short = (draw.below(100) < shape.fail_pct)
                .then(|| usize::try_from(draw.below(shape.per_order as u64)).unwrap_or(0));
            PlannedOrder {
                order_id: format!("{prefix}-{i}"),
                lines,
                short,
            }
        })
        .collect()
}
