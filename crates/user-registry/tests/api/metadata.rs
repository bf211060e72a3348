//! `UserMetadata`: set, list and delete a user's metadata, all or nothing,
//! within the limits, with the rights of the user and the events of each
//! change; List and SearchUsers filtered by metadata; purge takes it away.

use roster_core::events::metadata as events;
use roster_proto::v1::user_metadata_client::UserMetadataClient;
use roster_proto::v1::{
    DeleteUserMetadataRequest, ListUserMetadataRequest, ListUsersRequest, Right,
    SearchUsersRequest, SetUserMetadataRequest, UserMetadataEntries, UserMetadataEntry,
    UserMetadataEventData, UserMetadataFilter,
};
use roster_test_support::{Backend, TestEnv, event_data, with_token};
use roster_user_registry::UserRegistryConfig;
use tonic::{Code, Status};

use crate::support::*;

fn client(env: &TestEnv) -> UserMetadataClient<tonic::transport::Channel> {
    UserMetadataClient::new(env.channel())
}

fn entry(key: &str, value: &[u8]) -> UserMetadataEntry {
    UserMetadataEntry {
        key: key.into(),
        value: value.to_vec(),
        ..Default::default()
    }
}

async fn set(
    env: &TestEnv,
    token: &str,
    user_id: &str,
    entries: &[(&str, &[u8])],
) -> Result<(), Status> {
    client(env)
        .set_user_metadata(with_token(
            SetUserMetadataRequest {
                user_ids: Some(ids(user_id)),
                metadata: entries.iter().map(|(k, v)| entry(k, v)).collect(),
            },
            token,
        ))
        .await
        .map(drop)
}

async fn list(
    env: &TestEnv,
    token: &str,
    user_id: &str,
    prefix: &str,
) -> Result<(Vec<(String, Vec<u8>)>, u64), Status> {
    let response = client(env)
        .list_user_metadata(with_token(
            ListUserMetadataRequest {
                user_ids: Some(ids(user_id)),
                key_prefix: prefix.into(),
                ..Default::default()
            },
            token,
        ))
        .await?;
    let total = total_count(&response);
    let UserMetadataEntries { metadata } = response.into_inner();
    for e in &metadata {
        assert!(e.created_at.is_some() && e.updated_at.is_some(), "{e:?}");
    }
    Ok((
        metadata.into_iter().map(|e| (e.key, e.value)).collect(),
        total,
    ))
}

async fn delete(env: &TestEnv, token: &str, user_id: &str, keys: &[&str]) -> Result<(), Status> {
    client(env)
        .delete_user_metadata(with_token(
            DeleteUserMetadataRequest {
                user_ids: Some(ids(user_id)),
                keys: keys.iter().map(|k| k.to_string()).collect(),
            },
            token,
        ))
        .await
        .map(drop)
}

fn pairs(entries: &[(&str, &[u8])]) -> Vec<(String, Vec<u8>)> {
    entries
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_vec()))
        .collect()
}

async fn a_round_trip_sets_replaces_lists_and_deletes_with_one_event_each(backend: Backend) {
    let env = TestEnv::start_with(backend, UserRegistryConfig::default()).await;
    register(&env, "alice").await;
    let key = key_of(&env, "alice", &[Right::UserAll]).await;
    let mut stream = env.subscribe(events::ALL).await;

    set(
        &env,
        &key,
        "alice",
        &[("tenant", b"eu-1"), ("hr/id", &[0, 159, 255])],
    )
    .await
    .unwrap();
    let (entries, total) = list(&env, &key, "alice", "").await.unwrap();
    assert_eq!(
        entries,
        pairs(&[("hr/id", &[0, 159, 255]), ("tenant", b"eu-1")])
    );
    assert_eq!(total, 2);

    // A second set replaces one value, adds a key and leaves the rest.
    set(
        &env,
        &key,
        "alice",
        &[("tenant", b"us-2"), ("team", b"ops")],
    )
    .await
    .unwrap();
    let (entries, _) = list(&env, &key, "alice", "te").await.unwrap();
    assert_eq!(entries, pairs(&[("team", b"ops"), ("tenant", b"us-2")]));
    let (entries, _) = list(&env, &key, "alice", "hr/").await.unwrap();
    assert_eq!(entries, pairs(&[("hr/id", &[0, 159, 255])]));

    delete(&env, &key, "alice", &["team", "hr/id"])
        .await
        .unwrap();
    let (entries, total) = list(&env, &key, "alice", "").await.unwrap();
    assert_eq!((entries, total), (pairs(&[("tenant", b"us-2")]), 1));

    // One event per change, naming the keys in order and never a value.
    for (name, keys) in [
        (events::SET, vec!["hr/id", "tenant"]),
        (events::SET, vec!["team", "tenant"]),
        (events::DELETED, vec!["hr/id", "team"]),
    ] {
        let event = next_event_where(&mut stream, name, WAIT, |_| true)
            .await
            .unwrap_or_else(|| panic!("no {name}"));
        assert_eq!(event_user_ids(&event), ["alice"]);
        let data: UserMetadataEventData = event_data(&event);
        assert_eq!(data.keys, keys);
        let bytes = prost::Message::encode_to_vec(&event);
        assert!(
            !bytes.windows(4).any(|w| w == b"eu-1" || w == b"us-2"),
            "a value leaked into {name}"
        );
    }
}

