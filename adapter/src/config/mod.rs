//! The adapter config file (TOML): how a REST points API is called and read. Parsed once at
//! start into [`AdapterConfig`]; every mistake is an [`AdapterConfigError`] naming its key.
//! The reference with a complete example is docs/channels.md.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use jifen_mesh::capabilities::Capabilities;
use jifen_mesh::domain::ChannelId;
use serde::Deserialize;

use crate::amount::Amount;
use crate::clock::TimestampFormat;
use crate::template::Template;

mod call;
mod checks;
mod headers;
mod holds;
mod pending;
mod secret;
mod signing;
mod statement;
mod states;

pub use call::{Call, Encoding, ErrorMap, Param, Payload};
pub use holds::Holds;
pub(crate) use secret::RawSecretRef as SecretRef;
pub use signing::{AnswerCanonical, Canonical, SignatureAt, Signing, Verify};
pub use statement::StatementFormat;
pub use states::{AnswerState, Failure};

#[derive(Debug, thiserror::Error)]
pub enum AdapterConfigError {
    #[error("cannot read the adapter config {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the adapter config {path} is not valid: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("the adapter config {path}: {key}: {message}")]
    Invalid {
        path: PathBuf,
        key: String,
        message: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    channel_id: String,
    base_url: String,
    #[serde(default = "default_timeout")]
    timeout: String,
    #[serde(default = "default_connect_timeout")]
    connect_timeout: String,
    #[serde(default = "default_key")]
    key: String,
    /// Fits `{key}` to a partner's limits: the key's SHA-256, hex, cut to `key_length`.
    #[serde(default)]
    key_hash: KeyHash,
    key_length: Option<usize>,
    #[serde(default)]
    headers: BTreeMap<String, RawSecret>,
    /// Headers of every call made of placeholders (`{timestamp}`, `{signature}`, `{token}`).
    #[serde(default)]
    header_templates: BTreeMap<String, String>,
    /// Parameters of every call that sends parameters (`app_id`, `version`, `sign_type`).
    #[serde(default)]
    params: BTreeMap<String, String>,
    #[serde(default = "default_timestamp")]
    timestamp: String,
    utc_offset: Option<String>,
    amount: Option<Amount>,
    /// Prefix of every pointer into an answer (`/response`).
    #[serde(default)]
    envelope: String,
    /// How answers are written: json (default) or form.
    #[serde(default)]
    answer: crate::answer::Format,
    /// The root element of XML requests.
    #[serde(default = "default_xml_root")]
    xml_root: String,
    auth: Option<crate::auth::RawAuth>,
    rate: Option<crate::limit::Rate>,
    pending: Option<pending::RawPending>,
    notify: Option<call::RawNotify>,
    statement: Option<statement::StatementFormat>,
    signing: Option<signing::RawSigning>,
    verify: Option<signing::RawVerify>,
    #[serde(default)]
    tls: RawTls,
    capabilities: Capabilities,
    /// How long the partner keeps a hold before it lapses by itself (with `freeze`).
    hold_ttl: Option<String>,
    #[serde(default)]
    errors: RawErrors,
    deduct: call::RawCall,
    freeze: Option<call::RawCall>,
    confirm: Option<call::RawCall>,
    cancel: Option<call::RawCall>,
    refund: Option<call::RawCall>,
    query: Option<call::RawCall>,
    balance: Option<call::RawCall>,
}

fn default_xml_root() -> String {
    "xml".to_owned()
}

fn default_timestamp() -> String {
    "unix".to_owned()
}

fn default_timeout() -> String {
    "5s".to_owned()
}

fn default_connect_timeout() -> String {
    "2s".to_owned()
}

fn default_key() -> String {
    "{order_id}:{user_id}".to_owned()
}

/// How `{key}` is made to fit a partner's limits on its order numbers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyHash {
    /// The key as the template renders it (up to ~260 bytes: ids are 128 at most).
    #[default]
    None,
    /// The rendered key's SHA-256 in lowercase hex (64 characters, `[0-9a-f]` only), cut to
    /// `key_length`: the same key always gives the same value, so idempotency holds.
    Sha256,
}

/// A header value: literal, or a secret read from the environment or a file.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum RawSecret {
    Literal(String),
    Env { env: String },
    File { file: PathBuf },
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    ca_file: Option<PathBuf>,
    identity_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawErrors {
    /// JSON pointer to an error code in an answer (any status, even 2xx).
    code: Option<String>,
    #[serde(default)]
    status: BTreeMap<String, Failure>,
    #[serde(default)]
    codes: BTreeMap<String, Failure>,
    /// JSON pointer to the code that says "success" (`/response/code`), with `ok`.
    ok_code: Option<String>,
    /// The values of `ok_code` that mean success: any other, unmapped, is an unknown outcome
    /// rather than a success.
    #[serde(default)]
    ok: Vec<String>,
}

/// A header sent with every call. The value of a secret is never logged.
#[derive(Clone)]
pub struct Header {
    pub name: reqwest::header::HeaderName,
    pub value: reqwest::header::HeaderValue,
}

