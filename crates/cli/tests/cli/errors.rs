//! Exit codes and messages scripts rely on: invalid input names the
//! field, a missing or wrong credential is 4, an unknown user 3, an
//! unreachable server 5.

use crate::support::{PASSWORD, Server, run};

#[test]
fn bad_input_exits_2_and_names_the_field() {
    let server = Server::start();

    // Refused by the command line itself.
    let missing = run(&mut server.admin(&["users", "create"]), None).fails_with(2);
    assert!(missing.stderr.contains("<USER_ID>"), "{}", missing.stderr);
    let right = run(
        &mut server.admin(&["api-keys", "create", "ops-admin", "--rights", "RIGHT_NOPE"]),
        None,
    )
    .fails_with(2);
    assert!(
        right.stderr.contains("unknown right `RIGHT_NOPE`"),
        "{}",
        right.stderr
    );
    let state = run(
        &mut server.admin(&["users", "update", "ops-admin", "--state", "asleep"]),
        None,
    )
    .fails_with(2);
    assert!(
        state.stderr.contains("unknown state `asleep`"),
        "{}",
        state.stderr
    );

    // Refused by the server, which names the field.
    let email = run(
        &mut server.admin(&[
            "users",
            "create",
            "carol",
            "--email",
            "no-at-sign",
            "--password-stdin",
        ]),
        Some(&format!("{PASSWORD}\n")),
    )
    .fails_with(2);
    assert!(
        email.stderr.contains("invalid argument")
            && email.stderr.contains("`user.primary_email_address`"),
        "{}",
        email.stderr
    );

    // JSON input that does not fit the message names what is wrong.
    let file = server.dir.path().join("key.json");
    std::fs::write(
        &file,
        r#"{"name":"ci","rights":["RIGHT_USER_INFO"],"expiresAt":"tomorrow"}"#,
    )
    .unwrap();
    let json = run(
        &mut server.admin(&[
            "api-keys",
            "create",
            "ops-admin",
            "--from-json",
            file.to_str().unwrap(),
        ]),
        None,
    )
    .fails_with(2);
    assert!(json.stderr.contains("key.json"), "{}", json.stderr);
    assert!(json.stderr.contains("field `expiresAt`"), "{}", json.stderr);

    // Nothing to change is caught before anything is sent.
    let nothing = run(&mut server.admin(&["users", "update", "ops-admin"]), None).fails_with(2);
    assert!(
        nothing.stderr.contains("nothing to update"),
        "{}",
        nothing.stderr
    );
}

#[test]
fn credentials_that_are_missing_or_wrong_exit_4() {
    let server = Server::start();

    let none = run(&mut server.roster(&["users", "list"]), None).fails_with(4);
    assert!(
        none.stderr.contains("no credential for context `default`"),
        "{}",
        none.stderr
    );
    assert!(
        none.stderr
            .contains("hint: log in with `roster login USER`"),
        "{}",
        none.stderr
    );

    let wrong = run(
        server
            .roster(&["users", "list"])
            .env("ROSTER_TOKEN", "rak.notakey.notasecret"),
        None,
    )
    .fails_with(4);
    assert!(wrong.stderr.contains("unauthenticated"), "{}", wrong.stderr);

    let absent = server.dir.path().join("absent.key");
    let file = run(
        &mut server.roster(&["users", "list", "--token-file", absent.to_str().unwrap()]),
        None,
    )
    .fails_with(4);
    assert!(file.stderr.contains("absent.key"), "{}", file.stderr);

    // A token file works where ROSTER_TOKEN would.
    let key = server.dir.path().join("admin.key");
    let listed = run(
        &mut server.roster(&["users", "list", "--token-file", key.to_str().unwrap()]),
        None,
    )
    .ok()
    .json();
    assert_eq!(listed["users"][0]["ids"]["userId"], "ops-admin");

    let password = run(
        &mut server.roster(&["login", "ops-admin", "--password-stdin"]),
        Some("Not-The-Password-123\n"),
    )
    .fails_with(4);
    assert!(
        password.stderr.contains("unauthenticated"),
        "{}",
        password.stderr
    );
}

