//! The events this service publishes. Each carries a `UserEventData` (the
//! user without secrets) and the user's identifiers; `user.lock` carries a
//! `LoginFailureEventData`. The names live in `roster_core::events::names`,
//! where the services acting on them read them too.

pub use roster_core::events::names::{
    EXTERNAL_USER_CREATE, EXTERNAL_USER_DELETE, USER_CREATE, USER_DELETE, USER_LOCK, USER_PURGE,
    USER_RESTORE, USER_UPDATE, USER_UPDATE_INCORRECT_PASSWORD,
};
