-- Forgetting a purged user finds the notifications about them and the ones
-- they sent without reading the whole table.
CREATE INDEX notifications_by_entity ON notifications (entity_kind, entity_id);
CREATE INDEX notifications_by_sender ON notifications (sender_id) WHERE sender_id IS NOT NULL;
