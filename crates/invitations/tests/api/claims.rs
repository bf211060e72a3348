//! `InvitationTokens` over real gRPC, as the user registry calls it around
//! the creation of a user: claims and their settlement, tokens that are
//! refused, concurrent claims, and claims left unsettled.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::Utc;
use roster_core::token::{Token, TokenType};
use roster_proto::v1::entity_identifiers::Ids;
use roster_proto::v1::{
    ClaimInvitationRequest, GetInvitationRequest, Invitation, Right, UserIdentifiers,
};
use roster_test_support::{Backend, TestEnv, event_data, next_event_where, with_token};
use tonic::Code;

use crate::support::{
    WAIT, accept, assert_invalid_field, claim, claim_ok, expect_code, expect_precondition,
    on_both_backends, registry, release, resend_as, send_one, set_time, settle, tokens,
};

on_both_backends!(
    a_claim_reserves_the_invitation_and_accept_consumes_it,
    release_makes_the_token_work_again,
    accept_needs_the_claim_that_holds_the_invitation,
    wrong_tokens_are_refused_alike_and_expired_ones_say_so,
    a_stale_claim_whose_user_does_not_exist_is_taken_over,
    a_stale_claim_whose_user_exists_is_accepted_for_that_user,
    resend_settles_a_stale_claim_first,
    only_other_services_may_redeem_tokens,
);

fn user_ids(user_id: &str) -> Option<UserIdentifiers> {
    Some(UserIdentifiers {
        user_id: user_id.into(),
        email: String::new(),
    })
}

/// The invitation as an admin's Get shows it.
async fn get(env: &TestEnv, admin: &str, id: &str) -> Invitation {
    registry(env)
        .get(with_token(GetInvitationRequest { id: id.into() }, admin))
        .await
        .expect("get")
        .into_inner()
}

/// An hour ago: older than any claim timeout.
fn an_hour_ago() -> chrono::DateTime<Utc> {
    Utc::now() - chrono::Duration::hours(1)
}

async fn a_claim_reserves_the_invitation_and_accept_consumes_it(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    let admin = env.admin_token("boss").await;
    let invitation = send_one(&env, &admin, "newcomer@example.com").await;
    let mut events = env.subscribe("invitation.>").await;

    let claimed = claim_ok(&env, &invitation.token, "newcomer").await;
    assert!(uuid::Uuid::parse_str(&claimed.claim_id).is_ok());
    let shown = claimed.invitation.clone().expect("the invitation");
    assert_eq!(shown.id, invitation.id);
    assert!(shown.token.is_empty(), "never the token");
    assert_eq!(shown.accepted_at, None);

    // Held: nobody else gets it, nor the same user again.
    for user in ["someone-else", "newcomer"] {
        expect_precondition(
            claim(&env, &invitation.token, user).await,
            "invitation_already_used",
        );
    }

    let accepted = accept(&env, &invitation.id, &claimed.claim_id)
        .await
        .expect("accept");
    assert_eq!(accepted.accepted_by, user_ids("newcomer"));
    assert!(accepted.accepted_at.is_some());
    assert_eq!(accepted.updated_at, accepted.accepted_at);
    assert_eq!(accepted.sent_by, user_ids("boss"));
    assert!(accepted.token.is_empty());
    assert_eq!(get(&env, &admin, &invitation.id).await, accepted);

    let event = next_event_where(&mut events, "invitation.accept", WAIT, |e| {
        e.identifiers
            .iter()
            .any(|i| matches!(&i.ids, Some(Ids::InvitationEmail(m)) if m == "newcomer@example.com"))
    })
    .await
    .expect("invitation.accept");
    let data: Invitation = event_data(&event);
    assert_eq!(data, accepted, "the accepting user and the sender");
    assert!(
        event
            .identifiers
            .iter()
            .any(|i| matches!(&i.ids, Some(Ids::UserIds(u)) if u.user_id == "newcomer")),
        "{event:?}"
    );

    // Accepting again is a no-op with the same answer; the token is used.
    assert_eq!(
        accept(&env, &invitation.id, &claimed.claim_id)
            .await
            .expect("accept again"),
        accepted
    );
    expect_precondition(
        claim(&env, &invitation.token, "latecomer").await,
        "invitation_already_used",
    );
    // Releasing an accepted claim changes nothing.
    release(&env, &invitation.id, &claimed.claim_id)
        .await
        .expect("a no-op");
    assert_eq!(get(&env, &admin, &invitation.id).await, accepted);
}

