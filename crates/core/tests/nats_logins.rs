//! Logging in to NATS with the credentials of `events.*`: each test starts
//! its own `nats-server` (with JetStream) that demands one kind of login or
//! TLS, and checks that Roster's bus gets in with the right credentials, is
//! turned away without them, and never repeats a secret in its error. TLS
//! certificates are made for each test with the `openssl` command.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use roster_core::events::{EventBus, EventsConfig, NatsBus, new_event};

/// A `nats-server` of this test's own, stopped when dropped.
struct Server {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

fn nats_server_binary() -> String {
    std::env::var("ROSTER_TEST_NATS_SERVER").unwrap_or_else(|_| "/usr/sbin/nats-server".into())
}

impl Server {
    /// Starts a server on a free loopback port with `args` (and, when
    /// given, a configuration file holding `config`).
    fn start(args: &[&str], config: Option<&str>) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let store = dir.path().join("js");
        let mut command = Command::new(nats_server_binary());
        command
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(&store)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(config) = config {
            let file = dir.path().join("nats.conf");
            std::fs::write(&file, config).unwrap();
            command.arg("-c").arg(&file);
        }
        let child = command.spawn().expect("cannot start nats-server");
        let server = Server {
            child,
            port,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    fn config(&self) -> EventsConfig {
        EventsConfig {
            nats_url: format!("nats://127.0.0.1:{}", self.port).into(),
            stream: "ROSTER_LOGIN_TEST".into(),
            subject_prefix: "roster_login_test".into(),
            ..EventsConfig::default()
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Connects with `config` and carries one event through the stream.
async fn round_trip(config: &EventsConfig) -> anyhow::Result<()> {
    let bus = NatsBus::connect(config).await?;
    let mut events = bus.subscribe("login.*").await?;
    let event = new_event("login.check", vec![], None);
    bus.publish(&event).await?;
    let got = tokio::time::timeout(Duration::from_secs(5), events.next()).await?;
    anyhow::ensure!(got.as_ref() == Some(&event), "the event did not come back");
    Ok(())
}

async fn refused(config: &EventsConfig, secret: &str) {
    let connect = tokio::time::timeout(Duration::from_secs(10), NatsBus::connect(config));
    let error = connect
        .await
        .expect("a refused login must fail, not hang")
        .expect_err("the server must refuse this login");
    let shown = format!("{error:#} {error:?}");
    assert!(
        secret.is_empty() || !shown.contains(secret),
        "the error repeats the secret: {shown}"
    );
}

#[tokio::test]
async fn a_server_with_users_lets_in_the_right_password_only() {
    let server = Server::start(&["--user", "roster", "--pass", "s3cret-nats-pass"], None);
    let mut config = server.config();
    refused(&config, "").await;
    config.nats_user = "roster".into();
    config.nats_password = "wrong-pass-given".into();
    refused(&config, "wrong-pass-given").await;
    config.nats_password = "s3cret-nats-pass".into();
    round_trip(&config).await.unwrap();
}

#[tokio::test]
async fn a_server_with_a_token_lets_in_the_right_token_only() {
    let server = Server::start(&["--auth", "s3cret-nats-token"], None);
    let mut config = server.config();
    refused(&config, "").await;
    config.nats_token = "wrong-token-given".into();
    refused(&config, "wrong-token-given").await;
    config.nats_token = "s3cret-nats-token".into();
    round_trip(&config).await.unwrap();
}

#[tokio::test]
async fn a_server_with_nkeys_lets_in_the_holder_of_the_seed_only() {
    let user = nkeys::KeyPair::new_user();
    let stranger = nkeys::KeyPair::new_user();
    let server = Server::start(
        &[],
        Some(&format!(
            "authorization {{ users = [ {{ nkey: \"{}\" }} ] }}\n",
            user.public_key()
        )),
    );
    let mut config = server.config();
    refused(&config, "").await;
    let stranger_seed = stranger.seed().unwrap();
    config.nats_nkey_seed = stranger_seed.clone().into();
    refused(&config, &stranger_seed).await;
    config.nats_nkey_seed = user.seed().unwrap().into();
    round_trip(&config).await.unwrap();
}

#[tokio::test]
async fn require_tls_refuses_a_server_without_tls() {
    let server = Server::start(&[], None);
    let mut config = server.config();
    round_trip(&config).await.unwrap();
    config.nats_require_tls = true;
    refused(&config, "").await;
}

#[tokio::test]
async fn conflicting_or_missing_login_settings_fail_naming_the_setting() {
    let server = Server::start(&[], None);
    let base = server.config();
    let error = |config: EventsConfig| async move {
        NatsBus::connect(&config).await.unwrap_err().to_string()
    };

    let mut two = base.clone();
    two.nats_user = "roster".into();
    two.nats_token = "t".into();
    assert!(error(two).await.contains("events.nats_token"));

    let mut orphan = base.clone();
    orphan.nats_password = "p".into();
    assert!(error(orphan).await.contains("events.nats_user"));

    let mut creds = base.clone();
    creds.nats_creds_file = "/nonexistent/roster.creds".into();
    assert!(error(creds).await.contains("events.nats_creds_file"));

    let mut ca = base.clone();
    ca.nats_ca_file = "/nonexistent/ca.pem".into();
    assert!(error(ca).await.contains("events.nats_ca_file"));

    let mut half = base;
    half.nats_cert_file = "/nonexistent/client.pem".into();
    assert!(error(half).await.contains("events.nats_key_file"));
}

/// A CA, and a server and a client certificate it signed, as PEM files.
struct Certificates {
    dir: tempfile::TempDir,
}

impl Certificates {
    fn make() -> Certificates {
        let dir = tempfile::tempdir().unwrap();
        let certificates = Certificates { dir };
        certificates.openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "1",
            "-subj",
            "/CN=roster-test-ca",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign",
        ]);
        certificates.sign("server", "serverAuth");
        certificates.sign("client", "clientAuth");
        certificates
    }

    fn sign(&self, name: &str, usage: &str) {
        std::fs::write(
            self.path(&format!("{name}.ext")),
            format!("subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage={usage}\n"),
        )
        .unwrap();
        self.openssl(&[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
            "-subj",
            &format!("/CN=roster-test-{name}"),
        ]);
        self.openssl(&[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &format!("{name}.pem"),
            "-days",
            "1",
            "-extfile",
            &format!("{name}.ext"),
        ]);
    }

    fn openssl(&self, args: &[&str]) {
        let output = Command::new("openssl")
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .expect("cannot run openssl");
        assert!(
            output.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    /// `nats-server` arguments for TLS with the server certificate, and
    /// with `verify_clients` for client certificates signed by the CA.
    fn server_args(&self, verify_clients: bool) -> Vec<String> {
        let mut args = vec![
            "--tls".to_string(),
            "--tlscert".into(),
            self.path("server.pem"),
            "--tlskey".into(),
            self.path("server.key"),
        ];
        if verify_clients {
            args.extend([
                "--tlsverify".into(),
                "--tlscacert".into(),
                self.path("ca.pem"),
            ]);
        }
        args
    }
}

fn args(owned: &[String]) -> Vec<&str> {
    owned.iter().map(String::as_str).collect()
}

#[tokio::test]
async fn a_tls_server_is_trusted_through_the_configured_ca_only() {
    let certificates = Certificates::make();
    let server = Server::start(&args(&certificates.server_args(false)), None);
    let mut config = server.config();
    config.nats_require_tls = true;
    refused(&config, "").await;
    config.nats_ca_file = certificates.path("ca.pem");
    round_trip(&config).await.unwrap();
}

#[tokio::test]
async fn a_server_that_verifies_clients_lets_in_the_holder_of_a_certificate_only() {
    let certificates = Certificates::make();
    let server = Server::start(&args(&certificates.server_args(true)), None);
    let mut config = server.config();
    config.nats_ca_file = certificates.path("ca.pem");
    refused(&config, "").await;
    config.nats_cert_file = certificates.path("client.pem");
    config.nats_key_file = certificates.path("client.key");
    round_trip(&config).await.unwrap();
}
