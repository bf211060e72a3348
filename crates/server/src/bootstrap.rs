//! The first admin, from configuration: created once through the user
//! registry, and (when asked) an API key with every right written to a
//! file, so a fresh install can be driven by scripts.
//!
//! The key is minted once per admin, not once per missing file: when the
//! file is gone but the admin holds a key named `bootstrap` already, no
//! other key is made (a lost or deleted file must not turn every restart
//! into a new full-rights key). To have a new one minted, delete the old
//! key (`UserAccess.DeleteAPIKey`) and restart.

use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use roster_core::auth::ClusterCredential;
use roster_proto::v1::user_access_client::UserAccessClient;
use roster_proto::v1::user_registry_client::UserRegistryClient;
use roster_proto::v1::{
    CreateUserApiKeyRequest, CreateUserRequest, ListUserApiKeysRequest, Right, State, User,
    UserIdentifiers,
};
use tonic::Code;
use tonic::transport::Channel;

use crate::settings::BootstrapConfig;

/// How long the bootstrap keeps trying while the services come up.
const PATIENCE: Duration = Duration::from_secs(120);

/// The name of the API key the bootstrap mints.
const KEY_NAME: &str = "bootstrap";

/// API keys read per page when looking for an earlier bootstrap key.
const KEY_PAGE: u32 = 1000;

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
            roster_core::files::create_private_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))
                .map_err(Attempt::Fail)?;
        }
        if path.exists() {
            tracing::info!(path = %path.display(), "bootstrap API key file exists already");
            return Ok(());
        }
        if let Some(key_id) = self.earlier_key(user_id).await? {
            tracing::warn!(
                %user_id,
                api_key_id = %key_id,
                path = %path.display(),
                "the bootstrap API key file is missing, but the admin has a bootstrap key already: \
                 no other is minted (delete that key to have a new one written)"
            );
            return Ok(());
        }
        // Claim the file first: an existing file means the key was made.
        let mut file = match roster_core::files::create_new_private_file(&path) {
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
                name: KEY_NAME.into(),
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

impl Bootstrap {
    /// The ID of a key named [`KEY_NAME`] that `user_id` holds, if any.
    async fn earlier_key(&self, user_id: &str) -> Result<Option<String>, Attempt> {
        for page in 1.. {
            let keys = self
                .access
                .clone()
                .list_api_keys(self.cluster.request(ListUserApiKeysRequest {
                    user_ids: Some(ids(user_id)),
                    order: String::new(),
                    limit: KEY_PAGE,
                    page,
                }))
                .await
                .map_err(|status| classify(status, "listing the bootstrap admin's API keys"))?
                .into_inner()
                .api_keys;
            if let Some(key) = keys.iter().find(|key| key.name == KEY_NAME) {
                return Ok(Some(key.id.clone()));
            }
            if keys.len() < KEY_PAGE as usize {
                break;
            }
        }
        Ok(None)
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

fn ids(user_id: &str) -> UserIdentifiers {
    UserIdentifiers {
        user_id: user_id.to_string(),
        email: String::new(),
    }
}
