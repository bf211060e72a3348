//! The users the registry keeps in memory: a change answered by this
//! process shows at once, one made by another registry on the same
//! database shows once its event arrives, one no event announces shows
//! after the TTL; `GetWithStatus`, which decides credentials, is never
//! staler than the table, and a deactivation made through another
//! registry refuses the user's API key within a second.

use std::time::{Duration, Instant};

use chrono::Utc;
use roster_core::db::Db;
use roster_proto::v1::user_lifecycle_client::UserLifecycleClient;
use roster_proto::v1::user_registry_client::UserRegistryClient;
use roster_proto::v1::{
    DeactivateUserRequest, GetUserRequest, Right, State, UpdateUserRequest, User,
};
use roster_test_support::{
    Backend, TestConfig, TestEnv, UserRegistryReplica, on_both_backends, with_cluster_key,
    with_token,
};
use roster_user_registry::UserRegistryConfig;
use tonic::Code;
use tonic::transport::Channel;

use crate::support::*;

/// Alice, approved, created by the admin.
async fn create_alice(env: &TestEnv) {
    create_as_admin(
        env,
        User {
            state: State::Approved as i32,
            ..new_user("alice")
        },
    )
    .await
    .expect("create alice");
}

/// Alice's name as `channel` answers a Get of the admin.
async fn name_at(channel: Channel, admin: &str) -> String {
    UserRegistryClient::new(channel)
        .get(with_token(
            GetUserRequest {
                user_ids: Some(ids("alice")),
                field_mask: None,
            },
            admin,
        ))
        .await
        .expect("get alice")
        .into_inner()
        .name
}

/// Renames alice through `channel`.
async fn rename(channel: Channel, admin: &str, name: &str) {
    UserRegistryClient::new(channel)
        .update(with_token(
            UpdateUserRequest {
                user: Some(User {
                    name: name.into(),
                    ..new_user("alice")
                }),
                field_mask: mask(&["name"]),
                password: String::new(),
            },
            admin,
        ))
        .await
        .expect("rename alice");
}

/// Runs `sql` with `name` bound as `$1` and the current time as `$2` on
/// the registry's database, past the service: no event announces it.
async fn behind_the_registrys_back(env: &TestEnv, sql: &str, name: &str) {
    let changed = match &env.db {
        Db::Postgres(pool) => sqlx::query(sql)
            .bind(name)
            .bind(Utc::now())
            .execute(pool)
            .await
            .map(|done| done.rows_affected()),
        Db::Sqlite(pool) => sqlx::query(sql)
            .bind(name)
            .bind(Utc::now())
            .execute(pool)
            .await
            .map(|done| done.rows_affected()),
    };
    assert_eq!(changed.expect("change alice directly"), 1);
}

async fn a_get_after_an_update_through_the_same_process_shows_the_new_value(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    create_alice(&env).await;
    let admin = env.admin_token(ADMIN).await;
    assert_eq!(name_at(env.channel(), &admin).await, "User alice");
    assert_eq!(name_at(env.channel(), &admin).await, "User alice");
    for name in ["Alice A", "Alice B", "Alice C"] {
        rename(env.channel(), &admin, name).await;
        assert_eq!(name_at(env.channel(), &admin).await, name);
    }
    delete_user(&env, "alice", &admin).await.expect("delete");
    let deleted = get_as_admin(&env, "alice").await;
    assert!(deleted.deleted_at.is_some(), "the deletion shows at once");
}

async fn a_change_made_by_another_registry_shows_once_its_event_arrives(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    create_alice(&env).await;
    let admin = env.admin_token(ADMIN).await;
    let replica: UserRegistryReplica = env
        .user_registry_replica(UserRegistryConfig::default())
        .await;
    // Both registries hold alice now.
    assert_eq!(name_at(env.channel(), &admin).await, "User alice");
    assert_eq!(name_at(replica.channel(), &admin).await, "User alice");
    let mut updates = env.subscribe(roster_core::events::names::USER_UPDATE).await;

    rename(replica.channel(), &admin, "Renamed elsewhere").await;
    assert_eq!(
        name_at(replica.channel(), &admin).await,
        "Renamed elsewhere",
        "the registry that made the change shows it at once"
    );
    next_event_where(&mut updates, "user.update", Duration::from_secs(5), |_| {
        true
    })
    .await
    .expect("the change's event");
    let heard = Instant::now();
    // The default TTL is ten seconds: only the event can make the first
    // registry forget alice this soon.
    eventually(
        "the first registry shows the change",
        Duration::from_millis(500),
        || async { name_at(env.channel(), &admin).await == "Renamed elsewhere" },
    )
    .await;
    assert!(heard.elapsed() < Duration::from_millis(500));

    rename(env.channel(), &admin, "Renamed back").await;
    eventually(
        "the replica shows the change back",
        Duration::from_secs(1),
        || async { name_at(replica.channel(), &admin).await == "Renamed back" },
    )
    .await;
}

