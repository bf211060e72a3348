//! `roster users create --machine`, the `--type` filter and the count of
//! machines in `users stats`.

use crate::support::{Server, run};

#[test]
fn a_machine_user_is_made_without_a_password_and_listed_by_type() {
    let server = Server::start();
    // No password is asked for: none is read from standard input.
    let made = run(
        &mut server.admin(&[
            "users",
            "create",
            "ci-bot",
            "--machine",
            "--name",
            "CI",
            "-o",
            "json",
        ]),
        None,
    )
    .ok()
    .json();
    assert_eq!(made["type"], "USER_TYPE_MACHINE", "{made}");
    assert_eq!(made.get("primaryEmailAddress"), None, "{made}");

    // Its personal access token is an API key, shown once.
    let key = run(
        &mut server.admin(&[
            "api-keys",
            "create",
            "ci-bot",
            "--name",
            "deploy",
            "--rights",
            "user_info",
            "--expires",
            "90d",
            "-o",
            "json",
        ]),
        None,
    )
    .ok()
    .json();
    assert!(key["key"].as_str().is_some_and(|k| !k.is_empty()), "{key}");

    let machines = run(
        &mut server.admin(&["users", "list", "--type", "machine", "-o", "json"]),
        None,
    )
    .ok()
    .json();
    let ids: Vec<&str> = machines["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["ids"]["userId"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["ci-bot"]);
    let humans = run(
        &mut server.admin(&["users", "search", "--type", "human", "-o", "json"]),
        None,
    )
    .ok()
    .json();
    assert!(
        humans["users"]
            .as_array()
            .unwrap()
            .iter()
            .all(|u| u["ids"]["userId"] != "ci-bot"),
        "{humans}"
    );
    let stats = run(&mut server.admin(&["users", "stats", "-o", "json"]), None)
        .ok()
        .json();
    // 64-bit counts are strings in the proto3 JSON mapping.
    assert_eq!(stats["machines"], "1", "{stats}");

    // A machine with an address, or an unknown type, is refused.
    run(
        &mut server.admin(&[
            "users",
            "create",
            "bot-2",
            "--machine",
            "--email",
            "b@example.com",
        ]),
        None,
    )
    .fails_with(2);
    run(
        &mut server.admin(&["users", "list", "--type", "robot"]),
        None,
    )
    .fails_with(2);
}
