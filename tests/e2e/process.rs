//! Starting and stopping `rosterd` as a child process.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use roster_core::tls::{Tls, connect};
use tonic::transport::Channel;

pub const ROSTERD: &str = env!("CARGO_BIN_EXE_rosterd");

/// The cluster keys of the deployments these tests start.
pub const CLUSTER_KEYS: &str = "[\"e2e-cluster-key-of-at-least-32-bytes\"]";

/// The settings every process of a production-like deployment shares:
/// PostgreSQL, JetStream, a common cluster key, and an SMTP server that
/// mails go to, retried quickly.
pub fn deployment_env(
    db: &roster_test_support::TestDb,
    nats: &roster_test_support::TestNats,
    smtp: &roster_test_support::TestSmtp,
) -> Vec<(&'static str, String)> {
    vec![
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
        ("ROSTER__CLUSTER__KEYS", CLUSTER_KEYS.into()),
        ("ROSTER__MAIL__SMTP_URL", smtp.url()),
        ("ROSTER__MAIL__RETRY_INITIAL_MS", "50".into()),
        ("ROSTER__MAIL__RETRY_MAX_MS", "500".into()),
    ]
}

/// The services of a deployment with one process each, in start order.
pub const SERVICES: [&str; 5] = [
    "user-registry",
    "access",
    "sessions",
    "invitations",
    "notifications",
];

/// Free ports for the [`SERVICES`], in their order, and the settings that
/// tell each process where the others are (`scheme`: `http` or `https`).
pub fn split_deployment(scheme: &str) -> (Vec<u16>, Vec<(&'static str, String)>) {
    let ports: Vec<u16> = SERVICES.iter().map(|_| free_port()).collect();
    let address = |i: usize| format!("{scheme}://127.0.0.1:{}", ports[i]);
    let env = vec![
        ("ROSTER__CLUSTER__USER_REGISTRY_ADDRESS", address(0)),
        ("ROSTER__CLUSTER__ACCESS_ADDRESS", address(1)),
        ("ROSTER__CLUSTER__SESSIONS_ADDRESS", address(2)),
        ("ROSTER__CLUSTER__INVITATIONS_ADDRESS", address(3)),
    ];
    (ports, env)
}

/// A running `rosterd`, killed when dropped.
pub struct Rosterd {
    pub child: Child,
    pub addr: String,
    /// How clients reach it over TLS, when it serves TLS.
    pub tls: Option<Arc<Tls>>,
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Rosterd {
    /// Starts `rosterd <args>` in `dir` with `env`, listening on a free
    /// port, and waits until it serves.
    pub async fn start(dir: &Path, args: &[&str], env: &[(&str, String)]) -> Rosterd {
        Self::start_on(free_port(), dir, args, env).await
    }

    /// Like [`Rosterd::start`], on `port` (for processes that must know
    /// each other's addresses before they start).
    pub async fn start_on(port: u16, dir: &Path, args: &[&str], env: &[(&str, String)]) -> Rosterd {
        Self::start_logging(port, dir, args, env, None).await
    }

    /// Like [`Rosterd::start_on`], writing everything the process logs
    /// (stdout and stderr) to `log` when given.
    pub async fn start_logging(
        port: u16,
        dir: &Path,
        args: &[&str],
        env: &[(&str, String)],
        log: Option<&Path>,
    ) -> Rosterd {
        Self::launch(port, dir, args, env, log, None).await
    }

    /// Like [`Rosterd::start_on`] for a `rosterd` serving TLS: `tls` is the
    /// clients' side (a CA to trust, and a client certificate if the
    /// process asks for one).
    pub async fn start_tls(
        port: u16,
        dir: &Path,
        args: &[&str],
        env: &[(&str, String)],
        tls: Arc<Tls>,
    ) -> Rosterd {
        Self::launch(port, dir, args, env, None, Some(tls)).await
    }

    async fn launch(
        port: u16,
        dir: &Path,
        args: &[&str],
        env: &[(&str, String)],
        log: Option<&Path>,
        tls: Option<Arc<Tls>>,
    ) -> Rosterd {
        let addr = format!("127.0.0.1:{port}");
        let mut command = Command::new(ROSTERD);
        command
            .args(args)
            .current_dir(dir)
            .env_remove("RUST_LOG")
            .env("ROSTER__LISTEN", &addr);
        match log {
            Some(path) => {
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .expect("open the log file");
                command
                    .stdout(file.try_clone().expect("log file"))
                    .stderr(file);
            }
            None => {
                command.stdout(Stdio::null()).stderr(Stdio::null());
            }
        }
        // No drain delay unless a test asks for one: a test waits for
        // no load balancer, and every stop would take 5 s longer.
        command.env("ROSTER__SERVER__DRAIN_DELAY_MS", "0");
        for (k, v) in env {
            command.env(k, v);
        }
        let child = command.spawn().expect("start rosterd");
        let rosterd = Rosterd { child, addr, tls };
        rosterd.wait_until_serving().await;
        rosterd
    }

    async fn wait_until_serving(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(channel) = self.try_connect().await {
                let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
                if health
                    .check(tonic_health::pb::HealthCheckRequest {
                        service: String::new(),
                    })
                    .await
                    .is_ok()
                {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "rosterd did not start serving");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn channel(&self) -> Channel {
        self.try_connect().await.expect("connect to rosterd")
    }

    /// A connected channel: plaintext, or TLS checked for `localhost`.
    async fn try_connect(&self) -> Result<Channel, tonic::transport::Error> {
        match &self.tls {
            None => {
                Channel::from_shared(format!("http://{}", self.addr))
                    .unwrap()
                    .connect()
                    .await
            }
            Some(tls) => {
                let channel = connect::channel(
                    &format!("https://{}", self.addr),
                    "test address",
                    Some(tls),
                    Some("localhost"),
                )
                .expect("a TLS channel");
                Ok(channel)
            }
        }
    }

    /// Sends SIGTERM, as Kubernetes does to stop a pod.
    pub fn send_sigterm(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// Sends SIGTERM and waits for a clean exit.
    pub async fn terminate(mut self) -> std::process::ExitStatus {
        self.send_sigterm();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "rosterd did not stop on SIGTERM");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Rosterd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The key file's content once the bootstrap has written it.
pub async fn read_key_file(path: &Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(text) = std::fs::read_to_string(path)
            && !text.trim().is_empty()
        {
            return text.trim().to_string();
        }
        assert!(Instant::now() < deadline, "the bootstrap wrote no key file");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
