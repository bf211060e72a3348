//! Readiness: whether a service can serve right now. The gRPC server asks
//! each service's [`Readiness`] every `server.readiness_interval_ms` and
//! reports the answer under that service's names in `grpc.health.v1`, so
//! Kubernetes sends traffic only to pods whose services can answer.

use anyhow::Context as _;

use crate::db::{Db, Migrations};

/// A check of whether a service can serve; `Err` says why not.
#[async_trait::async_trait]
pub trait Readiness: Send + Sync + 'static {
    async fn check(&self) -> anyhow::Result<()>;
}

/// Ready when the service's database answers and every one of its
/// migrations is applied: without either, every request would fail.
pub struct DatabaseReadiness {
    db: Db,
    postgres: Vec<i64>,
    sqlite: Vec<i64>,
}

impl DatabaseReadiness {
    pub fn new(db: Db, migrations: &Migrations) -> Self {
        let versions = |migrator: &sqlx::migrate::Migrator| {
            migrator
                .iter()
                .filter(|m| !m.migration_type.is_down_migration())
                .map(|m| m.version)
                .collect()
        };
        Self {
            db,
            postgres: versions(&migrations.postgres),
            sqlite: versions(&migrations.sqlite),
        }
    }
}

const APPLIED: &str = "SELECT version FROM _sqlx_migrations WHERE success";

#[async_trait::async_trait]
impl Readiness for DatabaseReadiness {
    async fn check(&self) -> anyhow::Result<()> {
        let (applied, expected): (Result<Vec<i64>, _>, _) = match &self.db {
            Db::Postgres(pool) => (
                sqlx::query_scalar(APPLIED).fetch_all(pool).await,
                &self.postgres,
            ),
            Db::Sqlite(pool) => (
                sqlx::query_scalar(APPLIED).fetch_all(pool).await,
                &self.sqlite,
            ),
        };
        let applied = applied.context("reading the applied migrations")?;
        let missing: Vec<_> = expected.iter().filter(|v| !applied.contains(v)).collect();
        anyhow::ensure!(
            missing.is_empty(),
            "migrations {missing:?} are not applied (run `rosterd migrate`)"
        );
        Ok(())
    }
}
