//! Logging in over real gRPC: with a password (by user ID or email) and
//! with a login token, the answers to wrong, unknown, refused and malformed
//! logins, the rate limit, and the events every attempt leaves.

use chrono::Utc;
use roster_core::token::{Token, TokenType};
use roster_proto::v1::{
    CreateUserRequest, LoginFailureEventData, LoginRequest, State, UpdateUserPasswordRequest, User,
    UserSession,
};
use roster_test_support::{Backend, TEST_PASSWORD, with_token};
use tonic::Code;

use crate::support::*;

on_both_backends!(
    a_login_by_user_id_gives_a_session_token_that_works_for_thirty_days,
    a_login_by_email_in_any_case_logs_the_user_in,
    a_wrong_password_and_an_unknown_user_get_the_same_answer,
    a_login_without_what_it_needs_names_the_field,
    users_who_may_not_log_in_learn_why_only_with_the_right_password,
    a_self_registered_user_awaiting_approval_logs_in_once_approved,
    a_user_who_must_change_the_password_gets_a_session_without_rights,
    a_login_token_logs_in_once,
    login_attempts_from_one_address_are_rate_limited,
    the_rate_limit_counts_per_address_so_attempts_elsewhere_do_not_keep_a_user_out,
    a_login_is_announced_with_where_it_came_from_and_without_its_secret,
    failed_logins_are_announced_with_their_reason_and_never_the_password,
);

/// The one answer to a wrong password or an unknown user.
const WRONG: &str = "incorrect user or password";

/// A password nobody has, in the policy's shape.
const WRONG_PASSWORD: &str = "Wrong-Passw0rd-for-roster";

/// Asserts `response` is a fresh session of `user_id` that expires about
/// `DEFAULT_TTL` after a time between `before` and now.
#[track_caller]
fn assert_new_session(
    response: &roster_proto::v1::LoginResponse,
    user_id: &str,
    before: chrono::DateTime<Utc>,
) {
    let after = Utc::now();
    assert!(
        response.token.starts_with("rst."),
        "a session token: {}",
        response.token
    );
    let ids = response.session_ids.as_ref().expect("session_ids");
    assert_eq!(ids.user_ids.as_ref().expect("user_ids").user_id, user_id);
    assert_eq!(
        ids.session_id,
        id_of(&response.token),
        "the session ID is the token's ID"
    );
    let expires = response.expires_at.as_ref().expect("expires_at");
    let earliest = (before + DEFAULT_TTL).timestamp();
    let latest = (after + DEFAULT_TTL).timestamp() + 1;
    assert!(
        (earliest..=latest).contains(&expires.seconds),
        "expires 30 days after the login: {expires:?} not in {earliest}..={latest}"
    );
}

async fn a_login_by_user_id_gives_a_session_token_that_works_for_thirty_days(backend: Backend) {
    let env = start(backend).await;
    env.ensure_user("alice", false).await;

    let before = Utc::now();
    let first = login(&env, "alice", TEST_PASSWORD)
        .await
        .expect("alice logs in");
    assert_new_session(&first, "alice", before);
    assert!(!first.password_update_required);
    assert!(
        token_works(&env, &first.token, "alice").await,
        "the token reads its user with every field"
    );
    let info = auth_info(&env, &first.token).await.expect("a credential");
    assert_eq!(info.token_type, "session");
    assert_eq!(info.token_id, id_of(&first.token));
    assert_eq!(info.expires_at, first.expires_at);
    assert!(!info.password_update_only);
    assert!(
        !info.rights.unwrap_or_default().rights.is_empty(),
        "a session carries its user's rights"
    );

    // Each login is a session of its own; both work.
    let second = login(&env, "alice", TEST_PASSWORD)
        .await
        .expect("alice logs in again");
    assert_new_session(&second, "alice", before);
    assert_ne!(second.token, first.token);
    assert_ne!(id_of(&second.token), id_of(&first.token));
    assert!(token_works(&env, &second.token, "alice").await);
    assert!(token_works(&env, &first.token, "alice").await);
}

