//! The HTTP adapter (DESIGN §9): drives a third party's REST points API described by a config
//! file ([`config`]), with no code written. The connector uses it as a [`LedgerEndpoint`]; the
//! mall's pre-check and reconciliation reach the same API through it, and
//! `jifen channel-check --adapter-config` checks it.
//!
//! A call runs a pipeline: [`request`] builds it (parameters → encoding → signing → headers),
//! it is sent, and [`answer`] reads what came back (verify → map). A request that never
//! reached the API (connection refused) is `UNAVAILABLE`, which the connector knows was not
//! applied; a timeout or a lost answer is not, since the API may have acted on it.

pub mod amount;
pub mod answer;
pub mod auth;
pub mod clock;
pub mod config;
pub mod crypto;
mod endpoint;
pub mod evidence;
mod exchange;
pub mod limit;
mod outcome;
pub mod request;
pub mod template;
pub mod xml;

use std::collections::BTreeMap;

use jifen_mesh::barrier::LedgerState;
use jifen_mesh::capabilities::Capabilities;
use jifen_mesh::connector::Recorded;
use tonic::Status;

use answer::{Answer, Received};
use config::AnswerState;
pub use config::{AdapterConfig, AdapterConfigError};

/// A REST points API driven through its adapter config.
#[derive(Debug, Clone)]
pub struct HttpChannel {
    config: AdapterConfig,
    client: reqwest::Client,
    auth: Option<std::sync::Arc<auth::Auth>>,
    limiter: std::sync::Arc<limit::Limiter>,
    evidence: std::sync::Arc<evidence::Evidence>,
}

