//! The alerts tables (migration 0005): the lifecycle with one active alert
//! per fingerprint (a UNIQUE partial index, so two writers raising the same
//! alert at once make one row and count two occurrences), silences, the
//! group clock, and the engine's cursor over the journal's events.

use std::path::Path;

#[cfg(test)]
use chrono::TimeDelta;
use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension, Row, Transaction, TransactionBehavior};

use super::model::{Alert, AlertKind, AlertState, Matcher, Raise, Severity, Signal, Silence};
use crate::config::alerts::AlertSettings;
use crate::config::SyncMode;
use crate::model::Event;
use crate::vocab::Hazard;

/// `meta` key of the last journal event the engine evaluated.
pub const EVENTS_CURSOR: &str = "alerts_events_cursor";

/// Errors of the alerts store.
#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    /// SQLite failed.
    #[error("alerts store error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// The journal failed.
    #[error(transparent)]
    Journal(#[from] crate::journal::JournalError),
    /// A row could not be read back.
    #[error("alerts store holds an unreadable row: {0}")]
    Corrupt(String),
}

/// What an operator's acknowledge or resolve did.
#[derive(Debug, Clone, PartialEq)]
pub enum ActionOutcome {
    /// Done now.
    Done(Alert),
    /// Already so (acknowledged, or resolved), by then.
    Already(Alert),
    /// No such alert.
    NotFound,
}

/// Alerts by status and the times to acknowledge.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Stats {
    /// `firing_unack`, `firing_ack`, `resolved_unack`, `resolved_ack` → count.
    pub by_status: std::collections::BTreeMap<String, u64>,
    /// Seconds from first seen to acknowledged, newest first (≤ 1000).
    pub ack_seconds: Vec<f64>,
}

/// A filter for listing alerts.
#[derive(Debug, Clone, Default)]
pub struct AlertQuery {
    /// `firing` / `resolved` (None: both).
    pub state: Option<AlertState>,
    /// Acknowledged or not.
    pub acked: Option<bool>,
    /// Hazard.
    pub hazard: Option<Hazard>,
    /// Covering this village.
    pub village: Option<String>,
    /// Kind.
    pub kind: Option<AlertKind>,
    /// At most this many (newest first).
    pub limit: usize,
}

pub(crate) fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

pub(crate) fn from_ms(v: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(v).unwrap_or_default()
}

const COLUMNS: &str = "id, fingerprint, kind, rule, official, severity, hazard, level, villages, \
    device, title, message, details, state, stale, occurrences, first_seen, last_seen, ends_at, \
    resolved_at, resolved_by, acked_at, acked_by, esc_step, notify_at";

fn alert_from_row(r: &Row<'_>) -> Result<Alert, AlertError> {
    let corrupt = |what: &str, v: &str| AlertError::Corrupt(format!("{what} `{v}`"));
    let kind: String = r.get(2)?;
    let severity: String = r.get(5)?;
    let hazard: Option<String> = r.get(6)?;
    let villages: String = r.get(8)?;
    let details: String = r.get(12)?;
    let state: String = r.get(13)?;
    Ok(Alert {
        id: r.get(0)?,
        fingerprint: r.get(1)?,
        kind: AlertKind::parse(&kind).ok_or_else(|| corrupt("kind", &kind))?,
        rule: r.get(3)?,
        official: r.get(4)?,
        severity: Severity::parse(&severity).ok_or_else(|| corrupt("severity", &severity))?,
        hazard: match hazard {
            None => None,
            Some(h) => Some(Hazard::parse(&h).ok_or_else(|| corrupt("hazard", &h))?),
        },
        level: r.get::<_, Option<i64>>(7)?.map(|l| l.clamp(0, 255) as u8),
        villages: serde_json::from_str(&villages).map_err(|_| corrupt("villages", &villages))?,
        device: r.get(9)?,
        title: r.get(10)?,
        message: r.get(11)?,
        details: serde_json::from_str(&details).map_err(|_| corrupt("details", &details))?,
        state: AlertState::parse(&state).ok_or_else(|| corrupt("state", &state))?,
        stale: r.get(14)?,
        occurrences: r.get::<_, i64>(15)?.clamp(0, u32::MAX as i64) as u32,
        first_seen: from_ms(r.get(16)?),
        last_seen: from_ms(r.get(17)?),
        ends_at: r.get::<_, Option<i64>>(18)?.map(from_ms),
        resolved_at: r.get::<_, Option<i64>>(19)?.map(from_ms),
        resolved_by: r.get(20)?,
        acked_at: r.get::<_, Option<i64>>(21)?.map(from_ms),
        acked_by: r.get(22)?,
        escalation_step: r.get::<_, i64>(23)?.clamp(0, u32::MAX as i64) as u32,
        notify_at: r.get::<_, Option<i64>>(24)?.map(from_ms),
        silenced_by: Vec::new(),
        inhibited_by: Vec::new(),
    })
}

fn silence_from_row(r: &Row<'_>) -> Result<Silence, AlertError> {
    let matchers: String = r.get(1)?;
    Ok(Silence {
        id: r.get(0)?,
        matchers: serde_json::from_str(&matchers)
            .map_err(|_| AlertError::Corrupt(format!("matchers `{matchers}`")))?,
        starts_at: from_ms(r.get(2)?),
        ends_at: from_ms(r.get(3)?),
        created_by: r.get(4)?,
        comment: r.get(5)?,
        created_at: from_ms(r.get(6)?),
        ended_by: r.get(7)?,
    })
}

