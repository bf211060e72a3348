//! A user's sessions over real gRPC: listing them (order, pages, expiry,
//! no secrets), who may list and end them, ending one, logging out, expiry,
//! and the internal SessionCredentials.CheckSession.

use chrono::Duration;
use prost::Message as _;
use roster_core::token::{Token, TokenType};
use roster_proto::v1::{
    CheckSessionRequest, ListUserSessionsRequest, LoginResponse, Right, UserSessionIdentifiers,
    UserSessions,
};
use roster_test_support::{Backend, TEST_PASSWORD, TestEnv, with_cluster_key, with_token};
use tonic::Code;

use crate::support::*;

on_both_backends!(
    sessions_are_listed_newest_first_without_secrets,
    a_long_user_agent_is_kept_cut_short,
    the_session_lifetime_follows_the_setting,
    sessions_are_listed_in_the_order_asked,
    sessions_are_paged_with_the_total_in_a_header,
    expired_sessions_are_listed_as_expired_until_a_later_login_prunes_them,
    who_may_list_and_end_a_users_sessions,
    deleting_a_session_ends_it_at_once_and_only_it,
    logout_ends_the_calling_session_only,
    a_session_stops_working_when_it_expires,
    check_session_answers_only_other_services,
    check_session_refuses_tokens_that_are_not_live_sessions,
);

/// `n` logins of `user_id`, a minute apart on `clock`, each with its own
/// user agent (`agent-<i>/1.0`, from 1), oldest first.
async fn logins_a_minute_apart(
    env: &TestEnv,
    clock: &roster_core::time::ManualClock,
    user_id: &str,
    n: usize,
) -> Vec<LoginResponse> {
    env.ensure_user(user_id, false).await;
    let mut out = Vec::new();
    for i in 1..=n {
        let request = with_user_agent(
            tonic::Request::new(login_message(user_id, TEST_PASSWORD)),
            &format!("agent-{i}/1.0"),
        );
        out.push(
            login_request(env, request)
                .await
                .unwrap_or_else(|s| panic!("login {i} of {user_id}: {s:?}")),
        );
        clock.advance(Duration::minutes(1));
    }
    out
}

fn ids_of(sessions: &[LoginResponse]) -> Vec<String> {
    sessions
        .iter()
        .map(|s| id_of(&s.token).to_string())
        .collect()
}

fn reversed(mut ids: Vec<String>) -> Vec<String> {
    ids.reverse();
    ids
}

async fn sessions_are_listed_newest_first_without_secrets(backend: Backend) {
    let (env, clock) = start_with_clock(backend, |_| {}).await;
    let logins = logins_a_minute_apart(&env, &clock, "alice", 3).await;
    let bobs = login_as(&env, "bob").await;
    let newest = &logins[2].token;

    let response = list_sessions(&env, Some(newest), "alice")
        .await
        .expect("alice lists her sessions");
    assert_eq!(total_count(&response), 3, "Bob's session is not Alice's");
    let listed = response.into_inner();
    assert_eq!(
        listed_ids(&listed),
        reversed(ids_of(&logins)),
        "newest first by default"
    );
    for (session, login) in listed.sessions.iter().zip(logins.iter().rev()) {
        let i = 1 + logins.iter().position(|l| l.token == login.token).unwrap();
        assert_eq!(session.user_ids.as_ref().unwrap().user_id, "alice");
        assert!(
            session.session_secret.is_empty(),
            "never a secret: {session:?}"
        );
        assert_eq!(session.remote_ip, "127.0.0.1");
        assert!(
            session.user_agent.starts_with(&format!("agent-{i}/1.0")),
            "the agent of login {i}: {:?}",
            session.user_agent
        );
        assert!(!session.expired);
        assert_eq!(session.expires_at, login.expires_at);
        assert_eq!(session.created_at, session.updated_at);
        let created = session.created_at.as_ref().unwrap();
        let expires = session.expires_at.as_ref().unwrap();
        assert_eq!(
            expires.seconds - created.seconds,
            DEFAULT_TTL.num_seconds(),
            "a fixed lifetime from login"
        );
    }
    // Not a byte of any secret in the whole answer.
    let bytes = listed.encode_to_vec();
    for login in &logins {
        let secret = secret_of(&login.token).as_bytes();
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret),
            "a session secret in the list"
        );
    }

    let bob_listed = list_sessions(&env, Some(&bobs.token), "bob")
        .await
        .expect("bob lists his")
        .into_inner();
    assert_eq!(listed_ids(&bob_listed), [id_of(&bobs.token)]);
}

