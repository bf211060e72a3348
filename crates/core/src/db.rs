//! Storage pools: PostgreSQL in production, SQLite as the embedded default.
//! Each service owns its own database (or SQLite file) and its own
//! migrations; this module opens the pool and runs them.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, SqlitePool};

/// Where a service keeps its data.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// A PostgreSQL URL (`postgres://user@host/db`). Empty: SQLite files
    /// under `data_dir`, one per service.
    pub url: String,
    /// The folder for SQLite files (and other local data) when `url` is empty.
    pub data_dir: String,
    /// Most connections one service keeps open.
    pub max_connections: u32,
    /// Run migrations when a service starts.
    pub migrate_on_start: bool,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            data_dir: "data".into(),
            max_connections: 10,
            migrate_on_start: true,
        }
    }
}

/// A connection pool to one service's database.
#[derive(Debug, Clone)]
pub enum Db {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

impl Db {
    /// Opens the database of `service` as configured: the PostgreSQL URL as
    /// given (every service may share one database; their tables do not
    /// overlap), or `<data_dir>/<service>.db`.
    pub async fn open(config: &DatabaseConfig, service: &str) -> anyhow::Result<Db> {
        if config.url.is_empty() {
            let path = Path::new(&config.data_dir).join(format!("{service}.db"));
            Self::open_sqlite(&path, config.max_connections).await
        } else {
            Self::open_postgres(&config.url, config.max_connections).await
        }
    }

    pub async fn open_postgres(url: &str, max_connections: u32) -> anyhow::Result<Db> {
        let shown = crate::config::redacted_url(url);
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| anyhow::anyhow!("invalid database.url {shown}: {e}"))?;
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await
            .map_err(|e| anyhow::anyhow!("cannot connect to PostgreSQL at {shown}: {e}"))?;
        Ok(Db::Postgres(pool))
    }

    pub async fn open_sqlite(path: &Path, max_connections: u32) -> anyhow::Result<Db> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            // WAL lets readers run while one writer writes; with a busy
            // timeout, concurrent writers wait instead of failing.
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(max_connections.max(1))
            .connect_with(options)
            .await?;
        Ok(Db::Sqlite(pool))
    }

    /// The backend's name, for logs.
    pub fn backend(&self) -> &'static str {
        match self {
            Db::Postgres(_) => "postgres",
            Db::Sqlite(_) => "sqlite",
        }
    }
}

/// A service's migrations, one set per backend (`sqlx::migrate!` of
/// `migrations/postgres` and `migrations/sqlite`).
pub struct Migrations {
    pub postgres: sqlx::migrate::Migrator,
    pub sqlite: sqlx::migrate::Migrator,
}

impl Migrations {
    /// Runs the migrations that fit `db`, then installs the outbox table
    /// that every service shares in shape.
    pub async fn run(&self, db: &Db) -> anyhow::Result<()> {
        match db {
            Db::Postgres(pool) => self.postgres.run(pool).await?,
            Db::Sqlite(pool) => self.sqlite.run(pool).await?,
        }
        crate::events::outbox::install_schema(db).await?;
        Ok(())
    }
}
