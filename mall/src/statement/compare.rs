//! A statement against Jifen's books, key by key: what each side says, the difference's kind,
//! and what an operator should do about it.

use std::collections::BTreeMap;

use jifen_proto::v1::StatementDifference;

use super::{Stated, Statement};

/// One of Jifen's lines at the channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub order_id: String,
    pub user_id: String,
    pub points: i64,
    /// The step state (`DEDUCTED`, `REFUNDED`, …).
    pub state: String,
}

/// What Jifen's books say for a key.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Book {
    /// The channel holds these points.
    Live(i64),
    /// Nothing held: never deducted, or given back (the state says which).
    Gone(String),
    /// A deduct or refund not settled yet: not compared.
    InFlight,
}

fn book(lines: &[&Line]) -> Book {
    if lines.iter().any(|l| {
        matches!(
            l.state.as_str(),
            "PENDING" | "REFUNDING" | "FROZEN" | "CONFIRMING" | "CANCELLING"
        )
    }) {
        return Book::InFlight;
    }
    let live: Vec<&&Line> = lines
        .iter()
        .filter(|l| matches!(l.state.as_str(), "DEDUCTED" | "MANUAL_REFUND" | "CONFIRMED"))
        .collect();
    if live.is_empty() {
        Book::Gone(lines.first().map(|l| l.state.clone()).unwrap_or_default())
    } else {
        Book::Live(live.iter().map(|l| l.points).sum())
    }
}

fn said(stated: &Stated) -> String {
    match (stated.deductions, stated.refunded) {
        (0, true) => "reversed".to_owned(),
        (1, false) => format!("deducted {}", stated.deducted),
        (n, false) => format!("deducted {} in {n} rows", stated.deducted),
        (_, true) => format!("deducted {}, reversed", stated.deducted),
    }
}

fn live(stated: &Stated) -> bool {
    stated.deductions > 0 && !stated.refunded
}

/// What the comparison found.
#[derive(Debug, Default)]
pub struct Compared {
    pub matched: u64,
    pub in_flight: u64,
    pub differences: Vec<StatementDifference>,
}