async fn a_long_user_agent_is_kept_cut_short(backend: Backend) {
    let env = start(backend).await;
    env.ensure_user("alice", false).await;
    let long = format!("{TEST_USER_AGENT} {}", "x".repeat(1000));
    let session = login_request(
        &env,
        with_user_agent(
            tonic::Request::new(login_message("alice", TEST_PASSWORD)),
            &long,
        ),
    )
    .await
    .expect("alice logs in");
    let listed = list_sessions(&env, Some(&session.token), "alice")
        .await
        .expect("list")
        .into_inner();
    let kept = &listed.sessions[0].user_agent;
    assert!(
        kept.starts_with(TEST_USER_AGENT) && long.starts_with(kept.as_str()),
        "the start of the agent is kept: {kept:?}"
    );
    assert!(
        kept.chars().count() <= 512,
        "at most 512 characters, not {}",
        kept.chars().count()
    );
}

async fn the_session_lifetime_follows_the_setting(backend: Backend) {
    let (env, clock) = start_with_clock(backend, |config| {
        config.sessions.session_ttl_secs = 3600;
    })
    .await;
    let session = login_as(&env, "alice").await;
    let listed = list_sessions(&env, Some(&session.token), "alice")
        .await
        .expect("list")
        .into_inner();
    let created = listed.sessions[0].created_at.unwrap();
    let expires = session.expires_at.unwrap();
    assert_eq!(expires.seconds - created.seconds, 3600, "an hour");
    assert_eq!(expires.nanos, created.nanos);

    clock.advance(Duration::minutes(59));
    assert!(token_works(&env, &session.token, "alice").await);
    clock.advance(Duration::minutes(1));
    expect_code(
        get_user(&env, &session.token, "alice").await,
        Code::Unauthenticated,
    );
}

async fn sessions_are_listed_in_the_order_asked(backend: Backend) {
    let (env, clock) = start_with_clock(backend, |_| {}).await;
    let logins = logins_a_minute_apart(&env, &clock, "alice", 3).await;
    let token = logins[0].token.clone();
    let oldest_first = ids_of(&logins);
    let list = |order: &str| {
        list_sessions_with(
            &env,
            Some(&token),
            ListUserSessionsRequest {
                user_ids: Some(ids("alice")),
                order: order.into(),
                ..Default::default()
            },
        )
    };

    for field in ["created_at", "updated_at", "expires_at"] {
        let ascending = list(field).await.expect(field).into_inner();
        assert_eq!(listed_ids(&ascending), oldest_first, "{field}");
        let descending = list(&format!("-{field}")).await.expect(field).into_inner();
        assert_eq!(
            listed_ids(&descending),
            reversed(oldest_first.clone()),
            "-{field}"
        );
    }
    for bad in ["name", "session_id", "-", "+created_at", "created_at desc"] {
        assert_invalid_field(list(bad).await, "order");
    }
}

async fn sessions_are_paged_with_the_total_in_a_header(backend: Backend) {
    let (env, clock) = start_with_clock(backend, |_| {}).await;
    let logins = logins_a_minute_apart(&env, &clock, "alice", 5).await;
    let token = logins[4].token.clone();
    let newest_first = reversed(ids_of(&logins));
    let page = |limit: u32, page: u32| {
        list_sessions_with(
            &env,
            Some(&token),
            ListUserSessionsRequest {
                user_ids: Some(ids("alice")),
                order: String::new(),
                limit,
                page,
            },
        )
    };

    let mut seen = Vec::new();
    for (number, size) in [(1, 2), (2, 2), (3, 1), (4, 0)] {
        let response = page(2, number).await.expect("a page");
        assert_eq!(total_count(&response), 5, "page {number}: the whole total");
        let ids = listed_ids(&response.into_inner());
        assert_eq!(ids.len(), size, "page {number}");
        seen.extend(ids);
    }
    assert_eq!(seen, newest_first, "the pages cover every session once");

    // Page 0 is page 1; limit 0 is the default page size.
    let first = page(2, 0).await.expect("page 0").into_inner();
    assert_eq!(listed_ids(&first), newest_first[..2]);
    let all = page(0, 0).await.expect("default limit").into_inner();
    assert_eq!(listed_ids(&all), newest_first);
    page(1000, 1).await.expect("the largest page");
    assert_invalid_field(page(1001, 1).await, "limit");
}

