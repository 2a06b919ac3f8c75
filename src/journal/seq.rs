//! `(commune, seq)`: the number every journal entry gets, gap-free per
//! commune, in the same transaction as the entry (table `journal_seq`,
//! migration 8). The uplink forwards the journal in this order from a
//! cursor, and a receiver (the province) detects gaps and drops duplicates
//! by the pair (docs/PROVINCE.md).
//!
//! A store belongs to one commune: [`Store::bind_commune`] records it in
//! `meta` on the first start and refuses a store written for another one
//! (its numbers would collide with that commune's at the province).

use rusqlite::{params, Connection, OptionalExtension};

use super::{upsert_meta, JournalError, Store};

/// `meta` key: the commune this store journals for.
pub const COMMUNE_KEY: &str = "commune";

/// Entry kinds (also the last token of the uplink subject).
pub mod kind {
    /// An event (`events` row).
    pub const EVENT: &str = "event";
    /// A dead letter (`dead_letters` row).
    pub const DEAD_LETTER: &str = "dead_letter";
    /// An official warning created or changed (the warning as it then
    /// stood, in `body`).
    pub const WARNING: &str = "warning";
    /// A sealed report or correction (`reports` row; period, revision,
    /// digest and the signed document in `body`).
    pub const REPORT: &str = "report";
    /// An alert raised or changed (acknowledged, resolved, escalated, its
    /// data stale or back, raised again with other values): the alert as
    /// it then stood, with `change`, in `body`.
    pub const ALERT: &str = "alert";
    /// An alert silence created or ended early (the silence, with
    /// `change`, in `body`).
    pub const ALERT_SILENCE: &str = "alert_silence";
    /// A loudspeaker broadcast drafted or changed (approved, a command
    /// sent, answered or ended, a manual task opened or done, the plan
    /// ended): the broadcast with its commands and tasks as it then stood,
    /// with `change`, in `body`.
    pub const BROADCAST: &str = "broadcast";
}

/// Whether `commune`'s journal holds an entry of `kind` about row `ref_id`
/// numbered after `seq` (the province's mirrors: an entry that arrives
/// after a newer one of the same row must not undo it).
pub fn newer_exists(
    conn: &Connection,
    commune: &str,
    seq: i64,
    kind: &str,
    ref_id: i64,
) -> rusqlite::Result<bool> {
    conn.prepare_cached(
        "SELECT EXISTS (SELECT 1 FROM journal_seq WHERE commune = ?1 AND seq > ?2 \
         AND kind = ?3 AND ref_id = ?4)",
    )?
    .query_row(params![commune, seq, kind, ref_id], |r| r.get(0))
}

/// One entry to number: its kind, its row in the kind's table, when it
/// was journaled (ms UTC) and, for rows that change later, the entry as it
/// is now.
#[derive(Debug, Clone)]
pub struct NewEntry<'a> {
    /// Kind ([`kind`]).
    pub kind: &'a str,
    /// Row id in the kind's own table.
    pub ref_id: i64,
    /// When journaled, ms UTC.
    pub at_ms: i64,
    /// The entry itself, for kinds whose rows change later.
    pub body: Option<&'a [u8]>,
}

