//! The store conformance suite: every case is written once against
//! `AccessStore` and run on a migrated PostgreSQL database and a migrated
//! SQLite file. Each case also checks the outbox: a state change writes
//! exactly its events in its own transaction, a failed one none.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use futures::FutureExt;
use roster_access::store::{
    self, AccessStore, ApiKeyRecord, KeyOrder, KeyQuery, LoginTokenRecord, StoreError, now,
};
use roster_core::db::Db;
use roster_core::events::{new_event, outbox};
use roster_core::token::{Token, TokenHasher, TokenType};
use roster_proto::v1::{Event, Right};
use roster_test_support::TestBackend;
use tokio::sync::Notify;

/// Runs each named case of [`cases`] on both backends, as a test of the
/// same name.
macro_rules! conformance {
    ($($case:ident),* $(,)?) => {$(
        #[tokio::test]
        async fn $case() {
            for backend in TestBackend::both_migrated(&store::migrations()).await {
                let relay = Arc::new(Notify::new());
                let store = store::open(&backend.db, relay.clone(), Arc::new(Notify::new()));
                cases::$case(Case {
                    store,
                    db: &backend.db,
                    relay,
                    backend: backend.name,
                })
                .await;
            }
        }
    )*};
}

conformance!(
    an_api_key_round_trips_with_every_field,
    a_taken_key_id_already_exists_and_changes_nothing,
    keys_are_listed_in_every_order_in_both_directions,
    keys_without_an_expiry_come_last_ascending_and_first_descending,
    keys_are_paged_and_counted_per_user,
    an_update_writes_name_rights_expiry_and_updated_at_only,
    an_update_of_a_missing_key_or_another_users_key_changes_nothing,
    a_key_is_deleted_once_and_only_through_its_user,
    deleting_a_users_credentials_removes_only_theirs,
    a_login_token_round_trips,
    the_login_token_cap_refuses_the_token_over_max_live,
    used_and_expired_login_tokens_do_not_count_and_are_cleaned_up,
    a_login_token_is_used_once,
    concurrent_uses_of_one_login_token_have_exactly_one_winner,
    concurrent_login_token_inserts_cannot_slip_under_the_cap,
    every_change_writes_exactly_its_events_and_wakes_the_relay,
);

/// One backend's store under test.
struct Case<'a> {
    store: Arc<dyn AccessStore>,
    db: &'a Db,
    relay: Arc<Notify>,
    backend: &'static str,
}

impl Case<'_> {
    async fn pending(&self) -> i64 {
        outbox::pending(self.db).await.expect("count the outbox")
    }

    /// The unique ids in the outbox, oldest first.
    async fn outbox_ids(&self) -> Vec<String> {
        let sql = "SELECT unique_id FROM roster_outbox ORDER BY id";
        match self.db {
            Db::Postgres(pool) => sqlx::query_scalar(sql).fetch_all(pool).await.unwrap(),
            Db::Sqlite(pool) => sqlx::query_scalar(sql).fetch_all(pool).await.unwrap(),
        }
    }

    /// Rows of `table` that belong to `user_id`, read behind the store's
    /// back.
    async fn rows_of(&self, table: &str, user_id: &str) -> i64 {
        let sql = format!("SELECT COUNT(*) FROM {table} WHERE user_id = $1");
        match self.db {
            Db::Postgres(pool) => sqlx::query_scalar(&sql)
                .bind(user_id)
                .fetch_one(pool)
                .await
                .unwrap(),
            Db::Sqlite(pool) => sqlx::query_scalar(&sql)
                .bind(user_id)
                .fetch_one(pool)
                .await
                .unwrap(),
        }
    }

    /// Whether the relay was woken since the last look (consumes the
    /// wake-up).
    fn relay_woken(&self) -> bool {
        self.relay.notified().now_or_never().is_some()
    }

    async fn insert_key(&self, key: &ApiKeyRecord) {
        self.store
            .insert_api_key(key, &events("user.api-key.create", 1))
            .await
            .unwrap_or_else(|e| panic!("{}: insert key {}: {e:?}", self.backend, key.id));
    }

    async fn get_key(&self, id: &str) -> Option<ApiKeyRecord> {
        self.store.get_api_key(id).await.unwrap()
    }

    async fn insert_token(&self, token: &LoginTokenRecord, max_live: u32) {
        self.store
            .insert_login_token(token, max_live, &events("user.login-token.create", 1), &[])
            .await
            .unwrap_or_else(|e| panic!("{}: insert token {}: {e:?}", self.backend, token.id));
    }

    async fn get_token(&self, id: &str) -> Option<LoginTokenRecord> {
        self.store.get_login_token(id).await.unwrap()
    }

    /// The IDs of `user_id`'s keys in `order`, one page of 100.
    async fn listed(&self, user_id: &str, order: KeyOrder, descending: bool) -> Vec<String> {
        let (keys, _) = self
            .store
            .list_api_keys(KeyQuery {
                user_id,
                order,
                descending,
                limit: 100,
                offset: 0,
            })
            .await
            .unwrap();
        keys.into_iter().map(|k| k.id).collect()
    }
}

