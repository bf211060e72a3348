//! The mailer's settings (section `[mail]`).

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MailConfig {
    /// Where mail goes: an SMTP URL such as `smtp://127.0.0.1:2525` (no
    /// TLS), `smtp://mail.example.com:587?tls=required` (STARTTLS) or
    /// `smtps://mail.example.com:465` (TLS), with `user:password@` when the
    /// server wants a login. Empty: mails are written as `.eml` files to
    /// `dir` instead (the embedded default).
    pub smtp_url: String,
    /// The sender (`Name <address>`).
    pub from: String,
    /// Where links in mails point (registration, login, email validation).
    pub base_url: String,
    /// The folder for `.eml` files when `smtp_url` is empty. Empty:
    /// `<database.data_dir>/mail`.
    pub dir: String,
    /// How long one SMTP delivery may take, in seconds.
    pub timeout_secs: u64,
    /// The first retry waits this long, in milliseconds; each further one
    /// twice as long, up to `retry_max_ms`.
    pub retry_initial_ms: u64,
    pub retry_max_ms: u64,
    /// Most mails a worker takes at once.
    pub batch: u32,
    /// How often the worker looks for due mails when nothing wakes it, in
    /// milliseconds.
    pub poll_interval_ms: u64,
}

impl Default for MailConfig {
    fn default() -> Self {
        Self {
            smtp_url: String::new(),
            from: "Roster <roster@localhost>".into(),
            base_url: "http://localhost:8080".into(),
            dir: String::new(),
            timeout_secs: 30,
            retry_initial_ms: 1_000,
            retry_max_ms: 15 * 60 * 1_000,
            batch: 10,
            poll_interval_ms: 1_000,
        }
    }
}

impl MailConfig {
    /// Refuses settings that cannot work, naming the key.
    pub fn validate(&self) -> anyhow::Result<()> {
        self.from
            .parse::<lettre::message::Mailbox>()
            .map_err(|e| anyhow::anyhow!("mail.from `{}` is not a mailbox: {e}", self.from))?;
        anyhow::ensure!(
            self.base_url.starts_with("http://") || self.base_url.starts_with("https://"),
            "mail.base_url must start with http:// or https://"
        );
        anyhow::ensure!(self.batch > 0, "mail.batch must be above 0");
        anyhow::ensure!(
            (1..=3600).contains(&self.timeout_secs),
            "mail.timeout_secs must be between 1 and 3600"
        );
        anyhow::ensure!(
            self.retry_initial_ms > 0 && self.retry_initial_ms <= self.retry_max_ms,
            "mail.retry_initial_ms must be above 0 and at most mail.retry_max_ms"
        );
        anyhow::ensure!(
            self.retry_max_ms <= 24 * 3600 * 1000,
            "mail.retry_max_ms must be at most a day"
        );
        Ok(())
    }
}
