//! The settings of the mailer (section `[mail]`) and of the invitations
//! (section `[invitations]`).

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MailConfig {
    /// Where mail goes: an SMTP URL such as `smtp://127.0.0.1:2525` (no
    /// TLS), `smtp://mail.example.com:587?tls=required` (STARTTLS) or
    /// `smtps://mail.example.com:465` (TLS), with `user:password@` when the
    /// server wants a login. Empty: mails are written as `.eml` files to
    /// `dir` instead (the embedded default).
    pub smtp_url: roster_core::secret::SecretUrl,
    /// The sender (`Name <address>`).
    pub from: String,
    /// Where links in mails point (registration, login, email validation).
    pub base_url: String,
    /// The folder for `.eml` files when `smtp_url` is empty. Empty:
    /// `<database.data_dir>/mail`.
    pub dir: String,
    /// How long `.eml` files stay in `dir`, in seconds: they carry secrets
    /// (tokens, temporary passwords), so the mailer removes older ones.
    /// 0 keeps them.
    pub file_retention_secs: u64,
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
            smtp_url: Default::default(),
            from: "Roster <roster@localhost>".into(),
            base_url: "http://localhost:8080".into(),
            dir: String::new(),
            file_retention_secs: 24 * 3600,
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
        anyhow::ensure!(
            self.file_retention_secs <= MAX_FILE_RETENTION_SECS,
            "mail.file_retention_secs must be at most {MAX_FILE_RETENTION_SECS} (a year)"
        );
        Ok(())
    }

    /// How long `.eml` files stay; `None`: for ever.
    pub fn file_retention(&self) -> Option<std::time::Duration> {
        (self.file_retention_secs > 0)
            .then(|| std::time::Duration::from_secs(self.file_retention_secs))
    }
}

/// The longest `mail.file_retention_secs`: a year.
const MAX_FILE_RETENTION_SECS: u64 = 365 * 24 * 3600;

/// The shortest invitation lifetime: a minute.
pub const MIN_TOKEN_TTL_SECS: u64 = 60;
/// The longest invitation lifetime: 90 days.
pub const MAX_TOKEN_TTL_SECS: u64 = 90 * 24 * 3600;
/// The shortest claim timeout: long enough for a registration to create
/// its user.
pub const MIN_CLAIM_TIMEOUT_SECS: u64 = 10;
/// The longest claim timeout: an hour.
pub const MAX_CLAIM_TIMEOUT_SECS: u64 = 3600;

/// The invitations' settings (section `[invitations]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InvitationsConfig {
    /// How long an invitation stays usable after it was (last) sent, in
    /// seconds: 7 days by default, between a minute and 90 days.
    pub token_ttl_secs: u64,
    /// How long a registration may hold an invitation it claimed
    /// (InvitationTokens.Claim) without settling it, in seconds. After
    /// that, another registration may take the claim over, once the user
    /// registry says the first one's user does not exist. 10 to 3600.
    pub claim_timeout_secs: u64,
}

impl Default for InvitationsConfig {
    fn default() -> Self {
        Self {
            token_ttl_secs: 7 * 24 * 3600,
            claim_timeout_secs: 300,
        }
    }
}

impl InvitationsConfig {
    /// Refuses settings that cannot work, naming the key.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            (MIN_TOKEN_TTL_SECS..=MAX_TOKEN_TTL_SECS).contains(&self.token_ttl_secs),
            "invitations.token_ttl_secs must be between {MIN_TOKEN_TTL_SECS} and {MAX_TOKEN_TTL_SECS} (90 days)"
        );
        anyhow::ensure!(
            (MIN_CLAIM_TIMEOUT_SECS..=MAX_CLAIM_TIMEOUT_SECS).contains(&self.claim_timeout_secs),
            "invitations.claim_timeout_secs must be between {MIN_CLAIM_TIMEOUT_SECS} and {MAX_CLAIM_TIMEOUT_SECS}"
        );
        Ok(())
    }

    /// [`token_ttl_secs`](Self::token_ttl_secs) as a duration, within the
    /// limits [`validate`](Self::validate) enforces.
    pub fn token_ttl(&self) -> chrono::Duration {
        let secs = self
            .token_ttl_secs
            .clamp(MIN_TOKEN_TTL_SECS, MAX_TOKEN_TTL_SECS);
        chrono::Duration::seconds(i64::try_from(secs).unwrap_or(i64::MAX))
    }

    /// [`claim_timeout_secs`](Self::claim_timeout_secs) as a duration,
    /// within the limits [`validate`](Self::validate) enforces.
    pub fn claim_timeout(&self) -> chrono::Duration {
        let secs = self
            .claim_timeout_secs
            .clamp(MIN_CLAIM_TIMEOUT_SECS, MAX_CLAIM_TIMEOUT_SECS);
        chrono::Duration::seconds(i64::try_from(secs).unwrap_or(i64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_valid() {
        assert!(MailConfig::default().validate().is_ok());
        let config = InvitationsConfig::default();
        assert!(config.validate().is_ok());
        assert_eq!(config.token_ttl(), chrono::Duration::days(7));
        assert_eq!(config.claim_timeout(), chrono::Duration::minutes(5));
    }

    #[test]
    fn invitation_settings_out_of_range_are_refused_naming_the_key() {
        for ttl in [0, 59, MAX_TOKEN_TTL_SECS + 1, u64::MAX] {
            let config = InvitationsConfig {
                token_ttl_secs: ttl,
                ..InvitationsConfig::default()
            };
            let error = config.validate().unwrap_err().to_string();
            assert!(
                error.contains("invitations.token_ttl_secs"),
                "{ttl}: {error}"
            );
        }
        for timeout in [0, 9, 3601, u64::MAX] {
            let config = InvitationsConfig {
                claim_timeout_secs: timeout,
                ..InvitationsConfig::default()
            };
            let error = config.validate().unwrap_err().to_string();
            assert!(
                error.contains("invitations.claim_timeout_secs"),
                "{timeout}: {error}"
            );
        }
        for ok in [MIN_TOKEN_TTL_SECS, MAX_TOKEN_TTL_SECS] {
            let config = InvitationsConfig {
                token_ttl_secs: ok,
                ..InvitationsConfig::default()
            };
            assert!(config.validate().is_ok());
        }
    }

    #[test]
    fn mail_files_stay_a_day_unless_configured() {
        let config = MailConfig::default();
        assert_eq!(
            config.file_retention(),
            Some(std::time::Duration::from_secs(24 * 3600))
        );
        let keep = MailConfig {
            file_retention_secs: 0,
            ..MailConfig::default()
        };
        assert_eq!(keep.file_retention(), None);
        let long = MailConfig {
            file_retention_secs: MAX_FILE_RETENTION_SECS + 1,
            ..MailConfig::default()
        };
        let error = long.validate().unwrap_err().to_string();
        assert!(error.contains("mail.file_retention_secs"), "{error}");
    }

    #[test]
    fn unknown_keys_are_refused() {
        let parsed: Result<InvitationsConfig, _> =
            serde_json::from_str(r#"{"token_ttl_secs": 60, "ttl": 1}"#);
        assert!(parsed.is_err());
        let parsed: InvitationsConfig =
            serde_json::from_str(r#"{"claim_timeout_secs": 30}"#).unwrap();
        assert_eq!(parsed.claim_timeout_secs, 30);
        assert_eq!(parsed.token_ttl_secs, 7 * 24 * 3600);
    }
}