/// Compares `statement` with Jifen's lines: `day` (the channel's lines of orders created that
/// day) and `elsewhere` (lines of other days the statement names). Keys are `(order, user)`
/// when the statement names users, else orders.
pub fn compare(statement: &Statement, day: &[Line], elsewhere: &[Line], by_user: bool) -> Compared {
    let key = |l: &Line| {
        (
            l.order_id.clone(),
            if by_user {
                l.user_id.clone()
            } else {
                String::new()
            },
        )
    };
    let mut books: BTreeMap<(String, String), (Vec<&Line>, bool)> = BTreeMap::new();
    for line in day {
        let entry = books.entry(key(line)).or_default();
        entry.0.push(line);
        entry.1 = true;
    }
    for line in elsewhere {
        books.entry(key(line)).or_default().0.push(line);
    }
    let mut out = Compared::default();
    let mut difference = |kind: &str,
                          (order_id, user_id): &(String, String),
                          jifen: String,
                          stated: String,
                          action: String,
                          line: u64| {
        out.differences.push(StatementDifference {
            kind: kind.to_owned(),
            order_id: order_id.clone(),
            user_id: user_id.clone(),
            jifen,
            statement: stated,
            action,
            line,
        });
    };
    let mut matched = 0;
    let mut in_flight = 0;
    for (key, (lines, of_the_day)) in &books {
        let stated = statement.keys.get(key);
        match (book(lines), stated) {
            (Book::InFlight, _) => in_flight += 1,
            (Book::Live(points), None) => {
                if *of_the_day {
                    difference(
                        "jifen_only",
                        key,
                        format!("deducted {points}"),
                        "no row".to_owned(),
                        "The partner's statement misses a deduction Jifen counts: ask the channel (Reconcile, channel-check); if it holds nothing, the points were never taken — raise it with the partner.".to_owned(),
                        0,
                    );
                }
            }
            (Book::Live(points), Some(s)) if live(s) => {
                if s.deducted == points {
                    matched += 1;
                } else {
                    difference(
                        "amount_differs",
                        key,
                        format!("deducted {points}"),
                        said(s),
                        format!("Dispute the difference of {} points with the partner (the order's partner exchanges are the evidence).", (s.deducted - points).abs()),
                        s.line,
                    );
                }
            }
            (Book::Live(points), Some(s)) => difference(
                "state_differs",
                key,
                format!("deducted {points}"),
                said(s),
                "The partner reversed a deduction Jifen still counts: find who reversed it; if it was agreed, settle the order in Jifen (record it), else ask the partner to restore it.".to_owned(),
                s.line,
            ),
            (Book::Gone(_), None) => matched += u64::from(*of_the_day),
            (Book::Gone(state), Some(s)) if live(s) => difference(
                "state_differs",
                key,
                state.to_lowercase(),
                said(s),
                "Jifen holds nothing for this line but the partner counts it deducted: ask the partner to apply the refund (Jifen's refund is on the order page, with its exchanges).".to_owned(),
                s.line,
            ),
            (Book::Gone(_), Some(_)) => matched += 1,
        }
    }
    for (key, stated) in &statement.keys {
        if !books.contains_key(key) {
            difference(
                "statement_only",
                key,
                "no line".to_owned(),
                said(stated),
                "The partner lists an order Jifen has no line of at this channel: ask the partner to reverse it (quote the order id), or check the statement's day and channel.".to_owned(),
                stated.line,
            );
        }
    }
    for bad in &statement.unreadable {
        difference(
            "unreadable",
            &(String::new(), String::new()),
            String::new(),
            bad.why.clone(),
            "Fix the row or the format (--order-column, --points-column, --state-column, the states), then run it again.".to_owned(),
            bad.line,
        );
    }
    out.matched = matched;
    out.in_flight = in_flight;
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::statement::{StatementFormat, read};

    fn line(order_id: &str, points: i64, state: &str) -> Line {
        Line {
            order_id: order_id.into(),
            user_id: "u1".into(),
            points,
            state: state.into(),
        }
    }

    #[test]
    fn every_kind_of_difference_is_found_once_and_agreement_is_counted() {
        let day = vec![
            line("same", 100, "DEDUCTED"),
            line("missing", 40, "DEDUCTED"),
            line("more", 30, "DEDUCTED"),
            line("reversed-there", 20, "DEDUCTED"),
            line("refunded-here", 10, "REFUNDED"),
            line("rejected", 10, "REJECTED"),
            line("both-refunded", 5, "REFUNDED"),
            line("flying", 5, "PENDING"),
        ];
        let elsewhere = vec![line("yesterday", 7, "DEDUCTED")];
        let csv = "order_id,user_id,points,state\n\
                   same,u1,100,SUCCESS\n\
                   more,u1,35,SUCCESS\n\
                   reversed-there,u1,20,SUCCESS\n\
                   reversed-there,u1,20,REVERSED\n\
                   refunded-here,u1,10,SUCCESS\n\
                   both-refunded,u1,5,SUCCESS\n\
                   both-refunded,u1,5,REFUNDED\n\
                   unknown,u1,9,SUCCESS\n\
                   yesterday,u1,7,SUCCESS\n\
                   flying,u1,5,SUCCESS\n\
                   broken,u1,x,SUCCESS\n";
        let statement = read(csv.as_bytes(), &StatementFormat::default()).unwrap();
        let found = compare(&statement, &day, &elsewhere, true);
        let kinds: Vec<(&str, &str)> = found
            .differences
            .iter()
            .map(|d| (d.kind.as_str(), d.order_id.as_str()))
            .collect();
        assert_eq!(
            kinds,
            vec![
                ("jifen_only", "missing"),
                ("amount_differs", "more"),
                ("state_differs", "refunded-here"),
                ("state_differs", "reversed-there"),
                ("statement_only", "unknown"),
                ("unreadable", ""),
            ]
        );
        // same, rejected, both-refunded, yesterday.
        assert_eq!(found.matched, 4);
        assert_eq!(found.in_flight, 1);
        assert_eq!(found.differences[5].line, 12);
    }
}
