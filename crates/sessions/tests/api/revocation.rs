//! Sessions that end because of what happens to their user elsewhere: a
//! password change asking to revoke all access, deletion, purge and
//! suspension end every session of the user, and within a second its
//! tokens are refused by every service of the process (the user registry,
//! the access service and the sessions service). A password change without
//! revocation and a name change end nothing.
//!
//! The user registry announces the change (`user.update`, `user.delete`,
//! `user.purge`); the sessions service's worker ends the sessions
//! (`user.session.delete`, one per session) and drops the process's cached
//! answers. The cache TTL (1 s) alone would not do: a suspended user's
//! session would come back with RIGHT_USER_INFO, and the tokens here are
//! used (so cached) just before the change.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use roster_core::events::EventStream;
use roster_proto::v1::{
    ListUserApiKeysRequest, ListUsersRequest, Right, State, UpdateUserPasswordRequest, User,
    UserSessionIdentifiers,
};
use roster_test_support::{Backend, TEST_PASSWORD, TestEnv, with_token};
use tokio::sync::Notify;
use tonic::{Code, Status};

use crate::support::{
    WAIT, auth_info, event_data, event_user_ids, expect_code, get_user, ids, list_sessions, login,
    login_as, on_both_backends, registry, set_state, start, total_count, update_user, user_access,
};

/// A new password that meets the policy and differs from TEST_PASSWORD.
const NEW_PASSWORD: &str = "Changed-Passw0rd-for-roster";

/// The revocation deadline, from the moment the triggering call returned.
const DEADLINE: Duration = Duration::from_secs(1);

/// The admin who deletes, purges and suspends.
const ADMIN: &str = "root-admin";

on_both_backends!(
    a_password_change_with_revoke_all_access_ends_every_session,
    deleting_a_user_ends_its_sessions,
    purging_a_user_ends_its_sessions,
    suspending_a_user_ends_its_sessions,
    a_password_change_without_revoke_all_access_keeps_the_sessions,
    a_name_change_keeps_the_sessions,
    an_admins_session_carries_universal_rights_but_its_narrow_key_does_not,
);

/// What ends (or does not end) alice's sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trigger {
    /// UserRegistry.UpdatePassword (old/new) with `revoke_all_access`.
    PasswordChange { revoke_all_access: bool },
    /// UserRegistry.Delete by an admin.
    Delete,
    /// UserRegistry.Purge by an admin.
    Purge,
    /// UserRegistry.Update of `state` to SUSPENDED by an admin.
    Suspend,
    /// UserRegistry.Update of `name` by alice, with her session.
    Rename,
}

impl Trigger {
    /// Whether the user is gone afterwards (UserSessionRegistry.List of it
    /// answers NOT_FOUND).
    fn removes_user(self) -> bool {
        matches!(self, Trigger::Delete | Trigger::Purge)
    }
}

/// A user with two sessions, both used on every service.
struct Fixture {
    env: TestEnv,
    admin: String,
    user_id: &'static str,
    tokens: Vec<String>,
    session_ids: BTreeSet<String>,
}

async fn fixture(backend: Backend) -> Fixture {
    let env = start(backend).await;
    let admin = env.admin_token(ADMIN).await;
    let user_id = "alice";
    let mut tokens = Vec::new();
    let mut session_ids = BTreeSet::new();
    for _ in 0..2 {
        let session = login_as(&env, user_id).await;
        session_ids.insert(session_id_of(session.session_ids.as_ref()));
        tokens.push(session.token);
    }
    for token in &tokens {
        // Also leaves the answers in the process's credential cache.
        assert_eq!(
            answers(&env, token, user_id).await,
            [Ok(()), Ok(()), Ok(())],
            "a fresh session works everywhere"
        );
    }
    let listed = list_sessions(&env, Some(&admin), user_id)
        .await
        .expect("the admin lists alice's sessions");
    assert_eq!(listed_set(&listed.into_inner().sessions), session_ids);
    Fixture {
        env,
        admin,
        user_id,
        tokens,
        session_ids,
    }
}

fn session_id_of(ids: Option<&UserSessionIdentifiers>) -> String {
    ids.map(|s| s.session_id.clone())
        .filter(|id| !id.is_empty())
        .expect("a session ID")
}

fn listed_set(sessions: &[roster_proto::v1::UserSession]) -> BTreeSet<String> {
    sessions.iter().map(|s| s.session_id.clone()).collect()
}