fn events(name: &str, n: usize) -> Vec<Event> {
    (0..n).map(|_| new_event(name, vec![], None)).collect()
}

/// A key of `user_id` created at `at`, with a real token's ID and digest.
fn key(user_id: &str, at: DateTime<Utc>) -> ApiKeyRecord {
    let token = Token::generate(TokenType::ApiKey);
    ApiKeyRecord {
        id: token.id().into(),
        user_id: user_id.into(),
        secret_hash: TokenHasher::new("").hash(&token),
        name: format!("key of {user_id}"),
        rights: vec![Right::UserInfo as i32],
        created_at: at,
        updated_at: at,
        expires_at: None,
    }
}

/// A live login token of `user_id` created at `at`, valid for an hour.
fn login_token(user_id: &str, at: DateTime<Utc>) -> LoginTokenRecord {
    let token = Token::generate(TokenType::LoginToken);
    LoginTokenRecord {
        id: token.id().into(),
        user_id: user_id.into(),
        secret_hash: TokenHasher::new("").hash(&token),
        created_at: at,
        expires_at: at + Duration::hours(1),
        used_at: None,
    }
}

fn micros(n: i64) -> Duration {
    Duration::microseconds(n)
}

/// `keys` sorted by `cmp`, the ID ascending breaking ties, as IDs.
fn sorted_ids(
    keys: &[ApiKeyRecord],
    cmp: impl Fn(&ApiKeyRecord, &ApiKeyRecord) -> std::cmp::Ordering,
) -> Vec<String> {
    let mut keys = keys.to_vec();
    keys.sort_by(|a, b| cmp(a, b).then_with(|| a.id.cmp(&b.id)));
    keys.into_iter().map(|k| k.id).collect()
}

mod cases {
    use super::*;

    pub async fn an_api_key_round_trips_with_every_field(c: Case<'_>) {
        let at = now();
        let mut full = key("alice", at);
        full.name = "Déploiement ✓ CI\tnightly".into();
        // Stored as written: in order, RIGHT_USER_ALL not expanded.
        full.rights = vec![
            Right::UserAll as i32,
            Right::UserInfo as i32,
            Right::UserList as i32,
        ];
        full.created_at = at - Duration::hours(1) + micros(1);
        full.updated_at = at;
        full.expires_at = Some(at + Duration::days(30) + micros(7));
        c.insert_key(&full).await;
        assert_eq!(
            c.get_key(&full.id).await,
            Some(full.clone()),
            "{}: every field",
            c.backend
        );

        // Whole seconds and milliseconds come back as they went in; an
        // empty name stays empty.
        let whole = DateTime::from_timestamp(at.timestamp(), 0).unwrap();
        let mut plain = key("alice", whole);
        plain.name = String::new();
        plain.updated_at = whole + Duration::milliseconds(250);
        plain.expires_at = Some(whole + Duration::days(1));
        c.insert_key(&plain).await;
        assert_eq!(c.get_key(&plain.id).await, Some(plain), "{}", c.backend);

        let missing = Token::generate(TokenType::ApiKey);
        assert_eq!(c.get_key(missing.id()).await, None, "{}", c.backend);
        assert_eq!(c.pending().await, 2, "{}: one event each", c.backend);
    }

