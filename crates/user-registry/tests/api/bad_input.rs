//! Arbitrary input over real gRPC: whatever a caller sends, the answer is a
//! clear status (INVALID_ARGUMENT naming a field, or a legitimate outcome),
//! never an internal error and never a dropped connection.

use proptest::prelude::*;
use roster_proto::v1::{
    CreateUserRequest, GetUserRequest, ListUsersRequest, SearchUsersRequest, User, UserIdentifiers,
};
use roster_test_support::{Backend, TestEnv, with_token};
use tonic::Code;

use crate::support::*;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 48,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Strings that mix plausible and hostile input.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9-]{0,40}",
        "[A-Za-z0-9 _%.@-]{0,60}",
        ".{0,80}",
        Just(String::new()),
        Just("a".repeat(5000)),
    ]
}

fn assert_clear(status: &tonic::Status, allowed: &[Code]) {
    assert!(
        allowed.contains(&status.code()),
        "unexpected {:?}: {}",
        status.code(),
        status.message()
    );
    if status.code() == Code::InvalidArgument {
        assert!(
            status.message().contains('`'),
            "INVALID_ARGUMENT without a field name: {}",
            status.message()
        );
    }
}

#[test]
fn arbitrary_registrations_get_a_clear_answer() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let env = runtime.block_on(TestEnv::start_with(Backend::Sqlite, Default::default()));
    proptest!(config(), |(user_id in text(), email in text(), password in text(), name in text())| {
        let request = CreateUserRequest {
            user: Some(User {
                ids: Some(UserIdentifiers { user_id, email: String::new() }),
                primary_email_address: email,
                password,
                name,
                ..Default::default()
            }),
            invitation_token: String::new(),
        };
        if let Err(status) = runtime.block_on(registry(&env).create(request)) {
            assert_clear(&status, &[Code::InvalidArgument, Code::AlreadyExists]);
        }
    });
}

#[test]
fn arbitrary_reads_and_lists_get_a_clear_answer() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let env = runtime.block_on(TestEnv::start_with(Backend::Sqlite, Default::default()));
    runtime.block_on(register(&env, "alice"));
    let admin = runtime.block_on(env.admin_token(ADMIN));
    proptest!(config(), |(
        user_id in text(),
        paths in proptest::collection::vec(text(), 0..4),
        order in text(),
        limit in any::<u32>(),
        page in any::<u32>(),
        query in text(),
    )| {
        let get = GetUserRequest {
            user_ids: Some(UserIdentifiers { user_id, email: String::new() }),
            field_mask: Some(prost_types::FieldMask { paths }),
        };
        if let Err(status) = runtime.block_on(registry(&env).get(with_token(get, &admin))) {
            assert_clear(&status, &[Code::InvalidArgument, Code::NotFound]);
        }
        let list = ListUsersRequest { order: order.clone(), limit, page, ..Default::default() };
        if let Err(status) = runtime.block_on(registry(&env).list(with_token(list, &admin))) {
            assert_clear(&status, &[Code::InvalidArgument]);
        }
        let search = SearchUsersRequest { query, order, limit, page, ..Default::default() };
        if let Err(status) =
            runtime.block_on(search_client(&env).search_users(with_token(search, &admin)))
        {
            assert_clear(&status, &[Code::InvalidArgument]);
        }
    });
}