async fn release_makes_the_token_work_again(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    let admin = env.admin_token("boss").await;
    let invitation = send_one(&env, &admin, "retry@example.com").await;
    let first = claim_ok(&env, &invitation.token, "taken-id").await;

    // Releasing another claim, or an unknown invitation, is a no-op.
    let stranger = uuid::Uuid::new_v4().to_string();
    release(&env, &invitation.id, &stranger)
        .await
        .expect("no-op");
    release(&env, &stranger, &first.claim_id)
        .await
        .expect("no-op");
    expect_precondition(
        claim(&env, &invitation.token, "other-id").await,
        "invitation_already_used",
    );

    release(&env, &invitation.id, &first.claim_id)
        .await
        .expect("released");
    release(&env, &invitation.id, &first.claim_id)
        .await
        .expect("releasing twice is a no-op");
    let second = claim_ok(&env, &invitation.token, "other-id").await;
    assert_ne!(second.claim_id, first.claim_id);
    expect_precondition(
        accept(&env, &invitation.id, &first.claim_id).await,
        "invitation_claim_not_held",
    );
    let accepted = accept(&env, &invitation.id, &second.claim_id)
        .await
        .expect("accept");
    assert_eq!(accepted.accepted_by, user_ids("other-id"));
}

async fn accept_needs_the_claim_that_holds_the_invitation(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    let admin = env.admin_token("boss").await;
    let invitation = send_one(&env, &admin, "held@example.com").await;

    expect_precondition(
        accept(&env, &invitation.id, &uuid::Uuid::new_v4().to_string()).await,
        "invitation_claim_not_held",
    );
    let claimed = claim_ok(&env, &invitation.token, "holder").await;
    expect_precondition(
        accept(&env, &invitation.id, &uuid::Uuid::new_v4().to_string()).await,
        "invitation_claim_not_held",
    );
    expect_precondition(
        accept(&env, &uuid::Uuid::new_v4().to_string(), &claimed.claim_id).await,
        "invitation_claim_not_held",
    );
    for (field, request) in [
        ("invitation_id", settle("", &claimed.claim_id)),
        ("invitation_id", settle("nope", &claimed.claim_id)),
        ("claim_id", settle(&invitation.id, "")),
        ("claim_id", settle(&invitation.id, "nope")),
    ] {
        assert_invalid_field(
            tokens(&env)
                .accept(roster_test_support::with_cluster_key(request.clone()))
                .await,
            field,
        );
        assert_invalid_field(
            tokens(&env)
                .release(roster_test_support::with_cluster_key(request))
                .await,
            field,
        );
    }
    assert_eq!(
        get(&env, &admin, &invitation.id).await.accepted_at,
        None,
        "nothing was accepted"
    );
}

