//! `[signing]` and `[verify]`: how each request is signed and each answer checked (DESIGN §9).

use serde::Deserialize;

use super::secret::RawSecretRef;
use crate::crypto::{Algorithm, Key, Output};
use crate::template::{Template, Var};

/// What is signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Canonical {
    /// `k=v` pairs of the request's parameters sorted by name, joined by `&`, without the
    /// signature's own parameter, the `exclude`d ones and empty values.
    SortedParams,
    /// The `lines` filled in, joined by `separator`.
    Lines,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSigning {
    algorithm: Algorithm,
    key: RawSecretRef,
    canonical: Canonical,
    #[serde(default)]
    exclude: Vec<String>,
    #[serde(default)]
    lines: Vec<String>,
    separator: Option<String>,
    #[serde(default)]
    trailing_separator: bool,
    /// How the string is wrapped before hashing: `{string}` and `{secret}` (plain hashes).
    message: Option<String>,
    #[serde(default)]
    output: Output,
    /// The parameter that carries the signature (sorted parameters only).
    param: Option<String>,
}

/// A checked `[signing]`.
#[derive(Debug)]
pub struct Signing {
    pub algorithm: Algorithm,
    pub key: Key,
    pub canonical: Canonical,
    pub exclude: Vec<String>,
    pub lines: Vec<Template>,
    pub separator: String,
    pub trailing_separator: bool,
    /// Text before and after the canonical string (the secret already in it).
    pub wrap: (Vec<u8>, Vec<u8>),
    pub output: Output,
    pub param: Option<String>,
}

impl Signing {
    /// The bytes that are signed for a canonical string.
    pub fn message(&self, canonical: &str) -> Vec<u8> {
        let mut message = self.wrap.0.clone();
        message.extend_from_slice(canonical.as_bytes());
        message.extend_from_slice(&self.wrap.1);
        message
    }
}

type Invalid = (String, String);

fn load_key(
    algorithm: Algorithm,
    key: &RawSecretRef,
    at: &str,
    private: bool,
    base: &std::path::Path,
) -> Result<Key, Invalid> {
    let bytes = key
        .load(algorithm != Algorithm::RsaSha256, base)
        .map_err(|m| (format!("{at}.key"), m))?;
    match (algorithm, private) {
        (Algorithm::RsaSha256, true) => Key::rsa_private(&bytes),
        (Algorithm::RsaSha256, false) => Key::rsa_public(&bytes),
        _ if bytes.is_empty() => Err("is empty".into()),
        _ => Ok(Key::Secret(bytes)),
    }
    .map_err(|m| (format!("{at}.key"), m))
}

/// The message wrap: `{string}` once, `{secret}` where the secret goes, for plain hashes.
fn wrap(
    algorithm: Algorithm,
    raw: Option<&str>,
    key: &Key,
    at: &str,
) -> Result<(Vec<u8>, Vec<u8>), Invalid> {
    let key_at = format!("{at}.message");
    let plain_hash = matches!(
        algorithm,
        Algorithm::Md5 | Algorithm::Sha1 | Algorithm::Sha256
    );
    let Some(raw) = raw else {
        if plain_hash {
            return Err((
                key_at,
                "is missing: a plain hash signs nothing secret unless the secret is joined to \
                 the string, e.g. message = \"{string}&key={secret}\""
                    .into(),
            ));
        }
        return Ok((Vec::new(), Vec::new()));
    };
    let (before, after) = raw
        .split_once("{string}")
        .ok_or_else(|| (key_at.clone(), "has no {string}".to_owned()))?;
    if after.contains("{string}") {
        return Err((key_at, "has {string} twice".into()));
    }
    let secret: &[u8] = match key {
        Key::Secret(secret) => secret,
        _ => &[],
    };
    let fill = |part: &str| -> Vec<u8> {
        let mut out = Vec::new();
        let mut pieces = part.split("{secret}").peekable();
        while let Some(piece) = pieces.next() {
            out.extend_from_slice(piece.as_bytes());
            if pieces.peek().is_some() {
                out.extend_from_slice(secret);
            }
        }
        out
    };
    if plain_hash && !raw.contains("{secret}") {
        return Err((
            key_at,
            "has no {secret}: a plain hash of public text signs nothing".into(),
        ));
    }
    Ok((fill(before), fill(after)))
}

fn lines(raw: &[String], at: &str, allow_headers: bool) -> Result<Vec<Template>, Invalid> {
    raw.iter()
        .enumerate()
        .map(|(i, line)| {
            let key = format!("{at}.lines[{i}]");
            let template = Template::parse(line).map_err(|m| (key.clone(), m))?;
            for var in template.vars() {
                match var {
                    Var::Header(_) if !allow_headers => {
                        return Err((key, "{header.…} is for [verify] lines".into()));
                    }
                    Var::Signature | Var::Token => {
                        return Err((key, format!("{var:?} cannot be signed")));
                    }
                    _ => {}
                }
            }
            Ok(template)
        })
        .collect()
}

