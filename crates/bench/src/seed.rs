//! Seeding the `users` table with SQL, and the seeded users' IDs and names
//! as the load generator reproduces them.
//!
//! Seeding goes around the API on purpose: a hundred thousand Argon2id
//! hashes would take longer than the whole benchmark, and what is measured
//! is how the registry behaves on a large table, not how it got large.

use std::time::Duration;

use sqlx::PgPool;
use tokio::time::Instant;

/// The password of every seeded user: the seed stores one real Argon2id
/// hash of it (production costs) for all of them, so Login verifies it as
/// it would any user's.
pub const SEED_PASSWORD: &str = "Seed-Passw0rd";

/// Rows per `INSERT … SELECT`: a few large statements, each small enough
/// that one slow batch does not look like a hang.
const BATCH: u64 = 25_000;

/// The last word of seeded names, so that name searches meet some variety
/// beyond digits.
pub const WORDS: &[&str] = &[
    "amber", "birch", "cedar", "delta", "ember", "fjord", "grove", "harbor", "iris", "juniper",
    "kestrel", "lagoon", "maple", "nectar", "orchid", "prairie",
];

/// How seeded users are named; [`Seeded::user_id`] and [`Seeded::name`]
/// must produce what [`seed`]'s SQL stores.
#[derive(Debug, Clone, Copy)]
pub struct Seeded {
    /// Users `1..=count` exist.
    pub count: u64,
    /// Digits of the zero-padded number in a user ID (at least 6).
    pub width: usize,
}

impl Seeded {
    pub fn new(count: u64) -> Seeded {
        Seeded {
            count,
            width: count.to_string().len().max(6),
        }
    }

    /// `user-000123`.
    pub fn user_id(&self, n: u64) -> String {
        format!("user-{n:0width$}", width = self.width)
    }

    /// `Seed User 123 juniper`.
    pub fn name(&self, n: u64) -> String {
        format!("Seed User {n} {}", WORDS[(n % WORDS.len() as u64) as usize])
    }
}

/// How long seeding took.
pub struct SeedTimes {
    pub insert: Duration,
    pub vacuum: Duration,
}

/// Inserts the users of `seeded`, all with `password_hash`, then vacuums
/// and analyzes the table.
pub async fn seed(pool: &PgPool, seeded: Seeded, password_hash: &str) -> anyhow::Result<SeedTimes> {
    let words: Vec<&str> = WORDS.to_vec();
    let started = Instant::now();
    let mut first = 1;
    while first <= seeded.count {
        let last = (first + BATCH - 1).min(seeded.count);
        // lpad truncates to the width, so the width is computed from the
        // count (as `Seeded` does) rather than fixed.
        sqlx::query(
            "INSERT INTO users (user_id, name, primary_email_address, email_normalized, \
                 password_hash, password_updated_at, state, created_at, updated_at) \
             SELECT id, 'Seed User ' || n || ' ' || ($4::text[])[1 + n % cardinality($4::text[])], \
                 id || '@seed.example.com', id || '@seed.example.com', \
                 $3, now(), 1, now(), now() \
             FROM generate_series($1::bigint, $2::bigint) AS n, \
                 LATERAL (SELECT 'user-' || lpad(n::text, $5, '0') AS id) AS ids",
        )
        .bind(first as i64)
        .bind(last as i64)
        .bind(password_hash)
        .bind(&words)
        .bind(seeded.width as i32)
        .execute(pool)
        .await?;
        first = last + 1;
    }
    let insert = started.elapsed();

    // VACUUM as well as ANALYZE: a bulk-loaded table crosses autovacuum's
    // insert threshold at once, and an autovacuum (and the GIN pending-list
    // merge it does) starting in the middle of a scenario would skew it.
    // A vacuumed table is also what a long-running deployment has.
    let started = Instant::now();
    sqlx::raw_sql("VACUUM (ANALYZE) users")
        .execute(pool)
        .await?;
    Ok(SeedTimes {
        insert,
        vacuum: started.elapsed(),
    })
}

/// What the header reports about the database.
pub struct TableInfo {
    pub rows: i64,
    /// Table, indexes and TOAST, in bytes.
    pub total_bytes: i64,
    pub server_version: String,
}

pub async fn table_info(pool: &PgPool) -> anyhow::Result<TableInfo> {
    let (rows, total_bytes): (i64, i64) =
        sqlx::query_as("SELECT count(*), pg_total_relation_size('users') FROM users")
            .fetch_one(pool)
            .await?;
    let server_version: String = sqlx::query_scalar("SHOW server_version")
        .fetch_one(pool)
        .await?;
    Ok(TableInfo {
        rows,
        total_bytes,
        server_version,
    })
}

#[cfg(test)]
mod tests {
    use super::Seeded;

    #[test]
    fn ids_are_padded_to_at_least_six_digits() {
        assert_eq!(Seeded::new(100_000).user_id(123), "user-000123");
        assert_eq!(Seeded::new(2_000_000).user_id(123), "user-0000123");
    }

    #[test]
    fn names_cycle_through_the_words() {
        let seeded = Seeded::new(10);
        assert_eq!(seeded.name(1), "Seed User 1 birch");
        assert_eq!(seeded.name(16), "Seed User 16 amber");
    }
}
