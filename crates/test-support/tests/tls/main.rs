//! The gRPC server over TLS, on real connections: who gets served, who is
//! refused, and certificates rotated under a running server.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use roster_core::server::{GrpcServer, bind};
use roster_core::tls::{Tls, TlsConfig, connect};
use roster_test_support::{TestCa, TestCert, client_tls};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::sync::oneshot;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

/// A health-only gRPC server over TLS, stopped when dropped.
struct TlsServer {
    addr: SocketAddr,
    _stop: oneshot::Sender<()>,
}

async fn serve(config: TlsConfig) -> TlsServer {
    let tls = Tls::load(&config).unwrap().expect("TLS is configured");
    tls.spawn_reloader();
    let (listener, addr) = bind("127.0.0.1:0").await.unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let mut server = GrpcServer::new();
    server.with_tls(tls);
    tokio::spawn(server.serve(listener, async {
        let _ = stopped.await;
    }));
    TlsServer { addr, _stop: stop }
}

/// Server settings with `cert` under `dir`, mutual TLS when `client_ca`.
fn server_config(dir: &Path, cert: &TestCert, client_ca: Option<&Path>) -> TlsConfig {
    let (cert_file, key_file) = cert.write(dir, "server-");
    TlsConfig {
        cert_file: path(&cert_file),
        key_file: path(&key_file),
        client_ca_file: client_ca.map(path).unwrap_or_default(),
        reload_interval_secs: 1,
        ..TlsConfig::default()
    }
}

fn path(p: &Path) -> String {
    p.display().to_string()
}

fn write_ca(dir: &Path, ca: &TestCa, name: &str) -> PathBuf {
    let file = dir.join(name);
    ca.write(&file);
    file
}

/// Whether a health check over `address` succeeds.
async fn health(address: &str, tls: Option<&Arc<Tls>>) -> Result<(), String> {
    let channel =
        connect::channel(address, "test address", tls, None).map_err(|e| e.to_string())?;
    let answer = tokio::time::timeout(
        Duration::from_secs(10),
        HealthClient::new(channel).check(HealthCheckRequest {
            service: String::new(),
        }),
    )
    .await
    .map_err(|_| "timed out".to_string())?;
    answer.map(|_| ()).map_err(|status| status.to_string())
}

/// The certificate the server presents to a new connection.
async fn served_certificate(addr: SocketAddr, tls: &Tls) -> CertificateDer<'static> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let connector = tokio_rustls::TlsConnector::from(tls.client_config().unwrap());
    let name = ServerName::try_from("localhost").unwrap();
    let stream = connector.connect(name, tcp).await.expect("TLS handshake");
    stream.get_ref().1.peer_certificates().unwrap()[0].clone()
}

#[tokio::test]
async fn a_client_trusting_the_ca_is_served_and_a_plaintext_client_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("Roster test CA");
    let ca_file = write_ca(dir.path(), &ca, "ca.pem");
    let server = serve(server_config(dir.path(), &ca.issue("server"), None)).await;
    let client = client_tls(dir.path(), &ca_file, None);

    health(
        &format!("https://localhost:{}", server.addr.port()),
        Some(&client),
    )
    .await
    .expect("a client trusting the CA is served");
    health(
        &format!("https://127.0.0.1:{}", server.addr.port()),
        Some(&client),
    )
    .await
    .expect("the certificate's IP address is checked too");
    assert!(
        health(&format!("http://127.0.0.1:{}", server.addr.port()), None)
            .await
            .is_err(),
        "plaintext is not served"
    );
    let stranger = TestCa::new("Another CA");
    let stranger_file = write_ca(dir.path(), &stranger, "other-ca.pem");
    let distrustful = client_tls(dir.path(), &stranger_file, None);
    assert!(
        health(
            &format!("https://localhost:{}", server.addr.port()),
            Some(&distrustful)
        )
        .await
        .is_err(),
        "a client that does not trust the server's CA refuses it"
    );
}

