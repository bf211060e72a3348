use roster_proto::v1::user_access_client::UserAccessClient;
use roster_proto::v1::user_registry_client::UserRegistryClient;
use roster_proto::v1::{DeleteUserApiKeyRequest, GetUserRequest, Right, UserIdentifiers};
use roster_test_support::{TestEnv, with_token};

fn ids(id: &str) -> UserIdentifiers {
    UserIdentifiers {
        user_id: id.into(),
        email: String::new(),
    }
}

#[tokio::test]
async fn a_key_works_until_it_is_deleted() {
    let env = TestEnv::start().await;
    let admin = env.admin_token("root-admin").await;
    env.ensure_user("alice", false).await;
    let (key_id, key) = env.api_key("alice", &[Right::UserAll]).await;
    let mut users = UserRegistryClient::new(env.channel());
    let got = users
        .get(with_token(
            GetUserRequest {
                user_ids: Some(ids("alice")),
                field_mask: None,
            },
            &key,
        ))
        .await
        .expect("alice reads herself with her key")
        .into_inner();
    assert_eq!(got.primary_email_address, "alice@example.com");
    UserAccessClient::new(env.channel())
        .delete_api_key(with_token(
            DeleteUserApiKeyRequest {
                user_ids: Some(ids("alice")),
                key_id,
            },
            &admin,
        ))
        .await
        .expect("the admin deletes alice's key");
    let refused = users
        .get(with_token(
            GetUserRequest {
                user_ids: Some(ids("alice")),
                field_mask: None,
            },
            &key,
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
}
