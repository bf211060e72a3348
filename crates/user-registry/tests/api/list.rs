//! UserRegistry.List: admins only, paging with `x-total-count`, ordering
//! from the allow-list with the user ID breaking ties, and deleted users.

use roster_proto::v1::{ListUsersRequest, Right, State, User};
use roster_test_support::{Backend, TestEnv, with_token};
use tonic::Code;

use crate::support::*;

#[tokio::test]
async fn list_is_for_admins_only() {
    let env = TestEnv::start().await;
    register(&env, "alice").await;
    let alice = key_of(&env, "alice", &[Right::UserAll]).await;
    let status = registry(&env)
        .list(with_token(ListUsersRequest::default(), &alice))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    let status = registry(&env)
        .list(ListUsersRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
}

async fn list_pages_through_users_with_limit_and_page(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    // Registered out of order: the default order is by user ID.
    for id in ["erin", "bob", "dave", "alice", "carol"] {
        register(&env, id).await;
    }
    let page = |limit, page| ListUsersRequest {
        limit,
        page,
        ..Default::default()
    };
    // Six users: the five and the admin who lists, last by ID.
    assert_eq!(
        list_as_admin(&env, page(2, 1)).await,
        (vec!["alice".into(), "bob".into()], 6)
    );
    assert_eq!(
        list_as_admin(&env, page(2, 2)).await,
        (vec!["carol".into(), "dave".into()], 6)
    );
    assert_eq!(
        list_as_admin(&env, page(2, 3)).await,
        (vec!["erin".into(), ADMIN.into()], 6)
    );
    assert_eq!(list_as_admin(&env, page(2, 4)).await, (vec![], 6));
    // Page 0 is page 1; limit 0 is the default (100).
    assert_eq!(
        list_as_admin(&env, page(2, 0)).await,
        (vec!["alice".into(), "bob".into()], 6)
    );
    let (all, total) = list_as_admin(&env, page(0, 0)).await;
    assert_eq!(all, vec!["alice", "bob", "carol", "dave", "erin", ADMIN]);
    assert_eq!(total, 6);
}

#[tokio::test]
async fn list_pages_through_users_with_limit_and_page_on_postgres() {
    list_pages_through_users_with_limit_and_page(Backend::Postgres).await;
}

#[tokio::test]
async fn list_pages_through_users_with_limit_and_page_on_sqlite() {
    list_pages_through_users_with_limit_and_page(Backend::Sqlite).await;
}

#[tokio::test]
async fn the_total_count_header_equals_the_number_of_live_users() {
    let env = TestEnv::start().await;
    for id in ["alice", "bob", "carol"] {
        register(&env, id).await;
    }
    let admin = env.admin_token(ADMIN).await;
    let response = registry(&env)
        .list(with_token(
            ListUsersRequest {
                limit: 1,
                ..Default::default()
            },
            &admin,
        ))
        .await
        .expect("list");
    // The three and the admin who lists.
    assert_eq!(total_count(&response), 4);
    assert_eq!(response.get_ref().users.len(), 1);

    delete_user(&env, "bob", &admin).await.expect("delete");
    let (ids, total) = list_as_admin(&env, ListUsersRequest::default()).await;
    assert_eq!(ids, vec!["alice", "carol", ADMIN]);
    assert_eq!(total, 3);
}

/// One row of the ordering fixture.
struct Row {
    id: &'static str,
    name: &'static str,
    email: &'static str,
    state: State,
    admin: bool,
}

/// Users with ties in every orderable field, created in neither ID nor
/// name order. Names and email local parts are lowercase and of one
/// length, so every collation orders them the same.
const ROWS: &[Row] = &[
    Row {
        id: "u3",
        name: "beta",
        email: "e2@example.com",
        state: State::Approved,
        admin: false,
    },
    Row {
        id: "u1",
        name: "beta",
        email: "e3@example.com",
        state: State::Approved,
        admin: false,
    },
    Row {
        id: "u5",
        name: "gamm",
        email: "e4@example.com",
        state: State::Suspended,
        admin: true,
    },
    Row {
        id: "u2",
        name: "alfa",
        email: "e1@example.com",
        state: State::Suspended,
        admin: true,
    },
    Row {
        id: "u4",
        name: "alfa",
        email: "e5@example.com",
        state: State::Requested,
        admin: false,
    },
];

/// The value a row sorts by, as a string that sorts the same way.
type SortKey = fn(&Row) -> String;

/// Lists as admin and keeps the users of [`ROWS`]: the admin who lists is
/// a user too, but not part of the fixture.
async fn list_rows(env: &TestEnv, request: ListUsersRequest) -> (Vec<String>, u64) {
    let (ids, total) = list_as_admin(env, request).await;
    (ids.into_iter().filter(|id| id != ADMIN).collect(), total)
}

async fn list_orders_by_each_allowed_field_with_the_user_id_breaking_ties(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    for row in ROWS {
        create_as_admin(
            &env,
            User {
                name: row.name.into(),
                primary_email_address: row.email.into(),
                state: row.state as i32,
                admin: row.admin,
                ..new_user(row.id)
            },
        )
        .await
        .expect("create");
    }
    // REQUESTED is the enum's zero value, which Create cannot tell from
    // "not set": an admin sets it afterwards.
    let admin = env.admin_token(ADMIN).await;
    for row in ROWS.iter().filter(|r| r.state == State::Requested) {
        update_user(
            &env,
            &admin,
            User {
                ids: Some(ids(row.id)),
                state: row.state as i32,
                ..Default::default()
            },
            &["state"],
        )
        .await
        .expect("set the state");
    }
    let fields: [(&str, SortKey); 6] = [
        ("user_id", |r| r.id.to_string()),
        ("name", |r| r.name.to_string()),
        ("primary_email_address", |r| r.email.to_string()),
        ("state", |r| (r.state as i32).to_string()),
        ("admin", |r| u8::from(r.admin).to_string()),
        // ROWS is in creation order.
        ("created_at", |r| {
            format!("{:03}", ROWS.iter().position(|x| x.id == r.id).unwrap())
        }),
    ];
    for (field, key) in fields {
        let mut expected: Vec<&Row> = ROWS.iter().collect();
        expected.sort_by(|a, b| (key(a), a.id).cmp(&(key(b), b.id)));
        let ascending: Vec<String> = expected.iter().map(|r| r.id.to_string()).collect();
        let descending: Vec<String> = ascending.iter().rev().cloned().collect();

        let (ids, total) = list_rows(
            &env,
            ListUsersRequest {
                order: field.into(),
                ..Default::default()
            },
        )
        .await;
        assert_eq!(ids, ascending, "order {field}");
        assert_eq!(total, 6, "the five and the admin");
        let (ids, _) = list_rows(
            &env,
            ListUsersRequest {
                order: format!("-{field}"),
                ..Default::default()
            },
        )
        .await;
        assert_eq!(ids, descending, "order -{field}");
        // Keyset pages of two give the same order, ties included.
        for (order, expected) in [
            (field.to_string(), &ascending),
            (format!("-{field}"), &descending),
        ] {
            let paged: Vec<String> = pages_by_token(&env, &order, 2)
                .await
                .into_iter()
                .filter(|id| id != ADMIN)
                .collect();
            assert_eq!(&paged, expected, "keyset pages by {order}");
        }
    }
    // No order is by user ID.
    let (ids, _) = list_rows(&env, ListUsersRequest::default()).await;
    assert_eq!(ids, vec!["u1", "u2", "u3", "u4", "u5"]);
    // Ties hold across pages: the tie-break makes paging stable.
    let mut paged = Vec::new();
    for page in 1..=3 {
        let (ids, _) = list_rows(
            &env,
            ListUsersRequest {
                order: "name".into(),
                limit: 2,
                page,
                ..Default::default()
            },
        )
        .await;
        paged.extend(ids);
    }
    assert_eq!(paged, vec!["u2", "u4", "u1", "u3", "u5"]);
}

#[tokio::test]
async fn list_orders_by_each_allowed_field_with_the_user_id_breaking_ties_on_postgres() {
    list_orders_by_each_allowed_field_with_the_user_id_breaking_ties(Backend::Postgres).await;
}

#[tokio::test]
async fn list_orders_by_each_allowed_field_with_the_user_id_breaking_ties_on_sqlite() {
    list_orders_by_each_allowed_field_with_the_user_id_breaking_ties(Backend::Sqlite).await;
}

#[tokio::test]
async fn an_order_outside_the_allow_list_is_refused() {
    let env = TestEnv::start().await;
    let admin = env.admin_token(ADMIN).await;
    for order in [
        "password",
        "password_hash",
        "email",
        "--name",
        "name desc",
        "name;DROP TABLE users",
        "+name",
    ] {
        let status = registry(&env)
            .list(with_token(
                ListUsersRequest {
                    order: order.into(),
                    ..Default::default()
                },
                &admin,
            ))
            .await
            .unwrap_err();
        assert_invalid_field(&status, "order");
    }
}

#[tokio::test]
async fn a_limit_over_1000_is_refused() {
    let env = TestEnv::start().await;
    let admin = env.admin_token(ADMIN).await;
    let status = registry(&env)
        .list(with_token(
            ListUsersRequest {
                limit: 1001,
                ..Default::default()
            },
            &admin,
        ))
        .await
        .unwrap_err();
    assert_invalid_field(&status, "limit");
    // 1000 itself is allowed.
    registry(&env)
        .list(with_token(
            ListUsersRequest {
                limit: 1000,
                ..Default::default()
            },
            &admin,
        ))
        .await
        .expect("limit 1000");
}

#[tokio::test]
async fn list_applies_the_field_mask_and_refuses_write_only_paths() {
    let env = TestEnv::start().await;
    register(&env, "alice").await;
    let admin = env.admin_token(ADMIN).await;
    let users = registry(&env)
        .list(with_token(
            ListUsersRequest {
                field_mask: mask(&["name"]),
                ..Default::default()
            },
            &admin,
        ))
        .await
        .expect("list")
        .into_inner();
    // alice, then the admin who lists.
    let user = &users.users[0];
    assert_eq!(user.ids.as_ref().unwrap().user_id, "alice");
    assert_eq!(user.name, "User alice");
    assert!(user.primary_email_address.is_empty());
    assert!(user.ids.is_some() && user.created_at.is_some());
    for path in ["password", "temporary_password"] {
        let status = registry(&env)
            .list(with_token(
                ListUsersRequest {
                    field_mask: mask(&[path]),
                    ..Default::default()
                },
                &admin,
            ))
            .await
            .unwrap_err();
        assert_invalid_field(&status, "field_mask");
    }
}

#[tokio::test]
async fn listing_deleted_users_shows_only_soft_deleted_ones() {
    let env = TestEnv::start().await;
    for id in ["alice", "bob", "carol"] {
        register(&env, id).await;
    }
    let admin = env.admin_token(ADMIN).await;
    delete_user(&env, "bob", &admin).await.expect("delete bob");
    let (ids, total) = list_as_admin(
        &env,
        ListUsersRequest {
            deleted: true,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(ids, vec!["bob"]);
    assert_eq!(total, 1);
    let (ids, total) = list_as_admin(&env, ListUsersRequest::default()).await;
    assert_eq!(ids, vec!["alice", "carol", ADMIN]);
    assert_eq!(total, 3);
}

/// Every user in `order`, read in keyset pages of `limit`: the first page
/// says the total and each page the token of the next, until the last,
/// which has none.
async fn pages_by_token(env: &TestEnv, order: &str, limit: u32) -> Vec<String> {
    let admin = env.admin_token(ADMIN).await;
    let mut all = Vec::new();
    let mut token = String::new();
    for page in 0.. {
        assert!(page < 100, "keyset paging by {order} does not end");
        let response = registry(env)
            .list(with_token(
                ListUsersRequest {
                    order: order.into(),
                    limit,
                    page_token: token.clone(),
                    ..Default::default()
                },
                &admin,
            ))
            .await
            .expect("list a keyset page");
        let counted = response.metadata().get("x-total-count").is_some();
        assert_eq!(counted, page == 0, "x-total-count on the first page only");
        let next = next_page_token(&response);
        let ids = user_ids_of(response.get_ref());
        assert!(ids.len() <= limit as usize);
        all.extend(ids);
        match next {
            Some(next) => token = next,
            None => break,
        }
    }
    all
}

fn next_page_token<T>(response: &tonic::Response<T>) -> Option<String> {
    response
        .metadata()
        .get("x-next-page-token")
        .map(|v| v.to_str().expect("an ASCII token").to_string())
}

async fn keyset_pages_continue_after_the_last_row_whatever_is_added_before(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    for id in ["bob", "carol", "dave", "erin"] {
        register(&env, id).await;
    }
    let admin = env.admin_token(ADMIN).await;
    let list = |page_token: String| {
        let request = with_token(
            ListUsersRequest {
                limit: 2,
                page_token,
                ..Default::default()
            },
            &admin,
        );
        async { registry(&env).list(request).await.expect("list") }
    };
    let first = list(String::new()).await;
    assert_eq!(user_ids_of(first.get_ref()), ["bob", "carol"]);
    assert_eq!(total_count(&first), 5);
    let token = next_page_token(&first).expect("more users follow");
    // A user that sorts before the page does not shift it, as an offset
    // would.
    register(&env, "alice").await;
    let second = list(token).await;
    assert_eq!(user_ids_of(second.get_ref()), ["dave", "erin"]);
    let last = list(next_page_token(&second).expect("the admin follows")).await;
    assert_eq!(user_ids_of(last.get_ref()), [ADMIN]);
    assert_eq!(
        next_page_token(&last),
        None,
        "nothing follows the last page"
    );
    // A page that ends exactly at the last user has no token either.
    let whole = registry(&env)
        .list(with_token(
            ListUsersRequest {
                limit: 6,
                ..Default::default()
            },
            &admin,
        ))
        .await
        .unwrap();
    assert_eq!(user_ids_of(whole.get_ref()).len(), 6);
    assert_eq!(next_page_token(&whole), None);
}

on_both_backends!(keyset_pages_continue_after_the_last_row_whatever_is_added_before);

#[tokio::test]
async fn a_bad_page_token_or_one_combined_with_a_page_is_refused_naming_the_field() {
    let env = TestEnv::start().await;
    for id in ["alice", "bob", "carol"] {
        register(&env, id).await;
    }
    let admin = env.admin_token(ADMIN).await;
    let first = registry(&env)
        .list(with_token(
            ListUsersRequest {
                order: "name".into(),
                limit: 1,
                ..Default::default()
            },
            &admin,
        ))
        .await
        .unwrap();
    let token = next_page_token(&first).expect("a token");
    let mut altered = token.clone();
    altered.replace_range(0..2, "zz");
    for (order, page, page_token, field) in [
        ("name", 0, "not-a-token!", "page_token"),
        ("name", 0, altered.as_str(), "page_token"),
        // Made for `name` ascending.
        ("-name", 0, token.as_str(), "page_token"),
        ("user_id", 0, token.as_str(), "page_token"),
        ("name", 2, token.as_str(), "page"),
    ] {
        let status = registry(&env)
            .list(with_token(
                ListUsersRequest {
                    order: order.into(),
                    limit: 1,
                    page,
                    page_token: page_token.into(),
                    ..Default::default()
                },
                &admin,
            ))
            .await
            .unwrap_err();
        assert_invalid_field(&status, field);
    }
    // Page 1 with the token is the token's page.
    let second = registry(&env)
        .list(with_token(
            ListUsersRequest {
                order: "name".into(),
                limit: 1,
                page: 1,
                page_token: token,
                ..Default::default()
            },
            &admin,
        ))
        .await
        .unwrap();
    assert_eq!(user_ids_of(second.get_ref()).len(), 1);
    assert_ne!(user_ids_of(second.get_ref()), user_ids_of(first.get_ref()));
}