/// The group an alert is notified with: warnings by hazard, rule alerts by
/// rule.
pub fn group_key(r: &Raise) -> String {
    match (&r.rule, r.hazard) {
        (Some(rule), _) => format!("{}:{rule}", r.kind.as_str()),
        (None, Some(h)) => format!("{}:{}", r.kind.as_str(), h.as_str()),
        (None, None) => r.kind.as_str().to_owned(),
    }
}

/// A connection to the alerts tables (in `journal.db`).
#[derive(Debug)]
pub struct AlertStore {
    pub(crate) conn: Connection,
}

impl AlertStore {
    /// Open a read-write connection (migrating the store).
    pub fn open(path: &Path, sync: SyncMode) -> Result<AlertStore, AlertError> {
        Ok(AlertStore {
            conn: crate::store::open(path, sync)?,
        })
    }

    /// A transaction that takes the write lock at once (two writers wait
    /// for each other instead of failing on upgrade).
    pub(crate) fn begin(&mut self) -> Result<Transaction<'_>, AlertError> {
        Ok(self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?)
    }

    /// Apply the evaluator's signals at `now` in one transaction, with the
    /// events cursor when given; the ids of the alerts raised.
    pub fn apply(
        &mut self,
        signals: &[Signal],
        now: DateTime<Utc>,
        settings: &AlertSettings,
        cursor: Option<i64>,
    ) -> Result<Vec<i64>, AlertError> {
        let tx = self.begin()?;
        let mut raised = Vec::new();
        for s in signals {
            match s {
                Signal::Fire(r) => raised.push(raise(&tx, r, now, settings)?),
                Signal::Resolve { fingerprint } => {
                    resolve_fingerprint(&tx, fingerprint, "system", now)?;
                }
                Signal::Stale { fingerprint, stale } => {
                    // Journaled only when it flips (the evaluator repeats it).
                    let ids: Vec<i64> = tx
                        .prepare_cached(
                            "UPDATE alerts SET stale = ?2 \
                             WHERE fingerprint = ?1 AND state = 'firing' AND stale != ?2 RETURNING id",
                        )?
                        .query_map(params![fingerprint, stale], |r| r.get(0))?
                        .collect::<Result<_, _>>()?;
                    let change = if *stale { Change::Stale } else { Change::Fresh };
                    for id in ids {
                        journal(&tx, id, change, now)?;
                    }
                }
            }
        }
        if let Some(c) = cursor {
            tx.execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                params![EVENTS_CURSOR, c.to_string()],
            )?;
        }
        tx.commit()?;
        Ok(raised)
    }

    /// Raise one alert in a transaction of its own; its id.
    pub fn raise(
        &mut self,
        r: &Raise,
        now: DateTime<Utc>,
        settings: &AlertSettings,
    ) -> Result<i64, AlertError> {
        let tx = self.begin()?;
        let id = raise(&tx, r, now, settings)?;
        tx.commit()?;
        Ok(id)
    }

    /// The events cursor (0 on a new store: see [`AlertStore::start_cursor`]).
    pub fn cursor(&self) -> Result<Option<i64>, AlertError> {
        let v: Option<String> = self
            .conn
            .query_row(
                "SELECT value FROM meta WHERE key = ?1",
                [EVENTS_CURSOR],
                |r| r.get(0),
            )
            .optional()?;
        Ok(v.and_then(|v| v.parse().ok()))
    }

    /// The newest event id in the journal (where a new engine starts:
    /// events before the alert rules existed raise nothing).
    pub fn last_event_id(&self) -> Result<i64, AlertError> {
        Ok(self
            .conn
            .query_row("SELECT coalesce(max(id), 0) FROM events", [], |r| r.get(0))?)
    }

    /// Up to `limit` journal events after `after`, in order.
    pub fn events_after(&self, after: i64, limit: usize) -> Result<Vec<(i64, Event)>, AlertError> {
        use crate::journal::outbox::{event_from_row, EVENT_COLUMNS};
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

    /// When the newest event of `source` was received.
    pub fn last_from_source(&self, source: &str) -> Result<Option<DateTime<Utc>>, AlertError> {
        Ok(self
            .conn
            .query_row(
                "SELECT received_at FROM events WHERE source = ?1 ORDER BY id DESC LIMIT 1",
                [source],
                |r| r.get::<_, i64>(0),
            )
            .optional()?
            .map(from_ms))
    }

    /// One alert.
    pub fn get(&self, id: i64) -> Result<Option<Alert>, AlertError> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!("SELECT {COLUMNS} FROM alerts WHERE id = ?1"))?;
        let mut rows = stmt.query([id])?;
        match rows.next()? {
            Some(r) => Ok(Some(alert_from_row(r)?)),
            None => Ok(None),
        }
    }

    /// Every firing alert, oldest first.
    pub fn firing(&self) -> Result<Vec<Alert>, AlertError> {
        firing_on(&self.conn)
    }

    /// Resolved alerts that were notified and whose resolution was not
    /// (at most 100).
    pub fn unnotified_resolutions(&self) -> Result<Vec<Alert>, AlertError> {
        unnotified_on(&self.conn)
    }

    /// Firing alerts and those resolved since `since` (at most `limit`,
    /// newest first).
    pub fn current(&self, since: DateTime<Utc>, limit: usize) -> Result<Vec<Alert>, AlertError> {
        self.query(
            &format!(
                "SELECT {COLUMNS} FROM alerts WHERE state = 'firing' OR resolved_at >= ?1 \
                 ORDER BY id DESC LIMIT ?2"
            ),
            params![ms(since), limit as i64],
        )
    }

    /// The fingerprint of the alert raised for bulletin `reference`.
    pub fn fingerprint_of_ref(&self, reference: &str) -> Result<Option<String>, AlertError> {
        Ok(self
            .conn
            .query_row(
                "SELECT fingerprint FROM alerts WHERE ref = ?1 ORDER BY id DESC LIMIT 1",
                [reference],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Alerts matching `q`, newest first.
    pub fn list(&self, q: &AlertQuery) -> Result<Vec<Alert>, AlertError> {
        let mut sql = format!("SELECT {COLUMNS} FROM alerts WHERE 1 = 1");
        let mut args: Vec<rusqlite::types::Value> = Vec::new();
        if let Some(s) = q.state {
            args.push(s.as_str().to_owned().into());
            sql.push_str(&format!(" AND state = ?{}", args.len()));
        }
        if let Some(a) = q.acked {
            sql.push_str(if a {
                " AND acked_at IS NOT NULL"
            } else {
                " AND acked_at IS NULL"
            });
        }
        if let Some(h) = q.hazard {
            args.push(h.as_str().to_owned().into());
            sql.push_str(&format!(" AND hazard = ?{}", args.len()));
        }
        if let Some(k) = q.kind {
            args.push(k.as_str().to_owned().into());
            sql.push_str(&format!(" AND kind = ?{}", args.len()));
        }
        if let Some(v) = &q.village {
            args.push(v.clone().into());
            sql.push_str(&format!(
                " AND EXISTS (SELECT 1 FROM json_each(alerts.villages) WHERE value = ?{})",
                args.len()
            ));
        }
        args.push((q.limit.clamp(1, 1000) as i64).into());
        sql.push_str(&format!(" ORDER BY id DESC LIMIT ?{}", args.len()));
        self.query(&sql, rusqlite::params_from_iter(args))
    }

    fn query(&self, sql: &str, args: impl rusqlite::Params) -> Result<Vec<Alert>, AlertError> {
        query_on(&self.conn, sql, args)
    }

    /// Counts by status (`firing_unack`...) and the acknowledgement times
    /// (seconds) of the alerts acknowledged since `since`.
    pub fn stats(&self, since: DateTime<Utc>) -> Result<Stats, AlertError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT state || CASE WHEN acked_at IS NULL THEN '_unack' ELSE '_ack' END, count(*) \
             FROM alerts GROUP BY 1 ORDER BY 1",
        )?;
        let counts = stmt
            .query_map([], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?.max(0) as u64))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        let mut stmt = self.conn.prepare_cached(
            "SELECT acked_at - first_seen FROM alerts WHERE acked_at IS NOT NULL AND acked_at >= ?1 \
             ORDER BY acked_at DESC LIMIT 1000",
        )?;
        let tta = stmt
            .query_map([ms(since)], |r| r.get::<_, i64>(0))?
            .map(|v| v.map(|ms| ms.max(0) as f64 / 1000.0))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Stats {
            by_status: counts.into_iter().collect(),
            ack_seconds: tta,
        })
    }

    /// Acknowledge alert `id` as `by`: escalation and repeats stop.
    pub fn ack(
        &mut self,
        id: i64,
        by: &str,
        now: DateTime<Utc>,
    ) -> Result<ActionOutcome, AlertError> {
        let tx = self.begin()?;
        let n = tx.execute(
            "UPDATE alerts SET acked_at = ?2, acked_by = ?3, notify_at = NULL \
             WHERE id = ?1 AND acked_at IS NULL",
            params![id, ms(now), by],
        )?;
        if n > 0 {
            journal(&tx, id, Change::Acked, now)?;
        }
        tx.commit()?;
        self.outcome(id, n > 0)
    }

    /// Resolve alert `id` by hand as `by`.
    pub fn resolve(
        &mut self,
        id: i64,
        by: &str,
        now: DateTime<Utc>,
    ) -> Result<ActionOutcome, AlertError> {
        let tx = self.begin()?;
        let n = resolve_where(&tx, "id = ?1", params![id, ms(now), by], now)?;
        tx.commit()?;
        self.outcome(id, n > 0)
    }

    fn outcome(&self, id: i64, done: bool) -> Result<ActionOutcome, AlertError> {
        Ok(match self.get(id)? {
            None => ActionOutcome::NotFound,
            Some(a) if done => ActionOutcome::Done(a),
            Some(a) => ActionOutcome::Already(a),
        })
    }

    /// Resolve firing alerts whose `ends_at` passed; how many.
    pub fn resolve_ended(&mut self, now: DateTime<Utc>) -> Result<usize, AlertError> {
        let tx = self.begin()?;
        let n = resolve_where(
            &tx,
            "ends_at IS NOT NULL AND ends_at <= ?2 AND ?1 = ?1",
            params![0, ms(now), "system"],
            now,
        )?;
        tx.commit()?;
        Ok(n)
    }

    /// Add a silence; its id.
    pub fn add_silence(
        &mut self,
        matchers: &[Matcher],
        starts_at: DateTime<Utc>,
        ends_at: DateTime<Utc>,
        by: &str,
        comment: &str,
        now: DateTime<Utc>,
    ) -> Result<Silence, AlertError> {
        let m = serde_json::to_string(matchers).map_err(|e| AlertError::Corrupt(e.to_string()))?;
        let tx = self.begin()?;
        tx.execute(
            "INSERT INTO alert_silences (matchers, starts_at, ends_at, created_by, comment, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![m, ms(starts_at), ms(ends_at), by, comment, ms(now)],
        )?;
        let id = tx.last_insert_rowid();
        let silence = journal_silence(&tx, id, "created", now)?;
        tx.commit()?;
        Ok(silence)
    }

    /// One silence.
    pub fn silence(&self, id: i64) -> Result<Option<Silence>, AlertError> {
        silence_on(&self.conn, id)
    }

    /// Silences not expired at `now` (or, with `all`, the newest 500).
    pub fn silences(&self, now: DateTime<Utc>, all: bool) -> Result<Vec<Silence>, AlertError> {
        silences_on(&self.conn, now, all)
    }

    /// End silence `id` now (DELETE); None when there is no such silence,
    /// Some(false) when it had already expired.
    pub fn end_silence(
        &mut self,
        id: i64,
        by: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<bool>, AlertError> {
        let tx = self.begin()?;
        let n = tx.execute(
            "UPDATE alert_silences SET ends_at = ?2, ended_by = ?3 WHERE id = ?1 AND ends_at > ?2",
            params![id, ms(now), by],
        )?;
        if n > 0 {
            journal_silence(&tx, id, "ended", now)?;
            tx.commit()?;
            return Ok(Some(true));
        }
        drop(tx);
        Ok(self.silence(id)?.map(|_| false))
    }
}

