//! Live-stream benchmark: MQTT publish → WebSocket receive latency at
//! dashboard clients, side by side for
//!
//! - **commune-ioc** (the release binary, `/api/ws`, config
//!   `benches/peers/commune-ioc.toml`);
//! - **Node-RED 4.1** running the equivalent flow of
//!   `benches/peers/node-red/flows.json` (MQTT in → JSON → per-key latest →
//!   WebSocket out), installed by this harness into `target/peers/node-red`;
//! - the **bare broker**: one MQTT subscriber that does nothing, the ceiling
//!   of the harness itself.
//!
//! ```text
//! cargo bench --bench live -- [--system commune-ioc|node-red|broker|all]
//!                             [--scenario steady|ramp|fanout|slow|idle|all]
//!                             [--quick] [--duration SECS]
//! ```
//!
//! Every system gets a fresh Mosquitto (loopback, free port) and a fresh
//! process per scenario. Sensors publish telemetry
//! `{"ts":…,"seq":…,"probe_us":…}` at QoS 1 (the QoS commune-ioc subscribes
//! with; Node-RED's `mqtt in` and the bare subscriber use QoS 1 too), paced
//! from several connections; `probe_us` is the publish instant in
//! microseconds since the harness started. Each client computes
//! `now − probe_us` for every value it receives whose probe was published in
//! the measurement window (so values that arrive late, during the drain, are
//! still counted, and warm-up traffic is not).
//!
//! What is counted:
//! - commune-ioc coalesces by key (latest wins): a client receives one item
//!   per changed key per server step, carrying the newest probe of the group.
//!   Latency is that of the newest event in each item; the events it
//!   superseded are not separately timed. "delivered events/s" is events
//!   committed per second (`ioc_events_committed_total`); "items/s" is the
//!   update items all clients received per second.
//! - Node-RED forwards every event to every client: "delivered events/s" is
//!   what the average client received per second; "items/s" all clients.
//! - broker: "delivered events/s" is what the subscriber received.
//! - loss: published in the window but not committed (commune-ioc) or not
//!   received by a client (Node-RED, broker) by the end of the drain.
//! - converged: clients whose last value of every key equals the last probe
//!   published to that key's group.
//!
//! The benchmark fails loudly (exit 1, with an install hint) when
//! mosquitto, node or npm is missing; it never skips a system silently.
//!
//! Environment: `BENCH_DIR` (where the temp dir goes), `BENCH_KEEP=1` (keep
//! logs), `BENCH_SERVER_LOG` (`RUST_LOG` of commune-ioc, default `warn`),
//! `IOC__*` (passed to commune-ioc), `BENCH_PUBLISHERS` (MQTT publishing
//! connections, default 4).

#[path = "../tests/kit/mod.rs"]
mod kit;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde::Deserialize;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use kit::backend::start_backend;
use kit::http::Http;
use kit::measure::{clock_ticks, cpu_ticks, env_num, load_average, peak_rss_kib, rss_kib};
use kit::mosquitto::{find_mosquitto, mosquitto_version, start_mosquitto};
use kit::proc::{free_port, log_tail, Proc};
use kit::Pipelined;

const COMMAND: &str = "cargo bench --bench live";
const COMMUNE: &str = "bench";
/// Sensor groups: one `latest` indicator (commune-ioc) or key (Node-RED) each.
const GROUPS: usize = 200;
/// Sensors per group (1,000 sensors in all).
const PER_GROUP: usize = 5;
/// A step passes when its p99 is at most this (the issue's knee criterion).
const KNEE_P99_US: u64 = 100_000;
/// Loss tolerated in a ramp step (fraction of the events published).
const KNEE_LOSS: f64 = 0.001;

/// Microseconds since the harness started: the clock of every probe.
fn now_us() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_micros() as u64
}

fn epoch_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

// ---------------------------------------------------------------- command line

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum System {
    Ioc,
    NodeRed,
    Broker,
}

impl System {
    fn name(self) -> &'static str {
        match self {
            System::Ioc => "commune-ioc",
            System::NodeRed => "node-red",
            System::Broker => "broker",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    Steady,
    Ramp,
    Fanout,
    Slow,
    Idle,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::Steady => "steady",
            Scenario::Ramp => "ramp",
            Scenario::Fanout => "fanout",
            Scenario::Slow => "slow",
            Scenario::Idle => "idle",
        }
    }
}

#[derive(Debug, Clone)]
struct Args {
    systems: Vec<System>,
    scenarios: Vec<Scenario>,
    quick: bool,
    duration: Option<f64>,
}

const USAGE: &str =
    "usage: cargo bench --bench live -- [--system commune-ioc|node-red|broker|all] \
[--scenario steady|ramp|fanout|slow|idle|all] [--quick] [--duration SECS]\n\
--system and --scenario may be repeated or take a comma-separated list.";

