//! `UserInvitationRegistry` over real gRPC: sending (one, many, refused,
//! replacing expired invitations), the mail that carries the token, lists,
//! Get, Delete and Resend, who sees what, and the events.

use std::collections::HashSet;
use std::time::Duration;

use chrono::Utc;
use roster_core::time::from_timestamp;
use roster_core::token::{Token, TokenType};
use roster_proto::v1::entity_identifiers::Ids;
use roster_proto::v1::{
    DeleteInvitationRequest, Event, GetInvitationRequest, Invitation, ListInvitationsRequest,
    ResendInvitationRequest, Right, SendInvitationRequest, UserIdentifiers,
};
use roster_test_support::{
    Backend, TestEnv, TestSmtp, event_contains, event_data, next_event_where, total_count,
    with_cluster_key, with_token,
};
use tonic::{Code, Status};

use crate::support::{
    BASE_URL, WAIT, accept, assert_invalid_field, claim, claim_ok, count_rows, expect_code,
    expect_precondition, invitation_mails, inviter_token, mails_to, on_both_backends,
    queued_mails_to, raw_invitation, registry, release, send, send_one, set_time, start_with_smtp,
    token_in, wait_for_record,
};

on_both_backends!(
    send_invites_every_address_in_request_order_each_with_its_token_once,
    the_invitation_mail_arrives_over_smtp_with_the_registration_link,
    invalid_sends_name_the_field_and_store_nothing,
    a_live_invitation_refuses_the_whole_send,
    an_expired_invitation_is_replaced_by_a_new_send,
    list_orders_pages_and_counts_without_tokens,
    callers_who_are_not_admins_see_and_change_only_their_own_invitations,
    get_and_delete_find_invitations_by_id_and_by_address,
    resend_replaces_the_token_restarts_the_expiry_and_mails_again,
    accepted_invitations_stay_listed_and_cannot_be_resent_or_deleted,
    a_claimed_invitation_is_neither_resent_nor_deleted_until_released,
    delete_settles_a_stale_claim_first,
    every_method_needs_send_invites,
);

/// A request of `email` and `emails`.
fn request(email: &str, emails: &[&str]) -> SendInvitationRequest {
    SendInvitationRequest {
        email: email.into(),
        emails: emails.iter().map(|e| e.to_string()).collect(),
    }
}

fn user_ids(user_id: &str) -> Option<UserIdentifiers> {
    Some(UserIdentifiers {
        user_id: user_id.into(),
        email: String::new(),
    })
}

/// `message` with `token`, or with no credential.
fn as_caller<T>(message: T, token: Option<&str>) -> tonic::Request<T> {
    match token {
        Some(token) => with_token(message, token),
        None => tonic::Request::new(message),
    }
}

/// `invitation` as List, Get and events show it: without its token.
fn without_token(invitation: &Invitation) -> Invitation {
    Invitation {
        token: String::new(),
        ..invitation.clone()
    }
}

/// Whether `event` names the invitation to `email`.
fn about(event: &Event, email: &str) -> bool {
    event
        .identifiers
        .iter()
        .any(|i| matches!(&i.ids, Some(Ids::InvitationEmail(e)) if e == email))
}

async fn list(
    env: &TestEnv,
    caller: &str,
    order: &str,
    limit: u32,
    page: u32,
) -> Result<(Vec<Invitation>, u64), Status> {
    let response = registry(env)
        .list(with_token(
            ListInvitationsRequest {
                limit,
                page,
                order: order.into(),
            },
            caller,
        ))
        .await?;
    let total = total_count(&response);
    Ok((response.into_inner().invitations, total))
}

/// The addresses of a page, in order.
async fn listed_emails(env: &TestEnv, caller: &str, order: &str) -> Vec<String> {
    let (invitations, _) = list(env, caller, order, 0, 0).await.expect("list");
    invitations.into_iter().map(|i| i.email).collect()
}

async fn get(env: &TestEnv, caller: &str, id: &str) -> Result<Invitation, Status> {
    registry(env)
        .get(with_token(GetInvitationRequest { id: id.into() }, caller))
        .await
        .map(|r| r.into_inner())
}

async fn delete(env: &TestEnv, caller: &str, email: &str) -> Result<(), Status> {
    registry(env)
        .delete(with_token(
            DeleteInvitationRequest {
                email: email.into(),
            },
            caller,
        ))
        .await
        .map(|r| r.into_inner())
}

