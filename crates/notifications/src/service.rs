//! The notifications service's use cases: making a notification (from
//! `Create` or from another service's event, through the one entry point
//! [`NotificationsService::notify`]), listing a receiver's notifications,
//! changing their status, and streaming new ones as they are made. No SQL
//! and no gRPC plumbing beyond the messages here.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use prost::Message;
use roster_core::auth::{Authenticator, CLUSTER_KEY_HEADER, CallContext, INVALIDATING_EVENTS};
use roster_core::events::{EventBus, new_event, pack, user_ids as event_user_ids};
use roster_core::list::Page;
use roster_core::mail::OutgoingMail;
use roster_core::time::{now, opt_timestamp, timestamp};
use roster_core::validation::{FieldViolation, max_chars, user_id as user_id_of, uuid as uuid_of};
use roster_proto::v1::{
    CreateNotificationRequest, CreateNotificationResponse, EntityIdentifiers, Event,
    ListNotificationsRequest, ListNotificationsResponse, Notification, NotificationReceiver,
    NotificationStatus, NotificationType, Right, SubscribeNotificationsRequest,
    UpdateNotificationStatusRequest, UserIdentifiers, entity_identifiers,
};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;
use tonic::metadata::MetadataMap;

use crate::config::NotificationsConfig;
use crate::error::{Error, Result};
use crate::events;
use crate::store::{Entity, NotificationRecord, NotificationStore, ReceiverQuery};
use crate::users::{Contact, Directory};

/// The largest `data` a notification may carry, encoded.
pub const MAX_DATA_BYTES: usize = 16 * 1024;

/// Most notification IDs one `UpdateStatus` may name.
pub const MAX_STATUS_IDS: usize = 1000;

/// The mailer's template for notifications.
const MAIL_TEMPLATE: &str = "notification";

/// Receivers looked up at once.
const LOOKUPS_AT_ONCE: usize = 8;

/// Notifications a subscriber's stream holds for the client. When they are
/// all unread, the stream waits [`STREAM_SEND_WAIT`] for room, then ends
/// with `RESOURCE_EXHAUSTED`.
pub const STREAM_BUFFER: usize = 64;

/// How long a stream whose buffer is full waits for the client to read
/// before it ends.
pub const STREAM_SEND_WAIT: Duration = Duration::from_secs(2);

/// The message ending a stream whose client does not read it.
const NOT_READ: &str = "the client does not read its stream: its notifications stayed unread \
    too long; open a new stream and catch up with List";

/// Notification IDs a stream remembers, so that an event published twice
/// (an outbox retry) reaches the subscriber once.
const STREAM_SEEN: usize = 256;

/// The longest address of an invitation entity.
const MAX_EMAIL_CHARS: usize = 254;

/// The reason when no receiver remains.
const NO_RECEIVER: &str = "no_receiver_user_ids: no existing, undeleted user remains to notify";

/// A notification to make, from a request or from an event.
#[derive(Debug, Clone)]
pub struct Note {
    /// Set from the event that caused it (a UUID derived from the event's unique ID), so a redelivered event makes no second notification; `None`: a fresh UUIDv4.
    pub id: Option<String>,
    pub entity_ids: roster_proto::v1::EntityIdentifiers,
    pub notification_type: roster_proto::v1::NotificationType,
    pub data: Option<prost_types::Any>,
    pub sender_ids: Option<roster_proto::v1::UserIdentifiers>,
    pub receivers: Vec<roster_proto::v1::NotificationReceiver>,
    /// Users to notify besides the entity's contacts.
    pub receiver_user_ids: Vec<String>,
    pub email: bool,
}

/// Notifications: making, listing, marking and streaming them.
pub struct NotificationsService {
    store: Arc<dyn NotificationStore>,
    directory: Arc<dyn Directory>,
    bus: Arc<dyn EventBus>,
    auth: Arc<Authenticator>,
    config: NotificationsConfig,
    /// The open `Subscribe` streams per receiver.
    streams: StreamCounts,
}

impl NotificationsService {
    pub fn new(
        store: Arc<dyn NotificationStore>,
        directory: Arc<dyn Directory>,
        bus: Arc<dyn EventBus>,
        auth: Arc<Authenticator>,
        config: NotificationsConfig,
    ) -> Self {
        Self {
            store,
            directory,
            bus,
            auth,
            config,
            streams: StreamCounts::default(),
        }
    }

