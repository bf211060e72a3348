//! No call hands out more than its caller holds: a credential narrower
//! than a full admin's (an admin's key with some universal rights, not
//! all) can neither create a user with an admin-only field nor set one on
//! an existing user. Checked as a property over every admin-only field and
//! a range of narrow right sets, against the real service.

use proptest::prelude::*;
use roster_core::rights::RightSet;
use roster_proto::v1::{CreateUserRequest, Right, Rights, State, User};
use roster_test_support::{TestEnv, with_token};
use tonic::Code;

use crate::support::{ADMIN, get_user, new_user, register, registry, update_user};

/// Every field of `User` that only a full admin may set, with a value that
/// would matter if it were taken.
const ADMIN_FIELDS: &[&str] = &[
    "admin",
    "universal_rights",
    "state",
    "state_description",
    "require_password_update",
    "primary_email_address_validated_at",
    "temporary_password",
];

fn with_admin_field(mut user: User, field: &str) -> User {
    match field {
        "admin" => user.admin = true,
        "universal_rights" => {
            user.universal_rights = Some(Rights {
                rights: vec![Right::All as i32],
            })
        }
        "state" => user.state = State::Flagged as i32,
        "state_description" => user.state_description = "approved by myself".into(),
        "require_password_update" => user.require_password_update = true,
        "primary_email_address_validated_at" => {
            user.primary_email_address_validated_at = Some(prost_types::Timestamp {
                seconds: 1_700_000_000,
                nanos: 0,
            })
        }
        "temporary_password" => user.temporary_password = "Temporary-Passw0rd-of-mine".into(),
        other => panic!("not an admin-only field: {other}"),
    }
    user
}

/// Whether `user` (as a full admin reads it) holds the value
/// [`with_admin_field`] asked for.
fn holds(user: &User, field: &str) -> bool {
    match field {
        "admin" => user.admin,
        "universal_rights" => user.universal_rights.is_some(),
        "state" => user.state == State::Flagged as i32,
        "state_description" => user.state_description == "approved by myself",
        "require_password_update" => user.require_password_update,
        "primary_email_address_validated_at" => user.primary_email_address_validated_at.is_some(),
        // Write-only: a full admin's read shows no temporary password, so
        // the test checks the answer's code instead.
        "temporary_password" => false,
        other => panic!("not an admin-only field: {other}"),
    }
}

/// A set of universal rights that lacks at least one right: every such
/// set is narrower than a full admin's.
fn narrow_rights() -> impl Strategy<Value = Vec<Right>> {
    let all = RightSet::all().to_vec();
    proptest::sample::subsequence(all.clone(), 1..all.len())
}

#[test]
fn a_narrow_admin_credential_never_sets_an_admin_only_field() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let env = runtime.block_on(async {
        let env = TestEnv::start().await;
        register(&env, "target").await;
        env
    });
    let full = runtime.block_on(env.admin_token(ADMIN));
    let config = ProptestConfig {
        cases: 48,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    let case = std::sync::atomic::AtomicU32::new(0);
    proptest!(config, |(
        rights in narrow_rights(),
        field in proptest::sample::select(ADMIN_FIELDS),
    )| {
        let case = case.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        runtime.block_on(async {
            let key = env.api_key(ADMIN, &rights).await.1;
            let can_create = RightSet::from_rights(rights.iter().copied())
                .contains(Right::UserCreate);

            // Create: refused naming the field, or (no UserCreate: a plain
            // registration) created without it.
            let user_id = format!("made-{case}");
            let created = registry(&env)
                .create(with_token(
                    CreateUserRequest {
                        user: Some(with_admin_field(new_user(&user_id), field)),
                        invitation_token: String::new(),
                    },
                    &key,
                ))
                .await;
            let stored = get_user(&env, &user_id, Some(&full), &[]).await;
            if can_create {
                let status = created.expect_err("a narrow creator setting an admin field");
                assert_eq!(status.code(), Code::PermissionDenied, "{field} with {rights:?}");
                assert!(status.message().contains(field), "{status:?} names {field}");
                assert_eq!(stored.unwrap_err().code(), Code::NotFound, "nothing half-made");
            } else if let Ok(user) = stored {
                assert!(!holds(&user, field), "{field} taken from {rights:?}: {user:?}");
                assert!(!user.admin, "{rights:?} made an admin");
            }

            // Update of an existing user: refused, nothing changed.
            let before = get_user(&env, "target", Some(&full), &[]).await.expect("target");
            let status = update_user(
                &env,
                &key,
                with_admin_field(new_user("target"), field),
                &[field],
            )
            .await
            .expect_err("a narrow credential updating an admin field");
            assert_eq!(status.code(), Code::PermissionDenied, "{field} with {rights:?}");
            let after = get_user(&env, "target", Some(&full), &[]).await.expect("target");
            assert_eq!(before, after, "{field} with {rights:?} changed the user");
        });
    });
}

#[tokio::test]
async fn a_full_admin_still_creates_an_admin() {
    let env = TestEnv::start().await;
    let full = env.admin_token(ADMIN).await;
    let created = registry(&env)
        .create(with_token(
            CreateUserRequest {
                user: Some(with_admin_field(new_user("deputy"), "admin")),
                invitation_token: String::new(),
            },
            &full,
        ))
        .await
        .expect("a full admin creates an admin")
        .into_inner();
    assert!(created.admin);
}
