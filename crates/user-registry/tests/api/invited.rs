//! Registering with an invitation, across the user registry and the
//! invitations service: the token from the invitation mail registers one
//! user, once; wrong, deleted, expired and used tokens are refused; a failed
//! registration gives the invitation back; and of many registrations racing
//! on one token exactly one creates a user.

use roster_proto::v1::user_invitation_registry_client::UserInvitationRegistryClient;
use roster_proto::v1::{
    CreateUserRequest, DeleteInvitationRequest, ListInvitationsRequest, SendInvitationRequest, User,
};
use std::sync::Arc;

use roster_core::auth::{CallContext, Caller};
use roster_core::password::PasswordHasher;
use roster_proto::v1::ClaimInvitationRequest;
use roster_proto::v1::invitation_tokens_client::InvitationTokensClient;
use roster_test_support::env::TEST_CLUSTER_KEY;
use roster_test_support::{
    Backend, TestConfig, TestEnv, TestSmtp, event_data, test_password_config, with_cluster_key,
    with_token,
};
use roster_user_registry::invitations::{Claim, GrpcInvitations, Invitations};
use roster_user_registry::{UserRegistryConfig, UserRegistryService};
use tonic::Code;

use crate::support::*;

async fn start(backend: Backend, smtp: &TestSmtp) -> TestEnv {
    TestEnv::start_configured(
        backend,
        TestConfig {
            user_registry: UserRegistryConfig {
                invitation_required: true,
                ..UserRegistryConfig::default()
            },
            mail: smtp.mail_config(),
            ..TestConfig::default()
        },
    )
    .await
}

fn invitations(env: &TestEnv) -> UserInvitationRegistryClient<tonic::transport::Channel> {
    UserInvitationRegistryClient::new(env.channel())
}

/// Invites `email` as the admin and returns the token from the mail.
async fn invite(env: &TestEnv, smtp: &TestSmtp, email: &str) -> String {
    let admin = env.admin_token(ADMIN).await;
    invitations(env)
        .send(with_token(
            SendInvitationRequest {
                email: email.into(),
                emails: Vec::new(),
            },
            &admin,
        ))
        .await
        .expect("send an invitation");
    smtp.mail_to_with_subject(email, "invited", WAIT)
        .await
        .link_param("invitation_token")
        .expect("the invitation mail links to registration with the token")
}

fn invited_user(user_id: &str, email: &str) -> User {
    User {
        primary_email_address: email.into(),
        ..new_user(user_id)
    }
}

async fn register_with(env: &TestEnv, user: User, token: &str) -> Result<User, tonic::Status> {
    registry(env)
        .create(CreateUserRequest {
            user: Some(user),
            invitation_token: token.into(),
        })
        .await
        .map(|r| r.into_inner())
}

async fn the_token_from_the_mail_registers_one_user_once(backend: Backend) {
    let smtp = TestSmtp::start().await;
    let env = start(backend, &smtp).await;
    let mut accepted = env.subscribe("invitation.accept").await;
    let token = invite(&env, &smtp, "carol@example.com").await;

    let carol = register_with(&env, invited_user("carol", "carol@example.com"), &token)
        .await
        .expect("register with the invitation");
    // The token proves the invitation, not the mailbox (its sender saw it
    // too): the address is validated from its own mail.
    assert!(
        carol.primary_email_address_validated_at.is_none(),
        "{backend:?}: an invited address is not validated by the token"
    );
    smtp.mail_to_with_subject("carol@example.com", "Confirm your email", WAIT)
        .await;
    let event = next_event_where(&mut accepted, "invitation.accept", WAIT, |_| true)
        .await
        .expect("invitation.accept");
    let invitation: roster_proto::v1::Invitation = event_data(&event);
    assert_eq!(invitation.email, "carol@example.com");
    assert_eq!(invitation.accepted_by.unwrap().user_id, "carol");
    assert!(invitation.token.is_empty(), "no token in events");

    // Used: nobody registers with it again.
    let again = register_with(&env, invited_user("dave", "dave@example.com"), &token)
        .await
        .unwrap_err();
    assert_eq!(
        again.code(),
        Code::FailedPrecondition,
        "{backend:?}: {again:?}"
    );
    assert!(
        again.message().contains("invitation_already_used"),
        "{again:?}"
    );
    assert!(
        env.user_registry
            .store()
            .get_user("dave")
            .await
            .unwrap()
            .is_none()
    );

    // The admin sees it accepted.
    let admin = env.admin_token(ADMIN).await;
    let listed = invitations(&env)
        .list(with_token(ListInvitationsRequest::default(), &admin))
        .await
        .expect("list")
        .into_inner();
    let listed = listed
        .invitations
        .iter()
        .find(|i| i.email == "carol@example.com")
        .expect("listed");
    assert!(listed.accepted_at.is_some());
    assert_eq!(listed.accepted_by.as_ref().unwrap().user_id, "carol");
}