    /// The store, for tests that look behind the API.
    /// Forgets a purged user: their notifications and those about them
    /// (see [`NotificationStore::forget_user`]). Doing it twice is harmless.
    pub async fn forget_user(&self, user_id: &str) -> Result<()> {
        let gone = self.store.forget_user(user_id).await?;
        tracing::info!(%user_id, notifications = gone, "purged user's notifications forgotten");
        Ok(())
    }

    /// Who users are, as the user registry and the invitations service
    /// say.
    pub fn directory(&self) -> &Arc<dyn Directory> {
        &self.directory
    }

    pub fn store(&self) -> &Arc<dyn NotificationStore> {
        &self.store
    }

    // ---- Making notifications -----------------------------------------

    /// Resolves the receivers, stores the notification with one status row per receiver, queues a mail for each receiver whose `email_notification_preferences` include the type (when `note.email`), and writes one `user.notification.create` event per receiver — all in one transaction. `Ok(None)` when a notification with that ID exists already (nothing is done); else `Ok(Some(id))`. No receiver → INVALID_ARGUMENT `no_receiver_user_ids`.
    ///
    /// It checks no rights: `Create` does that before calling it, and event
    /// workers act for the system. The note is validated as `Create`
    /// validates its request (the fields are named as there). Receivers:
    /// every kind of `receivers` resolves to the user of a user entity, and
    /// to the sender of the latest invitation to the address of an
    /// invitation entity (asked of the invitations service); then
    /// `receiver_user_ids` are added, duplicates removed, and users that do
    /// not exist or are soft-deleted dropped.
    #[tracing::instrument(skip_all, fields(notification_type = note.notification_type.as_str_name()))]
    pub async fn notify(&self, ctx: &CallContext, note: Note) -> Result<Option<String>> {
        let checked = CheckedNote::parse(note)?;
        let contacts = self.resolve(&checked).await?;
        let id = checked
            .id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let mails: Vec<OutgoingMail> = if checked.email {
            contacts
                .iter()
                .filter(|c| {
                    !c.email.is_empty()
                        && c.email_types.contains(&(checked.notification_type as i32))
                })
                .map(|c| mail_for(&id, checked.notification_type, c))
                .collect()
        } else {
            Vec::new()
        };
        let record = NotificationRecord {
            id: id.clone(),
            created_at: now(),
            entity: checked.entity,
            notification_type: checked.notification_type as i32,
            data: checked.data,
            sender_id: checked.sender_id,
            receivers: checked.receivers.iter().map(|r| *r as i32).collect(),
            email: !mails.is_empty(),
        };
        let message = notification_message(&record, NotificationStatus::Unseen as i32, None);
        let events: Vec<Event> = contacts
            .iter()
            .map(|contact| {
                let mut event = new_event(
                    events::NOTIFICATION_CREATE,
                    vec![user_entity(&contact.user_id)],
                    Some(pack(&message)),
                );
                ctx.stamp(&mut event);
                event
            })
            .collect();
        let receivers: Vec<String> = contacts.iter().map(|c| c.user_id.clone()).collect();
        if !self
            .store
            .create(&record, &receivers, &events, &mails)
            .await?
        {
            tracing::info!(notification_id = %id, "notification exists already; nothing done");
            return Ok(None);
        }
        tracing::info!(
            notification_id = %id,
            receivers = receivers.len(),
            mails = mails.len(),
            "notification made"
        );
        Ok(Some(id))
    }

    /// The receivers of `note`: existing, undeleted users, each once, in
    /// the order first named.
    async fn resolve(&self, note: &CheckedNote) -> Result<Vec<Contact>> {
        let mut candidates = Vec::new();
        if !note.receivers.is_empty() {
            match &note.entity {
                Entity::User(user_id) => candidates.push(user_id.clone()),
                Entity::InvitationEmail(email) => {
                    if let Some(sender) = self
                        .directory
                        .invitation_sender(email)
                        .await
                        .map_err(Error::Peer)?
                    {
                        candidates.push(sender);
                    }
                }
            }
        }
        candidates.extend(note.receiver_user_ids.iter().cloned());
        let mut seen = HashSet::new();
        candidates.retain(|id| seen.insert(id.clone()));
        let directory = &self.directory;
        let looked_up: Vec<std::result::Result<Option<Contact>, Status>> =
            futures::stream::iter(candidates)
                .map(|user_id| async move { directory.contact(&user_id).await })
                .buffered(LOOKUPS_AT_ONCE)
                .collect()
                .await;
        let mut contacts = Vec::new();
        for contact in looked_up {
            match contact.map_err(Error::Peer)? {
                Some(contact) if !contact.deleted => contacts.push(contact),
                _ => {}
            }
        }
        if contacts.is_empty() {
            return Err(FieldViolation::new("receiver_user_ids", NO_RECEIVER).into());
        }
        Ok(contacts)
    }

