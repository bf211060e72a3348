//! Password hashing. New hashes are Argon2id PHC strings; PBKDF2 hashes
//! imported from The Things Stack are still verified, so migrated users can
//! log in and be rehashed on the way (see [`PasswordHasher::needs_rehash`]).
//!
//! Every hash and verification runs on the blocking pool: one Argon2id call
//! takes tens of milliseconds of CPU, long enough to stall every other task
//! on a runtime worker. The time each waits for a hashing slot and a
//! blocking thread, and the time it runs, go to the metrics.

use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use argon2::password_hash::{self, PasswordHash, PasswordHasher as _, PasswordVerifier as _};
use argon2::{Algorithm, Argon2, Params, Version};
use data_encoding::BASE64URL_NOPAD;
use rand::RngCore as _;
use rand::rngs::OsRng;
use serde::Deserialize;
use subtle::ConstantTimeEq as _;

use crate::metrics::{self, password_operation};

// Limits on costs read back from stored hashes. A corrupted or planted row
// must not be able to make one login allocate gigabytes or spin for minutes.
const MAX_ARGON2_MEMORY_KIB: u32 = 1024 * 1024;
const MAX_ARGON2_ITERATIONS: u32 = 100;
const MAX_ARGON2_PARALLELISM: u32 = 64;
const MAX_PBKDF2_ITERATIONS: u32 = 1_000_000;
const MAX_PBKDF2_KEY_BYTES: usize = 512;

const SALT_BYTES: usize = 16;

/// Argon2id cost parameters. The defaults are the OWASP minimum for
/// Argon2id (19 MiB, 2 passes, 1 lane).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PasswordConfig {
    /// Memory per hash, in KiB.
    pub memory_kib: u32,
    /// Passes over the memory.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
    /// Most hashes computed at once; 0 means one per CPU. Each takes
    /// `memory_kib` of memory, so this also bounds the memory that a flood
    /// of unauthenticated requests can claim. Waiting requests queue.
    pub max_concurrent: usize,
    /// How long a request may wait for a hashing slot before it is turned
    /// away as busy, in milliseconds; 0 waits as long as it takes.
    pub queue_timeout_ms: u64,
}

impl Default for PasswordConfig {
    fn default() -> Self {
        Self {
            memory_kib: 19_456,
            iterations: 2,
            parallelism: 1,
            max_concurrent: 0,
            queue_timeout_ms: 10_000,
        }
    }
}

/// Why a password could not be hashed or checked. A wrong password is not an
/// error: [`PasswordHasher::verify`] returns `Ok(false)` for it.
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    /// The stored hash cannot be read. The reason never quotes the hash.
    #[error("stored password hash is malformed: {0}")]
    MalformedHash(&'static str),
    /// The hashing library refused the input.
    #[error("password hashing failed: {0}")]
    Hashing(password_hash::Error),
    /// The hasher no longer takes work.
    #[error("password hashing is closed")]
    Closed,
    /// Every hashing slot stayed taken for the whole queue timeout.
    #[error("password hashing is busy")]
    Busy,
    /// The blocking task panicked or was cancelled.
    #[error("password hashing task failed")]
    Task(#[source] tokio::task::JoinError),
}

/// Hashes and verifies passwords. Cloning is cheap: clones share the
/// parameters and the dummy hash.
#[derive(Clone)]
pub struct PasswordHasher {
    inner: Arc<Inner>,
}

struct Inner {
    argon2: Argon2<'static>,
    params: Params,
    /// Verified against when the user does not exist, so that an unknown
    /// user costs the same time as a wrong password.
    dummy_hash: String,
    /// Bounds the hashes in flight (see `PasswordConfig::max_concurrent`).
    permits: Arc<tokio::sync::Semaphore>,
    /// How long to wait for a permit; `None` waits for ever.
    queue_timeout: Option<std::time::Duration>,
}

impl fmt::Debug for PasswordHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasswordHasher")
            .field("memory_kib", &self.inner.params.m_cost())
            .field("iterations", &self.inner.params.t_cost())
            .field("parallelism", &self.inner.params.p_cost())
            .finish_non_exhaustive()
    }
}

