//! The `MailStore` and `InvitationStore` conformance suites: every case is
//! written once and run on the service's own PostgreSQL schema (as
//! `rosterd` opens it) and on a SQLite file, both migrated.

use std::any::Any;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use chrono::{DateTime, Duration, Utc};
use roster_core::db::Db;
use roster_core::time::now;
use roster_core::token::{Token, TokenHasher, TokenType};
use roster_invitations::store::{
    self, ClaimRecord, InvitationOrder, InvitationQuery, InvitationRecord, InvitationStore,
    MailRecord, MailStore, StoreError, WaitingMails,
};
use roster_proto::v1::Event;
use roster_test_support::{Backend, TestDb};

use crate::support::{on_both_backends, raw_row};

on_both_backends!(
    a_mail_round_trips_with_every_field,
    an_idempotency_key_stores_one_mail_and_returns_its_id,
    mails_without_a_key_are_all_stored,
    claim_due_takes_only_due_mails_neither_sent_nor_given_up,
    a_claim_leases_the_mail_and_counts_the_attempt,
    a_claimed_mail_is_not_claimed_again_before_its_lease_runs_out,
    claim_due_takes_at_most_limit_mails_the_longest_due_first,
    mark_sent_deletes_secrets_and_keeps_everything_else,
    mark_failed_records_the_error_and_the_next_attempt_and_keeps_secrets,
    give_up_deletes_secrets_records_the_error_and_stops_claims,
    pending_counts_mails_neither_sent_nor_given_up,
    waiting_splits_the_pending_mails_by_whether_an_attempt_failed,
    unknown_ids_read_as_none_and_finishing_them_changes_nothing,
    concurrent_enqueues_with_one_key_store_one_mail,
);

/// One backend's migrated store.
struct Case {
    store: Arc<dyn MailStore>,
    db: Db,
    backend: Backend,
    pg: Option<Arc<TestDb>>,
    _keep: Box<dyn Any + Send + Sync>,
}

impl Case {
    async fn open(backend: Backend) -> Case {
        let (db, pg, keep): (Db, Option<Arc<TestDb>>, Box<dyn Any + Send + Sync>) = match backend {
            Backend::Postgres => {
                let pg = Arc::new(TestDb::new().await);
                let db = pg.pool_for(roster_invitations::NAME).await;
                (db, Some(pg), Box::new(()))
            }
            Backend::Sqlite => {
                let (dir, path) = roster_test_support::db::sqlite_file();
                let db = Db::open_sqlite(&path, 5)
                    .await
                    .unwrap_or_else(|e| panic!("open {}: {e:#}", path.display()));
                (db, None, Box::new(dir))
            }
        };
        store::migrations()
            .run(&db)
            .await
            .unwrap_or_else(|e| panic!("{backend:?}: migrations: {e:#}"));
        Case {
            store: store::open(&db),
            db,
            backend,
            pg,
            _keep: keep,
        }
    }

    /// Another store over the same database through a pool of its own (on
    /// PostgreSQL as another replica would; on SQLite the same pool).
    async fn replica(&self) -> Arc<dyn MailStore> {
        match &self.pg {
            Some(pg) => store::open(&pg.pool_for(roster_invitations::NAME).await),
            None => self.store.clone(),
        }
    }

    async fn enqueue(&self, mail: &MailRecord) -> String {
        self.store
            .enqueue(mail)
            .await
            .unwrap_or_else(|e| panic!("{:?}: enqueue: {e:?}", self.backend))
    }

    async fn get(&self, id: &str) -> MailRecord {
        self.store
            .get(id)
            .await
            .unwrap_or_else(|e| panic!("{:?}: get: {e:?}", self.backend))
            .unwrap_or_else(|| panic!("{:?}: mail {id} is gone", self.backend))
    }

    async fn claim(&self, at: DateTime<Utc>, lease: Duration, limit: i64) -> Vec<MailRecord> {
        self.store
            .claim_due(at, at + lease, limit)
            .await
            .unwrap_or_else(|e| panic!("{:?}: claim_due: {e:?}", self.backend))
    }

    async fn claimed_ids(&self, at: DateTime<Utc>, limit: i64) -> Vec<String> {
        self.claim(at, LEASE, limit)
            .await
            .into_iter()
            .map(|m| m.id)
            .collect()
    }

    async fn pending(&self) -> u64 {
        self.store.pending().await.expect("pending")
    }
}

const LEASE: Duration = Duration::seconds(60);

fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A new mail due at `due`, with a secret and a plain variable.
fn mail_due(due: DateTime<Utc>) -> MailRecord {
    MailRecord {
        id: uuid::Uuid::new_v4().to_string(),
        idempotency_key: None,
        template: "invitation".into(),
        recipient: "new@example.com".into(),
        recipient_name: "Ada".into(),
        data: data(&[
            ("secret_token", "s3cr3t-token-value"),
            ("secret_other", "an0ther-secret"),
            ("expires_at", "2030-01-31"),
            ("user_id", "ada"),
        ]),
        attempts: 0,
        next_attempt_at: due,
        last_error: None,
        created_at: due,
        sent_at: None,
        given_up_at: None,
    }
}

fn kept_data() -> BTreeMap<String, String> {
    data(&[("expires_at", "2030-01-31"), ("user_id", "ada")])
}

async fn a_mail_round_trips_with_every_field(backend: Backend) {
    let case = Case::open(backend).await;
    let t = now();
    let mut mail = mail_due(t);
    mail.idempotency_key = Some("event-1".into());
    mail.recipient_name = "Zoë «Ü» O'Brien".into();
    mail.data
        .insert("note".into(), "ünïcødé ✓ \"quoted\"".into());
    mail.created_at = t - Duration::seconds(5);
    assert_eq!(case.enqueue(&mail).await, mail.id);
    assert_eq!(case.get(&mail.id).await, mail, "{backend:?}");
}

