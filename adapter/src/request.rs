//! The request pipeline (DESIGN §9): parameters → encoding → signing → auth → headers. Each
//! stage is one function over a [`Request`] being built, so a partner's habit is one stage's
//! setting, not a branch in the call. Every attempt is built afresh: a new timestamp and nonce,
//! a new signature, the same idempotency key.

use std::collections::BTreeMap;

use reqwest::header::HeaderName;

use crate::config::{AdapterConfig, Call, Canonical, Encoding, Param, Payload, Signing};
use crate::crypto;
use crate::template::{Escape, Template, Values, Var};

/// A request ready to send, and what may be shown of it.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: reqwest::Method,
    pub url: String,
    pub headers: Vec<(HeaderName, String, bool)>,
    pub body: Option<(Vec<u8>, &'static str)>,
}

impl Request {
    /// The request as a person may read it: header values holding a token or a signature,
    /// and signature parameters, replaced by `<redacted>`.
    pub fn redacted(&self, signing: Option<&Signing>) -> String {
        let mut out = format!("{} {}\n", self.method, redact_param(&self.url, signing));
        for (name, value, sensitive) in &self.headers {
            let value = if *sensitive { "<redacted>" } else { value };
            out.push_str(&format!("{name}: {value}\n"));
        }
        if let Some((body, content_type)) = &self.body {
            out.push_str(&format!("content-type: {content_type}\n\n"));
            out.push_str(&redact_param(&String::from_utf8_lossy(body), signing));
        }
        out
    }
}

fn redact_param(text: &str, signing: Option<&Signing>) -> String {
    let Some(param) = signing.and_then(|s| s.param.as_deref()) else {
        return text.to_owned();
    };
    let mut out = text.to_owned();
    // The parameter itself, not one whose name ends like it (`design=`).
    let opens = [
        (format!("?{param}="), "&"),
        (format!("&{param}="), "&"),
        (format!("\n{param}="), "&"),
        (format!("\"{param}\":\""), "\""),
        (format!("<{param}>"), "<"),
    ];
    for (open, close) in opens {
        let mut from = 0;
        while let Some(found) = out[from..].find(&open) {
            let start = from + found + open.len();
            let end = out[start..].find(close).map_or(out.len(), |i| start + i);
            out.replace_range(start..end, "<redacted>");
            from = start + "<redacted>".len();
        }
    }
    out
}

/// Builds the request of `call` with `values` (whose timestamp, nonce and token are set).
pub fn build(
    config: &AdapterConfig,
    call: &Call,
    values: &Values<'_>,
) -> Result<Request, crypto::SignError> {
    let path = call.url.render(values, Escape::Url);
    let mut url = if path.starts_with("http://") || path.starts_with("https://") {
        path
    } else {
        format!(
            "{}/{}",
            config.base_url.as_str().trim_end_matches('/'),
            path.trim_start_matches('/')
        )
    };
    // Stage 1: parameters.
    let mut params = match &call.payload {
        Payload::Params { params, .. } => parameters(params, values),
        _ => Vec::new(),
    };
    // Stage 2: a signature over the parameters joins them.
    let mut signature = String::new();
    if let Some(signing) = &config.signing
        && signing.canonical == Canonical::SortedParams
    {
        signature = sign(
            signing,
            &sorted(&params, signing.param.as_deref(), &signing.exclude),
        )?;
        if let Some(param) = &signing.param {
            params.push((param.clone(), signature.clone()));
        }
    }
    // Stage 3: encoding.
    let body = match &call.payload {
        Payload::None => None,
        Payload::Body(body) => Some((
            body.render(values, Escape::Json).into_bytes(),
            "application/json",
        )),
        Payload::Params { encoding, .. } => match encoding {
            Encoding::Query => {
                let query = form(&params);
                if !query.is_empty() {
                    url.push(if url.contains('?') { '&' } else { '?' });
                    url.push_str(&query);
                }
                None
            }
            Encoding::Form => Some((
                form(&params).into_bytes(),
                "application/x-www-form-urlencoded",
            )),
            Encoding::Xml => Some((
                crate::xml::encode(&config.xml_root, &params).into_bytes(),
                "application/xml",
            )),
            Encoding::Json => {
                let object: serde_json::Map<String, serde_json::Value> = params
                    .iter()
                    .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                    .collect();
                Some((
                    serde_json::Value::Object(object).to_string().into_bytes(),
                    "application/json",
                ))
            }
        },
    };
    // Stage 4: a signature over the request's lines.
    if let Some(signing) = &config.signing
        && signing.canonical == Canonical::Lines
    {
        let body_text = body
            .as_ref()
            .map(|(b, _)| String::from_utf8_lossy(b).into_owned())
            .unwrap_or_default();
        let body_sha256 = crypto::sha256_hex(body_text.as_bytes());
        let path = path_and_query(&url);
        let lines = Values {
            method: call.method.as_str(),
            path: &path,
            body: &body_text,
            body_sha256: &body_sha256,
            ..values.clone()
        };
        let canonical = joined(
            &signing.lines,
            &lines,
            &signing.separator,
            signing.trailing_separator,
        );
        signature = sign(signing, &canonical)?;
    }
    // Stage 5: headers (auth and signature placed by templates).
    let signed = Values {
        signature: &signature,
        ..values.clone()
    };
    let headers = config
        .header_templates
        .iter()
        .chain(&call.headers)
        .map(|(name, template)| {
            let sensitive = template.uses(&Var::Token) || template.uses(&Var::Signature);
            (
                name.clone(),
                template.render(&signed, Escape::Raw),
                sensitive,
            )
        })
        .collect();
    Ok(Request {
        method: call.method.clone(),
        url,
        headers,
        body,
    })
}

