//! The access service beside a user registry from before
//! `UserLifecycle.GetWithStatus`, as during a rolling upgrade. A gRPC hop
//! in front of the real registry answers that one method UNIMPLEMENTED, as
//! a tonic server answers a method it does not know, and passes every
//! other call on. A second access service, built as `rosterd` builds one,
//! reaches the registry through the hop; every credential must resolve
//! there exactly as at the process's own access service, which asks the
//! registry directly.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::Request;
use axum::response::Response;
use roster_access::{
    AccessComponent, AccessConfig, Dependencies, GrpcSessionDirectory, GrpcUserDirectory,
};
use roster_core::component::Component;
use roster_core::server::{GrpcServer, bind};
use roster_core::token::TokenHasher;
use roster_proto::v1::entity_access_client::EntityAccessClient;
use roster_proto::v1::user_lifecycle_client::UserLifecycleClient;
use roster_proto::v1::{
    AuthInfoRequest, AuthInfoResponse, DeactivateUserRequest, LockUserRequest, Right,
    SetRequiredActionsRequest, State, UserRequiredAction,
};
use roster_test_support::env::TEST_CLUSTER_KEY;
use roster_test_support::{Backend, TestEnv, with_cluster_key, with_token};
use tokio::sync::oneshot;
use tonic::codegen::Service;
use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::support::{
    all_rights, all_user_rights, auth_info, expanded, ids, on_both_backends, registry,
};

const GET_WITH_STATUS: &str = "/roster.v1.UserLifecycle/GetWithStatus";
const GET: &str = "/roster.v1.UserRegistry/Get";
const GET_STATUS: &str = "/roster.v1.UserLifecycle/GetStatus";

on_both_backends!(
    credentials_resolve_through_a_registry_without_get_with_status_as_through_one_with_it,
    a_registry_with_get_with_status_is_asked_once_per_credential,
);

/// A gRPC hop in front of a [`TestEnv`]'s user registry that counts the
/// calls it sees by path.
struct RegistryHop {
    addr: SocketAddr,
    calls: Arc<Mutex<Vec<String>>>,
    _stop: oneshot::Sender<()>,
}

impl RegistryHop {
    /// A registry from before `GetWithStatus`: that method is
    /// UNIMPLEMENTED, everything else is the real registry's answer.
    async fn older(env: &TestEnv) -> RegistryHop {
        Self::start(env, true).await
    }

    /// The real registry, every method passed on.
    async fn current(env: &TestEnv) -> RegistryHop {
        Self::start(env, false).await
    }

    async fn start(env: &TestEnv, without_get_with_status: bool) -> RegistryHop {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let upstream = env.channel();
        let seen = calls.clone();
        let mut router = axum::Router::new().fallback(move |request: Request| {
            seen.lock().unwrap().push(request.uri().path().to_string());
            forward(upstream.clone(), request)
        });
        if without_get_with_status {
            let seen = calls.clone();
            router = router.route(
                GET_WITH_STATUS,
                axum::routing::any(move |request: Request| {
                    seen.lock().unwrap().push(request.uri().path().to_string());
                    // What tonic answers for a method it does not serve.
                    std::future::ready(Status::unimplemented("").into_http::<axum::body::Body>())
                }),
            );
        }
        let (listener, addr) = bind("127.0.0.1:0").await.expect("bind the hop");
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_routes(tonic::service::Routes::from(router))
                .serve_with_incoming_shutdown(
                    tonic::transport::server::TcpIncoming::from(listener),
                    async {
                        let _ = stopped.await;
                    },
                ),
        );
        RegistryHop {
            addr,
            calls,
            _stop: stop,
        }
    }

    /// How many calls of `path` reached the hop.
    fn calls(&self, path: &str) -> usize {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|p| p.as_str() == path)
            .count()
    }
}