async fn an_invited_user_with_another_address_validates_it_by_mail(backend: Backend) {
    let smtp = TestSmtp::start().await;
    let env = start(backend, &smtp).await;
    let token = invite(&env, &smtp, "carol@example.com").await;
    let carol = register_with(
        &env,
        invited_user("carol", "carol@elsewhere.example"),
        &token,
    )
    .await
    .expect("register with another address");
    assert!(
        carol.primary_email_address_validated_at.is_none(),
        "{backend:?}"
    );
    smtp.mail_to_with_subject("carol@elsewhere.example", "Confirm your email", WAIT)
        .await;
}

async fn registration_needs_a_valid_invitation_when_required(backend: Backend) {
    let smtp = TestSmtp::start().await;
    let env = start(backend, &smtp).await;
    let missing = register_with(&env, new_user("erin"), "").await.unwrap_err();
    assert_invalid_field(&missing, "invitation_token");
    for wrong in [
        "garbage",
        "rin.aaaaaaaaaaaaaaaaaaaaaaaa.aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        "rak.aaaaaaaaaaaaaaaaaaaaaaaa.aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    ] {
        let status = register_with(&env, new_user("erin"), wrong)
            .await
            .unwrap_err();
        assert_invalid_field(&status, "invitation_token");
    }
    // A right ID with a wrong secret is just as wrong.
    let token = invite(&env, &smtp, "erin@example.com").await;
    let (head, _) = token.rsplit_once('.').unwrap();
    let forged = format!("{head}.{}", "b".repeat(52));
    let status = register_with(&env, new_user("erin"), &forged)
        .await
        .unwrap_err();
    assert_invalid_field(&status, "invitation_token");
    assert!(
        env.user_registry
            .store()
            .get_user("erin")
            .await
            .unwrap()
            .is_none()
    );
    // Admins need none.
    create_as_admin(&env, new_user("frank"))
        .await
        .expect("an admin registers without an invitation");
}

async fn a_deleted_invitation_no_longer_registers(backend: Backend) {
    let smtp = TestSmtp::start().await;
    let env = start(backend, &smtp).await;
    let token = invite(&env, &smtp, "gina@example.com").await;
    let admin = env.admin_token(ADMIN).await;
    invitations(&env)
        .delete(with_token(
            DeleteInvitationRequest {
                email: "GINA@example.com".into(),
            },
            &admin,
        ))
        .await
        .expect("delete the invitation");
    let status = register_with(&env, invited_user("gina", "gina@example.com"), &token)
        .await
        .unwrap_err();
    assert_invalid_field(&status, "invitation_token");
}

async fn an_expired_invitation_no_longer_registers(backend: Backend) {
    let smtp = TestSmtp::start().await;
    let env = start(backend, &smtp).await;
    let token = invite(&env, &smtp, "hank@example.com").await;
    // Let it expire behind the service's back.
    let sql = "UPDATE invitations SET expires_at = created_at";
    match &env.invitations_db {
        roster_core::db::Db::Postgres(pool) => {
            sqlx::query(sql).execute(pool).await.unwrap();
        }
        roster_core::db::Db::Sqlite(pool) => {
            sqlx::query(sql).execute(pool).await.unwrap();
        }
    }
    let status = register_with(&env, invited_user("hank", "hank@example.com"), &token)
        .await
        .unwrap_err();
    assert_eq!(
        status.code(),
        Code::FailedPrecondition,
        "{backend:?}: {status:?}"
    );
    assert!(
        status.message().contains("invitation_expired"),
        "{status:?}"
    );
}

async fn a_failed_registration_gives_the_invitation_back(backend: Backend) {
    let smtp = TestSmtp::start().await;
    let env = start(backend, &smtp).await;
    create_as_admin(&env, new_user("ivy")).await.unwrap();
    let token = invite(&env, &smtp, "ivy2@example.com").await;
    // The ID is taken: no user, and the claim is released at once.
    let taken = register_with(&env, invited_user("ivy", "ivy2@example.com"), &token)
        .await
        .unwrap_err();
    assert_eq!(taken.code(), Code::AlreadyExists, "{backend:?}: {taken:?}");
    register_with(&env, invited_user("ivy-two", "ivy2@example.com"), &token)
        .await
        .expect("the token still works");
}