/// Number `entries` for `commune` inside the caller's transaction, after
/// the last number; the numbers given (first, last), or None for no entry.
/// Call it after a write in the same transaction (so the write lock is
/// held and no other connection numbers in between: the primary key would
/// refuse a second use of a number anyway).
pub fn append(
    tx: &Connection,
    commune: &str,
    entries: &[NewEntry<'_>],
) -> Result<Option<(i64, i64)>, JournalError> {
    if entries.is_empty() {
        return Ok(None);
    }
    let last = head_on(tx, commune)?;
    let mut ins = tx.prepare_cached(
        "INSERT INTO journal_seq (commune, seq, kind, ref_id, at, body) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    let mut seq = last;
    for e in entries {
        seq += 1;
        ins.execute(params![commune, seq, e.kind, e.ref_id, e.at_ms, e.body])?;
    }
    Ok(Some((last + 1, seq)))
}

/// [`append`] for the commune the store is bound to (`meta.commune`; ''
/// before the first `serve`, filled in then): for writers on connections
/// of their own (warnings, reports).
pub fn append_bound(
    tx: &Connection,
    entries: &[NewEntry<'_>],
) -> Result<Option<(i64, i64)>, JournalError> {
    if entries.is_empty() {
        return Ok(None);
    }
    let commune: String = tx
        .query_row(
            "SELECT value FROM meta WHERE key = ?1",
            [COMMUNE_KEY],
            |r| r.get(0),
        )
        .optional()?
        .unwrap_or_default();
    append(tx, &commune, entries)
}

fn head_on(conn: &Connection, commune: &str) -> Result<i64, JournalError> {
    Ok(conn.query_row(
        "SELECT coalesce(max(seq), 0) FROM journal_seq WHERE commune = ?1",
        [commune],
        |r| r.get(0),
    )?)
}

/// What a numbered entry holds, read back for forwarding.
#[derive(Debug, Clone, PartialEq)]
pub enum Content {
    /// An event row.
    Event(EventRow),
    /// A dead-letter row.
    DeadLetter(DeadLetterRow),
    /// The stored body (kinds whose rows change later).
    Body(Vec<u8>),
    /// The referenced row is missing (never happens: events and dead
    /// letters are append-only).
    Missing,
}

/// An `events` row as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRow {
    /// Row id.
    pub id: i64,
    /// Dedup key.
    pub dedup_key: String,
    /// Source family.
    pub source: String,
    /// Event kind.
    pub kind: String,
    /// Device.
    pub device: Option<String>,
    /// Village.
    pub village: Option<String>,
    /// Event time, ms UTC.
    pub ts_ms: i64,
    /// Receive time, ms UTC.
    pub received_at_ms: i64,
    /// The device's own sequence number, if it sent one.
    pub device_seq: Option<i64>,
    /// Normalised attributes (JSON object text).
    pub attrs: String,
    /// MQTT topic.
    pub topic: String,
    /// Raw payload.
    pub payload: Vec<u8>,
}

/// A `dead_letters` row as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetterRow {
    /// Row id.
    pub id: i64,
    /// Dedup key.
    pub dedup_key: String,
    /// Reason code.
    pub reason: String,
    /// Detail.
    pub detail: String,
    /// MQTT topic.
    pub topic: String,
    /// Source family, when known.
    pub source: Option<String>,
    /// Device, when named.
    pub device: Option<String>,
    /// Size of the whole payload, bytes.
    pub size: i64,
    /// Receive time, ms UTC.
    pub received_at_ms: i64,
    /// The payload as kept (the first 4,096 bytes when oversized).
    pub payload: Vec<u8>,
}

/// A numbered entry read back.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Its number.
    pub seq: i64,
    /// Its kind.
    pub kind: String,
    /// When journaled, ms UTC.
    pub at_ms: i64,
    /// What it holds.
    pub content: Content,
}

impl Entry {
    /// Bytes of payload and body it carries (for batch bounds).
    pub fn weight(&self) -> usize {
        match &self.content {
            Content::Event(e) => e.payload.len() + e.attrs.len() + 256,
            Content::DeadLetter(d) => d.payload.len() + d.detail.len() + 256,
            Content::Body(b) => b.len() + 64,
            Content::Missing => 64,
        }
    }
}