    /// Creates a notification: for other Roster services (the cluster key)
    /// and admins; `UNAUTHENTICATED` without a credential,
    /// `PERMISSION_DENIED` for everybody else.
    #[tracing::instrument(skip_all)]
    pub async fn create(
        &self,
        ctx: &CallContext,
        req: CreateNotificationRequest,
    ) -> Result<CreateNotificationResponse> {
        ctx.caller.require_authenticated()?;
        if !ctx.caller.is_admin() {
            return Err(Status::permission_denied(
                "only Roster services (cluster key) and admins may create notifications",
            )
            .into());
        }
        let note = Note {
            id: None,
            entity_ids: req
                .entity_ids
                .ok_or_else(|| FieldViolation::new("entity_ids", "is required"))?,
            notification_type: NotificationType::try_from(req.notification_type)
                .map_err(|_| FieldViolation::new("notification_type", "is not a known type"))?,
            data: req.data,
            sender_ids: req.sender_ids,
            receivers: req
                .receivers
                .iter()
                .map(|r| {
                    NotificationReceiver::try_from(*r)
                        .map_err(|_| FieldViolation::new("receivers", "holds an unknown receiver"))
                })
                .collect::<Result<_, _>>()?,
            receiver_user_ids: req
                .receiver_user_ids
                .into_iter()
                .map(|ids| ids.user_id)
                .collect(),
            email: req.email,
        };
        // A fresh ID is never taken, so `None` cannot happen here; should
        // it, the caller still learns nothing was made.
        let id = self
            .notify(ctx, note)
            .await?
            .ok_or_else(|| Status::aborted("the notification exists already"))?;
        Ok(CreateNotificationResponse { id })
    }

    // ---- Reading and marking ------------------------------------------

    /// A page of the receiver's notifications, newest first, each with the
    /// receiver's status, and their total.
    #[tracing::instrument(skip_all)]
    pub async fn list(
        &self,
        ctx: &CallContext,
        req: ListNotificationsRequest,
    ) -> Result<(ListNotificationsResponse, u64)> {
        ctx.caller.require_authenticated()?;
        let user_id = receiver_of(req.receiver_ids.as_ref())?;
        ctx.caller.require(&user_id, Right::UserNotificationsRead)?;
        let mut statuses = Vec::new();
        for status in req.status {
            NotificationStatus::try_from(status)
                .map_err(|_| FieldViolation::new("status", "holds an unknown status"))?;
            if !statuses.contains(&status) {
                statuses.push(status);
            }
        }
        let page = Page::parse(req.limit, req.page)?;
        let (records, total) = self
            .store
            .list(ReceiverQuery {
                user_id: &user_id,
                statuses: &statuses,
                limit: page.limit(),
                offset: page.offset(),
            })
            .await?;
        let notifications = records
            .iter()
            .map(|r| notification_message(&r.notification, r.status, r.status_updated_at))
            .collect();
        Ok((ListNotificationsResponse { notifications }, total))
    }

    /// Sets the status of the receiver's notifications among `ids` (others
    /// are ignored) and, when any changed, publishes one
    /// `user.notification.update_status` whose data is the request with
    /// only the IDs that changed. A notification already in the status
    /// keeps its `status_updated_at`.
    #[tracing::instrument(skip_all)]
    pub async fn update_status(
        &self,
        ctx: &CallContext,
        req: UpdateNotificationStatusRequest,
    ) -> Result<()> {
        ctx.caller.require_authenticated()?;
        let user_id = receiver_of(req.receiver_ids.as_ref())?;
        ctx.caller.require(&user_id, Right::UserNotificationsRead)?;
        if req.ids.is_empty() || req.ids.len() > MAX_STATUS_IDS {
            return Err(FieldViolation::new(
                "ids",
                format!("must hold 1 to {MAX_STATUS_IDS} notification IDs"),
            )
            .into());
        }
        let mut ids = Vec::with_capacity(req.ids.len());
        let mut seen = HashSet::new();
        for id in &req.ids {
            let id = uuid_of("ids", id)?;
            if seen.insert(id.clone()) {
                ids.push(id);
            }
        }
        let status = NotificationStatus::try_from(req.status)
            .map_err(|_| FieldViolation::new("status", "is not a known status"))?;
        let make_events = |changed: &[String]| {
            let data = UpdateNotificationStatusRequest {
                receiver_ids: Some(user_ids(&user_id)),
                ids: changed.to_vec(),
                status: status as i32,
            };
            let mut event = new_event(
                events::NOTIFICATION_UPDATE_STATUS,
                vec![user_entity(&user_id)],
                Some(pack(&data)),
            );
            ctx.stamp(&mut event);
            vec![event]
        };
        let changed = self
            .store
            .update_status(&user_id, &ids, status as i32, now(), &make_events)
            .await?;
        tracing::info!(
            user_id = %user_id,
            status = status.as_str_name(),
            changed = changed.len(),
            "notification status set"
        );
        Ok(())
    }

