//! Bulk work: `users import` (CSV or JSON lines), `users export` (every
//! user, page by page, as JSON lines) and `invitations send --file`. Items
//! are sent concurrently, with a progress bar on stderr, and end in a
//! summary of what succeeded and what failed (exit code 8 if anything did).

use std::path::{Path, PathBuf};

use clap::Args;
use futures::StreamExt as _;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use roster_proto::v1::{CreateUserRequest, ListUsersRequest, SendInvitationRequest, User};
use serde_json::{Value, json};

use super::{App, parse_state, user_ids};
use crate::error::{CliError, Result};
use crate::json::{from_json, read_input, to_json};
use crate::output::{Format, Kind, View, col};

pub const IMPORT_HELP: &str = "\
A CSV file has a header line naming its columns: user_id (required), email,
name, description, admin (true/false), state (approved, requested, …),
password and require_password_update. A JSON-lines file has one User per
line in proto3 JSON, as `roster users export` writes them (with a
\"password\" field). `-` reads standard input as JSON lines.

Example:
  roster users import people.csv --concurrency 16
  roster users import people.csv --dry-run
  roster users export | roster users import - --no-progress";

pub const SEND_HELP: &str = "\
With addresses as arguments, one request invites them all or none (at most
100). With --file, each address (one a line; `#` starts a comment) is
invited on its own, concurrently, and a summary says which failed.

Example:
  roster invitations send carol@example.com dan@example.com
  roster invitations send --file new-hires.txt --concurrency 4";

/// The options every bulk command shares.
#[derive(Debug, Clone, Args)]
pub struct BulkOptions {
    /// Check the input and say what would be done, without doing it.
    #[arg(long)]
    pub dry_run: bool,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub concurrency: u16,
    /// No progress bar (there is none either when stderr is not a terminal).
    #[arg(long)]
    pub no_progress: bool,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// FILE.csv, FILE.jsonl, or `-` for JSON lines on standard input.
    pub file: PathBuf,
    #[command(flatten)]
    pub bulk: BulkOptions,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Users fetched per request.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub page_size: u32,
    /// Export soft-deleted users instead.
    #[arg(long)]
    pub deleted: bool,
}

#[derive(Debug, Args)]
pub struct SendArgs {
    /// Addresses to invite.
    pub emails: Vec<String>,
    /// A file of addresses, one a line, each invited on its own.
    #[arg(long, conflicts_with = "emails")]
    pub file: Option<PathBuf>,
    #[command(flatten)]
    pub bulk: BulkOptions,
}

/// One item of a bulk command: where it came from and what it is called.
struct Item<T> {
    line: usize,
    name: String,
    request: T,
}

/// The columns a CSV import understands.
const CSV_COLUMNS: [&str; 8] = [
    "user_id",
    "email",
    "name",
    "description",
    "admin",
    "state",
    "password",
    "require_password_update",
];

fn parse_bool(text: &str, column: &str, line: usize) -> Result<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "" | "false" | "no" | "0" => Ok(false),
        "true" | "yes" | "1" => Ok(true),
        other => Err(CliError::invalid(format!(
            "line {line}: column `{column}`: `{other}` is not true or false"
        ))),
    }
}

/// The users of a CSV file.
fn read_csv(path: &Path) -> Result<Vec<Item<CreateUserRequest>>> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_path(path)
        .map_err(|e| CliError::invalid(format!("{}: {e}", path.display())))?;
    let headers = reader
        .headers()
        .map_err(|e| CliError::invalid(format!("{}: {e}", path.display())))?
        .clone();
    for header in &headers {
        if !CSV_COLUMNS.contains(&header) {
            return Err(CliError::invalid(format!(
                "{}: unknown column `{header}` (known: {})",
                path.display(),
                CSV_COLUMNS.join(", ")
            )));
        }
    }
    if !headers.iter().any(|h| h == "user_id") {
        return Err(CliError::invalid(format!(
            "{}: the header has no `user_id` column",
            path.display()
        )));
    }
    let mut items = Vec::new();
    for (index, record) in reader.records().enumerate() {
        let line = index + 2;
        let record = record.map_err(|e| CliError::invalid(format!("{}: {e}", path.display())))?;
        let mut user = User::default();
        for (header, value) in headers.iter().zip(record.iter()) {
            match header {
                "user_id" => user.ids = user_ids(value),
                "email" => user.primary_email_address = value.to_string(),
                "name" => user.name = value.to_string(),
                "description" => user.description = value.to_string(),
                "admin" => user.admin = parse_bool(value, header, line)?,
                "state" if !value.is_empty() => {
                    user.state = parse_state(value).map_err(|e| {
                        CliError::invalid(format!("line {line}: column `state`: {e}"))
                    })? as i32;
                }
                "password" => user.password = value.to_string(),
                "require_password_update" => {
                    user.require_password_update = parse_bool(value, header, line)?;
                }
                _ => {}
            }
        }
        items.push(user_item(line, user)?);
    }
    Ok(items)
}

