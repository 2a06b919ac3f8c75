//! The embedded store (SQLite in WAL mode): the system of record.
//!
//! - `events` and `dead_letters` are append-only; a unique `dedup_key` makes
//!   redelivered and repeated messages count once;
//! - `rollup_minute` / `rollup_hour` hold indicator buckets, written in the
//!   same transaction as the events they count;
//! - `state` holds latest readings and freshness times, `devices` the last
//!   known device health.
//!
//! The journal only stores and reads: the commit pipeline that feeds it
//! (decode, derive, ack, apply, publish) is `crate::runtime::pipeline`. It
//! never creates tables: the schema is `crate::store::schema`.

pub mod outbox;
mod queries;
pub mod remote;
mod restore;
pub mod seq;
pub use queries::AckOutcome;

use std::path::Path;

use chrono::{DateTime, TimeZone, Utc};
use rusqlite::{params, Connection, OptionalExtension};

use crate::config::SyncMode;
use crate::devices::Health;
use crate::indicators::BatchDelta;
use crate::model::{DeviceClass, Event, Reason, Source};

/// Journal errors.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// SQLite failed.
    #[error("journal database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The store could not be opened or migrated.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// A stored row could not be read back.
    #[error("corrupt journal row: {0}")]
    Corrupt(String),
    /// The store was journaled for another commune (its `(commune, seq)`
    /// numbers belong to that commune).
    #[error("the store belongs to commune `{store}`, not to `{config}` (commune.id): every journal entry is numbered per commune for the province; use that commune's id, or another store.path")]
    OtherCommune {
        /// The commune recorded in the store.
        store: String,
        /// The configured commune.
        config: String,
    },
}

/// Largest payload stored with a dead letter when it is over the ingest
/// limit (the rest is counted in `size`).
pub const OVERSIZE_KEEP: usize = 4096;

/// A dead letter about to be written.
#[derive(Debug, Clone)]
pub struct NewDeadLetter<'a> {
    /// Dedup key (content hash).
    pub dedup_key: String,
    /// Reason.
    pub reason: Reason,
    /// Detail.
    pub detail: &'a str,
    /// Topic.
    pub topic: &'a str,
    /// Source family, when known.
    pub source: Option<Source>,
    /// Device named by the topic, when any.
    pub device: Option<&'a str>,
    /// The payload.
    pub payload: &'a [u8],
    /// Receive time.
    pub received_at: DateTime<Utc>,
    /// Size of the whole payload when `payload` is only what was kept of
    /// it (a copy from a commune's journal); `None`: `payload.len()`.
    pub size: Option<usize>,
}

/// An event about to be written, with its raw message.
#[derive(Debug, Clone, Copy)]
pub struct NewEvent<'a> {
    /// The decoded event.
    pub event: &'a Event,
    /// Topic.
    pub topic: &'a str,
    /// Raw payload (kept: extra fields are never lost).
    pub payload: &'a [u8],
}

/// What one committed batch inserted.
#[derive(Debug, Default)]
pub struct BatchOutcome {
    /// Index (in the input) of every event that was new.
    pub new_events: Vec<usize>,
    /// Index of every dead letter that was new.
    pub new_dead: Vec<usize>,
    /// The journal numbers the new entries got (first, last): events in
    /// input order, then dead letters.
    pub seqs: Option<(i64, i64)>,
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn from_ms(v: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(v).single().unwrap_or_default()
}

/// The embedded store.
#[derive(Debug)]
pub struct Store {
    conn: Connection,
    /// How new events are assigned to report periods (the intake).
    report_rule: crate::reports::intake::Rule,
    /// The commune entries are numbered for (`seq::Store::bind_commune`;
    /// '' until bound, then filled in by it).
    commune: String,
}

impl Store {
    /// Open (and create) the journal at `path` with full durability and no
    /// size limit.
    pub fn open(path: &Path) -> Result<Store, JournalError> {
        Store::open_with(path, SyncMode::Full, 0)
    }

    /// Open (and create) the journal at `path`; `max_size_mb` = 0 is no limit.
    pub fn open_with(path: &Path, sync: SyncMode, max_size_mb: u64) -> Result<Store, JournalError> {
        let conn = crate::store::open(path, sync)?;
        if max_size_mb > 0 {
            let page: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
            let pages = (max_size_mb.saturating_mul(1024 * 1024) / page.max(512) as u64).max(1);
            // Raising the limit works on an existing file; lowering it below
            // the current size leaves the size as is.
            let _: i64 = conn.query_row(&format!("PRAGMA max_page_count = {pages}"), [], |r| {
                r.get(0)
            })?;
        }
        // A bound store numbers its entries for its commune on every
        // connection that writes them.
        let commune = conn
            .query_row(
                "SELECT value FROM meta WHERE key = ?1",
                [seq::COMMUNE_KEY],
                |r| r.get(0),
            )
            .optional()?
            .unwrap_or_default();
        Ok(Store {
            conn,
            report_rule: Default::default(),
            commune,
        })
    }