/// Sends `request` on to the registry and its answer back, as it came.
async fn forward(mut upstream: Channel, request: Request) -> Response {
    let request = request.map(tonic::body::Body::new);
    let answer = match futures::future::poll_fn(|cx| upstream.poll_ready(cx)).await {
        Ok(()) => upstream.call(request).await,
        Err(err) => Err(err),
    };
    match answer {
        Ok(response) => response.map(axum::body::Body::new),
        Err(err) => Status::unavailable(format!("the registry behind the hop: {err}")).into_http(),
    }
}

/// A second access service of the same deployment (its database, bus and
/// sessions service), built as `rosterd` builds one, whose user registry
/// is at `registry`.
struct AccessBehind {
    client: EntityAccessClient<Channel>,
    /// How many credentials it was asked to resolve.
    lookups: usize,
    _stop: oneshot::Sender<()>,
}

impl AccessBehind {
    async fn start(env: &TestEnv, registry: SocketAddr) -> AccessBehind {
        let registry = Channel::from_shared(format!("http://{registry}"))
            .expect("uri")
            .connect_lazy();
        let deps = Dependencies {
            db: env.access_db.clone(),
            bus: env.bus.clone(),
            auth: env.auth.clone(),
            users: Arc::new(GrpcUserDirectory::new(registry, TEST_CLUSTER_KEY).expect("users")),
            sessions: Arc::new(
                GrpcSessionDirectory::new(env.channel(), TEST_CLUSTER_KEY).expect("sessions"),
            ),
            // TestEnv hashes with the default (empty) token_hash_key.
            hasher: TokenHasher::new(""),
            events: env.events.clone(),
            config: AccessConfig::default(),
            mailer: env.channel(),
            cluster_key: TEST_CLUSTER_KEY.into(),
        };
        let component = AccessComponent::build(deps, false)
            .await
            .expect("build the access service");
        let mut server = GrpcServer::new();
        component.register(&mut server);
        let (listener, addr) = bind("127.0.0.1:0").await.expect("bind");
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(server.serve(listener, async {
            let _ = stopped.await;
        }));
        let channel = Channel::from_shared(format!("http://{addr}"))
            .expect("uri")
            .connect()
            .await
            .expect("connect to the second access service");
        AccessBehind {
            client: EntityAccessClient::new(channel),
            lookups: 0,
            _stop: stop,
        }
    }

    /// `EntityAccess.AuthInfo` of `token` here, checked to be the answer
    /// of the process's own access service.
    async fn auth_info(&mut self, env: &TestEnv, token: &str) -> Result<AuthInfoResponse, Code> {
        self.lookups += 1;
        let here = self
            .client
            .auth_info(with_cluster_key(AuthInfoRequest {
                token: token.into(),
            }))
            .await
            .map(tonic::Response::into_inner)
            .map_err(|status| status.code());
        let direct = auth_info(env, token).await.map_err(|status| status.code());
        assert_eq!(
            here, direct,
            "through the older registry (left) as through the current one (right)"
        );
        here
    }
}

fn lifecycle(env: &TestEnv) -> UserLifecycleClient<Channel> {
    UserLifecycleClient::new(env.channel())
}

