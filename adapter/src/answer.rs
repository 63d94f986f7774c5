//! The answer side of the pipeline: read the body (JSON or a form), verify the partner's
//! signature, and map it to an outcome. What an answer means is decided here, once: a code in
//! the body the config maps (even in a 200), then the HTTP status the config maps, then
//! defaults — 408/429 transient, other 4xx invalid, 5xx unknown (it may have been applied).

use reqwest::header::HeaderMap;
use serde::Deserialize;
use serde_json::Value;
use tonic::Status;

use crate::config::{AnswerCanonical, AnswerState, Call, ErrorMap, Failure, SignatureAt, Verify};
use crate::crypto;
use crate::request;
use crate::template::Values;

/// How answers are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    #[default]
    Json,
    /// `a=1&b=2`, read as an object of strings.
    Form,
    /// XML, read as a tree (`<xml><code>…` is `/xml/code`).
    Xml,
}

/// An answer as received.
#[derive(Debug)]
pub struct Received {
    pub status: reqwest::StatusCode,
    pub headers: HeaderMap,
    pub bytes: bytes::Bytes,
}

/// An answer of the API: its body, and the state a mapped code says it means.
#[derive(Debug)]
pub struct Answer {
    pub body: Value,
    pub means: Option<AnswerState>,
}

pub fn parse(format: Format, bytes: &[u8]) -> Option<Value> {
    match format {
        Format::Json => serde_json::from_slice(bytes).ok(),
        Format::Xml => crate::xml::to_json(bytes),
        Format::Form => {
            let text = std::str::from_utf8(bytes).ok()?;
            if !text.contains('=') {
                return None;
            }
            Some(Value::Object(
                form_urlencoded::parse(text.as_bytes())
                    .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
                    .collect(),
            ))
        }
    }
}

/// Whether the partner signed this answer (`[verify]`).
pub fn verified(
    verify: &Verify,
    received: &Received,
    body: Option<&Value>,
    envelope: &str,
) -> bool {
    let signature = match &verify.at {
        SignatureAt::Header(name) => received
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        SignatureAt::Field(pointer) => body.and_then(|b| scalar(b, pointer)),
    };
    let Some(signature) = signature else {
        return false;
    };
    let canonical = match verify.canonical {
        AnswerCanonical::Body => received.bytes.to_vec(),
        AnswerCanonical::SortedFields => {
            let Some(Value::Object(fields)) = body.and_then(|b| b.pointer(envelope)) else {
                return false;
            };
            let own = match &verify.at {
                SignatureAt::Field(pointer) => pointer.rsplit('/').next().unwrap_or_default(),
                SignatureAt::Header(_) => "",
            };
            let pairs: Vec<(String, String)> = fields
                .iter()
                .filter(|(k, _)| k.as_str() != own)
                .map(|(k, v)| {
                    let text = match v {
                        Value::String(s) => s.clone(),
                        Value::Null => String::new(),
                        other => other.to_string(),
                    };
                    (k.clone(), text)
                })
                .collect();
            request::sorted(&pairs, None, &verify.exclude).into_bytes()
        }
        AnswerCanonical::Lines => {
            let body = String::from_utf8_lossy(&received.bytes);
            let values = Values {
                body: &body,
                headers: Some(&received.headers),
                ..Values::default()
            };
            request::joined(
                &verify.lines,
                &values,
                &verify.separator,
                verify.trailing_separator,
            )
            .into_bytes()
        }
    };
    crypto::verify(
        verify.algorithm,
        &verify.key,
        &verify.message(&canonical),
        &signature,
        verify.output,
    )
}

/// Reads an answer: a failure it names, or its body and what a mapped code says it means.
pub fn read(
    call: &Call,
    what: &str,
    received: &Received,
    body: Option<Value>,
    authentic: bool,
) -> Result<Answer, Status> {
    let status = received.status;
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
    if failure.is_none()
        && let Some((pointer, ok)) = &call.errors.ok
    {
        let code = body.as_ref().and_then(|b| scalar(b, pointer));
        if !code.as_ref().is_some_and(|code| ok.contains(code)) {
            return Err(Status::unknown(format!(
                "{what} answered {status} with code {code:?}, which is neither a success nor \
                 mapped: its outcome is unknown"
            )));
        }
    }
    // Only a signed answer may settle anything; one that changes nothing (try later) needs no
    // signature. A forged or damaged answer leaves the outcome unknown.
    let settles = !matches!(failure, Some(Failure::Transient));
    if settles && !authentic {
        return Err(Status::unknown(format!(
            "{what} answered {status} without a valid signature: its outcome is unknown"
        )));
    }
    // A code the config maps to a state answers the call (already deducted, already
    // reversed), whatever the HTTP status.
    let means = match failure {
        Some(Failure::Deducted) => Some(AnswerState::Deducted),
        Some(Failure::Refunded) => Some(AnswerState::Refunded),
        Some(Failure::Pending) => Some(AnswerState::Pending),
        Some(Failure::Frozen) => Some(AnswerState::Frozen),
        Some(Failure::Confirmed) => Some(AnswerState::Confirmed),
        Some(Failure::Cancelled) => Some(AnswerState::Cancelled),
        Some(failure) => {
            return Err(failure_status(
                failure,
                what,
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
        (None, None) if received.bytes.is_empty() => Value::Null,
        (None, None) => {
            return Err(Status::unknown(format!(
                "{what} answered {status} with a body that cannot be read"
            )));
        }
    };
    Ok(Answer { body, means })
}

/// A value at a JSON pointer as text (a string, or a number or boolean written out).
pub fn scalar(answer: &Value, pointer: &str) -> Option<String> {
    match answer.pointer(pointer)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A whole number at a JSON pointer, given as a number or as a string.
pub fn number(answer: &Value, pointer: &str) -> Option<i64> {
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
        Failure::Deducted
        | Failure::Refunded
        | Failure::Pending
        | Failure::Frozen
        | Failure::Confirmed
        | Failure::Cancelled => Status::unknown(message),
    }
}

/// A call that got no answer. Only one that never reached the API is surely not applied.
pub fn transport(what: &str, error: &reqwest::Error) -> Status {
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
