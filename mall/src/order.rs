//! The order as the mall keeps it: a validated new order, the states of the order and of its
//! steps, and the read model returned by the API.

use std::collections::{BTreeMap, HashSet};

use jifen_mesh::domain::{ChannelId, InvalidField, MAX_POINTS, OrderId, Points, UserId};
use jifen_proto::v1::SubmitOrderRequest;

/// Most lines one order may have.
pub const MAX_LINES: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderState {
    Pending,
    /// Every hold and deduct succeeded: the holds are being confirmed (TCC, DESIGN §12).
    Confirming,
    Compensating,
    Completed,
    Cancelled,
}

impl OrderState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Confirming => "CONFIRMING",
            Self::Compensating => "COMPENSATING",
            Self::Completed => "COMPLETED",
            Self::Cancelled => "CANCELLED",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Some(match raw {
            "PENDING" => Self::Pending,
            "CONFIRMING" => Self::Confirming,
            "COMPENSATING" => Self::Compensating,
            "COMPLETED" => Self::Completed,
            "CANCELLED" => Self::Cancelled,
            _ => return None,
        })
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Cancelled)
    }
}

/// Where one step (a line's points, a channel's quota) stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepState {
    /// A quota step not asked for yet: it waits for every line.
    Waiting,
    /// Its command is out.
    Pending,
    Deducted,
    Rejected,
    /// Its refund command is out.
    Refunding,
    Refunded,
    /// Never asked for: the order was cancelled first.
    Skipped,
    /// Its channel has no refund call: an operator refunds it by hand and records it.
    ManualRefund,
    /// A hold (TCC): its points are frozen at the ledger, not spent.
    Frozen,
    /// Its confirm command is out.
    Confirming,
    /// The hold is spent.
    Confirmed,
    /// Its cancel command is out.
    Cancelling,
    /// The hold was released (or never placed).
    Cancelled,
}

impl StepState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Waiting => "WAITING",
            Self::Pending => "PENDING",
            Self::Deducted => "DEDUCTED",
            Self::Rejected => "REJECTED",
            Self::Refunding => "REFUNDING",
            Self::Refunded => "REFUNDED",
            Self::Skipped => "SKIPPED",
            Self::ManualRefund => "MANUAL_REFUND",
            Self::Frozen => "FROZEN",
            Self::Confirming => "CONFIRMING",
            Self::Confirmed => "CONFIRMED",
            Self::Cancelling => "CANCELLING",
            Self::Cancelled => "CANCELLED",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Some(match raw {
            "WAITING" => Self::Waiting,
            "PENDING" => Self::Pending,
            "DEDUCTED" => Self::Deducted,
            "REJECTED" => Self::Rejected,
            "REFUNDING" => Self::Refunding,
            "REFUNDED" => Self::Refunded,
            "SKIPPED" => Self::Skipped,
            "MANUAL_REFUND" => Self::ManualRefund,
            "FROZEN" => Self::Frozen,
            "CONFIRMING" => Self::Confirming,
            "CONFIRMED" => Self::Confirmed,
            "CANCELLING" => Self::Cancelling,
            "CANCELLED" => Self::Cancelled,
            _ => return None,
        })
    }

    /// Whether the step may still hold points (a refund or cancel has to go out for it).
    pub fn may_hold(self) -> bool {
        matches!(self, Self::Pending | Self::Deducted | Self::Frozen)
    }

    /// Whether the step's points are taken or held, as the order's phase needs them.
    pub fn is_ready(self) -> bool {
        matches!(self, Self::Deducted | Self::Frozen)
    }
}

/// How a step is taken (DESIGN §12): by deduct, refunded on failure (saga), or by a hold that
/// is confirmed when the whole order succeeded and cancelled otherwise (TCC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    #[default]
    Saga,
    Tcc,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Saga => "SAGA",
            Self::Tcc => "TCC",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "SAGA" => Some(Self::Saga),
            "TCC" => Some(Self::Tcc),
            _ => None,
        }
    }

    /// The command a step in `state` has outstanding, if any.
    pub fn outstanding(self, state: StepState) -> Option<jifen_mesh::bus::subjects::Step> {
        use jifen_mesh::bus::subjects::Step;
        match (self, state) {
            (Self::Saga, StepState::Pending) => Some(Step::Deduct),
            (Self::Saga, StepState::Refunding) => Some(Step::Refund),
            (Self::Tcc, StepState::Pending) => Some(Step::Freeze),
            (Self::Tcc, StepState::Confirming) => Some(Step::Confirm),
            (Self::Tcc, StepState::Cancelling) => Some(Step::Cancel),
            _ => None,
        }
    }
}

/// One line of a new order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewLine {
    pub channel_id: ChannelId,
    pub user_id: UserId,
    pub points: Points,
}

