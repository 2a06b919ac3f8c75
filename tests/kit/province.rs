//! The province tier's test kit (docs/PROVINCE.md §6):
//!
//! - site configs for N communes (`xa-001` …, Vietnamese names, villages
//!   with coordinates, devices, indicators with targets), as a commune's
//!   own config ([`commune_toml`]) and as a province's site file
//!   ([`site_toml`], with `[report] public_key`);
//! - [`SimCommune`]: a commune that publishes its journal straight into
//!   JetStream exactly as a commune's uplink does (the library's
//!   `uplink::wire`), realistic events the site's indicators count,
//!   gap-free seqs, with a gap or a duplicate on demand;
//! - [`Province`]: the real `commune-ioc serve --config PROCESS.toml
//!   --sites DIR` (port file, kill -9, restart on the same store and port)
//!   and its JSON routes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use async_nats::jetstream;
use serde_json::{json, Value};

use commune_ioc::journal::seq::{Content, DeadLetterRow, Entry, EventRow};
use commune_ioc::uplink::wire;

use super::backend::{wait_port_file, BINARY};
use super::proc::{free_port, log_tail, Proc};

/// Province id and name used by the kit.
pub const PROVINCE_ID: &str = "lai-chau";
pub const PROVINCE_NAME: &str = "Tỉnh Lai Châu";
/// The stream and subject prefix (the uplink's defaults).
pub const STREAM: &str = "IOC_JOURNAL";
pub const PREFIX: &str = "ioc";

// ---------------------------------------------------------------------------
// Site configs
// ---------------------------------------------------------------------------

const COMMUNE_NAMES: &[&str] = &[
    "Bình Lư",
    "Phong Thổ",
    "Sìn Hồ",
    "Tam Đường",
    "Mường Tè",
    "Than Uyên",
    "Tân Uyên",
    "Nậm Nhùn",
    "Bản Bo",
    "Khun Há",
    "Nà Tăm",
    "Hồ Thầu",
    "Dào San",
    "Sì Lở Lầu",
    "Mù Cả",
    "Tà Tổng",
    "Pa Ủ",
    "Thu Lũm",
    "Bum Nưa",
    "Nậm Hàng",
    "Lê Lợi",
    "Pa Tần",
    "Hua Bum",
    "Phìn Hồ",
    "Tả Lèng",
    "Giang Ma",
    "Hồng Thu",
    "Sơn Bình",
    "Mường Khoa",
    "Pắc Ta",
    "Mường Kim",
    "Khoen On",
    "Tà Hừa",
    "Phúc Than",
    "Nậm Sỏ",
    "Trung Đồng",
    "Tủa Sín Chải",
    "Lùng Thàng",
];

const VILLAGE_NAMES: &[&str] = &[
    "Bản Nà Đa",
    "Thôn Tân Bình",
    "Bản Hưng Bình",
    "Bản Phiêng Phát",
    "Bản Sì Choang",
    "Bản Nậm Cười",
    "Bản Mường Mô",
    "Thôn Đoàn Kết",
];

/// One commune's site, as the kit generates it.
#[derive(Debug, Clone)]
pub struct SiteSpec {
    /// `xa-001` …
    pub id: String,
    /// `Xã Bình Lư` … (a number after the name from the 39th on).
    pub name: String,
    pub villages: Vec<VillageSpec>,
}

/// A village of a generated site.
#[derive(Debug, Clone)]
pub struct VillageSpec {
    pub id: String,
    pub name: String,
    /// Latitude and longitude, for the map (not every village has them).
    pub pos: Option<(f64, f64)>,
}

impl SiteSpec {
    /// The `i`th commune (0-based): `xa-{i+1:03}`.
    pub fn nth(i: usize) -> SiteSpec {
        let base = COMMUNE_NAMES[i % COMMUNE_NAMES.len()];
        let name = if i < COMMUNE_NAMES.len() {
            format!("Xã {base}")
        } else {
            format!("Xã {base} {}", i / COMMUNE_NAMES.len() + 1)
        };
        let villages = (0..3)
            .map(|v| {
                let vname = VILLAGE_NAMES[(i + v) % VILLAGE_NAMES.len()];
                // Lai Châu: about 22.0–22.8 N, 102.3–103.9 E; two villages
                // of three placed on the map.
                let pos = (v < 2).then(|| {
                    (
                        22.0 + (i as f64 * 0.0071 + v as f64 * 0.013) % 0.8,
                        102.3 + (i as f64 * 0.0137 + v as f64 * 0.011) % 1.6,
                    )
                });
                VillageSpec {
                    id: format!("ban-{}", v + 1),
                    name: vname.to_string(),
                    pos,
                }
            })
            .collect();
        SiteSpec {
            id: format!("xa-{:03}", i + 1),
            name,
            villages,
        }
    }

