-- Official warnings (CAP 1.2 bulletins): one row per bulletin, keyed by its
-- CAP triple; the original XML kept as received, the parsed bulletin and
-- its profile as JSON; Update/Cancel links; feed bookkeeping.
CREATE TABLE warnings (
    id          TEXT PRIMARY KEY,        -- sender|identifier|sent (as written)
    sender      TEXT NOT NULL,
    identifier  TEXT NOT NULL,
    sent        TEXT NOT NULL,           -- as written, with its offset
    sent_ms     INTEGER NOT NULL,
    status      TEXT NOT NULL,           -- Actual, Exercise, System, Test, Draft
    msg_type    TEXT NOT NULL,           -- Alert, Update, Cancel, Ack, Error
    state       TEXT NOT NULL,           -- active, updated, cancelled, expired, not_for_commune
    hazard      TEXT,
    level       INTEGER,
    event       TEXT NOT NULL,
    headline_vi TEXT,
    sender_name TEXT,
    expires     TEXT,                    -- as written
    expires_ms  INTEGER,
    villages    TEXT NOT NULL,           -- JSON [{village, ways}]
    supersedes  TEXT,                    -- the last warning it references
    chain_root  TEXT NOT NULL,           -- the first warning of its chain
    unknown_refs TEXT NOT NULL DEFAULT '[]', -- JSON ids referenced but not stored
    origin      TEXT NOT NULL,           -- mqtt, api, feed:{name}
    deliveries  INTEGER NOT NULL DEFAULT 1,
    received_ms INTEGER NOT NULL,
    changed_ms  INTEGER NOT NULL,
    parsed      TEXT NOT NULL,           -- JSON of the validated bulletin
    xml         BLOB NOT NULL            -- the bulletin as received
);
CREATE INDEX warnings_by_sent ON warnings (sent_ms);
CREATE INDEX warnings_by_chain ON warnings (chain_root);
CREATE INDEX warnings_to_expire ON warnings (expires_ms) WHERE state = 'active';

-- An Update/Cancel/Ack/Error (from_id) referencing a bulletin (to_id),
-- stored or not (yet).
CREATE TABLE warning_links (
    from_id TEXT NOT NULL,
    to_id   TEXT NOT NULL,
    kind    TEXT NOT NULL,               -- Update, Cancel, Ack, Error
    PRIMARY KEY (from_id, to_id)
) WITHOUT ROWID;
CREATE INDEX warning_links_to ON warning_links (to_id);

-- Feed entries already fetched (each fetched once) and each feed's
-- conditional-GET validators.
CREATE TABLE warning_feed_entries (
    feed       TEXT NOT NULL,
    entry      TEXT NOT NULL,
    fetched_ms INTEGER NOT NULL,
    PRIMARY KEY (feed, entry)
) WITHOUT ROWID;
CREATE TABLE warning_feeds (
    feed          TEXT PRIMARY KEY,
    etag          TEXT,
    last_modified TEXT,
    checked_ms    INTEGER,
    ok_ms         INTEGER,
    error         TEXT
);
