//! The verbs the journey does not walk: sessions, passwords, login tokens,
//! email validation, external users, the rest of API keys, invitations
//! and users, and invitations sent from a file.

use crate::support::{PASSWORD, Server, run};

const NEW_PASSWORD: &str = "Amber-Falcon-67890";
const TEMPORARY: &str = "Temporary-Lynx-24680";

#[test]
fn sessions_passwords_login_tokens_and_email_validation() {
    let server = Server::start_with(&[("ROSTER__ACCESS__LOGIN_TOKENS_ENABLED", "true")]);
    run(
        &mut server.admin(&[
            "users",
            "create",
            "ivy",
            "--email",
            "ivy@example.com",
            "--password-stdin",
        ]),
        Some(&format!("{PASSWORD}\n")),
    )
    .ok();
    let ivy = |args: &[&str]| {
        let mut command = server.roster(args);
        command.env("ROSTER_CONTEXT", "ivy");
        command
    };
    run(&mut ivy(&["context", "add", "ivy"]), None).ok();
    run(
        &mut ivy(&["login", "ivy", "--password-stdin"]),
        Some(&format!("{PASSWORD}\n")),
    )
    .ok();

    // Her session is listed, and ending it locks the stored token out.
    let sessions = run(&mut server.admin(&["sessions", "list", "ivy"]), None)
        .ok()
        .json();
    let session_id = sessions["sessions"][0]["sessionId"]
        .as_str()
        .unwrap()
        .to_string();
    run(&mut ivy(&["users", "get", "ivy"]), None).ok();
    run(
        &mut server.admin(&["sessions", "delete", "ivy", &session_id]),
        None,
    )
    .ok();
    run(&mut ivy(&["users", "get", "ivy"]), None).fails_with(4);
    // Logging out of an ended session just forgets it.
    let forgot = run(&mut ivy(&["logout", "-o", "table"]), None).ok();
    assert_eq!(forgot.stdout, "The session had already ended; forgot it.\n");
    assert!(!server.config_dir().join("credentials/ivy.token").exists());

    // An admin gives her a temporary password; she trades it for a new
    // one, which logs in while the first one no longer does.
    run(
        &mut server.admin(&["users", "update", "ivy", "--temporary-password-stdin"]),
        Some(&format!("{TEMPORARY}\n")),
    )
    .ok();
    run(
        &mut ivy(&["users", "password", "set", "ivy", "--password-stdin"]),
        Some(&format!("{TEMPORARY}\n{NEW_PASSWORD}\n")),
    )
    .ok();
    run(
        &mut ivy(&["login", "ivy", "--password-stdin"]),
        Some(&format!("{PASSWORD}\n")),
    )
    .fails_with(4);
    let login = run(
        &mut ivy(&["login", "ivy", "--password-stdin"]),
        Some(&format!("{NEW_PASSWORD}\n")),
    )
    .ok()
    .json();
    assert_eq!(login["sessionIds"]["userIds"]["userId"], "ivy");
    // A wrong current password is refused and names the field.
    let wrong = run(
        &mut ivy(&["users", "password", "set", "ivy", "--password-stdin"]),
        Some(&format!("{PASSWORD}\n{NEW_PASSWORD}-2\n")),
    );
    assert_ne!(wrong.code, 0, "{}", wrong.stdout);
    run(&mut ivy(&["logout"]), None).ok();

    // A login token, returned to the admin, logs her in once.
    let token = run(
        &mut server.admin(&["login-tokens", "create", "ivy", "--skip-email"]),
        None,
    )
    .ok()
    .json();
    let token = token["token"]
        .as_str()
        .expect("the token for an admin")
        .to_string();
    let session = run(
        &mut ivy(&["login", "--login-token-stdin"]),
        Some(&format!("{token}\n")),
    )
    .ok()
    .json();
    assert_eq!(session["sessionIds"]["userIds"]["userId"], "ivy");
    run(
        &mut ivy(&["login", "--login-token-stdin"]),
        Some(&format!("{token}\n")),
    )
    .fails_with(4);

    // Email validation with the code an admin may ask for.
    let sent = run(
        &mut server.admin(&["email", "send-validation", "ivy", "--return-code"]),
        None,
    )
    .ok()
    .json();
    let code = sent["code"].as_str().expect("a code").to_string();
    let validated = run(
        &mut server.admin(&["email", "validate", "ivy", &code]),
        None,
    )
    .ok()
    .json();
    assert_eq!(validated["userIds"]["userId"], "ivy");
    assert!(
        validated["primaryEmailAddressValidatedAt"].is_string(),
        "{validated}"
    );
    run(
        &mut server.admin(&["email", "validate", "ivy", "not-the-code"]),
        None,
    )
    .fails_with(2);
}

