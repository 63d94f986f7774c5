//! `Reconcile`: the mall's view of each order against what the channels and the portal
//! recorded, key by key (`GetDeduction`, `GetQuotaDeduction`).

use jifen_mesh::domain::OrderId;
use jifen_proto::v1::{
    GetQuotaDeductionRequest, Mismatch, OperatorSettled, ReconcileGap, ReconcileRequest,
    ReconcileResponse,
};
use tonic::{Code, Status};

use super::{Admin, RECONCILE_LIMIT};
use crate::error::MallError;
use crate::order::{Order, StepState};

impl Admin {
    pub(super) async fn reconcile(
        &self,
        request: ReconcileRequest,
    ) -> Result<ReconcileResponse, MallError> {
        let orders = if request.order_id.is_empty() {
            let to = if request.to_unix_ms == 0 {
                i64::MAX
            } else {
                request.to_unix_ms
            };
            let ids = self
                .store
                .created_between(request.from_unix_ms, to, RECONCILE_LIMIT)
                .await?;
            let mut orders = Vec::with_capacity(ids.len());
            for id in ids {
                orders.push(self.order(&id).await?);
            }
            orders
        } else {
            let id = OrderId::parse("order_id", request.order_id)?;
            vec![self.order(id.as_str()).await?]
        };
        let mut found = Found::default();
        for order in &orders {
            self.compare(order, &mut found).await?;
        }
        Ok(ReconcileResponse {
            orders_checked: i64::try_from(orders.len()).unwrap_or(i64::MAX),
            mismatches: found.mismatches,
            unchecked: found.unchecked,
            operator_settled: found.operator_settled,
        })
    }

    /// How `order_id`'s settled steps differ from the ledgers, one line each; keys a ledger
    /// cannot be asked about are left out (the continuous reconciliation's view).
    pub(crate) async fn differences(&self, order_id: &str) -> Result<Vec<String>, MallError> {
        let order = self.order(order_id).await?;
        let mut found = Found::default();
        self.compare(&order, &mut found).await?;
        Ok(found
            .mismatches
            .iter()
            .map(|m| {
                format!(
                    "{} {}: expected {}, found {}",
                    m.system, m.key, m.expected, m.actual
                )
            })
            .collect())
    }

    /// Compares each settled step of `order` with the ledger that holds it. Steps in flight
    /// (pending, refunding) are not compared; a ledger that cannot be asked leaves its keys
    /// unchecked, said once per system, and the rest is still compared.
    async fn compare(&self, order: &Order, out: &mut Found) -> Result<(), MallError> {
        for line in &order.lines {
            let Some(expect_live) = expected_live(line.state) else {
                continue;
            };
            let system = format!("channel:{}", line.channel_id);
            let client = match self.registry.channel(&line.channel_id).await {
                Ok(client) => client,
                Err(error) => {
                    out.gap(&system, &error.to_string());
                    continue;
                }
            };
            let found = client
                .deduction(&order.order_id, &line.user_id)
                .await
                .map(Some);
            let actual = match recorded(found) {
                Ok(actual) => actual,
                Err(status) => {
                    out.gap(&system, status.message());
                    continue;
                }
            };
            // Refunded by an operator's hand: the channel shows it once the partner's own
            // refund does; until then that is no mismatch, only worth a look.
            if line.state == StepState::Refunded
                && !line.settled_by.is_empty()
                && let Some((state, points)) = actual
                    .as_ref()
                    .filter(|(state, _)| state == "DEDUCTION_STATE_DEDUCTED")
            {
                out.operator_settled.push(OperatorSettled {
                    order_id: order.order_id.clone(),
                    system: system.clone(),
                    key: format!("{}/{}", line.channel_id, line.user_id),
                    operator: line.settled_by.clone(),
                    actual: format!("{state} {points}"),
                });
                continue;
            }
            check(
                &mut out.mismatches,
                &order.order_id,
                format!("channel:{}", line.channel_id),
                format!("{}/{}", line.channel_id, line.user_id),
                expect_live,
                line.points,
                actual,
                "DEDUCTION_STATE_",
            );
        }
        for quota in &order.quotas {
            let Some(expect_live) = expected_live(quota.state) else {
                continue;
            };
            let found = self
                .registry
                .portal()
                .get_quota_deduction(GetQuotaDeductionRequest {
                    order_id: order.order_id.clone(),
                    channel_id: quota.channel_id.clone(),
                })
                .await;
            let actual = match recorded(found.map(|r| {
                r.into_inner()
                    .quota_deduction
                    .map(|d| (d.state().as_str_name().to_owned(), d.points))
            })) {
                Ok(actual) => actual,
                Err(status) => {
                    out.gap("portal", status.message());
                    continue;
                }
            };
            check(
                &mut out.mismatches,
                &order.order_id,
                "portal".to_owned(),
                quota.channel_id.clone(),
                expect_live,
                quota.points,
                actual,
                "QUOTA_DEDUCTION_STATE_",
            );
        }
        Ok(())
    }
}

