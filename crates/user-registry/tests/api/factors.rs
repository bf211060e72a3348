//! `UserAuthenticationFactors` over real gRPC: enrolment, the rights each
//! step needs, and the `user.mfa.*` events, which carry no secret. Logins
//! with these factors are the sessions service's tests.

use roster_core::events::mfa;
use roster_proto::v1::second_factor_credentials_client::SecondFactorCredentialsClient;
use roster_proto::v1::user_authentication_factors_client::UserAuthenticationFactorsClient;
use roster_proto::v1::user_lifecycle_client::UserLifecycleClient;
use roster_proto::v1::{
    AddOtpEmailRequest, AuthenticationFactor, AuthenticationMethodType, CheckSecondFactorRequest,
    GenerateRecoveryCodesRequest, ListAuthenticationFactorsRequest,
    ListAuthenticationMethodTypesRequest, RegisterTotpRequest, Right, UpdateUserRequest, User,
    VerifyTotpRegistrationRequest, check_second_factor_request,
};
use roster_test_support::{
    Backend, TEST_PASSWORD, TestEnv, event_contains, event_data, with_cluster_key, with_token,
};
use roster_user_registry::totp;
use tonic::Code;
use tonic::transport::Channel;

use crate::support::{
    ADMIN, WAIT, ids, key_of, next_event_where, on_both_backends, register, registry,
};

on_both_backends!(
    a_verified_totp_is_listed_and_announced_without_its_secret,
    a_narrow_key_adds_no_factor_once_the_user_has_one,
    mailed_codes_need_a_validated_address,
    a_burst_of_parallel_code_guesses_gets_no_more_checks_than_the_limit,
);

fn factors(env: &TestEnv) -> UserAuthenticationFactorsClient<Channel> {
    UserAuthenticationFactorsClient::new(env.channel())
}

/// Registers and verifies a TOTP for `user_id` with `token` (and the
/// user's password, which a first factor needs from a narrow key); the
/// secret.
async fn enrol_totp(env: &TestEnv, token: &str, user_id: &str) -> String {
    let registered = factors(env)
        .register_totp(with_token(
            RegisterTotpRequest {
                user_ids: Some(ids(user_id)),
                password: TEST_PASSWORD.into(),
            },
            token,
        ))
        .await
        .unwrap()
        .into_inner();
    let secret = data_encoding::BASE32_NOPAD
        .decode(registered.secret.as_bytes())
        .unwrap();
    let step = totp::step_of(chrono::Utc::now().timestamp());
    factors(env)
        .verify_totp_registration(with_token(
            VerifyTotpRegistrationRequest {
                user_ids: Some(ids(user_id)),
                code: totp::code_at(&secret, step),
            },
            token,
        ))
        .await
        .unwrap();
    registered.secret
}

