//! UserAccess's API key methods and ListRights over real gRPC: the full
//! key appears once, input is checked field by field, lists order and
//! page, updates follow their mask, another user's keys stay out of reach,
//! and every change is announced without the secret.

use chrono::Duration;
use roster_core::time::{now, timestamp};
use roster_core::token::{Token, TokenType};
use roster_proto::v1::{ApiKey, ApiKeyEventData, ListUserApiKeysRequest, Right};
use roster_test_support::{Backend, TestEnv, with_cluster_key};
use tonic::Code;

use crate::support::*;

/// A timestamp `days` from now.
fn in_days(days: i64) -> prost_types::Timestamp {
    timestamp(now() + Duration::days(days))
}

fn list_request(user_id: &str, order: &str, limit: u32, page: u32) -> ListUserApiKeysRequest {
    ListUserApiKeysRequest {
        user_ids: Some(ids(user_id)),
        order: order.into(),
        limit,
        page,
    }
}

/// `key` as Get and List show it: without the secret.
fn without_secret(key: &ApiKey) -> ApiKey {
    ApiKey {
        key: String::new(),
        ..key.clone()
    }
}

fn is_base32(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b))
}

async fn creating_a_key_returns_the_full_key_exactly_once(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    let alice = env.user_token("alice", &[Right::UserAll]).await;

    let created = create_key(
        &env,
        &alice,
        roster_proto::v1::CreateUserApiKeyRequest {
            expires_at: Some(prost_types::Timestamp {
                seconds: in_days(7).seconds,
                nanos: 123_456_789,
            }),
            ..new_key(
                "alice",
                "deploy",
                &[Right::UserInfo, Right::UserSettingsBasic],
            )
        },
    )
    .await
    .expect("alice creates a key");

    let parts: Vec<&str> = created.key.split('.').collect();
    assert_eq!(parts.len(), 3, "{}", created.key);
    assert_eq!(parts[0], "rak");
    assert!(is_base32(parts[1], 24), "{}", parts[1]);
    assert!(is_base32(parts[2], 52), "secret of 52 characters");
    assert_eq!(parts[1], created.id, "the ID is the key's middle part");
    assert_eq!(
        Token::parse(&created.key).map(|t| t.kind()),
        Ok(TokenType::ApiKey)
    );
    assert_eq!(created.name, "deploy");
    assert_eq!(
        created.rights,
        numbers(&[Right::UserInfo, Right::UserSettingsBasic])
    );
    assert!(created.created_at.is_some());
    assert_eq!(created.created_at, created.updated_at);
    assert_eq!(
        created.expires_at.as_ref().map(|t| t.nanos),
        Some(123_456_000),
        "kept at microsecond precision"
    );

    // Get and List show everything but the key.
    let got = get_key(&env, &alice, "alice", &created.id).await.unwrap();
    assert_eq!(got, without_secret(&created));
    let listed = list_keys(&env, &alice, list_request("alice", "", 0, 0))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.api_keys.len(), 2, "alice's own key and the new one");
    assert!(listed.api_keys.iter().all(|k| k.key.is_empty()));
    assert!(listed.api_keys.contains(&got));

    // The key works as what it says.
    let info = auth_info(&env, &created.key)
        .await
        .expect("the new key works");
    assert_eq!(info.user_ids.unwrap().user_id, "alice");
    assert_eq!(
        info.rights.unwrap().rights,
        numbers(&[Right::UserInfo, Right::UserSettingsBasic])
    );
    assert_eq!(info.expires_at, got.expires_at);
}

