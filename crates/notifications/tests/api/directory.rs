//! `GrpcDirectory` against the real user registry: contacts and admins.

use roster_notifications::{Directory, GrpcDirectory};
use roster_proto::v1::user_registry_client::UserRegistryClient;
use roster_proto::v1::{NotificationType, State, UpdateUserRequest, User};
use roster_test_support::env::TEST_CLUSTER_KEY;
use roster_test_support::{Backend, TestEnv, with_cluster_key};

use crate::support::{delete_user, ids, on_both_backends, prefer_mail_for};

on_both_backends!(
    a_contact_carries_address_name_preferences_and_deletion,
    admins_are_every_live_working_admin,
);

fn directory(env: &TestEnv) -> GrpcDirectory {
    GrpcDirectory::new(env.channel(), env.channel(), TEST_CLUSTER_KEY).expect("directory")
}

async fn a_contact_carries_address_name_preferences_and_deletion(backend: Backend) {
    let env = crate::support::start_quiet(backend).await;
    env.ensure_user("alice", false).await;
    env.ensure_user("carol", false).await;
    prefer_mail_for(
        &env,
        "alice",
        &[NotificationType::ApiKeyCreated, NotificationType::Validate],
    )
    .await;
    delete_user(&env, "carol").await;
    let directory = directory(&env);

    let alice = directory.contact("alice").await.unwrap().expect("alice");
    assert_eq!(alice.user_id, "alice");
    assert_eq!(alice.email, "alice@example.com");
    assert_eq!(
        alice.email_types,
        [
            NotificationType::ApiKeyCreated as i32,
            NotificationType::Validate as i32
        ]
    );
    assert!(!alice.deleted);
    let carol = directory.contact("carol").await.unwrap().expect("carol");
    assert!(carol.deleted);
    assert_eq!(directory.contact("nobody-here").await.unwrap(), None);
    assert_eq!(directory.contact("Not An ID").await.unwrap(), None);
}

async fn admins_are_every_live_working_admin(backend: Backend) {
    let env = crate::support::start_quiet(backend).await;
    for (user, admin) in [
        ("alice", false),
        ("root-admin", true),
        ("second-admin", true),
        ("suspended-admin", true),
        ("deleted-admin", true),
        ("zed", false),
    ] {
        env.ensure_user(user, admin).await;
    }
    UserRegistryClient::new(env.channel())
        .update(with_cluster_key(UpdateUserRequest {
            user: Some(User {
                ids: Some(ids("suspended-admin")),
                state: State::Suspended as i32,
                ..Default::default()
            }),
            field_mask: Some(prost_types::FieldMask {
                paths: vec!["state".into()],
            }),
            password: String::new(),
        }))
        .await
        .expect("suspend an admin");
    delete_user(&env, "deleted-admin").await;
    let mut admins = directory(&env).admins().await.unwrap();
    admins.sort();
    assert_eq!(admins, ["root-admin", "second-admin"]);
}
