//! Mapped sources against the native sensor contract, on the same run:
//! sensor readings as `ioc/{commune}/sensor/{id}/telemetry` (native),
//! as zigbee2mqtt, as Tasmota and as ThingsBoard gateway telemetry (each
//! through its shipped mapping), first decoded alone, then through the real
//! journal writer thread (decode → SQLite journal → indicators and device
//! state), each family on a fresh journal, fed as fast as it takes them.
//! No broker: `benches/pipeline.rs` measures the broker path.
//!
//! ```text
//! cargo bench --bench mapped
//! ```
//!
//! Environment: `BENCH_EVENTS` (messages per family, default 20000),
//! `BENCH_SYNC` (`full`, the default, or `normal`). The box may be shared:
//! the load average is printed before and after, and beside every figure.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Asia::Ho_Chi_Minh;
use commune_ioc::config::{load_str, Config, SyncMode};
use commune_ioc::journal::Store;
use commune_ioc::model::Raw;
use commune_ioc::runtime::pipeline::{self as writer, Inbound};
use commune_ioc::sources::mapped::Mapped;
use commune_ioc::sources::Decoder;
use commune_ioc::state::Shared;
use kit::measure::{cpu_seconds, env_num, load_average};

#[path = "../tests/kit/mod.rs"]
mod kit;

const MAPPED: &str = r#"
[[mapped]]
id = "z2m"
include = "zigbee2mqtt"
[mapped.devices]
"Cảm biến nhiệt Tân Bình" = "temp-01"

[[mapped]]
id = "tasmota"
include = "tasmota"
[mapped.devices]
"nhiet-do-tan-binh" = "temp-01"

[[mapped]]
id = "tbgw"
include = "thingsboard"
[mapped.devices]
"Tram mua Chu Va" = "rain-01"
"#;

