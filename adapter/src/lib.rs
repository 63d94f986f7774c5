//! The HTTP/JSON adapter (DESIGN §9): drives a third party's REST points API described by a
//! config file ([`config`]), with no code written. The connector uses it as a
//! [`LedgerEndpoint`]; the mall's pre-check and reconciliation reach the same API through it,
//! and `jifen channel-check --adapter-config` checks it.
//!
//! What an answer means is decided here, once: a code in the body the config maps (even in a
//! 200), then the HTTP status the config maps, then defaults — 408/429 transient, other 4xx
//! invalid, 5xx unknown (it may have been applied). A request that never reached the API
//! (connection refused) is `UNAVAILABLE`, which the connector knows was not applied; a timeout
//! or a lost answer is not, since the API may have acted on it.

pub mod config;
pub mod template;

use jifen_mesh::barrier::LedgerState;
use jifen_mesh::bus::subjects::Step;
use jifen_mesh::capabilities::Capabilities;
use jifen_mesh::connector::{LedgerCommand, LedgerEndpoint, Recorded};
use serde_json::Value;
use tonic::Status;

pub use config::{AdapterConfig, AdapterConfigError};
use config::{AnswerState, Call, ErrorMap, Failure, KeyHash};
use template::{Escape, Values};

/// A REST points API driven through its adapter config.
#[derive(Debug, Clone)]
pub struct HttpChannel {
    config: AdapterConfig,
    client: reqwest::Client,
}

/// The key of one call: which order and user, and how many points.
#[derive(Debug, Clone, Copy)]
pub struct CallKey<'a> {
    pub order_id: &'a str,
    pub user_id: &'a str,
    pub points: i64,
}

impl HttpChannel {
    pub fn new(config: AdapterConfig) -> Result<Self, AdapterConfigError> {
        let invalid = |key: &str, message: String| AdapterConfigError::Invalid {
            path: "(tls)".into(),
            key: key.to_owned(),
            message,
        };
        let mut headers = reqwest::header::HeaderMap::new();
        for header in &config.headers {
            headers.insert(header.name.clone(), header.value.clone());
        }
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .timeout(config.timeout)
            .connect_timeout(config.connect_timeout)
            .default_headers(headers);
        if let Some(file) = &config.ca_file {
            let pem = std::fs::read(file).map_err(|e| invalid("tls.ca_file", e.to_string()))?;
            let ca = reqwest::Certificate::from_pem(&pem)
                .map_err(|e| invalid("tls.ca_file", e.to_string()))?;
            builder = builder.add_root_certificate(ca);
        }
        if let Some(file) = &config.identity_file {
            let pem =
                std::fs::read(file).map_err(|e| invalid("tls.identity_file", e.to_string()))?;
            let identity = reqwest::Identity::from_pem(&pem)
                .map_err(|e| invalid("tls.identity_file", e.to_string()))?;
            builder = builder.identity(identity);
        }
        let client = builder.build().map_err(|e| invalid("tls", e.to_string()))?;
        Ok(Self { config, client })
    }

    pub fn channel_id(&self) -> &str {
        self.config.channel_id.as_str()
    }

    pub fn capabilities(&self) -> Capabilities {
        self.config.capabilities
    }

    pub fn base_url(&self) -> &str {
        self.config.base_url.as_str()
    }

    pub async fn deduct(&self, key: CallKey<'_>) -> Result<Recorded, Status> {
        let answer = self.call(&self.config.deduct, key).await?;
        self.recorded(
            &self.config.deduct,
            &answer,
            AnswerState::Deducted,
            key.points,
        )
    }

    /// `UNIMPLEMENTED` when the API has no refund call.
    pub async fn refund(&self, key: CallKey<'_>) -> Result<Recorded, Status> {
        let call = self.config.refund.as_ref().ok_or_else(|| {
            Status::unimplemented(format!("channel {} has no refund call", self.channel_id()))
        })?;
        let answer = self.call(call, key).await?;
        // Without the points in the answer a refund is taken to have given nothing back: the
        // mall then refunds a deduct reported later once more, which a refund-once API ignores.
        self.recorded(call, &answer, AnswerState::Refunded, 0)
    }

