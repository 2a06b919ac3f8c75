//! Computing a snapshot's values and manifest for a period, two ways that
//! must agree:
//!
//! - [`from_store`] (sealing): counter sums from the hourly rollups minus
//!   the late ledger's events, the newest `latest` readings by a backward
//!   scan, and the stream manifests from the frontiers the journal writer
//!   keeps (no rescan of the period's events for the digest);
//! - [`from_journal`] (`verify --recompute`, corrections): one pass over
//!   the period's events in journal order, received before the cutoff.
//!
//! Both feed the same [`rows`], which reads the indicator definitions
//! through `indicators::Engine` (no formula is written twice).

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use rusqlite::{params, Connection};
use sha2::{Digest, Sha256};

use super::merkle::{event_hash, EventRecord, Frontier};
use super::period::ReportPeriod;
use super::snapshot::{IndicatorRow, Lineage, RowStatus, ScopeValues, StreamManifest};
use super::ReportError;
use crate::config::Config;
use crate::indicators::{Engine, ReportPlan};
use crate::journal::outbox::{event_from_row, EVENT_COLUMNS};
use crate::model::{Event, Source};

/// Everything the rows are computed from.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Inputs {
    /// (counter, scope) → sum over the period.
    pub sums: HashMap<(usize, usize), f64>,
    /// (indicator, scope) → newest reading (ts ms, value).
    pub latest: HashMap<(usize, usize), (i64, f64)>,
    /// Dead letters received in the period.
    pub dead_letters: u64,
    /// Stream name → manifest and frontier.
    pub streams: BTreeMap<String, (StreamManifest, Frontier)>,
}

const CHUNK: usize = 4096;

/// `+07:00` RFC 3339 text of a time in ms.
pub fn local_text(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .with_timezone(&super::period::vn())
        .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, false)
}

fn manifest(
    stream: &str,
    f: Frontier,
    first: Option<i64>,
    last: Option<i64>,
) -> (StreamManifest, Frontier) {
    (
        StreamManifest {
            stream: stream.to_owned(),
            count: f.count(),
            merkle_root: f.root_text(),
            first_event_ts: first.map(local_text),
            last_event_ts: last.map(local_text),
        },
        f,
    )
}

fn empty_streams() -> BTreeMap<String, (StreamManifest, Frontier)> {
    Source::ALL
        .iter()
        .map(|s| {
            (
                s.as_str().to_owned(),
                manifest(s.as_str(), Frontier::default(), None, None),
            )
        })
        .collect()
}

fn add_delta(
    sums: &mut HashMap<(usize, usize), f64>,
    events: &[Event],
    engine: &Engine,
    sign: f64,
) {
    let d = engine.delta(events.iter(), &[]);
    for (&(c, s, _), &v) in &d.rollups {
        *sums.entry((c, s)).or_insert(0.0) += sign * v;
    }
}

fn merge_latest(
    latest: &mut HashMap<(usize, usize), (i64, f64)>,
    events: &[Event],
    engine: &Engine,
    only_missing: bool,
) {
    let d = engine.delta(events.iter(), &[]);
    for (&k, &(ts, v)) in &d.latest {
        let ts = ts.timestamp_millis();
        match latest.get(&k) {
            Some(_) if only_missing => {}
            Some(&(t, _)) if t > ts => {}
            _ => {
                latest.insert(k, (ts, v));
            }
        }
    }
}

fn latest_pairs(engine: &Engine) -> (usize, Option<Vec<Source>>) {
    let mut n = 0;
    let mut sources: Vec<Source> = Vec::new();
    let mut all = false;
    for si in 0..engine.spec_count() {
        if engine.report_plan(si) == ReportPlan::Latest {
            n += engine.scopes().len();
            let s = engine.spec_streams(si);
            if s.len() == Source::ALL.len() {
                all = true;
            }
            sources.extend(s);
        }
    }
    sources.sort_by_key(|s| s.as_str());
    sources.dedup();
    (n, (!all).then_some(sources))
}

