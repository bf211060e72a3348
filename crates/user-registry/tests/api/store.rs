//! The store conformance suite: every case is written once against
//! `&dyn UserStore` and run on a migrated PostgreSQL database and a
//! migrated SQLite file. Each case also checks the outbox: a state change
//! writes exactly its events in its own transaction, a failed one none.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use futures::FutureExt;
use roster_core::db::Db;
use roster_core::events::{new_event, outbox};
use roster_proto::v1::{Event, State};
use roster_test_support::TestBackend;
use roster_user_registry::convert::now;
use roster_user_registry::lockout::{Counters, Forget, Secret};
use roster_user_registry::store::{
    self, ExternalUserRecord, Keyset, OrderValue, StoreError, UserQuery, UserRecord, UserStore,
};
use tokio::sync::Notify;

/// Runs each named case of [`cases`] on both backends, as a test of the
/// same name.
macro_rules! conformance {
    ($($case:ident),* $(,)?) => {$(
        #[tokio::test]
        async fn $case() {
            for backend in TestBackend::both_migrated(&store::migrations()).await {
                let store = store::open(&backend.db, Arc::new(Notify::new()), Arc::default());
                cases::$case(&*store, &backend.db, backend.name).await;
            }
        }
    )*};
}

conformance!(
    a_user_round_trips_with_every_field,
    an_update_writes_every_field,
    attributes_are_stored_and_replaced,
    a_taken_user_id_already_exists,
    a_taken_live_email_already_exists,
    an_email_is_free_again_after_soft_delete,
    an_update_with_a_stale_previous_updated_at_conflicts,
    the_last_admin_guard_refuses_and_changes_nothing,
    only_live_approved_or_flagged_admins_count,
    purge_removes_the_user_its_attributes_and_its_external_links,
    search_filters_by_every_criterion,
    search_finds_non_ascii_text_as_spelled_with_ascii_letters_in_any_case,
    search_orders_by_every_allowed_field_with_the_id_breaking_ties,
    search_pages_and_counts_the_total,
    find_live_by_email_finds_only_live_users,
    external_user_links_are_created_read_and_deleted,
    every_change_writes_exactly_its_events_to_the_outbox,
    concurrent_inserts_of_one_id_or_one_email_have_one_winner,
    concurrent_demotions_of_the_last_two_admins_leave_one,
    password_failures_lock_the_client_then_the_account_and_clear,
    concurrent_password_failures_lock_the_account_exactly_once,
    second_factor_failures_count_apart_from_password_failures,
);

/// A PHC string shaped like a real hash; the store treats it as opaque.
const HASH: &str = "$argon2id$v=19$m=1024,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo";

/// A live, approved, non-admin user with nothing optional set.
fn user(user_id: &str, at: DateTime<Utc>) -> UserRecord {
    UserRecord {
        user_id: user_id.into(),
        name: format!("User {user_id}"),
        description: String::new(),
        attributes: BTreeMap::new(),
        primary_email_address: format!("{user_id}@example.com"),
        email_normalized: format!("{user_id}@example.com"),
        primary_email_address_validated_at: None,
        password_hash: HASH.into(),
        password_updated_at: at,
        require_password_update: false,
        state: State::Approved as i32,
        state_description: String::new(),
        admin: false,
        temporary_password_hash: None,
        temporary_password_created_at: None,
        temporary_password_expires_at: None,
        email_validation_hash: None,
        email_validation_expires_at: None,
        profile_picture: None,
        email_notification_types: Vec::new(),
        universal_rights: None,
        created_at: at,
        updated_at: at,
        deleted_at: None,
        lifecycle: Default::default(),
        user_type: 0,
    }
}

/// A user with every field set to something other than its default, and
/// timestamps at microsecond precision.
fn full_user(user_id: &str, at: DateTime<Utc>) -> UserRecord {
    let micros = |n: i64| at - Duration::microseconds(n);
    UserRecord {
        user_id: user_id.into(),
        name: "Ada Lovelace-Byron".into(),
        description: "First programmer.\nLine two, with unicode: é ✓".into(),
        attributes: BTreeMap::from([
            ("team".to_string(), "analytical-engine".to_string()),
            ("floor".to_string(), "3".to_string()),
        ]),
        primary_email_address: format!("{}@Example.COM", user_id.to_uppercase()),
        email_normalized: format!("{user_id}@example.com"),
        primary_email_address_validated_at: Some(micros(86_400_000_001)),
        password_hash: HASH.into(),
        password_updated_at: micros(3_600_000_123),
        require_password_update: true,
        state: State::Suspended as i32,
        state_description: "under review".into(),
        admin: true,
        temporary_password_hash: Some(format!("{HASH}-temporary")),
        temporary_password_created_at: Some(micros(999_999)),
        temporary_password_expires_at: Some(at + Duration::hours(1) + Duration::microseconds(7)),
        email_validation_hash: Some(roster_core::token::hash_secret("validation-secret")),
        email_validation_expires_at: Some(micros(-86_400_000_000)),
        profile_picture: Some(vec![0, 1, 2, 254, 255, 0x0a, 0]),
        email_notification_types: vec![1, 3, 7],
        universal_rights: Some(vec![1, 2, 60]),
        created_at: micros(7_200_000_001),
        updated_at: micros(1),
        deleted_at: None,
        lifecycle: roster_user_registry::store::Lifecycle {
            locked_at: Some(micros(3_600_000_003)),
            lock_reason: "under review".into(),
            deactivated_at: Some(micros(3_600_000_004)),
            deactivation_reason: "left the team".into(),
            required_actions: vec![2],
            sessions_ended_at: Some(micros(3_600_000_005)),
        },
        user_type: 1,
    }
}

fn events(name: &str, n: usize) -> Vec<Event> {
    (0..n).map(|_| new_event(name, vec![], None)).collect()
}

fn link(provider_id: &str, external_id: &str, user_id: &str) -> ExternalUserRecord {
    let at = now();
    ExternalUserRecord {
        provider_id: provider_id.into(),
        external_id: external_id.into(),
        user_id: user_id.into(),
        created_at: at,
        updated_at: at - Duration::microseconds(3),
    }
}

/// Lockout settings with these limits, a one-minute window and a
/// five-minute lock.
fn lockout(
    max_failures_per_client: u32,
    max_failures: u32,
) -> roster_user_registry::lockout::LockoutConfig {
    roster_user_registry::lockout::LockoutConfig {
        max_failures_per_client,
        max_failures,
        window_secs: 60,
        lock_secs: 300,
    }
}

/// The events of a wrong password as the service builds them: a
/// `user.lock` when it locked the account.
fn lock_event(outcome: &roster_user_registry::lockout::Failures) -> Vec<Event> {
    if outcome.newly_locked {
        vec![new_event("user.lock", vec![], None)]
    } else {
        Vec::new()
    }
}

async fn pending(db: &Db) -> i64 {
    outbox::pending(db).await.expect("count the outbox")
}

/// The unique ids in the outbox, oldest first.
async fn outbox_ids(db: &Db) -> Vec<String> {
    let sql = "SELECT unique_id FROM roster_outbox ORDER BY id";
    match db {
        Db::Postgres(pool) => sqlx::query_scalar(sql).fetch_all(pool).await.unwrap(),
        Db::Sqlite(pool) => sqlx::query_scalar(sql).fetch_all(pool).await.unwrap(),
    }
}