    /// The recorded deduction; `NOT_FOUND` when there is none, `UNIMPLEMENTED` without a query.
    pub async fn query(&self, key: CallKey<'_>) -> Result<Recorded, Status> {
        let call = self.config.query.as_ref().ok_or_else(|| {
            Status::unimplemented(format!("channel {} has no query call", self.channel_id()))
        })?;
        let answer = self.call(call, key).await?;
        self.recorded(call, &answer, AnswerState::Deducted, key.points)
    }

    /// A user's balance; `None` when the config has no balance call.
    pub async fn balance(&self, user_id: &str) -> Result<Option<i64>, Status> {
        let Some(call) = &self.config.balance else {
            return Ok(None);
        };
        let key = CallKey {
            order_id: "",
            user_id,
            points: 0,
        };
        let answer = self.call(call, key).await?;
        let pointer = call.balance.as_deref().unwrap_or_default();
        number(&answer.body, pointer).map(Some).ok_or_else(|| {
            Status::unknown(format!("the balance answer has no number at {pointer:?}"))
        })
    }

    async fn call(&self, call: &Call, key: CallKey<'_>) -> Result<Answer, Status> {
        let channel_id = self.channel_id();
        let mut values = Values {
            order_id: key.order_id,
            user_id: key.user_id,
            channel_id,
            points: key.points,
            key: "",
        };
        let idempotency_key = self.config.key.render(&values, Escape::Raw);
        let idempotency_key = match self.config.key_hash {
            KeyHash::None => idempotency_key,
            KeyHash::Sha256 => {
                use sha2::Digest;
                let hex: String = sha2::Sha256::digest(idempotency_key.as_bytes())
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                hex[..self.config.key_length.min(hex.len())].to_owned()
            }
        };
        values.key = &idempotency_key;
        let path = call.url.render(&values, Escape::Url);
        let url = if path.starts_with("http://") || path.starts_with("https://") {
            path
        } else {
            format!(
                "{}/{}",
                self.config.base_url.as_str().trim_end_matches('/'),
                path.trim_start_matches('/')
            )
        };
        let mut request = self.client.request(call.method.clone(), &url);
        for (name, value) in &call.headers {
            request = request.header(name.clone(), value.render(&values, Escape::Raw));
        }
        if let Some(body) = &call.body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.render(&values, Escape::Json));
        }
        let what = format!("{} {}", call.method, url);
        let response = request.send().await.map_err(|e| transport(&what, &e))?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|e| transport(&what, &e))?;
        let body: Option<Value> = serde_json::from_slice(&bytes).ok();
        let failure = match failure(&call.errors, status.as_u16(), body.as_ref()) {
            Some(failure) => Some(failure),
            None if status.is_success() => None,
            None => match status.as_u16() {
                408 | 429 => Some(Failure::Transient),
                400..=499 => Some(Failure::Invalid),
                _ => {
                    return Err(Status::unknown(format!(
                        "{what} answered {status}: it may have been applied"
                    )));
                }
            },
        };
        // A code the config maps to a state answers the call (already deducted, already
        // reversed), whatever the HTTP status.
        let means = match failure {
            Some(Failure::Deducted) => Some(AnswerState::Deducted),
            Some(Failure::Refunded) => Some(AnswerState::Refunded),
            Some(failure) => {
                return Err(failure_status(
                    failure,
                    &what,
                    status,
                    body.as_ref(),
                    &call.errors,
                ));
            }
            None => None,
        };
        let body = match (body, means) {
            (Some(body), _) => body,
            (None, Some(_)) => Value::Null,
            (None, None) if bytes.is_empty() => Value::Null,
            (None, None) => {
                return Err(Status::unknown(format!(
                    "{what} answered {status} with a body that is not JSON"
                )));
            }
        };
        Ok(Answer { body, means })
    }

    fn recorded(
        &self,
        call: &Call,
        answer: &Answer,
        default_state: AnswerState,
        default_points: i64,
    ) -> Result<Recorded, Status> {
        let Answer {
            body: answer,
            means,
        } = answer;
        let state = match (&call.state, means) {
            (_, Some(state)) => *state,
            (None, None) => default_state,
            (Some(pointer), None) => {
                let raw = scalar(answer, pointer).ok_or_else(|| {
                    Status::unknown(format!("the answer has no state at {pointer:?}"))
                })?;
                call.states
                    .iter()
                    .find(|(value, _)| *value == raw)
                    .map(|(_, state)| *state)
                    .ok_or_else(|| {
                        Status::unknown(format!(
                            "the answer's state {raw:?} is none of the config's states"
                        ))
                    })?
            }
        };
        let points = match (&call.points, means) {
            (None, _) => default_points,
            // An answer that is a code may carry no points: the state is what it says.
            (Some(pointer), Some(_)) => number(answer, pointer).unwrap_or(default_points),
            (Some(pointer), None) => number(answer, pointer).ok_or_else(|| {
                Status::unknown(format!("the answer has no points at {pointer:?}"))
            })?,
        };
        let (state, reason) = match state {
            AnswerState::Deducted => (LedgerState::Deducted, String::new()),
            AnswerState::Refunded => (LedgerState::Refunded, String::new()),
            AnswerState::Rejected => (LedgerState::Rejected, "rejected by the channel".into()),
        };
        Ok(Recorded {
            state,
            points,
            reason,
            key: None,
            deduct_may_follow: false,
        })
    }
}

