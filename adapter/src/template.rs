//! Templates of the adapter config: text with placeholders `{order_id}`, `{user_id}`,
//! `{channel_id}`, `{points}` and `{key}`, filled in for each call and escaped for where they
//! go (a URL, a JSON body, a header). Any other brace is text, so a JSON body is written as is.

/// What a placeholder names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Var {
    OrderId,
    UserId,
    ChannelId,
    Points,
    Key,
    /// The points in currency units (`[amount]`).
    Amount,
    Timestamp,
    Nonce,
    /// The bearer token (`[auth]`).
    Token,
    /// The request's signature (`[signing]`), for headers.
    Signature,
    /// In a signing line: the request's method, path (with query), body, body's SHA-256.
    Method,
    Path,
    Body,
    BodySha256,
    /// A value captured from the deduct's answer (`{deduct.trade_no}`).
    Capture(String),
    /// In an answer's verification line: one of the answer's headers (`{header.x-ts}`).
    Header(String),
}

const VARS: [(&str, Var); 13] = [
    ("order_id", Var::OrderId),
    ("user_id", Var::UserId),
    ("channel_id", Var::ChannelId),
    ("points", Var::Points),
    ("key", Var::Key),
    ("amount", Var::Amount),
    ("timestamp", Var::Timestamp),
    ("nonce", Var::Nonce),
    ("token", Var::Token),
    ("signature", Var::Signature),
    ("method", Var::Method),
    ("path", Var::Path),
    ("body", Var::Body),
];

const NAMES: &str = "{order_id}, {user_id}, {channel_id}, {points}, {key}, {amount}, \
                     {timestamp}, {nonce}, {token}, {signature}, {deduct.<capture>}, {freeze.<capture>}; in signing \
                     lines also {method}, {path}, {body}, {body_sha256}";

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Var(Var),
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template(Vec<Part>);

/// The values of one call. Values a call does not have are empty.
#[derive(Debug, Clone, Default)]
pub struct Values<'a> {
    pub order_id: &'a str,
    pub user_id: &'a str,
    pub channel_id: &'a str,
    pub points: i64,
    pub key: &'a str,
    pub amount: &'a str,
    pub timestamp: &'a str,
    pub nonce: &'a str,
    pub token: &'a str,
    pub signature: &'a str,
    pub method: &'a str,
    pub path: &'a str,
    pub body: &'a str,
    pub body_sha256: &'a str,
    pub captures: Option<&'a std::collections::BTreeMap<String, String>>,
    pub headers: Option<&'a reqwest::header::HeaderMap>,
}

/// Where a filled-in template goes, which decides how values are escaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Escape {
    /// Percent-encoded (a URL's path or query).
    Url,
    /// Inside a JSON string (`{points}` and `{amount}` are bare numbers, written outside
    /// quotes).
    Json,
    /// As is (a header, a parameter, the idempotency key).
    Raw,
}

fn var_named(name: &str) -> Option<Var> {
    // What the answer that took the points gave: a deduct's, or a hold's (TCC).
    if let Some(capture) = name
        .strip_prefix("deduct.")
        .or_else(|| name.strip_prefix("freeze."))
    {
        let valid = !capture.is_empty()
            && capture
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        return valid.then(|| Var::Capture(capture.to_owned()));
    }
    if let Some(header) = name.strip_prefix("header.") {
        return (!header.is_empty()).then(|| Var::Header(header.to_owned()));
    }
    if name == "body_sha256" {
        return Some(Var::BodySha256);
    }
    VARS.iter()
        .find(|(known, _)| *known == name)
        .map(|(_, var)| var.clone())
}