async fn a_login_by_email_in_any_case_logs_the_user_in(backend: Backend) {
    let env = start(backend).await;
    env.ensure_user("alice", false).await;
    env.ensure_user("bob", false).await;

    for email in [
        "alice@example.com",
        "ALICE@Example.COM",
        "Alice@EXAMPLE.com",
    ] {
        let before = Utc::now();
        let session = login(&env, email, TEST_PASSWORD)
            .await
            .unwrap_or_else(|s| panic!("alice logs in as {email}: {s:?}"));
        assert_new_session(&session, "alice", before);
        assert!(token_works(&env, &session.token, "alice").await, "{email}");
    }
    // The email finds its own user: Bob's address logs Bob in.
    let bob = login(&env, "BOB@example.com", TEST_PASSWORD)
        .await
        .expect("bob logs in by email");
    assert_eq!(
        bob.session_ids.unwrap().user_ids.unwrap().user_id,
        "bob",
        "the session is Bob's"
    );
    let wrong = expect_code(
        login(&env, "ALICE@example.com", WRONG_PASSWORD).await,
        Code::Unauthenticated,
    );
    assert_eq!(wrong.message(), WRONG);
}

async fn a_wrong_password_and_an_unknown_user_get_the_same_answer(backend: Backend) {
    let env = start(backend).await;
    env.ensure_user("alice", false).await;

    let wrong_password = expect_code(
        login(&env, "alice", WRONG_PASSWORD).await,
        Code::Unauthenticated,
    );
    let unknown_user = expect_code(
        login(&env, "nobody-here", TEST_PASSWORD).await,
        Code::Unauthenticated,
    );
    let unknown_email = expect_code(
        login(&env, "nobody@example.com", TEST_PASSWORD).await,
        Code::Unauthenticated,
    );
    let case_changed = expect_code(
        login(&env, "alice", &TEST_PASSWORD.to_uppercase()).await,
        Code::Unauthenticated,
    );
    // A deleted user is an unknown one, even with the right password.
    let admin = env.admin_token("root-admin").await;
    env.ensure_user("dave", false).await;
    registry(&env)
        .delete(with_token(ids("dave"), &admin))
        .await
        .expect("delete dave");
    let deleted = expect_code(
        login(&env, "dave", TEST_PASSWORD).await,
        Code::Unauthenticated,
    );
    let deleted_email = expect_code(
        login(&env, "dave@example.com", TEST_PASSWORD).await,
        Code::Unauthenticated,
    );
    for status in [
        &wrong_password,
        &unknown_user,
        &unknown_email,
        &case_changed,
        &deleted,
        &deleted_email,
    ] {
        assert_eq!(status.message(), WRONG, "one answer for all: {status:?}");
    }
    // A wrong guess does not keep the right password out.
    let session = login(&env, "alice", TEST_PASSWORD)
        .await
        .expect("the right password still works");
    assert!(token_works(&env, &session.token, "alice").await);
}

async fn a_login_without_what_it_needs_names_the_field(backend: Backend) {
    let env = start(backend).await;
    env.ensure_user("alice", false).await;
    let send = |request: LoginRequest| login_request(&env, tonic::Request::new(request));

    assert_invalid_field(
        send(LoginRequest {
            user_ids: None,
            password: TEST_PASSWORD.into(),
        })
        .await,
        "user_ids",
    );
    assert_invalid_field(
        send(LoginRequest {
            user_ids: Some(email_ids("")),
            password: TEST_PASSWORD.into(),
        })
        .await,
        "user_ids",
    );
    let mut both = ids("alice");
    both.email = "alice@example.com".into();
    assert_invalid_field(
        send(LoginRequest {
            user_ids: Some(both),
            password: TEST_PASSWORD.into(),
        })
        .await,
        "user_ids",
    );
    for who in ["alice", "alice@example.com"] {
        assert_invalid_field(send(login_message(who, "")).await, "password");
    }
}

