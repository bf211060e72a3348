//! Deployment hardening, with `rosterd` as processes: the five services
//! over mutual TLS, the internal listener, the cluster key's minimum
//! length, and the warning about plaintext off loopback.

use std::path::Path;
use std::process::Command;

use roster_core::auth::CLUSTER_KEY_HEADER;
use roster_proto::v1::authentication_client::AuthenticationClient;
use roster_proto::v1::entity_access_client::EntityAccessClient;
use roster_proto::v1::user_registry_client::UserRegistryClient;
use roster_proto::v1::{AuthInfoRequest, CreateUserRequest, GetUserRequest, LoginRequest, User};
use roster_test_support::{TestCa, TestDb, TestNats, TestSmtp, client_tls, with_token};
use tonic::Code;
use tonic::transport::Channel;

use crate::ids;
use crate::process::{ROSTERD, Rosterd, SERVICES, deployment_env, free_port, split_deployment};

const PASSWORD: &str = "Violet-Horse-1234";
const KEY: &str = "e2e-cluster-key-of-at-least-32-bytes";

fn path(p: &Path) -> String {
    p.display().to_string()
}

/// `message` with the deployment's cluster key.
fn with_key<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert(CLUSTER_KEY_HEADER, KEY.parse().unwrap());
    request
}

async fn create_user(channel: Channel, id: &str) -> Result<(), tonic::Status> {
    UserRegistryClient::new(channel)
        .create(CreateUserRequest {
            user: Some(User {
                ids: Some(ids(id)),
                primary_email_address: format!("{id}@example.com"),
                password: PASSWORD.into(),
                ..Default::default()
            }),
            invitation_token: String::new(),
        })
        .await
        .map(|_| ())
}

async fn login(channel: Channel, id: &str) -> Result<String, tonic::Status> {
    AuthenticationClient::new(channel)
        .login(LoginRequest {
            user_ids: Some(ids(id)),
            password: PASSWORD.into(),
        })
        .await
        .map(|r| r.into_inner().token)
}

async fn get_user(channel: Channel, token: &str, id: &str) -> Result<User, tonic::Status> {
    UserRegistryClient::new(channel)
        .get(with_token(
            GetUserRequest {
                user_ids: Some(ids(id)),
                field_mask: None,
            },
            token,
        ))
        .await
        .map(|r| r.into_inner())
}

#[tokio::test]
async fn five_processes_over_mutual_tls_serve_a_user_who_registers_logs_in_and_uses_the_session() {
    let db = TestDb::new().await;
    let nats = TestNats::new();
    let smtp = TestSmtp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("Roster deployment CA");
    let ca_file = dir.path().join("ca.pem");
    ca.write(&ca_file);
    let services = SERVICES;
    let (ports, peers) = split_deployment("https");
    let address = |i: usize| format!("https://127.0.0.1:{}", ports[i]);
    let mut env = deployment_env(&db, &nats, &smtp);
    env.extend(peers);
    env.push(("ROSTER__TLS__CLIENT_CA_FILE", path(&ca_file)));
    let operator_dir = tempfile::tempdir().unwrap();
    let operator = client_tls(operator_dir.path(), &ca_file, Some(&ca.issue("operator")));
    let mut processes = Vec::new();
    for (i, service) in services.iter().enumerate() {
        // Each service has a certificate of its own.
        let (cert_file, key_file) = ca.issue(service).write(dir.path(), &format!("{service}-"));
        let mut own = env.clone();
        own.push(("ROSTER__TLS__CERT_FILE", path(&cert_file)));
        own.push(("ROSTER__TLS__KEY_FILE", path(&key_file)));
        processes.push(
            Rosterd::start_tls(
                ports[i],
                dir.path(),
                &["start", service],
                &own,
                operator.clone(),
            )
            .await,
        );
    }
    let (registry, sessions, access) = (
        processes[0].channel().await,
        processes[2].channel().await,
        processes[1].channel().await,
    );

    // Registration hands a validation mail to the invitations process;
    // login asks the registry for the password check; the session is
    // resolved by the access process, which asks the sessions process.
    create_user(registry.clone(), "erin")
        .await
        .expect("register");
    let session = login(sessions, "erin").await.expect("log in");
    let erin = get_user(registry.clone(), &session, "erin")
        .await
        .expect("the session works at the registry");
    assert_eq!(erin.primary_email_address, "erin@example.com");
    smtp.mail_to_with_subject(
        "erin@example.com",
        "Confirm your email",
        std::time::Duration::from_secs(30),
    )
    .await;
    let refused = EntityAccessClient::new(access)
        .auth_info(with_key(AuthInfoRequest {
            token: "rak.nothing.here".into(),
        }))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);

    // Nobody gets in without a certificate from the deployment's CA, nor
    // in plaintext.
    let plaintext = Channel::from_shared(format!("http://{}", processes[0].addr))
        .unwrap()
        .connect_lazy();
    assert!(create_user(plaintext, "mallory").await.is_err());
    let stranger_dir = tempfile::tempdir().unwrap();
    let stranger = client_tls(
        stranger_dir.path(),
        &ca_file,
        Some(&TestCa::new("Another CA").issue("mallory")),
    );
    let stranger_channel =
        roster_core::tls::connect::channel(&address(0), "test address", Some(&stranger), None)
            .unwrap();
    assert!(create_user(stranger_channel, "mallory").await.is_err());

    for process in processes {
        assert!(process.terminate().await.success());
    }
}

