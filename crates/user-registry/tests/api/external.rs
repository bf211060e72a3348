//! ExternalUserRegistry: links between users and identities at external
//! providers. Admins manage them; a user may read its own.

use roster_proto::v1::external_user_registry_client::ExternalUserRegistryClient;
use roster_proto::v1::{
    AuthenticationProviderIdentifiers, CreateExternalUserRequest, DeleteExternalUserRequest,
    ExternalUser, GetExternalUserByExternalIdRequest, GetExternalUserByUserIdRequest, Right,
};
use roster_test_support::{Backend, TestEnv, with_token};
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

use crate::support::*;

const PROVIDER: &str = "corp-sso";
const SUBJECT: &str = "00u1a2b3c4|Alice@Corp";

fn external(env: &TestEnv) -> ExternalUserRegistryClient<Channel> {
    ExternalUserRegistryClient::new(env.channel())
}

fn provider(id: &str) -> Option<AuthenticationProviderIdentifiers> {
    Some(AuthenticationProviderIdentifiers {
        provider_id: id.into(),
    })
}

fn link(user_id: &str, provider_id: &str, external_id: &str) -> ExternalUser {
    ExternalUser {
        user_ids: Some(ids(user_id)),
        provider_ids: provider(provider_id),
        external_id: external_id.into(),
        ..Default::default()
    }
}

fn as_caller<T>(message: T, token: Option<&str>) -> Request<T> {
    match token {
        Some(token) => with_token(message, token),
        None => Request::new(message),
    }
}

async fn create(
    env: &TestEnv,
    token: Option<&str>,
    external_user: ExternalUser,
) -> Result<ExternalUser, Status> {
    external(env)
        .create(as_caller(
            CreateExternalUserRequest {
                external_user: Some(external_user),
            },
            token,
        ))
        .await
        .map(tonic::Response::into_inner)
}

async fn get_by_user_id(
    env: &TestEnv,
    token: Option<&str>,
    provider_id: &str,
    user_id: &str,
) -> Result<ExternalUser, Status> {
    external(env)
        .get_by_user_id(as_caller(
            GetExternalUserByUserIdRequest {
                provider_ids: provider(provider_id),
                user_ids: Some(ids(user_id)),
            },
            token,
        ))
        .await
        .map(tonic::Response::into_inner)
}

async fn get_by_external_id(
    env: &TestEnv,
    token: Option<&str>,
    provider_id: &str,
    external_id: &str,
) -> Result<ExternalUser, Status> {
    external(env)
        .get_by_external_id(as_caller(
            GetExternalUserByExternalIdRequest {
                provider_ids: provider(provider_id),
                external_id: external_id.into(),
            },
            token,
        ))
        .await
        .map(tonic::Response::into_inner)
}

async fn delete(
    env: &TestEnv,
    token: Option<&str>,
    provider_id: &str,
    external_id: &str,
) -> Result<(), Status> {
    external(env)
        .delete(as_caller(
            DeleteExternalUserRequest {
                provider_ids: provider(provider_id),
                external_id: external_id.into(),
            },
            token,
        ))
        .await
        .map(|_| ())
}

/// Asserts that `got` is the link of `user_id` to `SUBJECT` at `PROVIDER`.
#[track_caller]
fn assert_alice_link(got: &ExternalUser, user_id: &str) {
    assert_eq!(got.user_ids.as_ref().unwrap().user_id, user_id);
    assert_eq!(got.provider_ids.as_ref().unwrap().provider_id, PROVIDER);
    assert_eq!(got.external_id, SUBJECT);
    assert!(got.created_at.is_some());
    assert_eq!(got.updated_at, got.created_at);
}

async fn an_admin_links_a_user_to_an_external_identity(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    register(&env, "alice").await;
    let admin = env.admin_token("root-admin").await;
    let mut events = env.subscribe("user.>").await;

    let created = create(&env, Some(&admin), link("alice", PROVIDER, SUBJECT))
        .await
        .expect("admin creates the link");

    assert_alice_link(&created, "alice");
    let event = next_event_where(&mut events, "user.external.create", WAIT, |_| true)
        .await
        .expect("user.external.create published");
    assert_eq!(event_user_ids(&event), ["alice"]);
    let data: ExternalUser = event.data.unwrap().to_msg().unwrap();
    assert_eq!(data, created);
    let stored = get_by_external_id(&env, Some(&admin), PROVIDER, SUBJECT)
        .await
        .unwrap();
    assert_eq!(stored, created);
}

async fn only_admins_create_links(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    register(&env, "alice").await;
    let own = key_of(&env, "alice", &[Right::UserAll]).await;

    let status = create(&env, Some(&own), link("alice", PROVIDER, SUBJECT))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);

    let admin = env.admin_token("root-admin").await;
    let status = get_by_user_id(&env, Some(&admin), PROVIDER, "alice")
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
}