async fn users_who_may_not_log_in_learn_why_only_with_the_right_password(backend: Backend) {
    let env = start(backend).await;
    let admin = env.admin_token("root-admin").await;
    let refused = [
        ("sam", State::Suspended, "suspended"),
        ("rita", State::Rejected, "rejected"),
        ("quinn", State::Requested, "approval"),
    ];
    for (user_id, state, _) in refused {
        env.ensure_user(user_id, false).await;
        set_state(&env, &admin, user_id, state).await;
    }
    for (user_id, state, why) in refused {
        let status = expect_code(
            login(&env, user_id, TEST_PASSWORD).await,
            Code::FailedPrecondition,
        );
        assert!(
            status.message().contains(why),
            "{user_id} ({state:?}) learns why: {status:?}"
        );
        let guess = expect_code(
            login(&env, user_id, WRONG_PASSWORD).await,
            Code::Unauthenticated,
        );
        assert_eq!(
            guess.message(),
            WRONG,
            "{user_id} ({state:?}): a guesser learns nothing"
        );
        let by_email = expect_code(
            login(&env, &format!("{user_id}@example.com"), TEST_PASSWORD).await,
            Code::FailedPrecondition,
        );
        assert!(by_email.message().contains(why), "{by_email:?}");
    }

    // Flagged users are approved users under review: they log in.
    env.ensure_user("fay", false).await;
    set_state(&env, &admin, "fay", State::Flagged).await;
    let fay = login(&env, "fay", TEST_PASSWORD)
        .await
        .expect("a flagged user logs in");
    assert!(token_works(&env, &fay.token, "fay").await);

    // Back to approved, a suspended user logs in again.
    set_state(&env, &admin, "sam", State::Approved).await;
    let sam = login(&env, "sam", TEST_PASSWORD)
        .await
        .expect("sam logs in once approved");
    assert!(token_works(&env, &sam.token, "sam").await);
}

async fn a_self_registered_user_awaiting_approval_logs_in_once_approved(backend: Backend) {
    let env = start_with(backend, |config| {
        config.user_registry.admin_approval_required = true;
    })
    .await;
    let admin = env.admin_token("root-admin").await;
    let created = registry(&env)
        .create(tonic::Request::new(CreateUserRequest {
            user: Some(User {
                ids: Some(ids("rob")),
                primary_email_address: "rob@example.com".into(),
                password: TEST_PASSWORD.into(),
                ..Default::default()
            }),
            invitation_token: String::new(),
        }))
        .await
        .expect("rob registers")
        .into_inner();
    assert_eq!(created.state, State::Requested as i32);

    let status = expect_code(
        login(&env, "rob", TEST_PASSWORD).await,
        Code::FailedPrecondition,
    );
    assert!(status.message().contains("approval"), "{status:?}");
    let guess = expect_code(
        login(&env, "rob", WRONG_PASSWORD).await,
        Code::Unauthenticated,
    );
    assert_eq!(guess.message(), WRONG);

    set_state(&env, &admin, "rob", State::Approved).await;
    let session = login(&env, "rob@example.com", TEST_PASSWORD)
        .await
        .expect("rob logs in once approved");
    assert!(token_works(&env, &session.token, "rob").await);
}