    /// Assign new events to report periods by this rule (`[report]`).
    pub fn set_report_rule(&mut self, rule: crate::reports::intake::Rule) {
        self.report_rule = rule;
    }

    /// The connection, for the rooms that keep their own tables in the
    /// store (`reports`).
    pub fn conn(&self) -> &Connection {
        &self.conn
    }

    /// The connection, mutable (transactions).
    pub fn conn_mut(&mut self) -> &mut Connection {
        &mut self.conn
    }

    /// Open a second, read-only connection for queries (the API).
    pub fn open_reader(path: &Path) -> Result<Store, JournalError> {
        Ok(Store {
            conn: crate::store::open_read_only(path)?,
            report_rule: Default::default(),
            commune: String::new(),
        })
    }

    /// A meta value.
    pub fn meta(&self, key: &str) -> Result<Option<String>, JournalError> {
        meta_on(&self.conn, key)
    }

    /// The villages of those of `dossiers` whose `received` event named
    /// one (dossiers not found are left out).
    pub fn dossier_villages(
        &self,
        dossiers: &[&str],
    ) -> Result<Vec<(String, String)>, JournalError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT village FROM dossiers WHERE dossier_id = ?1")?;
        let mut out = Vec::new();
        for &id in dossiers {
            if let Some(v) = stmt.query_row([id], |r| r.get(0)).optional()? {
                out.push((id.to_owned(), v));
            }
        }
        Ok(out)
    }

    /// Set a meta value.
    pub fn set_meta(&self, key: &str, value: &str) -> Result<(), JournalError> {
        upsert_meta(&self.conn, key, value)
    }