#[tokio::test]
async fn with_a_client_ca_only_clients_with_a_certificate_from_it_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("Roster test CA");
    let ca_file = write_ca(dir.path(), &ca, "ca.pem");
    let server = serve(server_config(
        dir.path(),
        &ca.issue("server"),
        Some(&ca_file),
    ))
    .await;
    let address = format!("https://localhost:{}", server.addr.port());

    let member = tempfile::tempdir().unwrap();
    let with_cert = client_tls(member.path(), &ca_file, Some(&ca.issue("access")));
    health(&address, Some(&with_cert))
        .await
        .expect("a client certificate from the client CA is accepted");

    let without_cert = client_tls(dir.path(), &ca_file, None);
    assert!(
        health(&address, Some(&without_cert)).await.is_err(),
        "a client without a certificate is refused"
    );

    let intruder = tempfile::tempdir().unwrap();
    let wrong_ca = TestCa::new("Intruder CA");
    let wrong_cert = client_tls(intruder.path(), &ca_file, Some(&wrong_ca.issue("access")));
    assert!(
        health(&address, Some(&wrong_cert)).await.is_err(),
        "a client certificate from another CA is refused"
    );
}

#[tokio::test]
async fn rewritten_certificate_files_are_served_to_new_connections_without_restart() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("Roster test CA");
    let ca_file = write_ca(dir.path(), &ca, "ca.pem");
    let first = ca.issue("server-2026-01");
    let config = server_config(dir.path(), &first, None);
    let server = serve(config.clone()).await;
    let client = client_tls(dir.path(), &ca_file, None);
    assert_eq!(served_certificate(server.addr, &client).await, first.der);

    // A broken rotation (a key that is not one) is ignored.
    std::fs::write(&config.key_file, "not a key").unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(served_certificate(server.addr, &client).await, first.der);

    let second = ca.issue("server-2026-02");
    second.write_to(Path::new(&config.cert_file), Path::new(&config.key_file));
    let deadline = Instant::now() + Duration::from_secs(15);
    while served_certificate(server.addr, &client).await != second.der {
        assert!(
            Instant::now() < deadline,
            "the new certificate is not served"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    health(
        &format!("https://localhost:{}", server.addr.port()),
        Some(&client),
    )
    .await
    .expect("gRPC works with the new certificate");
}

#[tokio::test]
async fn a_rewritten_client_certificate_is_presented_from_the_next_connection_on() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("Roster test CA");
    let ca_file = write_ca(dir.path(), &ca, "ca.pem");
    let server = serve(server_config(
        dir.path(),
        &ca.issue("server"),
        Some(&ca_file),
    ))
    .await;
    let address = format!("https://localhost:{}", server.addr.port());

    // The client starts with a certificate the server does not accept.
    let client_dir = tempfile::tempdir().unwrap();
    let client = client_tls(
        client_dir.path(),
        &ca_file,
        Some(&TestCa::new("Retired CA").issue("access")),
    );
    client.spawn_reloader();
    assert!(health(&address, Some(&client)).await.is_err());

    ca.issue("access").write(client_dir.path(), "client-");
    let deadline = Instant::now() + Duration::from_secs(15);
    while health(&address, Some(&client)).await.is_err() {
        assert!(
            Instant::now() < deadline,
            "the new client certificate is not used"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[test]
fn tls_settings_that_cannot_work_are_refused_naming_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let missing = |config: TlsConfig| Tls::load(&config).err().map(|e| format!("{e:#}"));
    let half = missing(TlsConfig {
        cert_file: "cert.pem".into(),
        ..TlsConfig::default()
    })
    .unwrap();
    assert!(half.contains("tls.key_file"), "{half}");
    let absent = missing(TlsConfig {
        cert_file: path(&dir.path().join("absent.pem")),
        key_file: path(&dir.path().join("absent-key.pem")),
        ..TlsConfig::default()
    })
    .unwrap();
    assert!(absent.contains("tls.cert_file"), "{absent}");
    let ca_only = missing(TlsConfig {
        client_ca_file: "ca.pem".into(),
        ..TlsConfig::default()
    })
    .unwrap();
    assert!(ca_only.contains("tls.client_ca_file"), "{ca_only}");
    assert!(Tls::load(&TlsConfig::default()).unwrap().is_none());
    let https_without_ca = connect::channel("https://peer:1", "cluster.access_address", None, None)
        .unwrap_err()
        .to_string();
    assert!(
        https_without_ca.contains("tls.ca_file"),
        "{https_without_ca}"
    );
    assert!(https_without_ca.contains("cluster.access_address"));
}
