//! One call of the API (`[deduct]`, `[refund]`, `[query]`, `[balance]`): how its request is
//! made and its answer read.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{AnswerState, Failure, RawErrors, pointer};
use crate::template::{Template, Var};

type Invalid = (String, String);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCall {
    #[serde(default = "default_method")]
    method: String,
    url: String,
    /// A JSON body template.
    body: Option<String>,
    /// Parameters, sent as `encoding` says (with the file's `[params]`).
    #[serde(default)]
    params: BTreeMap<String, String>,
    /// Parameters whose value is a JSON document (a `biz_content`).
    #[serde(default)]
    json_params: Vec<String>,
    encoding: Option<Encoding>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    envelope: Option<String>,
    state: Option<String>,
    points: Option<String>,
    /// The deducted points as the answer's currency amount (`[amount]`).
    amount: Option<String>,
    balance: Option<String>,
    #[serde(default)]
    states: RawStates,
    #[serde(default)]
    errors: RawErrors,
    /// Values kept from the answer: name → JSON pointer.
    #[serde(default)]
    capture: BTreeMap<String, String>,
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
    #[serde(default)]
    pending: Vec<String>,
    #[serde(default)]
    frozen: Vec<String>,
    #[serde(default)]
    confirmed: Vec<String>,
    #[serde(default)]
    cancelled: Vec<String>,
}

/// How a call's parameters travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    /// `application/x-www-form-urlencoded` body.
    Form,
    /// In the URL's query string.
    Query,
    /// A flat JSON object of strings.
    Json,
    /// `<root><name>value</name>…</root>` (the file's `xml_root`).
    Xml,
}

/// What a call sends.
#[derive(Debug, Clone)]
pub enum Payload {
    /// Nothing (a GET whose URL says it all).
    None,
    /// A JSON body template.
    Body(Template),
    /// Parameters (the file's and the call's), each a template; JSON ones are rendered as
    /// JSON documents.
    Params {
        params: Vec<Param>,
        encoding: Encoding,
    },
}

#[derive(Debug, Clone)]
pub struct Param {
    pub name: String,
    pub value: Template,
    pub json: bool,
}

/// How failures map to outcomes: by error code in the body first, then by HTTP status.
#[derive(Debug, Clone, Default)]
pub struct ErrorMap {
    pub code: Option<String>,
    pub status: BTreeMap<u16, Failure>,
    pub codes: BTreeMap<String, Failure>,
    /// Where the success code is and its values: `None` when any unmapped 2xx is a success.
    pub ok: Option<(String, Vec<String>)>,
}

/// One call of the API.
#[derive(Debug, Clone)]
pub struct Call {
    pub name: &'static str,
    pub method: reqwest::Method,
    pub url: Template,
    pub payload: Payload,
    pub headers: Vec<(reqwest::header::HeaderName, Template)>,
    /// Prefix of every pointer into the answer.
    pub envelope: String,
    /// JSON pointers into the answer (the envelope already in front).
    pub state: Option<String>,
    pub points: Option<String>,
    pub amount: Option<String>,
    pub balance: Option<String>,
    pub states: Vec<(String, AnswerState)>,
    /// The file's `[errors]` with this call's own entries over it.
    pub errors: ErrorMap,
    pub capture: BTreeMap<String, String>,
}

impl Call {
    /// Every template of the request, with where it is.
    pub fn templates(&self) -> Vec<(String, &Template)> {
        let mut all = vec![(format!("{}.url", self.name), &self.url)];
        match &self.payload {
            Payload::None => {}
            Payload::Body(body) => all.push((format!("{}.body", self.name), body)),
            Payload::Params { params, .. } => all.extend(
                params
                    .iter()
                    .map(|p| (format!("{}.params.{}", self.name, p.name), &p.value)),
            ),
        }
        all.extend(
            self.headers
                .iter()
                .map(|(h, t)| (format!("{}.headers.{h}", self.name), t)),
        );
        all
    }

    /// The captures of the deduct this call needs.
    pub fn needed_captures(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self
            .templates()
            .into_iter()
            .flat_map(|(_, t)| t.captures().collect::<Vec<_>>())
            .collect();
        names.sort_unstable();
        names.dedup();
        names
    }
}

pub(super) fn error_map(raw: &RawErrors, over: &ErrorMap, at: &str) -> Result<ErrorMap, Invalid> {
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
    match (&raw.ok_code, raw.ok.is_empty()) {
        (Some(code), false) => {
            map.ok = Some((pointer(&format!("{at}.ok_code"), code)?, raw.ok.clone()));
        }
        (None, true) => {}
        (Some(_), true) => {
            return Err((
                format!("{at}.ok"),
                "is missing: the values of ok_code that mean success".into(),
            ));
        }
        (None, false) => {
            return Err((
                format!("{at}.ok_code"),
                "is missing: the JSON pointer to the code that ok lists".into(),
            ));
        }
    }
    Ok(map)
}

