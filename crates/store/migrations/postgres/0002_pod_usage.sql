-- PostgreSQL's form of migrations/sqlite/0002_pod_usage.sql.
CREATE TABLE pod_usage (
    pod        TEXT NOT NULL,
    started_ns BIGINT NOT NULL,
    ended_ns   BIGINT,
    asked_ns   BIGINT NOT NULL,
    namespace  TEXT NOT NULL,
    queue      TEXT NOT NULL,
    node       TEXT NOT NULL,
    gpus       DOUBLE PRECISION NOT NULL,
    cpus       DOUBLE PRECISION NOT NULL,
    devices    TEXT NOT NULL,
    PRIMARY KEY (pod, started_ns)
);
CREATE INDEX pod_usage_by_time ON pod_usage (started_ns);
CREATE INDEX pod_usage_open ON pod_usage (pod) WHERE ended_ns IS NULL;
