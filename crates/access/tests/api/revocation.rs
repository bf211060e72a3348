//! Credentials that stop working: deleted keys, suspended users, purged
//! users, and IDs taken again after a purge.

use std::time::{Duration, Instant};

use roster_access::store::ApiKeyRecord;
use roster_core::token::{Token, TokenHasher, TokenType};
use roster_proto::v1::{
    AuthInfoRequest, DeleteUserApiKeyRequest, GetUserRequest, Right, State, UpdateUserRequest, User,
};
use roster_test_support::{Backend, TestEnv, with_cluster_key, with_token};
use tonic::Code;

use crate::support::{access, access_store, entity_access, ids, mask, on_both_backends, registry};

fn get(user_id: &str, token: &str) -> tonic::Request<GetUserRequest> {
    with_token(
        GetUserRequest {
            user_ids: Some(ids(user_id)),
            field_mask: None,
        },
        token,
    )
}

fn rename(user_id: &str, name: &str, token: &str) -> tonic::Request<UpdateUserRequest> {
    with_token(
        UpdateUserRequest {
            user: Some(User {
                ids: Some(ids(user_id)),
                name: name.into(),
                ..Default::default()
            }),
            field_mask: mask(&["name"]),
            password: String::new(),
        },
        token,
    )
}

on_both_backends!(
    a_deleted_key_is_refused_at_once_by_every_service_of_the_process,
    suspending_a_user_takes_its_cached_key_down_to_info_within_a_second,
    purging_a_user_deletes_its_keys,
    a_key_older_than_its_user_belongs_to_a_purged_namesake_and_is_refused,
);

async fn a_deleted_key_is_refused_at_once_by_every_service_of_the_process(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    let admin = env.admin_token("root-admin").await;
    env.ensure_user("alice", false).await;
    let (key_id, key) = env.api_key("alice", &[Right::UserAll]).await;
    // The user registry has resolved the key and holds the answer.
    registry(&env).get(get("alice", &key)).await.unwrap();
    access(&env)
        .delete_api_key(with_token(
            DeleteUserApiKeyRequest {
                user_ids: Some(ids("alice")),
                key_id,
            },
            &admin,
        ))
        .await
        .unwrap();
    let refused = registry(&env).get(get("alice", &key)).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);
}

async fn suspending_a_user_takes_its_cached_key_down_to_info_within_a_second(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    let admin = env.admin_token("root-admin").await;
    env.ensure_user("alice", false).await;
    let (_, key) = env.api_key("alice", &[Right::UserAll]).await;
    registry(&env)
        .update(rename("alice", "Alice", &key))
        .await
        .expect("an approved user renames herself");
    let mut suspend = UpdateUserRequest {
        user: Some(User {
            ids: Some(ids("alice")),
            state: State::Suspended as i32,
            ..Default::default()
        }),
        field_mask: mask(&["state"]),
        password: String::new(),
    };
    suspend.user.as_mut().unwrap().state_description = "abuse".into();
    registry(&env)
        .update(with_token(suspend, &admin))
        .await
        .unwrap();
    let suspended = Instant::now();
    loop {
        match registry(&env)
            .update(rename("alice", "Mallory", &key))
            .await
        {
            Err(status) => {
                assert_eq!(status.code(), Code::PermissionDenied);
                break;
            }
            Ok(_) => assert!(
                suspended.elapsed() < Duration::from_secs(1),
                "a suspended user's key still had its rights after a second"
            ),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Reading herself is what a suspended user keeps.
    registry(&env).get(get("alice", &key)).await.unwrap();
}

async fn purging_a_user_deletes_its_keys(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    let admin = env.admin_token("root-admin").await;
    env.ensure_user("alice", false).await;
    let (key_id, _) = env.api_key("alice", &[Right::UserAll]).await;
    let (other_id, _) = env.api_key("root-admin", &[Right::UserInfo]).await;
    let store = access_store(&env);
    assert!(store.get_api_key(&key_id).await.unwrap().is_some());
    registry(&env)
        .delete(with_token(ids("alice"), &admin))
        .await
        .unwrap();
    registry(&env)
        .purge(with_token(ids("alice"), &admin))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.get_api_key(&key_id).await.unwrap().is_some() {
        assert!(
            Instant::now() < deadline,
            "the purged user's key is still stored"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        store.get_api_key(&other_id).await.unwrap().is_some(),
        "other users' keys stay"
    );
}

async fn a_key_older_than_its_user_belongs_to_a_purged_namesake_and_is_refused(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    env.ensure_user("alice", false).await;
    // A key row left from an earlier `alice`, as if the purge had not been
    // handled yet.
    let token = Token::generate(TokenType::ApiKey);
    let created = roster_core::time::now() - chrono::Duration::hours(1);
    access_store(&env)
        .insert_api_key(
            &ApiKeyRecord {
                id: token.id().to_string(),
                user_id: "alice".into(),
                secret_hash: TokenHasher::new("").hash(&token),
                name: "old".into(),
                rights: vec![Right::UserAll as i32],
                created_at: created,
                updated_at: created,
                expires_at: None,
            },
            &[],
        )
        .await
        .unwrap();
    let refused = entity_access(&env)
        .auth_info(with_cluster_key(AuthInfoRequest {
            token: token.to_string(),
        }))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);
}