    // ---- Streaming ----------------------------------------------------

    /// A stream of the receiver's new notifications, from the fan-out of
    /// `user.notification.create` (no replay). The caller's credential,
    /// from `metadata`, is checked again every `stream_recheck_secs` and
    /// whenever an event that can change a credential names the receiver or
    /// the caller's own user; once it no longer resolves or no longer
    /// carries `RIGHT_USER_NOTIFICATIONS_READ` on the receiver, the stream
    /// ends with that status (`UNAUTHENTICATED`, `PERMISSION_DENIED`). A
    /// check that cannot be made (`UNAVAILABLE`) keeps the stream open until
    /// the next one. The stream ends with `UNAVAILABLE` if the bus
    /// subscription ends.
    ///
    /// At most `max_streams_per_user` streams of one receiver are open at
    /// once (on this server); one more is refused with
    /// `RESOURCE_EXHAUSTED`. A stream counts until its task ends, for
    /// whatever reason: the client went away, the credential was refused,
    /// the server stops. A client that leaves [`STREAM_BUFFER`]
    /// notifications unread for [`STREAM_SEND_WAIT`] has its stream ended
    /// with `RESOURCE_EXHAUSTED` (after those notifications), so an unread
    /// stream holds neither a task nor bus subscriptions for long.
    #[tracing::instrument(skip_all)]
    pub async fn subscribe(
        &self,
        ctx: &CallContext,
        metadata: &MetadataMap,
        req: SubscribeNotificationsRequest,
    ) -> Result<ReceiverStream<std::result::Result<Notification, Status>>> {
        ctx.caller.require_authenticated()?;
        let user_id = receiver_of(req.receiver_ids.as_ref())?;
        ctx.caller.require(&user_id, Right::UserNotificationsRead)?;
        let max = self.config.stream_cap();
        let slot = self.streams.take(&user_id, max).ok_or_else(|| {
            tracing::info!(%user_id, max, "too many notification streams of one receiver; refused");
            Error::TooManyStreams { max }
        })?;
        let mut streams = Vec::with_capacity(INVALIDATING_EVENTS.len() + 1);
        for pattern in std::iter::once(&events::NOTIFICATION_CREATE).chain(INVALIDATING_EVENTS) {
            let stream = self.bus.subscribe(pattern).await.map_err(|error| {
                tracing::warn!(%error, "cannot subscribe to notification events");
                Error::Peer(Status::unavailable("notifications cannot be streamed now"))
            })?;
            streams.push(stream);
        }
        // One place more than the buffer, kept for the status that ends the
        // stream: it always fits, however far behind the client is.
        let (tx, rx) = mpsc::channel(STREAM_BUFFER + 1);
        let last = tx
            .clone()
            .try_reserve_owned()
            .map_err(|_| Status::internal("a new notification stream has no room for its end"))?;
        let watch = Subscription {
            auth: self.auth.clone(),
            // Only what proves the caller is kept, not the whole request.
            credential: credential_metadata(metadata),
            receiver: user_id,
            caller_user: ctx.caller.user_id().map(str::to_string),
            recheck: self.config.stream_recheck(),
            tx,
            last: Some(last),
            _slot: slot,
        };
        tokio::spawn(watch.run(futures::stream::select_all(streams)));
        Ok(ReceiverStream::new(rx))
    }
}

/// The open `Subscribe` streams, counted per receiver.
#[derive(Debug, Default)]
struct StreamCounts {
    open: Arc<Mutex<HashMap<String, usize>>>,
}

