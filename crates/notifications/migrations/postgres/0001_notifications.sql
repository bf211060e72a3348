-- Notifications, and where each stands for each of its receivers.
-- "C" collation on the IDs, so that ties break in byte order, as on SQLite.

CREATE TABLE notifications (
    -- A UUID: fresh, or derived from the event that caused it (so a
    -- redelivered event makes no second notification).
    id TEXT COLLATE "C" PRIMARY KEY,
    created_at TIMESTAMPTZ NOT NULL,
    -- The entity it is about: `user` with a user ID, or `invitation_email`
    -- with an address (EntityIdentifiers).
    entity_kind TEXT NOT NULL,
    entity_id TEXT NOT NULL,
    -- NotificationType.
    notification_type INT NOT NULL,
    -- The encoded google.protobuf.Any, at most 16 KiB; never a secret.
    data BYTEA,
    -- The user whose action caused it; NULL for the system.
    sender_id TEXT COLLATE "C",
    -- The NotificationReceiver kinds it was addressed to, comma-separated.
    receivers TEXT NOT NULL,
    -- Whether a mail was queued for at least one receiver.
    email BOOLEAN NOT NULL
);

CREATE TABLE notification_receivers (
    notification_id TEXT COLLATE "C" NOT NULL REFERENCES notifications (id) ON DELETE CASCADE,
    user_id TEXT COLLATE "C" NOT NULL,
    -- NotificationStatus; 0 (unseen) when made.
    status INT NOT NULL,
    status_updated_at TIMESTAMPTZ,
    -- The notification's created_at, copied so that a receiver's page is
    -- read from this table's index alone.
    created_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (notification_id, user_id)
);
-- A receiver's notifications, newest first (List).
CREATE INDEX notification_receivers_by_user
    ON notification_receivers (user_id, created_at DESC, notification_id);
