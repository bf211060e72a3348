//! `roster users metadata` and the `--metadata` filter of `users list` and
//! `users search`.

use crate::support::{PASSWORD, Server, run};

fn create(server: &Server, user_id: &str) {
    run(
        &mut server.admin(&[
            "users",
            "create",
            user_id,
            "--email",
            &format!("{user_id}@example.com"),
            "--password-stdin",
        ]),
        Some(&format!("{PASSWORD}\n")),
    )
    .ok();
}

fn ids(listed: &serde_json::Value) -> Vec<String> {
    listed["users"]
        .as_array()
        .map(|users| {
            users
                .iter()
                .map(|u| u["ids"]["userId"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn metadata_is_set_listed_filtered_on_and_deleted() {
    let server = Server::start();
    create(&server, "mia");
    create(&server, "noa");

    let set = run(
        &mut server.admin(&[
            "users",
            "metadata",
            "set",
            "mia",
            "tenant=eu-1",
            "team=ops",
            "-o",
            "table",
        ]),
        None,
    )
    .ok();
    assert_eq!(set.stdout, "Set 2 metadata entries of mia.\n");
    run(
        &mut server.admin(&["users", "metadata", "set", "noa", "tenant=us-2"]),
        None,
    )
    .ok();

    // JSON has the value in base64, as proto3 JSON does; the table too.
    let listed = run(
        &mut server.admin(&["users", "metadata", "list", "mia", "-o", "json"]),
        None,
    )
    .ok()
    .json();
    let entries = listed["metadata"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "{listed}");
    assert_eq!(entries[0]["key"], "team");
    assert_eq!(entries[0]["value"], "b3Bz");
    assert_eq!(entries[1]["key"], "tenant");
    let table = run(
        &mut server.admin(&[
            "users", "metadata", "list", "mia", "--prefix", "ten", "-o", "table",
        ]),
        None,
    )
    .ok();
    assert!(table.stdout.contains("tenant"), "{}", table.stdout);
    assert!(table.stdout.contains("ZXUtMQ=="), "{}", table.stdout);
    assert!(!table.stdout.contains("team"), "{}", table.stdout);

    // Filters: a key alone, or a key and its value.
    let with_tenant = run(
        &mut server.admin(&["users", "list", "--metadata", "tenant", "-o", "json"]),
        None,
    )
    .ok()
    .json();
    assert_eq!(ids(&with_tenant), ["mia", "noa"]);
    let in_eu = run(
        &mut server.admin(&[
            "users",
            "search",
            "--metadata",
            "tenant=eu-1",
            "--metadata",
            "team",
            "-o",
            "json",
        ]),
        None,
    )
    .ok()
    .json();
    assert_eq!(ids(&in_eu), ["mia"]);

    // Deleting a key that is not set deletes nothing and says which.
    let missing = run(
        &mut server.admin(&["users", "metadata", "delete", "mia", "team", "nope"]),
        None,
    )
    .fails_with(3);
    assert!(missing.stderr.contains("nope"), "{}", missing.stderr);
    let deleted = run(
        &mut server.admin(&["users", "metadata", "delete", "mia", "team", "-o", "table"]),
        None,
    )
    .ok();
    assert_eq!(deleted.stdout, "Deleted 1 metadata entries of mia.\n");
    let left = run(
        &mut server.admin(&["users", "metadata", "list", "mia", "-o", "json"]),
        None,
    )
    .ok()
    .json();
    assert_eq!(left["metadata"].as_array().unwrap().len(), 1, "{left}");

    // A bad entry is refused before anything is sent, or names its field.
    run(
        &mut server.admin(&["users", "metadata", "set", "mia", "no-equals-sign"]),
        None,
    )
    .fails_with(2);
    let empty = run(
        &mut server.admin(&["users", "metadata", "set", "mia", "empty="]),
        None,
    )
    .fails_with(2);
    assert!(
        empty.stderr.contains("metadata[0].value"),
        "{}",
        empty.stderr
    );
}