impl StreamCounts {
    /// A place for one more stream of `user_id`; `None` when `max` are open.
    fn take(&self, user_id: &str, max: usize) -> Option<StreamSlot> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let count = open.get(user_id).copied().unwrap_or(0);
        if count >= max {
            return None;
        }
        open.insert(user_id.to_string(), count + 1);
        Some(StreamSlot {
            open: self.open.clone(),
            user_id: user_id.to_string(),
            _counted: roster_core::metrics::OpenNotificationStream::open(),
        })
    }

    /// How many streams of `user_id` are open.
    #[cfg(test)]
    fn count(&self, user_id: &str) -> usize {
        let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.get(user_id).copied().unwrap_or(0)
    }
}

/// One open stream's place, given back when dropped (with the stream's
/// task, however it ends: the client went away, the credential was
/// refused, the client stopped reading, the server stopped).
#[derive(Debug)]
struct StreamSlot {
    open: Arc<Mutex<HashMap<String, usize>>>,
    user_id: String,
    /// The stream in the open-streams gauge, for as long as the slot.
    _counted: roster_core::metrics::OpenNotificationStream,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = open.get_mut(&self.user_id) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.user_id);
            }
        }
    }
}

type StreamItem = std::result::Result<Notification, Status>;

/// One open `Subscribe` stream: forwards the receiver's new notifications
/// and ends the stream when the caller's credential no longer works or the
/// client does not read.
struct Subscription {
    auth: Arc<Authenticator>,
    credential: MetadataMap,
    receiver: String,
    caller_user: Option<String>,
    recheck: Duration,
    tx: mpsc::Sender<StreamItem>,
    /// The room kept for the status that ends the stream.
    last: Option<mpsc::OwnedPermit<StreamItem>>,
    /// The stream's place among the receiver's, given back when the task
    /// ends.
    _slot: StreamSlot,
}

impl Subscription {
    #[tracing::instrument(skip_all, fields(user_id = %self.receiver))]
    async fn run(
        mut self,
        mut events: futures::stream::SelectAll<roster_core::events::EventStream>,
    ) {
        let mut ticker =
            tokio::time::interval_at(tokio::time::Instant::now() + self.recheck, self.recheck);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut seen: VecDeque<String> = VecDeque::with_capacity(STREAM_SEEN);
        loop {
            let event = tokio::select! {
                _ = self.tx.closed() => break,
                _ = ticker.tick() => {
                    if self.end_if_refused().await {
                        break;
                    }
                    continue;
                }
                event = events.next() => event,
            };
            let Some(event) = event else {
                self.end(Status::unavailable(
                    "the notification stream was interrupted",
                ));
                break;
            };
            let about = event_user_ids(&event);
            if event.name == events::NOTIFICATION_CREATE {
                if !about.contains(&self.receiver) {
                    continue;
                }
                let Some(notification) = event
                    .data
                    .as_ref()
                    .and_then(|data| Notification::decode(data.value.as_slice()).ok())
                else {
                    tracing::warn!(unique_id = %event.unique_id, "a notification event without a notification");
                    continue;
                };
                if seen.contains(&notification.id) {
                    continue;
                }
                if seen.len() == STREAM_SEEN {
                    seen.pop_front();
                }
                seen.push_back(notification.id.clone());
                if !self.forward(notification).await {
                    break;
                }
            } else if about.is_empty()
                || about.contains(&self.receiver)
                || self.caller_user.as_ref().is_some_and(|u| about.contains(u))
            {
                // The credential may have changed. Its cached answer may
                // not have been dropped yet (the authenticator hears the
                // same event on a subscription of its own), so drop it here.
                if about.is_empty() {
                    self.auth.forget_all();
                }
                for user in &about {
                    self.auth.forget_user(user);
                }
                if self.end_if_refused().await {
                    break;
                }
            }
        }
        tracing::debug!("notification stream ended");
    }

    /// Hands `notification` to the client; false when the stream is over:
    /// the client went away, or left the buffer full for
    /// [`STREAM_SEND_WAIT`] (the stream then ends with
    /// `RESOURCE_EXHAUSTED`).
    async fn forward(&mut self, notification: Notification) -> bool {
        let item = match self.tx.try_send(Ok(notification)) {
            Ok(()) => return true,
            Err(TrySendError::Closed(_)) => return false,
            Err(TrySendError::Full(item)) => item,
        };
        match tokio::time::timeout(STREAM_SEND_WAIT, self.tx.send(item)).await {
            Ok(sent) => sent.is_ok(),
            Err(_) => {
                tracing::info!("subscriber does not read its stream; ending it");
                self.end(Status::resource_exhausted(NOT_READ));
                false
            }
        }
    }

