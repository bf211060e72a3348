//! Connections to Roster: one address for every service or one per
//! service, plaintext or TLS (a CA file, a client certificate), and the
//! credential sent as `authorization: Bearer <token>` on every call.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context as _;
use roster_proto::v1::authentication_client::AuthenticationClient;
use roster_proto::v1::entity_registry_search_client::EntityRegistrySearchClient;
use roster_proto::v1::external_user_registry_client::ExternalUserRegistryClient;
use roster_proto::v1::notification_service_client::NotificationServiceClient;
use roster_proto::v1::user_access_client::UserAccessClient;
use roster_proto::v1::user_authentication_factors_client::UserAuthenticationFactorsClient;
use roster_proto::v1::user_invitation_registry_client::UserInvitationRegistryClient;
use roster_proto::v1::user_lifecycle_client::UserLifecycleClient;
use roster_proto::v1::user_metadata_client::UserMetadataClient;
use roster_proto::v1::user_registry_client::UserRegistryClient;
use roster_proto::v1::user_session_registry_client::UserSessionRegistryClient;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::config::Tls;
use crate::error::{CliError, Result, chain};

/// The process that serves a gRPC service, by the name `rosterd start`
/// uses for it; a context may give each its own address.
#[derive(Debug, Clone, Copy)]
pub enum Service {
    UserRegistry,
    Access,
    Sessions,
    Invitations,
    Notifications,
}

impl Service {
    pub const NAMES: [&'static str; 5] = [
        "user-registry",
        "access",
        "sessions",
        "invitations",
        "notifications",
    ];

    pub fn name(self) -> &'static str {
        match self {
            Service::UserRegistry => Self::NAMES[0],
            Service::Access => Self::NAMES[1],
            Service::Sessions => Self::NAMES[2],
            Service::Invitations => Self::NAMES[3],
            Service::Notifications => Self::NAMES[4],
        }
    }
}

/// Where the services are, and how to reach them.
#[derive(Debug, Clone)]
pub struct Target {
    pub addr: String,
    pub services: BTreeMap<String, String>,
    pub tls: Tls,
}

/// A credential, sent with every call; never printed.
#[derive(Clone)]
pub struct Credential {
    header: MetadataValue<Ascii>,
}

impl Credential {
    pub fn new(token: &str) -> Result<Credential> {
        let mut header: MetadataValue<Ascii> = format!("Bearer {token}").parse().map_err(|_| {
            CliError::invalid("the token holds characters that cannot be sent in a header")
        })?;
        header.set_sensitive(true);
        Ok(Credential { header })
    }
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credential([REDACTED])")
    }
}

/// Adds the credential, when there is one, to each request.
#[derive(Clone, Debug)]
pub struct Auth(Option<Credential>);

impl Interceptor for Auth {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(credential) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", credential.header.clone());
        }
        Ok(request)
    }
}

pub type Svc = InterceptedService<Channel, Auth>;

/// Opens the channels commands call through.
#[derive(Debug)]
pub struct Connector {
    target: Target,
    credential: Option<Credential>,
}

impl Connector {
    pub fn new(target: Target, credential: Option<Credential>) -> Connector {
        Connector { target, credential }
    }

    /// The same target with `token` as the credential.
    pub fn with_token(&self, token: &str) -> Result<Connector> {
        Ok(Connector::new(
            self.target.clone(),
            Some(Credential::new(token)?),
        ))
    }

    pub fn has_credential(&self) -> bool {
        self.credential.is_some()
    }

    /// A connected channel to the process serving `service`.
    pub async fn channel(&self, service: Service) -> Result<Svc> {
        let addr = self
            .target
            .services
            .get(service.name())
            .unwrap_or(&self.target.addr);
        let channel = connect(addr, &self.target.tls).await?;
        Ok(InterceptedService::new(
            channel,
            Auth(self.credential.clone()),
        ))
    }

    pub async fn users(&self) -> Result<UserRegistryClient<Svc>> {
        Ok(UserRegistryClient::new(
            self.channel(Service::UserRegistry).await?,
        ))
    }

    pub async fn search(&self) -> Result<EntityRegistrySearchClient<Svc>> {
        Ok(EntityRegistrySearchClient::new(
            self.channel(Service::UserRegistry).await?,
        ))
    }

    pub async fn factors(&self) -> Result<UserAuthenticationFactorsClient<Svc>> {
        Ok(UserAuthenticationFactorsClient::new(
            self.channel(Service::UserRegistry).await?,
        ))
    }

    pub async fn lifecycle(&self) -> Result<UserLifecycleClient<Svc>> {
        Ok(UserLifecycleClient::new(
            self.channel(Service::UserRegistry).await?,
        ))
    }

