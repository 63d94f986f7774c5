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
use tonic::transport::Channel;

mod holds;
mod probe;
pub use holds::{HOLD_GUARANTEES, holds_on};
use probe::Probe;

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
    /// With `--holds`: the hold probes' findings; empty when the channel holds no points.
    pub holds: Option<Vec<Finding>>,
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

    /// The guarantees that do not hold, in the check's order.
    pub fn missing(&self) -> Vec<&'static str> {
        self.findings
            .iter()
            .filter(|f| !f.holds)
            .map(|f| f.guarantee)
            .collect()
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
    #[error(
        "the channel answered but refused the check's call: {0} (its credentials, a signature, \
         or a call the adapter config describes wrongly?)"
    )]
    Refused(String),
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
    /// Connects to the `ChannelService` at `endpoint` (`https://` with `tls`).
    pub async fn grpc(
        endpoint: &str,
        tls: Option<&jifen_mesh::tls::ClientTls>,
    ) -> Result<Self, CheckError> {
        let channel = jifen_mesh::tls_io::GrpcTarget::new(endpoint, tls)
            .map_err(|e| CheckError::Endpoint {
                endpoint: endpoint.to_owned(),
                reason: e.to_string(),
            })?
            .timeouts(Duration::from_secs(5), Duration::from_secs(10))
            .connect()
            .await
            .map_err(|e| CheckError::Unreachable(jifen_mesh::telemetry::chain(&e)))?;
        Ok(Self::Grpc(ChannelServiceClient::new(channel)))
    }

    /// The REST API an adapter config describes.
    pub fn http(config: &std::path::Path) -> Result<Self, CheckError> {
        Self::http_traced(config, None)
    }

    /// [`Target::http`], showing every request and answer to `trace` (secrets redacted).
    pub fn http_traced(
        config: &std::path::Path,
        trace: Option<crate::adapter::evidence::Trace>,
    ) -> Result<Self, CheckError> {
        let config = crate::adapter::AdapterConfig::load(config)?;
        let mut channel = crate::adapter::HttpChannel::new(config)?;
        if let Some(trace) = trace {
            channel = channel.traced(trace);
        }
        Ok(Self::Http(std::sync::Arc::new(channel)))
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
    run_on(Target::grpc(endpoint, None).await?, user, points, prefix).await
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
        deducted: Default::default(),
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
        holds: None,
    })
}
