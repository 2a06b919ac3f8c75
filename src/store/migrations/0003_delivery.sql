-- 0003: the durable outbox of HTTP deliveries (src/delivery): province
-- report submissions, alert webhooks. A row is enqueued in its caller's
-- transaction (or alone) and sent by the delivery worker until the
-- receiver accepts it (2xx), rejects it for good, or it expires
-- (`delivery.expire_after_h` after `created_ms`).
CREATE TABLE delivery_outbox (
    id INTEGER PRIMARY KEY,
    -- Idempotency key, sent as the `Idempotency-Key` header; enqueuing an
    -- existing key changes nothing.
    key TEXT NOT NULL UNIQUE,
    -- Name of a `[delivery.targets.NAME]` entry (URL and credentials are
    -- resolved at send time, so secrets never land in the store).
    target TEXT NOT NULL,
    content_type TEXT NOT NULL,
    body BLOB NOT NULL,
    -- pending | delivered | rejected | expired
    state TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    created_ms INTEGER NOT NULL,
    -- When the next attempt is due (epoch ms); kept across restarts.
    next_attempt_ms INTEGER NOT NULL,
    last_error TEXT,
    -- The receiver's final answer (the receipt): HTTP status, the start of
    -- its body, when it came.
    receipt_status INTEGER,
    receipt_body TEXT,
    receipt_ms INTEGER,
    done_ms INTEGER
);
CREATE INDEX delivery_outbox_due ON delivery_outbox (next_attempt_ms) WHERE state = 'pending';
CREATE INDEX delivery_outbox_target ON delivery_outbox (target, id);

-- One row per attempt: when, what came back (status or transport error).
CREATE TABLE delivery_attempts (
    id INTEGER PRIMARY KEY,
    delivery_id INTEGER NOT NULL REFERENCES delivery_outbox (id) ON DELETE CASCADE,
    attempt INTEGER NOT NULL,
    started_ms INTEGER NOT NULL,
    finished_ms INTEGER NOT NULL,
    url TEXT NOT NULL,
    status INTEGER,
    error TEXT,
    body_excerpt TEXT
);
CREATE INDEX delivery_attempts_delivery ON delivery_attempts (delivery_id, attempt);