async fn resend(env: &TestEnv, caller: &str, email: &str) -> Result<Invitation, Status> {
    registry(env)
        .resend(with_token(
            ResendInvitationRequest {
                email: email.into(),
            },
            caller,
        ))
        .await
        .map(|r| r.into_inner())
}

async fn send_invites_every_address_in_request_order_each_with_its_token_once(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    let admin = env.admin_token("boss").await;
    let mut events = env.subscribe("invitation.>").await;
    let sent = registry(&env)
        .send(with_token(
            request(
                "First@Example.com",
                &["second@example.com", "third@example.com"],
            ),
            &admin,
        ))
        .await
        .expect("sent")
        .into_inner()
        .invitations;
    let emails: Vec<&str> = sent.iter().map(|i| i.email.as_str()).collect();
    assert_eq!(
        emails,
        [
            "First@Example.com",
            "second@example.com",
            "third@example.com"
        ],
        "request order, `email` first, as written"
    );
    let mut tokens = HashSet::new();
    for invitation in &sent {
        let token = Token::parse(&invitation.token).expect("a well-formed token");
        assert_eq!(token.kind(), TokenType::Invitation);
        assert!(tokens.insert(invitation.token.clone()), "tokens differ");
        assert!(
            uuid::Uuid::parse_str(&invitation.id).is_ok(),
            "{invitation:?}"
        );
        assert_eq!(invitation.sent_by, user_ids("boss"));
        assert_eq!(invitation.accepted_at, None);
        assert_eq!(invitation.accepted_by, None);
        assert_eq!(invitation.created_at, invitation.updated_at);
        let created = from_timestamp(invitation.created_at.as_ref().unwrap()).unwrap();
        let expires = from_timestamp(invitation.expires_at.as_ref().unwrap()).unwrap();
        assert_eq!(
            expires - created,
            chrono::Duration::days(7),
            "the default TTL"
        );

        // Get shows it without its token; the row holds only a digest.
        let got = get(&env, &admin, &invitation.id).await.expect("get");
        assert_eq!(got, without_token(invitation));
        let row = raw_invitation(&env.invitations_db, &invitation.id).await;
        assert!(
            !row.contains(token.secret()),
            "the secret in the row: {row}"
        );

        let event = next_event_where(&mut events, "invitation.create", WAIT, |e| {
            about(e, &invitation.email)
        })
        .await
        .unwrap_or_else(|| panic!("no invitation.create for {}", invitation.email));
        let data: Invitation = event_data(&event);
        assert_eq!(data, without_token(invitation), "the event's data");
        assert!(
            !event_contains(&event, token.secret()),
            "a secret in the event"
        );
        assert_eq!(
            event
                .authentication
                .as_ref()
                .and_then(|a| a.user_ids.clone()),
            user_ids("boss")
        );
    }
    let (listed, total) = list(&env, &admin, "", 0, 0).await.expect("list");
    assert_eq!(total, 3);
    assert!(listed.iter().all(|i| i.token.is_empty()), "{listed:?}");
    assert_eq!(
        invitation_mails(&env.invitations_db).await,
        3,
        "one mail each"
    );

    // `email` alone works too.
    let one = registry(&env)
        .send(with_token(request("solo@example.com", &[]), &admin))
        .await
        .expect("sent")
        .into_inner()
        .invitations;
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].email, "solo@example.com");
}

async fn the_invitation_mail_arrives_over_smtp_with_the_registration_link(backend: Backend) {
    let smtp = TestSmtp::start().await;
    let env = start_with_smtp(backend, &smtp).await;
    let admin = env.admin_token("boss").await;
    let invitation = send_one(&env, &admin, "newcomer@example.com").await;

    let mails = mails_to(&smtp, "newcomer@example.com", 1).await;
    assert_eq!(mails.len(), 1, "one mail");
    let mail = &mails[0];
    assert_eq!(
        mail.header("Subject").as_deref(),
        Some("You are invited to Roster")
    );
    assert_eq!(
        token_in(mail),
        invitation.token,
        "the link carries the token"
    );
    let link = format!("{BASE_URL}/register?invitation_token={}", invitation.token);
    let text = mail.text().expect("a text part");
    assert!(text.contains(&link), "{text}");
    let expires = from_timestamp(invitation.expires_at.as_ref().unwrap())
        .unwrap()
        .format("%Y-%m-%d %H:%M UTC")
        .to_string();
    assert!(text.contains(&expires), "{expires} not in {text}");
    let html = mail.html().expect("an HTML part");
    assert!(html.contains(&format!("href=\"{link}\"")), "{html}");
    for (name, value) in mail.headers() {
        assert!(
            !value.contains(&invitation.token),
            "the token in the header {name}"
        );
    }

    // Delivered: the queue keeps no secret.
    let queued = queued_mails_to(&env.invitations_db, "newcomer@example.com").await;
    assert_eq!(queued.len(), 1);
    let sent = wait_for_record(&env.invitations_db, &queued[0].id, "sent", |m| {
        m.sent_at.is_some()
    })
    .await;
    assert!(
        sent.data.keys().all(|k| !k.starts_with("secret_")),
        "{sent:?}"
    );
    assert_eq!(sent.data.get("expires_at"), Some(&expires));

    // The token from the mail redeems the invitation.
    let claimed = claim_ok(&env, &token_in(mail), "newcomer").await;
    assert_eq!(claimed.invitation.map(|i| i.id), Some(invitation.id));
}