/// `n` messages of one family, all different, with times in the last hour.
fn messages(family: &str, n: usize, now: DateTime<Utc>) -> Vec<Raw> {
    (0..n)
        .map(|i| {
            let t = now - Duration::milliseconds((n - i) as i64 * 50);
            let v = 20.0 + (i % 1000) as f64 / 100.0;
            let (topic, payload) = match family {
                "native" => (
                    "ioc/binh-lu/sensor/temp-01/telemetry".to_string(),
                    format!(r#"{{"ts":"{}","temperature_c":{v},"humidity_pct":61.5,"battery_pct":80}}"#, t.to_rfc3339()),
                ),
                "zigbee2mqtt" => (
                    "zigbee2mqtt/Cảm biến nhiệt Tân Bình".to_string(),
                    format!(
                        r#"{{"battery":"80.00","humidity":61.5,"linkquality":120,"temperature":{v},"voltage":2995,"last_seen":"{}"}}"#,
                        t.with_timezone(&Ho_Chi_Minh).to_rfc3339()
                    ),
                ),
                "tasmota" => (
                    "tele/nhiet-do-tan-binh/SENSOR".to_string(),
                    format!(
                        r#"{{"Time":"{}","AM2301":{{"Temperature":{v},"Humidity":"61,5"}},"TempUnit":"C"}}"#,
                        t.with_timezone(&Ho_Chi_Minh).format("%Y-%m-%dT%H:%M:%S%.3f")
                    ),
                ),
                _ => (
                    "v1/gateway/telemetry".to_string(),
                    format!(
                        r#"{{"Tram mua Chu Va":[{{"ts":{},"values":{{"rain":{v},"battery":"80"}}}}]}}"#,
                        t.timestamp_millis()
                    ),
                ),
            };
            Raw {
                topic,
                payload: payload.into_bytes(),
                received_at: now,
                retained: false,
            }
        })
        .collect()
}

fn decoder(cfg: &Config, shared: &Shared) -> Decoder {
    Decoder::new(Arc::clone(&shared.registry), cfg.ingest.clone(), false)
        .with_mapped(Mapped::new(cfg.site.mapped.clone()))
}

/// Decode only: messages per second.
fn decode_rate(cfg: &Config, msgs: &[Raw]) -> f64 {
    let shared = Shared::new(cfg.clone());
    let d = decoder(cfg, &shared);
    let t0 = Instant::now();
    let mut ok = 0usize;
    for m in msgs {
        ok += d.decode(m).into_iter().filter(|p| p.result.is_ok()).count();
    }
    let secs = t0.elapsed().as_secs_f64();
    assert_eq!(ok, msgs.len(), "every message decodes");
    msgs.len() as f64 / secs
}

/// Through the journal writer thread: messages per second, CPU seconds.
fn pipeline_rate(cfg: &Config, msgs: Vec<Raw>, sync: SyncMode) -> (f64, f64) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut cfg = cfg.clone();
    cfg.store.path = dir.path().to_path_buf();
    cfg.store.sync = sync;
    let store = Store::open_with(&cfg.journal_path(), sync, 0).expect("open journal");
    let shared = Arc::new(Shared::new(cfg.clone()));
    let d = decoder(&cfg, &shared);
    let (tx, rx) = tokio::sync::mpsc::channel(cfg.store.queue_capacity);
    let acked = Arc::new(AtomicUsize::new(0));
    let total = msgs.len();
    let cpu0 = cpu_seconds();
    let t0 = Instant::now();
    let handle = writer::spawn(store, d, Arc::clone(&shared), rx).expect("writer thread");
    for raw in msgs {
        let a = Arc::clone(&acked);
        let ack: writer::AckFn = Box::new(move || {
            a.fetch_add(1, Ordering::Relaxed);
        });
        tx.blocking_send(Inbound {
            raw,
            ack: Some(ack),
        })
        .expect("journal writer stopped early");
    }
    drop(tx);
    handle.join().expect("writer thread panicked");
    let secs = t0.elapsed().as_secs_f64();
    assert_eq!(
        acked.load(Ordering::Relaxed),
        total,
        "every message acknowledged"
    );
    let reader = Store::open_reader(&cfg.journal_path()).expect("reader");
    let dead = reader.dead_letter_counts().expect("dead letters");
    assert!(dead.is_empty(), "no dead letter: {dead:?}");
    (total as f64 / secs, cpu_seconds() - cpu0)
}

fn main() {
    let n: usize = env_num("BENCH_EVENTS", 20_000).expect("BENCH_EVENTS");
    let sync = match std::env::var("BENCH_SYNC").as_deref() {
        Ok("normal") => SyncMode::Normal,
        _ => SyncMode::Full,
    };
    let root = env!("CARGO_MANIFEST_DIR");
    let example = std::fs::read_to_string(format!("{root}/config/examples/binh-lu.toml"))
        .expect("example config");
    let cfg =
        load_str(&format!("{example}\n{MAPPED}"), "bench", &[]).unwrap_or_else(|e| panic!("{e}"));
    let now = Utc::now();
    println!("mapped bench: {n} messages per family, store.sync = {sync:?}");
    println!(
        "  load average before: {} (the box may be shared)",
        load_average()
    );
    println!(
        "  {:<12} {:>14} {:>16} {:>14} {:>10}",
        "family", "decode msg/s", "pipeline msg/s", "CPU-s/million", "load"
    );
    for family in ["native", "zigbee2mqtt", "tasmota", "thingsboard", "native"] {
        let msgs = messages(family, n, now);
        let decode = decode_rate(&cfg, &msgs);
        let (rate, cpu) = pipeline_rate(&cfg, msgs, sync);
        println!(
            "  {family:<12} {decode:>14.0} {rate:>16.0} {:>14.1} {:>10}",
            cpu / n as f64 * 1e6,
            load_average().split(' ').next().unwrap_or("?")
        );
    }
    println!("  load average after: {}", load_average());
    println!("  command: cargo bench --bench mapped (BENCH_EVENTS={n})");
}
