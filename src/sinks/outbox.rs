//! The durable outbox of the time-series sink, kept in the journal file
//! (storage in `crate::journal::outbox`):
//!
//! - **events**: the journal's `events` table itself, read in `id` order
//!   after a persisted cursor. An event is committed (and acknowledged to
//!   MQTT) once, by the journal writer; the sink only reads it, writes it,
//!   and then moves the cursor. A crash between the write and the cursor
//!   update sends that batch again: InfluxDB overwrites identical points
//!   (same series and timestamp), so the replay changes nothing there.
//! - **indicator points**: snapshots queued in `influx_outbox` in their own
//!   transaction and deleted once written.
//!
//! Each queue is bounded by `influx.max_backlog_points`: past it, the
//! oldest unsent points are skipped and reported as dropped.

use chrono::{DateTime, Utc};

use crate::config::{Config, Precision};
use crate::journal::{JournalError, Store};

use super::line;

/// One write's worth of points.
#[derive(Debug, Default)]
pub struct Batch {
    /// Line protocol, one point per line.
    pub body: String,
    /// Number of points (lines).
    pub points: usize,
    /// Id of the last event in the batch (the new cursor), if any.
    pub events_to: Option<i64>,
    /// Id of the last queued point in the batch, if any.
    pub queued_to: Option<i64>,
}

/// The backlog after enforcing the bound.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Bound {
    /// Points waiting in both queues.
    pub backlog: u64,
    /// Points waiting in the fuller queue (compared with the bound).
    pub fullest: u64,
    /// Points skipped now because a queue was over the bound.
    pub dropped: u64,
}

/// The outbox over its own connection to the journal file.
#[derive(Debug)]
pub struct Outbox {
    store: Store,
    cursor: i64,
    commune: String,
    precision: Precision,
    max_backlog: u64,
}

impl Outbox {
    /// Open the journal of `config` on a new connection, with the store's
    /// durability and size cap.
    pub fn open(config: &Config) -> Result<Outbox, JournalError> {
        let store = Store::open_with(
            &config.journal_path(),
            config.store.sync,
            config.store.max_size_mb,
        )?;
        let cursor = store.events_cursor()?;
        Ok(Outbox {
            store,
            cursor,
            commune: config.commune.id.clone(),
            precision: config.influx.precision,
            max_backlog: config.influx.max_backlog_points.max(1),
        })
    }

    /// Id of the last event written.
    pub fn cursor(&self) -> i64 {
        self.cursor
    }

    /// Skip the oldest points of a queue longer than the bound; report the
    /// backlog.
    pub fn enforce_bound(&mut self) -> Result<Bound, JournalError> {
        let mut dropped = 0;
        let last = self.store.last_event_id()?;
        let mut events = last.saturating_sub(self.cursor).max(0) as u64;
        if events > self.max_backlog {
            let to = last - self.max_backlog as i64;
            self.store.set_events_cursor(to)?;
            dropped += events - self.max_backlog;
            self.cursor = to;
            events = self.max_backlog;
        }
        let (min, max) = self.store.queued_span()?;
        let mut queued = if max == 0 { 0 } else { (max - min + 1) as u64 };
        if queued > self.max_backlog {
            let removed = self.store.unqueue_points(max - self.max_backlog as i64)?;
            dropped += removed as u64;
            queued = queued.saturating_sub(removed as u64);
        }
        Ok(Bound {
            backlog: events + queued,
            fullest: events.max(queued),
            dropped,
        })
    }

    /// The next batch of at most `max` points: events first, then queued
    /// indicator points, each in order.
    pub fn next_batch(&self, max: usize) -> Result<Batch, JournalError> {
        let mut b = Batch::default();
        for (id, e) in self.store.events_after(self.cursor, max)? {
            line::push_event(&mut b.body, &self.commune, id, &e, self.precision);
            b.events_to = Some(id);
            b.points += 1;
        }
        if b.points < max {
            for p in self.store.queued_points(max - b.points)? {
                b.body.push_str(&p.line);
                line::push_timestamp(&mut b.body, p.ts_ms, 0, self.precision);
                b.queued_to = Some(p.id);
                b.points += 1;
            }
        }
        // `points` counts events even when one had no encodable field (its
        // line is then left out): the cursor still moves past it.
        Ok(b)
    }

    /// Record a written batch.
    pub fn written(
        &mut self,
        events_to: Option<i64>,
        queued_to: Option<i64>,
    ) -> Result<(), JournalError> {
        self.store.sink_written(events_to, queued_to)?;
        if let Some(id) = events_to {
            self.cursor = id;
        }
        Ok(())
    }

    /// Queue indicator points (lines without timestamps).
    pub fn queue(&mut self, points: &[(String, DateTime<Utc>)]) -> Result<(), JournalError> {
        if points.is_empty() {
            return Ok(());
        }
        self.store.queue_points(points)
    }
}
