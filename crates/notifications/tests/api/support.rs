//! Shared helpers for the notifications service's tests: clients,
//! requests, users with preferences, and reading the store behind the
//! service's back.

use roster_core::auth::{CallContext, Caller};
use roster_notifications::store::ReceiverRecord;
use roster_proto::v1::notification_service_client::NotificationServiceClient;
use roster_proto::v1::user_registry_client::UserRegistryClient;
use roster_proto::v1::{
    CreateNotificationRequest, EmailNotificationPreferences, EntityIdentifiers,
    ListNotificationsRequest, ListNotificationsResponse, NotificationReceiver, NotificationStatus,
    NotificationType, UpdateNotificationStatusRequest, UpdateUserRequest, User, UserIdentifiers,
    entity_identifiers,
};
use roster_test_support::{TestEnv, with_cluster_key, with_token};
use tonic::transport::Channel;
use tonic::{Response, Status};

pub(crate) use roster_test_support::on_both_backends;
pub use roster_test_support::{assert_invalid_field, expect_code, total_count};

/// How long a test waits for something that should happen soon.
pub const WAIT: std::time::Duration = std::time::Duration::from_secs(20);

/// The services without the notifications worker: tests of the RPCs see
/// only the notifications they make.
pub async fn start_quiet(backend: roster_test_support::Backend) -> TestEnv {
    TestEnv::start_configured(
        backend,
        roster_test_support::TestConfig {
            without_notification_worker: true,
            ..Default::default()
        },
    )
    .await
}

/// `NotificationService` on the services under test.
pub fn client(env: &TestEnv) -> NotificationServiceClient<Channel> {
    NotificationServiceClient::new(env.channel())
}

pub fn ids(user_id: &str) -> UserIdentifiers {
    UserIdentifiers {
        user_id: user_id.into(),
        email: String::new(),
    }
}

pub fn user_entity(user_id: &str) -> EntityIdentifiers {
    EntityIdentifiers {
        ids: Some(entity_identifiers::Ids::UserIds(ids(user_id))),
    }
}

/// A notification of `kind` about `user_id`, to its administrative contact
/// (the user itself), without mail.
pub fn about(user_id: &str, kind: NotificationType) -> CreateNotificationRequest {
    CreateNotificationRequest {
        entity_ids: Some(user_entity(user_id)),
        notification_type: kind as i32,
        data: None,
        sender_ids: None,
        receivers: vec![NotificationReceiver::AdministrativeContact as i32],
        email: false,
        receiver_user_ids: Vec::new(),
    }
}

/// Create as a cluster caller; panics when refused.
pub async fn create_ok(env: &TestEnv, request: CreateNotificationRequest) -> String {
    client(env)
        .create(with_cluster_key(request))
        .await
        .unwrap_or_else(|s| panic!("create: {s:?}"))
        .into_inner()
        .id
}

/// A cluster caller's context, as an event worker has.
pub fn cluster_context() -> CallContext {
    CallContext {
        caller: Caller::Cluster,
        remote_ip: String::new(),
        user_agent: String::new(),
        correlation_id: "test".into(),
    }
}

/// List with `token` (none: anonymous).
pub async fn list_as(
    env: &TestEnv,
    token: Option<&str>,
    user_id: &str,
    status: &[NotificationStatus],
    limit: u32,
    page: u32,
) -> Result<Response<ListNotificationsResponse>, Status> {
    let message = ListNotificationsRequest {
        receiver_ids: Some(ids(user_id)),
        status: status.iter().map(|s| *s as i32).collect(),
        limit,
        page,
    };
    let request = match token {
        Some(token) => with_token(message, token),
        None => tonic::Request::new(message),
    };
    client(env).list(request).await
}

/// UpdateStatus with `token`.
pub async fn update_status_as(
    env: &TestEnv,
    token: &str,
    user_id: &str,
    ids_: &[&str],
    status: NotificationStatus,
) -> Result<(), Status> {
    client(env)
        .update_status(with_token(
            UpdateNotificationStatusRequest {
                receiver_ids: Some(ids(user_id)),
                ids: ids_.iter().map(|s| s.to_string()).collect(),
                status: status as i32,
            },
            token,
        ))
        .await
        .map(|r| r.into_inner())
}

/// Sets the user's `email_notification_preferences` (as a cluster caller).
pub async fn prefer_mail_for(env: &TestEnv, user_id: &str, types: &[NotificationType]) {
    UserRegistryClient::new(env.channel())
        .update(with_cluster_key(UpdateUserRequest {
            user: Some(User {
                ids: Some(ids(user_id)),
                email_notification_preferences: Some(EmailNotificationPreferences {
                    types: types.iter().map(|t| *t as i32).collect(),
                }),
                ..Default::default()
            }),
            field_mask: Some(prost_types::FieldMask {
                paths: vec!["email_notification_preferences".into()],
            }),
            password: String::new(),
        }))
        .await
        .unwrap_or_else(|s| panic!("set preferences of {user_id}: {s:?}"));
}

/// Soft-deletes the user (as a cluster caller).
pub async fn delete_user(env: &TestEnv, user_id: &str) {
    UserRegistryClient::new(env.channel())
        .delete(with_cluster_key(ids(user_id)))
        .await
        .unwrap_or_else(|s| panic!("delete {user_id}: {s:?}"));
}

/// The receivers of notification `id` and their status, from the store.
pub async fn receivers(env: &TestEnv, id: &str) -> Vec<ReceiverRecord> {
    env.notifications
        .store()
        .receivers(id)
        .await
        .expect("read the receivers")
}

/// The receivers' user IDs of notification `id`, sorted.
pub async fn receiver_ids(env: &TestEnv, id: &str) -> Vec<String> {
    receivers(env, id)
        .await
        .into_iter()
        .map(|r| r.user_id)
        .collect()
}
