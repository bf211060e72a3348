//! The names of the events the sessions service publishes.

pub const LOGIN: &str = "user.login";
pub const LOGIN_FAILED: &str = "user.login_failed";
pub const LOGOUT: &str = "user.logout";
pub const SESSION_DELETE: &str = "user.session.delete";
