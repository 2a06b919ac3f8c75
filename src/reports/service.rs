//! What the CLI, the API and the `serve` task do with reports: seal a
//! period by label, list periods with their state, recompute a document
//! from the journal, and the periodic tick (auto-seal, late ledger).

use chrono::{DateTime, Utc};
use ed25519_dalek::SigningKey;
use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

use super::compute::{self, local_text};
use super::intake::Rule;
use super::period::{PeriodKind, ReportPeriod};
use super::seal::{self, Header, SealOutcome};
use super::snapshot::Snapshot;
use super::verify::{difference, VerifyError};
use super::ReportError;
use crate::config::Config;
use crate::indicators::Engine;

/// Seal the period named by `label`.
pub fn seal_label(
    conn: &mut Connection,
    config: &Config,
    engine: &Engine,
    key: &SigningKey,
    label: &str,
    now: DateTime<Utc>,
    by: &str,
) -> Result<SealOutcome, ReportError> {
    let period = ReportPeriod::parse(label, config.report.regime)?;
    seal::seal(conn, config, engine, key, &period, now, by)
}

/// A period and its state, as `GET /api/reports` lists it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PeriodState {
    /// Label.
    pub period: String,
    /// Kind.
    pub kind: PeriodKind,
    /// Window start, RFC 3339 +07:00.
    pub window_start: String,
    /// Window end (exclusive).
    pub window_end: String,
    /// When it can be sealed (end + grace).
    pub late_cutoff: String,
    /// `open`, `sealed`, `corrected`, `submitted`, `acknowledged`.
    pub state: String,
    /// Latest revision, when sealed.
    pub revision: Option<u32>,
    /// Its id.
    pub digest: Option<String>,
    /// When it was sealed (wall clock).
    pub sealed_at: Option<DateTime<Utc>>,
    /// Who sealed or approved it.
    pub sealed_by: Option<String>,
    /// Open correction drafts.
    pub open_drafts: u32,
    /// Late events in the ledger.
    pub late_events: u64,
}

