//! The names of the events the access service publishes.

pub const API_KEY_CREATE: &str = "user.api-key.create";
pub const API_KEY_UPDATE: &str = "user.api-key.update";
pub const API_KEY_DELETE: &str = "user.api-key.delete";
pub const LOGIN_TOKEN_CREATE: &str = "user.login-token.create";
pub const LOGIN_TOKEN_USE: &str = "user.login-token.use";
