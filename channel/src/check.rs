//! `jifen channel-check`: which of the guarantees of DESIGN §9 a live channel actually gives,
//! found by using it — with one test user, under order ids of a prefix of their own, giving
//! back everything it takes.
//!
//! The six guarantees, in the order they are tried (each uses what the one before left):
//! `idempotent_deduct` (a deduct sent twice takes once), `query` (a deduction can be read back
//! by its key, an unknown key is NOT_FOUND), `refund_once` (a refund sent twice gives back
//! once), `null_compensation` (a refund of a key never deducted is answered and recorded),
//! `anti_hanging` (a deduct arriving after its refund is refused), `status_codes` (an unknown
//! user is NOT_FOUND or a business rejection, zero points INVALID_ARGUMENT).

use std::time::Duration;

use jifen_proto::v1::channel_service_client::ChannelServiceClient;
use jifen_proto::v1::{
    DeductPointsRequest, DeductionState, GetDeductionRequest, GetUserPointsRequest,
    RefundPointsRequest,
};
use tonic::transport::{Channel, Endpoint};

use crate::adapter::CallKey;
use jifen_mesh::barrier::LedgerState;
use tonic::{Code, Status};

/// The guarantees' names, as reported (`--json` keys).
pub const GUARANTEES: [&str; 6] = [
    "idempotent_deduct",
    "query",
    "refund_once",
    "null_compensation",
    "anti_hanging",
    "status_codes",
];

/// What one guarantee came to, with what was done and seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub guarantee: &'static str,
    pub holds: bool,
    pub saw: Vec<String>,
}

/// The whole check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub findings: Vec<Finding>,
    /// The channel answered refund calls (the capability `refund`).
    pub refund_call: bool,
    pub balance_before: i64,
    pub balance_after: i64,
}

impl Report {
    pub fn holds(&self, guarantee: &str) -> bool {
        self.findings
            .iter()
            .any(|f| f.guarantee == guarantee && f.holds)
    }

    pub fn all_hold(&self) -> bool {
        self.findings.iter().all(|f| f.holds)
    }

    /// The capabilities to declare for this channel, as `(name, value)`.
    pub fn capabilities(&self) -> [(&'static str, bool); 5] {
        [
            ("idempotent_deduct", self.holds("idempotent_deduct")),
            ("refund", self.refund_call),
            ("query", self.holds("query")),
            ("null_compensation", self.holds("null_compensation")),
            ("anti_hanging", self.holds("anti_hanging")),
        ]
    }
}

/// Why the check could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("invalid endpoint {endpoint:?}: {reason}")]
    Endpoint { endpoint: String, reason: String },
    #[error("the channel cannot be reached: {0}")]
    Unreachable(String),
    #[error("the test user {0:?} is unknown at the channel")]
    UnknownUser(String),
    #[error("the test user has {balance} points; the check needs {needed}")]
    TooFewPoints { balance: i64, needed: i64 },
    #[error("--points must be at least 1, got {0}")]
    Points(i64),
    #[error(transparent)]
    Adapter(#[from] crate::adapter::AdapterConfigError),
    #[error(
        "the adapter config has no [balance] call: the check reads the balance to see what each call took"
    )]
    NoBalance,
}

/// What the check talks to: a `ChannelService`, or a REST API through its adapter config.
#[derive(Debug, Clone)]
pub enum Target {
    Grpc(ChannelServiceClient<Channel>),
    Http(std::sync::Arc<crate::adapter::HttpChannel>),
}

impl Target {
    /// Connects to the `ChannelService` at `endpoint`.
    pub async fn grpc(endpoint: &str) -> Result<Self, CheckError> {
        let channel = Endpoint::from_shared(endpoint.to_owned())
            .map_err(|e| CheckError::Endpoint {
                endpoint: endpoint.to_owned(),
                reason: e.to_string(),
            })?
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(10))
            .connect()
            .await
            .map_err(|e| CheckError::Unreachable(jifen_mesh::telemetry::chain(&e)))?;
        Ok(Self::Grpc(ChannelServiceClient::new(channel)))
    }

    /// The REST API an adapter config describes.
    pub fn http(config: &std::path::Path) -> Result<Self, CheckError> {
        let config = crate::adapter::AdapterConfig::load(config)?;
        Ok(Self::Http(std::sync::Arc::new(
            crate::adapter::HttpChannel::new(config)?,
        )))
    }
}