    /// Ends the stream with `status`, in the room kept for it, so it never
    /// waits for the client.
    fn end(&mut self, status: Status) {
        if let Some(last) = self.last.take() {
            last.send(Err(status));
        }
    }

    /// Checks the credential again; when it is refused, sends the refusal
    /// as the stream's end and returns true.
    async fn end_if_refused(&mut self) -> bool {
        let checked = match self.auth.caller_from_metadata(&self.credential).await {
            Ok(caller) => caller.require(&self.receiver, Right::UserNotificationsRead),
            Err(status) => Err(status),
        };
        match checked {
            Ok(()) => false,
            Err(status) if status.code() == tonic::Code::Unavailable => {
                tracing::warn!("cannot check a subscriber's credential now; the stream stays open");
                false
            }
            Err(status) => {
                tracing::info!(code = ?status.code(), "subscriber's credential refused; ending the stream");
                self.end(status);
                true
            }
        }
    }
}

/// The headers that prove the caller: the cluster key or the bearer token.
fn credential_metadata(metadata: &MetadataMap) -> MetadataMap {
    let mut kept = MetadataMap::new();
    for key in [CLUSTER_KEY_HEADER, "authorization"] {
        if let Some(value) = metadata.get(key) {
            kept.insert(key, value.clone());
        }
    }
    kept
}

/// A [`Note`] validated, its entity and IDs parsed.
struct CheckedNote {
    id: Option<String>,
    entity: Entity,
    notification_type: NotificationType,
    data: Option<prost_types::Any>,
    sender_id: Option<String>,
    receivers: Vec<NotificationReceiver>,
    receiver_user_ids: Vec<String>,
    email: bool,
}

impl CheckedNote {
    fn parse(note: Note) -> Result<CheckedNote, FieldViolation> {
        let id = note.id.as_deref().map(|id| uuid_of("id", id)).transpose()?;
        let entity = match note.entity_ids.ids {
            None => return Err(FieldViolation::new("entity_ids", "is required")),
            Some(entity_identifiers::Ids::UserIds(ids)) => {
                Entity::User(user_id_of("entity_ids.user_ids.user_id", &ids.user_id)?)
            }
            Some(entity_identifiers::Ids::InvitationEmail(email)) => {
                let field = "entity_ids.invitation_email";
                if email.trim().is_empty() {
                    return Err(FieldViolation::new(field, "is required"));
                }
                max_chars(field, &email, MAX_EMAIL_CHARS)?;
                Entity::InvitationEmail(email)
            }
        };
        if note.notification_type == NotificationType::Unknown {
            return Err(FieldViolation::new(
                "notification_type",
                "must not be NOTIFICATION_TYPE_UNKNOWN",
            ));
        }
        if note.receivers.contains(&NotificationReceiver::Unknown) {
            return Err(FieldViolation::new(
                "receivers",
                "must not hold NOTIFICATION_RECEIVER_UNKNOWN",
            ));
        }
        let mut receivers = note.receivers;
        let mut seen = HashSet::new();
        receivers.retain(|r| seen.insert(*r));
        if note
            .data
            .as_ref()
            .is_some_and(|data| data.encoded_len() > MAX_DATA_BYTES)
        {
            return Err(FieldViolation::new(
                "data",
                format!("must be at most {MAX_DATA_BYTES} bytes encoded"),
            ));
        }
        let sender_id = match note.sender_ids {
            Some(ids) if !ids.user_id.is_empty() => {
                Some(user_id_of("sender_ids.user_id", &ids.user_id)?)
            }
            _ => None,
        };
        let receiver_user_ids = note
            .receiver_user_ids
            .iter()
            .map(|id| user_id_of("receiver_user_ids", id))
            .collect::<Result<_, _>>()?;
        Ok(CheckedNote {
            id,
            entity,
            notification_type: note.notification_type,
            data: note.data,
            sender_id,
            receivers,
            receiver_user_ids,
            email: note.email,
        })
    }
}

/// The user whose notifications a request is about.
fn receiver_of(ids: Option<&UserIdentifiers>) -> Result<String, FieldViolation> {
    user_id_of(
        "receiver_ids.user_id",
        ids.map(|ids| ids.user_id.as_str()).unwrap_or_default(),
    )
}

fn user_ids(user_id: &str) -> UserIdentifiers {
    UserIdentifiers {
        user_id: user_id.to_string(),
        email: String::new(),
    }
}

