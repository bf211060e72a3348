-- Notifications, and where each stands for each of its receivers; see the
-- PostgreSQL migration for the notes. Timestamps are RFC 3339 text in UTC,
-- which compare correctly as text.

CREATE TABLE notifications (
    id TEXT PRIMARY KEY,
    created_at TEXT NOT NULL,
    entity_kind TEXT NOT NULL,
    entity_id TEXT NOT NULL,
    notification_type INTEGER NOT NULL,
    data BLOB,
    sender_id TEXT,
    receivers TEXT NOT NULL,
    email BOOLEAN NOT NULL
);

CREATE TABLE notification_receivers (
    notification_id TEXT NOT NULL REFERENCES notifications (id) ON DELETE CASCADE,
    user_id TEXT NOT NULL,
    status INTEGER NOT NULL,
    status_updated_at TEXT,
    created_at TEXT NOT NULL,
    PRIMARY KEY (notification_id, user_id)
);
CREATE INDEX notification_receivers_by_user
    ON notification_receivers (user_id, created_at DESC, notification_id);
