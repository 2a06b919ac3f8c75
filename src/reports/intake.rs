//! The report intake, run by the journal writer inside each batch's
//! transaction: every new event extends the Merkle frontier of its stream
//! in each period (month, quarter, half, year) that contains its event
//! time, or, when it was received after that period's cutoff (end +
//! grace), is written to the late ledger (`report_late`) instead. Sealing
//! then reads the manifests from `report_streams` without rescanning.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension};

use super::merkle::{event_hash, EventRecord, Frontier, Hash};
use super::period::{PeriodKind, ReportPeriod};
use crate::config::Regime;

/// How events are assigned to periods: the regime and the grace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// The period regime.
    pub regime: Regime,
    /// Grace after a period's end, ms.
    pub grace_ms: i64,
}

impl Default for Rule {
    fn default() -> Self {
        Rule::from_config(&crate::config::Report::default())
    }
}

impl Rule {
    /// The rule of a `[report]` section.
    pub fn from_config(r: &crate::config::Report) -> Rule {
        Rule {
            regime: r.regime,
            grace_ms: i64::try_from(r.grace_secs).unwrap_or(i64::MAX / 2) * 1000,
        }
    }

    /// Stored beside each frontier; a different rule means the frontier
    /// must be rebuilt before sealing.
    pub fn signature(&self) -> String {
        let regime = match self.regime {
            Regime::Nd09 => "nd09",
            Regime::Calendar => "calendar",
        };
        format!("{regime}/{}", self.grace_ms)
    }

    /// The cutoff of a period: events received at or after it are late.
    pub fn cutoff_ms(&self, p: &ReportPeriod) -> i64 {
        p.end.timestamp_millis().saturating_add(self.grace_ms)
    }
}

/// The four periods (month, quarter, half, year) that contain `ts`.
pub fn periods_of(ts: DateTime<Utc>, regime: Regime) -> [ReportPeriod; 4] {
    let m = ReportPeriod::month_of(ts, regime);
    let (y, i) = (m.year, m.index);
    let make = |kind, index| ReportPeriod::new(kind, y, index, regime).expect("in range");
    [
        make(PeriodKind::Quarter, (i - 1) / 3 + 1),
        make(PeriodKind::Half, (i - 1) / 6 + 1),
        make(PeriodKind::Year, 0),
        m,
    ]
}

/// One new event, as stored.
#[derive(Debug, Clone, Copy)]
pub struct Intake<'a> {
    /// The stored columns.
    pub record: EventRecord<'a>,
    /// Receive time, ms.
    pub received_at: i64,
}

/// count, first_ts, last_ts, frontier, rule.
type StoredRow = (i64, Option<i64>, Option<i64>, Vec<u8>, String);

struct StreamAcc {
    frontier: Frontier,
    first: Option<i64>,
    last: Option<i64>,
    rule: String,
    changed: bool,
}

fn load(tx: &Connection, period: &str, stream: &str, rule: &str) -> rusqlite::Result<StreamAcc> {
    let row: Option<StoredRow> = tx
        .prepare_cached(
            "SELECT count, first_ts, last_ts, frontier, rule FROM report_streams WHERE period = ?1 AND stream = ?2",
        )?
        .query_row(params![period, stream], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })
        .optional()?;
    Ok(match row {
        Some((count, first, last, bytes, stored_rule)) => {
            match Frontier::from_parts(count as u64, &bytes) {
                Some(frontier) => StreamAcc {
                    frontier,
                    first,
                    last,
                    rule: if stored_rule == rule {
                        stored_rule
                    } else {
                        "stale".into()
                    },
                    changed: false,
                },
                None => StreamAcc {
                    frontier: Frontier::default(),
                    first: None,
                    last: None,
                    rule: "stale".into(),
                    changed: true,
                },
            }
        }
        None => StreamAcc {
            frontier: Frontier::default(),
            first: None,
            last: None,
            rule: rule.to_owned(),
            changed: false,
        },
    })
}

/// Record a batch's new events (in commit order) in the manifests or the
/// late ledger, inside the caller's transaction.
pub fn record(tx: &Connection, rule: &Rule, events: &[Intake<'_>]) -> rusqlite::Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    let sig = rule.signature();
    let mut accs: HashMap<(String, String), StreamAcc> = HashMap::new();
    let mut cache: Option<(i64, i64, [ReportPeriod; 4])> = None;
    let mut late = tx.prepare_cached(
        "INSERT OR IGNORE INTO report_late (period, dedup_key, stream, ts, received_at) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    for e in events {
        let ts = e.record.ts;
        let hit = matches!(&cache, Some((a, b, _)) if ts >= *a && ts < *b);
        if !hit {
            let t = DateTime::<Utc>::from_timestamp_millis(ts).unwrap_or_default();
            let p = periods_of(t, rule.regime);
            let (a, b) = (p[3].start.timestamp_millis(), p[3].end.timestamp_millis());
            cache = Some((a, b, p));
        }
        let Some((_, _, periods)) = &cache else {
            continue;
        };
        let mut hash: Option<Hash> = None;
        for p in periods {
            let label = p.label();
            if e.received_at >= rule.cutoff_ms(p) {
                late.execute(params![
                    label,
                    e.record.dedup_key,
                    e.record.source,
                    ts,
                    e.received_at
                ])?;
                continue;
            }
            let h = *hash.get_or_insert_with(|| event_hash(&e.record));
            let key = (label, e.record.source.to_owned());
            if !accs.contains_key(&key) {
                let acc = load(tx, &key.0, &key.1, &sig)?;
                accs.insert(key.clone(), acc);
            }
            let acc = accs.get_mut(&key).expect("inserted above");
            acc.frontier.push(&h);
            acc.first = Some(acc.first.map_or(ts, |f| f.min(ts)));
            acc.last = Some(acc.last.map_or(ts, |l| l.max(ts)));
            acc.changed = true;
        }
    }
    let mut up = tx.prepare_cached(
        "INSERT INTO report_streams (period, stream, count, first_ts, last_ts, frontier, rule) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT(period, stream) DO UPDATE SET count = excluded.count, first_ts = excluded.first_ts,
           last_ts = excluded.last_ts, frontier = excluded.frontier, rule = excluded.rule",
    )?;
    for ((period, stream), acc) in accs {
        if acc.changed {
            up.execute(params![
                period,
                stream,
                acc.frontier.count() as i64,
                acc.first,
                acc.last,
                acc.frontier.peaks_bytes(),
                acc.rule
            ])?;
        }
    }
    Ok(())
}