async fn invalid_requests_are_refused_naming_the_field(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    let alice = env.user_token("alice", &[Right::UserAll]).await;
    let create = |request| create_key(&env, &alice, request);
    let ok = || new_key("alice", "ok", &[Right::UserInfo]);

    let long = "x".repeat(51);
    assert_invalid_field(
        create(new_key("alice", &long, &[Right::UserInfo])).await,
        "name",
    );
    assert_invalid_field(
        create(new_key("alice", "bell\u{7}", &[Right::UserInfo])).await,
        "name",
    );
    assert_invalid_field(create(new_key("alice", "none", &[])).await, "rights");
    assert_invalid_field(
        create(new_key("alice", "invalid", &[Right::Invalid])).await,
        "rights[0]",
    );
    let mut unknown = ok();
    unknown.rights = vec![Right::UserInfo as i32, 9999];
    assert_invalid_field(create(unknown).await, "rights[1]");
    assert_invalid_field(
        create(new_key(
            "alice",
            "twice",
            &[Right::UserInfo, Right::UserDelete, Right::UserInfo],
        ))
        .await,
        "rights[2]",
    );
    for past in [in_days(-1), timestamp(now() - Duration::seconds(1))] {
        let mut expired = ok();
        expired.expires_at = Some(past);
        assert_invalid_field(create(expired).await, "expires_at");
    }
    let mut nonsense = ok();
    nonsense.expires_at = Some(prost_types::Timestamp {
        seconds: in_days(1).seconds,
        nanos: -1,
    });
    assert_invalid_field(create(nonsense).await, "expires_at");
    let mut no_user = ok();
    no_user.user_ids = None;
    assert_invalid_field(create(no_user).await, "user_ids");

    let malformed = ["", "not-a-key", "ABCDEFGHIJKLMNOPQRSTUVWX", "abc"];
    for key_id in malformed {
        assert_invalid_field(get_key(&env, &alice, "alice", key_id).await, "key_id");
        assert_invalid_field(delete_key(&env, &alice, "alice", key_id).await, "key_id");
        let api_key = ApiKey {
            id: key_id.into(),
            name: "x".into(),
            rights: numbers(&[Right::UserInfo]),
            ..Default::default()
        };
        assert_invalid_field(
            update_key(&env, &alice, "alice", api_key, None).await,
            "api_key.id",
        );
    }
    let no_key = access(&env)
        .update_api_key(roster_test_support::with_token(
            roster_proto::v1::UpdateUserApiKeyRequest {
                user_ids: Some(ids("alice")),
                api_key: None,
                field_mask: None,
            },
            &alice,
        ))
        .await;
    assert_invalid_field(no_key, "api_key");
    assert_invalid_field(
        list_keys(&env, &alice, list_request("alice", "secret", 0, 0)).await,
        "order",
    );
    assert_invalid_field(
        list_keys(&env, &alice, list_request("alice", "", 1001, 0)).await,
        "limit",
    );

    // Updates name their fields under `api_key`.
    let (own_id, _) = env.api_key("alice", &[Right::UserInfo]).await;
    let update = |name: &str, rights: Vec<i32>| ApiKey {
        id: own_id.clone(),
        name: name.into(),
        rights,
        ..Default::default()
    };
    let cases = [
        (update(&long, numbers(&[Right::UserInfo])), "api_key.name"),
        (
            update("ok", numbers(&[Right::UserInfo, Right::UserInfo])),
            "api_key.rights[1]",
        ),
        (update("ok", vec![0]), "api_key.rights[0]"),
        (
            update("ok", vec![Right::UserInfo as i32, 4242]),
            "api_key.rights[1]",
        ),
    ];
    for (api_key, field) in cases {
        assert_invalid_field(
            update_key(&env, &alice, "alice", api_key, None).await,
            field,
        );
    }
    let before = stored_key(&env, "alice", &own_id).await.unwrap();
    assert_eq!(before.rights, numbers(&[Right::UserInfo]));
    assert_eq!(before.name, "test");

    // Nothing was stored; a name of 50 characters (not bytes) is fine.
    let response = list_keys(&env, &alice, list_request("alice", "", 0, 0))
        .await
        .unwrap();
    assert_eq!(total_count(&response), 2, "only the keys made by the test");
    let fifty = "é".repeat(50);
    let created = create(new_key("alice", &fifty, &[Right::UserInfo]))
        .await
        .expect("50 characters are allowed");
    assert_eq!(created.name, fifty);
}

async fn user_ids_must_name_a_well_formed_user(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    let admin = env.admin_token("root-admin").await;
    for bad in ["", "A", "Alice", "-alice", "a--b"] {
        let field = "user_ids.user_id";
        assert_invalid_field(
            create_key(&env, &admin, new_key(bad, "k", &[Right::UserInfo])).await,
            field,
        );
        assert_invalid_field(
            list_keys(&env, &admin, list_request(bad, "", 0, 0)).await,
            field,
        );
    }
    assert_invalid_field(
        access(&env)
            .list_rights(roster_test_support::with_token(ids("Alice"), &admin))
            .await,
        "user_id",
    );
}

