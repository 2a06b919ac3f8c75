-- 0005: alerts (src/alerts): the alert lifecycle, silences, grouping.
-- Written by the alerts engine's connection and the API actions
-- connection (acknowledge, resolve, silences).

-- One row per alert: an alert is `firing` until it is `resolved`; a
-- fingerprint that fires again after that gets a new row.
CREATE TABLE alerts (
    id INTEGER PRIMARY KEY,
    -- Stable identity: `rule:{rule}:{subject}` or `warning:{first bulletin id}`.
    fingerprint TEXT NOT NULL,
    -- warning | threshold | absence | camera | group_offline
    kind TEXT NOT NULL,
    rule TEXT,
    -- 1 for official warnings relayed, 0 for the commune's own rules.
    official INTEGER NOT NULL,
    severity TEXT NOT NULL,
    hazard TEXT,
    level INTEGER,
    -- JSON array of village ids.
    villages TEXT NOT NULL,
    device TEXT,
    -- Vietnamese title and message (templates), JSON details.
    title TEXT NOT NULL,
    message TEXT NOT NULL,
    details TEXT NOT NULL,
    -- The newest bulletin id (warnings).
    ref TEXT,
    -- firing | resolved
    state TEXT NOT NULL,
    -- 1 while the data behind a firing alert is stale (never resolves it).
    stale INTEGER NOT NULL DEFAULT 0,
    occurrences INTEGER NOT NULL DEFAULT 1,
    first_seen INTEGER NOT NULL,
    last_seen INTEGER NOT NULL,
    -- Resolves by itself at this time (camera quiet, warning expiry).
    ends_at INTEGER,
    resolved_at INTEGER,
    resolved_by TEXT,
    acked_at INTEGER,
    acked_by TEXT,
    -- Grouping and escalation: the group, the next notification's time,
    -- the next ladder step, repeats sent after the last step, the first
    -- notification, whether the resolution was notified.
    group_key TEXT NOT NULL,
    notify_at INTEGER,
    esc_step INTEGER NOT NULL DEFAULT 0,
    repeat_n INTEGER NOT NULL DEFAULT 0,
    notified_at INTEGER,
    resolve_notified INTEGER NOT NULL DEFAULT 0
);
-- Exactly one active alert per fingerprint, whoever writes.
CREATE UNIQUE INDEX alerts_one_active ON alerts (fingerprint) WHERE state = 'firing';
CREATE INDEX alerts_due ON alerts (notify_at) WHERE notify_at IS NOT NULL;
CREATE INDEX alerts_by_state ON alerts (state, id);
CREATE INDEX alerts_ref ON alerts (ref) WHERE ref IS NOT NULL;

-- When each group was last notified (group_interval).
CREATE TABLE alert_groups (
    group_key TEXT PRIMARY KEY,
    last_sent INTEGER NOT NULL
) WITHOUT ROWID;

-- Silences (Alertmanager semantics): alerts matching every matcher get no
-- notification between starts_at and ends_at. Deleting one ends it now
-- (the row stays, with who ended it).
CREATE TABLE alert_silences (
    id INTEGER PRIMARY KEY,
    -- JSON array of {name, value}.
    matchers TEXT NOT NULL,
    starts_at INTEGER NOT NULL,
    ends_at INTEGER NOT NULL,
    created_by TEXT NOT NULL,
    comment TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    ended_by TEXT
);
CREATE INDEX alert_silences_ends ON alert_silences (ends_at);
