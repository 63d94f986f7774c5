//! Operators with names and roles (DESIGN §11): who may use the admin API and the console,
//! read from a file that holds only a hash of each token.
//!
//! ```toml
//! [[operators]]
//! name = "li.wei"
//! role = "operator"          # or "viewer": reads only
//! token_sha256 = "9f86d08…"  # `jifen operators add` makes a token and writes this line
//! ```
//!
//! Tokens are random (128 bits or more, as `jifen operators add` makes them), so one SHA-256
//! is enough to keep them from being read off the file; a slow password hash would only slow
//! every call. The single `JIFEN_ADMIN_TOKEN` of earlier versions is one operator named
//! `admin`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// What an operator may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads orders, dead letters, channels, the audit.
    Viewer,
    /// Also acts: redrive, discard, compensate, retry, record outcomes.
    Operator,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Viewer => "viewer",
            Self::Operator => "operator",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "viewer" => Some(Self::Viewer),
            "operator" => Some(Self::Operator),
            _ => None,
        }
    }

    pub fn may_act(self) -> bool {
        self == Self::Operator
    }
}

/// Someone who presented a known token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operator {
    pub name: String,
    pub role: Role,
}

/// The name the single legacy token (`JIFEN_ADMIN_TOKEN`) stands for.
pub const LEGACY_OPERATOR: &str = "admin";

#[derive(Debug, thiserror::Error)]
pub enum OperatorsError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    operators: Vec<Entry>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    name: String,
    role: Role,
    token_sha256: String,
}

/// The known operators, by the hash of their token.
#[derive(Clone, Default)]
pub struct Operators {
    by_hash: Arc<HashMap<String, Operator>>,
}

impl std::fmt::Debug for Operators {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Operators")
            .field("count", &self.by_hash.len())
            .finish()
    }
}

