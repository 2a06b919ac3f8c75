//! The province's insert path: entries that arrive already numbered by
//! their commune (docs/PROVINCE.md §6). Each keeps the commune's
//! `(commune, seq)`; `journal_seq`'s primary key makes a re-delivered entry
//! change nothing (`INSERT OR IGNORE`), and a seq that never arrives stays
//! missing: [`Store::gaps`] lists it, nothing fills it in.
//!
//! Events and dead letters go to their own tables as on the commune (the
//! same rows, so the commune's screen and API work on the copy), with the
//! rows derived from the new events in the same transaction; other kinds
//! (warnings, reports, alerts, broadcasts) keep their body in
//! `journal_seq`. A running digest of the entries (an order-independent sum
//! of their hashes, `meta.province_digest`) lets two instances compare
//! their copies without reading them.

use rusqlite::{params, Connection, OptionalExtension};
use sha2::{Digest, Sha256};

use super::{
    insert_dead, insert_event, meta_on, upsert_meta, write_derived, BatchOutcome, Derived,
    JournalError, NewDeadLetter, NewEvent, Store,
};

/// `meta` key of the running digest.
pub const DIGEST_KEY: &str = "province_digest";

/// What a numbered entry holds.
#[derive(Debug, Clone, Copy)]
pub enum Item<'a> {
    /// The event at this index of the batch's events.
    Event(usize),
    /// The dead letter at this index of the batch's dead letters.
    Dead(usize),
    /// Another kind, with its body as journaled.
    Body {
        /// Kind.
        kind: &'a str,
        /// Body (JSON).
        body: &'a [u8],
    },
}

/// One entry of a commune's journal, with its number.
#[derive(Debug, Clone, Copy)]
pub struct Numbered<'a> {
    /// The commune's seq; `None` for a dead letter of the province's own (a
    /// message without a readable number).
    pub seq: Option<i64>,
    /// When the commune journaled it, ms UTC.
    pub at_ms: i64,
    /// What it holds.
    pub item: Item<'a>,
}

/// What a numbered batch changed.
#[derive(Debug, Default)]
pub struct NumberedOutcome {
    /// Indices (in the input) of the entries that were new.
    pub new: Vec<usize>,
    /// New events and dead letters, as [`Store::write_batch`] reports them.
    pub batch: BatchOutcome,
    /// The digest after the batch.
    pub digest: u128,
}

/// The hash of one entry: its seq, kind and content (dedup key or body).
pub fn entry_hash(seq: i64, kind: &str, content: &[u8]) -> u128 {
    let mut h = Sha256::new();
    h.update(seq.to_be_bytes());
    h.update(kind.as_bytes());
    h.update([0]);
    h.update(content);
    let out = h.finalize();
    let mut b = [0u8; 16];
    b.copy_from_slice(&out[..16]);
    u128::from_be_bytes(b)
}

fn digest_on(conn: &Connection) -> Result<u128, JournalError> {
    Ok(meta_on(conn, DIGEST_KEY)?
        .and_then(|v| u128::from_str_radix(&v, 16).ok())
        .unwrap_or(0))
}

/// A run of missing seqs, both ends included.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Gap {
    /// First missing.
    pub from: i64,
    /// Last missing.
    pub to: i64,
}

/// Counts of a commune's copy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopyStats {
    /// Highest seq held.
    pub head: i64,
    /// Entries held.
    pub entries: i64,
    /// Entries per kind.
    pub kinds: std::collections::BTreeMap<String, i64>,
    /// When the newest entry (by seq) was journaled at the commune, ms UTC.
    pub last_at_ms: Option<i64>,
}

