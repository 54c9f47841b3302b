-- The notification outbox: each message to a configured webhook, kept until the receiver
-- acknowledged it (a 2xx answer), so that a restart loses none. `key` makes enqueueing
-- idempotent: a workflow replayed after a crash enqueues the same keys again, and nothing twice.
CREATE TABLE notifications (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    key          TEXT NOT NULL UNIQUE,
    webhook      TEXT NOT NULL,
    body         TEXT NOT NULL,
    created_ns   INTEGER NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    next_ns      INTEGER NOT NULL,
    delivered_ns INTEGER,
    last_error   TEXT
);
CREATE INDEX notifications_due ON notifications (next_ns) WHERE delivered_ns IS NULL;