async fn a_verified_totp_is_listed_and_announced_without_its_secret(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    let mut events = env.subscribe("user.mfa.>").await;
    let token = env
        .user_token("ana", &[Right::UserSettingsBasic, Right::UserInfo])
        .await;

    // A first factor changes how ana logs in: a key without
    // RIGHT_USER_ALL adds one only with her password, counted as a guess.
    for (password, code) in [
        ("", Code::InvalidArgument),
        ("not-her-password", Code::Unauthenticated),
    ] {
        let refused = factors(&env)
            .register_totp(with_token(
                RegisterTotpRequest {
                    user_ids: Some(ids("ana")),
                    password: password.into(),
                },
                &token,
            ))
            .await
            .unwrap_err();
        assert_eq!(refused.code(), code, "{refused:?}");
        assert!(refused.message().contains("password"), "{refused:?}");
    }

    // Pending until verified: listed as not ready, and no login method yet.
    let registered = factors(&env)
        .register_totp(with_token(
            RegisterTotpRequest {
                user_ids: Some(ids("ana")),
                password: TEST_PASSWORD.into(),
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner();
    let listed = factors(&env)
        .list_authentication_factors(with_token(
            ListAuthenticationFactorsRequest {
                user_ids: Some(ids("ana")),
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner()
        .factors;
    assert_eq!(listed.len(), 1);
    assert!(!listed[0].ready);
    let wrong = factors(&env)
        .verify_totp_registration(with_token(
            VerifyTotpRegistrationRequest {
                user_ids: Some(ids("ana")),
                code: "12345".into(),
            },
            &token,
        ))
        .await
        .unwrap_err();
    assert_eq!(wrong.code(), Code::InvalidArgument);
    assert!(wrong.message().contains("`code`"), "{wrong:?}");

    // A new registration replaces the pending one.
    let secret = enrol_totp(&env, &token, "ana").await;
    assert_ne!(secret, registered.secret);
    let event = next_event_where(&mut events, mfa::TOTP_ADDED, WAIT, |_| true)
        .await
        .expect("user.mfa.totp_added");
    assert!(!event_contains(&event, &secret));
    let factor: AuthenticationFactor = event_data(&event);
    assert_eq!(factor.r#type, AuthenticationMethodType::Totp as i32);
    assert!(factor.ready);

    let methods = factors(&env)
        .list_authentication_method_types(with_token(
            ListAuthenticationMethodTypesRequest {
                user_ids: Some(ids("ana")),
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner()
        .auth_method_types;
    assert_eq!(
        methods,
        vec![
            AuthenticationMethodType::Password as i32,
            AuthenticationMethodType::Totp as i32
        ]
    );
    let statistics = UserLifecycleClient::new(env.channel())
        .get_user_statistics(with_token((), &env.admin_token(ADMIN).await))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(statistics.second_factor_enrolled, 1);
    // An active TOTP is not replaced by registering again.
    let again = factors(&env)
        .register_totp(with_token(
            RegisterTotpRequest {
                user_ids: Some(ids("ana")),
                ..Default::default()
            },
            &key_of(&env, "ana", &[Right::UserAll]).await,
        ))
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::AlreadyExists);
}

async fn a_narrow_key_adds_no_factor_once_the_user_has_one(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    let mut events = env.subscribe("user.mfa.>").await;
    let basic = env.user_token("ben", &[Right::UserSettingsBasic]).await;
    enrol_totp(&env, &basic, "ben").await;
    // Fresh recovery codes would be a second factor of the key holder's.
    let refused = factors(&env)
        .generate_recovery_codes(with_token(
            GenerateRecoveryCodesRequest {
                user_ids: Some(ids("ben")),
                ..Default::default()
            },
            &basic,
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    // Nor may it move the address mailed codes would go to, even with the
    // password.
    let moved = registry(&env)
        .update(with_token(
            UpdateUserRequest {
                user: Some(User {
                    ids: Some(ids("ben")),
                    primary_email_address: "attacker@example.com".into(),
                    ..Default::default()
                }),
                field_mask: Some(prost_types::FieldMask {
                    paths: vec!["primary_email_address".into()],
                }),
                password: roster_test_support::TEST_PASSWORD.into(),
            },
            &basic,
        ))
        .await
        .unwrap_err();
    assert_eq!(moved.code(), Code::PermissionDenied, "{moved:?}");
    let all = key_of(&env, "ben", &[Right::UserAll]).await;
    let codes = factors(&env)
        .generate_recovery_codes(with_token(
            GenerateRecoveryCodesRequest {
                user_ids: Some(ids("ben")),
                ..Default::default()
            },
            &all,
        ))
        .await
        .unwrap()
        .into_inner()
        .codes;
    assert_eq!(codes.len(), 10);
    let event = next_event_where(&mut events, mfa::RECOVERY_CODES_GENERATED, WAIT, |_| true)
        .await
        .expect("user.mfa.recovery_codes_generated");
    for code in &codes {
        assert!(!event_contains(&event, code));
    }
    let factor: AuthenticationFactor = event_data(&event);
    assert_eq!(factor.remaining_codes, 10);
}

async fn mailed_codes_need_a_validated_address(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    register(&env, "cleo").await;
    let token = key_of(&env, "cleo", &[Right::UserAll]).await;
    let refused = factors(&env)
        .add_otp_email(with_token(
            AddOtpEmailRequest {
                user_ids: Some(ids("cleo")),
                ..Default::default()
            },
            &token,
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
}

async fn a_burst_of_parallel_code_guesses_gets_no_more_checks_than_the_limit(backend: Backend) {
    let mut config = roster_user_registry::config::UserRegistryConfig::default();
    config.lockout.max_failures_per_client = 0;
    config.lockout.max_failures = 3;
    let env = TestEnv::start_with(backend, config).await;
    register(&env, "dora").await;
    let token = key_of(&env, "dora", &[Right::UserAll]).await;
    let secret = enrol_totp(&env, &token, "dora").await;
    let secret = data_encoding::BASE32_NOPAD
        .decode(secret.as_bytes())
        .unwrap();
    let step = totp::step_of(chrono::Utc::now().timestamp());
    let right: Vec<String> = (step - 1..=step + 1)
        .map(|s| totp::code_at(&secret, s))
        .collect();
    let wrong = (0..1_000_000)
        .map(|n| format!("{n:06}"))
        .find(|c| !right.contains(c))
        .unwrap();
    // Twenty wrong guesses at once, from twenty addresses: each is counted
    // before it is checked, so only the first three are ever checked and
    // the rest are answered as locked.
    let guesses = (0..20).map(|n| {
        let mut client = SecondFactorCredentialsClient::new(env.channel());
        let request = with_cluster_key(CheckSecondFactorRequest {
            user_ids: Some(ids("dora")),
            code: Some(check_second_factor_request::Code::TotpCode(wrong.clone())),
            client_key: format!("198.51.100.{n}"),
        });
        async move {
            client
                .check_second_factor(request)
                .await
                .unwrap()
                .into_inner()
        }
    });
    let answers = futures::future::join_all(guesses).await;
    let checked = answers.iter().filter(|a| !a.throttled).count();
    assert_eq!(checked, 3, "{answers:?}");
    assert!(answers.iter().all(|a| !a.valid));
    // Locked: the right code is refused too, and not used up.
    let locked = SecondFactorCredentialsClient::new(env.channel())
        .check_second_factor(with_cluster_key(CheckSecondFactorRequest {
            user_ids: Some(ids("dora")),
            code: Some(check_second_factor_request::Code::TotpCode(totp::code_at(
                &secret,
                step + 1,
            ))),
            client_key: "198.51.100.99".into(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(locked.throttled && !locked.valid, "{locked:?}");
}