async fn invalid_sends_name_the_field_and_store_nothing(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    let admin = env.admin_token("boss").await;
    let addresses: Vec<String> = (0..101).map(|i| format!("u{i}@example.com")).collect();
    let many: Vec<&str> = addresses.iter().map(String::as_str).collect();
    let long = format!("{}@example.com", "a".repeat(250));
    let cases: Vec<(&str, SendInvitationRequest)> = vec![
        ("emails", request("", &[])),
        ("emails", request("", &many)),
        ("emails", request("extra@example.com", &many[..100])),
        ("emails", request("Dup@example.com", &["dup@EXAMPLE.com"])),
        ("emails", request("", &["x@example.com", "X@example.com"])),
        ("email", request("not-an-address", &[])),
        ("email", request(&long, &[])),
        ("emails[1]", request("", &["ok@example.com", "nope"])),
        ("emails[0]", request("", &[""])),
        ("emails[0]", request("ok@example.com", &["a@b@example.com"])),
    ];
    for (field, request) in cases {
        assert_invalid_field(
            registry(&env).send(with_token(request, &admin)).await,
            field,
        );
    }
    assert_eq!(count_rows(&env.invitations_db, "invitations").await, 0);
    assert_eq!(invitation_mails(&env.invitations_db).await, 0);

    // The limit itself is fine.
    let sent = send(&env, &admin, &many[..100])
        .await
        .expect("100 addresses");
    assert_eq!(sent.len(), 100);
    let emails: Vec<&str> = sent.iter().map(|i| i.email.as_str()).collect();
    assert_eq!(emails, many[..100], "in request order");
    assert_eq!(invitation_mails(&env.invitations_db).await, 100);
}

async fn a_live_invitation_refuses_the_whole_send(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    let admin = env.admin_token("boss").await;
    let first = send_one(&env, &admin, "taken@example.com").await;
    let mut events = env.subscribe("invitation.>").await;

    let refused = send(&env, &admin, &["fresh@example.com", "TAKEN@example.com"]).await;
    let status = expect_code(refused, Code::AlreadyExists);
    assert!(
        status.message().contains("invitation_already_sent")
            && status.message().contains("TAKEN@example.com"),
        "{status:?}"
    );
    assert_eq!(
        count_rows(&env.invitations_db, "invitations").await,
        1,
        "nothing of the refused call is stored"
    );
    assert_eq!(invitation_mails(&env.invitations_db).await, 1, "no mail");
    let (listed, total) = list(&env, &admin, "", 0, 0).await.expect("list");
    assert_eq!(total, 1);
    assert_eq!(listed[0].id, first.id);
    let published = next_event_where(
        &mut events,
        "invitation.create",
        Duration::from_millis(1500),
        |e| about(e, "fresh@example.com"),
    )
    .await;
    assert!(
        published.is_none(),
        "an event of a refused call: {published:?}"
    );
    // The live invitation is unchanged and still works.
    claim_ok(&env, &first.token, "still-works").await;
}

