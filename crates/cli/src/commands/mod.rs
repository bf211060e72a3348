//! One module per noun of the command line; each turns its arguments into
//! requests of the generated client, calls, and prints the answer.

pub mod api_keys;
pub mod auth;
pub mod bulk;
pub mod context;
pub mod email;
pub mod external_users;
pub mod factors;
pub mod invitations;
pub mod metadata;
pub mod notifications;
pub mod sessions;
pub mod users;

use std::io::{BufRead as _, IsTerminal as _};

use roster_proto::v1::{Right, State, UserIdentifiers};

use crate::client::Connector;
use crate::config::Store;
use crate::error::{CliError, Result};
use crate::output::Output;

/// What every command runs with.
pub struct App {
    pub conn: Connector,
    pub out: Output,
    pub store: Store,
    /// The context in use, under which `login` stores its session.
    pub context: String,
}

/// `--limit`, `--page` and `--order` of the list commands.
#[derive(Debug, Clone, clap::Args)]
pub struct Paging {
    /// Most items per page (the server's default when 0).
    #[arg(long, default_value_t = 0)]
    pub limit: u32,
    /// Page to show, from 1.
    #[arg(long, default_value_t = 0)]
    pub page: u32,
    /// Field to order by; a leading `-` orders descending (`-created_at`).
    #[arg(long, default_value = "")]
    pub order: String,
}

pub fn user_ids(user_id: &str) -> Option<UserIdentifiers> {
    Some(UserIdentifiers {
        user_id: user_id.to_string(),
        email: String::new(),
    })
}

/// A right by its name: `RIGHT_USER_INFO`, `USER_INFO` or `user_info`.
pub fn parse_right(text: &str) -> Result<Right, String> {
    let upper = text.trim().to_ascii_uppercase();
    let name = if upper.starts_with("RIGHT_") {
        upper
    } else {
        format!("RIGHT_{upper}")
    };
    Right::from_str_name(&name)
        .filter(|r| *r != Right::Invalid)
        .ok_or_else(|| format!("unknown right `{text}` (for example RIGHT_USER_INFO, RIGHT_ALL)"))
}

/// A state by its name: `STATE_APPROVED`, `APPROVED` or `approved`.
pub fn parse_state(text: &str) -> Result<State, String> {
    let upper = text.trim().to_ascii_uppercase();
    let name = if upper.starts_with("STATE_") {
        upper
    } else {
        format!("STATE_{upper}")
    };
    State::from_str_name(&name).ok_or_else(|| {
        format!("unknown state `{text}` (requested, approved, rejected, flagged, suspended)")
    })
}

/// A user type by its name: `machine`, `human` or `USER_TYPE_MACHINE`.
pub fn parse_user_type(text: &str) -> Result<roster_proto::v1::UserType, String> {
    let upper = text.trim().to_ascii_uppercase();
    let name = if upper.starts_with("USER_TYPE_") {
        upper
    } else {
        format!("USER_TYPE_{upper}")
    };
    roster_proto::v1::UserType::from_str_name(&name)
        .ok_or_else(|| format!("unknown user type `{text}` (human, machine)"))
}

/// `key=value`.
pub fn parse_pair(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("`{text}` is not key=value"))
}

/// An RFC 3339 time (`2027-01-01T00:00:00Z`) or a duration from now
/// (`90d`, `12h`, `30m`, `45s`).
pub fn parse_time(text: &str) -> Result<prost_types::Timestamp, String> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(prost_types::Timestamp {
            seconds: t.timestamp(),
            nanos: t.timestamp_subsec_nanos() as i32,
        });
    }
    let invalid =
        || format!("`{text}` is neither an RFC 3339 time nor a duration like 90d, 12h, 30m");
    let (number, seconds_per_unit) = [("s", 1), ("m", 60), ("h", 3600), ("d", 86_400)]
        .into_iter()
        .find_map(|(suffix, seconds)| Some((text.strip_suffix(suffix)?, seconds)))
        .ok_or_else(invalid)?;
    number
        .parse::<i64>()
        .ok()
        .filter(|n| *n > 0)
        .and_then(|n| n.checked_mul(seconds_per_unit))
        .and_then(|seconds| chrono::Utc::now().timestamp().checked_add(seconds))
        .map(|seconds| prost_types::Timestamp { seconds, nanos: 0 })
        .ok_or_else(invalid)
}

/// A comma-separated field mask (`name,state`), or none.
pub fn field_mask(paths: &[String]) -> Option<prost_types::FieldMask> {
    (!paths.is_empty()).then(|| prost_types::FieldMask {
        paths: paths.to_vec(),
    })
}

/// A secret from the first line of standard input (`from_stdin`), else
/// asked on the terminal without echo.
pub fn read_secret(prompt: &str, from_stdin: bool, flag: &str) -> Result<String> {
    let secret = if from_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| CliError::invalid(format!("read standard input: {e}")))?;
        line.trim_end_matches(['\r', '\n']).to_string()
    } else if std::io::stdin().is_terminal() {
        rpassword::prompt_password(prompt)
            .map_err(|e| CliError::invalid(format!("read the terminal: {e}")))?
    } else {
        return Err(CliError::invalid(format!(
            "no terminal to ask on: pass {flag} and write it to standard input"
        )));
    };
    if secret.is_empty() {
        return Err(CliError::invalid("an empty secret was given"));
    }
    Ok(secret)
}

/// The sentence of a confirmation or summary, in one place.
pub fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rights_and_states_are_read_in_any_spelling() {
        assert_eq!(parse_right("RIGHT_USER_INFO"), Ok(Right::UserInfo));
        assert_eq!(parse_right("user_info"), Ok(Right::UserInfo));
        assert!(parse_right("invalid").is_err());
        assert!(
            parse_right("RIGHT_NOPE")
                .unwrap_err()
                .contains("RIGHT_NOPE")
        );
        assert_eq!(parse_state("approved"), Ok(State::Approved));
        assert_eq!(parse_state("STATE_SUSPENDED"), Ok(State::Suspended));
    }

    #[test]
    fn times_are_rfc3339_or_a_duration_from_now() {
        assert_eq!(
            parse_time("2027-01-01T00:00:00Z").unwrap().seconds,
            1_798_761_600
        );
        let in_a_day = parse_time("1d").unwrap().seconds - chrono::Utc::now().timestamp();
        assert!((86_390..=86_400).contains(&in_a_day));
        assert!(parse_time("soon").is_err());
        assert!(parse_time("0d").is_err());
        // Bad input is an error naming it, never a panic.
        assert!(parse_time("5é").unwrap_err().contains("`5é`"));
        assert!(parse_time("").is_err());
        assert!(parse_time("9223372036854775807d").is_err());
    }
}
