//! The whole journey of a user, on PostgreSQL, JetStream and a real SMTP
//! server: the bootstrap admin invites, the invitee registers from the mail,
//! validates the address, logs in, makes an API key and uses it, is told
//! about it in the notification list and by mail, revokes the key (refused
//! everywhere), and is deleted (sessions gone). Once with `rosterd start
//! all`, once with five `rosterd start <service>` processes.

use std::path::Path;
use std::time::{Duration, Instant};

use roster_proto::v1::authentication_client::AuthenticationClient;
use roster_proto::v1::notification_service_client::NotificationServiceClient;
use roster_proto::v1::user_access_client::UserAccessClient;
use roster_proto::v1::user_invitation_registry_client::UserInvitationRegistryClient;
use roster_proto::v1::user_lifecycle_client::UserLifecycleClient;
use roster_proto::v1::user_registry_client::UserRegistryClient;
use roster_proto::v1::{
    CreateUserApiKeyRequest, CreateUserRequest, DeleteUserApiKeyRequest,
    EmailNotificationPreferences, GetUserRequest, ListNotificationsRequest, LoginRequest,
    NotificationType, Right, SendInvitationRequest, User, ValidateEmailRequest,
};
use roster_test_support::{TestDb, TestNats, TestSmtp, with_token};
use tonic::Code;
use tonic::transport::Channel;

use crate::ids;
use crate::process::{Rosterd, SERVICES, deployment_env, read_key_file, split_deployment};

const WAIT: Duration = Duration::from_secs(30);
const PASSWORD: &str = "Violet-Horse-1234";

/// Where each service answers (all the same address for `start all`).
struct Endpoints {
    registry: Channel,
    access: Channel,
    sessions: Channel,
    invitations: Channel,
    notifications: Channel,
}

fn bootstrap_env(key_file: &Path) -> Vec<(&'static str, String)> {
    vec![
        ("ROSTER__BOOTSTRAP__ADMIN_USER_ID", "ops-admin".into()),
        (
            "ROSTER__BOOTSTRAP__ADMIN_API_KEY_FILE",
            key_file.display().to_string(),
        ),
    ]
}

