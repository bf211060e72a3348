//! EntityRegistrySearch.SearchUsers: admins only, substring filters on ID,
//! name, description and attributes, the state filter, literal `%` and
//! `_`, length limits, the total and deleted users.

use std::collections::HashMap;

use roster_proto::v1::{Right, SearchUsersRequest, State, User};
use roster_test_support::{Backend, TestEnv, with_token};
use tonic::Code;

use crate::support::*;

/// Searches with a key of the [`ADMIN`] (who is found too when matching);
/// returns the IDs and the total.
async fn search_as_admin(env: &TestEnv, request: SearchUsersRequest) -> (Vec<String>, u64) {
    try_search(env, request).await.expect("search")
}

async fn try_search(
    env: &TestEnv,
    request: SearchUsersRequest,
) -> Result<(Vec<String>, u64), tonic::Status> {
    let admin = env.admin_token(ADMIN).await;
    let response = search_client(env)
        .search_users(with_token(request, &admin))
        .await?;
    let total = total_count(&response);
    Ok((user_ids_of(response.get_ref()), total))
}

/// Creates `user_id` with `name`, `description` and `attributes`.
async fn create_named(
    env: &TestEnv,
    user_id: &str,
    name: &str,
    description: &str,
    attributes: &[(&str, &str)],
) {
    create_as_admin(
        env,
        User {
            name: name.into(),
            description: description.into(),
            attributes: attributes
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<HashMap<_, _>>(),
            state: State::Approved as i32,
            ..new_user(user_id)
        },
    )
    .await
    .expect("create");
}

