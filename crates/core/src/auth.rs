//! Who is calling, and what may they do.
//!
//! A caller sends `authorization: Bearer <token>`. The [`Authenticator`]
//! resolves the token to a `roster.v1.AuthInfoResponse` through a
//! [`CredentialResolver`] (in production: the access service's
//! `EntityAccess.AuthInfo`), keeps the answer briefly, and drops it early
//! when an event says a key, session or user changed. Services then check
//! rights through [`Caller`].
//!
//! Internal RPCs are called with the cluster key in `x-roster-cluster-key`
//! instead; it is compared in constant time against the configured keys.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::events::names;
use crate::resend::ResendingChannel;
use roster_proto::v1::entity_access_client::EntityAccessClient;
use roster_proto::v1::{AuthInfoRequest, AuthInfoResponse, Right};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tonic::Status;
use tonic::transport::Channel;

use crate::events::EventBus;
use crate::ratelimit::RateLimitConfig;
use crate::rights::RightSet;

/// The metadata key carrying the cluster key on internal calls.
pub const CLUSTER_KEY_HEADER: &str = "x-roster-cluster-key";

/// The message of the `UNAUTHENTICATED` answer to a wrong cluster key.
const INVALID_CLUSTER_KEY: &str = "invalid cluster key";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// How long a resolved credential is reused without asking again.
    pub cache_ttl_ms: u64,
    /// Most cached credentials per process.
    pub cache_capacity: usize,
    /// Proxies (addresses or CIDR ranges such as `10.0.0.0/8`) whose
    /// `x-forwarded-for` is believed: behind them, the client address used
    /// for rate limits and events is the last address in that header that
    /// is not itself a trusted proxy. Empty: the TCP peer is the client.
    pub trusted_proxies: Vec<String>,
    /// The server key under which bearer-token secrets (API keys, session
    /// and login tokens) are hashed for storage. Changing it invalidates
    /// every stored token. Required with PostgreSQL; empty: a built-in
    /// key, accepted only for the embedded default (SQLite).
    pub token_hash_key: crate::secret::Secret,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            cache_ttl_ms: 1000,
            cache_capacity: 100_000,
            trusted_proxies: Vec::new(),
            token_hash_key: Default::default(),
        }
    }
}

/// Turns a bearer token into what it may do.
#[async_trait::async_trait]
pub trait CredentialResolver: Send + Sync + 'static {
    /// `UNAUTHENTICATED` for unknown, expired or malformed tokens.
    async fn resolve(&self, token: &str) -> Result<AuthInfoResponse, Status>;
}

/// What one service presents when it calls another: the first cluster key.
#[derive(Clone)]
pub struct ClusterCredential(tonic::metadata::MetadataValue<tonic::metadata::Ascii>);

impl ClusterCredential {
    /// Refuses a key that cannot travel in a header.
    pub fn new(key: &str) -> anyhow::Result<Self> {
        key.parse()
            .map(Self)
            .map_err(|_| anyhow::anyhow!("the cluster key is not valid header text"))
    }

    /// `message` as a request of this service to another: with the cluster
    /// key and the current trace context.
    pub fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        crate::telemetry::inject_trace_context(request.metadata_mut());
        request
            .metadata_mut()
            .insert(CLUSTER_KEY_HEADER, self.0.clone());
        request
    }
}

/// Resolves credentials by calling `EntityAccess.AuthInfo` with the
/// cluster key.
#[derive(Clone)]
pub struct GrpcCredentialResolver {
    client: EntityAccessClient<ResendingChannel>,
    cluster_key: String,
}

impl GrpcCredentialResolver {
    pub fn new(channel: Channel, cluster_key: String) -> Self {
        Self {
            client: EntityAccessClient::new(ResendingChannel::new(channel)),
            cluster_key,
        }
    }
}

#[async_trait::async_trait]
impl CredentialResolver for GrpcCredentialResolver {
    async fn resolve(&self, token: &str) -> Result<AuthInfoResponse, Status> {
        let mut request = tonic::Request::new(AuthInfoRequest {
            token: token.to_string(),
        });
        crate::telemetry::inject_trace_context(request.metadata_mut());
        request.metadata_mut().insert(
            CLUSTER_KEY_HEADER,
            self.cluster_key
                .parse()
                .map_err(|_| Status::internal("invalid cluster key"))?,
        );
        match self.client.clone().auth_info(request).await {
            Ok(response) => Ok(response.into_inner()),
            Err(status) => match status.code() {
                // The access service refused this process, not the caller:
                // the deployment's cluster keys disagree.
                tonic::Code::Unauthenticated if status.message() == INVALID_CLUSTER_KEY => {
                    tracing::error!(
                        "the access service refuses this process's cluster key; check cluster.keys"
                    );
                    Err(Status::unavailable("credential resolution is unavailable"))
                }
                tonic::Code::Unauthenticated | tonic::Code::PermissionDenied => Err(status),
                // No access service to ask (yet): the credential cannot be
                // checked, so it is not accepted.
                tonic::Code::Unimplemented | tonic::Code::NotFound => {
                    Err(Status::unauthenticated("credential cannot be verified"))
                }
                _ => {
                    tracing::warn!(code = ?status.code(), "credential resolution failed");
                    Err(Status::unavailable("credential resolution is unavailable"))
                }
            },
        }
    }
}

/// The cluster keys this process accepts on internal RPCs.
#[derive(Clone, Default)]
pub struct ClusterKeys(Arc<Vec<Vec<u8>>>);