async fn an_idempotency_key_stores_one_mail_and_returns_its_id(backend: Backend) {
    let case = Case::open(backend).await;
    let mut first = mail_due(now());
    first.idempotency_key = Some("user.created:42".into());
    let mut second = mail_due(now());
    second.idempotency_key = first.idempotency_key.clone();
    second.recipient = "other@example.com".into();
    second.data = data(&[("secret_token", "different")]);

    assert_eq!(case.enqueue(&first).await, first.id);
    assert_eq!(
        case.enqueue(&second).await,
        first.id,
        "{backend:?}: the key's mail"
    );
    assert_eq!(case.enqueue(&first).await, first.id, "{backend:?}: again");
    assert!(
        case.store.get(&second.id).await.unwrap().is_none(),
        "{backend:?}: the second mail was not stored"
    );
    assert_eq!(case.get(&first.id).await, first, "{backend:?}: unchanged");
    assert_eq!(case.pending().await, 1, "{backend:?}");
    assert_eq!(
        case.claimed_ids(now(), 10).await,
        [first.id.clone()],
        "{backend:?}: queued once"
    );

    let mut other_key = mail_due(now());
    other_key.idempotency_key = Some("user.created:43".into());
    assert_eq!(case.enqueue(&other_key).await, other_key.id);
    assert_eq!(case.pending().await, 2, "{backend:?}");
}

async fn mails_without_a_key_are_all_stored(backend: Backend) {
    let case = Case::open(backend).await;
    let a = mail_due(now());
    let b = mail_due(now());
    assert_eq!(case.enqueue(&a).await, a.id);
    assert_eq!(case.enqueue(&b).await, b.id);
    assert_eq!(case.pending().await, 2, "{backend:?}");
}

async fn claim_due_takes_only_due_mails_neither_sent_nor_given_up(backend: Backend) {
    let case = Case::open(backend).await;
    let t = now();
    let due = mail_due(t - Duration::seconds(1));
    let due_now = mail_due(t);
    let later = mail_due(t + Duration::milliseconds(1));
    let sent = mail_due(t - Duration::seconds(10));
    let given_up = mail_due(t - Duration::seconds(10));
    for mail in [&due, &due_now, &later, &sent, &given_up] {
        case.enqueue(mail).await;
    }
    case.store.mark_sent(&sent.id, t).await.unwrap();
    case.store
        .give_up(&given_up.id, "550 no such mailbox", t)
        .await
        .unwrap();

    let claimed: HashSet<String> = case.claimed_ids(t, 100).await.into_iter().collect();
    assert_eq!(
        claimed,
        HashSet::from([due.id.clone(), due_now.id.clone()]),
        "{backend:?}: due (next_attempt_at <= now), not sent, not given up"
    );
    // Later on, only the one not yet due; the sent and given-up ones never.
    let claimed = case.claimed_ids(t + Duration::seconds(1), 100).await;
    assert_eq!(claimed, std::slice::from_ref(&later.id), "{backend:?}");
    let claimed = case
        .claimed_ids(t + Duration::days(3650), 100)
        .await
        .into_iter()
        .collect::<HashSet<_>>();
    assert_eq!(
        claimed,
        HashSet::from([due.id, due_now.id, later.id]),
        "{backend:?}: leases ran out; sent and given up never come back"
    );
}

async fn a_claim_leases_the_mail_and_counts_the_attempt(backend: Backend) {
    let case = Case::open(backend).await;
    let t = now();
    let mail = case.enqueue(&mail_due(t)).await;
    let lease_until = t + LEASE;
    let claimed = case.store.claim_due(t, lease_until, 10).await.unwrap();
    assert_eq!(claimed.len(), 1, "{backend:?}");
    let taken = &claimed[0];
    assert_eq!(taken.id, mail);
    assert_eq!(taken.attempts, 1, "{backend:?}: the attempt is counted");
    assert_eq!(
        taken.next_attempt_at, lease_until,
        "{backend:?}: leased until"
    );
    assert_eq!(
        taken.data,
        mail_due(t).data,
        "{backend:?}: secrets are there to render the mail"
    );
    assert_eq!(&case.get(&mail).await, taken, "{backend:?}: as stored");
}

async fn a_claimed_mail_is_not_claimed_again_before_its_lease_runs_out(backend: Backend) {
    let case = Case::open(backend).await;
    let t = now();
    let mail = case.enqueue(&mail_due(t)).await;
    assert_eq!(case.claimed_ids(t, 10).await, std::slice::from_ref(&mail));
    assert!(
        case.claimed_ids(t, 10).await.is_empty(),
        "{backend:?}: held by the first claim"
    );
    assert!(
        case.claimed_ids(t + LEASE - Duration::milliseconds(1), 10)
            .await
            .is_empty(),
        "{backend:?}: still held just before the lease ends"
    );
    let again = case.claim(t + LEASE, LEASE, 10).await;
    assert_eq!(
        again.len(),
        1,
        "{backend:?}: a dead worker's mail comes back"
    );
    assert_eq!(again[0].attempts, 2, "{backend:?}");
}

async fn claim_due_takes_at_most_limit_mails_the_longest_due_first(backend: Backend) {
    let case = Case::open(backend).await;
    let t = now();
    // Enqueued in a shuffled order; due one second apart.
    let offsets = [3, 0, 4, 1, 2];
    let mut by_due = Vec::new();
    for offset in offsets {
        let mail = mail_due(t - Duration::seconds(10 - offset));
        case.enqueue(&mail).await;
        by_due.push((offset, mail.id));
    }
    by_due.sort();
    let order: Vec<String> = by_due.into_iter().map(|(_, id)| id).collect();
    // Which mails a batch holds is the contract; their order within the
    // batch is not.
    let batch = async |limit| {
        let mut ids = case.claimed_ids(t, limit).await;
        ids.sort();
        ids
    };
    let sorted = |ids: &[String]| {
        let mut ids = ids.to_vec();
        ids.sort();
        ids
    };
    assert_eq!(batch(2).await, sorted(&order[0..2]), "{backend:?}");
    assert_eq!(batch(2).await, sorted(&order[2..4]), "{backend:?}");
    assert_eq!(batch(2).await, sorted(&order[4..5]), "{backend:?}");
    assert!(case.claimed_ids(t, 2).await.is_empty(), "{backend:?}");
}

async fn mark_sent_deletes_secrets_and_keeps_everything_else(backend: Backend) {
    let case = Case::open(backend).await;
    let t = now();
    let mut mail = mail_due(t);
    mail.idempotency_key = Some("k".into());
    case.enqueue(&mail).await;
    let claimed = case.claim(t, LEASE, 10).await.remove(0);
    case.store
        .mark_failed(&mail.id, "421 busy", t + Duration::milliseconds(5))
        .await
        .unwrap();
    let claimed_again = case.claim(t + Duration::seconds(1), LEASE, 10).await;
    assert_eq!(claimed_again.len(), 1);
    let sent_at = t + Duration::seconds(2);
    case.store.mark_sent(&mail.id, sent_at).await.unwrap();

    let stored = case.get(&mail.id).await;
    let expected = MailRecord {
        data: kept_data(),
        attempts: 2,
        next_attempt_at: claimed_again[0].next_attempt_at,
        last_error: Some("421 busy".into()),
        sent_at: Some(sent_at),
        ..claimed
    };
    assert_eq!(stored, expected, "{backend:?}");
    let row = raw_row(&case.db, &mail.id).await;
    for secret in ["s3cr3t-token-value", "an0ther-secret", "secret_"] {
        assert!(!row.contains(secret), "{backend:?}: {secret} in {row}");
    }
    assert_eq!(case.pending().await, 0, "{backend:?}");
    assert!(
        case.claimed_ids(t + Duration::days(3650), 10)
            .await
            .is_empty(),
        "{backend:?}: a sent mail is never claimed"
    );
}