/// Sealing's inputs, from the rollups, the late ledger and the frontiers.
/// `cutoff` counts late events received before it (the period's own
/// cutoff for revision 0).
pub fn from_store(
    conn: &Connection,
    engine: &Engine,
    period: &ReportPeriod,
    cutoff: i64,
) -> Result<Inputs, ReportError> {
    let (start, end) = period.utc();
    let (a, b) = (start.timestamp_millis(), end.timestamp_millis());
    let mut inputs = Inputs {
        streams: empty_streams(),
        ..Inputs::default()
    };
    // Counter sums from the hourly rollups (window edges are whole hours).
    let mut stmt = conn.prepare(
        "SELECT counter, scope, SUM(value) FROM rollup_hour WHERE bucket >= ?1 AND bucket < ?2 GROUP BY counter, scope",
    )?;
    let mut rows = stmt.query(params![a.div_euclid(3_600_000), b.div_euclid(3_600_000)])?;
    while let Some(r) = rows.next()? {
        let (counter, scope): (String, String) = (r.get(0)?, r.get(1)?);
        if let (Some(c), Some(s)) = (engine.counter_index(&counter), engine.scope_index(&scope)) {
            inputs.sums.insert((c, s), r.get(2)?);
        }
    }
    drop(rows);
    drop(stmt);
    // Minus the late events received at or after the cutoff.
    let mut stmt = conn.prepare(&format!(
        "SELECT {cols} FROM report_late l JOIN events e ON e.dedup_key = l.dedup_key
         WHERE l.period = ?1 AND l.received_at >= ?2 ORDER BY e.id",
        cols = prefixed(EVENT_COLUMNS)
    ))?;
    let mut rows = stmt.query(params![period.label(), cutoff])?;
    let mut chunk = Vec::with_capacity(CHUNK);
    while let Some(r) = rows.next()? {
        chunk.push(event_from_row(r)?);
        if chunk.len() == CHUNK {
            add_delta(&mut inputs.sums, &chunk, engine, -1.0);
            chunk.clear();
        }
    }
    add_delta(&mut inputs.sums, &chunk, engine, -1.0);
    drop(rows);
    drop(stmt);
    // Dead letters by receive time.
    inputs.dead_letters = dead_letters(conn, a, b)?;
    // The newest `latest` readings, scanning back from the end.
    let (pairs, sources) = latest_pairs(engine);
    if pairs > 0 {
        let filter = match &sources {
            Some(list) if !list.is_empty() => format!(
                " AND source IN ({})",
                list.iter()
                    .map(|s| format!("'{}'", s.as_str()))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            _ => String::new(),
        };
        let mut stmt = conn.prepare(&format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE ts >= ?1 AND ts < ?2 AND received_at < ?3{filter}
             ORDER BY ts DESC, id DESC"
        ))?;
        let mut rows = stmt.query(params![a, b, cutoff])?;
        let mut chunk: Vec<Event> = Vec::with_capacity(CHUNK);
        loop {
            let more = match rows.next()? {
                Some(r) => {
                    chunk.push(event_from_row(r)?);
                    true
                }
                None => false,
            };
            if chunk.len() == CHUNK || !more {
                chunk.reverse();
                merge_latest(&mut inputs.latest, &chunk, engine, true);
                chunk.clear();
                if !more || inputs.latest.len() >= pairs {
                    break;
                }
            }
        }
    }
    // Manifests from the frontiers.
    let mut stmt = conn.prepare(
        "SELECT stream, count, first_ts, last_ts, frontier FROM report_streams WHERE period = ?1",
    )?;
    let mut rows = stmt.query([period.label()])?;
    while let Some(r) = rows.next()? {
        let stream: String = r.get(0)?;
        let count: i64 = r.get(1)?;
        let bytes: Vec<u8> = r.get(4)?;
        let f = Frontier::from_parts(count as u64, &bytes)
            .ok_or_else(|| ReportError::Corrupt(format!("frontier {} {stream}", period.label())))?;
        let m = manifest(&stream, f, r.get(2)?, r.get(3)?);
        inputs.streams.insert(stream, m);
    }
    Ok(inputs)
}