/// An answer of the API: its body, and the state a mapped code says it means.
struct Answer {
    body: Value,
    means: Option<AnswerState>,
}

/// A value at a JSON pointer as text (a string, or a number or boolean written out).
fn scalar(answer: &Value, pointer: &str) -> Option<String> {
    match answer.pointer(pointer)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn number(answer: &Value, pointer: &str) -> Option<i64> {
    match answer.pointer(pointer)? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// The failure an answer names: a mapped error code wins over a mapped status.
fn failure(errors: &ErrorMap, status: u16, body: Option<&Value>) -> Option<Failure> {
    let code = errors
        .code
        .as_deref()
        .and_then(|pointer| body.and_then(|b| scalar(b, pointer)));
    code.and_then(|code| errors.codes.get(&code).copied())
        .or_else(|| errors.status.get(&status).copied())
}

fn failure_status(
    failure: Failure,
    what: &str,
    status: reqwest::StatusCode,
    body: Option<&Value>,
    errors: &ErrorMap,
) -> Status {
    let code = errors
        .code
        .as_deref()
        .and_then(|pointer| body.and_then(|b| scalar(b, pointer)))
        .map(|code| format!(" (code {code})"))
        .unwrap_or_default();
    let message = format!("{what} answered {status}{code}");
    match failure {
        Failure::Rejected => Status::failed_precondition(message),
        Failure::UnknownUser | Failure::NotFound => Status::not_found(message),
        Failure::Transient => Status::unavailable(message),
        Failure::Invalid => Status::invalid_argument(message),
        Failure::Conflict => Status::aborted(message),
        Failure::OtherAmount => Status::already_exists(message),
        // Mapped to states before this is reached; never a failure.
        Failure::Deducted | Failure::Refunded => Status::unknown(message),
    }
}

/// A call that got no answer. Only one that never reached the API is surely not applied.
fn transport(what: &str, error: &reqwest::Error) -> Status {
    // reqwest's Display omits the cause; the source chain says what went wrong.
    let mut message = format!("{what}: {error}");
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        message.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    if error.is_connect() {
        Status::unavailable(message)
    } else if error.is_timeout() {
        Status::deadline_exceeded(message)
    } else {
        Status::unknown(message)
    }
}

impl LedgerEndpoint for HttpChannel {
    fn decode(&self, step: Step, payload: &[u8]) -> Result<LedgerCommand, String> {
        jifen_mesh::wire::decode_points_command(self.channel_id(), step, payload)
    }

    async fn deduct(&self, command: &LedgerCommand) -> Result<Recorded, Status> {
        HttpChannel::deduct(self, call_key(command)).await
    }

    async fn refund(&self, command: &LedgerCommand) -> Result<Recorded, Status> {
        HttpChannel::refund(self, call_key(command)).await
    }

    async fn get(&self, command: &LedgerCommand) -> Result<Recorded, Status> {
        self.query(call_key(command)).await
    }

    fn event(&self, command: &LedgerCommand, recorded: &Recorded) -> (String, Vec<u8>) {
        jifen_mesh::wire::points_event(command, recorded)
    }

    fn capabilities(&self) -> Capabilities {
        self.config.capabilities
    }

    fn manual_refund_event(
        &self,
        command: &LedgerCommand,
        points: i64,
    ) -> Option<(String, Vec<u8>)> {
        Some(jifen_mesh::wire::manual_refund_event(command, points))
    }
}

fn call_key(command: &LedgerCommand) -> CallKey<'_> {
    CallKey {
        order_id: &command.order_id,
        user_id: &command.user_id,
        points: command.points,
    }
}
