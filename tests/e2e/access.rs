//! Credentials across processes: the bootstrap admin, and revocation
//! reaching every service.

use std::time::{Duration, Instant};

use roster_proto::v1::user_access_client::UserAccessClient;
use roster_proto::v1::user_registry_client::UserRegistryClient;
use roster_proto::v1::{
    CreateUserApiKeyRequest, CreateUserRequest, DeleteUserApiKeyRequest, GetUserRequest,
    ListUserApiKeysRequest, ListUsersRequest, Right, State, User,
};
use roster_test_support::{TestDb, TestNats, with_token};
use tonic::Code;

use crate::ids;
use crate::process::{Rosterd, free_port, read_key_file};

/// A Get of `alice` with a well-formed key nobody made.
fn get_with_some_key() -> tonic::Request<GetUserRequest> {
    with_token(
        GetUserRequest {
            user_ids: Some(ids("alice")),
            field_mask: None,
        },
        "rak.aaaaaaaaaaaaaaaaaaaaaaaa.aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    )
}

#[tokio::test]
async fn the_bootstrap_makes_the_first_admin_and_its_key_once() {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("secrets/admin.key");
    let env = [
        ("ROSTER__BOOTSTRAP__ADMIN_USER_ID", "ops-admin".to_string()),
        (
            "ROSTER__BOOTSTRAP__ADMIN_PASSWORD",
            "Bootstrap-Passw0rd".to_string(),
        ),
        (
            "ROSTER__BOOTSTRAP__ADMIN_API_KEY_FILE",
            key_file.display().to_string(),
        ),
    ];
    let rosterd = Rosterd::start(dir.path(), &["start", "all"], &env).await;
    let key = read_key_file(&key_file).await;
    assert!(key.starts_with("rak."), "an API key: {}", &key[..4]);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "only the owner reads the key");
    }

    // The key is an approved admin's: it lists every user.
    let mut users = UserRegistryClient::new(rosterd.channel().await);
    let page = users
        .list(with_token(ListUsersRequest::default(), &key))
        .await
        .expect("the admin lists users")
        .into_inner();
    let admin = page
        .users
        .iter()
        .find(|u| u.ids.as_ref().unwrap().user_id == "ops-admin")
        .expect("the admin exists");
    assert!(admin.admin);
    assert_eq!(admin.state, State::Approved as i32);
    assert!(rosterd.terminate().await.success());

    // A restart leaves the admin and the file as they are.
    let rosterd = Rosterd::start(dir.path(), &["start", "all"], &env).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(std::fs::read_to_string(&key_file).unwrap().trim(), key);
    let keys = UserAccessClient::new(rosterd.channel().await)
        .list_api_keys(with_token(
            ListUserApiKeysRequest {
                user_ids: Some(ids("ops-admin")),
                ..Default::default()
            },
            &key,
        ))
        .await
        .expect("the old key still works")
        .into_inner();
    assert_eq!(keys.api_keys.len(), 1, "no second key was made");
    assert!(rosterd.terminate().await.success());

    // A lost key file does not mint another full-rights key at restart.
    std::fs::remove_file(&key_file).unwrap();
    let rosterd = Rosterd::start(dir.path(), &["start", "all"], &env).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!key_file.exists(), "a key file was written again");
    let keys = UserAccessClient::new(rosterd.channel().await)
        .list_api_keys(with_token(
            ListUserApiKeysRequest {
                user_ids: Some(ids("ops-admin")),
                ..Default::default()
            },
            &key,
        ))
        .await
        .expect("the old key still works")
        .into_inner();
    assert_eq!(keys.api_keys.len(), 1, "no second key was made");
    assert!(rosterd.terminate().await.success());
}

#[tokio::test]
async fn a_reserved_bootstrap_admin_id_stops_rosterd_and_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(crate::process::ROSTERD)
        .args(["start", "all"])
        .current_dir(dir.path())
        .env("ROSTER__LISTEN", format!("127.0.0.1:{}", free_port()))
        .env("ROSTER__BOOTSTRAP__ADMIN_USER_ID", "admin")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("bootstrap.admin_user_id"),
        "the error names the key: {stderr}"
    );
}

const CLUSTER_KEYS: &str = "e2e-cluster-key-of-at-least-32-bytes";

/// A user registry, an access service and a sessions service as three processes on PostgreSQL
/// and JetStream, each knowing the other's address.
pub struct Split {
    pub registry: Rosterd,
    pub access: Rosterd,
    pub sessions: Rosterd,
    pub admin_key: String,
    _dir: tempfile::TempDir,
    _db: TestDb,
    _nats: TestNats,
}

pub async fn split() -> Split {
    split_with(&[]).await
}