async fn credentials_resolve_through_a_registry_without_get_with_status_as_through_one_with_it(
    backend: Backend,
) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    let admin = env.admin_token("root-admin").await;
    let hop = RegistryHop::older(&env).await;
    let mut access = AccessBehind::start(&env, hop.addr).await;

    // An approved user's key carries its rights.
    let alice = env.user_token("alice", &[Right::UserAll]).await;
    let info = access.auth_info(&env, &alice).await.expect("alice's key");
    assert_eq!(info.user_ids.unwrap().user_id, "alice");
    assert_eq!(info.rights.unwrap().rights, all_user_rights());
    assert_eq!(info.state, State::Approved as i32);
    assert!(!info.is_admin);
    assert!(info.warnings.is_empty(), "{:?}", info.warnings);
    assert_eq!(hop.calls(GET_WITH_STATUS), 1, "the one call was tried");
    assert_eq!((hop.calls(GET), hop.calls(GET_STATUS)), (1, 1));

    // An admin's key is an admin's.
    let info = access.auth_info(&env, &admin).await.expect("the admin key");
    assert!(info.is_admin);
    assert_eq!(info.universal_rights.unwrap().rights, all_rights());

    // A lock and a deactivation are in the status only (GetStatus): each
    // refuses the user's key, and lifting it lets the key work again.
    let bob = env.user_token("bob", &[Right::UserAll]).await;
    access.auth_info(&env, &bob).await.expect("bob's key");
    lifecycle(&env)
        .lock_user(with_token(
            LockUserRequest {
                user_ids: Some(ids("bob")),
                reason: "under review".into(),
            },
            &admin,
        ))
        .await
        .expect("lock bob");
    assert_eq!(
        access.auth_info(&env, &bob).await,
        Err(Code::Unauthenticated)
    );
    lifecycle(&env)
        .unlock_user(with_token(ids("bob"), &admin))
        .await
        .expect("unlock bob");
    access.auth_info(&env, &bob).await.expect("bob's key again");

    let carol = env.user_token("carol", &[Right::UserAll]).await;
    lifecycle(&env)
        .deactivate_user(with_token(
            DeactivateUserRequest {
                user_ids: Some(ids("carol")),
                reason: "left the team".into(),
            },
            &admin,
        ))
        .await
        .expect("deactivate carol");
    assert_eq!(
        access.auth_info(&env, &carol).await,
        Err(Code::Unauthenticated)
    );
    lifecycle(&env)
        .reactivate_user(with_token(ids("carol"), &admin))
        .await
        .expect("reactivate carol");
    access
        .auth_info(&env, &carol)
        .await
        .expect("carol's key again");

    // A soft-deleted user has no status; its key is refused all the same.
    let dave = env.user_token("dave", &[Right::UserAll]).await;
    registry(&env)
        .delete(with_token(ids("dave"), &admin))
        .await
        .expect("delete dave");
    assert_eq!(
        access.auth_info(&env, &dave).await,
        Err(Code::Unauthenticated)
    );

    // A pending required action limits a session to what doing it needs.
    let erin = env.session_token("erin").await;
    let info = access.auth_info(&env, &erin).await.expect("erin's session");
    assert_eq!(info.rights.unwrap().rights, all_user_rights());
    assert!(info.warnings.is_empty(), "{:?}", info.warnings);
    lifecycle(&env)
        .set_required_actions(with_token(
            SetRequiredActionsRequest {
                user_ids: Some(ids("erin")),
                actions: vec![UserRequiredAction::ValidateEmail as i32],
            },
            &admin,
        ))
        .await
        .expect("require erin to validate her address");
    let info = access.auth_info(&env, &erin).await.expect("erin's session");
    assert_eq!(
        info.rights.unwrap().rights,
        expanded(&[Right::UserInfo, Right::UserSettingsBasic])
    );
    assert!(info.universal_rights.unwrap_or_default().rights.is_empty());
    assert!(!info.is_admin);
    assert!(
        info.warnings.iter().any(|w| w.contains("VALIDATE_EMAIL")),
        "{:?}",
        info.warnings
    );

    // The one call was not tried again within its back-off: every lookup
    // asked Get and GetStatus, once each.
    assert_eq!(hop.calls(GET_WITH_STATUS), 1);
    assert_eq!(hop.calls(GET), access.lookups);
    assert_eq!(hop.calls(GET_STATUS), access.lookups);
}

/// The hop itself changes nothing: through it, a registry with the method
/// is asked the one call per credential and nothing else.
async fn a_registry_with_get_with_status_is_asked_once_per_credential(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    let hop = RegistryHop::current(&env).await;
    let mut access = AccessBehind::start(&env, hop.addr).await;
    let alice = env.user_token("alice", &[Right::UserAll]).await;
    for _ in 0..3 {
        let info = access.auth_info(&env, &alice).await.expect("alice's key");
        assert_eq!(info.rights.unwrap().rights, all_user_rights());
    }
    assert_eq!(hop.calls(GET_WITH_STATUS), 3);
    assert_eq!((hop.calls(GET), hop.calls(GET_STATUS)), (0, 0));
}
