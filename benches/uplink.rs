//! The uplink to the province into a real `nats-server -js` (Debian
//! package `nats-server`, on a free loopback port with a temp store), in
//! process, beside the bare server in the same run:
//!
//! 1. **Catch-up after an outage**: the uplink runs while the server is
//!    down; BENCH_ENTRIES simulated messages are journaled (through the
//!    real journal writer); then the server starts and the backlog is
//!    timed from the cursor's first move to caught up.
//! 2. **Forwarding**: with the uplink caught up, another BENCH_ENTRIES
//!    messages are pushed through the journal writer as fast as it takes
//!    them while the uplink forwards; timed from the first message to
//!    caught up.
//! 3. **Bare server**: BENCH_ENTRIES messages of the same sizes published
//!    straight to another stream of the same server, pipelined in batches
//!    of `uplink.batch_max` with a `Nats-Msg-Id` each, acknowledgements
//!    awaited per batch (the uplink's own publishing pattern without the
//!    journal).
//!
//! Every journaled entry is then counted in the stream.
//!
//! Run: `cargo bench --bench uplink` (env BENCH_ENTRIES, default 50000;
//! BENCH_BATCH = uplink.batch_max, default 256).

#[path = "../tests/kit/mod.rs"]
mod kit;

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use chrono::Utc;
use commune_ioc::config::load;
use commune_ioc::journal::Store;
use commune_ioc::model::Raw;
use commune_ioc::runtime::pipeline::{self as writer, Inbound};
use commune_ioc::sim::Traffic;
use commune_ioc::sources::Decoder;
use commune_ioc::state::Shared;
use kit::measure::{cpu_seconds, load_average};
use kit::nats::{nats_server_bin, nats_server_version, spawn_nats, stream_count};
use tokio_util::sync::CancellationToken;

/// Journal `n` simulated messages through the real writer thread; the
/// payload bytes journaled.
fn journal(shared: &Arc<Shared>, traffic: &mut Traffic, n: usize, hello: bool) -> Vec<Vec<u8>> {
    let cfg = &shared.config;
    let now = Utc::now();
    let start = now - chrono::Duration::milliseconds(n as i64 + 1);
    let first = if hello { traffic.hello() } else { Vec::new() };
    let msgs: Vec<Raw> = first
        .into_iter()
        .chain((0..n).map(|i| traffic.next(start + chrono::Duration::milliseconds(i as i64))))
        .map(|m| Raw {
            topic: m.topic,
            payload: m.payload,
            received_at: now,
            retained: false,
        })
        .collect();
    let payloads = msgs.iter().map(|m| m.payload.to_vec()).collect();
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
    payloads
}

fn wait(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) -> Duration {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
    t0.elapsed()
}

fn head(shared: &Shared) -> i64 {
    let cfg = &shared.config;
    Store::open_reader(&cfg.journal_path())
        .expect("reader")
        .journal_head(&cfg.commune.id)
        .expect("head")
}