#[tokio::test]
async fn with_an_internal_listener_internal_services_are_served_there_only() {
    let dir = tempfile::tempdir().unwrap();
    let internal_port = free_port();
    let internal = format!("http://127.0.0.1:{internal_port}");
    let rosterd = Rosterd::start(
        dir.path(),
        &["start", "all"],
        &[
            ("ROSTER__CLUSTER__KEYS", KEY.into()),
            (
                "ROSTER__INTERNAL_LISTEN",
                format!("127.0.0.1:{internal_port}"),
            ),
        ],
    )
    .await;
    let public = rosterd.channel().await;
    let internal = Channel::from_shared(internal)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let auth_info = |channel: Channel| async move {
        EntityAccessClient::new(channel)
            .auth_info(with_key(AuthInfoRequest {
                token: "rak.nothing.here".into(),
            }))
            .await
            .unwrap_err()
            .code()
    };
    assert_eq!(
        auth_info(public.clone()).await,
        Code::Unimplemented,
        "the public port does not serve EntityAccess"
    );
    assert_eq!(
        auth_info(internal.clone()).await,
        Code::Unauthenticated,
        "the internal port serves it (and refuses the unknown token)"
    );

    // Health agrees with what each port serves.
    let health = |channel: Channel| async move {
        tonic_health::pb::health_client::HealthClient::new(channel)
            .check(tonic_health::pb::HealthCheckRequest {
                service: "roster.v1.EntityAccess".into(),
            })
            .await
            .map(|r| r.into_inner().status)
    };
    assert_eq!(
        health(public.clone()).await.unwrap_err().code(),
        Code::NotFound
    );
    assert_eq!(
        health(internal.clone()).await.unwrap(),
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );

    // The public services work on the public port, credentials resolved
    // through the internal one.
    create_user(public.clone(), "frank")
        .await
        .expect("register");
    let session = login(public.clone(), "frank").await.expect("log in");
    get_user(public.clone(), &session, "frank")
        .await
        .expect("the session works");
    // The cluster key is refused on the public port, even for public
    // services, and accepted on the internal one.
    let with_cluster_key = |channel: Channel| async move {
        UserRegistryClient::new(channel)
            .get(with_key(GetUserRequest {
                user_ids: Some(ids("frank")),
                field_mask: None,
            }))
            .await
    };
    assert_eq!(
        with_cluster_key(public).await.unwrap_err().code(),
        Code::PermissionDenied
    );
    with_cluster_key(internal)
        .await
        .expect("the cluster key works on the internal port");
    assert!(rosterd.terminate().await.success());
}

#[test]
fn a_cluster_key_shorter_than_32_bytes_stops_rosterd_naming_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(ROSTERD)
        .args(["start", "all"])
        .current_dir(dir.path())
        .env_remove("RUST_LOG")
        .env("ROSTER__LISTEN", format!("127.0.0.1:{}", free_port()))
        .env("ROSTER__CLUSTER__KEYS", format!("{KEY},too-short-a-key"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cluster.keys"), "{stderr}");
    assert!(stderr.contains("key 2 of 2"), "{stderr}");
    assert!(!stderr.contains("too-short-a-key"), "the key is not shown");
}

#[tokio::test]
async fn plaintext_on_a_non_loopback_address_is_warned_about_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("rosterd.log");
    let port = free_port();
    let rosterd = Rosterd::start_logging(
        port,
        dir.path(),
        &["start", "all"],
        &[("ROSTER__LISTEN", format!("0.0.0.0:{port}"))],
        Some(&log),
    )
    .await;
    assert!(rosterd.terminate().await.success());
    let text = std::fs::read_to_string(&log).unwrap();
    let warning = text
        .lines()
        .find(|line| line.contains("INSECURE"))
        .unwrap_or_else(|| panic!("no warning in {text}"));
    assert!(warning.contains("WARN"), "{warning}");
    assert!(warning.contains("tls.cert_file"), "{warning}");

    // On loopback (the embedded default) there is nothing to warn about.
    let quiet_dir = tempfile::tempdir().unwrap();
    let quiet_log = quiet_dir.path().join("rosterd.log");
    let quiet = Rosterd::start_logging(
        free_port(),
        quiet_dir.path(),
        &["start", "all"],
        &[],
        Some(&quiet_log),
    )
    .await;
    assert!(quiet.terminate().await.success());
    let text = std::fs::read_to_string(&quiet_log).unwrap();
    assert!(!text.contains("INSECURE"), "{text}");
}
