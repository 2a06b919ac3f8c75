//! The province tier (issue 16) on a real three-node `nats-server` cluster
//! on loopback (the journal stream with replicas 3), with the real
//! `commune-ioc serve --config PROCESS.toml --sites DIR` (release build)
//! and simulated communes that publish their journal into the stream as
//! their uplinks do (`tests/kit/province.rs`: the library's wire format,
//! realistic events, acknowledged publishes). Store `sync = full` (the
//! default). In one run:
//!
//! 0. **Bare NATS**: the same messages published to a stream of their own
//!    (replicas 3), pipelined in batches of 256 with a `Nats-Msg-Id` each,
//!    then read back by one durable pull consumer (batches of 256, every
//!    message acknowledged).
//! 1. **Ingest, 100 communes**: BENCH_PER_COMMUNE entries of each of
//!    BENCH_COMMUNES communes wait in the stream; a province instance
//!    starts; timed from ready to every site caught up (the overview polled
//!    every 250 ms).
//! 2. **Commit → province lag**: one commune publishes BENCH_LAG_SAMPLES
//!    entries at BENCH_LAG_RATE a second; the site's head is polled every 5
//!    ms (`/api/province/sites/{id}`); lag = first seen − `journaled_at`.
//! 3. **Catch-up after a 1-hour outage**: an hour of one commune's entries
//!    at BENCH_OUTAGE_RATE a second is published at once (the commune's
//!    uplink draining its backlog) while the province runs; timed from the
//!    first publish to the site caught up.
//! 4. **Memory per site**: the RSS of the instance with every site, against
//!    a second instance with 5 sites holding the same entries per site.
//!
//! Run: `cargo bench --bench province` (env BENCH_COMMUNES default 100,
//! BENCH_PER_COMMUNE 300, BENCH_LAG_SAMPLES 200, BENCH_LAG_RATE 20,
//! BENCH_OUTAGE_RATE 10).

#[path = "../tests/kit/mod.rs"]
mod kit;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use async_nats::jetstream;
use futures_util::StreamExt;
use kit::measure::{clock_ticks, cpu_ticks, env_num, load_average, rss_kib};
use kit::nats::{create_journal_stream, nats_server_bin, nats_server_version, Cluster};
use kit::province::{
    caught_up, publish_entries, write_sites, Province, ProvinceConf, SimCommune, SiteSpec, Want,
};
use serde_json::Value;

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Bare NATS: publish `bodies` to a stream of their own, then consume it.
async fn bare(js: &jetstream::Context, sims: &[SimCommune]) -> Result<(usize, f64, f64)> {
    js.create_stream(jetstream::stream::Config {
        name: "BENCH_BARE".into(),
        subjects: vec!["bare.>".into()],
        storage: jetstream::stream::StorageType::File,
        num_replicas: 3,
        ..Default::default()
    })
    .await
    .context("bare stream")?;
    let msgs: Vec<(String, async_nats::HeaderMap, Vec<u8>)> = sims
        .iter()
        .flat_map(|s| {
            s.entries.values().map(move |e| {
                (
                    format!("bare.{}", s.id),
                    commune_ioc::uplink::wire::headers(&s.id, e),
                    commune_ioc::uplink::wire::body(&s.id, e, 1 << 20),
                )
            })
        })
        .collect();
    let n = msgs.len();
    let t0 = Instant::now();
    for chunk in msgs.chunks(256) {
        let mut acks = Vec::with_capacity(chunk.len());
        for (subject, h, body) in chunk {
            acks.push(
                js.publish_with_headers(subject.clone(), h.clone(), body.clone().into())
                    .await?,
            );
        }
        for a in acks {
            a.await?;
        }
    }
    let publish = n as f64 / t0.elapsed().as_secs_f64();
    let stream = js.get_stream("BENCH_BARE").await?;
    let consumer = stream
        .create_consumer(jetstream::consumer::pull::Config {
            durable_name: Some("bare".into()),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            ..Default::default()
        })
        .await?;
    let t0 = Instant::now();
    let mut got = 0;
    while got < n {
        let mut batch = consumer
            .batch()
            .max_messages(256)
            .expires(Duration::from_secs(1))
            .messages()
            .await?;
        while let Some(m) = batch.next().await {
            let m = m.map_err(|e| anyhow::anyhow!("{e}"))?;
            m.ack().await.map_err(|e| anyhow::anyhow!("{e}"))?;
            got += 1;
            // The last batch would wait for its expiry.
            if got == n {
                break;
            }
        }
    }
    let consume = n as f64 / t0.elapsed().as_secs_f64();
    js.delete_stream("BENCH_BARE").await?;
    Ok((n, publish, consume))
}