fn silence_on(conn: &Connection, id: i64) -> Result<Option<Silence>, AlertError> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, matchers, starts_at, ends_at, created_by, comment, created_at, ended_by \
         FROM alert_silences WHERE id = ?1",
    )?;
    let mut rows = stmt.query([id])?;
    match rows.next()? {
        Some(r) => Ok(Some(silence_from_row(r)?)),
        None => Ok(None),
    }
}

fn get_on(conn: &Connection, id: i64) -> Result<Option<Alert>, AlertError> {
    let mut stmt = conn.prepare_cached(&format!("SELECT {COLUMNS} FROM alerts WHERE id = ?1"))?;
    let mut rows = stmt.query([id])?;
    match rows.next()? {
        Some(r) => Ok(Some(alert_from_row(r)?)),
        None => Ok(None),
    }
}

/// What changed in an alert: the `change` of its journal entry
/// (docs/PROVINCE.md §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// A new alert.
    Raised,
    /// Raised again while active with another severity, level, hazard,
    /// villages or title, or no longer stale (a repeat that changes none of
    /// them, only its count, message or end time, takes no entry).
    Updated,
    /// The data behind it stopped coming.
    Stale,
    /// The data came back.
    Fresh,
    /// Acknowledged by an operator.
    Acked,
    /// Resolved (by its rule, the bulletin, its end time, or an operator).
    Resolved,
    /// Its notification climbed to the next step of the ladder.
    Escalated,
}