async fn mark_failed_records_the_error_and_the_next_attempt_and_keeps_secrets(backend: Backend) {
    let case = Case::open(backend).await;
    let t = now();
    let mail = mail_due(t);
    case.enqueue(&mail).await;
    case.claim(t, LEASE, 10).await;
    let retry_at = t + Duration::milliseconds(250);
    case.store
        .mark_failed(&mail.id, "connection refused", retry_at)
        .await
        .unwrap();

    let stored = case.get(&mail.id).await;
    assert_eq!(stored.last_error.as_deref(), Some("connection refused"));
    assert_eq!(
        stored.next_attempt_at, retry_at,
        "{backend:?}: the lease is replaced by the backoff"
    );
    assert_eq!(stored.attempts, 1, "{backend:?}");
    assert_eq!(stored.data, mail.data, "{backend:?}: kept for the retry");
    assert_eq!(stored.sent_at, None);
    assert_eq!(stored.given_up_at, None);
    assert_eq!(case.pending().await, 1, "{backend:?}");

    assert!(
        case.claimed_ids(retry_at - Duration::milliseconds(1), 10)
            .await
            .is_empty(),
        "{backend:?}: not before the retry time"
    );
    let retried = case.claim(retry_at, LEASE, 10).await;
    assert_eq!(retried.len(), 1, "{backend:?}: due at the retry time");
    assert_eq!(retried[0].attempts, 2);
    assert_eq!(retried[0].data, mail.data);

    // A second failure replaces the error.
    case.store
        .mark_failed(&mail.id, "451 try later", retry_at + Duration::seconds(1))
        .await
        .unwrap();
    let stored = case.get(&mail.id).await;
    assert_eq!(stored.last_error.as_deref(), Some("451 try later"));
    assert_eq!(stored.next_attempt_at, retry_at + Duration::seconds(1));
}

async fn give_up_deletes_secrets_records_the_error_and_stops_claims(backend: Backend) {
    let case = Case::open(backend).await;
    let t = now();
    let mail = mail_due(t);
    case.enqueue(&mail).await;
    case.claim(t, LEASE, 10).await;
    let at = t + Duration::seconds(1);
    case.store
        .give_up(&mail.id, "550 5.1.1 mailbox unavailable", at)
        .await
        .unwrap();

    let stored = case.get(&mail.id).await;
    assert_eq!(stored.given_up_at, Some(at), "{backend:?}");
    assert_eq!(stored.sent_at, None, "{backend:?}");
    assert_eq!(
        stored.last_error.as_deref(),
        Some("550 5.1.1 mailbox unavailable")
    );
    assert_eq!(stored.data, kept_data(), "{backend:?}: secrets deleted");
    let row = raw_row(&case.db, &mail.id).await;
    assert!(!row.contains("s3cr3t-token-value"), "{backend:?}: {row}");
    assert!(!row.contains("an0ther-secret"), "{backend:?}: {row}");
    assert_eq!(case.pending().await, 0, "{backend:?}");
    assert!(
        case.claimed_ids(t + Duration::days(3650), 10)
            .await
            .is_empty(),
        "{backend:?}: a given-up mail is never claimed"
    );
}

async fn pending_counts_mails_neither_sent_nor_given_up(backend: Backend) {
    let case = Case::open(backend).await;
    assert_eq!(case.pending().await, 0);
    let t = now();
    let mails: Vec<MailRecord> = (0..4).map(|_| mail_due(t)).collect();
    for mail in &mails {
        case.enqueue(mail).await;
    }
    assert_eq!(case.pending().await, 4, "{backend:?}");
    case.claim(t, LEASE, 10).await;
    assert_eq!(case.pending().await, 4, "{backend:?}: claimed is pending");
    case.store.mark_failed(&mails[0].id, "e", t).await.unwrap();
    assert_eq!(case.pending().await, 4, "{backend:?}: failed is pending");
    case.store.mark_sent(&mails[1].id, t).await.unwrap();
    assert_eq!(case.pending().await, 3, "{backend:?}");
    case.store.give_up(&mails[2].id, "e", t).await.unwrap();
    assert_eq!(case.pending().await, 2, "{backend:?}");
}

async fn waiting_splits_the_pending_mails_by_whether_an_attempt_failed(backend: Backend) {
    let case = Case::open(backend).await;
    let waiting = || async { case.store.waiting().await.expect("waiting") };
    assert_eq!(waiting().await, WaitingMails::default(), "{backend:?}");
    let t = now();
    let mails: Vec<MailRecord> = (0..4).map(|_| mail_due(t)).collect();
    for mail in &mails {
        case.enqueue(mail).await;
    }
    case.claim(t, LEASE, 10).await;
    let expect = |pending, retrying| WaitingMails { pending, retrying };
    assert_eq!(waiting().await, expect(4, 0), "{backend:?}: being sent");
    case.store.mark_failed(&mails[0].id, "e", t).await.unwrap();
    assert_eq!(waiting().await, expect(3, 1), "{backend:?}: one failed");
    case.store.mark_sent(&mails[1].id, t).await.unwrap();
    case.store.give_up(&mails[0].id, "e", t).await.unwrap();
    assert_eq!(waiting().await, expect(2, 0), "{backend:?}: two finished");
    assert_eq!(case.pending().await, 2, "{backend:?}: the same total");
}

async fn unknown_ids_read_as_none_and_finishing_them_changes_nothing(backend: Backend) {
    let case = Case::open(backend).await;
    let t = now();
    let mail = mail_due(t);
    case.enqueue(&mail).await;
    assert!(case.store.get("no-such-mail").await.unwrap().is_none());
    case.store.mark_sent("no-such-mail", t).await.unwrap();
    case.store
        .mark_failed("no-such-mail", "e", t)
        .await
        .unwrap();
    case.store.give_up("no-such-mail", "e", t).await.unwrap();
    assert_eq!(case.get(&mail.id).await, mail, "{backend:?}");
    assert_eq!(case.pending().await, 1);
}

