//! A rolling update under load: five `rosterd start <service>` processes
//! on PostgreSQL and JetStream, each behind a stand-in for a Kubernetes
//! Service, are replaced one by one while clients call every service and
//! a writer makes changes whose events another process turns into
//! notifications. No call may fail and no event may be lost.
//!
//! The stand-in is an L4 TCP proxy per service, as kube-proxy is: it sends
//! each new connection to one of the backends its endpoints controller
//! (a poller of each backend's gRPC readiness for the service's name)
//! last saw ready, and leaves open connections where they are until
//! either side closes them. Clients and the processes' `cluster.*_address`
//! settings point at the proxies, so replacing a process changes no
//! address.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prost::Message;
use roster_core::resend::ResendingChannel;
use roster_proto::v1::authentication_client::AuthenticationClient;
use roster_proto::v1::notification_service_client::NotificationServiceClient;
use roster_proto::v1::user_access_client::UserAccessClient;
use roster_proto::v1::user_invitation_registry_client::UserInvitationRegistryClient;
use roster_proto::v1::user_registry_client::UserRegistryClient;
use roster_proto::v1::user_session_registry_client::UserSessionRegistryClient;
use roster_proto::v1::{
    ApiKeyEventData, CreateUserApiKeyRequest, CreateUserRequest, GetUserRequest,
    ListInvitationsRequest, ListNotificationsRequest, ListUserApiKeysRequest,
    ListUserSessionsRequest, LoginRequest, NotificationType, Right, User,
};
use roster_test_support::{TestDb, TestNats, TestSmtp, with_token};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tonic::transport::Endpoint;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::ids;
use crate::process::{Rosterd, SERVICES, deployment_env, free_port, read_key_file};

/// How long the old process keeps serving after SIGTERM: longer than
/// [`FAILURE_THRESHOLD`] probe periods, so the proxies have stopped sending
/// it new connections before its listener closes.
const DRAIN_DELAY_MS: &str = "1500";
/// How often the endpoints controller probes each backend.
const PROBE_PERIOD: Duration = Duration::from_millis(150);
/// A probe slower than this counts as failed (Kubernetes' default).
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// Failed probes in a row that make a backend unready (Kubernetes'
/// default): one slow probe on a busy machine takes no backend out.
const FAILURE_THRESHOLD: u32 = 3;
/// The pause between two calls of one load task.
const PACE: Duration = Duration::from_millis(50);
/// Generous bounds for what should take a second or two.
const WAIT: Duration = Duration::from_secs(45);

const USER: &str = "rolling-user";
const PASSWORD: &str = "Violet-Horse-1234";

/// The health name the readiness probe asks for, per entry of [`SERVICES`].
const READINESS_NAMES: [&str; 5] = [
    "roster.v1.UserRegistry",
    "roster.v1.UserAccess",
    "roster.v1.Authentication",
    "roster.v1.UserInvitationRegistry",
    "roster.v1.NotificationService",
];

/// One backend of a proxy, as the endpoints controller last saw it.
struct Backend {
    addr: SocketAddr,
    ready: bool,
    /// Probes failed in a row since the last success.
    failures: u32,
}

/// The endpoints of one Service.
#[derive(Default)]
struct Endpoints {
    backends: Mutex<Vec<Backend>>,
    next: AtomicUsize,
    /// New connections that found no ready backend (and were closed).
    refused: AtomicU64,
}

impl Endpoints {
    fn add(&self, addr: SocketAddr) {
        self.backends.lock().unwrap().push(Backend {
            addr,
            ready: false,
            failures: 0,
        });
    }

    fn remove(&self, addr: SocketAddr) {
        self.backends.lock().unwrap().retain(|b| b.addr != addr);
    }

    fn is_ready(&self, addr: SocketAddr) -> bool {
        self.backends
            .lock()
            .unwrap()
            .iter()
            .any(|b| b.addr == addr && b.ready)
    }

    /// Counts a probe of `addr`: one success makes it ready,
    /// [`FAILURE_THRESHOLD`] failures in a row unready.
    fn probed(&self, addr: SocketAddr, serving: bool) {
        for backend in self.backends.lock().unwrap().iter_mut() {
            if backend.addr != addr {
                continue;
            }
            if serving {
                backend.failures = 0;
                backend.ready = true;
            } else {
                backend.failures += 1;
                if backend.failures >= FAILURE_THRESHOLD {
                    backend.ready = false;
                }
            }
        }
    }