impl Change {
    /// The name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Change::Raised => "raised",
            Change::Updated => "updated",
            Change::Stale => "stale",
            Change::Fresh => "fresh",
            Change::Acked => "acked",
            Change::Resolved => "resolved",
            Change::Escalated => "escalated",
        }
    }
}

fn opt_ms(t: Option<DateTime<Utc>>) -> serde_json::Value {
    t.map_or(serde_json::Value::Null, |t| ms(t).into())
}

/// The body of an `alert` entry: the alert as it stands after `change`
/// (docs/PROVINCE.md §3; times in ms UTC).
pub fn entry_body(a: &Alert, change: Change) -> serde_json::Value {
    serde_json::json!({
        "change": change.as_str(),
        "id": a.id,
        "fingerprint": a.fingerprint,
        "kind": a.kind.as_str(),
        "rule": a.rule,
        "official": a.official,
        "severity": a.severity.as_str(),
        "hazard": a.hazard.map(|h| h.as_str()),
        "level": a.level,
        "villages": a.villages,
        "device": a.device,
        "title": a.title,
        "message": a.message,
        "details": a.details,
        "state": a.state.as_str(),
        "status": a.status(),
        "stale": a.stale,
        "occurrences": a.occurrences,
        "first_seen_ms": ms(a.first_seen),
        "last_seen_ms": ms(a.last_seen),
        "ends_at_ms": opt_ms(a.ends_at),
        "resolved_at_ms": opt_ms(a.resolved_at),
        "resolved_by": a.resolved_by,
        "acked_at_ms": opt_ms(a.acked_at),
        "acked_by": a.acked_by,
        "escalation_step": a.escalation_step,
    })
}