/// What the user registry (Get), the access service (ListAPIKeys) and the
/// sessions service (List) answer `token` acting on its own user: only the
/// codes.
async fn answers(env: &TestEnv, token: &str, user_id: &str) -> [Result<(), Code>; 3] {
    fn code<T>(result: Result<T, Status>) -> Result<(), Code> {
        result.map(drop).map_err(|s| s.code())
    }
    [
        code(get_user(env, token, user_id).await),
        code(
            user_access(env)
                .list_api_keys(with_token(
                    ListUserApiKeysRequest {
                        user_ids: Some(ids(user_id)),
                        ..Default::default()
                    },
                    token,
                ))
                .await,
        ),
        code(list_sessions(env, Some(token), user_id).await),
    ]
}

const REFUSED: [Result<(), Code>; 3] = [
    Err(Code::Unauthenticated),
    Err(Code::Unauthenticated),
    Err(Code::Unauthenticated),
];

/// Polls until every token is UNAUTHENTICATED on every service, failing
/// when that is not so within [`DEADLINE`] of `returned`. A round of checks
/// counts when it started before the deadline. How long it took.
async fn assert_refused_everywhere_in_time(
    env: &TestEnv,
    tokens: &[String],
    user_id: &str,
    returned: Instant,
    what: Trigger,
) -> Duration {
    loop {
        let round = Instant::now();
        let mut still = Vec::new();
        for token in tokens {
            let got = answers(env, token, user_id).await;
            if got != REFUSED {
                still.push(got);
            }
        }
        if still.is_empty() {
            return round - returned;
        }
        assert!(
            round - returned < DEADLINE,
            "{what:?}: {:?} after the call returned, tokens still answered \
             (registry Get, access ListAPIKeys, sessions List): {still:?}",
            round - returned,
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The session IDs the next `user.session.delete` events name for
/// `user_id`, until `expected` are all seen or [`WAIT`] passes.
async fn ended_sessions(
    events: &mut EventStream,
    user_id: &str,
    expected: &BTreeSet<String>,
) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let _ = tokio::time::timeout(WAIT, async {
        while let Some(event) = events.next().await {
            if event.name != "user.session.delete" {
                continue;
            }
            if event_user_ids(&event) != [user_id.to_string()] {
                continue;
            }
            let data: UserSessionIdentifiers = event_data(&event);
            seen.insert(data.session_id);
            if seen.is_superset(expected) {
                break;
            }
        }
    })
    .await;
    seen
}

/// The user's sessions in the store, read behind the service's back.
async fn stored_sessions(env: &TestEnv, user_id: &str) -> BTreeSet<String> {
    roster_sessions::store::open(&env.sessions_db, Arc::new(Notify::new()))
        .session_ids_of(user_id)
        .await
        .expect("read the sessions store")
        .into_iter()
        .collect()
}

/// Makes the change; returns when its call returned.
async fn trigger(fx: &Fixture, what: Trigger) -> Instant {
    let env = &fx.env;
    let user = fx.user_id;
    match what {
        Trigger::PasswordChange { revoke_all_access } => {
            registry(env)
                .update_password(UpdateUserPasswordRequest {
                    user_ids: Some(ids(user)),
                    new: NEW_PASSWORD.into(),
                    old: TEST_PASSWORD.into(),
                    revoke_all_access,
                })
                .await
                .expect("alice changes her password");
        }
        Trigger::Delete => {
            registry(env)
                .delete(with_token(ids(user), &fx.admin))
                .await
                .expect("the admin deletes alice");
        }
        Trigger::Purge => {
            registry(env)
                .purge(with_token(ids(user), &fx.admin))
                .await
                .expect("the admin purges alice");
        }
        Trigger::Suspend => set_state(env, &fx.admin, user, State::Suspended).await,
        Trigger::Rename => {
            update_user(
                env,
                &fx.tokens[0],
                User {
                    ids: Some(ids(user)),
                    name: "Alice Liddell".into(),
                    ..Default::default()
                },
                &["name"],
            )
            .await;
        }
    }
    Instant::now()
}

async fn sessions_end(backend: Backend, what: Trigger) {
    let fx = fixture(backend).await;
    let env = &fx.env;
    let mut ended = env.subscribe("user.session.delete").await;

    let returned = trigger(&fx, what).await;
    let took = assert_refused_everywhere_in_time(env, &fx.tokens, fx.user_id, returned, what).await;
    println!("{what:?} on {backend:?}: sessions refused everywhere after {took:?}");

    assert_eq!(
        ended_sessions(&mut ended, fx.user_id, &fx.session_ids).await,
        fx.session_ids,
        "one user.session.delete per session of alice"
    );
    assert!(
        stored_sessions(env, fx.user_id).await.is_empty(),
        "no session of alice is left in the store"
    );
    let listed = list_sessions(env, Some(&fx.admin), fx.user_id).await;
    if what.removes_user() {
        // The user is gone, and with it its session list.
        expect_code(listed, Code::NotFound);
    } else {
        let listed = listed.expect("the admin lists alice's sessions");
        assert_eq!(total_count(&listed), 0);
        assert!(
            listed.into_inner().sessions.is_empty(),
            "no sessions listed"
        );
    }
}

async fn sessions_stay(backend: Backend, what: Trigger) {
    let fx = fixture(backend).await;
    let env = &fx.env;
    let mut ended = env.subscribe("user.session.delete").await;

    trigger(&fx, what).await;

    // A barrier: the worker handles events in order, so once bob's
    // deletion (made after the change) has ended his session, the change
    // has been handled too.
    let bob = login_as(env, "bob").await;
    let bob_session = session_id_of(bob.session_ids.as_ref());
    registry(env)
        .delete(with_token(ids("bob"), &fx.admin))
        .await
        .expect("the admin deletes bob");
    let barrier = tokio::time::timeout(WAIT, async {
        while let Some(event) = ended.next().await {
            if event.name != "user.session.delete" {
                continue;
            }
            let data: UserSessionIdentifiers = event_data(&event);
            assert_ne!(
                event_user_ids(&event),
                [fx.user_id.to_string()],
                "{what:?} ended a session of alice: {data:?}"
            );
            if data.session_id == bob_session {
                return;
            }
        }
    })
    .await;
    assert!(barrier.is_ok(), "bob's session did not end");

    for token in &fx.tokens {
        assert_eq!(
            answers(env, token, fx.user_id).await,
            [Ok(()), Ok(()), Ok(())],
            "{what:?}: alice's session still works everywhere"
        );
    }
    assert_eq!(stored_sessions(env, fx.user_id).await, fx.session_ids);
    let listed = list_sessions(env, Some(&fx.admin), fx.user_id)
        .await
        .expect("the admin lists alice's sessions");
    assert_eq!(listed_set(&listed.into_inner().sessions), fx.session_ids);
}

async fn a_password_change_with_revoke_all_access_ends_every_session(backend: Backend) {
    sessions_end(
        backend,
        Trigger::PasswordChange {
            revoke_all_access: true,
        },
    )
    .await;
}

async fn deleting_a_user_ends_its_sessions(backend: Backend) {
    sessions_end(backend, Trigger::Delete).await;
}

async fn purging_a_user_ends_its_sessions(backend: Backend) {
    sessions_end(backend, Trigger::Purge).await;
}

async fn suspending_a_user_ends_its_sessions(backend: Backend) {
    sessions_end(backend, Trigger::Suspend).await;
}

async fn a_password_change_without_revoke_all_access_keeps_the_sessions(backend: Backend) {
    sessions_stay(
        backend,
        Trigger::PasswordChange {
            revoke_all_access: false,
        },
    )
    .await;
}

async fn a_name_change_keeps_the_sessions(backend: Backend) {
    sessions_stay(backend, Trigger::Rename).await;
}

async fn an_admins_session_carries_universal_rights_but_its_narrow_key_does_not(backend: Backend) {
    let env = start(backend).await;
    env.ensure_user(ADMIN, true).await;
    env.ensure_user("alice", false).await;
    let session = login(&env, ADMIN, TEST_PASSWORD)
        .await
        .expect("the admin logs in")
        .token;
    let (_, narrow) = env.api_key(ADMIN, &[Right::UserInfo]).await;

    let info = auth_info(&env, &session)
        .await
        .expect("the session resolves");
    assert!(
        info.is_admin,
        "an approved admin's session is an admin: {info:?}"
    );
    let users = registry(&env)
        .list(with_token(ListUsersRequest::default(), &session))
        .await
        .expect("the admin's session lists users")
        .into_inner()
        .users;
    assert!(
        users
            .iter()
            .any(|u| u.ids.as_ref().is_some_and(|i| i.user_id == "alice")),
        "alice is listed"
    );
    list_sessions(&env, Some(&session), "alice")
        .await
        .expect("the admin's session lists alice's sessions");

    let info = auth_info(&env, &narrow).await.expect("the key resolves");
    assert!(
        !info.is_admin,
        "a RIGHT_USER_INFO key is no admin: {info:?}"
    );
    expect_code(
        registry(&env)
            .list(with_token(ListUsersRequest::default(), &narrow))
            .await,
        Code::PermissionDenied,
    );
    expect_code(
        list_sessions(&env, Some(&narrow), "alice").await,
        Code::PermissionDenied,
    );
}