fn user_entity(user_id: &str) -> EntityIdentifiers {
    EntityIdentifiers {
        ids: Some(entity_identifiers::Ids::UserIds(user_ids(user_id))),
    }
}

fn entity_message(entity: &Entity) -> EntityIdentifiers {
    match entity {
        Entity::User(user_id) => user_entity(user_id),
        Entity::InvitationEmail(email) => EntityIdentifiers {
            ids: Some(entity_identifiers::Ids::InvitationEmail(email.clone())),
        },
    }
}

/// The notification as one receiver sees it.
fn notification_message(
    record: &NotificationRecord,
    status: i32,
    status_updated_at: Option<chrono::DateTime<chrono::Utc>>,
) -> Notification {
    Notification {
        id: record.id.clone(),
        created_at: Some(timestamp(record.created_at)),
        entity_ids: Some(entity_message(&record.entity)),
        notification_type: record.notification_type,
        data: record.data.clone(),
        sender_ids: record.sender_id.as_deref().map(user_ids),
        receivers: record.receivers.clone(),
        email: record.email,
        status,
        status_updated_at: opt_timestamp(status_updated_at),
    }
}

/// The mail telling `contact` about notification `id`: a fixed title and
/// sentence for the type and a link to the notification. Never the
/// notification's `data`, which may say more than a mail should carry.
fn mail_for(id: &str, notification_type: NotificationType, contact: &Contact) -> OutgoingMail {
    let (title, body) = wording(notification_type);
    OutgoingMail::new(MAIL_TEMPLATE, &contact.email, &greeting_name(&contact.name))
        .with("title", title)
        .with("body", body)
        .with("path", format!("/notifications/{id}"))
}

/// A name the mailer accepts in a greeting (one line, at most 100
/// characters); the user registry's names already are.
fn greeting_name(name: &str) -> String {
    name.split(['\n', '\r', '\t'])
        .next()
        .unwrap_or_default()
        .chars()
        .filter(|c| !c.is_control())
        .take(100)
        .collect()
}