impl Store {
    /// Record the commune this store journals for, on the first start
    /// (numbering the entries written before it was known), or check it:
    /// a store journaled for another commune is refused.
    pub fn bind_commune(&mut self, commune: &str) -> Result<(), JournalError> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let bound: Option<String> = tx
            .query_row(
                "SELECT value FROM meta WHERE key = ?1",
                [COMMUNE_KEY],
                |r| r.get(0),
            )
            .optional()?;
        match bound {
            Some(b) if b == commune => {}
            Some(b) => {
                return Err(JournalError::OtherCommune {
                    store: b,
                    config: commune.to_owned(),
                })
            }
            None => {
                tx.execute(
                    "UPDATE journal_seq SET commune = ?1 WHERE commune = ''",
                    [commune],
                )?;
                upsert_meta(&tx, COMMUNE_KEY, commune)?;
            }
        }
        tx.commit()?;
        self.commune = commune.to_owned();
        Ok(())
    }

    /// The commune entries are numbered for ('' until bound).
    pub fn commune(&self) -> &str {
        &self.commune
    }

    /// The last number given to `commune` (0: none).
    pub fn journal_head(&self, commune: &str) -> Result<i64, JournalError> {
        head_on(&self.conn, commune)
    }

    /// When entry `seq` of `commune` was journaled (ms UTC), if it exists.
    pub fn journaled_at(&self, commune: &str, seq: i64) -> Result<Option<i64>, JournalError> {
        Ok(self
            .conn
            .query_row(
                "SELECT at FROM journal_seq WHERE commune = ?1 AND seq = ?2",
                params![commune, seq],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Entries of `commune` after `after`, in order: at most `limit`, and
    /// no more once `max_bytes` of payload is reached (at least one).
    pub fn entries_after(
        &self,
        commune: &str,
        after: i64,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<Entry>, JournalError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT j.seq, j.kind, j.at, j.body,
                    e.id, e.dedup_key, e.source, e.kind, e.device, e.village, e.ts, e.received_at, e.seq, e.attrs, e.topic, e.payload,
                    d.id, d.dedup_key, d.reason, d.detail, d.topic, d.source, d.device, d.size, d.received_at, d.payload
             FROM journal_seq j
             LEFT JOIN events e ON j.kind = 'event' AND e.id = j.ref_id
             LEFT JOIN dead_letters d ON j.kind = 'dead_letter' AND d.id = j.ref_id
             WHERE j.commune = ?1 AND j.seq > ?2
             ORDER BY j.seq LIMIT ?3",
        )?;
        let mut rows = stmt.query(params![commune, after, limit as i64])?;
        let mut out = Vec::new();
        let mut bytes = 0usize;
        while let Some(r) = rows.next()? {
            let seq: i64 = r.get(0)?;
            let kind: String = r.get(1)?;
            let at_ms: i64 = r.get(2)?;
            let body: Option<Vec<u8>> = r.get(3)?;
            let event_id: Option<i64> = r.get(4)?;
            let dead_id: Option<i64> = r.get(16)?;
            let content = if let Some(id) = event_id {
                Content::Event(EventRow {
                    id,
                    dedup_key: r.get(5)?,
                    source: r.get(6)?,
                    kind: r.get(7)?,
                    device: r.get(8)?,
                    village: r.get(9)?,
                    ts_ms: r.get(10)?,
                    received_at_ms: r.get(11)?,
                    device_seq: r.get(12)?,
                    attrs: r.get(13)?,
                    topic: r.get(14)?,
                    payload: blob(r, 15)?,
                })
            } else if let Some(id) = dead_id {
                Content::DeadLetter(DeadLetterRow {
                    id,
                    dedup_key: r.get(17)?,
                    reason: r.get(18)?,
                    detail: r.get(19)?,
                    topic: r.get(20)?,
                    source: r.get(21)?,
                    device: r.get(22)?,
                    size: r.get(23)?,
                    received_at_ms: r.get(24)?,
                    payload: blob(r, 25)?,
                })
            } else if let Some(b) = body {
                Content::Body(b)
            } else {
                Content::Missing
            };
            let entry = Entry {
                seq,
                kind,
                at_ms,
                content,
            };
            bytes += entry.weight();
            out.push(entry);
            if bytes >= max_bytes {
                break;
            }
        }
        Ok(out)
    }
}

/// A payload column: a BLOB, or TEXT written by an older version.
fn blob(r: &rusqlite::Row<'_>, i: usize) -> Result<Vec<u8>, JournalError> {
    use rusqlite::types::ValueRef;
    Ok(match r.get_ref(i)? {
        ValueRef::Blob(b) => b.to_vec(),
        ValueRef::Text(t) => t.to_vec(),
        ValueRef::Null => Vec::new(),
        other => {
            return Err(JournalError::Corrupt(format!(
                "payload of type {:?}",
                other.data_type()
            )))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::{Derived, NewDeadLetter, NewEvent};
    use crate::model::{Event, Reason, Source};
    use chrono::{TimeZone, Utc};

    fn event(key: &str, ms: i64) -> Event {
        Event {
            source: Source::Sensor,
            kind: "telemetry".into(),
            device: Some("s-1".into()),
            village: None,
            ts: Utc.timestamp_millis_opt(ms).unwrap(),
            received_at: Utc.timestamp_millis_opt(ms).unwrap(),
            seq: Some(7),
            attrs: serde_json::Map::new(),
            dedup_key: key.into(),
            retained: false,
        }
    }

    fn dead(key: &str, ms: i64) -> NewDeadLetter<'static> {
        NewDeadLetter {
            size: None,
            dedup_key: key.into(),
            reason: Reason::InvalidJson,
            detail: "x",
            topic: "ioc/c/sensor/s-1/telemetry",
            source: Some(Source::Sensor),
            device: Some("s-1"),
            payload: b"{nope",
            received_at: Utc.timestamp_millis_opt(ms).unwrap(),
        }
    }

    fn write(
        store: &mut Store,
        events: &[Event],
        dead: &[NewDeadLetter<'_>],
    ) -> Option<(i64, i64)> {
        let rows: Vec<NewEvent<'_>> = events
            .iter()
            .map(|e| NewEvent {
                event: e,
                topic: "ioc/c/sensor/s-1/telemetry",
                payload: b"{}",
            })
            .collect();
        let (outcome, _) = store
            .write_batch(&rows, dead, |_| Derived::default())
            .unwrap();
        outcome.seqs
    }

    fn numbers(store: &Store, commune: &str) -> Vec<(i64, String)> {
        store
            .entries_after(commune, 0, 1000, usize::MAX)
            .unwrap()
            .into_iter()
            .map(|e| (e.seq, e.kind))
            .collect()
    }

    #[test]
    fn every_new_entry_gets_the_next_number_and_duplicates_none() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("j.db")).unwrap();
        store.bind_commune("xa-a").unwrap();
        assert_eq!(
            write(
                &mut store,
                &[event("a", 1), event("b", 2)],
                &[dead("d1", 3)]
            ),
            Some((1, 3))
        );
        // Repeats (an event and a dead letter) take no number.
        assert_eq!(
            write(
                &mut store,
                &[event("a", 1), event("c", 4)],
                &[dead("d1", 3)]
            ),
            Some((4, 4))
        );
        assert_eq!(write(&mut store, &[event("c", 4)], &[]), None);
        assert_eq!(
            numbers(&store, "xa-a"),
            vec![
                (1, "event".into()),
                (2, "event".into()),
                (3, "dead_letter".into()),
                (4, "event".into())
            ]
        );
        let all = store.entries_after("xa-a", 0, 10, usize::MAX).unwrap();
        match &all[2].content {
            Content::DeadLetter(d) => {
                assert_eq!(d.dedup_key, "d1");
                assert_eq!(d.payload, b"{nope");
            }
            other => panic!("{other:?}"),
        }
        match &all[3].content {
            Content::Event(e) => {
                assert_eq!(e.dedup_key, "c");
                assert_eq!(e.device_seq, Some(7));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(store.journal_head("xa-a").unwrap(), 4);
        // Bounded by bytes: at least one entry, then stop.
        assert_eq!(store.entries_after("xa-a", 0, 10, 1).unwrap().len(), 1);
        assert_eq!(
            store.entries_after("xa-a", 2, 10, usize::MAX).unwrap()[0].seq,
            3
        );
    }

    #[test]
    fn entries_of_other_connections_take_the_bound_communes_next_numbers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.db");
        let mut store = Store::open(&path).unwrap();
        store.bind_commune("xa-a").unwrap();
        write(&mut store, &[event("a", 1)], &[]);
        // A warning change on another connection, in its own transaction.
        let mut other = crate::store::open(&path, crate::config::SyncMode::Normal).unwrap();
        let tx = other.transaction().unwrap();
        let got = append_bound(
            &tx,
            &[NewEntry {
                kind: kind::WARNING,
                ref_id: 0,
                at_ms: 9,
                body: Some(br#"{"id":"w-1","state":"active"}"#),
            }],
        )
        .unwrap();
        tx.commit().unwrap();
        assert_eq!(got, Some((2, 2)));
        assert_eq!(write(&mut store, &[event("b", 2)], &[]), Some((3, 3)));
        let all = store.entries_after("xa-a", 0, 10, usize::MAX).unwrap();
        assert_eq!(all[1].kind, "warning");
        assert_eq!(
            all[1].content,
            Content::Body(br#"{"id":"w-1","state":"active"}"#.to_vec())
        );
    }

    #[test]
    fn a_rolled_back_transaction_leaves_no_gap() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("j.db")).unwrap();
        store.bind_commune("xa-a").unwrap();
        write(&mut store, &[event("a", 1)], &[]);
        {
            let tx = store.conn_mut().transaction().unwrap();
            let n = append(
                &tx,
                "xa-a",
                &[NewEntry {
                    kind: kind::EVENT,
                    ref_id: 99,
                    at_ms: 5,
                    body: None,
                }],
            )
            .unwrap();
            assert_eq!(n, Some((2, 2)));
            // Dropped without commit: rolled back.
        }
        assert_eq!(write(&mut store, &[event("b", 2)], &[]), Some((2, 2)));
        let seqs: Vec<i64> = numbers(&store, "xa-a").into_iter().map(|n| n.0).collect();
        assert_eq!(seqs, vec![1, 2]);
    }

    #[test]
    fn a_store_of_another_commune_is_refused_and_a_reopened_one_keeps_numbering() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.db");
        let mut store = Store::open(&path).unwrap();
        store.bind_commune("xa-a").unwrap();
        write(&mut store, &[event("a", 1)], &[]);
        drop(store);
        let mut other = Store::open(&path).unwrap();
        let err = other.bind_commune("xa-b").unwrap_err();
        assert!(
            matches!(&err, JournalError::OtherCommune { store, config } if store == "xa-a" && config == "xa-b"),
            "{err}"
        );
        // Another connection on the bound store (not bound itself) numbers
        // for the store's commune.
        let mut again = Store::open(&path).unwrap();
        assert_eq!(write(&mut again, &[event("b", 2)], &[]), Some((2, 2)));
        assert_eq!(numbers(&again, "xa-a").len(), 2);
    }

    #[test]
    fn the_migration_numbers_existing_rows_in_receive_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.db");
        {
            // A store at version 7 (before numbering) with rows.
            let mut conn = rusqlite::Connection::open(&path).unwrap();
            for m in &crate::store::schema::MIGRATIONS[..7] {
                let tx = conn.transaction().unwrap();
                tx.execute_batch(m.sql).unwrap();
                tx.pragma_update(None, "user_version", m.version).unwrap();
                tx.commit().unwrap();
            }
            for (key, at) in [("e1", 10), ("e2", 30), ("e3", 20)] {
                conn.execute(
                    "INSERT INTO events (dedup_key, source, kind, ts, received_at, attrs, topic, payload)
                     VALUES (?1, 'sensor', 'telemetry', ?2, ?2, '{}', 't', x'00')",
                    params![key, at],
                )
                .unwrap();
            }
            conn.execute(
                "INSERT INTO dead_letters (dedup_key, reason, detail, topic, size, received_at, payload)
                 VALUES ('d1', 'invalid_json', '', 't', 1, 20, x'00')",
                [],
            )
            .unwrap();
        }
        let mut store = Store::open(&path).unwrap();
        store.bind_commune("xa-a").unwrap();
        let got: Vec<(i64, String, String)> = store
            .entries_after("xa-a", 0, 10, usize::MAX)
            .unwrap()
            .into_iter()
            .map(|e| {
                let key = match e.content {
                    Content::Event(r) => r.dedup_key,
                    Content::DeadLetter(r) => r.dedup_key,
                    other => panic!("{other:?}"),
                };
                (e.seq, e.kind, key)
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (1, "event".into(), "e1".into()),
                (2, "event".into(), "e3".into()),
                (3, "dead_letter".into(), "d1".into()),
                (4, "event".into(), "e2".into()),
            ]
        );
        assert!(numbers(&store, "").is_empty());
        // New entries follow on.
        assert_eq!(write(&mut store, &[event("n", 40)], &[]), Some((5, 5)));
    }
}