/// Number alert `id`'s `change` in the caller's transaction (kind
/// `alert`, the alert as it now stands in `body`).
pub(crate) fn journal(
    tx: &Connection,
    id: i64,
    change: Change,
    now: DateTime<Utc>,
) -> Result<(), AlertError> {
    let a = get_on(tx, id)?.ok_or_else(|| AlertError::Corrupt(format!("alert {id} vanished")))?;
    let body = serde_json::to_vec(&entry_body(&a, change))
        .map_err(|e| AlertError::Corrupt(e.to_string()))?;
    crate::journal::seq::append_bound(
        tx,
        &[crate::journal::seq::NewEntry {
            kind: crate::journal::seq::kind::ALERT,
            ref_id: id,
            at_ms: ms(now),
            body: Some(&body),
        }],
    )?;
    Ok(())
}

/// Number silence `id`'s `change` (`created`, `ended`) in the caller's
/// transaction (kind `alert_silence`); the silence.
fn journal_silence(
    tx: &Connection,
    id: i64,
    change: &str,
    now: DateTime<Utc>,
) -> Result<Silence, AlertError> {
    let s =
        silence_on(tx, id)?.ok_or_else(|| AlertError::Corrupt(format!("silence {id} vanished")))?;
    let body = serde_json::to_vec(&serde_json::json!({
        "change": change,
        "id": s.id,
        "matchers": s.matchers,
        "starts_at_ms": ms(s.starts_at),
        "ends_at_ms": ms(s.ends_at),
        "created_by": s.created_by,
        "comment": s.comment,
        "created_at_ms": ms(s.created_at),
        "ended_by": s.ended_by,
    }))
    .map_err(|e| AlertError::Corrupt(e.to_string()))?;
    crate::journal::seq::append_bound(
        tx,
        &[crate::journal::seq::NewEntry {
            kind: crate::journal::seq::kind::ALERT_SILENCE,
            ref_id: id,
            at_ms: ms(now),
            body: Some(&body),
        }],
    )?;
    Ok(s)
}

/// What a repeat must change to be journaled again: not its message or
/// end time, which a camera rule moves on with every event (the event is
/// an entry of its own, and the resolution will be).
fn visible(
    a: &Alert,
) -> (
    &'static str,
    Option<Hazard>,
    Option<u8>,
    &[String],
    &str,
    bool,
) {
    (
        a.severity.as_str(),
        a.hazard,
        a.level,
        &a.villages,
        &a.title,
        a.stale,
    )
}

fn query_on(
    conn: &Connection,
    sql: &str,
    args: impl rusqlite::Params,
) -> Result<Vec<Alert>, AlertError> {
    let mut stmt = conn.prepare_cached(sql)?;
    let mut rows = stmt.query(args)?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        out.push(alert_from_row(r)?);
    }
    Ok(out)
}

/// Every firing alert, oldest first (on any connection or transaction).
pub(crate) fn firing_on(conn: &Connection) -> Result<Vec<Alert>, AlertError> {
    query_on(
        conn,
        &format!("SELECT {COLUMNS} FROM alerts WHERE state = 'firing' ORDER BY id"),
        [],
    )
}

/// Resolved, notified alerts whose resolution was not (at most 100).
pub(crate) fn unnotified_on(conn: &Connection) -> Result<Vec<Alert>, AlertError> {
    query_on(
        conn,
        &format!(
            "SELECT {COLUMNS} FROM alerts WHERE state = 'resolved' AND notified_at IS NOT NULL \
             AND resolve_notified = 0 ORDER BY id LIMIT 100"
        ),
        [],
    )
}

/// Silences not expired at `now` (or, with `all`, the newest 500).
pub(crate) fn silences_on(
    conn: &Connection,
    now: DateTime<Utc>,
    all: bool,
) -> Result<Vec<Silence>, AlertError> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, matchers, starts_at, ends_at, created_by, comment, created_at, ended_by \
         FROM alert_silences WHERE ?1 OR ends_at > ?2 ORDER BY id DESC LIMIT 500",
    )?;
    let mut rows = stmt.query(params![all, ms(now)])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        out.push(silence_from_row(r)?);
    }
    Ok(out)
}

