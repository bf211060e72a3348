//! The `user.metadata.*` events: a user's metadata entries were set or
//! deleted (`UserMetadata`). The user registry publishes them, each
//! carrying a `roster.v1.UserMetadataEventData` that names the keys but
//! never the values (they may be sensitive, and every consumer of the
//! stream sees the event). The names live here once, so publisher and
//! consumers cannot drift apart.

/// Entries were set, new or replaced (`UserMetadata.SetUserMetadata`).
pub const SET: &str = "user.metadata.set";
/// Entries were deleted (`UserMetadata.DeleteUserMetadata`).
pub const DELETED: &str = "user.metadata.deleted";
/// Every metadata event, as a subscription pattern.
pub const ALL: &str = "user.metadata.>";
