//! The names of the events the invitations service publishes. Their data
//! is the [`Invitation`](roster_proto::v1::Invitation), never with its
//! token; their identifiers name the invitation by its address
//! (`invitation_email`), and for `invitation.accept` also the user who
//! registered with it.

/// Invitations were sent (one event per invitation).
pub const INVITATION_CREATE: &str = "invitation.create";
/// An invitation was sent again with a new token and expiry.
pub const INVITATION_UPDATE: &str = "invitation.update";
/// An invitation was deleted; its token no longer works. Also published
/// for an expired invitation that a new Send to its address replaced.
pub const INVITATION_DELETE: &str = "invitation.delete";
/// A user registered with an invitation (`accepted_by`; `sent_by` tells
/// whom to notify). Named in `roster_core::events::names`, where the
/// notifications service reads it too.
pub use roster_core::events::names::INVITATION_ACCEPT;
