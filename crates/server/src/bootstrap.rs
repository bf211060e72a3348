//! The first admin, from configuration: created once through the user
//! registry, and (when asked) an API key with every right written to a
//! file, so a fresh install can be driven by scripts.

use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use roster_core::auth::ClusterCredential;
use roster_proto::v1::user_access_client::UserAccessClient;
use roster_proto::v1::user_registry_client::UserRegistryClient;
use roster_proto::v1::{
    CreateUserApiKeyRequest, CreateUserRequest, Right, State, User, UserIdentifiers,
};
use tonic::Code;
use tonic::transport::Channel;

use crate::settings::BootstrapConfig;

/// How long the bootstrap keeps trying while the services come up.
const PATIENCE: Duration = Duration::from_secs(120);

pub struct Bootstrap {
    config: BootstrapConfig,
    password: String,
    users: UserRegistryClient<Channel>,
    access: UserAccessClient<Channel>,
    cluster: ClusterCredential,
}

impl Bootstrap {
    pub fn new(
        config: BootstrapConfig,
        users: Channel,
        access: Channel,
        cluster_key: String,
    ) -> anyhow::Result<Self> {
        let password = if config.admin_password_file.is_empty() {
            config.admin_password.expose().to_string()
        } else {
            std::fs::read_to_string(&config.admin_password_file)
                .with_context(|| {
                    format!(
                        "bootstrap.admin_password_file: cannot read {}",
                        config.admin_password_file
                    )
                })?
                .trim_end_matches(['\n', '\r'])
                .to_string()
        };
        Ok(Self {
            config,
            password,
            users: UserRegistryClient::new(users),
            access: UserAccessClient::new(access),
            cluster: ClusterCredential::new(&cluster_key)?,
        })
    }

    /// Creates the admin unless it exists, then the key file unless it
    /// exists. Retries while the services are unreachable.
    pub async fn run(&self) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        let mut delay = Duration::from_millis(100);
        loop {
            match self.attempt().await {
                Ok(()) => return Ok(()),
                Err(Attempt::Retry(status)) if tokio::time::Instant::now() < deadline => {
                    tracing::debug!(code = ?status.code(), "bootstrap waits for the services");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
                Err(Attempt::Retry(status)) => {
                    anyhow::bail!("the services did not answer in time: {status}")
                }
                Err(Attempt::Fail(error)) => return Err(error),
            }
        }
    }

    async fn attempt(&self) -> Result<(), Attempt> {
        let user_id = self.config.admin_user_id.clone();
        let email = if self.config.admin_email.is_empty() {
            format!("{user_id}@roster.invalid")
        } else {
            self.config.admin_email.clone()
        };
        let password = if self.password.is_empty() {
            // Nobody knows this one: the admin works through the API key
            // (or sets a password through a temporary one). The policy
            // refuses passwords that contain the user ID.
            loop {
                let random = format!(
                    "{}-A1",
                    roster_core::token::random_secret(roster_core::token::SECRET_BYTES)
                );
                if !random.contains(&user_id) {
                    break random;
                }
            }
        } else {
            self.password.clone()
        };
        let created = self
            .users
            .clone()
            .create(self.cluster.request(CreateUserRequest {
                user: Some(User {
                    ids: Some(ids(&user_id)),
                    primary_email_address: email,
                    password,
                    admin: true,
                    state: State::Approved as i32,
                    ..Default::default()
                }),
                invitation_token: String::new(),
            }))
            .await;
        match created {
            Ok(_) => tracing::info!(%user_id, "bootstrap admin created"),
            Err(status) if status.code() == Code::AlreadyExists => {
                tracing::info!(%user_id, "bootstrap admin exists already")
            }
            Err(status) => return Err(classify(status, "creating the bootstrap admin")),
        }
        if self.config.admin_api_key_file.is_empty() {
            return Ok(());
        }
        self.write_key_file(&user_id).await
    }

    async fn write_key_file(&self, user_id: &str) -> Result<(), Attempt> {
        let path = PathBuf::from(&self.config.admin_api_key_file);
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))
                .map_err(Attempt::Fail)?;
        }
        // Claim the file first: an existing file means the key was made.
        let mut file = match create_secret_file(&path) {
            Ok(file) => file,
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
                tracing::info!(path = %path.display(), "bootstrap API key file exists already");
                return Ok(());
            }
            Err(error) => {
                return Err(Attempt::Fail(
                    anyhow::Error::new(error).context(format!("cannot create {}", path.display())),
                ));
            }
        };
        let created = self
            .access
            .clone()
            .create_api_key(self.cluster.request(CreateUserApiKeyRequest {
                user_ids: Some(ids(user_id)),
                name: "bootstrap".into(),
                rights: vec![Right::All as i32],
                expires_at: None,
            }))
            .await;
        let key = match created {
            Ok(key) => key.into_inner(),
            Err(status) => {
                drop(file);
                let _ = std::fs::remove_file(&path);
                return Err(classify(status, "creating the bootstrap API key"));
            }
        };
        let written = file
            .write_all(format!("{}\n", key.key).as_bytes())
            .and_then(|()| file.sync_all());
        if let Err(error) = written {
            let _ = std::fs::remove_file(&path);
            return Err(Attempt::Fail(
                anyhow::Error::new(error).context(format!("cannot write {}", path.display())),
            ));
        }
        tracing::info!(
            %user_id,
            api_key_id = %key.id,
            path = %path.display(),
            "bootstrap API key written"
        );
        Ok(())
    }
}

enum Attempt {
    /// The services are not reachable yet.
    Retry(tonic::Status),
    Fail(anyhow::Error),
}

fn classify(status: tonic::Status, doing: &str) -> Attempt {
    match status.code() {
        Code::Unavailable | Code::Unknown | Code::Cancelled | Code::DeadlineExceeded => {
            Attempt::Retry(status)
        }
        _ => Attempt::Fail(anyhow::anyhow!("{doing}: {status}")),
    }
}

/// A new file readable by its owner only; fails if the file exists.
fn create_secret_file(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    options.open(path)
}

fn ids(user_id: &str) -> UserIdentifiers {
    UserIdentifiers {
        user_id: user_id.to_string(),
        email: String::new(),
    }
}