async fn expired_sessions_are_listed_as_expired_until_a_later_login_prunes_them(backend: Backend) {
    // Sessions live 30 days; expired ones stay listed for 7 more.
    let (env, clock) = start_with_clock(backend, |_| {}).await;
    let old = login_as(&env, "alice").await;
    clock.advance(DEFAULT_TTL + Duration::seconds(1));
    let fresh = login_as(&env, "alice").await;

    let listed = list_sessions(&env, Some(&fresh.token), "alice")
        .await
        .expect("alice lists her sessions");
    assert_eq!(total_count(&listed), 2);
    let listed = listed.into_inner();
    assert_eq!(
        listed_ids(&listed),
        [id_of(&fresh.token), id_of(&old.token)]
    );
    assert!(!listed.sessions[0].expired, "the fresh one is live");
    assert!(listed.sessions[1].expired, "the old one is marked expired");
    assert!(listed.sessions[1].session_secret.is_empty());
    expect_code(
        get_user(&env, &old.token, "alice").await,
        Code::Unauthenticated,
    );

    // Eight days on, the next login drops sessions expired over 7 days ago.
    clock.advance(Duration::days(8));
    let newest = login_as(&env, "alice").await;
    let listed = list_sessions(&env, Some(&newest.token), "alice")
        .await
        .expect("list again");
    assert_eq!(total_count(&listed), 2);
    assert_eq!(
        listed_ids(&listed.into_inner()),
        [id_of(&newest.token), id_of(&fresh.token)],
        "the long-expired session is gone, the live ones stay"
    );
}

async fn who_may_list_and_end_a_users_sessions(backend: Backend) {
    let env = start(backend).await;
    let alice = login_as(&env, "alice").await.token;
    let bob = login_as(&env, "bob").await.token;
    let (_, alice_all) = env.api_key("alice", &[Right::UserAll]).await;
    let (_, alice_info) = env.api_key("alice", &[Right::UserInfo]).await;
    let admin = env.admin_token("root-admin").await;
    let unknown_session = Token::generate(TokenType::Session).id().to_string();

    let allowed: [(&str, &str); 3] = [
        ("alice's session", &alice),
        ("alice's key with RIGHT_USER_ALL", &alice_all),
        ("an admin", &admin),
    ];
    let denied: [(&str, &str); 2] = [
        ("alice's key with RIGHT_USER_INFO only", &alice_info),
        ("bob's session", &bob),
    ];
    for (who, token) in allowed {
        let listed = list_sessions(&env, Some(token), "alice")
            .await
            .unwrap_or_else(|s| panic!("{who} lists alice's sessions: {s:?}"));
        assert_eq!(listed_ids(&listed.into_inner()), [id_of(&alice)], "{who}");
        expect_code(
            delete_session(&env, Some(token), "alice", &unknown_session).await,
            Code::NotFound,
        );
    }
    for (who, token) in denied {
        let status = expect_code(
            list_sessions(&env, Some(token), "alice").await,
            Code::PermissionDenied,
        );
        assert!(
            status.message().contains("RIGHT_USER_ALL"),
            "{who}: {status:?}"
        );
        expect_code(
            delete_session(&env, Some(token), "alice", id_of(&alice)).await,
            Code::PermissionDenied,
        );
    }
    expect_code(
        list_sessions(&env, None, "alice").await,
        Code::Unauthenticated,
    );
    expect_code(
        delete_session(&env, None, "alice", id_of(&alice)).await,
        Code::Unauthenticated,
    );
    assert!(
        token_works(&env, &alice, "alice").await,
        "refused deletes ended nothing"
    );

    // Whether a user exists is for admins to learn.
    expect_code(
        list_sessions(&env, Some(&admin), "nobody-here").await,
        Code::NotFound,
    );
    expect_code(
        delete_session(&env, Some(&admin), "nobody-here", &unknown_session).await,
        Code::NotFound,
    );
    expect_code(
        list_sessions(&env, Some(&bob), "nobody-here").await,
        Code::PermissionDenied,
    );
    assert_invalid_field(
        list_sessions_with(&env, Some(&admin), ListUserSessionsRequest::default()).await,
        "user_ids.user_id",
    );
    assert_invalid_field(
        session_registry(&env)
            .delete(with_token(
                UserSessionIdentifiers {
                    user_ids: None,
                    session_id: id_of(&alice).into(),
                },
                &admin,
            ))
            .await,
        "user_ids.user_id",
    );

    // Those allowed to list may also end a session.
    let spare = login_as(&env, "alice").await.token;
    delete_session(&env, Some(&alice_all), "alice", id_of(&spare))
        .await
        .expect("a key with RIGHT_USER_ALL ends a session");
    assert!(!token_works(&env, &spare, "alice").await);
    delete_session(&env, Some(&admin), "alice", id_of(&alice))
        .await
        .expect("an admin ends a session");
    assert!(!token_works(&env, &alice, "alice").await);
}

