//! Tables for people: snapshots of a few commands, with times and
//! generated IDs masked.

use regex::Regex;

use crate::support::{PASSWORD, Server, run};

/// The output with times as `<time>` and key IDs as `<id>`.
fn masked(text: &str) -> String {
    let time = Regex::new(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC").unwrap();
    let id = Regex::new(r"\b[a-z0-9]{24}\b").unwrap();
    let text = time.replace_all(text, "<time>");
    id.replace_all(&text, "<id>").into_owned()
}

#[test]
fn tables_show_readable_columns_and_times() {
    let server = Server::start();
    run(
        &mut server.admin(&[
            "users",
            "create",
            "frank",
            "--email",
            "frank@example.com",
            "--name",
            "Frank Zappa",
            "--password-stdin",
            "-o",
            "json",
        ]),
        Some(&format!("{PASSWORD}\n")),
    )
    .ok();

    let get = run(
        &mut server.admin(&["users", "get", "frank", "-o", "table"]),
        None,
    )
    .ok();
    assert_eq!(
        masked(&get.stdout),
        "\
ID     NAME         EMAIL              STATE     ADMIN  CREATED
frank  Frank Zappa  frank@example.com  APPROVED  no     <time>
"
    );

    let list = run(
        &mut server.admin(&["users", "list", "-o", "wide", "--order", "user_id"]),
        None,
    )
    .ok();
    assert_eq!(
        masked(&list.stdout),
        "\
ID         NAME         EMAIL                     STATE     ADMIN  CREATED                  TYPE   DESCRIPTION  EMAIL VALIDATED  UPDATED                  DELETED
frank      Frank Zappa  frank@example.com         APPROVED  no     <time>  HUMAN                                <time>
ops-admin               ops-admin@roster.invalid  APPROVED  yes    <time>  HUMAN                                <time>
"
    );
    assert_eq!(list.stderr, "2 shown, 2 in all\n");

    run(
        &mut server.admin(&[
            "api-keys",
            "create",
            "frank",
            "--name",
            "deploy",
            "--rights",
            "user_info,user_list",
            "--expires",
            "2099-01-01T00:00:00Z",
            "-o",
            "json",
        ]),
        None,
    )
    .ok();
    let keys = run(
        &mut server.admin(&["api-keys", "list", "frank", "-o", "table"]),
        None,
    )
    .ok();
    assert_eq!(
        masked(&keys.stdout),
        "\
ID                        NAME    RIGHTS               EXPIRES
<id>  deploy  USER_INFO,USER_LIST  2099-01-01 00:00:00 UTC
"
        .replace("2099-01-01 00:00:00 UTC", "<time>")
    );

    let empty = run(
        &mut server.admin(&["sessions", "list", "frank", "-o", "table"]),
        None,
    )
    .ok();
    assert_eq!(empty.stdout, "No results.\n");

    let deleted = run(
        &mut server.admin(&["users", "delete", "frank", "-o", "table"]),
        None,
    )
    .ok();
    assert_eq!(deleted.stdout, "Deleted user frank.\n");
}

#[test]
fn json_is_the_default_off_a_terminal_and_yaml_is_on_request() {
    let server = Server::start();
    let json = run(&mut server.admin(&["users", "get", "ops-admin"]), None)
        .ok()
        .json();
    assert_eq!(json["ids"]["userId"], "ops-admin");
    let yaml = run(
        &mut server.admin(&["users", "get", "ops-admin", "-o", "yaml"]),
        None,
    )
    .ok();
    assert!(
        yaml.stdout.contains("ids:\n  userId: ops-admin\n"),
        "{}",
        yaml.stdout
    );
    assert!(
        yaml.stdout.contains("state: STATE_APPROVED\n"),
        "{}",
        yaml.stdout
    );
}

#[test]
fn a_dry_run_import_reads_the_file_and_sends_nothing() {
    let server = Server::start();
    let csv = server.dir.path().join("two.csv");
    std::fs::write(
        &csv,
        format!("user_id,email,password\ngina,gina@example.com,{PASSWORD}\nhal,hal@example.com,{PASSWORD}\n"),
    )
    .unwrap();
    let dry = run(
        &mut server.admin(&[
            "users",
            "import",
            csv.to_str().unwrap(),
            "--dry-run",
            "-o",
            "table",
        ]),
        None,
    )
    .ok();
    assert_eq!(
        dry.stdout,
        "Would have created 2 users; nothing was sent.\n"
    );
    run(&mut server.admin(&["users", "get", "gina"]), None).fails_with(3);

    // A partly bad file: the good rows go in, the summary names the bad one.
    std::fs::write(
        &csv,
        format!("user_id,email,password\ngina,gina@example.com,{PASSWORD}\nhal,not-an-address,{PASSWORD}\n"),
    )
    .unwrap();
    let partial = run(
        &mut server.admin(&[
            "users",
            "import",
            csv.to_str().unwrap(),
            "--no-progress",
            "-o",
            "table",
        ]),
        None,
    )
    .fails_with(8);
    assert!(
        partial.stdout.starts_with("1 user created, 1 failed.\n"),
        "{}",
        partial.stdout
    );
    assert!(
        partial
            .stdout
            .contains("3     hal   invalid argument: invalid `user.primary_email_address`"),
        "{}",
        partial.stdout
    );
    run(&mut server.admin(&["users", "get", "gina"]), None).ok();
}
