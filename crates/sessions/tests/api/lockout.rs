//! Locks after wrong passwords, seen through `Authentication.Login` (the
//! user registry counts them, see `roster_user_registry::lockout`):
//! `user_registry.lockout.max_failures_per_client` wrong passwords from one
//! client address within `window_secs` lock that address out of the
//! account; `max_failures` from all addresses lock the account. Time moves
//! on a [`ManualClock`], never by sleeping.
//!
//! What a guesser must not learn: while locked, the right password gets the
//! very UNAUTHENTICATED answer a wrong one and an unknown user get, so
//! guessing on after a lock tells nothing.

use std::time::Duration as StdDuration;

use chrono::Duration;
use roster_core::time::{Clock, ManualClock, timestamp};
use roster_proto::v1::{Event, LoginFailureEventData, LoginResponse, UpdateUserPasswordRequest};
use roster_test_support::{Backend, LockoutConfig, TEST_PASSWORD, TestConfig, TestEnv, next_event};
use tonic::{Code, Status};

use crate::support::{
    WAIT, create_login_token, event_data, event_user_ids, get_user, ids, login, login_message,
    login_request, login_with_token, on_both_backends, registry,
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
    a_login_token_logs_in_while_the_password_is_locked_and_lifts_the_lock,
    max_failures_zero_never_locks,
    one_address_guessing_locks_out_only_that_address,
    wrong_old_passwords_of_update_password_count_in_the_same_budget,
);

/// The services on `backend` with `lockout`, the user registry's lockout
/// and the sessions service on a manual clock (returned), no per-address
/// login limit (every attempt comes from 127.0.0.1; that limit is not what
/// these tests are about), and 127.0.0.1 trusted as a proxy, so a test can
/// speak for other client addresses with `x-forwarded-for`.
async fn start(backend: Backend, lockout: LockoutConfig) -> (TestEnv, ManualClock) {
    let clock = ManualClock::new();
    let mut config = TestConfig {
        clock: Some(clock.clone()),
        ..TestConfig::default()
    };
    config.user_registry.lockout = lockout;
    config.user_registry.rate_limit.max_attempts = 0;
    config.sessions.login_rate_limit.max_attempts = 0;
    config.access.login_tokens_enabled = true;
    config.auth.trusted_proxies = vec!["127.0.0.1".into()];
    (TestEnv::start_configured(backend, config).await, clock)
}

/// A small policy for the tests that count: three failures in a minute
/// lock the account for five minutes (per address: off, so one address
/// reaches the account's limit).
fn small() -> LockoutConfig {
    LockoutConfig {
        max_failures_per_client: 0,
        max_failures: 3,
        window_secs: 60,
        lock_secs: 300,
    }
}

/// A refused login: UNAUTHENTICATED; its message.
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

/// The right password of a locked account: exactly the answer a wrong
/// password gets.
async fn assert_locked(env: &TestEnv, user_id: &str) {
    let right = refused(
        login(env, user_id, TEST_PASSWORD).await,
        &format!("the right password of locked {user_id}"),
    );
    assert_eq!(right, wrong(env, user_id).await, "locked reads as wrong");
}

/// The right password logs in.
async fn assert_logs_in(env: &TestEnv, user_id: &str) -> LoginResponse {
    login(env, user_id, TEST_PASSWORD)
        .await
        .unwrap_or_else(|status| panic!("{user_id} should log in: {status:?}"))
}

/// A login of `user_id` with `password` from the client address `from`.
async fn login_from(
    env: &TestEnv,
    from: &str,
    user_id: &str,
    password: &str,
) -> Result<LoginResponse, Status> {
    let mut request = tonic::Request::new(login_message(user_id, password));
    request
        .metadata_mut()
        .insert("x-forwarded-for", from.parse().expect("an address"));
    login_request(env, request).await
}

fn names_user(event: &Event, user_id: &str) -> bool {
    event_user_ids(event).iter().any(|u| u == user_id)
}

