//! Databases for tests: a fresh PostgreSQL database per test ([`TestDb`]),
//! a SQLite file in a temporary folder ([`sqlite_file`]), and
//! [`TestBackend`] to run one store test body on both backends.
//!
//! PostgreSQL is found at `ROSTER_TEST_DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`); that URL only serves to
//! create and drop the per-test databases.

use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Duration;

use roster_core::db::{DatabaseConfig, Db, Migrations};
use sqlx::{Connection, PgConnection};

/// The server tests create their databases on.
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// How long dropping a test database may hold up the end of a test.
const DROP_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections per test pool: enough for a relay and a few concurrent
/// requests, few enough that hundreds of parallel tests fit in PostgreSQL's
/// default connection limit.
const POOL_SIZE: u32 = 5;

/// The URL of the PostgreSQL server used by tests.
pub fn admin_url() -> String {
    std::env::var("ROSTER_TEST_DATABASE_URL")
        .ok()
        .filter(|url| !url.is_empty())
        .unwrap_or_else(|| DEFAULT_DATABASE_URL.into())
}

/// A PostgreSQL database of its own for one test, dropped when this value
/// is dropped.
#[derive(Debug)]
pub struct TestDb {
    /// The URL of the new database.
    pub url: String,
    /// The new database's name (`roster_t_<uuid>`).
    pub name: String,
    admin_url: String,
}

impl TestDb {
    /// Creates an empty database. Panics when PostgreSQL cannot be
    /// reached: a test that needs it cannot mean anything without it.
    pub async fn new() -> TestDb {
        let admin_url = admin_url();
        let name = format!("roster_t_{}", uuid::Uuid::new_v4().simple());
        let mut admin = PgConnection::connect(&admin_url)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to PostgreSQL at {admin_url}: {e}"));
        sqlx::query(&format!(r#"CREATE DATABASE "{name}""#))
            .execute(&mut admin)
            .await
            .unwrap_or_else(|e| panic!("cannot create database {name}: {e}"));
        let _ = admin.close().await;
        TestDb {
            url: with_database(&admin_url, &name),
            name,
            admin_url,
        }
    }

    /// A new pool on this database's schema for `service`, as `rosterd`
    /// opens it. Migrations are not run.
    pub async fn pool_for(&self, service: &str) -> Db {
        Db::open_postgres_schema(&self.url, POOL_SIZE, service)
            .await
            .unwrap_or_else(|e| panic!("cannot open database {}: {e:#}", self.name))
    }

    /// The settings that open this database as `rosterd` would, with the
    /// small test pools.
    pub fn config(&self) -> DatabaseConfig {
        DatabaseConfig {
            url: self.url.clone().into(),
            max_connections: POOL_SIZE,
            ..DatabaseConfig::default()
        }
    }

    /// A new pool on this database. Migrations are not run.
    pub async fn pool(&self) -> Db {
        Db::open_postgres(&self.url, POOL_SIZE)
            .await
            .unwrap_or_else(|e| panic!("cannot open database {}: {e:#}", self.name))
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        // Drop runs inside the test's runtime, which must not be blocked on
        // itself: a thread of its own with its own runtime does the work,
        // and a test never waits on it for long.
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        let (done, wait) = mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("drop-test-db".into())
            .spawn(move || {
                if let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    runtime.block_on(async {
                        let drop_database = async {
                            let mut admin = PgConnection::connect(&admin_url).await.ok()?;
                            sqlx::query(&format!(
                                r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#
                            ))
                            .execute(&mut admin)
                            .await
                            .ok()?;
                            admin.close().await.ok()
                        };
                        let _ = tokio::time::timeout(DROP_TIMEOUT, drop_database).await;
                    });
                }
                let _ = done.send(());
            });
        if spawned.is_ok() {
            let _ = wait.recv_timeout(DROP_TIMEOUT);
        }
    }
}

/// `url` with its database path replaced by `database`, query kept.
fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[authority_start..]
        .find('/')
        .map_or(base.len(), |i| authority_start + i);
    let mut out = format!("{}/{database}", &base[..path_start]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

/// A SQLite file path in a fresh temporary folder; the folder and
/// everything in it go when the [`tempfile::TempDir`] is dropped.
pub fn sqlite_file() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("cannot create a temporary folder");
    let path = dir.path().join("roster.db");
    (dir, path)
}

/// One backend's database for a conformance test: run the same test body
/// on every value [`TestBackend::both`] returns.
///
/// ```no_run
/// # async fn example() {
/// use std::sync::Arc;
/// use roster_test_support::TestBackend;
///
/// let migrations = roster_user_registry::store::migrations();
/// for backend in TestBackend::both_migrated(&migrations).await {
///     let store = roster_user_registry::store::open(&backend.db, Arc::default(), Arc::default());
///     let missing = store.get_user("nobody-here").await.unwrap();
///     assert!(missing.is_none(), "{}", backend.name);
/// }
/// # }
/// ```
///
/// The database lives as long as the value: keep it until the test body is
/// done.
#[derive(Debug)]
pub struct TestBackend {
    /// `postgres` or `sqlite`, to name the backend in assertion messages.
    pub name: &'static str,
    /// The pool to hand to the store under test.
    pub db: Db,
    _keep: Keep,
}

#[derive(Debug)]
enum Keep {
    Postgres { _db: TestDb },
    Sqlite { _dir: tempfile::TempDir },
}

impl TestBackend {
    /// A fresh PostgreSQL database.
    pub async fn postgres() -> TestBackend {
        let test_db = TestDb::new().await;
        let db = test_db.pool().await;
        TestBackend {
            name: "postgres",
            db,
            _keep: Keep::Postgres { _db: test_db },
        }
    }

