//! The probes of `channel-check`, each using the channel as the connector would and saying what
//! it did and saw.

use jifen_mesh::barrier::LedgerState;
use jifen_proto::v1::{
    DeductPointsRequest, DeductionState, GetDeductionRequest, GetUserPointsRequest,
    RefundPointsRequest,
};
use std::collections::{BTreeMap, HashMap};

use tonic::{Code, Status};

use super::{CheckError, Finding, Target};
use crate::adapter::CallKey;

pub(super) struct Probe {
    pub(super) target: Target,
    pub(super) user: String,
    /// What each deduct of an HTTP channel deducted and its answer gave (the partner's
    /// transaction id), which the refund sends back as the connector would.
    pub(super) deducted: std::sync::Mutex<HashMap<String, Deducted>>,
}

/// What a probe's deduct took and what its answer gave.
type Deducted = (i64, BTreeMap<String, String>);

/// A deduct at a REST API as the connector would see it settle: a "processing" answer is
/// asked again on the config's poll schedule until final (or its deadline).
async fn settled(
    api: &crate::adapter::HttpChannel,
    order_id: &str,
    user_id: &str,
    points: i64,
) -> Result<jifen_mesh::connector::Recorded, Status> {
    use jifen_mesh::connector::{LedgerEndpoint, is_pending};
    let key = CallKey {
        order_id,
        user_id,
        points,
        captured: None,
    };
    let mut answer = api.deduct(key).await;
    let Some(schedule) = api.poll_schedule() else {
        return answer;
    };
    let started = std::time::Instant::now();
    let mut polls = 0;
    while let Err(status) = &answer
        && is_pending(status)
        && started.elapsed() < schedule.deadline
    {
        let wait = schedule.delay(polls).unwrap_or_default();
        tokio::time::sleep(wait).await;
        polls += 1;
        answer = api.query(key).await;
    }
    answer
}

/// A `ChannelService` answer as `(state, points)`.
pub(super) fn answered(deduction: Option<jifen_proto::v1::Deduction>) -> (DeductionState, i64) {
    let d = deduction.unwrap_or_default();
    (d.state(), d.points)
}

pub(super) fn wire_state(state: LedgerState) -> DeductionState {
    DeductionState::from(state)
}

pub(super) fn status(status: &Status) -> String {
    format!("{:?} ({})", status.code(), status.message())
}

impl Probe {
    pub(super) async fn balance(&mut self) -> Result<i64, CheckError> {
        let answer = match &self.target {
            Target::Grpc(client) => client
                .clone()
                .get_user_points(GetUserPointsRequest {
                    user_id: self.user.clone(),
                })
                .await
                .map(|a| Some(a.into_inner().balance)),
            Target::Http(api) => api.balance(&self.user).await,
        };
        match answer {
            Ok(Some(balance)) => Ok(balance),
            Ok(None) => Err(CheckError::NoBalance),
            Err(s) if s.code() == Code::NotFound => Err(CheckError::UnknownUser(self.user.clone())),
            // Only a call that got no answer is "unreachable": a 401 or a 4xx is an answer.
            Err(s)
                if matches!(
                    s.code(),
                    Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown
                ) =>
            {
                Err(CheckError::Unreachable(status(&s)))
            }
            Err(s) => Err(CheckError::Refused(status(&s))),
        }
    }

    pub(super) async fn deduct(
        &self,
        order_id: &str,
        points: i64,
    ) -> Result<(DeductionState, i64), Status> {
        self.deduct_as(&self.user, order_id, points).await
    }

    pub(super) async fn deduct_as(
        &self,
        user_id: &str,
        order_id: &str,
        points: i64,
    ) -> Result<(DeductionState, i64), Status> {
        match &self.target {
            Target::Grpc(client) => client
                .clone()
                .deduct_points(DeductPointsRequest {
                    order_id: order_id.to_owned(),
                    user_id: user_id.to_owned(),
                    points,
                })
                .await
                .map(|a| answered(a.into_inner().deduction)),
            Target::Http(api) => settled(api, order_id, user_id, points).await.map(|r| {
                if let Ok(mut deducted) = self.deducted.lock() {
                    deducted.insert(order_id.to_owned(), (r.points, r.captured.clone()));
                }
                (wire_state(r.state), r.points)
            }),
        }
    }

    pub(super) async fn refund(&self, order_id: &str) -> Result<(DeductionState, i64), Status> {
        match &self.target {
            Target::Grpc(client) => client
                .clone()
                .refund_points(RefundPointsRequest {
                    order_id: order_id.to_owned(),
                    user_id: self.user.clone(),
                })
                .await
                .map(|a| answered(a.into_inner().deduction)),
            Target::Http(api) => {
                let (points, captured) = self
                    .deducted
                    .lock()
                    .ok()
                    .and_then(|d| d.get(order_id).cloned())
                    .unwrap_or_default();
                api.refund(CallKey {
                    order_id,
                    user_id: &self.user,
                    points,
                    captured: Some(&captured),
                })
                .await
                .map(|r| (wire_state(r.state), r.points))
            }
        }
    }

    pub(super) async fn get(&self, order_id: &str) -> Result<(DeductionState, i64), Status> {
        match &self.target {
            Target::Grpc(client) => client
                .clone()
                .get_deduction(GetDeductionRequest {
                    order_id: order_id.to_owned(),
                    user_id: self.user.clone(),
                })
                .await
                .map(|a| answered(a.into_inner().deduction)),
            Target::Http(api) => api
                .query(CallKey {
                    order_id,
                    user_id: &self.user,
                    points: 0,
                    captured: None,
                })
                .await
                .map(|r| (wire_state(r.state), r.points)),
        }
    }

