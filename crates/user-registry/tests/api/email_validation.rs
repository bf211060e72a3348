//! A pending validation of the primary email address: started for new
//! self-registered users and after an email change, kept only as a hash,
//! and cleared once an admin marks the address validated.

use roster_proto::v1::{Right, User};
use roster_test_support::{Backend, TestEnv};

use crate::support::*;

async fn stored(env: &TestEnv, user_id: &str) -> roster_user_registry::store::UserRecord {
    env.user_registry
        .store()
        .get_user(user_id)
        .await
        .unwrap()
        .expect("stored user")
}

async fn registering_starts_a_validation_stored_only_as_a_hash(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    register(&env, "alice").await;
    let record = stored(&env, "alice").await;
    let hash = record.email_validation_hash.expect("a pending validation");
    assert_eq!(hash.len(), 64, "a hex SHA-256");
    let expires = record.email_validation_expires_at.unwrap();
    let ttl = expires - record.created_at;
    assert_eq!(ttl.num_hours(), 24);
    // Nothing about it comes back through the API.
    let admin = env.admin_token(ADMIN).await;
    let user = get_user(&env, "alice", Some(&admin), &[]).await.unwrap();
    assert!(user.primary_email_address_validated_at.is_none());
}

async fn changing_the_email_starts_a_new_validation(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    register(&env, "alice").await;
    let first = stored(&env, "alice").await.email_validation_hash;
    let token = key_of(&env, "alice", &[Right::UserSettingsBasic]).await;
    update_user(
        &env,
        &token,
        User {
            ids: Some(ids("alice")),
            primary_email_address: "alice@elsewhere.example".into(),
            ..Default::default()
        },
        &["primary_email_address"],
    )
    .await
    .unwrap();
    let second = stored(&env, "alice").await.email_validation_hash;
    assert!(second.is_some());
    assert_ne!(first, second);

    // An unrelated change leaves the pending validation alone.
    update_user(
        &env,
        &token,
        User {
            ids: Some(ids("alice")),
            name: "Alice".into(),
            ..Default::default()
        },
        &["name"],
    )
    .await
    .unwrap();
    assert_eq!(stored(&env, "alice").await.email_validation_hash, second);
}

async fn an_admin_marking_the_email_validated_ends_the_validation(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    register(&env, "alice").await;
    update_as_admin(
        &env,
        User {
            ids: Some(ids("alice")),
            primary_email_address_validated_at: Some(prost_types::Timestamp {
                seconds: 1_700_000_000,
                nanos: 0,
            }),
            ..Default::default()
        },
        &["primary_email_address_validated_at"],
    )
    .await;
    let record = stored(&env, "alice").await;
    assert!(record.primary_email_address_validated_at.is_some());
    assert!(record.email_validation_hash.is_none());
    assert!(record.email_validation_expires_at.is_none());
}

on_both_backends!(
    registering_starts_a_validation_stored_only_as_a_hash,
    changing_the_email_starts_a_new_validation,
    an_admin_marking_the_email_validated_ends_the_validation,
);
