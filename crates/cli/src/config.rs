//! Contexts and stored credentials, in the user's config folder
//! (`$XDG_CONFIG_HOME/roster` on Linux, or `ROSTER_CONFIG_DIR`):
//!
//! - `config.yaml`: the named contexts (address, TLS settings, which
//!   credential to use) and the current one;
//! - `credentials/<context>.token`: the session token `roster login`
//!   stored for a context, mode 0600 in a 0700 folder.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use crate::error::{CliError, Result};

/// The address used when neither a flag, `ROSTER_ADDR` nor the context
/// names one: `rosterd`'s default.
pub const DEFAULT_ADDR: &str = "http://127.0.0.1:8884";

/// The context used when none was added or chosen.
pub const DEFAULT_CONTEXT: &str = "default";

/// Everything in `config.yaml`.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_context: Option<String>,
    #[serde(default)]
    pub contexts: BTreeMap<String, Context>,
}

/// Where one Roster deployment is, and how to talk to it.
#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Context {
    /// `http://host:port`, `https://host:port`, or `host:port` (plaintext
    /// unless TLS settings are given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addr: Option<String>,
    /// Addresses of single services in a split deployment, by service
    /// (`user-registry`, `access`, `sessions`, `invitations`,
    /// `notifications`); a service not listed is reached at `addr`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub services: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Tls::is_empty")]
    pub tls: Tls,
    /// A file holding the credential (an API key) to use instead of the
    /// session `roster login` stores.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
}

/// TLS settings of a context, matching the server's `tls.*` settings.
#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    /// PEM CA certificates to trust for the server's certificate (the
    /// system roots when empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate, for servers that ask for one (mutual TLS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
    /// The name checked on the server's certificate (the address's host
    /// when empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
}

impl Tls {
    pub fn is_empty(&self) -> bool {
        self == &Tls::default()
    }

    /// Settings of `over` where given, else these.
    pub fn merged(&self, over: &Tls) -> Tls {
        Tls {
            ca_file: over.ca_file.clone().or_else(|| self.ca_file.clone()),
            cert_file: over.cert_file.clone().or_else(|| self.cert_file.clone()),
            key_file: over.key_file.clone().or_else(|| self.key_file.clone()),
            server_name: over
                .server_name
                .clone()
                .or_else(|| self.server_name.clone()),
        }
    }
}

/// The config folder and what is in it.
pub struct Store {
    dir: PathBuf,
}

impl Store {
    /// The folder named by `dir`, else the user's config folder.
    pub fn open(dir: Option<PathBuf>) -> Result<Store> {
        let dir = match dir {
            Some(dir) => dir,
            None => directories::ProjectDirs::from("", "", "roster")
                .map(|dirs| dirs.config_dir().to_path_buf())
                .ok_or_else(|| {
                    CliError::invalid(
                        "no home folder to keep the configuration in: set ROSTER_CONFIG_DIR",
                    )
                })?,
        };
        Ok(Store { dir })
    }

    fn config_path(&self) -> PathBuf {
        self.dir.join("config.yaml")
    }

