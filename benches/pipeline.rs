//! End-to-end ingest benchmark: mosquitto → `commune-ioc serve` (the real
//! release binary) → decode → SQLite journal → indicators → HTTP.
//!
//! ```text
//! cargo bench --bench pipeline
//! ```
//!
//! Phase 1 ("burst") publishes `BENCH_EVENTS` pre-generated simulator
//! messages, each unique (no two share a dedup key), with QoS 1 from two
//! connections as fast as the broker takes them, and measures the time from
//! the first publish until `/metrics` shows every one committed as a new row.
//! Phase 2 ("steady"), on a fresh broker and server process over the same
//! journal, publishes `BENCH_RATE` messages/s for `BENCH_STEADY_SECS` and
//! samples the backlog (sent − committed) each second. Both phases print a
//! per-second timeline with the server's and the broker's CPU and the number
//! of messages the broker holds (`$SYS/broker/store/messages/count`).
//!
//! The benchmark exits non-zero, after printing its figures, when a message
//! became a dead letter or a duplicate, or when the broker is left holding
//! messages the backend committed but never acknowledged; and when the
//! journal has not committed everything within `BENCH_TIMEOUT_SECS`.
//!
//! Environment:
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `BENCH_EVENTS` | 300000 | messages in the burst phase |
//! | `BENCH_RATE` | 20000 | messages/s in the steady phase (0 skips it) |
//! | `BENCH_STEADY_SECS` | 10 | length of the steady phase |
//! | `BENCH_SEED` | 2026 | simulator seed |
//! | `BENCH_BROKER_INFLIGHT` | 1000 | mosquitto `max_inflight_messages` (0 = unlimited) |
//! | `BENCH_TIMEOUT_SECS` | 300 | give up waiting for the journal after this long |
//! | `BENCH_DIR` | system temp | where the temp dir (broker config, store) is made |
//! | `BENCH_KEEP` | unset | `1` keeps the temp dir (server and broker logs, journal) |
//! | `BENCH_SERVER_LOG` | `warn` | `RUST_LOG` of the server |
//! | `IOC__*` | | passed to the server, e.g. `IOC__STORE__BATCH_MAX=8192` |

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[path = "../tests/kit/mod.rs"]
mod kit;

use anyhow::{anyhow, bail, Context, Result};
use chrono::Utc;
use commune_ioc::config::{self, Config};
use commune_ioc::sim::{Message, Traffic};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::task::JoinHandle;

use kit::backend::start_backend;
use kit::http::{Http, Scrape};
use kit::measure::{clock_ticks, cpu_ticks, env_num, filesystem_of, peak_rss_kib};
use kit::mosquitto::{find_mosquitto, mosquitto_version, start_mosquitto};
use kit::proc::{log_tail, Proc};
use kit::Pipelined as Publisher;

const COMMAND: &str = "cargo bench --bench pipeline";
const COMMUNE: &str = "bench";
/// The broker's `$SYS` store count moves by a few dozen on its own (its
/// retained `$SYS` topics); more than this left after a phase is messages
/// the backend did not acknowledge.
const UNACKED_NOISE: i64 = 100;

// ---------------------------------------------------------------- settings

#[derive(Debug, Clone)]
struct Settings {
    events: usize,
    rate: u64,
    steady_secs: u64,
    seed: u64,
    broker_inflight: u32,
    timeout: Duration,
    base_dir: Option<PathBuf>,
    keep: bool,
    server_log: String,
}

impl Settings {
    fn from_env() -> Result<Settings> {
        let events: usize = env_num("BENCH_EVENTS", 300_000)?;
        if events == 0 {
            bail!("BENCH_EVENTS must be at least 1");
        }
        Ok(Settings {
            events,
            rate: env_num("BENCH_RATE", 20_000)?,
            steady_secs: env_num("BENCH_STEADY_SECS", 10)?,
            seed: env_num("BENCH_SEED", 2026)?,
            broker_inflight: env_num("BENCH_BROKER_INFLIGHT", 1000)?,
            timeout: Duration::from_secs(env_num("BENCH_TIMEOUT_SECS", 300)?),
            base_dir: std::env::var_os("BENCH_DIR").map(PathBuf::from),
            keep: std::env::var("BENCH_KEEP").is_ok_and(|v| v == "1" || v == "true"),
            server_log: std::env::var("BENCH_SERVER_LOG").unwrap_or_else(|_| "warn".into()),
        })
    }

    fn steady_total(&self) -> usize {
        (self.rate * self.steady_secs) as usize
    }
}

// ---------------------------------------------------------------- processes
/// CPU ticks of the server, the broker and this process.
#[derive(Debug, Clone, Copy)]
struct Cpu {
    server: u64,
    broker: u64,
    bench: u64,
}

impl Cpu {
    fn sample(server: u32, broker: u32) -> Result<Cpu> {
        Ok(Cpu {
            server: cpu_ticks(&server.to_string())?,
            broker: cpu_ticks(&broker.to_string())?,
            bench: cpu_ticks("self")?,
        })
    }

    fn since(&self, start: &Cpu, tck: f64) -> (f64, f64, f64) {
        (
            (self.server - start.server) as f64 / tck,
            (self.broker - start.broker) as f64 / tck,
            (self.bench - start.bench) as f64 / tck,
        )
    }
}

