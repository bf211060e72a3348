//! The names of the events that one service publishes and others act on.
//! They live here once, so a publisher and its consumers cannot drift
//! apart; each publishing crate re-exports its own from its `events`
//! module. (The `user.lifecycle.*` names are in [`super::lifecycle`].)

// The user registry. Each carries a `UserEventData` (the user without
// secrets) and the user's identifiers.

/// A user was created.
pub const USER_CREATE: &str = "user.create";
/// A user was changed; `UserEventData.changed_paths` says what.
pub const USER_UPDATE: &str = "user.update";
/// A password change was refused for a wrong old password.
pub const USER_UPDATE_INCORRECT_PASSWORD: &str = "user.update.incorrect_password";
/// A user was soft-deleted.
pub const USER_DELETE: &str = "user.delete";
/// A soft-deleted user was restored.
pub const USER_RESTORE: &str = "user.restore";
/// A user was deleted for good.
pub const USER_PURGE: &str = "user.purge";
/// An external identity was linked to a user.
pub const EXTERNAL_USER_CREATE: &str = "user.external.create";
/// An external identity link was removed.
pub const EXTERNAL_USER_DELETE: &str = "user.external.delete";
/// Too many wrong passwords locked the account for everyone for a while;
/// carries a `LoginFailureEventData`.
pub const USER_LOCK: &str = "user.lock";

// The access service.

/// An API key was created; carries the key without its secret.
pub const API_KEY_CREATE: &str = "user.api-key.create";
/// An API key's name, rights or expiry changed.
pub const API_KEY_UPDATE: &str = "user.api-key.update";
/// An API key was deleted.
pub const API_KEY_DELETE: &str = "user.api-key.delete";
/// Every API key event, as a subscription pattern.
pub const API_KEY_ALL: &str = "user.api-key.>";
/// A login token was made (and mailed, or returned to an admin).
pub const LOGIN_TOKEN_CREATE: &str = "user.login-token.create";
/// A login token was used.
pub const LOGIN_TOKEN_USE: &str = "user.login-token.use";

// The sessions service.

/// A login succeeded; carries the new session.
pub const LOGIN: &str = "user.login";
/// A login failed.
pub const LOGIN_FAILED: &str = "user.login_failed";
/// A session ended by its own logout.
pub const LOGOUT: &str = "user.logout";
/// Sessions were deleted (by their user, an admin or a revocation).
pub const SESSION_DELETE: &str = "user.session.delete";
/// Every session event, as a subscription pattern.
pub const SESSION_ALL: &str = "user.session.>";

// The invitations service.

/// A user registered with an invitation.
pub const INVITATION_ACCEPT: &str = "invitation.accept";