async fn concurrent_enqueues_with_one_key_store_one_mail(backend: Backend) {
    let case = Case::open(backend).await;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let store = case.replica().await;
        tasks.spawn(async move {
            let mut mail = mail_due(now());
            mail.idempotency_key = Some("same-key".into());
            store.enqueue(&mail).await.expect("enqueue")
        });
    }
    let ids: HashSet<String> = tasks.join_all().await.into_iter().collect();
    assert_eq!(ids.len(), 1, "{backend:?}: one ID for one key: {ids:?}");
    assert_eq!(case.pending().await, 1, "{backend:?}");
}

/// Four workers (on PostgreSQL each with a pool of its own, as replicas)
/// claim from one queue at once: every mail is handed out exactly once.
async fn concurrent_claims_hand_each_mail_to_one_worker(backend: Backend) {
    let case = Case::open(backend).await;
    let t = now();
    let total = 60;
    let mut all = HashSet::new();
    for i in 0..total {
        let mail = mail_due(t - Duration::milliseconds(i));
        all.insert(case.enqueue(&mail).await);
    }
    let start = Arc::new(tokio::sync::Barrier::new(4));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let store = case.replica().await;
        let start = start.clone();
        workers.spawn(async move {
            start.wait().await;
            let mut mine = Vec::new();
            loop {
                let claimed = store.claim_due(t, t + LEASE, 3).await.expect("claim_due");
                if claimed.is_empty() {
                    return mine;
                }
                mine.extend(claimed.into_iter().map(|m| m.id));
            }
        });
    }
    let per_worker = workers.join_all().await;
    let handed: Vec<&String> = per_worker.iter().flatten().collect();
    let distinct: HashSet<&String> = handed.iter().copied().collect();
    assert_eq!(
        handed.len(),
        distinct.len(),
        "{backend:?}: a mail was handed to two workers"
    );
    assert_eq!(
        distinct.len(),
        total as usize,
        "{backend:?}: every due mail was handed out"
    );
    assert!(distinct.iter().all(|id| all.contains(*id)));
    // Each was claimed once: one attempt each.
    for id in &all {
        assert_eq!(case.get(id).await.attempts, 1, "{backend:?}: {id}");
    }
}

on_both_backends!(multi_thread: concurrent_claims_hand_each_mail_to_one_worker);

/// `mark_sent` and `give_up` while other mails are being queued, as the
/// worker finishes mails while the service queues new ones.
async fn finishing_a_mail_succeeds_while_other_writes_commit(backend: Backend) {
    let case = Case::open(backend).await;
    let t = now();
    let mut ids = Vec::new();
    for _ in 0..200 {
        let mail = mail_due(t);
        case.enqueue(&mail).await;
        ids.push(mail.id);
    }
    assert_eq!(case.claim(t, LEASE, 1000).await.len(), ids.len());
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let store = case.replica().await;
        let stop = stop.clone();
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let later = mail_due(now() + Duration::hours(1));
                store.enqueue(&later).await.expect("enqueue");
            }
        })
    };
    let mut failures = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let finished = if i % 2 == 0 {
            case.store.mark_sent(id, t).await
        } else {
            case.store.give_up(id, "550 no", t).await
        };
        if let Err(error) = finished {
            failures.push(format!("{error:?}"));
        }
    }
    stop.store(true, Ordering::SeqCst);
    writer.await.expect("the writer");
    assert!(
        failures.is_empty(),
        "{backend:?}: {} of {} mark_sent/give_up failed, first: {}",
        failures.len(),
        ids.len(),
        failures[0]
    );
    for (i, id) in ids.iter().enumerate() {
        let mail = case.get(id).await;
        assert_eq!(mail.sent_at.is_some(), i % 2 == 0, "{backend:?}: {mail:?}");
        assert_eq!(
            mail.given_up_at.is_some(),
            i % 2 == 1,
            "{backend:?}: {mail:?}"
        );
        assert_eq!(mail.data, kept_data(), "{backend:?}");
    }
}

mod finishing_a_mail_succeeds_while_other_writes_commit {
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn on_postgres() {
        super::finishing_a_mail_succeeds_while_other_writes_commit(
            roster_test_support::Backend::Postgres,
        )
        .await;
    }

    /// `finish` runs `BEGIN; SELECT data; UPDATE` in a deferred
    /// transaction: on SQLite (WAL), when another connection commits
    /// between the SELECT and the UPDATE, the UPDATE fails at once with
    /// `SQLITE_BUSY_SNAPSHOT` (517, "database is locked"; the busy timeout
    /// does not apply). The mailer then only logs "cannot record a delivery
    /// outcome": the delivered mail stays claimed, keeps its secrets, and
    /// is sent again when its lease runs out.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn on_sqlite() {
        super::finishing_a_mail_succeeds_while_other_writes_commit(
            roster_test_support::Backend::Sqlite,
        )
        .await;
    }
}

// ---- Invitations ----------------------------------------------------------

on_both_backends!(
    an_invitation_round_trips_with_its_mail_and_its_events,
    send_is_all_or_nothing_and_replaces_only_expired_invitations,
    claims_need_an_unaccepted_unexpired_invitation_and_the_expected_claim,
    accept_and_release_need_the_claim_that_holds,
    resend_replaces_the_token_unless_the_claim_changed,
    delete_spares_accepted_invitations,
    list_filters_by_sender_orders_and_counts,
    a_claim_needs_the_token_it_verified,
    delete_needs_the_expected_claim,
    invitations_are_indexed_by_address,
);

const TTL: Duration = Duration::days(7);

impl Case {
    fn invitations(&self) -> Arc<dyn InvitationStore> {
        store::open_invitations(&self.db, Arc::default())
    }

    /// Another invitation store over the same database through a pool of
    /// its own (PostgreSQL), or the same pool (SQLite).
    async fn invitation_replica(&self) -> Arc<dyn InvitationStore> {
        match &self.pg {
            Some(pg) => store::open_invitations(
                &pg.pool_for(roster_invitations::NAME).await,
                Arc::default(),
            ),
            None => self.invitations(),
        }
    }

    async fn outbox(&self) -> i64 {
        roster_core::events::outbox::pending(&self.db)
            .await
            .expect("count the outbox")
    }