    /// A ready backend, round robin.
    fn pick(&self) -> Option<SocketAddr> {
        let backends = self.backends.lock().unwrap();
        let ready: Vec<SocketAddr> = backends
            .iter()
            .filter(|b| b.ready)
            .map(|b| b.addr)
            .collect();
        if ready.is_empty() {
            return None;
        }
        Some(ready[self.next.fetch_add(1, Ordering::Relaxed) % ready.len()])
    }

    fn addrs(&self) -> Vec<SocketAddr> {
        self.backends
            .lock()
            .unwrap()
            .iter()
            .map(|b| b.addr)
            .collect()
    }
}

/// A Service: a stable address in front of the ready backends.
struct Proxy {
    addr: SocketAddr,
    endpoints: Arc<Endpoints>,
    tasks: Vec<JoinHandle<()>>,
}

impl Proxy {
    async fn start(readiness_name: &'static str) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let endpoints = Arc::new(Endpoints::default());
        let accept = tokio::spawn(accept(listener, endpoints.clone()));
        let probe = tokio::spawn(probe(readiness_name, endpoints.clone()));
        Proxy {
            addr,
            endpoints,
            tasks: vec![accept, probe],
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Waits until the endpoints controller saw `addr` ready.
    async fn wait_ready(&self, addr: SocketAddr) {
        let deadline = Instant::now() + WAIT;
        while !self.endpoints.is_ready(addr) {
            assert!(Instant::now() < deadline, "{addr} never became ready");
            tokio::time::sleep(PROBE_PERIOD / 3).await;
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Hands each new connection to a ready backend, bytes both ways until
/// either side closes (a half close is passed on, as TCP does).
async fn accept(listener: TcpListener, endpoints: Arc<Endpoints>) {
    loop {
        let Ok((mut inbound, _)) = listener.accept().await else {
            continue;
        };
        let Some(backend) = endpoints.pick() else {
            endpoints.refused.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        tokio::spawn(async move {
            let Ok(mut outbound) = TcpStream::connect(backend).await else {
                return;
            };
            let _ = inbound.set_nodelay(true);
            let _ = outbound.set_nodelay(true);
            let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
        });
    }
}

/// The kubelet's readiness probes and the endpoints controller: probes
/// every backend's readiness for `name` each [`PROBE_PERIOD`] over a new
/// connection, as the kubelet's gRPC probe does, and takes a backend out
/// after [`FAILURE_THRESHOLD`] failures in a row.
async fn probe(name: &'static str, endpoints: Arc<Endpoints>) {
    loop {
        for addr in endpoints.addrs() {
            let serving = tokio::time::timeout(PROBE_TIMEOUT, serving(addr, name))
                .await
                .unwrap_or(false);
            endpoints.probed(addr, serving);
        }
        tokio::time::sleep(PROBE_PERIOD).await;
    }
}

async fn serving(addr: SocketAddr, name: &str) -> bool {
    let Ok(channel) = Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
    else {
        return false;
    };
    HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: name.into(),
        })
        .await
        .is_ok_and(|r| r.into_inner().status == ServingStatus::Serving as i32)
}

/// The results of one kind of call.
struct Tally {
    rpc: &'static str,
    ok: AtomicU64,
    failed: AtomicU64,
    samples: Mutex<Vec<String>>,
}

impl Tally {
    fn new(rpc: &'static str) -> Arc<Tally> {
        Arc::new(Tally {
            rpc,
            ok: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            samples: Mutex::new(Vec::new()),
        })
    }

    fn record<T>(&self, result: Result<T, tonic::Status>) -> Option<T> {
        match result {
            Ok(value) => {
                self.ok.fetch_add(1, Ordering::Relaxed);
                Some(value)
            }
            Err(status) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                let mut samples = self.samples.lock().unwrap();
                if samples.len() < 5 {
                    samples.push(format!("{status:?}"));
                }
                None
            }
        }
    }
}

/// Calls `call` every [`PACE`] until `stop`, counting results in `tally`.
fn load<F, Fut>(stop: Arc<AtomicBool>, tally: Arc<Tally>, call: F) -> JoinHandle<()>
where
    F: Fn() -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), tonic::Status>> + Send,
{
    tokio::spawn(async move {
        while !stop.load(Ordering::Relaxed) {
            tally.record(call().await);
            tokio::time::sleep(PACE).await;
        }
    })
}

/// A client's own channel to a Service: it connects (again) through the
/// proxy whenever it has no connection, and sends a call again when its
/// connection closed before the server saw it, as gRPC's own clients do.
fn client(proxy: &Proxy) -> ResendingChannel {
    ResendingChannel::new(Endpoint::from_shared(proxy.url()).unwrap().connect_lazy())
}

/// The IDs of the API keys `user` was told about in ApiKeyCreated
/// notifications.
async fn notified_keys(
    channel: &ResendingChannel,
    admin_key: &str,
) -> Result<BTreeSet<String>, tonic::Status> {
    let mut keys = BTreeSet::new();
    for page in 1.. {
        let notifications = NotificationServiceClient::new(channel.clone())
            .list(with_token(
                ListNotificationsRequest {
                    receiver_ids: Some(ids(USER)),
                    limit: 1000,
                    page,
                    ..Default::default()
                },
                admin_key,
            ))
            .await?
            .into_inner()
            .notifications;
        if notifications.is_empty() {
            break;
        }
        for n in notifications {
            if n.notification_type() != NotificationType::ApiKeyCreated {
                continue;
            }
            let key = n
                .data
                .and_then(|any| ApiKeyEventData::decode(any.value.as_slice()).ok())
                .and_then(|data| data.api_key)
                .expect("an ApiKeyCreated notification carries its key");
            keys.insert(key.id);
        }
    }
    Ok(keys)
}

fn process_env(
    base: &[(&'static str, String)],
    service: &str,
    key_file: &Path,
) -> Vec<(&'static str, String)> {
    let mut env = base.to_vec();
    env.push(("ROSTER__SERVER__DRAIN_DELAY_MS", DRAIN_DELAY_MS.into()));
    if service == "access" {
        env.push(("ROSTER__BOOTSTRAP__ADMIN_USER_ID", "ops-admin".into()));
        env.push((
            "ROSTER__BOOTSTRAP__ADMIN_API_KEY_FILE",
            key_file.display().to_string(),
        ));
    }
    env
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replacing_every_process_one_by_one_under_load_fails_no_call_and_loses_no_event() {
    let started = Instant::now();
    let db = TestDb::new().await;
    let nats = TestNats::new();
    let smtp = TestSmtp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("admin.key");

    let mut proxies = Vec::new();
    for name in READINESS_NAMES {
        proxies.push(Proxy::start(name).await);
    }
    let mut base = deployment_env(&db, &nats, &smtp);
    base.extend([
        ("ROSTER__CLUSTER__USER_REGISTRY_ADDRESS", proxies[0].url()),
        ("ROSTER__CLUSTER__ACCESS_ADDRESS", proxies[1].url()),
        ("ROSTER__CLUSTER__SESSIONS_ADDRESS", proxies[2].url()),
        ("ROSTER__CLUSTER__INVITATIONS_ADDRESS", proxies[3].url()),
    ]);
    let envs: Vec<_> = SERVICES
        .iter()
        .map(|service| process_env(&base, service, &key_file))
        .collect();

    let mut processes = Vec::new();
    for (i, service) in SERVICES.iter().enumerate() {
        let process =
            Rosterd::start_on(free_port(), dir.path(), &["start", service], &envs[i]).await;
        let addr: SocketAddr = process.addr.parse().unwrap();
        proxies[i].endpoints.add(addr);
        proxies[i].wait_ready(addr).await;
        processes.push(process);
    }

    // A user to call about, with a session; the admin's key for the rest.
    let admin_key = read_key_file(&key_file).await;
    UserRegistryClient::new(client(&proxies[0]))
        .create(with_token(
            CreateUserRequest {
                user: Some(User {
                    ids: Some(ids(USER)),
                    primary_email_address: "rolling@work.example".into(),
                    password: PASSWORD.into(),
                    ..Default::default()
                }),
                invitation_token: String::new(),
            },
            &admin_key,
        ))
        .await
        .expect("create the user");
    let login = || async {
        AuthenticationClient::new(client(&proxies[2]))
            .login(LoginRequest {
                user_ids: Some(ids(USER)),
                password: PASSWORD.into(),
            })
            .await
    };
    let session = login().await.expect("log in").into_inner().token;

    // Steady load on every service, each task with its own channel.
    let stop = Arc::new(AtomicBool::new(false));
    let get_user = Tally::new("UserRegistry.Get");
    let list_keys = Tally::new("UserAccess.ListAPIKeys");
    let list_sessions = Tally::new("UserSessionRegistry.List");
    let logins = Tally::new("Authentication.Login");
    let list_invitations = Tally::new("UserInvitationRegistry.List");
    let list_notifications = Tally::new("NotificationService.List");
    let create_keys = Tally::new("UserAccess.CreateAPIKey");
    let tallies = [
        &get_user,
        &list_keys,
        &list_sessions,
        &logins,
        &list_invitations,
        &list_notifications,
        &create_keys,
    ];
    let mut tasks = Vec::new();
    for _ in 0..2 {
        let (channel, key) = (client(&proxies[0]), admin_key.clone());
        tasks.push(load(stop.clone(), get_user.clone(), move || {
            let (channel, key) = (channel.clone(), key.clone());
            async move {
                let request = GetUserRequest {
                    user_ids: Some(ids(USER)),
                    field_mask: None,
                };
                UserRegistryClient::new(channel)
                    .get(with_token(request, &key))
                    .await
                    .map(drop)
            }
        }));
        let (channel, key) = (client(&proxies[1]), admin_key.clone());
        tasks.push(load(stop.clone(), list_keys.clone(), move || {
            let (channel, key) = (channel.clone(), key.clone());
            async move {
                let request = ListUserApiKeysRequest {
                    user_ids: Some(ids(USER)),
                    limit: 20,
                    ..Default::default()
                };
                UserAccessClient::new(channel)
                    .list_api_keys(with_token(request, &key))
                    .await
                    .map(drop)
            }
        }));
        let (channel, token) = (client(&proxies[2]), session.clone());
        tasks.push(load(stop.clone(), list_sessions.clone(), move || {
            let (channel, token) = (channel.clone(), token.clone());
            async move {
                let request = ListUserSessionsRequest {
                    user_ids: Some(ids(USER)),
                    limit: 20,
                    ..Default::default()
                };
                UserSessionRegistryClient::new(channel)
                    .list(with_token(request, &token))
                    .await
                    .map(drop)
            }
        }));
        let (channel, key) = (client(&proxies[3]), admin_key.clone());
        tasks.push(load(stop.clone(), list_invitations.clone(), move || {
            let (channel, key) = (channel.clone(), key.clone());
            async move {
                let request = ListInvitationsRequest {
                    limit: 20,
                    ..Default::default()
                };
                UserInvitationRegistryClient::new(channel)
                    .list(with_token(request, &key))
                    .await
                    .map(drop)
            }
        }));
        let (channel, key) = (client(&proxies[4]), admin_key.clone());
        tasks.push(load(stop.clone(), list_notifications.clone(), move || {
            let (channel, key) = (channel.clone(), key.clone());
            async move {
                let request = ListNotificationsRequest {
                    receiver_ids: Some(ids(USER)),
                    limit: 20,
                    ..Default::default()
                };
                NotificationServiceClient::new(channel)
                    .list(with_token(request, &key))
                    .await
                    .map(drop)
            }
        }));
    }
    // Logins hash the password (argon2): fewer of them, so the load does
    // not starve the machine.
    let channel = client(&proxies[2]);
    tasks.push(load(stop.clone(), logins.clone(), move || {
        let channel = channel.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            AuthenticationClient::new(channel)
                .login(LoginRequest {
                    user_ids: Some(ids(USER)),
                    password: PASSWORD.into(),
                })
                .await
                .map(drop)
        }
    }));
    // The writer: API keys, whose `user.api-key.create` events go from the
    // access process's outbox through JetStream to the notifications
    // process, which asks the user registry about the user.
    let created = Arc::new(Mutex::new(BTreeSet::new()));
    let writer = {
        let (stop, tally, created) = (stop.clone(), create_keys.clone(), created.clone());
        let (channel, key) = (client(&proxies[1]), admin_key.clone());
        tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let request = CreateUserApiKeyRequest {
                    user_ids: Some(ids(USER)),
                    name: format!("rolling-{n}"),
                    rights: vec![Right::UserInfo as i32],
                    expires_at: None,
                };
                let result = UserAccessClient::new(channel.clone())
                    .create_api_key(with_token(request, &key))
                    .await;
                if let Some(api_key) = tally.record(result) {
                    created.lock().unwrap().insert(api_key.into_inner().id);
                }
                tokio::time::sleep(PACE * 2).await;
            }
        })
    };

    // Connections refused while the processes came up (calling peers
    // not started yet) are not part of the update.
    for proxy in &proxies {
        proxy.endpoints.refused.store(0, Ordering::Relaxed);
    }
    // Let the load settle, then roll every service, as a Deployment with
    // maxSurge 1 and maxUnavailable 0 does: the new process first, the old
    // one stopped once the new one is ready.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut exits = Vec::new();
    let mut timings = Vec::new();
    for (i, service) in SERVICES.iter().enumerate() {
        let t0 = Instant::now();
        let new = Rosterd::start_on(free_port(), dir.path(), &["start", service], &envs[i]).await;
        let new_addr: SocketAddr = new.addr.parse().unwrap();
        proxies[i].endpoints.add(new_addr);
        proxies[i].wait_ready(new_addr).await;
        let old = std::mem::replace(&mut processes[i], new);
        let old_addr: SocketAddr = old.addr.parse().unwrap();
        let ready_in = t0.elapsed();
        let t0 = Instant::now();
        let status = old.terminate().await;
        timings.push(format!(
            "{service}: new ready in {ready_in:.1?}, old exited in {:.1?}",
            t0.elapsed()
        ));
        proxies[i].endpoints.remove(old_addr);
        exits.push((*service, status));
    }
    // Some load on the new processes alone, then stop it.
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.unwrap();
    }
    writer.await.unwrap();