    pub async fn a_taken_key_id_already_exists_and_changes_nothing(c: Case<'_>) {
        let first = key("alice", now());
        c.insert_key(&first).await;
        let before = c.pending().await;

        let mut again = key("bob", now());
        again.id = first.id.clone();
        again.name = "impostor".into();
        let result = c
            .store
            .insert_api_key(&again, &events("user.api-key.create", 1))
            .await;
        assert!(
            matches!(result, Err(StoreError::AlreadyExists)),
            "{}: {result:?}",
            c.backend
        );
        assert_eq!(c.get_key(&first.id).await, Some(first), "{}", c.backend);
        assert_eq!(c.pending().await, before, "{}: no event", c.backend);
        assert_eq!(c.rows_of("api_keys", "bob").await, 0, "{}", c.backend);
    }

    pub async fn keys_are_listed_in_every_order_in_both_directions(c: Case<'_>) {
        let base = DateTime::from_timestamp(now().timestamp(), 0).unwrap();
        // Names in byte order: "B" < "a" < "b" < "é"; two share a name, two
        // share a creation time, two share an expiry, two never expire.
        // Creation times are not in insertion order, and expiries mix
        // whole seconds, milliseconds and microseconds.
        let spec: &[(&str, i64, Option<i64>)] = &[
            ("b", 5_000_000, Some(3_000_000)),
            ("a", 1_000_000, None),
            ("B", 3_000_000, Some(1_500_000)),
            ("é", 3_000_000, Some(1_000_001)),
            ("a", 2_000_001, Some(3_000_000)),
            ("", 4_000_000, None),
            ("b", 0, Some(1_000_000)),
        ];
        let mut keys = Vec::new();
        for (name, created, expires) in spec {
            let mut k = key("alice", base + micros(*created));
            k.name = (*name).into();
            k.updated_at = base + micros(9_000_000);
            k.expires_at = expires.map(|e| base + Duration::days(1) + micros(e));
            c.insert_key(&k).await;
            keys.push(k);
        }
        // Another user's keys never show.
        c.insert_key(&key("bob", base)).await;

        let by_id = sorted_ids(&keys, |_, _| std::cmp::Ordering::Equal);
        let by_name = sorted_ids(&keys, |a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
        let by_name_desc = sorted_ids(&keys, |a, b| b.name.as_bytes().cmp(a.name.as_bytes()));
        let by_created = sorted_ids(&keys, |a, b| a.created_at.cmp(&b.created_at));
        let by_created_desc = sorted_ids(&keys, |a, b| b.created_at.cmp(&a.created_at));
        // `None` sorts before `Some`: flip for "never" last.
        let by_expiry = sorted_ids(&keys, |a, b| {
            (a.expires_at.is_none(), a.expires_at).cmp(&(b.expires_at.is_none(), b.expires_at))
        });
        let by_expiry_desc = sorted_ids(&keys, |a, b| {
            (b.expires_at.is_none(), b.expires_at).cmp(&(a.expires_at.is_none(), a.expires_at))
        });
        let mut by_id_desc = by_id.clone();
        by_id_desc.reverse();

        let cases = [
            (KeyOrder::Id, false, by_id),
            (KeyOrder::Id, true, by_id_desc),
            (KeyOrder::Name, false, by_name),
            (KeyOrder::Name, true, by_name_desc),
            (KeyOrder::CreatedAt, false, by_created),
            (KeyOrder::CreatedAt, true, by_created_desc),
            (KeyOrder::ExpiresAt, false, by_expiry),
            (KeyOrder::ExpiresAt, true, by_expiry_desc),
        ];
        for (order, descending, expected) in cases {
            assert_eq!(
                c.listed("alice", order, descending).await,
                expected,
                "{}: {order:?} descending={descending}",
                c.backend
            );
        }
    }

    pub async fn keys_without_an_expiry_come_last_ascending_and_first_descending(c: Case<'_>) {
        let at = now();
        let never = key("alice", at);
        let mut soon = key("alice", at);
        soon.expires_at = Some(at + Duration::minutes(1));
        let mut late = key("alice", at);
        late.expires_at = Some(at + Duration::days(3650));
        for k in [&never, &soon, &late] {
            c.insert_key(k).await;
        }
        assert_eq!(
            c.listed("alice", KeyOrder::ExpiresAt, false).await,
            [soon.id.clone(), late.id.clone(), never.id.clone()],
            "{}",
            c.backend
        );
        assert_eq!(
            c.listed("alice", KeyOrder::ExpiresAt, true).await,
            [never.id.clone(), late.id.clone(), soon.id.clone()],
            "{}",
            c.backend
        );
    }

    pub async fn keys_are_paged_and_counted_per_user(c: Case<'_>) {
        let at = now();
        let mut alice = Vec::new();
        for i in 0..7 {
            let k = key("alice", at + micros(i));
            c.insert_key(&k).await;
            alice.push(k.id);
        }
        alice.sort();
        for i in 0..2 {
            c.insert_key(&key("bob", at + micros(i))).await;
        }

        let mut seen = Vec::new();
        for (offset, size) in [(0, 3), (3, 3), (6, 1), (9, 0)] {
            let (page, total) = c
                .store
                .list_api_keys(KeyQuery {
                    user_id: "alice",
                    order: KeyOrder::Id,
                    descending: false,
                    limit: 3,
                    offset,
                })
                .await
                .unwrap();
            assert_eq!(page.len(), size, "{}: offset {offset}", c.backend);
            assert_eq!(total, 7, "{}: the total of every page", c.backend);
            assert!(page.iter().all(|k| k.user_id == "alice"), "{}", c.backend);
            seen.extend(page.into_iter().map(|k| k.id));
        }
        assert_eq!(seen, alice, "{}: the pages cover every key once", c.backend);

        for (user_id, total) in [("bob", 2), ("nobody", 0)] {
            let (page, counted) = c
                .store
                .list_api_keys(KeyQuery {
                    user_id,
                    order: KeyOrder::Name,
                    descending: true,
                    limit: 100,
                    offset: 0,
                })
                .await
                .unwrap();
            assert_eq!(page.len() as u64, total, "{}: {user_id}", c.backend);
            assert_eq!(counted, total, "{}: {user_id}", c.backend);
        }
    }

    pub async fn an_update_writes_name_rights_expiry_and_updated_at_only(c: Case<'_>) {
        let at = now() - Duration::minutes(5);
        let original = key("alice", at);
        c.insert_key(&original).await;
        let before = c.pending().await;

        let mut changed = original.clone();
        changed.name = "renamed".into();
        changed.rights = vec![Right::UserDelete as i32, Right::UserAll as i32];
        changed.expires_at = Some(at + Duration::days(2) + micros(3));
        changed.updated_at = at + Duration::minutes(1) + micros(1);
        // Not the store's to change.
        let mut sent = changed.clone();
        sent.created_at = at - Duration::days(1);
        sent.secret_hash = "0".repeat(64);
        assert!(
            c.store
                .update_api_key(&sent, &events("user.api-key.update", 1))
                .await
                .unwrap(),
            "{}",
            c.backend
        );
        assert_eq!(
            c.get_key(&original.id).await,
            Some(changed.clone()),
            "{}: name, rights, expiry and updated_at written, nothing else",
            c.backend
        );
        assert_eq!(c.pending().await, before + 1, "{}", c.backend);

        // An expiry can be cleared again.
        let mut cleared = changed.clone();
        cleared.expires_at = None;
        cleared.updated_at = changed.updated_at + micros(1);
        assert!(
            c.store
                .update_api_key(&cleared, &events("user.api-key.update", 1))
                .await
                .unwrap()
        );
        assert_eq!(
            c.get_key(&original.id).await,
            Some(cleared),
            "{}",
            c.backend
        );
        assert_eq!(c.pending().await, before + 2, "{}", c.backend);
    }

    pub async fn an_update_of_a_missing_key_or_another_users_key_changes_nothing(c: Case<'_>) {
        let alices = key("alice", now());
        c.insert_key(&alices).await;
        let before = c.pending().await;

        let ghost = key("alice", now());
        assert!(
            !c.store
                .update_api_key(&ghost, &events("user.api-key.update", 1))
                .await
                .unwrap(),
            "{}: a missing key",
            c.backend
        );
        assert_eq!(c.get_key(&ghost.id).await, None, "{}", c.backend);

        let mut stolen = alices.clone();
        stolen.user_id = "bob".into();
        stolen.rights = vec![Right::All as i32];
        stolen.name = "mine now".into();
        stolen.updated_at = alices.updated_at + micros(1);
        assert!(
            !c.store
                .update_api_key(&stolen, &events("user.api-key.update", 1))
                .await
                .unwrap(),
            "{}: another user's key",
            c.backend
        );
        assert_eq!(
            c.get_key(&alices.id).await,
            Some(alices),
            "{}: untouched",
            c.backend
        );
        assert_eq!(c.pending().await, before, "{}: no event", c.backend);
    }

    pub async fn a_key_is_deleted_once_and_only_through_its_user(c: Case<'_>) {
        let k = key("alice", now());
        c.insert_key(&k).await;
        let kept = key("alice", now());
        c.insert_key(&kept).await;
        let before = c.pending().await;

        let deleted = c
            .store
            .delete_api_key("bob", &k.id, &events("user.api-key.delete", 1))
            .await
            .unwrap();
        assert!(!deleted, "{}: not through another user", c.backend);
        assert_eq!(c.get_key(&k.id).await, Some(k.clone()), "{}", c.backend);
        assert_eq!(c.pending().await, before, "{}: no event", c.backend);

        let deleted = c
            .store
            .delete_api_key("alice", &k.id, &events("user.api-key.delete", 1))
            .await
            .unwrap();
        assert!(deleted, "{}", c.backend);
        assert_eq!(c.get_key(&k.id).await, None, "{}", c.backend);
        assert_eq!(c.pending().await, before + 1, "{}", c.backend);

        let again = c
            .store
            .delete_api_key("alice", &k.id, &events("user.api-key.delete", 1))
            .await
            .unwrap();
        assert!(!again, "{}: already gone", c.backend);
        assert_eq!(c.pending().await, before + 1, "{}: no event", c.backend);
        assert_eq!(c.get_key(&kept.id).await, Some(kept), "{}", c.backend);
    }

    pub async fn deleting_a_users_credentials_removes_only_theirs(c: Case<'_>) {
        let at = now();
        let alice_keys = [key("alice", at), key("alice", at)];
        for k in &alice_keys {
            c.insert_key(k).await;
        }
        let used = login_token("alice", at);
        let live = login_token("alice", at + micros(10));
        c.insert_token(&used, 5).await;
        c.insert_token(&live, 5).await;
        assert!(
            c.store
                .use_login_token(&used.id, at + micros(20), &[])
                .await
                .unwrap()
        );
        let bobs_key = key("bob", at);
        c.insert_key(&bobs_key).await;
        let bobs_token = login_token("bob", at);
        c.insert_token(&bobs_token, 5).await;
        let alice_rows =
            c.rows_of("api_keys", "alice").await + c.rows_of("login_tokens", "alice").await;

        let removed = c.store.delete_user_credentials("alice").await.unwrap();
        assert_eq!(
            removed as i64, alice_rows,
            "{}: every row counted",
            c.backend
        );
        assert!(removed >= 3, "{}: {removed}", c.backend);
        assert_eq!(c.rows_of("api_keys", "alice").await, 0, "{}", c.backend);
        assert_eq!(c.rows_of("login_tokens", "alice").await, 0, "{}", c.backend);
        for k in &alice_keys {
            assert_eq!(c.get_key(&k.id).await, None, "{}", c.backend);
        }
        assert_eq!(c.get_token(&live.id).await, None, "{}", c.backend);
        assert_eq!(
            c.get_key(&bobs_key.id).await,
            Some(bobs_key),
            "{}",
            c.backend
        );
        assert_eq!(
            c.get_token(&bobs_token.id).await,
            Some(bobs_token),
            "{}",
            c.backend
        );

        assert_eq!(
            c.store.delete_user_credentials("alice").await.unwrap(),
            0,
            "{}: nothing left",
            c.backend
        );
    }

    pub async fn a_login_token_round_trips(c: Case<'_>) {
        let at = now();
        let mut token = login_token("alice", at - micros(1));
        token.expires_at = at + Duration::hours(1) + micros(7);
        c.insert_token(&token, 5).await;
        assert_eq!(
            c.get_token(&token.id).await,
            Some(token.clone()),
            "{}",
            c.backend
        );
        assert!(token.is_live(at));
        let missing = Token::generate(TokenType::LoginToken);
        assert_eq!(c.get_token(missing.id()).await, None, "{}", c.backend);
        assert_eq!(c.pending().await, 1, "{}", c.backend);
    }

    pub async fn the_login_token_cap_refuses_the_token_over_max_live(c: Case<'_>) {
        let at = now();
        for i in 0..3 {
            c.insert_token(&login_token("alice", at + micros(i)), 3)
                .await;
        }
        let before = c.pending().await;
        assert_eq!(before, 3, "{}", c.backend);

        let over = login_token("alice", at + micros(10));
        let result = c
            .store
            .insert_login_token(&over, 3, &events("user.login-token.create", 1), &[])
            .await;
        assert!(
            matches!(result, Err(StoreError::TooManyLoginTokens)),
            "{}: {result:?}",
            c.backend
        );
        assert_eq!(
            c.get_token(&over.id).await,
            None,
            "{}: not stored",
            c.backend
        );
        assert_eq!(c.rows_of("login_tokens", "alice").await, 3, "{}", c.backend);
        assert_eq!(c.pending().await, before, "{}: no event", c.backend);

        // The cap is per user, and a larger cap lets the token in.
        c.insert_token(&login_token("bob", at), 3).await;
        c.insert_token(&over, 4).await;
        assert_eq!(c.rows_of("login_tokens", "alice").await, 4, "{}", c.backend);
    }

    pub async fn used_and_expired_login_tokens_do_not_count_and_are_cleaned_up(c: Case<'_>) {
        let at = now();
        // Made two hours ago, when all three were live; by `at` one expired
        // an hour ago, one expires exactly at `at`, and one was used.
        let start = at - Duration::hours(2);
        let mut expired = login_token("alice", start);
        expired.expires_at = at - Duration::hours(1);
        let mut just_expired = login_token("alice", start + micros(1));
        just_expired.expires_at = at;
        let used = login_token("alice", start + micros(2));
        for spent in [&expired, &just_expired, &used] {
            c.insert_token(spent, 10).await;
        }
        assert!(
            c.store
                .use_login_token(&used.id, start + micros(3), &[])
                .await
                .unwrap()
        );
        assert_eq!(c.rows_of("login_tokens", "alice").await, 3, "{}", c.backend);

        let first = login_token("alice", at);
        let second = login_token("alice", at + micros(1));
        c.insert_token(&first, 2).await;
        c.insert_token(&second, 2).await;
        for spent in [&expired, &used, &just_expired] {
            assert_eq!(
                c.get_token(&spent.id).await,
                None,
                "{}: spent tokens are deleted on the way",
                c.backend
            );
        }
        assert_eq!(c.rows_of("login_tokens", "alice").await, 2, "{}", c.backend);

        // Live ones do count.
        let third = login_token("alice", at + micros(2));
        let result = c.store.insert_login_token(&third, 2, &[], &[]).await;
        assert!(
            matches!(result, Err(StoreError::TooManyLoginTokens)),
            "{}: {result:?}",
            c.backend
        );

        // Once one is used, there is room again, and the used one goes.
        assert!(
            c.store
                .use_login_token(&first.id, at + micros(3), &[])
                .await
                .unwrap()
        );
        c.insert_token(&third, 2).await;
        assert_eq!(c.get_token(&first.id).await, None, "{}", c.backend);
        assert_eq!(
            c.get_token(&second.id).await,
            Some(second),
            "{}: live tokens stay",
            c.backend
        );
    }

    pub async fn a_login_token_is_used_once(c: Case<'_>) {
        let at = now();
        let token = login_token("alice", at);
        c.insert_token(&token, 5).await;
        let before = c.pending().await;

        let used_at = at + micros(1_234_567);
        assert!(
            c.store
                .use_login_token(&token.id, used_at, &events("user.login-token.use", 1))
                .await
                .unwrap(),
            "{}: the first use wins",
            c.backend
        );
        let stored = c.get_token(&token.id).await.expect("still stored");
        assert_eq!(stored.used_at, Some(used_at), "{}", c.backend);
        assert!(!stored.is_live(used_at), "{}", c.backend);
        assert_eq!(c.pending().await, before + 1, "{}", c.backend);

        assert!(
            !c.store
                .use_login_token(
                    &token.id,
                    used_at + micros(1),
                    &events("user.login-token.use", 1)
                )
                .await
                .unwrap(),
            "{}: the second use loses",
            c.backend
        );
        assert_eq!(
            c.get_token(&token.id).await.unwrap().used_at,
            Some(used_at),
            "{}: the first use's time stays",
            c.backend
        );
        let unknown = Token::generate(TokenType::LoginToken);
        assert!(
            !c.store
                .use_login_token(unknown.id(), used_at, &events("user.login-token.use", 1))
                .await
                .unwrap(),
            "{}: an unknown token",
            c.backend
        );
        assert_eq!(c.pending().await, before + 1, "{}: no event", c.backend);
    }

    pub async fn concurrent_uses_of_one_login_token_have_exactly_one_winner(c: Case<'_>) {
        for round in 0..5 {
            let token = login_token("alice", now());
            c.insert_token(&token, 100).await;
            let before = c.pending().await;
            let tasks: Vec<_> = (0..8)
                .map(|_| {
                    let store = c.store.clone();
                    let id = token.id.clone();
                    tokio::spawn(async move {
                        store
                            .use_login_token(&id, now(), &events("user.login-token.use", 1))
                            .await
                    })
                })
                .collect();
            let mut winners = 0;
            for task in tasks {
                if task.await.expect("task").expect("no store error") {
                    winners += 1;
                }
            }
            assert_eq!(winners, 1, "{}: round {round}", c.backend);
            assert_eq!(
                c.pending().await,
                before + 1,
                "{}: round {round}: one event",
                c.backend
            );
        }
    }

    pub async fn concurrent_login_token_inserts_cannot_slip_under_the_cap(c: Case<'_>) {
        let at = now();
        let tasks: Vec<_> = (0..10)
            .map(|i| {
                let store = c.store.clone();
                let token = login_token("alice", at + micros(i));
                tokio::spawn(async move {
                    store
                        .insert_login_token(&token, 3, &events("user.login-token.create", 1), &[])
                        .await
                })
            })
            .collect();
        let mut stored = 0;
        for task in tasks {
            match task.await.expect("task") {
                Ok(()) => stored += 1,
                Err(StoreError::TooManyLoginTokens) => {}
                Err(e) => panic!("{}: {e:?}", c.backend),
            }
        }
        assert_eq!(stored, 3, "{}", c.backend);
        assert_eq!(c.rows_of("login_tokens", "alice").await, 3, "{}", c.backend);
        assert_eq!(c.pending().await, 3, "{}: one event each", c.backend);
    }

    pub async fn every_change_writes_exactly_its_events_and_wakes_the_relay(c: Case<'_>) {
        let at = now();
        let k = key("alice", at);
        let mut expected = Vec::new();
        let mut wrote = |events: Vec<Event>| {
            expected.extend(events.iter().map(|e| e.unique_id.clone()));
            events
        };
        // Committed changes: every event, in order, and a wake-up.
        let evs = wrote(events("user.api-key.create", 2));
        c.store.insert_api_key(&k, &evs).await.unwrap();
        assert!(c.relay_woken(), "{}: after insert", c.backend);

        let mut changed = k.clone();
        changed.name = "changed".into();
        changed.updated_at = at + micros(1);
        let evs = wrote(events("user.api-key.update", 2));
        assert!(c.store.update_api_key(&changed, &evs).await.unwrap());
        assert!(c.relay_woken(), "{}: after update", c.backend);

        let token = login_token("alice", at);
        let evs = wrote(events("user.login-token.create", 1));
        c.store
            .insert_login_token(&token, 5, &evs, &[])
            .await
            .unwrap();
        assert!(c.relay_woken(), "{}: after token insert", c.backend);

        let evs = wrote(events("user.login-token.use", 1));
        assert!(
            c.store
                .use_login_token(&token.id, now(), &evs)
                .await
                .unwrap()
        );
        assert!(c.relay_woken(), "{}: after token use", c.backend);

        let evs = wrote(events("user.api-key.delete", 1));
        assert!(c.store.delete_api_key("alice", &k.id, &evs).await.unwrap());
        assert!(c.relay_woken(), "{}: after delete", c.backend);
        assert_eq!(c.outbox_ids().await, expected, "{}", c.backend);

        // Failed changes: no event and no wake-up.
        let failures: Vec<(&str, bool)> = vec![
            (
                "update of a missing key",
                c.store
                    .update_api_key(&changed, &events("user.api-key.update", 1))
                    .await
                    .unwrap(),
            ),
            (
                "delete of a missing key",
                c.store
                    .delete_api_key("alice", &k.id, &events("user.api-key.delete", 1))
                    .await
                    .unwrap(),
            ),
            (
                "second use of a token",
                c.store
                    .use_login_token(&token.id, now(), &events("user.login-token.use", 1))
                    .await
                    .unwrap(),
            ),
        ];
        for (what, succeeded) in failures {
            assert!(!succeeded, "{}: {what}", c.backend);
        }
        let kept = key("bob", at);
        c.store.insert_api_key(&kept, &[]).await.unwrap();
        let mut duplicate = key("bob", at);
        duplicate.id = kept.id.clone();
        assert!(
            c.store
                .insert_api_key(&duplicate, &events("user.api-key.create", 1))
                .await
                .is_err()
        );
        let full = login_token("carol", at);
        c.store
            .insert_login_token(&full, 1, &[], &[])
            .await
            .unwrap();
        assert!(
            c.store
                .insert_login_token(
                    &login_token("carol", at),
                    1,
                    &events("user.login-token.create", 1),
                    &[]
                )
                .await
                .is_err()
        );
        assert_eq!(
            c.outbox_ids().await,
            expected,
            "{}: failed changes wrote nothing",
            c.backend
        );
        assert!(
            !c.relay_woken(),
            "{}: neither failures nor changes without events wake the relay",
            c.backend
        );
    }
}
