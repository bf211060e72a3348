//! Logins with a second factor, over real gRPC: the user registry's
//! `UserAuthenticationFactors` enrols, `Authentication.Login` answers with a
//! challenge, and `Authentication.CompleteLogin` completes it. TOTP codes
//! are computed here from the secret RegisterTOTP returned, with an RFC
//! 6238 implementation of the test's own; time moves on a manual clock.

use chrono::Duration;
use data_encoding::BASE32_NOPAD;
use hmac::{Hmac, Mac};
use roster_core::time::{Clock, ManualClock};
use roster_proto::v1::user_authentication_factors_client::UserAuthenticationFactorsClient;
use roster_proto::v1::user_lifecycle_client::UserLifecycleClient;
use roster_proto::v1::{
    AddOtpEmailRequest, ListUsersRequest, SendLoginEmailCodeRequest, SetRequiredActionsRequest,
    UserRequiredAction,
};
use roster_proto::v1::{
    AuthenticationMethodType, CompleteLoginRequest, GenerateRecoveryCodesRequest, LoginResponse,
    RegisterTotpRequest, RemoveAuthenticationFactorRequest, VerifyTotpRegistrationRequest,
    complete_login_request::Code as SecondCode,
};
use roster_test_support::{
    Backend, LockoutConfig, SecondFactorPolicy, TEST_PASSWORD, TestConfig, TestEnv, TestSmtp,
};
use tonic::Code;
use tonic::transport::Channel;

use crate::support::{
    WAIT, as_caller, authentication, create_login_token, ids, login, login_with_token,
    on_both_backends, token_works,
};

on_both_backends!(
    a_totp_login_needs_a_fresh_code_and_refuses_reused_and_stale_ones,
    recovery_codes_complete_a_login_once_each,
    wrong_codes_lock_the_second_factor_and_a_login_token_does_not_lift_it,
    a_password_change_buys_no_new_code_guesses,
    a_user_removes_a_factor_with_the_password_and_an_admin_without,
    a_login_token_asks_for_the_totp_too,
    a_challenge_is_single_use_and_allows_five_attempts,
    a_mailed_code_completes_a_login_once,
    the_admin_policy_leaves_a_session_without_a_factor_only_enrolment,
    an_enrol_action_set_by_an_admin_goes_once_a_factor_is_added,
);

async fn start(
    backend: Backend,
    configure: impl FnOnce(&mut TestConfig),
) -> (TestEnv, ManualClock) {
    let clock = ManualClock::new();
    let mut config = TestConfig {
        clock: Some(clock.clone()),
        ..TestConfig::default()
    };
    config.auth.cache_ttl_ms = 0;
    config.access.login_tokens_enabled = true;
    configure(&mut config);
    (TestEnv::start_configured(backend, config).await, clock)
}

fn factors(env: &TestEnv) -> UserAuthenticationFactorsClient<Channel> {
    UserAuthenticationFactorsClient::new(env.channel())
}

/// RFC 6238 with HMAC-SHA-1, 6 digits and 30-second steps, written apart
/// from the server's.
fn totp_code(secret_base32: &str, at: chrono::DateTime<chrono::Utc>) -> String {
    let key = BASE32_NOPAD
        .decode(secret_base32.as_bytes())
        .expect("base32 secret");
    let counter = (at.timestamp() / 30) as u64;
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(&key).unwrap();
    mac.update(&counter.to_be_bytes());
    let h = mac.finalize().into_bytes();
    let o = (h[19] & 0xf) as usize;
    let n = (u32::from(h[o] & 0x7f) << 24)
        | (u32::from(h[o + 1]) << 16)
        | (u32::from(h[o + 2]) << 8)
        | u32::from(h[o + 3]);
    format!("{:06}", n % 1_000_000)
}

