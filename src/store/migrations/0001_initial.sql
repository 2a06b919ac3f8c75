-- 0001: the schema as it was before numbered migrations (commit 621b94e).
-- Every statement is IF NOT EXISTS, so a store written by that version
-- (user_version 0, tables present) passes through unchanged.

-- Journal (writer connection).
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    dedup_key TEXT NOT NULL UNIQUE,
    source TEXT NOT NULL,
    kind TEXT NOT NULL,
    device TEXT,
    village TEXT,
    ts INTEGER NOT NULL,
    received_at INTEGER NOT NULL,
    seq INTEGER,
    attrs TEXT NOT NULL,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS events_ts ON events (ts);
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY,
    dedup_key TEXT NOT NULL UNIQUE,
    reason TEXT NOT NULL,
    detail TEXT NOT NULL,
    topic TEXT NOT NULL,
    source TEXT,
    device TEXT,
    size INTEGER NOT NULL,
    received_at INTEGER NOT NULL,
    payload BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS rollup_minute (
    counter TEXT NOT NULL, scope TEXT NOT NULL, bucket INTEGER NOT NULL, value REAL NOT NULL,
    PRIMARY KEY (counter, scope, bucket)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS rollup_hour (
    counter TEXT NOT NULL, scope TEXT NOT NULL, bucket INTEGER NOT NULL, value REAL NOT NULL,
    PRIMARY KEY (counter, scope, bucket)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS state (
    key TEXT PRIMARY KEY, ts INTEGER NOT NULL, value REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS devices (
    class TEXT NOT NULL, id TEXT NOT NULL, state TEXT NOT NULL, last_seen INTEGER, detail TEXT,
    PRIMARY KEY (class, id)
) WITHOUT ROWID;

-- Dead-letter acknowledgements (API actions connection).
CREATE TABLE IF NOT EXISTS dead_letter_acks (
    dead_letter_id INTEGER PRIMARY KEY,
    acked_by TEXT NOT NULL,
    acked_at INTEGER NOT NULL
);

-- Time-series sink outbox (sink connection).
CREATE TABLE IF NOT EXISTS influx_outbox (
    id INTEGER PRIMARY KEY, line TEXT NOT NULL, ts INTEGER NOT NULL
);

-- Accounts (accounts connection).
CREATE TABLE IF NOT EXISTS users (
    id INTEGER PRIMARY KEY,
    username TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    role TEXT NOT NULL,
    disabled INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS tokens (
    id INTEGER PRIMARY KEY,
    token_hash TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    user_id INTEGER REFERENCES users(id),
    label TEXT,
    created_by TEXT,
    created_at INTEGER NOT NULL,
    expires_at INTEGER,
    revoked_at INTEGER
);

-- Audit log (accounts connection): append-only.
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at INTEGER NOT NULL,
    actor TEXT NOT NULL,
    role TEXT,
    addr TEXT,
    action TEXT NOT NULL,
    object TEXT,
    outcome TEXT NOT NULL,
    detail TEXT
);
CREATE INDEX IF NOT EXISTS audit_actor ON audit (actor, id);
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