/// What one reconciliation found.
#[derive(Default)]
struct Found {
    mismatches: Vec<Mismatch>,
    unchecked: Vec<ReconcileGap>,
    operator_settled: Vec<OperatorSettled>,
}

impl Found {
    /// A key of `system` not compared: counted under the first reason given for the system.
    fn gap(&mut self, system: &str, reason: &str) {
        match self.unchecked.iter_mut().find(|g| g.system == system) {
            Some(gap) => gap.keys = gap.keys.saturating_add(1),
            None => self.unchecked.push(ReconcileGap {
                system: system.to_owned(),
                reason: reason.to_owned(),
                keys: 1,
            }),
        }
    }
}

/// What a ledger recorded for a key, as `(state, points)`: nothing when it answers NOT_FOUND;
/// any other failure means the key could not be compared.
fn recorded(
    answer: Result<Option<(String, i64)>, Status>,
) -> Result<Option<(String, i64)>, Status> {
    match answer {
        Ok(found) => Ok(found),
        Err(status) if status.code() == Code::NotFound => Ok(None),
        Err(status) => Err(status),
    }
}

/// What the mall's step state says its ledger must show: points taken in this state
/// (`Some(Some(state))`, the suffix of the proto enum's name), no points taken (`Some(None)`),
/// or nothing yet, being in flight (`None`).
fn expected_live(state: StepState) -> Option<Option<&'static str>> {
    match state {
        // Held at the channel until an operator refunds it by hand.
        StepState::Deducted | StepState::ManualRefund => Some(Some("DEDUCTED")),
        StepState::Frozen => Some(Some("FROZEN")),
        StepState::Confirmed => Some(Some("CONFIRMED")),
        StepState::Rejected
        | StepState::Refunded
        | StepState::Skipped
        | StepState::Waiting
        | StepState::Cancelled => Some(None),
        StepState::Pending
        | StepState::Refunding
        | StepState::Confirming
        | StepState::Cancelling => None,
    }
}

/// The ledger states in which a key takes points (deducted, held, or spent by a confirm).
const TAKING: [&str; 3] = ["DEDUCTED", "FROZEN", "CONFIRMED"];

/// Compares what a ledger recorded (`actual`, states named `<prefix><STATE>`) with what the
/// step expects: `expect` taking `points`, or nothing taken.
#[allow(clippy::too_many_arguments)]
fn check(
    out: &mut Vec<Mismatch>,
    order_id: &str,
    system: String,
    key: String,
    expect: Option<&str>,
    points: i64,
    actual: Option<(String, i64)>,
    prefix: &str,
) {
    let taking = actual.as_ref().filter(|(state, _)| {
        state
            .strip_prefix(prefix)
            .is_some_and(|s| TAKING.contains(&s))
    });
    let fits = match expect {
        Some(want) => taking
            .is_some_and(|(state, p)| state.strip_prefix(prefix) == Some(want) && *p == points),
        None => taking.is_none(),
    };
    if !fits {
        out.push(Mismatch {
            order_id: order_id.to_owned(),
            system,
            key,
            expected: match expect {
                Some(want) => format!("{prefix}{want} {points}"),
                None => "no live deduction".to_owned(),
            },
            actual: actual.map_or("nothing recorded".to_owned(), |(s, p)| format!("{s} {p}")),
        });
    }
}
