//! The store conformance suite: every case is written once against
//! `SessionStore` and run on a migrated PostgreSQL schema and a migrated
//! SQLite file. Each case also checks the outbox: a change writes exactly
//! its events in its own transaction, a change that does nothing none.

use std::any::Any;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};
use futures::FutureExt;
use roster_core::db::Db;
use roster_core::events::{new_event, outbox};
use roster_core::time::now;
use roster_core::token::{Token, TokenHasher, TokenType};
use roster_proto::v1::Event;
use roster_sessions::store::{
    self, FailurePolicy, Failures, SessionOrder, SessionQuery, SessionRecord, SessionStore,
    StoreError,
};
use roster_test_support::{Backend, TestDb};
use tokio::sync::Notify;

use crate::support::on_both_backends;

on_both_backends!(
    a_session_round_trips_with_every_field,
    a_taken_session_id_already_exists_and_changes_nothing,
    sessions_are_listed_in_every_order_in_both_directions,
    sessions_are_paged_and_counted_per_user,
    a_new_session_clears_only_its_users_failed_logins,
    a_new_session_prunes_only_its_users_sessions_expired_before_the_cutoff,
    session_ids_of_names_every_session_of_the_user_and_no_other,
    deleting_sessions_removes_only_the_users_own_and_writes_events_only_when_one_went,
    recorded_events_reach_the_outbox_as_they_are,
    failures_within_the_window_add_up,
    failures_older_than_the_window_stop_counting,
    reaching_max_failures_locks_once_and_failures_while_locked_do_not_count,
    the_lock_is_reported_while_it_lasts_and_counting_starts_afresh_after_it,
    failures_of_one_user_do_not_count_for_another,
    concurrent_failures_of_one_user_lock_it_exactly_once,
    the_events_of_a_failure_are_built_from_its_outcome_and_written_with_it,
);

/// One backend's migrated store, and what it writes behind its back.
struct Case {
    store: Arc<dyn SessionStore>,
    db: Db,
    relay: Arc<Notify>,
    backend: Backend,
    _keep: Box<dyn Any>,
}

impl Case {
    /// A fresh database on `backend` (PostgreSQL: the service's own schema
    /// as `rosterd` opens it), migrated, and the store on it.
    async fn open(backend: Backend) -> Case {
        let (db, keep): (Db, Box<dyn Any>) = match backend {
            Backend::Postgres => {
                let pg = TestDb::new().await;
                let db = pg.pool_for(roster_sessions::NAME).await;
                (db, Box::new(pg))
            }
            Backend::Sqlite => {
                let (dir, path) = roster_test_support::db::sqlite_file();
                let db = Db::open_sqlite(&path, 5)
                    .await
                    .unwrap_or_else(|e| panic!("open {}: {e:#}", path.display()));
                (db, Box::new(dir))
            }
        };
        store::migrations()
            .run(&db)
            .await
            .unwrap_or_else(|e| panic!("{backend:?}: migrations: {e:#}"));
        let relay = Arc::new(Notify::new());
        let store = store::open(&db, relay.clone());
        Case {
            store,
            db,
            relay,
            backend,
            _keep: keep,
        }
    }

    async fn pending(&self) -> i64 {
        outbox::pending(&self.db).await.expect("count the outbox")
    }

    /// The (unique id, name) of every outbox row, oldest first.
    async fn outbox(&self) -> Vec<(String, String)> {
        let sql = "SELECT unique_id, name FROM roster_outbox ORDER BY id";
        match &self.db {
            Db::Postgres(pool) => sqlx::query_as(sql).fetch_all(pool).await.unwrap(),
            Db::Sqlite(pool) => sqlx::query_as(sql).fetch_all(pool).await.unwrap(),
        }
    }