#[tokio::test]
async fn search_is_for_admins_only() {
    let env = TestEnv::start().await;
    register(&env, "alice").await;
    let alice = key_of(&env, "alice", &[Right::UserAll]).await;
    let status = search_client(&env)
        .search_users(with_token(
            SearchUsersRequest {
                query: "alice".into(),
                ..Default::default()
            },
            &alice,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    let status = search_client(&env)
        .search_users(SearchUsersRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
}

async fn query_matches_the_id_or_the_name_case_insensitively(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    create_named(&env, "alice", "Alice Liddell", "", &[]).await;
    create_named(&env, "bob", "Robert Malice", "", &[]).await;
    create_named(&env, "carol", "Carol Singer", "", &[]).await;
    create_named(&env, "dave", "Dave", "", &[]).await;

    let query = |q: &str| SearchUsersRequest {
        query: q.into(),
        ..Default::default()
    };
    // "alice" is alice's ID and part of bob's name.
    assert_eq!(
        search_as_admin(&env, query("ALICE")).await,
        (vec!["alice".into(), "bob".into()], 2)
    );
    assert_eq!(
        search_as_admin(&env, query("lIdDeLl")).await,
        (vec!["alice".into()], 1)
    );
    // A substring of the ID.
    assert_eq!(
        search_as_admin(&env, query("aro")).await,
        (vec!["carol".into()], 1)
    );
    assert_eq!(
        search_as_admin(&env, query("nobody-has-this")).await,
        (vec![], 0)
    );
    // An empty query matches everyone, the admin who searches too.
    assert_eq!(
        search_as_admin(&env, query("")).await,
        (
            vec![
                "alice".into(),
                "bob".into(),
                "carol".into(),
                "dave".into(),
                ADMIN.into()
            ],
            5
        )
    );
}

#[tokio::test]
async fn query_matches_the_id_or_the_name_case_insensitively_on_postgres() {
    query_matches_the_id_or_the_name_case_insensitively(Backend::Postgres).await;
}

#[tokio::test]
async fn query_matches_the_id_or_the_name_case_insensitively_on_sqlite() {
    query_matches_the_id_or_the_name_case_insensitively(Backend::Sqlite).await;
}

#[tokio::test]
async fn id_name_and_description_filters_match_substrings() {
    let env = TestEnv::start().await;
    create_named(&env, "alice", "Alice Liddell", "Plays croquet", &[]).await;
    create_named(&env, "bob", "Bob Alison", "Builds things", &[]).await;
    create_named(&env, "carol", "Carol", "Sings; plays piano", &[]).await;

    let (ids, total) = search_as_admin(
        &env,
        SearchUsersRequest {
            id_contains: "LIC".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!((ids, total), (vec!["alice".into()], 1));

    let (ids, total) = search_as_admin(
        &env,
        SearchUsersRequest {
            name_contains: "ALI".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!((ids, total), (vec!["alice".into(), "bob".into()], 2));

    let (ids, total) = search_as_admin(
        &env,
        SearchUsersRequest {
            description_contains: "PLAYS".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!((ids, total), (vec!["alice".into(), "carol".into()], 2));

    // Filters combine with AND.
    let (ids, total) = search_as_admin(
        &env,
        SearchUsersRequest {
            name_contains: "ali".into(),
            description_contains: "croquet".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!((ids, total), (vec!["alice".into()], 1));

    // The email is never searched.
    let (ids, _) = search_as_admin(
        &env,
        SearchUsersRequest {
            query: "example.com".into(),
            ..Default::default()
        },
    )
    .await;
    assert!(ids.is_empty());
}

#[tokio::test]
async fn searched_fields_come_back_even_when_the_mask_leaves_them_out() {
    let env = TestEnv::start().await;
    create_named(&env, "alice", "Alice Liddell", "Plays croquet", &[]).await;
    let admin = env.admin_token(ADMIN).await;
    let users = search_client(&env)
        .search_users(with_token(
            SearchUsersRequest {
                description_contains: "croquet".into(),
                field_mask: mask(&["state"]),
                ..Default::default()
            },
            &admin,
        ))
        .await
        .expect("search")
        .into_inner();
    let user = &users.users[0];
    assert_eq!(user.description, "Plays croquet");
    assert!(user.primary_email_address.is_empty());
    let status = try_search(
        &env,
        SearchUsersRequest {
            field_mask: mask(&["password"]),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_invalid_field(&status, "field_mask");
}

#[tokio::test]
async fn attributes_contain_matches_an_exact_key_and_a_value_substring() {
    let env = TestEnv::start().await;
    create_named(
        &env,
        "alice",
        "",
        "",
        &[("city", "Oxford"), ("team", "red")],
    )
    .await;
    create_named(&env, "bob", "", "", &[("city", "Cambridge")]).await;
    create_named(&env, "carol", "", "", &[("cityhall", "Oxford")]).await;
    create_named(&env, "dave", "", "", &[("team", "oxford-rowing")]).await;

    let by = |pairs: &[(&str, &str)]| SearchUsersRequest {
        attributes_contain: pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Default::default()
    };
    assert_eq!(
        search_as_admin(&env, by(&[("city", "xfor")])).await,
        (vec!["alice".into()], 1)
    );
    // The key is exact: neither `cityhall` nor a prefix of it matches.
    assert_eq!(
        search_as_admin(&env, by(&[("cit", "Oxford")])).await,
        (vec![], 0)
    );
    assert_eq!(
        search_as_admin(&env, by(&[("city", "")])).await,
        (vec!["alice".into(), "bob".into()], 2)
    );
    // Several pairs must all match.
    assert_eq!(
        search_as_admin(&env, by(&[("city", "ox"), ("team", "red")])).await,
        (vec!["alice".into()], 1)
    );
    assert_eq!(
        search_as_admin(&env, by(&[("city", "ox"), ("team", "rowing")])).await,
        (vec![], 0)
    );
}

#[tokio::test]
async fn the_state_filter_keeps_users_in_the_given_states() {
    let env = TestEnv::start().await;
    for (id, state) in [
        ("alice", State::Approved),
        ("bob", State::Requested),
        ("carol", State::Suspended),
        ("dave", State::Rejected),
    ] {
        create_as_admin(&env, new_user(id)).await.expect("create");
        // Set by an update: Create cannot tell REQUESTED (the enum's zero
        // value) from "not set".
        let admin = env.admin_token(ADMIN).await;
        update_user(
            &env,
            &admin,
            User {
                ids: Some(ids(id)),
                state: state as i32,
                ..Default::default()
            },
            &["state"],
        )
        .await
        .expect("set the state");
    }
    let states = |states: &[State]| SearchUsersRequest {
        state: states.iter().map(|s| *s as i32).collect(),
        ..Default::default()
    };
    assert_eq!(
        search_as_admin(&env, states(&[State::Requested])).await,
        (vec!["bob".into()], 1)
    );
    assert_eq!(
        search_as_admin(&env, states(&[State::Suspended, State::Rejected])).await,
        (vec!["carol".into(), "dave".into()], 2)
    );
    // Every state: the four and the admin who searches.
    assert_eq!(search_as_admin(&env, states(&[])).await.1, 5);
    assert_eq!(
        search_as_admin(&env, states(&[State::Flagged])).await,
        (vec![], 0)
    );
    let status = try_search(
        &env,
        SearchUsersRequest {
            state: vec![17],
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_invalid_field(&status, "state");
}

async fn percent_and_underscore_are_matched_literally(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    create_named(&env, "alice", "a_b", "100% sure", &[("note", "x_y")]).await;
    create_named(&env, "bob", "axb", "100 percent sure", &[("note", "xzy")]).await;
    create_named(&env, "carol", "a\\b", "back\\slash", &[]).await;

    let query = |q: &str| SearchUsersRequest {
        query: q.into(),
        ..Default::default()
    };
    assert_eq!(
        search_as_admin(&env, query("a_b")).await,
        (vec!["alice".into()], 1)
    );
    assert_eq!(search_as_admin(&env, query("%")).await, (vec![], 0));
    assert_eq!(search_as_admin(&env, query("_")).await.0, vec!["alice"]);
    assert_eq!(
        search_as_admin(&env, query("a\\b")).await,
        (vec!["carol".into()], 1)
    );
    assert_eq!(
        search_as_admin(
            &env,
            SearchUsersRequest {
                name_contains: "a_b".into(),
                ..Default::default()
            }
        )
        .await,
        (vec!["alice".into()], 1)
    );
    assert_eq!(
        search_as_admin(
            &env,
            SearchUsersRequest {
                description_contains: "100%".into(),
                ..Default::default()
            }
        )
        .await,
        (vec!["alice".into()], 1)
    );
    assert_eq!(
        search_as_admin(
            &env,
            SearchUsersRequest {
                attributes_contain: HashMap::from([("note".to_string(), "x_y".to_string())]),
                ..Default::default()
            }
        )
        .await,
        (vec!["alice".into()], 1)
    );
}

#[tokio::test]
async fn percent_and_underscore_are_matched_literally_on_postgres() {
    percent_and_underscore_are_matched_literally(Backend::Postgres).await;
}

#[tokio::test]
async fn percent_and_underscore_are_matched_literally_on_sqlite() {
    percent_and_underscore_are_matched_literally(Backend::Sqlite).await;
}

/// A search request with one text field set.
type RequestWith = fn(String) -> SearchUsersRequest;

#[tokio::test]
async fn search_text_over_50_characters_is_refused_naming_the_field() {
    let env = TestEnv::start().await;
    let long = "x".repeat(51);
    let fifty = "x".repeat(50);
    let cases: [(&str, RequestWith); 4] = [
        ("query", |t| SearchUsersRequest {
            query: t,
            ..Default::default()
        }),
        ("id_contains", |t| SearchUsersRequest {
            id_contains: t,
            ..Default::default()
        }),
        ("name_contains", |t| SearchUsersRequest {
            name_contains: t,
            ..Default::default()
        }),
        ("description_contains", |t| SearchUsersRequest {
            description_contains: t,
            ..Default::default()
        }),
    ];
    for (field, request) in cases {
        let status = try_search(&env, request(long.clone())).await.unwrap_err();
        assert_invalid_field(&status, field);
        try_search(&env, request(fifty.clone()))
            .await
            .unwrap_or_else(|s| panic!("50 characters in {field}: {s:?}"));
    }
    let status = try_search(
        &env,
        SearchUsersRequest {
            attributes_contain: HashMap::from([("city".to_string(), long.clone())]),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_invalid_field(&status, "attributes_contain.city");
}

#[tokio::test]
async fn search_reports_the_total_and_pages() {
    let env = TestEnv::start().await;
    for id in ["alice", "bob", "carol", "dave", "erin"] {
        register(&env, id).await;
    }
    // Every default name is "User <id>".
    let page = |page| SearchUsersRequest {
        query: "user".into(),
        limit: 2,
        page,
        ..Default::default()
    };
    assert_eq!(
        search_as_admin(&env, page(1)).await,
        (vec!["alice".into(), "bob".into()], 5)
    );
    assert_eq!(
        search_as_admin(&env, page(3)).await,
        (vec!["erin".into()], 5)
    );
    let (ids, total) = search_as_admin(
        &env,
        SearchUsersRequest {
            query: "user".into(),
            order: "-user_id".into(),
            limit: 2,
            ..Default::default()
        },
    )
    .await;
    assert_eq!((ids, total), (vec!["erin".into(), "dave".into()], 5));
    let status = try_search(
        &env,
        SearchUsersRequest {
            order: "password".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_invalid_field(&status, "order");
    let status = try_search(
        &env,
        SearchUsersRequest {
            limit: 1001,
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_invalid_field(&status, "limit");
}

#[tokio::test]
async fn search_deleted_finds_only_soft_deleted_users() {
    let env = TestEnv::start().await;
    create_named(&env, "alice", "Alice", "", &[]).await;
    create_named(&env, "alina", "Alina", "", &[]).await;
    let admin = env.admin_token(ADMIN).await;
    delete_user(&env, "alina", &admin).await.expect("delete");
    let query = |deleted| SearchUsersRequest {
        query: "ali".into(),
        deleted,
        ..Default::default()
    };
    assert_eq!(
        search_as_admin(&env, query(false)).await,
        (vec!["alice".into()], 1)
    );
    assert_eq!(
        search_as_admin(&env, query(true)).await,
        (vec!["alina".into()], 1)
    );
}

async fn the_total_of_a_broad_search_stops_at_the_cap(backend: Backend) {
    let env = TestEnv::start_with(
        backend,
        roster_user_registry::UserRegistryConfig {
            search_count_cap: 3,
            ..Default::default()
        },
    )
    .await;
    for id in [
        "team-a1", "team-a2", "team-a3", "team-a4", "team-a5", "solo",
    ] {
        register(&env, id).await;
    }
    let admin = env.admin_token(ADMIN).await;
    let search = |query: &str, limit: u32, page: u32| SearchUsersRequest {
        query: query.into(),
        limit,
        page,
        ..Default::default()
    };

    // Five match: the total says "at least 3" and the page is still full.
    let response = search_client(&env)
        .search_users(with_token(search("team", 10, 1), &admin))
        .await
        .unwrap();
    assert_eq!(total_count(&response), 3);
    assert_eq!(
        response.metadata().get("x-total-count-capped").unwrap(),
        "true"
    );
    assert_eq!(user_ids_of(response.get_ref()).len(), 5);
    // Paging goes on past the cap.
    let (second, _) = search_as_admin(&env, search("team", 2, 3)).await;
    assert_eq!(second, vec!["team-a5"]);

    // Below the cap the total is exact and not marked.
    let response = search_client(&env)
        .search_users(with_token(search("sol", 10, 1), &admin))
        .await
        .unwrap();
    assert_eq!(total_count(&response), 1);
    assert!(response.metadata().get("x-total-count-capped").is_none());

    // Listing without text filters always counts exactly: the six and the
    // admin who lists.
    let (_, total) = list_as_admin(&env, Default::default()).await;
    assert_eq!(total, 7);
}

on_both_backends!(the_total_of_a_broad_search_stops_at_the_cap);

async fn search_pages_by_token_in_any_order(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    for (id, name) in [
        ("alice", "Zed Match"),
        ("bob", "Match Bob"),
        ("carol", "match carol"),
        ("dave", "Nothing"),
        ("erin", "Match"),
    ] {
        create_named(&env, id, name, "", &[]).await;
    }
    let admin = env.admin_token(ADMIN).await;
    for (order, expected) in [
        ("", vec!["alice", "bob", "carol", "erin"]),
        ("-user_id", vec!["erin", "carol", "bob", "alice"]),
        // Byte order: "Match" before "Match Bob", capitals first.
        ("name", vec!["erin", "bob", "alice", "carol"]),
        ("-name", vec!["carol", "alice", "bob", "erin"]),
    ] {
        let mut found = Vec::new();
        let mut token = String::new();
        for page in 0..10 {
            let response = search_client(&env)
                .search_users(with_token(
                    SearchUsersRequest {
                        query: "MATCH".into(),
                        order: order.into(),
                        limit: 3,
                        page_token: token.clone(),
                        ..Default::default()
                    },
                    &admin,
                ))
                .await
                .expect("search a keyset page");
            let headers = response.metadata();
            assert_eq!(
                headers.get("x-total-count").is_some(),
                page == 0,
                "order {order:?}: the total on the first page only"
            );
            let next = headers
                .get("x-next-page-token")
                .map(|v| v.to_str().unwrap().to_string());
            found.extend(user_ids_of(response.get_ref()));
            match next {
                Some(next) => token = next,
                None => break,
            }
        }
        assert_eq!(found, expected, "order {order:?}");
    }
    // A token belongs to its order.
    let first = search_client(&env)
        .search_users(with_token(
            SearchUsersRequest {
                query: "match".into(),
                limit: 1,
                ..Default::default()
            },
            &admin,
        ))
        .await
        .unwrap();
    let token = first.metadata().get("x-next-page-token").unwrap();
    let status = try_search(
        &env,
        SearchUsersRequest {
            query: "match".into(),
            order: "name".into(),
            page_token: token.to_str().unwrap().into(),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_invalid_field(&status, "page_token");
}

on_both_backends!(search_pages_by_token_in_any_order);
