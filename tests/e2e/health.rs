//! `grpc.health.v1` as Kubernetes probes it: the empty name says the
//! process works (liveness); each service's own names say whether that
//! service can serve now (readiness), and all turn NOT_SERVING before a
//! stopping process closes its port.

use std::time::{Duration, Instant};

use roster_core::db::Db;
use roster_test_support::TestEnv;
use sqlx::{Connection, PgConnection};
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::process::{ROSTERD, Rosterd};

/// The names the Helm chart's readiness probes ask for, one per service.
const PROBED: [&str; 5] = [
    "roster.v1.UserRegistry",
    "roster.v1.UserAccess",
    "roster.v1.Authentication",
    "roster.v1.UserInvitationRegistry",
    "roster.v1.NotificationService",
];

async fn status(channel: &Channel, service: &str) -> ServingStatus {
    let response = HealthClient::new(channel.clone())
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .unwrap_or_else(|status| panic!("health of {service:?}: {status}"));
    ServingStatus::try_from(response.into_inner().status).expect("a known status")
}

/// Waits (at most 20 s: a few readiness intervals) until `service`
/// reports `wanted`.
async fn wait_for(channel: &Channel, service: &str, wanted: ServingStatus) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while status(channel, service).await != wanted {
        assert!(
            Instant::now() < deadline,
            "{service} never became {wanted:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs `sql` on the PostgreSQL server as the test administrator.
async fn as_admin(sql: &str) {
    let url = roster_test_support::db::admin_url();
    let mut admin = PgConnection::connect(&url).await.expect("connect as admin");
    sqlx::query(sql).execute(&mut admin).await.expect(sql);
    let _ = admin.close().await;
}

#[tokio::test]
async fn every_service_of_a_healthy_process_reports_serving_under_its_own_names() {
    let env = TestEnv::start().await;
    let channel = env.channel();
    assert_eq!(status(&channel, "").await, ServingStatus::Serving);
    for service in PROBED {
        assert_eq!(
            status(&channel, service).await,
            ServingStatus::Serving,
            "{service}"
        );
    }
}

#[tokio::test]
async fn a_service_whose_database_is_unreachable_is_not_ready_until_it_is_back() {
    let env = TestEnv::start().await;
    let channel = env.channel();
    let Db::Postgres(pool) = &env.db else {
        panic!("TestEnv::start runs on PostgreSQL")
    };
    let database: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(pool)
        .await
        .unwrap();

    // New connections are refused and the open ones are cut: the database
    // is down as far as the services can tell.
    as_admin(&format!(
        r#"ALTER DATABASE "{database}" ALLOW_CONNECTIONS false"#
    ))
    .await;
    as_admin(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = '{database}' AND pid <> pg_backend_pid()"
    ))
    .await;
    for service in PROBED {
        wait_for(&channel, service, ServingStatus::NotServing).await;
    }
    // The process itself still works: liveness must not restart it.
    assert_eq!(status(&channel, "").await, ServingStatus::Serving);

    as_admin(&format!(
        r#"ALTER DATABASE "{database}" ALLOW_CONNECTIONS true"#
    ))
    .await;
    for service in PROBED {
        wait_for(&channel, service, ServingStatus::Serving).await;
    }
}

#[tokio::test]
async fn a_stopping_rosterd_reports_not_serving_before_its_port_closes() {
    let dir = tempfile::tempdir().unwrap();
    let rosterd = Rosterd::start(
        dir.path(),
        &["start", "all"],
        &[("ROSTER__SERVER__DRAIN_DELAY_MS", "3000".into())],
    )
    .await;
    let channel = rosterd.channel().await;
    assert_eq!(
        status(&channel, "roster.v1.UserRegistry").await,
        ServingStatus::Serving
    );

    rosterd.send_sigterm();
    for service in std::iter::once("").chain(PROBED) {
        wait_for(&channel, service, ServingStatus::NotServing).await;
    }
    // Still accepting connections: Kubernetes has time to stop routing.
    assert!(std::net::TcpStream::connect(&rosterd.addr).is_ok());

    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(&rosterd.addr).is_ok() {
        assert!(Instant::now() < deadline, "the port never closed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_service_without_its_migrations_is_not_ready_until_rosterd_migrate_ran() {
    let db = roster_test_support::TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("ROSTER__DATABASE__URL", db.url.clone()),
        ("ROSTER__DATABASE__MIGRATE_ON_START", "false".to_string()),
        (
            "ROSTER__AUTH__TOKEN_HASH_KEY",
            "e2e-token-hash-key".to_string(),
        ),
        ("ROSTER__SERVER__READINESS_INTERVAL_MS", "200".to_string()),
    ];
    let rosterd = Rosterd::start(dir.path(), &["start", "user-registry"], &env).await;
    let channel = rosterd.channel().await;
    assert_eq!(status(&channel, "").await, ServingStatus::Serving);
    assert_eq!(
        status(&channel, "roster.v1.UserRegistry").await,
        ServingStatus::NotServing
    );

    let migrated = std::process::Command::new(ROSTERD)
        .arg("migrate")
        .current_dir(dir.path())
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .expect("run rosterd migrate");
    assert!(migrated.status.success(), "{migrated:?}");
    wait_for(&channel, "roster.v1.UserRegistry", ServingStatus::Serving).await;
}