    /// Write one batch in one transaction: events and dead letters (ignoring
    /// duplicates), then the rollups, latest values and device health that
    /// `derive` computes from the rows that were actually new.
    pub fn write_batch<F>(
        &mut self,
        events: &[NewEvent<'_>],
        dead: &[NewDeadLetter<'_>],
        derive: F,
    ) -> Result<(BatchOutcome, Derived), JournalError>
    where
        F: FnOnce(&BatchOutcome) -> Derived,
    {
        let tx = self.conn.transaction()?;
        let mut outcome = BatchOutcome::default();
        let mut attrs_text: Vec<String> = Vec::new();
        let mut numbered: Vec<seq::NewEntry<'_>> = Vec::new();
        {
            for (i, ne) in events.iter().enumerate() {
                let attrs = serde_json::to_string(&ne.event.attrs).unwrap_or_else(|_| "{}".into());
                let n = insert_event(&tx, ne, &attrs)?;
                let e = ne.event;
                if n == 1 {
                    outcome.new_events.push(i);
                    attrs_text.push(attrs);
                    numbered.push(seq::NewEntry {
                        kind: seq::kind::EVENT,
                        ref_id: tx.last_insert_rowid(),
                        at_ms: ms(e.received_at),
                        body: None,
                    });
                }
            }
            // Report manifests and the late ledger.
            let intake: Vec<crate::reports::intake::Intake<'_>> = outcome
                .new_events
                .iter()
                .zip(&attrs_text)
                .map(|(&i, attrs)| {
                    let ne = &events[i];
                    let e = ne.event;
                    crate::reports::intake::Intake {
                        record: crate::reports::merkle::EventRecord {
                            dedup_key: &e.dedup_key,
                            source: e.source.as_str(),
                            kind: &e.kind,
                            device: e.device.as_deref(),
                            village: e.village.as_deref(),
                            ts: ms(e.ts),
                            seq: e.seq.map(|s| s as i64),
                            attrs,
                            payload: ne.payload,
                        },
                        received_at: ms(e.received_at),
                    }
                })
                .collect();
            crate::reports::intake::record(&tx, &self.report_rule, &intake)?;
            // Remember each dossier's village for its later events.
            let mut dossier = tx.prepare_cached(
                "INSERT OR IGNORE INTO dossiers (dossier_id, village) VALUES (?1, ?2)",
            )?;
            for &i in &outcome.new_events {
                let e = events[i].event;
                if e.source != Source::Procedure || e.kind != "received" {
                    continue;
                }
                let id = e.attrs.get("dossier_id").and_then(|v| v.as_str());
                if let (Some(id), Some(village)) = (id, &e.village) {
                    dossier.execute(params![id, village])?;
                }
            }
            for (i, d) in dead.iter().enumerate() {
                let n = insert_dead(&tx, d)?;
                if n == 1 {
                    outcome.new_dead.push(i);
                    numbered.push(seq::NewEntry {
                        kind: seq::kind::DEAD_LETTER,
                        ref_id: tx.last_insert_rowid(),
                        at_ms: ms(d.received_at),
                        body: None,
                    });
                }
            }
            // (commune, seq) for every new entry, in this transaction.
            outcome.seqs = seq::append(&tx, &self.commune, &numbered)?;
        }
        let derived = derive(&outcome);
        write_derived(&tx, &derived)?;
        tx.commit()?;
        Ok((outcome, derived))
    }
}

/// Insert one event (ignored when its dedup key is already there); 1 when
/// new.
fn insert_event(tx: &Connection, ne: &NewEvent<'_>, attrs: &str) -> Result<usize, JournalError> {
    let e = ne.event;
    let mut ins = tx.prepare_cached(
        "INSERT OR IGNORE INTO events (dedup_key, source, kind, device, village, ts, received_at, seq, attrs, topic, payload)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?;
    Ok(ins.execute(params![
        e.dedup_key,
        e.source.as_str(),
        e.kind,
        e.device,
        e.village,
        ms(e.ts),
        ms(e.received_at),
        e.seq.map(|s| s as i64),
        attrs,
        ne.topic,
        ne.payload,
    ])?)
}

/// Insert one dead letter (ignored when its dedup key is already there;
/// an oversized payload keeps its first [`OVERSIZE_KEEP`] bytes); 1 when
/// new.
fn insert_dead(tx: &Connection, d: &NewDeadLetter<'_>) -> Result<usize, JournalError> {
    let kept = if d.reason == Reason::Oversized {
        &d.payload[..d.payload.len().min(OVERSIZE_KEEP)]
    } else {
        d.payload
    };
    let mut ins = tx.prepare_cached(
        "INSERT OR IGNORE INTO dead_letters (dedup_key, reason, detail, topic, source, device, size, received_at, payload)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?;
    Ok(ins.execute(params![
        d.dedup_key,
        d.reason.code(),
        d.detail,
        d.topic,
        d.source.map(Source::as_str),
        d.device,
        d.size.unwrap_or(d.payload.len()) as i64,
        ms(d.received_at),
        kept,
    ])?)
}

fn meta_on(conn: &Connection, key: &str) -> Result<Option<String>, JournalError> {
    Ok(conn
        .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
        .optional()?)
}

fn upsert_meta(conn: &Connection, key: &str, value: &str) -> Result<(), JournalError> {
    conn.execute(
        "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        params![key, value],
    )?;
    Ok(())
}

/// Everything derived from the new rows of a batch, written in its
/// transaction.
#[derive(Debug, Default)]
pub struct Derived {
    /// Indicator changes.
    pub delta: BatchDelta,
    /// Counter keys (by index) and scope names (by index), to name rows.
    pub counter_keys: Vec<String>,
    /// Scope names by index.
    pub scope_names: Vec<String>,
    /// Indicator ids by index (for latest values).
    pub indicator_ids: Vec<String>,
    /// Device health changes.
    pub devices: Vec<((DeviceClass, String), Health)>,
}

fn write_derived(tx: &rusqlite::Transaction<'_>, d: &Derived) -> Result<(), JournalError> {
    let mut minute = tx.prepare_cached(
        "INSERT INTO rollup_minute (counter, scope, bucket, value) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT(counter, scope, bucket) DO UPDATE SET value = value + excluded.value",
    )?;
    let mut hours: std::collections::HashMap<(usize, usize, i64), f64> =
        std::collections::HashMap::new();
    for (&(c, s, m), &v) in &d.delta.rollups {
        minute.execute(params![d.counter_keys[c], d.scope_names[s], m, v])?;
        *hours.entry((c, s, m.div_euclid(60))).or_insert(0.0) += v;
    }
    let mut hour = tx.prepare_cached(
        "INSERT INTO rollup_hour (counter, scope, bucket, value) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT(counter, scope, bucket) DO UPDATE SET value = value + excluded.value",
    )?;
    for ((c, s, h), v) in hours {
        hour.execute(params![d.counter_keys[c], d.scope_names[s], h, v])?;
    }
    let mut state = tx.prepare_cached(
        "INSERT INTO state (key, ts, value) VALUES (?1, ?2, ?3)
         ON CONFLICT(key) DO UPDATE SET ts = excluded.ts, value = excluded.value WHERE excluded.ts >= state.ts",
    )?;
    for (&(i, s), &(ts, v)) in &d.delta.latest {
        state.execute(params![
            format!("latest:{}:{}", d.indicator_ids[i], d.scope_names[s]),
            ms(ts),
            v
        ])?;
    }
    for (&(src, s), &ts) in &d.delta.fresh {
        state.execute(params![
            format!("fresh:{}:{}", src.as_str(), d.scope_names[s]),
            ms(ts),
            0.0
        ])?;
    }
    let mut dev = tx.prepare_cached(
        "INSERT INTO devices (class, id, state, last_seen, detail) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT(class, id) DO UPDATE SET state = excluded.state, last_seen = excluded.last_seen, detail = excluded.detail",
    )?;
    for ((class, id), h) in &d.devices {
        dev.execute(params![
            class.as_str(),
            id,
            h.state.as_str(),
            h.last_seen.map(ms),
            h.detail
        ])?;
    }
    Ok(())
}

/// A bounded, lossy UTF-8 excerpt of a payload.
pub fn excerpt(payload: &[u8], max: usize) -> String {
    let cut = &payload[..payload.len().min(max)];
    let mut s = String::from_utf8_lossy(cut).into_owned();
    if payload.len() > max {
        s.push('…');
    }
    s
}