impl ClusterKeys {
    pub fn new(keys: impl IntoIterator<Item = String>) -> Self {
        Self(Arc::new(
            keys.into_iter()
                .filter(|k| !k.is_empty())
                .map(String::into_bytes)
                .collect(),
        ))
    }

    /// Whether `presented` is one of the keys, in constant time per key.
    pub fn accepts(&self, presented: &[u8]) -> bool {
        let mut ok = subtle::Choice::from(0);
        for key in self.0.iter() {
            ok |= key.as_slice().ct_eq(presented);
        }
        ok.into()
    }
}

/// The caller of one request.
#[derive(Debug, Clone)]
pub enum Caller {
    /// No credential.
    Anonymous,
    /// Another Roster service, proven by the cluster key.
    Cluster,
    /// A user's credential.
    User(Arc<AuthInfoResponse>),
}

impl Caller {
    /// The user behind the credential, if any.
    pub fn user_id(&self) -> Option<&str> {
        match self {
            Caller::User(info) => info.user_ids.as_ref().map(|ids| ids.user_id.as_str()),
            _ => None,
        }
    }

    /// Approved admins and other services.
    pub fn is_admin(&self) -> bool {
        match self {
            Caller::User(info) => info.is_admin,
            Caller::Cluster => true,
            Caller::Anonymous => false,
        }
    }

    pub fn is_cluster(&self) -> bool {
        matches!(self, Caller::Cluster)
    }

    /// The caller's rights on `user_id`: the credential's own rights on its
    /// own user, plus its universal rights (admins) on every user.
    pub fn rights_on(&self, user_id: &str) -> RightSet {
        match self {
            Caller::Anonymous => RightSet::EMPTY,
            Caller::Cluster => RightSet::all(),
            Caller::User(info) => {
                let universal = rights_of(info.universal_rights.as_ref());
                if self.user_id() == Some(user_id) {
                    rights_of(info.rights.as_ref()).union(universal)
                } else {
                    universal
                }
            }
        }
    }

    /// The caller's universal rights (valid on every user).
    pub fn universal_rights(&self) -> RightSet {
        match self {
            Caller::Anonymous => RightSet::EMPTY,
            Caller::Cluster => RightSet::all(),
            Caller::User(info) => rights_of(info.universal_rights.as_ref()),
        }
    }

    /// Fails with `UNAUTHENTICATED` for anonymous callers.
    pub fn require_authenticated(&self) -> Result<(), Status> {
        match self {
            Caller::Anonymous => Err(Status::unauthenticated("no credentials")),
            _ => Ok(()),
        }
    }

    /// Requires `right` on `user_id`: `UNAUTHENTICATED` without a
    /// credential, `PERMISSION_DENIED` naming the missing right otherwise.
    pub fn require(&self, user_id: &str, right: Right) -> Result<(), Status> {
        self.require_authenticated()?;
        if self.rights_on(user_id).contains(right) {
            Ok(())
        } else {
            Err(Status::permission_denied(format!(
                "missing right {}",
                right.as_str_name()
            )))
        }
    }

    /// Requires another Roster service (the cluster key), for internal
    /// methods: `UNAUTHENTICATED` without a credential, `PERMISSION_DENIED`
    /// for every user credential, admins' included.
    pub fn require_cluster(&self) -> Result<(), Status> {
        match self {
            Caller::Cluster => Ok(()),
            Caller::Anonymous => Err(Status::unauthenticated("no credentials")),
            Caller::User(_) => Err(Status::permission_denied(
                "internal method: only Roster services may call it (cluster key)",
            )),
        }
    }

    /// Requires a universal right (admins): `UNAUTHENTICATED` without a
    /// credential, `PERMISSION_DENIED` otherwise.
    pub fn require_universal(&self, right: Right) -> Result<(), Status> {
        self.require_authenticated()?;
        if self.universal_rights().contains(right) {
            Ok(())
        } else {
            Err(Status::permission_denied(format!(
                "missing right {} (admins only)",
                right.as_str_name()
            )))
        }
    }

    /// The credential's type and ID, for events (never the secret).
    pub fn event_authentication(&self) -> Option<roster_proto::v1::EventAuthentication> {
        match self {
            Caller::Anonymous => None,
            Caller::Cluster => Some(roster_proto::v1::EventAuthentication {
                token_type: "cluster".into(),
                ..Default::default()
            }),
            Caller::User(info) => Some(roster_proto::v1::EventAuthentication {
                token_type: info.token_type.clone(),
                token_id: info.token_id.clone(),
                user_ids: info.user_ids.clone(),
            }),
        }
    }
}

/// Whether the credential's own expiry has passed: a cached answer never
/// outlives the credential.
fn expired(info: &AuthInfoResponse) -> bool {
    info.expires_at.as_ref().is_some_and(|at| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let now_secs = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
        (at.seconds, at.nanos) <= (now_secs, now.subsec_nanos() as i32)
    })
}

fn rights_of(rights: Option<&roster_proto::v1::Rights>) -> RightSet {
    rights
        .map(|r| RightSet::from_i32s(&r.rights))
        .unwrap_or_default()
}

/// The outcome of one resolution, shared by the requests waiting for it.
type Resolution = tokio::sync::OnceCell<Result<Arc<AuthInfoResponse>, Status>>;

struct CacheEntry {
    info: Arc<AuthInfoResponse>,
    at: Instant,
}