impl std::fmt::Debug for Header {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: <redacted>", self.name)
    }
}

/// A checked adapter config.
#[derive(Debug, Clone)]
pub struct AdapterConfig {
    pub header_templates: Vec<(reqwest::header::HeaderName, Template)>,
    pub timestamp: TimestampFormat,
    pub amount: Option<Amount>,
    pub answer: crate::answer::Format,
    pub xml_root: String,
    pub auth: Option<crate::auth::AuthConfig>,
    pub rate: Option<crate::limit::Rate>,
    pub poll: Option<jifen_mesh::connector::PollSchedule>,
    pub notify: Option<call::Notify>,
    /// How the partner's daily statement reads.
    pub statement: Option<statement::StatementFormat>,
    pub signing: Option<std::sync::Arc<Signing>>,
    pub verify: Option<std::sync::Arc<Verify>>,
    pub channel_id: ChannelId,
    pub base_url: reqwest::Url,
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub key: Template,
    pub key_hash: KeyHash,
    /// Characters of the hashed key kept (with `key_hash`).
    pub key_length: usize,
    pub headers: Vec<Header>,
    pub ca_file: Option<PathBuf>,
    pub identity_file: Option<PathBuf>,
    pub capabilities: Capabilities,
    pub deduct: Call,
    /// The partner's holds (TCC, DESIGN §12), with how long a hold lives.
    pub holds: Option<Holds>,
    pub refund: Option<Call>,
    pub query: Option<Call>,
    pub balance: Option<Call>,
}