async fn racing_registrations_on_one_token_create_one_user(backend: Backend) {
    let smtp = TestSmtp::start().await;
    let env = start(backend, &smtp).await;
    let token = invite(&env, &smtp, "race@example.com").await;
    let racers = 12;
    let attempts = (0..racers).map(|i| {
        let env = &env;
        let token = token.clone();
        async move {
            // Some racers also share a user ID.
            let user_id = format!("racer-{}", i % 8);
            let result = register_with(
                env,
                invited_user(&user_id, &format!("{user_id}@example.com")),
                &token,
            )
            .await;
            (user_id, result)
        }
    });
    let results = futures::future::join_all(attempts).await;
    let winners: Vec<&String> = results
        .iter()
        .filter(|(_, r)| r.is_ok())
        .map(|(id, _)| id)
        .collect();
    assert_eq!(
        winners.len(),
        1,
        "{backend:?}: exactly one registration wins: {results:?}"
    );
    for (_, result) in &results {
        if let Err(status) = result {
            assert!(
                matches!(
                    status.code(),
                    Code::FailedPrecondition | Code::AlreadyExists
                ),
                "{backend:?}: losers are told why: {status:?}"
            );
        }
    }
    let mut created = Vec::new();
    for i in 0..8 {
        let user_id = format!("racer-{i}");
        if env
            .user_registry
            .store()
            .get_user(&user_id)
            .await
            .unwrap()
            .is_some()
        {
            created.push(user_id);
        }
    }
    assert_eq!(
        created,
        [winners[0].clone()],
        "{backend:?}: one user exists"
    );
    let admin = env.admin_token(ADMIN).await;
    let listed = invitations(&env)
        .list(with_token(ListInvitationsRequest::default(), &admin))
        .await
        .expect("list")
        .into_inner();
    let invitation = listed
        .invitations
        .iter()
        .find(|i| i.email == "race@example.com")
        .expect("listed");
    assert_eq!(
        invitation.accepted_by.as_ref().map(|u| u.user_id.as_str()),
        Some(winners[0].as_str()),
        "{backend:?}: accepted by the winner"
    );
}

on_both_backends!(
    the_token_from_the_mail_registers_one_user_once,
    an_invited_user_with_another_address_validates_it_by_mail,
    registration_needs_a_valid_invitation_when_required,
    a_deleted_invitation_no_longer_registers,
    an_expired_invitation_no_longer_registers,
    a_failed_registration_gives_the_invitation_back,
    racing_registrations_on_one_token_create_one_user,
);

/// The real invitations client, but between the claim and its acceptance
/// another registration takes the claim over, as one would after this one
/// stalled past `invitations.claim_timeout_secs`.
struct ClaimTakenOver {
    inner: GrpcInvitations,
    env_db: roster_core::db::Db,
    channel: tonic::transport::Channel,
}

#[tonic::async_trait]
impl Invitations for ClaimTakenOver {
    async fn claim(&self, token: &str, user_id: &str) -> Result<Claim, tonic::Status> {
        let claim = self.inner.claim(token, user_id).await?;
        // Age the claim, then let another registration take it.
        let sql = "UPDATE invitations SET claimed_at = created_at - INTERVAL '1 hour'";
        let sqlite = "UPDATE invitations SET claimed_at = '2000-01-01T00:00:00+00:00'";
        match &self.env_db {
            roster_core::db::Db::Postgres(pool) => {
                sqlx::query(sql).execute(pool).await.unwrap();
            }
            roster_core::db::Db::Sqlite(pool) => {
                sqlx::query(sqlite).execute(pool).await.unwrap();
            }
        }
        InvitationTokensClient::new(self.channel.clone())
            .claim(with_cluster_key(ClaimInvitationRequest {
                token: token.into(),
                user_id: "someone-else".into(),
            }))
            .await
            .expect("the lapsed claim is taken over");
        Ok(claim)
    }

    async fn accept(&self, claim: &Claim) -> Result<(), tonic::Status> {
        self.inner.accept(claim).await
    }

    async fn release(&self, claim: &Claim) -> Result<(), tonic::Status> {
        self.inner.release(claim).await
    }
}

async fn a_registration_that_loses_its_claim_leaves_no_user(backend: Backend) {
    let smtp = TestSmtp::start().await;
    let env = start(backend, &smtp).await;
    let token = invite(&env, &smtp, "jo@example.com").await;
    let invitations = ClaimTakenOver {
        inner: GrpcInvitations::new(env.channel(), TEST_CLUSTER_KEY).unwrap(),
        env_db: env.invitations_db.clone(),
        channel: env.channel(),
    };
    // The same store and rules as the running registry, with that client.
    let service = UserRegistryService::new(
        env.user_registry.store().clone(),
        PasswordHasher::new(&test_password_config()).unwrap(),
        Arc::new(invitations),
        UserRegistryConfig {
            invitation_required: true,
            ..UserRegistryConfig::default()
        },
        Arc::new(roster_core::time::SystemClock),
    );
    let ctx = CallContext {
        caller: Caller::Anonymous,
        remote_ip: "127.0.0.1".into(),
        user_agent: "test".into(),
        correlation_id: String::new(),
    };
    let status: tonic::Status = service
        .create(
            &ctx,
            CreateUserRequest {
                user: Some(invited_user("jo", "jo@example.com")),
                invitation_token: token,
            },
        )
        .await
        .unwrap_err()
        .into();
    assert_eq!(
        status.code(),
        Code::FailedPrecondition,
        "{backend:?}: {status:?}"
    );
    assert!(
        env.user_registry
            .store()
            .get_user("jo")
            .await
            .unwrap()
            .is_none(),
        "{backend:?}: no user outlives its lost claim"
    );
}

on_both_backends!(a_registration_that_loses_its_claim_leaves_no_user);
