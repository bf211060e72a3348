//! The reference in docs/cli.md is what the binary says, and completion
//! scripts come out for every supported shell.

use crate::support::run;

fn roster(args: &[&str]) -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_roster"));
    command.args(args).env_remove("ROSTER_ADDR");
    command
}

#[test]
fn docs_cli_md_is_what_the_binary_generates() {
    let generated = run(&mut roster(&["docs"]), None).ok().stdout;
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/cli.md");
    let written = std::fs::read_to_string(path).unwrap_or_default();
    if generated != written {
        panic!(
            "docs/cli.md is out of date; regenerate it with\n  cargo run -p roster-cli -- docs > docs/cli.md"
        );
    }
    // Every public noun is documented with an example.
    for heading in [
        "### `roster users create`",
        "### `roster users import`",
        "### `roster api-keys create`",
        "### `roster notifications watch`",
        "### `roster invitations send`",
        "### `roster context add`",
        "### `roster completion`",
    ] {
        assert!(generated.contains(heading), "{heading} is missing");
    }
}

#[test]
fn completion_scripts_cover_every_shell() {
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef roster"),
        ("fish", "complete -c roster"),
    ] {
        let script = run(&mut roster(&["completion", shell]), None).ok().stdout;
        assert!(script.contains(marker), "{shell}: {script:.200}");
        assert!(script.contains("api-keys"), "{shell} completes the nouns");
    }
}

#[test]
fn every_command_has_an_example_in_its_help() {
    let help = run(&mut roster(&["users", "import", "--help"]), None)
        .ok()
        .stdout;
    assert!(help.contains("roster users import people.csv"), "{help}");
    let top = run(&mut roster(&["--help"]), None).ok().stdout;
    assert!(top.contains("Exit codes:"), "{top}");
}
