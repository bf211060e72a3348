//! A `rosterd start all` per test, with a bootstrap admin, and `roster`
//! commands pointed at it with a config folder of their own.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

pub const ADMIN: &str = "ops-admin";
pub const ADMIN_PASSWORD: &str = "Admin-Correct-Horse-9";
pub const PASSWORD: &str = "Violet-Horse-12345";

/// The `rosterd` binary: `ROSTERD` when set, else the one built beside
/// this test in the workspace's target folder (built first if missing).
pub fn rosterd() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        if let Some(path) = std::env::var_os("ROSTERD") {
            return PathBuf::from(path);
        }
        // target/<profile>/deps/<this test> → target/<profile>/rosterd
        let exe = std::env::current_exe().expect("the test's own path");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("the test runs from target/<profile>/deps");
        let path = profile_dir.join(format!("rosterd{}", std::env::consts::EXE_SUFFIX));
        if !path.exists() {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let status = Command::new(cargo)
                .args(["build", "-p", "roster-server", "--bin", "rosterd"])
                .status()
                .expect("run cargo to build rosterd");
            assert!(status.success(), "cargo could not build rosterd");
        }
        path
    })
}

/// A running `rosterd start all`, killed when dropped.
pub struct Server {
    child: Child,
    pub addr: String,
    pub dir: tempfile::TempDir,
    /// The bootstrap admin's API key (`RIGHT_ALL`).
    pub admin_key: String,
    /// The database and event stream of a production-like server, removed
    /// after the process (fields drop after `Drop::drop`).
    _backing: Option<(roster_test_support::TestDb, roster_test_support::TestNats)>,
}

impl Server {
    pub fn start() -> Server {
        Self::start_with(&[])
    }

    /// Starts on a fresh PostgreSQL database and JetStream stream of its
    /// own, as production runs.
    pub fn start_on_postgres() -> Server {
        let runtime = tokio::runtime::Runtime::new().expect("a runtime");
        let db = runtime.block_on(roster_test_support::TestDb::new());
        let nats = roster_test_support::TestNats::new();
        let nats_url = nats.config.nats_url.expose().to_string();
        let mut server = Self::start_with(&[
            ("ROSTER__DATABASE__URL", &db.url),
            ("ROSTER__AUTH__TOKEN_HASH_KEY", "cli-test-token-hash-key"),
            ("ROSTER__EVENTS__NATS_URL", &nats_url),
            ("ROSTER__EVENTS__STREAM", &nats.config.stream),
            (
                "ROSTER__EVENTS__SUBJECT_PREFIX",
                &nats.config.subject_prefix,
            ),
        ]);
        server._backing = Some((db, nats));
        server
    }

    /// Starts with extra `ROSTER__…` settings.
    pub fn start_with(env: &[(&str, &str)]) -> Server {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let addr = format!("127.0.0.1:{port}");
        let key_file = dir.path().join("admin.key");
        let mut command = Command::new(rosterd());
        command
            .args(["start", "all"])
            .current_dir(dir.path())
            .env_remove("RUST_LOG")
            .env("ROSTER__LISTEN", &addr)
            .env("ROSTER__SERVER__DRAIN_DELAY_MS", "0")
            .env("ROSTER__BOOTSTRAP__ADMIN_USER_ID", ADMIN)
            .env("ROSTER__BOOTSTRAP__ADMIN_PASSWORD", ADMIN_PASSWORD)
            .env("ROSTER__BOOTSTRAP__ADMIN_API_KEY_FILE", &key_file)
            // Cheap hashes: a thousand imported users hash in seconds.
            .env("ROSTER__PASSWORD__MEMORY_KIB", "1024")
            .env("ROSTER__PASSWORD__ITERATIONS", "1")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("rosterd.log")).expect("a log file"));
        for (key, value) in env {
            command.env(key, value);
        }
        let child = command.spawn().expect("start rosterd");
        let mut server = Server {
            child,
            addr,
            dir,
            admin_key: String::new(),
            _backing: None,
        };
        // The bootstrap writes the key once every service answers.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(text) = std::fs::read_to_string(&key_file)
                && !text.trim().is_empty()
            {
                server.admin_key = text.trim().to_string();
                break;
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("rosterd exited with {status}: {}", server.log());
            }
            assert!(
                Instant::now() < deadline,
                "no bootstrap key: {}",
                server.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("rosterd.log")).unwrap_or_default()
    }

    /// The config folder the `roster` commands of this test share.
    pub fn config_dir(&self) -> PathBuf {
        self.dir.path().join("roster-config")
    }

    /// `roster <args>` against this server, with no credential unless
    /// the test adds one, and JSON unless it asks for another format.
    pub fn roster(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_roster"));
        command
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.dir.path())
            .env("ROSTER_ADDR", &self.addr)
            .env("ROSTER_CONFIG_DIR", self.config_dir())
            .stdin(Stdio::null());
        command
    }

    /// `roster <args>` as the bootstrap admin's API key.
    pub fn admin(&self, args: &[&str]) -> Command {
        let mut command = self.roster(args);
        command.env("ROSTER_TOKEN", &self.admin_key);
        command
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a finished command printed, and how it ended.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// The stdout as JSON; panics with everything printed if it is not.
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}\nstderr: {}", self.stdout, self.stderr))
    }

    #[track_caller]
    pub fn ok(self) -> Run {
        assert_eq!(
            self.code, 0,
            "stdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self
    }

    #[track_caller]
    pub fn fails_with(self, code: i32) -> Run {
        assert_eq!(
            self.code, code,
            "stdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self
    }
}

/// Runs `command`, feeding `stdin` when given.
pub fn run(command: &mut Command, stdin: Option<&str>) -> Run {
    use std::io::Write as _;
    if stdin.is_some() {
        command.stdin(Stdio::piped());
    }
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = command.spawn().expect("start roster");
    if let Some(text) = stdin {
        let mut pipe = child.stdin.take().expect("stdin");
        pipe.write_all(text.as_bytes()).expect("write stdin");
    }
    let output = child.wait_with_output().expect("wait for roster");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}