impl PasswordHasher {
    /// Builds a hasher and computes its dummy hash, which costs one full
    /// Argon2id hash at start-up.
    pub fn new(config: &PasswordConfig) -> anyhow::Result<Self> {
        anyhow::ensure!(
            config.memory_kib <= MAX_ARGON2_MEMORY_KIB,
            "password.memory_kib must be at most {MAX_ARGON2_MEMORY_KIB}"
        );
        anyhow::ensure!(
            config.iterations <= MAX_ARGON2_ITERATIONS,
            "password.iterations must be at most {MAX_ARGON2_ITERATIONS}"
        );
        anyhow::ensure!(
            config.parallelism <= MAX_ARGON2_PARALLELISM,
            "password.parallelism must be at most {MAX_ARGON2_PARALLELISM}"
        );
        let params = Params::new(
            config.memory_kib,
            config.iterations,
            config.parallelism,
            None,
        )
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("invalid Argon2id parameters in the password configuration")?;
        let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());

        // A random password nobody knows: even a bug that accepted the dummy
        // hash could not be exploited with a guessable input.
        let mut dummy_password = [0u8; 32];
        OsRng.fill_bytes(&mut dummy_password);
        let dummy_hash = hash_argon2(&argon2, &dummy_password)
            .map_err(|e| anyhow::anyhow!("{e}"))
            .context("computing the dummy password hash")?;

        let permits = match config.max_concurrent {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        Ok(Self {
            inner: Arc::new(Inner {
                argon2,
                params,
                dummy_hash,
                permits: Arc::new(tokio::sync::Semaphore::new(permits)),
                queue_timeout: (config.queue_timeout_ms > 0)
                    .then(|| std::time::Duration::from_millis(config.queue_timeout_ms)),
            }),
        })
    }

    /// Hashes a password into an Argon2id PHC string with a fresh random
    /// salt.
    pub async fn hash(&self, password: &str) -> Result<String, PasswordError> {
        let queued = Instant::now();
        let permit = self.permit().await?;
        let inner = Arc::clone(&self.inner);
        let password = password.to_owned();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            timed(password_operation::HASH, queued, || {
                hash_argon2(&inner.argon2, password.as_bytes()).map_err(PasswordError::Hashing)
            })
        })
        .await
        .map_err(PasswordError::Task)?
    }

    /// Checks a password against a stored hash (Argon2 PHC or legacy
    /// PBKDF2). `None` stands for an unknown user: the dummy hash is checked
    /// so the answer takes as long as for a known user, and it is `false`.
    pub async fn verify(
        &self,
        password: &str,
        stored: Option<&str>,
    ) -> Result<bool, PasswordError> {
        let queued = Instant::now();
        let permit = self.permit().await?;
        let inner = Arc::clone(&self.inner);
        let password = password.to_owned();
        let stored = stored.map(str::to_owned);
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            timed(password_operation::VERIFY, queued, || match stored {
                Some(stored) => verify_stored(&inner.argon2, password.as_bytes(), &stored),
                None => {
                    let outcome =
                        verify_stored(&inner.argon2, password.as_bytes(), &inner.dummy_hash);
                    // Keep the work observable so it cannot be optimised away.
                    std::hint::black_box(outcome.ok());
                    Ok(false)
                }
            })
        })
        .await
        .map_err(PasswordError::Task)?
    }

    /// Waits for a free hashing slot. The permit moves into the blocking
    /// task, so it is held until the work is done even when the caller
    /// gives up waiting.
    async fn permit(&self) -> Result<tokio::sync::OwnedSemaphorePermit, PasswordError> {
        let acquire = Arc::clone(&self.inner.permits).acquire_owned();
        let acquired = match self.inner.queue_timeout {
            Some(limit) => tokio::time::timeout(limit, acquire)
                .await
                .map_err(|_| PasswordError::Busy)?,
            None => acquire.await,
        };
        acquired.map_err(|_| PasswordError::Closed)
    }

    /// Whether a stored hash should be replaced by a fresh one after a
    /// successful login: true for PBKDF2, for other Argon2 variants,
    /// versions or costs, and for anything unreadable.
    pub fn needs_rehash(&self, stored: &str) -> bool {
        let Ok(hash) = PasswordHash::new(stored) else {
            return true;
        };
        if hash.salt.is_none() || hash.hash.is_none() {
            return true;
        }
        if hash.algorithm != Algorithm::Argon2id.ident()
            || hash.version != Some(Version::V0x13.into())
        {
            return true;
        }
        let Ok(params) = Params::try_from(&hash) else {
            return true;
        };
        let current = &self.inner.params;
        params.m_cost() != current.m_cost()
            || params.t_cost() != current.t_cost()
            || params.p_cost() != current.p_cost()
            || params.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN)
                != current.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN)
    }
}

/// Runs `work` (a password `operation` queued at `queued`) on the
/// blocking thread it got, recording how long it waited for its slot and
/// thread, and how long it ran. A request turned away as busy never
/// starts and is not recorded.
fn timed<T>(operation: &'static str, queued: Instant, work: impl FnOnce() -> T) -> T {
    let started = Instant::now();
    metrics::password_hash_wait(operation, started - queued);
    let outcome = work();
    metrics::password_hash(operation, started.elapsed());
    outcome
}

