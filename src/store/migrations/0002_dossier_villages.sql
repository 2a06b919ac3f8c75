-- 0002: each dossier's village, from its `received` event, so that its
-- later `resolved` and `paid` events (which carry no village) count for
-- that village. Written by the journal writer in the batch's transaction.
CREATE TABLE dossiers (
    dossier_id TEXT PRIMARY KEY,
    village TEXT NOT NULL
) WITHOUT ROWID;

-- Villages of the dossiers already in the journal.
INSERT OR IGNORE INTO dossiers (dossier_id, village)
SELECT json_extract(attrs, '$.dossier_id'), village
FROM events
WHERE source = 'procedure' AND kind = 'received' AND village IS NOT NULL
  AND json_extract(attrs, '$.dossier_id') IS NOT NULL
ORDER BY id;

-- Attribute their earlier village-less events (the raw payload is kept as
-- it came) ...
UPDATE events
SET village = (SELECT d.village FROM dossiers d
               WHERE d.dossier_id = json_extract(events.attrs, '$.dossier_id'))
WHERE source = 'procedure' AND village IS NULL
  AND json_extract(attrs, '$.dossier_id') IN (SELECT dossier_id FROM dossiers);

-- ... and rebuild the rollups from the journal on the next start (the
-- signature no longer matches), so per-village ratios include them.
DELETE FROM meta WHERE key = 'counters';