    /// The names of the events in the outbox, in the order written.
    async fn outbox_names(&self) -> Vec<String> {
        let sql = "SELECT name FROM roster_outbox ORDER BY id";
        match &self.db {
            Db::Postgres(pool) => sqlx::query_scalar(sql).fetch_all(pool).await,
            Db::Sqlite(pool) => sqlx::query_scalar(sql).fetch_all(pool).await,
        }
        .expect("read the outbox")
    }

    async fn invitation(&self, id: &str) -> InvitationRecord {
        self.invitations()
            .get(id)
            .await
            .unwrap_or_else(|e| panic!("{:?}: get: {e:?}", self.backend))
            .unwrap_or_else(|| panic!("{:?}: invitation {id} is gone", self.backend))
    }
}

/// A new invitation to `email` sent by `sent_by` at `at`, with its mail.
fn new_invitation(email: &str, sent_by: &str, at: DateTime<Utc>) -> (InvitationRecord, MailRecord) {
    let token = Token::generate(TokenType::Invitation);
    let invitation = InvitationRecord {
        id: uuid::Uuid::new_v4().to_string(),
        email: email.into(),
        email_key: email.to_lowercase(),
        token_id: token.id().into(),
        token_hash: TokenHasher::new("").hash(&token),
        sent_by: sent_by.into(),
        created_at: at,
        updated_at: at,
        expires_at: at + TTL,
        accepted_at: None,
        accepted_by: None,
        claim: None,
    };
    let mut mail = mail_due(at);
    mail.recipient = email.into();
    mail.data = data(&[("secret_token", &token.to_string()), ("expires_at", "x")]);
    (invitation, mail)
}

/// The `replaced` of a send that must replace nothing.
fn replaces_nothing(replaced: &InvitationRecord) -> Event {
    panic!("nothing should be replaced, but {replaced:?} was")
}

fn an_event(name: &str) -> Event {
    roster_core::events::new_event(name, Vec::new(), None)
}

fn a_claim(user_id: &str, at: DateTime<Utc>) -> ClaimRecord {
    ClaimRecord {
        id: uuid::Uuid::new_v4().to_string(),
        user_id: user_id.into(),
        at,
    }
}

async fn an_invitation_round_trips_with_its_mail_and_its_events(backend: Backend) {
    let case = Case::open(backend).await;
    let store = case.invitations();
    let t = now();
    let one = new_invitation("Ada@Example.com", "boss", t);
    let two = new_invitation("zoë@example.com", "", t);
    store
        .send(
            &[one.clone(), two.clone()],
            t,
            &[an_event("invitation.create"), an_event("invitation.create")],
            &replaces_nothing,
        )
        .await
        .unwrap();
    for (invitation, mail) in [&one, &two] {
        assert_eq!(
            &case.invitation(&invitation.id).await,
            invitation,
            "{backend:?}"
        );
        assert_eq!(
            store
                .get_by_token_id(&invitation.token_id)
                .await
                .unwrap()
                .as_ref(),
            Some(invitation),
            "{backend:?}"
        );
        assert_eq!(
            store
                .get_by_email(&invitation.email_key)
                .await
                .unwrap()
                .as_ref(),
            Some(invitation),
            "{backend:?}"
        );
        assert_eq!(&case.get(&mail.id).await, mail, "{backend:?}: its mail");
    }
    assert_eq!(case.outbox().await, 2, "{backend:?}: its events");
    assert_eq!(case.pending().await, 2, "{backend:?}: its mails");
    assert!(store.get("no-such-id").await.unwrap().is_none());
    assert!(store.get_by_token_id("nope").await.unwrap().is_none());
    assert!(
        store
            .get_by_email("ada@example.org")
            .await
            .unwrap()
            .is_none()
    );
    let debug = format!("{one:?}");
    assert!(!debug.contains(&one.0.token_hash), "{debug}");
}

async fn send_is_all_or_nothing_and_replaces_only_expired_invitations(backend: Backend) {
    let case = Case::open(backend).await;
    let store = case.invitations();
    let t = now();
    let live = new_invitation("live@example.com", "boss", t);
    let mut expired = new_invitation("expired@example.com", "boss", t - TTL - TTL);
    expired.0.expires_at = t;
    store
        .send(
            &[live.clone(), expired.clone()],
            t - TTL - TTL,
            &[],
            &replaces_nothing,
        )
        .await
        .unwrap();

    // A live invitation to one address refuses the whole batch.
    let fresh = new_invitation("fresh@example.com", "boss", t);
    let again = new_invitation("LIVE@example.com", "boss", t);
    let refused = store
        .send(
            &[fresh.clone(), again],
            t,
            &[an_event("a"), an_event("b")],
            &replaces_nothing,
        )
        .await;
    assert!(
        matches!(&refused, Err(StoreError::InvitationPending(e)) if e == "LIVE@example.com"),
        "{backend:?}: {refused:?}"
    );
    assert!(
        store.get(&fresh.0.id).await.unwrap().is_none(),
        "{backend:?}"
    );
    assert!(
        case.store.get(&fresh.1.id).await.unwrap().is_none(),
        "{backend:?}"
    );
    assert_eq!(case.outbox().await, 0, "{backend:?}: no event");
    assert_eq!(case.pending().await, 2, "{backend:?}: no mail");

    // An invitation expired at `now` is replaced, with an event of its
    // own, written ahead of the new invitation's in the same transaction.
    let replacement = new_invitation("Expired@example.com", "other", t);
    let replaced = std::sync::Mutex::new(Vec::new());
    let record_replaced = |invitation: &InvitationRecord| {
        replaced.lock().unwrap().push(invitation.clone());
        an_event("invitation.delete")
    };
    store
        .send(
            std::slice::from_ref(&replacement),
            t,
            &[an_event("invitation.create")],
            &record_replaced,
        )
        .await
        .unwrap();
    assert!(
        store.get(&expired.0.id).await.unwrap().is_none(),
        "{backend:?}"
    );
    assert_eq!(
        *replaced.lock().unwrap(),
        [expired.0.clone()],
        "{backend:?}: the event is built from the replaced invitation"
    );
    assert_eq!(
        case.outbox_names().await,
        ["invitation.delete", "invitation.create"],
        "{backend:?}"
    );
    assert_eq!(
        store.get_by_email("expired@example.com").await.unwrap(),
        Some(replacement.0),
        "{backend:?}"
    );
    // The expired one's mail stays in the queue; it is already out.
    assert_eq!(case.pending().await, 3, "{backend:?}");
}

