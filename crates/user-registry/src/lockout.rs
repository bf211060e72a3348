//! Password guesses and the locks they lead to.
//!
//! The user registry owns passwords, so it counts the wrong ones: every
//! path that checks a password (login through `UserCredentials`,
//! `UpdatePassword`'s old password, the proof an email change needs)
//! spends the same budget, and none can check a password without counting.
//!
//! Two sliding windows per account:
//! - per client address (an IPv4 address or an IPv6 /64): a few wrong
//!   passwords lock that address out of the account, and nobody else;
//! - for the whole account: many wrong passwords from many addresses lock
//!   it for everyone, until the lock passes, a new password is set (through
//!   a mailed temporary password) or the user logs in with a login token.
//!
//! While locked, the right password is answered exactly as a wrong one,
//! after the same hashing work: a guesser cannot tell a lock from a miss,
//! let alone a hit.

use chrono::{DateTime, Duration, Utc};
use serde::Deserialize;

/// The password counter of a whole account (as opposed to one client's).
pub const ACCOUNT: &str = "*";
/// The second-factor counter of a whole account.
pub const FACTOR_ACCOUNT: &str = "factor:*";
/// What every second-factor counter starts with (and no password one).
const FACTOR_PREFIX: &str = "factor:";

/// What a guess was at. Each secret counts in windows of its own, with
/// the same limits: a login token proves the mailbox, so it lifts a lock
/// of guessed passwords (whoever guessed the password into a lock cannot
/// keep its owner out), but it proves nothing about an authenticator app
/// or the recovery codes, so it must not give whoever reads the mailbox
/// new code guesses. Nor does a new password, which the mailbox can set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Secret {
    Password,
    SecondFactor,
}

impl Secret {
    /// The counters a guess at this secret from `client_key` (a
    /// `CallContext::client_key`) counts in.
    pub fn counters(self, client_key: &str) -> Counters {
        let client = if client_key.is_empty() {
            "unknown"
        } else {
            client_key
        };
        match self {
            Secret::Password => Counters {
                account: ACCOUNT,
                client: format!("client:{client}"),
            },
            Secret::SecondFactor => Counters {
                account: FACTOR_ACCOUNT,
                client: format!("{FACTOR_PREFIX}client:{client}"),
            },
        }
    }

    /// A SQL `LIKE` pattern for the counters of second factors; those of
    /// passwords are the rest.
    pub fn factor_pattern() -> String {
        format!("{FACTOR_PREFIX}%")
    }
}

/// The two counters one guess counts in: the whole account's and the
/// client's, both of one secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counters {
    pub account: &'static str,
    pub client: String,
}

/// Which counters to forget.
#[derive(Debug, Clone, Copy)]
pub enum Forget<'a> {
    /// A right guess: its client's counter and its account's.
    Guess(&'a Counters),
    /// Every counter of one secret (a new password, a login token).
    Secret(Secret),
    /// Every counter (an admin's unlock).
    All,
}

/// Settings (`[user_registry.lockout]`).
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LockoutConfig {
    /// Wrong passwords for one account from one client address within
    /// `window_secs` that lock this address out of the account for
    /// `lock_secs`. 0: never.
    pub max_failures_per_client: u32,
    /// Wrong passwords for one account from all addresses within
    /// `window_secs` that lock the account for everyone for `lock_secs`.
    /// 0: never.
    pub max_failures: u32,
    /// The sliding window in which failures count, in seconds.
    pub window_secs: u64,
    /// How long a lock lasts, in seconds.
    pub lock_secs: u64,
}

impl Default for LockoutConfig {
    fn default() -> Self {
        Self {
            max_failures_per_client: 5,
            max_failures: 20,
            window_secs: 15 * 60,
            lock_secs: 15 * 60,
        }
    }
}

impl LockoutConfig {
    /// The counting rules at `now`.
    pub fn policy(&self, now: DateTime<Utc>) -> FailurePolicy {
        let secs = |s: u64| Duration::seconds(i64::try_from(s).unwrap_or(i64::MAX));
        FailurePolicy {
            now,
            window_start: now - secs(self.window_secs),
            lock_until: now + secs(self.lock_secs),
            max_failures: self.max_failures,
            max_failures_per_client: self.max_failures_per_client,
        }
    }
}

