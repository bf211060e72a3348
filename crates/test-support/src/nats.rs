//! An event namespace per test on the shared NATS server
//! (`ROSTER_TEST_NATS_URL`, default `nats://127.0.0.1:4222`): a stream name
//! and a subject prefix of its own, so tests running in parallel never see
//! each other's events. The stream is deleted when the [`TestNats`] is
//! dropped.

use std::sync::mpsc;
use std::time::Duration;

use roster_core::events::{EventsConfig, NatsBus};

/// The NATS server tests use when `ROSTER_TEST_NATS_URL` is unset.
pub const DEFAULT_NATS_URL: &str = "nats://127.0.0.1:4222";

/// How long deleting the stream may hold up the end of a test.
const DROP_TIMEOUT: Duration = Duration::from_secs(10);

/// The URL of the NATS server used by tests.
pub fn nats_url() -> String {
    std::env::var("ROSTER_TEST_NATS_URL")
        .ok()
        .filter(|url| !url.is_empty())
        .unwrap_or_else(|| DEFAULT_NATS_URL.into())
}

/// A test's own JetStream stream and subject prefix.
#[derive(Debug)]
pub struct TestNats {
    /// Events configuration naming this test's stream (`ROSTER_T_<UUID>`)
    /// and prefix (`roster_t_<uuid>`). The stream is created by the first
    /// bus that connects with `create_stream` set.
    pub config: EventsConfig,
}

impl TestNats {
    pub fn new() -> TestNats {
        let id = uuid::Uuid::new_v4().simple().to_string();
        TestNats {
            config: EventsConfig {
                nats_url: nats_url().into(),
                stream: format!("ROSTER_T_{}", id.to_uppercase()),
                subject_prefix: format!("roster_t_{id}"),
                // Tests wait for retries; a short interval keeps them quick.
                relay_interval_ms: 50,
                ..EventsConfig::default()
            },
        }
    }

    /// A JetStream bus on this namespace, creating the stream if
    /// `config.create_stream` is set. Panics when NATS cannot be reached.
    pub async fn bus(&self) -> NatsBus {
        NatsBus::connect(&self.config)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to NATS: {e:#}"))
    }

    /// How many messages the stream holds, or `None` if it does not exist.
    pub async fn stream_messages(&self) -> Option<u64> {
        let client = async_nats::connect(self.config.nats_url.expose())
            .await
            .unwrap_or_else(|e| panic!("cannot connect to NATS: {e}"));
        let jetstream = async_nats::jetstream::new(client);
        let mut stream = jetstream.get_stream(&self.config.stream).await.ok()?;
        let info = stream.info().await.ok()?;
        Some(info.state.messages)
    }
}

impl Default for TestNats {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TestNats {
    fn drop(&mut self) {
        // As for test databases: a thread with its own runtime, so the
        // test's runtime is never blocked on itself, and a bounded wait.
        let url = self.config.nats_url.expose().to_string();
        let stream = self.config.stream.clone();
        let (done, wait) = mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("drop-test-stream".into())
            .spawn(move || {
                if let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    runtime.block_on(async {
                        let delete = async {
                            let client = async_nats::connect(url.as_str()).await.ok()?;
                            let jetstream = async_nats::jetstream::new(client);
                            jetstream.delete_stream(&stream).await.ok()
                        };
                        let _ = tokio::time::timeout(DROP_TIMEOUT, delete).await;
                    });
                }
                let _ = done.send(());
            });
        if spawned.is_ok() {
            let _ = wait.recv_timeout(DROP_TIMEOUT);
        }
    }
}
