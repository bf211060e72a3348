//! How answers are printed: a table on a terminal, JSON when stdout is a
//! pipe (so scripts can use `jq`), or what `-o json|yaml|table|wide` asks
//! for. Tables are drawn from the same JSON the other formats print, so
//! every format shows the same answer.

use std::io::{IsTerminal as _, Write as _};

use comfy_table::presets::NOTHING;
use comfy_table::{ContentArrangement, Table};
use prost::{Message, Name};
use serde_json::Value;

use crate::error::Result;
use crate::json::{to_full_json, to_json};

/// The response header naming where the next page starts.
pub const NEXT_PAGE_TOKEN: &str = "x-next-page-token";

/// The formats of `-o`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Columns for people (the default on a terminal).
    Table,
    /// A table with more columns.
    Wide,
    /// Canonical proto3 JSON (the default when stdout is not a terminal).
    Json,
    /// The same content as JSON, in YAML.
    Yaml,
}

/// How one column's cells are made from a JSON value.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Text,
    /// An RFC 3339 timestamp, shown as `2026-01-02 15:04:05 UTC`.
    Time,
    /// An enum name (or a list of them) with a prefix left out.
    Enum(&'static str),
    /// `yes` or `no`; absent is `no`.
    Bool,
    /// A number; absent is 0.
    Count,
}

/// A column: its header, the dotted JSON path of its value, and whether
/// only `-o wide` shows it.
#[derive(Debug, Clone, Copy)]
pub struct Column {
    pub header: &'static str,
    pub path: &'static str,
    pub kind: Kind,
    pub wide: bool,
}

pub const fn col(header: &'static str, path: &'static str, kind: Kind) -> Column {
    Column {
        header,
        path,
        kind,
        wide: false,
    }
}

pub const fn wide(header: &'static str, path: &'static str, kind: Kind) -> Column {
    Column {
        header,
        path,
        kind,
        wide: true,
    }
}

/// How an answer is laid out as a table: the repeated field holding the
/// rows (none: the answer is the one row), and the columns.
#[derive(Debug, Clone, Copy)]
pub struct View {
    pub rows: Option<&'static str>,
    pub columns: &'static [Column],
}

/// Where and how answers are printed.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    pub format: Format,
}

impl Output {
    /// `-o` when given; otherwise a table on a terminal and JSON elsewhere.
    pub fn new(format: Option<Format>) -> Output {
        let format = format.unwrap_or(if std::io::stdout().is_terminal() {
            Format::Table
        } else {
            Format::Json
        });
        Output { format }
    }

    pub fn is_table(&self) -> bool {
        matches!(self.format, Format::Table | Format::Wide)
    }

    /// Prints an answer.
    pub fn message<M: Message + Name>(&self, message: &M, view: &View) -> Result<()> {
        self.value(&self.json(message)?, view)
    }

    /// The JSON of `message` this format prints: canonical for JSON and
    /// YAML; with every field for tables, so defaults show by name.
    pub fn json<M: Message + Name>(&self, message: &M) -> Result<Value> {
        if self.is_table() {
            to_full_json(message)
        } else {
            to_json(message)
        }
    }

    /// Prints a list answer; on a table, says on stderr how many there
    /// are in all when the server sent the total (`x-total-count`).
    pub fn list<M: Message + Name>(&self, response: tonic::Response<M>, view: &View) -> Result<()> {
        let header = |name: &str| {
            response
                .metadata()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let total = header("x-total-count");
        let next = header(NEXT_PAGE_TOKEN);
        let mut value = self.json(response.get_ref())?;
        // Where the next page starts goes with the page in JSON and YAML
        // (so a script can follow it); a table says it on stderr.
        if !self.is_table()
            && let (Some(next), Some(object)) = (&next, value.as_object_mut())
        {
            object.insert("nextPageToken".into(), Value::String(next.clone()));
        }
        self.value(&value, view)?;
        if self.is_table() {
            let shown = view
                .rows
                .and_then(|field| value.get(field))
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            if let Some(total) = total {
                eprintln!("{shown} shown, {total} in all");
            }
            if let Some(next) = next {
                eprintln!("more: --page-token {next}");
            }
        }
        Ok(())
    }

    /// Prints a JSON value in the chosen format.
    pub fn value(&self, value: &Value, view: &View) -> Result<()> {
        let text = match self.format {
            Format::Json => {
                serde_json::to_string_pretty(value).map_err(anyhow::Error::from)? + "\n"
            }
            Format::Yaml => serde_norway::to_string(value).map_err(anyhow::Error::from)?,
            Format::Table => render_table(value, view, false),
            Format::Wide => render_table(value, view, true),
        };
        print(&text)
    }

    /// Prints one item of a stream (a watch): one compact JSON object per
    /// line, a YAML document each, or a table line each; false when the
    /// reader went away.
    pub fn stream_item(&self, value: &Value, view: &View, first: bool) -> Result<bool> {
        let text = match self.format {
            Format::Json => serde_json::to_string(value).map_err(anyhow::Error::from)? + "\n",
            Format::Yaml => format!(
                "---\n{}",
                serde_norway::to_string(value).map_err(anyhow::Error::from)?
            ),
            Format::Table | Format::Wide => {
                let wide = self.format == Format::Wide;
                let columns: Vec<&Column> =
                    view.columns.iter().filter(|c| wide || !c.wide).collect();
                let mut line = String::new();
                if first {
                    let headers: Vec<&str> = columns.iter().map(|c| c.header).collect();
                    line.push_str(&headers.join("\t"));
                    line.push('\n');
                }
                let cells: Vec<String> = columns.iter().map(|c| cell(value, c)).collect();
                line.push_str(&cells.join("\t"));
                line.push('\n');
                line
            }
        };
        write_stdout(&text)
    }

    /// Prints the outcome of a call that answers nothing: a sentence on a
    /// table, `{}` in JSON and YAML.
    pub fn done(&self, sentence: &str) -> Result<()> {
        print_done(self.format, sentence)
    }
}

fn print_done(format: Format, sentence: &str) -> Result<()> {
    match format {
        Format::Json | Format::Yaml => print("{}\n"),
        Format::Table | Format::Wide => print(&format!("{sentence}\n")),
    }
}

/// Writes `text` to stdout; a reader that went away is not an error.
pub fn print(text: &str) -> Result<()> {
    write_stdout(text).map(|_| ())
}

/// Writes `text` to stdout; false when the reader went away
/// (`roster users export | head`), so a stream can stop.
pub fn write_stdout(text: &str) -> Result<bool> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(anyhow::Error::from(e).into()),
    }
}

