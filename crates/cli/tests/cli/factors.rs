//! `roster factors` and a `roster login` that needs a second factor: a
//! user makes recovery codes with their session, logs in again with one,
//! and removes them with their password.

use crate::support::{PASSWORD, Server, run};

#[test]
fn a_user_logs_in_with_a_recovery_code_and_removes_the_codes_with_the_password() {
    let server = Server::start();
    run(
        &mut server.admin(&[
            "users",
            "create",
            "tia",
            "--email",
            "tia@example.com",
            "--password-stdin",
        ]),
        Some(&format!("{PASSWORD}\n")),
    )
    .ok();
    run(
        &mut server.roster(&["login", "tia", "--password-stdin"]),
        Some(&format!("{PASSWORD}\n")),
    )
    .ok();

    let codes = run(
        &mut server.roster(&["factors", "generate-recovery-codes", "tia"]),
        None,
    )
    .ok()
    .json();
    let codes: Vec<String> = codes["codes"]
        .as_array()
        .expect("a codes array")
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    assert_eq!(codes.len(), 10);
    let methods = run(&mut server.roster(&["factors", "methods", "tia"]), None)
        .ok()
        .json();
    assert_eq!(
        methods["authMethodTypes"],
        serde_json::json!([
            "AUTHENTICATION_METHOD_TYPE_PASSWORD",
            "AUTHENTICATION_METHOD_TYPE_RECOVERY_CODE"
        ])
    );

    // A login now needs the second factor, read after the password.
    let login = run(
        &mut server.roster(&[
            "login",
            "tia",
            "--password-stdin",
            "--second-factor",
            "recovery",
            "--code-stdin",
        ]),
        Some(&format!("{PASSWORD}\n{}\n", codes[0])),
    )
    .ok()
    .json();
    assert!(
        login["sessionIds"]["sessionId"]
            .as_str()
            .is_some_and(|s| !s.is_empty()),
        "{login}"
    );
    // A used code logs in no more (UNAUTHENTICATED exits with 4).
    let used = run(
        &mut server.roster(&["login", "tia", "--password-stdin", "--code-stdin"]),
        Some(&format!("{PASSWORD}\n{}\n", codes[0])),
    )
    .fails_with(4);
    assert!(used.stderr.contains("unauthenticated"), "{}", used.stderr);

    let listed = run(&mut server.roster(&["factors", "list", "tia"]), None)
        .ok()
        .json();
    assert_eq!(listed["factors"][0]["remainingCodes"], 9, "{listed}");
    run(
        &mut server.roster(&[
            "factors",
            "remove",
            "tia",
            "recovery-codes",
            "--password-stdin",
        ]),
        Some(&format!("{PASSWORD}\n")),
    )
    .ok();
    let plain = run(
        &mut server.roster(&["login", "tia", "--password-stdin"]),
        Some(&format!("{PASSWORD}\n")),
    )
    .ok()
    .json();
    assert!(plain.get("secondFactorRequired").is_none(), "{plain}");
}

#[test]
fn a_narrow_key_adds_a_first_factor_only_with_the_password() {
    let server = Server::start();
    run(
        &mut server.admin(&[
            "users",
            "create",
            "uma",
            "--email",
            "uma@example.com",
            "--password-stdin",
        ]),
        Some(&format!("{PASSWORD}\n")),
    )
    .ok();
    let key = run(
        &mut server.admin(&[
            "api-keys",
            "create",
            "uma",
            "--name",
            "settings",
            "--rights",
            "RIGHT_USER_INFO,user_settings_basic",
        ]),
        None,
    )
    .ok()
    .json();
    let key = key["key"].as_str().expect("the key, this once").to_string();
    let as_key = |args: &[&str]| {
        let mut command = server.roster(args);
        command.env("ROSTER_TOKEN", &key);
        command
    };

    // Without the password: INVALID_ARGUMENT naming it (exit 2).
    let refused = run(
        &mut as_key(&["factors", "generate-recovery-codes", "uma"]),
        None,
    )
    .fails_with(2);
    assert!(refused.stderr.contains("password"), "{}", refused.stderr);
    // With it, read from standard input: ten codes, shown once.
    let codes = run(
        &mut as_key(&[
            "factors",
            "generate-recovery-codes",
            "uma",
            "--password-stdin",
        ]),
        Some(&format!("{PASSWORD}\n")),
    )
    .ok()
    .json();
    assert_eq!(codes["codes"].as_array().map(Vec::len), Some(10), "{codes}");
}
