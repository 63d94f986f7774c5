//! The server side of [`identity`](super::identity): an NKEY per identity and the
//! `authorization` block that gives each its permissions, written into one folder by
//! `jifen nats-config` and `jifen dev`.
//!
//! Seeds already in the folder are kept, so running it again with one more channel adds that
//! channel's identity and leaves every other process's credentials valid: reload the server
//! (`nats-server --signal reload`, or SIGHUP) and start the new connector.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::identity::Identity;
use crate::domain::ChannelId;

/// The file the server includes.
pub const AUTH_CONF: &str = "auth.conf";

#[derive(Debug, thiserror::Error)]
pub enum NatsAuthError {
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} does not hold a user NKEY seed (SU…): {reason}")]
    BadSeed { path: PathBuf, reason: String },
    #[error("cannot make an NKEY: {0}")]
    Generate(String),
}

/// The identities of one deployment and where their seeds are.
#[derive(Debug, Clone)]
pub struct NatsAuth {
    dir: PathBuf,
    /// Each identity with its public key (`U…`).
    users: Vec<(Identity, String)>,
}

impl NatsAuth {
    /// Makes sure `dir` holds a seed for the mall, the portal connector, each channel's
    /// connector and `ops` (new ones generated, existing ones kept), and writes
    /// [`AUTH_CONF`] for exactly these.
    pub fn write(dir: &Path, channels: &[ChannelId]) -> Result<Self, NatsAuthError> {
        create_private_dir(dir)?;
        let mut identities = vec![Identity::Mall, Identity::Portal, Identity::Ops];
        identities.extend(channels.iter().cloned().map(Identity::Channel));
        identities.sort();
        identities.dedup();
        let mut users = Vec::with_capacity(identities.len());
        for identity in identities {
            let public_key = ensure_seed(&seed_path(dir, &identity))?;
            users.push((identity, public_key));
        }
        let auth = Self {
            dir: dir.to_owned(),
            users,
        };
        let path = auth.auth_conf();
        write_private(&path, auth.render().as_bytes())?;
        Ok(auth)
    }

    /// The file holding `identity`'s seed (give it to that process only).
    pub fn seed_file(&self, identity: &Identity) -> PathBuf {
        seed_path(&self.dir, identity)
    }

    /// The `authorization` block for the server's configuration.
    pub fn auth_conf(&self) -> PathBuf {
        self.dir.join(AUTH_CONF)
    }

    pub fn identities(&self) -> impl Iterator<Item = &Identity> {
        self.users.iter().map(|(identity, _)| identity)
    }

    /// The `authorization { users = [...] }` block. No user without credentials exists, so
    /// an anonymous client is refused.
    pub fn render(&self) -> String {
        let mut out = String::from(
            "# Written by `jifen nats-config`: one NKEY user per Jifen process, with what it may\n\
             # publish and subscribe to (DESIGN §11). Include it in the server's configuration.\n\
             authorization {\n  users = [\n",
        );
        for (identity, public_key) in &self.users {
            let permissions = identity.permissions();
            let list = |subjects: &[String]| {
                subjects
                    .iter()
                    .map(|s| format!("\"{s}\""))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            // Writing to a String cannot fail.
            let _ = write!(
                out,
                "    # {name}\n    {{\n      nkey: \"{public_key}\"\n      permissions: {{\n        \
                 publish: {{ allow: [{publish}] }}\n        subscribe: {{ allow: [{subscribe}] }}\n      \
                 }}\n    }}\n",
                name = identity.name(),
                publish = list(&permissions.publish),
                subscribe = list(&permissions.subscribe),
            );
        }
        out.push_str("  ]\n}\n");
        out
    }
}

fn seed_path(dir: &Path, identity: &Identity) -> PathBuf {
    dir.join(format!("{}.nk", identity.name()))
}

/// The public key of the seed at `path`, generating the seed when the file is missing.
fn ensure_seed(path: &Path) -> Result<String, NatsAuthError> {
    match std::fs::read_to_string(path) {
        Ok(seed) => nkeys::KeyPair::from_seed(seed.trim())
            .map(|pair| pair.public_key())
            .map_err(|e| NatsAuthError::BadSeed {
                path: path.to_owned(),
                reason: e.to_string(),
            }),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let pair = nkeys::KeyPair::new_user();
            let seed = pair
                .seed()
                .map_err(|e| NatsAuthError::Generate(e.to_string()))?;
            write_private(path, format!("{seed}\n").as_bytes())?;
            Ok(pair.public_key())
        }
        Err(source) => Err(NatsAuthError::Read {
            path: path.to_owned(),
            source,
        }),
    }
}

fn create_private_dir(dir: &Path) -> Result<(), NatsAuthError> {
    let error = |source| NatsAuthError::Write {
        path: dir.to_owned(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(error)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(error)?;
    }
    Ok(())
}

/// Writes a file only its owner can read (seeds are secrets).
fn write_private(path: &Path, contents: &[u8]) -> Result<(), NatsAuthError> {
    crate::private_file::write(path, contents).map_err(|source| NatsAuthError::Write {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_are_kept_and_a_new_channel_adds_one_user() {
        let dir = std::env::temp_dir().join(format!("jifen-nats-auth-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let alpha = ChannelId::parse("c", "alpha").unwrap();
        let beta = ChannelId::parse("c", "beta").unwrap();
        let first = NatsAuth::write(&dir, std::slice::from_ref(&alpha)).unwrap();
        let mall_seed = std::fs::read_to_string(first.seed_file(&Identity::Mall)).unwrap();
        let second = NatsAuth::write(&dir, &[alpha, beta.clone()]).unwrap();
        assert_eq!(
            std::fs::read_to_string(second.seed_file(&Identity::Mall)).unwrap(),
            mall_seed
        );
        let conf = std::fs::read_to_string(second.auth_conf()).unwrap();
        assert_eq!(conf.matches("nkey:").count(), 5);
        assert!(conf.contains("\"jifen.evt.channel.beta.>\""));
        assert!(second.seed_file(&Identity::Channel(beta)).exists());
        std::fs::write(dir.join("portal.nk"), "not a seed").unwrap();
        assert!(matches!(
            NatsAuth::write(&dir, &[]),
            Err(NatsAuthError::BadSeed { .. })
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