/// Resolves callers, with a short cache that events can clear.
pub struct Authenticator {
    resolver: Arc<dyn CredentialResolver>,
    cluster_keys: ClusterKeys,
    wrong_keys: WrongClusterKeys,
    // With a separate internal listener: its port, the only one where
    // cluster keys are accepted.
    cluster_port: Option<u16>,
    trusted_proxies: TrustedProxies,
    ttl: Duration,
    capacity: usize,
    // Keyed by the SHA-256 of the token, so raw tokens are not kept around.
    cache: Mutex<HashMap<[u8; 32], CacheEntry>>,
    // One shared resolution per token being resolved: when an answer
    // expires under load, the requests that need it meanwhile wait for that
    // one resolution and share its outcome instead of each asking the
    // access service.
    inflight: Mutex<HashMap<[u8; 32], Arc<Resolution>>>,
    // Counts invalidations. An answer fetched while one happened may
    // predate it, so it is used for its request but not cached.
    epoch: std::sync::atomic::AtomicU64,
}

impl Authenticator {
    pub fn new(
        resolver: Arc<dyn CredentialResolver>,
        cluster_keys: ClusterKeys,
        config: &AuthConfig,
    ) -> Self {
        Self {
            resolver,
            cluster_keys,
            wrong_keys: WrongClusterKeys::new(RateLimitConfig::default()),
            cluster_port: None,
            trusted_proxies: TrustedProxies::default(),
            ttl: Duration::from_millis(config.cache_ttl_ms),
            capacity: config.cache_capacity.max(1),
            cache: Mutex::new(HashMap::new()),
            inflight: Mutex::new(HashMap::new()),
            epoch: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Believes `x-forwarded-for` from these proxies.
    pub fn with_trusted_proxies(mut self, proxies: TrustedProxies) -> Self {
        self.trusted_proxies = proxies;
        self
    }

    /// How many wrong cluster keys one client address may present per
    /// window before its cluster-key calls are refused unchecked.
    pub fn with_wrong_cluster_key_limit(mut self, limit: RateLimitConfig) -> Self {
        self.wrong_keys = WrongClusterKeys::new(limit);
        self
    }

    /// Who is calling. No credential gives [`Caller::Anonymous`]; a
    /// malformed header, an unknown or expired token, or a wrong cluster
    /// key gives `UNAUTHENTICATED`.
    /// Accepts cluster keys only on connections to local port `port` (the
    /// internal listener), so a key that leaks is of no use from the
    /// public side. `None`: on every port.
    pub fn with_cluster_port(mut self, port: Option<u16>) -> Self {
        self.cluster_port = port;
        self
    }

    /// A client address that presented too many wrong cluster keys gets
    /// `RESOURCE_EXHAUSTED` for its cluster-key calls until its window ends.
    /// A cluster key on the public listener, when the internal services
    /// have their own, gets `PERMISSION_DENIED`.
    pub async fn caller<T>(&self, request: &tonic::Request<T>) -> Result<Caller, Status> {
        if let Some(port) = self.cluster_port
            && request.metadata().contains_key(CLUSTER_KEY_HEADER)
            && request.local_addr().map(|a| a.port()) != Some(port)
        {
            return Err(Status::permission_denied(
                "cluster keys are accepted on the internal listener only",
            ));
        }
        self.caller_at(request.metadata(), self.client_ip(request))
            .await
    }

    /// As [`Authenticator::caller`], for a credential kept from an earlier
    /// request (no client address: wrong cluster keys are not counted).
    pub async fn caller_from_metadata(
        &self,
        metadata: &tonic::metadata::MetadataMap,
    ) -> Result<Caller, Status> {
        self.caller_at(metadata, None).await
    }

    async fn caller_at(
        &self,
        metadata: &tonic::metadata::MetadataMap,
        client: Option<IpAddr>,
    ) -> Result<Caller, Status> {
        if let Some(key) = metadata.get(CLUSTER_KEY_HEADER) {
            return self.check_cluster_key(key.as_bytes(), client);
        }
        let Some(header) = metadata.get("authorization") else {
            return Ok(Caller::Anonymous);
        };
        let header = header
            .to_str()
            .map_err(|_| Status::unauthenticated("malformed authorization header"))?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| Status::unauthenticated("authorization must be `Bearer <token>`"))?;
        Ok(Caller::User(self.resolve(token).await?))
    }

    fn check_cluster_key(
        &self,
        presented: &[u8],
        client: Option<IpAddr>,
    ) -> Result<Caller, Status> {
        let slot = client.map(|ip| format!("cluster-key:{ip}"));
        if let Some(slot) = &slot
            && self.wrong_keys.limiter.exhausted(slot)
        {
            return Err(Status::resource_exhausted(
                "too many wrong cluster keys from this address; try again later",
            ));
        }
        if self.cluster_keys.accepts(presented) {
            return Ok(Caller::Cluster);
        }
        if let Some(slot) = &slot {
            self.wrong_keys.limiter.allow(&[slot]);
        }
        self.wrong_keys.report(client);
        Err(Status::unauthenticated(INVALID_CLUSTER_KEY))
    }

    async fn resolve(&self, token: &str) -> Result<Arc<AuthInfoResponse>, Status> {
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(info) = self.cached(&key) {
            crate::metrics::credential_cache(true);
            return Ok(info);
        }
        crate::metrics::credential_cache(false);
        if self.ttl.is_zero() {
            // Caching is off: every request has its credential checked.
            return self.resolve_uncached(key, token).await;
        }
        let resolution = self
            .inflight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key)
            .or_default()
            .clone();
        let resolved = resolution
            .get_or_init(|| self.resolve_uncached(key, token))
            .await
            .clone();
        // The first one done takes the shared resolution away, so requests
        // arriving from now on start from the cache again.
        let mut inflight = self.inflight.lock().unwrap_or_else(|e| e.into_inner());
        if inflight
            .get(&key)
            .is_some_and(|current| Arc::ptr_eq(current, &resolution))
        {
            inflight.remove(&key);
        }
        resolved
    }

