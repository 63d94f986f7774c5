//! The hold probes of `channel-check --holds` (TCC, DESIGN §12): a freeze sent twice holds once,
//! a confirm sent twice spends once, a cancel sent twice gives back once, a confirm after a
//! cancel is refused, a cancel of a key never frozen is answered and recorded (null cancel),
//! and a freeze after its cancel is refused (anti-hanging). A confirmed hold is spent for good:
//! these probes spend `points` once.

use jifen_proto::v1::{
    CancelFreezeRequest, ConfirmFreezeRequest, DeductionState, FreezePointsRequest,
};
use tonic::{Code, Status};

use super::probe::{Probe, answered, status, wire_state};
use super::{CheckError, Finding, Target};
use crate::adapter::CallKey;

/// The hold guarantees' names, as reported.
pub const HOLD_GUARANTEES: [&str; 6] = [
    "idempotent_freeze",
    "confirm_once",
    "cancel_once",
    "confirm_after_cancel_refused",
    "null_cancel",
    "hold_anti_hanging",
];

#[derive(Debug, Clone, Copy)]
enum Call {
    Freeze,
    Confirm,
    Cancel,
}

impl Probe {
    async fn hold_call(
        &self,
        call: Call,
        order_id: &str,
        points: i64,
    ) -> Result<(DeductionState, i64), Status> {
        let (order, user) = (order_id.to_owned(), self.user.clone());
        match &self.target {
            Target::Grpc(client) => {
                let mut client = client.clone();
                let deduction = match call {
                    Call::Freeze => {
                        client
                            .freeze_points(FreezePointsRequest {
                                order_id: order,
                                user_id: user,
                                points,
                            })
                            .await?
                            .into_inner()
                            .deduction
                    }
                    Call::Confirm => {
                        client
                            .confirm_freeze(ConfirmFreezeRequest {
                                order_id: order,
                                user_id: user,
                            })
                            .await?
                            .into_inner()
                            .deduction
                    }
                    Call::Cancel => {
                        client
                            .cancel_freeze(CancelFreezeRequest {
                                order_id: order,
                                user_id: user,
                            })
                            .await?
                            .into_inner()
                            .deduction
                    }
                };
                Ok(answered(deduction))
            }
            Target::Http(api) => {
                let captured = self
                    .deducted
                    .lock()
                    .ok()
                    .and_then(|d| d.get(order_id).map(|(_, c)| c.clone()))
                    .unwrap_or_default();
                let key = CallKey {
                    order_id,
                    user_id: &self.user,
                    points,
                    captured: Some(&captured),
                };
                let recorded = match call {
                    Call::Freeze => api.freeze(key).await?,
                    Call::Confirm => api.confirm(key).await?,
                    Call::Cancel => api.cancel(key).await?,
                };
                if matches!(call, Call::Freeze)
                    && let Ok(mut deducted) = self.deducted.lock()
                {
                    deducted.insert(
                        order_id.to_owned(),
                        (recorded.points, recorded.captured.clone()),
                    );
                }
                Ok((wire_state(recorded.state), recorded.points))
            }
        }
    }

    /// Calls `call` twice on `key`; what each answered, and the balance before, between and
    /// after.
    async fn twice(
        &mut self,
        call: Call,
        key: &str,
        points: i64,
        saw: &mut Vec<String>,
    ) -> Result<(Vec<Option<(DeductionState, i64)>>, Vec<i64>), CheckError> {
        let mut answers = Vec::new();
        let mut balances = vec![self.balance().await?];
        for attempt in ["", " again"] {
            let answer = self.hold_call(call, key, points).await;
            match &answer {
                Ok((state, p)) => {
                    saw.push(format!("{call:?}{attempt} {key}: {state:?}, {p} points"))
                }
                Err(s) => saw.push(format!("{call:?}{attempt} {key}: {}", status(s))),
            }
            answers.push(answer.ok());
            balances.push(self.balance().await?);
        }
        saw.push(format!(
            "balance {} → {} → {}",
            balances[0], balances[1], balances[2]
        ));
        Ok((answers, balances))
    }
}