async fn an_expired_invitation_is_replaced_by_a_new_send(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    let admin = env.admin_token("boss").await;
    let old = send_one(&env, &admin, "late@example.com").await;
    set_time(
        &env.invitations_db,
        &old.id,
        "expires_at",
        Utc::now() - chrono::Duration::seconds(1),
    )
    .await;
    expect_precondition(
        claim(&env, &old.token, "late-user").await,
        "invitation_expired",
    );

    let expired = get(&env, &admin, &old.id).await.expect("get");
    let mut events = env.subscribe("invitation.>").await;

    let new = send_one(&env, &admin, "Late@Example.com").await;
    assert_ne!(new.id, old.id);
    // The replaced invitation goes with an `invitation.delete` of its own,
    // ahead of the new one's `invitation.create`.
    let deleted = next_event_where(&mut events, "invitation.delete", WAIT, |e| {
        about(e, "late@example.com")
    })
    .await
    .expect("invitation.delete for the replaced invitation");
    assert_eq!(event_data::<Invitation>(&deleted), expired);
    assert!(
        !event_contains(&deleted, Token::parse(&old.token).unwrap().secret()),
        "a secret in the event"
    );
    assert_eq!(
        deleted
            .authentication
            .as_ref()
            .and_then(|a| a.user_ids.clone()),
        user_ids("boss"),
        "by the sender who replaced it"
    );
    let created = next_event_where(&mut events, "invitation.create", WAIT, |e| {
        about(e, "Late@Example.com")
    })
    .await
    .expect("invitation.create for the new invitation");
    assert_eq!(event_data::<Invitation>(&created), without_token(&new));
    expect_code(get(&env, &admin, &old.id).await, Code::NotFound);
    assert_invalid_field(
        claim(&env, &old.token, "late-user").await,
        "invitation_token",
    );
    let (listed, total) = list(&env, &admin, "", 0, 0).await.expect("list");
    assert_eq!(total, 1);
    assert_eq!(listed[0], without_token(&new));
    claim_ok(&env, &new.token, "late-user").await;
}

async fn list_orders_pages_and_counts_without_tokens(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    let admin = env.admin_token("boss").await;
    // Sent one after the other: created in this order.
    let c = send_one(&env, &admin, "c@example.com").await;
    let a = send_one(&env, &admin, "A@example.com").await;
    let b = send_one(&env, &admin, "b@example.com").await;
    let claimed = claim_ok(&env, &a.token, "ada").await;
    accept(&env, &a.id, &claimed.claim_id)
        .await
        .expect("accept");

    let emails = |list: &[&Invitation]| list.iter().map(|i| i.email.clone()).collect::<Vec<_>>();
    assert_eq!(
        listed_emails(&env, &admin, "").await,
        emails(&[&b, &a, &c]),
        "newest first by default"
    );
    assert_eq!(
        listed_emails(&env, &admin, "created_at").await,
        emails(&[&c, &a, &b])
    );
    assert_eq!(
        listed_emails(&env, &admin, "email").await,
        emails(&[&a, &b, &c]),
        "case-insensitively"
    );
    assert_eq!(
        listed_emails(&env, &admin, "-email").await,
        emails(&[&c, &b, &a])
    );
    assert_eq!(
        listed_emails(&env, &admin, "-expires_at").await,
        emails(&[&b, &a, &c])
    );
    assert_eq!(
        listed_emails(&env, &admin, "accepted_at").await[0],
        a.email,
        "accepted first, pending last, ascending"
    );
    assert_eq!(
        listed_emails(&env, &admin, "-accepted_at").await[2],
        a.email,
        "pending first, descending"
    );

    let (page, total) = list(&env, &admin, "email", 2, 1).await.expect("page 1");
    assert_eq!(total, 3);
    assert_eq!(emails(&page.iter().collect::<Vec<_>>()), emails(&[&a, &b]));
    assert!(page.iter().all(|i| i.token.is_empty()));
    let (page, total) = list(&env, &admin, "email", 2, 2).await.expect("page 2");
    assert_eq!(total, 3);
    assert_eq!(emails(&page.iter().collect::<Vec<_>>()), emails(&[&c]));
    let (page, total) = list(&env, &admin, "email", 2, 3).await.expect("page 3");
    assert_eq!((page.len(), total), (0, 3));

    let accepted = list(&env, &admin, "email", 1, 1).await.expect("list").0;
    assert_eq!(accepted[0].accepted_by, user_ids("ada"));
    assert!(accepted[0].accepted_at.is_some());

    assert_invalid_field(list(&env, &admin, "name", 0, 0).await, "order");
    assert_invalid_field(list(&env, &admin, "-", 0, 0).await, "order");
    assert_invalid_field(list(&env, &admin, "", 1001, 0).await, "limit");
}

