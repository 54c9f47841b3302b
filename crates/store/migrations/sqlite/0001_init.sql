-- Live workflows. `manifest`, `params` and `context` are what the engine was built from;
-- with the event log they rebuild its state exactly (see ARCHITECTURE.md, crash recovery).
CREATE TABLE workflows (
    uid         TEXT PRIMARY KEY,
    namespace   TEXT NOT NULL,
    name        TEXT NOT NULL,
    created_ns  INTEGER NOT NULL,
    phase       TEXT NOT NULL,
    finished_ns INTEGER,
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
) WITHOUT ROWID;
CREATE INDEX workflow_labels_by_key ON workflow_labels (key, value);

-- Every event a workflow's engine handled, in order, with the time it was handled at.
CREATE TABLE events (
    uid  TEXT NOT NULL,
    seq  INTEGER NOT NULL,
    at_ns INTEGER NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (uid, seq)
) WITHOUT ROWID;

-- Finished workflows, kept after the live object is deleted (Argo's workflow archive).
CREATE TABLE archived_workflows (
    uid         TEXT PRIMARY KEY,
    namespace   TEXT NOT NULL,
    name        TEXT NOT NULL,
    phase       TEXT NOT NULL,
    created_ns  INTEGER NOT NULL,
    finished_ns INTEGER,
    body        TEXT NOT NULL
);
CREATE INDEX archived_by_time ON archived_workflows (namespace, created_ns DESC, uid DESC);
CREATE INDEX archived_all_by_time ON archived_workflows (created_ns DESC, uid DESC);

CREATE TABLE archived_labels (
    uid   TEXT NOT NULL,
    key   TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (uid, key)
) WITHOUT ROWID;
CREATE INDEX archived_labels_by_key ON archived_labels (key, value);

-- WorkflowTemplates, ClusterWorkflowTemplates (namespace ''), CronWorkflows.
CREATE TABLE objects (
    kind       TEXT NOT NULL,
    namespace  TEXT NOT NULL,
    name       TEXT NOT NULL,
    created_ns INTEGER NOT NULL,
    body       TEXT NOT NULL,
    PRIMARY KEY (kind, namespace, name)
) WITHOUT ROWID;