impl Operators {
    /// The operators of `file` (if any) and, with `legacy_token`, one named `admin`.
    pub fn load(file: Option<&Path>, legacy_token: Option<&str>) -> Result<Self, OperatorsError> {
        let mut by_hash = HashMap::new();
        if let Some(path) = file {
            let invalid = |reason: String| OperatorsError::Invalid {
                path: path.to_owned(),
                reason,
            };
            let text = std::fs::read_to_string(path).map_err(|source| OperatorsError::Read {
                path: path.to_owned(),
                source,
            })?;
            let parsed: File = toml::from_str(&text).map_err(|e| invalid(e.to_string()))?;
            for (i, entry) in parsed.operators.into_iter().enumerate() {
                let name = entry.name.trim();
                if !valid_name(name) {
                    return Err(invalid(format!(
                        "operators[{i}].name must be 1-64 letters, digits or . _ - @"
                    )));
                }
                let hash = entry.token_sha256.trim().to_ascii_lowercase();
                if hash.len() != 64 || !hash.chars().all(|c| c.is_ascii_hexdigit()) {
                    return Err(invalid(format!(
                        "operators[{i}].token_sha256 must be 64 hex digits (the SHA-256 of the token)"
                    )));
                }
                let operator = Operator {
                    name: name.to_owned(),
                    role: entry.role,
                };
                if by_hash.insert(hash, operator).is_some() {
                    return Err(invalid(format!(
                        "operators[{i}] has the token of an earlier operator"
                    )));
                }
            }
        }
        if let Some(token) = legacy_token.filter(|t| !t.is_empty()) {
            by_hash.insert(
                token_hash(token),
                Operator {
                    name: LEGACY_OPERATOR.to_owned(),
                    role: Role::Operator,
                },
            );
        }
        Ok(Self {
            by_hash: Arc::new(by_hash),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }

    /// The operator whose token this is.
    pub fn authenticate(&self, token: &str) -> Option<Operator> {
        if token.is_empty() {
            return None;
        }
        self.by_hash.get(&token_hash(token)).cloned()
    }
}

/// Whether `name` can name an operator: 1-64 letters, digits or `. _ - @`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-@".contains(c))
}

/// The SHA-256 of a token, in lowercase hex: what the operators file holds.
pub fn token_hash(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Failed tokens per client address: each failure makes the next answer wait longer, and past
/// [`Throttle::LIMIT`] failures the address is refused outright for a while (429 / Retry-After)
/// — guessing a token gets slow, then stops.
#[derive(Debug, Clone, Default)]
pub struct Throttle {
    failures: Arc<Mutex<HashMap<IpAddr, Failures>>>,
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
}

impl Throttle {
    /// Failures in a row before an address is refused.
    pub const LIMIT: u32 = 10;
    /// How long failures are remembered, and an address is refused for.
    pub const WINDOW: Duration = Duration::from_secs(15 * 60);

    /// `Err(retry_after)` while `client` is refused.
    pub fn admit(&self, client: Option<IpAddr>) -> Result<(), Duration> {
        let Some(client) = client else { return Ok(()) };
        let mut failures = self.lock();
        match failures.get(&client) {
            Some(f) if f.last.elapsed() >= Self::WINDOW => {
                failures.remove(&client);
                Ok(())
            }
            Some(f) if f.count >= Self::LIMIT => Err(Self::WINDOW
                .saturating_sub(f.last.elapsed())
                .max(Duration::from_secs(1))),
            _ => Ok(()),
        }
    }

    /// Notes a wrong token from `client`; returns how long to wait before answering: 250 ms
    /// doubling with each failure, at most 4 s.
    pub fn failed(&self, client: Option<IpAddr>) -> Duration {
        let count = match client {
            Some(client) => {
                let mut failures = self.lock();
                let entry = failures.entry(client).or_insert(Failures {
                    count: 0,
                    last: Instant::now(),
                });
                if entry.last.elapsed() >= Self::WINDOW {
                    entry.count = 0;
                }
                entry.count = entry.count.saturating_add(1);
                entry.last = Instant::now();
                let count = entry.count;
                // Forget the expired addresses rather than grow without bound under a spray.
                if failures.len() > 10_000 {
                    failures.retain(|_, f| f.last.elapsed() < Self::WINDOW);
                }
                count
            }
            None => 1,
        };
        jifen_mesh::retry::doubling(Duration::from_millis(250), count, Duration::from_secs(4))
    }

    /// A right token: the address starts afresh.
    pub fn succeeded(&self, client: Option<IpAddr>) {
        if let Some(client) = client {
            self.lock().remove(&client);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Failures>> {
        // A panic while holding it left counts, which stay valid.
        self.failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operators_come_from_the_file_and_the_legacy_token() {
        let dir = std::env::temp_dir().join(format!("jifen-operators-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("operators.toml");
        std::fs::write(
            &path,
            format!(
                "[[operators]]\nname = \"li\"\nrole = \"viewer\"\ntoken_sha256 = \"{}\"\n",
                token_hash("t-li")
            ),
        )
        .unwrap();
        let operators = Operators::load(Some(&path), Some("legacy")).unwrap();
        assert_eq!(operators.authenticate("t-li").unwrap().role, Role::Viewer);
        let admin = operators.authenticate("legacy").unwrap();
        assert_eq!((admin.name.as_str(), admin.role), ("admin", Role::Operator));
        assert!(operators.authenticate("t-l").is_none());
        assert!(operators.authenticate("").is_none());
        std::fs::write(
            &path,
            "[[operators]]\nname = \"li\"\nrole = \"root\"\ntoken_sha256 = \"00\"\n",
        )
        .unwrap();
        assert!(matches!(
            Operators::load(Some(&path), None),
            Err(OperatorsError::Invalid { .. })
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn failures_slow_down_then_refuse_an_address() {
        let throttle = Throttle::default();
        let client = Some(IpAddr::from([10, 0, 0, 1]));
        assert_eq!(throttle.failed(client), Duration::from_millis(250));
        assert_eq!(throttle.failed(client), Duration::from_millis(500));
        for _ in 2..Throttle::LIMIT {
            throttle.failed(client);
        }
        assert!(throttle.admit(client).is_err());
        assert!(throttle.admit(Some(IpAddr::from([10, 0, 0, 2]))).is_ok());
        throttle.succeeded(client);
        assert!(throttle.admit(client).is_ok());
    }
}