#[test]
fn keys_users_external_links_and_invitations_round_trip() {
    let server = Server::start();
    run(
        &mut server.admin(&[
            "users",
            "create",
            "jay",
            "--email",
            "jay@example.com",
            "--password-stdin",
        ]),
        Some(&format!("{PASSWORD}\n")),
    )
    .ok();

    // Users: update only what is given, delete, restore, purge.
    let updated = run(
        &mut server.admin(&[
            "users",
            "update",
            "jay",
            "--name",
            "Jay Gatsby",
            "--state",
            "suspended",
            "--state-description",
            "on leave",
        ]),
        None,
    )
    .ok()
    .json();
    assert_eq!(updated["name"], "Jay Gatsby");
    assert_eq!(updated["state"], "STATE_SUSPENDED");
    assert_eq!(updated["stateDescription"], "on leave");
    assert_eq!(
        updated["primaryEmailAddress"], "jay@example.com",
        "untouched"
    );
    let changes = server.dir.path().join("changes.json");
    std::fs::write(
        &changes,
        r#"{"user":{"description":"from a file"},"fieldMask":"description"}"#,
    )
    .unwrap();
    let from_file = run(
        &mut server.admin(&[
            "users",
            "update",
            "jay",
            "--from-json",
            changes.to_str().unwrap(),
        ]),
        None,
    )
    .ok()
    .json();
    assert_eq!(from_file["description"], "from a file");
    assert_eq!(from_file["name"], "Jay Gatsby");

    // API keys: get, update, delete.
    let key = run(
        &mut server.admin(&[
            "api-keys",
            "create",
            "jay",
            "--name",
            "k",
            "--rights",
            "user_info",
            "--expires",
            "30d",
        ]),
        None,
    )
    .ok()
    .json();
    let id = key["id"].as_str().unwrap().to_string();
    let got = run(&mut server.admin(&["api-keys", "get", "jay", &id]), None)
        .ok()
        .json();
    assert_eq!(got["name"], "k");
    assert!(got.get("key").is_none());
    let changed = run(
        &mut server.admin(&[
            "api-keys",
            "update",
            "jay",
            &id,
            "--name",
            "renamed",
            "--rights",
            "user_info,user_list",
        ]),
        None,
    )
    .ok()
    .json();
    assert_eq!(changed["name"], "renamed");
    assert_eq!(
        changed["rights"],
        serde_json::json!(["RIGHT_USER_INFO", "RIGHT_USER_LIST"])
    );
    run(&mut server.admin(&["api-keys", "delete", "jay", &id]), None).ok();
    run(&mut server.admin(&["api-keys", "get", "jay", &id]), None).fails_with(3);

    // External users: link, find both ways, unlink.
    let linked = run(
        &mut server.admin(&[
            "external-users",
            "create",
            "jay",
            "--provider",
            "github",
            "--external-id",
            "583231",
        ]),
        None,
    )
    .ok()
    .json();
    assert_eq!(linked["externalId"], "583231");
    let by_user = run(
        &mut server.admin(&[
            "external-users",
            "get",
            "--provider",
            "github",
            "--user",
            "jay",
        ]),
        None,
    )
    .ok()
    .json();
    assert_eq!(by_user["externalId"], "583231");
    let by_external = run(
        &mut server.admin(&[
            "external-users",
            "get",
            "--provider",
            "github",
            "--external-id",
            "583231",
        ]),
        None,
    )
    .ok()
    .json();
    assert_eq!(by_external["userIds"]["userId"], "jay");
    run(
        &mut server.admin(&[
            "external-users",
            "delete",
            "--provider",
            "github",
            "--external-id",
            "583231",
        ]),
        None,
    )
    .ok();
    run(
        &mut server.admin(&[
            "external-users",
            "get",
            "--provider",
            "github",
            "--user",
            "jay",
        ]),
        None,
    )
    .fails_with(3);

    // Delete, restore, delete again and purge.
    run(&mut server.admin(&["users", "delete", "jay"]), None).ok();
    let deleted = run(&mut server.admin(&["users", "list", "--deleted"]), None)
        .ok()
        .json();
    assert_eq!(deleted["users"][0]["ids"]["userId"], "jay");
    run(&mut server.admin(&["users", "restore", "jay"]), None).ok();
    run(&mut server.admin(&["users", "get", "jay"]), None).ok();
    run(&mut server.admin(&["users", "purge", "jay"]), None).ok();
    run(&mut server.admin(&["users", "get", "jay"]), None).fails_with(3);

    // Invitations: get, resend, delete.
    let sent = run(
        &mut server.admin(&["invitations", "send", "kim@example.com", "lee@example.com"]),
        None,
    )
    .ok()
    .json();
    assert_eq!(sent["invitations"].as_array().unwrap().len(), 2);
    let id = sent["invitations"][0]["id"].as_str().unwrap().to_string();
    let email = sent["invitations"][0]["email"]
        .as_str()
        .unwrap()
        .to_string();
    let got = run(&mut server.admin(&["invitations", "get", &id]), None)
        .ok()
        .json();
    assert_eq!(got["email"], email.as_str());
    let resent = run(&mut server.admin(&["invitations", "resend", &email]), None)
        .ok()
        .json();
    assert_eq!(resent["email"], email.as_str());
    run(&mut server.admin(&["invitations", "delete", &email]), None).ok();
    run(&mut server.admin(&["invitations", "get", &id]), None).fails_with(3);
}

