//! Storage pools: PostgreSQL in production, SQLite as the embedded default.
//! Each service owns its own database (or SQLite file) and its own
//! migrations; this module opens the pool and runs them.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context as _;
use serde::Deserialize;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, SqlitePool};

/// Where a service keeps its data.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// A PostgreSQL URL (`postgres://user@host/db`). Empty: SQLite files
    /// under `data_dir`, one per service. Its password is a secret: the
    /// URL prints with credentials hidden.
    pub url: crate::secret::SecretUrl,
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
            url: Default::default(),
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
    /// Opens the database of `service` as configured: on PostgreSQL, the
    /// service's own schema in the configured database (see
    /// [`Db::open_postgres_schema`]); otherwise `<data_dir>/<service>.db`.
    pub async fn open(config: &DatabaseConfig, service: &str) -> anyhow::Result<Db> {
        if config.url.is_empty() {
            let path = Path::new(&config.data_dir).join(format!("{service}.db"));
            Self::open_sqlite(&path, config.max_connections).await
        } else {
            Self::open_postgres_schema(config.url.expose(), config.max_connections, service).await
        }
    }

    /// A pool whose connections work in the schema named after `service`
    /// (`user-registry` → `user_registry`), created if missing. Services
    /// may then share one PostgreSQL database and still own their data:
    /// their tables, their outbox and their migration history never meet.
    /// `public` stays on the search path for extensions installed there.
    pub async fn open_postgres_schema(
        url: &str,
        max_connections: u32,
        service: &str,
    ) -> anyhow::Result<Db> {
        let schema = schema_name(service)?;
        let setup = pg_pool(url, 1, None).await?;
        let created = sqlx::query(&format!(r#"CREATE SCHEMA IF NOT EXISTS "{schema}""#))
            .execute(&setup)
            .await;
        if let Err(err) = created {
            // Two processes creating the schema at the same moment: one of
            // them sees a unique violation, and the schema exists.
            let exists: bool =
                sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)")
                    .bind(&schema)
                    .fetch_one(&setup)
                    .await?;
            anyhow::ensure!(exists, "cannot create schema {schema}: {err}");
        }
        setup.close().await;
        let search_path = format!("{schema},public");
        Ok(Db::Postgres(
            pg_pool(url, max_connections, Some(&search_path)).await?,
        ))
    }

    pub async fn open_postgres(url: &str, max_connections: u32) -> anyhow::Result<Db> {
        Ok(Db::Postgres(pg_pool(url, max_connections, None).await?))
    }

    /// Opens (or creates) the SQLite file `path`. A new file and the
    /// folders made for it are the owner's only: they hold password hashes
    /// and token digests. SQLite gives its `-wal` and `-shm` files the
    /// database file's mode.
    pub async fn open_sqlite(path: &Path, max_connections: u32) -> anyhow::Result<Db> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            crate::files::create_private_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        crate::files::ensure_private_file(path)
            .with_context(|| format!("cannot create {}", path.display()))?;
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

    /// How the pool's connections are used now.
    pub fn pool_use(&self) -> PoolUse {
        fn of<DB: sqlx::Database>(pool: &sqlx::Pool<DB>) -> PoolUse {
            let idle = u32::try_from(pool.num_idle()).unwrap_or(u32::MAX);
            PoolUse {
                in_use: pool.size().saturating_sub(idle),
                idle,
                max: pool.options().get_max_connections(),
            }
        }
        match self {
            Db::Postgres(pool) => of(pool),
            Db::Sqlite(pool) => of(pool),
        }
    }
}

/// A pool's connections at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolUse {
    /// Connections lent to a query or transaction.
    pub in_use: u32,
    /// Open connections waiting in the pool.
    pub idle: u32,
    /// The most connections the pool opens.
    pub max: u32,
}

/// Sets the connection gauges of every `(service, pool)` of `pools` at
/// once and then every `every`, until `shutdown` completes. Sampling
/// reads counters the pool keeps anyway: it costs no query.
pub async fn report_pool_use(
    pools: Vec<(&'static str, Db)>,
    every: Duration,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            _ = ticks.tick() => {}
        }
        for (service, db) in &pools {
            let used = db.pool_use();
            crate::metrics::db_pool(service, db.backend(), used.in_use, used.idle, used.max);
        }
    }
}

/// A PostgreSQL pool on `url`, optionally with its own search path.
async fn pg_pool(
    url: &str,
    max_connections: u32,
    search_path: Option<&str>,
) -> anyhow::Result<PgPool> {
    let shown = crate::config::redacted_url(url);
    let mut options = PgConnectOptions::from_str(url)
        .map_err(|e| anyhow::anyhow!("invalid database.url {shown}: {e}"))?;
    if let Some(path) = search_path {
        options = options.options([("search_path", path)]);
    }
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(options)
        .await
        .map_err(|e| anyhow::anyhow!("cannot connect to PostgreSQL at {shown}: {e}"))
}

/// The PostgreSQL schema of `service`: its name with `-` as `_`.
fn schema_name(service: &str) -> anyhow::Result<String> {
    let schema = service.replace('-', "_");
    anyhow::ensure!(
        !schema.is_empty()
            && schema
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
        "`{service}` cannot name a schema"
    );
    Ok(schema)
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

/// A list of integers (enum numbers) as stored in one text column:
/// comma-separated, empty for none. The same on both backends.
pub fn encode_ints(values: &[i32]) -> String {
    values
        .iter()
        .map(i32::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// Reads what [`encode_ints`] wrote; `Err` quotes the corrupt text.
pub fn decode_ints(text: &str) -> Result<Vec<i32>, String> {
    if text.is_empty() {
        return Ok(Vec::new());
    }
    text.split(',')
        .map(|v| v.parse().map_err(|_| format!("integer list `{text}`")))
        .collect()
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[tokio::test]
    async fn the_embedded_database_files_and_folder_are_the_owners_only() {
        let root = tempfile::tempdir().unwrap();
        let config = DatabaseConfig {
            data_dir: root.path().join("data").display().to_string(),
            ..DatabaseConfig::default()
        };
        let db = Db::open(&config, "user-registry").await.unwrap();
        let Db::Sqlite(pool) = &db else {
            panic!("no database.url gives SQLite")
        };
        sqlx::query("CREATE TABLE t (secret TEXT)")
            .execute(pool)
            .await
            .unwrap();
        sqlx::query("INSERT INTO t VALUES ('hash')")
            .execute(pool)
            .await
            .unwrap();
        let data = root.path().join("data");
        assert_eq!(mode(&data), 0o700);
        for file in [
            "user-registry.db",
            "user-registry.db-wal",
            "user-registry.db-shm",
        ] {
            assert_eq!(mode(&data.join(file)), 0o600, "{file}");
        }
    }
}