/// Insert a new alert or, when one is active under the fingerprint, count
/// an occurrence (in `tx`); its id.
fn raise(
    tx: &Transaction<'_>,
    r: &Raise,
    now: DateTime<Utc>,
    settings: &AlertSettings,
) -> Result<i64, AlertError> {
    let group = group_key(r);
    let notify_at = if r.urgent {
        now
    } else {
        let last: Option<i64> = tx
            .query_row(
                "SELECT last_sent FROM alert_groups WHERE group_key = ?1",
                [&group],
                |row| row.get(0),
            )
            .optional()?;
        let busy = tx
            .query_row(
                "SELECT 1 FROM alerts WHERE group_key = ?1 AND state = 'firing' AND notified_at IS NOT NULL LIMIT 1",
                [&group],
                |_| Ok(()),
            )
            .optional()?
            .is_some();
        // A group waiting for its first notification: join it.
        let waiting: Option<i64> = tx.query_row(
            "SELECT min(notify_at) FROM alerts WHERE group_key = ?1 AND state = 'firing' \
             AND notified_at IS NULL AND acked_at IS NULL",
            [&group],
            |row| row.get(0),
        )?;
        match (last, waiting) {
            // A group that was notified and still has firing alerts: the
            // newcomer waits for the group's next interval.
            (Some(last), _) if busy => from_ms(last) + settings.group_interval,
            (_, Some(at)) => from_ms(at),
            _ => now + settings.group_wait,
        }
        .max(now)
    };
    let before: Option<Alert> = {
        let mut stmt = tx.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM alerts WHERE fingerprint = ?1 AND state = 'firing'"
        ))?;
        let mut rows = stmt.query([&r.fingerprint])?;
        match rows.next()? {
            Some(row) => Some(alert_from_row(row)?),
            None => None,
        }
    };
    let villages = serde_json::to_string(&r.villages).unwrap_or_else(|_| "[]".into());
    let details = r.details.to_string();
    let id: i64 = tx.query_row(
        "INSERT INTO alerts (fingerprint, kind, rule, official, severity, hazard, level, villages, \
            device, title, message, details, ref, state, occurrences, first_seen, last_seen, ends_at, \
            group_key, notify_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, 'firing', 1, ?14, ?14, ?15, ?16, ?17) \
         ON CONFLICT (fingerprint) WHERE state = 'firing' DO UPDATE SET \
            occurrences = occurrences + 1, last_seen = excluded.last_seen, \
            ends_at = excluded.ends_at, severity = excluded.severity, hazard = excluded.hazard, \
            level = excluded.level, villages = excluded.villages, title = excluded.title, \
            message = excluded.message, details = excluded.details, \
            ref = coalesce(excluded.ref, ref), stale = 0, \
            notify_at = CASE WHEN ?18 AND acked_at IS NULL \
                THEN min(coalesce(notify_at, excluded.notify_at), excluded.notify_at) \
                ELSE notify_at END \
         RETURNING id",
        params![
            r.fingerprint,
            r.kind.as_str(),
            r.rule,
            r.official,
            r.severity.as_str(),
            r.hazard.map(|h| h.as_str()),
            r.level.map(i64::from),
            villages,
            r.device,
            r.title,
            r.message,
            details,
            r.reference,
            ms(now),
            r.ends_at.map(ms),
            group,
            ms(notify_at),
            r.urgent,
        ],
        |row| row.get(0),
    )?;
    match before {
        None => journal(tx, id, Change::Raised, now)?,
        Some(b) => {
            let after = get_on(tx, id)?
                .ok_or_else(|| AlertError::Corrupt(format!("alert {id} vanished")))?;
            if visible(&b) != visible(&after) {
                journal(tx, id, Change::Updated, now)?;
            }
        }
    }
    Ok(id)
}

/// Resolve the firing alert of `fingerprint` (or of the bulletin `ref`).
fn resolve_fingerprint(
    tx: &Transaction<'_>,
    fingerprint: &str,
    by: &str,
    now: DateTime<Utc>,
) -> Result<usize, AlertError> {
    resolve_where(
        tx,
        "fingerprint = ?1",
        params![fingerprint, ms(now), by],
        now,
    )
}