/// Polls `check` until it holds; panics after [`WAIT`] naming `what`.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + WAIT;
    while !check().await {
        assert!(Instant::now() < deadline, "not {what} within {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn get_user(
    endpoints: &Endpoints,
    token: &str,
    user_id: &str,
) -> Result<User, tonic::Status> {
    UserRegistryClient::new(endpoints.registry.clone())
        .get(with_token(
            GetUserRequest {
                user_ids: Some(ids(user_id)),
                field_mask: None,
            },
            token,
        ))
        .await
        .map(|r| r.into_inner())
}

async fn notification_types(
    endpoints: &Endpoints,
    token: &str,
    user_id: &str,
) -> Result<Vec<NotificationType>, tonic::Status> {
    NotificationServiceClient::new(endpoints.notifications.clone())
        .list(with_token(
            ListNotificationsRequest {
                receiver_ids: Some(ids(user_id)),
                ..Default::default()
            },
            token,
        ))
        .await
        .map(|r| {
            r.into_inner()
                .notifications
                .iter()
                .map(|n| n.notification_type())
                .collect()
        })
}

/// The journey, against a deployment that bootstrapped `ops-admin` with
/// `admin_key`.
async fn journey(endpoints: &Endpoints, smtp: &TestSmtp, admin_key: &str) {
    // The admin invites; the invitee registers with the token from the mail.
    UserInvitationRegistryClient::new(endpoints.invitations.clone())
        .send(with_token(
            SendInvitationRequest {
                email: "dana@work.example".into(),
                emails: Vec::new(),
            },
            admin_key,
        ))
        .await
        .expect("invite");
    let invitation = smtp
        .mail_to_with_subject("dana@work.example", "invited", WAIT)
        .await
        .link_param("invitation_token")
        .expect("the invitation links to registration");
    UserRegistryClient::new(endpoints.registry.clone())
        .create(CreateUserRequest {
            user: Some(User {
                ids: Some(ids("dana")),
                primary_email_address: "dana@home.example".into(),
                password: PASSWORD.into(),
                email_notification_preferences: Some(EmailNotificationPreferences {
                    types: vec![NotificationType::ApiKeyCreated as i32],
                }),
                ..Default::default()
            }),
            invitation_token: invitation,
        })
        .await
        .expect("register with the invitation");

    // Another address than the invited one: it is validated from its mail.
    let validation = smtp
        .mail_to_with_subject("dana@home.example", "Confirm your email", WAIT)
        .await;
    UserLifecycleClient::new(endpoints.registry.clone())
        .validate_email(ValidateEmailRequest {
            user_ids: Some(ids("dana")),
            code: validation.link_param("token").expect("validation code"),
        })
        .await
        .expect("validate the address");
    let dana = get_user(endpoints, admin_key, "dana").await.expect("dana");
    assert!(dana.primary_email_address_validated_at.is_some());

    // Login, then an API key made with the session, and used.
    let session = AuthenticationClient::new(endpoints.sessions.clone())
        .login(LoginRequest {
            user_ids: Some(ids("dana")),
            password: PASSWORD.into(),
        })
        .await
        .expect("log in")
        .into_inner()
        .token;
    let key = UserAccessClient::new(endpoints.access.clone())
        .create_api_key(with_token(
            CreateUserApiKeyRequest {
                user_ids: Some(ids("dana")),
                name: "laptop".into(),
                rights: vec![Right::UserInfo as i32, Right::UserNotificationsRead as i32],
                expires_at: None,
            },
            &session,
        ))
        .await
        .expect("create a key")
        .into_inner();
    get_user(endpoints, &key.key, "dana")
        .await
        .expect("the key works");

    // Told in the list and by mail (the preferences ask for API keys).
    eventually("the API key notification is listed", || async {
        notification_types(endpoints, &key.key, "dana")
            .await
            .is_ok_and(|types| types.contains(&NotificationType::ApiKeyCreated))
    })
    .await;
    let mail = smtp
        .mail_to_with_subject("dana@home.example", "API key", WAIT)
        .await;
    assert!(
        mail.text().unwrap_or_default().contains("/notifications/"),
        "the mail links to the notification"
    );
    // The inviter hears that the invitation was accepted.
    eventually("the admin is told the invitation was accepted", || async {
        notification_types(endpoints, admin_key, "ops-admin")
            .await
            .is_ok_and(|types| types.contains(&NotificationType::InvitationAccepted))
    })
    .await;

    // Revoked: refused by every service within a second or so.
    UserAccessClient::new(endpoints.access.clone())
        .delete_api_key(with_token(
            DeleteUserApiKeyRequest {
                user_ids: Some(ids("dana")),
                key_id: key.id.clone(),
            },
            &session,
        ))
        .await
        .expect("revoke the key");
    eventually("the revoked key is refused everywhere", || async {
        let registry = get_user(endpoints, &key.key, "dana").await;
        let notifications = notification_types(endpoints, &key.key, "dana").await;
        matches!(registry, Err(s) if s.code() == Code::Unauthenticated)
            && matches!(notifications, Err(s) if s.code() == Code::Unauthenticated)
    })
    .await;

    // Deleted: the session ends.
    UserRegistryClient::new(endpoints.registry.clone())
        .delete(with_token(ids("dana"), admin_key))
        .await
        .expect("delete dana");
    eventually("the deleted user's session is refused", || async {
        matches!(
            get_user(endpoints, &session, "dana").await,
            Err(s) if s.code() == Code::Unauthenticated
        )
    })
    .await;
}

#[tokio::test]
async fn the_whole_journey_with_every_service_in_one_process() {
    let db = TestDb::new().await;
    let nats = TestNats::new();
    let smtp = TestSmtp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("admin.key");
    let mut env = deployment_env(&db, &nats, &smtp);
    env.extend(bootstrap_env(&key_file));
    let rosterd = Rosterd::start(dir.path(), &["start", "all"], &env).await;
    let channel = rosterd.channel().await;
    let endpoints = Endpoints {
        registry: channel.clone(),
        access: channel.clone(),
        sessions: channel.clone(),
        invitations: channel.clone(),
        notifications: channel,
    };
    let admin_key = read_key_file(&key_file).await;
    journey(&endpoints, &smtp, &admin_key).await;
    assert!(rosterd.terminate().await.success());
}

#[tokio::test]
async fn the_whole_journey_with_five_processes() {
    let db = TestDb::new().await;
    let nats = TestNats::new();
    let smtp = TestSmtp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("admin.key");
    let services = SERVICES;
    let (ports, peers) = split_deployment("http");
    let mut env = deployment_env(&db, &nats, &smtp);
    env.extend(peers);
    let mut processes = Vec::new();
    for (i, service) in services.iter().enumerate() {
        let mut own = env.clone();
        if *service == "access" {
            own.extend(bootstrap_env(&key_file));
        }
        processes.push(Rosterd::start_on(ports[i], dir.path(), &["start", service], &own).await);
    }
    let endpoints = Endpoints {
        registry: processes[0].channel().await,
        access: processes[1].channel().await,
        sessions: processes[2].channel().await,
        invitations: processes[3].channel().await,
        notifications: processes[4].channel().await,
    };
    let admin_key = read_key_file(&key_file).await;
    journey(&endpoints, &smtp, &admin_key).await;
    for process in processes {
        assert!(process.terminate().await.success());
    }
}
