//! The `NotificationStore` conformance suite: every case is written once
//! and run on the service's own PostgreSQL schema (as `rosterd` opens it)
//! and on a SQLite file, both migrated. The relays do not run, so the
//! outbox rows stay for the cases to count.

use std::any::Any;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use roster_core::db::Db;
use roster_core::events::new_event;
use roster_core::mail::OutgoingMail;
use roster_core::time::now;
use roster_notifications::store::{
    self, Entity, NotificationRecord, NotificationStore, ReceiverQuery,
};
use roster_proto::v1::Event;
use roster_test_support::{Backend, TestDb};

use crate::support::on_both_backends;

on_both_backends!(
    a_notification_round_trips_with_its_receivers_events_and_mails,
    an_existing_id_writes_nothing_at_all,
    a_receivers_list_is_newest_first_filtered_paged_and_counted,
    update_status_changes_only_the_receivers_differing_rows_and_writes_events_for_them,
    forgetting_a_user_removes_what_was_theirs_or_about_them_and_nothing_else,
);

/// One backend's migrated store.
struct Case {
    store: Arc<dyn NotificationStore>,
    db: Db,
    _keep: Box<dyn Any + Send + Sync>,
}

impl Case {
    async fn open(backend: Backend) -> Case {
        let (db, keep): (Db, Box<dyn Any + Send + Sync>) = match backend {
            Backend::Postgres => {
                let pg = TestDb::new().await;
                let db = pg.pool_for(roster_notifications::NAME).await;
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
        store::migrations().run(&db).await.expect("migrate");
        Case {
            store: store::open(&db, Arc::default(), Arc::default()),
            db,
            _keep: keep,
        }
    }

    async fn count(&self, table: &str) -> i64 {
        let sql = format!("SELECT COUNT(*) FROM {table}");
        match &self.db {
            Db::Postgres(pool) => sqlx::query_scalar(&sql).fetch_one(pool).await,
            Db::Sqlite(pool) => sqlx::query_scalar(&sql).fetch_one(pool).await,
        }
        .expect("count rows")
    }
}

fn record(id: &str, at: DateTime<Utc>) -> NotificationRecord {
    NotificationRecord {
        id: id.to_string(),
        created_at: at,
        entity: Entity::User("alice".into()),
        notification_type: 1,
        data: None,
        sender_id: None,
        receivers: vec![3],
        email: false,
    }
}

fn event(name: &str) -> Event {
    new_event(name, Vec::new(), None)
}

fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

async fn a_notification_round_trips_with_its_receivers_events_and_mails(backend: Backend) {
    let case = Case::open(backend).await;
    let id = new_id();
    let full = NotificationRecord {
        entity: Entity::InvitationEmail("New@Example.com".into()),
        notification_type: 10,
        data: Some(prost_types::Any {
            type_url: "type.googleapis.com/roster.v1.Invitation".into(),
            value: vec![1, 2, 3],
        }),
        sender_id: Some("alice".into()),
        receivers: vec![1, 3, 4],
        email: true,
        ..record(&id, now())
    };
    let mails = [OutgoingMail::new("notification", "bob@example.com", "Bob").with("title", "Hi")];
    let created = case
        .store
        .create(
            &full,
            &["bob".to_string(), "carol".to_string()],
            &[
                event("user.notification.create"),
                event("user.notification.create"),
            ],
            &mails,
        )
        .await
        .unwrap();
    assert!(created);
    assert_eq!(case.store.get(&id).await.unwrap(), Some(full.clone()));
    let receivers = case.store.receivers(&id).await.unwrap();
    assert_eq!(
        receivers
            .iter()
            .map(|r| r.user_id.as_str())
            .collect::<Vec<_>>(),
        ["bob", "carol"]
    );
    assert!(
        receivers
            .iter()
            .all(|r| r.status == 0 && r.status_updated_at.is_none())
    );
    assert_eq!(case.count("roster_outbox").await, 2);
    assert_eq!(case.count("roster_mail_outbox").await, 1);

    // Without data, sender or kinds.
    let bare = record(&new_id(), now());
    let bare = NotificationRecord {
        receivers: Vec::new(),
        ..bare
    };
    assert!(
        case.store
            .create(&bare, &["bob".to_string()], &[], &[])
            .await
            .unwrap()
    );
    assert_eq!(case.store.get(&bare.id).await.unwrap(), Some(bare));
    assert_eq!(case.store.get(&new_id()).await.unwrap(), None);
    assert!(case.store.receivers(&new_id()).await.unwrap().is_empty());
}

async fn an_existing_id_writes_nothing_at_all(backend: Backend) {
    let case = Case::open(backend).await;
    let id = new_id();
    let first = record(&id, now());
    assert!(
        case.store
            .create(&first, &["alice".to_string()], &[event("a.b")], &[])
            .await
            .unwrap()
    );
    let second = NotificationRecord {
        notification_type: 2,
        ..record(&id, now())
    };
    let mails = [OutgoingMail::new("notification", "bob@example.com", "").with("title", "x")];
    let again = case
        .store
        .create(&second, &["bob".to_string()], &[event("a.b")], &mails)
        .await
        .unwrap();
    assert!(!again);
    assert_eq!(case.store.get(&id).await.unwrap(), Some(first));
    assert_eq!(
        case.store
            .receivers(&id)
            .await
            .unwrap()
            .iter()
            .map(|r| r.user_id.as_str())
            .collect::<Vec<_>>(),
        ["alice"]
    );
    assert_eq!(case.count("roster_outbox").await, 1);
    assert_eq!(case.count("roster_mail_outbox").await, 0);
}

async fn a_receivers_list_is_newest_first_filtered_paged_and_counted(backend: Backend) {
    let case = Case::open(backend).await;
    let start = now();
    // Two at the same time: the ID breaks the tie.
    let times = [
        start,
        start + Duration::seconds(1),
        start + Duration::seconds(2),
        start + Duration::seconds(2),
    ];
    let mut ids = Vec::new();
    for at in times {
        let id = new_id();
        case.store
            .create(&record(&id, at), &["alice".to_string()], &[], &[])
            .await
            .unwrap();
        ids.push(id);
    }
    case.store
        .create(&record(&new_id(), start), &["bob".to_string()], &[], &[])
        .await
        .unwrap();
    let mut tied = [ids[2].clone(), ids[3].clone()];
    tied.sort();
    let expected = [
        tied[0].clone(),
        tied[1].clone(),
        ids[1].clone(),
        ids[0].clone(),
    ];
    let query = |statuses: &'static [i32], limit, offset| ReceiverQuery {
        user_id: "alice",
        statuses,
        limit,
        offset,
    };
    let (all, total) = case.store.list(query(&[], 100, 0)).await.unwrap();
    assert_eq!(total, 4);
    assert_eq!(
        all.iter()
            .map(|n| n.notification.id.clone())
            .collect::<Vec<_>>(),
        expected
    );
    assert_eq!(all[3].notification, record(&ids[0], times[0]));
    let (page, total) = case.store.list(query(&[], 2, 2)).await.unwrap();
    assert_eq!(total, 4);
    assert_eq!(
        page.iter()
            .map(|n| n.notification.id.clone())
            .collect::<Vec<_>>(),
        expected[2..]
    );

    let changed = case
        .store
        .update_status("alice", &[ids[1].clone()], 2, now(), &|_| Vec::new())
        .await
        .unwrap();
    assert_eq!(changed, [ids[1].clone()]);
    let (archived, total) = case.store.list(query(&[2], 100, 0)).await.unwrap();
    assert_eq!(total, 1);
    assert_eq!(archived[0].notification.id, ids[1]);
    assert_eq!(archived[0].status, 2);
    assert!(archived[0].status_updated_at.is_some());
    let (unseen, total) = case.store.list(query(&[0, 1], 100, 0)).await.unwrap();
    assert_eq!(total, 3);
    assert!(unseen.iter().all(|n| n.status == 0));
    let (none, total) = case
        .store
        .list(ReceiverQuery {
            user_id: "nobody",
            statuses: &[],
            limit: 100,
            offset: 0,
        })
        .await
        .unwrap();
    assert!(none.is_empty());
    assert_eq!(total, 0);
}

async fn update_status_changes_only_the_receivers_differing_rows_and_writes_events_for_them(
    backend: Backend,
) {
    let case = Case::open(backend).await;
    let shared = new_id();
    let bobs = new_id();
    case.store
        .create(
            &record(&shared, now()),
            &["alice".to_string(), "bob".to_string()],
            &[],
            &[],
        )
        .await
        .unwrap();
    case.store
        .create(&record(&bobs, now()), &["bob".to_string()], &[], &[])
        .await
        .unwrap();
    let at = now();
    let events = |changed: &[String]| vec![event(&format!("changed.{}", changed.len()))];
    let changed = case
        .store
        .update_status(
            "alice",
            &[shared.clone(), bobs.clone(), new_id()],
            1,
            at,
            &events,
        )
        .await
        .unwrap();
    assert_eq!(changed, [shared.as_str()]);
    assert_eq!(case.count("roster_outbox").await, 1);
    let rows = case.store.receivers(&shared).await.unwrap();
    assert_eq!((rows[0].user_id.as_str(), rows[0].status), ("alice", 1));
    assert_eq!(rows[0].status_updated_at, Some(at));
    assert_eq!((rows[1].user_id.as_str(), rows[1].status), ("bob", 0));
    assert_eq!(rows[1].status_updated_at, None);
    assert_eq!(case.store.receivers(&bobs).await.unwrap()[0].status, 0);

    // The same status again: nothing changes, no event.
    let later = at + Duration::seconds(5);
    let changed = case
        .store
        .update_status("alice", std::slice::from_ref(&shared), 1, later, &events)
        .await
        .unwrap();
    assert!(changed.is_empty());
    assert_eq!(case.count("roster_outbox").await, 1);
    assert_eq!(
        case.store.receivers(&shared).await.unwrap()[0].status_updated_at,
        Some(at)
    );
    assert!(
        case.store
            .update_status("alice", &[], 2, later, &events)
            .await
            .unwrap()
            .is_empty()
    );

    // Many IDs at once.
    let mut many: Vec<String> = (0..999).map(|_| new_id()).collect();
    many.push(shared.clone());
    let changed = case
        .store
        .update_status("alice", &many, 0, later, &events)
        .await
        .unwrap();
    assert_eq!(changed, [shared]);
    assert_eq!(case.count("roster_outbox").await, 2);
}

async fn forgetting_a_user_removes_what_was_theirs_or_about_them_and_nothing_else(
    backend: Backend,
) {
    let case = Case::open(backend).await;
    let at = now();
    let users = |list: &[&str]| list.iter().map(|u| u.to_string()).collect::<Vec<_>>();
    // About alice, to alice alone.
    let own = new_id();
    // About alice, to the admins (a user awaiting approval).
    let about = new_id();
    // About bob, to bob and alice; sent by alice.
    let shared = new_id();
    // About bob, to bob alone.
    let other = new_id();
    let mut shared_record = record(&shared, at);
    shared_record.entity = Entity::User("bob".into());
    shared_record.sender_id = Some("alice".into());
    let mut other_record = record(&other, at);
    other_record.entity = Entity::User("bob".into());
    for (record, receivers) in [
        (record(&own, at), users(&["alice"])),
        (record(&about, at), users(&["ops", "ops-two"])),
        (shared_record, users(&["alice", "bob"])),
        (other_record, users(&["bob"])),
    ] {
        assert!(
            case.store
                .create(&record, &receivers, &[], &[])
                .await
                .expect("create")
        );
    }

    for _ in 0..2 {
        case.store.forget_user("alice").await.expect("forget alice");
    }
    assert!(case.store.get(&own).await.unwrap().is_none(), "{backend:?}");
    assert!(
        case.store.get(&about).await.unwrap().is_none(),
        "{backend:?}"
    );
    assert!(case.store.receivers(&about).await.unwrap().is_empty());
    let kept = case
        .store
        .get(&shared)
        .await
        .unwrap()
        .expect("bob keeps his");
    assert_eq!(kept.sender_id, None, "{backend:?}: alice's name is gone");
    let receivers: Vec<String> = case
        .store
        .receivers(&shared)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.user_id)
        .collect();
    assert_eq!(receivers, ["bob"]);
    assert!(case.store.get(&other).await.unwrap().is_some());
    assert_eq!(case.count("notification_receivers").await, 2, "{backend:?}");
}