/// The mail's title and sentence for each type.
pub fn wording(notification_type: NotificationType) -> (&'static str, &'static str) {
    match notification_type {
        NotificationType::Unknown => (
            "You have a new notification",
            "Something happened that concerns you.",
        ),
        NotificationType::ApiKeyCreated => (
            "A new API key was created for your account",
            "If you did not create it, delete it and change your password.",
        ),
        NotificationType::ApiKeyChanged => (
            "An API key of your account was changed",
            "If you did not change it, review your API keys and change your password.",
        ),
        NotificationType::EntityStateChanged => (
            "The state of your account changed",
            "Your account's state was changed by an administrator.",
        ),
        NotificationType::Invitation => ("You have a new invitation", "You were invited to join."),
        NotificationType::LoginToken => (
            "A login link was requested for your account",
            "If you did not ask for it, you can ignore it; nobody can log in without the link.",
        ),
        NotificationType::PasswordChanged => (
            "Your password was changed",
            "If you did not change it, reset your password at once.",
        ),
        NotificationType::TemporaryPassword => (
            "A temporary password was requested for your account",
            "If you did not ask for it, your password has not changed and you can ignore it.",
        ),
        NotificationType::UserRequested => (
            "A new user is waiting for approval",
            "Someone registered and waits for an administrator to approve the account.",
        ),
        NotificationType::Validate => (
            "Your email address needs confirmation",
            "Confirm your email address with the link we sent you separately.",
        ),
        NotificationType::InvitationAccepted => (
            "An invitation you sent was accepted",
            "Someone you invited has created an account.",
        ),
        NotificationType::AccountLocked => (
            "Your account was locked after failed logins",
            "Too many wrong passwords or second-factor codes were tried; the lock ends by itself after a while. If it was not you and codes were tried, someone knows your password or reads your mail: change the password.",
        ),
        NotificationType::AccountLockedByAdmin => (
            "An administrator locked your account",
            "You cannot log in, and your sessions and API keys are refused, until an administrator unlocks the account.",
        ),
        NotificationType::AccountDeactivated => (
            "An administrator deactivated your account",
            "Your sessions have ended and your API keys are refused. Your data is kept; ask an administrator to reactivate the account.",
        ),
        NotificationType::SecondFactorAdded => (
            "A second factor was added to your account",
            "Logins now need it besides your password. If you did not add it, change your password and remove the factor.",
        ),
        NotificationType::SecondFactorRemoved => (
            "A second factor was removed from your account",
            "If you did not remove it, change your password and add a second factor again.",
        ),
        NotificationType::RecoveryCodeUsed => (
            "A recovery code was used to log in",
            "Each recovery code works once. If this was not you, change your password and generate new codes.",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note(entity: entity_identifiers::Ids) -> Note {
        Note {
            id: None,
            entity_ids: EntityIdentifiers { ids: Some(entity) },
            notification_type: NotificationType::ApiKeyCreated,
            data: None,
            sender_ids: None,
            receivers: vec![NotificationReceiver::AdministrativeContact],
            receiver_user_ids: Vec::new(),
            email: false,
        }
    }

    fn alice() -> entity_identifiers::Ids {
        entity_identifiers::Ids::UserIds(user_ids("alice"))
    }

    fn violation(note: Note) -> String {
        match CheckedNote::parse(note) {
            Ok(_) => panic!("accepted"),
            Err(v) => v.field,
        }
    }

    #[test]
    fn a_note_names_the_field_it_fails_on() {
        assert!(CheckedNote::parse(note(alice())).is_ok());
        let mut n = note(alice());
        n.entity_ids = EntityIdentifiers::default();
        assert_eq!(violation(n), "entity_ids");
        let mut n = note(alice());
        n.notification_type = NotificationType::Unknown;
        assert_eq!(violation(n), "notification_type");
        let mut n = note(alice());
        n.receivers.push(NotificationReceiver::Unknown);
        assert_eq!(violation(n), "receivers");
        let mut n = note(alice());
        n.data = Some(prost_types::Any {
            type_url: "type.googleapis.com/x".into(),
            value: vec![0; MAX_DATA_BYTES],
        });
        assert_eq!(violation(n), "data");
        let mut n = note(alice());
        n.id = Some("not-a-uuid".into());
        assert_eq!(violation(n), "id");
        let mut n = note(alice());
        n.receiver_user_ids = vec!["Not An ID".into()];
        assert_eq!(violation(n), "receiver_user_ids");
        assert_eq!(
            violation(note(entity_identifiers::Ids::InvitationEmail(" ".into()))),
            "entity_ids.invitation_email"
        );
        assert_eq!(
            violation(note(entity_identifiers::Ids::UserIds(user_ids("")))),
            "entity_ids.user_ids.user_id"
        );
    }

    #[test]
    fn data_up_to_the_limit_is_accepted_and_ids_are_written_one_way() {
        let mut n = note(alice());
        let any = prost_types::Any {
            type_url: String::new(),
            value: vec![0; MAX_DATA_BYTES - 3],
        };
        assert_eq!(any.encoded_len(), MAX_DATA_BYTES);
        n.data = Some(any);
        n.id = Some("6F9619FF-8B86-D011-B42D-00C04FC964FF".into());
        let checked = CheckedNote::parse(n).unwrap();
        assert_eq!(
            checked.id.as_deref(),
            Some("6f9619ff-8b86-d011-b42d-00c04fc964ff")
        );
    }

    #[test]
    fn every_type_has_its_own_wording_and_greeting_names_stay_one_line() {
        let mut titles = HashSet::new();
        for n in 0..=11 {
            let t = NotificationType::try_from(n).unwrap();
            let (title, body) = wording(t);
            assert!(!title.is_empty() && !body.is_empty());
            assert!(titles.insert(title), "{title}");
        }
        assert_eq!(greeting_name("Ada\nLovelace"), "Ada");
        assert_eq!(greeting_name(&"x".repeat(300)).len(), 100);
    }

    #[test]
    fn a_receivers_streams_are_counted_until_their_slots_drop() {
        let streams = StreamCounts::default();
        let first = streams.take("alice", 2).expect("a first place");
        let second = streams.take("alice", 2).expect("a second place");
        assert!(streams.take("alice", 2).is_none(), "a third is refused");
        let bobs = streams.take("bob", 2).expect("bob counts apart");
        assert_eq!(streams.count("alice"), 2);
        drop(first);
        assert_eq!(streams.count("alice"), 1);
        let third = streams.take("alice", 2).expect("a freed place");
        drop((second, third, bobs));
        assert_eq!(streams.count("alice"), 0);
        assert!(
            streams.open.lock().unwrap().is_empty(),
            "no receiver is remembered without streams"
        );
    }

    proptest::proptest! {
        #[test]
        fn parsing_ids_never_panics(text in ".*") {
            let _ = uuid_of("ids", &text);
            let _ = user_id_of("receiver_user_ids", &text);
        }
    }
}