async fn keys_are_listed_in_every_order_with_pages_and_a_total(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    let alice = env.user_token("alice", &[Right::UserAll]).await;
    let bob = env.user_token("bob", &[Right::UserAll]).await;
    create_key(&env, &bob, new_key("bob", "bob's", &[Right::UserInfo]))
        .await
        .unwrap();
    let spec: &[(&str, Option<i64>)] = &[
        ("beta", Some(2)),
        ("Alpha", None),
        ("alpha", Some(1)),
        ("gamma", None),
        ("beta", Some(3)),
    ];
    for (name, days) in spec {
        let mut request = new_key("alice", name, &[Right::UserInfo]);
        request.expires_at = days.map(in_days);
        create_key(&env, &alice, request).await.unwrap();
    }
    // Every key of alice's, her own (named "test", no expiry) included.
    let all = list_keys(&env, &alice, list_request("alice", "", 0, 0))
        .await
        .unwrap()
        .into_inner()
        .api_keys;
    assert_eq!(all.len(), 6);

    let seconds = |t: &Option<prost_types::Timestamp>| t.as_ref().map(|t| (t.seconds, t.nanos));
    let sorted = |descending: bool, key: &dyn Fn(&ApiKey) -> Vec<u8>| {
        let mut keys = all.clone();
        keys.sort_by(|a, b| {
            let (a_key, b_key) = (key(a), key(b));
            let by = if descending {
                b_key.cmp(&a_key)
            } else {
                a_key.cmp(&b_key)
            };
            by.then_with(|| a.id.cmp(&b.id))
        });
        keys.into_iter().map(|k| k.id).collect::<Vec<_>>()
    };
    let created = |k: &ApiKey| {
        let t = k.created_at.as_ref().unwrap();
        format!("{:020}{:09}", t.seconds, t.nanos).into_bytes()
    };
    // "Never" sorts after every time.
    let expires = |k: &ApiKey| match seconds(&k.expires_at) {
        Some((s, n)) => format!("0{s:020}{n:09}").into_bytes(),
        None => b"1".to_vec(),
    };
    let mut by_id: Vec<String> = all.iter().map(|k| k.id.clone()).collect();
    by_id.sort();
    let mut by_id_desc = by_id.clone();
    by_id_desc.reverse();
    let cases = [
        ("", by_id.clone()),
        ("api_key_id", by_id.clone()),
        ("-api_key_id", by_id_desc),
        ("name", sorted(false, &|k| k.name.clone().into_bytes())),
        ("-name", sorted(true, &|k| k.name.clone().into_bytes())),
        ("created_at", sorted(false, &created)),
        ("-created_at", sorted(true, &created)),
        ("expires_at", sorted(false, &expires)),
        ("-expires_at", sorted(true, &expires)),
    ];
    for (order, expected) in cases {
        let response = list_keys(&env, &alice, list_request("alice", order, 0, 0))
            .await
            .unwrap_or_else(|s| panic!("{order}: {s:?}"));
        assert_eq!(total_count(&response), 6, "{order}");
        let got: Vec<String> = response
            .into_inner()
            .api_keys
            .into_iter()
            .map(|k| k.id)
            .collect();
        assert_eq!(got, expected, "order {order:?}");
    }
    // Without expiry last ascending, first descending.
    let last = list_keys(&env, &alice, list_request("alice", "expires_at", 0, 0))
        .await
        .unwrap()
        .into_inner()
        .api_keys;
    assert!(last[..3].iter().all(|k| k.expires_at.is_some()));
    assert!(last[3..].iter().all(|k| k.expires_at.is_none()));

    // Pages of two: page 0 is page 1, and the total is always all six.
    let mut paged = Vec::new();
    for (page, size) in [(1, 2), (2, 2), (3, 2), (4, 0)] {
        let response = list_keys(&env, &alice, list_request("alice", "name", 2, page))
            .await
            .unwrap();
        assert_eq!(total_count(&response), 6, "page {page}");
        let keys = response.into_inner().api_keys;
        assert_eq!(keys.len(), size, "page {page}");
        paged.extend(keys.into_iter().map(|k| k.id));
    }
    assert_eq!(paged, sorted(false, &|k| k.name.clone().into_bytes()));
    let first = list_keys(&env, &alice, list_request("alice", "name", 2, 0))
        .await
        .unwrap()
        .into_inner()
        .api_keys;
    assert_eq!(
        first.iter().map(|k| k.id.clone()).collect::<Vec<_>>(),
        paged[..2]
    );
}

