//! The event of a change goes out after its commit and never without it:
//! a failed change publishes nothing, and a failing publish delays the
//! event without losing it.

use std::sync::Arc;
use std::time::Duration;

use roster_core::auth::{
    AuthConfig, Authenticator, CallContext, Caller, ClusterKeys, GrpcCredentialResolver,
};
use roster_core::events::outbox;
use roster_core::password::PasswordHasher;
use roster_proto::v1::{CreateUserRequest, Event};
use roster_test_support::env::test_password_config;
use roster_test_support::{Backend, TestBackend, TestEnv, TestNats, outbox_max_attempts};
use roster_user_registry::{Dependencies, UserRegistryComponent};
use tokio::sync::oneshot;
use tonic::Code;
use tonic::transport::Channel;

use crate::support::*;

async fn the_event_of_a_change_is_published_once_the_change_is_committed(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    let mut events = env.subscribe("user.>").await;

    let created = register(&env, "alice").await;

    let event = next_event_where(&mut events, "user.create", WAIT, |_| true)
        .await
        .expect("user.create published");
    // Whoever hears the event can already read the change.
    let stored = env
        .user_registry
        .store()
        .get_user("alice")
        .await
        .unwrap()
        .expect("the change is committed before its event goes out");
    assert_eq!(stored.user_id, "alice");
    assert_eq!(user_event_data(&event).user.unwrap(), created);
    eventually("the outbox is empty", WAIT, || async {
        outbox::pending(&env.db).await.unwrap() == 0
    })
    .await;
}

async fn a_failed_change_publishes_no_event_and_leaves_the_outbox_empty(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    let mut events = env.subscribe("user.>").await;
    register(&env, "alice").await;
    let first = next_event_where(&mut events, "user.create", WAIT, |_| true)
        .await
        .expect("alice's user.create");
    assert_eq!(event_user_ids(&first), ["alice"]);
    eventually("the outbox is empty", WAIT, || async {
        outbox::pending(&env.db).await.unwrap() == 0
    })
    .await;

    // A taken ID (a taken address would be answered as a success, with a
    // mail to its owner and no event).
    let mut taken = new_user("alice");
    taken.primary_email_address = "bob@example.com".into();
    let status = registry(&env)
        .create(CreateUserRequest {
            user: Some(taken),
            invitation_token: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::AlreadyExists);

    assert_eq!(outbox::pending(&env.db).await.unwrap(), 0);
    assert!(
        env.user_registry
            .store()
            .get_user("bob")
            .await
            .unwrap()
            .is_none()
    );
    // Events go out in commit order: once carol's is here, bob's would
    // have come before it.
    register(&env, "carol").await;
    let next = next_event_where(&mut events, "user.create", WAIT, |_| true)
        .await
        .expect("carol's user.create");
    assert_eq!(event_user_ids(&next), ["carol"]);
    eventually("the outbox is empty", WAIT, || async {
        outbox::pending(&env.db).await.unwrap() == 0
    })
    .await;
}

on_both_backends!(
    the_event_of_a_change_is_published_once_the_change_is_committed,
    a_failed_change_publishes_no_event_and_leaves_the_outbox_empty,
);

/// A failing publish (the stream does not exist yet) delays the event of a
/// committed change, and it goes out once the stream is there.
///
/// Delivery is checked in the stream, not with a subscription: a core
/// subscriber on the subject would itself answer the publish, so the
/// failure would never happen.
async fn a_failing_publish_delays_but_never_loses_the_event_of_a_change(backend: TestBackend) {
    let mut nats = TestNats::new();
    nats.config.create_stream = false;
    let bus = nats.bus().await;
    assert_eq!(nats.stream_messages().await, None);

    // The service is called directly as an anonymous caller, so no
    // credential is ever resolved: the resolver points nowhere.
    let nowhere = Channel::from_static("http://127.0.0.1:9").connect_lazy();
    let auth = Arc::new(Authenticator::new(
        Arc::new(GrpcCredentialResolver::new(nowhere.clone(), String::new())),
        ClusterKeys::new([]),
        &AuthConfig::default(),
    ));
    let component = UserRegistryComponent::build(
        Dependencies {
            db: backend.db.clone(),
            bus: Arc::new(bus.clone()),
            auth,
            hasher: PasswordHasher::new(&test_password_config()).expect("hasher"),
            events: nats.config.clone(),
            config: roster_user_registry::UserRegistryConfig {
                second_factor_keys: vec![roster_test_support::env::TEST_SECOND_FACTOR_KEY.into()],
                ..Default::default()
            },
            invitations: Arc::new(
                roster_user_registry::invitations::GrpcInvitations::new(nowhere.clone(), "k")
                    .expect("invitations client"),
            ),
            mailer: nowhere,
            cluster_key: "k".into(),
            clock: Arc::new(roster_core::time::SystemClock),
        },
        true,
    )
    .await
    .expect("build the user registry");
    let (stop, stopped) = oneshot::channel::<()>();
    let relay = tokio::spawn(component.relay.run(async {
        let _ = stopped.await;
    }));
    let ctx = CallContext {
        caller: Caller::Anonymous,
        remote_ip: "127.0.0.1".into(),
        user_agent: "test".into(),
        correlation_id: String::new(),
    };

    let created = component
        .service
        .create(
            &ctx,
            CreateUserRequest {
                user: Some(new_user("alice")),
                invitation_token: String::new(),
            },
        )
        .await
        .expect("the change commits whatever the bus does");

    eventually("the relay has tried and failed", WAIT, || async {
        outbox_max_attempts(&backend.db).await >= 1
    })
    .await;
    assert_eq!(
        outbox::pending(&backend.db).await.unwrap(),
        1,
        "{}",
        backend.name
    );
    assert_eq!(nats.stream_messages().await, None, "{}", backend.name);
    assert!(
        component
            .service
            .store()
            .get_user("alice")
            .await
            .unwrap()
            .is_some(),
        "the change stays committed"
    );

    bus.ensure_stream().await.unwrap();
    // The relay backs off after failures; a few seconds cover its retries.
    eventually("the outbox is empty", Duration::from_secs(30), || async {
        outbox::pending(&backend.db).await.unwrap() == 0
    })
    .await;
    let _ = stop.send(());
    tokio::time::timeout(WAIT, relay)
        .await
        .expect("the relay stops")
        .expect("the relay does not panic");

    assert_eq!(nats.stream_messages().await, Some(1), "{}", backend.name);
    let stream = bus
        .jetstream()
        .get_stream(&nats.config.stream)
        .await
        .unwrap();
    let stored = stream.get_raw_message(1).await.unwrap();
    let stored = <Event as prost::Message>::decode(stored.payload).unwrap();
    assert_eq!(stored.name, "user.create", "{}", backend.name);
    assert_eq!(event_user_ids(&stored), ["alice"]);
    assert_eq!(user_event_data(&stored).user.unwrap(), created);
}

#[tokio::test]
async fn a_failing_publish_delays_but_never_loses_the_event_of_a_change_on_postgres() {
    a_failing_publish_delays_but_never_loses_the_event_of_a_change(TestBackend::postgres().await)
        .await;
}

#[tokio::test]
async fn a_failing_publish_delays_but_never_loses_the_event_of_a_change_on_sqlite() {
    a_failing_publish_delays_but_never_loses_the_event_of_a_change(TestBackend::sqlite().await)
        .await;
}
