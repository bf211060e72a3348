//! Limits that keep one caller from hurting others: what an answer may
//! show, how big events and pages get, how often anonymous callers may
//! register, and how exact totals and timestamps are.

use roster_core::ratelimit::RateLimitConfig;
use roster_proto::v1::{
    CreateUserRequest, ListUsersRequest, Picture, Right, SearchUsersRequest, User, picture,
};
use roster_test_support::{Backend, TestEnv, next_event, with_cluster_key, with_token};
use roster_user_registry::UserRegistryConfig;
use tonic::Code;

use crate::support::*;

fn picture() -> Picture {
    Picture {
        embedded: Some(picture::Embedded {
            mime_type: "image/png".into(),
            data: vec![7; 4096],
        }),
        sizes: [(64, "https://pictures.example.com/64.png".to_string())].into(),
    }
}

#[tokio::test]
async fn an_update_answers_with_only_what_the_key_may_read() {
    let env = TestEnv::start().await;
    register(&env, "alice").await;
    let basic = key_of(&env, "alice", &[Right::UserSettingsBasic]).await;
    let updated = update_user(
        &env,
        &basic,
        User {
            ids: Some(ids("alice")),
            name: "Alice".into(),
            ..Default::default()
        },
        &["name"],
    )
    .await
    .unwrap();
    assert_eq!(updated.name, "Alice");
    assert!(
        updated.primary_email_address.is_empty(),
        "private without USER_INFO"
    );
    assert!(updated.password_updated_at.is_none());
    // What the caller has just written comes back.
    let updated = update_user(
        &env,
        &basic,
        User {
            ids: Some(ids("alice")),
            attributes: [("team".to_string(), "blue".to_string())].into(),
            ..Default::default()
        },
        &["attributes"],
    )
    .await
    .unwrap();
    assert_eq!(
        updated.attributes.get("team").map(String::as_str),
        Some("blue")
    );
    assert!(updated.primary_email_address.is_empty());

    let full = key_of(&env, "alice", &[Right::UserInfo, Right::UserSettingsBasic]).await;
    let updated = update_user(
        &env,
        &full,
        User {
            ids: Some(ids("alice")),
            name: "Alice L.".into(),
            ..Default::default()
        },
        &["name"],
    )
    .await
    .unwrap();
    assert_eq!(updated.primary_email_address, "alice@example.com");
}

async fn picture_bytes_stay_out_of_events_and_default_list_pages(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    let mut events = env.subscribe("user.create").await;
    registry(&env)
        .create(CreateUserRequest {
            user: Some(User {
                profile_picture: Some(picture()),
                ..new_user("alice")
            }),
            invitation_token: String::new(),
        })
        .await
        .unwrap();
    let event = next_event(&mut events, "user.create", WAIT).await.unwrap();
    let in_event = user_event_data(&event)
        .user
        .unwrap()
        .profile_picture
        .unwrap();
    assert!(in_event.embedded.is_none());
    assert_eq!(in_event.sizes.len(), 1, "URLs stay");

    let admin = env.admin_token(ADMIN).await;
    let list = |paths: &[&str]| ListUsersRequest {
        field_mask: if paths.is_empty() { None } else { mask(paths) },
        ..Default::default()
    };
    // The admin who lists is listed too: pick alice.
    let alice = |page: roster_proto::v1::Users| {
        page.users
            .into_iter()
            .find(|u| u.ids.as_ref().unwrap().user_id == "alice")
            .expect("alice listed")
    };
    let page = registry(&env)
        .list(with_token(list(&[]), &admin))
        .await
        .unwrap()
        .into_inner();
    let listed = alice(page).profile_picture.unwrap();
    assert!(listed.embedded.is_none());
    assert_eq!(listed.sizes.len(), 1);
    let page = registry(&env)
        .list(with_token(list(&["profile_picture"]), &admin))
        .await
        .unwrap()
        .into_inner();
    let asked = alice(page).profile_picture.unwrap();
    assert_eq!(asked.embedded.unwrap().data.len(), 4096);
    // A single Get shows the whole picture.
    let got = get_user(&env, "alice", Some(&admin), &[]).await.unwrap();
    assert!(got.profile_picture.unwrap().embedded.is_some());
}

#[tokio::test]
async fn self_registration_is_limited_per_client_address_but_not_for_admins() {
    let env = TestEnv::start_with(
        Backend::Sqlite,
        UserRegistryConfig {
            registration_rate_limit: RateLimitConfig {
                max_attempts: 2,
                window_secs: 60,
            },
            ..Default::default()
        },
    )
    .await;
    register(&env, "user-1").await;
    register(&env, "user-2").await;
    let third = registry(&env)
        .create(CreateUserRequest {
            user: Some(new_user("user-3")),
            invitation_token: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(third.code(), Code::ResourceExhausted);
    assert!(create_as_admin(&env, new_user("user-3")).await.is_ok());
}

async fn a_search_with_exactly_the_cap_of_matches_is_exact(backend: Backend) {
    let env = TestEnv::start_with(
        backend,
        UserRegistryConfig {
            search_count_cap: 3,
            ..Default::default()
        },
    )
    .await;
    for id in ["team-a1", "team-a2", "team-a3", "other"] {
        register(&env, id).await;
    }
    let admin = env.admin_token(ADMIN).await;
    let response = search_client(&env)
        .search_users(with_token(
            SearchUsersRequest {
                query: "team".into(),
                ..Default::default()
            },
            &admin,
        ))
        .await
        .unwrap();
    assert_eq!(total_count(&response), 3);
    assert!(response.metadata().get("x-total-count-capped").is_none());
}

async fn client_timestamps_are_kept_to_the_microsecond_and_bounded(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    register(&env, "alice").await;
    let at = prost_types::Timestamp {
        seconds: 1_700_000_000,
        nanos: 123_456_789,
    };
    let updated = update_as_admin(
        &env,
        User {
            ids: Some(ids("alice")),
            primary_email_address_validated_at: Some(at),
            ..Default::default()
        },
        &["primary_email_address_validated_at"],
    )
    .await;
    let answered = updated.primary_email_address_validated_at.unwrap();
    assert_eq!(answered.nanos, 123_456_000);
    let admin = env.admin_token(ADMIN).await;
    let stored = get_user(&env, "alice", Some(&admin), &[]).await.unwrap();
    assert_eq!(stored.primary_email_address_validated_at.unwrap(), answered);

    for seconds in [-62_135_596_800, 253_402_300_800] {
        let status = update_user(
            &env,
            &admin,
            User {
                ids: Some(ids("alice")),
                primary_email_address_validated_at: Some(prost_types::Timestamp {
                    seconds,
                    nanos: 0,
                }),
                ..Default::default()
            },
            &["primary_email_address_validated_at"],
        )
        .await
        .unwrap_err();
        assert_invalid_field(&status, "user.primary_email_address_validated_at");
    }
}

async fn purging_a_user_when_no_admin_exists_is_allowed(backend: Backend) {
    // A fresh install has no admin yet; purging an ordinary user must not
    // trip the last-admin guard. An admin's key would need an admin, so
    // the purge comes from the cluster.
    let env = TestEnv::start_with(backend, Default::default()).await;
    register(&env, "alice").await;
    registry(&env)
        .purge(with_cluster_key(ids("alice")))
        .await
        .expect("purge an ordinary user");
}

on_both_backends!(
    picture_bytes_stay_out_of_events_and_default_list_pages,
    a_search_with_exactly_the_cap_of_matches_is_exact,
    client_timestamps_are_kept_to_the_microsecond_and_bounded,
    purging_a_user_when_no_admin_exists_is_allowed,
);
