//! Where rendered mails go: an SMTP server (lettre), or `.eml` files in a
//! folder for the embedded default.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

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

    /// Removes what the transport keeps of mails delivered long enough ago
    /// (see [`FileTransport::with_retention`]). Most keep nothing.
    async fn prune(&self) {}
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
/// Mails carry secrets (invitation and login tokens, temporary
/// passwords): files and the folder Roster makes for them are the owner's
/// only, and files older than the retention are removed.
pub struct FileTransport {
    dir: PathBuf,
    retention: Option<Duration>,
}

impl FileTransport {
    /// Mails go to `dir`, created with the first one, and stay there.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            retention: None,
        }
    }

    /// [`MailTransport::prune`] removes `.eml` files last written more
    /// than `retention` ago; `None` keeps them.
    pub fn with_retention(mut self, retention: Option<Duration>) -> Self {
        self.retention = retention;
        self
    }
}

/// Removes the `.eml` files (finished or partial) in `dir` last written
/// more than `retention` ago; returns how many went.
fn remove_old_mail_files(dir: &Path, retention: Duration) -> std::io::Result<usize> {
    let now = SystemTime::now();
    let mut removed = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !(name.ends_with(".eml") || name.ends_with(".eml.partial")) {
            continue;
        }
        let modified = entry.metadata()?.modified()?;
        let age = now.duration_since(modified).unwrap_or_default();
        if age > retention && std::fs::remove_file(entry.path()).is_ok() {
            removed += 1;
        }
    }
    Ok(removed)
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
            // The mail may hold a secret (a token, a temporary password).
            roster_core::files::create_private_dir_all(&dir)?;
            let mut file = roster_core::files::private_file_options()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&partial)?;
            file.write_all(&bytes)?;
            file.sync_all()?;
            std::fs::rename(&partial, &path)
        })
        .await
        .map_err(|e| DeliveryError::Temporary(e.to_string()))?
        .map_err(|e| DeliveryError::Temporary(e.to_string()))
    }

    async fn prune(&self) {
        let Some(retention) = self.retention else {
            return;
        };
        let dir = self.dir.clone();
        let removed =
            tokio::task::spawn_blocking(move || remove_old_mail_files(&dir, retention)).await;
        match removed {
            Ok(Ok(0)) => {}
            Ok(Ok(removed)) => tracing::info!(removed, "old mail files removed"),
            // No mail written yet: nothing to remove.
            Ok(Err(error)) if error.kind() == std::io::ErrorKind::NotFound => {}
            Ok(Err(error)) => tracing::warn!(%error, "cannot remove old mail files"),
            Err(error) => tracing::warn!(%error, "removing old mail files failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn age(path: &Path, by: Duration) {
        let file = std::fs::File::options().write(true).open(path).unwrap();
        file.set_modified(SystemTime::now() - by).unwrap();
    }

    #[tokio::test]
    async fn pruning_removes_only_mail_files_older_than_the_retention() {
        let dir = tempfile::tempdir().unwrap();
        let [old, partial, fresh, other] =
            ["old.eml", ".gone.eml.partial", "fresh.eml", "notes.txt"].map(|n| dir.path().join(n));
        for path in [&old, &partial, &fresh, &other] {
            std::fs::write(path, "x").unwrap();
        }
        for path in [&old, &partial, &other] {
            age(path, Duration::from_secs(7200));
        }
        let transport =
            FileTransport::new(dir.path()).with_retention(Some(Duration::from_secs(3600)));
        transport.prune().await;
        assert!(!old.exists() && !partial.exists());
        assert!(fresh.exists(), "a mail younger than the retention stays");
        assert!(other.exists(), "only mail files are removed");

        age(&fresh, Duration::from_secs(7200));
        FileTransport::new(dir.path()).prune().await;
        assert!(fresh.exists(), "without a retention, files stay");
    }
}