async fn a_user_who_must_change_the_password_gets_a_session_without_rights(backend: Backend) {
    let env = start(backend).await;
    let admin = env.admin_token("root-admin").await;
    env.ensure_user("alice", false).await;
    require_password_update(&env, &admin, "alice").await;

    let before = Utc::now();
    let session = login(&env, "alice", TEST_PASSWORD)
        .await
        .expect("alice logs in");
    assert_new_session(&session, "alice", before);
    assert!(session.password_update_required);

    let info = auth_info(&env, &session.token)
        .await
        .expect("the session is a credential");
    assert!(info.password_update_only);
    assert_eq!(info.token_type, "session");
    assert!(
        info.rights.unwrap_or_default().rights.is_empty(),
        "no rights on the own account"
    );
    assert!(info.universal_rights.unwrap_or_default().rights.is_empty());
    assert!(!info.is_admin);
    assert!(
        !info.warnings.is_empty(),
        "the caller is told why: {:?}",
        info.warnings
    );

    // Nothing that needs a right works with it.
    // UserRegistry.Get answers authenticated callers without
    // RIGHT_USER_INFO with the public fields only.
    let own = get_user(&env, &session.token, "alice")
        .await
        .expect("public fields need no right");
    assert!(
        own.primary_email_address.is_empty() && own.password_updated_at.is_none(),
        "no private field without RIGHT_USER_INFO: {own:?}"
    );
    expect_code(
        list_sessions(&env, Some(&session.token), "alice").await,
        Code::PermissionDenied,
    );
    expect_code(
        registry(&env)
            .update(with_token(
                roster_proto::v1::UpdateUserRequest {
                    user: Some(User {
                        ids: Some(ids("alice")),
                        name: "Alice".into(),
                        ..Default::default()
                    }),
                    field_mask: mask(&["name"]),
                    password: String::new(),
                },
                &session.token,
            ))
            .await,
        Code::PermissionDenied,
    );

    // It can still log out.
    let spare = login(&env, "alice", TEST_PASSWORD)
        .await
        .expect("another login");
    assert!(spare.password_update_required);
    logout(&env, Some(&spare.token))
        .await
        .expect("a password-update-only session logs out");
    expect_code(auth_info(&env, &spare.token).await, Code::Unauthenticated);

    // Changing the password is the way forward: then a login is whole.
    registry(&env)
        .update_password(UpdateUserPasswordRequest {
            user_ids: Some(ids("alice")),
            new: "Another-Passw0rd-for-roster".into(),
            old: TEST_PASSWORD.into(),
            revoke_all_access: false,
        })
        .await
        .expect("alice changes the password");
    let whole = login(&env, "alice", "Another-Passw0rd-for-roster")
        .await
        .expect("alice logs in with the new password");
    assert!(!whole.password_update_required);
    assert!(token_works(&env, &whole.token, "alice").await);
}

async fn a_login_token_logs_in_once(backend: Backend) {
    let env = start_with(backend, |config| {
        config.access.login_tokens_enabled = true;
    })
    .await;
    let admin = env.admin_token("root-admin").await;
    env.ensure_user("alice", false).await;

    let token = create_login_token(&env, &admin, "alice").await;
    let before = Utc::now();
    let session = login_with_token(&env, &token)
        .await
        .expect("the login token logs alice in");
    assert_new_session(&session, "alice", before);
    assert!(!session.password_update_required);
    assert!(token_works(&env, &session.token, "alice").await);

    let again = expect_code(login_with_token(&env, &token).await, Code::Unauthenticated);
    assert!(
        !again.message().contains(secret_of(&token)),
        "the answer never quotes the token: {again:?}"
    );
    let unknown = Token::generate(TokenType::LoginToken).to_string();
    for garbage in [
        "not-a-token",
        "rlt.short.secret",
        unknown.as_str(),
        // A session token is not a login token.
        session.token.as_str(),
    ] {
        expect_code(login_with_token(&env, garbage).await, Code::Unauthenticated);
    }
    assert_invalid_field(login_with_token(&env, "").await, "token");
    // The session it gave keeps working.
    assert!(token_works(&env, &session.token, "alice").await);

    // A token does not let a suspended user in.
    env.ensure_user("sam", false).await;
    let sams = create_login_token(&env, &admin, "sam").await;
    set_state(&env, &admin, "sam", State::Suspended).await;
    let status = expect_code(
        login_with_token(&env, &sams).await,
        Code::FailedPrecondition,
    );
    assert!(status.message().contains("suspended"), "{status:?}");
}

