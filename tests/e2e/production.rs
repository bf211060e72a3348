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
            ("ROSTER__AUTH__TOKEN_HASH_KEY", "e2e-token-hash-key".into()),
            (
                "ROSTER__EVENTS__NATS_URL",
                nats.config.nats_url.expose().to_string(),
            ),
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
    // Bob's validation mail is written as a file (no SMTP server is set).
    let mail_dir = dir.path().join("data").join("mail");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::fs::read_dir(&mail_dir).map_or(true, |mut d| d.next().is_none()) {
        assert!(std::time::Instant::now() < deadline, "no mail file");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(rosterd.terminate().await.success());
    // No SQLite file anywhere; the data folder holds only the mails, as no
    // SMTP server is configured (bob's validation link among them).
    let data = dir.path().join("data");
    let entries: Vec<String> = std::fs::read_dir(&data)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(entries, ["mail"], "{entries:?}");
    let mails: Vec<_> = std::fs::read_dir(data.join("mail"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect();
    assert!(
        mails.iter().any(|m| m.contains("bob@example.com")),
        "{mails:?}"
    );
}

async fn sqlx_count(pool: &sqlx::PgPool) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE user_id = 'bob'")
        .fetch_one(pool)
        .await
        .unwrap()
}