fn hash_argon2(argon2: &Argon2<'_>, password: &[u8]) -> Result<String, password_hash::Error> {
    let mut salt = [0u8; SALT_BYTES];
    OsRng.fill_bytes(&mut salt);
    let salt = password_hash::SaltString::encode_b64(&salt)?;
    Ok(argon2.hash_password(password, &salt)?.to_string())
}

fn verify_stored(
    argon2: &Argon2<'_>,
    password: &[u8],
    stored: &str,
) -> Result<bool, PasswordError> {
    if stored.starts_with("$argon2") {
        verify_argon2(argon2, password, stored)
    } else if stored.starts_with("PBKDF2$") {
        verify_pbkdf2(password, stored)
    } else {
        Err(PasswordError::MalformedHash("unknown hash format"))
    }
}

fn verify_argon2(
    argon2: &Argon2<'_>,
    password: &[u8],
    stored: &str,
) -> Result<bool, PasswordError> {
    let hash = PasswordHash::new(stored)
        .map_err(|_| PasswordError::MalformedHash("unreadable Argon2 PHC string"))?;
    if Algorithm::try_from(hash.algorithm).is_err() {
        return Err(PasswordError::MalformedHash("unknown Argon2 variant"));
    }
    let params = Params::try_from(&hash)
        .map_err(|_| PasswordError::MalformedHash("invalid Argon2 parameters"))?;
    if params.m_cost() > MAX_ARGON2_MEMORY_KIB
        || params.t_cost() > MAX_ARGON2_ITERATIONS
        || params.p_cost() > MAX_ARGON2_PARALLELISM
    {
        return Err(PasswordError::MalformedHash("Argon2 cost above the limits"));
    }
    if hash.salt.is_none() || hash.hash.is_none() {
        return Err(PasswordError::MalformedHash(
            "Argon2 hash without salt or output",
        ));
    }
    // The algorithm, version and costs come from the stored string, not from
    // `argon2`, so hashes made under older settings still verify.
    match argon2.verify_password(password, &hash) {
        Ok(()) => Ok(true),
        Err(password_hash::Error::Password) => Ok(false),
        Err(_) => Err(PasswordError::MalformedHash(
            "Argon2 hash cannot be checked",
        )),
    }
}