/// The users of a JSON-lines file (one User a line).
fn read_jsonl(text: &str, source: &str) -> Result<Vec<Item<CreateUserRequest>>> {
    let mut items = Vec::new();
    for (index, text) in text.lines().enumerate() {
        let line = index + 1;
        if text.trim().is_empty() {
            continue;
        }
        let user: User = from_json(text, &format!("{source}: line {line}"))?;
        items.push(user_item(line, user)?);
    }
    Ok(items)
}

fn user_item(line: usize, mut user: User) -> Result<Item<CreateUserRequest>> {
    let name = user
        .ids
        .as_ref()
        .map(|i| i.user_id.clone())
        .unwrap_or_default();
    if name.is_empty() {
        return Err(CliError::invalid(format!(
            "line {line}: `user_id` is empty"
        )));
    }
    // What the server sets itself is not imported.
    user.created_at = None;
    user.updated_at = None;
    user.deleted_at = None;
    Ok(Item {
        line,
        name,
        request: CreateUserRequest {
            user: Some(user),
            invitation_token: String::new(),
        },
    })
}

pub async fn import_users(app: &App, args: ImportArgs) -> Result<()> {
    let path = args.file.as_path();
    let items = if path == Path::new("-") {
        read_jsonl(&read_input("-")?, "standard input")?
    } else if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"))
    {
        read_csv(path)?
    } else {
        let source = path.display().to_string();
        read_jsonl(&read_input(&source)?, &source)?
    };
    if args.bulk.dry_run {
        return dry_run(app, "user", "created", &items);
    }
    let client = app.conn.users().await?;
    run_bulk(app, &args.bulk, "user", "created", items, move |request| {
        let mut client = client.clone();
        async move { client.create(request).await.map(|_| ()) }
    })
    .await
}

pub async fn send_invitations(app: &App, args: SendArgs) -> Result<()> {
    let path = args.file.as_deref().unwrap_or(Path::new("-"));
    let text = read_input(&path.display().to_string())?;
    let mut items = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let email = line.split('#').next().unwrap_or_default().trim();
        if email.is_empty() || (index == 0 && email.eq_ignore_ascii_case("email")) {
            continue;
        }
        items.push(Item {
            line: index + 1,
            name: email.to_string(),
            request: SendInvitationRequest {
                email: email.to_string(),
                emails: Vec::new(),
            },
        });
    }
    if args.bulk.dry_run {
        return dry_run(app, "invitation", "sent", &items);
    }
    let client = app.conn.invitations().await?;
    run_bulk(
        app,
        &args.bulk,
        "invitation",
        "sent",
        items,
        move |request| {
            let mut client = client.clone();
            async move { client.send(request).await.map(|_| ()) }
        },
    )
    .await
}

const FAILURES_VIEW: View = View {
    rows: Some("failed"),
    columns: &[
        col("LINE", "line", Kind::Text),
        col("ITEM", "item", Kind::Text),
        col("ERROR", "error", Kind::Text),
    ],
};

/// What a dry run prints: the items that were read, and nothing sent.
fn dry_run<T>(app: &App, noun: &str, verb: &str, items: &[Item<T>]) -> Result<()> {
    let total = items.len();
    let summary = json!({
        "dryRun": true,
        "total": total,
        "items": items.iter().map(|i| json!({"line": i.line, "item": i.name})).collect::<Vec<_>>(),
    });
    match app.out.format {
        Format::Json | Format::Yaml => app.out.value(&summary, &FAILURES_VIEW),
        Format::Table | Format::Wide => {
            println!(
                "Would have {verb} {}; nothing was sent.",
                super::plural(total, noun, &format!("{noun}s"))
            );
            Ok(())
        }
    }
}