async fn an_update_with_an_empty_mask_changes_rights_and_name_only(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    let alice = env.user_token("alice", &[Right::UserAll]).await;
    let mut request = new_key("alice", "old", &[Right::UserInfo]);
    request.expires_at = Some(in_days(5));
    let key = create_key(&env, &alice, request).await.unwrap();

    let updated = update_key(
        &env,
        &alice,
        "alice",
        ApiKey {
            id: key.id.clone(),
            name: "new".into(),
            rights: numbers(&[Right::UserDelete, Right::UserInfo]),
            expires_at: Some(in_days(30)),
            // Ignored whatever they say.
            key: "rak.whatever".into(),
            created_at: Some(in_days(-100)),
            updated_at: Some(in_days(-100)),
        },
        None,
    )
    .await
    .expect("update with an empty mask");
    assert_eq!(updated.name, "new");
    assert_eq!(
        updated.rights,
        numbers(&[Right::UserDelete, Right::UserInfo])
    );
    assert_eq!(updated.expires_at, key.expires_at, "not in the mask");
    assert_eq!(updated.created_at, key.created_at);
    assert!(updated.key.is_empty());
    assert!(
        updated.updated_at.as_ref().unwrap().seconds * 1_000_000_000
            + i64::from(updated.updated_at.as_ref().unwrap().nanos)
            > key.updated_at.as_ref().unwrap().seconds * 1_000_000_000
                + i64::from(key.updated_at.as_ref().unwrap().nanos),
        "updated_at moves"
    );
    assert_eq!(
        get_key(&env, &alice, "alice", &key.id).await.unwrap(),
        updated
    );

    // An empty mask writes the name too: leaving it out clears it.
    let cleared = update_key(
        &env,
        &alice,
        "alice",
        ApiKey {
            id: key.id.clone(),
            rights: updated.rights.clone(),
            ..Default::default()
        },
        None,
    )
    .await
    .unwrap();
    assert_eq!(cleared.name, "");
    assert_eq!(cleared.expires_at, key.expires_at);

    // Only the masked path changes.
    let renamed = update_key(
        &env,
        &alice,
        "alice",
        ApiKey {
            id: key.id.clone(),
            name: "only the name".into(),
            ..Default::default()
        },
        Some(&["name"]),
    )
    .await
    .expect("an empty rights list is fine when rights are not in the mask");
    assert_eq!(renamed.name, "only the name");
    assert_eq!(renamed.rights, updated.rights);
}

async fn the_expiry_changes_only_when_it_is_in_the_mask(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    let alice = env.user_token("alice", &[Right::UserAll]).await;
    let key = create_key(&env, &alice, new_key("alice", "k", &[Right::UserInfo]))
        .await
        .unwrap();

    let later = in_days(10);
    let set = update_key(
        &env,
        &alice,
        "alice",
        ApiKey {
            id: key.id.clone(),
            name: "ignored".into(),
            expires_at: Some(later),
            ..Default::default()
        },
        Some(&["expires_at"]),
    )
    .await
    .unwrap();
    assert_eq!(set.expires_at, Some(later));
    assert_eq!(set.name, "k", "name is not in the mask");
    assert_eq!(set.rights, key.rights, "rights are not in the mask");

    assert_invalid_field(
        update_key(
            &env,
            &alice,
            "alice",
            ApiKey {
                id: key.id.clone(),
                expires_at: Some(in_days(-1)),
                ..Default::default()
            },
            Some(&["expires_at"]),
        )
        .await,
        "api_key.expires_at",
    );
    assert_eq!(
        stored_key(&env, "alice", &key.id).await.unwrap().expires_at,
        Some(later)
    );

    // In the mask without a value: never expires again.
    let cleared = update_key(
        &env,
        &alice,
        "alice",
        ApiKey {
            id: key.id.clone(),
            ..Default::default()
        },
        Some(&["expires_at"]),
    )
    .await
    .unwrap();
    assert_eq!(cleared.expires_at, None);
    assert_eq!(
        stored_key(&env, "alice", &key.id).await.unwrap().expires_at,
        None
    );
}

