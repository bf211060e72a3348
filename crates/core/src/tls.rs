//! TLS for gRPC, on the server and on the channels one service opens to
//! another: the `[tls]` settings, loading PEM files into rustls
//! configurations, and reloading them when the files change.
//!
//! Certificates are read again every `reload_interval_secs`; a new
//! connection gets the configuration current when it is made, so files
//! rotated by cert-manager (or by hand) take effect without a restart,
//! and connections already open keep theirs. A rotation that leaves the
//! files unreadable or mismatched is logged and ignored: the last good
//! configuration stays in use.
//!
//! - [`accept`]: the listener side, TLS handshakes in front of tonic;
//! - [`connect`]: the channel side, `https://` peers.

pub mod accept;
pub mod connect;

use std::path::Path;
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use anyhow::Context;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// The `[tls]` settings. Nothing set: plaintext (the embedded default).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// The certificate chain this process presents (PEM, leaf first): as
    /// a server, and as a client to peers that ask for one. Set: gRPC is
    /// served over TLS only.
    pub cert_file: String,
    /// The private key of `cert_file` (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key_file: String,
    /// CA certificates (PEM) that client certificates must chain to. Set:
    /// every client must present one (mutual TLS between services).
    pub client_ca_file: String,
    /// CA certificates (PEM) this process trusts when it calls `https://`
    /// peers, itself included. Empty: `client_ca_file`, as a deployment
    /// with mutual TLS usually has one CA for both sides.
    pub ca_file: String,
    /// The name checked on the certificate when this process calls itself
    /// (a cluster address left empty). The certificate must carry it.
    pub server_name: String,
    /// How often the files are checked for changes, in seconds.
    pub reload_interval_secs: u64,
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self {
            cert_file: String::new(),
            key_file: String::new(),
            client_ca_file: String::new(),
            ca_file: String::new(),
            server_name: "localhost".into(),
            reload_interval_secs: 5,
        }
    }
}

impl TlsConfig {
    /// Whether gRPC is served over TLS.
    pub fn serves_tls(&self) -> bool {
        !self.cert_file.is_empty()
    }

    /// The CA file clients trust: `ca_file`, else `client_ca_file`.
    fn trusted_ca_file(&self) -> &str {
        if self.ca_file.is_empty() {
            &self.client_ca_file
        } else {
            &self.ca_file
        }
    }

    /// Refuses combinations that cannot work, naming the settings.
    fn check(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.cert_file.is_empty() == self.key_file.is_empty(),
            "tls.cert_file and tls.key_file must be set together"
        );
        anyhow::ensure!(
            self.client_ca_file.is_empty() || self.serves_tls(),
            "tls.client_ca_file needs tls.cert_file and tls.key_file (a server asking for client certificates must serve TLS)"
        );
        Ok(())
    }
}

/// The current rustls configurations, swapped when the files change.
pub struct Tls {
    config: TlsConfig,
    server: RwLock<Option<Arc<ServerConfig>>>,
    client: RwLock<Option<Arc<ClientConfig>>>,
    // The SHA-256 of the files' contents last loaded (or last refused, so
    // one bad rotation is reported once, not at every poll).
    fingerprint: Mutex<[u8; 32]>,
}

impl Tls {
    /// Loads the configured files; `None` when no TLS setting is made.
    /// A missing, unreadable or mismatched file fails, naming its setting.
    pub fn load(config: &TlsConfig) -> anyhow::Result<Option<Arc<Tls>>> {
        config.check()?;
        if !config.serves_tls() && config.trusted_ca_file().is_empty() {
            return Ok(None);
        }
        let tls = Tls {
            config: config.clone(),
            server: RwLock::new(None),
            client: RwLock::new(None),
            fingerprint: Mutex::new([0; 32]),
        };
        tls.reload()?;
        Ok(Some(Arc::new(tls)))
    }

    /// The settings this was loaded from.
    pub fn config(&self) -> &TlsConfig {
        &self.config
    }

    /// The server configuration for a new connection, if this process
    /// serves TLS.
    pub fn server_config(&self) -> Option<Arc<ServerConfig>> {
        self.server
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The client configuration for a new connection to an `https://`
    /// peer, if a CA to trust is configured.
    pub fn client_config(&self) -> Option<Arc<ClientConfig>> {
        self.client
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Reads the files again and, when they changed, builds and installs
    /// new configurations. True when new ones were installed.
    pub fn reload(&self) -> anyhow::Result<bool> {
        let files = Files::read(&self.config)?;
        let fingerprint = files.fingerprint();
        {
            let mut last = self.fingerprint.lock().unwrap_or_else(|e| e.into_inner());
            if *last == fingerprint {
                return Ok(false);
            }
            *last = fingerprint;
        }
        let server = files.server_config(&self.config)?;
        let client = files.client_config(&self.config)?;
        *self.server.write().unwrap_or_else(|e| e.into_inner()) = server.map(Arc::new);
        *self.client.write().unwrap_or_else(|e| e.into_inner()) = client.map(Arc::new);
        Ok(true)
    }

    /// Checks the files every `reload_interval_secs` for as long as this
    /// `Tls` is in use.
    pub fn spawn_reloader(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let every = Duration::from_secs(self.config.reload_interval_secs.max(1));
        let tls: Weak<Tls> = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                let Some(tls) = tls.upgrade() else { break };
                // Reading files blocks; keep it off the runtime's workers.
                let outcome = tokio::task::spawn_blocking(move || tls.reload()).await;
                match outcome {
                    Ok(Ok(true)) => tracing::info!("TLS certificates reloaded from their files"),
                    Ok(Ok(false)) => {}
                    Ok(Err(error)) => tracing::warn!(
                        error = format!("{error:#}"),
                        "TLS files changed but cannot be used; keeping the previous certificates"
                    ),
                    Err(error) => tracing::warn!(%error, "TLS reload task failed"),
                }
            }
        })
    }
}