#[test]
fn invitations_from_a_file_are_sent_one_by_one_with_a_summary() {
    let server = Server::start();
    let file = server.dir.path().join("hires.txt");
    std::fs::write(
        &file,
        "# new hires\nmia@example.com\n\nnoah@example.com  # starts Monday\nnot-an-address\n",
    )
    .unwrap();
    let path = file.to_str().unwrap();
    let dry = run(
        &mut server.admin(&["invitations", "send", "--file", path, "--dry-run"]),
        None,
    )
    .ok()
    .json();
    assert_eq!(dry["total"], 3);
    assert_eq!(dry["items"][1]["item"], "noah@example.com");
    assert_eq!(dry["items"][1]["line"], 4);
    let none = run(&mut server.admin(&["invitations", "list"]), None)
        .ok()
        .json();
    assert!(
        none.get("invitations").is_none(),
        "a dry run sends nothing: {none}"
    );

    let summary = run(
        &mut server.admin(&[
            "invitations",
            "send",
            "--file",
            path,
            "--no-progress",
            "--concurrency",
            "2",
        ]),
        None,
    )
    .fails_with(8)
    .json();
    assert_eq!(summary["total"], 3);
    assert_eq!(summary["succeeded"], 2);
    let failed = &summary["failed"][0];
    assert_eq!(failed["line"], 5);
    assert_eq!(failed["item"], "not-an-address");
    assert_eq!(failed["code"], "INVALID_ARGUMENT");
    let listed = run(&mut server.admin(&["invitations", "list"]), None)
        .ok()
        .json();
    let mut emails: Vec<&str> = listed["invitations"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["email"].as_str())
        .collect();
    emails.sort();
    assert_eq!(emails, ["mia@example.com", "noah@example.com"]);
}
