//! EntityAccess.AuthInfo: what another service learns about a bearer
//! token. A key resolves to its user and its rights, cut down by the
//! user's state; anything else is UNAUTHENTICATED, and only Roster
//! services (the cluster key) may ask.

use chrono::Duration;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use roster_access::AccessConfig;
use roster_access::store::{ApiKeyRecord, now};
use roster_core::auth::CLUSTER_KEY_HEADER;
use roster_core::time::timestamp;
use roster_core::token::{Token, TokenHasher, TokenType};
use roster_proto::v1::{AuthInfoRequest, ConsumeLoginTokenRequest, Right, Rights, State, User};
use roster_test_support::{Backend, TestConfig, TestEnv, with_token};
use tonic::Code;

use crate::support::*;

/// Stores a key of `user_id` behind the service's back, as its store would,
/// and returns the full key.
async fn stored_directly(
    env: &TestEnv,
    user_id: &str,
    change: impl FnOnce(&mut ApiKeyRecord),
) -> String {
    let token = Token::generate(TokenType::ApiKey);
    let at = now();
    let mut record = ApiKeyRecord {
        id: token.id().into(),
        user_id: user_id.into(),
        // TestEnv hashes with the default (empty) token_hash_key.
        secret_hash: TokenHasher::new("").hash(&token),
        name: "stored".into(),
        rights: numbers(&[Right::UserAll]),
        created_at: at,
        updated_at: at,
        expires_at: None,
    };
    change(&mut record);
    access_store(env)
        .insert_api_key(&record, &[])
        .await
        .expect("insert a key");
    token.to_string()
}

async fn a_key_resolves_to_its_user_rights_state_and_expiry(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    let alice = env.user_token("alice", &[Right::UserAll]).await;
    let mut request = new_key("alice", "k", &[Right::UserSettingsBasic, Right::UserAll]);
    request.expires_at = Some(timestamp(now() + Duration::days(2)));
    let key = create_key(&env, &alice, request).await.unwrap();

    let info = auth_info(&env, &key.key).await.expect("the key resolves");
    assert_eq!(info.user_ids.unwrap().user_id, "alice");
    assert_eq!(
        info.rights.unwrap().rights,
        all_user_rights(),
        "RIGHT_USER_ALL expanded, each right once"
    );
    assert!(info.universal_rights.unwrap_or_default().rights.is_empty());
    assert!(!info.is_admin);
    assert_eq!(info.state, State::Approved as i32);
    assert_eq!(info.token_type, "api_key");
    assert_eq!(info.token_id, key.id);
    assert_eq!(info.expires_at, key.expires_at);
    // Alice's address is not validated, which does not matter unless
    // validation is required.
    assert!(info.warnings.is_empty(), "{:?}", info.warnings);
    assert!(!info.password_update_only);

    let narrow = create_key(&env, &alice, new_key("alice", "n", &[Right::UserInfo]))
        .await
        .unwrap();
    let info = auth_info(&env, &narrow.key).await.unwrap();
    assert_eq!(info.rights.unwrap().rights, numbers(&[Right::UserInfo]));
    assert_eq!(info.expires_at, None);
}

async fn an_admins_key_carries_its_rights_on_everyone(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    let admin = env.admin_token("root-admin").await;
    let info = auth_info(&env, &admin).await.unwrap();
    assert!(info.is_admin);
    assert_eq!(info.universal_rights.unwrap().rights, all_rights());
    assert_eq!(info.rights.unwrap().rights, all_user_rights());
    assert_eq!(info.state, State::Approved as i32);

    // An admin's narrow key is narrow everywhere, and no admin key.
    let (_, narrow) = env
        .api_key("root-admin", &[Right::UserInfo, Right::UserList])
        .await;
    let info = auth_info(&env, &narrow).await.unwrap();
    assert!(!info.is_admin);
    assert_eq!(
        info.universal_rights.unwrap().rights,
        numbers(&[Right::UserInfo, Right::UserList])
    );
    assert_eq!(info.rights.unwrap().rights, numbers(&[Right::UserInfo]));
}

