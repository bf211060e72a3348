use std::time::{Duration, Instant};

use roster_proto::v1::EnqueueMailRequest;
use roster_proto::v1::mailer_client::MailerClient;
use roster_test_support::{TestEnv, with_cluster_key};

#[tokio::test]
async fn a_queued_mail_is_written_as_an_eml_file_without_smtp() {
    let env = TestEnv::start().await;
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
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("To: new@example.com"), "{text}");
    assert!(text.contains("/register?invitation_token=tok234"), "{text}");
}