    pub async fn metadata(&self) -> Result<UserMetadataClient<Svc>> {
        Ok(UserMetadataClient::new(
            self.channel(Service::UserRegistry).await?,
        ))
    }

    pub async fn external_users(&self) -> Result<ExternalUserRegistryClient<Svc>> {
        Ok(ExternalUserRegistryClient::new(
            self.channel(Service::UserRegistry).await?,
        ))
    }

    pub async fn access(&self) -> Result<UserAccessClient<Svc>> {
        Ok(UserAccessClient::new(self.channel(Service::Access).await?))
    }

    pub async fn authentication(&self) -> Result<AuthenticationClient<Svc>> {
        Ok(AuthenticationClient::new(
            self.channel(Service::Sessions).await?,
        ))
    }

    pub async fn sessions(&self) -> Result<UserSessionRegistryClient<Svc>> {
        Ok(UserSessionRegistryClient::new(
            self.channel(Service::Sessions).await?,
        ))
    }

    pub async fn invitations(&self) -> Result<UserInvitationRegistryClient<Svc>> {
        Ok(UserInvitationRegistryClient::new(
            self.channel(Service::Invitations).await?,
        ))
    }

    pub async fn notifications(&self) -> Result<NotificationServiceClient<Svc>> {
        Ok(NotificationServiceClient::new(
            self.channel(Service::Notifications).await?,
        ))
    }
}

/// The URI to dial: `https://` or `http://` as written; a bare
/// `host:port` is TLS when TLS settings are given, plaintext otherwise.
pub fn uri(addr: &str, tls: &Tls) -> String {
    if addr.starts_with("http://") || addr.starts_with("https://") {
        addr.to_string()
    } else if tls.is_empty() {
        format!("http://{addr}")
    } else {
        format!("https://{addr}")
    }
}

async fn connect(addr: &str, tls: &Tls) -> Result<Channel> {
    let uri = uri(addr, tls);
    let mut endpoint = Endpoint::from_shared(uri.clone())
        .map_err(|e| CliError::invalid(format!("invalid address `{addr}`: {e}")))?
        .connect_timeout(Duration::from_secs(10))
        .user_agent(concat!("roster/", env!("CARGO_PKG_VERSION")))
        .map_err(|e| CliError::invalid(format!("invalid address `{addr}`: {e}")))?;
    if uri.starts_with("https://") {
        endpoint = endpoint
            .tls_config(tls_config(tls)?)
            .map_err(|e| CliError::invalid(format!("TLS settings: {}", chain(&e))))?;
    } else if !tls.is_empty() {
        return Err(CliError::invalid(format!(
            "TLS settings are given but the address `{addr}` is plaintext (http://)"
        )));
    }
    endpoint.connect().await.map_err(|e| CliError::Connect {
        addr: uri,
        reason: chain(&e),
    })
}

fn tls_config(tls: &Tls) -> Result<ClientTlsConfig> {
    let mut config = ClientTlsConfig::new();
    match &tls.ca_file {
        Some(path) => {
            let pem = std::fs::read(path).with_context(|| format!("read {}", path.display()))?;
            config = config.ca_certificate(Certificate::from_pem(pem));
        }
        None => config = config.with_native_roots(),
    }
    match (&tls.cert_file, &tls.key_file) {
        (Some(cert), Some(key)) => {
            let cert = std::fs::read(cert).with_context(|| format!("read {}", cert.display()))?;
            let key = std::fs::read(key).with_context(|| format!("read {}", key.display()))?;
            config = config.identity(Identity::from_pem(cert, key));
        }
        (None, None) => {}
        _ => {
            return Err(CliError::invalid(
                "a client certificate needs both --tls-cert-file and --tls-key-file",
            ));
        }
    }
    if let Some(name) = &tls.server_name {
        config = config.domain_name(name.clone());
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_address_is_plaintext_unless_tls_is_configured() {
        let none = Tls::default();
        let ca = Tls {
            ca_file: Some("ca.pem".into()),
            ..Tls::default()
        };
        assert_eq!(uri("127.0.0.1:8884", &none), "http://127.0.0.1:8884");
        assert_eq!(uri("roster:8884", &ca), "https://roster:8884");
        assert_eq!(uri("http://a:1", &ca), "http://a:1");
        assert_eq!(uri("https://a:1", &none), "https://a:1");
    }

    #[test]
    fn a_credential_never_prints_its_token() {
        let credential = Credential::new("rak.id.secret").unwrap();
        assert!(!format!("{credential:?}").contains("secret"));
    }
}