/// Rows of `table` that belong to `user_id`, read behind the store's back.
async fn rows_of(db: &Db, table: &str, user_id: &str) -> i64 {
    let sql = format!("SELECT COUNT(*) FROM {table} WHERE user_id = $1");
    match db {
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

async fn insert(store: &dyn UserStore, record: &UserRecord) {
    store
        .insert_user(record, &events("user.create", 1))
        .await
        .unwrap_or_else(|e| panic!("insert {}: {e:?}", record.user_id));
}

async fn get(store: &dyn UserStore, user_id: &str) -> UserRecord {
    store
        .get_user(user_id)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("{user_id} is stored"))
}

/// `record` changed by `change`, with a later `updated_at`, written over
/// the stored one.
async fn update(
    store: &dyn UserStore,
    record: &UserRecord,
    change: impl FnOnce(&mut UserRecord),
) -> UserRecord {
    let mut after = record.clone();
    change(&mut after);
    after.updated_at = record.updated_at.max(now()) + Duration::microseconds(1);
    store
        .update_user(&after, record.updated_at, false, &events("user.update", 1))
        .await
        .unwrap_or_else(|e| panic!("update {}: {e:?}", record.user_id));
    after
}

async fn ids_of(store: &dyn UserStore, query: &UserQuery) -> Vec<String> {
    let (users, _) = store.search_users(query).await.unwrap();
    users.into_iter().map(|u| u.user_id).collect()
}

#[track_caller]
fn assert_already_exists(result: Result<(), StoreError>, key: &str, backend: &str) {
    match result {
        Err(StoreError::AlreadyExists(got)) => assert_eq!(got, key, "{backend}"),
        other => panic!("{backend}: expected AlreadyExists({key}), got {other:?}"),
    }
}

mod cases {
    use super::*;

    pub async fn a_user_round_trips_with_every_field(
        store: &dyn UserStore,
        db: &Db,
        backend: &str,
    ) {
        let at = now();
        let full = full_user("ada", at);
        insert(store, &full).await;
        assert_eq!(get(store, "ada").await, full, "{backend}: every field");

        // Optional values stay absent; an empty list of universal rights is
        // not the same as none.
        let mut minimal = user("min", at);
        minimal.universal_rights = Some(Vec::new());
        insert(store, &minimal).await;
        assert_eq!(get(store, "min").await, minimal, "{backend}");
        let plain = user("plain", at);
        insert(store, &plain).await;
        let stored = get(store, "plain").await;
        assert_eq!(stored.universal_rights, None, "{backend}");
        assert_eq!(stored, plain, "{backend}");

        // Whole seconds, milliseconds and microseconds all come back as
        // they went in, and a soft-deleted user is still readable.
        let whole = DateTime::from_timestamp(at.timestamp(), 0).unwrap();
        let mut deleted = user("gone", whole);
        deleted.updated_at = whole + Duration::milliseconds(250);
        deleted.deleted_at = Some(whole + Duration::microseconds(250_001));
        insert(store, &deleted).await;
        assert_eq!(get(store, "gone").await, deleted, "{backend}");

        assert!(
            store.get_user("nobody").await.unwrap().is_none(),
            "{backend}"
        );
        assert_eq!(pending(db).await, 4, "{backend}");
    }

    pub async fn an_update_writes_every_field(store: &dyn UserStore, _db: &Db, backend: &str) {
        let at = now();
        let before = user("ada", at - Duration::seconds(10));
        insert(store, &before).await;

        let mut full = full_user("ada", at);
        full.created_at = before.created_at;
        // The type is set at creation and never updated.
        full.user_type = before.user_type;
        store
            .update_user(&full, before.updated_at, false, &[])
            .await
            .unwrap();
        assert_eq!(get(store, "ada").await, full, "{backend}: every field set");

        let mut cleared = before.clone();
        cleared.updated_at = full.updated_at + Duration::microseconds(1);
        store
            .update_user(&cleared, full.updated_at, false, &[])
            .await
            .unwrap();
        assert_eq!(
            get(store, "ada").await,
            cleared,
            "{backend}: every field unset"
        );
    }

    pub async fn attributes_are_stored_and_replaced(store: &dyn UserStore, db: &Db, backend: &str) {
        let mut alice = user("alice", now());
        alice.attributes = BTreeMap::from([
            ("a".to_string(), "1".to_string()),
            ("b".to_string(), "2".to_string()),
        ]);
        insert(store, &alice).await;
        let bob = user("bob", now());
        insert(store, &bob).await;
        assert_eq!(get(store, "alice").await.attributes, alice.attributes);

        let replaced = BTreeMap::from([
            ("b".to_string(), "3".to_string()),
            ("c".to_string(), "4".to_string()),
        ]);
        let alice = update(store, &alice, |u| u.attributes = replaced.clone()).await;
        assert_eq!(
            get(store, "alice").await.attributes,
            replaced,
            "{backend}: replaced, not merged"
        );
        let (found, _) = store.search_users(&UserQuery::default()).await.unwrap();
        assert_eq!(
            found[0].attributes, replaced,
            "{backend}: search loads them"
        );
        assert!(found[1].attributes.is_empty(), "{backend}: per user");

        update(store, &alice, |u| u.attributes.clear()).await;
        assert!(get(store, "alice").await.attributes.is_empty(), "{backend}");
        assert_eq!(
            rows_of(db, "user_attributes", "alice").await,
            0,
            "{backend}"
        );
    }

    pub async fn a_taken_user_id_already_exists(store: &dyn UserStore, db: &Db, backend: &str) {
        let alice = user("alice", now());
        insert(store, &alice).await;
        let before = pending(db).await;

        let mut again = user("alice", now());
        again.primary_email_address = "other@example.com".into();
        again.email_normalized = "other@example.com".into();
        again.name = "Impostor".into();
        again.attributes.insert("k".into(), "v".into());
        assert_already_exists(
            store.insert_user(&again, &events("user.create", 1)).await,
            "user_id",
            backend,
        );
        assert_eq!(get(store, "alice").await, alice, "{backend}: untouched");
        assert_eq!(pending(db).await, before, "{backend}: no event");

        // A soft-deleted user keeps its ID until purged.
        update(store, &alice, |u| u.deleted_at = Some(now())).await;
        let before = pending(db).await;
        assert_already_exists(
            store.insert_user(&again, &events("user.create", 1)).await,
            "user_id",
            backend,
        );
        assert_eq!(pending(db).await, before, "{backend}: no event");
    }

    pub async fn a_taken_live_email_already_exists(store: &dyn UserStore, db: &Db, backend: &str) {
        let alice = user("alice", now());
        insert(store, &alice).await;
        let before = pending(db).await;

        let mut bob = user("bob", now());
        bob.primary_email_address = "ALICE@example.com".into();
        bob.email_normalized = alice.email_normalized.clone();
        assert_already_exists(
            store.insert_user(&bob, &events("user.create", 1)).await,
            "primary_email_address",
            backend,
        );
        assert!(store.get_user("bob").await.unwrap().is_none(), "{backend}");
        assert_eq!(pending(db).await, before, "{backend}: no event");

        // Changing an address to a taken one fails the same way.
        let bob = user("bob", now());
        insert(store, &bob).await;
        let before = pending(db).await;
        let mut taken = bob.clone();
        taken.email_normalized = alice.email_normalized.clone();
        taken.updated_at = bob.updated_at + Duration::microseconds(1);
        assert_already_exists(
            store
                .update_user(&taken, bob.updated_at, false, &events("user.update", 1))
                .await,
            "primary_email_address",
            backend,
        );
        assert_eq!(get(store, "bob").await, bob, "{backend}: untouched");
        assert_eq!(pending(db).await, before, "{backend}: no event");
    }

    pub async fn an_email_is_free_again_after_soft_delete(
        store: &dyn UserStore,
        _db: &Db,
        backend: &str,
    ) {
        let alice = user("alice", now());
        insert(store, &alice).await;
        let alice = update(store, &alice, |u| u.deleted_at = Some(now())).await;

        let mut bob = user("bob", now());
        bob.email_normalized = alice.email_normalized.clone();
        bob.primary_email_address = alice.primary_email_address.clone();
        store
            .insert_user(&bob, &[])
            .await
            .unwrap_or_else(|e| panic!("{backend}: the address is free: {e:?}"));

        // Restoring alice now would give the address two live owners.
        let mut restored = alice.clone();
        restored.deleted_at = None;
        restored.updated_at = alice.updated_at + Duration::microseconds(1);
        assert_already_exists(
            store
                .update_user(&restored, alice.updated_at, false, &[])
                .await,
            "primary_email_address",
            backend,
        );
        assert_eq!(get(store, "alice").await, alice, "{backend}: still deleted");
    }

    pub async fn an_update_with_a_stale_previous_updated_at_conflicts(
        store: &dyn UserStore,
        db: &Db,
        backend: &str,
    ) {
        let alice = user("alice", now());
        insert(store, &alice).await;
        let before = pending(db).await;

        let mut changed = alice.clone();
        changed.name = "Changed".into();
        changed.attributes.insert("k".into(), "v".into());
        changed.updated_at = alice.updated_at + Duration::seconds(1);
        let stale = alice.updated_at - Duration::microseconds(1);
        let result = store
            .update_user(&changed, stale, false, &events("user.update", 1))
            .await;
        assert!(
            matches!(result, Err(StoreError::Conflict)),
            "{backend}: {result:?}"
        );
        assert_eq!(get(store, "alice").await, alice, "{backend}: untouched");
        assert_eq!(pending(db).await, before, "{backend}: no event");

        // The first writer wins; the second, still holding the old
        // updated_at, conflicts.
        let first = update(store, &alice, |u| u.name = "First".into()).await;
        let result = store
            .update_user(&changed, alice.updated_at, false, &events("user.update", 1))
            .await;
        assert!(
            matches!(result, Err(StoreError::Conflict)),
            "{backend}: {result:?}"
        );
        assert_eq!(get(store, "alice").await, first, "{backend}");

        let ghost = user("ghost", now());
        let result = store
            .update_user(&ghost, ghost.updated_at, false, &events("user.update", 1))
            .await;
        assert!(
            matches!(result, Err(StoreError::Conflict)),
            "{backend}: an unknown user conflicts: {result:?}"
        );
        assert_eq!(pending(db).await, before + 1, "{backend}: only the success");
    }

    pub async fn the_last_admin_guard_refuses_and_changes_nothing(
        store: &dyn UserStore,
        db: &Db,
        backend: &str,
    ) {
        let mut root = user("root", now());
        root.admin = true;
        root.attributes.insert("role".into(), "owner".into());
        insert(store, &root).await;
        insert(store, &user("alice", now())).await;
        let before = pending(db).await;

        /// One change that would leave no admin.
        type Change = fn(&mut UserRecord);
        let guarded = |change: Change| {
            let mut after = root.clone();
            change(&mut after);
            after.name = "Half-written".into();
            after.attributes = BTreeMap::from([("half".to_string(), "written".to_string())]);
            after.updated_at = root.updated_at + Duration::seconds(1);
            after
        };
        let refused: [(&str, Change); 3] = [
            ("demote", |u| u.admin = false),
            ("suspend", |u| u.state = State::Suspended as i32),
            ("soft-delete", |u| u.deleted_at = Some(now())),
        ];
        for (what, change) in refused {
            let result = store
                .update_user(
                    &guarded(change),
                    root.updated_at,
                    true,
                    &events("user.update", 1),
                )
                .await;
            assert!(
                matches!(result, Err(StoreError::LastAdmin)),
                "{backend}: {what}: {result:?}"
            );
            assert_eq!(get(store, "root").await, root, "{backend}: {what}");
        }
        let result = store
            .purge_user("root", true, &events("user.purge", 1))
            .await;
        assert!(
            matches!(result, Err(StoreError::LastAdmin)),
            "{backend}: purge: {result:?}"
        );
        assert_eq!(get(store, "root").await, root, "{backend}: purge");
        assert_eq!(pending(db).await, before, "{backend}: no event");
        assert_eq!(
            store.count_effective_admins().await.unwrap(),
            1,
            "{backend}"
        );

        // A suspended admin does not count as a remaining one.
        let mut suspended = user("sleepy", now());
        suspended.admin = true;
        suspended.state = State::Suspended as i32;
        insert(store, &suspended).await;
        let result = store
            .update_user(&guarded(|u| u.admin = false), root.updated_at, true, &[])
            .await;
        assert!(
            matches!(result, Err(StoreError::LastAdmin)),
            "{backend}: {result:?}"
        );

        // With a second (flagged) admin, the first may go.
        let mut second = user("second", now());
        second.admin = true;
        second.state = State::Flagged as i32;
        insert(store, &second).await;
        let demoted = guarded(|u| u.admin = false);
        store
            .update_user(&demoted, root.updated_at, true, &events("user.update", 1))
            .await
            .unwrap_or_else(|e| panic!("{backend}: another admin remains: {e:?}"));
        assert_eq!(get(store, "root").await, demoted, "{backend}");
        assert_eq!(
            store.count_effective_admins().await.unwrap(),
            1,
            "{backend}"
        );

        // Without the guard, the store does not check.
        let unguarded = update(store, &second, |u| u.admin = false).await;
        assert!(
            !get(store, "second").await.admin,
            "{backend}: {unguarded:?}"
        );
        assert_eq!(
            store.count_effective_admins().await.unwrap(),
            0,
            "{backend}"
        );
    }

    pub async fn only_live_approved_or_flagged_admins_count(
        store: &dyn UserStore,
        _db: &Db,
        backend: &str,
    ) {
        assert_eq!(
            store.count_effective_admins().await.unwrap(),
            0,
            "{backend}"
        );
        let admin = |id: &str, state: State, deleted: bool| {
            let mut u = user(id, now());
            u.admin = true;
            u.state = state as i32;
            u.deleted_at = deleted.then(now);
            u
        };
        for u in [
            admin("approved", State::Approved, false),
            admin("flagged", State::Flagged, false),
            admin("requested", State::Requested, false),
            admin("rejected", State::Rejected, false),
            admin("suspended", State::Suspended, false),
            admin("deleted", State::Approved, true),
            user("plain", now()),
        ] {
            insert(store, &u).await;
        }
        assert_eq!(
            store.count_effective_admins().await.unwrap(),
            2,
            "{backend}"
        );
    }

    pub async fn purge_removes_the_user_its_attributes_and_its_external_links(
        store: &dyn UserStore,
        db: &Db,
        backend: &str,
    ) {
        let mut alice = user("alice", now());
        alice.attributes.insert("team".into(), "ops".into());
        insert(store, &alice).await;
        let mut bob = user("bob", now());
        bob.attributes.insert("team".into(), "dev".into());
        insert(store, &bob).await;
        for l in [
            link("sso", "alice-1", "alice"),
            link("other", "alice-2", "alice"),
            link("sso", "bob-1", "bob"),
        ] {
            store.insert_external_user(&l, &[]).await.unwrap();
        }
        let before = pending(db).await;

        store
            .purge_user("alice", false, &events("user.purge", 1))
            .await
            .unwrap();

        assert!(
            store.get_user("alice").await.unwrap().is_none(),
            "{backend}"
        );
        for (provider, external) in [("sso", "alice-1"), ("other", "alice-2")] {
            assert!(
                store
                    .get_external_user_by_external_id(provider, external)
                    .await
                    .unwrap()
                    .is_none(),
                "{backend}: {provider}/{external}"
            );
        }
        assert_eq!(
            rows_of(db, "user_attributes", "alice").await,
            0,
            "{backend}"
        );
        assert_eq!(rows_of(db, "external_users", "alice").await, 0, "{backend}");
        assert_eq!(pending(db).await, before + 1, "{backend}");
        // Others keep theirs.
        assert_eq!(get(store, "bob").await, bob, "{backend}");
        assert!(
            store
                .get_external_user_by_user_id("sso", "bob")
                .await
                .unwrap()
                .is_some(),
            "{backend}"
        );

        // The ID is free, and a new alice starts with nothing.
        let new_alice = user("alice", now());
        insert(store, &new_alice).await;
        assert_eq!(get(store, "alice").await, new_alice, "{backend}");
        assert!(
            store
                .get_external_user_by_user_id("sso", "alice")
                .await
                .unwrap()
                .is_none(),
            "{backend}"
        );

        let before = pending(db).await;
        let result = store
            .purge_user("nobody", false, &events("user.purge", 1))
            .await;
        assert!(
            matches!(result, Err(StoreError::Conflict)),
            "{backend}: {result:?}"
        );
        assert_eq!(pending(db).await, before, "{backend}: no event");
    }

    /// alice, bob, carol and eve live; dave deleted.
    async fn search_fixture(store: &dyn UserStore) {
        let base = DateTime::from_timestamp(now().timestamp() - 100, 0).unwrap();
        let mut alice = user("alice", base);
        alice.name = "Alice Smith".into();
        alice.description = "Likes Rust and tea".into();
        alice.attributes = BTreeMap::from([("team".to_string(), "platform".to_string())]);
        let mut bob = user("bob", base + Duration::microseconds(1));
        bob.name = "Bob Jones".into();
        bob.description = "ops person".into();
        bob.attributes = BTreeMap::from([
            ("team".to_string(), "ops".to_string()),
            ("floor".to_string(), "2".to_string()),
        ]);
        bob.state = State::Requested as i32;
        let mut carol = user("carol", base + Duration::milliseconds(1));
        carol.name = "100% Carol".into();
        carol.state = State::Suspended as i32;
        carol.admin = true;
        let mut dave = user("dave-2", base + Duration::milliseconds(500));
        dave.name = "Dave_Two".into();
        dave.deleted_at = Some(base + Duration::seconds(50));
        let mut eve = user("eve", base + Duration::seconds(1));
        eve.name = "Eve, alice's friend".into();
        eve.state = State::Flagged as i32;
        for u in [eve, carol, alice, dave, bob] {
            insert(store, &u).await;
        }
    }

    pub async fn search_filters_by_every_criterion(store: &dyn UserStore, _db: &Db, backend: &str) {
        search_fixture(store).await;
        let cases: Vec<(&str, UserQuery, Vec<&str>)> = vec![
            (
                "live",
                UserQuery::default(),
                vec!["alice", "bob", "carol", "eve"],
            ),
            (
                "deleted",
                UserQuery {
                    deleted: true,
                    ..Default::default()
                },
                vec!["dave-2"],
            ),
            (
                "id or name, any case",
                UserQuery {
                    id_or_name: Some("ALICE".into()),
                    ..Default::default()
                },
                vec!["alice", "eve"],
            ),
            (
                "id",
                UserQuery {
                    id_contains: Some("a".into()),
                    ..Default::default()
                },
                vec!["alice", "carol"],
            ),
            (
                "name, any case",
                UserQuery {
                    name_contains: Some("SMITH".into()),
                    ..Default::default()
                },
                vec!["alice"],
            ),
            (
                "name with a literal %",
                UserQuery {
                    name_contains: Some("0%".into()),
                    ..Default::default()
                },
                vec!["carol"],
            ),
            (
                "name with a literal _",
                UserQuery {
                    name_contains: Some("_".into()),
                    ..Default::default()
                },
                vec![],
            ),
            (
                "deleted name with a literal _",
                UserQuery {
                    deleted: true,
                    name_contains: Some("e_t".into()),
                    ..Default::default()
                },
                vec!["dave-2"],
            ),
            (
                "description, any case",
                UserQuery {
                    description_contains: Some("rust".into()),
                    ..Default::default()
                },
                vec!["alice"],
            ),
            (
                "attribute value substring",
                UserQuery {
                    attributes: vec![("team".into(), "plat".into())],
                    ..Default::default()
                },
                vec!["alice"],
            ),
            (
                "attribute key is exact",
                UserQuery {
                    attributes: vec![("tea".into(), "ops".into())],
                    ..Default::default()
                },
                vec![],
            ),
            (
                "every attribute must match",
                UserQuery {
                    attributes: vec![("team".into(), "o".into()), ("floor".into(), "2".into())],
                    ..Default::default()
                },
                vec!["bob"],
            ),
            (
                "states",
                UserQuery {
                    states: vec![State::Requested as i32, State::Suspended as i32],
                    ..Default::default()
                },
                vec!["bob", "carol"],
            ),
            (
                "criteria combine",
                UserQuery {
                    id_or_name: Some("alice".into()),
                    states: vec![State::Flagged as i32],
                    ..Default::default()
                },
                vec!["eve"],
            ),
        ];
        for (what, query, expected) in cases {
            let (users, total) = store.search_users(&query).await.unwrap();
            let got: Vec<_> = users.iter().map(|u| u.user_id.as_str()).collect();
            assert_eq!(got, expected, "{backend}: {what}");
            assert_eq!(total, expected.len() as u64, "{backend}: {what} total");
        }
    }

    /// Both backends fold ASCII letters; only PostgreSQL folds the others
    /// (SQLite's LIKE and lower() are ASCII-only), so that is not asserted.
    /// Text typed as stored must be found everywhere.
    pub async fn search_finds_non_ascii_text_as_spelled_with_ascii_letters_in_any_case(
        store: &dyn UserStore,
        _db: &Db,
        backend: &str,
    ) {
        let mut elodie = user("elodie", now());
        elodie.name = "Élodie Ünal".into();
        elodie.description = "Über alles".into();
        insert(store, &elodie).await;
        insert(store, &user("other", now())).await;
        let found = |query: UserQuery| async move { ids_of(store, &query).await };
        for (what, query) in [
            (
                "name as spelled",
                UserQuery {
                    name_contains: Some("Élodie".into()),
                    ..Default::default()
                },
            ),
            (
                "name, ASCII letters in another case",
                UserQuery {
                    name_contains: Some("ÉLODIE ÜNAL".into()),
                    ..Default::default()
                },
            ),
            (
                "id or name as spelled",
                UserQuery {
                    id_or_name: Some("Ünal".into()),
                    ..Default::default()
                },
            ),
            (
                "description, ASCII letters in another case",
                UserQuery {
                    description_contains: Some("ÜBER".into()),
                    ..Default::default()
                },
            ),
        ] {
            assert_eq!(found(query).await, ["elodie"], "{backend}: {what}");
        }
    }

    pub async fn search_orders_by_every_allowed_field_with_the_id_breaking_ties(
        store: &dyn UserStore,
        _db: &Db,
        backend: &str,
    ) {
        search_fixture(store).await;
        let cases = [
            ("user_id", vec!["alice", "bob", "carol", "eve"]),
            ("name", vec!["carol", "alice", "bob", "eve"]),
            (
                "primary_email_address",
                vec!["alice", "bob", "carol", "eve"],
            ),
            // requested 0, approved 1, flagged 3, suspended 4
            ("state", vec!["bob", "alice", "eve", "carol"]),
            ("admin", vec!["alice", "bob", "eve", "carol"]),
            ("created_at", vec!["alice", "bob", "carol", "eve"]),
        ];
        for (order, ascending) in cases {
            assert!(store::ORDER_FIELDS.contains(&order), "{order} is allowed");
            let query = UserQuery {
                order,
                ..Default::default()
            };
            assert_eq!(
                ids_of(store, &query).await,
                ascending,
                "{backend}: {order} ascending"
            );
            let descending: Vec<_> = ascending.iter().rev().copied().collect();
            assert_eq!(
                ids_of(
                    store,
                    &UserQuery {
                        descending: true,
                        ..query
                    }
                )
                .await,
                descending,
                "{backend}: {order} descending"
            );
        }
    }

    pub async fn search_pages_and_counts_the_total(store: &dyn UserStore, _db: &Db, backend: &str) {
        search_fixture(store).await;
        let page = |limit: i64, offset: i64| UserQuery {
            limit,
            offset,
            ..Default::default()
        };
        for (limit, offset, expected) in [
            (2, 0, vec!["alice", "bob"]),
            (2, 2, vec!["carol", "eve"]),
            (3, 3, vec!["eve"]),
            (2, 4, vec![]),
            (1000, 0, vec!["alice", "bob", "carol", "eve"]),
        ] {
            let (users, total) = store.search_users(&page(limit, offset)).await.unwrap();
            let got: Vec<_> = users.iter().map(|u| u.user_id.as_str()).collect();
            assert_eq!(got, expected, "{backend}: limit {limit} offset {offset}");
            assert_eq!(total, 4, "{backend}: the total ignores paging");
        }
        let (users, total) = store
            .search_users(&UserQuery {
                id_contains: Some("e".into()),
                limit: 1,
                offset: 1,
                descending: true,
                ..Default::default()
            })
            .await
            .unwrap();
        // alice and eve match (dave-2 is deleted); descending: eve, alice.
        assert_eq!(users.len(), 1, "{backend}");
        assert_eq!(users[0].user_id, "alice", "{backend}");
        assert_eq!(total, 2, "{backend}");
    }

    pub async fn find_live_by_email_finds_only_live_users(
        store: &dyn UserStore,
        _db: &Db,
        backend: &str,
    ) {
        let mut alice = user("alice", now());
        alice.primary_email_address = "Alice@Example.com".into();
        alice.attributes.insert("k".into(), "v".into());
        insert(store, &alice).await;

        let found = store
            .find_live_by_email("alice@example.com")
            .await
            .unwrap()
            .expect("found by the normalized address");
        assert_eq!(found, alice, "{backend}: with attributes");
        assert!(
            store
                .find_live_by_email("bob@example.com")
                .await
                .unwrap()
                .is_none(),
            "{backend}"
        );

        update(store, &alice, |u| u.deleted_at = Some(now())).await;
        assert!(
            store
                .find_live_by_email("alice@example.com")
                .await
                .unwrap()
                .is_none(),
            "{backend}: deleted users are not found"
        );

        let mut successor = user("alice2", now());
        successor.email_normalized = "alice@example.com".into();
        insert(store, &successor).await;
        let found = store
            .find_live_by_email("alice@example.com")
            .await
            .unwrap()
            .expect("the live owner");
        assert_eq!(found.user_id, "alice2", "{backend}");
    }

    pub async fn external_user_links_are_created_read_and_deleted(
        store: &dyn UserStore,
        db: &Db,
        backend: &str,
    ) {
        insert(store, &user("alice", now())).await;
        insert(store, &user("bob", now())).await;
        let alice = link("sso", "sub|Alice", "alice");
        let before = pending(db).await;
        store
            .insert_external_user(&alice, &events("user.external.create", 1))
            .await
            .unwrap();
        assert_eq!(pending(db).await, before + 1, "{backend}");

        assert_eq!(
            store
                .get_external_user_by_user_id("sso", "alice")
                .await
                .unwrap(),
            Some(alice.clone()),
            "{backend}"
        );
        assert_eq!(
            store
                .get_external_user_by_external_id("sso", "sub|Alice")
                .await
                .unwrap(),
            Some(alice.clone()),
            "{backend}"
        );
        for (provider, external) in [("other", "sub|Alice"), ("sso", "sub|alice")] {
            assert!(
                store
                    .get_external_user_by_external_id(provider, external)
                    .await
                    .unwrap()
                    .is_none(),
                "{backend}: {provider}/{external}: the external id is exact"
            );
        }
        assert!(
            store
                .get_external_user_by_user_id("other", "alice")
                .await
                .unwrap()
                .is_none(),
            "{backend}"
        );

        let before = pending(db).await;
        for (what, taken, key) in [
            (
                "taken external id",
                link("sso", "sub|Alice", "bob"),
                "external_id",
            ),
            (
                "second link to the provider",
                link("sso", "sub|Alice-2", "alice"),
                "link of this user to this provider",
            ),
        ] {
            let result = store
                .insert_external_user(&taken, &events("user.external.create", 1))
                .await;
            assert!(
                matches!(result, Err(StoreError::AlreadyExists(k)) if k == key),
                "{backend}: {what}: {result:?}"
            );
        }
        let result = store
            .insert_external_user(
                &link("sso", "sub|nobody", "nobody"),
                &events("user.external.create", 1),
            )
            .await;
        assert!(
            matches!(result, Err(StoreError::Database(_))),
            "{backend}: a link needs its user: {result:?}"
        );
        assert_eq!(pending(db).await, before, "{backend}: no event");

        store
            .insert_external_user(&link("other", "sub|Alice", "bob"), &[])
            .await
            .unwrap_or_else(|e| panic!("{backend}: providers are separate: {e:?}"));

        let before = pending(db).await;
        assert!(
            store
                .delete_external_user("sso", "sub|Alice", &events("user.external.delete", 1))
                .await
                .unwrap(),
            "{backend}"
        );
        assert_eq!(pending(db).await, before + 1, "{backend}");
        assert!(
            store
                .get_external_user_by_external_id("sso", "sub|Alice")
                .await
                .unwrap()
                .is_none(),
            "{backend}"
        );
        assert!(
            !store
                .delete_external_user("sso", "sub|Alice", &events("user.external.delete", 1))
                .await
                .unwrap(),
            "{backend}: nothing left to delete"
        );
        assert_eq!(
            pending(db).await,
            before + 1,
            "{backend}: no event for nothing"
        );
        assert!(
            store
                .get_external_user_by_external_id("other", "sub|Alice")
                .await
                .unwrap()
                .is_some(),
            "{backend}: the other provider's link stays"
        );
    }

    pub async fn every_change_writes_exactly_its_events_to_the_outbox(
        store: &dyn UserStore,
        db: &Db,
        backend: &str,
    ) {
        let mut expected: Vec<String> = Vec::new();
        let mut written = |batch: &[Event]| {
            expected.extend(batch.iter().map(|e| e.unique_id.clone()));
            batch.to_vec()
        };
        assert_eq!(pending(db).await, 0, "{backend}");

        let mut root = user("root", now());
        root.admin = true;
        let batch = written(&events("user.create", 2));
        store.insert_user(&root, &batch).await.unwrap();
        assert_eq!(pending(db).await, 2, "{backend}: insert");

        let alice = user("alice", now());
        let batch = written(&events("user.create", 1));
        store.insert_user(&alice, &batch).await.unwrap();
        assert_eq!(pending(db).await, 3, "{backend}: insert");

        let mut renamed = alice.clone();
        renamed.name = "Renamed".into();
        renamed.updated_at = alice.updated_at + Duration::microseconds(1);
        let batch = written(&events("user.update", 3));
        store
            .update_user(&renamed, alice.updated_at, false, &batch)
            .await
            .unwrap();
        assert_eq!(pending(db).await, 6, "{backend}: update");

        let batch = written(&events("user.update.incorrect_password", 1));
        store.append_events(&batch).await.unwrap();
        assert_eq!(pending(db).await, 7, "{backend}: append");

        let batch = written(&events("user.external.create", 1));
        store
            .insert_external_user(&link("sso", "alice", "alice"), &batch)
            .await
            .unwrap();
        assert_eq!(pending(db).await, 8, "{backend}: link");

        let batch = written(&events("user.external.delete", 1));
        assert!(
            store
                .delete_external_user("sso", "alice", &batch)
                .await
                .unwrap()
        );
        assert_eq!(pending(db).await, 9, "{backend}: unlink");

        let batch = written(&events("user.purge", 2));
        store.purge_user("alice", false, &batch).await.unwrap();
        assert_eq!(pending(db).await, 11, "{backend}: purge");

        // Failures write nothing.
        let dropped = events("user.create", 2);
        assert!(store.insert_user(&root, &dropped).await.is_err());
        let mut demoted = root.clone();
        demoted.admin = false;
        demoted.updated_at = root.updated_at + Duration::microseconds(1);
        assert!(
            store
                .update_user(&demoted, root.updated_at, true, &dropped)
                .await
                .is_err()
        );
        assert!(
            store
                .update_user(&demoted, demoted.updated_at, false, &dropped)
                .await
                .is_err()
        );
        assert!(store.purge_user("root", true, &dropped).await.is_err());
        assert!(store.purge_user("alice", false, &dropped).await.is_err());
        assert!(
            store
                .insert_external_user(&link("sso", "x", "alice"), &dropped)
                .await
                .is_err()
        );
        assert_eq!(pending(db).await, 11, "{backend}: failures");

        // A change without events is fine too and adds none.
        store
            .update_user(&demoted, root.updated_at, false, &[])
            .await
            .unwrap();
        assert_eq!(pending(db).await, 11, "{backend}: no events");

        assert_eq!(
            outbox_ids(db).await,
            expected,
            "{backend}: exactly the events of the committed changes, in order"
        );
    }
    pub async fn concurrent_inserts_of_one_id_or_one_email_have_one_winner(
        store: &dyn UserStore,
        db: &Db,
        backend: &str,
    ) {
        for round in 0..5 {
            let id = format!("same-{round}");
            let mut first = user(&id, now());
            first.email_normalized = format!("first-{round}@example.com");
            let mut second = user(&id, now());
            second.email_normalized = format!("second-{round}@example.com");
            let before = pending(db).await;
            let (first_events, second_events) =
                (events("user.create", 1), events("user.create", 1));
            let (a, b) = tokio::join!(
                store.insert_user(&first, &first_events),
                store.insert_user(&second, &second_events),
            );
            let outcome = format!("{backend}: round {round}: {a:?} / {b:?}");
            match (a, b) {
                (Ok(()), Err(StoreError::AlreadyExists("user_id"))) => {
                    assert_eq!(get(store, &id).await, first, "{outcome}");
                }
                (Err(StoreError::AlreadyExists("user_id")), Ok(())) => {
                    assert_eq!(get(store, &id).await, second, "{outcome}");
                }
                _ => panic!("exactly one insert wins: {outcome}"),
            }
            assert_eq!(pending(db).await, before + 1, "{outcome}");

            let email = format!("shared-{round}@example.com");
            let mut left = user(&format!("left-{round}"), now());
            left.email_normalized = email.clone();
            let mut right = user(&format!("right-{round}"), now());
            right.email_normalized = email.clone();
            let (a, b) = tokio::join!(
                store.insert_user(&left, &[]),
                store.insert_user(&right, &[])
            );
            let outcome = format!("{backend}: round {round}: {a:?} / {b:?}");
            assert!(
                matches!(
                    (&a, &b),
                    (
                        Ok(()),
                        Err(StoreError::AlreadyExists("primary_email_address"))
                    ) | (
                        Err(StoreError::AlreadyExists("primary_email_address")),
                        Ok(())
                    )
                ),
                "exactly one owner of an address: {outcome}"
            );
            let owner = store.find_live_by_email(&email).await.unwrap().unwrap();
            let winner = if a.is_ok() { &left } else { &right };
            assert_eq!(&owner, winner, "{outcome}");
        }
    }

    pub async fn concurrent_demotions_of_the_last_two_admins_leave_one(
        store: &dyn UserStore,
        db: &Db,
        backend: &str,
    ) {
        for round in 0..5 {
            let admin = |id: String| {
                let mut u = user(&id, now());
                u.admin = true;
                u
            };
            let a = admin(format!("admin-a-{round}"));
            let b = admin(format!("admin-b-{round}"));
            insert(store, &a).await;
            insert(store, &b).await;
            assert_eq!(
                store.count_effective_admins().await.unwrap(),
                2,
                "{backend}"
            );
            let demote = |u: &UserRecord| {
                let mut after = u.clone();
                after.admin = false;
                after.updated_at = u.updated_at + Duration::microseconds(1);
                after
            };
            let (demoted_a, demoted_b) = (demote(&a), demote(&b));
            let before = pending(db).await;

            let (events_a, events_b) = (events("user.update", 1), events("user.update", 1));
            let (ra, rb) = tokio::join!(
                store.update_user(&demoted_a, a.updated_at, true, &events_a),
                store.update_user(&demoted_b, b.updated_at, true, &events_b),
            );

            let outcome = format!("{backend}: round {round}: {ra:?} / {rb:?}");
            let (kept, gone) = match (ra, rb) {
                (Ok(()), Err(StoreError::LastAdmin)) => (&b, &demoted_a),
                (Err(StoreError::LastAdmin), Ok(())) => (&a, &demoted_b),
                _ => panic!("exactly one demotion passes: {outcome}"),
            };
            assert_eq!(
                store.count_effective_admins().await.unwrap(),
                1,
                "{outcome}"
            );
            assert_eq!(&get(store, &kept.user_id).await, kept, "{outcome}");
            assert_eq!(&get(store, &gone.user_id).await, gone, "{outcome}");
            assert_eq!(pending(db).await, before + 1, "{outcome}");

            // Clear the round: the survivor steps down without the guard.
            update(store, kept, |u| u.admin = false).await;
        }
    }

    /// The lockout's counters: a client reaches its limit first, other
    /// clients are unaffected, the account locks when all together reach
    /// its limit (with the events the outcome asks for, in the same
    /// transaction), and clearing forgets them.
    pub async fn password_failures_lock_the_client_then_the_account_and_clear(
        store: &dyn UserStore,
        db: &Db,
        backend: &str,
    ) {
        let at = now();
        insert(store, &user("alice", at)).await;
        let before = pending(db).await;
        let policy = lockout(2, 4).policy(at);
        let counters = |client: &str| Secret::Password.counters(client);
        let (a, b, c, z) = (counters("a"), counters("b"), counters("c"), counters("z"));
        let fail = |counters: &Counters| {
            let counters = counters.clone();
            async move {
                store
                    .record_password_failure("alice", &counters, &policy, &lock_event)
                    .await
            }
        };
        let first = fail(&a).await.unwrap();
        assert_eq!((first.failures, first.client_failures), (1, 1), "{backend}");
        assert_eq!(first.locked_until, None, "{backend}");
        let second = fail(&a).await.unwrap();
        assert!(
            second.client_newly_locked && !second.newly_locked,
            "{backend}"
        );
        assert_eq!(second.locked_until, Some(policy.lock_until), "{backend}");
        let state = store.guess_state("alice", &a, at).await.unwrap();
        assert_eq!(state.locked_until, Some(policy.lock_until), "{backend}");
        let other = store.guess_state("alice", &b, at).await.unwrap();
        assert_eq!(other.locked_until, None, "{backend}: another client");
        assert!(other.counted, "{backend}: the account's count is on record");
        assert_eq!(pending(db).await, before, "{backend}: no event yet");

        fail(&b).await.unwrap();
        let locking = fail(&c).await.unwrap();
        assert!(
            locking.newly_locked,
            "{backend}: four in all lock the account"
        );
        assert_eq!(pending(db).await, before + 1, "{backend}: its user.lock");
        let state = store.guess_state("alice", &z, at).await.unwrap();
        assert_eq!(state.locked_until, Some(policy.lock_until), "{backend}");
        assert_eq!(
            store
                .guess_state("alice", &z, policy.lock_until)
                .await
                .unwrap()
                .locked_until,
            None,
            "{backend}: the lock ends"
        );

        store
            .clear_password_failures("alice", Forget::All)
            .await
            .unwrap();
        let state = store.guess_state("alice", &a, at).await.unwrap();
        assert_eq!(state, Default::default(), "{backend}: forgotten");
        assert_eq!(
            rows_of(db, "password_failures", "alice").await,
            0,
            "{backend}"
        );

        // Purging the user takes its counters too.
        fail(&a).await.unwrap();
        store.purge_user("alice", false, &[]).await.unwrap();
        assert_eq!(
            rows_of(db, "password_failures", "alice").await,
            0,
            "{backend}"
        );
    }

    /// Wrong codes and wrong passwords count apart: a second-factor lock
    /// holds while the password one is forgotten (a login token, a new
    /// password), and the account's lock reads either.
    pub async fn second_factor_failures_count_apart_from_password_failures(
        store: &dyn UserStore,
        _db: &Db,
        backend: &str,
    ) {
        let at = now();
        insert(store, &user("alice", at)).await;
        let policy = lockout(0, 2).policy(at);
        let codes = Secret::SecondFactor.counters("a");
        let passwords = Secret::Password.counters("a");
        for _ in 0..2 {
            store
                .record_password_failure("alice", &codes, &policy, &lock_event)
                .await
                .unwrap();
        }
        let locked = Some(policy.lock_until);
        assert_eq!(
            store
                .guess_state("alice", &codes, at)
                .await
                .unwrap()
                .locked_until,
            locked,
            "{backend}"
        );
        assert_eq!(
            store.guess_state("alice", &passwords, at).await.unwrap(),
            Default::default(),
            "{backend}: passwords are not locked by codes"
        );
        let (_, lock) = store.get_user_and_lock("alice", at).await.unwrap().unwrap();
        assert_eq!(lock, locked, "{backend}: the account reads as locked");

        store
            .clear_password_failures("alice", Forget::Secret(Secret::Password))
            .await
            .unwrap();
        assert_eq!(
            store
                .guess_state("alice", &codes, at)
                .await
                .unwrap()
                .locked_until,
            locked,
            "{backend}: forgetting passwords keeps the code lock"
        );
        store
            .clear_password_failures("alice", Forget::Secret(Secret::SecondFactor))
            .await
            .unwrap();
        assert_eq!(
            store.guess_state("alice", &codes, at).await.unwrap(),
            Default::default(),
            "{backend}"
        );
    }

    /// Many wrong passwords at once from many clients: the account locks
    /// once, with one event.
    pub async fn concurrent_password_failures_lock_the_account_exactly_once(
        store: &dyn UserStore,
        db: &Db,
        backend: &str,
    ) {
        let at = now();
        insert(store, &user("alice", at)).await;
        let before = pending(db).await;
        let policy = lockout(0, 5).policy(at);
        let clients: Vec<Counters> = (0..12)
            .map(|n| Secret::Password.counters(&n.to_string()))
            .collect();
        let outcomes = futures::future::join_all(
            clients
                .iter()
                .map(|c| store.record_password_failure("alice", c, &policy, &lock_event)),
        )
        .await;
        let locks = outcomes
            .into_iter()
            .map(|o| o.unwrap_or_else(|e| panic!("{backend}: {e:?}")))
            .filter(|o| o.newly_locked)
            .count();
        assert_eq!(locks, 1, "{backend}");
        assert_eq!(pending(db).await, before + 1, "{backend}");
    }
}

/// A commit that wrote events wakes the relay; one that wrote none, or
/// failed, does not.
#[tokio::test]
async fn a_commit_with_events_wakes_the_relay_and_nothing_else_does() {
    for backend in TestBackend::both_migrated(&store::migrations()).await {
        let name = backend.name;
        let relay = Arc::new(Notify::new());
        let store = store::open(&backend.db, relay.clone(), Arc::default());
        let woken = || relay.notified().now_or_never().is_some();

        let alice = user("alice", now());
        store
            .insert_user(&alice, &events("user.create", 1))
            .await
            .unwrap();
        assert!(woken(), "{name}: after a commit with events");
        assert!(!woken(), "{name}: one wake-up per commit");

        let mut renamed = alice.clone();
        renamed.name = "Renamed".into();
        renamed.updated_at = alice.updated_at + Duration::microseconds(1);
        store
            .update_user(&renamed, alice.updated_at, false, &[])
            .await
            .unwrap();
        assert!(!woken(), "{name}: a commit without events");

        assert!(
            store
                .insert_user(&alice, &events("user.create", 1))
                .await
                .is_err()
        );
        assert!(!woken(), "{name}: a failed change");

        store
            .append_events(&events("user.update.incorrect_password", 1))
            .await
            .unwrap();
        assert!(woken(), "{name}: appended events");
    }
}

/// On PostgreSQL, a broad search whose walk of the order finds no page
/// within its first rows takes the page from the trigram indexes and still
/// answers exactly: here the matches all sort after tens of thousands of
/// other users.
#[tokio::test]
async fn a_search_past_its_plan_budget_falls_back_and_answers_the_same() {
    use roster_user_registry::store::{PostgresUserStore, SearchBudgets};

    let backend = TestBackend::postgres().await;
    store::migrations().run(&backend.db).await.unwrap();
    let Db::Postgres(pool) = &backend.db else {
        unreachable!("a PostgreSQL backend")
    };
    sqlx::query(
        "INSERT INTO users (user_id, name, primary_email_address, email_normalized, \
             password_hash, password_updated_at, state, created_at, updated_at) \
         SELECT id, 'Early ' || n, id || '@example.com', id || '@example.com', 'x', now(), 1, \
             now(), now() \
         FROM generate_series(1, 60000) AS n, \
             LATERAL (SELECT 'early-' || lpad(n::text, 6, '0') AS id) AS ids \
         UNION ALL \
         SELECT id, 'Late ' || n, id || '@example.com', id || '@example.com', 'x', now(), 1, \
             now(), now() \
         FROM generate_series(1, 1500) AS n, \
             LATERAL (SELECT 'zulu-' || lpad(n::text, 6, '0') AS id) AS ids",
    )
    .execute(pool)
    .await
    .unwrap();
    sqlx::query("ANALYZE users").execute(pool).await.unwrap();

    let store = PostgresUserStore::new(pool.clone(), Arc::new(Notify::new()), Arc::default())
        .with_search_budgets(SearchBudgets {
            count_ms: 1,
            page_ms: 1,
        });
    let search = |text: &str| UserQuery {
        id_or_name: Some(text.to_string()),
        limit: 3,
        count_cap: Some(1000),
        ..UserQuery::default()
    };

    // Broad and late: more matches than the cap.
    let (users, total) = store.search_users(&search("zulu")).await.unwrap();
    let ids: Vec<_> = users.iter().map(|u| u.user_id.as_str()).collect();
    assert_eq!(ids, ["zulu-000001", "zulu-000002", "zulu-000003"]);
    assert_eq!(total, 1000);
    assert!(
        store.plan_fallbacks() >= 1,
        "the walk of the ID order found the late matches"
    );

    // A keyset page after the third match: the walk starts there.
    let after = UserQuery {
        after: Some(Keyset {
            value: OrderValue::None,
            user_id: "zulu-000003".into(),
        }),
        count: false,
        ..search("zulu")
    };
    let (users, _) = store.search_users(&after).await.unwrap();
    let ids: Vec<_> = users.iter().map(|u| u.user_id.as_str()).collect();
    assert_eq!(ids, ["zulu-000004", "zulu-000005", "zulu-000006"]);
    // Descending by name (byte order) from a keyset: after "Late 999"
    // come "Late 998", "Late 997"…
    let by_name = UserQuery {
        order: "name",
        descending: true,
        after: Some(Keyset {
            value: OrderValue::Text("Late 999".into()),
            user_id: "zulu-000999".into(),
        }),
        count: false,
        ..search("late")
    };
    let (users, _) = store.search_users(&by_name).await.unwrap();
    let names: Vec<_> = users.iter().map(|u| u.name.as_str()).collect();
    assert_eq!(names, ["Late 998", "Late 997", "Late 996"]);

    // Selective: fewer matches than the cap, taken from the trigram indexes.
    let (users, total) = store.search_users(&search("zulu-00149")).await.unwrap();
    let ids: Vec<_> = users.iter().map(|u| u.user_id.as_str()).collect();
    assert_eq!(ids, ["zulu-001490", "zulu-001491", "zulu-001492"]);
    assert_eq!(total, 10);
}

/// Reads `user_id` through the cached store twice, so that it is cached.
async fn cache_user(store: &dyn UserStore, cache: &store::UserCache, user_id: &str) {
    for _ in 0..2 {
        store.read_user(user_id).await.unwrap().expect("stored");
    }
    assert!(cache.get(user_id).is_some(), "{user_id} is cached");
}

/// Events of `name` about `user_id`.
fn about(name: &str, user_id: &str) -> Vec<Event> {
    let ids = roster_proto::v1::EntityIdentifiers {
        ids: Some(roster_proto::v1::entity_identifiers::Ids::UserIds(
            roster_proto::v1::UserIdentifiers {
                user_id: user_id.into(),
                email: String::new(),
            },
        )),
    };
    vec![new_event(name, vec![ids], None)]
}

/// Every writing method of the cached store forgets the user it writes
/// (or the users its events name), on both backends.
#[tokio::test]
async fn every_write_through_the_cached_store_forgets_the_user() {
    for backend in TestBackend::both_migrated(&store::migrations()).await {
        let sql = store::open(&backend.db, Arc::new(Notify::new()), Arc::default());
        let (cached, cache) = store::cached(sql, 1 << 20, std::time::Duration::from_secs(60));
        let (store, cache) = (&*cached, cache.expect("a cache"));
        let name = backend.name;
        insert(store, &user("alice", now())).await;
        let forgot = |what: &str| {
            assert!(cache.get("alice").is_none(), "{name}: {what} forgot alice");
        };

        cache_user(store, &cache, "alice").await;
        update(store, &get(store, "alice").await, |u| {
            u.name = "Renamed".into()
        })
        .await;
        forgot("update_user");
        cache_user(store, &cache, "alice").await;
        assert_eq!(cache.get("alice").unwrap().name, "Renamed", "{name}");

        let entry = [("team".to_string(), b"blue".to_vec())];
        store
            .set_metadata("alice", &entry, now(), 50, &[])
            .await
            .unwrap();
        forgot("set_metadata");
        cache_user(store, &cache, "alice").await;
        store
            .delete_metadata("alice", &["team".into()], &[])
            .await
            .unwrap();
        forgot("delete_metadata");

        cache_user(store, &cache, "alice").await;
        let policy = lockout(5, 20).policy(now());
        store
            .record_password_failure(
                "alice",
                &Secret::Password.counters("192.0.2.1"),
                &policy,
                &lock_event,
            )
            .await
            .unwrap();
        forgot("record_password_failure");
        cache_user(store, &cache, "alice").await;
        store
            .clear_password_failures("alice", Forget::All)
            .await
            .unwrap();
        forgot("clear_password_failures");

        cache_user(store, &cache, "alice").await;
        store
            .insert_external_user(&link("idp", "a-1", "alice"), &[])
            .await
            .unwrap();
        forgot("insert_external_user");
        cache_user(store, &cache, "alice").await;
        let deleted = store
            .delete_external_user("idp", "a-1", &about("user.external.delete", "alice"))
            .await
            .unwrap();
        assert!(deleted, "{name}");
        forgot("delete_external_user");

        cache_user(store, &cache, "alice").await;
        store
            .append_events(&about("user.update.incorrect_password", "alice"))
            .await
            .unwrap();
        forgot("append_events");

        cache_user(store, &cache, "alice").await;
        store.purge_user("alice", false, &[]).await.unwrap();
        forgot("purge_user");
        assert!(store.read_user("alice").await.unwrap().is_none(), "{name}");
        assert!(cache.is_empty(), "{name}: nothing gone is cached");
    }
}

/// What the cached store serves never carries a secret, cached or not.
#[tokio::test]
async fn no_read_of_the_cached_store_carries_a_secret() {
    for backend in TestBackend::both_migrated(&store::migrations()).await {
        let sql = store::open(&backend.db, Arc::new(Notify::new()), Arc::default());
        let (cached, cache) = store::cached(sql, 1 << 20, std::time::Duration::from_secs(60));
        let (store, cache) = (&*cached, cache.expect("a cache"));
        let at = now();
        insert(store, &full_user("ada", at)).await;
        for _ in 0..2 {
            let shown = store.read_user("ada").await.unwrap().expect("stored");
            let (checked, _) = store.read_user_and_lock("ada", at).await.unwrap().unwrap();
            for user in [&*shown, &*checked, &*cache.get("ada").expect("cached")] {
                assert!(user.password_hash.is_empty(), "{}", backend.name);
                assert!(user.temporary_password_hash.is_none(), "{}", backend.name);
                assert!(user.email_validation_hash.is_none(), "{}", backend.name);
                assert_eq!(user.name, "Ada Lovelace-Byron", "{}", backend.name);
            }
        }
        assert_eq!(
            get(store, "ada").await.password_hash,
            HASH,
            "changes read the row"
        );
    }
}

/// A checked read (`GetWithStatus`) that finds the row changed, or gone,
/// by a write the cache never heard of (another process's, its event
/// lost) drops the cached copy, so `Get` does not serve it until the TTL.
#[tokio::test]
async fn a_checked_read_drops_a_copy_whose_row_changed_or_went() {
    for backend in TestBackend::both_migrated(&store::migrations()).await {
        let sql = store::open(&backend.db, Arc::new(Notify::new()), Arc::default());
        let (cached, cache) =
            store::cached(sql.clone(), 1 << 20, std::time::Duration::from_secs(60));
        let (store, cache) = (&*cached, cache.expect("a cache"));
        let name = backend.name;
        insert(store, &user("alice", now())).await;
        cache_user(store, &cache, "alice").await;

        // Renamed behind the cache's back.
        update(&*sql, &get(&*sql, "alice").await, |u| {
            u.name = "Elsewhere".into()
        })
        .await;
        let (read, _) = store
            .read_user_and_lock("alice", now())
            .await
            .unwrap()
            .expect("alice");
        assert_eq!(read.name, "Elsewhere", "{name}");
        assert_eq!(
            store.read_user("alice").await.unwrap().unwrap().name,
            "Elsewhere",
            "{name}: Get no longer serves the old copy"
        );

        // Purged behind its back.
        sql.purge_user("alice", false, &[]).await.unwrap();
        assert!(
            store
                .read_user_and_lock("alice", now())
                .await
                .unwrap()
                .is_none(),
            "{name}"
        );
        assert!(cache.get("alice").is_none(), "{name}: the copy went too");
    }
}
