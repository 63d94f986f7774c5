//! Secrets of the config: read from the environment or a file, never written in it (a config
//! is checked into repositories and shown in reviews).

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Where a secret is: `{ env = "NAME" }` or `{ file = "/path" }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RawSecretRef {
    Env {
        env: String,
    },
    File {
        file: PathBuf,
    },
    /// Parsed only to say that a key is never written in the config.
    Literal(#[allow(dead_code)] String),
}

impl RawSecretRef {
    /// The secret's bytes; a literal is refused. A relative file is found beside the config
    /// (`base`). A file's trailing newline is not part of a shared secret (editors add one),
    /// but is kept for PEM keys.
    pub(crate) fn load(&self, trim: bool, base: &Path) -> Result<Vec<u8>, String> {
        match self {
            Self::Env { env } => std::env::var(env)
                .map(String::into_bytes)
                .map_err(|_| format!("the environment has no {env}")),
            Self::File { file } => {
                let file = base.join(file);
                let mut bytes = std::fs::read(&file)
                    .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
                if trim {
                    while bytes.last().is_some_and(u8::is_ascii_whitespace) {
                        bytes.pop();
                    }
                }
                Ok(bytes)
            }
            Self::Literal(_) => Err(
                "a key is never written in the config: give { env = \"NAME\" } or \
                 { file = \"/path\" }"
                    .into(),
            ),
        }
    }
}