impl RawSigning {
    pub(super) fn build(self, base: &std::path::Path) -> Result<Signing, Invalid> {
        let at = "signing";
        let key = load_key(self.algorithm, &self.key, at, true, base)?;
        let wrap = wrap(self.algorithm, self.message.as_deref(), &key, at)?;
        let lines = lines(&self.lines, at, false)?;
        match self.canonical {
            Canonical::Lines if lines.is_empty() => {
                return Err((
                    format!("{at}.lines"),
                    "is missing: what each line holds".into(),
                ));
            }
            Canonical::Lines if self.param.is_some() => {
                return Err((
                    format!("{at}.param"),
                    "a signature of the request's lines goes into a header ({signature} in a \
                     header template), not a parameter"
                        .into(),
                ));
            }
            Canonical::SortedParams if !lines.is_empty() => {
                return Err((format!("{at}.lines"), "is for canonical = \"lines\"".into()));
            }
            _ => {}
        }
        Ok(Signing {
            algorithm: self.algorithm,
            key,
            canonical: self.canonical,
            exclude: self.exclude,
            lines,
            separator: self.separator.unwrap_or_else(|| "\n".into()),
            trailing_separator: self.trailing_separator,
            wrap,
            output: self.output,
            param: self.param,
        })
    }
}

/// What of an answer is signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnswerCanonical {
    /// The body as received.
    Body,
    /// The answer's fields (at the envelope) sorted, as `sorted_params` signs requests.
    SortedFields,
    /// The `lines` filled in (`{body}`, `{header.…}`).
    Lines,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawVerify {
    algorithm: Algorithm,
    key: RawSecretRef,
    canonical: AnswerCanonical,
    /// The header carrying the signature, or the answer's field (JSON pointer).
    header: Option<String>,
    field: Option<String>,
    #[serde(default)]
    exclude: Vec<String>,
    #[serde(default)]
    lines: Vec<String>,
    separator: Option<String>,
    #[serde(default)]
    trailing_separator: bool,
    message: Option<String>,
    #[serde(default)]
    output: Output,
}

/// Where an answer's signature is.
#[derive(Debug, Clone)]
pub enum SignatureAt {
    Header(reqwest::header::HeaderName),
    Field(String),
}

/// A checked `[verify]`.
#[derive(Debug)]
pub struct Verify {
    pub algorithm: Algorithm,
    pub key: Key,
    pub canonical: AnswerCanonical,
    pub at: SignatureAt,
    pub exclude: Vec<String>,
    pub lines: Vec<Template>,
    pub separator: String,
    pub trailing_separator: bool,
    pub wrap: (Vec<u8>, Vec<u8>),
    pub output: Output,
}

impl Verify {
    pub fn message(&self, canonical: &[u8]) -> Vec<u8> {
        let mut message = self.wrap.0.clone();
        message.extend_from_slice(canonical);
        message.extend_from_slice(&self.wrap.1);
        message
    }
}

impl RawVerify {
    pub(super) fn build(self, base: &std::path::Path) -> Result<Verify, Invalid> {
        let at = "verify";
        let key = load_key(self.algorithm, &self.key, at, false, base)?;
        let wrap = wrap(self.algorithm, self.message.as_deref(), &key, at)?;
        let lines = lines(&self.lines, at, true)?;
        let signature_at = match (self.header, self.field) {
            (Some(header), None) => SignatureAt::Header(
                reqwest::header::HeaderName::from_bytes(header.as_bytes())
                    .map_err(|_| (format!("{at}.header"), "is not a header name".to_owned()))?,
            ),
            (None, Some(field)) => {
                SignatureAt::Field(super::pointer(&format!("{at}.field"), &field)?)
            }
            _ => {
                return Err((
                    at.into(),
                    "give exactly one of header (the header carrying the answer's signature) \
                     and field (a JSON pointer to it)"
                        .into(),
                ));
            }
        };
        if (self.canonical == AnswerCanonical::Lines) == lines.is_empty() {
            return Err((
                format!("{at}.lines"),
                "lines go with canonical = \"lines\", and only with it".into(),
            ));
        }
        if self.canonical == AnswerCanonical::Body && matches!(signature_at, SignatureAt::Field(_))
        {
            return Err((
                format!("{at}.canonical"),
                "a signature inside the body cannot sign the whole body: use sorted_fields".into(),
            ));
        }
        Ok(Verify {
            algorithm: self.algorithm,
            key,
            canonical: self.canonical,
            at: signature_at,
            exclude: self.exclude,
            lines,
            separator: self.separator.unwrap_or_else(|| "\n".into()),
            trailing_separator: self.trailing_separator,
            wrap,
            output: self.output,
        })
    }
}