// ---------------------------------------------------------------- config

fn village_ids() -> Vec<String> {
    (1..=6).map(|i| format!("ban-{i:02}")).collect()
}

fn backend_config(store: &Path) -> String {
    let villages = village_ids();
    let mut t = String::new();
    t.push_str(&format!(
        "[commune]\nid = \"{COMMUNE}\"\nname = \"Xã Benchmark\"\nprovince = \"Lai Châu\"\n\n\
         [mqtt]\nhost = \"127.0.0.1\"\nport = 1883 # IOC__MQTT__PORT\nkeep_alive_secs = 30\n\n\
         [http]\nlisten = \"127.0.0.1:0\"\n\n\
         [store]\npath = {store:?}\n\n"
    ));
    for (i, v) in villages.iter().enumerate() {
        t.push_str(&format!(
            "[[village]]\nid = \"{v}\"\nname = \"Bản {}\"\ndead_zone = {}\n\n",
            i + 1,
            i == 5
        ));
    }
    for i in 1..=16 {
        let v = &villages[(i - 1) % villages.len()];
        t.push_str(&format!(
            "[[camera]]\nid = \"cam-{i:02}\"\nname = \"Camera {i:02}\"\nvillage = \"{v}\"\n\n"
        ));
    }
    for i in 1..=10 {
        let v = &villages[(i - 1) % villages.len()];
        t.push_str(&format!(
            "[[speaker]]\nid = \"spk-{i:02}\"\nname = \"Cụm loa {i:02}\"\nvillage = \"{v}\"\nkind = \"smart\"\n\n"
        ));
    }
    t.push_str("[[speaker]]\nid = \"fe-01\"\nname = \"Đài FM\"\nkind = \"fe\"\n\n");
    for (id, kind, v) in [
        ("rain-01", "rain", 0),
        ("rain-02", "rain", 3),
        ("water-01", "water_level", 1),
        ("water-02", "water_level", 4),
        ("temp-01", "temperature", 2),
    ] {
        t.push_str(&format!(
            "[[sensor]]\nid = \"{id}\"\nvillage = \"{}\"\nkind = \"{kind}\"\n\n",
            villages[v]
        ));
    }
    t.push_str(
        r#"[[indicator]]
id = "dossier_online_ratio"
name = "Tỷ lệ hồ sơ tiếp nhận trực tuyến"
kind = "ratio"
unit = "%"
target = ">= 60"
numerator = { source = "procedure", event = "received", where = { channel = "online" } }
denominator = { source = "procedure", event = "received" }

[[indicator]]
id = "dossier_on_time_ratio"
name = "Tỷ lệ hồ sơ giải quyết đúng hạn"
kind = "ratio"
unit = "%"
target = "> 90"
numerator = { source = "procedure", event = "resolved", where = { outcome = ["early", "on_time"] } }
denominator = { source = "procedure", event = "resolved" }

[[indicator]]
id = "dossier_paid_online_ratio"
name = "Tỷ lệ thanh toán trực tuyến"
kind = "ratio"
unit = "%"
numerator = { source = "procedure", event = "paid", where = { payment = "online" } }
denominator = { source = "procedure", event = "paid" }

# `count` events carry `count`; `detection` events get count = 1.
[[indicator]]
id = "people_detected"
name = "Số lượt người được phát hiện"
kind = "count"
unit = "lượt"
match = { source = "camera", event = ["detection", "count"], where = { label = "person" }, sum = "count" }

[[indicator]]
id = "broadcasts"
name = "Số buổi phát thanh"
kind = "count"
match = { source = "speaker", event = "session_start" }

[[indicator]]
id = "water_level"
name = "Mực nước"
kind = "latest"
unit = "cm"
field = "water_level_cm"
match = { source = "sensor" }

[[indicator]]
id = "camera_availability"
name = "Camera hoạt động"
kind = "availability"
unit = "%"
device_class = "camera"

[[indicator]]
id = "procedure_freshness"
name = "Dữ liệu thủ tục hành chính"
kind = "freshness"
unit = "s"
source = "procedure"

[[indicator]]
id = "dead_letters"
name = "Bản tin lỗi"
kind = "dead_letters"
target = "< 20"
"#,
    );
    t
}

// ---------------------------------------------------------------- traffic

/// What the backend will use as the dedup key (see src/sources): messages
/// with equal keys would count once, so the benchmark keeps only the first.
fn dedup_key(m: &Message) -> Result<String> {
    let v: serde_json::Value = serde_json::from_slice(&m.payload)
        .with_context(|| format!("the simulator produced a non-JSON payload on {}", m.topic))?;
    let field = |k: &str| v.get(k).map(|x| x.to_string()).unwrap_or_default();
    Ok(if m.topic.ends_with("/procedure/dossier") {
        format!("dossier:{}:{}", field("dossier_id"), field("event"))
    } else if m.topic.ends_with("/session") {
        format!("{}:{}:{}", m.topic, field("session_id"), field("event"))
    } else {
        format!(
            "{}:{}:{}:{}",
            m.topic,
            field("kind"),
            field("seq"),
            field("ts")
        )
    })
}