    async fn resolve_uncached(
        &self,
        key: [u8; 32],
        token: &str,
    ) -> Result<Arc<AuthInfoResponse>, Status> {
        use std::sync::atomic::Ordering;
        let epoch = self.epoch.load(Ordering::SeqCst);
        let info = Arc::new(self.resolver.resolve(token).await?);
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        // Checked under the cache lock, which every invalidation takes after
        // counting itself: an answer that may have missed one is not kept.
        if self.epoch.load(Ordering::SeqCst) != epoch {
            return Ok(info);
        }
        if cache.len() >= self.capacity {
            let ttl = self.ttl;
            cache.retain(|_, e| e.at.elapsed() < ttl);
            if cache.len() >= self.capacity {
                cache.clear();
            }
            // Resolutions left behind by requests cancelled while they
            // waited.
            self.inflight
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .retain(|_, resolution| Arc::strong_count(resolution) > 1);
        }
        cache.insert(
            key,
            CacheEntry {
                info: info.clone(),
                at: Instant::now(),
            },
        );
        Ok(info)
    }

    fn cached(&self, key: &[u8; 32]) -> Option<Arc<AuthInfoResponse>> {
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache
            .get(key)
            .filter(|e| e.at.elapsed() < self.ttl && !expired(&e.info))
            .map(|e| e.info.clone())
    }

    /// Drops every cached answer about `user_id`.
    pub fn forget_user(&self, user_id: &str) {
        self.epoch.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache.retain(|_, e| {
            e.info
                .user_ids
                .as_ref()
                .is_none_or(|ids| ids.user_id != user_id)
        });
    }

