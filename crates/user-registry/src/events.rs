//! The events this service publishes. Each carries a `UserEventData` (the
//! user without secrets) and the user's identifiers.

pub const USER_CREATE: &str = "user.create";
pub const USER_UPDATE: &str = "user.update";
pub const USER_UPDATE_INCORRECT_PASSWORD: &str = "user.update.incorrect_password";
pub const USER_DELETE: &str = "user.delete";
pub const USER_RESTORE: &str = "user.restore";
pub const USER_PURGE: &str = "user.purge";
pub const EXTERNAL_USER_CREATE: &str = "user.external.create";
pub const EXTERNAL_USER_DELETE: &str = "user.external.delete";
/// Too many wrong passwords locked the account for everyone for a while;
/// carries a `LoginFailureEventData`.
pub const USER_LOCK: &str = "user.lock";
