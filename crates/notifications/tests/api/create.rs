//! Create and `notify`: who may create, how receivers resolve, validation,
//! idempotency and the events.

use std::time::Duration;

use roster_notifications::Note;
use roster_proto::v1::user_invitation_registry_client::UserInvitationRegistryClient;
use roster_proto::v1::{
    EntityIdentifiers, Notification, NotificationReceiver, NotificationStatus, NotificationType,
    Right, SendInvitationRequest, entity_identifiers,
};
use roster_test_support::{Backend, event_data, next_event, with_cluster_key, with_token};
use tonic::Code;

use crate::support::{
    about, assert_invalid_field, client, cluster_context, create_ok, delete_user, expect_code, ids,
    on_both_backends, receiver_ids, receivers, user_entity,
};

on_both_backends!(
    create_is_for_the_cluster_and_admins_only,
    receivers_are_resolved_deduplicated_and_limited_to_live_users,
    no_receiver_left_is_invalid_argument_no_receiver_user_ids,
    invalid_requests_name_the_field,
    the_same_note_id_twice_makes_one_notification,
    an_invitation_entity_resolves_to_the_invitations_sender,
    one_event_per_receiver_carries_its_notification,
);

async fn create_is_for_the_cluster_and_admins_only(backend: Backend) {
    let env = crate::support::start_quiet(backend).await;
    env.ensure_user("alice", false).await;
    let user = env.user_token("bob", &[Right::All]).await;
    let admin = env.admin_token("root-admin").await;

    expect_code(
        client(&env)
            .create(tonic::Request::new(about(
                "alice",
                NotificationType::ApiKeyCreated,
            )))
            .await,
        Code::Unauthenticated,
    );
    expect_code(
        client(&env)
            .create(with_token(
                about("alice", NotificationType::ApiKeyCreated),
                &user,
            ))
            .await,
        Code::PermissionDenied,
    );
    // Not even about themselves.
    expect_code(
        client(&env)
            .create(with_token(
                about("bob", NotificationType::ApiKeyCreated),
                &user,
            ))
            .await,
        Code::PermissionDenied,
    );
    let by_admin = client(&env)
        .create(with_token(
            about("alice", NotificationType::ApiKeyCreated),
            &admin,
        ))
        .await
        .expect("an admin creates")
        .into_inner()
        .id;
    let by_cluster = client(&env)
        .create(with_cluster_key(about(
            "alice",
            NotificationType::ApiKeyCreated,
        )))
        .await
        .expect("the cluster creates")
        .into_inner()
        .id;
    for id in [&by_admin, &by_cluster] {
        assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");
        assert_eq!(receiver_ids(&env, id).await, ["alice"]);
    }
    assert_ne!(by_admin, by_cluster);
}

async fn receivers_are_resolved_deduplicated_and_limited_to_live_users(backend: Backend) {
    let env = crate::support::start_quiet(backend).await;
    for user in ["alice", "bob", "carol"] {
        env.ensure_user(user, false).await;
    }
    delete_user(&env, "carol").await;
    let mut request = about("alice", NotificationType::PasswordChanged);
    // Every kind of contact of a user is the user.
    request.receivers = vec![
        NotificationReceiver::AdministrativeContact as i32,
        NotificationReceiver::TechnicalContact as i32,
        NotificationReceiver::Collaborator as i32,
    ];
    request.receiver_user_ids = ["alice", "bob", "bob", "carol", "nobody-here"]
        .iter()
        .map(|u| ids(u))
        .collect();
    let id = create_ok(&env, request).await;
    let rows = receivers(&env, &id).await;
    assert_eq!(
        rows.iter().map(|r| r.user_id.as_str()).collect::<Vec<_>>(),
        ["alice", "bob"],
        "alice once, bob once, the deleted and the unknown user not at all"
    );
    for row in rows {
        assert_eq!(row.status, NotificationStatus::Unseen as i32);
        assert_eq!(row.status_updated_at, None);
    }
    let stored = env
        .notifications
        .store()
        .get(&id)
        .await
        .unwrap()
        .expect("stored");
    assert_eq!(
        stored.receivers,
        [
            NotificationReceiver::AdministrativeContact as i32,
            NotificationReceiver::TechnicalContact as i32,
            NotificationReceiver::Collaborator as i32,
        ]
    );

    // Only explicit receivers, about nobody's contacts.
    let mut request = about("alice", NotificationType::UserRequested);
    request.receivers.clear();
    request.receiver_user_ids = vec![ids("bob")];
    let id = create_ok(&env, request).await;
    assert_eq!(receiver_ids(&env, &id).await, ["bob"]);
}