    /// The configuration; empty when there is no file yet.
    pub fn load(&self) -> Result<Config> {
        let path = self.config_path();
        match fs::read_to_string(&path) {
            Ok(text) => serde_norway::from_str(&text)
                .map_err(|e| CliError::invalid(format!("{}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Config::default()),
            Err(e) => Err(anyhow::Error::new(e)
                .context(format!("read {}", path.display()))
                .into()),
        }
    }

    pub fn save(&self, config: &Config) -> Result<()> {
        let text = serde_norway::to_string(config).context("encode the configuration")?;
        self.write_private(&self.config_path(), &text)
    }

    fn token_path(&self, context: &str) -> PathBuf {
        self.dir
            .join("credentials")
            .join(format!("{context}.token"))
    }

    /// The session token stored for `context`, if any.
    pub fn session_token(&self, context: &str) -> Result<Option<String>> {
        read_token(&self.token_path(context))
    }

    /// Stores the session token of `context` (mode 0600), and says where.
    pub fn store_session_token(&self, context: &str, token: &str) -> Result<PathBuf> {
        let path = self.token_path(context);
        self.write_private(&path, &format!("{token}\n"))?;
        Ok(path)
    }

    /// Forgets the session token of `context`; true if there was one.
    pub fn remove_session_token(&self, context: &str) -> Result<bool> {
        match fs::remove_file(self.token_path(context)) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(anyhow::Error::new(e)
                .context("remove the stored token")
                .into()),
        }
    }

    /// Writes `path` readable by its owner only, in folders only the
    /// owner can enter, replacing it in one step. The new content goes to
    /// a fresh file of a random name (created exclusively, mode 0600, so no
    /// file or link planted in the folder is written through), renamed
    /// over `path` once complete.
    fn write_private(&self, path: &Path, text: &str) -> Result<()> {
        let parent = path.parent().unwrap_or(&self.dir);
        create_private_dir(parent)?;
        let mut file = tempfile::NamedTempFile::new_in(parent)
            .with_context(|| format!("write into {}", parent.display()))?;
        file.write_all(text.as_bytes())
            .and_then(|()| file.as_file().sync_all())
            .with_context(|| format!("write {}", path.display()))?;
        file.persist(path)
            .map_err(|e| e.error)
            .with_context(|| format!("write {}", path.display()))?;
        Ok(())
    }
}

/// Makes `dir` (and its parents) and leaves it enterable by its owner
/// only, also when it existed with wider permissions.
fn create_private_dir(dir: &Path) -> Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        builder.mode(0o700);
    }
    builder
        .create(dir)
        .with_context(|| format!("create {}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .with_context(|| format!("make {} private (0700)", dir.display()))?;
    }
    Ok(())
}

/// The first line of a token file; `None` when the file does not exist.
pub fn read_token(path: &Path) -> Result<Option<String>> {
    match fs::read_to_string(path) {
        Ok(text) => {
            let token = text.trim();
            if token.is_empty() {
                Err(CliError::invalid(format!(
                    "the token file {} is empty",
                    path.display()
                )))
            } else {
                Ok(Some(token.to_string()))
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(anyhow::Error::new(e)
            .context(format!("read {}", path.display()))
            .into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_context_survives_a_round_trip_through_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(Some(dir.path().join("roster"))).unwrap();
        let mut config = Config::default();
        let mut context = Context {
            addr: Some("https://roster.example:8884".into()),
            ..Context::default()
        };
        context.tls.ca_file = Some("/etc/roster/ca.pem".into());
        context
            .services
            .insert("access".into(), "https://access.example:8884".into());
        config.contexts.insert("prod".into(), context.clone());
        config.current_context = Some("prod".into());
        store.save(&config).unwrap();
        let loaded = store.load().unwrap();
        assert_eq!(loaded.current_context.as_deref(), Some("prod"));
        assert_eq!(loaded.contexts["prod"], context);
    }

    #[cfg(unix)]
    #[test]
    fn a_stored_token_is_readable_by_its_owner_only() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(Some(dir.path().join("roster"))).unwrap();
        let path = store.store_session_token("default", "rst.secret").unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dir_mode = fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(dir_mode, 0o700);
        assert_eq!(
            store.session_token("default").unwrap().as_deref(),
            Some("rst.secret")
        );
        assert!(store.remove_session_token("default").unwrap());
        assert_eq!(store.session_token("default").unwrap(), None);
    }

    #[cfg(unix)]
    #[test]
    fn a_planted_link_and_a_wide_folder_do_not_expose_the_token() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let credentials = dir.path().join("roster/credentials");
        fs::create_dir_all(&credentials).unwrap();
        fs::set_permissions(&credentials, fs::Permissions::from_mode(0o755)).unwrap();
        // What the old fixed temporary name would have written through.
        let elsewhere = dir.path().join("elsewhere");
        std::os::unix::fs::symlink(&elsewhere, credentials.join(".default.token.tmp")).unwrap();
        let store = Store::open(Some(dir.path().join("roster"))).unwrap();
        let path = store.store_session_token("default", "rst.secret").unwrap();
        assert!(!elsewhere.exists(), "nothing is written through the link");
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&credentials), 0o700, "the folder is made private");
    }

    #[test]
    fn an_unknown_key_in_the_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(Some(dir.path().to_path_buf())).unwrap();
        fs::write(
            dir.path().join("config.yaml"),
            "contexts:\n  a:\n    adress: x\n",
        )
        .unwrap();
        let err = store.load().unwrap_err();
        assert!(err.to_string().contains("adress"), "{err}");
        assert_eq!(err.exit_code(), crate::error::exit::INVALID_INPUT);
    }
}