/// On SQLite, a transaction that reads before it writes fails at once
/// (`SQLITE_BUSY`, without waiting out the busy timeout) when another
/// writer holds the lock; `forget_user` writes first, so it waits for that
/// writer and then sees what it committed.
#[tokio::test]
async fn forgetting_a_user_on_sqlite_waits_for_another_writer() {
    let case = Case::open(Backend::Sqlite).await;
    let Db::Sqlite(pool) = &case.db else {
        panic!("a SQLite case");
    };
    let at = now();
    // About alice, to alice alone.
    let own = new_id();
    // About bob, to bob; alice is added by the other writer.
    let shared = new_id();
    let mut shared_record = record(&shared, at);
    shared_record.entity = Entity::User("bob".into());
    for (record, receiver) in [(record(&own, at), "alice"), (shared_record, "bob")] {
        assert!(
            case.store
                .create(&record, &[receiver.to_string()], &[], &[])
                .await
                .expect("create")
        );
    }

    let mut writer = pool.acquire().await.expect("a connection");
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut *writer)
        .await
        .expect("take the write lock");
    sqlx::query(
        "INSERT INTO notification_receivers \
         (notification_id, user_id, status, status_updated_at, created_at) \
         VALUES ($1, 'alice', 0, NULL, $2)",
    )
    .bind(&shared)
    .bind(at)
    .execute(&mut *writer)
    .await
    .expect("add alice as a receiver");

    let store = case.store.clone();
    let forget = tokio::spawn(async move { store.forget_user("alice").await });
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(
        !forget.is_finished(),
        "forget_user waits for the other writer instead of failing: {:?}",
        forget.await
    );
    sqlx::query("COMMIT")
        .execute(&mut *writer)
        .await
        .expect("commit the other writer");
    drop(writer);

    let gone = tokio::time::timeout(std::time::Duration::from_secs(10), forget)
        .await
        .expect("forget_user ends once the other writer committed")
        .expect("the task")
        .expect("forget alice");
    assert_eq!(gone, 1);
    assert!(case.store.get(&own).await.unwrap().is_none());
    let receivers: Vec<String> = case
        .store
        .receivers(&shared)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.user_id)
        .collect();
    assert_eq!(
        receivers,
        ["bob"],
        "what the other writer committed is seen"
    );
}
