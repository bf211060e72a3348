//! The command reference in Markdown, made from the clap definitions
//! themselves, so `docs/cli.md` cannot drift from the binary (a test
//! compares them).

use std::fmt::Write as _;

use clap::Command;

const INTRO: &str = include_str!("docs_intro.md");

/// `docs/cli.md`: the introduction, then every command.
pub fn markdown(root: &Command) -> String {
    let mut out = String::from(INTRO);
    out.push_str("\n## Commands\n");
    let mut root = root.clone();
    root.build();
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
        let _ = writeln!(
            out,
            "```\n{}\n```",
            usage.replacen(command.get_name(), path, 1)
        );
        let args: Vec<_> = command
            .get_arguments()
            .filter(|a| !a.is_hide_set() && !a.is_global_set())
            .filter(|a| !matches!(a.get_id().as_str(), "help" | "version"))
            .collect();
        if !args.is_empty() {
            out.push('\n');
            for arg in args {
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
                let default = arg.get_default_values();
                let default = if default.is_empty() || default.iter().all(|d| d.is_empty()) {
                    String::new()
                } else {
                    format!(
                        " (default: `{}`)",
                        default
                            .iter()
                            .map(|d| d.to_string_lossy())
                            .collect::<Vec<_>>()
                            .join(",")
                    )
                };
                let _ = writeln!(out, "- `{name}`: {help}{default}");
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