async fn a_link_is_read_by_user_id_by_admins_and_its_owner_only(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    register(&env, "alice").await;
    register(&env, "bob").await;
    let admin = env.admin_token("root-admin").await;
    let created = create(&env, Some(&admin), link("alice", PROVIDER, SUBJECT))
        .await
        .unwrap();

    let by_admin = get_by_user_id(&env, Some(&admin), PROVIDER, "alice")
        .await
        .expect("admin reads the link");
    assert_eq!(by_admin, created);

    let owner = key_of(&env, "alice", &[Right::UserInfo]).await;
    let by_owner = get_by_user_id(&env, Some(&owner), PROVIDER, "alice")
        .await
        .expect("the owner reads its link with USER_INFO");
    assert_eq!(by_owner, created);

    let owner_without_info = key_of(&env, "alice", &[Right::UserSettingsBasic]).await;
    let status = get_by_user_id(&env, Some(&owner_without_info), PROVIDER, "alice")
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);

    let bob = key_of(&env, "bob", &[Right::UserAll]).await;
    let status = get_by_user_id(&env, Some(&bob), PROVIDER, "alice")
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);

    // Bob reading his own (missing) link learns only that he has none.
    let status = get_by_user_id(&env, Some(&bob), PROVIDER, "bob")
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
}

async fn a_link_is_read_by_external_id_by_admins_only(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    register(&env, "alice").await;
    let admin = env.admin_token("root-admin").await;
    let created = create(&env, Some(&admin), link("alice", PROVIDER, SUBJECT))
        .await
        .unwrap();

    let by_admin = get_by_external_id(&env, Some(&admin), PROVIDER, SUBJECT)
        .await
        .expect("admin reads by external id");
    assert_eq!(by_admin, created);

    let owner = key_of(&env, "alice", &[Right::UserAll]).await;
    let status = get_by_external_id(&env, Some(&owner), PROVIDER, SUBJECT)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);

    let status = get_by_external_id(&env, Some(&admin), "other-sso", SUBJECT)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let status = get_by_external_id(&env, Some(&admin), PROVIDER, "someone-else")
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
}

async fn only_admins_delete_a_link_and_it_is_gone_afterwards(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    register(&env, "alice").await;
    let admin = env.admin_token("root-admin").await;
    create(&env, Some(&admin), link("alice", PROVIDER, SUBJECT))
        .await
        .unwrap();
    let mut events = env.subscribe("user.>").await;

    let owner = key_of(&env, "alice", &[Right::UserAll]).await;
    let status = delete(&env, Some(&owner), PROVIDER, SUBJECT)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    get_by_external_id(&env, Some(&admin), PROVIDER, SUBJECT)
        .await
        .expect("still linked after the refused delete");

    delete(&env, Some(&admin), PROVIDER, SUBJECT)
        .await
        .expect("admin deletes the link");

    let event = next_event_where(&mut events, "user.external.delete", WAIT, |_| true)
        .await
        .expect("user.external.delete published");
    assert_eq!(event_user_ids(&event), ["alice"]);
    for status in [
        get_by_external_id(&env, Some(&admin), PROVIDER, SUBJECT)
            .await
            .unwrap_err(),
        get_by_user_id(&env, Some(&admin), PROVIDER, "alice")
            .await
            .unwrap_err(),
        delete(&env, Some(&admin), PROVIDER, SUBJECT)
            .await
            .unwrap_err(),
    ] {
        assert_eq!(status.code(), Code::NotFound);
    }

    // The user may be linked again.
    create(&env, Some(&admin), link("alice", PROVIDER, SUBJECT))
        .await
        .expect("link again after delete");
}

async fn a_taken_external_id_or_a_second_link_to_one_provider_already_exists(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    register(&env, "alice").await;
    register(&env, "bob").await;
    let admin = env.admin_token("root-admin").await;
    create(&env, Some(&admin), link("alice", PROVIDER, SUBJECT))
        .await
        .unwrap();

    let taken_subject = create(&env, Some(&admin), link("bob", PROVIDER, SUBJECT))
        .await
        .unwrap_err();
    assert_eq!(taken_subject.code(), Code::AlreadyExists);
    let second_link = create(
        &env,
        Some(&admin),
        link("alice", PROVIDER, "another-subject"),
    )
    .await
    .unwrap_err();
    assert_eq!(second_link.code(), Code::AlreadyExists);

    // Nothing changed, and other providers are separate namespaces.
    let still = get_by_external_id(&env, Some(&admin), PROVIDER, SUBJECT)
        .await
        .unwrap();
    assert_eq!(still.user_ids.unwrap().user_id, "alice");
    let status = get_by_user_id(&env, Some(&admin), PROVIDER, "bob")
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    create(&env, Some(&admin), link("bob", "other-sso", SUBJECT))
        .await
        .expect("the same subject at another provider");
    create(&env, Some(&admin), link("alice", "other-sso-2", "x"))
        .await
        .expect("the same user at another provider");
}