async fn a_delete_of_a_key_that_is_not_set_deletes_nothing(backend: Backend) {
    let env = TestEnv::start_with(backend, UserRegistryConfig::default()).await;
    register(&env, "alice").await;
    let key = key_of(&env, "alice", &[Right::UserAll]).await;
    set(&env, &key, "alice", &[("a", b"1"), ("b", b"2")])
        .await
        .unwrap();
    let missing = delete(&env, &key, "alice", &["a", "nope"])
        .await
        .expect_err("one key is not set");
    assert_eq!(missing.code(), Code::NotFound, "{missing:?}");
    assert!(missing.message().contains("nope"), "{missing:?}");
    let (entries, _) = list(&env, &key, "alice", "").await.unwrap();
    assert_eq!(entries, pairs(&[("a", b"1"), ("b", b"2")]));
}

async fn limits_are_enforced_all_or_nothing_naming_the_field(backend: Backend) {
    let env = TestEnv::start_with(
        backend,
        UserRegistryConfig {
            metadata_max_entries: 3,
            metadata_max_value_bytes: 16,
            ..UserRegistryConfig::default()
        },
    )
    .await;
    register(&env, "alice").await;
    let key = key_of(&env, "alice", &[Right::UserAll]).await;
    let long_key = "k".repeat(201);
    let big = [7u8; 17];
    for (entries, field) in [
        (vec![], "metadata"),
        (
            vec![(long_key.as_str(), b"v".as_slice())],
            "metadata[0].key",
        ),
        (vec![("", b"v".as_slice())], "metadata[0].key"),
        (vec![("line\nbreak", b"v".as_slice())], "metadata[0].key"),
        (vec![("a", b"".as_slice())], "metadata[0].value"),
        (
            vec![("a", b"1".as_slice()), ("b", &big)],
            "metadata[1].value",
        ),
        (vec![("a", b"1".as_slice()), ("a", b"2")], "metadata[1].key"),
        (
            vec![
                ("a", b"1".as_slice()),
                ("b", b"2"),
                ("c", b"3"),
                ("d", b"4"),
            ],
            "metadata",
        ),
    ] {
        let refused = set(&env, &key, "alice", &entries).await.expect_err(field);
        assert_invalid_field(&refused, field);
    }
    // The exact limits pass.
    set(
        &env,
        &key,
        "alice",
        &[("a", &[1u8; 16]), (&"k".repeat(200), b"v")],
    )
    .await
    .unwrap();
    // Two more would make four: refused, and neither is written, not even
    // the one that only replaces a value.
    let full = set(
        &env,
        &key,
        "alice",
        &[("a", b"new"), ("b", b"2"), ("c", b"3")],
    )
    .await
    .expect_err("past the limit");
    assert_invalid_field(&full, "metadata");
    let (entries, total) = list(&env, &key, "alice", "").await.unwrap();
    assert_eq!(total, 2);
    assert_eq!(entries[0], ("a".to_string(), vec![1u8; 16]));
    // Replacing values does not count twice.
    set(&env, &key, "alice", &[("a", b"new"), ("b", b"2")])
        .await
        .unwrap();
    assert_eq!(list(&env, &key, "alice", "").await.unwrap().1, 3);

    let bad_delete = delete(&env, &key, "alice", &["a", "a"]).await.unwrap_err();
    assert_invalid_field(&bad_delete, "keys[1]");
    let bad_prefix = client(&env)
        .list_user_metadata(with_token(
            ListUserMetadataRequest {
                user_ids: Some(ids("alice")),
                key_prefix: "tab\there".into(),
                ..Default::default()
            },
            &key,
        ))
        .await
        .unwrap_err();
    assert_invalid_field(&bad_prefix, "key_prefix");
}