async fn claims_need_an_unaccepted_unexpired_invitation_and_the_expected_claim(backend: Backend) {
    let case = Case::open(backend).await;
    let store = case.invitations();
    let t = now();
    let (invitation, mail) = new_invitation("claimed@example.com", "boss", t);
    store
        .send(&[(invitation.clone(), mail)], t, &[], &replaces_nothing)
        .await
        .unwrap();
    let id = invitation.id.as_str();
    let token_id = invitation.token_id.as_str();
    let stale_before = t - Duration::minutes(5);

    let first = a_claim("first", t);
    assert!(
        !store
            .claim(id, token_id, &first, Some("not-the-claim"), stale_before)
            .await
            .unwrap(),
        "{backend:?}: expected a claim that is not there"
    );
    let expired = a_claim("first", invitation.expires_at);
    assert!(
        !store
            .claim(id, token_id, &expired, None, stale_before)
            .await
            .unwrap(),
        "{backend:?}: expired at the claim's time"
    );
    assert!(
        store
            .claim(id, token_id, &first, None, stale_before)
            .await
            .unwrap(),
        "{backend:?}"
    );
    assert_eq!(
        case.invitation(id).await.claim,
        Some(first.clone()),
        "{backend:?}"
    );
    assert!(
        !store
            .claim(
                "no-such-id",
                &invitation.token_id,
                &a_claim("x", t),
                None,
                stale_before
            )
            .await
            .unwrap()
    );

    // Held, and fresh: not even with the right expectation.
    let second = a_claim("second", t + Duration::seconds(1));
    assert!(
        !store
            .claim(id, token_id, &second, None, stale_before)
            .await
            .unwrap(),
        "{backend:?}: held"
    );
    assert!(
        !store
            .claim(id, token_id, &second, Some(&first.id), stale_before)
            .await
            .unwrap(),
        "{backend:?}: the claim is not stale"
    );
    // Stale: taken over by whoever names it.
    let later = t + Duration::minutes(10);
    let third = a_claim("third", later);
    assert!(
        store
            .claim(
                id,
                token_id,
                &third,
                Some(&first.id),
                later - Duration::minutes(5)
            )
            .await
            .unwrap(),
        "{backend:?}: a stale claim is taken over"
    );
    assert_eq!(case.invitation(id).await.claim, Some(third.clone()));

    // Accepted: never claimed again.
    assert!(store.accept(id, &third.id, later, &[]).await.unwrap());
    let fourth = a_claim("fourth", later + Duration::hours(1));
    assert!(
        !store
            .claim(
                id,
                token_id,
                &fourth,
                Some(&third.id),
                later + Duration::hours(1)
            )
            .await
            .unwrap(),
        "{backend:?}: accepted"
    );
}

async fn accept_and_release_need_the_claim_that_holds(backend: Backend) {
    let case = Case::open(backend).await;
    let store = case.invitations();
    let t = now();
    let (invitation, mail) = new_invitation("settle@example.com", "boss", t);
    store
        .send(&[(invitation.clone(), mail)], t, &[], &replaces_nothing)
        .await
        .unwrap();
    let id = invitation.id.as_str();
    let token_id = invitation.token_id.as_str();
    let claim = a_claim("settler", t);
    assert!(store.claim(id, token_id, &claim, None, t).await.unwrap());

    assert!(!store.release(id, "other").await.unwrap(), "{backend:?}");
    assert!(
        !store
            .accept(id, "other", t, &[an_event("x")])
            .await
            .unwrap()
    );
    assert_eq!(case.outbox().await, 0, "{backend:?}: no event when refused");
    assert!(store.release(id, &claim.id).await.unwrap(), "{backend:?}");
    assert_eq!(case.invitation(id).await.claim, None);
    assert!(
        !store.release(id, &claim.id).await.unwrap(),
        "{backend:?}: once"
    );
    assert!(
        !store.accept(id, &claim.id, t, &[]).await.unwrap(),
        "{backend:?}"
    );

    let claim = a_claim("settler", t);
    assert!(store.claim(id, token_id, &claim, None, t).await.unwrap());
    let at = t + Duration::seconds(3);
    assert!(
        store
            .accept(id, &claim.id, at, &[an_event("invitation.accept")])
            .await
            .unwrap()
    );
    assert_eq!(case.outbox().await, 1, "{backend:?}");
    let accepted = case.invitation(id).await;
    assert_eq!(
        accepted,
        InvitationRecord {
            accepted_at: Some(at),
            accepted_by: Some("settler".into()),
            updated_at: at,
            claim: Some(claim.clone()),
            ..invitation.clone()
        },
        "{backend:?}: accepted by the claim's user; the claim is kept"
    );
    assert!(
        !store.accept(id, &claim.id, at, &[]).await.unwrap(),
        "{backend:?}: once"
    );
    assert!(!store.release(id, &claim.id).await.unwrap(), "{backend:?}");
    assert_eq!(case.invitation(id).await, accepted);
    // The address is free for a new invitation; Get by email prefers it.
    let (next, mail) = new_invitation("settle@example.com", "boss", at);
    store
        .send(&[(next.clone(), mail)], at, &[], &replaces_nothing)
        .await
        .unwrap();
    assert_eq!(
        store.get_by_email("settle@example.com").await.unwrap(),
        Some(next),
        "{backend:?}"
    );
}

async fn resend_replaces_the_token_unless_the_claim_changed(backend: Backend) {
    let case = Case::open(backend).await;
    let store = case.invitations();
    let t = now();
    let (invitation, mail) = new_invitation("resend@example.com", "boss", t);
    store
        .send(&[(invitation.clone(), mail)], t, &[], &replaces_nothing)
        .await
        .unwrap();
    let (fresh, _) = new_invitation("resend@example.com", "boss", t);
    let later = t + Duration::hours(1);
    let updated = InvitationRecord {
        token_id: fresh.token_id.clone(),
        token_hash: fresh.token_hash.clone(),
        updated_at: later,
        expires_at: later + TTL,
        ..invitation.clone()
    };
    let mut new_mail = mail_due(later);
    new_mail.recipient = "resend@example.com".into();

    let claim = a_claim("someone", t);
    assert!(
        store
            .claim(&invitation.id, &invitation.token_id, &claim, None, t)
            .await
            .unwrap()
    );
    assert!(
        !store
            .resend(&updated, None, &new_mail, &[an_event("x")])
            .await
            .unwrap(),
        "{backend:?}: claimed meanwhile"
    );
    assert!(
        case.store.get(&new_mail.id).await.unwrap().is_none(),
        "{backend:?}"
    );
    assert_eq!(case.outbox().await, 0);
    assert!(
        store
            .resend(
                &updated,
                Some(&claim.id),
                &new_mail,
                &[an_event("invitation.update")]
            )
            .await
            .unwrap(),
        "{backend:?}"
    );
    assert_eq!(
        case.invitation(&invitation.id).await,
        updated,
        "{backend:?}: claim dropped"
    );
    assert_eq!(
        case.get(&new_mail.id).await,
        new_mail,
        "{backend:?}: mail queued"
    );
    assert_eq!(case.outbox().await, 1);
    assert!(
        store
            .get_by_token_id(&invitation.token_id)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        store.get_by_token_id(&fresh.token_id).await.unwrap(),
        Some(updated.clone())
    );
}

