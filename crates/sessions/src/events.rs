//! The names of the events the sessions service publishes (they live in
//! `roster_core::events::names`, where their consumers read them too).

pub use roster_core::events::names::{LOGIN, LOGIN_FAILED, LOGOUT, SESSION_DELETE};