/// The delivery state of a revision, set by the delivery side.
pub fn set_delivery_state(
    conn: &Connection,
    digest: &str,
    state: &str,
    detail: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(), ReportError> {
    conn.execute(
        "INSERT INTO report_delivery (digest, state, at, detail) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT(digest) DO UPDATE SET state = excluded.state, at = excluded.at, detail = excluded.detail",
        params![digest, state, now.timestamp_millis(), detail],
    )?;
    Ok(())
}

fn state_of(
    period: &ReportPeriod,
    config: &Config,
    conn: &Connection,
) -> Result<PeriodState, ReportError> {
    let rule = Rule::from_config(&config.report);
    let label = period.label();
    let latest = seal::latest(conn, &label)?;
    let open_drafts: i64 = conn.query_row(
        "SELECT COUNT(*) FROM report_drafts WHERE period = ?1 AND state = 'open'",
        [&label],
        |r| r.get(0),
    )?;
    let late: i64 = conn.query_row(
        "SELECT COUNT(*) FROM report_late WHERE period = ?1",
        [&label],
        |r| r.get(0),
    )?;
    let mut st = PeriodState {
        period: label,
        kind: period.kind,
        window_start: period.start.to_rfc3339(),
        window_end: period.end.to_rfc3339(),
        late_cutoff: local_text(rule.cutoff_ms(period)),
        state: "open".into(),
        revision: None,
        digest: None,
        sealed_at: None,
        sealed_by: None,
        open_drafts: open_drafts as u32,
        late_events: late as u64,
    };
    if let Some((s, _)) = latest {
        let delivery: Option<String> = conn
            .query_row(
                "SELECT state FROM report_delivery WHERE digest = ?1",
                [&s.digest],
                |r| r.get(0),
            )
            .optional()?;
        st.state = match delivery {
            Some(d) => d,
            None if s.revision > 0 => "corrected".into(),
            None => "sealed".into(),
        };
        st.revision = Some(s.revision);
        st.digest = Some(s.digest);
        st.sealed_at = Some(s.sealed_wall);
        st.sealed_by = Some(s.sealed_by);
    }
    Ok(st)
}

/// Every sealed period, plus the current month and the month before it
/// when not sealed yet; newest first.
pub fn list(
    conn: &Connection,
    config: &Config,
    now: DateTime<Utc>,
) -> Result<Vec<PeriodState>, ReportError> {
    let regime = config.report.regime;
    let mut periods: Vec<ReportPeriod> = Vec::new();
    let mut stmt = conn.prepare("SELECT DISTINCT period FROM reports")?;
    for label in stmt.query_map([], |r| r.get::<_, String>(0))? {
        if let Ok(p) = ReportPeriod::parse(&label?, regime) {
            periods.push(p);
        }
    }
    let current = ReportPeriod::month_of(now, regime);
    let before = ReportPeriod::month_of(
        current.start.with_timezone(&Utc) - chrono::Duration::milliseconds(1),
        regime,
    );
    for p in [current, before] {
        if !periods.contains(&p) {
            periods.push(p);
        }
    }
    periods.sort_by(|a, b| b.end.cmp(&a.end).then(b.start.cmp(&a.start)));
    periods.iter().map(|p| state_of(p, config, conn)).collect()
}

/// One period's state.
pub fn state(conn: &Connection, config: &Config, label: &str) -> Result<PeriodState, ReportError> {
    let p = ReportPeriod::parse(label, config.report.regime)?;
    state_of(&p, config, conn)
}

/// Recompute a document's values and manifest from the journal (events of
/// its window received before its `late_cutoff`) and compare.
pub fn recompute(
    conn: &Connection,
    config: &Config,
    engine: &Engine,
    snap: &Snapshot,
) -> Result<(), VerifyError> {
    let bad = |e: ReportError| VerifyError::Recompute(e.to_string());
    let period =
        ReportPeriod::parse(&snap.period.label, config.report.regime).map_err(|e| bad(e.into()))?;
    if period.start.to_rfc3339() != snap.period.window_start
        || period.end.to_rfc3339() != snap.period.window_end
    {
        return Err(VerifyError::Recompute(format!(
            "cửa sổ của kỳ {} theo cấu hình là {} – {}, báo cáo ghi {} – {}",
            snap.period.label,
            period.start.to_rfc3339(),
            period.end.to_rfc3339(),
            snap.period.window_start,
            snap.period.window_end
        )));
    }
    let cutoff = DateTime::parse_from_rfc3339(&snap.late_cutoff)
        .map_err(|e| VerifyError::Recompute(format!("late_cutoff: {e}")))?
        .timestamp_millis();
    let inputs = compute::from_journal(conn, engine, &period, cutoff).map_err(bad)?;
    let mut again = seal::assemble(
        config,
        engine,
        &period,
        &inputs,
        Header {
            revision: snap.revision,
            supersedes: snap.supersedes.clone(),
            status: snap.status,
            sealed_at: snap.sealed_at.clone(),
            cutoff,
            correction: snap.correction.clone(),
        },
    );
    again.signature = snap.signature.clone();
    if again.values != snap.values || again.manifest.event_streams != snap.manifest.event_streams {
        let d = difference(snap, &again).unwrap_or_else(|| "khác".into());
        return Err(VerifyError::Recompute(d));
    }
    Ok(())
}

/// Which kinds the task seals.
fn kinds(config: &Config) -> Vec<PeriodKind> {
    config
        .report
        .auto_seal_kinds
        .iter()
        .filter_map(|k| match k.as_str() {
            "month" => Some(PeriodKind::Month),
            "quarter" => Some(PeriodKind::Quarter),
            "half" => Some(PeriodKind::Half),
            "year" => Some(PeriodKind::Year),
            _ => None,
        })
        .collect()
}

/// The latest closed period of a kind at `now` (its end has passed).
fn last_closed(kind: PeriodKind, now: DateTime<Utc>, config: &Config) -> Option<ReportPeriod> {
    let regime = config.report.regime;
    let current = super::intake::periods_of(now, regime);
    let idx = match kind {
        PeriodKind::Quarter => 0,
        PeriodKind::Half => 1,
        PeriodKind::Year => 2,
        PeriodKind::Month => 3,
    };
    let before = current[idx].start.with_timezone(&Utc) - chrono::Duration::milliseconds(1);
    Some(super::intake::periods_of(before, regime)[idx].clone())
}

/// What one tick did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Tick {
    /// Periods sealed.
    pub sealed: Vec<SealOutcome>,
    /// Correction drafts made.
    pub drafts: Vec<i64>,
}