/// Runs the check against the ChannelService at `endpoint` with `user` and `points` per
/// deduct; `prefix` starts every order id it uses (unique per run).
pub async fn run(
    endpoint: &str,
    user: &str,
    points: i64,
    prefix: &str,
) -> Result<Report, CheckError> {
    if points < 1 {
        return Err(CheckError::Points(points));
    }
    run_on(Target::grpc(endpoint).await?, user, points, prefix).await
}

/// Runs the check against `target` (see [`run`]).
pub async fn run_on(
    target: Target,
    user: &str,
    points: i64,
    prefix: &str,
) -> Result<Report, CheckError> {
    if points < 1 {
        return Err(CheckError::Points(points));
    }
    let mut probe = Probe {
        target,
        user: user.to_owned(),
    };
    let before = probe.balance().await?;
    if before < points {
        return Err(CheckError::TooFewPoints {
            balance: before,
            needed: points,
        });
    }
    let deducted = format!("{prefix}deduct");
    let never = format!("{prefix}never");
    let mut findings = Vec::with_capacity(GUARANTEES.len());
    findings.push(probe.idempotent_deduct(&deducted, points, before).await?);
    findings.push(probe.query(&deducted, &never, points).await);
    let (refund_once, refund_call) = probe.refund_once(&deducted, points).await?;
    findings.push(refund_once);
    findings.push(probe.null_compensation(&never).await);
    if refund_call {
        findings.push(probe.anti_hanging(&never, points).await?);
    } else {
        // Nothing can hang after a refund that does not exist, and a deduct could not be given
        // back: not tried.
        findings.push(Finding {
            guarantee: "anti_hanging",
            holds: false,
            saw: vec!["not tried: the channel has no refund call".to_owned()],
        });
    }
    findings.push(probe.status_codes(prefix).await);
    let after = probe.balance().await?;
    Ok(Report {
        findings,
        refund_call,
        balance_before: before,
        balance_after: after,
    })
}

struct Probe {
    target: Target,
    user: String,
}

/// A `ChannelService` answer as `(state, points)`.
fn answered(deduction: Option<jifen_proto::v1::Deduction>) -> (DeductionState, i64) {
    let d = deduction.unwrap_or_default();
    (d.state(), d.points)
}

fn wire_state(state: LedgerState) -> DeductionState {
    match state {
        LedgerState::Deducted => DeductionState::Deducted,
        LedgerState::Refunded => DeductionState::Refunded,
        LedgerState::Rejected => DeductionState::Rejected,
    }
}

fn status(status: &Status) -> String {
    format!("{:?} ({})", status.code(), status.message())
}

impl Probe {
    async fn balance(&mut self) -> Result<i64, CheckError> {
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
            Err(s) => Err(CheckError::Unreachable(status(&s))),
        }
    }

    async fn deduct(&self, order_id: &str, points: i64) -> Result<(DeductionState, i64), Status> {
        self.deduct_as(&self.user, order_id, points).await
    }

    async fn deduct_as(
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
            Target::Http(api) => api
                .deduct(CallKey {
                    order_id,
                    user_id,
                    points,
                })
                .await
                .map(|r| (wire_state(r.state), r.points)),
        }
    }

    async fn refund(&self, order_id: &str) -> Result<(DeductionState, i64), Status> {
        match &self.target {
            Target::Grpc(client) => client
                .clone()
                .refund_points(RefundPointsRequest {
                    order_id: order_id.to_owned(),
                    user_id: self.user.clone(),
                })
                .await
                .map(|a| answered(a.into_inner().deduction)),
            Target::Http(api) => api
                .refund(CallKey {
                    order_id,
                    user_id: &self.user,
                    points: 0,
                })
                .await
                .map(|r| (wire_state(r.state), r.points)),
        }
    }

    async fn get(&self, order_id: &str) -> Result<(DeductionState, i64), Status> {
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
                })
                .await
                .map(|r| (wire_state(r.state), r.points)),
        }
    }

    async fn idempotent_deduct(
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

    async fn query(&mut self, key: &str, never: &str, points: i64) -> Finding {
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
    async fn refund_once(&mut self, key: &str, points: i64) -> Result<(Finding, bool), CheckError> {
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

    async fn null_compensation(&mut self, never: &str) -> Finding {
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
    async fn anti_hanging(&mut self, never: &str, points: i64) -> Result<Finding, CheckError> {
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

    async fn status_codes(&mut self, prefix: &str) -> Finding {
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