/// [`split`], with `extra` in the environment of the access and sessions
/// processes too.
pub async fn split_with(extra: &[(&'static str, String)]) -> Split {
    let db = TestDb::new().await;
    let nats = TestNats::new();
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("admin.key");
    let (registry_port, access_port, sessions_port) = (free_port(), free_port(), free_port());
    let common = vec![
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
        (
            "ROSTER__CLUSTER__ACCESS_ADDRESS",
            format!("http://127.0.0.1:{access_port}"),
        ),
        (
            "ROSTER__CLUSTER__USER_REGISTRY_ADDRESS",
            format!("http://127.0.0.1:{registry_port}"),
        ),
        (
            "ROSTER__CLUSTER__SESSIONS_ADDRESS",
            format!("http://127.0.0.1:{sessions_port}"),
        ),
        ("ROSTER__CLUSTER__KEYS", CLUSTER_KEYS.into()),
    ];
    // The registry process keeps resolved credentials for a minute: only
    // the events that announce a change can make it forget one in time.
    let mut registry_env = common.clone();
    registry_env.push(("ROSTER__AUTH__CACHE_TTL_MS", "60000".into()));
    let registry = Rosterd::start_on(
        registry_port,
        dir.path(),
        &["start", "user-registry"],
        &registry_env,
    )
    .await;
    let mut access_env = common.clone();
    access_env.extend_from_slice(extra);
    access_env.push(("ROSTER__BOOTSTRAP__ADMIN_USER_ID", "ops-admin".into()));
    access_env.push((
        "ROSTER__BOOTSTRAP__ADMIN_API_KEY_FILE",
        key_file.display().to_string(),
    ));
    let access =
        Rosterd::start_on(access_port, dir.path(), &["start", "access"], &access_env).await;
    let mut sessions_env = common.clone();
    sessions_env.extend_from_slice(extra);
    let sessions = Rosterd::start_on(
        sessions_port,
        dir.path(),
        &["start", "sessions"],
        &sessions_env,
    )
    .await;
    let admin_key = read_key_file(&key_file).await;
    Split {
        registry,
        access,
        sessions,
        admin_key,
        _dir: dir,
        _db: db,
        _nats: nats,
    }
}

#[tokio::test]
async fn a_deleted_key_is_refused_at_once_where_it_was_deleted_and_within_a_second_elsewhere() {
    let split = split().await;
    let mut users = UserRegistryClient::new(split.registry.channel().await);
    let mut access = UserAccessClient::new(split.access.channel().await);
    users
        .create(with_token(
            CreateUserRequest {
                user: Some(User {
                    ids: Some(ids("alice")),
                    primary_email_address: "alice@example.com".into(),
                    password: "Correct-Horse-9".into(),
                    ..Default::default()
                }),
                invitation_token: String::new(),
            },
            &split.admin_key,
        ))
        .await
        .expect("the admin creates alice in the registry process");
    let key = access
        .create_api_key(with_token(
            CreateUserApiKeyRequest {
                user_ids: Some(ids("alice")),
                name: "laptop".into(),
                rights: vec![Right::UserAll as i32],
                expires_at: None,
            },
            &split.admin_key,
        ))
        .await
        .expect("the admin makes alice a key in the access process")
        .into_inner();
    let get_alice = || {
        with_token(
            GetUserRequest {
                user_ids: Some(ids("alice")),
                field_mask: None,
            },
            &key.key,
        )
    };
    let list_keys = || {
        with_token(
            ListUserApiKeysRequest {
                user_ids: Some(ids("alice")),
                ..Default::default()
            },
            &key.key,
        )
    };
    // Both processes now hold the key's answer in their caches.
    users
        .get(get_alice())
        .await
        .expect("the key works in the registry");
    access
        .list_api_keys(list_keys())
        .await
        .expect("and in access");

    access
        .delete_api_key(with_token(
            DeleteUserApiKeyRequest {
                user_ids: Some(ids("alice")),
                key_id: key.id.clone(),
            },
            &split.admin_key,
        ))
        .await
        .expect("the admin deletes the key");
    let deleted = Instant::now();
    let refused = access.list_api_keys(list_keys()).await.unwrap_err();
    assert_eq!(
        refused.code(),
        Code::Unauthenticated,
        "refused at once where deleted"
    );

    loop {
        match users.get(get_alice()).await {
            Err(status) => {
                assert_eq!(status.code(), Code::Unauthenticated);
                break;
            }
            Ok(_) => {
                assert!(
                    deleted.elapsed() < Duration::from_secs(1),
                    "the registry process still accepted the deleted key after a second"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

#[tokio::test]
async fn a_user_registry_alone_refuses_credentials_while_the_access_service_is_away() {
    let dir = tempfile::tempdir().unwrap();
    let rosterd = Rosterd::start(
        dir.path(),
        &["start", "user-registry"],
        &[(
            "ROSTER__CLUSTER__ACCESS_ADDRESS",
            format!("http://127.0.0.1:{}", free_port()),
        )],
    )
    .await;
    let status = UserRegistryClient::new(rosterd.channel().await)
        .get(get_with_some_key())
        .await
        .unwrap_err();
    assert_eq!(
        status.code(),
        Code::Unavailable,
        "an unverifiable credential is not accepted: {status:?}"
    );
    assert!(rosterd.terminate().await.success());
}

#[tokio::test]
async fn processes_with_different_cluster_keys_answer_unavailable_not_unauthenticated() {
    let dir = tempfile::tempdir().unwrap();
    let access_port = free_port();
    let _access = Rosterd::start_on(
        access_port,
        dir.path(),
        &["start", "access"],
        &[(
            "ROSTER__CLUSTER__KEYS",
            "one-cluster-key-of-at-least-32-bytes".into(),
        )],
    )
    .await;
    let registry_dir = tempfile::tempdir().unwrap();
    let registry = Rosterd::start(
        registry_dir.path(),
        &["start", "user-registry"],
        &[
            (
                "ROSTER__CLUSTER__KEYS",
                "another-cluster-key-at-least-32-bytes".into(),
            ),
            (
                "ROSTER__CLUSTER__ACCESS_ADDRESS",
                format!("http://127.0.0.1:{access_port}"),
            ),
        ],
    )
    .await;
    // The access service refuses the registry's key: the caller is not to
    // blame, and must not be told its credential is bad.
    let status = UserRegistryClient::new(registry.channel().await)
        .get(get_with_some_key())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
}
