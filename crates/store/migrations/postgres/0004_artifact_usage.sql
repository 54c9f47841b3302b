-- PostgreSQL's form of migrations/sqlite/0004_artifact_usage.sql.
CREATE TABLE artifact_usage (
    uid        TEXT NOT NULL,
    key        TEXT NOT NULL,
    namespace  TEXT NOT NULL,
    workflow   TEXT NOT NULL,
    bytes      BIGINT NOT NULL,
    stored_ns  BIGINT NOT NULL,
    PRIMARY KEY (uid, key)
);
CREATE INDEX artifact_usage_by_time ON artifact_usage (stored_ns);
