use std::time::{Duration, Instant};

use roster_invitations::MailConfig;
use roster_proto::v1::EnqueueMailRequest;
use roster_proto::v1::mailer_client::MailerClient;
use roster_test_support::{Backend, TestConfig, TestEnv, with_cluster_key};

/// Queues an invitation mail and waits for its `.eml` file.
async fn write_one(env: &TestEnv) -> std::path::PathBuf {
    let queued = MailerClient::new(env.channel())
        .enqueue(with_cluster_key(EnqueueMailRequest {
            template: "invitation".into(),
            recipient: "new@example.com".into(),
            recipient_name: String::new(),
            data: [("secret_token".to_string(), "tok234".to_string())].into(),
            idempotency_key: String::new(),
        }))
        .await
        .expect("queued")
        .into_inner();
    let path = env.mail_dir.join(format!("{}.eml", queued.mail_id));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !path.exists() {
        assert!(Instant::now() < deadline, "no mail written");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    path
}

#[tokio::test]
async fn a_queued_mail_is_written_as_an_eml_file_without_smtp() {
    let env = TestEnv::start().await;
    let path = write_one(&env).await;
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("To: new@example.com"), "{text}");
    assert!(text.contains("/register?invitation_token=tok234"), "{text}");
}

#[cfg(unix)]
#[tokio::test]
async fn mail_files_and_their_folder_are_the_owners_only() {
    use std::os::unix::fs::PermissionsExt as _;
    let mode =
        |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    let env = TestEnv::start_with(Backend::Sqlite, Default::default()).await;
    let path = write_one(&env).await;
    assert_eq!(mode(&path), 0o600, "the mail holds a token");
    assert_eq!(mode(&env.mail_dir), 0o700, "the folder Roster made");
}

#[tokio::test]
async fn mail_files_older_than_the_retention_are_removed() {
    let env = TestEnv::start_configured(
        Backend::Sqlite,
        TestConfig {
            mail: MailConfig {
                file_retention_secs: 1,
                ..MailConfig::default()
            },
            ..TestConfig::default()
        },
    )
    .await;
    let path = write_one(&env).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while path.exists() {
        assert!(
            Instant::now() < deadline,
            "a mail file outlived its retention of a second by far"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
