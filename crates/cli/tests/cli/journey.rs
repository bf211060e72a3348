//! An admin's day, as a script runs it: log in, create users, import a
//! thousand from CSV, search, mint an API key and use it through
//! `ROSTER_TOKEN`, invite, read notifications, log out. Every answer is
//! read as JSON (stdout is a pipe, so JSON is the default) and checked
//! field by field.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{ADMIN, ADMIN_PASSWORD, PASSWORD, Server, run};

fn ids(users: &Value) -> Vec<String> {
    let mut ids: Vec<String> = users["users"]
        .as_array()
        .expect("a users array")
        .iter()
        .map(|u| u["ids"]["userId"].as_str().expect("a user ID").to_string())
        .collect();
    ids.sort();
    ids
}

fn is_rfc3339(value: &Value) -> bool {
    value
        .as_str()
        .is_some_and(|t| chrono::DateTime::parse_from_rfc3339(t).is_ok())
}

#[test]
fn an_admin_logs_in_imports_a_thousand_users_hands_out_a_key_invites_and_logs_out() {
    journey(Server::start());
}

/// The same against PostgreSQL and JetStream, as production runs.
#[test]
fn the_admin_journey_on_postgres_and_jetstream() {
    journey(Server::start_on_postgres());
}

fn journey(server: Server) {
    // Log in: the password comes from stdin, the session goes to a 0600 file.
    let login = run(
        &mut server.roster(&["login", ADMIN, "--password-stdin"]),
        Some(&format!("{ADMIN_PASSWORD}\n")),
    )
    .ok()
    .json();
    assert_eq!(login["sessionIds"]["userIds"]["userId"], ADMIN);
    assert!(
        login["sessionIds"]["sessionId"]
            .as_str()
            .is_some_and(|s| !s.is_empty())
    );
    assert!(is_rfc3339(&login["expiresAt"]), "{login}");
    assert!(
        login.get("token").is_none(),
        "the session token is never printed"
    );
    let token_file = server.config_dir().join("credentials/default.token");
    let token = std::fs::read_to_string(&token_file).expect("the stored session");
    assert!(token.starts_with("rst."), "a session token is stored");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&token_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the token file is the owner's alone");
    }

    // Create users with the stored session (no ROSTER_TOKEN).
    let alice = run(
        &mut server.roster(&[
            "users",
            "create",
            "alice",
            "--email",
            "alice@example.com",
            "--name",
            "Alice Liddell",
            "--attribute",
            "team=platform",
            "--password-stdin",
        ]),
        Some(&format!("{PASSWORD}\n")),
    )
    .ok()
    .json();
    assert_eq!(alice["ids"]["userId"], "alice");
    assert_eq!(alice["name"], "Alice Liddell");
    assert_eq!(alice["primaryEmailAddress"], "alice@example.com");
    assert_eq!(alice["attributes"]["team"], "platform");
    assert_eq!(alice["state"], "STATE_APPROVED");
    assert!(is_rfc3339(&alice["createdAt"]), "{alice}");
    assert!(alice.get("password").is_none(), "no password comes back");
    assert!(
        alice.get("admin").is_none(),
        "not an admin (false is left out)"
    );

    let bob = run(
        &mut server.roster(&[
            "users",
            "create",
            "bob",
            "--email",
            "bob@example.com",
            "--admin",
            "--password-stdin",
        ]),
        Some(&format!("{PASSWORD}\n")),
    )
    .ok()
    .json();
    assert_eq!(bob["admin"], true);

    // Import a thousand users from CSV, without the progress bar.
    let csv = server.dir.path().join("people.csv");
    let mut text = String::from("user_id,email,name,password\n");
    for i in 0..1000 {
        text.push_str(&format!(
            "imported-{i:04},imported-{i:04}@example.com,Imported {i},{PASSWORD}\n"
        ));
    }
    std::fs::write(&csv, text).unwrap();
    let started = Instant::now();
    let summary = run(
        &mut server.roster(&[
            "users",
            "import",
            csv.to_str().unwrap(),
            "--no-progress",
            "--concurrency",
            "16",
        ]),
        None,
    )
    .ok()
    .json();
    eprintln!("imported 1000 users in {:?}", started.elapsed());
    assert_eq!(summary["total"], 1000);
    assert_eq!(summary["succeeded"], 1000);
    assert_eq!(summary["failed"], Value::Array(vec![]));

    // Search finds exactly the ten imported-012x users.
    let found = run(
        &mut server.roster(&[
            "users",
            "search",
            "--id-contains",
            "imported-012",
            "--limit",
            "100",
        ]),
        None,
    )
    .ok()
    .json();
    let expected: Vec<String> = (120..130).map(|i| format!("imported-{i:04}")).collect();
    assert_eq!(ids(&found), expected);
    let one = &found["users"][0];
    assert_eq!(one["primaryEmailAddress"], "imported-0120@example.com");
    assert_eq!(one["name"], "Imported 120");

    // Export streams every user, one JSON object a line.
    let export = run(
        &mut server.roster(&["users", "export", "--page-size", "300"]),
        None,
    )
    .ok();
    let exported: Vec<Value> = export
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(
        exported.len(),
        1003,
        "1000 imported, alice, bob and the admin"
    );
    assert!(
        exported
            .iter()
            .any(|u| u["ids"]["userId"] == "imported-0999")
    );
    // Page by page, by token: every user once, in ID order.
    let exported_ids: Vec<&str> = exported
        .iter()
        .map(|u| u["ids"]["userId"].as_str().unwrap())
        .collect();
    let mut sorted = exported_ids.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(exported_ids, sorted);

    // A list page carries the token of the next one, which --page-token
    // follows.
    let list = |extra: &[&str]| {
        let mut args = vec!["users", "list", "--limit", "2"];
        args.extend_from_slice(extra);
        run(&mut server.roster(&args), None).ok().json()
    };
    let first = list(&[]);
    let token = first["nextPageToken"].as_str().expect("a next page token");
    let second = list(&["--page-token", token]);
    assert_eq!(
        [ids(&first), ids(&second)].concat(),
        exported_ids[..4].to_vec()
    );

    // An API key for alice, shown once, then used through ROSTER_TOKEN.
    let key = run(
        &mut server.roster(&[
            "api-keys",
            "create",
            "alice",
            "--name",
            "ci",
            "--rights",
            "RIGHT_USER_INFO,user_settings_basic,user_notifications_read",
        ]),
        None,
    )
    .ok()
    .json();
    let secret = key["key"].as_str().expect("the key, this once").to_string();
    assert!(secret.starts_with("rak."), "{key}");
    assert_eq!(key["name"], "ci");
    assert_eq!(
        key["rights"],
        serde_json::json!([
            "RIGHT_USER_INFO",
            "RIGHT_USER_SETTINGS_BASIC",
            "RIGHT_USER_NOTIFICATIONS_READ"
        ])
    );
    let key_id = key["id"].as_str().unwrap();
    let listed = run(&mut server.roster(&["api-keys", "list", "alice"]), None)
        .ok()
        .json();
    assert_eq!(listed["apiKeys"][0]["id"], key_id);
    assert!(
        listed["apiKeys"][0].get("key").is_none(),
        "listing never shows a secret"
    );

    let as_alice = |args: &[&str]| {
        let mut command = server.roster(args);
        command.env("ROSTER_TOKEN", &secret);
        command
    };
    let me = run(&mut as_alice(&["users", "get", "alice"]), None)
        .ok()
        .json();
    assert_eq!(me["ids"]["userId"], "alice");
    let rights = run(&mut as_alice(&["rights", "alice"]), None).ok().json();
    assert_eq!(
        rights["rights"],
        serde_json::json!([
            "RIGHT_USER_INFO",
            "RIGHT_USER_SETTINGS_BASIC",
            "RIGHT_USER_NOTIFICATIONS_READ"
        ])
    );
    let denied = run(&mut as_alice(&["api-keys", "list", "bob"]), None).fails_with(4);
    assert!(
        denied.stderr.contains("permission denied"),
        "{}",
        denied.stderr
    );

    // Invite someone; the token comes back this once, the list has the address.
    let sent = run(
        &mut server.roster(&["invitations", "send", "carol@example.com"]),
        None,
    )
    .ok()
    .json();
    assert_eq!(sent["invitations"][0]["email"], "carol@example.com");
    assert!(
        sent["invitations"][0]["token"]
            .as_str()
            .is_some_and(|t| !t.is_empty())
    );
    assert!(is_rfc3339(&sent["invitations"][0]["expiresAt"]));
    let invitations = run(&mut server.roster(&["invitations", "list"]), None)
        .ok()
        .json();
    let invitation = &invitations["invitations"][0];
    assert_eq!(invitation["email"], "carol@example.com");
    assert_eq!(invitation["sentBy"]["userId"], ADMIN);
    assert!(
        invitation.get("token").is_none(),
        "a list never shows a token"
    );

    // Alice was told about her new key.
    let deadline = Instant::now() + Duration::from_secs(20);
    let notification = loop {
        let list = run(
            &mut server.roster(&["notifications", "list", "alice"]),
            None,
        )
        .ok()
        .json();
        if let Some(found) = list["notifications"].as_array().and_then(|n| {
            n.iter()
                .find(|n| n["notificationType"] == "API_KEY_CREATED")
        }) {
            break found.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no API_KEY_CREATED notification: {list}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(notification["entityIds"]["userIds"]["userId"], "alice");
    assert_eq!(notification["senderIds"]["userId"], ADMIN);
    assert!(is_rfc3339(&notification["createdAt"]));
    assert!(
        notification.get("status").is_none(),
        "UNSEEN is the default"
    );
    let id = notification["id"].as_str().unwrap();
    run(
        &mut as_alice(&["notifications", "mark", "alice", "--status", "seen", id]),
        None,
    )
    .ok();
    let seen = run(
        &mut server.roster(&["notifications", "list", "alice", "--status", "seen"]),
        None,
    )
    .ok()
    .json();
    assert_eq!(seen["notifications"][0]["id"], id);
    assert_eq!(
        seen["notifications"][0]["status"],
        "NOTIFICATION_STATUS_SEEN"
    );

    // Log out: the session ends on the server and the file is gone.
    run(&mut server.roster(&["logout"]), None).ok();
    assert!(!token_file.exists(), "logout removes the stored session");
    let after = run(&mut server.roster(&["users", "list"]), None).fails_with(4);
    assert!(after.stderr.contains("no credential"), "{}", after.stderr);
    let reused = run(
        server
            .roster(&["users", "list"])
            .env("ROSTER_TOKEN", token.trim()),
        None,
    )
    .fails_with(4);
    assert!(
        reused.stderr.contains("unauthenticated"),
        "{}",
        reused.stderr
    );
}