impl AdapterConfig {
    /// Reads and checks a config file.
    pub fn load(path: &Path) -> Result<Self, AdapterConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| AdapterConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// Checks a config's text; `path` is only for messages.
    pub fn parse(path: &Path, text: &str) -> Result<Self, AdapterConfigError> {
        let raw: RawFile = toml::from_str(text).map_err(|e| AdapterConfigError::Syntax {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        let invalid = |key: &str, message: String| AdapterConfigError::Invalid {
            path: path.to_owned(),
            key: key.to_owned(),
            message,
        };
        // Secret files named relative to the config are found beside it.
        let base = path.parent().unwrap_or(Path::new("."));
        let channel_id = ChannelId::parse("channel_id", raw.channel_id)
            .map_err(|e| invalid("channel_id", e.to_string()))?;
        let base_url = reqwest::Url::parse(&raw.base_url)
            .map_err(|e| invalid("base_url", format!("is not a URL: {e}")))?;
        if !matches!(base_url.scheme(), "http" | "https") {
            return Err(invalid("base_url", "must be http:// or https://".into()));
        }
        let duration = |key: &str, raw: &str| {
            jifen_mesh::config::parse_duration(raw).map_err(|message| invalid(key, message))
        };
        let timeout = duration("timeout", &raw.timeout)?;
        let connect_timeout = duration("connect_timeout", &raw.connect_timeout)?;
        let key = Template::parse(&raw.key).map_err(|m| invalid("key", m))?;
        let key_length = match (raw.key_hash, raw.key_length) {
            (KeyHash::None, Some(_)) => {
                return Err(invalid(
                    "key_length",
                    "cuts a hashed key: set key_hash = \"sha256\" too".into(),
                ));
            }
            (KeyHash::Sha256, Some(n)) if !(16..=64).contains(&n) => {
                return Err(invalid(
                    "key_length",
                    format!("is {n}; keep 16 to 64 characters of the hash (fewer would collide)"),
                ));
            }
            (_, n) => n.unwrap_or(64),
        };
        let headers = headers::file_headers(raw.headers, base).map_err(|(k, m)| invalid(&k, m))?;
        for (key_name, file) in [
            ("tls.ca_file", &raw.tls.ca_file),
            ("tls.identity_file", &raw.tls.identity_file),
        ] {
            if let Some(file) = file
                && !file.is_file()
            {
                return Err(invalid(
                    key_name,
                    format!("{} is not a file", file.display()),
                ));
            }
        }
        if let Some(offset) = &raw.utc_offset {
            TimestampFormat::parse("unix", Some(offset)).map_err(|m| invalid("utc_offset", m))?;
        }
        let timestamp = TimestampFormat::parse(&raw.timestamp, raw.utc_offset.as_deref())
            .map_err(|m| invalid("timestamp", m))?;
        if let Some(amount) = &raw.amount {
            amount.check().map_err(|m| invalid("amount", m))?;
        }
        let envelope = pointer("envelope", &raw.envelope).map_err(|(k, m)| invalid(&k, m))?;
        let signing = raw
            .signing
            .map(|s| s.build(base).map(std::sync::Arc::new))
            .transpose()
            .map_err(|(k, m)| invalid(&k, m))?;
        let verify = raw
            .verify
            .map(|v| v.build(base).map(std::sync::Arc::new))
            .transpose()
            .map_err(|(k, m)| invalid(&k, m))?;
        let mut params = Vec::new();
        for (name, value) in &raw.params {
            let template =
                Template::parse(value).map_err(|m| invalid(&format!("params.{name}"), m))?;
            params.push(Param {
                name: name.clone(),
                value: template,
                json: false,
            });
        }
        if let Some(rate) = &raw.rate {
            rate.check().map_err(|m| invalid("rate", m))?;
        }
        let auth = raw
            .auth
            .map(|a| a.build(base))
            .transpose()
            .map_err(|(k, m)| invalid(&k, m))?;
        let mut header_templates =
            headers::templates(&raw.header_templates, auth.is_some(), raw.amount.is_some())
                .map_err(|(k, m)| invalid(&k, m))?;
        let global = call::error_map(&raw.errors, &ErrorMap::default(), "errors")
            .map_err(|(k, m)| invalid(&k, m))?;
        let context = call::Context {
            errors: &global,
            params: &params,
            envelope: &envelope,
            has_amount: raw.amount.is_some(),
            has_token: auth.is_some(),
        };
        let call = |name: &'static str, raw: call::RawCall| {
            call::build_call(name, raw, &context).map_err(|(k, m)| invalid(&k, m))
        };
        let capabilities = raw.capabilities;
        let deduct = call("deduct", raw.deduct)?;
        let refund = raw.refund.map(|c| call("refund", c)).transpose()?;
        let query = raw.query.map(|c| call("query", c)).transpose()?;
        let balance = raw.balance.map(|c| call("balance", c)).transpose()?;
        let holds = holds::build(
            capabilities.freeze,
            holds::RawHolds {
                freeze: raw.freeze,
                confirm: raw.confirm,
                cancel: raw.cancel,
                ttl: raw.hold_ttl,
            },
            &call,
            &duration,
            &invalid,
        )?;
        let hold_calls = holds.as_ref().map(|h| [&h.freeze, &h.confirm, &h.cancel]);
        let mut calls = vec![
            Some(&deduct),
            refund.as_ref(),
            query.as_ref(),
            balance.as_ref(),
        ];
        if let Some(hold_calls) = hold_calls {
            calls.extend(hold_calls.map(Some));
        }
        let calls = calls.as_slice();
        let fits = |checked: Result<(), (String, String)>| checked.map_err(|(k, m)| invalid(&k, m));
        fits(checks::calls_match_capabilities(
            capabilities,
            &refund,
            &query,
        ))?;
        fits(checks::captures_declared(&deduct, &refund))?;
        if let Some(holds) = &holds {
            for settle in [&holds.confirm, &holds.cancel] {
                fits(checks::captures_declared(
                    &holds.freeze,
                    &Some(settle.clone()),
                ))?;
            }
        }
        use crate::template::Var;
        let uses_signature = checks::uses(&header_templates, calls, &Var::Signature);
        fits(checks::signature_placed(signing.as_deref(), uses_signature))?;
        fits(checks::params_signed(signing.as_deref(), calls))?;
        if auth.is_some() && !checks::uses(&header_templates, calls, &Var::Token) {
            // Where a token goes unless the file says otherwise (RFC 6750).
            let bearer = Template::parse("Bearer {token}").map_err(|m| invalid("auth", m))?;
            header_templates.push((reqwest::header::AUTHORIZATION, bearer));
        }
        let poll = raw
            .pending
            .map(|p| p.build().map_err(|(k, m)| invalid(&k, m)))
            .transpose()?;
        fits(checks::pending_polled(poll.as_ref(), calls, capabilities))?;
        let notify = raw
            .notify
            .map(|n| call::build_notify(n, &context, base))
            .transpose()
            .map_err(|(k, m)| invalid(&k, m))?;
        if let Some(balance) = &balance
            && balance.balance.is_none()
        {
            return Err(invalid(
                "balance.balance",
                "is missing: the JSON pointer to the balance in the answer".into(),
            ));
        }
        if let Some(statement) = &raw.statement {
            statement.check().map_err(|m| invalid("statement", m))?;
        }
        Ok(Self {
            statement: raw.statement,
            header_templates,
            timestamp,
            amount: raw.amount,
            answer: raw.answer,
            xml_root: raw.xml_root,
            auth,
            rate: raw.rate,
            poll,
            notify,
            signing,
            verify,
            channel_id,
            base_url,
            timeout,
            connect_timeout,
            key,
            key_hash: raw.key_hash,
            key_length,
            headers,
            ca_file: raw.tls.ca_file,
            identity_file: raw.tls.identity_file,
            capabilities,
            deduct,
            holds,
            refund,
            query,
            balance,
        })
    }
}

pub(crate) fn pointer(key: &str, raw: &str) -> Result<String, (String, String)> {
    if raw.is_empty() || raw.starts_with('/') {
        Ok(raw.to_owned())
    } else {
        Err((
            key.to_owned(),
            format!("{raw:?} is not a JSON pointer (it starts with /, e.g. \"/data/status\")"),
        ))
    }
}
