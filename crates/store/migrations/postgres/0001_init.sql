-- PostgreSQL's form of migrations/sqlite/0001_init.sql (same tables, keys and indexes; see
-- that file for what each holds). Nanosecond times and counters are BIGINT.
CREATE TABLE workflows (
    uid         TEXT PRIMARY KEY,
    namespace   TEXT NOT NULL,
    name        TEXT NOT NULL,
    created_ns  BIGINT NOT NULL,
    phase       TEXT NOT NULL,
    finished_ns BIGINT,
    manifest    TEXT NOT NULL,
    params      TEXT NOT NULL,
    context     TEXT NOT NULL,
    status      TEXT NOT NULL,
    UNIQUE (namespace, name)
);
CREATE INDEX workflows_by_time ON workflows (namespace, created_ns DESC, uid DESC);
CREATE INDEX workflows_all_by_time ON workflows (created_ns DESC, uid DESC);

CREATE TABLE workflow_labels (
    uid   TEXT NOT NULL,
    key   TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (uid, key)
);
CREATE INDEX workflow_labels_by_key ON workflow_labels (key, value);

CREATE TABLE events (
    uid   TEXT NOT NULL,
    seq   BIGINT NOT NULL,
    at_ns BIGINT NOT NULL,
    body  TEXT NOT NULL,
    PRIMARY KEY (uid, seq)
);

CREATE TABLE archived_workflows (
    uid         TEXT PRIMARY KEY,
    namespace   TEXT NOT NULL,
    name        TEXT NOT NULL,
    phase       TEXT NOT NULL,
    created_ns  BIGINT NOT NULL,
    finished_ns BIGINT,
    body        TEXT NOT NULL
);
CREATE INDEX archived_by_time ON archived_workflows (namespace, created_ns DESC, uid DESC);
CREATE INDEX archived_all_by_time ON archived_workflows (created_ns DESC, uid DESC);

CREATE TABLE archived_labels (
    uid   TEXT NOT NULL,
    key   TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (uid, key)
);
CREATE INDEX archived_labels_by_key ON archived_labels (key, value);

CREATE TABLE objects (
    kind       TEXT NOT NULL,
    namespace  TEXT NOT NULL,
    name       TEXT NOT NULL,
    created_ns BIGINT NOT NULL,
    body       TEXT NOT NULL,
    PRIMARY KEY (kind, namespace, name)
);
