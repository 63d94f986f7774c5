//! Opens a system's database — SQLite for the one-command local run and tests, PostgreSQL in
//! production — and runs that system's migrations before anything else touches it.
//!
//! Queries go through sqlx's `Any` driver with `$1`-style placeholders, which both backends
//! accept, so one SQL text serves both; where the dialects differ, [`Database::backend`] says
//! which one is underneath. Each system keeps one migration folder per backend, embedded with
//! `sqlx::migrate!`.

use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, Executor};

pub use sqlx::{Any, AnyPool as Pool, Transaction};

use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use sqlx::AnyConnection;
use tokio::sync::{Mutex, OwnedMutexGuard};

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("database url must start with sqlite: or postgres:, got {0:?}")]
    UnsupportedUrl(String),
    #[error("cannot open the database")]
    Connect(#[source] sqlx::Error),
    #[error("cannot migrate the database")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("cannot create database {name}")]
    Create {
        name: String,
        #[source]
        source: sqlx::Error,
    },
}

/// Connections per pool unless configured: several systems often share one PostgreSQL server.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 10;

/// Which SQL dialect a [`Database`] speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn of_url(url: &str) -> Option<Self> {
        if url.starts_with("sqlite:") {
            Some(Self::Sqlite)
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Some(Self::Postgres)
        } else {
            None
        }
    }
}

/// A system's migrations, one set per backend.
#[derive(Debug)]
pub struct Migrations {
    pub sqlite: &'static Migrator,
    pub postgres: &'static Migrator,
}

/// A connection pool and the dialect behind it.
#[derive(Debug, Clone)]
pub struct Database {
    pool: AnyPool,
    backend: Backend,
    /// SQLite takes one writer at a time and makes the others sleep and poll for the lock;
    /// queueing writers here instead keeps commits back to back.
    sqlite_writer: Arc<Mutex<()>>,
}

/// A transaction; on SQLite it also holds the process's write turn until it ends.
#[derive(Debug)]
pub struct Tx {
    tx: Transaction<'static, Any>,
    _turn: Option<OwnedMutexGuard<()>>,
}

impl Tx {
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        self.tx.commit().await
    }

    pub async fn rollback(self) -> Result<(), sqlx::Error> {
        self.tx.rollback().await
    }
}

impl Deref for Tx {
    type Target = AnyConnection;

    fn deref(&self) -> &AnyConnection {
        &self.tx
    }
}

impl DerefMut for Tx {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        &mut self.tx
    }
}

impl Database {
    /// Connects to `url` with the default pool size and applies `migrations`.
    pub async fn open(url: &str, migrations: &Migrations) -> Result<Self, StorageError> {
        Self::open_with(url, migrations, DEFAULT_MAX_CONNECTIONS).await
    }

