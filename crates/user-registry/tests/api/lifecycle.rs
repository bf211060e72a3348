//! `UserLifecycle` beyond email validation: status, an admin's lock,
//! deactivation, required actions and statistics, and what each does to
//! the user's credentials (API keys, sessions, logins).

use std::time::Duration;

use roster_core::events::lifecycle as events;
use roster_proto::v1::authentication_client::AuthenticationClient;
use roster_proto::v1::user_access_client::UserAccessClient;
use roster_proto::v1::user_lifecycle_client::UserLifecycleClient;
use roster_proto::v1::{
    CreateLoginTokenRequest, DeactivateUserRequest, GetUserRequest, LockUserRequest, LoginRequest,
    LoginWithTokenRequest, Right, SendEmailValidationRequest, SetRequiredActionsRequest, State,
    UpdateUserPasswordRequest, User, UserLifecycleStatus, UserRequiredAction, UserStatistics,
    UserWithStatus, ValidateEmailRequest,
};
use roster_test_support::{
    Backend, LockoutConfig, TEST_PASSWORD, TestConfig, TestEnv, expect_code, next_event,
    with_cluster_key, with_token,
};
use tonic::{Code, Status};

use crate::support::*;

const WAIT: Duration = Duration::from_secs(5);

fn lifecycle(env: &TestEnv) -> UserLifecycleClient<tonic::transport::Channel> {
    UserLifecycleClient::new(env.channel())
}

async fn get_status(
    env: &TestEnv,
    token: &str,
    user_id: &str,
) -> Result<UserLifecycleStatus, Status> {
    lifecycle(env)
        .get_status(with_token(ids(user_id), token))
        .await
        .map(tonic::Response::into_inner)
}

async fn lock(env: &TestEnv, token: &str, user_id: &str) -> Result<UserLifecycleStatus, Status> {
    lifecycle(env)
        .lock_user(with_token(
            LockUserRequest {
                user_ids: Some(ids(user_id)),
                reason: "under review".into(),
            },
            token,
        ))
        .await
        .map(tonic::Response::into_inner)
}

async fn unlock(env: &TestEnv, token: &str, user_id: &str) -> Result<UserLifecycleStatus, Status> {
    lifecycle(env)
        .unlock_user(with_token(ids(user_id), token))
        .await
        .map(tonic::Response::into_inner)
}

async fn deactivate(
    env: &TestEnv,
    token: &str,
    user_id: &str,
) -> Result<UserLifecycleStatus, Status> {
    lifecycle(env)
        .deactivate_user(with_token(
            DeactivateUserRequest {
                user_ids: Some(ids(user_id)),
                reason: "left the team".into(),
            },
            token,
        ))
        .await
        .map(tonic::Response::into_inner)
}

async fn reactivate(
    env: &TestEnv,
    token: &str,
    user_id: &str,
) -> Result<UserLifecycleStatus, Status> {
    lifecycle(env)
        .reactivate_user(with_token(ids(user_id), token))
        .await
        .map(tonic::Response::into_inner)
}

async fn set_actions(
    env: &TestEnv,
    token: &str,
    user_id: &str,
    actions: &[UserRequiredAction],
) -> Result<UserLifecycleStatus, Status> {
    lifecycle(env)
        .set_required_actions(with_token(
            SetRequiredActionsRequest {
                user_ids: Some(ids(user_id)),
                actions: actions.iter().map(|a| *a as i32).collect(),
            },
            token,
        ))
        .await
        .map(tonic::Response::into_inner)
}

async fn statistics(env: &TestEnv, token: &str) -> Result<UserStatistics, Status> {
    lifecycle(env)
        .get_user_statistics(with_token((), token))
        .await
        .map(tonic::Response::into_inner)
}

/// A session of `user_id` from `Authentication.Login`.
async fn login(env: &TestEnv, user_id: &str) -> Result<String, Status> {
    AuthenticationClient::new(env.channel())
        .login(LoginRequest {
            user_ids: Some(ids(user_id)),
            password: TEST_PASSWORD.into(),
        })
        .await
        .map(|r| r.into_inner().token)
}

/// What `token` may do on `user_id`'s account (UNAUTHENTICATED when the
/// credential is refused).
async fn rights(env: &TestEnv, token: &str, user_id: &str) -> Result<Vec<i32>, Status> {
    UserAccessClient::new(env.channel())
        .list_rights(with_token(ids(user_id), token))
        .await
        .map(|r| r.into_inner().rights)
}