/// Why a request template may not use `var` whatever it is part of (a line of `[signing]`
/// has its own rules): the signing lines' own placeholders, and values the file does not make.
pub(super) fn unavailable(var: &Var, has_amount: bool, has_token: bool) -> Option<&'static str> {
    match var {
        Var::Method | Var::Path | Var::Body | Var::BodySha256 | Var::Header(_) => {
            Some("is for signing lines")
        }
        Var::Amount if !has_amount => Some("needs an [amount] section"),
        Var::Token if !has_token => Some("needs an [auth] section"),
        _ => None,
    }
}

/// What the rest of the file offers a call.
#[derive(Clone, Copy)]
pub(super) struct Context<'a> {
    pub errors: &'a ErrorMap,
    pub params: &'a [Param],
    pub envelope: &'a str,
    pub has_amount: bool,
    pub has_token: bool,
}

pub(super) fn build_call(
    name: &'static str,
    raw: RawCall,
    context: &Context<'_>,
) -> Result<Call, Invalid> {
    let at = |key: &str| format!("{name}.{key}");
    let method =
        reqwest::Method::from_bytes(raw.method.to_ascii_uppercase().as_bytes()).map_err(|_| {
            (
                at("method"),
                format!("{:?} is not an HTTP method", raw.method),
            )
        })?;
    let url = Template::parse(&raw.url).map_err(|m| (at("url"), m))?;
    for json_param in &raw.json_params {
        if !raw.params.contains_key(json_param) {
            return Err((
                at("json_params"),
                format!("{json_param:?} is not one of this call's params"),
            ));
        }
    }
    let payload = match (raw.body, raw.params.is_empty() && context.params.is_empty()) {
        (Some(_), false) => {
            return Err((
                at("body"),
                "a call sends a JSON body or parameters, not both (the file's [params] count)"
                    .into(),
            ));
        }
        (Some(body), true) => {
            if raw.encoding.is_some() {
                return Err((at("encoding"), "is for params, not a body".into()));
            }
            let template = Template::parse(&body).map_err(|m| (at("body"), m))?;
            template
                .check_json()
                .map_err(|m| (at("body"), format!("is not JSON once filled in: {m}")))?;
            Payload::Body(template)
        }
        (None, true) => Payload::None,
        (None, false) => {
            let mut params = context.params.to_vec();
            for (param, value) in &raw.params {
                let json = raw.json_params.contains(param);
                let template =
                    Template::parse(value).map_err(|m| (at(&format!("params.{param}")), m))?;
                if json {
                    template.check_json().map_err(|m| {
                        (
                            at(&format!("params.{param}")),
                            format!("is in json_params but is not JSON once filled in: {m}"),
                        )
                    })?;
                }
                params.retain(|p| p.name != *param);
                params.push(Param {
                    name: param.clone(),
                    value: template,
                    json,
                });
            }
            let encoding = raw.encoding.unwrap_or(if method == reqwest::Method::GET {
                Encoding::Query
            } else {
                Encoding::Form
            });
            if method == reqwest::Method::GET && encoding != Encoding::Query {
                return Err((at("encoding"), "a GET sends its params in the query".into()));
            }
            Payload::Params { params, encoding }
        }
    };
    let mut headers = Vec::new();
    for (header, value) in raw.headers {
        let key = at(&format!("headers.{header}"));
        let header_name = reqwest::header::HeaderName::from_bytes(header.as_bytes())
            .map_err(|_| (key.clone(), "is not a header name".to_owned()))?;
        headers.push((header_name, Template::parse(&value).map_err(|m| (key, m))?));
    }
    let envelope = match raw.envelope {
        Some(envelope) => pointer(&at("envelope"), &envelope)?,
        None => context.envelope.to_owned(),
    };
    let optional_pointer = |key: &str, raw: Option<String>| {
        raw.map(|p| pointer(&at(key), &p).map(|p| format!("{envelope}{p}")))
            .transpose()
    };
    let mut states = Vec::new();
    for (values, state) in [
        (&raw.states.deducted, AnswerState::Deducted),
        (&raw.states.refunded, AnswerState::Refunded),
        (&raw.states.rejected, AnswerState::Rejected),
        (&raw.states.pending, AnswerState::Pending),
        (&raw.states.frozen, AnswerState::Frozen),
        (&raw.states.confirmed, AnswerState::Confirmed),
        (&raw.states.cancelled, AnswerState::Cancelled),
    ] {
        states.extend(values.iter().map(|v| (v.clone(), state)));
    }
    let state = optional_pointer("state", raw.state)?;
    if state.is_some() && states.is_empty() {
        return Err((
            at("states"),
            "is missing: which values of the state mean deducted, refunded, rejected (or \
             frozen, confirmed, cancelled for holds)"
                .into(),
        ));
    }
    if raw.points.is_some() && raw.amount.is_some() {
        return Err((
            at("amount"),
            "an answer gives its points or its amount, not both".into(),
        ));
    }
    if raw.amount.is_some() && !context.has_amount {
        return Err((
            at("amount"),
            "reads a currency amount: the file needs an [amount] section".into(),
        ));
    }
    let mut capture = BTreeMap::new();
    for (capture_name, raw_pointer) in raw.capture {
        let key = at(&format!("capture.{capture_name}"));
        if capture_name.is_empty()
            || !capture_name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            return Err((
                key,
                "a capture's name is lower-case letters, digits and _".into(),
            ));
        }
        capture.insert(
            capture_name,
            format!("{envelope}{}", pointer(&key, &raw_pointer)?),
        );
    }
    let call = Call {
        name,
        method,
        url,
        payload,
        headers,
        state,
        points: optional_pointer("points", raw.points)?,
        amount: optional_pointer("amount", raw.amount)?,
        balance: optional_pointer("balance", raw.balance)?,
        envelope,
        states,
        errors: error_map(&raw.errors, context.errors, &at("errors"))?,
        capture,
    };
    for (key, template) in call.templates() {
        for var in template.vars() {
            let refused = unavailable(var, context.has_amount, context.has_token).or(match var {
                Var::Signature if !key.contains(".headers.") => {
                    Some("goes into a header; a parameter is named by signing.param")
                }
                // Only what undoes or settles a taking call names that call's answer.
                Var::Capture(_) if !matches!(name, "refund" | "confirm" | "cancel") => Some(
                    "is a value of the deduct's answer, for the refund (a query finds a \
                     trade by our key: it is what learns those values when the deduct's \
                     answer was lost)",
                ),
                _ => None,
            });
            if let Some(why) = refused {
                return Err((key, format!("{var:?} {why}")));
            }
        }
    }
    Ok(call)
}

