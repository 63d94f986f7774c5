//! The admin API's guard (DESIGN §11): `authorization: Bearer <token>` on every call names an
//! [`Operator`], which the call finds in its request's extensions. A wrong token is answered
//! late — later with every failure from the same address — and recorded in the audit; past
//! [`Throttle::LIMIT`] failures the address gets `RESOURCE_EXHAUSTED` with `retry-after`
//! (gRPC's 429) until the window passes. Which calls need the `operator` role is decided by
//! the calls themselves ([`super::acting`]), so the console, which calls them too, is held to
//! the same rule.

use std::net::IpAddr;
use std::task::{Context, Poll};

use futures_util::future::BoxFuture;
use jifen_mesh::storage::Database;
use jifen_mesh::time::now_unix_ms;
use tonic::Status;
use tonic::server::NamedService;

use crate::operators::{Operator, Operators, Throttle};
use crate::store::audit::{self, AuditEntry};

/// Where a token becomes an operator, for the admin API and the console's login alike: a
/// locked-out address is refused, a wrong token is recorded and answered late, a right one
/// clears the address's count.
#[derive(Debug, Clone)]
pub struct Gate {
    operators: Operators,
    throttle: Throttle,
    db: Database,
}

/// Why a token was not let in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Too many wrong tokens from this address: try again after this long.
    LockedOut(std::time::Duration),
    /// Unknown or missing (recorded, and answered after the address's delay).
    WrongToken,
}

impl Gate {
    pub fn new(operators: Operators, throttle: Throttle, db: Database) -> Self {
        Self {
            operators,
            throttle,
            db,
        }
    }

    pub fn operators(&self) -> &Operators {
        &self.operators
    }

    /// The operator whose token this is. `action` names what was attempted, for the audit.
    pub async fn admit(
        &self,
        token: Option<&str>,
        client: Option<IpAddr>,
        action: &str,
    ) -> Result<Operator, Refusal> {
        self.throttle.admit(client).map_err(Refusal::LockedOut)?;
        let Some(operator) = token.and_then(|t| self.operators.authenticate(t)) else {
            let delay = self.throttle.failed(client);
            let entry = refused(action, client, "unknown or missing token");
            if let Err(error) = audit::write(&self.db, &entry).await {
                tracing::error!(%error, "cannot write the audit log");
            }
            tracing::warn!(client = %entry.client, action, "a wrong operator token");
            tokio::time::sleep(delay).await;
            return Err(Refusal::WrongToken);
        };
        self.throttle.succeeded(client);
        Ok(operator)
    }
}

/// Wraps the admin service: authenticates through the [`Gate`].
#[derive(Debug, Clone)]
pub struct Guarded<S> {
    inner: S,
    gate: Gate,
}

impl<S> Guarded<S> {
    pub fn new(inner: S, gate: Gate) -> Self {
        Self { inner, gate }
    }
}

impl<S: NamedService> NamedService for Guarded<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B> tower::Service<http::Request<B>> for Guarded<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(
        &mut self,
        mut request: http::Request<B>,
    ) -> BoxFuture<'static, Result<S::Response, S::Error>> {
        // The service that was polled ready serves this call; a fresh clone waits for the next.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let gate = self.gate.clone();
        let client = client_ip(&request);
        let method = request
            .uri()
            .path()
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_owned();
        let token = bearer(request.headers()).map(str::to_owned);
        Box::pin(async move {
            if gate.operators().is_empty() {
                return Ok(Status::unauthenticated(
                    "the admin API has no operators configured (JIFEN_OPERATORS_FILE or JIFEN_ADMIN_TOKEN)",
                )
                .into_http());
            }
            let operator = match gate.admit(token.as_deref(), client, &method).await {
                Ok(operator) => operator,
                Err(Refusal::LockedOut(retry_after)) => {
                    let mut status = Status::resource_exhausted(format!(
                        "too many wrong tokens from this address: try again in {} s",
                        retry_after.as_secs()
                    ));
                    if let Ok(value) = retry_after.as_secs().to_string().parse() {
                        status.metadata_mut().insert("retry-after", value);
                    }
                    return Ok(status.into_http());
                }
                Err(Refusal::WrongToken) => {
                    return Ok(Status::unauthenticated("missing or wrong admin token").into_http());
                }
            };
            request.extensions_mut().insert(operator);
            inner.call(request).await
        })
    }
}

fn bearer(headers: &http::HeaderMap) -> Option<&str> {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
}

fn client_ip<B>(request: &http::Request<B>) -> Option<IpAddr> {
    request
        .extensions()
        .get::<tonic::transport::server::TcpConnectInfo>()
        .and_then(tonic::transport::server::TcpConnectInfo::remote_addr)
        .map(|addr| addr.ip())
}

/// The audit line of a refused token.
fn refused(action: &str, client: Option<IpAddr>, why: &str) -> AuditEntry {
    AuditEntry {
        at_ms: now_unix_ms(),
        operator: String::new(),
        action: action.to_owned(),
        target: String::new(),
        note: String::new(),
        result: format!("refused: {why}"),
        client: client.map(|ip| ip.to_string()).unwrap_or_default(),
    }
}

/// Compares without stopping at the first difference, so timing does not reveal the token.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for (i, x) in a.iter().enumerate() {
        diff |= usize::from(x ^ b.get(i % b.len().max(1)).copied().unwrap_or(0));
    }
    diff == 0
}