async fn login_attempts_from_one_address_are_rate_limited(backend: Backend) {
    let env = start_with(backend, |config| {
        config.sessions.login_rate_limit.max_attempts = 3;
        config.sessions.login_rate_limit.window_secs = 600;
    })
    .await;
    env.ensure_user("alice", false).await;

    // Malformed requests are refused before they count.
    for _ in 0..5 {
        assert_invalid_field(login(&env, "alice", "").await, "password");
    }
    expect_code(
        login(&env, "alice", WRONG_PASSWORD).await,
        Code::Unauthenticated,
    );
    expect_code(
        login(&env, "nobody-here", TEST_PASSWORD).await,
        Code::Unauthenticated,
    );
    let third = login(&env, "alice", TEST_PASSWORD)
        .await
        .expect("the third attempt is still answered");

    let fourth = expect_code(
        login(&env, "alice", TEST_PASSWORD).await,
        Code::ResourceExhausted,
    );
    assert!(
        !fourth.message().is_empty(),
        "the caller is told to wait: {fourth:?}"
    );
    // Every way to log in from this address is limited, any user.
    expect_code(
        login(&env, "bob@example.com", TEST_PASSWORD).await,
        Code::ResourceExhausted,
    );
    expect_code(
        login_with_token(&env, &Token::generate(TokenType::LoginToken).to_string()).await,
        Code::ResourceExhausted,
    );
    // Another address is not held up by this one.
    env.ensure_user("bob", false).await;
    login_from(
        &env,
        "127.0.0.2",
        tonic::Request::new(login_message("bob", TEST_PASSWORD)),
    )
    .await
    .expect("bob logs in from another address");
    // The session already made keeps working.
    assert!(token_works(&env, &third.token, "alice").await);
    list_sessions(&env, Some(&third.token), "alice")
        .await
        .expect("a logged-in user is not limited");
}

async fn the_rate_limit_counts_per_address_so_attempts_elsewhere_do_not_keep_a_user_out(
    backend: Backend,
) {
    let env = start_with(backend, |config| {
        config.sessions.login_rate_limit.max_attempts = 3;
        config.sessions.login_rate_limit.window_secs = 600;
    })
    .await;
    env.ensure_user("alice", false).await;

    // One address spends its attempts on Alice.
    for _ in 0..3 {
        expect_code(
            login_from(
                &env,
                "127.0.0.2",
                tonic::Request::new(login_message("alice", WRONG_PASSWORD)),
            )
            .await,
            Code::Unauthenticated,
        );
    }
    expect_code(
        login_from(
            &env,
            "127.0.0.2",
            tonic::Request::new(login_message("alice", TEST_PASSWORD)),
        )
        .await,
        Code::ResourceExhausted,
    );
    // Alice, elsewhere, logs in: the limit is the address's, not hers.
    let session = login_from(
        &env,
        "127.0.0.3",
        tonic::Request::new(login_message("alice", TEST_PASSWORD)),
    )
    .await
    .expect("alice logs in from her own address");
    assert!(token_works(&env, &session.token, "alice").await);
}

async fn a_login_is_announced_with_where_it_came_from_and_without_its_secret(backend: Backend) {
    let env = start(backend).await;
    env.ensure_user("alice", false).await;
    let mut events = env.subscribe("user.login").await;

    let session = login_from(
        &env,
        "127.0.0.3",
        with_user_agent(
            tonic::Request::new(login_message("alice", TEST_PASSWORD)),
            TEST_USER_AGENT,
        ),
    )
    .await
    .expect("alice logs in");
    let session_id = id_of(&session.token).to_string();
    let event = next_event_where(&mut events, "user.login", WAIT, |e| {
        event_data::<UserSession>(e).session_id == session_id
    })
    .await
    .expect("a user.login event");

    assert_eq!(event_user_ids(&event), ["alice"]);
    assert_eq!(event.remote_ip, "127.0.0.3", "the caller's address");
    assert!(
        event.user_agent.starts_with(TEST_USER_AGENT),
        "the caller's user agent: {:?}",
        event.user_agent
    );
    let data: UserSession = event_data(&event);
    assert_eq!(data.user_ids.as_ref().unwrap().user_id, "alice");
    assert_eq!(data.expires_at, session.expires_at);
    assert_eq!(data.created_at, data.updated_at);
    assert_eq!(data.remote_ip, "127.0.0.3");
    assert!(
        data.user_agent.starts_with(TEST_USER_AGENT),
        "{:?}",
        data.user_agent
    );
    assert!(!data.expired);
    assert!(data.session_secret.is_empty());
    assert!(
        !event_contains(&event, secret_of(&session.token)),
        "the event never carries the session secret"
    );
    assert!(!event_contains(&event, TEST_PASSWORD), "nor the password");
}