/// `n` messages whose dedup keys were never seen before.
fn generate(
    traffic: &mut Traffic,
    seen: &mut HashSet<String>,
    n: usize,
) -> Result<(Vec<Message>, usize)> {
    let mut out = Vec::with_capacity(n);
    let mut skipped = 0usize;
    while out.len() < n {
        let m = traffic.next(Utc::now());
        if seen.insert(dedup_key(&m)?) {
            out.push(m);
        } else {
            skipped += 1;
            if skipped > n {
                bail!("the simulator repeats itself: {skipped} duplicate messages while generating {n}");
            }
        }
    }
    Ok((out, skipped))
}

fn mix(messages: &[Message]) -> String {
    let mut by: BTreeMap<&str, usize> = BTreeMap::new();
    for m in messages {
        let kind = m.topic.split('/').nth(2).unwrap_or("?");
        *by.entry(kind).or_default() += 1;
    }
    let bytes: usize = messages
        .iter()
        .map(|m| m.payload.len() + m.topic.len())
        .sum();
    let parts: Vec<String> = by.iter().map(|(k, v)| format!("{k} {v}")).collect();
    format!(
        "{} (mean topic+payload {} B)",
        parts.join(", "),
        bytes / messages.len().max(1)
    )
}

// ---------------------------------------------------------------- publishers

fn check_publishers(pubs: &[Publisher]) -> Result<()> {
    pubs.iter()
        .enumerate()
        .try_for_each(|(i, p)| p.check(&format!("publisher {i}")))
}

fn total_acked(pubs: &[Publisher]) -> u64 {
    pubs.iter().map(Publisher::acked).sum()
}

