-- PostgreSQL's form of migrations/sqlite/0003_notifications.sql.
CREATE TABLE notifications (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    key          TEXT NOT NULL UNIQUE,
    webhook      TEXT NOT NULL,
    body         TEXT NOT NULL,
    created_ns   BIGINT NOT NULL,
    attempts     BIGINT NOT NULL DEFAULT 0,
    next_ns      BIGINT NOT NULL,
    delivered_ns BIGINT,
    last_error   TEXT
);
CREATE INDEX notifications_due ON notifications (next_ns) WHERE delivered_ns IS NULL;