/// The services on `backend`, an account locking for everyone after
/// `max_failures` wrong passwords (and no client lock, no rate limit).
async fn start_locking_after(backend: Backend, max_failures: u32) -> TestEnv {
    let mut config = TestConfig::default();
    config.user_registry.lockout = LockoutConfig {
        max_failures_per_client: 0,
        max_failures,
        window_secs: 60,
        lock_secs: 600,
    };
    config.user_registry.rate_limit.max_attempts = 0;
    config.sessions.login_rate_limit.max_attempts = 0;
    TestEnv::start_configured(backend, config).await
}

/// `times` logins of `user_id` with a wrong password, each refused.
async fn wrong_passwords(env: &TestEnv, user_id: &str, times: usize) {
    for _ in 0..times {
        let wrong = AuthenticationClient::new(env.channel())
            .login(LoginRequest {
                user_ids: Some(ids(user_id)),
                password: "Not-the-passw0rd".into(),
            })
            .await;
        expect_code(wrong, Code::Unauthenticated);
    }
}

/// The reason a FAILED_PRECONDITION names, before its colon.
#[track_caller]
fn assert_refused<T: std::fmt::Debug>(result: Result<T, Status>, reason: &str) {
    let status = expect_code(result, Code::FailedPrecondition);
    assert_eq!(
        status.message().split(':').next(),
        Some(reason),
        "{status:?}"
    );
}

async fn an_admins_lock_suspends_every_credential_until_unlocked(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    let admin = env.admin_token(ADMIN).await;
    let key = env.user_token("alice", &[Right::UserAll]).await;
    let session = login(&env, "alice").await.unwrap();
    let mut events = env.subscribe(events::ALL).await;

    let locked = lock(&env, &admin, "alice").await.unwrap();
    assert!(locked.locked && locked.locked_at.is_some() && locked.locked_until.is_none());
    assert_eq!(locked.lock_reason, "under review");
    let event = next_event(&mut events, events::LOCK, WAIT)
        .await
        .expect("a user.lifecycle.lock event");
    let carried: UserLifecycleStatus = event.data.unwrap().to_msg().unwrap();
    assert!(carried.locked);

    // Refused at once, in this process, the key and the session alike;
    // and the right password logs in no more.
    let refused = expect_code(rights(&env, &key, "alice").await, Code::Unauthenticated);
    assert!(
        refused.message().starts_with("account_inactive"),
        "{refused:?}"
    );
    expect_code(rights(&env, &session, "alice").await, Code::Unauthenticated);
    expect_code(login(&env, "alice").await, Code::Unauthenticated);
    assert_refused(lock(&env, &admin, "alice").await, "already_locked");

    let unlocked = unlock(&env, &admin, "alice").await.unwrap();
    assert!(!unlocked.locked && unlocked.locked_at.is_none());
    assert!(unlocked.lock_reason.is_empty());
    next_event(&mut events, events::UNLOCK, WAIT)
        .await
        .expect("a user.lifecycle.unlock event");
    // Nothing was ended: the key and the session work again.
    assert!(!rights(&env, &key, "alice").await.unwrap().is_empty());
    assert!(!rights(&env, &session, "alice").await.unwrap().is_empty());
    login(&env, "alice").await.expect("alice logs in again");
    assert_refused(unlock(&env, &admin, "alice").await, "not_locked");
}