/// The table of `value` laid out by `view`.
pub fn render_table(value: &Value, view: &View, wide: bool) -> String {
    let columns: Vec<&Column> = view.columns.iter().filter(|c| wide || !c.wide).collect();
    let rows: Vec<&Value> = match view.rows {
        Some(field) => value
            .get(field)
            .and_then(Value::as_array)
            .map(|a| a.iter().collect())
            .unwrap_or_default(),
        None => vec![value],
    };
    if rows.is_empty() {
        return "No results.\n".to_string();
    }
    let mut table = Table::new();
    table
        .load_preset(NOTHING)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(columns.iter().map(|c| c.header));
    for row in rows {
        table.add_row(columns.iter().map(|c| cell(row, c)));
    }
    // The preset pads every cell with a space on both sides; a table
    // starting at the margin reads and greps better.
    let text = table.to_string();
    let mut out = String::new();
    for line in text.lines() {
        out.push_str(line.strip_prefix(' ').unwrap_or(line).trim_end());
        out.push('\n');
    }
    out
}

/// The value at `path` (dot-separated); an empty path is the value itself
/// (rows that are plain strings, such as recovery codes).
fn lookup<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
    if path.is_empty() {
        return Some(value);
    }
    path.split('.').try_fold(value, |v, key| v.get(key))
}

fn cell(row: &Value, column: &Column) -> String {
    let value = lookup(row, column.path);
    match column.kind {
        Kind::Text => match value {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(Value::Array(items)) => items.iter().map(plain).collect::<Vec<_>>().join(","),
            Some(other) => plain(other),
        },
        Kind::Time => value
            .and_then(Value::as_str)
            .map(human_time)
            .unwrap_or_default(),
        Kind::Enum(prefix) => match value {
            None | Some(Value::Null) => String::new(),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| strip(&plain(v), prefix))
                .collect::<Vec<_>>()
                .join(","),
            Some(v) => strip(&plain(v), prefix),
        },
        Kind::Bool => if value.and_then(Value::as_bool).unwrap_or(false) {
            "yes"
        } else {
            "no"
        }
        .to_string(),
        Kind::Count => value.map(plain).unwrap_or_else(|| "0".to_string()),
    }
}

fn plain(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn strip(name: &str, prefix: &str) -> String {
    name.strip_prefix(prefix).unwrap_or(name).to_string()
}

/// `2026-01-02T15:04:05.123Z` as `2026-01-02 15:04:05 UTC`.
pub fn human_time(rfc3339: &str) -> String {
    match chrono::DateTime::parse_from_rfc3339(rfc3339) {
        Ok(t) => t
            .with_timezone(&chrono::Utc)
            .format("%Y-%m-%d %H:%M:%S UTC")
            .to_string(),
        Err(_) => rfc3339.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const VIEW: View = View {
        rows: Some("users"),
        columns: &[
            col("ID", "ids.userId", Kind::Text),
            col("STATE", "state", Kind::Enum("STATE_")),
            col("ADMIN", "admin", Kind::Bool),
            wide("CREATED", "createdAt", Kind::Time),
        ],
    };

    #[test]
    fn a_table_shows_short_enum_names_and_wide_adds_columns() {
        let value = json!({"users": [
            {"ids": {"userId": "alice"}, "state": "STATE_APPROVED", "admin": true,
             "createdAt": "2026-01-02T15:04:05.5Z"},
            {"ids": {"userId": "bob"}, "state": "STATE_REQUESTED"},
        ]});
        assert_eq!(
            render_table(&value, &VIEW, false),
            "ID     STATE      ADMIN\nalice  APPROVED   yes\nbob    REQUESTED  no\n"
        );
        let wide = render_table(&value, &VIEW, true);
        assert!(wide.contains("2026-01-02 15:04:05 UTC"), "{wide}");
    }

    #[test]
    fn an_empty_list_says_so() {
        assert_eq!(render_table(&json!({}), &VIEW, false), "No results.\n");
    }
}