/// Runs the hold probes against `target`: `None` when the channel holds no points (its freeze
/// is not implemented). Spends `points` once (the confirmed hold).
pub async fn holds_on(
    target: Target,
    user: &str,
    points: i64,
    prefix: &str,
) -> Result<Option<Vec<Finding>>, CheckError> {
    if points < 1 {
        return Err(CheckError::Points(points));
    }
    let mut probe = Probe {
        deducted: Default::default(),
        target,
        user: user.to_owned(),
    };
    let spent = format!("{prefix}hold-spent");
    let released = format!("{prefix}hold-released");
    let never = format!("{prefix}hold-never");
    let mut findings = Vec::with_capacity(HOLD_GUARANTEES.len());

    let mut saw = Vec::new();
    let (frozen, balances) = probe.twice(Call::Freeze, &spent, points, &mut saw).await?;
    if frozen.iter().all(Option::is_none)
        && let Err(s) = probe.hold_call(Call::Freeze, &spent, points).await
        && s.code() == Code::Unimplemented
    {
        return Ok(None);
    }
    let held = |a: &Option<(DeductionState, i64)>| *a == Some((DeductionState::Frozen, points));
    findings.push(Finding {
        guarantee: "idempotent_freeze",
        holds: frozen.iter().all(held) && Some(balances[2]) == balances[0].checked_sub(points),
        saw,
    });

    let mut saw = Vec::new();
    let (confirmed, balances) = probe.twice(Call::Confirm, &spent, points, &mut saw).await?;
    let spent_ok =
        |a: &Option<(DeductionState, i64)>| *a == Some((DeductionState::Confirmed, points));
    findings.push(Finding {
        guarantee: "confirm_once",
        holds: confirmed.iter().all(spent_ok) && balances[0] == balances[2],
        saw,
    });

    let mut saw = Vec::new();
    let before = probe.balance().await?;
    match probe.hold_call(Call::Freeze, &released, points).await {
        Ok((state, p)) => saw.push(format!("Freeze {released}: {state:?}, {p} points")),
        Err(s) => saw.push(format!("Freeze {released}: {}", status(&s))),
    }
    let (cancelled, balances) = probe
        .twice(Call::Cancel, &released, points, &mut saw)
        .await?;
    let given_back = |a: &Option<(DeductionState, i64)>| {
        a.is_some_and(|(state, _)| state == DeductionState::Cancelled)
    };
    findings.push(Finding {
        guarantee: "cancel_once",
        holds: cancelled.iter().all(given_back) && balances[1] == before && balances[2] == before,
        saw,
    });

    let mut saw = Vec::new();
    let answer = probe.hold_call(Call::Confirm, &released, points).await;
    let after = probe.balance().await?;
    let refused = match &answer {
        Ok((state, p)) => {
            saw.push(format!(
                "Confirm {released} after its cancel: {state:?}, {p} points"
            ));
            *state != DeductionState::Confirmed
        }
        Err(s) => {
            saw.push(format!(
                "Confirm {released} after its cancel: {}",
                status(s)
            ));
            matches!(s.code(), Code::FailedPrecondition | Code::NotFound)
        }
    };
    saw.push(format!("balance {before} → {after}"));
    findings.push(Finding {
        guarantee: "confirm_after_cancel_refused",
        holds: refused && after == before,
        saw,
    });

    let null = probe.hold_call(Call::Cancel, &never, points).await;
    let (holds, seen) = match &null {
        Ok((state, p)) => (
            *state == DeductionState::Cancelled && *p == 0,
            format!("Cancel {never} (never frozen): {state:?}, {p} points"),
        ),
        Err(s) => (
            false,
            format!("Cancel {never} (never frozen): {}", status(s)),
        ),
    };
    findings.push(Finding {
        guarantee: "null_cancel",
        holds,
        saw: vec![seen],
    });

    let mut saw = Vec::new();
    let before = probe.balance().await?;
    let late = probe.hold_call(Call::Freeze, &never, points).await;
    let refused = match &late {
        Ok((state, p)) => {
            saw.push(format!(
                "Freeze {never} after its cancel: {state:?}, {p} points"
            ));
            *state != DeductionState::Frozen
        }
        Err(s) => {
            saw.push(format!("Freeze {never} after its cancel: {}", status(s)));
            true
        }
    };
    let now = probe.balance().await?;
    saw.push(format!("balance {before} → {now}"));
    if now < before {
        match probe.hold_call(Call::Cancel, &never, points).await {
            Ok(_) => saw.push(format!("gave back: cancel {never}")),
            Err(s) => saw.push(format!("could not give back {never}: {}", status(&s))),
        }
    }
    findings.push(Finding {
        guarantee: "hold_anti_hanging",
        holds: refused && now == before,
        saw,
    });
    Ok(Some(findings))
}