async fn no_receiver_left_is_invalid_argument_no_receiver_user_ids(backend: Backend) {
    let env = crate::support::start_quiet(backend).await;
    env.ensure_user("alice", false).await;
    env.ensure_user("carol", false).await;
    delete_user(&env, "carol").await;
    let mut cases = vec![about("nobody-here", NotificationType::ApiKeyCreated)];
    let mut no_kinds = about("alice", NotificationType::ApiKeyCreated);
    no_kinds.receivers.clear();
    cases.push(no_kinds);
    let mut only_gone = about("carol", NotificationType::ApiKeyCreated);
    only_gone.receiver_user_ids = vec![ids("nobody-here"), ids("carol")];
    cases.push(only_gone);
    for request in cases {
        let status = expect_code(
            client(&env).create(with_cluster_key(request.clone())).await,
            Code::InvalidArgument,
        );
        assert!(
            status.message().contains("no_receiver_user_ids"),
            "{request:?}: {status:?}"
        );
    }
}

async fn invalid_requests_name_the_field(backend: Backend) {
    let env = crate::support::start_quiet(backend).await;
    env.ensure_user("alice", false).await;
    let valid = about("alice", NotificationType::ApiKeyCreated);
    let create = |request| {
        let mut client = client(&env);
        async move { client.create(with_cluster_key(request)).await }
    };

    let mut request = valid.clone();
    request.entity_ids = None;
    assert_invalid_field(create(request).await, "entity_ids");
    let mut request = valid.clone();
    request.entity_ids = Some(EntityIdentifiers::default());
    assert_invalid_field(create(request).await, "entity_ids");
    let mut request = valid.clone();
    request.notification_type = NotificationType::Unknown as i32;
    assert_invalid_field(create(request).await, "notification_type");
    let mut request = valid.clone();
    request.notification_type = 99;
    assert_invalid_field(create(request).await, "notification_type");
    let mut request = valid.clone();
    request.receivers.push(NotificationReceiver::Unknown as i32);
    assert_invalid_field(create(request).await, "receivers");
    let mut request = valid.clone();
    request.receivers.push(2);
    assert_invalid_field(create(request).await, "receivers");
    let mut request = valid.clone();
    request.data = Some(prost_types::Any {
        type_url: "type.googleapis.com/roster.v1.Notification".into(),
        value: vec![7; 16 * 1024],
    });
    assert_invalid_field(create(request).await, "data");
    let mut request = valid.clone();
    request.receiver_user_ids = vec![ids("Not An ID")];
    assert_invalid_field(create(request).await, "receiver_user_ids");
    let mut request = valid.clone();
    request.sender_ids = Some(ids("-bad-"));
    assert_invalid_field(create(request).await, "sender_ids.user_id");

    // Data just under the limit is fine.
    let mut request = valid.clone();
    request.data = Some(prost_types::Any {
        type_url: String::new(),
        value: vec![7; 16 * 1024 - 4],
    });
    create(request).await.expect("data within 16 KiB");
}