/// The `serve` task's step: seal the latest closed period of each
/// configured kind once its cutoff has passed (when the journal holds
/// events received before its end), then look at late events.
pub fn tick(
    conn: &mut Connection,
    config: &Config,
    engine: &Engine,
    key: &SigningKey,
    now: DateTime<Utc>,
) -> Result<Tick, ReportError> {
    let mut out = Tick::default();
    if config.report.auto_seal {
        let rule = Rule::from_config(&config.report);
        for kind in kinds(config) {
            let Some(p) = last_closed(kind, now, config) else {
                continue;
            };
            if now.timestamp_millis() < rule.cutoff_ms(&p) + seal::SETTLE_MS {
                continue;
            }
            // A store that started after the period ended has nothing to
            // say about it (the CLI can still seal it).
            let first: Option<i64> = conn
                .query_row(
                    "SELECT received_at FROM events ORDER BY id LIMIT 1",
                    [],
                    |r| r.get(0),
                )
                .optional()?;
            if first.is_none_or(|t| t >= p.end.timestamp_millis()) {
                continue;
            }
            let o = seal::seal(conn, config, engine, key, &p, now, "scheduler")?;
            if !o.already_sealed {
                out.sealed.push(o);
            }
        }
    }
    out.drafts = seal::check_late(conn, config, engine, now)?;
    Ok(out)
}

