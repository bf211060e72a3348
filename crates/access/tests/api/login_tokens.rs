//! Login tokens: CreateLoginToken (off unless enabled, rate-limited, at
//! most five live per user, the token itself only for an admin) and
//! EntityAccess.ConsumeLoginToken (each token works exactly once).

use chrono::Duration;
use roster_access::AccessConfig;
use roster_access::store::{LoginTokenRecord, now};
use roster_core::db::Db;
use roster_core::ratelimit::RateLimitConfig;
use roster_core::token::{Token, TokenHasher, TokenType};
use roster_proto::v1::{GetUserRequest, LoginToken, Right};
use roster_test_support::{Backend, TestConfig, TestEnv, with_token};
use tonic::Code;

use crate::support::*;

/// The services with login tokens enabled and `change` applied.
async fn enabled_with(backend: Backend, change: impl FnOnce(&mut AccessConfig)) -> TestEnv {
    let mut access = AccessConfig {
        login_tokens_enabled: true,
        ..AccessConfig::default()
    };
    change(&mut access);
    TestEnv::start_configured(
        backend,
        TestConfig {
            access,
            ..TestConfig::default()
        },
    )
    .await
}

async fn enabled(backend: Backend) -> TestEnv {
    enabled_with(backend, |_| {}).await
}

/// How many login tokens of `user_id` are stored, read behind the
/// service's back.
async fn stored_tokens(env: &TestEnv, user_id: &str) -> i64 {
    let sql = "SELECT COUNT(*) FROM login_tokens WHERE user_id = $1";
    match &env.access_db {
        Db::Postgres(pool) => sqlx::query_scalar(sql)
            .bind(user_id)
            .fetch_one(pool)
            .await
            .unwrap(),
        Db::Sqlite(pool) => sqlx::query_scalar(sql)
            .bind(user_id)
            .fetch_one(pool)
            .await
            .unwrap(),
    }
}

/// Stores a login token of `user_id` behind the service's back and returns
/// the full token.
async fn stored_directly(
    env: &TestEnv,
    user_id: &str,
    change: impl FnOnce(&mut LoginTokenRecord),
) -> String {
    let token = Token::generate(TokenType::LoginToken);
    let at = now();
    let mut record = LoginTokenRecord {
        id: token.id().into(),
        user_id: user_id.into(),
        // TestEnv hashes with the default (empty) token_hash_key.
        secret_hash: TokenHasher::new("").hash(&token),
        created_at: at,
        expires_at: at + Duration::hours(1),
        used_at: None,
    };
    change(&mut record);
    access_store(env)
        .insert_login_token(&record, 100, &[], &[])
        .await
        .expect("insert a login token");
    token.to_string()
}

fn seconds_between(
    from: &Option<prost_types::Timestamp>,
    to: &Option<prost_types::Timestamp>,
) -> i64 {
    to.as_ref().unwrap().seconds - from.as_ref().unwrap().seconds
}

async fn login_tokens_are_refused_while_disabled(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    let admin = env.admin_token("root-admin").await;
    env.ensure_user("alice", false).await;
    for token in [None, Some(admin.as_str())] {
        let status = expect_code(
            create_login_token(&env, token, "alice", false).await,
            Code::FailedPrecondition,
        );
        assert!(
            status.message().contains("login_tokens_enabled"),
            "{status:?}"
        );
    }
    assert_eq!(stored_tokens(&env, "alice").await, 0);
}

