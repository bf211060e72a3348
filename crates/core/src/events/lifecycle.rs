//! The `user.lifecycle.*` events: an administrator locked, unlocked,
//! deactivated or reactivated an account, or set its required actions; or
//! a first second factor ended the sessions limited to enrolling one. The
//! user registry publishes them, each carrying the
//! `roster.v1.UserLifecycleStatus` after the change; every process drops
//! its cached credentials of the user on them (see `auth`), the sessions
//! service ends the sessions of a deactivated user (and those a first
//! factor ended), and the notifications service tells the user of a lock
//! or a deactivation. The names live here once, so publisher and consumers
//! cannot drift apart.
//!
//! `user.lock` is another event: the lock after too many wrong passwords.

/// An administrator locked the account (`UserLifecycle.LockUser`).
pub const LOCK: &str = "user.lifecycle.lock";
/// An administrator lifted the locks (`UserLifecycle.UnlockUser`).
pub const UNLOCK: &str = "user.lifecycle.unlock";
/// An administrator deactivated the account (`UserLifecycle.DeactivateUser`).
pub const DEACTIVATE: &str = "user.lifecycle.deactivate";
/// An administrator reactivated the account (`UserLifecycle.ReactivateUser`).
pub const REACTIVATE: &str = "user.lifecycle.reactivate";
/// An administrator replaced the account's pending required actions
/// (`UserLifecycle.SetRequiredActions`).
pub const SET_REQUIRED_ACTIONS: &str = "user.lifecycle.set_required_actions";
/// The registry ended every session the user had made until then: its
/// first second factor was added while the second-factor policy or a
/// stored ENROL_SECOND_FACTOR limited those sessions to enrolling one.
/// `sessions_ended_at` in the status says when.
pub const END_SESSIONS: &str = "user.lifecycle.end_sessions";
/// Every lifecycle event, as a subscription pattern.
pub const ALL: &str = "user.lifecycle.>";