/// `[notify]`: how a partner's notification (`POST /notify/<channel>`) is read, like an answer.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNotify {
    /// JSON pointer to our key, as the deduct sent it (`{key}`).
    key: String,
    state: String,
    states: RawStates,
    points: Option<String>,
    amount: Option<String>,
    #[serde(default)]
    capture: BTreeMap<String, String>,
    /// The body answered to an accepted notification.
    #[serde(default = "default_reply")]
    reply: String,
    /// How the partner signs its notifications (as `[verify]` reads answers).
    verify: super::signing::RawVerify,
}

fn default_reply() -> String {
    "success".to_owned()
}

/// A checked `[notify]`: the notification read as a call's answer.
#[derive(Debug, Clone)]
pub struct Notify {
    pub key: String,
    pub reply: String,
    pub answer: Call,
    pub verify: std::sync::Arc<super::Verify>,
}

pub(super) fn build_notify(
    raw: RawNotify,
    context: &Context<'_>,
    base: &std::path::Path,
) -> Result<Notify, Invalid> {
    let verify = raw
        .verify
        .build(base)
        .map_err(|(k, m)| (format!("notify.{k}"), m))?;
    let key = pointer("notify.key", &raw.key)?;
    if raw.points.is_none() && raw.amount.is_none() {
        return Err((
            "notify.points".into(),
            "is missing: a notification says how much was deducted (points or amount)".into(),
        ));
    }
    let answer = build_call(
        "notify",
        RawCall {
            method: "POST".into(),
            url: String::new(),
            body: None,
            params: BTreeMap::new(),
            json_params: Vec::new(),
            encoding: None,
            headers: BTreeMap::new(),
            envelope: Some(String::new()),
            state: Some(raw.state),
            points: raw.points,
            amount: raw.amount,
            balance: None,
            states: raw.states,
            errors: RawErrors::default(),
            capture: raw.capture,
        },
        &Context {
            params: &[],
            ..*context
        },
    )?;
    if answer
        .states
        .iter()
        .any(|(_, s)| *s == AnswerState::Pending)
    {
        return Err((
            "notify.states".into(),
            "a notification tells a result, not pending".into(),
        ));
    }
    Ok(Notify {
        key,
        reply: raw.reply,
        answer,
        verify: std::sync::Arc::new(verify),
    })
}
