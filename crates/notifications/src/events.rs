//! The names of the events the notifications service publishes. Both name
//! the receiver (`identifiers` hold its `user_ids`), so the consumers of
//! `user.>` and the per-user fan-out of `Subscribe` see whose they are.

/// A notification was made for one receiver (one event per receiver). Its
/// data is that receiver's [`Notification`](roster_proto::v1::Notification)
/// (status `NOTIFICATION_STATUS_UNSEEN`); `Subscribe` streams forward it.
pub const NOTIFICATION_CREATE: &str = "user.notification.create";

/// A receiver changed the status of some of its notifications (one event
/// per `UpdateStatus` call that changed anything). Its data is an
/// [`UpdateNotificationStatusRequest`](roster_proto::v1::UpdateNotificationStatusRequest)
/// holding the receiver, the new status and the IDs whose status changed.
pub const NOTIFICATION_UPDATE_STATUS: &str = "user.notification.update_status";
