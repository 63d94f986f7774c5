//! The adapter config file (TOML): how a REST points API is called and read. Parsed once at
//! start into [`AdapterConfig`]; every mistake is an [`AdapterConfigError`] naming its key.
//! The reference with a complete example is docs/channels.md.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use jifen_mesh::capabilities::Capabilities;
use jifen_mesh::domain::ChannelId;
use serde::Deserialize;

use super::template::Template;

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

/// What a failed call means, as the config maps it (DESIGN §9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Failure {
    /// A business refusal (too few points, account frozen): the deduct is rejected.
    Rejected,
    /// The user has no account: the deduct is rejected.
    UnknownUser,
    /// Nothing is recorded for the key (a query, a refund of a key never deducted).
    NotFound,
    /// Not applied; try again later.
    Transient,
    /// The request can never succeed (a bug, a misconfiguration).
    Invalid,
    /// The key was refunded before this deduct arrived.
    Conflict,
    /// The key was used before with another amount (`ALREADY_EXISTS`).
    OtherAmount,
    /// Not a failure but a state: the key is already deducted (a "duplicate order" code
    /// answering a repeated deduct).
    Deducted,
    /// Not a failure but a state: the key is already refunded ("already reversed").
    Refunded,
}

/// One state of a deduction as Jifen reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerState {
    Deducted,
    Refunded,
    Rejected,
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
    #[serde(default)]
    tls: RawTls,
    capabilities: Capabilities,
    #[serde(default)]
    errors: RawErrors,
    deduct: RawCall,
    refund: Option<RawCall>,
    query: Option<RawCall>,
    balance: Option<RawCall>,
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
enum RawSecret {
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
struct RawErrors {
    /// JSON pointer to an error code in an answer (any status, even 2xx).
    code: Option<String>,
    #[serde(default)]
    status: BTreeMap<String, Failure>,
    #[serde(default)]
    codes: BTreeMap<String, Failure>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCall {
    #[serde(default = "default_method")]
    method: String,
    url: String,
    body: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    state: Option<String>,
    points: Option<String>,
    balance: Option<String>,
    #[serde(default)]
    states: RawStates,
    #[serde(default)]
    errors: RawErrors,
}

fn default_method() -> String {
    "POST".to_owned()
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStates {
    #[serde(default)]
    deducted: Vec<String>,
    #[serde(default)]
    refunded: Vec<String>,
    #[serde(default)]
    rejected: Vec<String>,
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

/// How failures map to outcomes: by error code in the body first, then by HTTP status.
#[derive(Debug, Clone, Default)]
pub struct ErrorMap {
    pub code: Option<String>,
    pub status: BTreeMap<u16, Failure>,
    pub codes: BTreeMap<String, Failure>,
}

/// One call of the API.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: reqwest::Method,
    pub url: Template,
    pub body: Option<Template>,
    pub headers: Vec<(reqwest::header::HeaderName, Template)>,
    /// JSON pointers into the answer.
    pub state: Option<String>,
    pub points: Option<String>,
    pub balance: Option<String>,
    pub states: Vec<(String, AnswerState)>,
    /// The file's `[errors]` with this call's own entries over it.
    pub errors: ErrorMap,
}

/// A checked adapter config.
#[derive(Debug, Clone)]
pub struct AdapterConfig {
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
        let mut headers = Vec::new();
        for (name, secret) in raw.headers {
            let at = format!("headers.{name}");
            let header_name = reqwest::header::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| invalid(&at, "is not a header name".into()))?;
            let value = match secret {
                RawSecret::Literal(value) => {
                    if let Some(placeholder) = placeholder_in(&value) {
                        return Err(invalid(
                            &at,
                            format!(
                                "{placeholder} would be sent as it is: the file's [headers] are \
                                 sent unchanged; a header made of placeholders belongs to a \
                                 call's own headers ([deduct.headers] …)"
                            ),
                        ));
                    }
                    value
                }
                RawSecret::Env { env } => std::env::var(&env)
                    .map_err(|_| invalid(&at, format!("the environment has no {env}")))?,
                RawSecret::File { file } => std::fs::read_to_string(&file)
                    .map_err(|e| invalid(&at, format!("cannot read {}: {e}", file.display())))?
                    .trim_end()
                    .to_owned(),
            };
            let mut value = reqwest::header::HeaderValue::from_str(&value)
                .map_err(|_| invalid(&at, "is not a valid header value".into()))?;
            value.set_sensitive(true);
            headers.push(Header {
                name: header_name,
                value,
            });
        }
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
        let global = error_map(&raw.errors, &ErrorMap::default(), "errors")
            .map_err(|(k, m)| invalid(&k, m))?;
        let call = |name: &str, raw: RawCall| {
            build_call(name, raw, &global).map_err(|(k, m)| invalid(&k, m))
        };
        let capabilities = raw.capabilities;
        let deduct = call("deduct", raw.deduct)?;
        let refund = raw.refund.map(|c| call("refund", c)).transpose()?;
        let query = raw.query.map(|c| call("query", c)).transpose()?;
        let balance = raw.balance.map(|c| call("balance", c)).transpose()?;
        for (name, wanted, present) in [
            ("refund", capabilities.refund, refund.is_some()),
            ("query", capabilities.query, query.is_some()),
        ] {
            if wanted != present {
                let message = if wanted {
                    format!("capabilities.{name} is true, but the file has no [{name}] call")
                } else {
                    format!("there is a [{name}] call, but capabilities.{name} is false")
                };
                return Err(invalid(name, message));
            }
        }
        if let Some(balance) = &balance
            && balance.balance.is_none()
        {
            return Err(invalid(
                "balance.balance",
                "is missing: the JSON pointer to the balance in the answer".into(),
            ));
        }
        Ok(Self {
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
            refund,
            query,
            balance,
        })
    }
}

/// The first `{name}` in a value that is sent verbatim.
fn placeholder_in(value: &str) -> Option<&str> {
    let mut rest = value;
    while let Some(open) = rest.find('{') {
        let after = &rest[open..];
        let close = after.find('}')?;
        let name = &after[1..close];
        if !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Some(&after[..=close]);
        }
        rest = &after[1..];
    }
    None
}