/// Resolve the firing alerts matching `cond`, each a journal entry; how
/// many.
fn resolve_where(
    tx: &Transaction<'_>,
    cond: &str,
    args: impl rusqlite::Params,
    now: DateTime<Utc>,
) -> Result<usize, AlertError> {
    let ids: Vec<i64> = tx
        .prepare_cached(&format!(
            "UPDATE alerts SET state = 'resolved', resolved_at = ?2, resolved_by = ?3, \
             notify_at = NULL, stale = 0 WHERE state = 'firing' AND {cond} RETURNING id"
        ))?
        .query_map(args, |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for id in &ids {
        journal(tx, *id, Change::Resolved, now)?;
    }
    Ok(ids.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::model::AlertKind;

    pub(crate) fn raise_of(fp: &str) -> Raise {
        Raise {
            fingerprint: fp.into(),
            kind: AlertKind::Camera,
            rule: Some("chay".into()),
            official: false,
            severity: Severity::Critical,
            hazard: None,
            level: None,
            villages: vec!["na-da".into()],
            device: Some("cam-01".into()),
            title: "Cháy".into(),
            message: "Phát hiện cháy".into(),
            details: serde_json::json!({}),
            reference: None,
            ends_at: None,
            urgent: false,
        }
    }

    fn t0() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-12-03T01:00:00Z")
            .unwrap()
            .into()
    }

    /// Two connections raising the same fingerprint at once, 200 times
    /// each: one active alert, 400 occurrences (the UNIQUE partial index
    /// and the upsert, not the callers, keep it single).
    #[test]
    fn concurrent_writers_make_exactly_one_active_alert() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.db");
        drop(AlertStore::open(&path, SyncMode::Normal).unwrap());
        let settings = AlertSettings::default();
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let path = path.clone();
                let settings = settings.clone();
                std::thread::spawn(move || {
                    let mut s = AlertStore::open(&path, SyncMode::Normal).unwrap();
                    let barrier_free: Vec<i64> = (0..200)
                        .map(|_| {
                            s.raise(&raise_of("rule:chay:cam-01:fire"), t0(), &settings)
                                .unwrap()
                        })
                        .collect();
                    barrier_free
                })
            })
            .collect();
        let ids: Vec<i64> = threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        assert!(
            ids.windows(2).all(|w| w[0] == w[1]),
            "one id for every raise"
        );
        let s = AlertStore::open(&path, SyncMode::Normal).unwrap();
        let firing = s.firing().unwrap();
        assert_eq!(firing.len(), 1);
        assert_eq!(firing[0].occurrences, 400);
        // The index itself refuses a second active row.
        let dup = s.conn.execute(
            "INSERT INTO alerts (fingerprint, kind, official, severity, villages, title, message, details, state, first_seen, last_seen, group_key) \
             VALUES ('rule:chay:cam-01:fire', 'camera', 0, 'critical', '[]', '', '', '{}', 'firing', 0, 0, 'g')",
            [],
        );
        assert!(
            dup.is_err(),
            "a second firing row under the same fingerprint"
        );
    }

    /// Resolving frees the fingerprint: the next raise is a new alert with
    /// its own count; ack and resolve say when they were already done.
    #[test]
    fn lifecycle_resolve_then_fire_again_makes_a_new_alert() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = AlertStore::open(&dir.path().join("j.db"), SyncMode::Normal).unwrap();
        let set = AlertSettings::default();
        let a = s.raise(&raise_of("fp"), t0(), &set).unwrap();
        s.raise(&raise_of("fp"), t0() + TimeDelta::seconds(5), &set)
            .unwrap();
        let got = s.get(a).unwrap().unwrap();
        assert_eq!(
            (got.occurrences, got.first_seen, got.last_seen),
            (2, t0(), t0() + TimeDelta::seconds(5))
        );
        assert_eq!(got.status(), "firing_unack");
        assert!(
            matches!(s.ack(a, "truc.ban", t0()).unwrap(), ActionOutcome::Done(x) if x.acked_by.as_deref() == Some("truc.ban") && x.notify_at.is_none())
        );
        assert!(
            matches!(s.ack(a, "khac", t0()).unwrap(), ActionOutcome::Already(x) if x.acked_by.as_deref() == Some("truc.ban"))
        );
        assert!(
            matches!(s.resolve(a, "truc.ban", t0()).unwrap(), ActionOutcome::Done(x) if x.status() == "resolved_ack")
        );
        assert!(matches!(
            s.resolve(a, "truc.ban", t0()).unwrap(),
            ActionOutcome::Already(_)
        ));
        assert_eq!(s.ack(999, "x", t0()).unwrap(), ActionOutcome::NotFound);
        let b = s
            .raise(&raise_of("fp"), t0() + TimeDelta::minutes(1), &set)
            .unwrap();
        assert_ne!(a, b);
        assert_eq!(s.get(b).unwrap().unwrap().occurrences, 1);
    }

    /// A silence is active from its start to its end (tested with the
    /// clock), then expired; ending it early keeps who did.
    #[test]
    fn silences_expire_at_their_end_time() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = AlertStore::open(&dir.path().join("j.db"), SyncMode::Normal).unwrap();
        let id = s
            .raise(&raise_of("fp"), t0(), &AlertSettings::default())
            .unwrap();
        let alert = s.get(id).unwrap().unwrap();
        let m = vec![Matcher {
            name: "village".into(),
            value: "na-da".into(),
        }];
        let sil = s
            .add_silence(
                &m,
                t0(),
                t0() + TimeDelta::hours(1),
                "truc.ban",
                "bảo trì loa",
                t0(),
            )
            .unwrap();
        assert!(sil.silences(&alert, t0()));
        assert!(sil.silences(&alert, t0() + TimeDelta::minutes(59)));
        assert!(
            !sil.silences(&alert, t0() + TimeDelta::hours(1)),
            "expired at its end"
        );
        assert_eq!(sil.status(t0() - TimeDelta::seconds(1)), "pending");
        let other = Silence {
            matchers: vec![Matcher {
                name: "village".into(),
                value: "tan-binh".into(),
            }],
            ..sil.clone()
        };
        assert!(!other.silences(&alert, t0()));
        assert_eq!(s.silences(t0(), false).unwrap().len(), 1);
        assert_eq!(
            s.silences(t0() + TimeDelta::hours(2), false).unwrap().len(),
            0
        );
        assert_eq!(
            s.end_silence(sil.id, "chu.tich", t0() + TimeDelta::minutes(5))
                .unwrap(),
            Some(true)
        );
        let ended = s.silence(sil.id).unwrap().unwrap();
        assert_eq!(ended.ended_by.as_deref(), Some("chu.tich"));
        assert_eq!(ended.status(t0() + TimeDelta::minutes(6)), "expired");
        assert_eq!(
            s.end_silence(sil.id, "x", t0() + TimeDelta::minutes(7))
                .unwrap(),
            Some(false)
        );
        assert_eq!(s.end_silence(42, "x", t0()).unwrap(), None);
    }

    /// The `(kind, change)` of every journal entry, in seq order (and
    /// the seqs are 1..=n).
    fn journal_of(s: &AlertStore) -> Vec<(String, String)> {
        let mut stmt = s
            .conn
            .prepare("SELECT seq, kind, body FROM journal_seq ORDER BY seq")
            .unwrap();
        let rows: Vec<(i64, String, Vec<u8>)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        for (i, (seq, _, _)) in rows.iter().enumerate() {
            assert_eq!(*seq, i as i64 + 1, "gap-free");
        }
        rows.into_iter()
            .map(|(_, kind, body)| {
                let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
                (kind, v["change"].as_str().unwrap_or_default().to_owned())
            })
            .collect()
    }

    fn entry(kind: &str, change: &str) -> (String, String) {
        (kind.to_owned(), change.to_owned())
    }

    /// Every state change of an alert is a numbered `alert` entry with
    /// the alert as it then stood; repeats that change nothing visible
    /// (a count, a stale flag already set) take none; silences are
    /// `alert_silence` entries.
    #[test]
    fn every_alert_change_is_a_journal_entry_and_repeats_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = AlertStore::open(&dir.path().join("j.db"), SyncMode::Normal).unwrap();
        let set = AlertSettings::default();
        let id = s.raise(&raise_of("fp"), t0(), &set).unwrap();
        // The same again, with the event's time in its message and a later
        // end: an occurrence, no entry.
        let mut again = raise_of("fp");
        again.message = "Phát hiện cháy lúc 08:01".into();
        again.ends_at = Some(t0() + TimeDelta::hours(1));
        s.raise(&again, t0() + TimeDelta::seconds(1), &set).unwrap();
        // Worse now: an entry.
        let mut worse = raise_of("fp");
        worse.villages.push("ta-lan".into());
        s.raise(&worse, t0() + TimeDelta::seconds(2), &set).unwrap();
        let stale = |v: bool| Signal::Stale {
            fingerprint: "fp".into(),
            stale: v,
        };
        s.apply(&[stale(true)], t0(), &set, None).unwrap();
        s.apply(&[stale(true)], t0(), &set, None).unwrap();
        s.apply(&[stale(false)], t0(), &set, None).unwrap();
        s.ack(id, "truc.ban", t0()).unwrap();
        s.ack(id, "truc.ban", t0()).unwrap();
        let sil = s
            .add_silence(
                &[Matcher {
                    name: "village".into(),
                    value: "na-da".into(),
                }],
                t0(),
                t0() + TimeDelta::hours(1),
                "truc.ban",
                "bảo trì",
                t0(),
            )
            .unwrap();
        s.end_silence(sil.id, "truc.ban", t0() + TimeDelta::minutes(1))
            .unwrap();
        s.apply(
            &[Signal::Resolve {
                fingerprint: "fp".into(),
            }],
            t0(),
            &set,
            None,
        )
        .unwrap();
        s.resolve(id, "x", t0()).unwrap();
        assert_eq!(
            journal_of(&s),
            vec![
                entry("alert", "raised"),
                entry("alert", "updated"),
                entry("alert", "stale"),
                entry("alert", "fresh"),
                entry("alert", "acked"),
                entry("alert_silence", "created"),
                entry("alert_silence", "ended"),
                entry("alert", "resolved"),
            ]
        );
        // The last entry is the alert as it stood then.
        let body: Vec<u8> = s
            .conn
            .query_row(
                "SELECT body FROM journal_seq ORDER BY seq DESC LIMIT 1",
                [],
                |r| r.get(0),
            )
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["id"], id);
        assert_eq!(v["fingerprint"], "fp");
        assert_eq!(v["state"], "resolved");
        assert_eq!(v["status"], "resolved_ack");
        assert_eq!(v["acked_by"], "truc.ban");
        assert_eq!(v["resolved_by"], "system");
        assert_eq!(v["occurrences"], 3);
        assert_eq!(v["villages"], serde_json::json!(["na-da", "ta-lan"]));
        assert_eq!(v["first_seen_ms"], ms(t0()));
    }

    /// A change and its entry commit together: a transaction that fails
    /// after an alert was raised (and numbered) leaves neither, and an
    /// entry that cannot be written undoes its change.
    #[test]
    fn a_failing_change_writes_no_entry() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = AlertStore::open(&dir.path().join("j.db"), SyncMode::Normal).unwrap();
        let set = AlertSettings::default();
        s.conn
            .execute_batch(
                "CREATE TRIGGER refuse_bad BEFORE INSERT ON alerts WHEN NEW.fingerprint = 'bad' \
                 BEGIN SELECT RAISE(ABORT, 'refused'); END;",
            )
            .unwrap();
        let fire = |fp: &str| Signal::Fire(Box::new(raise_of(fp)));
        assert!(s
            .apply(&[fire("good"), fire("bad")], t0(), &set, None)
            .is_err());
        assert!(s.firing().unwrap().is_empty(), "the raise rolled back");
        assert!(journal_of(&s).is_empty(), "and its entry with it");
        // Numbering fails: the acknowledgement does not happen either.
        let id = s.raise(&raise_of("good"), t0(), &set).unwrap();
        s.conn
            .execute_batch(
                "CREATE TRIGGER refuse_entries BEFORE INSERT ON journal_seq \
                 BEGIN SELECT RAISE(ABORT, 'journal full'); END;",
            )
            .unwrap();
        assert!(s.ack(id, "truc.ban", t0()).is_err());
        assert_eq!(s.get(id).unwrap().unwrap().acked_at, None);
        s.conn.execute_batch("DROP TRIGGER refuse_entries").unwrap();
        assert!(matches!(
            s.ack(id, "truc.ban", t0()).unwrap(),
            ActionOutcome::Done(_)
        ));
        assert_eq!(
            journal_of(&s),
            vec![entry("alert", "raised"), entry("alert", "acked")]
        );
    }
}
