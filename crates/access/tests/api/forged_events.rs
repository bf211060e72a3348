//! Events are input like any other: an event put on the bus by someone who
//! is not the user registry (a forged `user.purge`, `user.delete` or
//! password change) destroys nothing of a live user, while a real purge
//! still removes the user's API keys, sessions and notifications.

use std::time::{Duration, Instant};

use prost::Message as _;
use roster_core::events::{new_event, pack_named};
use roster_notifications::store::ReceiverQuery;
use roster_proto::v1::entity_identifiers::Ids;
use roster_proto::v1::session_credentials_client::SessionCredentialsClient;
use roster_proto::v1::{
    CheckSessionRequest, EntityIdentifiers, Event, GetUserRequest, Right, State, User,
    UserEventData,
};
use roster_test_support::{Backend, TestEnv, with_cluster_key, with_token};
use tonic::Code;

use crate::support::{access_store, ids, on_both_backends, registry};

on_both_backends!(forged_events_about_a_live_user_destroy_nothing_and_a_real_purge_still_does);

/// What a user holds in each service that a purge destroys.
struct Holdings {
    user_id: String,
    key_id: String,
    key: String,
    session: String,
}

impl Holdings {
    async fn make(env: &TestEnv, user_id: &str) -> Holdings {
        env.ensure_user(user_id, false).await;
        let (key_id, key) = env.api_key(user_id, &[Right::UserAll]).await;
        let session = env.session_token(user_id).await;
        let holdings = Holdings {
            user_id: user_id.into(),
            key_id,
            key,
            session,
        };
        // The API key's creation becomes a notification for the user.
        let deadline = Instant::now() + Duration::from_secs(20);
        while holdings.notifications(env).await == 0 {
            assert!(Instant::now() < deadline, "{user_id} got no notification");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        holdings
    }

    async fn notifications(&self, env: &TestEnv) -> u64 {
        let query = ReceiverQuery {
            user_id: &self.user_id,
            statuses: &[],
            limit: 10,
            offset: 0,
        };
        env.notifications.store().list(query).await.unwrap().1
    }

    async fn key_works(&self, env: &TestEnv) -> bool {
        self.can_read_self(env, &self.key).await
    }

    async fn session_works(&self, env: &TestEnv) -> bool {
        self.can_read_self(env, &self.session).await
    }

    async fn can_read_self(&self, env: &TestEnv, token: &str) -> bool {
        let request = GetUserRequest {
            user_ids: Some(ids(&self.user_id)),
            field_mask: None,
        };
        registry(env).get(with_token(request, token)).await.is_ok()
    }

    async fn key_stored(&self, env: &TestEnv) -> bool {
        access_store(env)
            .get_api_key(&self.key_id)
            .await
            .unwrap()
            .is_some()
    }

    async fn session_stored(&self, env: &TestEnv) -> bool {
        let checked = SessionCredentialsClient::new(env.channel())
            .check_session(with_cluster_key(CheckSessionRequest {
                token: self.session.clone(),
            }))
            .await;
        match checked {
            Ok(_) => true,
            Err(status) => {
                assert_eq!(status.code(), Code::Unauthenticated, "{status}");
                false
            }
        }
    }

    async fn all_gone(&self, env: &TestEnv) -> bool {
        !self.key_stored(env).await
            && !self.session_stored(env).await
            && self.notifications(env).await == 0
    }
}

fn about(user_id: &str) -> Vec<EntityIdentifiers> {
    vec![EntityIdentifiers {
        ids: Some(Ids::UserIds(ids(user_id))),
    }]
}

/// A `user.update` as if `user_id` had been suspended and had changed
/// the password with `revoke_all_access`.
fn forged_revocation(user_id: &str) -> Event {
    let data = UserEventData {
        user: Some(User {
            ids: Some(ids(user_id)),
            state: State::Suspended as i32,
            ..Default::default()
        }),
        changed_paths: vec!["state".into(), "password_updated_at".into()],
        revoke_all_access: true,
    };
    assert!(!data.encode_to_vec().is_empty());
    new_event(
        "user.update",
        about(user_id),
        Some(pack_named("UserEventData", &data)),
    )
}

async fn forged_events_about_a_live_user_destroy_nothing_and_a_real_purge_still_does(
    backend: Backend,
) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    let admin = env.admin_token("root-admin").await;
    let alice = Holdings::make(&env, "alice").await;
    let bob = Holdings::make(&env, "bob").await;

    for forged in [
        new_event("user.purge", about("alice"), None),
        new_event("user.delete", about("alice"), None),
        forged_revocation("alice"),
    ] {
        env.bus.publish(&forged).await.unwrap();
    }
    // Bob is purged for real after the forged events were published; each
    // consumer works through its events in order, so once bob's holdings
    // are gone everywhere, the forged events have been handled too.
    registry(&env)
        .delete(with_token(ids("bob"), &admin))
        .await
        .unwrap();
    registry(&env)
        .purge(with_token(ids("bob"), &admin))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !bob.all_gone(&env).await {
        assert!(
            Instant::now() < deadline,
            "a real purge left bob's key, session or notifications"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    assert!(
        alice.key_stored(&env).await,
        "a forged purge deleted the key"
    );
    assert!(alice.key_works(&env).await, "alice's key stopped working");
    assert!(
        alice.session_works(&env).await,
        "a forged event ended the session"
    );
    assert!(
        alice.notifications(&env).await > 0,
        "a forged purge forgot the notifications"
    );
}