async fn linking_an_unknown_or_deleted_user_is_not_found(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    let admin = env.admin_token("root-admin").await;
    let status = create(&env, Some(&admin), link("stranger", PROVIDER, SUBJECT))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);

    register(&env, "alice").await;
    registry(&env)
        .delete(with_token(ids("alice"), &admin))
        .await
        .unwrap();
    let status = create(&env, Some(&admin), link("alice", PROVIDER, SUBJECT))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
}

async fn bad_provider_ids_and_external_ids_name_their_field(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    register(&env, "alice").await;
    let admin = env.admin_token("root-admin").await;
    let too_long = "x".repeat(251);

    for bad in ["", "Corp_SSO", "-corp"] {
        let status = create(&env, Some(&admin), link("alice", bad, SUBJECT))
            .await
            .unwrap_err();
        assert_invalid_field(&status, "external_user.provider_ids.provider_id");
        let status = get_by_user_id(&env, Some(&admin), bad, "alice")
            .await
            .unwrap_err();
        assert_invalid_field(&status, "provider_ids.provider_id");
        let status = get_by_external_id(&env, Some(&admin), bad, SUBJECT)
            .await
            .unwrap_err();
        assert_invalid_field(&status, "provider_ids.provider_id");
        let status = delete(&env, Some(&admin), bad, SUBJECT).await.unwrap_err();
        assert_invalid_field(&status, "provider_ids.provider_id");
    }
    for bad in ["", too_long.as_str(), "line\nbreak"] {
        let status = create(&env, Some(&admin), link("alice", PROVIDER, bad))
            .await
            .unwrap_err();
        assert_invalid_field(&status, "external_user.external_id");
        let status = get_by_external_id(&env, Some(&admin), PROVIDER, bad)
            .await
            .unwrap_err();
        assert_invalid_field(&status, "external_id");
        let status = delete(&env, Some(&admin), PROVIDER, bad).await.unwrap_err();
        assert_invalid_field(&status, "external_id");
    }
    let status = create(&env, Some(&admin), link("Not Valid", PROVIDER, SUBJECT))
        .await
        .unwrap_err();
    assert_invalid_field(&status, "external_user.user_ids.user_id");
    let status = external(&env)
        .create(with_token(
            CreateExternalUserRequest {
                external_user: None,
            },
            &admin,
        ))
        .await
        .unwrap_err();
    assert_invalid_field(&status, "external_user");

    // 250 characters is the most.
    create(
        &env,
        Some(&admin),
        link("alice", PROVIDER, &"x".repeat(250)),
    )
    .await
    .expect("an external id of 250 characters");
}

async fn anonymous_callers_are_unauthenticated(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    register(&env, "alice").await;
    let admin = env.admin_token("root-admin").await;
    create(&env, Some(&admin), link("alice", PROVIDER, SUBJECT))
        .await
        .unwrap();

    let statuses = [
        create(&env, None, link("alice", "other-sso", SUBJECT))
            .await
            .unwrap_err(),
        get_by_user_id(&env, None, PROVIDER, "alice")
            .await
            .unwrap_err(),
        get_by_external_id(&env, None, PROVIDER, SUBJECT)
            .await
            .unwrap_err(),
        delete(&env, None, PROVIDER, SUBJECT).await.unwrap_err(),
    ];
    for status in statuses {
        assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    }
    get_by_external_id(&env, Some(&admin), PROVIDER, SUBJECT)
        .await
        .expect("the link is untouched");
}

async fn purging_a_user_removes_its_links(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    register(&env, "alice").await;
    let admin = env.admin_token("root-admin").await;
    create(&env, Some(&admin), link("alice", PROVIDER, SUBJECT))
        .await
        .unwrap();
    create(&env, Some(&admin), link("alice", "other-sso", "alice-2"))
        .await
        .unwrap();

    registry(&env)
        .purge(with_token(ids("alice"), &admin))
        .await
        .expect("admin purges alice");

    for (provider_id, external_id) in [(PROVIDER, SUBJECT), ("other-sso", "alice-2")] {
        let status = get_by_external_id(&env, Some(&admin), provider_id, external_id)
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::NotFound);
    }
    // A new alice does not inherit the old one's identities.
    register(&env, "alice").await;
    let status = get_by_user_id(&env, Some(&admin), PROVIDER, "alice")
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    register(&env, "bob").await;
    create(&env, Some(&admin), link("bob", PROVIDER, SUBJECT))
        .await
        .expect("the external id is free again");
}

on_both_backends!(
    an_admin_links_a_user_to_an_external_identity,
    only_admins_create_links,
    a_link_is_read_by_user_id_by_admins_and_its_owner_only,
    a_link_is_read_by_external_id_by_admins_only,
    only_admins_delete_a_link_and_it_is_gone_afterwards,
    a_taken_external_id_or_a_second_link_to_one_provider_already_exists,
    linking_an_unknown_or_deleted_user_is_not_found,
    bad_provider_ids_and_external_ids_name_their_field,
    anonymous_callers_are_unauthenticated,
    purging_a_user_removes_its_links,
);