async fn emptying_a_keys_rights_is_refused_and_the_key_keeps_working(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    let alice = env.user_token("alice", &[Right::UserAll]).await;
    let key = create_key(
        &env,
        &alice,
        new_key("alice", "k", &[Right::UserInfo, Right::UserSettingsApiKeys]),
    )
    .await
    .unwrap();

    for paths in [None, Some(&["rights"][..]), Some(&["rights", "name"][..])] {
        let refused = update_key(
            &env,
            &key.key,
            "alice",
            ApiKey {
                id: key.id.clone(),
                name: "k".into(),
                rights: Vec::new(),
                ..Default::default()
            },
            paths,
        )
        .await;
        assert_invalid_field(refused, "api_key.rights");
    }
    assert_eq!(
        get_key(&env, &alice, "alice", &key.id).await.unwrap(),
        without_secret(&key),
        "the key is unchanged"
    );
    assert_eq!(
        list_rights(&env, &key.key, "alice").await.unwrap(),
        numbers(&[Right::UserInfo, Right::UserSettingsApiKeys]),
        "the key still works"
    );
    assert!(auth_info(&env, &key.key).await.is_ok());
}

async fn unknown_or_read_only_paths_in_the_mask_are_refused(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    let alice = env.user_token("alice", &[Right::UserAll]).await;
    let key = create_key(&env, &alice, new_key("alice", "k", &[Right::UserInfo]))
        .await
        .unwrap();
    let masks: &[&[&str]] = &[
        &["secret"],
        &["key"],
        &["id"],
        &["created_at"],
        &["updated_at"],
        &["name", "nope"],
        &["user_ids"],
    ];
    for paths in masks {
        let refused = update_key(
            &env,
            &alice,
            "alice",
            ApiKey {
                id: key.id.clone(),
                name: "changed".into(),
                rights: numbers(&[Right::UserDelete]),
                key: "rak.x.y".into(),
                ..Default::default()
            },
            Some(paths),
        )
        .await;
        assert_invalid_field(refused, "field_mask");
    }
    assert_eq!(
        stored_key(&env, "alice", &key.id).await.unwrap(),
        without_secret(&key)
    );
}

async fn another_users_key_is_not_found_through_your_own_user_ids(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    let alice = env.user_token("alice", &[Right::UserAll]).await;
    env.ensure_user("bob", false).await;
    let (bobs_id, bobs_key) = env.api_key("bob", &[Right::UserInfo]).await;
    let before = stored_key(&env, "bob", &bobs_id).await.unwrap();

    let status = expect_code(
        get_key(&env, &alice, "alice", &bobs_id).await,
        Code::NotFound,
    );
    assert!(status.message().contains("api_key"), "{status:?}");
    expect_code(
        update_key(
            &env,
            &alice,
            "alice",
            ApiKey {
                id: bobs_id.clone(),
                name: "mine".into(),
                rights: numbers(&[Right::UserInfo]),
                ..Default::default()
            },
            None,
        )
        .await,
        Code::NotFound,
    );
    expect_code(
        delete_key(&env, &alice, "alice", &bobs_id).await,
        Code::NotFound,
    );
    // Through bob's user IDs alice has no right at all.
    expect_code(
        get_key(&env, &alice, "bob", &bobs_id).await,
        Code::PermissionDenied,
    );
    expect_code(
        delete_key(&env, &alice, "bob", &bobs_id).await,
        Code::PermissionDenied,
    );
    expect_code(
        list_keys(&env, &alice, list_request("bob", "", 0, 0)).await,
        Code::PermissionDenied,
    );
    expect_code(
        create_key(&env, &alice, new_key("bob", "for bob", &[Right::UserInfo])).await,
        Code::PermissionDenied,
    );

    assert_eq!(stored_key(&env, "bob", &bobs_id).await.unwrap(), before);
    assert!(auth_info(&env, &bobs_key).await.is_ok(), "bob's key works");
    // A well-formed ID nobody has is not found either.
    let nobody = Token::generate(TokenType::ApiKey);
    expect_code(
        get_key(&env, &alice, "alice", nobody.id()).await,
        Code::NotFound,
    );
}