/// One consistent reading of every configured file.
struct Files {
    cert: Option<Vec<u8>>,
    key: Option<Vec<u8>>,
    client_ca: Option<Vec<u8>>,
    ca: Option<Vec<u8>>,
}

impl Files {
    fn read(config: &TlsConfig) -> anyhow::Result<Files> {
        let read = |setting: &str, path: &str| -> anyhow::Result<Option<Vec<u8>>> {
            if path.is_empty() {
                return Ok(None);
            }
            std::fs::read(Path::new(path))
                .map(Some)
                .with_context(|| format!("tls.{setting}: cannot read {path}"))
        };
        let ca_setting = if config.ca_file.is_empty() {
            "client_ca_file"
        } else {
            "ca_file"
        };
        Ok(Files {
            cert: read("cert_file", &config.cert_file)?,
            key: read("key_file", &config.key_file)?,
            client_ca: read("client_ca_file", &config.client_ca_file)?,
            ca: read(ca_setting, config.trusted_ca_file())?,
        })
    }

    fn fingerprint(&self) -> [u8; 32] {
        let mut hash = Sha256::new();
        for file in [&self.cert, &self.key, &self.client_ca, &self.ca] {
            let bytes = file.as_deref().unwrap_or_default();
            hash.update((bytes.len() as u64).to_be_bytes());
            hash.update(bytes);
        }
        hash.finalize().into()
    }

    /// The certificate chain and key, when both are configured.
    fn identity(
        &self,
    ) -> anyhow::Result<Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>> {
        let (Some(cert), Some(key)) = (&self.cert, &self.key) else {
            return Ok(None);
        };
        let chain = CertificateDer::pem_slice_iter(cert)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| anyhow::anyhow!("tls.cert_file: not PEM certificates: {e}"))?;
        anyhow::ensure!(!chain.is_empty(), "tls.cert_file holds no certificate");
        let key = PrivateKeyDer::from_pem_slice(key)
            .map_err(|e| anyhow::anyhow!("tls.key_file: no usable private key: {e}"))?;
        Ok(Some((chain, key)))
    }

    fn server_config(&self, config: &TlsConfig) -> anyhow::Result<Option<ServerConfig>> {
        let Some((chain, key)) = self.identity()? else {
            return Ok(None);
        };
        let provider = provider();
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?;
        let builder = match &self.client_ca {
            Some(pem) => {
                let roots = roots(pem, "client_ca_file")?;
                let verifier = WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
                    .build()
                    .context("tls.client_ca_file")?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let mut server = builder.with_single_cert(chain, key).with_context(|| {
            format!(
                "tls.cert_file and tls.key_file ({} and {}) do not make a usable certificate and key",
                config.cert_file, config.key_file
            )
        })?;
        // gRPC is HTTP/2 only.
        server.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Some(server))
    }

    fn client_config(&self, config: &TlsConfig) -> anyhow::Result<Option<ClientConfig>> {
        let Some(ca) = &self.ca else {
            return Ok(None);
        };
        let setting = if config.ca_file.is_empty() {
            "client_ca_file"
        } else {
            "ca_file"
        };
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots(ca, setting)?);
        // Present our certificate whenever we have one: a peer that asks
        // for it (client_ca_file set there) needs it, others ignore it.
        let mut client = match self.identity()? {
            Some((chain, key)) => builder
                .with_client_auth_cert(chain, key)
                .context("tls.cert_file and tls.key_file as a client certificate")?,
            None => builder.with_no_client_auth(),
        };
        client.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Some(client))
    }
}

/// One crypto provider, named explicitly: several are compiled in (other
/// crates bring theirs), and rustls refuses to guess.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(pem: &[u8], setting: &str) -> anyhow::Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|e| anyhow::anyhow!("tls.{setting}: not PEM certificates: {e}"))?;
        roots
            .add(cert)
            .map_err(|e| anyhow::anyhow!("tls.{setting}: unusable CA certificate: {e}"))?;
    }
    anyhow::ensure!(!roots.is_empty(), "tls.{setting} holds no certificate");
    Ok(roots)
}
