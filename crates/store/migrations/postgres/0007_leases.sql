-- PostgreSQL's form of migrations/sqlite/0007_leases.sql.
CREATE TABLE leases (
    name       TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,
    address    TEXT NOT NULL,
    token      BIGINT NOT NULL,
    expires_ns BIGINT NOT NULL
);
