//! The events this service publishes. Each carries a `UserEventData` (the
//! user without secrets) and the user's identifiers; `user.lock` carries a
//! `LoginFailureEventData`. The names live in `roster_core::events::names`,
//! where the services acting on them read them too.

pub use roster_core::events::names::{
    EXTERNAL_USER_CREATE, EXTERNAL_USER_DELETE, USER_CREATE, USER_DELETE, USER_LOCK, USER_PURGE,
    USER_RESTORE, USER_UPDATE, USER_UPDATE_INCORRECT_PASSWORD,
};

/// The events of a change to a user's row, from this process or another:
/// each makes every process forget its cached copy of the user
/// ([`crate::worker`]). The wrong-password events change no row, and
/// metadata, factors and external identities are not part of it.
pub const USER_ROW_CHANGES: &[&str] = &[
    USER_CREATE,
    USER_UPDATE,
    USER_DELETE,
    USER_RESTORE,
    USER_PURGE,
    roster_core::events::lifecycle::ALL,
];