    let report: Vec<String> = tallies
        .iter()
        .map(|t| {
            format!(
                "{}: {} ok, {} failed {:?}",
                t.rpc,
                t.ok.load(Ordering::Relaxed),
                t.failed.load(Ordering::Relaxed),
                t.samples.lock().unwrap()
            )
        })
        .collect();
    let failed: u64 = tallies
        .iter()
        .map(|t| t.failed.load(Ordering::Relaxed))
        .sum();
    let refused: u64 = proxies
        .iter()
        .map(|p| p.endpoints.refused.load(Ordering::Relaxed))
        .sum();
    assert_eq!(
        failed,
        0,
        "calls failed during the rolling update:\n{}",
        report.join("\n")
    );
    assert_eq!(refused, 0, "connections found no ready backend");
    for tally in tallies {
        assert!(
            tally.ok.load(Ordering::Relaxed) > 0,
            "{} was never called",
            tally.rpc
        );
    }
    for (service, status) in &exits {
        assert!(
            status.success(),
            "the old {service} process exited with {status}"
        );
    }

    // Every key the writer made has its notification, made by the other
    // process from the event.
    let created = created.lock().unwrap().clone();
    let notifications = client(&proxies[4]);
    let load_stopped = Instant::now();
    let deadline = load_stopped + WAIT;
    let mut notified = BTreeSet::new();
    while notified != created {
        assert!(
            Instant::now() < deadline,
            "{} of {} created keys were notified within {WAIT:?}; missing: {:?}",
            notified.intersection(&created).count(),
            created.len(),
            created.difference(&notified).take(5).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        notified = notified_keys(&notifications, &admin_key)
            .await
            .expect("list the notifications");
    }
    println!(
        "rolling update in {:.1?} ({}): {}; {} keys created, each notified \
         (the last {:.1?} after the load stopped)",
        started.elapsed(),
        timings.join("; "),
        report.join("; "),
        created.len(),
        load_stopped.elapsed()
    );
    let stopped = futures::future::join_all(processes.into_iter().map(Rosterd::terminate)).await;
    assert!(stopped.iter().all(|status| status.success()), "{stopped:?}");
}