async fn deleting_a_session_ends_it_at_once_and_only_it(backend: Backend) {
    let env = start(backend).await;
    let first = login_as(&env, "alice").await.token;
    let second = login_as(&env, "alice").await.token;
    let third = login_as(&env, "alice").await.token;
    let bobs = login_as(&env, "bob").await.token;
    // Each token has been used (and its answer cached) before.
    for token in [&first, &second, &third] {
        assert!(token_works(&env, token, "alice").await);
    }
    let mut events = env.subscribe("user.session.delete").await;

    delete_session(&env, Some(&second), "alice", id_of(&first))
        .await
        .expect("alice ends her first session");
    expect_code(get_user(&env, &first, "alice").await, Code::Unauthenticated);
    assert!(token_works(&env, &second, "alice").await);
    assert!(token_works(&env, &third, "alice").await);
    assert!(token_works(&env, &bobs, "bob").await);

    let event = next_event_where(&mut events, "user.session.delete", WAIT, |_| true)
        .await
        .expect("a user.session.delete event");
    assert_eq!(event_user_ids(&event), ["alice"]);
    let data: UserSessionIdentifiers = event_data(&event);
    assert_eq!(data.session_id, id_of(&first));
    assert_eq!(data.user_ids.unwrap().user_id, "alice");
    let by = event.authentication.as_ref().expect("who ended it");
    assert_eq!(by.token_type, "session");
    assert_eq!(by.token_id, id_of(&second), "the session that ended it");
    assert!(!event_contains(&event, secret_of(&second)));

    // Gone is gone; another user's session is not under Alice's name.
    expect_code(
        delete_session(&env, Some(&second), "alice", id_of(&first)).await,
        Code::NotFound,
    );
    expect_code(
        delete_session(&env, Some(&second), "alice", id_of(&bobs)).await,
        Code::NotFound,
    );
    assert!(token_works(&env, &bobs, "bob").await);
    assert_invalid_field(
        delete_session(&env, Some(&second), "alice", "").await,
        "session_id",
    );

    let listed = list_sessions(&env, Some(&second), "alice")
        .await
        .expect("list")
        .into_inner();
    let mut left = listed_ids(&listed);
    left.sort();
    let mut expected = vec![id_of(&second).to_string(), id_of(&third).to_string()];
    expected.sort();
    assert_eq!(left, expected);
}

async fn logout_ends_the_calling_session_only(backend: Backend) {
    let env = start(backend).await;
    let leaving = login_as(&env, "alice").await.token;
    let staying = login_as(&env, "alice").await.token;
    assert!(token_works(&env, &leaving, "alice").await);
    let mut events = env.subscribe("user.logout").await;

    logout(&env, Some(&leaving)).await.expect("alice logs out");
    expect_code(
        get_user(&env, &leaving, "alice").await,
        Code::Unauthenticated,
    );
    assert!(token_works(&env, &staying, "alice").await);
    let event = next_event_where(&mut events, "user.logout", WAIT, |_| true)
        .await
        .expect("a user.logout event");
    assert_eq!(event_user_ids(&event), ["alice"]);
    let data: UserSessionIdentifiers = event_data(&event);
    assert_eq!(data.session_id, id_of(&leaving));
    assert!(!event_contains(&event, secret_of(&leaving)));

    let listed = list_sessions(&env, Some(&staying), "alice")
        .await
        .expect("list")
        .into_inner();
    assert_eq!(listed_ids(&listed), [id_of(&staying)]);

    // A session logs out once.
    expect_code(logout(&env, Some(&leaving)).await, Code::Unauthenticated);
    // Keys are not sessions: deleting them is UserAccess.DeleteAPIKey.
    let (_, key) = env.api_key("alice", &[Right::UserAll]).await;
    assert_invalid_field(logout(&env, Some(&key)).await, "authorization");
    let admin = env.admin_token("root-admin").await;
    assert_invalid_field(logout(&env, Some(&admin)).await, "authorization");
    assert!(
        token_works(&env, &key, "alice").await,
        "the key still works"
    );
    expect_code(logout(&env, None).await, Code::Unauthenticated);
    assert!(token_works(&env, &staying, "alice").await);
}