fn main() {
    let n: usize = kit::measure::env_num("BENCH_ENTRIES", 50_000).expect("BENCH_ENTRIES");
    let batch: usize = kit::measure::env_num("BENCH_BATCH", 256).expect("BENCH_BATCH");
    let root = env!("CARGO_MANIFEST_DIR");
    let mut cfg = load(std::path::Path::new(&format!(
        "{root}/config/examples/binh-lu.toml"
    )))
    .expect("example config");
    let dir = tempfile::tempdir().expect("temp dir");
    cfg.store.path = dir.path().join("store");
    let exe = nats_server_bin();
    let port = kit::free_port();
    let nats_store = dir.path().join("js");
    cfg.uplink.url = Some(format!("nats://127.0.0.1:{port}"));
    cfg.uplink.batch_max = batch;
    cfg.uplink.backoff_max_ms = 500;
    cfg.uplink.ack_timeout_ms = 2_000;

    // The store bound to its commune, as `serve` does.
    Store::open(&cfg.journal_path())
        .expect("journal")
        .bind_commune(&cfg.commune.id)
        .expect("bind");
    let shared = Arc::new(Shared::new(cfg.clone()));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let cancel = CancellationToken::new();
    let task = rt.spawn(commune_ioc::uplink::run(
        Arc::clone(&shared),
        cancel.clone(),
    ));
    let m = &shared.metrics.uplink;

    // Phase 1: backlog while the server is down, then catch-up.
    let mut traffic = Traffic::new(&cfg, 16);
    let t_journal = Instant::now();
    let payloads = journal(&shared, &mut traffic, n, true);
    let journal_secs = t_journal.elapsed().as_secs_f64();
    let first = head(&shared);
    wait("a failed connect", Duration::from_secs(30), || {
        m.errors.get() >= 1
    });
    let cpu0 = cpu_seconds();
    let mut server = spawn_nats(&exe, dir.path(), "hub", port, &nats_store).expect("nats-server");
    let t_up = Instant::now();
    let to_first = wait("the first acknowledgement", Duration::from_secs(60), || {
        m.cursor.get() > 0
    });
    let at_first = m.cursor.get();
    let drain = wait("the catch-up", Duration::from_secs(600), || {
        m.cursor.get() >= first
    });
    let catchup_total = t_up.elapsed();
    let catchup_cpu = cpu_seconds() - cpu0;

    // Phase 2: forwarding while the journal takes messages as fast as it can.
    let cpu1 = cpu_seconds();
    let t_fwd = Instant::now();
    let second_payloads = journal(&shared, &mut traffic, n, false);
    let ingest_secs = t_fwd.elapsed().as_secs_f64();
    let second_head = head(&shared);
    wait("the forwarding", Duration::from_secs(600), || {
        m.cursor.get() >= second_head
    });
    let forward = t_fwd.elapsed().as_secs_f64();
    let forward_cpu = cpu_seconds() - cpu1;
    let second = second_head - first;
    cancel.cancel();
    rt.block_on(async {
        let _ = task.await;
    });

    // Phase 3: the bare server, same run, same payload sizes.
    let (bare_secs, stored, bare_stored) = rt.block_on(async {
        let client = async_nats::connect(format!("127.0.0.1:{port}"))
            .await
            .expect("connect");
        let js = jetstream::new(client);
        js.create_stream(jetstream::stream::Config {
            name: "BARE".into(),
            subjects: vec!["bare.>".into()],
            ..Default::default()
        })
        .await
        .expect("bare stream");
        let sizes: Vec<usize> = payloads
            .iter()
            .chain(&second_payloads)
            .take(n)
            .map(|p| p.len() + 400)
            .collect();
        let t = Instant::now();
        for (c, chunk) in sizes.chunks(batch).enumerate() {
            let mut acks = Vec::with_capacity(chunk.len());
            for (i, &size) in chunk.iter().enumerate() {
                let mut h = async_nats::HeaderMap::new();
                h.insert(
                    async_nats::header::NATS_MESSAGE_ID,
                    format!("bare:{}", c * batch + i).as_str(),
                );
                let msg = jetstream::message::PublishMessage::build()
                    .payload(vec![b'x'; size].into())
                    .headers(h);
                acks.push(js.send_publish("bare.x", msg).await.expect("publish"));
            }
            for a in acks {
                a.await.expect("ack");
            }
        }
        let secs = t.elapsed().as_secs_f64();
        (
            secs,
            stream_count(&js, "IOC_JOURNAL").await,
            stream_count(&js, "BARE").await,
        )
    });
    server.stop();

    println!(
        "uplink bench (journal → NATS JetStream, loopback, {})",
        nats_server_version(&exe)
    );
    println!("  batch_max          {batch}");
    println!(
        "  backlog            {first} entries journaled while the server was down ({:.0} messages/s into the journal)",
        (payloads.len() as f64) / journal_secs
    );
    println!(
        "  catch-up           {:.0} entries/s ({} entries acknowledged {:.2} s after the first acknowledgement, which came {:.2} s after the server started: reconnect backoff)",
        (first - at_first) as f64 / (drain.as_secs_f64() - 0.0).max(1e-9),
        first - at_first,
        drain.as_secs_f64(),
        to_first.as_secs_f64()
    );
    println!(
        "                     {:.2} s from server start to caught up; CPU {catchup_cpu:.2} s of this process ({:.1} CPU-s per million entries)",
        catchup_total.as_secs_f64(),
        catchup_cpu / first as f64 * 1e6
    );
    println!(
        "  forwarding         {:.0} entries/s ({second} entries journaled in {ingest_secs:.2} s and acknowledged in {forward:.2} s, concurrently); CPU {forward_cpu:.2} s ({:.1} CPU-s per million, journal + uplink)",
        second as f64 / forward,
        forward_cpu / second as f64 * 1e6
    );
    println!(
        "  bare server        {:.0} messages/s ({n} publishes with Nats-Msg-Id, batches of {batch}, acks awaited per batch, payload = entry size)",
        n as f64 / bare_secs
    );
    println!(
        "  stored             {stored} messages in IOC_JOURNAL (expected {}), {bare_stored} in BARE; errors while down {}",
        first + second,
        m.errors.get()
    );
    println!("  load average       {}", load_average());
    println!("  command            cargo bench --bench uplink");
    assert_eq!(stored as i64, first + second, "every entry stored once");
}