async fn max_failures_wrong_passwords_lock_the_account_once_until_lock_secs_pass(backend: Backend) {
    let defaults = small();
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

    // Locked: the right password learns nothing, nor does a wrong one.
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

async fn a_login_token_logs_in_while_the_password_is_locked_and_lifts_the_lock(backend: Backend) {
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
    // The token proved the mailbox, which also lifts the lock (see
    // `SessionsService::login_with_token`): whoever guessed the account
    // into a lock cannot keep its owner out.
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

async fn one_address_guessing_locks_out_only_that_address(backend: Backend) {
    let policy = LockoutConfig {
        max_failures_per_client: 3,
        max_failures: 7,
        window_secs: 60,
        lock_secs: 300,
    };
    let (env, clock) = start(backend, policy).await;
    env.ensure_user("alice", false).await;
    let mut locks = env.subscribe("user.lock").await;
    let guesser = "203.0.113.9";
    for _ in 0..3 {
        refused(
            login_from(&env, guesser, "alice", WRONG_PASSWORD).await,
            "guess",
        );
    }
    // The guesser's address is locked out: its right password reads as
    // wrong, after the same work...
    let wrong_answer = refused(
        login_from(&env, guesser, "alice", WRONG_PASSWORD).await,
        "a guess while locked",
    );
    let right_answer = refused(
        login_from(&env, guesser, "alice", TEST_PASSWORD).await,
        "the right password from the locked-out address",
    );
    assert_eq!(right_answer, wrong_answer);
    // ...an IPv6 guesser's neighbours in its /64 with it...
    for _ in 0..3 {
        refused(
            login_from(&env, "2001:db8:1:2::1", "alice", WRONG_PASSWORD).await,
            "v6",
        );
    }
    refused(
        login_from(&env, "2001:db8:1:2::ffff", "alice", TEST_PASSWORD).await,
        "another address in the guessing /64",
    );
    // ...while alice, from anywhere else, logs in as ever, and the
    // account as a whole is not locked (six failures, seven lock it).
    login_from(&env, "198.51.100.20", "alice", TEST_PASSWORD)
        .await
        .expect("alice logs in from her own address");
    let none = next_event(&mut locks, "user.lock", QUIET).await;
    assert!(none.is_none(), "one address locked the account: {none:?}");

    // Guesses from many addresses do lock the account, for everyone.
    for n in 0..7 {
        let from = format!("192.0.2.{n}");
        refused(
            login_from(&env, &from, "alice", WRONG_PASSWORD).await,
            "spread",
        );
    }
    let lock = next_event(&mut locks, "user.lock", WAIT)
        .await
        .expect("a user.lock for the account");
    assert!(names_user(&lock, "alice"), "{lock:?}");
    refused(
        login_from(&env, "198.51.100.20", "alice", TEST_PASSWORD).await,
        "the account lock holds for alice's own address too",
    );
    // Until it passes.
    clock.advance(Duration::seconds(301));
    login_from(&env, "198.51.100.20", "alice", TEST_PASSWORD)
        .await
        .expect("alice logs in once the lock has passed");
}

async fn wrong_old_passwords_of_update_password_count_in_the_same_budget(backend: Backend) {
    let (env, _clock) = start(backend, small()).await;
    env.ensure_user("alice", false).await;
    let update = |old: &str| {
        let mut registry = registry(&env);
        let request = UpdateUserPasswordRequest {
            user_ids: Some(ids("alice")),
            new: "Brand-new-Passw0rd-of-hers".into(),
            old: old.into(),
            revoke_all_access: false,
        };
        async move { registry.update_password(request).await }
    };
    // Guessing through UpdatePassword locks the password for Login too...
    let mut answers = Vec::new();
    for _ in 0..3 {
        let status = update(WRONG_PASSWORD)
            .await
            .expect_err("a wrong old password");
        assert_eq!(status.code(), Code::Unauthenticated);
        answers.push(status.message().to_string());
    }
    assert_locked(&env, "alice").await;
    // ...and for UpdatePassword itself: the right old password now reads
    // exactly as a wrong one, and changes nothing.
    let status = update(TEST_PASSWORD).await.expect_err("locked");
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(status.message(), answers[0]);
    assert_locked(&env, "alice").await;
}