    /// Drops every cached answer.
    pub fn forget_all(&self) {
        self.epoch.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.cache.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// Number of cached answers (for tests and metrics).
    pub fn cached_len(&self) -> usize {
        self.cache.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Listens for events that change what a credential may do and drops
    /// the cached answers they concern. Every process runs this (fan-out);
    /// the cache TTL heals a missed event.
    pub async fn spawn_invalidation(
        self: &Arc<Self>,
        bus: Arc<dyn EventBus>,
    ) -> anyhow::Result<tokio::task::JoinHandle<()>> {
        let mut streams = Vec::new();
        for pattern in INVALIDATING_EVENTS {
            streams.push(bus.subscribe(pattern).await?);
        }
        let mut events = futures::stream::select_all(streams);
        let me = Arc::downgrade(self);
        Ok(tokio::spawn(async move {
            use futures::StreamExt;
            while let Some(event) = events.next().await {
                let Some(auth) = me.upgrade() else { break };
                let users = crate::events::user_ids(&event);
                if users.is_empty() {
                    auth.forget_all();
                }
                for user in users {
                    auth.forget_user(&user);
                }
            }
        }))
    }
}

/// Events after which a cached credential may be wrong.
pub const INVALIDATING_EVENTS: &[&str] = &[
    names::USER_UPDATE,
    "user.update.>",
    names::USER_DELETE,
    names::USER_PURGE,
    names::API_KEY_ALL,
    names::SESSION_ALL,
    names::LOGOUT,
    names::USER_LOCK,
    crate::events::lifecycle::ALL,
    // A factor added can lift the policy's limit on a session.
    crate::events::mfa::ALL,
];

/// One request's caller and where it came from, for rights checks and for
/// the events the request causes.
#[derive(Debug, Clone)]
pub struct CallContext {
    pub caller: Caller,
    pub remote_ip: String,
    pub user_agent: String,
    pub correlation_id: String,
}

impl CallContext {
    /// Fills in who caused `event` and from where (never a secret).
    pub fn stamp(&self, event: &mut roster_proto::v1::Event) {
        event.authentication = self.caller.event_authentication();
        event.trace_context = crate::telemetry::current_trace_context();
        event.remote_ip = self.remote_ip.clone();
        event.user_agent = self.user_agent.clone();
        if !self.correlation_id.is_empty() {
            event.correlation_ids.push(self.correlation_id.clone());
        }
    }

    /// The context of work a service does because of `event`: done as the
    /// cluster, on behalf of whoever caused the event, whose origin and
    /// event ID it carries on.
    pub fn for_event(event: &roster_proto::v1::Event) -> Self {
        CallContext {
            caller: Caller::Cluster,
            remote_ip: event.remote_ip.clone(),
            user_agent: event.user_agent.clone(),
            correlation_id: format!("event:{}", event.unique_id),
        }
    }

    /// The client address, for rate limits: the IPv4 address, or the /64
    /// of an IPv6 one (one host is routinely given a whole /64, so limits
    /// per IPv6 address would be limits per attempt).
    pub fn client_key(&self) -> String {
        client_key_of(&self.remote_ip)
    }
}

/// See [`CallContext::client_key`].
pub fn client_key_of(remote_ip: &str) -> String {
    match remote_ip.parse::<IpAddr>().map(|ip| ip.to_canonical()) {
        Ok(IpAddr::V6(v6)) => {
            let s = v6.segments();
            format!("ip6:{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
        Ok(IpAddr::V4(v4)) => format!("ip:{v4}"),
        Err(_) => format!("ip:{remote_ip}"),
    }
}

impl Authenticator {
    /// The caller and origin of `request`.
    pub async fn context<T>(&self, request: &tonic::Request<T>) -> Result<CallContext, Status> {
        let caller = self.caller(request).await?;
        Ok(CallContext {
            caller,
            remote_ip: self
                .client_ip(request)
                .map(|ip| ip.to_string())
                .unwrap_or_default(),
            user_agent: text(request, "user-agent"),
            correlation_id: text(request, "x-request-id"),
        })
    }

    /// The client behind `request`: its TCP peer, or the address a trusted
    /// proxy forwarded.
    fn client_ip<T>(&self, request: &tonic::Request<T>) -> Option<IpAddr> {
        let forwarded = request
            .metadata()
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok());
        request
            .remote_addr()
            .map(|a| self.trusted_proxies.client(a.ip(), forwarded))
    }
}

/// A header's text, cut to 256 characters, or empty.
fn text<T>(request: &tonic::Request<T>, key: &str) -> String {
    request
        .metadata()
        .get(key)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.chars().take(256).collect::<String>())
        .unwrap_or_default()
}

/// Wrong cluster keys: counted per client address, and reported in the log
/// at most once per [`WRONG_KEY_LOG_EVERY`], so a flood cannot fill it.
struct WrongClusterKeys {
    limiter: crate::ratelimit::RateLimiter,
    log: Mutex<(Option<Instant>, u64)>,
}

/// The shortest gap between two log lines about wrong cluster keys.
const WRONG_KEY_LOG_EVERY: Duration = Duration::from_secs(10);

impl WrongClusterKeys {
    fn new(limit: RateLimitConfig) -> Self {
        Self {
            limiter: crate::ratelimit::RateLimiter::new(limit),
            log: Mutex::new((None, 0)),
        }
    }

    /// Logs the wrong key's origin (never the key), or counts it among the
    /// ones the next line will mention.
    fn report(&self, client: Option<IpAddr>) {
        let mut log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        let (last, suppressed) = &mut *log;
        if last.is_some_and(|at| at.elapsed() < WRONG_KEY_LOG_EVERY) {
            *suppressed += 1;
            return;
        }
        let peer = client.map_or_else(|| "unknown".to_string(), |ip| ip.to_string());
        tracing::warn!(
            %peer,
            also_since_last_report = *suppressed,
            "a caller presented a wrong cluster key (x-roster-cluster-key); if it is a Roster service, cluster.keys differ between processes"
        );
        *last = Some(Instant::now());
        *suppressed = 0;
    }
}

/// Proxies whose `x-forwarded-for` header is believed.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<(IpAddr, u8)>);

impl TrustedProxies {
    /// Parses addresses and CIDR ranges (`10.0.0.0/8`, `fd00::/8`,
    /// `192.0.2.7`), naming the first bad one.
    pub fn parse(entries: &[String]) -> anyhow::Result<Self> {
        let mut ranges = Vec::new();
        for entry in entries {
            let bad = || {
                anyhow::anyhow!("auth.trusted_proxies: `{entry}` is not an address or CIDR range")
            };
            let (addr, len) = match entry.split_once('/') {
                Some((addr, len)) => (addr, Some(len.parse::<u8>().map_err(|_| bad())?)),
                None => (entry.as_str(), None),
            };
            let addr: IpAddr = addr.trim().parse().map_err(|_| bad())?;
            let max = if addr.is_ipv4() { 32 } else { 128 };
            let len = len.unwrap_or(max);
            anyhow::ensure!(len <= max, bad());
            ranges.push((addr, len));
        }
        Ok(Self(ranges))
    }

    fn contains(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|(net, len)| match (net, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => prefix_eq(&net.octets(), &ip.octets(), *len),
            (IpAddr::V6(net), IpAddr::V6(ip)) => prefix_eq(&net.octets(), &ip.octets(), *len),
            _ => false,
        })
    }

    /// The client behind `peer`: the peer itself unless it is a trusted
    /// proxy, else the right-most address of `forwarded` that is not a
    /// trusted proxy (addresses further left could be forged by the
    /// client). Unparsable entries end the walk at the peer's answer.
    pub fn client(&self, peer: IpAddr, forwarded: Option<&str>) -> IpAddr {
        if !self.contains(peer) {
            return peer;
        }
        let mut client = peer;
        for hop in forwarded.unwrap_or_default().rsplit(',') {
            let Ok(ip) = hop.trim().parse::<IpAddr>() else {
                break;
            };
            client = ip;
            if !self.contains(ip) {
                break;
            }
        }
        client
    }
}

/// Whether the first `len` bits of `a` and `b` agree.
fn prefix_eq(a: &[u8], b: &[u8], len: u8) -> bool {
    let full = usize::from(len / 8);
    let rest = len % 8;
    if a[..full] != b[..full] {
        return false;
    }
    if rest == 0 {
        return true;
    }
    let mask = 0xffu8 << (8 - rest);
    a[full] & mask == b[full] & mask
}

#[cfg(test)]
mod tests {
    use super::*;
    use roster_proto::v1::{Rights, UserIdentifiers};

