//! The embedded default: no configuration, nothing else running.

use std::collections::BTreeSet;
use std::process::Command;

use futures::StreamExt;
use roster_proto::v1::user_registry_client::UserRegistryClient;
use roster_proto::v1::{
    CreateUserRequest, GetUserRequest, ListUsersRequest, User, UserIdentifiers,
};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

use crate::process::{ROSTERD, Rosterd};

fn alice() -> User {
    User {
        ids: Some(UserIdentifiers {
            user_id: "alice".into(),
            email: String::new(),
        }),
        primary_email_address: "alice@example.com".into(),
        password: "Correct-Horse-9".into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn with_no_configuration_rosterd_serves_the_whole_contract_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let rosterd = Rosterd::start(dir.path(), &["start", "all"], &[]).await;
    let channel = rosterd.channel().await;

    // Reflection lists every service of the contract.
    let mut reflection = ServerReflectionClient::new(channel.clone());
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = reflection
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let response = responses.next().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected reflection response");
    };
    let listed: BTreeSet<String> = list.service.into_iter().map(|s| s.name).collect();
    for name in roster_proto::SERVICE_NAMES.iter().chain(&[
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
    ]) {
        assert!(listed.contains(*name), "{name} is not listed: {listed:?}");
    }

    // Health says SERVING for the server and for the user registry.
    let mut health = HealthClient::new(channel.clone());
    for service in ["", "roster.v1.UserRegistry"] {
        let status = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status;
        assert_eq!(
            status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32
        );
    }

    // Create needs no credential; the rest refuses callers without one.
    let mut users = UserRegistryClient::new(channel);
    let created = users
        .create(CreateUserRequest {
            user: Some(alice()),
            invitation_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(created.ids.unwrap().user_id, "alice");
    let get = users
        .get(GetUserRequest {
            user_ids: Some(UserIdentifiers {
                user_id: "alice".into(),
                email: String::new(),
            }),
            field_mask: None,
        })
        .await
        .unwrap_err();
    assert_eq!(get.code(), tonic::Code::Unauthenticated);
    let list = users.list(ListUsersRequest::default()).await.unwrap_err();
    assert_eq!(list.code(), tonic::Code::Unauthenticated);
    // A token nobody can vouch for is refused too.
    let mut request = tonic::Request::new(ListUsersRequest::default());
    request
        .metadata_mut()
        .insert("authorization", "Bearer rak.made.up".parse().unwrap());
    assert_eq!(
        users.list(request).await.unwrap_err().code(),
        tonic::Code::Unauthenticated
    );

    // The data lives in SQLite files under ./data.
    assert!(dir.path().join("data/user-registry.db").exists());

    // Alice's validation link is written as a mail file a newcomer can
    // read, readable by the owner only.
    let mail_dir = dir.path().join("data/mail");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mail = loop {
        let found = std::fs::read_dir(&mail_dir)
            .into_iter()
            .flatten()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|x| x == "eml"));
        if let Some(path) = found {
            break path;
        }
        assert!(std::time::Instant::now() < deadline, "no mail file");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let text = std::fs::read_to_string(&mail).unwrap();
    assert!(
        text.contains("validate-email?user_id=3Dalice")
            || text.contains("validate-email?user_id=alice"),
        "{text}"
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&mail).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(rosterd.terminate().await.success());
}

#[tokio::test]
async fn users_survive_a_restart_of_the_embedded_default() {
    let dir = tempfile::tempdir().unwrap();
    let rosterd = Rosterd::start(dir.path(), &["start", "user-registry"], &[]).await;
    let mut users = UserRegistryClient::new(rosterd.channel().await);
    users
        .create(CreateUserRequest {
            user: Some(alice()),
            invitation_token: String::new(),
        })
        .await
        .unwrap();
    assert!(rosterd.terminate().await.success());

    let rosterd = Rosterd::start(dir.path(), &["start", "all"], &[]).await;
    let mut users = UserRegistryClient::new(rosterd.channel().await);
    let again = users
        .create(CreateUserRequest {
            user: Some(alice()),
            invitation_token: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(again.code(), tonic::Code::AlreadyExists);
}

#[test]
fn an_unknown_configuration_key_stops_rosterd_and_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(ROSTERD)
        .args(["start", "all"])
        .current_dir(dir.path())
        .env("ROSTER__DATABASE__URLL", "postgres://nowhere")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("urll"), "{stderr}");

    std::fs::write(dir.path().join("roster.toml"), "lisen = \"127.0.0.1:1\"\n").unwrap();
    let output = Command::new(ROSTERD)
        .args(["--config", "roster.toml", "start", "all"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("lisen"));
}

#[test]
fn rosterd_config_prints_no_secret_value() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(ROSTERD)
        .arg("config")
        .current_dir(dir.path())
        .env("ROSTER__CLUSTER__KEYS", "e2e-cluster-key")
        .env("ROSTER__AUTH__TOKEN_HASH_KEY", "e2e-hash-key")
        .env("ROSTER__BOOTSTRAP__ADMIN_PASSWORD", "e2e-admin-pass")
        .env(
            "ROSTER__DATABASE__URL",
            "postgres://r:e2e-db-pass@db/roster",
        )
        .env("ROSTER__EVENTS__NATS_TOKEN", "e2e-nats-token")
        .env("ROSTER__MAIL__SMTP_URL", "smtp://m:e2e-smtp-pass@mail:25")
        .output()
        .unwrap();
    assert!(output.status.success());
    let shown = String::from_utf8_lossy(&output.stdout);
    assert!(shown.contains("token_hash_key: [REDACTED]"), "{shown}");
    for secret in [
        "e2e-cluster-key",
        "e2e-hash-key",
        "e2e-admin-pass",
        "e2e-db-pass",
        "e2e-nats-token",
        "e2e-smtp-pass",
    ] {
        assert!(!shown.contains(secret), "{secret} shows: {shown}");
    }
}

#[test]
fn postgres_without_a_token_hash_key_stops_rosterd_and_names_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(ROSTERD)
        .args(["start", "all"])
        .current_dir(dir.path())
        .env(
            "ROSTER__DATABASE__URL",
            "postgres://roster@127.0.0.1:1/roster",
        )
        .env_remove("ROSTER__AUTH__TOKEN_HASH_KEY")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("auth.token_hash_key"), "{stderr}");
}

#[test]
fn migrate_creates_the_databases_and_exits() {
    let dir = tempfile::tempdir().unwrap();
    let status = Command::new(ROSTERD)
        .arg("migrate")
        .current_dir(dir.path())
        .env_remove("RUST_LOG")
        .status()
        .unwrap();
    assert!(status.success());
    assert!(dir.path().join("data/user-registry.db").exists());
}