async fn delete_spares_accepted_invitations(backend: Backend) {
    let case = Case::open(backend).await;
    let store = case.invitations();
    let t = now();
    let (pending, mail) = new_invitation("pending@example.com", "boss", t);
    let (accepted, other_mail) = new_invitation("accepted@example.com", "boss", t);
    store
        .send(
            &[(pending.clone(), mail), (accepted.clone(), other_mail)],
            t,
            &[],
            &replaces_nothing,
        )
        .await
        .unwrap();
    let claim = a_claim("member", t);
    assert!(
        store
            .claim(&accepted.id, &accepted.token_id, &claim, None, t)
            .await
            .unwrap()
    );
    assert!(store.accept(&accepted.id, &claim.id, t, &[]).await.unwrap());

    assert!(
        !store
            .delete(&accepted.id, Some(&claim.id), &[an_event("x")])
            .await
            .unwrap(),
        "{backend:?}"
    );
    assert!(store.get(&accepted.id).await.unwrap().is_some());
    assert_eq!(case.outbox().await, 0);
    assert!(
        store
            .delete(&pending.id, None, &[an_event("invitation.delete")])
            .await
            .unwrap()
    );
    assert!(
        store.get(&pending.id).await.unwrap().is_none(),
        "{backend:?}"
    );
    assert_eq!(case.outbox().await, 1);
    assert!(
        !store.delete(&pending.id, None, &[]).await.unwrap(),
        "{backend:?}: once"
    );
}

async fn list_filters_by_sender_orders_and_counts(backend: Backend) {
    let case = Case::open(backend).await;
    let store = case.invitations();
    let t = now();
    let mut all = Vec::new();
    // Created one second apart, in this order; addresses in another.
    for (i, (email, sender)) in [
        ("c@example.com", "alice"),
        ("A@example.com", "bob"),
        ("b@example.com", "alice"),
        ("d@example.com", ""),
    ]
    .into_iter()
    .enumerate()
    {
        let at = t + Duration::seconds(i64::try_from(i).unwrap());
        let sent = new_invitation(email, sender, at);
        store
            .send(std::slice::from_ref(&sent), at, &[], &replaces_nothing)
            .await
            .unwrap();
        all.push(sent.0);
    }
    let claim = a_claim("x", t);
    assert!(
        store
            .claim(&all[2].id, &all[2].token_id, &claim, None, t)
            .await
            .unwrap()
    );
    assert!(store.accept(&all[2].id, &claim.id, t, &[]).await.unwrap());

    let page = async |sent_by, order, descending, limit, offset| {
        let (rows, total) = store
            .list(InvitationQuery {
                sent_by,
                order,
                descending,
                limit,
                offset,
            })
            .await
            .unwrap();
        let emails: Vec<String> = rows.into_iter().map(|r| r.email).collect();
        (emails, total)
    };
    let names = |emails: &[&str]| emails.iter().map(|e| e.to_string()).collect::<Vec<_>>();
    use InvitationOrder::*;
    assert_eq!(
        page(None, CreatedAt, true, 10, 0).await,
        (
            names(&[
                "d@example.com",
                "b@example.com",
                "A@example.com",
                "c@example.com"
            ]),
            4
        ),
        "{backend:?}"
    );
    assert_eq!(
        page(None, Email, false, 10, 0).await.0,
        names(&[
            "A@example.com",
            "b@example.com",
            "c@example.com",
            "d@example.com"
        ]),
        "{backend:?}: by the lowercased address"
    );
    assert_eq!(
        page(None, ExpiresAt, false, 2, 2).await,
        (names(&["b@example.com", "d@example.com"]), 4),
        "{backend:?}"
    );
    assert_eq!(
        page(None, AcceptedAt, false, 1, 0).await.0,
        names(&["b@example.com"]),
        "{backend:?}: accepted first ascending"
    );
    assert_eq!(
        page(None, AcceptedAt, true, 10, 0)
            .await
            .0
            .last()
            .map(String::as_str),
        Some("b@example.com"),
        "{backend:?}: accepted last descending"
    );
    assert_eq!(
        page(Some("alice"), CreatedAt, false, 10, 0).await,
        (names(&["c@example.com", "b@example.com"]), 2),
        "{backend:?}: alice's only"
    );
    assert_eq!(
        page(Some("alice"), CreatedAt, false, 1, 1).await,
        (names(&["b@example.com"]), 2),
        "{backend:?}"
    );
    assert_eq!(page(Some("nobody"), Email, false, 10, 0).await, (vec![], 0));
}

/// Sixteen stores (on PostgreSQL each with a pool of its own, as
/// replicas) claim one invitation at once: exactly one wins.
async fn concurrent_claims_of_one_invitation_let_one_through(backend: Backend) {
    let case = Case::open(backend).await;
    let t = now();
    let (invitation, mail) = new_invitation("race@example.com", "boss", t);
    case.invitations()
        .send(&[(invitation.clone(), mail)], t, &[], &replaces_nothing)
        .await
        .unwrap();
    let start = Arc::new(tokio::sync::Barrier::new(16));
    let mut racers = tokio::task::JoinSet::new();
    for i in 0..16 {
        let store = case.invitation_replica().await;
        let start = start.clone();
        let id = invitation.id.clone();
        let token_id = invitation.token_id.clone();
        racers.spawn(async move {
            let claim = a_claim(&format!("racer-{i}"), now());
            start.wait().await;
            let won = store
                .claim(&id, &token_id, &claim, None, now() - Duration::minutes(5))
                .await
                .expect("claim");
            won.then_some(claim)
        });
    }
    let winners: Vec<ClaimRecord> = racers.join_all().await.into_iter().flatten().collect();
    assert_eq!(winners.len(), 1, "{backend:?}: {winners:?}");
    assert_eq!(
        case.invitation(&invitation.id).await.claim.as_ref(),
        winners.first(),
        "{backend:?}"
    );
}

