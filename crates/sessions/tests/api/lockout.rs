//! Lockout after failed logins: `sessions.lockout.max_failures` wrong
//! passwords within `lockout.window_secs` lock the account for
//! `lockout.lock_secs`. Time moves on a [`ManualClock`], never by sleeping.
//!
//! What a guesser must not learn: while locked, only the right password
//! hears FAILED_PRECONDITION; a wrong one gets the very UNAUTHENTICATED
//! answer an unknown user gets, and unknown users never look locked.

use std::time::Duration as StdDuration;

use chrono::Duration;
use roster_core::time::{Clock, ManualClock, timestamp};
use roster_proto::v1::{Event, LoginFailureEventData, LoginResponse};
use roster_sessions::config::LockoutConfig;
use roster_test_support::{Backend, TEST_PASSWORD, TestConfig, TestEnv, next_event};
use tonic::{Code, Status};

use crate::support::{
    WAIT, create_login_token, event_data, event_user_ids, get_user, login, login_with_token,
    on_both_backends,
};

/// A password that meets the policy and is not the users' one.
const WRONG_PASSWORD: &str = "Not-the-Passw0rd-at-all";

/// How long a test listens for an event that must not come (the relay
/// polls every 50 ms in tests).
const QUIET: StdDuration = StdDuration::from_secs(1);

on_both_backends!(
    max_failures_wrong_passwords_lock_the_account_once_until_lock_secs_pass,
    wrong_passwords_further_apart_than_the_window_do_not_add_up,
    a_successful_login_resets_the_count,
    an_unknown_user_never_gets_an_answer_that_looks_locked,
    a_login_token_logs_in_while_the_password_is_locked,
    max_failures_zero_never_locks,
);

/// The services on `backend` with `lockout`, the sessions service on a
/// manual clock (returned), and no per-address login limit (every attempt
/// comes from 127.0.0.1; that limit is not what these tests are about).
async fn start(backend: Backend, lockout: LockoutConfig) -> (TestEnv, ManualClock) {
    let clock = ManualClock::new();
    let mut config = TestConfig {
        clock: Some(clock.clone()),
        ..TestConfig::default()
    };
    config.sessions.lockout = lockout;
    config.sessions.login_rate_limit.max_attempts = 0;
    config.access.login_tokens_enabled = true;
    (TestEnv::start_configured(backend, config).await, clock)
}

/// A small policy for the tests that count: three failures in a minute
/// lock for five minutes.
fn small() -> LockoutConfig {
    LockoutConfig {
        max_failures: 3,
        window_secs: 60,
        lock_secs: 300,
    }
}

/// A wrong password for `user_id`: UNAUTHENTICATED; its message.
#[track_caller]
fn refused(result: Result<LoginResponse, Status>, what: &str) -> String {
    match result {
        Err(status) if status.code() == Code::Unauthenticated => status.message().to_string(),
        other => panic!("{what}: expected UNAUTHENTICATED, got {other:?}"),
    }
}

async fn wrong(env: &TestEnv, user_id: &str) -> String {
    refused(
        login(env, user_id, WRONG_PASSWORD).await,
        &format!("a wrong password for {user_id}"),
    )
}

/// The right password of a locked account: FAILED_PRECONDITION saying so.
async fn assert_locked(env: &TestEnv, user_id: &str) {
    match login(env, user_id, TEST_PASSWORD).await {
        Err(status) if status.code() == Code::FailedPrecondition => assert!(
            status.message().contains("locked"),
            "the refusal should say the account is locked: {status:?}"
        ),
        other => panic!("{user_id} should be locked: got {other:?}"),
    }
}

/// The right password logs in.
async fn assert_logs_in(env: &TestEnv, user_id: &str) -> LoginResponse {
    login(env, user_id, TEST_PASSWORD)
        .await
        .unwrap_or_else(|status| panic!("{user_id} should log in: {status:?}"))
}

fn names_user(event: &Event, user_id: &str) -> bool {
    event_user_ids(event).iter().any(|u| u == user_id)
}

