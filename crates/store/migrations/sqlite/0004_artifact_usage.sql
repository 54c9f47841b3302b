-- Bytes each finished workflow left in the artifact repository, per artifact: what the usage
-- report bills as storage per namespace (Kubecost's storage per tenant).
CREATE TABLE artifact_usage (
    uid        TEXT NOT NULL,
    key        TEXT NOT NULL,
    namespace  TEXT NOT NULL,
    workflow   TEXT NOT NULL,
    bytes      INTEGER NOT NULL,
    stored_ns  INTEGER NOT NULL,
    PRIMARY KEY (uid, key)
) WITHOUT ROWID;
CREATE INDEX artifact_usage_by_time ON artifact_usage (stored_ns);
