-- 0008: every journal entry gets (commune, seq), gap-free per commune and
-- assigned in the same transaction as the entry (docs/PROVINCE.md §2).
-- `ref_id` is the entry's row in its own table (`events`,
-- `dead_letters`); `body` holds the entry as it was journaled for kinds
-- whose rows change later (NULL for the append-only tables).
CREATE TABLE journal_seq (
    commune TEXT NOT NULL,
    seq INTEGER NOT NULL,
    kind TEXT NOT NULL,
    ref_id INTEGER NOT NULL,
    at INTEGER NOT NULL,
    body BLOB,
    PRIMARY KEY (commune, seq)
) WITHOUT ROWID;

-- Rows written before this migration are numbered in the order they were
-- received (events before dead letters of the same millisecond, then by
-- row id). Their commune is filled in when the writer first opens the
-- store with its configuration (`journal::Store::bind_commune`); until
-- then it is ''.
INSERT INTO journal_seq (commune, seq, kind, ref_id, at)
SELECT '', ROW_NUMBER() OVER (ORDER BY at, k, id), kind, id, at FROM (
    SELECT 0 AS k, 'event' AS kind, id, received_at AS at FROM events
    UNION ALL
    SELECT 1 AS k, 'dead_letter' AS kind, id, received_at AS at FROM dead_letters
);