async fn max_failures_wrong_passwords_lock_the_account_once_until_lock_secs_pass(backend: Backend) {
    // The defaults: five failures within 15 minutes lock for 15 minutes.
    let defaults = LockoutConfig::default();
    assert_eq!(defaults.max_failures, 5);
    let (env, clock) = start(backend, defaults).await;
    env.ensure_user("alice", false).await;
    let mut locks = env.subscribe("user.lock").await;
    let unknown = refused(login(&env, "nobody-here", WRONG_PASSWORD).await, "unknown");

    for _ in 0..defaults.max_failures - 1 {
        assert_eq!(wrong(&env, "alice").await, unknown);
    }
    // Not locked yet: nothing announced.
    assert!(
        next_event(&mut locks, "user.lock", StdDuration::from_millis(300))
            .await
            .is_none()
    );
    let locked_at = clock.now();
    assert_eq!(
        wrong(&env, "alice").await,
        unknown,
        "the failure that locks answers like any other"
    );

    let lock = next_event(&mut locks, "user.lock", WAIT)
        .await
        .expect("a user.lock event");
    assert!(
        names_user(&lock, "alice"),
        "user.lock names alice: {lock:?}"
    );
    let data: LoginFailureEventData = event_data(&lock);
    assert_eq!(data.reason, "too_many_failures");
    let lock_secs = i64::try_from(defaults.lock_secs).unwrap();
    assert_eq!(
        data.locked_until,
        Some(timestamp(locked_at + Duration::seconds(lock_secs))),
        "locked for lock_secs from the failure that locked"
    );

    // Locked: the right password learns it, a wrong one learns nothing.
    assert_locked(&env, "alice").await;
    for _ in 0..defaults.max_failures + 1 {
        assert_eq!(
            wrong(&env, "alice").await,
            unknown,
            "a wrong password while locked answers as for an unknown user"
        );
    }
    assert_locked(&env, "alice").await;

    // Still locked a second before the end...
    clock.advance(Duration::seconds(lock_secs - 1));
    assert_locked(&env, "alice").await;
    // ...and free after it.
    clock.advance(Duration::seconds(2));
    let session = assert_logs_in(&env, "alice").await;
    assert!(!session.token.is_empty());

    // One lock, one event: the failures while locked did not lock again.
    let again = next_event(&mut locks, "user.lock", QUIET).await;
    assert!(again.is_none(), "a second user.lock: {again:?}");
}

async fn wrong_passwords_further_apart_than_the_window_do_not_add_up(backend: Backend) {
    let policy = small();
    let (env, clock) = start(backend, policy).await;
    env.ensure_user("alice", false).await;
    let window = i64::try_from(policy.window_secs).unwrap();

    // Two failures, then two more after the window: never three in it.
    wrong(&env, "alice").await;
    wrong(&env, "alice").await;
    clock.advance(Duration::seconds(window + 1));
    wrong(&env, "alice").await;
    wrong(&env, "alice").await;
    assert_logs_in(&env, "alice").await;

    // Three spread over less than the window do lock.
    wrong(&env, "alice").await;
    clock.advance(Duration::seconds(window / 2));
    wrong(&env, "alice").await;
    clock.advance(Duration::seconds(window / 2 - 1));
    wrong(&env, "alice").await;
    assert_locked(&env, "alice").await;
}

/// `max_failures` wrong passwords within `window_secs` lock ("This many
/// wrong passwords within `window_secs` lock the account", config.rs),
/// wherever the first failure of the count fell.
#[tokio::test]
async fn max_failures_within_any_window_lock_even_when_an_older_failure_has_expired() {
    let policy = small();
    let (env, clock) = start(Backend::Sqlite, policy).await;
    env.ensure_user("alice", false).await;
    // t = 0: a failure that will be too old.
    wrong(&env, "alice").await;
    // t = 40, 61, 62: three failures within 22 seconds.
    clock.advance(Duration::seconds(40));
    wrong(&env, "alice").await;
    clock.advance(Duration::seconds(21));
    wrong(&env, "alice").await;
    clock.advance(Duration::seconds(1));
    wrong(&env, "alice").await;
    assert_locked(&env, "alice").await;
}