/// Commit events straight into a store as the pipeline would (rows,
/// rollups, report manifests, late ledger), without MQTT: for imports,
/// benchmarks and tests. Returns how many were new.
pub fn write_events(
    store: &mut crate::journal::Store,
    engine: &Engine,
    events: &[crate::journal::NewEvent<'_>],
) -> Result<usize, ReportError> {
    let (outcome, _) = store.write_batch(events, &[], |outcome| crate::journal::Derived {
        delta: engine.delta(outcome.new_events.iter().map(|&i| events[i].event), &[]),
        counter_keys: engine.counters().iter().map(|c| c.key.clone()).collect(),
        scope_names: engine.scopes().to_vec(),
        indicator_ids: engine.ids().map(str::to_owned).collect(),
        devices: Vec::new(),
    })?;
    Ok(outcome.new_events.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_str;
    use crate::journal::{NewEvent, Store};
    use crate::model::{Event, Source};
    use crate::reports::{keys, verify, RowStatus, Trust};

    const SITE: &str = r#"
[commune]
id = "xa"
name = "Xã Thử"
province = "Lai Châu"
[[village]]
id = "a"
name = "Thôn A"
[[village]]
id = "b"
name = "Thôn B"
[[sensor]]
id = "s-1"
village = "a"
[[indicator]]
id = "received"
name = "Hồ sơ tiếp nhận"
kind = "count"
unit = "hồ sơ"
match = { source = "procedure", event = "received" }
[[indicator]]
id = "online"
name = "Tỷ lệ trực tuyến"
kind = "ratio"
unit = "%"
target = ">= 50"
numerator = { source = "procedure", event = "received", where = { channel = "online" } }
denominator = { source = "procedure", event = "received" }
[[indicator]]
id = "rain"
name = "Lượng mưa"
kind = "latest"
field = "rain_mm"
match = { source = "sensor" }
[[indicator]]
id = "cams"
name = "Camera hoạt động"
kind = "availability"
device_class = "camera"
"#;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn dossier(i: usize, village: &str, channel: &str, ts: &str, received: &str) -> Event {
        let mut attrs = serde_json::Map::new();
        attrs.insert("channel".into(), channel.into());
        attrs.insert("dossier_id".into(), format!("d-{i}").into());
        Event {
            source: Source::Procedure,
            kind: "received".into(),
            device: None,
            village: Some(village.into()),
            ts: t(ts),
            received_at: t(received),
            seq: None,
            attrs,
            dedup_key: format!("k-{i}"),
            retained: false,
        }
    }

    fn rain(i: usize, mm: f64, ts: &str) -> Event {
        let mut attrs = serde_json::Map::new();
        attrs.insert("rain_mm".into(), mm.into());
        Event {
            source: Source::Sensor,
            kind: "telemetry".into(),
            device: Some("s-1".into()),
            village: Some("a".into()),
            ts: t(ts),
            received_at: t(ts),
            seq: None,
            attrs,
            dedup_key: format!("r-{i}"),
            retained: false,
        }
    }

    fn write(store: &mut Store, engine: &Engine, events: &[Event]) {
        let rows: Vec<NewEvent<'_>> = events
            .iter()
            .map(|e| NewEvent {
                event: e,
                topic: "t",
                payload: b"{}",
            })
            .collect();
        write_events(store, engine, &rows).unwrap();
    }

    fn row<'a>(s: &'a Snapshot, scope: &str, id: &str) -> &'a crate::reports::IndicatorRow {
        s.values
            .iter()
            .find(|v| v.scope == scope)
            .unwrap()
            .indicators
            .iter()
            .find(|r| r.indicator == id)
            .unwrap()
    }

    /// Seal a month, check its values and edges, re-seal, verify,
    /// recompute; then a late event drafts a correction that, approved,
    /// chains to the first revision.
    #[test]
    fn seal_verify_late_and_correct() {
        let dir = tempfile::tempdir().unwrap();
        let config = load_str(SITE, "t.toml", &[]).unwrap();
        let engine = Engine::new(&config);
        let mut store = Store::open(&dir.path().join("journal.db")).unwrap();
        let key = keys::load_or_create(&dir.path().join("k.pem")).unwrap();
        write(
            &mut store,
            &engine,
            &[
                // June 2026 (NĐ 09) = [2026-05-15, 2026-06-15) +07:00.
                dossier(
                    1,
                    "a",
                    "online",
                    "2026-05-15T00:00:00+07:00",
                    "2026-05-15T00:00:01+07:00",
                ),
                dossier(
                    2,
                    "a",
                    "direct",
                    "2026-06-01T10:00:00+07:00",
                    "2026-06-01T10:00:00+07:00",
                ),
                dossier(
                    3,
                    "b",
                    "online",
                    "2026-06-14T23:59:59.999+07:00",
                    "2026-06-15T00:00:01+07:00",
                ),
                // Outside: July and May.
                dossier(
                    4,
                    "a",
                    "online",
                    "2026-06-15T00:00:00+07:00",
                    "2026-06-15T00:00:00+07:00",
                ),
                dossier(
                    5,
                    "a",
                    "online",
                    "2026-05-14T23:59:59.999+07:00",
                    "2026-05-14T23:59:59.999+07:00",
                ),
                rain(1, 3.5, "2026-06-10T00:00:00+07:00"),
                rain(2, 7.25, "2026-06-14T12:00:00+07:00"),
                rain(3, 99.0, "2026-06-16T12:00:00+07:00"),
            ],
        );
        let now = t("2026-06-20T00:00:00+07:00");
        let early = seal_label(
            store.conn_mut(),
            &config,
            &engine,
            &key,
            "2026-06",
            t("2026-06-15T01:00:00+07:00"),
            "cli",
        );
        assert!(
            matches!(early, Err(ReportError::NotClosed { .. })),
            "{early:?}"
        );
        let first = seal_label(
            store.conn_mut(),
            &config,
            &engine,
            &key,
            "2026-06",
            now,
            "cli",
        )
        .unwrap();
        assert!(!first.already_sealed);
        let (_, doc) = seal::latest(store.conn(), "2026-06").unwrap().unwrap();
        let snap: Snapshot = serde_json::from_slice(&doc).unwrap();
        assert_eq!(snap.period.window_start, "2026-05-15T00:00:00+07:00");
        assert_eq!(snap.period.window_end, "2026-06-15T00:00:00+07:00");
        assert_eq!(snap.sealed_at, "2026-06-15T02:00:00+07:00");
        assert_eq!(row(&snap, "commune", "received").value, Some(3.0));
        assert_eq!(row(&snap, "a", "received").value, Some(2.0));
        assert_eq!(row(&snap, "b", "received").value, Some(1.0));
        let online = row(&snap, "commune", "online");
        assert_eq!(
            (online.numerator, online.denominator),
            (Some(2.0), Some(3.0))
        );
        assert_eq!(online.value, Some(66.6667));
        assert_eq!(online.status, RowStatus::Met);
        assert_eq!(row(&snap, "a", "online").value, Some(50.0));
        assert_eq!(row(&snap, "commune", "rain").value, Some(7.25));
        assert_eq!(row(&snap, "b", "rain").status, RowStatus::NoData);
        assert_eq!(row(&snap, "b", "rain").value, None);
        assert_eq!(row(&snap, "commune", "cams").status, RowStatus::NoData);
        let procedure = snap
            .manifest
            .event_streams
            .iter()
            .find(|s| s.stream == "procedure")
            .unwrap();
        assert_eq!(procedure.count, 3);

        // Sealing again: the same document; building again: the same bytes.
        let again = seal_label(
            store.conn_mut(),
            &config,
            &engine,
            &key,
            "2026-06",
            now,
            "cli",
        )
        .unwrap();
        assert!(again.already_sealed);
        assert_eq!(again.digest, first.digest);
        let period = ReportPeriod::parse("2026-06", config.report.regime).unwrap();
        let (d2, doc2) = seal::build_first(store.conn(), &config, &engine, &key, &period).unwrap();
        assert_eq!((d2, doc2.clone()), (first.digest.clone(), doc.clone()));

        // Verifies, pinned to the key, and recomputes from the journal.
        let vk = key.verifying_key();
        let ok = verify(
            &doc,
            &Trust {
                key: Some(&vk),
                previous: None,
                stored: Some(&doc),
            },
        )
        .unwrap();
        assert_eq!(ok.digest, first.digest);
        recompute(store.conn(), &config, &engine, &ok.snapshot).unwrap();

        // The stored row cannot be changed.
        let err = store
            .conn()
            .execute("UPDATE reports SET sealed_by = 'x'", [])
            .unwrap_err();
        assert!(err.to_string().contains("never changes"), "{err}");

        // A late event (received after the cutoff): ledger and draft, no change.
        write(
            &mut store,
            &engine,
            &[dossier(
                6,
                "b",
                "direct",
                "2026-06-10T00:00:00+07:00",
                "2026-06-25T00:00:00+07:00",
            )],
        );
        let late: i64 = store
            .conn()
            .query_row(
                "SELECT COUNT(*) FROM report_late WHERE period = '2026-06'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(late, 1);
        let tick1 = tick(
            store.conn_mut(),
            &config,
            &engine,
            &key,
            t("2026-06-25T00:01:00+07:00"),
        )
        .unwrap();
        assert_eq!(tick1.drafts.len(), 1);
        let (_, same) = seal::latest(store.conn(), "2026-06").unwrap().unwrap();
        assert_eq!(same, doc, "the sealed document did not change");
        recompute(store.conn(), &config, &engine, &ok.snapshot).unwrap();
        // Nothing new: no second draft.
        let tick2 = tick(
            store.conn_mut(),
            &config,
            &engine,
            &key,
            t("2026-06-25T00:02:00+07:00"),
        )
        .unwrap();
        assert!(tick2.drafts.is_empty());
        let drafts = seal::drafts(store.conn(), Some("2026-06")).unwrap();
        assert_eq!(drafts[0].state, "open");
        assert!(drafts[0]
            .changes
            .iter()
            .any(|c| c.indicator == "received" && c.scope == "commune" && c.to == Some(4.0)));

        let corrected = seal::approve(
            store.conn_mut(),
            &key,
            "2026-06",
            drafts[0].id,
            "Hồ sơ đến muộn do mất sóng",
            "truc.ban",
            t("2026-06-26T08:00:00+07:00"),
        )
        .unwrap();
        assert_eq!(corrected.revision, 1);
        let (_, doc1) = seal::latest(store.conn(), "2026-06").unwrap().unwrap();
        let v1 = verify(
            &doc1,
            &Trust {
                key: Some(&vk),
                previous: Some(&doc),
                stored: None,
            },
        )
        .unwrap();
        assert_eq!(
            v1.snapshot.supersedes.as_deref(),
            Some(first.digest.as_str())
        );
        assert_eq!(row(&v1.snapshot, "commune", "received").value, Some(4.0));
        recompute(store.conn(), &config, &engine, &v1.snapshot).unwrap();
        assert_eq!(
            state(store.conn(), &config, "2026-06").unwrap().state,
            "corrected"
        );
    }

    /// Late events that move no value past `correction_threshold_pct`
    /// stay in the ledger without a draft; once more of them do, one
    /// draft takes them all in, and the sealed document never changes.
    #[test]
    fn late_events_under_the_threshold_stay_in_the_ledger() {
        let dir = tempfile::tempdir().unwrap();
        let text = format!("{SITE}\n[report]\ncorrection_threshold_pct = 20\n");
        let config = load_str(&text, "t.toml", &[]).unwrap();
        let engine = Engine::new(&config);
        let mut store = Store::open(&dir.path().join("journal.db")).unwrap();
        store.set_report_rule(Rule::from_config(&config.report));
        let key = keys::load_or_create(&dir.path().join("k.pem")).unwrap();
        let on_time: Vec<Event> = (0..10)
            .map(|i| {
                let ts = format!("2026-06-{:02}T10:00:00+07:00", i + 1);
                dossier(i, "a", "online", &ts, &ts)
            })
            .collect();
        write(&mut store, &engine, &on_time);
        let sealed = seal_label(
            store.conn_mut(),
            &config,
            &engine,
            &key,
            "2026-06",
            t("2026-06-20T00:00:00+07:00"),
            "cli",
        )
        .unwrap();
        let (_, doc) = seal::latest(store.conn(), "2026-06").unwrap().unwrap();
        let late = |i: usize, received: &str| {
            dossier(
                100 + i,
                "a",
                "online",
                "2026-06-10T12:00:00+07:00",
                received,
            )
        };

        // One late dossier: 10 → 11 is 10 %, under 20 %.
        write(&mut store, &engine, &[late(1, "2026-06-21T08:00:00+07:00")]);
        let t1 = tick(
            store.conn_mut(),
            &config,
            &engine,
            &key,
            t("2026-06-21T08:01:00+07:00"),
        )
        .unwrap();
        assert!(t1.drafts.is_empty(), "{t1:?}");
        assert!(seal::drafts(store.conn(), Some("2026-06"))
            .unwrap()
            .is_empty());
        let st = state(store.conn(), &config, "2026-06").unwrap();
        assert_eq!(
            (st.state.as_str(), st.late_events, st.open_drafts),
            ("sealed", 1, 0)
        );

        // Two more: 10 → 13 is 30 %: one draft with all three.
        write(
            &mut store,
            &engine,
            &[
                late(2, "2026-06-22T08:00:00+07:00"),
                late(3, "2026-06-22T09:00:00+07:00"),
            ],
        );
        let t2 = tick(
            store.conn_mut(),
            &config,
            &engine,
            &key,
            t("2026-06-22T09:01:00+07:00"),
        )
        .unwrap();
        assert_eq!(t2.drafts.len(), 1, "{t2:?}");
        let d = &seal::drafts(store.conn(), Some("2026-06")).unwrap()[0];
        assert_eq!(
            (d.late_events, d.base_digest.as_str()),
            (3, sealed.digest.as_str())
        );
        let commune = d
            .changes
            .iter()
            .find(|c| c.scope == "commune" && c.indicator == "received")
            .unwrap();
        assert_eq!((commune.from, commune.to), (Some(10.0), Some(13.0)));
        assert!(
            !d.changes.iter().any(|c| c.indicator == "online"),
            "100 % stays 100 %: {:?}",
            d.changes
        );
        let (_, still) = seal::latest(store.conn(), "2026-06").unwrap().unwrap();
        assert_eq!(still, doc, "the sealed document did not change");
    }

    /// Periods with nothing in them: no data, never 0 %.
    #[test]
    fn an_empty_period_has_no_data() {
        let dir = tempfile::tempdir().unwrap();
        let config = load_str(SITE, "t.toml", &[]).unwrap();
        let engine = Engine::new(&config);
        let mut store = Store::open(&dir.path().join("journal.db")).unwrap();
        let key = keys::load_or_create(&dir.path().join("k.pem")).unwrap();
        seal_label(
            store.conn_mut(),
            &config,
            &engine,
            &key,
            "2026-Q1",
            t("2026-06-01T00:00:00Z"),
            "cli",
        )
        .unwrap();
        let (_, doc) = seal::latest(store.conn(), "2026-Q1").unwrap().unwrap();
        let snap: Snapshot = serde_json::from_slice(&doc).unwrap();
        for (_, r) in snap.rows() {
            assert_eq!(
                (r.value, r.status),
                (None, RowStatus::NoData),
                "{}",
                r.indicator
            );
        }
    }
}