    pub(super) async fn idempotent_deduct(
        &mut self,
        key: &str,
        points: i64,
        before: i64,
    ) -> Result<Finding, CheckError> {
        let mut saw = Vec::new();
        let mut answered = true;
        for attempt in ["deduct", "same deduct again"] {
            match self.deduct(key, points).await {
                Ok((state, p)) => saw.push(format!("{attempt} {key}: {state:?}, {p} points")),
                Err(s) => {
                    answered = false;
                    saw.push(format!("{attempt} {key}: {}", status(&s)));
                }
            }
        }
        let now = self.balance().await?;
        saw.push(format!("balance {before} → {now}"));
        Ok(Finding {
            guarantee: "idempotent_deduct",
            holds: answered && Some(now) == before.checked_sub(points),
            saw,
        })
    }

    pub(super) async fn query(&mut self, key: &str, never: &str, points: i64) -> Finding {
        let mut saw = Vec::new();
        let found = match self.get(key).await {
            Ok((state, p)) => {
                saw.push(format!("query {key}: {state:?}, {p} points"));
                state == DeductionState::Deducted && p == points
            }
            Err(s) => {
                saw.push(format!("query {key}: {}", status(&s)));
                false
            }
        };
        let unknown = match self.get(never).await {
            Ok(_) => {
                saw.push(format!("query {never} (never sent): answered as if found"));
                false
            }
            Err(s) => {
                saw.push(format!("query {never} (never sent): {}", status(&s)));
                s.code() == Code::NotFound
            }
        };
        Finding {
            guarantee: "query",
            holds: found && unknown,
            saw,
        }
    }

    /// Also says whether the channel answers refund calls at all. The first refund must give
    /// points back (at least `points`: a deduct taken twice is not blamed on the refund), the
    /// second nothing.
    pub(super) async fn refund_once(
        &mut self,
        key: &str,
        points: i64,
    ) -> Result<(Finding, bool), CheckError> {
        let mut saw = Vec::new();
        let mut balances = vec![self.balance().await?];
        let mut answered = 0;
        for attempt in ["refund", "same refund again"] {
            match self.refund(key).await {
                Ok((state, p)) => {
                    answered += 1;
                    saw.push(format!("{attempt} {key}: {state:?}, {p} points"));
                }
                Err(s) => saw.push(format!("{attempt} {key}: {}", status(&s))),
            }
            balances.push(self.balance().await?);
        }
        saw.push(format!(
            "balance {} → {} → {}",
            balances[0], balances[1], balances[2]
        ));
        let first = balances[1].checked_sub(balances[0]);
        let holds = answered == 2
            && first.is_some_and(|given| given >= points)
            && balances[2] == balances[1];
        let finding = Finding {
            guarantee: "refund_once",
            holds,
            saw,
        };
        Ok((finding, answered > 0))
    }

    pub(super) async fn null_compensation(&mut self, never: &str) -> Finding {
        let (holds, seen) = match self.refund(never).await {
            Ok((state, p)) => (
                state == DeductionState::Refunded && p == 0,
                format!("refund {never} (never deducted): {state:?}, {p} points"),
            ),
            Err(s) => (
                false,
                format!("refund {never} (never deducted): {}", status(&s)),
            ),
        };
        Finding {
            guarantee: "null_compensation",
            holds,
            saw: vec![seen],
        }
    }

    /// A deduct of the key refunded before: refused, nothing taken. One that went through is
    /// given back.
    pub(super) async fn anti_hanging(
        &mut self,
        never: &str,
        points: i64,
    ) -> Result<Finding, CheckError> {
        let mut saw = Vec::new();
        let before = self.balance().await?;
        let refused = match self.deduct(never, points).await {
            Ok((state, p)) => {
                saw.push(format!(
                    "deduct {never} after its refund: {state:?}, {p} points"
                ));
                state != DeductionState::Deducted
            }
            Err(s) => {
                saw.push(format!("deduct {never} after its refund: {}", status(&s)));
                true
            }
        };
        let now = self.balance().await?;
        saw.push(format!("balance {before} → {now}"));
        let holds = refused && now == before;
        if now < before {
            match self.refund(never).await {
                Ok(_) => saw.push(format!("gave back: refund {never}")),
                Err(s) => saw.push(format!("could not give back {never}: {}", status(&s))),
            }
        }
        Ok(Finding {
            guarantee: "anti_hanging",
            holds,
            saw,
        })
    }

    pub(super) async fn status_codes(&mut self, prefix: &str) -> Finding {
        let mut saw = Vec::new();
        let key = format!("{prefix}codes");
        let stranger = format!("{prefix}nobody");
        let unknown = self.deduct_as(&stranger, &key, 1).await;
        let unknown_ok = match unknown {
            Ok(_) => {
                saw.push(format!(
                    "deduct for unknown user {stranger}: answered as if it took"
                ));
                false
            }
            Err(s) => {
                saw.push(format!(
                    "deduct for unknown user {stranger}: {}",
                    status(&s)
                ));
                matches!(s.code(), Code::NotFound | Code::FailedPrecondition)
            }
        };
        let invalid = self.deduct(&key, 0).await;
        let invalid_ok = match invalid {
            Ok(_) => {
                saw.push("deduct of 0 points: answered as if it took".to_owned());
                false
            }
            Err(s) => {
                saw.push(format!("deduct of 0 points: {}", status(&s)));
                s.code() == Code::InvalidArgument
            }
        };
        Finding {
            guarantee: "status_codes",
            holds: unknown_ok && invalid_ok,
            saw,
        }
    }
}