async fn tokens_that_do_not_resolve_are_unauthenticated_alike(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    env.ensure_user("alice", false).await;
    let (key_id, key) = env.api_key("alice", &[Right::UserAll]).await;
    let secret = secret_of(&key).to_string();
    let other = Token::generate(TokenType::ApiKey);

    let unknown_id = format!("rak.{}.{secret}", other.id());
    let wrong_secret = format!("rak.{key_id}.{}", other.secret());
    let as_session = format!("rst.{key_id}.{secret}");
    let as_login_token = format!("rlt.{key_id}.{secret}");
    let cases: Vec<(&str, String)> = vec![
        ("empty", String::new()),
        ("garbage", "garbage".into()),
        ("no parts", "rak..".into()),
        ("an extra part", format!("{key}.x")),
        ("upper case", key.to_uppercase()),
        ("a space", format!(" {key}")),
        ("a bearer prefix", format!("Bearer {key}")),
        ("an unknown type", format!("xyz.{key_id}.{secret}")),
        ("a short secret", format!("rak.{key_id}.{}", &secret[..51])),
        ("an unknown ID", unknown_id.clone()),
        ("a wrong secret", wrong_secret.clone()),
        ("the key as a session token", as_session),
        ("the key as a login token", as_login_token),
        (
            "a session token",
            Token::generate(TokenType::Session).to_string(),
        ),
    ];
    for (what, token) in &cases {
        let status = expect_code(auth_info(&env, token).await, Code::Unauthenticated);
        assert!(
            !status.message().contains(&secret),
            "{what}: the message repeats the secret"
        );
    }
    // An unknown ID and a wrong secret read the same.
    let unknown = expect_code(auth_info(&env, &unknown_id).await, Code::Unauthenticated);
    let wrong = expect_code(auth_info(&env, &wrong_secret).await, Code::Unauthenticated);
    assert_eq!(unknown.message(), wrong.message());

    assert!(
        auth_info(&env, &key).await.is_ok(),
        "the real key still works"
    );
}

/// A few hundred arbitrary and nearly right tokens: each one is refused as
/// UNAUTHENTICATED, and the service keeps answering.
#[test]
fn arbitrary_strings_never_resolve_and_never_break_the_service() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let env = runtime.block_on(TestEnv::start_with(Backend::Sqlite, Default::default()));
    runtime.block_on(env.ensure_user("alice", false));
    let (_, key) = runtime.block_on(env.api_key("alice", &[Right::UserAll]));

    let mutated = {
        let key = key.clone();
        (0..key.len(), any::<char>()).prop_filter_map("a change", move |(i, c)| {
            let mut chars: Vec<char> = key.chars().collect();
            chars[i] = c;
            let changed: String = chars.into_iter().collect();
            (changed != key).then_some(changed)
        })
    };
    let strategy = prop_oneof![
        any::<String>(),
        "(rak|rst|rlt)\\.[a-z2-7]{24}\\.[a-z2-7]{52}",
        "[a-z.]{0,90}",
        mutated,
    ];
    let mut runner = TestRunner::new(Config {
        cases: 300,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&strategy, |token| {
        let status = runtime
            .block_on(auth_info(&env, &token))
            .expect_err("nothing resolves");
        prop_assert_eq!(status.code(), Code::Unauthenticated, "{:?}", token);
        Ok(())
    });
    if let Err(failure) = result {
        panic!("{failure}");
    }
    let info = runtime
        .block_on(auth_info(&env, &key))
        .expect("the service still answers");
    assert_eq!(info.user_ids.unwrap().user_id, "alice");
    runtime.block_on(async move { drop(env) });
}

async fn an_expired_key_is_unauthenticated(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    env.ensure_user("alice", false).await;
    // The same way of storing a key, with an expiry ahead, works.
    let live = stored_directly(&env, "alice", |k| {
        k.expires_at = Some(k.created_at + Duration::hours(1));
    })
    .await;
    assert!(auth_info(&env, &live).await.is_ok());

    let expired = stored_directly(&env, "alice", |k| {
        k.expires_at = Some(k.created_at - Duration::seconds(1));
    })
    .await;
    let status = expect_code(auth_info(&env, &expired).await, Code::Unauthenticated);
    assert!(status.message().contains("expired"), "{status:?}");
    // Nor does it work as a bearer token anywhere.
    expect_code(
        list_rights(&env, &expired, "alice").await,
        Code::Unauthenticated,
    );
}

