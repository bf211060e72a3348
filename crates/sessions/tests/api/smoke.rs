use roster_proto::v1::authentication_client::AuthenticationClient;
use roster_proto::v1::user_registry_client::UserRegistryClient;
use roster_proto::v1::{GetUserRequest, UserIdentifiers};
use roster_test_support::{TestEnv, with_token};

#[tokio::test]
async fn a_session_works_until_logout() {
    let env = TestEnv::start().await;
    let token = env.session_token("alice").await;
    assert!(token.starts_with("rst."));
    let get = || {
        with_token(
            GetUserRequest {
                user_ids: Some(UserIdentifiers {
                    user_id: "alice".into(),
                    email: String::new(),
                }),
                field_mask: None,
            },
            &token,
        )
    };
    let mut users = UserRegistryClient::new(env.channel());
    let me = users
        .get(get())
        .await
        .expect("alice reads herself")
        .into_inner();
    assert_eq!(me.primary_email_address, "alice@example.com");
    AuthenticationClient::new(env.channel())
        .logout(with_token((), &token))
        .await
        .expect("logout");
    let refused = users.get(get()).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
}