impl Template {
    /// Parses a template; a `{name}` of lower-case letters that is no placeholder is refused
    /// (a typo would otherwise be sent as text).
    pub fn parse(raw: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut text = String::new();
        let mut rest = raw;
        while let Some(open) = rest.find('{') {
            text.push_str(&rest[..open]);
            let after = &rest[open + 1..];
            let name_len = after
                .find(|c: char| {
                    !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '.' | '-'))
                })
                .unwrap_or(after.len());
            let (name, tail) = after.split_at(name_len);
            if name.starts_with(|c: char| c.is_ascii_lowercase()) && tail.starts_with('}') {
                let var = var_named(name).ok_or_else(|| {
                    format!("unknown placeholder {{{name}}}; the placeholders are {NAMES}")
                })?;
                if !text.is_empty() {
                    parts.push(Part::Text(std::mem::take(&mut text)));
                }
                parts.push(Part::Var(var));
                rest = &tail[1..];
            } else {
                text.push('{');
                rest = after;
            }
        }
        text.push_str(rest);
        if !text.is_empty() {
            parts.push(Part::Text(text));
        }
        Ok(Self(parts))
    }

    /// The template filled in with `values`, escaped for `escape`. A capture or header the
    /// values lack is empty: callers check [`Template::captures`] first.
    pub fn render(&self, values: &Values<'_>, escape: Escape) -> String {
        let mut out = String::new();
        for part in &self.0 {
            let value = match part {
                Part::Text(text) => {
                    out.push_str(text);
                    continue;
                }
                Part::Var(Var::Points) => {
                    out.push_str(&values.points.to_string());
                    continue;
                }
                Part::Var(Var::OrderId) => values.order_id,
                Part::Var(Var::UserId) => values.user_id,
                Part::Var(Var::ChannelId) => values.channel_id,
                Part::Var(Var::Key) => values.key,
                Part::Var(Var::Amount) => values.amount,
                Part::Var(Var::Timestamp) => values.timestamp,
                Part::Var(Var::Nonce) => values.nonce,
                Part::Var(Var::Token) => values.token,
                Part::Var(Var::Signature) => values.signature,
                Part::Var(Var::Method) => values.method,
                Part::Var(Var::Path) => values.path,
                Part::Var(Var::Body) => values.body,
                Part::Var(Var::BodySha256) => values.body_sha256,
                Part::Var(Var::Capture(name)) => values
                    .captures
                    .and_then(|c| c.get(name))
                    .map_or("", String::as_str),
                Part::Var(Var::Header(name)) => values
                    .headers
                    .and_then(|h| h.get(name.as_str()))
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or(""),
            };
            match escape {
                Escape::Raw => out.push_str(value),
                Escape::Url => out.extend(value.bytes().map(|b| match b {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                        char::from(b).to_string()
                    }
                    _ => format!("%{b:02X}"),
                })),
                Escape::Json if matches!(part, Part::Var(Var::Amount)) => out.push_str(value),
                Escape::Json => {
                    // serde_json quotes a string; the template supplies the quotes itself.
                    let quoted = serde_json::Value::from(value).to_string();
                    out.push_str(&quoted[1..quoted.len() - 1]);
                }
            }
        }
        out
    }

    /// The placeholders the template uses.
    pub fn vars(&self) -> impl Iterator<Item = &Var> {
        self.0.iter().filter_map(|part| match part {
            Part::Var(var) => Some(var),
            Part::Text(_) => None,
        })
    }

    /// The names of the deduct's captures the template uses.
    pub fn captures(&self) -> impl Iterator<Item = &str> {
        self.vars().filter_map(|var| match var {
            Var::Capture(name) => Some(name.as_str()),
            _ => None,
        })
    }

    /// Whether the template uses `var`.
    pub fn uses(&self, var: &Var) -> bool {
        self.vars().any(|v| v == var)
    }

    /// Whether a JSON body template gives JSON once filled in (with awkward sample values).
    pub fn check_json(&self) -> Result<(), String> {
        let sample = Values {
            order_id: "o\"1\\",
            user_id: "u-1",
            channel_id: "c",
            points: 1,
            key: "k:1",
            amount: "0.01",
            timestamp: "2024-01-01 00:00:00",
            nonce: "n\"",
            ..Values::default()
        };
        serde_json::from_str::<serde_json::Value>(&self.render(&sample, Escape::Json))
            .map(drop)
            .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values() -> Values<'static> {
        Values {
            order_id: "o/1 \"x\"",
            user_id: "alice",
            channel_id: "delta",
            points: 25,
            key: "o/1:alice",
            ..Values::default()
        }
    }

    #[test]
    fn placeholders_are_escaped_for_where_they_go_and_other_braces_are_text() {
        let body =
            Template::parse(r#"{"ref": "{key}", "points": {points}, "o": "{order_id}"}"#).unwrap();
        let json: serde_json::Value =
            serde_json::from_str(&body.render(&values(), Escape::Json)).unwrap();
        assert_eq!(json["o"], "o/1 \"x\"");
        assert_eq!(json["points"], 25);
        body.check_json().unwrap();
        let url = Template::parse("/members/{user_id}/deductions/{key}").unwrap();
        assert_eq!(
            url.render(&values(), Escape::Url),
            "/members/alice/deductions/o%2F1%3Aalice"
        );
    }

    #[test]
    fn an_unknown_placeholder_or_a_body_that_is_not_json_is_refused() {
        assert!(
            Template::parse("/members/{user}")
                .unwrap_err()
                .contains("{user}")
        );
        let broken = Template::parse(r#"{"points": {points}"#).unwrap();
        assert!(broken.check_json().is_err());
    }
}