async fn a_key_older_than_its_user_belongs_to_nobody(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    env.ensure_user("alice", false).await;
    // As if alice had been purged and her ID taken again.
    let stale = stored_directly(&env, "alice", |k| {
        k.created_at -= Duration::hours(1);
        k.updated_at = k.created_at;
    })
    .await;
    expect_code(auth_info(&env, &stale).await, Code::Unauthenticated);
    let fresh = stored_directly(&env, "alice", |_| {}).await;
    assert!(auth_info(&env, &fresh).await.is_ok());
    // A key of nobody at all.
    let orphan = stored_directly(&env, "nobody", |_| {}).await;
    expect_code(auth_info(&env, &orphan).await, Code::Unauthenticated);
}

async fn the_key_of_a_deleted_user_works_again_once_restored(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    let admin = env.admin_token("root-admin").await;
    env.ensure_user("alice", false).await;
    let (_, key) = env.api_key("alice", &[Right::UserAll]).await;
    assert!(auth_info(&env, &key).await.is_ok());

    registry(&env)
        .delete(with_token(ids("alice"), &admin))
        .await
        .expect("delete alice");
    expect_code(auth_info(&env, &key).await, Code::Unauthenticated);

    registry(&env)
        .restore(with_token(ids("alice"), &admin))
        .await
        .expect("restore alice");
    let info = auth_info(&env, &key).await.expect("works again");
    assert_eq!(info.rights.unwrap().rights, all_user_rights());
}

async fn the_users_state_limits_what_its_key_may_do(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    let admin = env.admin_token("root-admin").await;
    env.ensure_user("alice", false).await;
    let (_, key) = env.api_key("alice", &[Right::UserAll]).await;

    let cases = [
        (State::Suspended, expanded(&[Right::UserInfo])),
        (
            State::Requested,
            expanded(&[Right::UserInfo, Right::UserSettingsBasic, Right::UserDelete]),
        ),
        (
            State::Rejected,
            expanded(&[Right::UserInfo, Right::UserDelete]),
        ),
        (State::Flagged, all_user_rights()),
        (State::Approved, all_user_rights()),
    ];
    for (state, rights) in cases {
        set_state(&env, &admin, "alice", state).await;
        let info = auth_info(&env, &key).await.expect("still resolves");
        assert_eq!(info.state, state as i32, "{state:?}");
        assert_eq!(info.rights.unwrap().rights, rights, "{state:?}");
        if rights == all_user_rights() {
            assert!(info.warnings.is_empty(), "{state:?}: {:?}", info.warnings);
        } else {
            assert!(
                info.warnings
                    .iter()
                    .any(|w| w.contains(state.as_str_name())),
                "{state:?}: {:?}",
                info.warnings
            );
        }
    }
}

async fn a_suspended_admin_is_no_admin_and_a_flagged_one_still_is(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    let root = env.admin_token("root-admin").await;
    let ops = env.admin_token("ops").await;

    set_state(&env, &root, "ops", State::Suspended).await;
    let info = auth_info(&env, &ops).await.unwrap();
    assert!(!info.is_admin);
    assert!(info.universal_rights.unwrap_or_default().rights.is_empty());
    assert_eq!(info.rights.unwrap().rights, numbers(&[Right::UserInfo]));
    assert!(!info.warnings.is_empty());

    set_state(&env, &root, "ops", State::Flagged).await;
    let info = auth_info(&env, &ops).await.unwrap();
    assert!(info.is_admin);
    assert_eq!(info.universal_rights.unwrap().rights, all_rights());
}

async fn an_unvalidated_email_limits_the_key_when_validation_is_required(backend: Backend) {
    let env = TestEnv::start_configured(
        backend,
        TestConfig {
            access: AccessConfig {
                require_validated_email: true,
                ..AccessConfig::default()
            },
            ..TestConfig::default()
        },
    )
    .await;
    let admin = env.admin_token("root-admin").await;
    env.ensure_user("alice", false).await;
    // Test users come validated: take it back, as if never proven.
    update_user(
        &env,
        &admin,
        User {
            ids: Some(ids("alice")),
            ..Default::default()
        },
        &["primary_email_address_validated_at"],
    )
    .await;
    let (_, key) = env.api_key("alice", &[Right::UserAll]).await;

    let info = auth_info(&env, &key).await.unwrap();
    assert_eq!(
        info.rights.unwrap().rights,
        expanded(&[Right::UserInfo, Right::UserSettingsBasic, Right::UserDelete])
    );
    assert!(
        info.warnings.iter().any(|w| w.contains("validated")),
        "{:?}",
        info.warnings
    );
    // She cannot manage her keys until then.
    expect_code(
        create_key(&env, &key, new_key("alice", "k", &[Right::UserInfo])).await,
        Code::PermissionDenied,
    );

    update_user(
        &env,
        &admin,
        User {
            ids: Some(ids("alice")),
            primary_email_address_validated_at: Some(timestamp(now())),
            ..Default::default()
        },
        &["primary_email_address_validated_at"],
    )
    .await;
    let info = auth_info(&env, &key).await.unwrap();
    assert_eq!(info.rights.unwrap().rights, all_user_rights());
    assert!(info.warnings.is_empty(), "{:?}", info.warnings);

    // An admin whose address is not validated keeps the universal rights.
    let info = auth_info(&env, &admin).await.unwrap();
    assert!(info.is_admin);
}