async fn a_deleted_key_is_gone_and_stops_working(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    let alice = env.user_token("alice", &[Right::UserAll]).await;
    let key = create_key(&env, &alice, new_key("alice", "k", &[Right::UserInfo]))
        .await
        .unwrap();
    assert!(auth_info(&env, &key.key).await.is_ok());

    delete_key(&env, &alice, "alice", &key.id)
        .await
        .expect("delete");
    expect_code(
        get_key(&env, &alice, "alice", &key.id).await,
        Code::NotFound,
    );
    expect_code(
        delete_key(&env, &alice, "alice", &key.id).await,
        Code::NotFound,
    );
    expect_code(auth_info(&env, &key.key).await, Code::Unauthenticated);
    let response = list_keys(&env, &alice, list_request("alice", "", 0, 0))
        .await
        .unwrap();
    assert_eq!(total_count(&response), 1);
    assert!(
        response
            .into_inner()
            .api_keys
            .iter()
            .all(|k| k.id != key.id)
    );

    // A key may delete itself, and stops working at once.
    let own = create_key(
        &env,
        &alice,
        new_key("alice", "self", &[Right::UserSettingsApiKeys]),
    )
    .await
    .unwrap();
    assert!(list_rights(&env, &own.key, "alice").await.is_ok());
    delete_key(&env, &own.key, "alice", &own.id).await.unwrap();
    expect_code(
        list_rights(&env, &own.key, "alice").await,
        Code::Unauthenticated,
    );
}

async fn admins_manage_other_users_keys(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    let admin = env.admin_token("root-admin").await;
    env.ensure_user("alice", false).await;

    let key = create_key(&env, &admin, new_key("alice", "by ops", &[Right::UserInfo]))
        .await
        .expect("an admin creates a key for alice");
    assert_eq!(
        auth_info(&env, &key.key)
            .await
            .unwrap()
            .user_ids
            .unwrap()
            .user_id,
        "alice"
    );
    assert_eq!(
        get_key(&env, &admin, "alice", &key.id).await.unwrap(),
        without_secret(&key)
    );
    let response = list_keys(&env, &admin, list_request("alice", "", 0, 0))
        .await
        .unwrap();
    assert_eq!(total_count(&response), 1);
    let renamed = update_key(
        &env,
        &admin,
        "alice",
        ApiKey {
            id: key.id.clone(),
            name: "renamed".into(),
            ..Default::default()
        },
        Some(&["name"]),
    )
    .await
    .unwrap();
    assert_eq!(renamed.name, "renamed");
    delete_key(&env, &admin, "alice", &key.id).await.unwrap();

    // Users that do not exist, or no longer do, are not found.
    expect_code(
        create_key(&env, &admin, new_key("nobody", "k", &[Right::UserInfo])).await,
        Code::NotFound,
    );
    expect_code(
        list_keys(&env, &admin, list_request("nobody", "", 0, 0)).await,
        Code::NotFound,
    );
    registry(&env)
        .delete(roster_test_support::with_token(ids("alice"), &admin))
        .await
        .expect("delete alice");
    expect_code(
        create_key(&env, &admin, new_key("alice", "k", &[Right::UserInfo])).await,
        Code::NotFound,
    );
}

async fn callers_without_credentials_are_unauthenticated(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    env.ensure_user("alice", false).await;
    let mut client = access(&env);
    expect_code(
        client
            .create_api_key(tonic::Request::new(new_key(
                "alice",
                "k",
                &[Right::UserInfo],
            )))
            .await,
        Code::Unauthenticated,
    );
    expect_code(
        client
            .list_api_keys(tonic::Request::new(list_request("alice", "", 0, 0)))
            .await,
        Code::Unauthenticated,
    );
    expect_code(
        client.list_rights(tonic::Request::new(ids("alice"))).await,
        Code::Unauthenticated,
    );
    expect_code(
        list_rights(&env, "rak.not.a-key", "alice").await,
        Code::Unauthenticated,
    );
}