async fn reading_needs_user_info_and_writing_basic_settings(backend: Backend) {
    let env = TestEnv::start_with(backend, UserRegistryConfig::default()).await;
    register(&env, "alice").await;
    register(&env, "bob").await;
    let alice_all = key_of(&env, "alice", &[Right::UserAll]).await;
    let alice_info = key_of(&env, "alice", &[Right::UserInfo]).await;
    let alice_basic = key_of(&env, "alice", &[Right::UserSettingsBasic]).await;
    let bob = key_of(&env, "bob", &[Right::UserAll]).await;
    let admin = env.admin_token(ADMIN).await;
    set(&env, &alice_all, "alice", &[("a", b"1")])
        .await
        .unwrap();

    assert!(list(&env, &alice_info, "alice", "").await.is_ok());
    let denied = set(&env, &alice_info, "alice", &[("b", b"2")]).await;
    assert_eq!(denied.unwrap_err().code(), Code::PermissionDenied);
    let denied = delete(&env, &alice_info, "alice", &["a"]).await;
    assert_eq!(denied.unwrap_err().code(), Code::PermissionDenied);

    set(&env, &alice_basic, "alice", &[("b", b"2")])
        .await
        .unwrap();
    let denied = list(&env, &alice_basic, "alice", "").await;
    assert_eq!(denied.unwrap_err().code(), Code::PermissionDenied);

    // Another user touches nothing, and cannot tell a user from none.
    for target in ["alice", "no-such-user"] {
        let denied = list(&env, &bob, target, "").await;
        assert_eq!(denied.unwrap_err().code(), Code::PermissionDenied);
        let denied = set(&env, &bob, target, &[("x", b"1")]).await;
        assert_eq!(denied.unwrap_err().code(), Code::PermissionDenied);
    }
    // An admin may do it all, and hears NOT_FOUND for an unknown user.
    set(&env, &admin, "alice", &[("c", b"3")]).await.unwrap();
    assert_eq!(list(&env, &admin, "alice", "").await.unwrap().1, 3);
    let unknown = list(&env, &admin, "no-such-user", "").await.unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    let unauthenticated = client(&env)
        .list_user_metadata(ListUserMetadataRequest {
            user_ids: Some(ids("alice")),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(unauthenticated.code(), Code::Unauthenticated);
}

fn filter(key: &str, value: Option<&[u8]>) -> UserMetadataFilter {
    UserMetadataFilter {
        key: key.into(),
        value: value.map(<[u8]>::to_vec),
    }
}

async fn list_and_search_filter_by_key_and_value(backend: Backend) {
    let env = TestEnv::start_with(backend, UserRegistryConfig::default()).await;
    let admin = env.admin_token(ADMIN).await;
    for user in ["alice", "bob", "carol", "dave"] {
        register(&env, user).await;
    }
    // A value past any index entry's width still matches exactly.
    let long = vec![b'x'; 4096];
    set(
        &env,
        &admin,
        "alice",
        &[("tenant", b"eu"), ("team", b"ops")],
    )
    .await
    .unwrap();
    set(&env, &admin, "bob", &[("tenant", b"us"), ("team", b"ops")])
        .await
        .unwrap();
    set(&env, &admin, "carol", &[("tenant", b"eu"), ("blob", &long)])
        .await
        .unwrap();
    set(&env, &admin, "dave", &[("Tenant", b"eu")])
        .await
        .unwrap();

    let listed = |filters: Vec<UserMetadataFilter>| {
        let env = &env;
        async move {
            list_as_admin(
                env,
                ListUsersRequest {
                    metadata: filters,
                    ..Default::default()
                },
            )
            .await
        }
    };
    assert_eq!(
        listed(vec![filter("tenant", None)]).await,
        (vec!["alice".into(), "bob".into(), "carol".into()], 3)
    );
    assert_eq!(
        listed(vec![filter("tenant", Some(b"eu"))]).await,
        (vec!["alice".into(), "carol".into()], 2),
        "keys are case-sensitive: dave's is `Tenant`"
    );
    assert_eq!(
        listed(vec![
            filter("tenant", Some(b"eu")),
            filter("team", Some(b"ops"))
        ])
        .await,
        (vec!["alice".into()], 1)
    );
    assert_eq!(
        listed(vec![filter("blob", Some(&long))]).await,
        (vec!["carol".into()], 1)
    );
    let mut almost = long.clone();
    almost[4095] = b'y';
    assert_eq!(listed(vec![filter("blob", Some(&almost))]).await.1, 0);
    assert_eq!(listed(vec![filter("tenant", Some(b"e"))]).await.1, 0);

    // SearchUsers: the same filter beside a text filter.
    let response = search_client(&env)
        .search_users(with_token(
            SearchUsersRequest {
                query: "a".into(),
                metadata: vec![filter("tenant", Some(b"eu"))],
                ..Default::default()
            },
            &admin,
        ))
        .await
        .unwrap();
    assert_eq!(total_count(&response), 2);
    assert_eq!(user_ids_of(response.get_ref()), ["alice", "carol"]);

    // Bad filters name the field.
    let too_long = list_or_error(&env, vec![filter(&"k".repeat(201), None)]).await;
    assert_invalid_field(&too_long.unwrap_err(), "metadata[0].key");
    let empty_value = list_or_error(&env, vec![filter("a", Some(b""))]).await;
    assert_invalid_field(&empty_value.unwrap_err(), "metadata[0].value");
    let many = list_or_error(
        &env,
        (0..11).map(|i| filter(&format!("k{i}"), None)).collect(),
    )
    .await;
    assert_invalid_field(&many.unwrap_err(), "metadata");
}

async fn concurrent_sets_of_one_user_all_land_and_never_pass_the_limit(backend: Backend) {
    let env = TestEnv::start_with(
        backend,
        UserRegistryConfig {
            metadata_max_entries: 10,
            ..UserRegistryConfig::default()
        },
    )
    .await;
    register(&env, "alice").await;
    register(&env, "bob").await;
    let alice = key_of(&env, "alice", &[Right::UserAll]).await;
    let bob = key_of(&env, "bob", &[Right::UserAll]).await;
    // Sixteen sets at once, of alice's own keys and, between them, of bob's
    // (other writes on the same database): every one either lands or is
    // refused for the limit, never for a busy database.
    let calls = (0..16).map(|i| {
        let (env, alice, bob) = (&env, &alice, &bob);
        async move {
            let key = format!("k{i}");
            let entries = [(key.as_str(), b"v".as_slice())];
            let replaced = [("same", key.as_bytes())];
            let other = set(env, bob, "bob", &replaced);
            let own = set(env, alice, "alice", &entries);
            let (other, own) = futures::join!(other, own);
            other.expect("bob's set lands");
            own
        }
    });
    let results = futures::future::join_all(calls).await;
    let landed = results.iter().filter(|r| r.is_ok()).count();
    for refused in results.iter().filter_map(|r| r.as_ref().err()) {
        assert_invalid_field(refused, "metadata");
    }
    assert_eq!(landed, 10, "{results:?}");
    let (entries, total) = list(&env, &alice, "alice", "").await.unwrap();
    assert_eq!((entries.len(), total), (10, 10));
}

async fn filtering_by_metadata_needs_user_info_on_everyone(backend: Backend) {
    let env = TestEnv::start_with(backend, UserRegistryConfig::default()).await;
    env.ensure_user(ADMIN, true).await;
    let list_only = key_of(&env, ADMIN, &[Right::UserList]).await;
    let refused = registry(&env)
        .list(with_token(
            ListUsersRequest {
                metadata: vec![filter("salary", Some(b"100000"))],
                ..Default::default()
            },
            &list_only,
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    // The same key lists without the filter.
    registry(&env)
        .list(with_token(ListUsersRequest::default(), &list_only))
        .await
        .expect("RIGHT_USER_LIST lists");
    list_or_error(&env, vec![filter("salary", Some(b"100000"))])
        .await
        .expect("an admin filters");
}

async fn list_or_error(env: &TestEnv, filters: Vec<UserMetadataFilter>) -> Result<(), Status> {
    let admin = env.admin_token(ADMIN).await;
    registry(env)
        .list(with_token(
            ListUsersRequest {
                metadata: filters,
                ..Default::default()
            },
            &admin,
        ))
        .await
        .map(drop)
}

async fn a_purged_user_leaves_no_metadata_behind(backend: Backend) {
    let env = TestEnv::start_with(backend, UserRegistryConfig::default()).await;
    let admin = env.admin_token(ADMIN).await;
    register(&env, "alice").await;
    set(&env, &admin, "alice", &[("tenant", b"eu")])
        .await
        .unwrap();
    // Soft-deleted: its metadata is out of reach, and out of List.
    delete_user(&env, "alice", &admin).await.unwrap();
    let gone = list(&env, &admin, "alice", "").await.unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
    registry(&env)
        .purge(with_token(ids("alice"), &admin))
        .await
        .unwrap();
    // The ID is free again, and the new alice starts with nothing.
    register(&env, "alice").await;
    assert_eq!(list(&env, &admin, "alice", "").await.unwrap().1, 0);
    let (listed, _) = list_as_admin(
        &env,
        ListUsersRequest {
            metadata: vec![filter("tenant", None)],
            ..Default::default()
        },
    )
    .await;
    assert!(listed.is_empty(), "{listed:?}");
}

on_both_backends!(
    a_round_trip_sets_replaces_lists_and_deletes_with_one_event_each,
    a_delete_of_a_key_that_is_not_set_deletes_nothing,
    limits_are_enforced_all_or_nothing_naming_the_field,
    reading_needs_user_info_and_writing_basic_settings,
    list_and_search_filter_by_key_and_value,
    a_purged_user_leaves_no_metadata_behind,
    concurrent_sets_of_one_user_all_land_and_never_pass_the_limit,
    filtering_by_metadata_needs_user_info_on_everyone,
);
