//! Notifications made from other services' events, through the real
//! services and the durable consumer (JetStream on PostgreSQL, the
//! in-process bus on SQLite): each event yields its notification for the
//! right receivers, a redelivered event none, and nothing carries a secret.

use std::time::{Duration, Instant};

use roster_access::AccessConfig;
use roster_proto::v1::authentication_client::AuthenticationClient;
use roster_proto::v1::user_access_client::UserAccessClient;
use roster_proto::v1::user_invitation_registry_client::UserInvitationRegistryClient;
use roster_proto::v1::user_registry_client::UserRegistryClient;
use roster_proto::v1::{
    CreateLoginTokenRequest, CreateTemporaryPasswordRequest, CreateUserApiKeyRequest,
    CreateUserRequest, ListNotificationsRequest, LoginRequest, Notification, NotificationType,
    Right, SendInvitationRequest, State, UpdateUserApiKeyRequest, UpdateUserPasswordRequest,
    UpdateUserRequest, User,
};
use roster_test_support::{
    Backend, TEST_PASSWORD, TestConfig, TestEnv, TestSmtp, with_cluster_key, with_token,
};
use roster_user_registry::UserRegistryConfig;

use crate::support::*;

/// Every notification of `user_id`, newest first (as the cluster).
async fn notifications_of(env: &TestEnv, user_id: &str) -> Vec<Notification> {
    client(env)
        .list(with_cluster_key(ListNotificationsRequest {
            receiver_ids: Some(ids(user_id)),
            ..Default::default()
        }))
        .await
        .unwrap_or_else(|s| panic!("list {user_id}: {s:?}"))
        .into_inner()
        .notifications
}

/// Waits until `user_id` has a notification of `kind`, and returns it.
async fn wait_for(env: &TestEnv, user_id: &str, kind: NotificationType) -> Notification {
    wait_for_where(env, user_id, kind, |_| true).await
}

