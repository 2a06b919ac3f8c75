-- 0004: sealed periodic reports (issue 13; docs/REPORTS.md, STORAGE.md).

-- Per period and stream (source family): the RFC 6962 Merkle frontier of
-- the canonical hashes of the events counted, kept by the journal writer
-- in each batch's transaction. `rule` is the regime and grace it was
-- built with (`stale`: rebuild from the journal before sealing).
CREATE TABLE report_streams (
    period TEXT NOT NULL,
    stream TEXT NOT NULL,
    count INTEGER NOT NULL,
    first_ts INTEGER,
    last_ts INTEGER,
    frontier BLOB NOT NULL,
    rule TEXT NOT NULL,
    PRIMARY KEY (period, stream)
) WITHOUT ROWID;

-- The late ledger: events of a period received after its cutoff (end +
-- grace). Written by the journal writer; never counted in the sealed
-- revision 0.
CREATE TABLE report_late (
    id INTEGER PRIMARY KEY,
    period TEXT NOT NULL,
    dedup_key TEXT NOT NULL,
    stream TEXT NOT NULL,
    ts INTEGER NOT NULL,
    received_at INTEGER NOT NULL,
    UNIQUE (period, dedup_key)
);

-- Sealed documents, as the exact bytes served and signed. Immutable.
CREATE TABLE reports (
    id INTEGER PRIMARY KEY,
    period TEXT NOT NULL,
    revision INTEGER NOT NULL,
    digest TEXT NOT NULL UNIQUE,
    supersedes TEXT,
    document BLOB NOT NULL,
    sealed_wall INTEGER NOT NULL,
    sealed_by TEXT NOT NULL,
    UNIQUE (period, revision)
);
CREATE TRIGGER reports_no_update BEFORE UPDATE ON reports
BEGIN SELECT RAISE(ABORT, 'a sealed report never changes'); END;
CREATE TRIGGER reports_no_delete BEFORE DELETE ON reports
BEGIN SELECT RAISE(ABORT, 'a sealed report never changes'); END;

-- Correction drafts, made when late events move a sealed value past the
-- threshold: the unsigned body of revision n + 1, waiting for approval.
CREATE TABLE report_drafts (
    id INTEGER PRIMARY KEY,
    period TEXT NOT NULL,
    base_digest TEXT NOT NULL,
    cutoff INTEGER NOT NULL,
    late_events INTEGER NOT NULL,
    changes TEXT NOT NULL,
    body BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    state TEXT NOT NULL DEFAULT 'open',
    decided_by TEXT,
    decided_at INTEGER,
    reason TEXT
);
CREATE INDEX report_drafts_period ON report_drafts (period, state);

-- Delivery state of a sealed revision (submitted, acknowledged), written
-- by the delivery side (reports::export / delivery).
CREATE TABLE report_delivery (
    digest TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    at INTEGER NOT NULL,
    detail TEXT
);

-- Events journaled before this migration have no manifest entries: a
-- period holding any of them is rebuilt from the journal when sealed.
INSERT OR REPLACE INTO meta (key, value)
SELECT 'report_intake_from', CAST(COALESCE(MAX(id), 0) AS TEXT) FROM events;