    /// Rows of `login_failures` for `user_id`, read behind the store's
    /// back.
    async fn failure_rows(&self, user_id: &str) -> i64 {
        let sql = "SELECT COUNT(*) FROM login_failures WHERE user_id = $1";
        match &self.db {
            Db::Postgres(pool) => sqlx::query_scalar(sql)
                .bind(user_id)
                .fetch_one(pool)
                .await
                .unwrap(),
            Db::Sqlite(pool) => sqlx::query_scalar(sql)
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

    /// Inserts `session` with one `user.login` event, pruning nothing.
    async fn insert(&self, session: &SessionRecord) {
        self.insert_pruning(session, session.created_at - Duration::days(3650))
            .await;
    }

    async fn insert_pruning(&self, session: &SessionRecord, prune_before: DateTime<Utc>) {
        self.store
            .insert_session(session, prune_before, &events("user.login", 1))
            .await
            .unwrap_or_else(|e| panic!("{:?}: insert session {}: {e:?}", self.backend, session.id));
    }

    async fn get(&self, id: &str) -> Option<SessionRecord> {
        self.store.get_session(id).await.unwrap()
    }

    /// The IDs of `user_id`'s sessions in `order`, one page of 100.
    async fn listed(&self, user_id: &str, order: SessionOrder, descending: bool) -> Vec<String> {
        let (sessions, total) = self
            .store
            .list_sessions(SessionQuery {
                user_id,
                order,
                descending,
                limit: 100,
                offset: 0,
            })
            .await
            .unwrap();
        assert_eq!(total as usize, sessions.len(), "{:?}", self.backend);
        sessions.into_iter().map(|s| s.id).collect()
    }

    /// One failed login of `user_id` at `at` under `policy`, with one
    /// `user.login_failed` event and a `user.lock` event when it locks.
    async fn fail(&self, user_id: &str, at: DateTime<Utc>, policy: FailurePolicy) -> Failures {
        self.store
            .record_failure(user_id, at, policy, &failure_events)
            .await
            .unwrap_or_else(|e| panic!("{:?}: record a failure: {e:?}", self.backend))
    }
}

fn events(name: &str, n: usize) -> Vec<Event> {
    (0..n).map(|_| new_event(name, vec![], None)).collect()
}

/// What the service writes for a failed login: one `user.login_failed`,
/// and a `user.lock` when the failure locked the account.
fn failure_events(outcome: &Failures) -> Vec<Event> {
    let mut out = events("user.login_failed", 1);
    if outcome.newly_locked {
        out.extend(events("user.lock", 1));
    }
    out
}

/// Five failures in fifteen minutes lock for fifteen minutes, at `at`.
fn policy(at: DateTime<Utc>) -> FailurePolicy {
    policy_with(at, 5)
}

fn policy_with(at: DateTime<Utc>, max_failures: u32) -> FailurePolicy {
    FailurePolicy {
        window_start: at - Duration::minutes(15),
        max_failures,
        lock_until: at + Duration::minutes(15),
    }
}

/// A session of `user_id` created at `at`, valid for 30 days, with a real
/// token's ID and digest.
fn session(user_id: &str, at: DateTime<Utc>) -> SessionRecord {
    let token = Token::generate(TokenType::Session);
    SessionRecord {
        id: token.id().into(),
        user_id: user_id.into(),
        secret_hash: TokenHasher::new("").hash(&token),
        created_at: at,
        updated_at: at,
        expires_at: at + Duration::days(30),
        remote_ip: "127.0.0.1".into(),
        user_agent: "store-tests".into(),
        password_update_only: false,
    }
}

fn micros(n: i64) -> Duration {
    Duration::microseconds(n)
}

/// The current time truncated to whole seconds.
fn whole_second() -> DateTime<Utc> {
    DateTime::from_timestamp(now().timestamp(), 0).unwrap()
}

/// `sessions` sorted by `key`, the ID ascending breaking ties, as IDs.
fn sorted_ids<K: Ord>(
    sessions: &[SessionRecord],
    descending: bool,
    key: impl Fn(&SessionRecord) -> K,
) -> Vec<String> {
    let mut sessions = sessions.to_vec();
    sessions.sort_by(|a, b| {
        let by_key = key(a).cmp(&key(b));
        let by_key = if descending { by_key.reverse() } else { by_key };
        by_key.then_with(|| a.id.cmp(&b.id))
    });
    sessions.into_iter().map(|s| s.id).collect()
}

async fn a_session_round_trips_with_every_field(backend: Backend) {
    let c = Case::open(backend).await;
    let at = now();
    let mut full = session("alice", at - Duration::hours(1) + micros(1));
    full.updated_at = at;
    full.expires_at = at + Duration::days(30) + micros(7);
    full.remote_ip = "2001:db8::7".into();
    full.user_agent = "Mozilla/5.0 (Déploiement ✓; \"quoted\")".into();
    full.password_update_only = true;
    c.insert(&full).await;
    assert_eq!(c.get(&full.id).await, Some(full.clone()), "{backend:?}");
    assert_eq!(
        c.get(&full.id).await.unwrap().secret_hash,
        full.secret_hash,
        "{backend:?}: the digest is kept"
    );

    // Whole seconds and milliseconds come back as they went in; empty
    // address and agent stay empty.
    let whole = whole_second();
    let mut plain = session("alice", whole);
    plain.updated_at = whole + Duration::milliseconds(250);
    plain.remote_ip = String::new();
    plain.user_agent = String::new();
    c.insert(&plain).await;
    assert_eq!(c.get(&plain.id).await, Some(plain), "{backend:?}");

    let missing = Token::generate(TokenType::Session);
    assert_eq!(c.get(missing.id()).await, None, "{backend:?}");
    assert_eq!(c.pending().await, 2, "{backend:?}: one event per login");
    assert!(c.relay_woken(), "{backend:?}: the relay hears of them");
}

async fn a_taken_session_id_already_exists_and_changes_nothing(backend: Backend) {
    let c = Case::open(backend).await;
    let first = session("alice", now());
    c.insert(&first).await;
    let before = c.pending().await;

    let mut again = session("bob", now());
    again.id = first.id.clone();
    let result = c
        .store
        .insert_session(&again, now() - Duration::days(1), &events("user.login", 1))
        .await;
    assert!(
        matches!(result, Err(StoreError::AlreadyExists)),
        "{backend:?}: {result:?}"
    );
    assert_eq!(c.get(&first.id).await, Some(first), "{backend:?}");
    assert_eq!(c.pending().await, before, "{backend:?}: no event");
    assert!(c.store.session_ids_of("bob").await.unwrap().is_empty());
}

async fn sessions_are_listed_in_every_order_in_both_directions(backend: Backend) {
    let c = Case::open(backend).await;
    let base = whole_second();
    // (created, updated, expires) in microseconds after `base`: ties in
    // each column, whole seconds, milliseconds and microseconds mixed, not
    // inserted in any order.
    let spec: &[(i64, i64, i64)] = &[
        (0, 5_000_000, 3_000_000),
        (1_000_000, 5_000_000, 1_000_000),
        (1_500_000, 2_000_001, 3_000_000),
        (1_000_001, 9_000_000, 2_500_000),
        (1_000_000, 1_000_000, 7_000_000),
        (2_000_000, 2_000_001, 1_000_000),
        (999_999, 4_000_000, 999_000),
    ];
    let mut sessions = Vec::new();
    for (created, updated, expires) in spec {
        let mut s = session("alice", base + micros(*created));
        s.updated_at = base + micros(*updated);
        s.expires_at = base + Duration::days(30) + micros(*expires);
        c.insert(&s).await;
        sessions.push(s);
    }
    // Another user's sessions never show.
    c.insert(&session("bob", base)).await;

    for descending in [false, true] {
        let cases = [
            (
                SessionOrder::CreatedAt,
                sorted_ids(&sessions, descending, |s| s.created_at),
            ),
            (
                SessionOrder::UpdatedAt,
                sorted_ids(&sessions, descending, |s| s.updated_at),
            ),
            (
                SessionOrder::ExpiresAt,
                sorted_ids(&sessions, descending, |s| s.expires_at),
            ),
        ];
        for (order, expected) in cases {
            assert_eq!(
                c.listed("alice", order, descending).await,
                expected,
                "{backend:?}: {order:?} descending={descending}"
            );
        }
    }
}

async fn sessions_are_paged_and_counted_per_user(backend: Backend) {
    let c = Case::open(backend).await;
    let at = now();
    let mut alice = Vec::new();
    for i in 0..7 {
        let s = session("alice", at + micros(i));
        c.insert(&s).await;
        alice.push(s.id);
    }
    for i in 0..2 {
        c.insert(&session("bob", at + micros(i))).await;
    }

    let mut seen = Vec::new();
    for (offset, size) in [(0, 3), (3, 3), (6, 1), (9, 0)] {
        let (page, total) = c
            .store
            .list_sessions(SessionQuery {
                user_id: "alice",
                order: SessionOrder::CreatedAt,
                descending: false,
                limit: 3,
                offset,
            })
            .await
            .unwrap();
        assert_eq!(page.len(), size, "{backend:?}: offset {offset}");
        assert_eq!(total, 7, "{backend:?}: the total of every page");
        assert!(page.iter().all(|s| s.user_id == "alice"), "{backend:?}");
        seen.extend(page.into_iter().map(|s| s.id));
    }
    assert_eq!(
        seen, alice,
        "{backend:?}: the pages cover every session once, oldest first"
    );

    for (user_id, total) in [("bob", 2), ("nobody", 0)] {
        let (page, counted) = c
            .store
            .list_sessions(SessionQuery {
                user_id,
                order: SessionOrder::ExpiresAt,
                descending: true,
                limit: 100,
                offset: 0,
            })
            .await
            .unwrap();
        assert_eq!(page.len() as u64, total, "{backend:?}: {user_id}");
        assert_eq!(counted, total, "{backend:?}: {user_id}");
    }
}

async fn a_new_session_clears_only_its_users_failed_logins(backend: Backend) {
    let c = Case::open(backend).await;
    let at = now();
    // Alice is locked, Bob has one failure, Carol is locked too.
    for _ in 0..5 {
        c.fail("alice", at, policy(at)).await;
        c.fail("carol", at, policy(at)).await;
    }
    c.fail("bob", at, policy(at)).await;
    assert!(c.store.locked_until("alice").await.unwrap().is_some());

    c.insert(&session("alice", at)).await;
    assert_eq!(c.failure_rows("alice").await, 0, "{backend:?}: row gone");
    assert_eq!(
        c.store.locked_until("alice").await.unwrap(),
        None,
        "{backend:?}: no lock left"
    );
    assert_eq!(
        c.fail("alice", at, policy(at)).await.failures,
        1,
        "{backend:?}: counting starts over"
    );

    assert_eq!(
        c.store.locked_until("carol").await.unwrap(),
        Some(at + Duration::minutes(15)),
        "{backend:?}: another user's lock stays"
    );
    assert_eq!(
        c.fail("bob", at, policy(at)).await.failures,
        2,
        "{backend:?}: another user's count stays"
    );
}

async fn a_new_session_prunes_only_its_users_sessions_expired_before_the_cutoff(backend: Backend) {
    let c = Case::open(backend).await;
    let at = now();
    // The cutoff has milliseconds; the sessions around it microseconds.
    let cutoff = whole_second() - Duration::days(7) + Duration::milliseconds(500);
    let expiring = |user_id: &str, expires_at: DateTime<Utc>| {
        let mut s = session(user_id, expires_at - Duration::days(30));
        s.expires_at = expires_at;
        s
    };
    let long_gone = expiring("alice", cutoff - Duration::days(20));
    let just_before = expiring("alice", cutoff - micros(1));
    let at_cutoff = expiring("alice", cutoff);
    let just_after = expiring("alice", cutoff + micros(1));
    let expired_lately = expiring("alice", at - Duration::hours(1));
    let live = session("alice", at - Duration::days(1));
    let bobs_old = expiring("bob", cutoff - Duration::days(20));
    for s in [
        &long_gone,
        &just_before,
        &at_cutoff,
        &just_after,
        &expired_lately,
        &live,
        &bobs_old,
    ] {
        c.insert(s).await;
    }
    let before = c.pending().await;

    let new = session("alice", at);
    c.insert_pruning(&new, cutoff).await;

    let mut expected = vec![
        at_cutoff.id.clone(),
        just_after.id.clone(),
        expired_lately.id.clone(),
        live.id.clone(),
        new.id.clone(),
    ];
    expected.sort();
    let mut left = c.store.session_ids_of("alice").await.unwrap();
    left.sort();
    assert_eq!(
        left, expected,
        "{backend:?}: only sessions that expired before the cutoff went"
    );
    assert_eq!(c.get(&long_gone.id).await, None, "{backend:?}");
    assert_eq!(c.get(&just_before.id).await, None, "{backend:?}");
    assert_eq!(
        c.get(&bobs_old.id).await,
        Some(bobs_old),
        "{backend:?}: another user's expired session stays"
    );
    assert_eq!(
        c.pending().await,
        before + 1,
        "{backend:?}: the login's event"
    );
}

async fn session_ids_of_names_every_session_of_the_user_and_no_other(backend: Backend) {
    let c = Case::open(backend).await;
    let at = now();
    assert!(c.store.session_ids_of("alice").await.unwrap().is_empty());
    let mut alice = Vec::new();
    for i in 0..4 {
        // Expired ones too: they are still the user's.
        let mut s = session("alice", at - Duration::days(40) + Duration::days(i * 10));
        s.password_update_only = i % 2 == 0;
        c.insert(&s).await;
        alice.push(s.id);
    }
    c.insert(&session("bob", at)).await;
    c.insert(&session("alice-2", at)).await;
    let mut listed = c.store.session_ids_of("alice").await.unwrap();
    listed.sort();
    alice.sort();
    assert_eq!(listed, alice, "{backend:?}");
}

async fn deleting_sessions_removes_only_the_users_own_and_writes_events_only_when_one_went(
    backend: Backend,
) {
    let c = Case::open(backend).await;
    let at = now();
    let a1 = session("alice", at);
    let a2 = session("alice", at);
    let a3 = session("alice", at);
    let b1 = session("bob", at);
    for s in [&a1, &a2, &a3, &b1] {
        c.insert(s).await;
    }
    let _ = c.relay_woken();
    let before = c.pending().await;

    // Bob's session and an unknown ID are not Alice's to delete.
    let unknown = Token::generate(TokenType::Session).id().to_string();
    let deleted = c
        .store
        .delete_sessions(
            "alice",
            &[a1.id.clone(), b1.id.clone(), unknown.clone(), a2.id.clone()],
            &events("user.session.delete", 4),
        )
        .await
        .unwrap();
    assert_eq!(deleted, 2, "{backend:?}: Alice's two");
    assert_eq!(c.get(&a1.id).await, None, "{backend:?}");
    assert_eq!(c.get(&a2.id).await, None, "{backend:?}");
    assert_eq!(c.get(&a3.id).await, Some(a3.clone()), "{backend:?}");
    assert_eq!(c.get(&b1.id).await, Some(b1.clone()), "{backend:?}");
    assert_eq!(
        c.pending().await,
        before + 4,
        "{backend:?}: the events as given"
    );
    assert!(c.relay_woken(), "{backend:?}");

    // Nothing of Alice's among them: nothing deleted, no event written.
    for ids in [
        vec![a1.id.clone()],
        vec![b1.id.clone(), unknown],
        Vec::new(),
    ] {
        let deleted = c
            .store
            .delete_sessions("alice", &ids, &events("user.session.delete", 1))
            .await
            .unwrap();
        assert_eq!(deleted, 0, "{backend:?}: {ids:?}");
    }
    assert_eq!(c.pending().await, before + 4, "{backend:?}: no event");
    assert!(!c.relay_woken(), "{backend:?}: nothing to relay");
    assert_eq!(c.get(&b1.id).await, Some(b1), "{backend:?}");
    assert_eq!(
        c.store.session_ids_of("alice").await.unwrap(),
        [a3.id],
        "{backend:?}"
    );
}

async fn recorded_events_reach_the_outbox_as_they_are(backend: Backend) {
    let c = Case::open(backend).await;
    c.store.record_events(&[]).await.unwrap();
    assert_eq!(c.pending().await, 0, "{backend:?}");
    assert!(!c.relay_woken(), "{backend:?}: nothing to relay");

    let mut written = events("user.login_failed", 2);
    written.extend(events("user.logout", 1));
    c.store.record_events(&written).await.unwrap();
    let expected: Vec<(String, String)> = written
        .iter()
        .map(|e| (e.unique_id.clone(), e.name.clone()))
        .collect();
    assert_eq!(c.outbox().await, expected, "{backend:?}: in order");
    assert!(c.relay_woken(), "{backend:?}");
    // Nothing else changed.
    assert_eq!(c.failure_rows("alice").await, 0, "{backend:?}");
}

async fn failures_within_the_window_add_up(backend: Backend) {
    let c = Case::open(backend).await;
    let start = now();
    for (n, minutes) in [(1, 0), (2, 5), (3, 10), (4, 14)] {
        let at = start + Duration::minutes(minutes);
        let outcome = c.fail("alice", at, policy(at)).await;
        assert_eq!(
            outcome,
            Failures {
                failures: n,
                locked_until: None,
                newly_locked: false,
            },
            "{backend:?}: failure {n}"
        );
    }
    assert_eq!(c.store.locked_until("alice").await.unwrap(), None);
    assert_eq!(c.pending().await, 4, "{backend:?}: one event each");
}

async fn failures_older_than_the_window_stop_counting(backend: Backend) {
    let c = Case::open(backend).await;
    let t0 = now();
    // A sliding window of fifteen minutes: each failure counts those of
    // the fifteen minutes before it.
    for (minutes, expected) in [(0, 1), (10, 2), (16, 2), (27, 2), (50, 1)] {
        let at = t0 + Duration::minutes(minutes);
        let outcome = c.fail("alice", at, policy(at)).await;
        assert_eq!(
            outcome,
            Failures {
                failures: expected,
                locked_until: None,
                newly_locked: false,
            },
            "{backend:?}: the failure at +{minutes} min"
        );
    }
    // Exactly at the window's start still counts.
    let edge = t0 + Duration::minutes(65);
    assert_eq!(
        c.fail("alice", edge, policy(edge)).await.failures,
        2,
        "{backend:?}: +50 min is exactly fifteen minutes before +65 min"
    );
    assert_eq!(c.store.locked_until("alice").await.unwrap(), None);
}

async fn reaching_max_failures_locks_once_and_failures_while_locked_do_not_count(backend: Backend) {
    let c = Case::open(backend).await;
    let at = now();
    let until = at + Duration::minutes(15);
    let mut outcomes = Vec::new();
    for i in 0..8 {
        let t = at + micros(i);
        let mut p = policy(t);
        p.lock_until = until;
        outcomes.push(c.fail("alice", t, p).await);
    }
    assert_eq!(
        outcomes.iter().map(|o| o.failures).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5, 0, 0, 0],
        "{backend:?}: the locking failure reports the limit; failures while locked are not counted"
    );
    assert_eq!(
        outcomes.iter().filter(|o| o.newly_locked).count(),
        1,
        "{backend:?}: locked once"
    );
    assert!(outcomes[4].newly_locked, "{backend:?}: by the fifth");
    assert!(
        outcomes[..4].iter().all(|o| o.locked_until.is_none()),
        "{backend:?}"
    );
    assert!(
        outcomes[4..].iter().all(|o| o.locked_until == Some(until)),
        "{backend:?}: every later failure reports the lock: {outcomes:?}"
    );
    assert_eq!(
        c.pending().await,
        9,
        "{backend:?}: eight failures and one lock"
    );
    let names: Vec<String> = c.outbox().await.into_iter().map(|(_, n)| n).collect();
    assert_eq!(names[5], "user.lock", "{backend:?}: right after the fifth");
}

async fn the_lock_is_reported_while_it_lasts_and_counting_starts_afresh_after_it(backend: Backend) {
    let c = Case::open(backend).await;
    let at = now();
    let lock = policy_with(at, 2);
    c.fail("alice", at, lock).await;
    let locked = c.fail("alice", at, lock).await;
    assert!(locked.newly_locked, "{backend:?}");
    assert_eq!(locked.locked_until, Some(lock.lock_until));
    assert_eq!(
        c.store.locked_until("alice").await.unwrap(),
        Some(lock.lock_until),
        "{backend:?}"
    );
    assert_eq!(c.store.locked_until("bob").await.unwrap(), None);

    // Failing while locked neither extends nor renews the lock.
    let during = at + Duration::minutes(5);
    let mut p = policy_with(during, 2);
    p.lock_until = during + Duration::minutes(15);
    for _ in 0..3 {
        let outcome = c.fail("alice", during, p).await;
        assert!(!outcome.newly_locked, "{backend:?}");
        assert_eq!(outcome.failures, 0, "{backend:?}: not counted while locked");
        assert_eq!(outcome.locked_until, Some(lock.lock_until), "{backend:?}");
    }
    assert_eq!(
        c.store.locked_until("alice").await.unwrap(),
        Some(lock.lock_until),
        "{backend:?}"
    );

    // Right after the lock, failures count afresh (those made while it
    // lasted, ten minutes ago, are not held against the user) and lock
    // again.
    let after = lock.lock_until + micros(1);
    let next = policy_with(after, 2);
    let first = c.fail("alice", after, next).await;
    assert_eq!(
        first,
        Failures {
            failures: 1,
            locked_until: None,
            newly_locked: false,
        },
        "{backend:?}: an ended lock is not reported"
    );
    let second = c.fail("alice", after, next).await;
    assert!(second.newly_locked, "{backend:?}: locked again");
    assert_eq!(
        c.store.locked_until("alice").await.unwrap(),
        Some(next.lock_until),
        "{backend:?}"
    );
}

async fn failures_of_one_user_do_not_count_for_another(backend: Backend) {
    let c = Case::open(backend).await;
    let at = now();
    for _ in 0..4 {
        c.fail("alice", at, policy(at)).await;
    }
    let bob = c.fail("bob", at, policy(at)).await;
    assert_eq!(bob.failures, 1, "{backend:?}");
    let alice = c.fail("alice", at, policy(at)).await;
    assert!(alice.newly_locked, "{backend:?}");
    assert_eq!(c.store.locked_until("bob").await.unwrap(), None);
    assert_eq!(c.fail("bob", at, policy(at)).await.failures, 2);
}

async fn concurrent_failures_of_one_user_lock_it_exactly_once(backend: Backend) {
    let c = Case::open(backend).await;
    let at = now();
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let store = c.store.clone();
            tokio::spawn(async move {
                store
                    .record_failure("alice", at, policy(at), &failure_events)
                    .await
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(
            task.await
                .expect("the task ran")
                .unwrap_or_else(|e| panic!("{backend:?}: a concurrent failure failed: {e:?}")),
        );
    }
    assert_eq!(
        outcomes.iter().filter(|o| o.newly_locked).count(),
        1,
        "{backend:?}: exactly one locks: {outcomes:?}"
    );
    let mut counts: Vec<u32> = outcomes.iter().map(|o| o.failures).collect();
    counts.sort();
    assert_eq!(
        counts,
        [0, 0, 0, 1, 2, 3, 4, 5],
        "{backend:?}: one after the other up to the lock, none counted after it"
    );
    assert_eq!(
        c.pending().await,
        9,
        "{backend:?}: eight failures, one lock"
    );
    let locks = c
        .outbox()
        .await
        .into_iter()
        .filter(|(_, name)| name == "user.lock")
        .count();
    assert_eq!(locks, 1, "{backend:?}");
}

async fn the_events_of_a_failure_are_built_from_its_outcome_and_written_with_it(backend: Backend) {
    let c = Case::open(backend).await;
    let at = now();
    let p = policy_with(at, 2);

    // The closure sees the outcome the store returns, and what it builds
    // is what lands in the outbox.
    let seen = Mutex::new(Vec::new());
    let built = Mutex::new(Vec::new());
    let build = |outcome: &Failures| {
        seen.lock().unwrap().push(*outcome);
        let out = failure_events(outcome);
        built.lock().unwrap().extend(out.iter().cloned());
        out
    };
    let first = c
        .store
        .record_failure("alice", at, p, &build)
        .await
        .unwrap();
    let second = c
        .store
        .record_failure("alice", at, p, &build)
        .await
        .unwrap();
    assert_eq!(*seen.lock().unwrap(), [first, second], "{backend:?}");
    let expected: Vec<(String, String)> = built
        .lock()
        .unwrap()
        .iter()
        .map(|e| (e.unique_id.clone(), e.name.clone()))
        .collect();
    assert_eq!(expected.len(), 3, "{backend:?}: two failures and a lock");
    assert_eq!(c.outbox().await, expected, "{backend:?}");

    // No events, no outbox rows; the failure still counts.
    let quiet = c
        .store
        .record_failure("bob", at, p, &|_: &Failures| Vec::new())
        .await
        .unwrap();
    assert_eq!(quiet.failures, 1, "{backend:?}");
    assert_eq!(c.pending().await, 3, "{backend:?}");

    // The events are built inside the transaction: when building them
    // fails, the failure is not counted either.
    let before = c.pending().await;
    let broken = AssertUnwindSafe(c.store.record_failure(
        "bob",
        at,
        p,
        &|_: &Failures| -> Vec<Event> { panic!("building the events failed (on purpose)") },
    ))
    .catch_unwind()
    .await;
    assert!(broken.is_err(), "{backend:?}: the build panicked");
    let next = tokio::time::timeout(
        std::time::Duration::from_secs(15),
        c.store.record_failure("bob", at, p, &failure_events),
    )
    .await
    .expect("the broken transaction let go of its locks")
    .unwrap();
    assert_eq!(
        next,
        Failures {
            failures: 2,
            locked_until: Some(p.lock_until),
            newly_locked: true,
        },
        "{backend:?}: Bob's second counted failure locks; the broken one did not count"
    );
    assert_eq!(
        c.pending().await,
        before + 2,
        "{backend:?}: nothing of the broken one"
    );
}