    /// The first `n` communes.
    pub fn many(n: usize) -> Vec<SiteSpec> {
        (0..n).map(SiteSpec::nth).collect()
    }

    /// Its dossier topic.
    pub fn dossier_topic(&self) -> String {
        format!("ioc/{}/procedure/dossier", self.id)
    }
}

/// The site sections of a commune (`[commune]`, villages, devices,
/// indicators, `[report]`), with `[report] public_key` when given (the
/// province's site file).
pub fn site_toml(spec: &SiteSpec, public_key: Option<&str>) -> String {
    let mut t = format!(
        "[commune]\nid = \"{}\"\nname = \"{}\"\nprovince = \"Lai Châu\"\n\n",
        spec.id, spec.name
    );
    if let Some(k) = public_key {
        t += &format!("[report]\npublic_key = \"{k}\"\n\n");
    }
    for v in &spec.villages {
        t += &format!("[[village]]\nid = \"{}\"\nname = \"{}\"\n", v.id, v.name);
        if let Some((lat, lon)) = v.pos {
            t += &format!("lat = {lat:.5}\nlon = {lon:.5}\n");
        }
        t += "\n";
    }
    t += r#"[[camera]]
id = "cam-01"
name = "Camera cổng UBND xã"
village = "ban-1"
[[camera]]
id = "cam-02"
name = "Camera ngã ba chợ"
village = "ban-2"

[[speaker]]
id = "spk-01"
name = "Cụm loa trung tâm"
village = "ban-1"
[[speaker]]
id = "spk-02"
village = "ban-3"
kind = "fe"

[[sensor]]
id = "rain-01"
name = "Trạm đo mưa"
village = "ban-3"
kind = "rain"

[[indicator]]
id = "dossiers_received"
name = "Hồ sơ tiếp nhận"
kind = "count"
unit = "hồ sơ"
match = { source = "procedure", event = "received" }

[[indicator]]
id = "dossier_online_ratio"
name = "Tỷ lệ hồ sơ trực tuyến"
kind = "ratio"
unit = "%"
target = "> 90"
numerator = { source = "procedure", event = "received", where = { channel = "online" } }
denominator = { source = "procedure", event = "received" }

[[indicator]]
id = "dossiers_resolved"
name = "Hồ sơ đã giải quyết"
kind = "count"
unit = "hồ sơ"
match = { source = "procedure", event = "resolved" }

[[indicator]]
id = "dossier_on_time_ratio"
name = "Tỷ lệ giải quyết đúng và trước hạn"
kind = "ratio"
unit = "%"
target = "> 98"
numerator = { source = "procedure", event = "resolved", where = { outcome = ["early", "on_time"] } }
denominator = { source = "procedure", event = "resolved" }

[[indicator]]
id = "people_detected"
name = "Lượt người được phát hiện"
kind = "count"
unit = "người"
match = { source = "camera", event = ["detection"], where = { label = "person" }, sum = "count" }

[[indicator]]
id = "rain_latest"
name = "Lượng mưa"
kind = "latest"
unit = "mm"
field = "rain_mm"
match = { source = "sensor" }

[[indicator]]
id = "camera_online"
name = "Camera hoạt động"
kind = "availability"
unit = "%"
target = ">= 95"
device_class = "camera"

[[indicator]]
id = "dead_letters"
name = "Bản tin lỗi"
kind = "dead_letters"
unit = "bản tin"
target = "== 0"
"#;
    t
}

/// A commune box's own config: its site, `[mqtt]` to the broker on
/// `mqtt_port`, HTTP on a free port, its store, and `[uplink]` to `uplink_url`
/// (the province's stream, not created by the commune).
pub fn commune_toml(spec: &SiteSpec, mqtt_port: u16, store: &Path, uplink_url: &str) -> String {
    format!(
        "{}\n[mqtt]\nhost = \"127.0.0.1\"\nport = {mqtt_port}\nbackoff_initial_ms = 50\nbackoff_max_ms = 1000\n\n\
         [http]\nlisten = \"127.0.0.1:0\"\n\n[store]\npath = \"{}\"\n\n\
         [uplink]\nurl = \"{uplink_url}\"\ncreate_stream = false\nbackoff_initial_ms = 50\n\
         backoff_max_ms = 500\n",
        site_toml(spec, None),
        store.display()
    )
}