/// The key of one call: which order and user, how many points, and what the deduct's answer
/// gave (for a refund).
#[derive(Debug, Clone, Copy)]
pub struct CallKey<'a> {
    pub order_id: &'a str,
    pub user_id: &'a str,
    pub points: i64,
    pub captured: Option<&'a BTreeMap<String, String>>,
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
        let auth = config.auth.clone().map(|a| {
            std::sync::Arc::new(auth::Auth::new(
                a,
                config.base_url.as_str(),
                config.channel_id.as_str(),
            ))
        });
        let limiter = std::sync::Arc::new(limit::Limiter::new(config.rate));
        Ok(Self {
            config,
            client,
            auth,
            limiter,
            evidence: std::sync::Arc::default(),
        })
    }

    /// Keeps each line's exchanges until its outcome carries them (a connector's channel).
    pub fn keeping_evidence(mut self) -> Self {
        self.evidence = std::sync::Arc::new(evidence::Evidence::kept());
        self
    }

    /// Shows every exchange to `trace` as it happens (`channel-check --trace`).
    pub fn traced(mut self, trace: evidence::Trace) -> Self {
        self.evidence = std::sync::Arc::new(evidence::Evidence::traced(trace));
        self
    }

    /// How the partner's daily statement reads (`[statement]`), when the file says.
    pub fn statement_format(&self) -> Option<&config::StatementFormat> {
        self.config.statement.as_ref()
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

    /// `UNIMPLEMENTED` when the API has no refund call, or when the refund needs a value of
    /// the deduct's answer that neither the line nor a query can give: an operator's task.
    pub async fn refund(&self, key: CallKey<'_>) -> Result<Recorded, Status> {
        let call = self.config.refund.as_ref().ok_or_else(|| {
            Status::unimplemented(format!("channel {} has no refund call", self.channel_id()))
        })?;
        let captured = match self.captures_for(call, key, LedgerState::Deducted).await? {
            Ok(captured) => captured,
            Err(recorded) => return Ok(recorded),
        };
        let key = CallKey {
            captured: Some(&captured),
            ..key
        };
        let answer = self.call(call, key).await?;
        // A refund that succeeded without saying how much gave back what the line deducted
        // (the command names it); "nothing there" is an answer of its own (NOT_FOUND).
        self.recorded(call, &answer, AnswerState::Refunded, key.points)
    }

    /// The values `call` needs from the answer that took the points (`{deduct.<name>}`,
    /// `{freeze.<name>}`): the line's, completed by the query when some lack (the answer was
    /// lost, or came from an older config). `Err(recorded)` when the query shows there is
    /// nothing to act on — the key is no longer `taken` — and what it recorded is the answer;
    /// `NOT_FOUND` when the points were never taken or were refused; `UNIMPLEMENTED` when
    /// nothing can give a value (an operator's task).
    async fn captures_for(
        &self,
        call: &config::Call,
        key: CallKey<'_>,
        taken: LedgerState,
    ) -> Result<Result<BTreeMap<String, String>, Recorded>, Status> {
        let has = |name: &str| key.captured.is_some_and(|c| c.contains_key(name));
        let missing: Vec<&str> = call
            .needed_captures()
            .into_iter()
            .filter(|name| !has(name))
            .collect();
        let mut captured = key.captured.cloned().unwrap_or_default();
        if missing.is_empty() {
            return Ok(Ok(captured));
        }
        let learned = match self.query(key).await {
            // Refused or never taken: nothing to give back.
            Ok(recorded) if recorded.state == LedgerState::Rejected => {
                return Err(Status::not_found(format!(
                    "channel {}: the points were refused; nothing to act on",
                    self.channel_id()
                )));
            }
            Ok(recorded) if recorded.state != taken => return Ok(Err(recorded)),
            Ok(recorded) => recorded.captured,
            // Never taken: nothing to give back.
            Err(status) if status.code() == tonic::Code::NotFound => return Err(status),
            Err(status) if status.code() == tonic::Code::Unimplemented => BTreeMap::new(),
            Err(status) => return Err(status),
        };
        captured.extend(learned);
        if let Some(name) = missing.iter().find(|name| !captured.contains_key(**name)) {
            return Err(Status::unimplemented(format!(
                "the {} needs {{…{name}}}, which the answer that took the points did not reach \
                 us with and the channel's query does not give: settle it at the channel by hand",
                call.name
            )));
        }
        Ok(Ok(captured))
    }

    /// The partner's holds, when its config declares them (`freeze = true`).
    fn holds(&self) -> Result<&config::Holds, Status> {
        self.config.holds.as_ref().ok_or_else(|| {
            Status::unimplemented(format!("channel {} holds no points", self.channel_id()))
        })
    }

    /// How long the partner keeps a hold; `None` where it holds none.
    pub fn hold_ttl(&self) -> Option<std::time::Duration> {
        self.config.holds.as_ref().map(|h| h.ttl)
    }

    /// Holds `key.points` for the key (TCC): answered like a deduct, frozen by default.
    pub async fn freeze(&self, key: CallKey<'_>) -> Result<Recorded, Status> {
        let call = &self.holds()?.freeze;
        let answer = self.call(call, key).await?;
        self.recorded(call, &answer, AnswerState::Frozen, key.points)
    }

    /// Captures the key's hold, with what the freeze's answer gave (`{freeze.<capture>}`).
    pub async fn confirm(&self, key: CallKey<'_>) -> Result<Recorded, Status> {
        let call = &self.holds()?.confirm;
        self.settle_hold(call, key, AnswerState::Confirmed).await
    }

    /// Releases the key's hold; "nothing there" is `NOT_FOUND` (nothing was held).
    pub async fn cancel(&self, key: CallKey<'_>) -> Result<Recorded, Status> {
        let call = &self.holds()?.cancel;
        self.settle_hold(call, key, AnswerState::Cancelled).await
    }

    async fn settle_hold(
        &self,
        call: &config::Call,
        key: CallKey<'_>,
        settled: AnswerState,
    ) -> Result<Recorded, Status> {
        let captured = match self.captures_for(call, key, LedgerState::Frozen).await? {
            Ok(captured) => captured,
            Err(recorded) => return Ok(recorded),
        };
        let key = CallKey {
            captured: Some(&captured),
            ..key
        };
        let answer = self.call(call, key).await?;
        self.recorded(call, &answer, settled, key.points)
    }

    /// The recorded deduction; `NOT_FOUND` when there is none, `UNIMPLEMENTED` without a query.
    pub async fn query(&self, key: CallKey<'_>) -> Result<Recorded, Status> {
        let call = self.config.query.as_ref().ok_or_else(|| {
            Status::unimplemented(format!("channel {} has no query call", self.channel_id()))
        })?;
        let answer = self.call(call, key).await?;
        self.recorded(call, &answer, AnswerState::Deducted, key.points)
    }

    /// Reads a partner's notification (`[notify]`): our key as the partner knows it, and what
    /// it says was recorded. `UNAUTHENTICATED` when its signature does not verify.
    pub fn notification(
        &self,
        headers: &reqwest::header::HeaderMap,
        body: bytes::Bytes,
    ) -> Result<(String, Recorded), Status> {
        let notify = self.config.notify.as_ref().ok_or_else(|| {
            Status::unimplemented(format!(
                "channel {} takes no notifications",
                self.channel_id()
            ))
        })?;
        let received = Received {
            status: reqwest::StatusCode::OK,
            headers: headers.clone(),
            bytes: body,
        };
        let parsed = answer::parse(self.config.answer, &received.bytes);
        let authentic = answer::verified(
            &notify.verify,
            &received,
            parsed.as_ref(),
            &notify.answer.envelope,
        );
        if !authentic {
            return Err(Status::unauthenticated(
                "the notification's signature does not verify",
            ));
        }
        let body =
            parsed.ok_or_else(|| Status::invalid_argument("the notification cannot be read"))?;
        let key = answer::scalar(&body, &notify.key).ok_or_else(|| {
            Status::invalid_argument(format!("the notification has no key at {:?}", notify.key))
        })?;
        let read = Answer { body, means: None };
        let recorded = self.recorded(&notify.answer, &read, AnswerState::Deducted, 0)?;
        Ok((key, recorded))
    }

    /// The exchanges of a line so far, handed over with an outcome learned otherwise (a
    /// notification).
    pub fn take_evidence(
        &self,
        order_id: &str,
        user_id: &str,
    ) -> Vec<jifen_mesh::connector::Exchange> {
        self.evidence.take(order_id, user_id)
    }

    /// What the partner answers an accepted notification.
    pub fn notify_reply(&self) -> Option<&str> {
        self.config.notify.as_ref().map(|n| n.reply.as_str())
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
            captured: None,
        };
        let answer = self.call(call, key).await?;
        let pointer = call.balance.as_deref().unwrap_or_default();
        answer::number(&answer.body, pointer)
            .map(Some)
            .ok_or_else(|| {
                Status::unknown(format!("the balance answer has no number at {pointer:?}"))
            })
    }
}
