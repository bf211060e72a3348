//! Mail across processes: mails a service owes survive the mailer being
//! away, and a whole journey through every mail Roster sends leaves no
//! secret in the logs.

use std::time::Duration;

use roster_proto::v1::authentication_client::AuthenticationClient;
use roster_proto::v1::user_access_client::UserAccessClient;
use roster_proto::v1::user_invitation_registry_client::UserInvitationRegistryClient;
use roster_proto::v1::user_lifecycle_client::UserLifecycleClient;
use roster_proto::v1::user_registry_client::UserRegistryClient;
use roster_proto::v1::{
    CreateLoginTokenRequest, CreateTemporaryPasswordRequest, CreateUserApiKeyRequest,
    CreateUserRequest, GetUserRequest, LoginRequest, LoginWithTokenRequest, Right,
    SendInvitationRequest, UpdateUserPasswordRequest, User, ValidateEmailRequest,
};
use roster_test_support::{TestDb, TestNats, TestSmtp, with_token};

use crate::ids;
use crate::process::{Rosterd, deployment_env, free_port, read_key_file};

const WAIT: Duration = Duration::from_secs(30);

fn user(id: &str, password: &str) -> User {
    User {
        ids: Some(ids(id)),
        primary_email_address: format!("{id}@example.com"),
        password: password.into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn mails_owed_while_the_mailer_is_away_arrive_once_it_is_back() {
    let db = TestDb::new().await;
    let nats = TestNats::new();
    let smtp = TestSmtp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let invitations_port = free_port();
    let mut env = deployment_env(&db, &nats, &smtp);
    env.push((
        "ROSTER__CLUSTER__INVITATIONS_ADDRESS",
        format!("http://127.0.0.1:{invitations_port}"),
    ));
    // The user registry alone: nothing listens where its mailer should be.
    let registry = Rosterd::start(dir.path(), &["start", "user-registry"], &env).await;
    let mut client = UserRegistryClient::new(registry.channel().await);
    let people = ["amy", "ben", "cal"];
    for id in people {
        client
            .create(CreateUserRequest {
                user: Some(user(id, "Correct-Horse-9")),
                invitation_token: String::new(),
            })
            .await
            .expect("register while the mailer is away");
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(smtp.messages().is_empty(), "no mailer, no mail");

    // The invitations service comes up where the registry expects it.
    let _invitations = Rosterd::start_on(
        invitations_port,
        dir.path(),
        &["start", "invitations"],
        &env,
    )
    .await;
    for id in people {
        let mail = smtp
            .mail_to_with_subject(&format!("{id}@example.com"), "Confirm your email", WAIT)
            .await;
        assert_eq!(mail.link_param("user_id").as_deref(), Some(id));
    }
    // Once each: nothing more arrives.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(smtp.messages().len(), people.len(), "{:?}", smtp.messages());
}

/// A secret seen during the journey, and where it came from.
struct Seen {
    what: &'static str,
    value: String,
}

/// The secret part of a `<type>.<id>.<secret>` token, or the whole value.
fn secret_part(value: &str) -> &str {
    value.rsplit('.').next().unwrap_or(value)
}

#[tokio::test]
async fn a_journey_through_every_mail_leaves_no_secret_in_the_logs() {
    let db = TestDb::new().await;
    let nats = TestNats::new();
    let smtp = TestSmtp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("rosterd.log");
    let key_file = dir.path().join("admin.key");
    let admin_password = "Bootstrap-Secret-41";
    let mut env = deployment_env(&db, &nats, &smtp);
    env.extend([
        ("RUST_LOG", "debug".to_string()),
        ("ROSTER__ACCESS__LOGIN_TOKENS_ENABLED", "true".into()),
        ("ROSTER__BOOTSTRAP__ADMIN_USER_ID", "ops-admin".into()),
        ("ROSTER__BOOTSTRAP__ADMIN_PASSWORD", admin_password.into()),
        (
            "ROSTER__BOOTSTRAP__ADMIN_API_KEY_FILE",
            key_file.display().to_string(),
        ),
    ]);
    let rosterd =
        Rosterd::start_logging(free_port(), dir.path(), &["start", "all"], &env, Some(&log)).await;
    let channel = rosterd.channel().await;
    let mut seen = vec![Seen {
        what: "bootstrap password",
        value: admin_password.into(),
    }];
    let admin_key = read_key_file(&key_file).await;
    seen.push(Seen {
        what: "admin API key",
        value: admin_key.clone(),
    });

    // Invitation → registration with the token from the mail.
    UserInvitationRegistryClient::new(channel.clone())
        .send(with_token(
            SendInvitationRequest {
                email: "carol@example.com".into(),
                emails: Vec::new(),
            },
            &admin_key,
        ))
        .await
        .expect("invite");
    let invitation = smtp
        .mail_to_with_subject("carol@example.com", "invited", WAIT)
        .await
        .link_param("invitation_token")
        .expect("invitation token");
    seen.push(Seen {
        what: "invitation token",
        value: invitation.clone(),
    });
    let first_password = "Violet-Horse-1234";
    seen.push(Seen {
        what: "password",
        value: first_password.into(),
    });
    let mut registry = UserRegistryClient::new(channel.clone());
    registry
        .create(CreateUserRequest {
            user: Some(User {
                primary_email_address: "carol@elsewhere.example".into(),
                ..user("carol", first_password)
            }),
            invitation_token: invitation,
        })
        .await
        .expect("register with the invitation");

    // Email validation with the link from the mail.
    let validation = smtp
        .mail_to_with_subject("carol@elsewhere.example", "Confirm your email", WAIT)
        .await
        .link_param("token")
        .expect("validation code");
    seen.push(Seen {
        what: "validation code",
        value: validation.clone(),
    });
    UserLifecycleClient::new(channel.clone())
        .validate_email(ValidateEmailRequest {
            user_ids: Some(ids("carol")),
            code: validation,
        })
        .await
        .expect("validate the address");

    // Forgotten password → temporary password from the mail → new password.
    registry
        .create_temporary_password(CreateTemporaryPasswordRequest {
            user_ids: Some(ids("carol")),
        })
        .await
        .expect("forgotten password");
    let temporary = smtp
        .mail_to_with_subject("carol@elsewhere.example", "temporary password", WAIT)
        .await
        .line_value("Temporary password:")
        .expect("temporary password");
    seen.push(Seen {
        what: "temporary password",
        value: temporary.clone(),
    });
    let second_password = "Violet-Staple-5678";
    seen.push(Seen {
        what: "new password",
        value: second_password.into(),
    });
    registry
        .update_password(UpdateUserPasswordRequest {
            user_ids: Some(ids("carol")),
            new: second_password.into(),
            old: temporary,
            revoke_all_access: false,
        })
        .await
        .expect("set a new password");

    // Login token from the mail → session.
    let mut access = UserAccessClient::new(channel.clone());
    access
        .create_login_token(CreateLoginTokenRequest {
            user_ids: Some(ids("carol")),
            skip_email: false,
        })
        .await
        .expect("ask for a login link");
    let login_token = smtp
        .mail_to_with_subject("carol@elsewhere.example", "login link", WAIT)
        .await
        .link_param("token")
        .expect("login token");
    seen.push(Seen {
        what: "login token",
        value: login_token.clone(),
    });
    let mut auth = AuthenticationClient::new(channel.clone());
    let by_token = auth
        .login_with_token(LoginWithTokenRequest { token: login_token })
        .await
        .expect("log in with the token")
        .into_inner();
    seen.push(Seen {
        what: "session token (login token)",
        value: by_token.token,
    });

    // Password login → API key → use it.
    let session = auth
        .login(LoginRequest {
            user_ids: Some(ids("carol")),
            password: second_password.into(),
        })
        .await
        .expect("log in")
        .into_inner()
        .token;
    seen.push(Seen {
        what: "session token",
        value: session.clone(),
    });
    let key = access
        .create_api_key(with_token(
            CreateUserApiKeyRequest {
                user_ids: Some(ids("carol")),
                name: "laptop".into(),
                rights: vec![Right::UserInfo as i32],
                expires_at: None,
            },
            &session,
        ))
        .await
        .expect("create a key")
        .into_inner()
        .key;
    seen.push(Seen {
        what: "API key",
        value: key.clone(),
    });
    registry
        .get(with_token(
            GetUserRequest {
                user_ids: Some(ids("carol")),
                field_mask: None,
            },
            &key,
        ))
        .await
        .expect("use the key");

    // Let every log line out, then search them all.
    let status = rosterd.terminate().await;
    assert!(status.success(), "{status:?}");
    let logs = std::fs::read_to_string(&log).expect("read the log");
    assert!(
        logs.lines().count() > 50
            && logs.contains("DEBUG")
            && logs.contains("user created")
            && logs.contains("mail queued")
            && logs.contains("carol"),
        "the log holds the journey ({} lines)",
        logs.lines().count()
    );
    for Seen { what, value } in &seen {
        for needle in [value.as_str(), secret_part(value)] {
            if let Some(line) = logs.lines().find(|line| line.contains(needle)) {
                panic!("the {what} appears in the log: {line}");
            }
        }
    }
}