async fn callers_who_are_not_admins_see_and_change_only_their_own_invitations(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    let boss = env.admin_token("boss").await;
    // Admins' keys that carry RIGHT_SEND_INVITES alone: not admins' keys.
    let alice = inviter_token(&env, "alice").await;
    let bob = inviter_token(&env, "bob").await;
    let mine = send_one(&env, &alice, "for-alice@example.com").await;
    let theirs = send_one(&env, &bob, "for-bob@example.com").await;
    assert_eq!(mine.sent_by, user_ids("alice"));

    let (listed, total) = list(&env, &alice, "", 0, 0).await.expect("list");
    assert_eq!(total, 1);
    assert_eq!(listed, [without_token(&mine)]);
    assert_eq!(
        get(&env, &alice, &mine.id).await.expect("own"),
        without_token(&mine)
    );
    expect_code(get(&env, &alice, &theirs.id).await, Code::NotFound);
    expect_code(
        delete(&env, &alice, "for-bob@example.com").await,
        Code::NotFound,
    );
    expect_code(
        resend(&env, &alice, "for-bob@example.com").await,
        Code::NotFound,
    );
    // Sending to bob's address is refused as for anyone: the address has
    // a live invitation.
    expect_code(
        send(&env, &alice, &["for-bob@example.com"]).await,
        Code::AlreadyExists,
    );

    // Bob's invitation is untouched; an admin sees and changes both.
    let (listed, total) = list(&env, &boss, "email", 0, 0).await.expect("list");
    assert_eq!(total, 2);
    assert_eq!(listed, [without_token(&mine), without_token(&theirs)]);
    assert_eq!(
        get(&env, &boss, &theirs.id)
            .await
            .expect("an admin sees all"),
        without_token(&theirs)
    );
    resend(&env, &boss, "for-bob@example.com")
        .await
        .expect("an admin resends anyone's");
    delete(&env, &boss, "for-alice@example.com")
        .await
        .expect("an admin deletes anyone's");
    let (_, total) = list(&env, &alice, "", 0, 0).await.expect("list");
    assert_eq!(total, 0);
    let (_, total) = list(&env, &bob, "", 0, 0).await.expect("list");
    assert_eq!(total, 1);
}

async fn get_and_delete_find_invitations_by_id_and_by_address(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    let admin = env.admin_token("boss").await;
    let invitation = send_one(&env, &admin, "Mixed@Example.com").await;

    assert_eq!(
        get(&env, &admin, &invitation.id.to_uppercase())
            .await
            .expect("a UUID in capitals is the same UUID"),
        without_token(&invitation)
    );
    assert_invalid_field(get(&env, &admin, "").await, "id");
    assert_invalid_field(get(&env, &admin, "not-a-uuid").await, "id");
    expect_code(
        get(&env, &admin, &uuid::Uuid::new_v4().to_string()).await,
        Code::NotFound,
    );
    assert_invalid_field(delete(&env, &admin, "not-an-address").await, "email");
    assert_invalid_field(resend(&env, &admin, "").await, "email");
    expect_code(
        delete(&env, &admin, "nobody@example.com").await,
        Code::NotFound,
    );

    let mut events = env.subscribe("invitation.>").await;
    delete(&env, &admin, "mixed@example.COM")
        .await
        .expect("deleted, matched case-insensitively");
    let event = next_event_where(&mut events, "invitation.delete", WAIT, |e| {
        about(e, "Mixed@Example.com")
    })
    .await
    .expect("invitation.delete");
    assert_eq!(event_data::<Invitation>(&event), without_token(&invitation));

    assert_invalid_field(
        claim(&env, &invitation.token, "someone").await,
        "invitation_token",
    );
    expect_code(get(&env, &admin, &invitation.id).await, Code::NotFound);
    expect_code(
        delete(&env, &admin, "Mixed@Example.com").await,
        Code::NotFound,
    );
    expect_code(
        resend(&env, &admin, "Mixed@Example.com").await,
        Code::NotFound,
    );
    // The address may be invited again.
    send_one(&env, &admin, "mixed@example.com").await;
}