async fn failed_logins_are_announced_with_their_reason_and_never_the_password(backend: Backend) {
    let env = start(backend).await;
    let admin = env.admin_token("root-admin").await;
    env.ensure_user("alice", false).await;
    env.ensure_user("sam", false).await;
    set_state(&env, &admin, "sam", State::Suspended).await;
    let mut events = env.subscribe("user.login_failed").await;

    let attempt = |who: &'static str, password: &'static str| {
        login_request(
            &env,
            with_user_agent(
                tonic::Request::new(login_message(who, password)),
                TEST_USER_AGENT,
            ),
        )
    };
    async fn failure(
        events: &mut roster_core::events::EventStream,
        reason: &str,
    ) -> (roster_proto::v1::Event, LoginFailureEventData) {
        let event = next_event_where(events, "user.login_failed", WAIT, |e| {
            event_data::<LoginFailureEventData>(e).reason == reason
        })
        .await
        .unwrap_or_else(|| panic!("a user.login_failed event for {reason}"));
        let data = event_data(&event);
        (event, data)
    }

    let guessed = "Guessed-Passw0rd-ünïcode";
    expect_code(attempt("alice", guessed).await, Code::Unauthenticated);
    let (event, data) = failure(&mut events, "wrong_password").await;
    assert_eq!(event_user_ids(&event), ["alice"]);
    assert_eq!(data.failures, 1, "the failures so far");
    assert_eq!(data.locked_until, None);
    assert_eq!(event.remote_ip, "127.0.0.1");
    assert!(event.user_agent.starts_with(TEST_USER_AGENT));
    assert!(!event_contains(&event, guessed), "no password in {event:?}");

    let tried = "Tried-Passw0rd-for-nobody";
    expect_code(attempt("nobody-here", tried).await, Code::Unauthenticated);
    let (event, _) = failure(&mut events, "unknown_user").await;
    assert!(
        event_user_ids(&event).is_empty(),
        "no user to name: {event:?}"
    );
    assert_eq!(event.remote_ip, "127.0.0.1");
    assert!(!event_contains(&event, tried), "no password in {event:?}");

    // The right password of a suspended user.
    expect_code(
        attempt("sam", TEST_PASSWORD).await,
        Code::FailedPrecondition,
    );
    let (event, _) = failure(&mut events, "state").await;
    assert_eq!(event_user_ids(&event), ["sam"]);
    assert!(
        !event_contains(&event, TEST_PASSWORD),
        "no password in {event:?}"
    );

    // A successful login is no failure, and it forgets the earlier ones:
    // the next failure event is the next wrong password, counted from one.
    login(&env, "alice", TEST_PASSWORD).await.expect("login");
    expect_code(attempt("alice", guessed).await, Code::Unauthenticated);
    let event = next_event_where(&mut events, "user.login_failed", WAIT, |_| true)
        .await
        .expect("the next failure");
    let data: LoginFailureEventData = event_data(&event);
    assert_eq!(data.reason, "wrong_password", "{event:?}");
    assert_eq!(data.failures, 1, "counted afresh after a login");
}
