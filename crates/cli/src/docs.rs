//! The command reference in Markdown, made from the clap definitions
//! themselves, so `docs/cli.md` cannot drift from the binary (a test
//! compares them).

use std::fmt::Write as _;

use clap::Command;

const INTRO: &str = include_str!("docs_intro.md");

/// `docs/cli.md`: the introduction, then every command.
pub fn markdown(root: &Command) -> String {
    let mut out = String::from(INTRO);
    let mut root = root.clone();
    root.build();
    out.push_str("\n## Global options\n\nEvery command takes these.\n\n");
    for arg in root.get_arguments().filter(|a| a.is_global_set()) {
        write_arg(&mut out, arg);
    }
    out.push_str("\n## Commands\n");
    write_command(&mut out, &root, "roster");
    out
}

fn write_command(out: &mut String, command: &Command, path: &str) {
    if command.is_hide_set() {
        return;
    }
    let is_root = path == "roster";
    if !is_root {
        let _ = write!(out, "\n### `{path}`\n\n");
        if let Some(about) = command.get_long_about().or(command.get_about()) {
            let _ = writeln!(out, "{about}\n");
        }
        let usage = command.clone().render_usage().to_string();
        let usage = usage.trim_start_matches("Usage: ");
        let _ = writeln!(out, "```\n{usage}\n```");
        let args: Vec<_> = command
            .get_arguments()
            .filter(|a| !a.is_hide_set() && !a.is_global_set())
            .filter(|a| !matches!(a.get_id().as_str(), "help" | "version"))
            .collect();
        if !args.is_empty() {
            out.push('\n');
            for arg in args {
                write_arg(out, arg);
            }
        }
        if let Some(after) = command.get_after_help() {
            let _ = write!(out, "\n```\n{}\n```\n", after.to_string().trim_end());
        }
    }
    for sub in command.get_subcommands() {
        if sub.get_name() == "help" {
            continue;
        }
        write_command(out, sub, &format!("{path} {}", sub.get_name()));
    }
}

/// One option or argument as a list item: its name, help, default and
/// environment variable.
fn write_arg(out: &mut String, arg: &clap::Arg) {
    let name = match (arg.get_long(), arg.get_short()) {
        (Some(long), Some(short)) => format!("-{short}, --{long}"),
        (Some(long), None) => format!("--{long}"),
        (None, _) => format!(
            "<{}>",
            arg.get_value_names()
                .and_then(|n| n.first())
                .map(|n| n.to_string())
                .unwrap_or_else(|| arg.get_id().to_string().to_uppercase())
        ),
    };
    let help = arg
        .get_help()
        .map(|h| h.to_string().replace('\n', " "))
        .unwrap_or_default();
    let defaults = arg.get_default_values();
    let default = if !arg.get_action().takes_values() || defaults.iter().all(|d| d.is_empty()) {
        String::new()
    } else {
        let values: Vec<_> = defaults.iter().map(|d| d.to_string_lossy()).collect();
        format!(" (default: `{}`)", values.join(","))
    };
    let values: Vec<String> = arg
        .get_possible_values()
        .iter()
        .filter(|v| !v.is_hide_set())
        .map(|v| format!("`{}`", v.get_name()))
        .collect();
    let values = if values.is_empty() || values.len() > 8 {
        String::new()
    } else {
        format!(" (one of {})", values.join(", "))
    };
    let env = arg
        .get_env()
        .map(|e| format!(" (env: `{}`)", e.to_string_lossy()))
        .unwrap_or_default();
    let _ = writeln!(out, "- `{name}`: {help}{values}{default}{env}");
}