async fn the_users_universal_rights_cap_every_key(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    let admin = env.admin_token("root-admin").await;
    env.ensure_user("alice", false).await;
    let (_, key) = env.api_key("alice", &[Right::UserAll]).await;

    update_user(
        &env,
        &admin,
        User {
            ids: Some(ids("alice")),
            universal_rights: Some(Rights {
                rights: numbers(&[Right::UserInfo, Right::UserDelete]),
            }),
            ..Default::default()
        },
        &["universal_rights"],
    )
    .await;
    let info = auth_info(&env, &key).await.unwrap();
    assert_eq!(
        info.rights.unwrap().rights,
        numbers(&[Right::UserInfo, Right::UserDelete])
    );
    assert!(
        info.warnings.iter().any(|w| w.contains("universal_rights")),
        "{:?}",
        info.warnings
    );
}

async fn only_roster_services_may_resolve_or_consume_tokens(backend: Backend) {
    let env = TestEnv::start_with(backend, Default::default()).await;
    let admin = env.admin_token("root-admin").await;
    let alice = env.user_token("alice", &[Right::UserAll]).await;
    let auth = |token: &str| AuthInfoRequest {
        token: token.into(),
    };
    let consume = || ConsumeLoginTokenRequest {
        token: Token::generate(TokenType::LoginToken).to_string(),
    };
    let mut client = entity_access(&env);

    // No credential at all.
    let status = expect_code(
        client.auth_info(tonic::Request::new(auth(&alice))).await,
        Code::Unauthenticated,
    );
    assert!(!status.message().contains(secret_of(&alice)));
    expect_code(
        client
            .consume_login_token(tonic::Request::new(consume()))
            .await,
        Code::Unauthenticated,
    );

    // A user's own full key, even an admin's, is no cluster key.
    for token in [&alice, &admin] {
        expect_code(
            client.auth_info(with_token(auth(token), token)).await,
            Code::PermissionDenied,
        );
        expect_code(
            client
                .consume_login_token(with_token(consume(), token))
                .await,
            Code::PermissionDenied,
        );
    }

    // A wrong cluster key.
    expect_code(
        client.auth_info(with_wrong_cluster_key(auth(&alice))).await,
        Code::Unauthenticated,
    );
    expect_code(
        client
            .consume_login_token(with_wrong_cluster_key(consume()))
            .await,
        Code::Unauthenticated,
    );
    assert!(
        auth_info(&env, &alice).await.is_ok(),
        "with the cluster key"
    );
}

/// `message` with a cluster key the services do not accept.
fn with_wrong_cluster_key<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert(CLUSTER_KEY_HEADER, "not-the-cluster-key".parse().unwrap());
    request
}

on_both_backends!(
    a_key_resolves_to_its_user_rights_state_and_expiry,
    an_admins_key_carries_its_rights_on_everyone,
    tokens_that_do_not_resolve_are_unauthenticated_alike,
    an_expired_key_is_unauthenticated,
    a_key_older_than_its_user_belongs_to_nobody,
    the_key_of_a_deleted_user_works_again_once_restored,
    the_users_state_limits_what_its_key_may_do,
    a_suspended_admin_is_no_admin_and_a_flagged_one_still_is,
    an_unvalidated_email_limits_the_key_when_validation_is_required,
    the_users_universal_rights_cap_every_key,
    only_roster_services_may_resolve_or_consume_tokens,
);