async fn a_successful_login_resets_the_count(backend: Backend) {
    let (env, _clock) = start(backend, small()).await;
    env.ensure_user("alice", false).await;
    wrong(&env, "alice").await;
    wrong(&env, "alice").await;
    assert_logs_in(&env, "alice").await;
    // The count starts again: two more do not lock...
    wrong(&env, "alice").await;
    wrong(&env, "alice").await;
    assert_logs_in(&env, "alice").await;
    // ...while three in a row still do.
    for _ in 0..3 {
        wrong(&env, "alice").await;
    }
    assert_locked(&env, "alice").await;
}

async fn an_unknown_user_never_gets_an_answer_that_looks_locked(backend: Backend) {
    let (env, _clock) = start(backend, small()).await;
    env.ensure_user("alice", false).await;
    let mut locks = env.subscribe("user.lock").await;
    let wrong_password = wrong(&env, "alice").await;
    for attempt in 0..10 {
        // Wrong guesses and the test users' password alike, by ID and by
        // email: always the answer a wrong password gets.
        let password = if attempt % 2 == 0 {
            WRONG_PASSWORD
        } else {
            TEST_PASSWORD
        };
        let by_id = refused(login(&env, "nobody-here", password).await, "unknown ID");
        assert_eq!(by_id, wrong_password, "attempt {attempt}");
        let by_email = refused(
            login(&env, "nobody-here@example.com", password).await,
            "unknown email",
        );
        assert_eq!(by_email, wrong_password, "attempt {attempt}");
    }
    // Once alice is locked, her wrong passwords still read the same.
    wrong(&env, "alice").await;
    wrong(&env, "alice").await;
    assert_locked(&env, "alice").await;
    assert_eq!(wrong(&env, "alice").await, wrong_password);
    assert_eq!(
        refused(login(&env, "nobody-here", TEST_PASSWORD).await, "unknown"),
        wrong_password
    );
    // The only lock was alice's.
    let lock = next_event(&mut locks, "user.lock", WAIT)
        .await
        .expect("alice's user.lock");
    assert!(names_user(&lock, "alice"), "{lock:?}");
    let again = next_event(&mut locks, "user.lock", QUIET).await;
    assert!(again.is_none(), "an unknown user was locked: {again:?}");
}

async fn a_login_token_logs_in_while_the_password_is_locked(backend: Backend) {
    let (env, _clock) = start(backend, small()).await;
    let admin = env.admin_token("root-admin").await;
    env.ensure_user("alice", false).await;
    for _ in 0..3 {
        wrong(&env, "alice").await;
    }
    assert_locked(&env, "alice").await;

    // An admin makes a login token and, skipping the email, gets it back.
    let token = create_login_token(&env, &admin, "alice").await;
    let session = login_with_token(&env, &token)
        .await
        .expect("a login token works while the password is locked");
    assert_eq!(
        session
            .session_ids
            .and_then(|s| s.user_ids)
            .map(|u| u.user_id),
        Some("alice".to_string())
    );
    get_user(&env, &session.token, "alice")
        .await
        .expect("the token's session works");
    // The token proved the mailbox, which also ends the lockout (see
    // `SessionsService::login_with_token`).
    assert_logs_in(&env, "alice").await;
}

async fn max_failures_zero_never_locks(backend: Backend) {
    let (env, _clock) = start(
        backend,
        LockoutConfig {
            max_failures: 0,
            ..small()
        },
    )
    .await;
    env.ensure_user("alice", false).await;
    let mut locks = env.subscribe("user.lock").await;
    for _ in 0..20 {
        wrong(&env, "alice").await;
    }
    assert_logs_in(&env, "alice").await;
    let lock = next_event(&mut locks, "user.lock", QUIET).await;
    assert!(lock.is_none(), "max_failures = 0 locked: {lock:?}");
}
