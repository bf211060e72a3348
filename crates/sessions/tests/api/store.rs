//! The store conformance suite: every case is written once against
//! `SessionStore` and run on a migrated PostgreSQL schema and a migrated
//! SQLite file. Each case also checks the outbox: a change writes exactly
//! its events in its own transaction, a change that does nothing none.

use std::any::Any;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use futures::FutureExt;
use roster_core::db::Db;
use roster_core::events::{new_event, outbox};
use roster_core::time::now;
use roster_core::token::{Token, TokenHasher, TokenType};
use roster_proto::v1::Event;
use roster_sessions::store::{
    self, SessionOrder, SessionQuery, SessionRecord, SessionStore, StoreError,
};
use roster_test_support::{Backend, TestDb};
use tokio::sync::Notify;

use crate::support::on_both_backends;

on_both_backends!(
    a_session_round_trips_with_every_field,
    a_taken_session_id_already_exists_and_changes_nothing,
    sessions_are_listed_in_every_order_in_both_directions,
    sessions_are_paged_and_counted_per_user,
    a_new_session_prunes_only_its_users_sessions_expired_before_the_cutoff,
    session_ids_of_names_every_session_of_the_user_and_no_other,
    deleting_sessions_removes_only_the_users_own_and_writes_events_only_when_one_went,
    recorded_events_reach_the_outbox_as_they_are,
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
}

fn events(name: &str, n: usize) -> Vec<Event> {
    (0..n).map(|_| new_event(name, vec![], None)).collect()
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
}