async fn a_session_stops_working_when_it_expires(backend: Backend) {
    let (env, clock) = start_with_clock(backend, |_| {}).await;
    let session = login_as(&env, "alice").await;
    let token = session.token.clone();
    assert!(token_works(&env, &token, "alice").await);

    clock.advance(DEFAULT_TTL - Duration::seconds(1));
    assert!(
        token_works(&env, &token, "alice").await,
        "a second before it expires"
    );
    auth_info(&env, &token).await.expect("still a credential");

    clock.advance(Duration::seconds(1));
    let status = expect_code(get_user(&env, &token, "alice").await, Code::Unauthenticated);
    assert!(!status.message().contains(secret_of(&token)));
    expect_code(auth_info(&env, &token).await, Code::Unauthenticated);
    let checked = expect_code(check_session(&env, &token).await, Code::Unauthenticated);
    assert!(checked.message().contains("expired"), "{checked:?}");
    expect_code(
        list_sessions(&env, Some(&token), "alice").await,
        Code::Unauthenticated,
    );
    expect_code(logout(&env, Some(&token)).await, Code::Unauthenticated);
    // A new login works as before.
    let fresh = login_as(&env, "alice").await;
    assert!(token_works(&env, &fresh.token, "alice").await);
}

async fn check_session_answers_only_other_services(backend: Backend) {
    let env = start(backend).await;
    let session = login_as(&env, "alice").await;
    let admin = env.admin_token("root-admin").await;
    let request = || CheckSessionRequest {
        token: session.token.clone(),
    };

    expect_code(
        session_credentials(&env)
            .check_session(tonic::Request::new(request()))
            .await,
        Code::Unauthenticated,
    );
    for (who, credential) in [
        ("alice's own session", &session.token),
        ("an admin", &admin),
    ] {
        let status = expect_code(
            session_credentials(&env)
                .check_session(with_token(request(), credential))
                .await,
            Code::PermissionDenied,
        );
        assert!(!status.message().is_empty(), "{who}");
    }
    let mut wrong_key = tonic::Request::new(request());
    wrong_key.metadata_mut().insert(
        roster_core::auth::CLUSTER_KEY_HEADER,
        "not-the-cluster-key".parse().unwrap(),
    );
    expect_code(
        session_credentials(&env).check_session(wrong_key).await,
        Code::Unauthenticated,
    );

    let checked = session_credentials(&env)
        .check_session(with_cluster_key(request()))
        .await
        .expect("the cluster checks a session")
        .into_inner();
    let ids = checked.session_ids.expect("session_ids");
    assert_eq!(ids.user_ids.unwrap().user_id, "alice");
    assert_eq!(ids.session_id, id_of(&session.token));
    assert_eq!(checked.expires_at, session.expires_at);
    assert!(!checked.password_update_only);
    let listed = list_sessions(&env, Some(&session.token), "alice")
        .await
        .expect("list")
        .into_inner();
    assert_eq!(
        checked.created_at, listed.sessions[0].created_at,
        "when the session started"
    );
}

async fn check_session_refuses_tokens_that_are_not_live_sessions(backend: Backend) {
    let env = start(backend).await;
    let session = login_as(&env, "alice").await.token;
    let other = login_as(&env, "alice").await.token;
    let ended = login_as(&env, "alice").await.token;
    delete_session(&env, Some(&session), "alice", id_of(&ended))
        .await
        .expect("end a session");
    let (_, key) = env.api_key("alice", &[Right::UserAll]).await;
    let wrong_secret = format!(
        "rst.{}.{}",
        id_of(&session),
        Token::generate(TokenType::Session).secret()
    );
    let swapped_secret = format!("rst.{}.{}", id_of(&session), secret_of(&other));
    let unknown = Token::generate(TokenType::Session).to_string();
    let as_login_token = format!("rlt.{}.{}", id_of(&session), secret_of(&session));
    let truncated = session[..session.len() - 1].to_string();
    let uppercase = session.to_uppercase();

    for (what, token) in [
        ("a wrong secret", wrong_secret.as_str()),
        ("another session's secret", swapped_secret.as_str()),
        ("an unknown session", unknown.as_str()),
        ("an ended session", ended.as_str()),
        ("an API key", key.as_str()),
        ("the session as a login token", as_login_token.as_str()),
        ("a truncated token", truncated.as_str()),
        ("an uppercased token", uppercase.as_str()),
        ("garbage", "not a token"),
        ("three dots", "rst..."),
        ("nothing", ""),
    ] {
        let status = expect_code(check_session(&env, token).await, Code::Unauthenticated);
        assert!(
            !status.message().contains(secret_of(&session)),
            "{what}: the answer never quotes a secret"
        );
    }
    // None of that hurt the real session.
    check_session(&env, &session)
        .await
        .expect("the real token still checks");
    assert!(token_works(&env, &session, "alice").await);
    let sessions: UserSessions = list_sessions(&env, Some(&session), "alice")
        .await
        .expect("list")
        .into_inner();
    assert_eq!(sessions.sessions.len(), 2);
}