impl Store {
    /// Write entries numbered by `commune`, in one transaction: new ones are
    /// inserted with their seq, re-delivered ones change nothing; `derive`
    /// computes the rollups and device health from the new events, written
    /// in the same transaction. `mirror` applies each new body entry
    /// (`seq`, kind, body) to the tables its kind is kept in, in the same
    /// transaction, and returns the row it is about (`journal_seq.ref_id`).
    pub fn write_numbered<F, M>(
        &mut self,
        commune: &str,
        entries: &[Numbered<'_>],
        events: &[NewEvent<'_>],
        dead: &[NewDeadLetter<'_>],
        derive: F,
        mut mirror: M,
    ) -> Result<(NumberedOutcome, Derived), JournalError>
    where
        F: FnOnce(&BatchOutcome) -> Derived,
        M: FnMut(&Connection, i64, &str, &[u8]) -> Result<Option<i64>, rusqlite::Error>,
    {
        // Immediate: the digest is read before anything is written, and a
        // deferred transaction could not upgrade its read lock if another
        // connection (the site's report or alert writers) wrote meanwhile.
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let mut out = NumberedOutcome {
            digest: digest_on(&tx)?,
            ..Default::default()
        };
        {
            let mut number = tx.prepare_cached(
                "INSERT OR IGNORE INTO journal_seq (commune, seq, kind, ref_id, at, body) VALUES (?1, ?2, ?3, 0, ?4, ?5)",
            )?;
            let mut point = tx.prepare_cached(
                "UPDATE journal_seq SET ref_id = ?3 WHERE commune = ?1 AND seq = ?2",
            )?;
            for (k, entry) in entries.iter().enumerate() {
                let (kind, body, key): (&str, Option<&[u8]>, &[u8]) = match entry.item {
                    Item::Event(i) => (
                        super::seq::kind::EVENT,
                        None,
                        events[i].event.dedup_key.as_bytes(),
                    ),
                    Item::Dead(i) => (
                        super::seq::kind::DEAD_LETTER,
                        None,
                        dead[i].dedup_key.as_bytes(),
                    ),
                    Item::Body { kind, body } => (kind, Some(body), body),
                };
                if let Some(seq) = entry.seq {
                    if number.execute(params![commune, seq, kind, entry.at_ms, body])? == 0 {
                        continue;
                    }
                    out.digest = out.digest.wrapping_add(entry_hash(seq, kind, key));
                }
                out.new.push(k);
                let row = match entry.item {
                    Item::Event(i) => {
                        let attrs = serde_json::to_string(&events[i].event.attrs)
                            .unwrap_or_else(|_| "{}".into());
                        if insert_event(&tx, &events[i], &attrs)? == 1 {
                            out.batch.new_events.push(i);
                            Some(tx.last_insert_rowid())
                        } else {
                            tx.query_row(
                                "SELECT id FROM events WHERE dedup_key = ?1",
                                [&events[i].event.dedup_key],
                                |r| r.get(0),
                            )
                            .optional()?
                        }
                    }
                    Item::Dead(i) => {
                        if insert_dead(&tx, &dead[i])? == 1 {
                            out.batch.new_dead.push(i);
                            Some(tx.last_insert_rowid())
                        } else {
                            tx.query_row(
                                "SELECT id FROM dead_letters WHERE dedup_key = ?1",
                                [&dead[i].dedup_key],
                                |r| r.get(0),
                            )
                            .optional()?
                        }
                    }
                    Item::Body { kind, body } => match entry.seq {
                        Some(seq) => mirror(&tx, seq, kind, body)?,
                        None => None,
                    },
                };
                if let (Some(seq), Some(row)) = (entry.seq, row) {
                    point.execute(params![commune, seq, row])?;
                }
            }
            upsert_meta(&tx, DIGEST_KEY, &format!("{:032x}", out.digest))?;
        }
        let derived = derive(&out.batch);
        write_derived(&tx, &derived)?;
        tx.commit()?;
        Ok((out, derived))
    }

    /// The running digest of the entries held.
    pub fn copy_digest(&self) -> Result<u128, JournalError> {
        digest_on(&self.conn)
    }

    /// The seqs missing below the highest one held for `commune`.
    pub fn gaps(&self, commune: &str, limit: usize) -> Result<Vec<Gap>, JournalError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT prev + 1, seq - 1 FROM (
                 SELECT seq, LAG(seq, 1, 0) OVER (ORDER BY seq) AS prev
                 FROM journal_seq WHERE commune = ?1)
             WHERE seq - prev > 1 ORDER BY seq LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![commune, limit as i64], |r| {
            Ok(Gap {
                from: r.get(0)?,
                to: r.get(1)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Counts of the copy of `commune`.
    pub fn copy_stats(&self, commune: &str) -> Result<CopyStats, JournalError> {
        let mut stats = CopyStats::default();
        let mut stmt = self.conn.prepare_cached(
            "SELECT kind, count(*), max(seq) FROM journal_seq WHERE commune = ?1 GROUP BY kind",
        )?;
        let rows = stmt.query_map([commune], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })?;
        for row in rows {
            let (kind, n, max) = row?;
            stats.entries += n;
            stats.head = stats.head.max(max);
            stats.kinds.insert(kind, n);
        }
        stats.last_at_ms = self
            .conn
            .query_row(
                "SELECT at FROM journal_seq WHERE commune = ?1 ORDER BY seq DESC LIMIT 1",
                [commune],
                |r| r.get(0),
            )
            .optional()?;
        Ok(stats)
    }

    /// The bodies of `kind` entries of `commune`, in seq order: (seq, at,
    /// body).
    pub fn bodies(
        &self,
        commune: &str,
        kind: &str,
    ) -> Result<Vec<(i64, i64, Vec<u8>)>, JournalError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT seq, at, body FROM journal_seq WHERE commune = ?1 AND kind = ?2 AND body IS NOT NULL ORDER BY seq",
        )?;
        let rows = stmt.query_map(params![commune, kind], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Event, Reason, Source};
    use chrono::{TimeZone, Utc};

    fn event(key: &str) -> Event {
        Event {
            source: Source::Sensor,
            kind: "telemetry".into(),
            device: Some("s-1".into()),
            village: None,
            ts: Utc.timestamp_millis_opt(1_000).unwrap(),
            received_at: Utc.timestamp_millis_opt(2_000).unwrap(),
            seq: None,
            attrs: Default::default(),
            dedup_key: key.into(),
            retained: false,
        }
    }

    fn no_mirror(
        _: &Connection,
        _: i64,
        _: &str,
        _: &[u8],
    ) -> Result<Option<i64>, rusqlite::Error> {
        Ok(None)
    }

    fn write(store: &mut Store, seqs: &[i64]) -> NumberedOutcome {
        let evs: Vec<Event> = seqs.iter().map(|s| event(&format!("k{s}"))).collect();
        let new: Vec<NewEvent<'_>> = evs
            .iter()
            .map(|e| NewEvent {
                event: e,
                topic: "t",
                payload: b"{}",
            })
            .collect();
        let entries: Vec<Numbered<'_>> = seqs
            .iter()
            .enumerate()
            .map(|(i, &s)| Numbered {
                seq: Some(s),
                at_ms: 2_000 + s,
                item: Item::Event(i),
            })
            .collect();
        store
            .write_numbered("xa", &entries, &new, &[], |_| Derived::default(), no_mirror)
            .unwrap()
            .0
    }

    #[test]
    fn a_redelivered_entry_changes_nothing_and_a_gap_stays_a_gap() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("j.db")).unwrap();
        let first = write(&mut store, &[1, 2, 3]);
        assert_eq!(first.new, vec![0, 1, 2]);
        let again = write(&mut store, &[2, 3]);
        assert!(again.new.is_empty(), "{:?}", again.new);
        assert_eq!(again.digest, first.digest);
        write(&mut store, &[6, 7]);
        assert_eq!(store.gaps("xa", 10).unwrap(), vec![Gap { from: 4, to: 5 }]);
        let s = store.copy_stats("xa").unwrap();
        assert_eq!((s.head, s.entries), (7, 5));
        assert_eq!(s.last_at_ms, Some(2_007));
        // The late entry fills its place; the gap shrinks to what is
        // still missing.
        write(&mut store, &[4]);
        assert_eq!(store.gaps("xa", 10).unwrap(), vec![Gap { from: 5, to: 5 }]);
    }

    #[test]
    fn the_digest_does_not_depend_on_arrival_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = Store::open(&dir.path().join("a.db")).unwrap();
        let mut b = Store::open(&dir.path().join("b.db")).unwrap();
        write(&mut a, &[1, 2, 3, 4]);
        write(&mut b, &[3, 4]);
        write(&mut b, &[1, 2, 4]);
        assert_eq!(a.copy_digest().unwrap(), b.copy_digest().unwrap());
        write(&mut b, &[5]);
        assert_ne!(a.copy_digest().unwrap(), b.copy_digest().unwrap());
    }

    #[test]
    fn bodies_and_dead_letters_keep_their_place() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("j.db")).unwrap();
        let dead = [NewDeadLetter {
            dedup_key: "d1".into(),
            reason: Reason::InvalidJson,
            detail: "x",
            topic: "t",
            source: None,
            device: None,
            payload: b"{nope",
            received_at: Utc.timestamp_millis_opt(5).unwrap(),
            size: Some(9000),
        }];
        let entries = [
            Numbered {
                seq: Some(1),
                at_ms: 5,
                item: Item::Dead(0),
            },
            Numbered {
                seq: Some(2),
                at_ms: 6,
                item: Item::Body {
                    kind: "warning",
                    body: br#"{"id":"w"}"#,
                },
            },
        ];
        let (out, _) = store
            .write_numbered(
                "xa",
                &entries,
                &[],
                &dead,
                |_| Derived::default(),
                no_mirror,
            )
            .unwrap();
        assert_eq!(out.batch.new_dead, vec![0]);
        assert_eq!(
            store.bodies("xa", "warning").unwrap(),
            vec![(2, 6, br#"{"id":"w"}"#.to_vec())]
        );
        let size: i64 = store
            .conn()
            .query_row("SELECT size FROM dead_letters", [], |r| r.get(0))
            .unwrap();
        assert_eq!(size, 9000);
        let s = store.copy_stats("xa").unwrap();
        assert_eq!(s.kinds.get("dead_letter"), Some(&1));
        assert_eq!(s.kinds.get("warning"), Some(&1));
    }
}
