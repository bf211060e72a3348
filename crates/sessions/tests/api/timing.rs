//! A wrong password and an unknown user take the same order of time, so
//! timing a login tells nobody whether an account exists.
//!
//! The bound is loose on purpose (medians within a factor of 3): this
//! catches a path that skips the password hash or does much more work, not
//! a few milliseconds of difference on a busy test machine.

use std::time::{Duration, Instant};

use roster_test_support::{Backend, TestEnv};
use tonic::Code;

use crate::support::{expect_code, login, start_with};
use roster_test_support::TEST_PASSWORD;

/// A password that meets the policy and is not the user's.
const WRONG_PASSWORD: &str = "Not-the-Passw0rd-at-all";

/// Calls of each kind before measuring (connections and pools warm up).
const WARM_UP: usize = 3;

/// Measured calls of each kind.
const ROUNDS: usize = 20;

async fn timed_refusal(env: &TestEnv, user_id: &str) -> Duration {
    timed_refusal_of(env, user_id, WRONG_PASSWORD).await
}

async fn timed_refusal_of(env: &TestEnv, user_id: &str, password: &str) -> Duration {
    let started = Instant::now();
    let result = login(env, user_id, password).await;
    let took = started.elapsed();
    expect_code(result, Code::Unauthenticated);
    took
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    let mid = samples.len() / 2;
    if samples.len().is_multiple_of(2) {
        (samples[mid - 1] + samples[mid]) / 2
    } else {
        samples[mid]
    }
}

/// TestEnv hashes with the cheap test Argon2 settings
/// (`test_password_config`) and offers no way to change them, so the
/// password hash is a small part of each login here. The comparison still
/// means something: the user registry verifies an unknown user's password
/// against a dummy hash, so both paths hash exactly once, and both write
/// one `user.login_failed` event; what would differ is a path that skipped
/// the hash or did extra round trips.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_and_an_unknown_user_take_the_same_order_of_time() {
    let env = start_with(Backend::Postgres, |config| {
        // Neither the per-address limit nor the lockout may answer
        // instead of the password check.
        config.sessions.login_rate_limit.max_attempts = 0;
        config.user_registry.lockout.max_failures = 0;
        config.user_registry.lockout.max_failures_per_client = 0;
    })
    .await;
    env.ensure_user("alice", false).await;

    for _ in 0..WARM_UP {
        timed_refusal(&env, "alice").await;
        timed_refusal(&env, "nobody-here").await;
    }
    let mut known = Vec::with_capacity(ROUNDS);
    let mut unknown = Vec::with_capacity(ROUNDS);
    // Alternating, so a slow patch of the machine hits both alike.
    for _ in 0..ROUNDS {
        known.push(timed_refusal(&env, "alice").await);
        unknown.push(timed_refusal(&env, "nobody-here").await);
    }
    let known = median(known);
    let unknown = median(unknown);
    let ratio = known.as_secs_f64() / unknown.as_secs_f64();
    println!(
        "login medians over {ROUNDS}: wrong password {known:?}, unknown user {unknown:?}, \
         ratio {ratio:.2}"
    );
    assert!(
        (1.0 / 3.0..=3.0).contains(&ratio),
        "a wrong password took {known:?} (median) and an unknown user {unknown:?}: \
         ratio {ratio:.2} is outside 1/3..3"
    );
}

/// While an account is locked, its right password is refused after the
/// same work as a wrong one: the password is hashed either way and nothing
/// more happens, so the time taken does not give the right guess away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_locked_the_right_password_takes_as_long_as_a_wrong_one() {
    let env = start_with(Backend::Postgres, |config| {
        config.sessions.login_rate_limit.max_attempts = 0;
        config.user_registry.lockout.max_failures_per_client = 3;
    })
    .await;
    env.ensure_user("alice", false).await;
    for _ in 0..3 {
        timed_refusal(&env, "alice").await;
    }
    for _ in 0..WARM_UP {
        timed_refusal_of(&env, "alice", TEST_PASSWORD).await;
        timed_refusal(&env, "alice").await;
    }
    let mut right = Vec::with_capacity(ROUNDS);
    let mut wrong = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        right.push(timed_refusal_of(&env, "alice", TEST_PASSWORD).await);
        wrong.push(timed_refusal(&env, "alice").await);
    }
    let right = median(right);
    let wrong = median(wrong);
    let ratio = right.as_secs_f64() / wrong.as_secs_f64();
    println!("locked medians over {ROUNDS}: right {right:?}, wrong {wrong:?}, ratio {ratio:.2}");
    assert!(
        (1.0 / 3.0..=3.0).contains(&ratio),
        "while locked, the right password took {right:?} (median) and a wrong one \
         {wrong:?}: ratio {ratio:.2} is outside 1/3..3"
    );
}