async fn resend_replaces_the_token_restarts_the_expiry_and_mails_again(backend: Backend) {
    let smtp = TestSmtp::start().await;
    let env = start_with_smtp(backend, &smtp).await;
    let admin = env.admin_token("boss").await;
    let sent = send_one(&env, &admin, "again@example.com").await;
    let first = mails_to(&smtp, "again@example.com", 1).await;
    assert_eq!(token_in(&first[0]), sent.token);
    let mut events = env.subscribe("invitation.>").await;

    let resent = resend(&env, &admin, "AGAIN@example.com")
        .await
        .expect("resent");
    assert!(resent.token.is_empty(), "the new token is not returned");
    assert_eq!(resent.id, sent.id);
    assert_eq!(resent.email, sent.email);
    assert_eq!(resent.created_at, sent.created_at);
    let time = |t: &Option<prost_types::Timestamp>| from_timestamp(t.as_ref().unwrap()).unwrap();
    assert!(time(&resent.updated_at) > time(&sent.updated_at));
    assert!(time(&resent.expires_at) > time(&sent.expires_at));
    assert_eq!(
        time(&resent.expires_at) - time(&resent.updated_at),
        chrono::Duration::days(7)
    );
    assert_eq!(get(&env, &admin, &sent.id).await.expect("get"), resent);

    let mails = mails_to(&smtp, "again@example.com", 2).await;
    let new_token = mails
        .iter()
        .map(token_in)
        .find(|t| *t != sent.token)
        .expect("a mail with a new token");
    assert!(Token::parse(&new_token).is_ok());
    let event = next_event_where(&mut events, "invitation.update", WAIT, |e| {
        about(e, "again@example.com")
    })
    .await
    .expect("invitation.update");
    assert_eq!(event_data::<Invitation>(&event), resent);
    assert!(!event_contains(&event, &new_token));

    assert_invalid_field(
        claim(&env, &sent.token, "someone").await,
        "invitation_token",
    );
    claim_ok(&env, &new_token, "someone").await;
}

async fn accepted_invitations_stay_listed_and_cannot_be_resent_or_deleted(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    let admin = env.admin_token("boss").await;
    let invitation = send_one(&env, &admin, "joined@example.com").await;
    let claimed = claim_ok(&env, &invitation.token, "joiner").await;
    let accepted = accept(&env, &invitation.id, &claimed.claim_id)
        .await
        .expect("accept");

    expect_precondition(
        resend(&env, &admin, "joined@example.com").await,
        "invitation_already_used",
    );
    expect_precondition(
        delete(&env, &admin, "joined@example.com").await,
        "invitation_already_used",
    );
    let (listed, _) = list(&env, &admin, "", 0, 0).await.expect("list");
    assert_eq!(listed, std::slice::from_ref(&accepted));
    assert_eq!(accepted.accepted_by, user_ids("joiner"));

    // The address may be invited again; the accepted invitation stays as
    // history, and Delete and Resend now mean the new one.
    let again = send_one(&env, &admin, "joined@example.com").await;
    resend(&env, &admin, "joined@example.com")
        .await
        .expect("resend the new one");
    delete(&env, &admin, "joined@example.com")
        .await
        .expect("delete the new one");
    expect_code(get(&env, &admin, &again.id).await, Code::NotFound);
    let (listed, total) = list(&env, &admin, "", 0, 0).await.expect("list");
    assert_eq!(total, 1);
    assert_eq!(listed, [accepted]);
}

async fn a_claimed_invitation_is_neither_resent_nor_deleted_until_released(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    let admin = env.admin_token("boss").await;
    let invitation = send_one(&env, &admin, "busy@example.com").await;
    let claimed = claim_ok(&env, &invitation.token, "registering").await;
    let mut events = env.subscribe("invitation.>").await;

    // A registration is in progress with it.
    expect_precondition(
        resend(&env, &admin, "busy@example.com").await,
        "invitation_in_use",
    );
    expect_precondition(
        delete(&env, &admin, "busy@example.com").await,
        "invitation_in_use",
    );
    assert_eq!(
        get(&env, &admin, &invitation.id)
            .await
            .expect("still there"),
        without_token(&invitation)
    );
    let published = next_event_where(
        &mut events,
        "invitation.delete",
        Duration::from_millis(1500),
        |_| true,
    )
    .await;
    assert!(
        published.is_none(),
        "an event of a refused delete: {published:?}"
    );

    // Its registration failed: the invitation may go.
    release(&env, &invitation.id, &claimed.claim_id)
        .await
        .expect("released");
    delete(&env, &admin, "busy@example.com")
        .await
        .expect("deleted once released");
    next_event_where(&mut events, "invitation.delete", WAIT, |e| {
        about(e, "busy@example.com")
    })
    .await
    .expect("invitation.delete");
    expect_code(get(&env, &admin, &invitation.id).await, Code::NotFound);
    expect_precondition(
        accept(&env, &invitation.id, &claimed.claim_id).await,
        "invitation_claim_not_held",
    );
    assert_invalid_field(
        claim(&env, &invitation.token, "registering").await,
        "invitation_token",
    );
}