/// A validated `SubmitOrder` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOrder {
    pub order_id: OrderId,
    pub customer_id: UserId,
    pub lines: Vec<NewLine>,
    /// The channels whose lines are held (TCC), by what their connectors declare; empty from
    /// the request.
    pub holding: std::collections::BTreeSet<ChannelId>,
}

impl NewOrder {
    pub fn parse(request: SubmitOrderRequest) -> Result<Self, InvalidField> {
        let order_id = OrderId::parse("order_id", request.order_id)?;
        let customer_id = UserId::parse("customer_id", request.customer_id)?;
        if request.lines.is_empty() {
            return Err(InvalidField::new("lines", "must have at least one line"));
        }
        if request.lines.len() > MAX_LINES {
            return Err(InvalidField::new(
                "lines",
                format!(
                    "must have at most {MAX_LINES} lines, got {}",
                    request.lines.len()
                ),
            ));
        }
        let mut seen = HashSet::new();
        let mut lines = Vec::with_capacity(request.lines.len());
        for (i, line) in request.lines.into_iter().enumerate() {
            let line = NewLine {
                channel_id: ChannelId::parse(&format!("lines[{i}].channel_id"), line.channel_id)?,
                user_id: UserId::parse(&format!("lines[{i}].user_id"), line.user_id)?,
                points: Points::parse(&format!("lines[{i}].points"), line.points)?,
            };
            if !seen.insert((line.channel_id.clone(), line.user_id.clone())) {
                return Err(InvalidField::new(
                    format!("lines[{i}]"),
                    format!(
                        "repeats channel {} and user {}: put their points in one line",
                        line.channel_id, line.user_id
                    ),
                ));
            }
            lines.push(line);
        }
        let order = Self {
            order_id,
            customer_id,
            lines,
            holding: Default::default(),
        };
        let mut totals: BTreeMap<&ChannelId, i64> = BTreeMap::new();
        for line in &order.lines {
            let total = totals.entry(&line.channel_id).or_insert(0);
            *total = total
                .checked_add(line.points.get())
                .filter(|sum| *sum <= MAX_POINTS)
                .ok_or_else(|| {
                    InvalidField::new(
                        "lines",
                        format!(
                            "channel {} totals more than {MAX_POINTS} points",
                            line.channel_id
                        ),
                    )
                })?;
        }
        Ok(order)
    }

    /// The quota each channel of the order needs: the sum of its lines, by channel id.
    pub fn quotas(&self) -> BTreeMap<ChannelId, i64> {
        let mut quotas = BTreeMap::new();
        for line in &self.lines {
            // `parse` proved every channel's sum fits in MAX_POINTS.
            let total = quotas.entry(line.channel_id.clone()).or_insert(0_i64);
            *total = total.saturating_add(line.points.get());
        }
        quotas
    }

    /// How `line`'s points are taken.
    pub fn protocol_of(&self, line: &NewLine) -> Protocol {
        if self.holding.contains(&line.channel_id) {
            Protocol::Tcc
        } else {
            Protocol::Saga
        }
    }

    /// How the order's quotas are taken: held together with the lines once any line is held
    /// (DESIGN §12), else deducted after every line.
    pub fn protocol(&self) -> Protocol {
        if self
            .lines
            .iter()
            .any(|l| self.holding.contains(&l.channel_id))
        {
            Protocol::Tcc
        } else {
            Protocol::Saga
        }
    }

    /// The request's content, independent of line order: equal fingerprints, same order.
    pub fn fingerprint(&self) -> String {
        // Every field is length-prefixed, so no id can pass for a separator.
        let field = |s: &str| format!("{}:{s}", s.len());
        let mut lines: Vec<String> = self
            .lines
            .iter()
            .map(|l| {
                format!(
                    "{}{}{}",
                    field(l.channel_id.as_str()),
                    field(l.user_id.as_str()),
                    field(&l.points.to_string())
                )
            })
            .collect();
        lines.sort();
        format!("{}{}", field(self.customer_id.as_str()), lines.concat())
    }
}

/// One line as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub channel_id: String,
    pub user_id: String,
    pub points: i64,
    pub state: StepState,
    /// What the channel's deduct answer gave (its own transaction id), DESIGN §9.
    pub captured: std::collections::BTreeMap<String, String>,
    /// The operator who settled the line by hand; empty when the channel did.
    pub settled_by: String,
    pub protocol: Protocol,
}

/// One channel's quota step as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quota {
    pub channel_id: String,
    pub points: i64,
    pub state: StepState,
    pub protocol: Protocol,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    pub at_ms: i64,
    pub kind: String,
    pub detail: String,
    /// The operator who caused it; empty for the machine's own steps.
    pub actor: String,
}

