//! The pipeline without the broker: decode → journal (SQLite, one
//! transaction per batch) → indicators and device state, through the real
//! journal writer thread, fed as fast as it takes messages. This is the
//! backend's own ceiling; `benches/pipeline.rs` measures it end to end
//! through Mosquitto.
//!
//! Run: `cargo bench --bench journal` (env BENCH_EVENTS, default 300000;
//! BENCH_SYNC=full|normal, default full).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use commune_ioc::config::{load, SyncMode};
use commune_ioc::journal::Store;
use commune_ioc::model::Raw;
use commune_ioc::runtime::pipeline::{self as writer, Inbound};
use commune_ioc::sim::Traffic;
use commune_ioc::sources::Decoder;
use commune_ioc::state::Shared;
use kit::measure::{cpu_seconds, peak_rss_mib};

#[path = "../tests/kit/mod.rs"]
mod kit;

fn main() {
    let n: usize = std::env::var("BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300_000);
    let sync = match std::env::var("BENCH_SYNC").as_deref() {
        Ok("normal") => SyncMode::Normal,
        _ => SyncMode::Full,
    };
    let root = env!("CARGO_MANIFEST_DIR");
    let mut cfg = load(std::path::Path::new(&format!(
        "{root}/config/examples/binh-lu.toml"
    )))
    .expect("example config");
    let dir = tempfile::tempdir().expect("temp dir");
    cfg.store.path = dir.path().to_path_buf();
    cfg.store.sync = sync;

    let now = Utc::now();
    let mut traffic = Traffic::new(&cfg, 7);
    let msgs: Vec<Raw> = traffic
        .hello()
        .into_iter()
        .chain((0..n).map(|_| traffic.next(now)))
        .map(|m| Raw {
            topic: m.topic,
            payload: m.payload,
            received_at: now,
            retained: false,
        })
        .collect();
    let total = msgs.len();

    let store = Store::open_with(&cfg.journal_path(), sync, 0).expect("open journal");
    let shared = Arc::new(Shared::new(cfg.clone()));
    let decoder = Decoder::new(Arc::clone(&shared.registry), cfg.ingest.clone(), false);
    let (tx, rx) = tokio::sync::mpsc::channel(cfg.store.queue_capacity);
    let acked = Arc::new(AtomicUsize::new(0));
    let cpu0 = cpu_seconds();
    let t0 = Instant::now();
    let handle = writer::spawn(store, decoder, Arc::clone(&shared), rx).expect("writer thread");
    for raw in msgs {
        let a = Arc::clone(&acked);
        let ack: writer::AckFn = Box::new(move || {
            a.fetch_add(1, Ordering::Relaxed);
        });
        if tx
            .blocking_send(Inbound {
                raw,
                ack: Some(ack),
            })
            .is_err()
        {
            panic!("journal writer stopped early");
        }
    }
    drop(tx);
    handle.join().expect("writer thread panicked");
    let secs = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    assert_eq!(
        acked.load(Ordering::Relaxed),
        total,
        "every message acknowledged"
    );
    let batches = shared.batches.load(Ordering::Relaxed);
    println!("journal bench (decode → SQLite journal → indicators), sync = {sync:?}");
    println!("  messages           {total}");
    println!("  wall               {secs:.2} s");
    println!("  throughput         {:.0} messages/s", total as f64 / secs);
    println!(
        "  CPU                {cpu:.2} s ({:.2} CPU-s per million)",
        cpu / total as f64 * 1e6
    );
    println!(
        "  batches            {batches} (mean {:.0} messages)",
        total as f64 / batches.max(1) as f64
    );
    println!(
        "  peak RSS           {:.0} MiB (includes the {total} pre-generated messages)",
        peak_rss_mib()
    );
    println!("  command            cargo bench --bench journal");
}
