//! The production shape: PostgreSQL and NATS JetStream from configuration.

use std::time::Duration;

use roster_core::events::EventBus;
use roster_proto::v1::user_registry_client::UserRegistryClient;
use roster_proto::v1::{CreateUserRequest, User, UserIdentifiers};
use roster_test_support::{TestDb, TestNats, next_event};

use crate::process::Rosterd;

#[tokio::test]
async fn with_database_and_nats_configured_rosterd_uses_postgres_and_jetstream() {
    let db = TestDb::new().await;
    let nats = TestNats::new();
    let bus = nats.bus().await;
    let mut events = bus.subscribe("user.>").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let rosterd = Rosterd::start(
        dir.path(),
        &["start", "all"],
        &[
            ("ROSTER__DATABASE__URL", db.url.clone()),
            ("ROSTER__EVENTS__NATS_URL", nats.config.nats_url.clone()),
            ("ROSTER__EVENTS__STREAM", nats.config.stream.clone()),
            (
                "ROSTER__EVENTS__SUBJECT_PREFIX",
                nats.config.subject_prefix.clone(),
            ),
        ],
    )
    .await;
    let mut users = UserRegistryClient::new(rosterd.channel().await);
    users
        .create(CreateUserRequest {
            user: Some(User {
                ids: Some(UserIdentifiers {
                    user_id: "bob".into(),
                    email: String::new(),
                }),
                primary_email_address: "bob@example.com".into(),
                password: "Correct-Horse-9".into(),
                ..Default::default()
            }),
            invitation_token: String::new(),
        })
        .await
        .unwrap();

    let event = next_event(&mut events, "user.create", Duration::from_secs(10))
        .await
        .expect("user.create on JetStream");
    assert!(!event.unique_id.is_empty());
    assert_eq!(nats.stream_messages().await, Some(1));

    // The user is in PostgreSQL, not in a SQLite file.
    let roster_core::db::Db::Postgres(pool) = db.pool_for("user-registry").await else {
        panic!("expected PostgreSQL");
    };
    let count: i64 = sqlx_count(&pool).await;
    assert_eq!(count, 1);
    assert!(!dir.path().join("data").exists());
    assert!(rosterd.terminate().await.success());
}

async fn sqlx_count(pool: &sqlx::PgPool) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE user_id = 'bob'")
        .fetch_one(pool)
        .await
        .unwrap()
}
