//! The names of the events the access service publishes (they live in
//! `roster_core::events::names`, where their consumers read them too).

pub use roster_core::events::names::{
    API_KEY_CREATE, API_KEY_DELETE, API_KEY_UPDATE, LOGIN_TOKEN_CREATE, LOGIN_TOKEN_USE,
};