/// The broker's own counters, from `$SYS` (published every `sys_interval`).
///
/// mosquitto 2.0.11 does not publish `$SYS/broker/messages/inflight`, so the
/// benchmark watches `$SYS/broker/store/messages/count`: every message still
/// queued for, or awaiting a PUBACK from, a client, plus the broker's own
/// retained `$SYS` messages (a few dozen, measured before each phase).
struct BrokerStats {
    /// Latest `$SYS/broker/store/messages/count`.
    stored: Arc<AtomicI64>,
    /// Updates received so far (to wait for a fresh value).
    updates: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl BrokerStats {
    const STORED: &'static str = "$SYS/broker/store/messages/count";

    async fn connect(port: u16) -> Result<BrokerStats> {
        let mut opts = MqttOptions::new(
            format!("ioc-bench-sys-{}", std::process::id()),
            "127.0.0.1",
            port,
        );
        opts.set_keep_alive(Duration::from_secs(60));
        let (client, mut eventloop) = AsyncClient::new(opts, 16);
        client
            .subscribe(Self::STORED, QoS::AtMostOnce)
            .await
            .context("subscribing to the broker's $SYS counters")?;
        let stored = Arc::new(AtomicI64::new(-1));
        let updates = Arc::new(AtomicU64::new(0));
        let task = {
            let stored = Arc::clone(&stored);
            let updates = Arc::clone(&updates);
            tokio::spawn(async move {
                // Keep the client (and so the connection) alive in the task.
                let _client = client;
                while let Ok(ev) = eventloop.poll().await {
                    if let Event::Incoming(Packet::Publish(p)) = ev {
                        let value = std::str::from_utf8(&p.payload)
                            .ok()
                            .and_then(|v| v.trim().parse::<i64>().ok());
                        if let (true, Some(v)) = (p.topic == Self::STORED, value) {
                            stored.store(v, Ordering::Relaxed);
                            updates.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        };
        Ok(BrokerStats {
            stored,
            updates,
            task,
        })
    }

    /// The latest value (-1 before the first one).
    fn stored(&self) -> i64 {
        self.stored.load(Ordering::Relaxed)
    }

    /// The current value: mosquitto publishes a `$SYS` value only when it
    /// changed, checking every `sys_interval` (1 s), so wait for two updates
    /// or, when none comes for 2.5 s, take the last one as current.
    /// `None` when nothing was ever received, or when the value keeps
    /// changing for longer than `limit`.
    async fn fresh_stored(&self, limit: Duration) -> Option<i64> {
        let start = Instant::now();
        let mut seen = self.updates.load(Ordering::Relaxed);
        let mut quiet_since = Instant::now();
        let mut changes = 0;
        loop {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let now = self.updates.load(Ordering::Relaxed);
            if now != seen {
                seen = now;
                changes += 1;
                quiet_since = Instant::now();
            }
            let settled = quiet_since.elapsed() > Duration::from_millis(2500);
            if (changes >= 2 || settled) && self.stored() >= 0 {
                return Some(self.stored());
            }
            if start.elapsed() > limit {
                return None;
            }
        }
    }
}

// ---------------------------------------------------------------- phases

struct Env<'a> {
    http: &'a Http,
    pubs: &'a [Publisher],
    stats: &'a BrokerStats,
    server: &'a mut Proc,
    broker: &'a mut Proc,
    tck: f64,
    timeout: Duration,
}

impl Env<'_> {
    fn alive(&mut self) -> Result<()> {
        self.server.ensure_running()?;
        self.broker.ensure_running()?;
        check_publishers(self.pubs)
    }

    fn cpu(&self) -> Result<Cpu> {
        Cpu::sample(self.server.pid(), self.broker.pid())
    }

    fn stuck(&self, what: &str, expected: u64, delta: &Scrape, acked: u64) -> anyhow::Error {
        anyhow!(
            "TIMEOUT after {:?} waiting for {what}: expected {expected} new rows; the broker acknowledged \
             {acked} publishes; the server received {} messages and committed {} events, {} dead letters \
             and {} duplicates.\nLast lines of the server log ({}):\n{}",
            self.timeout,
            delta.received(),
            delta.committed(),
            delta.dead(),
            delta.duplicates(),
            self.server.log.display(),
            log_tail(&self.server.log, 30)
        )
    }
}

/// Publish probes until the backend's subscription is live, then wait until
/// it has committed everything it received. Returns the baseline scrape.
async fn wait_subscribed(env: &mut Env<'_>) -> Result<Scrape> {
    let start = Instant::now();
    let before = env.http.scrape().await?.received();
    let mut probes = 0u64;
    'probe: loop {
        if start.elapsed() > Duration::from_secs(30) {
            bail!("the backend never received a probe message within 30 s: is it subscribed to ioc/{COMMUNE}/#?");
        }
        env.alive()?;
        probes += 1;
        env.pubs[0]
            .client
            .publish(
                format!("ioc/{COMMUNE}/camera/cam-01/status"),
                QoS::AtLeastOnce,
                false,
                b"online".to_vec(),
            )
            .await
            .context("publishing a probe message")?;
        let waited = Instant::now();
        while waited.elapsed() < Duration::from_millis(500) {
            tokio::time::sleep(Duration::from_millis(20)).await;
            if env.http.scrape().await?.received() > before {
                break 'probe;
            }
        }
    }
    // Settle: nothing in flight, every received message committed.
    let mut last = env.http.scrape().await?;
    let mut stable_since = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = env.http.scrape().await?;
        if now.received() != last.received() || now.accounted() != now.received() {
            stable_since = Instant::now();
        } else if stable_since.elapsed() > Duration::from_millis(300)
            && total_acked(env.pubs) >= probes
        {
            return Ok(now);
        }
        if start.elapsed() > Duration::from_secs(60) {
            bail!("the backend did not settle after the probe messages");
        }
        last = now;
    }
}

/// One row of a phase's timeline: counts since the phase started, CPU over
/// the last interval.
struct Sample {
    at: f64,
    sent: u64,
    acked: u64,
    new: u64,
    duplicates: u64,
    batches: u64,
    /// Messages the broker holds beyond its idle baseline (-1: unknown).
    broker_held: i64,
    server_pct: f64,
    broker_pct: f64,
}

struct Sampler {
    stored_base: i64,
    t0: Instant,
    next: Instant,
    last_at: f64,
    last_cpu: Cpu,
    samples: Vec<Sample>,
}

impl Sampler {
    fn new(t0: Instant, cpu: Cpu, stored_base: i64) -> Sampler {
        Sampler {
            stored_base,
            t0,
            next: t0 + Duration::from_secs(1),
            last_at: 0.0,
            last_cpu: cpu,
            samples: Vec::new(),
        }
    }

    fn due(&self) -> bool {
        Instant::now() >= self.next
    }

    fn record(&mut self, env: &Env<'_>, sent: u64, acked: u64, d: &Scrape) -> Result<()> {
        self.next += Duration::from_secs(1);
        let at = self.t0.elapsed().as_secs_f64();
        let cpu = env.cpu()?;
        let (server, broker, _) = cpu.since(&self.last_cpu, env.tck);
        let span = (at - self.last_at).max(1e-3);
        self.samples.push(Sample {
            at,
            sent,
            acked,
            new: d.new_rows(),
            duplicates: d.duplicates(),
            batches: d.batches(),
            broker_held: match env.stats.stored() {
                -1 => -1,
                v => v - self.stored_base,
            },
            server_pct: 100.0 * server / span,
            broker_pct: 100.0 * broker / span,
        });
        self.last_at = at;
        self.last_cpu = cpu;
        Ok(())
    }
}

/// What one phase measured.
struct Phase {
    total: usize,
    /// Paced rate, `None` for the burst.
    rate: Option<u64>,
    /// First publish → last PUBACK from the broker.
    publish_secs: f64,
    /// First publish → every message committed.
    wall: f64,
    server_cpu: f64,
    broker_cpu: f64,
    bench_cpu: f64,
    samples: Vec<Sample>,
    delta: Scrape,
    /// Messages the broker still holds (beyond its idle baseline) once every
    /// message is committed: deliveries the backend never acknowledged
    /// (`None`: no fresh `$SYS` value).
    unacked_after: Option<i64>,
}

/// Publish `messages` (as fast as possible, or paced at `rate`) and wait
/// until the journal has committed each as a new row.
async fn run_phase(
    env: &mut Env<'_>,
    base: &Scrape,
    messages: Vec<Message>,
    rate: Option<u64>,
) -> Result<Phase> {
    let total = messages.len();
    let sent = Arc::new(AtomicU64::new(0));
    let clients: Vec<AsyncClient> = env.pubs.iter().map(|p| p.client.clone()).collect();
    let acked_base = total_acked(env.pubs);
    let stored_base = env
        .stats
        .fresh_stored(Duration::from_secs(10))
        .await
        .unwrap_or(-1);
    let cpu0 = env.cpu()?;
    let t0 = Instant::now();
    let mut sampler = Sampler::new(t0, cpu0, stored_base);

    let mut senders: Vec<JoinHandle<Result<(), rumqttc::ClientError>>> = Vec::new();
    match rate {
        None => {
            // One task per connection, each with every other message.
            let mut parts: Vec<Vec<Message>> = (0..clients.len())
                .map(|_| Vec::with_capacity(total / clients.len() + 1))
                .collect();
            for (i, m) in messages.into_iter().enumerate() {
                parts[i % clients.len()].push(m);
            }
            for (client, part) in clients.into_iter().zip(parts) {
                let sent = Arc::clone(&sent);
                senders.push(tokio::spawn(async move {
                    for m in part {
                        client
                            .publish(m.topic, QoS::AtLeastOnce, m.retain, m.payload)
                            .await?;
                        sent.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(())
                }));
            }
        }
        Some(rate) => {
            // One pacer: every 5 ms, publish what is due since the start.
            let sent = Arc::clone(&sent);
            senders.push(tokio::spawn(async move {
                let start = Instant::now();
                let mut tick = tokio::time::interval(Duration::from_millis(5));
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                let mut done = 0usize;
                let mut it = messages.into_iter();
                while done < total {
                    tick.tick().await;
                    let due = ((start.elapsed().as_secs_f64() * rate as f64) as usize).min(total);
                    while done < due {
                        let Some(m) = it.next() else { break };
                        clients[done % clients.len()]
                            .publish(m.topic, QoS::AtLeastOnce, m.retain, m.payload)
                            .await?;
                        done += 1;
                        sent.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Ok(())
            }));
        }
    }

    let acked = |pubs: &[Publisher]| total_acked(pubs) - acked_base;
    let mut publish_secs: Option<f64> = None;
    let mut next_scrape = t0;
    let (wall, last) = loop {
        if publish_secs.is_none() && acked(env.pubs) >= total as u64 {
            publish_secs = Some(t0.elapsed().as_secs_f64());
        }
        if Instant::now() >= next_scrape {
            next_scrape += Duration::from_millis(50);
            let s = env.http.scrape().await?;
            let d = s.minus(base);
            if sampler.due() {
                sampler.record(env, sent.load(Ordering::Relaxed), acked(env.pubs), &d)?;
            }
            // Every message is unique: done when each is a new row and no
            // batch is half-way (received counts a batch before its commit).
            if d.new_rows() >= total as u64 && d.accounted() >= d.received() {
                break (t0.elapsed().as_secs_f64(), s);
            }
            if t0.elapsed() > env.timeout {
                println!("phase timed out; what was measured so far:");
                print_timeline(&sampler.samples);
                return Err(env.stuck(
                    "the messages to be committed",
                    total as u64,
                    &d,
                    acked(env.pubs),
                ));
            }
            env.alive()?;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    let cpu1 = env.cpu()?;
    for s in senders {
        s.await
            .context("a publishing task panicked")?
            .context("publishing a message")?;
    }
    // Committed before the last PUBACK reached us (possible within a scrape
    // interval): wait for it.
    while publish_secs.is_none() {
        if acked(env.pubs) >= total as u64 {
            publish_secs = Some(t0.elapsed().as_secs_f64());
        } else if t0.elapsed() > env.timeout {
            bail!("the broker never acknowledged every publish");
        } else {
            env.alive()?;
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    let (server_cpu, broker_cpu, bench_cpu) = cpu1.since(&cpu0, env.tck);
    let unacked_after = match (
        stored_base,
        env.stats.fresh_stored(Duration::from_secs(10)).await,
    ) {
        (-1, _) | (_, None) => None,
        (base, Some(now)) => Some((now - base).max(0)),
    };
    Ok(Phase {
        total,
        rate,
        publish_secs: publish_secs.unwrap_or(wall),
        wall,
        server_cpu,
        broker_cpu,
        bench_cpu,
        samples: sampler.samples,
        delta: last.minus(base),
        unacked_after,
    })
}

// ---------------------------------------------------------------- report

fn by_label_line(d: &Scrape, name: &str) -> String {
    let parts: Vec<String> = d
        .by_label(name)
        .into_iter()
        .filter(|(_, v)| *v > 0.0)
        .map(|(l, v)| format!("{l} {v}"))
        .collect();
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(", ")
    }
}

fn ms(secs: Option<f64>) -> String {
    match secs {
        Some(s) if s.is_finite() => format!("{:.1} ms", s * 1000.0),
        Some(_) => "> 3.3 s".into(),
        None => "n/a".into(),
    }
}

fn thousands(n: f64) -> String {
    let s = format!("{:.0}", n.max(0.0));
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push('_');
        }
        out.push(c);
    }
    out
}

fn print_batches(d: &Scrape) {
    let batches = d.batches();
    let secs_sum = d.sum("ioc_journal_batch_seconds_sum");
    println!(
        "  journal batches          {} (mean {:.0} messages/batch; commit mean {}, p50 ≤ {}, p99 ≤ {}; {:.2} s committing)",
        thousands(batches as f64),
        d.received() as f64 / batches.max(1) as f64,
        ms(Some(secs_sum / batches.max(1) as f64)),
        ms(d.batch_seconds_quantile(0.5)),
        ms(d.batch_seconds_quantile(0.99)),
        secs_sum
    );
}

fn print_outcome(d: &Scrape) {
    println!(
        "  outcome                  committed {} events ({}), {} dead letters ({}), {} duplicates (redeliveries); {} received",
        d.committed(),
        by_label_line(d, "ioc_events_committed_total"),
        d.dead(),
        by_label_line(d, "ioc_dead_letters_total"),
        d.duplicates(),
        d.received()
    );
    if d.dead() > 0 {
        println!("  WARNING                  dead letters in generated traffic: the decoder rejected simulator messages");
    }
    if d.duplicates() > 0 {
        println!(
            "  WARNING                  {} duplicates: every generated message is unique, so the broker redelivered \
             messages (the backend reconnected; see the server log with BENCH_KEEP=1)",
            d.duplicates()
        );
    }
}

fn print_timeline(samples: &[Sample]) {
    if samples.is_empty() {
        return;
    }
    println!(
        "  timeline                 (cumulative counts; held = messages the broker holds, from \
         $SYS/broker/store/messages/count; CPU % of one core over the last second)"
    );
    let show = |s: &Sample| {
        let backlog = s.sent.saturating_sub(s.new);
        println!(
            "    t={:>5.1}s sent {:>7} acked {:>7} committed {:>7} backlog {:>6} held {:>6} dups {:>6} batches {:>6} cpu server {:>3.0}% broker {:>3.0}%",
            s.at, s.sent, s.acked, s.new, backlog, s.broker_held, s.duplicates, s.batches, s.server_pct, s.broker_pct
        );
    };
    let n = samples.len();
    if n <= 24 {
        samples.iter().for_each(show);
    } else {
        samples[..16].iter().for_each(show);
        println!("    … {} more seconds …", n - 22);
        samples[n - 6..].iter().for_each(show);
    }
}

fn print_bottleneck(p: &Phase) {
    match p.unacked_after {
        Some(n) if n < UNACKED_NOISE => println!(
            "  broker after the phase   holds {n} messages more than before it (≈ 0: every delivery was acknowledged)"
        ),
        Some(n) => println!(
            "  WARNING                  the broker still holds {n} messages awaiting a PUBACK although the backend \
             committed every message: the backend lost acknowledgements (the broker will redeliver them on \
             the next reconnect, as duplicates)"
        ),
        None => println!("  broker after the phase   no fresh $SYS/broker/store/messages/count value within 10 s"),
    }
    if p.broker_cpu > 2.0 * p.server_cpu {
        println!(
            "  NOTE                     the broker, not the backend, limited this run: mosquitto used {:.1} CPU-s, \
             {:.1}× the server's {:.1} s (mosquitto 2.0 spends time proportional to the messages outstanding for \
             the subscriber on each PUBACK)",
            p.broker_cpu,
            p.broker_cpu / p.server_cpu.max(1e-3),
            p.server_cpu
        );
    }
}

fn report_burst(p: &Phase, rss_kib: u64) {
    let n = p.total as f64;
    println!(
        "phase 1: burst ({} messages, QoS 1, 2 publisher connections, as fast as the broker takes them)",
        thousands(n)
    );
    println!("  events                   {}", thousands(n));
    println!(
        "  wall time                {:.2} s (first publish → all committed)",
        p.wall
    );
    println!(
        "  end-to-end throughput    {} events/s",
        thousands(n / p.wall)
    );
    println!(
        "  publisher-side rate      {} msg/s (all PUBACKed by the broker after {:.2} s)",
        thousands(n / p.publish_secs),
        p.publish_secs
    );
    println!(
        "  server CPU               {:.2} s ({:.2} CPU-s per million events; {:.2} cores on average)",
        p.server_cpu,
        p.server_cpu / n * 1e6,
        p.server_cpu / p.wall
    );
    println!(
        "  server peak RSS (VmHWM)  {:.1} MiB",
        rss_kib as f64 / 1024.0
    );
    println!(
        "  mosquitto CPU            {:.2} s ({:.2} CPU-s per million)",
        p.broker_cpu,
        p.broker_cpu / n * 1e6
    );
    println!(
        "  bench process CPU        {:.2} s (publishers and scraping)",
        p.bench_cpu
    );
    print_batches(&p.delta);
    print_outcome(&p.delta);
    print_timeline(&p.samples);
    print_bottleneck(p);
}

fn report_steady(p: &Phase, ready_secs: f64) -> bool {
    let rate = p.rate.unwrap_or(0);
    let achieved = p.total as f64 / p.publish_secs.max(1e-9);
    let during: Vec<&Sample> = p
        .samples
        .iter()
        .filter(|s| s.at <= p.publish_secs + 0.05)
        .collect();
    let backlog = |s: &Sample| s.sent.saturating_sub(s.new);
    let end_backlog = during.last().map(|s| backlog(s)).unwrap_or(0);
    let max_backlog = p.samples.iter().map(backlog).max().unwrap_or(0);
    let drain = (p.wall - p.publish_secs).max(0.0);
    let allowed = (rate / 2).max(1);
    let kept_up = achieved >= 0.98 * rate as f64
        && end_backlog <= allowed
        && drain < 1.0
        && p.delta.duplicates() == 0;
    println!(
        "phase 2: steady ({} msg/s for {:.0} s, paced every 5 ms over 2 connections; fresh broker and server \
         process on the phase-1 journal, ready {:.2} s after spawn)",
        thousands(rate as f64),
        p.total as f64 / rate.max(1) as f64,
        ready_secs
    );
    println!(
        "  published                {} in {:.2} s ({} msg/s achieved)",
        thousands(p.total as f64),
        p.publish_secs,
        thousands(achieved)
    );
    println!(
        "  backlog                  max {} messages (sent − committed, sampled each second); {} at the last sample \
         while publishing; all committed {:.2} s after the last PUBACK",
        max_backlog, end_backlog, drain
    );
    println!(
        "  server CPU               {:.2} s ({:.2} cores at {} msg/s; {:.2} CPU-s per million); mosquitto {:.2} s",
        p.server_cpu,
        p.server_cpu / p.wall,
        thousands(rate as f64),
        p.server_cpu / p.total.max(1) as f64 * 1e6,
        p.broker_cpu
    );
    print_batches(&p.delta);
    print_outcome(&p.delta);
    print_timeline(&p.samples);
    print_bottleneck(p);
    println!(
        "  kept up                  {}",
        if kept_up {
            "YES (rate achieved, backlog ≤ 0.5 s of traffic, drained within 1 s, no redeliveries)"
                .to_string()
        } else {
            format!(
                "NO (needs ≥ 98 % of the rate, backlog ≤ {allowed} at the end, a drain < 1 s and no redeliveries)"
            )
        }
    );
    kept_up
}

async fn print_indicators(http: &Http) -> Result<()> {
    let (status, body) = http.get("/api/indicators?window=today").await?;
    if !status.is_success() {
        bail!("GET /api/indicators answered {status}: {body}");
    }
    let values: Vec<serde_json::Value> =
        serde_json::from_str(&body).context("GET /api/indicators did not answer a JSON list")?;
    let shown: Vec<String> = values
        .iter()
        .map(|v| {
            let id = v.get("id").and_then(|x| x.as_str()).unwrap_or("?");
            match v.get("value").and_then(|x| x.as_f64()) {
                Some(x) => format!("{id}={x:.1}"),
                None => format!("{id}=null"),
            }
        })
        .collect();
    println!("indicators (today)         {}", shown.join(", "));
    Ok(())
}

/// What went wrong beyond speed: every message must become exactly one new
/// row and be acknowledged once.
fn integrity_problems(phase: &str, p: &Phase) -> Vec<String> {
    let mut out = Vec::new();
    if p.delta.dead() > 0 {
        out.push(format!(
            "{phase}: {} simulator messages became dead letters",
            p.delta.dead()
        ));
    }
    if p.delta.duplicates() > 0 {
        out.push(format!(
            "{phase}: {} redelivered duplicates (the backend reconnected with messages unacknowledged)",
            p.delta.duplicates()
        ));
    }
    if let Some(n) = p.unacked_after.filter(|n| *n >= UNACKED_NOISE) {
        out.push(format!(
            "{phase}: the broker still holds {n} messages the backend committed but never acknowledged (lost PUBACKs)"
        ));
    }
    out
}

// ---------------------------------------------------------------- main

#[tokio::main]
async fn main() {
    // `cargo bench` passes `--bench`; any other argument is a filter that
    // this single benchmark does not use.
    let Some(mosquitto) = find_mosquitto() else {
        eprintln!("mosquitto not found in /usr/sbin or PATH");
        eprintln!("install mosquitto: apt-get install -y mosquitto");
        std::process::exit(1);
    };
    if let Err(e) = run(&mosquitto).await {
        eprintln!("pipeline benchmark FAILED: {e:#}");
        std::process::exit(1);
    }
}

/// One broker and one backend, with the benchmark's connections to them.
struct Stack {
    broker: Proc,
    server: Proc,
    http: Http,
    pubs: Vec<Publisher>,
    stats: BrokerStats,
    ready_secs: f64,
}

impl Stack {
    /// A fresh mosquitto and `commune-ioc serve` (on the shared store), the
    /// publishers, and the backend's subscription confirmed live.
    async fn start(
        mosquitto: &Path,
        dir: &Path,
        tag: &str,
        settings: &Settings,
        config_path: &Path,
        overrides: &[(String, String)],
    ) -> Result<Stack> {
        let (broker, mqtt_port) = start_mosquitto(mosquitto, dir, tag, settings.broker_inflight)?;
        let (server, http, ready_secs) = start_backend(
            dir,
            tag,
            config_path,
            mqtt_port,
            &settings.server_log,
            overrides,
        )
        .await?;
        let mut pubs = Vec::new();
        for i in 0..2 {
            pubs.push(
                Publisher::connect(
                    &format!("ioc-bench-pub-{i}-{}", std::process::id()),
                    mqtt_port,
                    false,
                )
                .await?,
            );
        }
        let stats = BrokerStats::connect(mqtt_port).await?;
        Ok(Stack {
            broker,
            server,
            http,
            pubs,
            stats,
            ready_secs,
        })
    }

    fn env(&mut self, tck: f64, timeout: Duration) -> Env<'_> {
        Env {
            http: &self.http,
            pubs: &self.pubs,
            stats: &self.stats,
            server: &mut self.server,
            broker: &mut self.broker,
            tck,
            timeout,
        }
    }

    /// Disconnect, SIGTERM the server (graceful: it drains its queue), stop
    /// the broker. Returns how long the server took to stop.
    async fn stop(mut self) -> Result<Option<Duration>> {
        futures_util::future::join_all(
            std::mem::take(&mut self.pubs)
                .into_iter()
                .map(Publisher::stop),
        )
        .await;
        self.stats.task.abort();
        let stopped = self.server.terminate(Duration::from_secs(10))?;
        self.broker.terminate(Duration::from_secs(2))?;
        Ok(stopped)
    }
}

async fn run(mosquitto: &Path) -> Result<()> {
    let settings = Settings::from_env()?;
    let tck = clock_ticks();
    let load_average = std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into());
    let mut builder = tempfile::Builder::new();
    builder.prefix("ioc-bench-").disable_cleanup(settings.keep);
    let dir = match &settings.base_dir {
        Some(base) => builder.tempdir_in(base),
        None => builder.tempdir(),
    }
    .context("creating the benchmark's temp dir")?;
    let store = dir.path().join("store");

    // Backend config: a file, plus the overrides the server also gets (and
    // IOC__MQTT__PORT, per broker).
    let config_path = dir.path().join("commune.toml");
    let config_text = backend_config(&store);
    std::fs::write(&config_path, &config_text)
        .with_context(|| format!("writing {}", config_path.display()))?;
    let mut overrides: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| k.starts_with("IOC__") && k != "IOC__MQTT__PORT")
        .collect();
    overrides.push(("IOC__HTTP__LISTEN".into(), "127.0.0.1:0".into()));
    overrides.push(("IOC__STORE__PATH".into(), store.display().to_string()));
    let cfg: Config =
        config::load_str(&config_text, &config_path.display().to_string(), &overrides)
            .map_err(|e| anyhow!("the benchmark's backend config is invalid: {e}"))?;

    // Traffic: unique messages, generated before anything is timed.
    let gen_start = Instant::now();
    let mut traffic = Traffic::new(&cfg, settings.seed);
    let mut seen = HashSet::new();
    let (burst_msgs, skipped1) = generate(&mut traffic, &mut seen, settings.events)?;
    let (steady_msgs, skipped2) = generate(&mut traffic, &mut seen, settings.steady_total())?;
    let burst_mix = mix(&burst_msgs);
    let gen_secs = gen_start.elapsed().as_secs_f64();
    drop(seen);

    let mut stack = Stack::start(
        mosquitto,
        dir.path(),
        "burst",
        &settings,
        &config_path,
        &overrides,
    )
    .await?;
    let ready_secs = stack.ready_secs;
    let mut env = stack.env(tck, settings.timeout);
    let base = wait_subscribed(&mut env).await?;

    println!();
    println!("==================== commune-ioc end-to-end ingest benchmark ====================");
    println!("command                    {COMMAND}");
    println!(
        "machine                    {} CPUs, load average {} before the run; store on {} ({})",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        load_average,
        filesystem_of(dir.path()),
        store.display()
    );
    println!(
        "broker                     {} (max_inflight_messages {}, max_queued_messages 10000000, persistence false)",
        mosquitto_version(mosquitto),
        settings.broker_inflight
    );
    println!(
        "backend                    {} (store.batch_max {}, store.queue_capacity {}; ready {:.2} s after spawn)",
        env!("CARGO_BIN_EXE_commune-ioc"),
        cfg.store.batch_max,
        cfg.store.queue_capacity,
        ready_secs
    );
    println!(
        "traffic                    seed {}; {}; generated in {:.2} s, {} repeats dropped",
        settings.seed,
        burst_mix,
        gen_secs,
        skipped1 + skipped2
    );
    println!();

    let burst = run_phase(&mut env, &base, burst_msgs, None).await?;
    let rss = peak_rss_kib(env.server.pid())?;
    report_burst(&burst, rss);
    let mut problems = integrity_problems("phase 1", &burst);
    print_indicators(&stack.http).await?;
    stack.stop().await?;
    println!();

    if !steady_msgs.is_empty() {
        // A fresh broker and backend process (same journal), so that what
        // phase 1 left in the broker does not weigh on phase 2.
        let mut stack = Stack::start(
            mosquitto,
            dir.path(),
            "steady",
            &settings,
            &config_path,
            &overrides,
        )
        .await?;
        let mut env = stack.env(tck, settings.timeout);
        let base2 = wait_subscribed(&mut env).await?;
        let steady = run_phase(&mut env, &base2, steady_msgs, Some(settings.rate)).await?;
        let rss = peak_rss_kib(env.server.pid())?;
        report_steady(&steady, stack.ready_secs);
        println!("  server peak RSS (VmHWM)  {:.1} MiB", rss as f64 / 1024.0);
        problems.extend(integrity_problems("phase 2", &steady));
        print_indicators(&stack.http).await?;
        match stack.stop().await? {
            Some(t) => println!(
                "  server stopped           {:.2} s after SIGTERM",
                t.as_secs_f64()
            ),
            None => println!("  server stopped           not within 10 s of SIGTERM: killed"),
        }
        println!();
    }
    println!("=================================================================================");
    if settings.keep {
        println!("kept {}", dir.path().display());
    }
    if !problems.is_empty() {
        bail!(
            "integrity checks failed (the figures above are printed for reference):\n  - {}",
            problems.join("\n  - ")
        );
    }
    Ok(())
}
