//! Sealing the month of a busy commune, and verifying it: events written
//! straight into a store file through the journal's commit path (rows,
//! rollups, report manifests; no MQTT), then `report seal` of the month
//! (values from the rollups, manifests from the incremental frontiers),
//! `reports::verify` of the document, and `verify --recompute` (one pass
//! over the month's events).
//!
//! Run: `cargo bench --bench report` (env BENCH_EVENTS, default 1000000;
//! the 10 million takes about ten times the time and disk).

use std::time::Instant;

use chrono::{DateTime, Duration, Utc};
use commune_ioc::config::{load, SyncMode};
use commune_ioc::indicators::Engine;
use commune_ioc::journal::{NewEvent, Store};
use commune_ioc::model::{Event, Source};
use commune_ioc::reports::intake::Rule;
use commune_ioc::reports::{keys, seal, service, ReportPeriod, Snapshot, Trust};
use kit::measure::{cpu_seconds, load_average, peak_rss_mib};
use serde_json::json;

#[path = "../tests/kit/mod.rs"]
mod kit;

/// A deterministic pseudo-random sequence (xorshift).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[(self.next() % v.len() as u64) as usize]
    }
}

fn main() {
    let n: usize = std::env::var("BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let root = env!("CARGO_MANIFEST_DIR");
    let mut cfg = load(std::path::Path::new(&format!(
        "{root}/config/examples/binh-lu.toml"
    )))
    .expect("example config");
    let dir = tempfile::tempdir().expect("temp dir");
    cfg.store.path = dir.path().to_path_buf();
    cfg.store.sync = SyncMode::Normal;
    let engine = Engine::new(&cfg);
    let period = ReportPeriod::parse("2026-06", cfg.report.regime).expect("period");
    let (start, end) = period.utc();
    let span_ms = (end - start).num_milliseconds();

    let villages: Vec<String> = cfg.villages.iter().map(|v| v.id.clone()).collect();
    let cameras: Vec<(String, Option<String>)> = cfg
        .cameras
        .iter()
        .map(|c| (c.id.clone(), c.village.clone()))
        .collect();
    let speakers: Vec<(String, Option<String>)> = cfg
        .speakers
        .iter()
        .map(|c| (c.id.clone(), c.village.clone()))
        .collect();
    let sensors: Vec<(String, Option<String>, String)> = cfg
        .sensors
        .iter()
        .map(|c| (c.id.clone(), c.village.clone(), c.kind.clone()))
        .collect();

    // Generate and commit, in time order, batches of 1,000.
    let mut store = Store::open_with(&cfg.journal_path(), SyncMode::Normal, 0).expect("store");
    store.set_report_rule(Rule::from_config(&cfg.report));
    let mut rng = Rng(0x2026_0615);
    let t0 = Instant::now();
    let batch = 1000;
    let mut written = 0usize;
    let mut i = 0usize;
    while i < n {
        let events: Vec<Event> = (i..(i + batch).min(n))
            .map(|k| {
                let ts: DateTime<Utc> =
                    start + Duration::milliseconds(span_ms * k as i64 / n as i64);
                let (source, kind, device, village, attrs) = match rng.next() % 10 {
                    0..=3 => {
                        let (id, v, kind) = rng.pick(&sensors).clone();
                        let field = match kind.as_str() {
                            "rain" => "rain_mm",
                            "water_level" => "water_level_cm",
                            _ => "temperature_c",
                        };
                        (
                            Source::Sensor,
                            "telemetry",
                            Some(id),
                            v,
                            json!({ field: (rng.next() % 1000) as f64 / 10.0 }),
                        )
                    }
                    4..=6 => {
                        let (id, v) = rng.pick(&cameras).clone();
                        (
                            Source::Camera,
                            "detection",
                            Some(id),
                            v,
                            json!({ "label": "person", "count": 1 + rng.next() % 3 }),
                        )
                    }
                    7 => {
                        let (id, v) = rng.pick(&speakers).clone();
                        (Source::Speaker, "session_start", Some(id), v, json!({}))
                    }
                    _ => {
                        let v = rng.pick(&villages).clone();
                        let channel =
                            *rng.pick(&["online", "online", "online", "direct", "postal"]);
                        (
                            Source::Procedure,
                            "received",
                            None,
                            Some(v),
                            json!({ "dossier_id": format!("d-{k}"), "channel": channel }),
                        )
                    }
                };
                Event {
                    source,
                    kind: kind.into(),
                    device,
                    village,
                    ts,
                    received_at: ts + Duration::seconds(1),
                    seq: None,
                    attrs: attrs.as_object().cloned().unwrap_or_default(),
                    dedup_key: format!("bench-{k}"),
                    retained: false,
                }
            })
            .collect();
        let rows: Vec<NewEvent<'_>> = events
            .iter()
            .map(|e| NewEvent {
                event: e,
                topic: "ioc/binh-lu/bench",
                payload: b"{}",
            })
            .collect();
        written += service::write_events(&mut store, &engine, &rows).expect("commit");
        i += batch;
    }
    let write_s = t0.elapsed().as_secs_f64();
    drop(store);
    let db_mib = std::fs::metadata(cfg.journal_path())
        .map(|m| m.len())
        .unwrap_or(0) as f64
        / 1048576.0;
    let load_after_write = load_average();

    // Seal (a fresh connection, as the CLI would).
    let mut store = Store::open_with(&cfg.journal_path(), SyncMode::Normal, 0).expect("store");
    let key = keys::load_or_create(&keys::key_path(&cfg)).expect("key");
    let now = end + Duration::days(2);
    let cpu0 = cpu_seconds();
    let t1 = Instant::now();
    let o = seal::seal(store.conn_mut(), &cfg, &engine, &key, &period, now, "bench").expect("seal");
    let seal_s = t1.elapsed().as_secs_f64();
    let seal_cpu = cpu_seconds() - cpu0;
    let (_, doc) = seal::latest(store.conn(), "2026-06")
        .expect("read")
        .expect("sealed");

    // Verify the document (digest, signature, key, chain).
    let vk = key.verifying_key();
    let t2 = Instant::now();
    let rounds = 100;
    for _ in 0..rounds {
        commune_ioc::reports::verify(
            &doc,
            &Trust {
                key: Some(&vk),
                previous: None,
                stored: Some(&doc),
            },
        )
        .expect("verifies");
    }
    let verify_ms = t2.elapsed().as_secs_f64() * 1000.0 / rounds as f64;

    // Recompute from the journal (one pass over the month).
    let snap: Snapshot = serde_json::from_slice(&doc).expect("parse");
    let t3 = Instant::now();
    service::recompute(store.conn(), &cfg, &engine, &snap).expect("recompute matches");
    let recompute_s = t3.elapsed().as_secs_f64();

    let counted: u64 = snap.manifest.event_streams.iter().map(|s| s.count).sum();
    assert_eq!(counted as usize, written, "every event is in the manifest");
    println!(
        "report bench: {written} events in June 2026 (binh-lu example: {} villages, {} indicators)",
        villages.len(),
        engine.spec_count()
    );
    println!("  write (commit path incl. manifests): {write_s:.1} s = {:.0} events/s; store {db_mib:.0} MiB; load after: {load_after_write}", written as f64 / write_s);
    println!(
        "  seal: {seal_s:.2} s wall, {seal_cpu:.2} s CPU; document {} bytes; {}",
        doc.len(),
        o.digest
    );
    println!("  verify (digest, signature, key, canonical form): {verify_ms:.2} ms per document");
    println!(
        "  verify --recompute (one pass over the month): {recompute_s:.1} s = {:.0} events/s",
        written as f64 / recompute_s
    );
    println!(
        "  peak RSS {:.0} MiB; load average now: {}",
        peak_rss_mib(),
        load_average()
    );
}
