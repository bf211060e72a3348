//! The account-takeover paths, walked as an attacker would against
//! `rosterd start all` (PostgreSQL, JetStream, a real SMTP server), and
//! shown closed:
//!
//! 1. a narrow admin key creating a full admin and logging in as it;
//! 2. a profile-only key redirecting the primary address, then the
//!    password reset;
//! 3. guessing on past the lockout to learn when a guess is right, and
//!    locking a user out at will.

use std::time::Duration;

use roster_proto::v1::authentication_client::AuthenticationClient;
use roster_proto::v1::user_access_client::UserAccessClient;
use roster_proto::v1::user_registry_client::UserRegistryClient;
use roster_proto::v1::{
    CreateLoginTokenRequest, CreateTemporaryPasswordRequest, CreateUserApiKeyRequest,
    CreateUserRequest, GetUserRequest, ListUsersRequest, LoginRequest, LoginResponse,
    LoginWithTokenRequest, Right, State, UpdateUserPasswordRequest, UpdateUserRequest, User,
};
use roster_test_support::{TestDb, TestNats, TestSmtp, with_token};
use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::ids;
use crate::process::{Rosterd, deployment_env, free_port, read_key_file};

const WAIT: Duration = Duration::from_secs(30);

const PASSWORD: &str = "Victims-Own-Passw0rd";

fn mask(paths: &[&str]) -> Option<prost_types::FieldMask> {
    Some(prost_types::FieldMask {
        paths: paths.iter().map(|p| p.to_string()).collect(),
    })
}

/// A deployment as production runs it, with a bootstrap admin whose full
/// key the test holds.
struct Deployment {
    channel: Channel,
    admin: String,
    smtp: TestSmtp,
    _rosterd: Rosterd,
    _db: TestDb,
    _dir: tempfile::TempDir,
}

impl Deployment {
    async fn start() -> Deployment {
        let db = TestDb::new().await;
        let nats = TestNats::new();
        let smtp = TestSmtp::start().await;
        let dir = tempfile::tempdir().unwrap();
        let key_file = dir.path().join("admin.key");
        let mut env = deployment_env(&db, &nats, &smtp);
        env.extend([
            ("ROSTER__ACCESS__LOGIN_TOKENS_ENABLED", "true".to_string()),
            ("ROSTER__BOOTSTRAP__ADMIN_USER_ID", "ops-admin".into()),
            (
                "ROSTER__BOOTSTRAP__ADMIN_PASSWORD",
                "Bootstrap-Secret-41".into(),
            ),
            (
                "ROSTER__BOOTSTRAP__ADMIN_API_KEY_FILE",
                key_file.display().to_string(),
            ),
        ]);
        let rosterd = Rosterd::start_on(free_port(), dir.path(), &["start", "all"], &env).await;
        let channel = rosterd.channel().await;
        let admin = read_key_file(&key_file).await;
        Deployment {
            channel,
            admin,
            smtp,
            _rosterd: rosterd,
            _db: db,
            _dir: dir,
        }
    }

    fn registry(&self) -> UserRegistryClient<Channel> {
        UserRegistryClient::new(self.channel.clone())
    }

    fn sessions(&self) -> AuthenticationClient<Channel> {
        AuthenticationClient::new(self.channel.clone())
    }

    /// An approved user with a validated address, made by the full admin.
    async fn victim(&self, id: &str) {
        self.registry()
            .create(with_token(
                CreateUserRequest {
                    user: Some(User {
                        ids: Some(ids(id)),
                        primary_email_address: format!("{id}@example.com"),
                        password: PASSWORD.into(),
                        state: State::Approved as i32,
                        primary_email_address_validated_at: Some(prost_types::Timestamp {
                            seconds: 1_700_000_000,
                            nanos: 0,
                        }),
                        ..Default::default()
                    }),
                    invitation_token: String::new(),
                },
                &self.admin,
            ))
            .await
            .expect("the admin creates the victim");
    }

    /// A key of `user_id` with `rights`, made by the full admin.
    async fn key(&self, user_id: &str, rights: &[Right]) -> String {
        UserAccessClient::new(self.channel.clone())
            .create_api_key(with_token(
                CreateUserApiKeyRequest {
                    user_ids: Some(ids(user_id)),
                    name: "narrow".into(),
                    rights: rights.iter().map(|r| *r as i32).collect(),
                    expires_at: None,
                },
                &self.admin,
            ))
            .await
            .expect("the admin makes a key")
            .into_inner()
            .key
    }

    async fn login(&self, id: &str, password: &str) -> Result<LoginResponse, Status> {
        self.sessions()
            .login(LoginRequest {
                user_ids: Some(ids(id)),
                password: password.into(),
            })
            .await
            .map(tonic::Response::into_inner)
    }

    async fn email_of(&self, id: &str) -> String {
        self.registry()
            .get(with_token(
                GetUserRequest {
                    user_ids: Some(ids(id)),
                    field_mask: mask(&["primary_email_address"]),
                },
                &self.admin,
            ))
            .await
            .expect("get")
            .into_inner()
            .primary_email_address
    }

    /// Whether any mail reached `address` within a couple of seconds.
    async fn mailed(&self, address: &str) -> bool {
        tokio::time::sleep(Duration::from_secs(2)).await;
        self.smtp.messages().iter().any(|m| m.is_to(address))
    }
}