/// Waits until `user_id` has a notification of `kind` that `matches`.
async fn wait_for_where(
    env: &TestEnv,
    user_id: &str,
    kind: NotificationType,
    matches: impl Fn(&Notification) -> bool,
) -> Notification {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(found) = notifications_of(env, user_id)
            .await
            .into_iter()
            .find(|n| n.notification_type() == kind && matches(n))
        {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "{user_id} got no {kind:?} within {WAIT:?}: {:?}",
            notifications_of(env, user_id)
                .await
                .iter()
                .map(|n| n.notification_type())
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn count(list: &[Notification], kind: NotificationType) -> usize {
    list.iter()
        .filter(|n| n.notification_type() == kind)
        .count()
}

async fn api_keys_and_passwords_are_told_to_their_user(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    env.ensure_user("alice", false).await;
    let token = env.user_token("alice", &[Right::UserAll]).await;
    let key = UserAccessClient::new(env.channel())
        .create_api_key(with_token(
            CreateUserApiKeyRequest {
                user_ids: Some(ids("alice")),
                name: "ci".into(),
                rights: vec![Right::UserInfo as i32],
                expires_at: None,
            },
            &token,
        ))
        .await
        .expect("create a key")
        .into_inner();
    // The key of `user_token` (made by the cluster) came first; this one
    // was made by alice herself.
    let created = wait_for_where(&env, "alice", NotificationType::ApiKeyCreated, |n| {
        n.sender_ids.as_ref().is_some_and(|s| s.user_id == "alice")
    })
    .await;
    // The key's data, never its secret.
    let data = created.data.as_ref().expect("data");
    let secret = key.key.rsplit('.').next().unwrap();
    assert!(!String::from_utf8_lossy(&data.value).contains(secret));

    UserAccessClient::new(env.channel())
        .update_api_key(with_token(
            UpdateUserApiKeyRequest {
                user_ids: Some(ids("alice")),
                api_key: Some(roster_proto::v1::ApiKey {
                    id: key.id.clone(),
                    name: "ci-renamed".into(),
                    ..Default::default()
                }),
                field_mask: Some(prost_types::FieldMask {
                    paths: vec!["name".into()],
                }),
            },
            &token,
        ))
        .await
        .expect("rename the key");
    wait_for(&env, "alice", NotificationType::ApiKeyChanged).await;

    UserRegistryClient::new(env.channel())
        .update_password(UpdateUserPasswordRequest {
            user_ids: Some(ids("alice")),
            new: "Brand-New-Horse-77".into(),
            old: TEST_PASSWORD.into(),
            revoke_all_access: false,
        })
        .await
        .expect("change the password");
    wait_for(&env, "alice", NotificationType::PasswordChanged).await;

    UserRegistryClient::new(env.channel())
        .create_temporary_password(CreateTemporaryPasswordRequest {
            user_ids: Some(ids("alice")),
        })
        .await
        .expect("forgotten password");
    let temporary = wait_for(&env, "alice", NotificationType::TemporaryPassword).await;
    assert!(temporary.data.is_none(), "no data, let alone the password");
    // Nobody else heard of any of it.
    env.ensure_user("bob", false).await;
    assert!(
        notifications_of(&env, "bob").await.is_empty(),
        "{backend:?}"
    );
}

async fn a_state_change_and_a_lock_are_told_to_their_user(backend: Backend) {
    // Every attempt comes from one address: let the account's own limit
    // (not the per-address one, which publishes no lock) be the first hit.
    let mut config = UserRegistryConfig::default();
    config.lockout.max_failures_per_client = 0;
    config.lockout.max_failures = 5;
    let env = TestEnv::start_with(backend, config).await;
    env.ensure_user("alice", false).await;
    // Five wrong passwords lock the account.
    let mut auth = AuthenticationClient::new(env.channel());
    for _ in 0..5 {
        let _ = auth
            .login(LoginRequest {
                user_ids: Some(ids("alice")),
                password: "Wrong-Horse-000".into(),
            })
            .await;
    }
    wait_for(&env, "alice", NotificationType::AccountLocked).await;

    UserRegistryClient::new(env.channel())
        .update(with_cluster_key(UpdateUserRequest {
            user: Some(User {
                ids: Some(ids("alice")),
                state: State::Suspended as i32,
                ..Default::default()
            }),
            field_mask: Some(prost_types::FieldMask {
                paths: vec!["state".into()],
            }),
            password: String::new(),
        }))
        .await
        .expect("suspend");
    let changed = wait_for(&env, "alice", NotificationType::EntityStateChanged).await;
    let user: User = changed.data.as_ref().unwrap().to_msg().unwrap();
    assert_eq!(user.state, State::Suspended as i32);
    assert!(user.password.is_empty() && user.temporary_password.is_empty());
}

async fn a_login_token_is_told_to_its_user(backend: Backend) {
    let env = TestEnv::start_configured(
        backend,
        TestConfig {
            access: AccessConfig {
                login_tokens_enabled: true,
                ..AccessConfig::default()
            },
            ..TestConfig::default()
        },
    )
    .await;
    env.ensure_user("alice", false).await;
    UserAccessClient::new(env.channel())
        .create_login_token(CreateLoginTokenRequest {
            user_ids: Some(ids("alice")),
            skip_email: false,
        })
        .await
        .expect("login token");
    let told = wait_for(&env, "alice", NotificationType::LoginToken).await;
    let token: roster_proto::v1::LoginToken = told.data.as_ref().unwrap().to_msg().unwrap();
    assert!(token.token.is_empty(), "never the token");
}

/// The services with new users waiting for an admin's approval.
async fn approval_required(backend: Backend) -> TestEnv {
    TestEnv::start_with(
        backend,
        UserRegistryConfig {
            admin_approval_required: true,
            ..UserRegistryConfig::default()
        },
    )
    .await
}

/// `newbie` registers (without a credential).
async fn register_newbie(env: &TestEnv) {
    UserRegistryClient::new(env.channel())
        .create(CreateUserRequest {
            user: Some(User {
                ids: Some(ids("newbie")),
                primary_email_address: "newbie@example.com".into(),
                password: "Correct-Horse-9".into(),
                ..Default::default()
            }),
            invitation_token: String::new(),
        })
        .await
        .expect("register");
}

async fn a_user_awaiting_approval_is_told_to_every_admin(backend: Backend) {
    let env = approval_required(backend).await;
    env.ensure_user("ops", true).await;
    env.ensure_user("ops-two", true).await;
    register_newbie(&env).await;
    for admin in ["ops", "ops-two"] {
        let told = wait_for(&env, admin, NotificationType::UserRequested).await;
        let user: User = told.data.as_ref().unwrap().to_msg().unwrap();
        assert_eq!(user.ids.unwrap().user_id, "newbie");
        assert!(user.password.is_empty(), "no password, not even hashed");
    }
    assert_eq!(
        count(
            &notifications_of(&env, "newbie").await,
            NotificationType::UserRequested
        ),
        0,
        "{backend:?}: only admins hear of it"
    );
}

async fn an_accepted_invitation_is_told_to_its_sender(backend: Backend) {
    let smtp = TestSmtp::start().await;
    let env = TestEnv::start_configured(
        backend,
        TestConfig {
            mail: smtp.mail_config(),
            ..TestConfig::default()
        },
    )
    .await;
    let admin = env.admin_token("ops").await;
    UserInvitationRegistryClient::new(env.channel())
        .send(with_token(
            SendInvitationRequest {
                email: "carol@example.com".into(),
                emails: Vec::new(),
            },
            &admin,
        ))
        .await
        .expect("invite");
    let token = smtp
        .mail_to_with_subject("carol@example.com", "invited", WAIT)
        .await
        .link_param("invitation_token")
        .expect("token");
    UserRegistryClient::new(env.channel())
        .create(CreateUserRequest {
            user: Some(User {
                ids: Some(ids("carol")),
                primary_email_address: "carol@example.com".into(),
                password: "Correct-Horse-9".into(),
                ..Default::default()
            }),
            invitation_token: token.clone(),
        })
        .await
        .expect("register");
    let told = wait_for(&env, "ops", NotificationType::InvitationAccepted).await;
    let invitation: roster_proto::v1::Invitation = told.data.as_ref().unwrap().to_msg().unwrap();
    assert_eq!(invitation.accepted_by.unwrap().user_id, "carol");
    assert!(invitation.token.is_empty());
    assert!(!String::from_utf8_lossy(&told.data.as_ref().unwrap().value).contains(&token));
}

async fn a_redelivered_event_makes_no_second_notification(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    env.ensure_user("alice", false).await;
    let mut events = env.subscribe("user.api-key.create").await;
    let token = env.user_token("alice", &[Right::UserAll]).await;
    let event = roster_test_support::next_event(&mut events, "user.api-key.create", WAIT)
        .await
        .expect("the event");
    wait_for(&env, "alice", NotificationType::ApiKeyCreated).await;
    // The consumer gets it again (a redelivery), twice.
    for _ in 0..2 {
        roster_notifications::worker::handle(&env.notifications, &event)
            .await
            .expect("handle again");
    }
    let list = notifications_of(&env, "alice").await;
    assert_eq!(
        count(&list, NotificationType::ApiKeyCreated),
        1,
        "{backend:?}: {list:?}"
    );
    drop(token);
}

async fn notification_mails_follow_the_preferences(backend: Backend) {
    let smtp = TestSmtp::start().await;
    let env = TestEnv::start_configured(
        backend,
        TestConfig {
            mail: smtp.mail_config(),
            ..TestConfig::default()
        },
    )
    .await;
    env.ensure_user("alice", false).await;
    prefer_mail_for(&env, "alice", &[NotificationType::PasswordChanged]).await;
    let token = env.user_token("alice", &[Right::UserAll]).await;
    wait_for(&env, "alice", NotificationType::ApiKeyCreated).await;
    UserRegistryClient::new(env.channel())
        .update_password(UpdateUserPasswordRequest {
            user_ids: Some(ids("alice")),
            new: "Brand-New-Horse-77".into(),
            old: TEST_PASSWORD.into(),
            revoke_all_access: false,
        })
        .await
        .expect("change the password");
    let told = wait_for(&env, "alice", NotificationType::PasswordChanged).await;
    let mail = smtp
        .mail_to_with_subject("alice@example.com", "password", WAIT)
        .await;
    assert!(
        mail.text().unwrap().contains(&told.id),
        "the mail links to the notification"
    );
    // The API key was not asked for: no mail about it, whatever else came.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !smtp
            .messages()
            .iter()
            .any(|m| m.header("Subject").is_some_and(|s| s.contains("API key"))),
        "{backend:?}: no mail for a type the user did not choose"
    );
    drop(token);
}

async fn a_purged_users_notifications_are_forgotten(backend: Backend) {
    let env = approval_required(backend).await;
    env.ensure_user("ops", true).await;
    register_newbie(&env).await;
    let requested = wait_for(&env, "ops", NotificationType::UserRequested).await;
    let key = env.user_token("newbie", &[Right::UserInfo]).await;
    wait_for(&env, "newbie", NotificationType::ApiKeyCreated).await;
    drop(key);

    let registry = || UserRegistryClient::new(env.channel());
    registry()
        .delete(with_cluster_key(ids("newbie")))
        .await
        .expect("delete");
    registry()
        .purge(with_cluster_key(ids("newbie")))
        .await
        .expect("purge");
    let deadline = Instant::now() + WAIT;
    while !notifications_of(&env, "newbie").await.is_empty()
        || notifications_of(&env, "ops")
            .await
            .iter()
            .any(|n| n.id == requested.id)
    {
        assert!(
            Instant::now() < deadline,
            "{backend:?}: the purged user's notifications stay"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

on_both_backends!(
    a_purged_users_notifications_are_forgotten,
    api_keys_and_passwords_are_told_to_their_user,
    a_state_change_and_a_lock_are_told_to_their_user,
    a_login_token_is_told_to_its_user,
    a_user_awaiting_approval_is_told_to_every_admin,
    an_accepted_invitation_is_told_to_its_sender,
    a_redelivered_event_makes_no_second_notification,
    notification_mails_follow_the_preferences,
);