async fn a_change_no_event_announces_shows_in_get_after_the_ttl(backend: Backend) {
    let ttl = Duration::from_millis(700);
    let config = UserRegistryConfig {
        user_cache_ttl_ms: ttl.as_millis() as u64,
        ..UserRegistryConfig::default()
    };
    let env = TestEnv::start_with(backend, config).await;
    create_alice(&env).await;
    let admin = env.admin_token(ADMIN).await;
    assert_eq!(name_at(env.channel(), &admin).await, "User alice");
    let changed = Instant::now();
    behind_the_registrys_back(
        &env,
        "UPDATE users SET name = $1, updated_at = $2 WHERE user_id = 'alice'",
        "Renamed in SQL",
    )
    .await;
    assert_eq!(
        name_at(env.channel(), &admin).await,
        "User alice",
        "Get answers from memory"
    );
    eventually("Get shows the change", ttl * 2, || async {
        name_at(env.channel(), &admin).await == "Renamed in SQL"
    })
    .await;
    assert!(changed.elapsed() >= ttl.mul_f32(0.9), "not before the TTL");
}

async fn get_with_status_answers_from_the_table_even_without_an_event(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    create_alice(&env).await;
    let admin = env.admin_token(ADMIN).await;
    let status = |env: &TestEnv| {
        let admin = admin.clone();
        let channel = env.channel();
        async move {
            UserLifecycleClient::new(channel)
                .get_with_status(with_token(
                    GetUserRequest {
                        user_ids: Some(ids("alice")),
                        field_mask: None,
                    },
                    &admin,
                ))
                .await
                .expect("get alice with status")
                .into_inner()
        }
    };
    assert_eq!(name_at(env.channel(), &admin).await, "User alice");
    assert!(!status(&env).await.status.unwrap().deactivated);
    behind_the_registrys_back(
        &env,
        "UPDATE users SET deactivation_reason = $1, deactivated_at = $2, updated_at = $2 \
         WHERE user_id = 'alice'",
        "deactivated in SQL",
    )
    .await;
    let answer = status(&env).await;
    assert!(
        answer.status.unwrap().deactivated,
        "straight from the table"
    );
}

async fn a_get_by_another_service_answers_from_the_table_even_without_an_event(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    create_alice(&env).await;
    let as_cluster = || async {
        UserRegistryClient::new(env.channel())
            .get(with_cluster_key(GetUserRequest {
                user_ids: Some(ids("alice")),
                field_mask: None,
            }))
            .await
            .expect("get alice as the cluster")
            .into_inner()
    };
    let admin = env.admin_token(ADMIN).await;
    assert_eq!(name_at(env.channel(), &admin).await, "User alice");
    assert_eq!(as_cluster().await.state, State::Approved as i32);
    behind_the_registrys_back(
        &env,
        "UPDATE users SET state_description = $1, state = 4, updated_at = $2 \
         WHERE user_id = 'alice'",
        "suspended in SQL",
    )
    .await;
    assert_eq!(
        as_cluster().await.state,
        State::Suspended as i32,
        "a service confirming an event reads the table"
    );
}

on_both_backends!(
    a_get_by_another_service_answers_from_the_table_even_without_an_event,
    a_get_after_an_update_through_the_same_process_shows_the_new_value,
    a_change_made_by_another_registry_shows_once_its_event_arrives,
    a_change_no_event_announces_shows_in_get_after_the_ttl,
    get_with_status_answers_from_the_table_even_without_an_event,
    a_deactivation_through_another_registry_refuses_the_api_key_within_a_second,
);

async fn a_deactivation_through_another_registry_refuses_the_api_key_within_a_second(
    backend: Backend,
) {
    let mut config = TestConfig::default();
    // Only events can make the first process forget within a second.
    config.auth.cache_ttl_ms = 60_000;
    let env = TestEnv::start_configured(backend, config).await;
    create_alice(&env).await;
    let admin = env.admin_token(ADMIN).await;
    let key = key_of(&env, "alice", &[Right::UserInfo]).await;
    let replica = env
        .user_registry_replica(UserRegistryConfig::default())
        .await;
    // The first process resolved alice's key and holds alice.
    assert_eq!(name_at(env.channel(), &key).await, "User alice");
    assert_eq!(name_at(env.channel(), &key).await, "User alice");

    UserLifecycleClient::new(replica.channel())
        .deactivate_user(with_token(
            DeactivateUserRequest {
                user_ids: Some(ids("alice")),
                reason: "left".into(),
            },
            &admin,
        ))
        .await
        .expect("the admin deactivates alice through the replica");
    let since = Instant::now();
    loop {
        let answer = get_user(&env, "alice", Some(&key), &[]).await;
        match answer {
            Err(status) if status.code() == Code::Unauthenticated => break,
            answer => assert!(
                since.elapsed() < Duration::from_secs(1),
                "a second after, the key still works: {answer:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
