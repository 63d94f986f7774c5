//! A fresh database per service per test: SQLite by default, PostgreSQL when
//! `JIFEN_TEST_DATABASE_URL` is set (e.g. `postgres://postgres@127.0.0.1:5432/test`; the
//! named database is only used to create and drop the test's own).

use sqlx::Connection;
use sqlx::postgres::PgConnection;
use tempfile::TempDir;

use crate::unique_name;

/// The environment variable naming a PostgreSQL server for the tests.
pub const DATABASE_URL_VAR: &str = "JIFEN_TEST_DATABASE_URL";

#[derive(Debug)]
pub struct TestDatabase {
    url: String,
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    Sqlite(#[allow(dead_code)] TempDir),
    Postgres {
        admin_url: String,
        name: String,
    },
    #[cfg(feature = "containers")]
    Container(
        #[allow(dead_code)] Box<testcontainers::ContainerAsync<testcontainers::GenericImage>>,
    ),
}

impl TestDatabase {
    /// Creates an empty database for one system of one test.
    pub async fn create(system: &str) -> Self {
        #[cfg(feature = "containers")]
        if crate::containers::enabled() {
            // A server of its own: the database in it needs no dropping.
            let (container, admin_url) = crate::containers::postgres().await;
            let mut db = Self::postgres(admin_url, system).await;
            db.kind = Kind::Container(Box::new(container));
            return db;
        }
        refuse_containers_without_feature();
        match std::env::var(DATABASE_URL_VAR) {
            Ok(admin_url) if !admin_url.is_empty() => Self::postgres(admin_url, system).await,
            _ => Self::sqlite(system),
        }
    }

    fn sqlite(system: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("jifen-test-")
            .tempdir()
            .expect("a temp folder");
        let url = format!(
            "sqlite://{}",
            dir.path().join(format!("{system}.db")).display()
        );
        Self {
            url,
            kind: Kind::Sqlite(dir),
        }
    }

    async fn postgres(admin_url: String, system: &str) -> Self {
        let name = unique_name(&format!("jifen_{system}")).to_lowercase();
        let mut admin = PgConnection::connect(&admin_url)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {DATABASE_URL_VAR}: {e}"));
        sqlx::query(&format!("CREATE DATABASE \"{name}\""))
            .execute(&mut admin)
            .await
            .unwrap_or_else(|e| panic!("cannot create test database {name}: {e}"));
        let _ = admin.close().await;
        let url = with_database(&admin_url, &name);
        Self {
            url,
            kind: Kind::Postgres { admin_url, name },
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn is_postgres(&self) -> bool {
        !matches!(self.kind, Kind::Sqlite(_))
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let Kind::Postgres { admin_url, name } = &self.kind else {
            return;
        };
        let (admin_url, name) = (admin_url.clone(), name.clone());
        // Drop runs inside the test's runtime, which cannot block on async work: use a
        // thread with its own small runtime.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                // The server may refuse a connection for a moment (too many clients while
                // other tests run): try a few times before leaving the database behind.
                for attempt in 0..5_u64 {
                    if let Ok(mut admin) = PgConnection::connect(&admin_url).await {
                        let dropped = sqlx::query(&format!(
                            "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                        ))
                        .execute(&mut admin)
                        .await;
                        let _ = admin.close().await;
                        if dropped.is_ok() {
                            return Some(());
                        }
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(200 * (attempt + 1))).await;
                }
                None
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(()))) {
            eprintln!("warning: test database was not dropped");
        }
    }
}

pub use jifen_mesh::storage::with_database;

/// `JIFEN_TEST_CONTAINERS=1` in a build without the `containers` feature would silently test
/// something else: say so instead.
pub(crate) fn refuse_containers_without_feature() {
    #[cfg(not(feature = "containers"))]
    assert!(
        std::env::var("JIFEN_TEST_CONTAINERS").map_or(true, |v| v != "1"),
        "JIFEN_TEST_CONTAINERS=1 needs the containers feature: \
         cargo nextest run --workspace --features jifen-tests/containers"
    );
}