/// An order with everything the API shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    pub order_id: String,
    pub customer_id: String,
    pub state: OrderState,
    pub needs_attention: bool,
    pub reason: String,
    pub version: i64,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    /// The W3C trace id of the submitting request; empty when untraced.
    pub trace_id: String,
    pub lines: Vec<Line>,
    pub quotas: Vec<Quota>,
    pub history: Vec<HistoryEntry>,
}

#[cfg(test)]
mod tests {
    use jifen_proto::v1::SubmitOrderLine;

    use super::*;

    fn line(channel: &str, user: &str, points: i64) -> SubmitOrderLine {
        SubmitOrderLine {
            channel_id: channel.into(),
            user_id: user.into(),
            points,
        }
    }

    fn request(lines: Vec<SubmitOrderLine>) -> SubmitOrderRequest {
        SubmitOrderRequest {
            order_id: "o-1".into(),
            customer_id: "c-1".into(),
            lines,
        }
    }

    #[test]
    fn quotas_sum_the_lines_of_each_channel() {
        let order = NewOrder::parse(request(vec![
            line("alpha", "u1", 10),
            line("beta", "u1", 5),
            line("alpha", "u2", 7),
        ]))
        .unwrap();
        let quotas: Vec<_> = order
            .quotas()
            .into_iter()
            .map(|(c, p)| (c.to_string(), p))
            .collect();
        assert_eq!(quotas, [("alpha".to_owned(), 17), ("beta".to_owned(), 5)]);
    }

    #[test]
    fn bad_orders_name_the_field() {
        let empty = NewOrder::parse(request(vec![])).unwrap_err();
        assert_eq!(empty.field, "lines");
        let bad_points =
            NewOrder::parse(request(vec![line("alpha", "u1", 1), line("beta", "u1", 0)]))
                .unwrap_err();
        assert_eq!(bad_points.field, "lines[1].points");
        let twice = NewOrder::parse(request(vec![
            line("alpha", "u1", 1),
            line("alpha", "u1", 2),
        ]))
        .unwrap_err();
        assert_eq!(twice.field, "lines[1]");
        let many = NewOrder::parse(request(
            (0..=MAX_LINES)
                .map(|i| line("alpha", &format!("u{i}"), 1))
                .collect(),
        ))
        .unwrap_err();
        assert_eq!(many.field, "lines");
        let too_much = NewOrder::parse(request(vec![
            line("alpha", "u1", MAX_POINTS),
            line("alpha", "u2", 1),
        ]))
        .unwrap_err();
        assert!(too_much.reason.contains("totals"), "{too_much}");
    }

    #[test]
    fn the_fingerprint_ignores_line_order() {
        let a =
            NewOrder::parse(request(vec![line("alpha", "u1", 1), line("beta", "u2", 2)])).unwrap();
        let b =
            NewOrder::parse(request(vec![line("beta", "u2", 2), line("alpha", "u1", 1)])).unwrap();
        let c =
            NewOrder::parse(request(vec![line("beta", "u2", 3), line("alpha", "u1", 1)])).unwrap();
        assert_eq!(a.fingerprint(), b.fingerprint());
        assert_ne!(a.fingerprint(), c.fingerprint());
        // Separators inside ids cannot make two orders look alike.
        let d = NewOrder::parse(request(vec![line("a", "u", 1), line("a", "v", 2)])).unwrap();
        let e = NewOrder::parse(request(vec![line("a", "u/1,a/v", 2)])).unwrap();
        assert_ne!(d.fingerprint(), e.fingerprint());
    }
}

/// What the saga knows of an order when one of its steps moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrderFacts {
    pub state: OrderState,
    /// TCC once any of its steps is held: its quotas are held with the lines.
    pub protocol: Protocol,
    /// Steps not taken yet (neither deducted nor frozen): of the outcome's kind (lines, or
    /// quotas) in a saga order, of both in a TCC order.
    pub unready: i64,
    /// Of those, steps not asked for yet (a saga order's quotas; a TCC order's lines that
    /// cannot be held, deducted once every hold stands).
    pub waiting: i64,
}

/// A step as stored: its state and what the saga noted about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepFacts {
    pub state: StepState,
    pub protocol: Protocol,
    /// A deduct was reported while the step's refund was outstanding.
    pub deduct_seen: bool,
    /// What the refund that settled the step gave back.
    pub refunded_points: i64,
    /// Its refund found nothing, and its deduct, which may still land, has not been reported.
    pub awaiting_deduct: bool,
}

impl StepFacts {
    pub fn new(state: StepState) -> Self {
        Self {
            state,
            protocol: Protocol::Saga,
            deduct_seen: false,
            refunded_points: 0,
            awaiting_deduct: false,
        }
    }

    pub fn held(self, protocol: Protocol) -> Self {
        Self { protocol, ..self }
    }
}