    /// A fresh SQLite file.
    pub async fn sqlite() -> TestBackend {
        let (dir, path) = sqlite_file();
        let db = Db::open_sqlite(&path, POOL_SIZE)
            .await
            .unwrap_or_else(|e| panic!("cannot open {}: {e:#}", path.display()));
        TestBackend {
            name: "sqlite",
            db,
            _keep: Keep::Sqlite { _dir: dir },
        }
    }

    /// The PostgreSQL URL, for tests that open pools of their own (as
    /// replicas would); `None` on SQLite.
    pub fn postgres_url(&self) -> Option<&str> {
        match &self._keep {
            Keep::Postgres { _db: db } => Some(&db.url),
            Keep::Sqlite { .. } => None,
        }
    }

    /// A fresh PostgreSQL database and a fresh SQLite file, in that order.
    pub async fn both() -> Vec<TestBackend> {
        vec![Self::postgres().await, Self::sqlite().await]
    }

    /// As [`both`](Self::both), each with `migrations` run (which also
    /// installs the outbox table).
    pub async fn both_migrated(migrations: &Migrations) -> Vec<TestBackend> {
        let backends = Self::both().await;
        for backend in &backends {
            migrations
                .run(&backend.db)
                .await
                .unwrap_or_else(|e| panic!("migrations failed on {}: {e:#}", backend.name));
        }
        backends
    }
}

/// The most publish attempts any outbox row of `db` has seen (0 when the
/// outbox is empty): how tests see that the relay tried and failed.
pub async fn outbox_max_attempts(db: &Db) -> i64 {
    match db {
        Db::Postgres(pool) => {
            sqlx::query_scalar("SELECT COALESCE(MAX(attempts), 0)::BIGINT FROM roster_outbox")
                .fetch_one(pool)
                .await
                .expect("read the outbox")
        }
        Db::Sqlite(pool) => {
            sqlx::query_scalar("SELECT COALESCE(MAX(attempts), 0) FROM roster_outbox")
                .fetch_one(pool)
                .await
                .expect("read the outbox")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn the_database_path_is_replaced_and_the_query_kept() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "t1"),
            "postgres://postgres@127.0.0.1:5432/t1"
        );
        assert_eq!(
            with_database("postgres://u:p@h/db?sslmode=disable", "t1"),
            "postgres://u:p@h/t1?sslmode=disable"
        );
        assert_eq!(
            with_database("postgres://h:5432", "t1"),
            "postgres://h:5432/t1"
        );
        assert_eq!(
            with_database("postgres://h?sslmode=disable", "t1"),
            "postgres://h/t1?sslmode=disable"
        );
    }
}