async fn delete_settles_a_stale_claim_first(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    let admin = env.admin_token("boss").await;
    let an_hour_ago = Utc::now() - chrono::Duration::hours(1);

    // Its user does not exist: the registration died; the invitation goes.
    let orphan = send_one(&env, &admin, "orphan@example.com").await;
    let dead = claim_ok(&env, &orphan.token, "never-created").await;
    set_time(&env.invitations_db, &orphan.id, "claimed_at", an_hour_ago).await;
    delete(&env, &admin, "orphan@example.com")
        .await
        .expect("deleted");
    expect_code(get(&env, &admin, &orphan.id).await, Code::NotFound);
    expect_precondition(
        accept(&env, &orphan.id, &dead.claim_id).await,
        "invitation_claim_not_held",
    );

    // Its user exists: the invitation is accepted for that user instead,
    // and stays as history.
    let used = send_one(&env, &admin, "used@example.com").await;
    claim_ok(&env, &used.token, "quiet-user").await;
    env.ensure_user("quiet-user", false).await;
    set_time(&env.invitations_db, &used.id, "claimed_at", an_hour_ago).await;
    expect_precondition(
        delete(&env, &admin, "used@example.com").await,
        "invitation_already_used",
    );
    assert_eq!(
        get(&env, &admin, &used.id).await.expect("kept").accepted_by,
        user_ids("quiet-user")
    );
}

async fn every_method_needs_send_invites(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    let admin = env.admin_token("boss").await;
    let invitation = send_one(&env, &admin, "guarded@example.com").await;
    let user = env.user_token("plain-user", &[Right::UserAll]).await;
    env.ensure_user("narrow-admin", true).await;
    let narrow_admin = env.api_key("narrow-admin", &[Right::UserList]).await.1;
    let email = "guarded@example.com";

    let calls = async |token: Option<&str>| -> Vec<(&'static str, Code)> {
        let mut client = registry(&env);
        let code = |r: Result<_, Status>| r.err().map(|s| s.code()).unwrap_or(Code::Ok);
        vec![
            (
                "Send",
                code(
                    client
                        .send(as_caller(request("new@example.com", &[]), token))
                        .await
                        .map(|_| ()),
                ),
            ),
            (
                "List",
                code(
                    client
                        .list(as_caller(ListInvitationsRequest::default(), token))
                        .await
                        .map(|_| ()),
                ),
            ),
            (
                "Get",
                code(
                    client
                        .get(as_caller(
                            GetInvitationRequest {
                                id: invitation.id.clone(),
                            },
                            token,
                        ))
                        .await
                        .map(|_| ()),
                ),
            ),
            (
                "Delete",
                code(
                    client
                        .delete(as_caller(
                            DeleteInvitationRequest {
                                email: email.into(),
                            },
                            token,
                        ))
                        .await
                        .map(|_| ()),
                ),
            ),
            (
                "Resend",
                code(
                    client
                        .resend(as_caller(
                            ResendInvitationRequest {
                                email: email.into(),
                            },
                            token,
                        ))
                        .await
                        .map(|_| ()),
                ),
            ),
        ]
    };
    for (caller, token, expected) in [
        ("no credential", None, Code::Unauthenticated),
        ("a user", Some(user.as_str()), Code::PermissionDenied),
        (
            "an admin's key without it",
            Some(narrow_admin.as_str()),
            Code::PermissionDenied,
        ),
    ] {
        for (method, code) in calls(token).await {
            assert_eq!(code, expected, "{method} by {caller}");
        }
    }
    assert_eq!(count_rows(&env.invitations_db, "invitations").await, 1);
    assert_eq!(
        get(&env, &admin, &invitation.id).await.expect("unchanged"),
        without_token(&invitation)
    );

    // Another Roster service may invite; nobody is the sender then.
    let by_cluster = registry(&env)
        .send(with_cluster_key(request("from-a-service@example.com", &[])))
        .await
        .expect("sent by a service")
        .into_inner()
        .invitations;
    assert_eq!(by_cluster[0].sent_by, None);
}