    #[test]
    fn ipv6_clients_are_limited_per_64_and_mapped_ipv4_as_ipv4() {
        assert_eq!(
            client_key_of("2001:db8:1:2:aaaa::1"),
            client_key_of("2001:db8:1:2:ffff:1:2:3")
        );
        assert_ne!(
            client_key_of("2001:db8:1:2::1"),
            client_key_of("2001:db8:1:3::1")
        );
        assert_eq!(client_key_of("::ffff:192.0.2.1"), "ip:192.0.2.1");
        assert_eq!(client_key_of("192.0.2.1"), "ip:192.0.2.1");
    }

    #[test]
    fn the_client_is_the_peer_unless_the_peer_is_a_trusted_proxy() {
        let proxies =
            TrustedProxies::parse(&["10.0.0.0/8".to_string(), "192.0.2.7".to_string()]).unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        // An untrusted peer cannot claim another address.
        assert_eq!(
            proxies.client(ip("203.0.113.9"), Some("1.2.3.4")),
            ip("203.0.113.9")
        );
        // Behind the proxies: the right-most address that is not a proxy.
        assert_eq!(
            proxies.client(ip("10.1.2.3"), Some("6.6.6.6, 198.51.100.4, 192.0.2.7")),
            ip("198.51.100.4")
        );
        // No header: the proxy itself.
        assert_eq!(proxies.client(ip("10.1.2.3"), None), ip("10.1.2.3"));
        // Garbage stops the walk.
        assert_eq!(
            proxies.client(ip("10.1.2.3"), Some("nonsense")),
            ip("10.1.2.3")
        );
        assert!(TrustedProxies::parse(&["10.0.0.0/33".to_string()]).is_err());
        assert!(TrustedProxies::parse(&["proxy.internal".to_string()]).is_err());
        let v6 = TrustedProxies::parse(&["fd00::/8".to_string()]).unwrap();
        assert_eq!(
            v6.client(ip("fd12::1"), Some("2001:db8::5")),
            ip("2001:db8::5")
        );
    }

    proptest::proptest! {
        #[test]
        fn client_resolution_never_panics(header in ".*", len in 0u8..=32) {
            let proxies = TrustedProxies::parse(&[format!("10.0.0.0/{len}")]).unwrap();
            let _ = proxies.client("10.0.0.1".parse().unwrap(), Some(&header));
        }
    }

    fn info(user: &str, rights: &[Right], admin: bool) -> AuthInfoResponse {
        AuthInfoResponse {
            user_ids: Some(UserIdentifiers {
                user_id: user.into(),
                email: String::new(),
            }),
            rights: Some(Rights {
                rights: rights.iter().map(|r| *r as i32).collect(),
            }),
            universal_rights: Some(if admin {
                RightSet::all().to_proto()
            } else {
                Rights::default()
            }),
            is_admin: admin,
            ..Default::default()
        }
    }

    #[test]
    fn a_user_has_its_rights_on_itself_only() {
        let caller = Caller::User(Arc::new(info("alice", &[Right::UserAll], false)));
        assert!(caller.require("alice", Right::UserDelete).is_ok());
        assert_eq!(
            caller.require("bob", Right::UserInfo).unwrap_err().code(),
            tonic::Code::PermissionDenied
        );
        assert_eq!(
            caller
                .require_universal(Right::UserList)
                .unwrap_err()
                .code(),
            tonic::Code::PermissionDenied
        );
    }

    #[test]
    fn admins_have_universal_rights_on_everyone() {
        let caller = Caller::User(Arc::new(info("root-admin", &[], true)));
        assert!(caller.require("bob", Right::UserInfo).is_ok());
        assert!(caller.require_universal(Right::UserPurge).is_ok());
    }

    #[test]
    fn anonymous_callers_are_unauthenticated() {
        assert_eq!(
            Caller::Anonymous
                .require("bob", Right::UserInfo)
                .unwrap_err()
                .code(),
            tonic::Code::Unauthenticated
        );
    }

    #[test]
    fn cluster_keys_compare_whole_keys() {
        let keys = ClusterKeys::new(["secret-one".to_string(), String::new()]);
        assert!(keys.accepts(b"secret-one"));
        assert!(!keys.accepts(b"secret-on"));
        assert!(!keys.accepts(b""));
    }

    fn cluster_request(key: &str, from: &str) -> tonic::Request<()> {
        let mut r = tonic::Request::new(());
        r.metadata_mut()
            .insert(CLUSTER_KEY_HEADER, key.parse().unwrap());
        r.extensions_mut()
            .insert(tonic::transport::server::TcpConnectInfo {
                local_addr: None,
                remote_addr: Some(from.parse().unwrap()),
            });
        r
    }

    #[tokio::test]
    async fn an_address_presenting_wrong_cluster_keys_is_refused_without_checking() {
        let right = "r".repeat(32);
        let auth = Authenticator::new(
            Arc::new(Counting(Default::default())),
            ClusterKeys::new([right.clone()]),
            &AuthConfig::default(),
        )
        .with_wrong_cluster_key_limit(RateLimitConfig {
            max_attempts: 3,
            window_secs: 60,
        });
        let code = |key: &str, from: &str| {
            let request = cluster_request(key, from);
            let auth = &auth;
            async move { auth.caller(&request).await.map(|c| c.is_cluster()) }
        };
        assert!(code(&right, "192.0.2.1:5000").await.unwrap());
        for _ in 0..3 {
            let refused = code("wrong", "192.0.2.1:5000").await.unwrap_err();
            assert_eq!(refused.code(), tonic::Code::Unauthenticated);
        }
        // Over the limit: even the right key is refused from that address,
        // on every port, until the window ends.
        for key in ["wrong", right.as_str()] {
            let refused = code(key, "192.0.2.1:6000").await.unwrap_err();
            assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
        }
        // Other addresses are not affected.
        assert!(code(&right, "192.0.2.2:5000").await.unwrap());
    }

