-- Who runs the controllers when several servers share one database (hot standby). `token`
-- grows by one at every takeover: the fencing token every write of the holder is checked
-- against, so that a deposed holder that comes back never writes on a stale lease.
CREATE TABLE leases (
    name       TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,
    address    TEXT NOT NULL,
    token      INTEGER NOT NULL,
    expires_ns INTEGER NOT NULL
);