fn error_map(raw: &RawErrors, over: &ErrorMap, at: &str) -> Result<ErrorMap, (String, String)> {
    let mut map = over.clone();
    if let Some(code) = &raw.code {
        map.code = Some(pointer(&format!("{at}.code"), code)?);
    }
    for (status, failure) in &raw.status {
        let key = format!("{at}.status.{status}");
        let number: u16 = status
            .parse()
            .ok()
            .filter(|n| (100..=599).contains(n))
            .ok_or_else(|| (key, "is not an HTTP status (100-599)".to_owned()))?;
        map.status.insert(number, *failure);
    }
    for (code, failure) in &raw.codes {
        map.codes.insert(code.clone(), *failure);
    }
    Ok(map)
}

fn pointer(key: &str, raw: &str) -> Result<String, (String, String)> {
    if raw.is_empty() || raw.starts_with('/') {
        Ok(raw.to_owned())
    } else {
        Err((
            key.to_owned(),
            format!("{raw:?} is not a JSON pointer (it starts with /, e.g. \"/data/status\")"),
        ))
    }
}

fn build_call(name: &str, raw: RawCall, global: &ErrorMap) -> Result<Call, (String, String)> {
    let at = |key: &str| format!("{name}.{key}");
    let method =
        reqwest::Method::from_bytes(raw.method.to_ascii_uppercase().as_bytes()).map_err(|_| {
            (
                at("method"),
                format!("{:?} is not an HTTP method", raw.method),
            )
        })?;
    let url = Template::parse(&raw.url).map_err(|m| (at("url"), m))?;
    let body = raw
        .body
        .map(|body| {
            let template = Template::parse(&body).map_err(|m| (at("body"), m))?;
            template
                .check_json()
                .map_err(|m| (at("body"), format!("is not JSON once filled in: {m}")))?;
            Ok::<_, (String, String)>(template)
        })
        .transpose()?;
    let mut headers = Vec::new();
    for (header, value) in raw.headers {
        let key = at(&format!("headers.{header}"));
        let header_name = reqwest::header::HeaderName::from_bytes(header.as_bytes())
            .map_err(|_| (key.clone(), "is not a header name".to_owned()))?;
        headers.push((header_name, Template::parse(&value).map_err(|m| (key, m))?));
    }
    let optional_pointer =
        |key: &str, raw: Option<String>| raw.map(|p| pointer(&at(key), &p)).transpose();
    let mut states = Vec::new();
    for (values, state) in [
        (&raw.states.deducted, AnswerState::Deducted),
        (&raw.states.refunded, AnswerState::Refunded),
        (&raw.states.rejected, AnswerState::Rejected),
    ] {
        states.extend(values.iter().map(|v| (v.clone(), state)));
    }
    let state = optional_pointer("state", raw.state)?;
    if state.is_some() && states.is_empty() {
        return Err((
            at("states"),
            "is missing: which values of the state mean deducted, refunded, rejected".into(),
        ));
    }
    Ok(Call {
        method,
        url,
        body,
        headers,
        state,
        points: optional_pointer("points", raw.points)?,
        balance: optional_pointer("balance", raw.balance)?,
        states,
        errors: error_map(&raw.errors, global, &at("errors"))?,
    })
}
