//! Checks of the file as a whole, once every call is read: the calls agree with the declared
//! capabilities, the captures a refund uses are kept, a signature has somewhere to go and
//! something to sign, a "processing" answer has a schedule and a query to poll.

use jifen_mesh::capabilities::Capabilities;
use jifen_mesh::connector::PollSchedule;

use super::call::{Call, Payload};
use super::{AnswerState, Canonical, Failure, Signing};
use crate::template::{Template, Var};

type Invalid = (String, String);
type Calls<'a> = [Option<&'a Call>];

fn invalid(key: &str, message: impl Into<String>) -> Invalid {
    (key.to_owned(), message.into())
}

/// Whether a header template or any template of a call uses `var`.
pub(super) fn uses(
    header_templates: &[(reqwest::header::HeaderName, Template)],
    calls: &Calls<'_>,
    var: &Var,
) -> bool {
    header_templates.iter().any(|(_, t)| t.uses(var))
        || calls
            .iter()
            .flatten()
            .any(|c| c.templates().into_iter().any(|(_, t)| t.uses(var)))
}

pub(super) fn calls_match_capabilities(
    capabilities: Capabilities,
    refund: &Option<Call>,
    query: &Option<Call>,
) -> Result<(), Invalid> {
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
    Ok(())
}

/// Every `{deduct.<name>}` of a call that undoes (or settles) what `taking` took is captured
/// from `taking`'s answer.
pub(super) fn captures_declared(taking: &Call, refund: &Option<Call>) -> Result<(), Invalid> {
    if let Some(call) = refund {
        for name in call.needed_captures() {
            if !taking.capture.contains_key(name) {
                return Err(invalid(
                    call.name,
                    format!(
                        "uses {{deduct.{name}}}, but [{}.capture] has no {name}",
                        taking.name
                    ),
                ));
            }
        }
    }
    Ok(())
}

pub(super) fn signature_placed(signing: Option<&Signing>, used: bool) -> Result<(), Invalid> {
    match signing {
        Some(signing) if signing.param.is_none() && !used => Err(invalid(
            "signing",
            "the signature goes nowhere: name signing.param, or put {signature} in a header \
             template",
        )),
        None if used => Err(invalid(
            "header_templates",
            "{signature} is used, but the file has no [signing]",
        )),
        _ => Ok(()),
    }
}

pub(super) fn params_signed(signing: Option<&Signing>, calls: &Calls<'_>) -> Result<(), Invalid> {
    if signing.is_some_and(|s| s.canonical == Canonical::SortedParams) {
        for call in calls.iter().flatten() {
            if !matches!(call.payload, Payload::Params { .. }) {
                return Err(invalid(
                    &format!("{}.params", call.name),
                    "is missing: signing sorts a call's parameters, and this call sends none",
                ));
            }
        }
    }
    Ok(())
}

pub(super) fn pending_polled(
    poll: Option<&PollSchedule>,
    calls: &Calls<'_>,
    capabilities: Capabilities,
) -> Result<(), Invalid> {
    let answers_pending = calls.iter().flatten().any(|c| {
        c.states.iter().any(|(_, s)| *s == AnswerState::Pending)
            || c.errors.codes.values().any(|f| *f == Failure::Pending)
    });
    match (poll, answers_pending) {
        (None, true) => Err(invalid(
            "pending",
            "is missing: a call maps an answer to pending, and [pending] says when it is asked \
             again (poll) and until when (deadline)",
        )),
        (Some(_), _) if !capabilities.query => Err(invalid(
            "pending",
            "polls the query, and the file has none (capabilities.query is false)",
        )),
        _ => Ok(()),
    }
}