    /// Connects to `url` with at most `max_connections` connections and applies `migrations`.
    /// A SQLite file (and its folder) is created when missing and put in WAL mode.
    pub async fn open_with(
        url: &str,
        migrations: &Migrations,
        max_connections: u32,
    ) -> Result<Self, StorageError> {
        sqlx::any::install_default_drivers();
        let backend =
            Backend::of_url(url).ok_or_else(|| StorageError::UnsupportedUrl(redact(url)))?;
        let (url, max_connections) = match backend {
            Backend::Sqlite => {
                prepare_sqlite_path(url)?;
                // Every connection to an in-memory database would see its own, empty one.
                let size = if max_connections_forced_to_one(url) {
                    1
                } else {
                    max_connections
                };
                (sqlite_url(url), size)
            }
            Backend::Postgres => (url.to_owned(), max_connections),
        };
        let options = AnyConnectOptions::from_str(&url).map_err(StorageError::Connect)?;
        let in_memory = backend == Backend::Sqlite && max_connections_forced_to_one(&url);
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections.max(1))
            // An in-memory database lives as long as its one connection.
            .min_connections(u32::from(in_memory))
            .idle_timeout((!in_memory).then_some(Duration::from_secs(600)))
            .max_lifetime((!in_memory).then_some(Duration::from_secs(1800)))
            .acquire_timeout(Duration::from_secs(10))
            // No ping before each use: it is a round trip (on SQLite a thread hand-off) per
            // query, more than a tenth of all statements under load. A connection that died
            // (PostgreSQL restarted) fails the one query that meets it; every caller already
            // retries a failed query (consumers redeliver, the relay sweeps, gRPC answers
            // UNAVAILABLE), and the pool drops the broken connection.
            .test_before_acquire(false)
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // Writers queue behind each other instead of failing at once with
                        // SQLITE_BUSY; WAL lets readers run beside the one writer.
                        conn.execute("PRAGMA busy_timeout = 30000").await?;
                        conn.execute("PRAGMA journal_mode = WAL").await?;
                        // A commit is durable before its outcome is acknowledged on the bus.
                        conn.execute("PRAGMA synchronous = FULL").await?;
                        conn.execute("PRAGMA foreign_keys = ON").await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .map_err(StorageError::Connect)?;
        let migrator = match backend {
            Backend::Sqlite => migrations.sqlite,
            Backend::Postgres => migrations.postgres,
        };
        migrator.run(&pool).await?;
        Ok(Self {
            pool,
            backend,
            sqlite_writer: Arc::new(Mutex::new(())),
        })
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Starts a transaction. Every transaction that writes should start here: on SQLite it
    /// waits for the process's write turn first, then takes the database's write lock at once
    /// (`BEGIN IMMEDIATE`), so that what it reads stays current until it commits — a deferred
    /// transaction that read first could not write after another connection's commit.
    pub async fn begin(&self) -> Result<Tx, sqlx::Error> {
        Ok(match self.backend {
            Backend::Sqlite => {
                let turn = self.sqlite_writer.clone().lock_owned().await;
                Tx {
                    tx: self.pool.begin_with("BEGIN IMMEDIATE").await?,
                    _turn: Some(turn),
                }
            }
            Backend::Postgres => Tx {
                tx: self.pool.begin().await?,
                _turn: None,
            },
        })
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

fn max_connections_forced_to_one(url: &str) -> bool {
    url.contains(":memory:") || url.contains("mode=memory")
}

/// Adds `mode=rwc` so that a missing SQLite file is created rather than refused.
fn sqlite_url(url: &str) -> String {
    if url.contains("mode=") {
        url.to_owned()
    } else if url.contains('?') {
        format!("{url}&mode=rwc")
    } else {
        format!("{url}?mode=rwc")
    }
}

/// Creates the folder a SQLite file lives in.
fn prepare_sqlite_path(url: &str) -> Result<(), StorageError> {
    let path = url
        .trim_start_matches("sqlite:")
        .trim_start_matches("//")
        .split('?')
        .next()
        .unwrap_or_default();
    if path.is_empty() || path.contains(":memory:") {
        return Ok(());
    }
    if let Some(parent) = std::path::Path::new(path).parent()
        && !parent.as_os_str().is_empty()
    {
        std::fs::create_dir_all(parent).map_err(|e| StorageError::Connect(e.into()))?;
    }
    Ok(())
}

/// The url without its password, for error messages and logs.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_follows_the_scheme() {
        assert_eq!(Backend::of_url("sqlite://x.db"), Some(Backend::Sqlite));
        assert_eq!(Backend::of_url("sqlite::memory:"), Some(Backend::Sqlite));
        assert_eq!(
            Backend::of_url("postgres://u@h/db"),
            Some(Backend::Postgres)
        );
        assert_eq!(
            Backend::of_url("postgresql://u@h/db"),
            Some(Backend::Postgres)
        );
        assert_eq!(Backend::of_url("mysql://u@h/db"), None);
    }

    #[test]
    fn sqlite_files_are_created_when_missing() {
        assert_eq!(
            sqlite_url("sqlite:///tmp/a.db"),
            "sqlite:///tmp/a.db?mode=rwc"
        );
        assert_eq!(
            sqlite_url("sqlite:a.db?cache=shared"),
            "sqlite:a.db?cache=shared&mode=rwc"
        );
        assert_eq!(sqlite_url("sqlite:a.db?mode=ro"), "sqlite:a.db?mode=ro");
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact("sqlite:///tmp/x.db"), "sqlite:///tmp/x.db");
    }
}

/// `url` (a PostgreSQL server URL, any database) pointing at database `name` instead; the query
/// (`?sslmode=…`) stays.
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let base = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{base}/{name}?{query}"),
        None => format!("{base}/{name}"),
    }
}

/// Creates database `name` on the PostgreSQL server of `admin_url` unless it exists, and
/// returns its URL. `name` is a compile-time or checked identifier (letters, digits, `_`).
pub async fn ensure_postgres_database(admin_url: &str, name: &str) -> Result<String, StorageError> {
    use sqlx::Connection;
    let create = |source| StorageError::Create {
        name: name.to_owned(),
        source,
    };
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(StorageError::UnsupportedUrl(name.to_owned()));
    }
    let mut admin = sqlx::PgConnection::connect(admin_url)
        .await
        .map_err(StorageError::Connect)?;
    let exists = sqlx::query("SELECT 1 FROM pg_database WHERE datname = $1")
        .bind(name)
        .fetch_optional(&mut admin)
        .await
        .map_err(create)?
        .is_some();
    if !exists {
        sqlx::query(&format!("CREATE DATABASE \"{name}\""))
            .execute(&mut admin)
            .await
            .map_err(create)?;
    }
    let _ = admin.close().await;
    Ok(with_database(admin_url, name))
}

#[cfg(test)]
mod url_tests {
    #[test]
    fn with_database_replaces_only_the_database() {
        assert_eq!(
            super::with_database("postgres://u@h:5432/test?sslmode=disable", "jifen_mall"),
            "postgres://u@h:5432/jifen_mall?sslmode=disable"
        );
        assert_eq!(
            super::with_database("postgres://u@h:5432", "x"),
            "postgres://u@h:5432/x"
        );
    }
}