/// The Things Stack format: `PBKDF2$<sha256|sha512>$<iterations>$<salt>$<key>`,
/// where the salt is used as its literal bytes and the key is unpadded
/// URL-safe base64.
fn verify_pbkdf2(password: &[u8], stored: &str) -> Result<bool, PasswordError> {
    let parts: Vec<&str> = stored.split('$').collect();
    let [scheme, algorithm, iterations, salt, key] = parts[..] else {
        return Err(PasswordError::MalformedHash(
            "PBKDF2 hash needs five `$`-separated parts",
        ));
    };
    if scheme != "PBKDF2" {
        return Err(PasswordError::MalformedHash("unknown hash format"));
    }
    let iterations: u32 = iterations
        .parse()
        .map_err(|_| PasswordError::MalformedHash("PBKDF2 iteration count is not a number"))?;
    if iterations == 0 || iterations > MAX_PBKDF2_ITERATIONS {
        return Err(PasswordError::MalformedHash(
            "PBKDF2 iteration count out of range",
        ));
    }
    if salt.is_empty() {
        return Err(PasswordError::MalformedHash("PBKDF2 salt is empty"));
    }
    let expected = BASE64URL_NOPAD
        .decode(key.as_bytes())
        .map_err(|_| PasswordError::MalformedHash("PBKDF2 key is not unpadded base64url"))?;
    if expected.is_empty() || expected.len() > MAX_PBKDF2_KEY_BYTES {
        return Err(PasswordError::MalformedHash(
            "PBKDF2 key length out of range",
        ));
    }
    let mut derived = vec![0u8; expected.len()];
    match algorithm {
        "sha256" => {
            pbkdf2::pbkdf2_hmac::<sha2::Sha256>(password, salt.as_bytes(), iterations, &mut derived)
        }
        "sha512" => {
            pbkdf2::pbkdf2_hmac::<sha2::Sha512>(password, salt.as_bytes(), iterations, &mut derived)
        }
        _ => return Err(PasswordError::MalformedHash("unknown PBKDF2 digest")),
    }
    Ok(bool::from(derived.ct_eq(&expected)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::sync::LazyLock;

    static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .expect("test runtime")
    });

    // Cheap costs: dependencies are unoptimised in test builds.
    fn test_config() -> PasswordConfig {
        PasswordConfig {
            memory_kib: 1024,
            iterations: 1,
            parallelism: 1,
            max_concurrent: 0,
            queue_timeout_ms: 0,
        }
    }

    static HASHER: LazyLock<PasswordHasher> =
        LazyLock::new(|| PasswordHasher::new(&test_config()).expect("hasher"));

    // Computed independently of this module (Python's hashlib.pbkdf2_hmac)
    // for password "Correct-Horse-7", salt "AbCdEfGhIjKlMnOp", 1000 rounds.
    const PBKDF2_SHA256: &str =
        "PBKDF2$sha256$1000$AbCdEfGhIjKlMnOp$xWMcncoLScp8IZDL18Vnc4N4YlQiaoExN0RA1n3OBt8";
    const PBKDF2_SHA512: &str =
        "PBKDF2$sha512$1000$AbCdEfGhIjKlMnOp$tXXS-xlEjOswK6B7syNorN6ruqrGZEVGcoXB_gmUriQ";

    #[test]
    fn default_config_is_the_owasp_minimum() {
        let config: PasswordConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(config, PasswordConfig::default());
        assert_eq!(config.memory_kib, 19_456);
        assert_eq!(config.iterations, 2);
        assert_eq!(config.parallelism, 1);
    }

    #[test]
    fn config_with_an_unknown_field_is_refused() {
        assert!(serde_json::from_str::<PasswordConfig>(r#"{"memory": 1}"#).is_err());
    }

    #[test]
    fn config_with_invalid_argon2_parameters_is_refused() {
        let config = PasswordConfig {
            memory_kib: 1,
            ..test_config()
        };
        assert!(PasswordHasher::new(&config).is_err());
        let config = PasswordConfig {
            memory_kib: MAX_ARGON2_MEMORY_KIB + 1,
            ..test_config()
        };
        assert!(PasswordHasher::new(&config).is_err());
    }

    #[tokio::test]
    async fn a_request_that_waits_past_the_queue_timeout_is_turned_away() {
        let hasher = PasswordHasher::new(&PasswordConfig {
            max_concurrent: 1,
            queue_timeout_ms: 20,
            ..test_config()
        })
        .unwrap();
        let slot = hasher.permit().await.unwrap();
        assert!(matches!(
            hasher.hash("Password-1").await,
            Err(PasswordError::Busy)
        ));
        drop(slot);
        assert!(hasher.hash("Password-1").await.is_ok());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn hashes_beyond_the_concurrency_bound_queue_and_all_finish() {
        let hasher = PasswordHasher::new(&PasswordConfig {
            max_concurrent: 2,
            queue_timeout_ms: 0,
            ..test_config()
        })
        .unwrap();
        let tasks: Vec<_> = (0..12)
            .map(|i| {
                let hasher = hasher.clone();
                tokio::spawn(async move {
                    let password = format!("Password-{i}");
                    let hash = hasher.hash(&password).await.unwrap();
                    hasher.verify(&password, Some(&hash)).await.unwrap()
                })
            })
            .collect();
        for task in tasks {
            assert!(task.await.unwrap());
        }
        assert_eq!(hasher.inner.permits.available_permits(), 2);
    }

    #[tokio::test]
    async fn hashed_password_verifies() {
        let hash = HASHER.hash("Sup3r-secret").await.unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=1024,t=1,p=1$"));
        assert!(HASHER.verify("Sup3r-secret", Some(&hash)).await.unwrap());
    }

    #[tokio::test]
    async fn hashing_twice_uses_different_salts() {
        let a = HASHER.hash("Sup3r-secret").await.unwrap();
        let b = HASHER.hash("Sup3r-secret").await.unwrap();
        assert_ne!(a, b);
    }

    #[tokio::test]
    async fn wrong_password_does_not_verify() {
        let hash = HASHER.hash("Sup3r-secret").await.unwrap();
        assert!(!HASHER.verify("Sup3r-secreT", Some(&hash)).await.unwrap());
        assert!(!HASHER.verify("", Some(&hash)).await.unwrap());
    }

    #[tokio::test]
    async fn unknown_user_never_verifies() {
        assert!(!HASHER.verify("anything", None).await.unwrap());
        assert!(!HASHER.verify("", None).await.unwrap());
    }

    #[tokio::test]
    async fn hash_made_with_other_costs_still_verifies() {
        let other = PasswordHasher::new(&PasswordConfig {
            memory_kib: 2048,
            iterations: 2,
            parallelism: 2,
            max_concurrent: 0,
            queue_timeout_ms: 0,
        })
        .unwrap();
        let hash = other.hash("Sup3r-secret").await.unwrap();
        assert!(HASHER.verify("Sup3r-secret", Some(&hash)).await.unwrap());
        assert!(HASHER.needs_rehash(&hash));
        assert!(!other.needs_rehash(&hash));
    }

    #[tokio::test]
    async fn fresh_hash_does_not_need_rehash() {
        let hash = HASHER.hash("Sup3r-secret").await.unwrap();
        assert!(!HASHER.needs_rehash(&hash));
    }

    #[tokio::test]
    async fn legacy_pbkdf2_hashes_verify() {
        for stored in [PBKDF2_SHA256, PBKDF2_SHA512] {
            assert!(
                HASHER
                    .verify("Correct-Horse-7", Some(stored))
                    .await
                    .unwrap()
            );
            assert!(
                !HASHER
                    .verify("Correct-Horse-8", Some(stored))
                    .await
                    .unwrap()
            );
            assert!(HASHER.needs_rehash(stored));
        }
    }

    #[tokio::test]
    async fn pbkdf2_hash_with_a_changed_salt_does_not_verify() {
        let stored = PBKDF2_SHA256.replace("AbCd", "AbCe");
        assert!(
            !HASHER
                .verify("Correct-Horse-7", Some(&stored))
                .await
                .unwrap()
        );
    }

    #[tokio::test]
    async fn malformed_stored_hashes_are_errors() {
        for stored in [
            "",
            "plaintext",
            "PBKDF2$sha256$1000$salt",
            "PBKDF2$md5$1000$AbCd$xWMcncoLScp8IZDL18Vnc4N4YlQiaoExN0RA1n3OBt8",
            "PBKDF2$sha256$0$AbCd$xWMcncoLScp8IZDL18Vnc4N4YlQiaoExN0RA1n3OBt8",
            "PBKDF2$sha256$many$AbCd$xWMcncoLScp8IZDL18Vnc4N4YlQiaoExN0RA1n3OBt8",
            "PBKDF2$sha256$4294967295$AbCd$xWMcncoLScp8IZDL18Vnc4N4YlQiaoExN0RA1n3OBt8",
            "PBKDF2$sha256$1000$$xWMcncoLScp8IZDL18Vnc4N4YlQiaoExN0RA1n3OBt8",
            "PBKDF2$sha256$1000$AbCd$foo==",
            "PBKDF2$sha256$1000$AbCd$",
            "$argon2id$",
            "$argon2id$v=19$m=4194304,t=1,p=1$c29tZXNhbHQ$c29tZWhhc2hjb21wdXRlZA",
            "$argon2x$v=19$m=1024,t=1,p=1$c29tZXNhbHQ$c29tZWhhc2hjb21wdXRlZA",
            "$argon2id$v=19$m=1024,t=1,p=1$c29tZXNhbHQ",
        ] {
            let result = HASHER.verify("Correct-Horse-7", Some(stored)).await;
            assert!(
                matches!(result, Err(PasswordError::MalformedHash(_))),
                "{stored:?} gave {result:?}"
            );
            assert!(HASHER.needs_rehash(stored), "{stored:?}");
        }
    }

    #[test]
    fn error_messages_never_quote_the_stored_hash() {
        let stored = "PBKDF2$sha256$1000$SECRETSALT$foo==";
        let err = RUNTIME
            .block_on(HASHER.verify("pw", Some(stored)))
            .unwrap_err();
        assert!(!err.to_string().contains("SECRETSALT"));
    }

    fn stored_hash_strategy() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<String>(),
            "PBKDF2\\$(sha256|sha512|[a-z0-9]{0,6})\\$[0-9]{0,4}\\$[^$]{0,20}\\$[A-Za-z0-9_=+/-]{0,60}(\\$.{0,4})?",
            "\\$argon2(id|i|d|x)?\\$(v=(16|19|20)\\$)?m=[0-9]{1,3},t=[1-3],p=[0-9]{1,2}\\$[A-Za-z0-9+/]{0,30}(\\$[A-Za-z0-9+/=]{0,60})?",
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(96))]

        #[test]
        fn verifying_against_any_stored_string_never_panics(
            stored in stored_hash_strategy(),
            password in ".{0,20}",
        ) {
            let result = RUNTIME.block_on(HASHER.verify(&password, Some(&stored)));
            prop_assert!(!matches!(result, Err(PasswordError::Task(_))));
            let _ = HASHER.needs_rehash(&stored);
        }
    }
}
