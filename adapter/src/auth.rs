//! `[auth]`: a partner's access token (DESIGN §9) — OAuth2 client credentials or a login call —
//! fetched once per connector process, shared by its calls, refreshed before it expires and
//! once more when a call is refused with 401/403. A token endpoint that fails is transient:
//! calls wait (`UNAVAILABLE`, never sent), orders are never dead-lettered as invalid for it.

use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::Value;
use tonic::Status;

/// How the token is obtained.
#[derive(Debug, Clone)]
pub enum Grant {
    /// RFC 6749 §4.4: `grant_type=client_credentials`, the client's secret by HTTP Basic or in
    /// the form.
    ClientCredentials {
        client_id: String,
        client_secret: String,
        scope: Option<String>,
        basic: bool,
    },
    /// A login call whose JSON answer holds the token (`token`) and maybe its lifetime in
    /// seconds (`expires_in`).
    Login {
        body: String,
        password: String,
        token: String,
        expires_in: Option<String>,
    },
}

/// A checked `[auth]`.
#[derive(Clone)]
pub struct AuthConfig {
    pub url: String,
    pub grant: Grant,
    /// Used when the answer does not say.
    pub lifetime: Duration,
}

impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthConfig")
            .field("url", &self.url)
            .field("lifetime", &self.lifetime)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAuth {
    kind: Kind,
    url: String,
    client_id: Option<String>,
    client_secret: Option<crate::config::SecretRef>,
    scope: Option<String>,
    #[serde(default = "default_client_auth")]
    client_auth: ClientAuth,
    body: Option<String>,
    password: Option<crate::config::SecretRef>,
    token: Option<String>,
    expires_in: Option<String>,
    #[serde(default = "default_lifetime")]
    lifetime: String,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Kind {
    Oauth2ClientCredentials,
    Login,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum ClientAuth {
    Basic,
    Post,
}

fn default_client_auth() -> ClientAuth {
    ClientAuth::Basic
}

fn default_lifetime() -> String {
    "5m".to_owned()
}

type Invalid = (String, String);

impl RawAuth {
    pub(crate) fn build(self, base: &std::path::Path) -> Result<AuthConfig, Invalid> {
        let at = |key: &str| format!("auth.{key}");
        let missing = |key: &str, what: &str| (at(key), format!("is missing: {what}"));
        let secret = |key: &str, raw: Option<crate::config::SecretRef>| {
            let raw = raw
                .ok_or_else(|| missing(key, "where the secret is, { file = … } or { env = … }"))?;
            let bytes = raw.load(true, base).map_err(|m| (at(key), m))?;
            String::from_utf8(bytes).map_err(|_| (at(key), "is not UTF-8 text".to_owned()))
        };
        let lifetime =
            jifen_mesh::config::parse_duration(&self.lifetime).map_err(|m| (at("lifetime"), m))?;
        let grant = match self.kind {
            Kind::Oauth2ClientCredentials => Grant::ClientCredentials {
                client_id: self
                    .client_id
                    .ok_or_else(|| missing("client_id", "the client's id"))?,
                client_secret: secret("client_secret", self.client_secret)?,
                scope: self.scope,
                basic: self.client_auth == ClientAuth::Basic,
            },
            Kind::Login => {
                let body = self.body.ok_or_else(|| {
                    missing("body", "the login call's JSON body, with {password}")
                })?;
                if !body.contains("{password}") {
                    return Err((at("body"), "has no {password}".into()));
                }
                let token = self.token.ok_or_else(|| {
                    missing("token", "the JSON pointer to the token in the answer")
                })?;
                let pointer = |key: &str, raw: String| crate::config::pointer(&at(key), &raw);
                Grant::Login {
                    body,
                    password: secret("password", self.password)?,
                    token: pointer("token", token)?,
                    expires_in: self
                        .expires_in
                        .map(|p| pointer("expires_in", p))
                        .transpose()?,
                }
            }
        };
        Ok(AuthConfig {
            url: self.url,
            grant,
            lifetime,
        })
    }
}

#[derive(Debug, Clone)]
struct Token {
    value: String,
    refresh_at: Instant,
}

/// The connector's token for one partner.
#[derive(Debug)]
pub struct Auth {
    config: AuthConfig,
    url: String,
    channel_id: String,
    token: tokio::sync::Mutex<Option<Token>>,
}

impl Auth {
    pub fn new(config: AuthConfig, base_url: &str, channel_id: &str) -> Self {
        let url = if config.url.starts_with("http://") || config.url.starts_with("https://") {
            config.url.clone()
        } else {
            format!(
                "{}/{}",
                base_url.trim_end_matches('/'),
                config.url.trim_start_matches('/')
            )
        };
        Self {
            config,
            url,
            channel_id: channel_id.to_owned(),
            token: tokio::sync::Mutex::new(None),
        }
    }

    /// The current token, fetched when there is none or it is due for refresh. Callers wait
    /// for one fetch rather than each making their own.
    pub async fn token(&self, client: &reqwest::Client) -> Result<String, Status> {
        let mut held = self.token.lock().await;
        if let Some(token) = held.as_ref()
            && Instant::now() < token.refresh_at
        {
            return Ok(token.value.clone());
        }
        match self.fetch(client).await {
            Ok(token) => {
                let value = token.value.clone();
                *held = Some(token);
                Ok(value)
            }
            Err(why) => {
                jifen_mesh::metrics::ADAPTER_TOKEN_FAILURES
                    .with_label_values(&[&self.channel_id])
                    .inc();
                tracing::warn!(channel = %self.channel_id, %why, "no access token");
                Err(Status::unavailable(format!(
                    "no access token from {}: {why}; the call was not sent",
                    self.url
                )))
            }
        }
    }

    /// Forgets `used` after a call was refused with it (another caller may have refreshed it
    /// already).
    pub async fn refused(&self, used: &str) {
        let mut held = self.token.lock().await;
        if held.as_ref().is_some_and(|t| t.value == used) {
            *held = None;
        }
    }

    async fn fetch(&self, client: &reqwest::Client) -> Result<Token, String> {
        let request = match &self.config.grant {
            Grant::ClientCredentials {
                client_id,
                client_secret,
                scope,
                basic,
            } => {
                let mut form = vec![("grant_type", "client_credentials")];
                if let Some(scope) = scope {
                    form.push(("scope", scope));
                }
                let mut request = client.post(&self.url);
                if *basic {
                    request = request.basic_auth(client_id, Some(client_secret));
                } else {
                    form.push(("client_id", client_id));
                    form.push(("client_secret", client_secret));
                }
                let body = form_urlencoded::Serializer::new(String::new())
                    .extend_pairs(form)
                    .finish();
                request
                    .header(
                        reqwest::header::CONTENT_TYPE,
                        "application/x-www-form-urlencoded",
                    )
                    .body(body)
            }
            Grant::Login { body, password, .. } => {
                let quoted = Value::from(password.as_str()).to_string();
                let body = body.replace("{password}", &quoted[1..quoted.len() - 1]);
                client
                    .post(&self.url)
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body)
            }
        };
        let response = request.send().await.map_err(|e| e.to_string())?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|e| e.to_string())?;
        let answer: Value = serde_json::from_slice(&bytes)
            .map_err(|_| format!("answered {status} with a body that is not JSON"))?;
        if !status.is_success() {
            return Err(format!("answered {status}"));
        }
        let (token, expires_in) = match &self.config.grant {
            Grant::ClientCredentials { .. } => (
                answer.get("access_token").and_then(Value::as_str),
                answer.get("expires_in").and_then(seconds),
            ),
            Grant::Login {
                token, expires_in, ..
            } => (
                answer.pointer(token).and_then(Value::as_str),
                expires_in
                    .as_ref()
                    .and_then(|p| answer.pointer(p))
                    .and_then(seconds),
            ),
        };
        let value = token
            .filter(|t| !t.is_empty())
            .ok_or_else(|| format!("answered {status} without a token"))?
            .to_owned();
        let lifetime = expires_in.map_or(self.config.lifetime, Duration::from_secs);
        // Refreshed at four fifths of its life: calls in flight never carry an expired one.
        let refresh_at = Instant::now() + lifetime.mul_f64(0.8);
        Ok(Token { value, refresh_at })
    }
}

fn seconds(value: &Value) -> Option<u64> {
    match value {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}
