//! No credential hands out more than it holds: creating or updating a key
//! needs RIGHT_USER_SETTINGS_API_KEYS plus every right the change adds or
//! removes, on the key's user. Each refusal leaves the keys as they were.

use roster_proto::v1::{ApiKey, ListUserApiKeysRequest, Right};
use roster_test_support::{Backend, TestEnv};
use tonic::Code;

use crate::support::*;

/// Asserts PERMISSION_DENIED naming `right`.
#[track_caller]
fn assert_denied_for<T: std::fmt::Debug>(result: Result<T, tonic::Status>, right: Right) {
    let status = expect_code(result, Code::PermissionDenied);
    assert!(
        status.message().contains(right.as_str_name()),
        "expected {} to be named, got {status:?}",
        right.as_str_name()
    );
}

/// How many keys `user_id` has, as a cluster caller counts them.
async fn key_count(env: &TestEnv, user_id: &str) -> u64 {
    let response = access(env)
        .list_api_keys(roster_test_support::with_cluster_key(
            ListUserApiKeysRequest {
                user_ids: Some(ids(user_id)),
                ..Default::default()
            },
        ))
        .await
        .expect("list keys");
    total_count(&response)
}

fn with_rights(key_id: &str, rights: &[Right]) -> ApiKey {
    ApiKey {
        id: key_id.into(),
        rights: numbers(rights),
        ..Default::default()
    }
}

async fn a_key_cannot_create_a_key_with_a_right_it_lacks(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    let limited = env
        .user_token("alice", &[Right::UserSettingsApiKeys, Right::UserInfo])
        .await;

    let refused: &[(&[Right], Right)] = &[
        (&[Right::UserDelete], Right::UserDelete),
        (&[Right::UserInfo, Right::UserDelete], Right::UserDelete),
        (&[Right::UserSettingsBasic], Right::UserSettingsBasic),
        (&[Right::UserAll], Right::UserDelete),
        (&[Right::All], Right::UserList),
    ];
    for (rights, named) in refused {
        assert_denied_for(
            create_key(&env, &limited, new_key("alice", "more", rights)).await,
            *named,
        );
    }
    assert_eq!(key_count(&env, "alice").await, 1, "nothing was created");

    // What it holds, it may pass on, in part or in full.
    for rights in [
        &[Right::UserInfo][..],
        &[Right::UserSettingsApiKeys, Right::UserInfo][..],
    ] {
        create_key(&env, &limited, new_key("alice", "same", rights))
            .await
            .unwrap_or_else(|s| panic!("{rights:?}: {s:?}"));
    }
}

async fn a_non_admin_cannot_create_a_key_with_universal_rights(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    // Even a key that says RIGHT_ALL carries user rights only for a user
    // who is not an admin.
    let alice = env.user_token("alice", &[Right::All]).await;
    for (rights, named) in [
        (Right::All, Right::UserList),
        (Right::SendInvites, Right::SendInvites),
        (Right::UserList, Right::UserList),
        (Right::UserPurge, Right::UserPurge),
        (Right::UserCreate, Right::UserCreate),
    ] {
        assert_denied_for(
            create_key(&env, &alice, new_key("alice", "admin-ish", &[rights])).await,
            named,
        );
    }
    assert_eq!(key_count(&env, "alice").await, 1, "nothing was created");
    create_key(
        &env,
        &alice,
        new_key("alice", "all mine", &[Right::UserAll]),
    )
    .await
    .expect("every user right is hers to give");
}

async fn updating_a_key_cannot_add_a_right_the_caller_lacks(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    let limited = env
        .user_token("alice", &[Right::UserSettingsApiKeys, Right::UserInfo])
        .await;
    let (key_id, key) = env.api_key("alice", &[Right::UserInfo]).await;
    let before = stored_key(&env, "alice", &key_id).await.unwrap();

    for (rights, named) in [
        (&[Right::UserInfo, Right::UserDelete][..], Right::UserDelete),
        (&[Right::UserAll][..], Right::UserDelete),
        (
            &[Right::UserInfo, Right::SendInvites][..],
            Right::SendInvites,
        ),
    ] {
        for paths in [None, Some(&["rights"][..])] {
            let mut change = with_rights(&key_id, rights);
            change.name = before.name.clone();
            assert_denied_for(
                update_key(&env, &limited, "alice", change, paths).await,
                named,
            );
            assert_eq!(
                stored_key(&env, "alice", &key_id).await.unwrap(),
                before,
                "{rights:?}: unchanged"
            );
        }
    }
    assert_eq!(
        auth_info(&env, &key).await.unwrap().rights.unwrap().rights,
        numbers(&[Right::UserInfo])
    );
}

async fn updating_a_key_cannot_remove_a_right_the_caller_lacks(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    let limited = env
        .user_token("alice", &[Right::UserSettingsApiKeys, Right::UserInfo])
        .await;
    // A stronger key, made by someone who could.
    let (key_id, _) = env
        .api_key("alice", &[Right::UserInfo, Right::UserDelete])
        .await;
    let before = stored_key(&env, "alice", &key_id).await.unwrap();

    assert_denied_for(
        update_key(
            &env,
            &limited,
            "alice",
            with_rights(&key_id, &[Right::UserInfo]),
            Some(&["rights"]),
        )
        .await,
        Right::UserDelete,
    );
    assert_eq!(stored_key(&env, "alice", &key_id).await.unwrap(), before);

    // Swapping a right it lacks for one it holds is both at once.
    assert_denied_for(
        update_key(
            &env,
            &limited,
            "alice",
            with_rights(&key_id, &[Right::UserInfo, Right::UserSettingsApiKeys]),
            Some(&["rights"]),
        )
        .await,
        Right::UserDelete,
    );
    assert_eq!(stored_key(&env, "alice", &key_id).await.unwrap(), before);

    // Changes that leave the rights alone are fine.
    let renamed = update_key(
        &env,
        &limited,
        "alice",
        ApiKey {
            id: key_id.clone(),
            name: "renamed".into(),
            rights: before.rights.clone(),
            ..Default::default()
        },
        None,
    )
    .await
    .expect("renaming keeps the rights");
    assert_eq!(renamed.rights, before.rights);
}