async fn wrong_tokens_are_refused_alike_and_expired_ones_say_so(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    let admin = env.admin_token("boss").await;
    let invitation = send_one(&env, &admin, "real@example.com").await;
    let real = Token::parse(&invitation.token).expect("a token");
    let other_secret = Token::generate(TokenType::Invitation);
    let wrong_secret = format!("rin.{}.{}", real.id(), other_secret.secret());
    let other_type = format!("rak.{}.{}", real.id(), real.secret());
    let unknown = Token::generate(TokenType::Invitation).to_string();
    let upper = invitation.token.to_uppercase();
    let mut messages = HashSet::new();
    for bad in [
        "not a token",
        "rin.x.y",
        upper.as_str(),
        wrong_secret.as_str(),
        other_type.as_str(),
        unknown.as_str(),
    ] {
        let status = expect_code(claim(&env, bad, "someone").await, Code::InvalidArgument);
        assert!(
            status.message().contains("`invitation_token`"),
            "{bad}: {status:?}"
        );
        assert!(!status.message().contains(real.secret()), "{status:?}");
        messages.insert(status.message().to_string());
    }
    assert_eq!(
        messages.len(),
        1,
        "one answer for every wrong token: {messages:?}"
    );
    assert_invalid_field(claim(&env, "", "someone").await, "invitation_token");
    for bad_user in ["", "Not_A_User", "a", &"a".repeat(37)] {
        assert_invalid_field(claim(&env, &invitation.token, bad_user).await, "user_id");
    }

    // Wrong attempts do not spoil the real token.
    let claimed = claim_ok(&env, &invitation.token, "someone").await;
    release(&env, &invitation.id, &claimed.claim_id)
        .await
        .expect("release");

    // Expired: said so, unclaimed or with a stale claim.
    set_time(
        &env.invitations_db,
        &invitation.id,
        "expires_at",
        Utc::now() - chrono::Duration::seconds(1),
    )
    .await;
    expect_precondition(
        claim(&env, &invitation.token, "someone").await,
        "invitation_expired",
    );

    // Deleted: as if it never existed.
    let deleted = send_one(&env, &admin, "gone@example.com").await;
    registry(&env)
        .delete(with_token(
            roster_proto::v1::DeleteInvitationRequest {
                email: "gone@example.com".into(),
            },
            &admin,
        ))
        .await
        .expect("delete");
    let status = expect_code(
        claim(&env, &deleted.token, "someone").await,
        Code::InvalidArgument,
    );
    assert!(messages.contains(status.message()), "{status:?}");
}

/// Sixteen registrations race for one invitation: exactly one claim wins.
async fn concurrent_claims_let_exactly_one_through(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    let admin = env.admin_token("boss").await;
    let invitation = send_one(&env, &admin, "popular@example.com").await;
    let start = Arc::new(tokio::sync::Barrier::new(16));
    let mut racers = tokio::task::JoinSet::new();
    for i in 0..16 {
        let mut client = tokens(&env);
        let token = invitation.token.clone();
        let start = start.clone();
        racers.spawn(async move {
            start.wait().await;
            client
                .claim(roster_test_support::with_cluster_key(
                    ClaimInvitationRequest {
                        token,
                        user_id: format!("racer-{i}"),
                    },
                ))
                .await
                .map(|r| r.into_inner())
        });
    }
    let outcomes = racers.join_all().await;
    let winners: Vec<_> = outcomes.iter().filter_map(|o| o.as_ref().ok()).collect();
    assert_eq!(winners.len(), 1, "{backend:?}: {outcomes:?}");
    for outcome in &outcomes {
        if let Err(status) = outcome {
            assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
            assert!(
                status.message().starts_with("invitation_already_used"),
                "{status:?}"
            );
        }
    }
    let accepted = accept(&env, &invitation.id, &winners[0].claim_id)
        .await
        .expect("the winner accepts");
    let winner = accepted.accepted_by.expect("accepted by").user_id;
    assert!(winner.starts_with("racer-"), "{winner}");
}

on_both_backends!(multi_thread: concurrent_claims_let_exactly_one_through);

async fn a_stale_claim_whose_user_does_not_exist_is_taken_over(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    let admin = env.admin_token("boss").await;
    let invitation = send_one(&env, &admin, "abandoned@example.com").await;
    // A registration that claimed, then died before creating its user.
    let dead = claim_ok(&env, &invitation.token, "never-created").await;
    // Not yet stale: refused.
    expect_precondition(
        claim(&env, &invitation.token, "next-in-line").await,
        "invitation_already_used",
    );
    set_time(
        &env.invitations_db,
        &invitation.id,
        "claimed_at",
        an_hour_ago(),
    )
    .await;

    let taken = claim_ok(&env, &invitation.token, "next-in-line").await;
    assert_ne!(taken.claim_id, dead.claim_id);
    expect_precondition(
        accept(&env, &invitation.id, &dead.claim_id).await,
        "invitation_claim_not_held",
    );
    let accepted = accept(&env, &invitation.id, &taken.claim_id)
        .await
        .expect("accept");
    assert_eq!(accepted.accepted_by, user_ids("next-in-line"));
}