async fn an_anonymous_caller_gets_the_same_empty_answer_for_any_user(backend: Backend) {
    let env = enabled(backend).await;
    let admin = env.admin_token("root-admin").await;
    env.ensure_user("alice", false).await;
    env.ensure_user("bob", false).await;
    env.ensure_user("gone", false).await;
    registry(&env)
        .delete(with_token(ids("gone"), &admin))
        .await
        .expect("delete gone");
    let mut events = env.subscribe("user.login-token.>").await;

    for user_id in ["alice", "nobody", "gone", "bob"] {
        let token = create_login_token(&env, None, user_id, false)
            .await
            .unwrap_or_else(|s| panic!("{user_id}: {s:?}"));
        assert_eq!(token, "", "{user_id}: the token only goes out by email");
    }
    // Only users who exist got one.
    for (user_id, count) in [("alice", 1), ("nobody", 0), ("gone", 0), ("bob", 1)] {
        assert_eq!(stored_tokens(&env, user_id).await, count, "{user_id}");
    }
    // Announced in order, and only for those.
    for user_id in ["alice", "bob"] {
        let event = next_event_where(&mut events, "user.login-token.create", WAIT, |_| true)
            .await
            .unwrap_or_else(|| panic!("{user_id}'s event"));
        assert_eq!(event_user_ids(&event), [user_id]);
    }

    // A user asking for their own token gets the same answer.
    let alice = env.user_token("alice", &[Right::UserAll]).await;
    assert_eq!(
        create_login_token(&env, Some(&alice), "alice", false)
            .await
            .unwrap(),
        ""
    );
}

async fn an_admin_gets_a_token_for_a_non_admin_that_works_exactly_once(backend: Backend) {
    let env = enabled(backend).await;
    let admin = env.admin_token("root-admin").await;
    env.ensure_user("alice", false).await;

    let token = create_login_token(&env, Some(&admin), "alice", false)
        .await
        .expect("an admin asks for alice");
    assert!(token.starts_with("rlt."), "{token}");
    assert_eq!(
        Token::parse(&token).map(|t| t.kind()),
        Ok(TokenType::LoginToken)
    );
    // Not a credential in itself.
    let status = expect_code(auth_info(&env, &token).await, Code::Unauthenticated);
    assert!(status.message().contains("LoginWithToken"), "{status:?}");
    expect_code(
        registry(&env)
            .get(with_token(
                GetUserRequest {
                    user_ids: Some(ids("alice")),
                    field_mask: None,
                },
                &token,
            ))
            .await,
        Code::Unauthenticated,
    );

    assert_eq!(consume(&env, &token).await.expect("first use"), "alice");
    expect_code(consume(&env, &token).await, Code::Unauthenticated);
    expect_code(auth_info(&env, &token).await, Code::Unauthenticated);

    // skip_email is the admin's to set.
    let skipped = create_login_token(&env, Some(&admin), "alice", true)
        .await
        .expect("an admin skips the email");
    assert!(skipped.starts_with("rlt."));
    assert_eq!(consume(&env, &skipped).await.unwrap(), "alice");
}

async fn an_admin_gets_no_token_for_an_admin(backend: Backend) {
    let env = enabled(backend).await;
    let admin = env.admin_token("root-admin").await;
    env.ensure_user("ops", true).await;
    for user_id in ["ops", "root-admin"] {
        assert_eq!(
            create_login_token(&env, Some(&admin), user_id, true)
                .await
                .unwrap_or_else(|s| panic!("{user_id}: {s:?}")),
            "",
            "{user_id}"
        );
        assert_eq!(stored_tokens(&env, user_id).await, 1, "{user_id}");
    }
}

async fn an_admin_asking_for_a_missing_user_learns_it_is_not_found(backend: Backend) {
    let env = enabled(backend).await;
    let admin = env.admin_token("root-admin").await;
    env.ensure_user("gone", false).await;
    registry(&env)
        .delete(with_token(ids("gone"), &admin))
        .await
        .expect("delete gone");
    for user_id in ["nobody", "gone"] {
        expect_code(
            create_login_token(&env, Some(&admin), user_id, false).await,
            Code::NotFound,
        );
    }
}

