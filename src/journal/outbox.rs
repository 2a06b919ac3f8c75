//! Storage for the time-series sink (`crate::sinks`): the journal's
//! `events` table is itself the outbox of event points, read in `id` order
//! after a persisted cursor (`meta` key [`EVENTS_CURSOR`]); indicator
//! snapshots wait in the `influx_outbox` table until written. Both live in
//! the journal file, so a restart (or a crash) loses nothing that was
//! committed. The sink uses a connection of its own: the journal writer
//! never waits on it beyond SQLite's short write lock for a cursor update.

use chrono::{DateTime, Utc};
use rusqlite::{params, Row};

use super::{from_ms, upsert_meta, JournalError, Store};
use crate::model::{Event, Source};

/// `meta` key of the id of the last event written to the time-series store.
pub const EVENTS_CURSOR: &str = "influx_events_cursor";

/// The columns [`event_from_row`] reads, in order.
pub(crate) const EVENT_COLUMNS: &str =
    "source, kind, device, village, ts, received_at, seq, attrs, dedup_key";

/// Read an [`Event`] from a row selected with [`EVENT_COLUMNS`] first.
pub(crate) fn event_from_row(r: &Row<'_>) -> Result<Event, JournalError> {
    let source: String = r.get(0)?;
    let attrs: String = r.get(7)?;
    let attrs = match serde_json::from_str::<serde_json::Value>(&attrs) {
        Ok(serde_json::Value::Object(m)) => m,
        _ => return Err(JournalError::Corrupt(format!("attrs {attrs}"))),
    };
    Ok(Event {
        source: Source::parse(&source)
            .ok_or_else(|| JournalError::Corrupt(format!("source {source}")))?,
        kind: r.get(1)?,
        device: r.get(2)?,
        village: r.get(3)?,
        ts: from_ms(r.get(4)?),
        received_at: from_ms(r.get(5)?),
        seq: r.get::<_, Option<i64>>(6)?.map(|s| s as u64),
        attrs,
        dedup_key: r.get(8)?,
        retained: false,
    })
}

/// A point waiting in `influx_outbox`: a line-protocol line without its
/// timestamp, and the timestamp in milliseconds.
#[derive(Debug, Clone, PartialEq)]
pub struct QueuedPoint {
    /// Row id (order of replay).
    pub id: i64,
    /// `measurement,tags fields` (no timestamp).
    pub line: String,
    /// Point time, ms UTC.
    pub ts_ms: i64,
}

impl Store {
    /// Id of the last event written to the time-series store (0: none).
    pub fn events_cursor(&self) -> Result<i64, JournalError> {
        Ok(self
            .meta(EVENTS_CURSOR)?
            .and_then(|v| v.parse().ok())
            .unwrap_or(0))
    }

    /// Persist the events cursor.
    pub fn set_events_cursor(&self, id: i64) -> Result<(), JournalError> {
        self.set_meta(EVENTS_CURSOR, &id.to_string())
    }

    /// The largest event id (0 when the journal has no event).
    pub fn last_event_id(&self) -> Result<i64, JournalError> {
        Ok(self
            .conn
            .query_row("SELECT coalesce(max(id), 0) FROM events", [], |r| r.get(0))?)
    }

    /// Up to `limit` events with `id > after`, in id order.
    pub fn events_after(
        &self,
        after: i64,
        limit: usize,
    ) -> Result<Vec<(i64, Event)>, JournalError> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {EVENT_COLUMNS}, id FROM events WHERE id > ?1 ORDER BY id LIMIT ?2"
        ))?;
        let mut rows = stmt.query(params![after, limit as i64])?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            out.push((r.get(9)?, event_from_row(r)?));
        }
        Ok(out)
    }

    /// Queue points in `influx_outbox`, in one transaction.
    pub fn queue_points(&mut self, points: &[(String, DateTime<Utc>)]) -> Result<(), JournalError> {
        let tx = self.conn.transaction()?;
        {
            let mut ins =
                tx.prepare_cached("INSERT INTO influx_outbox (line, ts) VALUES (?1, ?2)")?;
            for (line, ts) in points {
                ins.execute(params![line, ts.timestamp_millis()])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Up to `limit` queued points, oldest first.
    pub fn queued_points(&self, limit: usize) -> Result<Vec<QueuedPoint>, JournalError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT id, line, ts FROM influx_outbox ORDER BY id LIMIT ?1")?;
        let rows = stmt.query_map([limit as i64], |r| {
            Ok(QueuedPoint {
                id: r.get(0)?,
                line: r.get(1)?,
                ts_ms: r.get(2)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Number of queued points and the id range they span (rows are only
    /// removed from the front, so the range is dense).
    pub fn queued_span(&self) -> Result<(i64, i64), JournalError> {
        Ok(self.conn.query_row(
            "SELECT coalesce(min(id), 0), coalesce(max(id), 0) FROM influx_outbox",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?)
    }

    /// Remove queued points with `id <= up_to`; the number removed.
    pub fn unqueue_points(&self, up_to: i64) -> Result<usize, JournalError> {
        Ok(self
            .conn
            .execute("DELETE FROM influx_outbox WHERE id <= ?1", [up_to])?)
    }

    /// After a write: move the events cursor to `events_to` and remove the
    /// queued points up to `queued_to`, in one transaction.
    pub fn sink_written(
        &mut self,
        events_to: Option<i64>,
        queued_to: Option<i64>,
    ) -> Result<(), JournalError> {
        let tx = self.conn.transaction()?;
        if let Some(id) = events_to {
            upsert_meta(&tx, EVENTS_CURSOR, &id.to_string())?;
        }
        if let Some(id) = queued_to {
            tx.execute("DELETE FROM influx_outbox WHERE id <= ?1", [id])?;
        }
        tx.commit()?;
        Ok(())
    }
}