async fn a_stale_claim_whose_user_exists_is_accepted_for_that_user(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    let admin = env.admin_token("boss").await;
    let invitation = send_one(&env, &admin, "early@example.com").await;
    // A registration that claimed and created its user, then died before
    // it could accept.
    let silent = claim_ok(&env, &invitation.token, "early-bird").await;
    env.ensure_user("early-bird", false).await;
    set_time(
        &env.invitations_db,
        &invitation.id,
        "claimed_at",
        an_hour_ago(),
    )
    .await;
    let mut events = env.subscribe("invitation.>").await;

    expect_precondition(
        claim(&env, &invitation.token, "late-comer").await,
        "invitation_already_used",
    );
    let stored = get(&env, &admin, &invitation.id).await;
    assert_eq!(stored.accepted_by, user_ids("early-bird"));
    assert!(stored.accepted_at.is_some());
    let event = next_event_where(&mut events, "invitation.accept", WAIT, |_| true)
        .await
        .expect("invitation.accept");
    assert_eq!(event_data::<Invitation>(&event), stored);
    // The silent registration's own Accept, should it come after all, is
    // answered as a repeat.
    assert_eq!(
        accept(&env, &invitation.id, &silent.claim_id)
            .await
            .expect("accept"),
        stored
    );
}

async fn resend_settles_a_stale_claim_first(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    let admin = env.admin_token("boss").await;

    // Its user does not exist: the claim is dropped and the invitation sent
    // again.
    let orphan = send_one(&env, &admin, "orphan@example.com").await;
    let dead = claim_ok(&env, &orphan.token, "never-created").await;
    set_time(&env.invitations_db, &orphan.id, "claimed_at", an_hour_ago()).await;
    resend_as(&env, &admin, "orphan@example.com")
        .await
        .expect("resent");
    expect_precondition(
        accept(&env, &orphan.id, &dead.claim_id).await,
        "invitation_claim_not_held",
    );

    // Its user exists: the invitation is accepted for that user instead.
    let used = send_one(&env, &admin, "used@example.com").await;
    claim_ok(&env, &used.token, "quiet-user").await;
    env.ensure_user("quiet-user", false).await;
    set_time(&env.invitations_db, &used.id, "claimed_at", an_hour_ago()).await;
    expect_precondition(
        resend_as(&env, &admin, "used@example.com").await,
        "invitation_already_used",
    );
    assert_eq!(
        get(&env, &admin, &used.id).await.accepted_by,
        user_ids("quiet-user")
    );
}

async fn only_other_services_may_redeem_tokens(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    let admin = env.admin_token("boss").await;
    let user = env.user_token("plain-user", &[Right::UserAll]).await;
    let invitation = send_one(&env, &admin, "guarded@example.com").await;
    let claim_request = || ClaimInvitationRequest {
        token: invitation.token.clone(),
        user_id: "sneaky".into(),
    };
    let some_claim = uuid::Uuid::new_v4().to_string();
    let mut client = tokens(&env);

    expect_code(client.claim(claim_request()).await, Code::Unauthenticated);
    expect_code(
        client.accept(settle(&invitation.id, &some_claim)).await,
        Code::Unauthenticated,
    );
    expect_code(
        client.release(settle(&invitation.id, &some_claim)).await,
        Code::Unauthenticated,
    );
    for token in [&admin, &user] {
        expect_code(
            client.claim(with_token(claim_request(), token)).await,
            Code::PermissionDenied,
        );
        expect_code(
            client
                .accept(with_token(settle(&invitation.id, &some_claim), token))
                .await,
            Code::PermissionDenied,
        );
        expect_code(
            client
                .release(with_token(settle(&invitation.id, &some_claim), token))
                .await,
            Code::PermissionDenied,
        );
    }
    // Still unclaimed.
    claim_ok(&env, &invitation.token, "rightful").await;
}