/// Matches events about the key `key_id` (events of keys made before the
/// subscription may still be on their way).
fn about(key_id: &str) -> impl FnMut(&roster_proto::v1::Event) -> bool + '_ {
    move |event| {
        event_data::<ApiKeyEventData>(event)
            .api_key
            .is_some_and(|k| k.id == key_id)
    }
}

async fn every_change_is_announced_without_the_secret(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    let alice = env.user_token("alice", &[Right::UserAll]).await;
    let alices_key_id = Token::parse(&alice).unwrap().id().to_string();
    let mut events = env.subscribe("user.api-key.>").await;

    let created = create_key(&env, &alice, new_key("alice", "k", &[Right::UserInfo]))
        .await
        .unwrap();
    let secret = secret_of(&created.key).to_string();
    let event = next_event_where(&mut events, "user.api-key.create", WAIT, about(&created.id))
        .await
        .expect("user.api-key.create published");
    assert_eq!(event_user_ids(&event), ["alice"]);
    let data: ApiKeyEventData = event_data(&event);
    assert_eq!(data.api_key, Some(without_secret(&created)));
    assert!(data.changed_paths.is_empty());
    let auth = event.authentication.clone().expect("who did it");
    assert_eq!(auth.token_type, "api_key");
    assert_eq!(auth.token_id, alices_key_id);
    assert!(!event_contains(&event, &secret), "no secret in the event");
    assert!(!event_contains(&event, secret_of(&alice)));

    // A change to nothing and a refused change announce nothing, so the
    // next update event is the real change.
    update_key(
        &env,
        &alice,
        "alice",
        ApiKey {
            id: created.id.clone(),
            name: "k".into(),
            rights: created.rights.clone(),
            ..Default::default()
        },
        None,
    )
    .await
    .expect("an update that changes nothing");
    update_key(
        &env,
        &alice,
        "alice",
        ApiKey {
            id: created.id.clone(),
            ..Default::default()
        },
        Some(&["rights"]),
    )
    .await
    .unwrap_err();
    let updated = update_key(
        &env,
        &alice,
        "alice",
        ApiKey {
            id: created.id.clone(),
            name: "renamed".into(),
            rights: numbers(&[Right::UserInfo, Right::UserDelete]),
            expires_at: Some(in_days(3)),
            ..Default::default()
        },
        Some(&["name", "rights", "expires_at"]),
    )
    .await
    .unwrap();
    let event = next_event_where(&mut events, "user.api-key.update", WAIT, about(&created.id))
        .await
        .expect("user.api-key.update published");
    let data: ApiKeyEventData = event_data(&event);
    assert_eq!(data.api_key, Some(updated.clone()));
    assert_eq!(data.changed_paths, ["name", "rights", "expires_at"]);
    assert!(!event_contains(&event, &secret));

    let renamed = update_key(
        &env,
        &alice,
        "alice",
        ApiKey {
            id: created.id.clone(),
            name: "again".into(),
            ..Default::default()
        },
        Some(&["name"]),
    )
    .await
    .unwrap();
    let event = next_event_where(&mut events, "user.api-key.update", WAIT, about(&created.id))
        .await
        .expect("the second update");
    let data: ApiKeyEventData = event_data(&event);
    assert_eq!(data.changed_paths, ["name"]);
    assert_eq!(data.api_key, Some(renamed.clone()));

    delete_key(&env, &alice, "alice", &created.id)
        .await
        .unwrap();
    let event = next_event_where(&mut events, "user.api-key.delete", WAIT, about(&created.id))
        .await
        .expect("user.api-key.delete published");
    assert_eq!(event_user_ids(&event), ["alice"]);
    let data: ApiKeyEventData = event_data(&event);
    assert_eq!(data.api_key, Some(renamed), "the key as it was");
    assert!(data.api_key.unwrap().key.is_empty());
    assert!(!event_contains(&event, &secret));
}