async fn deactivation_ends_sessions_and_reactivation_brings_back_api_keys_only(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    let admin = env.admin_token(ADMIN).await;
    let key = env.user_token("alice", &[Right::UserAll]).await;
    let session = login(&env, "alice").await.unwrap();
    let mut ended = env.subscribe("user.session.>").await;

    let status = deactivate(&env, &admin, "alice").await.unwrap();
    assert!(status.deactivated && status.deactivated_at.is_some());
    assert_eq!(status.deactivation_reason, "left the team");
    expect_code(rights(&env, &key, "alice").await, Code::Unauthenticated);
    expect_code(rights(&env, &session, "alice").await, Code::Unauthenticated);
    expect_code(login(&env, "alice").await, Code::Unauthenticated);
    // The sessions service ends alice's sessions for good.
    next_event(&mut ended, "user.session.delete", WAIT)
        .await
        .expect("alice's session ended");
    assert_refused(
        deactivate(&env, &admin, "alice").await,
        "already_deactivated",
    );
    assert_refused(lock(&env, &admin, "alice").await, "deactivated");
    assert_refused(
        set_actions(&env, &admin, "alice", &[UserRequiredAction::UpdatePassword]).await,
        "deactivated",
    );
    // Nor may a deactivated user change the password to get back in.
    let changed = registry(&env)
        .update_password(UpdateUserPasswordRequest {
            user_ids: Some(ids("alice")),
            new: "Another-Passw0rd-for-roster".into(),
            old: TEST_PASSWORD.into(),
            revoke_all_access: false,
        })
        .await;
    expect_code(changed, Code::Unauthenticated);

    let status = reactivate(&env, &admin, "alice").await.unwrap();
    assert!(!status.deactivated && status.deactivated_at.is_none());
    assert!(!rights(&env, &key, "alice").await.unwrap().is_empty());
    expect_code(rights(&env, &session, "alice").await, Code::Unauthenticated);
    login(&env, "alice").await.expect("alice logs in again");
    assert_refused(reactivate(&env, &admin, "alice").await, "not_deactivated");
}

async fn a_session_from_before_a_deactivation_stays_ended_after_an_immediate_reactivation(
    backend: Backend,
) {
    use roster_proto::v1::ListUserSessionsRequest;
    use roster_proto::v1::user_session_registry_client::UserSessionRegistryClient;

    let env = TestEnv::start_with(backend, Default::default()).await;
    let admin = env.admin_token(ADMIN).await;
    let key = env.user_token("alice", &[Right::UserAll]).await;
    let session = login(&env, "alice").await.unwrap();
    deactivate(&env, &admin, "alice").await.unwrap();
    let status = reactivate(&env, &admin, "alice").await.unwrap();
    assert!(status.sessions_ended_at.is_some());
    // Whenever the sessions service gets to the event, the old session is
    // refused, and a new one works.
    expect_code(rights(&env, &session, "alice").await, Code::Unauthenticated);
    assert!(!rights(&env, &key, "alice").await.unwrap().is_empty());
    let fresh = login(&env, "alice").await.expect("alice logs in again");
    assert!(!rights(&env, &fresh, "alice").await.unwrap().is_empty());
    // The event, handled after the reactivation, ends the old session only.
    eventually("only the new session is left", WAIT, || async {
        let listed = UserSessionRegistryClient::new(env.channel())
            .list(with_token(
                ListUserSessionsRequest {
                    user_ids: Some(ids("alice")),
                    ..Default::default()
                },
                &admin,
            ))
            .await
            .expect("the admin lists alice's sessions")
            .into_inner();
        listed.sessions.len() == 1
    })
    .await;
    assert!(!rights(&env, &fresh, "alice").await.unwrap().is_empty());
}

async fn unlock_lifts_the_lock_after_wrong_passwords(backend: Backend) {
    let env = start_locking_after(backend, 3).await;
    let admin = env.admin_token(ADMIN).await;
    env.ensure_user("alice", false).await;
    let key = env.api_key("alice", &[Right::UserAll]).await.1;
    wrong_passwords(&env, "alice", 3).await;
    expect_code(login(&env, "alice").await, Code::Unauthenticated);
    let status = get_status(&env, &admin, "alice").await.unwrap();
    assert!(status.locked && status.locked_until.is_some() && status.locked_at.is_none());
    // A lock after wrong passwords refuses passwords only.
    assert!(!rights(&env, &key, "alice").await.unwrap().is_empty());
    // An admin may make it a lasting lock, and lift both at once.
    let lasting = lock(&env, &admin, "alice").await.unwrap();
    assert!(lasting.locked_at.is_some() && lasting.locked_until.is_none());
    let unlocked = unlock(&env, &admin, "alice").await.unwrap();
    assert!(!unlocked.locked && unlocked.locked_until.is_none());
    login(&env, "alice")
        .await
        .expect("the right password works after unlock");
    assert_refused(unlock(&env, &admin, "alice").await, "not_locked");
}

