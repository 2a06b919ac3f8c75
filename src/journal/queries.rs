//! Reads: dead letters, history buckets, device health; and upkeep
//! (pruning, the write probe).

use chrono::{DateTime, Utc};
use rusqlite::params;

use super::{excerpt, from_ms, JournalError, Store};
use crate::devices::Health;
use crate::model::{DeadLetter, DeviceClass, DeviceState, Reason};

impl Store {
    /// Dead letters, newest first.
    pub fn dead_letters(
        &self,
        limit: usize,
        before_id: Option<i64>,
        reason: Option<Reason>,
        excerpt_bytes: usize,
    ) -> Result<Vec<DeadLetter>, JournalError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT d.id, d.reason, d.detail, d.topic, d.device, d.size, d.received_at,
                    substr(d.payload, 1, ?1), a.acked_by, a.acked_at
             FROM dead_letters d LEFT JOIN dead_letter_acks a ON a.dead_letter_id = d.id
             WHERE (?2 IS NULL OR d.id < ?2) AND (?3 IS NULL OR d.reason = ?3)
             ORDER BY d.id DESC LIMIT ?4",
        )?;
        let rows = stmt.query_map(
            params![
                excerpt_bytes as i64 + 4,
                before_id,
                reason.map(Reason::code),
                limit as i64
            ],
            |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, Option<String>>(4)?,
                    r.get::<_, i64>(5)?,
                    r.get::<_, i64>(6)?,
                    // SQLite's substr() of an empty blob is NULL.
                    r.get::<_, Option<Vec<u8>>>(7)?.unwrap_or_default(),
                    r.get::<_, Option<String>>(8)?,
                    r.get::<_, Option<i64>>(9)?,
                ))
            },
        )?;
        let mut out = Vec::new();
        for row in rows {
            let (id, reason, detail, topic, device, size, received, payload, acked_by, acked_at) =
                row?;
            let reason = Reason::parse(&reason)
                .ok_or_else(|| JournalError::Corrupt(format!("reason {reason}")))?;
            out.push(DeadLetter {
                id,
                reason,
                detail,
                topic,
                device,
                excerpt: excerpt(&payload, excerpt_bytes),
                size: size.max(0) as usize,
                received_at: from_ms(received),
                acked_by,
                acked_at: acked_at.map(from_ms),
            });
        }
        Ok(out)
    }

    /// Record that `by` acknowledged dead letter `id` (the dead letter
    /// itself never changes). The first acknowledgement stands.
    pub fn ack_dead_letter(&self, id: i64, by: &str) -> Result<AckOutcome, JournalError> {
        let exists: bool = self.conn.query_row(
            "SELECT EXISTS(SELECT 1 FROM dead_letters WHERE id = ?1)",
            [id],
            |r| r.get(0),
        )?;
        if !exists {
            return Ok(AckOutcome::NotFound);
        }
        let now = chrono::Utc::now();
        let n = self.conn.execute(
            "INSERT OR IGNORE INTO dead_letter_acks (dead_letter_id, acked_by, acked_at)
             VALUES (?1, ?2, ?3)",
            params![id, by, now.timestamp_millis()],
        )?;
        if n == 1 {
            return Ok(AckOutcome::Acked {
                by: by.to_owned(),
                at: now,
            });
        }
        let (by, at): (String, i64) = self.conn.query_row(
            "SELECT acked_by, acked_at FROM dead_letter_acks WHERE dead_letter_id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        Ok(AckOutcome::Already {
            by,
            at: from_ms(at),
        })
    }

    /// Dead letters per reason (all time).
    pub fn dead_letter_counts(&self) -> Result<Vec<(Reason, u64)>, JournalError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT reason, COUNT(*) FROM dead_letters GROUP BY reason ORDER BY reason",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
        let mut out = Vec::new();
        for row in rows {
            let (reason, n) = row?;
            if let Some(r) = Reason::parse(&reason) {
                out.push((r, n.max(0) as u64));
            }
        }
        Ok(out)
    }

    /// Number of events in the journal.
    pub fn event_count(&self) -> Result<u64, JournalError> {
        let n: i64 = self
            .conn
            .query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0))?;
        Ok(n.max(0) as u64)
    }

    /// Sums of a counter per bucket of `step_secs`, from `from` (inclusive)
    /// to `to` (exclusive). Uses hour rollups when the step and the start are
    /// whole hours, else minute rollups. Nothing after the minute of `to`
    /// is counted: when `to` falls inside an hour, that last part hour
    /// comes from the minute rollups; a `to` inside a minute counts that
    /// minute whole (rollups have no finer grain; with `to` = now, the
    /// current minute is what just arrived).
    pub fn history(
        &self,
        counter: &str,
        scope: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        step_secs: i64,
    ) -> Result<Vec<(i64, f64)>, JournalError> {
        let f = from.timestamp();
        let t = to.timestamp();
        // Minutes up to the one holding `to`; with hour rollups, whole
        // hours before `to` and then the minutes of the last part hour.
        // In milliseconds: a `to` a fraction of a second into a minute
        // still counts that minute.
        let minute_hi = (to.timestamp_millis() + 59_999).div_euclid(60_000);
        let (hour_lo, hour_hi, minute_lo) = if step_secs % 3600 == 0 && f % 3600 == 0 {
            let hi = t.div_euclid(3600);
            (f.div_euclid(3600), hi, hi * 60)
        } else {
            (0, 0, f.div_euclid(60))
        };
        let mut stmt = self.conn.prepare_cached(
            "SELECT b, SUM(v) FROM (
                 SELECT (bucket * 3600 - ?1) / ?2 AS b, value AS v FROM rollup_hour
                 WHERE counter = ?3 AND scope = ?4 AND bucket >= ?5 AND bucket < ?6
                 UNION ALL
                 SELECT (bucket * 60 - ?1) / ?2 AS b, value AS v FROM rollup_minute
                 WHERE counter = ?3 AND scope = ?4 AND bucket >= ?7 AND bucket < ?8
             ) GROUP BY b ORDER BY b",
        )?;
        let rows = stmt.query_map(
            params![f, step_secs, counter, scope, hour_lo, hour_hi, minute_lo, minute_hi],
            |r| Ok((r.get::<_, i64>(0)?, r.get::<_, f64>(1)?)),
        )?;
        let mut out = Vec::new();
        for row in rows {
            out.push(row?);
        }
        Ok(out)
    }

    /// Persisted device health.
    pub fn devices(&self) -> Result<Vec<(DeviceClass, String, Health)>, JournalError> {
        let mut stmt = self
            .conn
            .prepare("SELECT class, id, state, last_seen, detail FROM devices")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, Option<i64>>(3)?,
                r.get::<_, Option<String>>(4)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (class, id, state, last_seen, detail) = row?;
            if let (Some(c), Some(s)) = (DeviceClass::parse(&class), DeviceState::parse(&state)) {
                out.push((
                    c,
                    id,
                    Health {
                        state: s,
                        last_seen: last_seen.map(from_ms),
                        detail,
                    },
                ));
            }
        }
        Ok(out)
    }

    /// Check the store is writable (readiness).
    pub fn probe(&self) -> Result<(), JournalError> {
        self.conn.execute(
            "INSERT INTO meta (key, value) VALUES ('probe', ?1) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            [Utc::now().to_rfc3339()],
        )?;
        Ok(())
    }

    /// Delete minute rollups no window needs any more.
    pub fn prune(&self, now: DateTime<Utc>) -> Result<usize, JournalError> {
        let min_minute = now.timestamp().div_euclid(60) - crate::indicators::MINUTES_KEPT;
        Ok(self
            .conn
            .execute("DELETE FROM rollup_minute WHERE bucket < ?1", [min_minute])?)
    }
}

/// What acknowledging a dead letter did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AckOutcome {
    /// Acknowledged now.
    Acked {
        /// By whom.
        by: String,
        /// When.
        at: chrono::DateTime<chrono::Utc>,
    },
    /// Acknowledged before (by someone, at some time).
    Already {
        /// By whom.
        by: String,
        /// When.
        at: chrono::DateTime<chrono::Utc>,
    },
    /// No such dead letter.
    NotFound,
}
