-- 0006: loudspeaker broadcasts (src/broadcasts): plans, their clusters,
-- the durable speaker commands (one per cluster and play, retried until
-- acknowledged or expired), and manual tasks (call the village head).
-- Written by the broadcasts worker's connection and the API actions
-- connection (draft, approve, cancel, task done). Times are Unix ms.

CREATE TABLE broadcasts (
    id INTEGER PRIMARY KEY,
    -- warning | operator
    origin TEXT NOT NULL,
    -- The bulletin this plan relays (newest of its chain), and the chain's
    -- first bulletin (an Update re-plans under the same chain).
    warning_id TEXT,
    chain TEXT,
    -- routine | priority | emergency (Thông tư 39/2020)
    priority TEXT NOT NULL,
    -- JSON array of village ids.
    villages TEXT NOT NULL,
    text_vi TEXT NOT NULL,
    text_ethnic TEXT,
    language TEXT,
    repeats INTEGER NOT NULL,
    gap_secs INTEGER NOT NULL,
    -- The bulletin's original issue time (RFC 3339 as issued), if any.
    issued TEXT,
    issued_ms INTEGER,
    expires_ms INTEGER NOT NULL,
    -- draft | approved | cancelled | superseded | expired | completed
    state TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    created_by TEXT NOT NULL,
    approved_ms INTEGER,
    approved_by TEXT,
    ended_ms INTEGER,
    ended_by TEXT,
    end_reason TEXT,
    -- A random nonce in every command key of this plan (so a reset store
    -- never reuses a key a device has seen).
    nonce TEXT NOT NULL
);
CREATE INDEX broadcasts_chain ON broadcasts (chain);
CREATE INDEX broadcasts_state ON broadcasts (state);

-- The clusters serving the plan's villages (FE ones too: they get no
-- command, their village gets a manual task).
CREATE TABLE broadcast_clusters (
    broadcast_id INTEGER NOT NULL REFERENCES broadcasts (id),
    speaker TEXT NOT NULL,
    village TEXT NOT NULL,
    -- smart | fe
    kind TEXT NOT NULL,
    PRIMARY KEY (broadcast_id, speaker)
);

-- One command per (plan, cluster, play). The payload is written once and
-- sent byte for byte on every attempt: the key never changes, so the
-- device's de-duplication makes a resend harmless.
CREATE TABLE speaker_commands (
    id INTEGER PRIMARY KEY,
    broadcast_id INTEGER NOT NULL REFERENCES broadcasts (id),
    speaker TEXT NOT NULL,
    play INTEGER NOT NULL,
    key TEXT NOT NULL UNIQUE,
    priority TEXT NOT NULL,
    payload TEXT NOT NULL,
    -- pending | sent | acknowledged | playing | completed | failed |
    -- cancelled | expired
    state TEXT NOT NULL,
    -- Set once a command sent but never acknowledged passed the timeout.
    unreachable INTEGER NOT NULL DEFAULT 0,
    not_before_ms INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL,
    next_attempt_ms INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    first_sent_ms INTEGER,
    last_sent_ms INTEGER,
    acked_ms INTEGER,
    started_ms INTEGER,
    ended_ms INTEGER,
    -- The device's last answer (status and reason), as received.
    answer TEXT,
    UNIQUE (broadcast_id, speaker, play)
);
CREATE INDEX speaker_commands_due ON speaker_commands (state, next_attempt_ms);
CREATE INDEX speaker_commands_speaker ON speaker_commands (speaker, state);

-- Manual tasks: call the village head (FE-only village, clusters that
-- never acknowledged, no cluster at all).
CREATE TABLE broadcast_tasks (
    id INTEGER PRIMARY KEY,
    broadcast_id INTEGER NOT NULL REFERENCES broadcasts (id),
    village TEXT NOT NULL,
    -- fe_only | unreachable | no_cluster
    reason TEXT NOT NULL,
    head_name TEXT,
    head_phone TEXT,
    -- open | done | cancelled
    state TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    done_ms INTEGER,
    done_by TEXT,
    note TEXT,
    UNIQUE (broadcast_id, village)
);