async fn the_last_active_admin_can_be_neither_locked_nor_deactivated(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    let admin = env.admin_token(ADMIN).await;
    assert_refused(lock(&env, &admin, ADMIN).await, "last_admin");
    assert_refused(deactivate(&env, &admin, ADMIN).await, "last_admin");
    // A deactivated admin is no active admin: with two, one may go, then
    // the other is the last.
    let second = env.admin_token("ops-two").await;
    deactivate(&env, &admin, "ops-two").await.unwrap();
    expect_code(
        rights(&env, &second, "ops-two").await,
        Code::Unauthenticated,
    );
    assert_refused(lock(&env, &admin, ADMIN).await, "last_admin");
    reactivate(&env, &admin, "ops-two").await.unwrap();
    lock(&env, &second, ADMIN)
        .await
        .expect("another active admin remains");
}

async fn only_admins_change_a_lifecycle_and_only_they_read_the_reasons(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    let admin = env.admin_token(ADMIN).await;
    let alice = env.user_token("alice", &[Right::UserAll]).await;
    let bob = env.user_token("bob", &[Right::UserAll]).await;
    let info_only = env
        .api_key("alice", &[Right::UserAuthorizedClients])
        .await
        .1;
    for denied in [
        lock(&env, &alice, "alice").await.map(drop),
        unlock(&env, &alice, "alice").await.map(drop),
        deactivate(&env, &alice, "bob").await.map(drop),
        reactivate(&env, &alice, "alice").await.map(drop),
        set_actions(&env, &alice, "alice", &[]).await.map(drop),
        statistics(&env, &alice).await.map(drop),
        get_status(&env, &bob, "alice").await.map(drop),
        get_status(&env, &info_only, "alice").await.map(drop),
    ] {
        expect_code(denied, Code::PermissionDenied);
    }
    let anonymous = lifecycle(&env).get_status(ids("alice")).await;
    expect_code(anonymous, Code::Unauthenticated);

    lock(&env, &admin, "bob").await.unwrap();
    deactivate(&env, &admin, "alice").await.unwrap();
    // alice's own credential is refused now; the admin sees everything, a
    // status without reasons is what the user would see after reactivation.
    let seen = get_status(&env, &admin, "alice").await.unwrap();
    assert_eq!(seen.deactivation_reason, "left the team");
    reactivate(&env, &admin, "alice").await.unwrap();
    let own = get_status(&env, &alice, "alice").await.unwrap();
    assert!(own.deactivation_reason.is_empty() && own.lock_reason.is_empty());
    let by_cluster = lifecycle(&env)
        .get_status(with_cluster_key(ids("bob")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_cluster.lock_reason, "under review");
    expect_code(
        get_status(&env, &admin, "nobody-here").await,
        Code::NotFound,
    );
}

async fn bad_input_names_the_field(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    let admin = env.admin_token(ADMIN).await;
    env.ensure_user("alice", false).await;
    let long = lifecycle(&env)
        .lock_user(with_token(
            LockUserRequest {
                user_ids: Some(ids("alice")),
                reason: "r".repeat(129),
            },
            &admin,
        ))
        .await
        .unwrap_err();
    assert_invalid_field(&long, "reason");
    let no_user = lifecycle(&env)
        .deactivate_user(with_token(DeactivateUserRequest::default(), &admin))
        .await
        .unwrap_err();
    assert_eq!(no_user.code(), Code::InvalidArgument, "{no_user:?}");
    assert!(no_user.message().contains("user_ids"), "{no_user:?}");
    for (actions, field) in [
        (vec![0], "actions[0]"),
        (vec![1, 1], "actions[1]"),
        (vec![7], "actions[0]"),
    ] {
        let refused = lifecycle(&env)
            .set_required_actions(with_token(
                SetRequiredActionsRequest {
                    user_ids: Some(ids("alice")),
                    actions,
                },
                &admin,
            ))
            .await
            .unwrap_err();
        assert_invalid_field(&refused, field);
    }
}

async fn required_actions_limit_a_session_until_they_are_done(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    let admin = env.admin_token(ADMIN).await;
    env.ensure_user("alice", true).await;
    let key = env.api_key("alice", &[Right::All]).await.1;
    let session = login(&env, "alice").await.unwrap();
    let all_user = rights(&env, &session, "alice").await.unwrap();

    // An email validation: only what SendEmailValidation needs, and no
    // admin rights on anyone.
    let mut events = env.subscribe(events::ALL).await;
    let status = set_actions(&env, &admin, "alice", &[UserRequiredAction::ValidateEmail])
        .await
        .unwrap();
    assert_eq!(
        status.required_actions,
        [UserRequiredAction::ValidateEmail as i32]
    );
    let event = next_event(&mut events, events::SET_REQUIRED_ACTIONS, WAIT)
        .await
        .expect("a user.lifecycle.set_required_actions event");
    let carried: UserLifecycleStatus = event.data.unwrap().to_msg().unwrap();
    assert_eq!(carried.required_actions, status.required_actions);
    assert!(carried.primary_email_address_validated_at.is_none());
    assert!(status.primary_email_address_validated_at.is_none());
    assert_eq!(
        rights(&env, &session, "alice").await.unwrap(),
        [Right::UserInfo as i32, Right::UserSettingsBasic as i32]
    );
    assert!(rights(&env, &session, ADMIN).await.unwrap().is_empty());
    expect_code(statistics(&env, &session).await, Code::PermissionDenied);
    // API keys are not limited.
    statistics(&env, &key)
        .await
        .expect("alice's key still acts as admin");
    let sent = lifecycle(&env)
        .send_email_validation(with_token(
            SendEmailValidationRequest {
                user_ids: Some(ids("alice")),
                return_code: true,
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner();
    lifecycle(&env)
        .validate_email(ValidateEmailRequest {
            user_ids: Some(ids("alice")),
            code: sent.code,
        })
        .await
        .expect("alice validates the address");
    let done = get_status(&env, &admin, "alice").await.unwrap();
    assert!(done.required_actions.is_empty());
    assert_eq!(rights(&env, &session, "alice").await.unwrap(), all_user);

    // A password change: no right at all until it is done, mirrored in
    // `require_password_update`.
    set_actions(&env, &admin, "alice", &[UserRequiredAction::UpdatePassword])
        .await
        .unwrap();
    assert!(get_as_admin(&env, "alice").await.require_password_update);
    assert!(rights(&env, &session, "alice").await.unwrap().is_empty());
    registry(&env)
        .update_password(UpdateUserPasswordRequest {
            user_ids: Some(ids("alice")),
            new: "Another-Passw0rd-for-roster".into(),
            old: TEST_PASSWORD.into(),
            revoke_all_access: false,
        })
        .await
        .expect("alice changes the password");
    assert!(
        get_status(&env, &admin, "alice")
            .await
            .unwrap()
            .required_actions
            .is_empty()
    );
    assert_eq!(rights(&env, &session, "alice").await.unwrap(), all_user);

    // An empty list clears what is pending.
    set_actions(&env, &admin, "alice", &[UserRequiredAction::UpdatePassword])
        .await
        .unwrap();
    let cleared = set_actions(&env, &admin, "alice", &[]).await.unwrap();
    assert!(cleared.required_actions.is_empty());
    assert!(!get_as_admin(&env, "alice").await.require_password_update);
}

async fn statistics_count_a_mixed_workload(backend: Backend) {
    let env = start_locking_after(backend, 2).await;
    let admin = env.admin_token(ADMIN).await;
    // Approved and validated: ops (admin), a1..a6, boss (admin).
    for user in ["a1", "a2", "a3", "a4", "a5", "a6"] {
        env.ensure_user(user, false).await;
    }
    env.ensure_user("boss", true).await;
    // Self-registered: unvalidated.
    register(&env, "r1").await;
    register(&env, "r2").await;
    // Suspended, flagged, requested and rejected by an admin.
    for (user, state) in [
        ("a1", State::Suspended),
        ("a2", State::Flagged),
        ("r1", State::Requested),
        ("r2", State::Rejected),
    ] {
        update_as_admin(
            &env,
            User {
                ids: Some(ids(user)),
                state: state as i32,
                ..Default::default()
            },
            &["state"],
        )
        .await;
    }
    lock(&env, &admin, "a3").await.unwrap();
    deactivate(&env, &admin, "a4").await.unwrap();
    // Locked after wrong passwords.
    wrong_passwords(&env, "a5", 2).await;
    // Deleted: no longer counted among the live.
    delete_user(&env, "a6", &admin).await.unwrap();

    let stats = statistics(&env, &admin).await.unwrap();
    assert_eq!(stats.total, 9, "{stats:?}");
    assert_eq!(stats.deleted, 1);
    assert_eq!(stats.admins, 2);
    assert_eq!(stats.locked, 2, "a3 by an admin, a5 after wrong passwords");
    assert_eq!(stats.deactivated, 1);
    assert_eq!(stats.email_unvalidated, 2);
    let by_state: Vec<(i32, u64)> = stats.by_state.iter().map(|s| (s.state, s.count)).collect();
    assert_eq!(
        by_state,
        [
            (State::Requested as i32, 1),
            (State::Approved as i32, 5),
            (State::Rejected as i32, 1),
            (State::Flagged as i32, 1),
            (State::Suspended as i32, 1),
        ]
    );
    assert!(stats.computed_at.is_some());

    // Unlocking and reactivating move the counts back.
    unlock(&env, &admin, "a3").await.unwrap();
    unlock(&env, &admin, "a5").await.unwrap();
    reactivate(&env, &admin, "a4").await.unwrap();
    let stats = statistics(&env, &admin).await.unwrap();
    assert_eq!((stats.locked, stats.deactivated), (0, 0));
}

async fn a_lock_and_a_deactivation_notify_the_user(backend: Backend) {
    use roster_proto::v1::notification_service_client::NotificationServiceClient;
    use roster_proto::v1::{ListNotificationsRequest, NotificationType};

    let env = TestEnv::start_with(backend, Default::default()).await;
    let admin = env.admin_token(ADMIN).await;
    env.ensure_user("alice", false).await;
    lock(&env, &admin, "alice").await.unwrap();
    unlock(&env, &admin, "alice").await.unwrap();
    deactivate(&env, &admin, "alice").await.unwrap();
    reactivate(&env, &admin, "alice").await.unwrap();
    let wanted = [
        NotificationType::AccountLockedByAdmin as i32,
        NotificationType::AccountDeactivated as i32,
    ];
    eventually(
        "alice hears of the lock and the deactivation",
        WAIT,
        || async {
            let listed = NotificationServiceClient::new(env.channel())
                .list(with_cluster_key(ListNotificationsRequest {
                    receiver_ids: Some(ids("alice")),
                    ..Default::default()
                }))
                .await
                .expect("list alice's notifications")
                .into_inner();
            let mut kinds: Vec<i32> = listed
                .notifications
                .iter()
                .map(|n| n.notification_type)
                .filter(|k| wanted.contains(k))
                .collect();
            kinds.sort_unstable();
            kinds == wanted
        },
    )
    .await;
}

/// A login token minted before an admin's lock or a deactivation starts no
/// session while it holds (the access service will not consume it): such a
/// session would outlive the unlock, or the reactivation that ends for good
/// every session made before.
async fn a_login_token_starts_no_session_while_locked_or_deactivated(backend: Backend) {
    let mut config = TestConfig::default();
    config.access.login_tokens_enabled = true;
    let env = TestEnv::start_configured(backend, config).await;
    let admin = env.admin_token(ADMIN).await;
    env.ensure_user("alice", false).await;
    let token = || async {
        UserAccessClient::new(env.channel())
            .create_login_token(with_cluster_key(CreateLoginTokenRequest {
                user_ids: Some(ids("alice")),
                skip_email: true,
            }))
            .await
            .expect("a login token")
            .into_inner()
            .token
    };
    let login = |token: String| async {
        AuthenticationClient::new(env.channel())
            .login_with_token(LoginWithTokenRequest { token })
            .await
    };

    let before_lock = token().await;
    lock(&env, &admin, "alice").await.expect("locked");
    // No new token is minted meanwhile.
    let minted = UserAccessClient::new(env.channel())
        .create_login_token(with_cluster_key(CreateLoginTokenRequest {
            user_ids: Some(ids("alice")),
            skip_email: true,
        }))
        .await
        .expect_err("no login token for a locked account");
    assert_eq!(minted.code(), Code::FailedPrecondition, "{minted:?}");
    assert!(
        minted.message().starts_with("account_inactive"),
        "{minted:?}"
    );
    let refused = login(before_lock)
        .await
        .expect_err("no session while locked");
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    unlock(&env, &admin, "alice").await.expect("unlocked");
    login(token().await)
        .await
        .expect("a new token works after the unlock");

    let before_deactivation = token().await;
    deactivate(&env, &admin, "alice")
        .await
        .expect("deactivated");
    let refused = login(before_deactivation.clone())
        .await
        .expect_err("no session while deactivated");
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    // It was ended with the sessions: the reactivation does not revive it.
    reactivate(&env, &admin, "alice")
        .await
        .expect("reactivated");
    let refused = login(before_deactivation)
        .await
        .expect_err("a token from before the deactivation stays ended");
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
}

async fn get_with_status(
    env: &TestEnv,
    token: &str,
    user_id: &str,
    paths: &[&str],
) -> Result<UserWithStatus, Status> {
    lifecycle(env)
        .get_with_status(with_token(
            GetUserRequest {
                user_ids: Some(ids(user_id)),
                field_mask: mask(paths),
            },
            token,
        ))
        .await
        .map(tonic::Response::into_inner)
}

/// GetWithStatus answers what Get and GetStatus answer, in one call: the
/// lock after wrong passwords and an admin's lock, reasons to admins only,
/// the field mask as in Get, a deleted user to admins without a status.
async fn get_with_status_answers_as_get_and_get_status_together(backend: Backend) {
    let env = start_locking_after(backend, 3).await;
    let admin = env.admin_token(ADMIN).await;
    env.ensure_user("alice", false).await;
    env.ensure_user("bob", false).await;
    let alice = env.api_key("alice", &[Right::UserInfo]).await.1;
    wrong_passwords(&env, "alice", 3).await;

    let both = get_with_status(&env, &admin, "alice", &[]).await.unwrap();
    let user = both.user.expect("the user");
    assert_eq!(user, get_as_admin(&env, "alice").await);
    let status = both.status.expect("a live user's status");
    assert_eq!(status, get_status(&env, &admin, "alice").await.unwrap());
    assert!(status.locked && status.locked_until.is_some());
    // The user's own key (RIGHT_USER_INFO) reads itself: a lock after wrong
    // passwords refuses passwords only. Not another user.
    let own = get_with_status(&env, &alice, "alice", &[]).await.unwrap();
    assert!(own.status.expect("a status").locked);
    expect_code(
        get_with_status(&env, &alice, "bob", &[]).await,
        Code::PermissionDenied,
    );

    lock(&env, &admin, "alice").await.unwrap();
    let both = get_with_status(&env, &admin, "alice", &["state"])
        .await
        .unwrap();
    let status = both.status.expect("a status");
    assert!(status.locked_at.is_some() && status.locked_until.is_none());
    assert_eq!(status.lock_reason, "under review");
    // The locked user's own key is refused, as every credential of it.
    expect_code(
        get_with_status(&env, &alice, "alice", &[]).await,
        Code::Unauthenticated,
    );
    let user = both.user.expect("the user");
    assert_eq!(user.state, State::Approved as i32);
    assert_eq!(user.primary_email_address, "", "outside the mask");

    // A soft-deleted user: to admins, without a status.
    delete_user(&env, "bob", &admin).await.unwrap();
    let deleted = get_with_status(&env, &admin, "bob", &[]).await.unwrap();
    assert!(deleted.user.expect("the user").deleted_at.is_some());
    assert_eq!(deleted.status, None);
    expect_code(
        get_with_status(&env, &admin, "zoe", &[]).await,
        Code::NotFound,
    );
    let status = get_with_status(&env, &admin, "Not An ID", &[])
        .await
        .unwrap_err();
    assert_invalid_field(&status, "user_ids.user_id");
}

on_both_backends!(
    an_admins_lock_suspends_every_credential_until_unlocked,
    deactivation_ends_sessions_and_reactivation_brings_back_api_keys_only,
    a_session_from_before_a_deactivation_stays_ended_after_an_immediate_reactivation,
    unlock_lifts_the_lock_after_wrong_passwords,
    the_last_active_admin_can_be_neither_locked_nor_deactivated,
    only_admins_change_a_lifecycle_and_only_they_read_the_reasons,
    bad_input_names_the_field,
    required_actions_limit_a_session_until_they_are_done,
    statistics_count_a_mixed_workload,
    a_lock_and_a_deactivation_notify_the_user,
    a_login_token_starts_no_session_while_locked_or_deactivated,
    get_with_status_answers_as_get_and_get_status_together,
);