async fn a_key_with_user_all_carries_every_user_right(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    let alice = env.user_token("alice", &[Right::UserAll]).await;
    let key = create_key(&env, &alice, new_key("alice", "all", &[Right::UserAll]))
        .await
        .unwrap();
    assert_eq!(
        key.rights,
        numbers(&[Right::UserAll]),
        "stored as written, so the key gains user rights added later"
    );
    assert_eq!(
        get_key(&env, &alice, "alice", &key.id)
            .await
            .unwrap()
            .rights,
        numbers(&[Right::UserAll])
    );
    let rights = list_rights(&env, &key.key, "alice").await.unwrap();
    assert_eq!(rights, all_user_rights());
    for right in [
        Right::UserInfo,
        Right::UserSettingsBasic,
        Right::UserSettingsApiKeys,
        Right::UserDelete,
        Right::UserAuthorizedClients,
        Right::UserNotificationsRead,
    ] {
        assert!(rights.contains(&(right as i32)), "{right:?}");
    }
    assert!(!rights.contains(&(Right::UserAll as i32)), "expanded");
    assert!(!rights.contains(&(Right::UserList as i32)), "no universal");
    assert_eq!(
        auth_info(&env, &key.key)
            .await
            .unwrap()
            .rights
            .unwrap()
            .rights,
        all_user_rights()
    );

    let narrow = create_key(&env, &alice, new_key("alice", "info", &[Right::UserInfo]))
        .await
        .unwrap();
    assert_eq!(
        list_rights(&env, &narrow.key, "alice").await.unwrap(),
        numbers(&[Right::UserInfo])
    );
}

async fn list_rights_answers_for_yourself_others_and_admins(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    let admin = env.admin_token("root-admin").await;
    let alice = env
        .user_token("alice", &[Right::UserSettingsApiKeys, Right::UserInfo])
        .await;
    env.ensure_user("bob", false).await;

    assert_eq!(
        list_rights(&env, &alice, "alice").await.unwrap(),
        numbers(&[Right::UserInfo, Right::UserSettingsApiKeys])
    );
    assert_eq!(
        list_rights(&env, &alice, "bob").await.unwrap(),
        Vec::<i32>::new()
    );
    assert_eq!(
        list_rights(&env, &alice, "nobody").await.unwrap(),
        Vec::<i32>::new()
    );
    for user in ["alice", "root-admin", "nobody"] {
        assert_eq!(
            list_rights(&env, &admin, user).await.unwrap(),
            all_rights(),
            "{user}"
        );
    }
    let cluster = access(&env)
        .list_rights(with_cluster_key(ids("alice")))
        .await
        .unwrap()
        .into_inner()
        .rights;
    assert_eq!(cluster, all_rights());
}

async fn a_narrowed_key_loses_its_rights_at_once(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    let admin = env.admin_token("root-admin").await;
    env.ensure_user("alice", false).await;
    let (key_id, key) = env.api_key("alice", &[Right::UserAll]).await;
    // Used once, so the answer for it is cached.
    assert_eq!(
        list_rights(&env, &key, "alice").await.unwrap(),
        all_user_rights()
    );

    update_key(
        &env,
        &admin,
        "alice",
        ApiKey {
            id: key_id.clone(),
            rights: numbers(&[Right::UserInfo]),
            ..Default::default()
        },
        Some(&["rights"]),
    )
    .await
    .expect("the admin narrows alice's key");
    assert_eq!(
        list_rights(&env, &key, "alice").await.unwrap(),
        numbers(&[Right::UserInfo]),
        "no stale answer"
    );
    expect_code(
        list_keys(&env, &key, list_request("alice", "", 0, 0)).await,
        Code::PermissionDenied,
    );
}

on_both_backends!(
    creating_a_key_returns_the_full_key_exactly_once,
    invalid_requests_are_refused_naming_the_field,
    user_ids_must_name_a_well_formed_user,
    keys_are_listed_in_every_order_with_pages_and_a_total,
    an_update_with_an_empty_mask_changes_rights_and_name_only,
    the_expiry_changes_only_when_it_is_in_the_mask,
    emptying_a_keys_rights_is_refused_and_the_key_keeps_working,
    unknown_or_read_only_paths_in_the_mask_are_refused,
    another_users_key_is_not_found_through_your_own_user_ids,
    a_deleted_key_is_gone_and_stops_working,
    admins_manage_other_users_keys,
    callers_without_credentials_are_unauthenticated,
    every_change_is_announced_without_the_secret,
    a_key_with_user_all_carries_every_user_right,
    list_rights_answers_for_yourself_others_and_admins,
    a_narrowed_key_loses_its_rights_at_once,
);