#[test]
fn unknown_users_exit_3_and_conflicts_6() {
    let server = Server::start();

    let unknown = run(&mut server.admin(&["users", "get", "zed"]), None).fails_with(3);
    assert!(
        unknown.stderr.starts_with("error: not found"),
        "{}",
        unknown.stderr
    );
    run(&mut server.admin(&["users", "delete", "zed"]), None).fails_with(3);
    run(&mut server.admin(&["api-keys", "list", "zed"]), None).fails_with(3);

    let create = |id: &str| {
        run(
            &mut server.admin(&[
                "users",
                "create",
                id,
                "--email",
                "dora@example.com",
                "--password-stdin",
            ]),
            Some(&format!("{PASSWORD}\n")),
        )
    };
    create("dora").ok();
    let again = create("dora").fails_with(6);
    assert!(again.stderr.contains("already exists"), "{}", again.stderr);

    // The lifecycle: a state change made twice is a conflict naming why.
    let locked = run(
        &mut server.admin(&["users", "lock", "dora", "--reason", "audit", "-o", "json"]),
        None,
    )
    .ok()
    .json();
    assert_eq!(locked["locked"], true);
    assert_eq!(locked["lockReason"], "audit");
    let again = run(&mut server.admin(&["users", "lock", "dora"]), None).fails_with(6);
    assert!(again.stderr.contains("already_locked"), "{}", again.stderr);
    let stats = run(&mut server.admin(&["users", "stats", "-o", "json"]), None)
        .ok()
        .json();
    // 64-bit counts are strings in the proto3 JSON mapping.
    assert_eq!(stats["locked"], "1", "{stats}");
    let unlocked = run(
        &mut server.admin(&["users", "unlock", "dora", "-o", "json"]),
        None,
    )
    .ok()
    .json();
    // The proto3 JSON mapping leaves out fields at their default (false).
    assert_eq!(unlocked.get("locked"), None, "{unlocked}");
    assert_eq!(unlocked.get("lockedAt"), None, "{unlocked}");
    run(&mut server.admin(&["users", "unlock", "dora"]), None).fails_with(6);

    // Required actions: an empty list is no way to clear them by accident.
    run(
        &mut server.admin(&["users", "required-actions", "dora"]),
        None,
    )
    .fails_with(2);
    let pending = run(
        &mut server.admin(&[
            "users",
            "required-actions",
            "dora",
            "update_password",
            "-o",
            "json",
        ]),
        None,
    )
    .ok()
    .json();
    assert_eq!(
        pending["requiredActions"],
        serde_json::json!(["USER_REQUIRED_ACTION_UPDATE_PASSWORD"])
    );
    let cleared = run(
        &mut server.admin(&["users", "required-actions", "dora", "--clear", "-o", "json"]),
        None,
    )
    .ok()
    .json();
    assert_eq!(cleared.get("requiredActions"), None, "{cleared}");
}

#[test]
fn an_unreachable_server_exits_5() {
    let server = Server::start();
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{closed}");
    let down = run(
        server.admin(&["users", "list"]).env("ROSTER_ADDR", &addr),
        None,
    )
    .fails_with(5);
    assert!(
        down.stderr
            .contains(&format!("cannot connect to http://{addr}")),
        "{}",
        down.stderr
    );
    assert!(down.stderr.contains("hint:"), "{}", down.stderr);
}

#[test]
fn contexts_choose_the_address_and_keep_their_own_sessions() {
    let server = Server::start();
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let config = |args: &[&str]| {
        let mut command = server.roster(args);
        command.env_remove("ROSTER_ADDR");
        command
    };
    run(
        &mut config(&["context", "add", "local", "--addr", &server.addr, "--use"]),
        None,
    )
    .ok();
    run(
        &mut config(&[
            "context",
            "add",
            "elsewhere",
            "--addr",
            &format!("127.0.0.1:{closed}"),
        ]),
        None,
    )
    .ok();
    run(
        &mut config(&["login", "ops-admin", "--password-stdin"]),
        Some(&format!("{}\n", crate::support::ADMIN_PASSWORD)),
    )
    .ok();
    assert!(server.config_dir().join("credentials/local.token").exists());
    run(&mut config(&["users", "get", "ops-admin"]), None).ok();
    // The other context has no session, and its address is closed.
    run(
        &mut config(&["--context", "elsewhere", "users", "get", "ops-admin"]),
        None,
    )
    .fails_with(5);
    let unknown = run(&mut config(&["--context", "nope", "users", "list"]), None).fails_with(2);
    assert!(
        unknown.stderr.contains("no context `nope`"),
        "{}",
        unknown.stderr
    );
    // ROSTER_ADDR wins over the context.
    run(
        config(&["users", "get", "ops-admin"]).env("ROSTER_ADDR", format!("127.0.0.1:{closed}")),
        None,
    )
    .fails_with(5);

    let current = run(&mut config(&["context", "current", "--json"]), None)
        .ok()
        .json();
    assert_eq!(current["name"], "local");
    let list = run(&mut config(&["context", "list"]), None).ok().json();
    let names: Vec<&str> = list["contexts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["default", "elsewhere", "local"]);
    assert_eq!(list["contexts"][2]["current"], "*");
    assert_eq!(list["contexts"][2]["loggedIn"], true);
    assert_eq!(list["contexts"][1]["loggedIn"], false);
}