fn prefixed(cols: &str) -> String {
    cols.split(", ")
        .map(|c| format!("e.{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn dead_letters(conn: &Connection, a: i64, b: i64) -> Result<u64, ReportError> {
    let n: i64 = conn.query_row(
        "SELECT COUNT(*) FROM dead_letters WHERE received_at >= ?1 AND received_at < ?2",
        params![a, b],
        |r| r.get(0),
    )?;
    Ok(n as u64)
}

/// The inputs recomputed from the journal alone: every event of the
/// period received before `cutoff`, in journal order.
pub fn from_journal(
    conn: &Connection,
    engine: &Engine,
    period: &ReportPeriod,
    cutoff: i64,
) -> Result<Inputs, ReportError> {
    let (start, end) = period.utc();
    let (a, b) = (start.timestamp_millis(), end.timestamp_millis());
    let mut inputs = Inputs::default();
    let mut streams: BTreeMap<String, (Frontier, Option<i64>, Option<i64>)> = BTreeMap::new();
    // The period's events lie in an id range; walk it in id order.
    let (lo, hi): (Option<i64>, Option<i64>) = conn.query_row(
        "SELECT MIN(id), MAX(id) FROM events WHERE ts >= ?1 AND ts < ?2",
        params![a, b],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    if let (Some(lo), Some(hi)) = (lo, hi) {
        let mut stmt = conn.prepare(&format!(
            "SELECT {EVENT_COLUMNS}, payload FROM events
             WHERE id >= ?1 AND id <= ?2 AND ts >= ?3 AND ts < ?4 AND received_at < ?5 ORDER BY id"
        ))?;
        let mut rows = stmt.query(params![lo, hi, a, b, cutoff])?;
        let mut chunk: Vec<Event> = Vec::with_capacity(CHUNK);
        while let Some(r) = rows.next()? {
            let attrs: String = r.get(7)?;
            let payload: Vec<u8> = r.get(9)?;
            let e = event_from_row(r)?;
            let ts = e.ts.timestamp_millis();
            let h = event_hash(&EventRecord {
                dedup_key: &e.dedup_key,
                source: e.source.as_str(),
                kind: &e.kind,
                device: e.device.as_deref(),
                village: e.village.as_deref(),
                ts,
                seq: e.seq.map(|s| s as i64),
                attrs: &attrs,
                payload: &payload,
            });
            let slot = streams.entry(e.source.as_str().to_owned()).or_default();
            slot.0.push(&h);
            slot.1 = Some(slot.1.map_or(ts, |f| f.min(ts)));
            slot.2 = Some(slot.2.map_or(ts, |l| l.max(ts)));
            chunk.push(e);
            if chunk.len() == CHUNK {
                add_delta(&mut inputs.sums, &chunk, engine, 1.0);
                merge_latest(&mut inputs.latest, &chunk, engine, false);
                chunk.clear();
            }
        }
        add_delta(&mut inputs.sums, &chunk, engine, 1.0);
        merge_latest(&mut inputs.latest, &chunk, engine, false);
    }
    inputs.dead_letters = dead_letters(conn, a, b)?;
    inputs.streams = empty_streams();
    for (name, (f, first, last)) in streams {
        let m = manifest(&name, f, first, last);
        inputs.streams.insert(name, m);
    }
    Ok(inputs)
}

/// Round to 4 decimals (sums in another order differ in the last bits).
pub fn round4(x: f64) -> f64 {
    let r = (x * 10_000.0).round() / 10_000.0;
    if r == 0.0 {
        0.0
    } else {
        r
    }
}

fn short_sha(s: &str) -> String {
    hex::encode(&Sha256::digest(s.as_bytes())[..8])
}

/// The ruleset version: a short hash over every indicator definition.
pub fn ruleset_version(engine: &Engine) -> String {
    short_sha(&engine.signature())
}

/// Target as written: `>= 90`.
pub fn target_text(t: &crate::vocab::Target) -> String {
    format!("{} {}", t.op.as_str(), t.value)
}

/// The rows: the commune, then each village in config order.
pub fn rows(config: &Config, engine: &Engine, inputs: &Inputs) -> Vec<ScopeValues> {
    let names: HashMap<&str, &str> = config
        .villages
        .iter()
        .map(|v| (v.id.as_str(), v.name.as_str()))
        .collect();
    let mut out = Vec::new();
    for (scope, scope_id) in engine.scopes().iter().enumerate() {
        let name = if scope == 0 {
            config.commune.name.clone()
        } else {
            names
                .get(scope_id.as_str())
                .copied()
                .unwrap_or(scope_id)
                .to_owned()
        };
        let indicators = (0..engine.spec_count())
            .map(|si| row(engine, si, scope, inputs))
            .collect();
        out.push(ScopeValues {
            scope: scope_id.clone(),
            name,
            indicators,
        });
    }
    out
}

fn row(engine: &Engine, si: usize, scope: usize, inputs: &Inputs) -> IndicatorRow {
    let (id, name, unit, target, kind) = engine.spec_info(si);
    let streams = engine.spec_streams(si);
    let mut input_count = 0u64;
    let mut h = Sha256::new();
    for s in &streams {
        if let Some((m, f)) = inputs.streams.get(s.as_str()) {
            input_count += m.count;
            h.update(f.root());
        }
    }
    let sum = |c: usize| inputs.sums.get(&(c, scope)).copied().unwrap_or(0.0);
    let (mut value, mut numerator, mut denominator) = (None, None, None);
    match engine.report_plan(si) {
        ReportPlan::Sum(c) => {
            if input_count > 0 {
                value = Some(sum(c));
            }
        }
        ReportPlan::Ratio(n, d) => {
            let (num, den) = (sum(n), sum(d));
            if input_count > 0 {
                numerator = Some(round4(num));
                denominator = Some(round4(den));
            }
            if den > 0.0 {
                value = Some(100.0 * num / den);
            }
        }
        ReportPlan::Latest => value = inputs.latest.get(&(si, scope)).map(|&(_, v)| v),
        ReportPlan::DeadLetters(_) => {
            // Zero dead letters is a value only when something was heard
            // in the period at all.
            let heard =
                inputs.dead_letters > 0 || inputs.streams.values().any(|(m, _)| m.count > 0);
            if scope == 0 && heard {
                value = Some(inputs.dead_letters as f64);
            }
        }
        ReportPlan::Instant => {}
    }
    let value = value.map(round4);
    let status = match (value, target) {
        (None, _) => RowStatus::NoData,
        (Some(_), None) => RowStatus::Met,
        (Some(x), Some(t)) if t.met(x) => RowStatus::Met,
        (Some(_), Some(_)) => RowStatus::NotMet,
    };
    IndicatorRow {
        indicator: id.to_owned(),
        name: name.to_owned(),
        kind: serde_json::to_value(kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default(),
        value,
        unit: unit.to_owned(),
        numerator,
        denominator,
        target: target.as_ref().map(target_text),
        status,
        lineage: Lineage {
            query_id: short_sha(&engine.spec_definition(si)),
            streams: streams.iter().map(|s| s.as_str().to_owned()).collect(),
            input_count,
            inputs_root: format!("sha256:{}", hex::encode(h.finalize())),
        },
    }
}

/// Rebuild the period's frontiers from the journal (events journaled
/// before the intake existed, or under another regime or grace).
pub fn rebuild_streams(
    conn: &Connection,
    period: &ReportPeriod,
    inputs: &Inputs,
    rule_sig: &str,
) -> Result<(), ReportError> {
    conn.execute(
        "DELETE FROM report_streams WHERE period = ?1",
        [period.label()],
    )?;
    let mut up = conn.prepare(
        "INSERT INTO report_streams (period, stream, count, first_ts, last_ts, frontier, rule) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    for (name, (m, f)) in &inputs.streams {
        if f.count() == 0 {
            continue;
        }
        let ms = |t: &Option<String>| {
            t.as_deref()
                .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
                .map(|d| d.timestamp_millis())
        };
        up.execute(params![
            period.label(),
            name,
            m.count as i64,
            ms(&m.first_event_ts),
            ms(&m.last_event_ts),
            f.peaks_bytes(),
            rule_sig
        ])?;
    }
    Ok(())
}