async fn only_admins_may_skip_the_email(backend: Backend) {
    let env = enabled(backend).await;
    let alice = env.user_token("alice", &[Right::UserAll]).await;
    for token in [None, Some(alice.as_str())] {
        let status = expect_code(
            create_login_token(&env, token, "alice", true).await,
            Code::PermissionDenied,
        );
        assert!(status.message().contains("skip_email"), "{status:?}");
    }
    assert_eq!(stored_tokens(&env, "alice").await, 0);
}

async fn a_user_has_at_most_five_live_login_tokens(backend: Backend) {
    let env = enabled(backend).await;
    let admin = env.admin_token("root-admin").await;
    env.ensure_user("alice", false).await;
    let mut tokens = Vec::new();
    for i in 0..5 {
        tokens.push(
            create_login_token(&env, Some(&admin), "alice", true)
                .await
                .unwrap_or_else(|s| panic!("token {i}: {s:?}")),
        );
    }
    let status = expect_code(
        create_login_token(&env, Some(&admin), "alice", true).await,
        Code::FailedPrecondition,
    );
    assert!(
        status.message().contains("login_tokens_still_valid"),
        "{status:?}"
    );
    assert_eq!(stored_tokens(&env, "alice").await, 5);
    // Every one of the five still works; using one makes room.
    assert_eq!(consume(&env, &tokens[0]).await.unwrap(), "alice");
    let sixth = create_login_token(&env, Some(&admin), "alice", true)
        .await
        .expect("room for one more");
    for token in tokens[1..].iter().chain([&sixth]) {
        assert_eq!(consume(&env, token).await.unwrap(), "alice");
    }
    // Another user is not affected by alice's tokens.
    env.ensure_user("bob", false).await;
    assert!(
        create_login_token(&env, Some(&admin), "bob", true)
            .await
            .is_ok()
    );
}

async fn an_anonymous_caller_cannot_tell_a_user_with_many_tokens_from_an_unknown_one(
    backend: Backend,
) {
    let env = enabled_with(backend, |c| {
        c.login_token_rate_limit = RateLimitConfig {
            max_attempts: 0,
            window_secs: 60,
        };
    })
    .await;
    env.ensure_user("alice", false).await;
    let mut answers = Vec::new();
    for user_id in ["alice", "nobody"] {
        let mut codes = Vec::new();
        for _ in 0..6 {
            codes.push(match create_login_token(&env, None, user_id, false).await {
                Ok(token) => format!("OK {token:?}"),
                Err(status) => format!("{:?}", status.code()),
            });
        }
        answers.push(codes);
    }
    assert_eq!(
        answers[0], answers[1],
        "an existing user and an unknown one must read the same"
    );
    assert_eq!(
        stored_tokens(&env, "alice").await,
        5,
        "the sixth was refused"
    );
}

async fn anonymous_attempts_are_rate_limited(backend: Backend) {
    let env = enabled_with(backend, |c| {
        c.login_token_rate_limit = RateLimitConfig {
            max_attempts: 2,
            window_secs: 60,
        };
    })
    .await;
    let admin = env.admin_token("root-admin").await;
    env.ensure_user("alice", false).await;
    for attempt in 1..=2 {
        create_login_token(&env, None, "alice", false)
            .await
            .unwrap_or_else(|s| panic!("attempt {attempt}: {s:?}"));
    }
    expect_code(
        create_login_token(&env, None, "alice", false).await,
        Code::ResourceExhausted,
    );
    // The limit holds for the address, whichever user it asks for.
    expect_code(
        create_login_token(&env, None, "nobody", false).await,
        Code::ResourceExhausted,
    );
    assert_eq!(stored_tokens(&env, "alice").await, 2);
    // Admins are not limited.
    let token = create_login_token(&env, Some(&admin), "alice", false)
        .await
        .expect("an admin is not rate-limited");
    assert!(token.starts_with("rlt."));
}