fn parameters(params: &[Param], values: &Values<'_>) -> Vec<(String, String)> {
    params
        .iter()
        .map(|param| {
            let escape = if param.json {
                Escape::Json
            } else {
                Escape::Raw
            };
            (param.name.clone(), param.value.render(values, escape))
        })
        .collect()
}

/// `k=v&…` sorted by name, without the signature's parameter, excluded names and empty values.
pub fn sorted(params: &[(String, String)], signature: Option<&str>, exclude: &[String]) -> String {
    let mut kept: BTreeMap<&str, &str> = BTreeMap::new();
    for (name, value) in params {
        if value.is_empty() || Some(name.as_str()) == signature || exclude.contains(name) {
            continue;
        }
        kept.insert(name, value);
    }
    kept.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

pub fn joined(lines: &[Template], values: &Values<'_>, separator: &str, trailing: bool) -> String {
    let mut out = lines
        .iter()
        .map(|line| line.render(values, Escape::Raw))
        .collect::<Vec<_>>()
        .join(separator);
    if trailing {
        out.push_str(separator);
    }
    out
}

fn sign(signing: &Signing, canonical: &str) -> Result<String, crypto::SignError> {
    crypto::sign(
        signing.algorithm,
        &signing.key,
        &signing.message(canonical),
        signing.output,
    )
}

fn form(params: &[(String, String)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish()
}

/// The path and query of a URL, as signing lines name it.
fn path_and_query(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(parsed) => match parsed.query() {
            Some(query) => format!("{}?{query}", parsed.path()),
            None => parsed.path().to_owned(),
        },
        Err(_) => url.to_owned(),
    }
}

/// What makes one attempt of a call: the moment and the nonce, made fresh each time.
#[derive(Debug, Clone)]
pub struct Stamp {
    pub timestamp: String,
    pub nonce: String,
}

impl Stamp {
    pub fn now(config: &AdapterConfig) -> Self {
        Self {
            timestamp: config.timestamp.format(time::OffsetDateTime::now_utc()),
            nonce: crypto::nonce(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> AdapterConfig {
        let dir = std::env::temp_dir().join(format!("jifen-request-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("secret"), "s3cret\n").unwrap();
        let text = text.replace("SECRET_FILE", &dir.join("secret").display().to_string());
        AdapterConfig::parse(std::path::Path::new("test.toml"), &text).unwrap()
    }

    fn values<'a>(key: &'a str, amount: &'a str) -> Values<'a> {
        Values {
            order_id: "o-1",
            user_id: "u 1",
            channel_id: "gamma",
            points: 1250,
            key,
            amount,
            timestamp: "2024-01-01 08:00:00",
            nonce: "abc",
            ..Values::default()
        }
    }

    #[test]
    fn sorted_parameters_are_signed_with_the_secret_and_the_signature_joins_them() {
        let config = config(
            r#"
            channel_id = "gamma"
            base_url = "http://127.0.0.1:1"
            capabilities = { idempotent_deduct = true, refund = false, query = false, null_compensation = false, anti_hanging = false }
            [params]
            app_id = "A1"
            memo = ""
            [amount]
            points_per_unit = 100
            decimals = 2
            [signing]
            algorithm = "md5"
            key = { file = "SECRET_FILE" }
            canonical = "sorted_params"
            message = "{string}&key={secret}"
            output = "hex_upper"
            param = "sign"
            [deduct]
            url = "/gateway"
            params = { out_trade_no = "{key}", total = "{amount}", ts = "{timestamp}", user = "{user_id}" }
            "#,
        );
        let request = build(&config, &config.deduct, &values("k-1", "12.50")).unwrap();
        let (body, content_type) = request.body.clone().unwrap();
        assert_eq!(content_type, "application/x-www-form-urlencoded");
        let sent: BTreeMap<String, String> = form_urlencoded::parse(&body).into_owned().collect();
        assert_eq!(sent["total"], "12.50");
        assert_eq!(sent["user"], "u 1");
        // Empty values and the signature itself are left out; raw values, sorted names.
        let expected = crypto::sign(
            crypto::Algorithm::Md5,
            &crypto::Key::Secret(Vec::new()),
            b"app_id=A1&out_trade_no=k-1&total=12.50&ts=2024-01-01 08:00:00&user=u 1&key=s3cret",
            crypto::Output::HexUpper,
        )
        .unwrap();
        assert_eq!(sent["sign"], expected);
        assert!(
            !request
                .redacted(config.signing.as_deref())
                .contains(&expected),
            "the signature is redacted when shown"
        );
    }

    #[test]
    fn request_lines_are_signed_into_a_header_template() {
        let config = config(
            r#"
            channel_id = "delta"
            base_url = "http://127.0.0.1:1/api"
            capabilities = { idempotent_deduct = true, refund = false, query = false, null_compensation = false, anti_hanging = false }
            [header_templates]
            Authorization = 'HMAC ts="{timestamp}",nonce="{nonce}",sig="{signature}"'
            [signing]
            algorithm = "hmac-sha256"
            key = { file = "SECRET_FILE" }
            canonical = "lines"
            lines = ["{method}", "{path}", "{timestamp}", "{nonce}", "{body}"]
            trailing_separator = true
            output = "base64"
            [deduct]
            url = "/points/{user_id}/deduct"
            body = '{"ref": "{key}", "points": {points}}'
            "#,
        );
        let request = build(&config, &config.deduct, &values("k-1", "")).unwrap();
        let body = r#"{"ref": "k-1", "points": 1250}"#;
        let message = format!("POST\n/api/points/u%201/deduct\n2024-01-01 08:00:00\nabc\n{body}\n");
        let signature = crypto::sign(
            crypto::Algorithm::HmacSha256,
            &crypto::Key::Secret(b"s3cret".to_vec()),
            message.as_bytes(),
            crypto::Output::Base64,
        )
        .unwrap();
        let (name, value, sensitive) = &request.headers[0];
        assert_eq!(name.as_str(), "authorization");
        assert_eq!(
            value,
            &format!(r#"HMAC ts="2024-01-01 08:00:00",nonce="abc",sig="{signature}""#)
        );
        assert!(sensitive, "a header with a signature is never shown");
        // A fresh stamp signs afresh.
        let again = build(
            &config,
            &config.deduct,
            &Values {
                nonce: "def",
                ..values("k-1", "")
            },
        )
        .unwrap();
        assert_ne!(again.headers[0].1, request.headers[0].1);
    }
}