async fn a_key_without_the_api_keys_right_cannot_manage_keys(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    let plain = env
        .user_token(
            "alice",
            &[Right::UserInfo, Right::UserSettingsBasic, Right::UserDelete],
        )
        .await;
    let (key_id, _) = env.api_key("alice", &[Right::UserInfo]).await;
    let before = stored_key(&env, "alice", &key_id).await.unwrap();
    let api_keys = Right::UserSettingsApiKeys;

    assert_denied_for(
        create_key(&env, &plain, new_key("alice", "k", &[Right::UserInfo])).await,
        api_keys,
    );
    assert_denied_for(
        list_keys(
            &env,
            &plain,
            ListUserApiKeysRequest {
                user_ids: Some(ids("alice")),
                ..Default::default()
            },
        )
        .await,
        api_keys,
    );
    assert_denied_for(get_key(&env, &plain, "alice", &key_id).await, api_keys);
    assert_denied_for(
        update_key(
            &env,
            &plain,
            "alice",
            ApiKey {
                id: key_id.clone(),
                name: "renamed".into(),
                ..Default::default()
            },
            Some(&["name"]),
        )
        .await,
        api_keys,
    );
    assert_denied_for(delete_key(&env, &plain, "alice", &key_id).await, api_keys);
    assert_eq!(stored_key(&env, "alice", &key_id).await.unwrap(), before);
    assert_eq!(key_count(&env, "alice").await, 2);
}

async fn an_admin_with_every_right_can_give_another_user_any_right(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    let admin = env.admin_token("root-admin").await;
    env.ensure_user("bob", false).await;
    let every = [
        Right::UserInfo,
        Right::UserSettingsBasic,
        Right::UserSettingsApiKeys,
        Right::UserDelete,
        Right::UserAuthorizedClients,
        Right::UserAll,
        Right::UserNotificationsRead,
        Right::UserList,
        Right::UserCreate,
        Right::UserPurge,
        Right::SendInvites,
        Right::All,
    ];
    let key = create_key(&env, &admin, new_key("bob", "everything", &every))
        .await
        .expect("an admin with RIGHT_ALL gives any right");
    assert_eq!(key.rights, numbers(&every));
    for right in every {
        create_key(&env, &admin, new_key("bob", "one", &[right]))
            .await
            .unwrap_or_else(|s| panic!("{right:?}: {s:?}"));
    }
    // Bob is no admin: the universal rights on his key do nothing.
    let info = auth_info(&env, &key.key).await.unwrap();
    assert_eq!(info.rights.unwrap().rights, all_user_rights());
    assert!(info.universal_rights.unwrap_or_default().rights.is_empty());
    assert!(!info.is_admin);

    // And the admin can change bob's key in any direction.
    let narrowed = update_key(
        &env,
        &admin,
        "bob",
        with_rights(&key.id, &[Right::UserInfo]),
        Some(&["rights"]),
    )
    .await
    .unwrap();
    assert_eq!(narrowed.rights, numbers(&[Right::UserInfo]));
}

async fn an_admin_key_with_few_rights_cannot_give_more_than_it_holds(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    env.ensure_user("root-admin", true).await;
    let (_, narrow) = env
        .api_key("root-admin", &[Right::UserInfo, Right::UserSettingsApiKeys])
        .await;
    env.ensure_user("bob", false).await;
    let (bobs_key, _) = env.api_key("bob", &[Right::UserInfo]).await;
    let before = stored_key(&env, "bob", &bobs_key).await.unwrap();

    assert_denied_for(
        create_key(&env, &narrow, new_key("bob", "more", &[Right::UserDelete])).await,
        Right::UserDelete,
    );
    assert_denied_for(
        update_key(
            &env,
            &narrow,
            "bob",
            with_rights(&bobs_key, &[Right::UserInfo, Right::UserDelete]),
            Some(&["rights"]),
        )
        .await,
        Right::UserDelete,
    );
    assert_eq!(stored_key(&env, "bob", &bobs_key).await.unwrap(), before);
    assert_eq!(key_count(&env, "bob").await, 1);

    // Within what it holds, it acts on bob as on anyone.
    create_key(&env, &narrow, new_key("bob", "info", &[Right::UserInfo]))
        .await
        .expect("the admin key holds RIGHT_USER_INFO on everyone");
}

on_both_backends!(
    a_key_cannot_create_a_key_with_a_right_it_lacks,
    a_non_admin_cannot_create_a_key_with_universal_rights,
    updating_a_key_cannot_add_a_right_the_caller_lacks,
    updating_a_key_cannot_remove_a_right_the_caller_lacks,
    a_key_without_the_api_keys_right_cannot_manage_keys,
    an_admin_with_every_right_can_give_another_user_any_right,
    an_admin_key_with_few_rights_cannot_give_more_than_it_holds,
);