/// The rules for counting one failure.
#[derive(Debug, Clone, Copy)]
pub struct FailurePolicy {
    pub now: DateTime<Utc>,
    /// Failures earlier than this no longer count.
    pub window_start: DateTime<Utc>,
    /// The end of a lock that starts now.
    pub lock_until: DateTime<Utc>,
    pub max_failures: u32,
    pub max_failures_per_client: u32,
}

/// One counter: the recent failures of an account (or of an account from
/// one client) and the lock they led to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FailureWindow {
    /// When the failures within the window happened, in microseconds since
    /// the epoch, oldest first.
    pub recent: Vec<i64>,
    pub locked_until: Option<DateTime<Utc>>,
}

impl FailureWindow {
    /// From its stored form (comma-separated microseconds).
    pub fn parse(recent: &str, locked_until: Option<DateTime<Utc>>) -> Self {
        Self {
            recent: recent.split(',').filter_map(|m| m.parse().ok()).collect(),
            locked_until,
        }
    }

    /// Its stored form.
    pub fn encode(&self) -> String {
        self.recent
            .iter()
            .map(i64::to_string)
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn is_locked(&self, now: DateTime<Utc>) -> bool {
        self.locked_until.is_some_and(|until| until > now)
    }

    /// Counts one failure under `policy` with `max` allowed (0: never
    /// locks); whether this failure locked it. While locked, failures
    /// change nothing, so a guesser cannot extend a lock for ever.
    pub fn count(&mut self, policy: &FailurePolicy, max: u32) -> bool {
        let start = policy.window_start.timestamp_micros();
        self.recent.retain(|at| *at >= start);
        if self.is_locked(policy.now) || max == 0 {
            return false;
        }
        self.recent.push(policy.now.timestamp_micros());
        let max = usize::try_from(max).unwrap_or(usize::MAX);
        if self.recent.len() >= max {
            self.locked_until = Some(policy.lock_until);
            self.recent.clear();
            return true;
        }
        false
    }

    /// The number of failures within the window.
    pub fn failures(&self) -> u32 {
        u32::try_from(self.recent.len()).unwrap_or(u32::MAX)
    }
}

/// An account's counters after one more failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failures {
    /// Failures of the whole account within the window.
    pub failures: u32,
    /// Failures of the account from this client within the window.
    pub client_failures: u32,
    /// Until when this client may not log in to the account, if it may not.
    pub locked_until: Option<DateTime<Utc>>,
    /// This failure locked the whole account.
    pub newly_locked: bool,
    /// This failure locked the client out of the account.
    pub client_newly_locked: bool,
}

/// An account's counters as one client sees them before a guess.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GuessState {
    /// Failures are on record for the account or this client (a right
    /// password then clears them).
    pub counted: bool,
    /// The account or this client is locked until then.
    pub locked_until: Option<DateTime<Utc>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(now: DateTime<Utc>) -> FailurePolicy {
        LockoutConfig {
            max_failures_per_client: 3,
            max_failures: 5,
            window_secs: 60,
            lock_secs: 300,
        }
        .policy(now)
    }

    #[test]
    fn the_limit_locks_once_and_failures_while_locked_change_nothing() {
        let now = Utc::now();
        let mut w = FailureWindow::default();
        assert!(!w.count(&policy(now), 3));
        assert!(!w.count(&policy(now), 3));
        assert!(w.count(&policy(now), 3));
        assert!(w.is_locked(now));
        let locked = w.clone();
        assert!(!w.count(&policy(now + Duration::seconds(10)), 3));
        assert_eq!(w, locked);
        assert!(!w.is_locked(now + Duration::seconds(301)));
    }

    #[test]
    fn failures_older_than_the_window_do_not_add_up() {
        let now = Utc::now();
        let mut w = FailureWindow::default();
        w.count(&policy(now), 3);
        w.count(&policy(now), 3);
        assert!(!w.count(&policy(now + Duration::seconds(61)), 3));
        assert_eq!(w.failures(), 1);
    }

    #[test]
    fn zero_never_locks_and_the_stored_form_round_trips() {
        let now = Utc::now();
        let mut w = FailureWindow::default();
        for _ in 0..100 {
            assert!(!w.count(&policy(now), 0));
        }
        w.recent = vec![1, 2, 3];
        assert_eq!(
            FailureWindow::parse(&w.encode(), None).recent,
            vec![1, 2, 3]
        );
        assert_eq!(FailureWindow::parse("", None).recent, Vec::<i64>::new());
    }
}
