use std::time::Duration;

use roster_proto::v1::{GetUserRequest, UserEventData, UserIdentifiers};
use roster_test_support::{Backend, TestEnv, next_event, with_token};

use crate::support::*;

async fn created_user_can_be_read_back_by_its_owner(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    let mut events = env.subscribe("user.>").await;
    let created = register(&env, "alice").await;
    assert_eq!(created.ids.unwrap().user_id, "alice");
    assert!(created.password.is_empty());

    let event = next_event(&mut events, "user.create", Duration::from_secs(10))
        .await
        .expect("user.create published");
    let data: UserEventData = event.data.unwrap().to_msg().unwrap();
    assert_eq!(data.user.unwrap().ids.unwrap().user_id, "alice");

    let token = key_of(&env, "alice", &[roster_proto::v1::Right::UserAll]).await;
    let user = registry(&env)
        .get(with_token(
            GetUserRequest {
                user_ids: Some(UserIdentifiers {
                    user_id: "alice".into(),
                    email: String::new(),
                }),
                field_mask: None,
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(user.primary_email_address, "alice@example.com");
}

#[tokio::test]
async fn created_user_can_be_read_back_by_its_owner_on_postgres() {
    created_user_can_be_read_back_by_its_owner(Backend::Postgres).await;
}

#[tokio::test]
async fn created_user_can_be_read_back_by_its_owner_on_sqlite() {
    created_user_can_be_read_back_by_its_owner(Backend::Sqlite).await;
}
