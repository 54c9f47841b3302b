-- What each pod held of the GPUs and CPUs, from its grant to its release: the ledger GPU- and
-- CPU-hours per namespace and queue are read from. `gpus` is GPU equivalents: a whole GPU 1, a fraction its
-- share, a MIG instance its compute slices over 7 (as Kubecost counts shared GPUs).
-- `asked_ns` is when the pod asked to be scheduled (its wait is `started_ns - asked_ns`);
-- `ended_ns` is NULL while the pod holds them.
CREATE TABLE pod_usage (
    pod        TEXT NOT NULL,
    started_ns INTEGER NOT NULL,
    ended_ns   INTEGER,
    asked_ns   INTEGER NOT NULL,
    namespace  TEXT NOT NULL,
    queue      TEXT NOT NULL,
    node       TEXT NOT NULL,
    gpus       REAL NOT NULL,
    -- CPU cores its requests add up to.
    cpus       REAL NOT NULL,
    -- The devices as the scheduler names them (`3`, `3/2` for MIG instance 2 of GPU 3), comma-separated.
    devices    TEXT NOT NULL,
    PRIMARY KEY (pod, started_ns)
) WITHOUT ROWID;
CREATE INDEX pod_usage_by_time ON pod_usage (started_ns);
CREATE INDEX pod_usage_open ON pod_usage (pod) WHERE ended_ns IS NULL;