async fn the_same_note_id_twice_makes_one_notification(backend: Backend) {
    let env = crate::support::start_quiet(backend).await;
    env.ensure_user("alice", false).await;
    let mut events = env.subscribe("user.notification.create").await;
    let id = uuid::Uuid::new_v4().to_string();
    let note = Note {
        id: Some(id.clone()),
        entity_ids: user_entity("alice"),
        notification_type: NotificationType::AccountLocked,
        data: None,
        sender_ids: None,
        receivers: vec![NotificationReceiver::AdministrativeContact],
        receiver_user_ids: Vec::new(),
        email: false,
    };
    let ctx = cluster_context();
    let first = env.notifications.notify(&ctx, note.clone()).await.unwrap();
    assert_eq!(first.as_deref(), Some(id.as_str()));
    // Redelivered, even with other receivers: nothing at all happens.
    env.ensure_user("bob", false).await;
    let again = Note {
        receiver_user_ids: vec!["bob".into()],
        ..note
    };
    assert_eq!(env.notifications.notify(&ctx, again).await.unwrap(), None);
    assert_eq!(receiver_ids(&env, &id).await, ["alice"]);
    let event = next_event(
        &mut events,
        "user.notification.create",
        crate::support::WAIT,
    )
    .await
    .expect("the first notification's event");
    assert_eq!(event_data::<Notification>(&event).id, id);
    assert!(
        next_event(
            &mut events,
            "user.notification.create",
            Duration::from_secs(1)
        )
        .await
        .is_none(),
        "the second note made no event"
    );
}

async fn an_invitation_entity_resolves_to_the_invitations_sender(backend: Backend) {
    let env = crate::support::start_quiet(backend).await;
    let inviter = env.admin_token("inviter").await;
    // Others sort before and after it.
    for email in ["aaa@example.com", "new@example.com", "zzz@example.com"] {
        UserInvitationRegistryClient::new(env.channel())
            .send(with_token(
                SendInvitationRequest {
                    email: email.into(),
                    emails: Vec::new(),
                },
                &inviter,
            ))
            .await
            .unwrap_or_else(|s| panic!("invite {email}: {s:?}"));
    }
    let mut request = about("inviter", NotificationType::InvitationAccepted);
    request.entity_ids = Some(EntityIdentifiers {
        ids: Some(entity_identifiers::Ids::InvitationEmail(
            "New@Example.com".into(),
        )),
    });
    let id = create_ok(&env, request.clone()).await;
    assert_eq!(receiver_ids(&env, &id).await, ["inviter"]);

    // No invitation to the address: no contact, so nobody to notify.
    request.entity_ids = Some(EntityIdentifiers {
        ids: Some(entity_identifiers::Ids::InvitationEmail(
            "other@example.com".into(),
        )),
    });
    let status = expect_code(
        client(&env).create(with_cluster_key(request)).await,
        Code::InvalidArgument,
    );
    assert!(status.message().contains("no_receiver_user_ids"));
}

async fn one_event_per_receiver_carries_its_notification(backend: Backend) {
    let env = crate::support::start_quiet(backend).await;
    env.ensure_user("alice", false).await;
    env.ensure_user("bob", false).await;
    let mut events = env.subscribe("user.notification.create").await;
    let mut request = about("alice", NotificationType::ApiKeyChanged);
    request.receiver_user_ids = vec![ids("bob")];
    request.sender_ids = Some(ids("alice"));
    let id = create_ok(&env, request).await;
    let mut seen = Vec::new();
    for _ in 0..2 {
        let event = next_event(
            &mut events,
            "user.notification.create",
            crate::support::WAIT,
        )
        .await
        .expect("an event per receiver");
        let receivers = roster_core::events::user_ids(&event);
        assert_eq!(receivers.len(), 1, "{event:?}");
        seen.push(receivers[0].clone());
        let notification: Notification = event_data(&event);
        assert_eq!(notification.id, id);
        assert_eq!(notification.entity_ids, Some(user_entity("alice")));
        assert_eq!(
            notification.notification_type,
            NotificationType::ApiKeyChanged as i32
        );
        assert_eq!(notification.sender_ids, Some(ids("alice")));
        assert_eq!(notification.status, NotificationStatus::Unseen as i32);
        assert!(notification.created_at.is_some());
        assert_eq!(
            event.authentication.map(|a| a.token_type).as_deref(),
            Some("cluster")
        );
    }
    seen.sort();
    assert_eq!(seen, ["alice", "bob"]);
}