async fn an_expired_or_wrong_login_token_is_refused(backend: Backend) {
    let env = enabled(backend).await;
    env.ensure_user("alice", false).await;
    // The same way of storing a token, unexpired, works.
    let live = stored_directly(&env, "alice", |_| {}).await;
    let expired = stored_directly(&env, "alice", |t| {
        t.created_at -= Duration::hours(2);
        t.expires_at = t.created_at + Duration::hours(1);
    })
    .await;
    expect_code(consume(&env, &expired).await, Code::Unauthenticated);

    let parsed = Token::parse(&live).unwrap();
    let other = Token::generate(TokenType::LoginToken);
    let (_, api_key) = env.api_key("alice", &[Right::UserInfo]).await;
    let not_tokens = [
        String::new(),
        "garbage".to_string(),
        format!("rlt.{}.{}", parsed.id(), other.secret()),
        format!("rak.{}.{}", parsed.id(), parsed.secret()),
        format!("rst.{}.{}", parsed.id(), parsed.secret()),
        other.to_string(),
        api_key,
    ];
    for token in &not_tokens {
        let status = expect_code(consume(&env, token).await, Code::Unauthenticated);
        assert!(!status.message().contains(parsed.secret()));
    }
    assert_eq!(consume(&env, &live).await.unwrap(), "alice");
}

async fn concurrent_uses_of_one_token_have_exactly_one_winner(backend: Backend) {
    let env = enabled(backend).await;
    let admin = env.admin_token("root-admin").await;
    env.ensure_user("alice", false).await;
    let token = create_login_token(&env, Some(&admin), "alice", true)
        .await
        .unwrap();

    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let mut client = entity_access(&env);
            let token = token.clone();
            tokio::spawn(async move {
                client
                    .consume_login_token(roster_test_support::with_cluster_key(
                        roster_proto::v1::ConsumeLoginTokenRequest { token },
                    ))
                    .await
            })
        })
        .collect();
    let mut winners = Vec::new();
    for task in tasks {
        match task.await.expect("task") {
            Ok(response) => winners.push(response.into_inner().user_ids.unwrap().user_id),
            Err(status) => assert_eq!(status.code(), Code::Unauthenticated, "{status:?}"),
        }
    }
    assert_eq!(winners, ["alice"]);
}

async fn creation_and_use_are_announced_without_the_secret(backend: Backend) {
    let env = enabled_with(backend, |c| c.login_token_ttl_secs = 120).await;
    let admin = env.admin_token("root-admin").await;
    let admin_key_id = Token::parse(&admin).unwrap().id().to_string();
    env.ensure_user("alice", false).await;
    let mut events = env.subscribe("user.login-token.>").await;

    let token = create_login_token(&env, Some(&admin), "alice", false)
        .await
        .unwrap();
    let secret = secret_of(&token).to_string();
    let created = next_event_where(&mut events, "user.login-token.create", WAIT, |_| true)
        .await
        .expect("user.login-token.create published");
    assert_eq!(event_user_ids(&created), ["alice"]);
    let data: LoginToken = event_data(&created);
    assert_eq!(data.user_ids.unwrap().user_id, "alice");
    assert!(data.token.is_empty());
    assert!(!data.used);
    assert_eq!(seconds_between(&data.created_at, &data.expires_at), 120);
    let auth = created.authentication.clone().unwrap();
    assert_eq!(auth.token_type, "api_key");
    assert_eq!(auth.token_id, admin_key_id);
    assert!(!event_contains(&created, &secret), "no secret in the event");
    assert!(!event_contains(&created, secret_of(&admin)));

    consume(&env, &token).await.unwrap();
    let used = next_event_where(&mut events, "user.login-token.use", WAIT, |_| true)
        .await
        .expect("user.login-token.use published");
    assert_eq!(event_user_ids(&used), ["alice"]);
    let data: LoginToken = event_data(&used);
    assert!(data.used);
    assert!(data.token.is_empty());
    assert!(data.updated_at.unwrap().seconds >= data.created_at.unwrap().seconds);
    assert_eq!(used.authentication.as_ref().unwrap().token_type, "cluster");
    assert!(!event_contains(&used, &secret));

    // A refused second use announces nothing: the next use event is the
    // next token's.
    expect_code(consume(&env, &token).await, Code::Unauthenticated);
    let next = create_login_token(&env, Some(&admin), "alice", false)
        .await
        .unwrap();
    consume(&env, &next).await.unwrap();
    let event = next_event_where(&mut events, "user.login-token.use", WAIT, |_| true)
        .await
        .expect("the second token's use");
    assert!(!event_contains(&event, &secret));
    assert!(!event_contains(&event, secret_of(&next)));
}