/// Write the province's site files (`{id}.toml`) into `dir`, each with its
/// public key when `keys` has one.
pub fn write_sites(dir: &Path, specs: &[SiteSpec], keys: &BTreeMap<String, String>) {
    std::fs::create_dir_all(dir).expect("create the sites dir");
    for s in specs {
        std::fs::write(
            dir.join(format!("{}.toml", s.id)),
            site_toml(s, keys.get(&s.id).map(String::as_str)),
        )
        .expect("write a site file");
    }
}

/// `commune-ioc report key --config CONFIG`: the commune's public report key
/// (base64), creating the key beside its store.
pub fn report_key(config: &Path) -> String {
    let out = Command::new(BINARY)
        .args(["report", "--config"])
        .arg(config)
        .arg("key")
        .env_remove("IOC_CONFIG")
        .output()
        .expect("run `commune-ioc report key`");
    assert!(
        out.status.success(),
        "`report key` failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

// ---------------------------------------------------------------------------
// A simulated commune
// ---------------------------------------------------------------------------

/// What a simulated commune's events make its indicators (month window,
/// commune scope), kept as it publishes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Expect {
    pub received: u64,
    pub online: u64,
    pub resolved: u64,
    pub on_time: u64,
    pub persons: u64,
    pub dead_letters: u64,
    pub rain_mm: Option<f64>,
}

/// A commune that publishes its journal into JetStream as its uplink
/// would: subject, headers and body from `commune_ioc::uplink::wire`, seqs
/// 1, 2, 3 … in order, every publish acknowledged (a failed one is sent
/// again from there, with the same `Nats-Msg-Id`, as the uplink does).
pub struct SimCommune {
    pub id: String,
    /// Every entry it made, by seq (skipped seqs have none).
    pub entries: BTreeMap<i64, Entry>,
    /// Seqs skipped on purpose (`skip`): gaps the province must report.
    pub gaps: Vec<(i64, i64)>,
    pub expect: Expect,
    next_seq: i64,
    row_id: i64,
    dossiers: u64,
    open_dossiers: Vec<u64>,
    cam_seq: u64,
}

impl SimCommune {
    pub fn new(id: &str) -> SimCommune {
        SimCommune {
            id: id.to_string(),
            entries: BTreeMap::new(),
            gaps: Vec::new(),
            expect: Expect::default(),
            next_seq: 1,
            row_id: 0,
            dossiers: 0,
            open_dossiers: Vec::new(),
            cam_seq: 0,
        }
    }

    /// The last seq given (0: none).
    pub fn head(&self) -> i64 {
        self.next_seq - 1
    }

    /// Entries the province should hold (head minus the skipped ones).
    pub fn held(&self) -> u64 {
        self.entries.len() as u64
    }

    /// The gaps as the overview shows them: `[{from, to}]`.
    pub fn gaps_json(&self) -> Value {
        Value::Array(
            self.gaps
                .iter()
                .map(|(f, t)| json!({"from": f, "to": t}))
                .collect(),
        )
    }

    /// Skip `n` seqs: they are never published (a gap).
    pub fn skip(&mut self, n: i64) {
        if n > 0 {
            self.gaps.push((self.next_seq, self.next_seq + n - 1));
            self.next_seq += n;
        }
    }

    /// The next entry: a realistic mix of dossiers received (mostly
    /// online) and resolved (mostly on time), camera person detections,
    /// rain telemetry, and now and then a dead letter.
    pub fn make(&mut self) -> Entry {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.row_id += 1;
        let now = chrono::Utc::now();
        let ms = now.timestamp_millis();
        let ts = now.to_rfc3339();
        let c = self.id.clone();
        let village = format!("ban-{}", seq % 3 + 1);
        let event = |source: &str,
                     kind: &str,
                     device: Option<&str>,
                     village: Option<&str>,
                     dedup: String,
                     device_seq: Option<i64>,
                     attrs: Value,
                     topic: String,
                     payload: Value| {
            Content::Event(EventRow {
                id: 0,
                dedup_key: dedup,
                source: source.into(),
                kind: kind.into(),
                device: device.map(str::to_string),
                village: village.map(str::to_string),
                ts_ms: ms,
                received_at_ms: ms,
                device_seq,
                attrs: attrs.to_string(),
                topic,
                payload: payload.to_string().into_bytes(),
            })
        };
        let (kind, mut content) = match seq % 10 {
            9 if seq % 50 == 49 => {
                self.expect.dead_letters += 1;
                let payload = format!("{{\"dossier_id\": \"HS-{seq}\", \"event\": ");
                (
                    "dead_letter",
                    Content::DeadLetter(DeadLetterRow {
                        id: 0,
                        dedup_key: format!("h:dead-{c}-{seq}"),
                        reason: "invalid_json".into(),
                        detail: "EOF while parsing a value at line 1 column 36".into(),
                        topic: format!("ioc/{c}/procedure/dossier"),
                        source: Some("procedure".into()),
                        device: None,
                        size: payload.len() as i64,
                        received_at_ms: ms,
                        payload: payload.into_bytes(),
                    }),
                )
            }
            0 | 3 | 6 | 9 => {
                self.dossiers += 1;
                let n = self.dossiers;
                let id = format!("000.00.21.H37-{}-{n:04}", c.replace('-', ""));
                let channel = if n % 8 == 0 { "direct" } else { "online" };
                self.expect.received += 1;
                if channel == "online" {
                    self.expect.online += 1;
                }
                self.open_dossiers.push(n);
                let payload = json!({"ts": ts, "dossier_id": id, "event": "received",
                                     "channel": channel, "village": village});
                (
                    "event",
                    event(
                        "procedure",
                        "received",
                        None,
                        Some(&village),
                        format!("dossier:{id}:received"),
                        None,
                        json!({"dossier_id": id, "channel": channel}),
                        format!("ioc/{c}/procedure/dossier"),
                        payload,
                    ),
                )
            }
            1 | 4 | 7 => {
                self.cam_seq += 1;
                let cam = if seq % 2 == 0 { "cam-01" } else { "cam-02" };
                let count = seq as u64 % 4 + 1;
                self.expect.persons += count;
                let payload = json!({"ts": ts, "seq": self.cam_seq, "kind": "detection",
                                     "label": "person", "count": count, "score": 0.87});
                (
                    "event",
                    event(
                        "camera",
                        "detection",
                        Some(cam),
                        Some(if cam == "cam-01" { "ban-1" } else { "ban-2" }),
                        format!("camera:{cam}:detection:{}:{ms}", self.cam_seq),
                        Some(self.cam_seq as i64),
                        json!({"label": "person", "count": count, "score": 0.87}),
                        format!("ioc/{c}/camera/{cam}/event"),
                        payload,
                    ),
                )
            }
            5 if !self.open_dossiers.is_empty() => {
                let n = self.open_dossiers.remove(0);
                let id = format!("000.00.21.H37-{}-{n:04}", c.replace('-', ""));
                let outcome = match n % 25 {
                    0 => "late",
                    1..=10 => "early",
                    _ => "on_time",
                };
                self.expect.resolved += 1;
                if outcome != "late" {
                    self.expect.on_time += 1;
                }
                let payload = json!({"ts": ts, "dossier_id": id, "event": "resolved",
                                     "outcome": outcome});
                (
                    "event",
                    event(
                        "procedure",
                        "resolved",
                        None,
                        None,
                        format!("dossier:{id}:resolved"),
                        None,
                        json!({"dossier_id": id, "outcome": outcome}),
                        format!("ioc/{c}/procedure/dossier"),
                        payload,
                    ),
                )
            }
            _ => {
                let rain = ((seq * 7) % 40) as f64 / 2.0;
                self.expect.rain_mm = Some(rain);
                let payload = json!({"ts": ts, "rain_mm": rain});
                (
                    "event",
                    event(
                        "sensor",
                        "telemetry",
                        Some("rain-01"),
                        Some("ban-3"),
                        format!("h:rain-{c}-{seq}"),
                        None,
                        json!({"rain_mm": rain}),
                        format!("ioc/{c}/sensor/rain-01/telemetry"),
                        payload,
                    ),
                )
            }
        };
        match &mut content {
            Content::Event(e) => e.id = self.row_id,
            Content::DeadLetter(d) => d.id = self.row_id,
            _ => {}
        }
        let entry = Entry {
            seq,
            kind: kind.into(),
            at_ms: ms,
            content,
        };
        self.entries.insert(seq, entry.clone());
        entry
    }

    /// An entry with a body of its own (a `report` or `warning` entry), the
    /// next seq.
    pub fn make_body(&mut self, kind: &str, body: Vec<u8>) -> Entry {
        let seq = self.next_seq;
        self.next_seq += 1;
        let entry = Entry {
            seq,
            kind: kind.into(),
            at_ms: chrono::Utc::now().timestamp_millis(),
            content: Content::Body(body),
        };
        self.entries.insert(seq, entry.clone());
        entry
    }

    /// Make and publish `n` entries (pipelined, every acknowledgement
    /// awaited).
    pub async fn publish(&mut self, js: &jetstream::Context, n: usize) -> Result<()> {
        let batch: Vec<Entry> = (0..n).map(|_| self.make()).collect();
        publish_entries(js, &self.id, &batch, true).await
    }

    /// Publish entries already made (e.g. by [`SimCommune::make_body`]).
    pub async fn publish_made(&self, js: &jetstream::Context, seqs: &[i64]) -> Result<()> {
        let batch: Vec<Entry> = seqs
            .iter()
            .map(|s| self.entries.get(s).cloned().expect("a made entry"))
            .collect();
        publish_entries(js, &self.id, &batch, true).await
    }

    /// Send entry `seq` again. With `with_msg_id` JetStream drops it as a
    /// duplicate (inside its window); without, it is stored a second time
    /// (a re-send beyond the window), and the province must drop it.
    pub async fn resend(&self, js: &jetstream::Context, seq: i64, with_msg_id: bool) -> Result<()> {
        let e = self
            .entries
            .get(&seq)
            .cloned()
            .with_context(|| format!("{} has no entry {seq}", self.id))?;
        publish_entries(js, &self.id, &[e], with_msg_id).await
    }
}

/// Publish `entries` of `commune` in order, pipelined; on a failed
/// acknowledgement, publish again from that entry (the same message id)
/// until a generous deadline.
pub async fn publish_entries(
    js: &jetstream::Context,
    commune: &str,
    entries: &[Entry],
    with_msg_id: bool,
) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut from = 0;
    let mut last_err = String::new();
    while from < entries.len() {
        if Instant::now() > deadline {
            bail!(
                "{commune}: entries from seq {} not acknowledged within 90 s: {last_err}",
                entries[from].seq
            );
        }
        let mut acks = Vec::new();
        let mut failed = false;
        for e in &entries[from..] {
            let headers = if with_msg_id {
                wire::headers(commune, e)
            } else {
                let mut h = async_nats::HeaderMap::new();
                h.insert("Ioc-Commune", commune);
                h.insert("Ioc-Seq", e.seq.to_string().as_str());
                h.insert("Ioc-Kind", e.kind.as_str());
                h.insert("Ioc-Schema", wire::SCHEMA.to_string().as_str());
                h.insert("Content-Type", "application/json");
                h
            };
            match js
                .publish_with_headers(
                    wire::subject(PREFIX, commune, &e.kind),
                    headers,
                    wire::body(commune, e, 1 << 20).into(),
                )
                .await
            {
                Ok(ack) => acks.push(ack),
                Err(err) => {
                    last_err = err.to_string();
                    failed = true;
                    break;
                }
            }
        }
        let mut done = 0;
        for ack in acks {
            match ack.await {
                Ok(_) => done += 1,
                Err(err) => {
                    last_err = err.to_string();
                    failed = true;
                    break;
                }
            }
        }
        from += done;
        if failed {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    Ok(())
}

/// Publish `per_commune` new entries for each commune, communes in turn.
pub async fn publish_round(
    js: &jetstream::Context,
    communes: &mut [SimCommune],
    per_commune: usize,
) -> Result<()> {
    for c in communes.iter_mut() {
        c.publish(js, per_commune).await?;
    }
    Ok(())
}

/// Publish `rounds` rounds of `per_commune` entries per commune in a task,
/// a round every `every` at most (a steady, realistic rate); the communes
/// come back when it is done.
pub fn spawn_fleet(
    js: jetstream::Context,
    mut communes: Vec<SimCommune>,
    rounds: usize,
    per_commune: usize,
    every: Duration,
) -> tokio::task::JoinHandle<Result<Vec<SimCommune>>> {
    tokio::spawn(async move {
        for _ in 0..rounds {
            let started = Instant::now();
            publish_round(&js, &mut communes, per_commune).await?;
            if let Some(rest) = every.checked_sub(started.elapsed()) {
                tokio::time::sleep(rest).await;
            }
        }
        Ok(communes)
    })
}

// ---------------------------------------------------------------------------
// The province process
// ---------------------------------------------------------------------------

/// What goes into a province instance's PROCESS.toml.
#[derive(Debug, Clone)]
pub struct ProvinceConf {
    /// Instance name (`a`, `b`): names its durable consumers.
    pub instance: String,
    /// Its HTTP port (fixed, so that peers know it before it starts).
    pub port: u16,
    /// The other instances' base URLs.
    pub peers: Vec<String>,
    /// The NATS servers, comma-separated.
    pub stream_url: String,
    pub create_stream: bool,
    pub replicas: usize,
    pub batch_max: usize,
    pub site_rate: u64,
    /// `[store] sync`: `normal` for tests, `full` (the default) for the
    /// benchmark.
    pub store_sync: String,
    /// `[province] report_due_days` (the binary's default when `None`).
    pub report_due_days: Option<u32>,
    /// Extra TOML appended (other sections).
    pub extra: String,
}

impl ProvinceConf {
    /// Instance `instance` on a free port, on the servers `stream_url`.
    pub fn new(instance: &str, stream_url: &str, replicas: usize) -> ProvinceConf {
        ProvinceConf {
            instance: instance.into(),
            port: free_port(),
            peers: Vec::new(),
            stream_url: stream_url.into(),
            create_stream: true,
            replicas,
            batch_max: 256,
            site_rate: 5000,
            store_sync: "normal".into(),
            report_due_days: None,
            extra: String::new(),
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The PROCESS.toml text, its store in `store`.
    pub fn toml(&self, store: &Path) -> String {
        let peers: Vec<String> = self.peers.iter().map(|p| format!("\"{p}\"")).collect();
        let due = self
            .report_due_days
            .map(|d| format!("report_due_days = {d}\n"))
            .unwrap_or_default();
        format!(
            "[http]\nlisten = \"127.0.0.1:{port}\"\n\n[auth]\npublic_read = true\n\n\
             [store]\npath = \"{store}\"\nsync = \"{sync}\"\n\n\
             [province]\nid = \"{PROVINCE_ID}\"\nname = \"{PROVINCE_NAME}\"\ninstance = \"{inst}\"\n\
             peers = [{peers}]\n{due}\n\
             [stream]\nurl = \"{url}\"\nstream = \"{STREAM}\"\nsubject_prefix = \"{PREFIX}\"\n\
             create_stream = {create}\nstream_replicas = {replicas}\nbatch_max = {batch}\n\
             site_rate = {rate}\nbackoff_initial_ms = 100\nbackoff_max_ms = 1000\n\n{extra}",
            port = self.port,
            store = store.display(),
            sync = self.store_sync,
            inst = self.instance,
            peers = peers.join(", "),
            url = self.stream_url,
            create = self.create_stream,
            replicas = self.replicas,
            batch = self.batch_max,
            rate = self.site_rate,
            extra = self.extra,
        )
    }
}

/// Wait for a condition on a province's JSON (see [`Province::wait`]).
pub type Check<'a> = &'a dyn Fn(&Value) -> Result<(), String>;

/// A province instance: the real binary in province mode, owned by a
/// test; killed (SIGKILL, its own PID) when dropped.
pub struct Province {
    pub conf: ProvinceConf,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// Its directory (PROCESS.toml, store, log, port file).
    pub dir: PathBuf,
    /// The site files.
    pub sites: PathBuf,
    proc: Option<Proc>,
    config: PathBuf,
    log: PathBuf,
    http: reqwest::Client,
}

impl Province {
    /// Write `dir/PROCESS.toml` (store `dir/store`) and start
    /// `serve --config PROCESS.toml --sites SITES --port-file …`; returns
    /// once the port file is written.
    pub fn start(dir: &Path, sites: &Path, conf: ProvinceConf) -> Province {
        std::fs::create_dir_all(dir).expect("create the province dir");
        let config = dir.join("PROCESS.toml");
        std::fs::write(&config, conf.toml(&dir.join("store"))).expect("write PROCESS.toml");
        let mut p = Province {
            url: conf.url(),
            conf,
            dir: dir.to_path_buf(),
            sites: sites.to_path_buf(),
            proc: None,
            config,
            log: dir.join("province.log"),
            http: reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(20))
                .build()
                .expect("http client"),
        };
        p.spawn();
        p
    }

    fn spawn(&mut self) {
        let port_file = self.dir.join("port");
        let _ = std::fs::remove_file(&port_file);
        let mut cmd = Command::new(BINARY);
        cmd.arg("serve")
            .arg("--config")
            .arg(&self.config)
            .arg("--sites")
            .arg(&self.sites)
            .arg("--port-file")
            .arg(&port_file)
            .env_remove("IOC_CONFIG")
            .env_remove("IOC_PORT_FILE")
            .env("RUST_LOG", "info");
        let mut proc = Proc::spawn("commune-ioc province", cmd, self.log.clone())
            .unwrap_or_else(|e| panic!("{e:#}"));
        wait_port_file(&mut proc, &port_file, Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("province {} did not start: {e:#}", self.conf.instance));
        self.proc = Some(proc);
    }

    /// Its log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last lines of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.log, lines)
    }

    /// Its process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.proc.as_ref().map(Proc::pid)
    }

    /// SIGKILL (its own PID), as a crash or power cut would.
    pub fn kill(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill();
        }
    }

    /// Start again on the same config, store and port.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Fail with its log when it has exited.
    pub fn ensure_running(&mut self) {
        if let Some(p) = self.proc.as_mut() {
            if let Err(e) = p.ensure_running() {
                panic!("{e:#}");
            }
        }
    }

    /// GET `path`: status and JSON (`null` when not JSON).
    pub async fn get(&self, path: &str) -> Result<(u16, Value)> {
        let r = self
            .http
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .with_context(|| format!("GET {}{path}", self.url))?;
        let status = r.status().as_u16();
        let text = r.text().await.unwrap_or_default();
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }

    /// `/api/province/overview` (panics unless 200).
    pub async fn overview(&self) -> Value {
        match self.get("/api/province/overview").await {
            Ok((200, v)) => v,
            other => panic!(
                "overview of {}: {other:?}; log:\n{}",
                self.conf.instance,
                self.log_tail(30)
            ),
        }
    }

    /// `/api/province/sites/{id}`: status and JSON.
    pub async fn site(&self, id: &str) -> (u16, Value) {
        self.get(&format!("/api/province/sites/{id}"))
            .await
            .unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// `/readyz`.
    pub async fn readyz(&self) -> (u16, Value) {
        self.get("/readyz")
            .await
            .unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// Wait until `/readyz` answers (any status: a province with a
    /// broken site may answer 503) with a `sites` object.
    pub async fn wait_up(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            self.ensure_running();
            if let Ok((_, v)) = self.get("/readyz").await {
                if v.get("sites").is_some() {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "province {} never answered /readyz; log:\n{}",
                self.conf.instance,
                self.log_tail(40)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Poll the overview until `check` passes (the last reason in the
    /// panic after `timeout`); returns that overview.
    pub async fn wait(&self, what: &str, timeout: Duration, check: Check<'_>) -> Value {
        let deadline = Instant::now() + timeout;
        let mut last = String::new();
        loop {
            if let Ok((200, v)) = self.get("/api/province/overview").await {
                match check(&v) {
                    Ok(()) => return v,
                    Err(why) => last = why,
                }
            }
            assert!(
                Instant::now() < deadline,
                "province {}: timed out waiting for {what}: {last}; log:\n{}",
                self.conf.instance,
                self.log_tail(40)
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// `/site/{c}/api/indicators?window=month&village=commune`.
    pub async fn site_indicators(&self, commune: &str) -> Value {
        let path = format!("/site/{commune}/api/indicators?window=month&village=commune");
        match self.get(&path).await {
            Ok((200, v)) => v,
            other => panic!("{path} on {}: {other:?}", self.conf.instance),
        }
    }
}

/// The site object of `id` in an overview.
pub fn site_of<'a>(overview: &'a Value, id: &str) -> Option<&'a Value> {
    overview["sites"].as_array()?.iter().find(|s| s["id"] == id)
}

/// What a site must show once caught up: head, entries held, gaps.
#[derive(Debug, Clone, PartialEq)]
pub struct Want {
    pub head: i64,
    pub entries: u64,
    pub gaps: Value,
}

impl Want {
    /// A commune with no gap: every seq 1..=head.
    pub fn full(head: i64) -> Want {
        Want {
            head,
            entries: head as u64,
            gaps: json!([]),
        }
    }

    /// What a simulated commune published.
    pub fn of(sim: &SimCommune) -> Want {
        Want {
            head: sim.head(),
            entries: sim.held(),
            gaps: sim.gaps_json(),
        }
    }
}

/// Check an overview against `want` (site id → what it must show): each
/// site ok, at its head, holding exactly its entries, its gaps as given.
/// The first sites that differ, in the error.
pub fn caught_up(overview: &Value, want: &BTreeMap<String, Want>) -> Result<(), String> {
    let mut behind = Vec::new();
    for (id, w) in want {
        let Some(s) = site_of(overview, id) else {
            behind.push(format!("{id}: missing"));
            continue;
        };
        let got = (
            s["head_seq"].as_i64(),
            s["entries"].as_u64(),
            s["gaps"].clone(),
        );
        if s["status"] != "ok" || got != (Some(w.head), Some(w.entries), w.gaps.clone()) {
            behind.push(format!(
                "{id}: status {} head {} entries {} gaps {} (want head {} entries {} gaps {})",
                s["status"], s["head_seq"], s["entries"], s["gaps"], w.head, w.entries, w.gaps
            ));
        }
    }
    if behind.is_empty() {
        Ok(())
    } else {
        let n = behind.len();
        behind.truncate(5);
        Err(format!(
            "{n} sites not caught up, e.g. {}",
            behind.join("; ")
        ))
    }
}

/// `commune → digest` of an overview.
pub fn digests(overview: &Value) -> BTreeMap<String, String> {
    overview["sites"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|s| {
                    (
                        s["id"].as_str().unwrap_or_default().to_string(),
                        s["digest"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// `id → value` of an indicator list.
pub fn indicator_values(list: &Value) -> BTreeMap<String, Value> {
    list.as_array()
        .map(|a| {
            a.iter()
                .map(|i| {
                    (
                        i["id"].as_str().unwrap_or_default().to_string(),
                        i["value"].clone(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Start a real commune box: its config (site `spec`, broker `mqtt_port`,
/// uplink to `uplink_url`) in `dir`, its store in `dir/store`; the report
/// key is created first and its public half returned with the box.
pub fn start_commune(
    dir: &Path,
    spec: &SiteSpec,
    mqtt_port: u16,
    uplink_url: &str,
) -> (super::Backend, String) {
    std::fs::create_dir_all(dir).expect("commune dir");
    let toml = commune_toml(spec, mqtt_port, &dir.join("store"), uplink_url);
    let config = dir.join("commune.toml");
    std::fs::write(&config, &toml).expect("write the commune config");
    let key = report_key(&config);
    let b = super::Backend::start(dir, &toml);
    (b, key)
}

/// Seal `period` for a commune with the library (as its box would: the
/// site's config, an empty journal, the key in `key_file`), and return the
/// `report` entry's body as the uplink would send it.
pub fn sealed_report(spec: &SiteSpec, dir: &Path, key_file: &Path, period: &str) -> Value {
    let config = commune_ioc::config::load_str(&site_toml(spec, None), "site.toml", &[]).unwrap();
    let engine = commune_ioc::indicators::Engine::new(&config);
    std::fs::create_dir_all(dir).unwrap();
    let mut store = commune_ioc::journal::Store::open(&dir.join("journal.db")).unwrap();
    store.bind_commune(&spec.id).unwrap();
    let key = commune_ioc::reports::keys::load_or_create(key_file).unwrap();
    commune_ioc::reports::service::seal_label(
        store.conn_mut(),
        &config,
        &engine,
        &key,
        period,
        chrono::Utc::now(),
        "cli",
    )
    .unwrap();
    let entry = store
        .entries_after(&spec.id, 0, 10, usize::MAX)
        .unwrap()
        .into_iter()
        .find(|e| e.kind == "report")
        .expect("a report entry");
    match entry.content {
        Content::Body(b) => serde_json::from_slice(&b).unwrap(),
        other => panic!("{other:?}"),
    }
}

/// The public half of the key in `key_file` (base64).
pub fn public_key(key_file: &Path) -> String {
    let key = commune_ioc::reports::keys::load_or_create(key_file).unwrap();
    commune_ioc::reports::keys::public_b64(&key.verifying_key())
}

/// The latest month every commune can seal today.
pub fn closed_period() -> String {
    use chrono::Datelike;
    let now = chrono::Utc::now().with_timezone(&chrono::FixedOffset::east_opt(7 * 3600).unwrap());
    // A NĐ 09 month ends on the 15th at 00:00 +07:00 (grace 2 h): the
    // latest closed one is this month's from the 16th, else the last.
    let (y, m) = if now.day() >= 16 {
        (now.year(), now.month())
    } else if now.month() == 1 {
        (now.year() - 1, 12)
    } else {
        (now.year(), now.month() - 1)
    };
    format!("{y}-{m:02}")
}
