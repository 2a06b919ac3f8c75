//! The time-series sink into a real VictoriaMetrics (Debian package
//! `victoria-metrics`, started on a free loopback port), in process:
//!
//! 1. **Outbox replay**: BENCH_POINTS simulated messages are journaled
//!    (through the real journal writer) while the store is down and the sink
//!    is already failing; then VictoriaMetrics starts and the backlog is
//!    timed until it is empty.
//! 2. **Sustained**: with the sink caught up, another BENCH_POINTS messages
//!    are pushed through the journal writer as fast as it takes them, while
//!    the sink writes; timed from the first message to an empty backlog.
//!
//! Every point is then counted back through VictoriaMetrics' export API.
//!
//! Run: `cargo bench --bench influx` (env BENCH_POINTS, default 200000;
//! BENCH_BATCH = influx.batch_max_points, default 5000).

#[path = "../tests/kit/mod.rs"]
mod kit;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use commune_ioc::config::load;
use commune_ioc::journal::Store;
use commune_ioc::model::Raw;
use commune_ioc::runtime::pipeline::{self as writer, Inbound};
use commune_ioc::sim::Traffic;
use commune_ioc::sinks::{self, influx::InfluxSink};
use commune_ioc::sources::Decoder;
use commune_ioc::state::Shared;
use kit::measure::cpu_seconds;
use kit::victoria;
use tokio_util::sync::CancellationToken;

/// Journal `n` simulated messages through the real writer thread; returns
/// how many became events.
fn journal(shared: &Arc<Shared>, traffic: &mut Traffic, n: usize, hello: bool) -> u64 {
    let cfg = &shared.config;
    let now = Utc::now();
    let start = now - chrono::Duration::milliseconds(n as i64 + 1);
    let mut msgs: Vec<Raw> = Vec::with_capacity(n + 64);
    let first = if hello { traffic.hello() } else { Vec::new() };
    for m in first
        .into_iter()
        .chain((0..n).map(|i| traffic.next(start + chrono::Duration::milliseconds(i as i64))))
    {
        msgs.push(Raw {
            topic: m.topic,
            payload: m.payload,
            received_at: now,
            retained: false,
        });
    }
    let before: u64 = events_committed(shared);
    let store = Store::open_with(&cfg.journal_path(), cfg.store.sync, 0).expect("journal");
    let decoder = Decoder::new(Arc::clone(&shared.registry), cfg.ingest.clone(), false);
    let (tx, rx) = tokio::sync::mpsc::channel(cfg.store.queue_capacity);
    let handle = writer::spawn(store, decoder, Arc::clone(shared), rx).expect("writer");
    for raw in msgs {
        if tx.blocking_send(Inbound { raw, ack: None }).is_err() {
            panic!("journal writer stopped early");
        }
    }
    drop(tx);
    handle.join().expect("writer thread");
    events_committed(shared) - before
}

fn events_committed(shared: &Shared) -> u64 {
    let text = shared.metrics.render();
    text.lines()
        .filter(|l| l.starts_with("ioc_events_committed_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

fn wait(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) -> Duration {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
    t0.elapsed()
}

fn main() {
    let n: usize = std::env::var("BENCH_POINTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let batch: usize = std::env::var("BENCH_BATCH")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5_000);
    let root = env!("CARGO_MANIFEST_DIR");
    let mut cfg = load(std::path::Path::new(&format!(
        "{root}/config/examples/binh-lu.toml"
    )))
    .expect("example config");
    let dir = tempfile::tempdir().expect("temp dir");
    cfg.store.path = dir.path().to_path_buf();
    let mut vm = victoria::Victoria::new();
    cfg.influx.url = Some(vm.url());
    cfg.influx.batch_max_points = batch;
    cfg.influx.indicator_interval_secs = 0;
    cfg.influx.flush_interval_ms = 200;

    let shared = Arc::new(Shared::new(cfg.clone()));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let cancel = CancellationToken::new();
    // The journal must exist before the sink opens it.
    drop(Store::open(&cfg.journal_path()).expect("journal"));
    let sink = InfluxSink::new(&cfg.influx).expect("sink");
    let task = rt.spawn(sinks::run(sink, Arc::clone(&shared), cancel.clone()));
    let m = &shared.metrics;

    // Phase 1: backlog while the store is down, then replay.
    let mut traffic = Traffic::new(&cfg, 11);
    let t_journal = Instant::now();
    let first = journal(&shared, &mut traffic, n, true);
    let journal_secs = t_journal.elapsed().as_secs_f64();
    wait(
        "a failed write and the backlog gauge",
        Duration::from_secs(30),
        || m.influx_write_errors.get() >= 1 && m.influx_backlog_points.get() as u64 >= first,
    );
    let written0 = m.influx_points_written.get();
    let cpu0 = cpu_seconds();
    vm.spawn();
    let t_up = Instant::now();
    let to_first = wait("the first write", Duration::from_secs(60), || {
        m.influx_points_written.get() > written0
    });
    let drain = wait("the replay", Duration::from_secs(600), || {
        m.influx_backlog_points.get() == 0 && m.influx_points_written.get() >= written0 + first
    });
    let replay_total = t_up.elapsed();
    let replay_cpu = cpu_seconds() - cpu0;

    // Phase 2: sustained, journal and sink running together.
    let written1 = m.influx_points_written.get();
    let cpu1 = cpu_seconds();
    let t_sustained = Instant::now();
    let second = journal(&shared, &mut traffic, n, false);
    let ingest_secs = t_sustained.elapsed().as_secs_f64();
    wait("the sustained drain", Duration::from_secs(600), || {
        m.influx_backlog_points.get() == 0 && m.influx_points_written.get() >= written1 + second
    });
    let sustained = t_sustained.elapsed().as_secs_f64();
    let sustained_cpu = cpu_seconds() - cpu1;

    cancel.cancel();
    rt.block_on(async {
        let _ = task.await;
    });
    let stored: usize = rt.block_on(async {
        vm.export(r#"{__name__=~"ioc_.*_events"}"#)
            .await
            .iter()
            .map(|s| s.timestamps.len())
            .sum()
    });
    let errors = m.influx_write_errors.get();

    println!(
        "influx sink bench (journal → line protocol → gzip → /api/v2/write → VictoriaMetrics)"
    );
    println!("  batch_max_points   {batch}");
    println!(
        "  backlog            {first} events journaled while the store was down ({:.0} messages/s into the journal)",
        (n as f64) / journal_secs
    );
    println!(
        "  replay             {:.0} points/s ({first} points drained {:.2} s after the first accepted write, which came {:.2} s after the store was up: retry backoff)",
        first as f64 / drain.as_secs_f64().max(1e-9),
        drain.as_secs_f64(),
        to_first.as_secs_f64()
    );
    println!(
        "                     {:.2} s from store up to empty backlog; CPU {replay_cpu:.2} s ({:.1} CPU-s per million points, this process)",
        replay_total.as_secs_f64(),
        replay_cpu / first as f64 * 1e6
    );
    println!(
        "  sustained          {:.0} points/s ({second} events journaled in {ingest_secs:.2} s and written in {sustained:.2} s, concurrently)",
        second as f64 / sustained
    );
    println!(
        "                     CPU {sustained_cpu:.2} s ({:.1} CPU-s per million events, journal + sink)",
        sustained_cpu / second as f64 * 1e6
    );
    println!(
        "  stored             {stored} samples of ioc_*_events read back (expected {}); write errors {errors} (while down)",
        first + second
    );
    println!("  command            cargo bench --bench influx");
    assert_eq!(stored as u64, first + second, "every point stored once");
}
