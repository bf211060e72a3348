//! Where rendered mails go: an SMTP server (lettre), or `.eml` files in a
//! folder for the embedded default.

use std::path::PathBuf;
use std::time::Duration;

use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

/// Why a delivery failed.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// Try again later (connection refused, timeout, 4xx).
    #[error("temporary delivery failure: {0}")]
    Temporary(String),
    /// Trying again will not help (5xx: unknown mailbox, refused sender).
    #[error("permanent delivery failure: {0}")]
    Permanent(String),
}

/// Delivers one mail.
#[async_trait::async_trait]
pub trait MailTransport: Send + Sync + 'static {
    async fn deliver(&self, mail_id: &str, message: Message) -> Result<(), DeliveryError>;
}

/// An SMTP server.
pub struct SmtpTransport {
    inner: AsyncSmtpTransport<Tokio1Executor>,
    timeout: Duration,
}

impl SmtpTransport {
    /// From `mail.smtp_url` (see `MailConfig::smtp_url` for the forms).
    pub fn new(url: &str, timeout: Duration) -> anyhow::Result<Self> {
        let inner = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(|e| {
                anyhow::anyhow!(
                    "mail.smtp_url {} is not usable: {e}",
                    roster_core::config::redacted_url(url)
                )
            })?
            .timeout(Some(timeout))
            .build();
        Ok(Self { inner, timeout })
    }
}

#[async_trait::async_trait]
impl MailTransport for SmtpTransport {
    async fn deliver(&self, _mail_id: &str, message: Message) -> Result<(), DeliveryError> {
        // lettre's own timeout covers connecting; this one the whole
        // conversation, so a server that accepts and then hangs cannot hold
        // the worker.
        let sent = tokio::time::timeout(self.timeout, self.inner.send(message))
            .await
            .map_err(|_| {
                DeliveryError::Temporary(format!(
                    "the SMTP server did not finish within {} s",
                    self.timeout.as_secs()
                ))
            })?;
        match sent {
            Ok(_) => Ok(()),
            Err(e) if e.is_permanent() => Err(DeliveryError::Permanent(e.to_string())),
            Err(e) => Err(DeliveryError::Temporary(e.to_string())),
        }
    }
}

/// `.eml` files in a folder, one per mail, named after the mail's ID.
pub struct FileTransport {
    dir: PathBuf,
}

impl FileTransport {
    /// Mails go to `dir`, created with the first one.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }
}

#[async_trait::async_trait]
impl MailTransport for FileTransport {
    async fn deliver(&self, mail_id: &str, message: Message) -> Result<(), DeliveryError> {
        let dir = self.dir.clone();
        let path = self.dir.join(format!("{mail_id}.eml"));
        let partial = self.dir.join(format!(".{mail_id}.eml.partial"));
        let bytes = message.formatted();
        // Written aside, then renamed: a reader never sees half a mail, and
        // a second delivery of the same mail replaces it with itself.
        tokio::task::spawn_blocking(move || {
            use std::io::Write as _;
            std::fs::create_dir_all(&dir)?;
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create(true).truncate(true);
            // The mail may hold a secret (a token, a temporary password).
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt as _;
                options.mode(0o600);
            }
            let mut file = options.open(&partial)?;
            file.write_all(&bytes)?;
            file.sync_all()?;
            std::fs::rename(&partial, &path)
        })
        .await
        .map_err(|e| DeliveryError::Temporary(e.to_string()))?
        .map_err(|e| DeliveryError::Temporary(e.to_string()))
    }
}