fn total_entries(v: &Value) -> u64 {
    v["sites"]
        .as_array()
        .map(|s| s.iter().map(|s| s["entries"].as_u64().unwrap_or(0)).sum())
        .unwrap_or(0)
}

async fn run() -> Result<()> {
    let communes: usize = env_num("BENCH_COMMUNES", 100)?;
    let per: usize = env_num("BENCH_PER_COMMUNE", 300)?;
    let lag_samples: usize = env_num("BENCH_LAG_SAMPLES", 200)?;
    let lag_rate: f64 = env_num("BENCH_LAG_RATE", 20.0)?;
    let outage_rate: usize = env_num("BENCH_OUTAGE_RATE", 10)?;
    println!("province bench");
    println!(
        "  nats-server        {}",
        nats_server_version(&nats_server_bin())
    );
    println!("  load average       {} (start)", load_average());

    let root = tempfile::tempdir()?;
    let cluster = Cluster::start().await;
    let js = cluster.jetstream().await;
    create_journal_stream(&js, 3).await;
    let specs = SiteSpec::many(communes);

    // 1. The backlog in the stream.
    let mut sims: Vec<SimCommune> = specs.iter().map(|s| SimCommune::new(&s.id)).collect();
    let t0 = Instant::now();
    for s in sims.iter_mut() {
        s.publish(&js, per).await?;
    }
    let filled = t0.elapsed().as_secs_f64();
    let total = (communes * per) as f64;

    // 0. Bare NATS on the same messages.
    let (bare_n, bare_pub, bare_con) = bare(&js, &sims).await?;

    let sites = root.path().join("sites");
    write_sites(&sites, &specs, &BTreeMap::new());
    let mut conf = ProvinceConf::new("a", &cluster.nodes[0].url(), 3);
    conf.store_sync = "full".into();
    let started = Instant::now();
    let mut a = Province::start(&root.path().join("a"), &sites, conf);
    a.wait_up().await;
    let ready = started.elapsed().as_secs_f64();
    let pid = a.pid().context("province pid")?;
    let cpu0 = cpu_ticks(&pid.to_string())?;
    let t0 = Instant::now();
    let want: BTreeMap<String, Want> = sims.iter().map(|s| (s.id.clone(), Want::of(s))).collect();
    a.wait("the backlog taken", Duration::from_secs(1800), &|v| {
        caught_up(v, &want)
    })
    .await;
    let ingest_s = t0.elapsed().as_secs_f64();
    let ingest_cpu = (cpu_ticks(&pid.to_string())? - cpu0) as f64 / clock_ticks();
    let rss_all = rss_kib(pid)? as f64 / 1024.0;

    // 2. Commit → province lag.
    let lagger = &mut sims[0];
    let id = lagger.id.clone();
    let mut lags = Vec::with_capacity(lag_samples);
    let every = Duration::from_secs_f64(1.0 / lag_rate.max(0.1));
    let mut pending: BTreeMap<i64, i64> = BTreeMap::new();
    let mut seen_head = lagger.head();
    let mut next_pub = Instant::now();
    let mut published = 0;
    let deadline = Instant::now() + Duration::from_secs(600);
    while (published < lag_samples || !pending.is_empty()) && Instant::now() < deadline {
        if published < lag_samples && Instant::now() >= next_pub {
            let e = lagger.make();
            pending.insert(e.seq, e.at_ms);
            publish_entries(&js, &id, &[e], true).await?;
            published += 1;
            next_pub += every;
        }
        let (_, site) = a.site(&id).await;
        let now_ms = chrono::Utc::now().timestamp_millis();
        let head = site["head_seq"].as_i64().unwrap_or(0);
        if head > seen_head {
            let done: Vec<i64> = pending.range(..=head).map(|(s, _)| *s).collect();
            for s in done {
                if let Some(at) = pending.remove(&s) {
                    lags.push((now_ms - at) as f64);
                }
            }
            seen_head = head;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    lags.sort_by(|x, y| x.total_cmp(y));

    // 3. An hour of one commune's entries at once.
    let outage = 3600 * outage_rate;
    let c = &mut sims[1];
    let t0 = Instant::now();
    let batch: Vec<_> = (0..outage).map(|_| c.make()).collect();
    for chunk in batch.chunks(256) {
        publish_entries(&js, &c.id, chunk, true).await?;
    }
    let outage_pub = t0.elapsed().as_secs_f64();
    let want1 = BTreeMap::from([(c.id.clone(), Want::of(c))]);
    a.wait(
        "the outage's backlog taken",
        Duration::from_secs(1800),
        &|v| caught_up(v, &want1),
    )
    .await;
    let catch_up = t0.elapsed().as_secs_f64();

    // 4. The same entries per site with 5 sites.
    let few = 5.min(communes);
    let few_sites = root.path().join("few-sites");
    write_sites(
        &few_sites,
        &specs[2..2 + few.min(communes - 2)],
        &BTreeMap::new(),
    );
    let mut conf = ProvinceConf::new("m", &cluster.nodes[0].url(), 3);
    conf.store_sync = "full".into();
    let mut m = Province::start(&root.path().join("m"), &few_sites, conf);
    m.wait_up().await;
    let want_few: BTreeMap<String, Want> = sims[2..2 + few.min(communes - 2)]
        .iter()
        .map(|s| (s.id.clone(), Want::of(s)))
        .collect();
    m.wait("the few sites", Duration::from_secs(600), &|v| {
        caught_up(v, &want_few)
    })
    .await;
    let rss_few = rss_kib(m.pid().context("pid")?)? as f64 / 1024.0;
    let ov = a.overview().await;

    println!("  communes           {communes} × {per} entries (stream R3 on 3 nodes, loopback)");
    println!(
        "  bare NATS          {bare_n} msgs: publish {bare_pub:.0}/s, consume+ack {bare_con:.0}/s"
    );
    println!(
        "  sims → stream      {total:.0} entries in {filled:.1} s ({:.0}/s, acknowledged per commune batch)",
        total / filled
    );
    println!("  province ready     {ready:.1} s after start ({communes} sites)");
    println!(
        "  ingest             {total:.0} entries of {communes} communes in {ingest_s:.1} s: {:.0} entries/s, \
         province CPU {ingest_cpu:.1} s ({:.0} CPU-s per million)",
        total / ingest_s,
        ingest_cpu / total * 1e6
    );
    println!(
        "  lag commit→API     n={} p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms (at {lag_rate}/s, polled every 5 ms)",
        lags.len(),
        pct(&lags, 0.5),
        pct(&lags, 0.99),
        lags.last().copied().unwrap_or(f64::NAN)
    );
    println!(
        "  1-hour outage      {outage} entries ({outage_rate}/s × 3600): published in {outage_pub:.1} s, \
         caught up {catch_up:.1} s after the first publish ({:.0} entries/s)",
        outage as f64 / catch_up
    );
    println!(
        "  memory             RSS {rss_all:.0} MiB with {communes} sites, {rss_few:.0} MiB with {few}: \
         {:.2} MiB per site",
        (rss_all - rss_few) / (communes - few).max(1) as f64
    );
    println!("  entries held       {}", total_entries(&ov));
    println!("  load average       {} (end)", load_average());
    println!("  command            cargo bench --bench province");
    drop(m);
    drop(a);
    Ok(())
}

fn main() -> Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(run())
}