fn parse_args() -> Result<Args> {
    let mut systems = Vec::new();
    let mut scenarios = Vec::new();
    let mut quick = false;
    let mut duration = None;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) => (f.to_string(), Some(v.to_string())),
            None => (a.clone(), None),
        };
        let mut value = |what: &str| -> Result<String> {
            inline
                .clone()
                .or_else(|| it.next())
                .ok_or_else(|| anyhow!("{what} needs a value\n{USAGE}"))
        };
        match flag.as_str() {
            "--bench" => {}
            "--quick" => quick = true,
            "--system" => {
                for s in value("--system")?.split(',') {
                    match s.trim() {
                        "commune-ioc" | "ioc" => systems.push(System::Ioc),
                        "node-red" | "nodered" => systems.push(System::NodeRed),
                        "broker" => systems.push(System::Broker),
                        "all" => systems.extend([System::Ioc, System::NodeRed, System::Broker]),
                        other => bail!("unknown system {other:?}\n{USAGE}"),
                    }
                }
            }
            "--scenario" => {
                for s in value("--scenario")?.split(',') {
                    match s.trim() {
                        "steady" => scenarios.push(Scenario::Steady),
                        "ramp" => scenarios.push(Scenario::Ramp),
                        "fanout" | "fan-out" => scenarios.push(Scenario::Fanout),
                        "slow" => scenarios.push(Scenario::Slow),
                        "idle" => scenarios.push(Scenario::Idle),
                        "all" => scenarios.extend([
                            Scenario::Steady,
                            Scenario::Ramp,
                            Scenario::Fanout,
                            Scenario::Slow,
                            Scenario::Idle,
                        ]),
                        other => bail!("unknown scenario {other:?}\n{USAGE}"),
                    }
                }
            }
            "--duration" => {
                let v = value("--duration")?;
                let d: f64 = v
                    .parse()
                    .map_err(|_| anyhow!("--duration {v:?} is not a number of seconds"))?;
                if !(d > 0.0 && d.is_finite()) {
                    bail!("--duration must be positive");
                }
                duration = Some(d);
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    if systems.is_empty() {
        systems = vec![System::Ioc, System::NodeRed, System::Broker];
    }
    if scenarios.is_empty() {
        scenarios = vec![
            Scenario::Steady,
            Scenario::Ramp,
            Scenario::Fanout,
            Scenario::Slow,
            Scenario::Idle,
        ];
    }
    systems.dedup();
    scenarios.dedup();
    Ok(Args {
        systems,
        scenarios,
        quick,
        duration,
    })
}

/// Sizes and lengths of the scenarios, for the full or the quick profile.
#[derive(Debug, Clone)]
struct Profile {
    warmup: f64,
    drain: f64,
    steady_rate: u64,
    steady_clients: usize,
    steady_secs: f64,
    ramp_start: u64,
    ramp_factor: f64,
    ramp_max: u64,
    ramp_clients: usize,
    ramp_step_secs: f64,
    fanout_rate: u64,
    fanout_clients: usize,
    fanout_secs: f64,
    slow_rate: u64,
    slow_clients: usize,
    slow_slow: usize,
    slow_secs: f64,
    idle_clients: usize,
}

impl Profile {
    fn new(quick: bool, duration: Option<f64>) -> Profile {
        let mut p = if quick {
            Profile {
                warmup: 1.0,
                drain: 3.0,
                steady_rate: 5_000,
                steady_clients: 200,
                steady_secs: 5.0,
                ramp_start: 1_000,
                ramp_factor: 1.5,
                ramp_max: 200_000,
                ramp_clients: 20,
                ramp_step_secs: 3.0,
                fanout_rate: 2_000,
                fanout_clients: 1_000,
                fanout_secs: 5.0,
                slow_rate: 5_000,
                slow_clients: 200,
                slow_slow: 10,
                slow_secs: 5.0,
                idle_clients: 1_000,
            }
        } else {
            Profile {
                warmup: 3.0,
                drain: 5.0,
                steady_rate: 5_000,
                steady_clients: 200,
                steady_secs: 60.0,
                ramp_start: 1_000,
                ramp_factor: 1.5,
                ramp_max: 200_000,
                ramp_clients: 20,
                ramp_step_secs: 10.0,
                fanout_rate: 2_000,
                fanout_clients: 1_000,
                fanout_secs: 30.0,
                slow_rate: 5_000,
                slow_clients: 200,
                slow_slow: 10,
                slow_secs: 30.0,
                idle_clients: 5_000,
            }
        };
        if let Some(d) = duration {
            p.steady_secs = d;
            p.fanout_secs = d;
            p.slow_secs = d;
            p.ramp_step_secs = (d / 4.0).max(2.0);
        }
        p
    }
}

// ---------------------------------------------------------------- publishing

/// Telemetry topics of a sensor, by global sensor index.
fn sensor_id(s: usize) -> String {
    format!("g{:03}-{}", s / PER_GROUP + 1, s % PER_GROUP + 1)
}

/// The newest probe published to each group (for the convergence check).
struct LastProbe(Vec<AtomicU64>);

/// One MQTT publishing connection; it owns the groups `g % n == index`.
struct Publisher {
    conn: Pipelined,
    /// (topic, group) of the sensors it publishes for.
    sensors: Vec<(String, usize)>,
    next: usize,
    seq: u64,
    /// Last `ts` (ms) sent per group: kept strictly increasing so the
    /// newest probe of a group is also the one with the newest event time.
    last_ts: Vec<u64>,
}

impl Publisher {
    async fn connect(index: usize, of: usize, port: u16, tag: &str) -> Result<Publisher> {
        let conn = Pipelined::connect(&format!("bench-live-pub-{tag}-{index}"), port, true)
            .await
            .with_context(|| format!("publisher {index}"))?;
        let sensors = (0..GROUPS * PER_GROUP)
            .filter(|s| (s / PER_GROUP) % of == index)
            .map(|s| {
                (
                    format!("ioc/{COMMUNE}/sensor/{}/telemetry", sensor_id(s)),
                    s / PER_GROUP,
                )
            })
            .collect();
        Ok(Publisher {
            conn,
            sensors,
            next: 0,
            seq: 0,
            last_ts: vec![0; GROUPS],
        })
    }

    async fn publish_one(&mut self, last: &LastProbe) -> Result<()> {
        let (topic, group) = &self.sensors[self.next];
        let group = *group;
        self.next = (self.next + 1) % self.sensors.len();
        self.seq += 1;
        let ts = epoch_ms().max(self.last_ts[group] + 1);
        self.last_ts[group] = ts;
        let probe = now_us();
        let payload = format!(r#"{{"ts":{ts},"seq":{},"probe_us":{probe}}}"#, self.seq);
        self.conn.publish(topic, payload).await?;
        last.0[group].store(probe, Ordering::Relaxed);
        Ok(())
    }

    /// Publish at `rate`/s for `secs`; returns how many were published.
    async fn run(&mut self, rate: f64, secs: f64, last: &LastProbe) -> Result<u64> {
        let t0 = Instant::now();
        let mut sent = 0u64;
        loop {
            let el = t0.elapsed().as_secs_f64();
            if el >= secs {
                break;
            }
            let target = (rate * el) as u64;
            while sent < target {
                self.publish_one(last).await?;
                sent += 1;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        Ok(sent)
    }
}

struct Publishers {
    pubs: Vec<Publisher>,
    last: LastProbe,
}

impl Publishers {
    async fn connect(port: u16, tag: &str) -> Result<Publishers> {
        let n: usize = env_num("BENCH_PUBLISHERS", 4)?;
        let n = n.clamp(1, GROUPS);
        let mut pubs = Vec::new();
        for i in 0..n {
            pubs.push(Publisher::connect(i, n, port, tag).await?);
        }
        Ok(Publishers {
            pubs,
            last: LastProbe((0..GROUPS).map(|_| AtomicU64::new(0)).collect()),
        })
    }

    /// Publish `rate` events/s in all for `secs`. Returns the count.
    async fn run(&mut self, rate: u64, secs: f64) -> Result<u64> {
        let per = rate as f64 / self.pubs.len() as f64;
        let last = &self.last;
        let results =
            futures_util::future::join_all(self.pubs.iter_mut().map(|p| p.run(per, secs, last)))
                .await;
        let mut total = 0;
        for r in results {
            total += r?;
        }
        Ok(total)
    }

    fn last_probes(&self) -> Vec<u64> {
        self.last
            .0
            .iter()
            .map(|a| a.load(Ordering::Relaxed))
            .collect()
    }

    fn check(&self) -> Result<()> {
        for (i, p) in self.pubs.iter().enumerate() {
            p.conn.check(&format!("publisher {i}"))?;
        }
        Ok(())
    }

    async fn stop(self) {
        futures_util::future::join_all(self.pubs.into_iter().map(|p| p.conn.stop())).await;
    }
}

// ---------------------------------------------------------------- clients

/// The measurement window: probes published in `[start, end]` are counted.
struct Window {
    start: AtomicU64,
    end: AtomicU64,
}

impl Window {
    fn closed() -> Window {
        Window {
            start: AtomicU64::new(u64::MAX),
            end: AtomicU64::new(u64::MAX),
        }
    }

    fn contains(&self, probe: u64) -> bool {
        probe >= self.start.load(Ordering::Relaxed) && probe <= self.end.load(Ordering::Relaxed)
    }
}

/// What one client saw.
struct ClientStats {
    hist: Mutex<Histogram<u64>>,
    /// Values (items, frames or messages) whose probe is in the window.
    in_window: AtomicU64,
    frames: AtomicU64,
    items: AtomicU64,
    bytes: AtomicU64,
    /// Snapshots with `"resync":true` (commune-ioc, slow clients).
    resyncs: AtomicU64,
    /// The last probe seen per group.
    last: Mutex<Vec<u64>>,
    /// Subscribed (commune-ioc: snapshot received) or connected.
    ready: AtomicBool,
    closed: Mutex<Option<String>>,
}

impl ClientStats {
    fn new() -> ClientStats {
        ClientStats {
            hist: Mutex::new(new_hist()),
            in_window: AtomicU64::new(0),
            frames: AtomicU64::new(0),
            items: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            resyncs: AtomicU64::new(0),
            last: Mutex::new(vec![0; GROUPS]),
            ready: AtomicBool::new(false),
            closed: Mutex::new(None),
        }
    }

    fn reset(&self) {
        self.hist.lock().unwrap().reset();
        self.in_window.store(0, Ordering::SeqCst);
    }

    /// One value received now for `group` with probe `probe`.
    fn value(&self, window: &Window, group: usize, probe: u64, now: u64) {
        self.items.fetch_add(1, Ordering::Relaxed);
        if let Some(slot) = self.last.lock().unwrap().get_mut(group) {
            *slot = probe;
        }
        if window.contains(probe) {
            self.in_window.fetch_add(1, Ordering::Relaxed);
            let _ = self
                .hist
                .lock()
                .unwrap()
                .record(now.saturating_sub(probe).max(1));
        }
    }

    fn close(&self, why: String) {
        let mut c = self.closed.lock().unwrap();
        if c.is_none() {
            *c = Some(why);
        }
    }
}

/// `latest_017` (and `indicator:latest_017:today:commune`) → group 16.
fn group_of_key(key: &str) -> Option<usize> {
    let rest = key.split("latest_").nth(1)?;
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    let n: usize = digits.parse().ok()?;
    (1..=GROUPS).contains(&n).then(|| n - 1)
}

#[derive(Deserialize)]
struct IocFrame {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    items: Vec<IocItem>,
    #[serde(default)]
    resync: bool,
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

#[derive(Deserialize)]
struct IocItem {
    key: String,
    #[serde(default)]
    value: Option<IocValue>,
}

#[derive(Deserialize)]
struct IocValue {
    #[serde(default)]
    value: Option<f64>,
}

#[derive(Deserialize)]
struct NodeRedFrame {
    key: String,
    probe_us: f64,
}

#[derive(Deserialize)]
struct Probe {
    probe_us: f64,
}

#[derive(Debug, Clone, Copy)]
struct ClientOpts {
    system: System,
    /// Read about 1 KB/s from a small socket buffer.
    slow: bool,
    /// commune-ioc: subscribe to every group (`true`) or to 3 keys (idle).
    all_keys: bool,
}

fn subscribe_command(all_keys: bool, n: usize) -> String {
    if all_keys {
        r#"{"type":"subscribe","id":"b","keys":["indicator:*:today"],"villages":["commune"]}"#
            .to_string()
    } else {
        let keys: Vec<String> = (0..3)
            .map(|k| {
                format!(
                    "\"indicator:latest_{:03}:today:commune\"",
                    (n * 3 + k) % GROUPS + 1
                )
            })
            .collect();
        format!(
            r#"{{"type":"subscribe","id":"b","keys":[{}]}}"#,
            keys.join(",")
        )
    }
}

/// One WebSocket dashboard client (commune-ioc or Node-RED).
async fn ws_client(
    url: String,
    n: usize,
    opts: ClientOpts,
    stats: Arc<ClientStats>,
    window: Arc<Window>,
) {
    if let Err(e) = ws_client_inner(&url, n, opts, &stats, &window).await {
        stats.close(format!("{e:#}"));
    } else {
        stats.close("closed by the server".into());
    }
}

async fn ws_client_inner(
    url: &str,
    n: usize,
    opts: ClientOpts,
    stats: &ClientStats,
    window: &Window,
) -> Result<()> {
    let addr: SocketAddr = url
        .trim_start_matches("ws://")
        .split('/')
        .next()
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| anyhow!("bad url {url}"))?;
    let socket = tokio::net::TcpSocket::new_v4()?;
    let mut config = WebSocketConfig::default();
    if opts.slow {
        socket.set_recv_buffer_size(4096)?;
        config = config.read_buffer_size(4096);
    }
    let stream = socket.connect(addr).await.context("connect")?;
    stream.set_nodelay(true)?;
    let (mut ws, _) = tokio_tungstenite::client_async_with_config(url, stream, Some(config))
        .await
        .context("WebSocket handshake")?;
    if opts.system == System::Ioc {
        ws.send(WsMessage::text(subscribe_command(opts.all_keys, n)))
            .await
            .context("sending subscribe")?;
    } else {
        stats.ready.store(true, Ordering::SeqCst);
    }
    while let Some(msg) = ws.next().await {
        let msg = msg.context("reading")?;
        let now = now_us();
        let text = match &msg {
            WsMessage::Text(t) => t.as_str(),
            WsMessage::Close(c) => bail!("closed by the server: {c:?}"),
            _ => continue,
        };
        stats.frames.fetch_add(1, Ordering::Relaxed);
        stats.bytes.fetch_add(text.len() as u64, Ordering::Relaxed);
        match opts.system {
            System::Ioc => {
                let f: IocFrame = serde_json::from_str(text)
                    .with_context(|| format!("unexpected frame {text:.200}"))?;
                match f.kind.as_str() {
                    "snapshot" => {
                        if f.resync {
                            stats.resyncs.fetch_add(1, Ordering::Relaxed);
                        }
                        let mut last = stats.last.lock().unwrap();
                        for it in &f.items {
                            if let (Some(g), Some(v)) = (
                                group_of_key(&it.key),
                                it.value.as_ref().and_then(|v| v.value),
                            ) {
                                last[g] = v as u64;
                            }
                        }
                        drop(last);
                        stats.ready.store(true, Ordering::SeqCst);
                    }
                    "update" => {
                        for it in &f.items {
                            if let (Some(g), Some(v)) = (
                                group_of_key(&it.key),
                                it.value.as_ref().and_then(|v| v.value),
                            ) {
                                stats.value(window, g, v as u64, now);
                            }
                        }
                    }
                    "error" => bail!(
                        "error frame {}: {}",
                        f.code.unwrap_or_default(),
                        f.message.unwrap_or_default()
                    ),
                    _ => {}
                }
            }
            System::NodeRed => {
                let f: NodeRedFrame = serde_json::from_str(text)
                    .with_context(|| format!("unexpected frame {text:.200}"))?;
                if let Some(g) = group_of_key(&f.key) {
                    stats.value(window, g, f.probe_us as u64, now);
                }
            }
            System::Broker => unreachable!("the broker has no WebSocket clients"),
        }
        if opts.slow {
            // About 1 KB/s: a millisecond per byte read.
            tokio::time::sleep(Duration::from_millis(text.len() as u64)).await;
        }
    }
    Ok(())
}

/// The bare broker's client: an MQTT subscriber that only timestamps.
async fn mqtt_client(port: u16, n: usize, stats: Arc<ClientStats>, window: Arc<Window>) {
    let mut opts = MqttOptions::new(format!("bench-live-sub-{n}"), "127.0.0.1", port);
    opts.set_keep_alive(Duration::from_secs(30))
        .set_clean_session(true)
        .set_max_packet_size(1 << 20, 1 << 20);
    let (client, mut el) = AsyncClient::new(opts, 100);
    loop {
        match el.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                let c = client.clone();
                tokio::spawn(async move {
                    let _ = c
                        .subscribe(
                            format!("ioc/{COMMUNE}/sensor/+/telemetry"),
                            QoS::AtLeastOnce,
                        )
                        .await;
                });
            }
            Ok(Event::Incoming(Packet::SubAck(_))) => stats.ready.store(true, Ordering::SeqCst),
            Ok(Event::Incoming(Packet::Publish(p))) => {
                let now = now_us();
                stats.frames.fetch_add(1, Ordering::Relaxed);
                stats
                    .bytes
                    .fetch_add(p.payload.len() as u64, Ordering::Relaxed);
                let group = p
                    .topic
                    .split('/')
                    .nth(3)
                    .and_then(|id| id.get(1..4))
                    .and_then(|g| g.parse::<usize>().ok())
                    .map(|g| g - 1);
                if let (Ok(pr), Some(g)) = (serde_json::from_slice::<Probe>(&p.payload), group) {
                    stats.value(&window, g, pr.probe_us as u64, now);
                }
            }
            Ok(_) => {}
            Err(e) => {
                stats.close(format!("MQTT: {e}"));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

struct Clients {
    all: Vec<(Arc<ClientStats>, bool)>,
    tasks: Vec<JoinHandle<()>>,
    window: Arc<Window>,
}

impl Clients {
    fn new() -> Clients {
        Clients {
            all: Vec::new(),
            tasks: Vec::new(),
            window: Arc::new(Window::closed()),
        }
    }

    /// Open `count` clients (`slow` of them slow) and wait until all are
    /// ready, `concurrency` handshakes at a time.
    async fn open(
        &mut self,
        target: &Target,
        count: usize,
        slow: usize,
        all_keys: bool,
    ) -> Result<()> {
        let first = self.all.len();
        for i in 0..count {
            let n = first + i;
            let stats = Arc::new(ClientStats::new());
            let is_slow = i < slow;
            let task = match target {
                Target::Ws { url, system } => tokio::spawn(ws_client(
                    url.clone(),
                    n,
                    ClientOpts {
                        system: *system,
                        slow: is_slow,
                        all_keys,
                    },
                    stats.clone(),
                    self.window.clone(),
                )),
                Target::Mqtt { port } => {
                    tokio::spawn(mqtt_client(*port, n, stats.clone(), self.window.clone()))
                }
            };
            self.all.push((stats, is_slow));
            self.tasks.push(task);
            if i % 50 == 49 {
                // Let handshakes progress instead of queueing thousands.
                self.wait_ready(first, n + 1, Duration::from_secs(30))
                    .await?;
            }
        }
        self.wait_ready(first, self.all.len(), Duration::from_secs(60))
            .await
    }

    async fn wait_ready(&self, from: usize, to: usize, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let mut pending = 0;
            for (s, _) in &self.all[from..to] {
                if let Some(why) = s.closed.lock().unwrap().as_ref() {
                    bail!("a client failed before it was ready: {why}");
                }
                if !s.ready.load(Ordering::SeqCst) {
                    pending += 1;
                }
            }
            if pending == 0 {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "{pending} of {} clients not ready within {timeout:?}",
                    to - from
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn open_window(&self) {
        self.window.start.store(u64::MAX, Ordering::SeqCst);
        self.window.end.store(u64::MAX, Ordering::SeqCst);
        for (s, _) in &self.all {
            s.reset();
        }
        self.window.start.store(now_us(), Ordering::SeqCst);
    }

    fn close_window(&self) {
        self.window.end.store(now_us(), Ordering::SeqCst);
    }

    fn healthy(&self) -> impl Iterator<Item = &Arc<ClientStats>> {
        self.all.iter().filter(|(_, slow)| !slow).map(|(s, _)| s)
    }

    fn slow(&self) -> impl Iterator<Item = &Arc<ClientStats>> {
        self.all.iter().filter(|(_, slow)| *slow).map(|(s, _)| s)
    }

    fn in_window(&self) -> u64 {
        self.healthy()
            .map(|s| s.in_window.load(Ordering::Relaxed))
            .sum()
    }

    fn histogram(&self) -> Histogram<u64> {
        let mut h = new_hist();
        for s in self.healthy() {
            let _ = h.add(&*s.hist.lock().unwrap());
        }
        h
    }

    /// Healthy clients whose last value of every group is `want`.
    fn converged(&self, want: &[u64]) -> usize {
        self.healthy()
            .filter(|s| s.last.lock().unwrap().iter().zip(want).all(|(a, b)| a == b))
            .count()
    }

    /// Window end minus the newest probe of the slowest healthy client, ms.
    fn behind_ms(&self) -> f64 {
        let end = self.window.end.load(Ordering::SeqCst);
        let newest = self
            .healthy()
            .map(|s| s.last.lock().unwrap().iter().copied().max().unwrap_or(0))
            .min()
            .unwrap_or(0);
        end.saturating_sub(newest) as f64 / 1000.0
    }

    fn closed(&self) -> Vec<String> {
        self.all
            .iter()
            .filter_map(|(s, _)| s.closed.lock().unwrap().clone())
            .collect()
    }

    fn stop(self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

// ---------------------------------------------------------------- systems

enum Target {
    Ws { url: String, system: System },
    Mqtt { port: u16 },
}

/// A started system under test: mosquitto, maybe a server, and where the
/// clients connect.
struct Sut {
    system: System,
    broker: Proc,
    server: Option<Proc>,
    http: Option<Http>,
    target: Target,
    mqtt_port: u16,
}

impl Sut {
    /// The process whose CPU and memory are measured.
    fn pid(&self) -> u32 {
        self.server
            .as_ref()
            .map(|s| s.pid())
            .unwrap_or_else(|| self.broker.pid())
    }

    fn ensure_running(&mut self) -> Result<()> {
        self.broker.ensure_running()?;
        if let Some(s) = &mut self.server {
            s.ensure_running()?;
        }
        Ok(())
    }

    async fn steps(&self) -> Result<Option<u64>> {
        match &self.http {
            Some(h) => Ok(Some(h.scrape().await?.sum("ioc_live_steps_total") as u64)),
            None => Ok(None),
        }
    }

    async fn committed(&self) -> Result<Option<u64>> {
        match &self.http {
            Some(h) => Ok(Some(h.scrape().await?.committed())),
            None => Ok(None),
        }
    }

    fn stop(mut self) -> Result<()> {
        if let Some(s) = &mut self.server {
            s.terminate(Duration::from_secs(5))?;
        }
        self.broker.terminate(Duration::from_secs(2))?;
        Ok(())
    }
}

struct Env {
    mosquitto: PathBuf,
    dir: PathBuf,
    root: PathBuf,
    tck: f64,
    server_log: String,
    overrides: Vec<(String, String)>,
    node: Option<NodeRed>,
}

/// Node-RED, installed.
struct NodeRed {
    node: PathBuf,
    red_js: PathBuf,
    version: String,
}

fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Install Node-RED (pinned by benches/peers/node-red/package-lock.json)
/// into target/peers/node-red when it is missing or the lock changed.
fn install_node_red(root: &Path) -> Result<NodeRed> {
    let hint = "install Node.js 20 and npm (apt-get install -y nodejs npm), then rerun; \
                the harness installs Node-RED itself with `npm ci`";
    let node = which("node").ok_or_else(|| anyhow!("node not found in PATH: {hint}"))?;
    let npm = which("npm").ok_or_else(|| anyhow!("npm not found in PATH: {hint}"))?;
    let src = root.join("benches/peers/node-red");
    let dest = root.join("target/peers/node-red");
    let red_js = dest.join("node_modules/node-red/red.js");
    let lock = std::fs::read(src.join("package-lock.json"))
        .with_context(|| format!("reading {}/package-lock.json", src.display()))?;
    let installed = std::fs::read(dest.join("package-lock.json")).ok();
    if !red_js.is_file() || installed.as_deref() != Some(&lock[..]) {
        println!("installing Node-RED into {} (npm ci)", dest.display());
        std::fs::create_dir_all(&dest)?;
        for f in ["package.json", "package-lock.json"] {
            std::fs::copy(src.join(f), dest.join(f))
                .with_context(|| format!("copying {f} to {}", dest.display()))?;
        }
        let status = Command::new(npm)
            .args(["ci", "--no-audit", "--no-fund", "--omit=dev"])
            .current_dir(&dest)
            .status()
            .context("running npm ci")?;
        if !status.success() || !red_js.is_file() {
            bail!(
                "npm ci in {} failed ({status}); the npm registry must be reachable. {hint}",
                dest.display()
            );
        }
    }
    let pkg: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dest.join("node_modules/node-red/package.json"))
            .context("reading node-red's package.json")?,
    )?;
    let node_version = Command::new(&node)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    Ok(NodeRed {
        node,
        red_js,
        version: format!(
            "Node-RED {} on Node.js {node_version}",
            pkg["version"].as_str().unwrap_or("?")
        ),
    })
}

impl Env {
    async fn start(&self, system: System, tag: &str) -> Result<Sut> {
        let (broker, mqtt_port) = start_mosquitto(&self.mosquitto, &self.dir, tag, 1000)?;
        match system {
            System::Broker => Ok(Sut {
                system,
                broker,
                server: None,
                http: None,
                target: Target::Mqtt { port: mqtt_port },
                mqtt_port,
            }),
            System::Ioc => {
                let store = self.dir.join(format!("store-{tag}"));
                let mut overrides = self.overrides.clone();
                overrides.push(("IOC__HTTP__LISTEN".into(), "127.0.0.1:0".into()));
                overrides.push(("IOC__STORE__PATH".into(), store.display().to_string()));
                let config = self.root.join("benches/peers/commune-ioc.toml");
                let (server, http, _ready) = start_backend(
                    &self.dir,
                    tag,
                    &config,
                    mqtt_port,
                    &self.server_log,
                    &overrides,
                )
                .await?;
                // The wall screen's way in: a kiosk token in the URL.
                let kiosk = http
                    .post_json(
                        "/api/auth/kiosk-tokens",
                        &serde_json::json!({"label": "bench"}),
                    )
                    .await?;
                let token = kiosk["token"]
                    .as_str()
                    .ok_or_else(|| anyhow!("no token in {kiosk}"))?;
                let url = format!(
                    "ws://{}/api/ws?token={token}",
                    http.base.trim_start_matches("http://")
                );
                Ok(Sut {
                    system,
                    broker,
                    server: Some(server),
                    http: Some(http),
                    target: Target::Ws {
                        url,
                        system: System::Ioc,
                    },
                    mqtt_port,
                })
            }
            System::NodeRed => {
                let nr = self
                    .node
                    .as_ref()
                    .ok_or_else(|| anyhow!("Node-RED is not installed"))?;
                let user_dir = self.dir.join(format!("node-red-{tag}"));
                std::fs::create_dir_all(&user_dir)?;
                for f in ["settings.js", "flows.json"] {
                    std::fs::copy(
                        self.root.join("benches/peers/node-red").join(f),
                        user_dir.join(f),
                    )
                    .with_context(|| format!("copying {f}"))?;
                }
                let port = free_port();
                let mut cmd = Command::new(&nr.node);
                cmd.arg(&nr.red_js)
                    .arg("--userDir")
                    .arg(&user_dir)
                    .arg("--settings")
                    .arg(user_dir.join("settings.js"))
                    .arg("--port")
                    .arg(port.to_string())
                    .env("BENCH_NR_PORT", port.to_string())
                    .env("BENCH_MQTT_PORT", mqtt_port.to_string())
                    .env("NODE_RED_ENABLE_PROJECTS", "false");
                let mut server = Proc::spawn(
                    "node-red",
                    cmd,
                    self.dir.join(format!("node-red-{tag}.log")),
                )?;
                let url = format!("ws://127.0.0.1:{port}/ws");
                let started = Instant::now();
                loop {
                    server.ensure_running()?;
                    if tokio_tungstenite::connect_async(url.as_str()).await.is_ok() {
                        break;
                    }
                    if started.elapsed() > Duration::from_secs(60) {
                        bail!(
                            "Node-RED did not answer on {url} within 60 s; log:\n{}",
                            log_tail(&server.log, 30)
                        );
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Ok(Sut {
                    system,
                    broker,
                    server: Some(server),
                    http: None,
                    target: Target::Ws {
                        url,
                        system: System::NodeRed,
                    },
                    mqtt_port,
                })
            }
        }
    }
}

// ---------------------------------------------------------------- measuring

/// Figures of one measured window.
#[derive(Debug, Clone, Default)]
struct Figures {
    system: &'static str,
    scenario: String,
    rate: u64,
    clients: usize,
    secs: f64,
    published: u64,
    /// commune-ioc: committed; else average per client.
    delivered: f64,
    /// Values all healthy clients received in the window.
    items: u64,
    p50_us: u64,
    p99_us: u64,
    p999_us: u64,
    max_us: u64,
    samples: u64,
    cpu_s: f64,
    broker_cpu_s: f64,
    peak_rss_kib: u64,
    loss: f64,
    converged: usize,
    healthy: usize,
    closed: usize,
    /// At the end of the drain: how far (ms) the slowest healthy client's
    /// newest value lags behind the last publish of the window.
    behind_ms: f64,
    /// CPU-seconds of this harness (publishers + clients) in the window.
    harness_cpu_s: f64,
    /// Bytes all healthy clients received in the window and drain.
    bytes: u64,
    /// commune-ioc: hub steps (`ioc_live_steps_total`) in the window.
    steps: Option<u64>,
    load: String,
    note: String,
}

impl Figures {
    fn delivered_per_s(&self) -> f64 {
        self.delivered / self.secs
    }

    fn cpu_per_million(&self) -> f64 {
        if self.published == 0 {
            return 0.0;
        }
        self.cpu_s / self.published as f64 * 1e6
    }

    fn held(&self) -> bool {
        self.samples > 0
            && self.p99_us <= KNEE_P99_US
            && self.loss <= KNEE_LOSS
            && self.published as f64 >= 0.95 * self.rate as f64 * self.secs
    }

    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "system": self.system,
            "scenario": self.scenario,
            "offered_per_s": self.rate,
            "clients": self.clients,
            "secs": (self.secs * 100.0).round() / 100.0,
            "published": self.published,
            "delivered_events_per_s": self.delivered_per_s().round(),
            "client_values_per_s": (self.items as f64 / self.secs).round(),
            "p50_ms": self.p50_us as f64 / 1000.0,
            "p99_ms": self.p99_us as f64 / 1000.0,
            "p999_ms": self.p999_us as f64 / 1000.0,
            "max_ms": self.max_us as f64 / 1000.0,
            "latency_samples": self.samples,
            "cpu_s_per_million": (self.cpu_per_million() * 100.0).round() / 100.0,
            "sut_cpu_s": (self.cpu_s * 100.0).round() / 100.0,
            "broker_cpu_s": (self.broker_cpu_s * 100.0).round() / 100.0,
            "peak_rss_mib": (self.peak_rss_kib as f64 / 1024.0 * 10.0).round() / 10.0,
            "loss": self.loss,
            "converged_clients": self.converged,
            "healthy_clients": self.healthy,
            "closed_clients": self.closed,
            "behind_ms_at_drain_end": self.behind_ms,
            "harness_cpu_s": (self.harness_cpu_s * 100.0).round() / 100.0,
            "client_mib_per_s": (self.bytes as f64 / self.secs / 1048576.0 * 100.0).round() / 100.0,
            "server_steps_per_s": self.steps.map(|n| (n as f64 / self.secs).round()),
            "load_average_after": self.load,
            "note": self.note,
        })
    }
}

fn ms(us: u64) -> String {
    let v = us as f64 / 1000.0;
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn kilo(v: f64) -> String {
    if v >= 10_000.0 {
        format!("{:.0}k", v / 1000.0)
    } else if v >= 1000.0 {
        format!("{:.1}k", v / 1000.0)
    } else {
        format!("{v:.0}")
    }
}

const TABLE_HEAD: &str = "  system        scenario        offered/s  clients  delivered ev/s  client values/s    p50 ms    p99 ms  p99.9 ms    max ms  CPU-s/M  peak RSS  loss     converged";

fn table_row(f: &Figures) -> String {
    let lat = |us: u64| {
        if f.samples == 0 {
            "—".to_string()
        } else {
            ms(us)
        }
    };
    let mut note = f.note.clone();
    if f.behind_ms > 50.0 {
        note.push_str(&format!(
            " slowest client {:.1} s behind at drain end",
            f.behind_ms / 1000.0
        ));
    }
    if let Some(n) = f.steps {
        note.push_str(&format!(" {:.0} steps/s", n as f64 / f.secs));
    }
    note.push_str(&format!(
        " harness {:.2} cores, clients {:.1} MiB/s, load {}",
        f.harness_cpu_s / f.secs,
        f.bytes as f64 / f.secs / 1048576.0,
        f.load
    ));
    if f.closed > 0 {
        note.push_str(&format!(" {} clients closed", f.closed));
    }
    format!(
        "  {:<13} {:<15} {:>9}  {:>7}  {:>14}  {:>15}  {:>8}  {:>8}  {:>8}  {:>8}  {:>7.1}  {:>6.1} MiB  {:<7} {}/{}{}",
        f.system,
        f.scenario,
        kilo(f.rate as f64),
        f.clients,
        kilo(f.delivered_per_s()),
        kilo(f.items as f64 / f.secs),
        lat(f.p50_us),
        lat(f.p99_us),
        lat(f.p999_us),
        lat(f.max_us),
        f.cpu_per_million(),
        f.peak_rss_kib as f64 / 1024.0,
        format!("{:.2}%", f.loss * 100.0),
        f.converged,
        f.healthy,
        if note.is_empty() {
            String::new()
        } else {
            format!("  {}", note.trim())
        }
    )
}

/// Publish at `rate` for `secs` with the window open, then drain, and
/// measure.
#[allow(clippy::too_many_arguments)]
async fn measure(
    env: &Env,
    sut: &mut Sut,
    pubs: &mut Publishers,
    clients: &Clients,
    scenario: &str,
    rate: u64,
    secs: f64,
    drain: f64,
) -> Result<Figures> {
    let pid = sut.pid();
    let broker_pid = sut.broker.pid();
    let committed0 = sut.committed().await?;
    let steps0 = sut.steps().await?;
    let bytes0: u64 = clients
        .healthy()
        .map(|s| s.bytes.load(Ordering::Relaxed))
        .sum();
    let self0 = cpu_ticks("self")?;
    let cpu0 = cpu_ticks(&pid.to_string())?;
    let bcpu0 = cpu_ticks(&broker_pid.to_string())?;
    clients.open_window();
    let t0 = Instant::now();
    let published = pubs.run(rate, secs).await?;
    let window_secs = t0.elapsed().as_secs_f64();
    clients.close_window();
    pubs.check()?;
    sut.ensure_running()?;
    // Drain: wait until every event is accounted for (or the drain ends).
    let want = pubs.last_probes();
    let healthy = clients.healthy().count();
    let drain_end = Instant::now() + Duration::from_secs_f64(drain);
    let mut committed = 0;
    loop {
        let done_clients = match sut.system {
            System::Ioc => clients.converged(&want) == healthy,
            _ => clients.in_window() >= published * healthy as u64,
        };
        if let Some(c0) = committed0 {
            committed = sut.committed().await?.unwrap_or(0) - c0;
        }
        let done_server = committed0.is_none() || committed >= published;
        if (done_clients && done_server) || Instant::now() > drain_end {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let cpu_s = (cpu_ticks(&pid.to_string())? - cpu0) as f64 / env.tck;
    let broker_cpu_s = (cpu_ticks(&broker_pid.to_string())? - bcpu0) as f64 / env.tck;
    let harness_cpu_s = (cpu_ticks("self")? - self0) as f64 / env.tck;
    let steps = match (steps0, sut.steps().await?) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    let bytes: u64 = clients
        .healthy()
        .map(|s| s.bytes.load(Ordering::Relaxed))
        .sum::<u64>()
        - bytes0;
    let h = clients.histogram();
    let in_window = clients.in_window();
    let (delivered, loss) = match sut.system {
        System::Ioc => (
            committed as f64,
            1.0 - (committed as f64 / published.max(1) as f64).min(1.0),
        ),
        _ => {
            let per = in_window as f64 / healthy.max(1) as f64;
            (per, 1.0 - (per / published.max(1) as f64).min(1.0))
        }
    };
    Ok(Figures {
        system: sut.system.name(),
        scenario: scenario.to_string(),
        rate,
        clients: clients.all.len(),
        secs: window_secs,
        published,
        delivered,
        items: in_window,
        p50_us: h.value_at_quantile(0.50),
        p99_us: h.value_at_quantile(0.99),
        p999_us: h.value_at_quantile(0.999),
        max_us: h.max(),
        samples: h.len(),
        cpu_s,
        broker_cpu_s,
        peak_rss_kib: peak_rss_kib(pid)?,
        loss,
        converged: clients.converged(&want),
        behind_ms: clients.behind_ms(),
        harness_cpu_s,
        bytes,
        steps,
        load: load_average(),
        healthy,
        closed: clients.closed().len(),
        note: String::new(),
    })
}

/// Start a system, open clients, warm up until values arrive.
async fn prepare(
    env: &Env,
    system: System,
    tag: &str,
    clients_n: usize,
    slow: usize,
    warmup_rate: u64,
    warmup: f64,
) -> Result<(Sut, Publishers, Clients)> {
    let mut sut = env.start(system, tag).await?;
    let mut pubs = Publishers::connect(sut.mqtt_port, tag).await?;
    let mut clients = Clients::new();
    let n = if system == System::Broker {
        1
    } else {
        clients_n
    };
    clients.open(&sut.target, n, slow, true).await?;
    // Warm up until some value reaches every healthy client (Node-RED
    // subscribes to MQTT some time after its HTTP port answers).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        pubs.run(warmup_rate.min(2_000), 0.5).await?;
        sut.ensure_running()?;
        if clients
            .healthy()
            .all(|s| s.items.load(Ordering::Relaxed) > 0)
        {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "{}: no value reached every client within 60 s of publishing ({} of {} clients got one)",
                system.name(),
                clients
                    .healthy()
                    .filter(|s| s.items.load(Ordering::Relaxed) > 0)
                    .count(),
                clients.healthy().count()
            );
        }
    }
    pubs.run(warmup_rate, warmup).await?;
    Ok((sut, pubs, clients))
}

async fn teardown(sut: Sut, pubs: Publishers, clients: Clients) -> Result<()> {
    clients.stop();
    pubs.stop().await;
    sut.stop()
}

struct Outcome {
    figures: Vec<Figures>,
    idle: Vec<(System, usize, f64, f64)>,
    knee: Vec<(System, Option<Figures>, String)>,
    slow: Vec<(System, String)>,
}

async fn run_scenario(
    env: &Env,
    p: &Profile,
    system: System,
    scenario: Scenario,
    out: &mut Outcome,
) -> Result<()> {
    let tag = format!("{}-{}", system.name(), scenario.name());
    match scenario {
        Scenario::Steady | Scenario::Fanout => {
            let (rate, n, secs) = if scenario == Scenario::Steady {
                (p.steady_rate, p.steady_clients, p.steady_secs)
            } else {
                (p.fanout_rate, p.fanout_clients, p.fanout_secs)
            };
            let (mut sut, mut pubs, clients) =
                prepare(env, system, &tag, n, 0, rate, p.warmup).await?;
            let f = measure(
                env,
                &mut sut,
                &mut pubs,
                &clients,
                scenario.name(),
                rate,
                secs,
                p.drain,
            )
            .await;
            teardown(sut, pubs, clients).await?;
            let f = f?;
            println!("{}", table_row(&f));
            out.figures.push(f);
        }
        Scenario::Slow => {
            let (mut sut, mut pubs, clients) = prepare(
                env,
                system,
                &tag,
                p.slow_clients,
                if system == System::Broker {
                    0
                } else {
                    p.slow_slow
                },
                p.slow_rate,
                p.warmup,
            )
            .await?;
            let f = measure(
                env,
                &mut sut,
                &mut pubs,
                &clients,
                "slow",
                p.slow_rate,
                p.slow_secs,
                p.drain,
            )
            .await;
            let mut f = match f {
                Ok(f) => f,
                Err(e) => {
                    teardown(sut, pubs, clients).await?;
                    return Err(e);
                }
            };
            let slow: Vec<_> = clients.slow().collect();
            let bytes: u64 = slow.iter().map(|s| s.bytes.load(Ordering::Relaxed)).sum();
            let resyncs: u64 = slow.iter().map(|s| s.resyncs.load(Ordering::Relaxed)).sum();
            let closed = slow
                .iter()
                .filter(|s| s.closed.lock().unwrap().is_some())
                .count();
            let why: Vec<String> = slow
                .iter()
                .filter_map(|s| s.closed.lock().unwrap().clone())
                .take(1)
                .collect();
            let secs = p.warmup + f.secs + p.drain;
            let line = if slow.is_empty() {
                "no slow clients (the bare broker has one subscriber)".to_string()
            } else {
                format!(
                    "{} slow clients read {:.0} B/s each on average; {resyncs} resync snapshots; {closed} closed by the server{}; SUT RSS now {:.1} MiB",
                    slow.len(),
                    bytes as f64 / slow.len() as f64 / secs,
                    why.first().map(|w| format!(" ({w})")).unwrap_or_default(),
                    rss_kib(sut.pid()).unwrap_or(0) as f64 / 1024.0
                )
            };
            f.note = format!("healthy {} clients", f.healthy);
            teardown(sut, pubs, clients).await?;
            println!("{}", table_row(&f));
            println!("    {line}");
            out.slow.push((system, line));
            out.figures.push(f);
        }
        Scenario::Ramp => {
            let (mut sut, mut pubs, clients) =
                prepare(env, system, &tag, p.ramp_clients, 0, p.ramp_start, p.warmup).await?;
            let mut rate = p.ramp_start;
            let mut best: Option<Figures> = None;
            let why;
            // A step that fails is run once more before the ramp stops: on a
            // shared 2-core machine one hiccup should not end the ramp.
            let mut retried = false;
            loop {
                let f = match measure(
                    env,
                    &mut sut,
                    &mut pubs,
                    &clients,
                    "ramp",
                    rate,
                    p.ramp_step_secs,
                    p.drain.min(3.0),
                )
                .await
                {
                    Ok(f) => f,
                    Err(e) => {
                        why = format!("failed at {rate}/s: {e:#}");
                        break;
                    }
                };
                let held = f.held();
                let mut f = f;
                f.note = match (held, retried) {
                    (true, _) => "held".into(),
                    (false, false) => "FAILED (once: run again)".into(),
                    (false, true) => "FAILED".into(),
                };
                println!("{}", table_row(&f));
                out.figures.push(f.clone());
                if !held && !retried {
                    retried = true;
                    continue;
                }
                if !held {
                    why = if f.samples == 0 {
                        format!("nothing measured at {rate}/s")
                    } else if f.p99_us > KNEE_P99_US {
                        format!("p99 {} ms > 100 ms at {rate}/s", ms(f.p99_us))
                    } else if f.loss > KNEE_LOSS {
                        format!("loss {:.2}% at {rate}/s", f.loss * 100.0)
                    } else {
                        format!(
                            "the harness published only {:.0}/s of {rate}/s",
                            f.published as f64 / f.secs
                        )
                    };
                    break;
                }
                best = Some(f);
                retried = false;
                let next = (rate as f64 * p.ramp_factor).round() as u64;
                if next > p.ramp_max {
                    why = format!("stopped at the ramp's cap of {}/s", p.ramp_max);
                    break;
                }
                rate = next;
            }
            teardown(sut, pubs, clients).await?;
            out.knee.push((system, best, why));
        }
        Scenario::Idle => {
            if system == System::Broker {
                return Ok(());
            }
            let mut sut = env.start(system, &tag).await?;
            let mut clients = Clients::new();
            // One client first so that lazily built state exists.
            clients.open(&sut.target, 1, 0, false).await?;
            tokio::time::sleep(Duration::from_secs(1)).await;
            let before = rss_kib(sut.pid())?;
            let r = clients.open(&sut.target, p.idle_clients, 0, false).await;
            if let Err(e) = r {
                clients.stop();
                sut.stop()?;
                return Err(e);
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
            sut.ensure_running()?;
            let after = rss_kib(sut.pid())?;
            let open = clients.all.len() - clients.closed().len();
            let per = (after as f64 - before as f64) / p.idle_clients as f64;
            println!(
                "  {:<13} idle            {} idle clients ({} still open): VmRSS {:.1} → {:.1} MiB, {:.1} KiB per client",
                system.name(),
                p.idle_clients,
                open,
                before as f64 / 1024.0,
                after as f64 / 1024.0,
                per
            );
            out.idle
                .push((system, p.idle_clients, per, after as f64 / 1024.0));
            clients.stop();
            sut.stop()?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------- main

#[tokio::main]
async fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e:#}");
            std::process::exit(2);
        }
    };
    let Some(mosquitto) = find_mosquitto() else {
        eprintln!("live benchmark FAILED: mosquitto not found in /usr/sbin or PATH");
        eprintln!("install mosquitto: apt-get install -y mosquitto");
        std::process::exit(1);
    };
    if let Err(e) = run(args, mosquitto).await {
        eprintln!("live benchmark FAILED: {e:#}");
        std::process::exit(1);
    }
}

async fn run(args: Args, mosquitto: PathBuf) -> Result<()> {
    now_us();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let profile = Profile::new(args.quick, args.duration);
    let node = if args.systems.contains(&System::NodeRed) {
        Some(install_node_red(&root)?)
    } else {
        None
    };
    let keep = std::env::var("BENCH_KEEP").is_ok_and(|v| v == "1" || v == "true");
    let mut builder = tempfile::Builder::new();
    builder.prefix("ioc-bench-live-").disable_cleanup(keep);
    let dir = match std::env::var_os("BENCH_DIR") {
        Some(base) => builder.tempdir_in(base),
        None => builder.tempdir(),
    }
    .context("creating the benchmark's temp dir")?;
    let overrides: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| k.starts_with("IOC__") && k != "IOC__MQTT__PORT")
        .collect();
    let env = Env {
        mosquitto: mosquitto.clone(),
        dir: dir.path().to_path_buf(),
        root,
        tck: clock_ticks(),
        server_log: std::env::var("BENCH_SERVER_LOG").unwrap_or_else(|_| "warn".into()),
        overrides,
        node,
    };
    let load = load_average();
    let cmdline: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    println!();
    println!(
        "==================== live stream benchmark: publish → client latency ===================="
    );
    println!("command     {COMMAND} -- {}", cmdline.join(" "));
    println!(
        "machine     {} CPUs, load average {load} before the run",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );
    println!(
        "broker      {} (loopback, QoS 1 end to end)",
        mosquitto_version(&mosquitto)
    );
    println!(
        "commune-ioc {} with benches/peers/commune-ioc.toml",
        env!("CARGO_BIN_EXE_commune-ioc")
    );
    if let Some(nr) = &env.node {
        println!(
            "node-red    {} with benches/peers/node-red/flows.json",
            nr.version
        );
    }
    println!(
        "profile     {}: steady {}/s × {} clients × {} s; ramp from {}/s ×{} per {} s step, {} clients, until p99 > 100 ms or loss; fan-out {} clients at {}/s × {} s; slow {} clients ({} slow) at {}/s × {} s; idle {} clients",
        if args.quick { "quick" } else { "full" },
        profile.steady_rate, profile.steady_clients, profile.steady_secs,
        profile.ramp_start, profile.ramp_factor, profile.ramp_step_secs, profile.ramp_clients,
        profile.fanout_clients, profile.fanout_rate, profile.fanout_secs,
        profile.slow_clients, profile.slow_slow, profile.slow_rate, profile.slow_secs,
        profile.idle_clients
    );
    println!("traffic     {GROUPS} groups × {PER_GROUP} sensors; {} publishing connections; the broker is measured with 1 subscriber", env_num("BENCH_PUBLISHERS", 4usize)?);
    println!();
    println!("{TABLE_HEAD}");
    let mut out = Outcome {
        figures: Vec::new(),
        idle: Vec::new(),
        knee: Vec::new(),
        slow: Vec::new(),
    };
    let mut failures = Vec::new();
    for scenario in &args.scenarios {
        for system in &args.systems {
            if let Err(e) = run_scenario(&env, &profile, *system, *scenario, &mut out).await {
                let msg = format!("{} {}: {e:#}", system.name(), scenario.name());
                println!("  {msg}");
                failures.push(msg);
            }
        }
    }
    println!();
    for (system, best, why) in &out.knee {
        match best {
            Some(f) => println!(
                "  ramp {:<12} highest rate held: {}/s (p99 {} ms, {:.0} delivered ev/s, {:.1} CPU-s/M); then {why}",
                system.name(),
                f.rate,
                ms(f.p99_us),
                f.delivered_per_s(),
                f.cpu_per_million()
            ),
            None => println!("  ramp {:<12} no rate held: {why}", system.name()),
        }
    }
    let summary = serde_json::json!({
        "bench": "live",
        "command": format!("{COMMAND} -- {}", cmdline.join(" ")),
        "profile": if args.quick { "quick" } else { "full" },
        "load_average_before": load,
        "results": out.figures.iter().map(Figures::json).collect::<Vec<_>>(),
        "knee": out.knee.iter().map(|(s, f, why)| serde_json::json!({
            "system": s.name(),
            "highest_rate_held": f.as_ref().map(|f| f.rate),
            "p99_ms": f.as_ref().map(|f| f.p99_us as f64 / 1000.0),
            "stopped": why,
        })).collect::<Vec<_>>(),
        "idle": out.idle.iter().map(|(s, n, per, mib)| serde_json::json!({
            "system": s.name(), "clients": n, "kib_per_client": (per * 10.0).round() / 10.0, "rss_mib": (mib * 10.0).round() / 10.0,
        })).collect::<Vec<_>>(),
        "slow": out.slow.iter().map(|(s, l)| serde_json::json!({"system": s.name(), "slow_clients": l})).collect::<Vec<_>>(),
        "failures": failures,
    });
    println!();
    println!("BENCH_JSON {summary}");
    if keep {
        println!("kept {}", dir.path().display());
    }
    if !failures.is_empty() {
        bail!(
            "{} run(s) failed:\n  - {}",
            failures.len(),
            failures.join("\n  - ")
        );
    }
    Ok(())
}