/// A deleted user's token does not log in; restored, the user can use it
/// (it was not spent on the refusal).
async fn a_deleted_users_login_token_is_refused_until_a_restore(backend: Backend) {
    let env = enabled(backend).await;
    let admin = env.admin_token("root-admin").await;
    env.ensure_user("alice", false).await;
    let token = create_login_token(&env, Some(&admin), "alice", false)
        .await
        .expect("an admin asks for alice");
    registry(&env)
        .delete(with_token(ids("alice"), &admin))
        .await
        .unwrap();
    expect_code(consume(&env, &token).await, Code::Unauthenticated);
    registry(&env)
        .restore(with_token(ids("alice"), &admin))
        .await
        .unwrap();
    assert_eq!(consume(&env, &token).await.unwrap(), "alice");
}

on_both_backends!(
    login_tokens_are_refused_while_disabled,
    an_anonymous_caller_gets_the_same_empty_answer_for_any_user,
    an_admin_gets_a_token_for_a_non_admin_that_works_exactly_once,
    an_admin_gets_no_token_for_an_admin,
    an_admin_asking_for_a_missing_user_learns_it_is_not_found,
    only_admins_may_skip_the_email,
    a_user_has_at_most_five_live_login_tokens,
    an_anonymous_caller_cannot_tell_a_user_with_many_tokens_from_an_unknown_one,
    anonymous_attempts_are_rate_limited,
    an_expired_or_wrong_login_token_is_refused,
    concurrent_uses_of_one_token_have_exactly_one_winner,
    creation_and_use_are_announced_without_the_secret,
    a_deleted_users_login_token_is_refused_until_a_restore,
);

async fn a_login_token_arrives_by_mail_and_logs_in_once(backend: Backend) {
    let smtp = roster_test_support::TestSmtp::start().await;
    let env = TestEnv::start_configured(
        backend,
        TestConfig {
            access: AccessConfig {
                login_tokens_enabled: true,
                ..AccessConfig::default()
            },
            mail: smtp.mail_config(),
            ..TestConfig::default()
        },
    )
    .await;
    env.ensure_user("alice", false).await;
    let answer = create_login_token(&env, None, "alice", false)
        .await
        .expect("create a login token");
    assert!(
        answer.is_empty(),
        "{backend:?}: the token only goes by mail"
    );
    let mail = smtp
        .mail_to_with_subject("alice@example.com", "login link", WAIT)
        .await;
    let token = mail
        .link_param("token")
        .expect("the link carries the token");
    assert!(token.starts_with("rlt."), "{token}");

    let mut auth =
        roster_proto::v1::authentication_client::AuthenticationClient::new(env.channel());
    let session = auth
        .login_with_token(roster_proto::v1::LoginWithTokenRequest {
            token: token.clone(),
        })
        .await
        .expect("the mailed token logs in")
        .into_inner();
    assert!(session.token.starts_with("rst."), "{backend:?}");
    let again = auth
        .login_with_token(roster_proto::v1::LoginWithTokenRequest { token })
        .await
        .unwrap_err();
    assert_eq!(
        again.code(),
        Code::Unauthenticated,
        "{backend:?}: once only"
    );
}

on_both_backends!(a_login_token_arrives_by_mail_and_logs_in_once);