    /// A log sink for one test.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_flood_of_wrong_cluster_keys_logs_one_line_naming_the_peer_and_not_the_key() {
        let auth = Authenticator::new(
            Arc::new(Counting(Default::default())),
            ClusterKeys::new(["r".repeat(32)]),
            &AuthConfig::default(),
        )
        .with_wrong_cluster_key_limit(RateLimitConfig {
            max_attempts: 0,
            window_secs: 60,
        });
        let log = Captured::default();
        let writer = log.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            for _ in 0..1000 {
                let refused = auth
                    .check_cluster_key(b"guess-1234", Some("198.51.100.7".parse().unwrap()))
                    .unwrap_err();
                assert_eq!(refused.code(), tonic::Code::Unauthenticated);
            }
        });
        let text = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(
            text.contains("WARN") && text.contains("198.51.100.7"),
            "{text}"
        );
        assert!(!text.contains("guess-1234"), "{text}");
    }

    #[tokio::test]
    async fn with_an_internal_port_cluster_keys_are_refused_on_other_ports() {
        let key = "k".repeat(32);
        let auth = Authenticator::new(
            Arc::new(Counting(Default::default())),
            ClusterKeys::new([key.clone()]),
            &AuthConfig::default(),
        )
        .with_cluster_port(Some(9002));
        let on_port = |port: u16| {
            let mut r = cluster_request(&key, "192.0.2.1:5000");
            r.extensions_mut()
                .insert(tonic::transport::server::TcpConnectInfo {
                    local_addr: Some(format!("127.0.0.1:{port}").parse().unwrap()),
                    remote_addr: Some("192.0.2.1:5000".parse().unwrap()),
                });
            r
        };
        assert!(auth.caller(&on_port(9002)).await.unwrap().is_cluster());
        let refused = auth.caller(&on_port(9001)).await.unwrap_err();
        assert_eq!(refused.code(), tonic::Code::PermissionDenied);
    }

    struct Counting(std::sync::atomic::AtomicUsize);

    #[async_trait::async_trait]
    impl CredentialResolver for Counting {
        async fn resolve(&self, token: &str) -> Result<AuthInfoResponse, Status> {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if token == "good" {
                Ok(info("alice", &[Right::UserAll], false))
            } else {
                Err(Status::unauthenticated("unknown token"))
            }
        }
    }

    fn request(auth: &str) -> tonic::Request<()> {
        let mut r = tonic::Request::new(());
        r.metadata_mut()
            .insert("authorization", auth.parse().unwrap());
        r
    }

    #[tokio::test]
    async fn answers_are_cached_until_forgotten() {
        let resolver = Arc::new(Counting(Default::default()));
        let auth = Authenticator::new(
            resolver.clone(),
            ClusterKeys::default(),
            &AuthConfig::default(),
        );
        let caller = auth.caller(&request("Bearer good")).await.unwrap();
        assert_eq!(caller.user_id(), Some("alice"));
        auth.caller(&request("Bearer good")).await.unwrap();
        assert_eq!(resolver.0.load(std::sync::atomic::Ordering::SeqCst), 1);
        auth.forget_user("alice");
        auth.caller(&request("Bearer good")).await.unwrap();
        assert_eq!(resolver.0.load(std::sync::atomic::Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn an_event_about_a_user_drops_its_cached_credentials() {
        use crate::events::{EventBus, MemoryBus, new_event};
        use roster_proto::v1::{EntityIdentifiers, entity_identifiers};

        let bus: Arc<dyn EventBus> = Arc::new(MemoryBus::new());
        let resolver = Arc::new(Counting(Default::default()));
        let auth = Arc::new(Authenticator::new(
            resolver.clone(),
            ClusterKeys::default(),
            &AuthConfig {
                cache_ttl_ms: 60_000,
                ..AuthConfig::default()
            },
        ));
        auth.spawn_invalidation(bus.clone()).await.unwrap();
        auth.caller(&request("Bearer good")).await.unwrap();
        assert_eq!(auth.cached_len(), 1);

        let about = |user: &str| {
            vec![EntityIdentifiers {
                ids: Some(entity_identifiers::Ids::UserIds(UserIdentifiers {
                    user_id: user.into(),
                    email: String::new(),
                })),
            }]
        };
        bus.publish(&new_event("user.api-key.delete", about("alice"), None))
            .await
            .unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(5), async {
            while auth.cached_len() != 0 {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the cached answer for alice is dropped");
        auth.caller(&request("Bearer good")).await.unwrap();
        assert_eq!(resolver.0.load(std::sync::atomic::Ordering::SeqCst), 2);
    }

    struct Expiring(std::sync::atomic::AtomicUsize);

    #[async_trait::async_trait]
    impl CredentialResolver for Expiring {
        async fn resolve(&self, _: &str) -> Result<AuthInfoResponse, Status> {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let mut answer = info("alice", &[Right::UserAll], false);
            // Expired a second ago: valid when resolved, stale at once.
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap();
            answer.expires_at = Some(prost_types::Timestamp {
                seconds: now.as_secs() as i64 - 1,
                nanos: 0,
            });
            Ok(answer)
        }
    }

    #[tokio::test]
    async fn a_cached_answer_never_outlives_its_credential() {
        let resolver = Arc::new(Expiring(Default::default()));
        let auth = Authenticator::new(
            resolver.clone(),
            ClusterKeys::default(),
            &AuthConfig {
                cache_ttl_ms: 60_000,
                ..AuthConfig::default()
            },
        );
        auth.caller(&request("Bearer good")).await.unwrap();
        auth.caller(&request("Bearer good")).await.unwrap();
        assert_eq!(resolver.0.load(std::sync::atomic::Ordering::SeqCst), 2);
    }

    struct Slow(std::sync::atomic::AtomicUsize);

    #[async_trait::async_trait]
    impl CredentialResolver for Slow {
        async fn resolve(&self, _: &str) -> Result<AuthInfoResponse, Status> {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            Ok(info("alice", &[Right::UserAll], false))
        }
    }

    #[tokio::test]
    async fn concurrent_requests_with_one_token_resolve_it_once() {
        let resolver = Arc::new(Slow(Default::default()));
        let auth = Arc::new(Authenticator::new(
            resolver.clone(),
            ClusterKeys::default(),
            &AuthConfig::default(),
        ));
        let callers: Vec<_> = (0..20)
            .map(|_| {
                let auth = auth.clone();
                tokio::spawn(async move { auth.caller(&request("Bearer good")).await })
            })
            .collect();
        for caller in callers {
            assert_eq!(caller.await.unwrap().unwrap().user_id(), Some("alice"));
        }
        assert_eq!(resolver.0.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert!(
            auth.inflight.lock().unwrap().is_empty(),
            "no resolution is left behind"
        );
    }

    #[tokio::test]
    async fn waiting_requests_share_a_refusal_and_uncached_settings_resolve_each() {
        struct SlowNo(std::sync::atomic::AtomicUsize);
        #[async_trait::async_trait]
        impl CredentialResolver for SlowNo {
            async fn resolve(&self, _: &str) -> Result<AuthInfoResponse, Status> {
                self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                Err(Status::unauthenticated("invalid token"))
            }
        }
        for (ttl_ms, expected_calls) in [(1000, 1), (0, 8)] {
            let resolver = Arc::new(SlowNo(Default::default()));
            let auth = Arc::new(Authenticator::new(
                resolver.clone(),
                ClusterKeys::default(),
                &AuthConfig {
                    cache_ttl_ms: ttl_ms,
                    ..AuthConfig::default()
                },
            ));
            let callers: Vec<_> = (0..8)
                .map(|_| {
                    let auth = auth.clone();
                    tokio::spawn(async move { auth.caller(&request("Bearer bad")).await })
                })
                .collect();
            for caller in callers {
                let refused = caller.await.unwrap().unwrap_err();
                assert_eq!(refused.code(), tonic::Code::Unauthenticated);
            }
            assert_eq!(
                resolver.0.load(std::sync::atomic::Ordering::SeqCst),
                expected_calls,
                "cache_ttl_ms {ttl_ms}"
            );
        }
    }

    /// Resolves after being told to, so a test can invalidate meanwhile.
    struct Gated(tokio::sync::Notify, std::sync::atomic::AtomicUsize);

    #[async_trait::async_trait]
    impl CredentialResolver for Gated {
        async fn resolve(&self, _: &str) -> Result<AuthInfoResponse, Status> {
            if self.1.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                self.0.notified().await;
            }
            Ok(info("alice", &[Right::UserAll], false))
        }
    }

    #[tokio::test]
    async fn an_answer_fetched_across_an_invalidation_is_not_cached() {
        let resolver = Arc::new(Gated(Default::default(), Default::default()));
        let auth = Arc::new(Authenticator::new(
            resolver.clone(),
            ClusterKeys::default(),
            &AuthConfig {
                cache_ttl_ms: 60_000,
                ..AuthConfig::default()
            },
        ));
        let pending = {
            let auth = auth.clone();
            tokio::spawn(async move { auth.caller(&request("Bearer good")).await })
        };
        while resolver.1.load(std::sync::atomic::Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        // The change lands while the answer is on its way.
        auth.forget_user("alice");
        resolver.0.notify_one();
        pending.await.unwrap().unwrap();
        assert_eq!(
            auth.cached_len(),
            0,
            "the possibly stale answer is not kept"
        );
        auth.caller(&request("Bearer good")).await.unwrap();
        assert_eq!(resolver.1.load(std::sync::atomic::Ordering::SeqCst), 2);
        assert_eq!(auth.cached_len(), 1);
    }

    #[tokio::test]
    async fn malformed_headers_are_unauthenticated() {
        let auth = Authenticator::new(
            Arc::new(Counting(Default::default())),
            ClusterKeys::default(),
            &AuthConfig::default(),
        );
        for header in ["Basic abc", "Bearer ", "Bearer bad"] {
            let err = auth.caller(&request(header)).await.unwrap_err();
            assert_eq!(err.code(), tonic::Code::Unauthenticated, "{header}");
        }
        let anonymous = auth.caller(&tonic::Request::new(())).await.unwrap();
        assert!(matches!(anonymous, Caller::Anonymous));
    }
}