on_both_backends!(multi_thread: concurrent_claims_of_one_invitation_let_one_through);

/// Eight stores send invitations to the same two addresses at once, in
/// both orders: one send wins whole, every other is refused whole (no
/// deadlock, no half batch).
async fn concurrent_sends_to_the_same_addresses_store_one_batch(backend: Backend) {
    let case = Case::open(backend).await;
    let start = Arc::new(tokio::sync::Barrier::new(8));
    let mut senders = tokio::task::JoinSet::new();
    for i in 0..8 {
        let store = case.invitation_replica().await;
        let start = start.clone();
        senders.spawn(async move {
            let t = now();
            let mut batch = vec![
                new_invitation("one@example.com", "boss", t),
                new_invitation("two@example.com", "boss", t),
            ];
            if i % 2 == 1 {
                batch.reverse();
            }
            start.wait().await;
            store.send(&batch, t, &[], &replaces_nothing).await
        });
    }
    let outcomes = senders.join_all().await;
    let won = outcomes.iter().filter(|o| o.is_ok()).count();
    assert_eq!(won, 1, "{backend:?}: {outcomes:?}");
    for outcome in &outcomes {
        assert!(
            matches!(outcome, Ok(()) | Err(StoreError::InvitationPending(_))),
            "{backend:?}: {outcome:?}"
        );
    }
    let (rows, total) = case
        .invitations()
        .list(InvitationQuery {
            sent_by: None,
            order: InvitationOrder::Email,
            descending: false,
            limit: 10,
            offset: 0,
        })
        .await
        .unwrap();
    assert_eq!(total, 2, "{backend:?}: {rows:?}");
    assert_eq!(
        case.pending().await,
        2,
        "{backend:?}: the winner's mails only"
    );
}

on_both_backends!(multi_thread: concurrent_sends_to_the_same_addresses_store_one_batch);

/// A claim reads the invitation by its token's ID and verifies the token;
/// a resend that commits in between replaces the token. The claim then
/// must not go through with the token it verified.
async fn a_claim_needs_the_token_it_verified(backend: Backend) {
    let case = Case::open(backend).await;
    let store = case.invitations();
    let t = now();
    let (invitation, mail) = new_invitation("replaced@example.com", "boss", t);
    store
        .send(&[(invitation.clone(), mail)], t, &[], &replaces_nothing)
        .await
        .unwrap();
    let read = store
        .get_by_token_id(&invitation.token_id)
        .await
        .unwrap()
        .expect("found by the old token");

    let (fresh, new_mail) = new_invitation("replaced@example.com", "boss", t);
    let resent = InvitationRecord {
        token_id: fresh.token_id.clone(),
        token_hash: fresh.token_hash.clone(),
        updated_at: t + Duration::seconds(1),
        expires_at: t + Duration::seconds(1) + TTL,
        ..invitation.clone()
    };
    assert!(
        store.resend(&resent, None, &new_mail, &[]).await.unwrap(),
        "{backend:?}"
    );

    let stale_before = t - Duration::minutes(5);
    let late = a_claim("old-token", t + Duration::seconds(2));
    assert!(
        !store
            .claim(&read.id, &read.token_id, &late, None, stale_before)
            .await
            .unwrap(),
        "{backend:?}: the replaced token claimed the invitation"
    );
    assert_eq!(
        case.invitation(&invitation.id).await,
        resent,
        "{backend:?}: unclaimed"
    );
    let rightful = a_claim("new-token", t + Duration::seconds(2));
    assert!(
        store
            .claim(&resent.id, &resent.token_id, &rightful, None, stale_before)
            .await
            .unwrap(),
        "{backend:?}: the current token claims"
    );
    assert_eq!(case.invitation(&invitation.id).await.claim, Some(rightful));
}

async fn delete_needs_the_expected_claim(backend: Backend) {
    let case = Case::open(backend).await;
    let store = case.invitations();
    let t = now();
    let (invitation, mail) = new_invitation("held@example.com", "boss", t);
    store
        .send(&[(invitation.clone(), mail)], t, &[], &replaces_nothing)
        .await
        .unwrap();
    let id = invitation.id.as_str();
    let claim = a_claim("registering", t);
    assert!(
        store
            .claim(id, &invitation.token_id, &claim, None, t)
            .await
            .unwrap()
    );

    // Read unclaimed, claimed meanwhile: nothing is deleted.
    assert!(
        !store.delete(id, None, &[an_event("x")]).await.unwrap(),
        "{backend:?}: claimed since it was read"
    );
    assert!(
        !store
            .delete(id, Some("another-claim"), &[an_event("x")])
            .await
            .unwrap(),
        "{backend:?}: another claim"
    );
    assert_eq!(case.invitation(id).await.claim, Some(claim.clone()));
    assert_eq!(case.outbox().await, 0, "{backend:?}: no event when refused");

    assert!(
        store
            .delete(id, Some(&claim.id), &[an_event("invitation.delete")])
            .await
            .unwrap(),
        "{backend:?}: the claim that was read"
    );
    assert!(store.get(id).await.unwrap().is_none(), "{backend:?}");
    assert_eq!(case.outbox().await, 1, "{backend:?}");
}

/// `get_by_email` and List by address find rows through an index on the
/// address: the unique one covers only unaccepted invitations.
async fn invitations_are_indexed_by_address(backend: Backend) {
    let case = Case::open(backend).await;
    let definition: Option<String> = match &case.db {
        Db::Postgres(pool) => {
            sqlx::query_scalar(
                "SELECT indexdef FROM pg_indexes WHERE schemaname = current_schema() \
                 AND tablename = 'invitations' AND indexname = 'invitations_by_email'",
            )
            .fetch_optional(pool)
            .await
        }
        Db::Sqlite(pool) => {
            sqlx::query_scalar(
                "SELECT sql FROM sqlite_master WHERE type = 'index' \
                 AND tbl_name = 'invitations' AND name = 'invitations_by_email'",
            )
            .fetch_optional(pool)
            .await
        }
    }
    .expect("read the indexes");
    let definition = definition
        .unwrap_or_else(|| panic!("{backend:?}: no index invitations_by_email"))
        .to_lowercase();
    assert!(
        definition.contains("(email_key)"),
        "{backend:?}: {definition}"
    );
    assert!(
        !definition.contains("unique") && !definition.contains("where"),
        "{backend:?}: a plain index over every invitation: {definition}"
    );
}