/// Sends every item through `call`, `concurrency` at a time, and prints
/// the summary.
async fn run_bulk<T, F, Fut>(
    app: &App,
    options: &BulkOptions,
    noun: &str,
    verb: &str,
    items: Vec<Item<T>>,
    call: F,
) -> Result<()>
where
    F: Fn(T) -> Fut,
    Fut: std::future::Future<Output = Result<(), tonic::Status>>,
{
    let total = items.len();
    let bar = if options.no_progress {
        ProgressBar::hidden()
    } else {
        ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::stderr())
    };
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} {per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut results = futures::stream::iter(items.into_iter().map(|item| {
        let bar = bar.clone();
        let future = call(item.request);
        async move {
            let result = future.await;
            bar.inc(1);
            (item.line, item.name, result)
        }
    }))
    .buffer_unordered(usize::from(options.concurrency))
    .collect::<Vec<_>>()
    .await;
    bar.finish_and_clear();
    results.sort_by_key(|(line, _, _)| *line);
    let failed: Vec<Value> = results
        .iter()
        .filter_map(|(line, name, result)| {
            result.as_ref().err().map(|status| {
                json!({
                    "line": line,
                    "item": name,
                    "code": crate::error::code_name(status.code()),
                    "error": CliError::Status(status.clone()).to_string(),
                })
            })
        })
        .collect();
    let succeeded = total - failed.len();
    let summary = json!({"total": total, "succeeded": succeeded, "failed": failed});
    match app.out.format {
        Format::Json | Format::Yaml => app.out.value(&summary, &FAILURES_VIEW)?,
        Format::Table | Format::Wide => {
            println!(
                "{} {verb}, {} failed.",
                super::plural(succeeded, noun, &format!("{noun}s")),
                failed.len()
            );
            if !failed.is_empty() {
                app.out.value(&summary, &FAILURES_VIEW)?;
            }
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(CliError::Partial {
            failed: failed.len(),
            total,
        })
    }
}

pub async fn export_users(app: &App, args: ExportArgs) -> Result<()> {
    let mut users = app.conn.users().await?;
    // Page by token: each page starts after the last user of the one
    // before, so a deep page costs what the first does, and users added
    // meanwhile neither shift nor repeat rows.
    let mut page_token = String::new();
    loop {
        let response = users
            .list(ListUsersRequest {
                field_mask: None,
                order: "user_id".to_string(),
                limit: args.page_size,
                deleted: args.deleted,
                page_token,
                ..Default::default()
            })
            .await?;
        let next = response
            .metadata()
            .get(crate::output::NEXT_PAGE_TOKEN)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let mut out = String::new();
        for user in &response.get_ref().users {
            out.push_str(&serde_json::to_string(&to_json(user)?).map_err(anyhow::Error::from)?);
            out.push('\n');
        }
        if !crate::output::write_stdout(&out)? || next.is_empty() {
            return Ok(());
        }
        page_token = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_csv_file_becomes_create_requests_and_bad_cells_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("people.csv");
        std::fs::write(
            &path,
            "user_id,email,name,admin,state,password\nalice,alice@example.com,Alice,true,approved,pw-1\nbob,bob@example.com,,,,pw-2\n",
        )
        .unwrap();
        let items = read_csv(&path).unwrap();
        assert_eq!(items.len(), 2);
        let alice = items[0].request.user.as_ref().unwrap();
        assert_eq!(items[0].line, 2);
        assert_eq!(alice.ids.as_ref().unwrap().user_id, "alice");
        assert!(alice.admin);
        assert_eq!(alice.state, roster_proto::v1::State::Approved as i32);
        assert_eq!(alice.password, "pw-1");

        std::fs::write(&path, "user_id,mail\nalice,a@example.com\n").unwrap();
        let err = read_csv(&path).err().unwrap();
        assert!(err.to_string().contains("unknown column `mail`"), "{err}");

        std::fs::write(&path, "user_id,admin\nalice,maybe\n").unwrap();
        let err = read_csv(&path).err().unwrap();
        assert!(err.to_string().contains("line 2: column `admin`"), "{err}");
    }

    #[test]
    fn json_lines_are_users_in_proto3_json() {
        let items = read_jsonl(
            "{\"ids\":{\"userId\":\"carol\"},\"primaryEmailAddress\":\"c@example.com\",\"createdAt\":\"2026-01-01T00:00:00Z\"}\n\n",
            "in",
        )
        .unwrap();
        assert_eq!(items.len(), 1);
        let user = items[0].request.user.as_ref().unwrap();
        assert_eq!(user.primary_email_address, "c@example.com");
        assert!(user.created_at.is_none());
        let err = read_jsonl("{\"ids\":{\"userId\":\"\"}}", "in")
            .err()
            .unwrap();
        assert!(err.to_string().contains("`user_id` is empty"), "{err}");
    }
}