#[tokio::test]
async fn a_key_that_may_only_create_users_cannot_make_an_admin_and_log_in_as_it() {
    let d = Deployment::start().await;
    let create_only = d.key("ops-admin", &[Right::UserCreate]).await;
    let mallory = |admin: bool| CreateUserRequest {
        user: Some(User {
            ids: Some(ids("mallory")),
            primary_email_address: "mallory@evil.example".into(),
            password: "Known-to-the-Attacker-1".into(),
            admin,
            ..Default::default()
        }),
        invitation_token: String::new(),
    };
    let refused = d
        .registry()
        .create(with_token(mallory(true), &create_only))
        .await
        .expect_err("a create-only key setting admin");
    assert_eq!(refused.code(), Code::PermissionDenied);
    assert!(refused.message().contains("user.admin"), "{refused:?}");
    assert_eq!(
        d.login("mallory", "Known-to-the-Attacker-1")
            .await
            .unwrap_err()
            .code(),
        Code::Unauthenticated,
        "no mallory was made"
    );

    // What the key may do, it still does: a plain user, who holds no
    // right on anyone else.
    d.registry()
        .create(with_token(mallory(false), &create_only))
        .await
        .expect("a plain user");
    let session = d
        .login("mallory", "Known-to-the-Attacker-1")
        .await
        .expect("mallory logs in")
        .token;
    let list = d
        .registry()
        .list(with_token(ListUsersRequest::default(), &session))
        .await
        .expect_err("a plain user lists no users");
    assert_eq!(list.code(), Code::PermissionDenied);
}

#[tokio::test]
async fn a_profile_only_key_cannot_redirect_the_password_reset() {
    let d = Deployment::start().await;
    d.victim("victor").await;
    let profile_key = d.key("victor", &[Right::UserSettingsBasic]).await;
    let narrow_admin = d.key("ops-admin", &[Right::UserSettingsBasic]).await;
    let redirect = |password: &str| UpdateUserRequest {
        user: Some(User {
            ids: Some(ids("victor")),
            primary_email_address: "attacker@evil.example".into(),
            ..Default::default()
        }),
        field_mask: mask(&["primary_email_address"]),
        password: password.into(),
    };
    for (who, key) in [
        ("profile key", &profile_key),
        ("narrow admin", &narrow_admin),
    ] {
        let refused = d
            .registry()
            .update(with_token(redirect(""), key))
            .await
            .expect_err(who);
        assert_eq!(refused.code(), Code::InvalidArgument, "{who}");
        assert!(refused.message().contains("password"), "{who}: {refused:?}");
    }
    assert_eq!(d.email_of("victor").await, "victor@example.com");

    // The reset goes where it always went, never to the attacker.
    d.registry()
        .create_temporary_password(CreateTemporaryPasswordRequest {
            user_ids: Some(ids("victor")),
        })
        .await
        .expect("the same answer for everyone");
    d.smtp
        .mail_to_with_subject("victor@example.com", "Your temporary password", WAIT)
        .await;
    assert!(!d.mailed("attacker@evil.example").await);

    // The owner, with the password, moves the address: the old one hears
    // of it, and until the new one is validated no reset or login link
    // goes anywhere.
    d.registry()
        .update(with_token(redirect(PASSWORD), &profile_key))
        .await
        .expect("the owner proves the password");
    let notice = d
        .smtp
        .mail_to_with_subject("victor@example.com", "email address of your account", WAIT)
        .await;
    assert!(
        notice.raw_contains("attacker@evil.example"),
        "{}",
        notice.raw()
    );
    d.smtp
        .mail_to_with_subject("attacker@evil.example", "Confirm your email", WAIT)
        .await;
    let before = d.smtp.messages().len();
    d.registry()
        .create_temporary_password(CreateTemporaryPasswordRequest {
            user_ids: Some(ids("victor")),
        })
        .await
        .expect("answered alike");
    UserAccessClient::new(d.channel.clone())
        .create_login_token(CreateLoginTokenRequest {
            user_ids: Some(ids("victor")),
            skip_email: false,
        })
        .await
        .expect("answered alike");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        d.smtp.messages().len(),
        before,
        "no secret to an unproven address"
    );
}

#[tokio::test]
async fn guessing_on_past_the_lock_learns_nothing_and_the_owner_gets_back_in() {
    let d = Deployment::start().await;
    d.victim("valerie").await;
    let wrong = "Surely-Not-Her-Passw0rd";
    let mut answers = Vec::new();
    for _ in 0..5 {
        let status = d.login("valerie", wrong).await.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated);
        answers.push(status.message().to_string());
    }
    // Locked: the right password answers exactly as a wrong one...
    let right = d.login("valerie", PASSWORD).await.unwrap_err();
    assert_eq!(right.code(), Code::Unauthenticated);
    assert_eq!(right.message(), answers[0]);
    let wrong_now = d.login("valerie", wrong).await.unwrap_err();
    assert_eq!(wrong_now.message(), right.message());
    // ...and UpdatePassword's check of the old one is the same budget.
    let update = d
        .registry()
        .update_password(UpdateUserPasswordRequest {
            user_ids: Some(ids("valerie")),
            new: "Her-Next-Passw0rd-2026".into(),
            old: PASSWORD.into(),
            revoke_all_access: false,
        })
        .await
        .unwrap_err();
    assert_eq!(update.code(), Code::Unauthenticated);

    // The owner is not kept out: a login link from the mail logs her in
    // and lifts the lock.
    UserAccessClient::new(d.channel.clone())
        .create_login_token(CreateLoginTokenRequest {
            user_ids: Some(ids("valerie")),
            skip_email: false,
        })
        .await
        .expect("a login link");
    let mail = d
        .smtp
        .mail_to_with_subject("valerie@example.com", "Your login link", WAIT)
        .await;
    let token = mail.link_param("token").expect("the link's token");
    d.sessions()
        .login_with_token(LoginWithTokenRequest { token })
        .await
        .expect("the link logs her in while locked");
    d.login("valerie", PASSWORD)
        .await
        .expect("and her password works again");
}