/// Enrols an authenticator app for `user_id` with a session of theirs; the
/// base32 secret.
async fn enrol_totp(env: &TestEnv, clock: &ManualClock, user_id: &str) -> String {
    env.ensure_user(user_id, false).await;
    let session = login(env, user_id, TEST_PASSWORD).await.unwrap().token;
    let registered = factors(env)
        .register_totp(as_caller(
            RegisterTotpRequest {
                user_ids: Some(ids(user_id)),
                ..Default::default()
            },
            Some(&session),
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(
        registered.uri.starts_with("otpauth://totp/"),
        "{}",
        registered.uri
    );
    assert!(registered.uri.contains(&registered.secret));
    // A wrong first code activates nothing.
    let wrong = factors(env)
        .verify_totp_registration(as_caller(
            VerifyTotpRegistrationRequest {
                user_ids: Some(ids(user_id)),
                code: "000000".into(),
            },
            Some(&session),
        ))
        .await;
    if totp_code(&registered.secret, clock.now()) != "000000" {
        assert_eq!(wrong.unwrap_err().code(), Code::InvalidArgument);
    }
    factors(env)
        .verify_totp_registration(as_caller(
            VerifyTotpRegistrationRequest {
                user_ids: Some(ids(user_id)),
                code: totp_code(&registered.secret, clock.now()),
            },
            Some(&session),
        ))
        .await
        .unwrap();
    registered.secret
}

async fn complete(
    env: &TestEnv,
    challenge: &str,
    code: SecondCode,
) -> Result<LoginResponse, tonic::Status> {
    authentication(env)
        .complete_login(CompleteLoginRequest {
            challenge: challenge.into(),
            code: Some(code),
        })
        .await
        .map(tonic::Response::into_inner)
}

#[track_caller]
fn challenged(response: &LoginResponse) -> String {
    assert!(response.second_factor_required, "{response:?}");
    assert!(
        response.token.is_empty(),
        "no session before the second factor"
    );
    assert!(
        response.challenge.starts_with("rlc."),
        "{}",
        response.challenge
    );
    response.challenge.clone()
}

async fn a_totp_login_needs_a_fresh_code_and_refuses_reused_and_stale_ones(backend: Backend) {
    let (env, clock) = start(backend, |_| {}).await;
    let secret = enrol_totp(&env, &clock, "alice").await;

    let first = login(&env, "alice", TEST_PASSWORD).await.unwrap();
    let challenge = challenged(&first);
    assert_eq!(
        first.second_factor_methods,
        vec![AuthenticationMethodType::Totp as i32]
    );
    // The code that verified the registration was used: refused.
    let reused = complete(
        &env,
        &challenge,
        SecondCode::TotpCode(totp_code(&secret, clock.now())),
    )
    .await;
    assert_eq!(reused.unwrap_err().code(), Code::Unauthenticated);

    clock.advance(Duration::seconds(30));
    let code = totp_code(&secret, clock.now());
    let done = complete(&env, &challenge, SecondCode::TotpCode(code.clone()))
        .await
        .unwrap();
    assert!(!done.second_factor_required);
    assert!(token_works(&env, &done.token, "alice").await);

    // The same code again, in a new login: refused.
    let again = challenged(&login(&env, "alice", TEST_PASSWORD).await.unwrap());
    let reused = complete(&env, &again, SecondCode::TotpCode(code)).await;
    assert_eq!(reused.unwrap_err().code(), Code::Unauthenticated);
    // A code from two steps ago is stale.
    clock.advance(Duration::seconds(90));
    let stale = totp_code(&secret, clock.now() - Duration::seconds(60));
    let stale = complete(&env, &again, SecondCode::TotpCode(stale)).await;
    assert_eq!(stale.unwrap_err().code(), Code::Unauthenticated);
    // The current one works.
    let fresh = totp_code(&secret, clock.now());
    complete(&env, &again, SecondCode::TotpCode(fresh))
        .await
        .unwrap();
}

async fn recovery_codes_complete_a_login_once_each(backend: Backend) {
    let (env, clock) = start(backend, |_| {}).await;
    enrol_totp(&env, &clock, "bob").await;
    let first = login(&env, "bob", TEST_PASSWORD).await.unwrap();
    clock.advance(Duration::seconds(30));
    // A completion needs a code.
    let empty = complete(
        &env,
        &challenged(&first),
        SecondCode::TotpCode(String::new()),
    )
    .await;
    assert_eq!(empty.unwrap_err().code(), Code::InvalidArgument);
    let admin = env.admin_token("boss").await;
    let codes = factors(&env)
        .generate_recovery_codes(as_caller(
            GenerateRecoveryCodesRequest {
                user_ids: Some(ids("bob")),
                ..Default::default()
            },
            Some(&admin),
        ))
        .await
        .unwrap()
        .into_inner()
        .codes;
    assert_eq!(codes.len(), 10);

    let challenge = challenged(&login(&env, "bob", TEST_PASSWORD).await.unwrap());
    let done = complete(
        &env,
        &challenge,
        SecondCode::RecoveryCode(codes[0].to_uppercase()),
    )
    .await
    .unwrap();
    assert!(token_works(&env, &done.token, "bob").await);
    let challenge = challenged(&login(&env, "bob", TEST_PASSWORD).await.unwrap());
    let used = complete(&env, &challenge, SecondCode::RecoveryCode(codes[0].clone())).await;
    assert_eq!(used.unwrap_err().code(), Code::Unauthenticated);
    complete(&env, &challenge, SecondCode::RecoveryCode(codes[1].clone()))
        .await
        .unwrap();
}

/// Carol, with an authenticator app, under a lockout of 3 wrong guesses
/// in `window_secs` (none per client), after `wrong_codes` logins whose
/// code was wrong.
struct Carol {
    env: TestEnv,
    clock: ManualClock,
    secret: String,
    /// The app's code now, not used yet.
    right: String,
    wrong: &'static str,
}

async fn carol_after_wrong_codes(backend: Backend, window_secs: u64, wrong_codes: usize) -> Carol {
    let (env, clock) = start(backend, |config| {
        config.user_registry.lockout = LockoutConfig {
            max_failures_per_client: 0,
            max_failures: 3,
            window_secs,
            lock_secs: 300,
        };
    })
    .await;
    let secret = enrol_totp(&env, &clock, "carol").await;
    clock.advance(Duration::seconds(30));
    let right = totp_code(&secret, clock.now());
    let wrong = if right == "111111" {
        "222222"
    } else {
        "111111"
    };
    for _ in 0..wrong_codes {
        let challenge = challenged(&login(&env, "carol", TEST_PASSWORD).await.unwrap());
        let refused = complete(&env, &challenge, SecondCode::TotpCode(wrong.into())).await;
        assert_eq!(refused.unwrap_err().code(), Code::Unauthenticated);
    }
    Carol {
        env,
        clock,
        secret,
        right,
        wrong,
    }
}

async fn wrong_codes_lock_the_second_factor_and_a_login_token_does_not_lift_it(backend: Backend) {
    let Carol {
        env,
        clock,
        secret,
        right,
        ..
    } = carol_after_wrong_codes(backend, 60, 3).await;
    // Locked: the password, right, still asks for the second factor, but
    // even the right code is refused now.
    let challenge = challenged(&login(&env, "carol", TEST_PASSWORD).await.unwrap());
    let refused = complete(&env, &challenge, SecondCode::TotpCode(right.clone())).await;
    assert_eq!(refused.unwrap_err().code(), Code::Unauthenticated);
    // A login token proves the mailbox and lifts a lock of guessed
    // passwords; it lifts no lock of guessed codes, so whoever reads the
    // mailbox gets no new guesses with each token.
    let admin = env.admin_token("boss").await;
    let token = create_login_token(&env, &admin, "carol").await;
    let challenge = challenged(&login_with_token(&env, &token).await.unwrap());
    let refused = complete(&env, &challenge, SecondCode::TotpCode(right)).await;
    assert_eq!(refused.unwrap_err().code(), Code::Unauthenticated);
    clock.advance(Duration::seconds(301));
    let challenge = challenged(&login(&env, "carol", TEST_PASSWORD).await.unwrap());
    complete(
        &env,
        &challenge,
        SecondCode::TotpCode(totp_code(&secret, clock.now())),
    )
    .await
    .unwrap();
}

async fn a_password_change_buys_no_new_code_guesses(backend: Backend) {
    let Carol {
        env, right, wrong, ..
    } = carol_after_wrong_codes(backend, 600, 2).await;
    // Whoever knows the password changes it (no other credential needed)…
    const NEW: &str = "Another-Passw0rd-for-her";
    roster_proto::v1::user_registry_client::UserRegistryClient::new(env.channel())
        .update_password(roster_proto::v1::UpdateUserPasswordRequest {
            user_ids: Some(ids("carol")),
            new: NEW.into(),
            old: TEST_PASSWORD.into(),
            revoke_all_access: false,
        })
        .await
        .expect("the password changes");
    // …and the wrong codes before it still count: one more locks, and
    // then even the right code is refused.
    let challenge = challenged(&login(&env, "carol", NEW).await.unwrap());
    let refused = complete(&env, &challenge, SecondCode::TotpCode(wrong.into())).await;
    assert_eq!(refused.unwrap_err().code(), Code::Unauthenticated);
    let challenge = challenged(&login(&env, "carol", NEW).await.unwrap());
    let locked = complete(&env, &challenge, SecondCode::TotpCode(right)).await;
    assert_eq!(locked.unwrap_err().code(), Code::Unauthenticated);
}

async fn a_user_removes_a_factor_with_the_password_and_an_admin_without(backend: Backend) {
    let (env, clock) = start(backend, |_| {}).await;
    let secret = enrol_totp(&env, &clock, "dave").await;
    clock.advance(Duration::seconds(30));
    let challenge = challenged(&login(&env, "dave", TEST_PASSWORD).await.unwrap());
    let session = complete(
        &env,
        &challenge,
        SecondCode::TotpCode(totp_code(&secret, clock.now())),
    )
    .await
    .unwrap()
    .token;
    let remove = |password: &str| {
        as_caller(
            RemoveAuthenticationFactorRequest {
                user_ids: Some(ids("dave")),
                password: password.into(),
            },
            Some(&session),
        )
    };
    let missing = factors(&env).remove_totp(remove("")).await.unwrap_err();
    assert_eq!(missing.code(), Code::InvalidArgument);
    let wrong = factors(&env)
        .remove_totp(remove("Wrong-Passw0rd-here"))
        .await
        .unwrap_err();
    assert_eq!(wrong.code(), Code::Unauthenticated);
    factors(&env)
        .remove_totp(remove(TEST_PASSWORD))
        .await
        .unwrap();
    let plain = login(&env, "dave", TEST_PASSWORD).await.unwrap();
    assert!(!plain.second_factor_required);
    assert!(!plain.token.is_empty());

    // An admin removes without the password.
    enrol_totp(&env, &clock, "erin").await;
    let admin = env.admin_token("boss").await;
    factors(&env)
        .remove_totp(as_caller(
            RemoveAuthenticationFactorRequest {
                user_ids: Some(ids("erin")),
                password: String::new(),
            },
            Some(&admin),
        ))
        .await
        .unwrap();
    assert!(
        !login(&env, "erin", TEST_PASSWORD)
            .await
            .unwrap()
            .second_factor_required
    );
}

async fn a_login_token_asks_for_the_totp_too(backend: Backend) {
    let (env, clock) = start(backend, |_| {}).await;
    let secret = enrol_totp(&env, &clock, "frank").await;
    let admin = env.admin_token("boss").await;
    let token = create_login_token(&env, &admin, "frank").await;
    let response = login_with_token(&env, &token).await.unwrap();
    let challenge = challenged(&response);
    assert!(
        !response
            .second_factor_methods
            .contains(&(AuthenticationMethodType::OtpEmail as i32))
    );
    clock.advance(Duration::seconds(30));
    let done = complete(
        &env,
        &challenge,
        SecondCode::TotpCode(totp_code(&secret, clock.now())),
    )
    .await
    .unwrap();
    assert!(token_works(&env, &done.token, "frank").await);
}

async fn a_challenge_is_single_use_and_allows_five_attempts(backend: Backend) {
    let (env, clock) = start(backend, |_| {}).await;
    let secret = enrol_totp(&env, &clock, "gina").await;
    clock.advance(Duration::seconds(30));
    let challenge = challenged(&login(&env, "gina", TEST_PASSWORD).await.unwrap());
    complete(
        &env,
        &challenge,
        SecondCode::TotpCode(totp_code(&secret, clock.now())),
    )
    .await
    .unwrap();
    clock.advance(Duration::seconds(30));
    let used = complete(
        &env,
        &challenge,
        SecondCode::TotpCode(totp_code(&secret, clock.now())),
    )
    .await;
    assert_eq!(used.unwrap_err().code(), Code::Unauthenticated);

    let challenge = challenged(&login(&env, "gina", TEST_PASSWORD).await.unwrap());
    for _ in 0..5 {
        let refused = complete(&env, &challenge, SecondCode::RecoveryCode("nope".into())).await;
        assert_eq!(refused.unwrap_err().code(), Code::Unauthenticated);
    }
    let spent = complete(
        &env,
        &challenge,
        SecondCode::TotpCode(totp_code(&secret, clock.now())),
    )
    .await;
    assert_eq!(spent.unwrap_err().code(), Code::Unauthenticated);
    // An expired challenge is refused too.
    let challenge = challenged(&login(&env, "gina", TEST_PASSWORD).await.unwrap());
    clock.advance(Duration::seconds(301));
    let expired = complete(
        &env,
        &challenge,
        SecondCode::TotpCode(totp_code(&secret, clock.now())),
    )
    .await;
    assert_eq!(expired.unwrap_err().code(), Code::Unauthenticated);
}

async fn a_mailed_code_completes_a_login_once(backend: Backend) {
    let smtp = TestSmtp::start().await;
    let (env, _clock) = start(backend, |config| config.mail = smtp.mail_config()).await;
    env.ensure_user("hana", false).await;
    let session = login(&env, "hana", TEST_PASSWORD).await.unwrap().token;
    factors(&env)
        .add_otp_email(as_caller(
            AddOtpEmailRequest {
                user_ids: Some(ids("hana")),
                ..Default::default()
            },
            Some(&session),
        ))
        .await
        .unwrap();

    let response = login(&env, "hana", TEST_PASSWORD).await.unwrap();
    let challenge = challenged(&response);
    assert_eq!(
        response.second_factor_methods,
        vec![AuthenticationMethodType::OtpEmail as i32]
    );
    authentication(&env)
        .send_login_email_code(SendLoginEmailCodeRequest {
            challenge: challenge.clone(),
        })
        .await
        .unwrap();
    let mail = smtp
        .mail_to_with_subject("hana@example.com", "Your login code", WAIT)
        .await;
    let code = mail.line_value("Code:").expect("a code in the mail");
    assert_eq!(code.len(), 8, "{code}");
    // One code at a time: asking again at once mails nothing, from this
    // challenge or another, and the pending code stays.
    let other = challenged(&login(&env, "hana", TEST_PASSWORD).await.unwrap());
    for challenge in [&challenge, &other] {
        let too_soon = authentication(&env)
            .send_login_email_code(SendLoginEmailCodeRequest {
                challenge: challenge.clone(),
            })
            .await
            .unwrap_err();
        assert_eq!(too_soon.code(), Code::ResourceExhausted, "{too_soon:?}");
    }
    let done = complete(&env, &challenge, SecondCode::EmailCode(code.clone()))
        .await
        .unwrap();
    assert!(token_works(&env, &done.token, "hana").await);
    // Used up: the same code does not complete another login, and a new
    // one may be mailed at once.
    let again = challenged(&login(&env, "hana", TEST_PASSWORD).await.unwrap());
    let reused = complete(&env, &again, SecondCode::EmailCode(code)).await;
    assert_eq!(reused.unwrap_err().code(), Code::Unauthenticated);
    authentication(&env)
        .send_login_email_code(SendLoginEmailCodeRequest { challenge: again })
        .await
        .expect("a new code once the last one was used");
}

/// Whether `token` may list users (an admin's right).
async fn lists_users(env: &TestEnv, token: &str) -> Result<(), Code> {
    crate::support::registry(env)
        .list(as_caller(ListUsersRequest::default(), Some(token)))
        .await
        .map(drop)
        .map_err(|s| s.code())
}

async fn pending_actions(env: &TestEnv, token: &str, user_id: &str) -> Vec<i32> {
    UserLifecycleClient::new(env.channel())
        .get_status(as_caller(ids(user_id), Some(token)))
        .await
        .unwrap()
        .into_inner()
        .required_actions
}

async fn the_admin_policy_leaves_a_session_without_a_factor_only_enrolment(backend: Backend) {
    let (env, clock) = start(backend, |config| {
        config.user_registry.require_second_factor = SecondFactorPolicy::Admins;
    })
    .await;
    env.ensure_user("ivy", true).await;
    env.ensure_user("jon", false).await;
    // Not an admin: the policy does not apply.
    let jon = login(&env, "jon", TEST_PASSWORD).await.unwrap().token;
    assert!(pending_actions(&env, &jon, "jon").await.is_empty());

    let session = login(&env, "ivy", TEST_PASSWORD).await.unwrap().token;
    assert_eq!(
        pending_actions(&env, &session, "ivy").await,
        vec![UserRequiredAction::EnrolSecondFactor as i32]
    );
    assert_eq!(
        lists_users(&env, &session).await,
        Err(Code::PermissionDenied)
    );
    // The limited session may add a factor, with the password…
    let register = |password: &str| {
        let request = as_caller(
            RegisterTotpRequest {
                user_ids: Some(ids("ivy")),
                password: password.into(),
            },
            Some(&session),
        );
        let mut client = factors(&env);
        async move { client.register_totp(request).await }
    };
    let refused = register("").await.unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    let registered = register(TEST_PASSWORD).await.unwrap().into_inner();
    factors(&env)
        .verify_totp_registration(as_caller(
            VerifyTotpRegistrationRequest {
                user_ids: Some(ids("ivy")),
                code: totp_code(&registered.secret, clock.now()),
            },
            Some(&session),
        ))
        .await
        .unwrap();
    // …which ends it (it proved no second factor), and every other
    // session of hers; the next login proves the new factor.
    assert_eq!(
        lists_users(&env, &session).await,
        Err(Code::Unauthenticated)
    );
    assert!(!token_works(&env, &session, "ivy").await);
    clock.advance(Duration::seconds(30));
    let challenge = challenged(&login(&env, "ivy", TEST_PASSWORD).await.unwrap());
    let full = complete(
        &env,
        &challenge,
        SecondCode::TotpCode(totp_code(&registered.secret, clock.now())),
    )
    .await
    .unwrap()
    .token;
    assert_eq!(lists_users(&env, &full).await, Ok(()));
    assert!(pending_actions(&env, &full, "ivy").await.is_empty());
    // The sessions service deletes the ended one on the registry's
    // `user.lifecycle.end_sessions`: the new session is all that is left.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let listed = crate::support::list_sessions(&env, Some(&full), "ivy")
            .await
            .unwrap()
            .into_inner()
            .sessions;
        if listed.len() == 1 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the limited session is still listed: {listed:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // Jon's session, never limited, stays.
    assert!(token_works(&env, &jon, "jon").await);
}

async fn an_enrol_action_set_by_an_admin_goes_once_a_factor_is_added(backend: Backend) {
    let (env, clock) = start(backend, |_| {}).await;
    let admin = env.admin_token("boss").await;
    env.ensure_user("kim", false).await;
    UserLifecycleClient::new(env.channel())
        .set_required_actions(as_caller(
            SetRequiredActionsRequest {
                user_ids: Some(ids("kim")),
                actions: vec![UserRequiredAction::EnrolSecondFactor as i32],
            },
            Some(&admin),
        ))
        .await
        .unwrap();
    let session = login(&env, "kim", TEST_PASSWORD).await.unwrap().token;
    // Limited: no session list (RIGHT_USER_ALL) until a factor is added.
    let listed = crate::support::list_sessions(&env, Some(&session), "kim").await;
    assert_eq!(listed.unwrap_err().code(), Code::PermissionDenied);
    let codes = factors(&env)
        .generate_recovery_codes(as_caller(
            GenerateRecoveryCodesRequest {
                user_ids: Some(ids("kim")),
                password: TEST_PASSWORD.into(),
            },
            Some(&session),
        ))
        .await
        .unwrap()
        .into_inner()
        .codes;
    assert_eq!(codes.len(), 10);
    assert!(pending_actions(&env, &admin, "kim").await.is_empty());
    // The limited session ended with the enrolment; a login with the new
    // factor is a full one.
    assert!(!token_works(&env, &session, "kim").await);
    clock.advance(Duration::seconds(30));
    let challenge = challenged(&login(&env, "kim", TEST_PASSWORD).await.unwrap());
    let full = complete(&env, &challenge, SecondCode::RecoveryCode(codes[0].clone()))
        .await
        .unwrap()
        .token;
    crate::support::list_sessions(&env, Some(&full), "kim")
        .await
        .unwrap();
}
