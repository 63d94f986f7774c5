//! The file's headers: `[headers]`, sent unchanged with every call (secrets among them, never
//! shown), and `[header_templates]`, made of placeholders for each attempt.

use std::collections::BTreeMap;
use std::path::Path;

use super::{Header, RawSecret};
use crate::template::{Template, Var};

type Invalid = (String, String);

fn err(at: &str, message: String) -> Invalid {
    (at.to_owned(), message)
}

pub(super) fn file_headers(
    raw: BTreeMap<String, RawSecret>,
    base: &Path,
) -> Result<Vec<Header>, Invalid> {
    let mut headers = Vec::new();
    for (name, secret) in raw {
        let at = format!("headers.{name}");
        let header_name = reqwest::header::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| err(&at, "is not a header name".into()))?;
        let value = match secret {
            RawSecret::Literal(value) => {
                if let Some(placeholder) = placeholder_in(&value) {
                    return Err(err(
                        &at,
                        format!(
                            "{placeholder} would be sent as it is: the file's [headers] are \
                                 sent unchanged; a header made of placeholders belongs to \
                                 [header_templates] or a call's own headers"
                        ),
                    ));
                }
                value
            }
            RawSecret::Env { env } => std::env::var(&env)
                .map_err(|_| err(&at, format!("the environment has no {env}")))?,
            RawSecret::File { file } => std::fs::read_to_string(base.join(&file))
                .map_err(|e| err(&at, format!("cannot read {}: {e}", file.display())))?
                .trim_end()
                .to_owned(),
        };
        let mut value = reqwest::header::HeaderValue::from_str(&value)
            .map_err(|_| err(&at, "is not a valid header value".into()))?;
        value.set_sensitive(true);
        headers.push(Header {
            name: header_name,
            value,
        });
    }
    Ok(headers)
}

pub(super) fn templates(
    raw: &BTreeMap<String, String>,
    has_token: bool,
    has_amount: bool,
) -> Result<Vec<(reqwest::header::HeaderName, Template)>, Invalid> {
    let mut header_templates = Vec::new();
    for (name, value) in raw {
        let at = format!("header_templates.{name}");
        let header_name = reqwest::header::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| err(&at, "is not a header name".into()))?;
        let template = Template::parse(value).map_err(|m| err(&at, m))?;
        for var in template.vars() {
            let refused = match var {
                Var::Capture(_) => Some("belongs to a call's own headers"),
                _ => super::call::unavailable(var, has_amount, has_token),
            };
            if let Some(why) = refused {
                return Err(err(&at, format!("{var:?} {why}")));
            }
        }
        header_templates.push((header_name, template));
    }
    Ok(header_templates)
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
