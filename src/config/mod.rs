//! Typed configuration: the commune, its villages and devices, the MQTT
//! connection, the store, ingest limits and indicator definitions.
//!
//! Loaded from a TOML file, then overridden by environment variables named
//! `IOC__SECTION__KEY` (see [`load`]), then validated (see `validate`).

mod load;
mod validate;

pub use load::{load, load_str, ConfigError, ConfigIssue};

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::model::DeviceClass;

/// The whole configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Which commune this instance serves.
    pub commune: Commune,
    /// MQTT broker connection (and optional embedded broker).
    #[serde(default)]
    pub mqtt: Mqtt,
    /// HTTP API listener.
    #[serde(default)]
    pub http: Http,
    /// Users, tokens and login limits.
    #[serde(default)]
    pub auth: Auth,
    /// Embedded store.
    #[serde(default)]
    pub store: Store,
    /// The WebSocket live stream (`/api/ws`).
    #[serde(default)]
    pub live: Live,
    /// Limits applied to incoming messages.
    #[serde(default)]
    pub ingest: Ingest,
    /// Report period regime.
    #[serde(default)]
    pub report: Report,
    /// Inactivity timeouts per device class.
    #[serde(default)]
    pub devices: DeviceTimeouts,
    /// Villages (thôn/bản).
    #[serde(default, rename = "village")]
    pub villages: Vec<Village>,
    /// Cameras.
    #[serde(default, rename = "camera")]
    pub cameras: Vec<Camera>,
    /// Loudspeaker clusters.
    #[serde(default, rename = "speaker")]
    pub speakers: Vec<Speaker>,
    /// Sensors.
    #[serde(default, rename = "sensor")]
    pub sensors: Vec<Sensor>,
    /// The administrative-procedure system.
    #[serde(default)]
    pub procedure: Procedure,
    /// Indicator definitions.
    #[serde(default, rename = "indicator")]
    pub indicators: Vec<IndicatorDef>,
    /// Time-series sink (InfluxDB 2/3, VictoriaMetrics); off without `url`.
    #[serde(default)]
    pub influx: Influx,
}

/// The commune.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Commune {
    /// ASCII slug used in MQTT topics, e.g. `binh-lu`.
    pub id: String,
    /// Display name, e.g. `Xã Bình Lư`.
    pub name: String,
    /// Province, e.g. `Lai Châu`.
    #[serde(default)]
    pub province: String,
}

/// MQTT connection settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Mqtt {
    /// Run the embedded broker (feature `embedded-broker`) on `host:port`.
    pub embedded: bool,
    /// Broker host.
    pub host: String,
    /// Broker port.
    pub port: u16,
    /// Stable client id; defaults to `commune-ioc-{commune.id}`.
    pub client_id: Option<String>,
    /// Username for the broker.
    pub username: Option<String>,
    /// Password for the broker.
    pub password: Option<Secret>,
    /// Connect with TLS (rustls, system roots or `ca_file`).
    pub tls: bool,
    /// PEM file with the CA that signed the broker's certificate.
    pub ca_file: Option<PathBuf>,
    /// Keep-alive in seconds.
    pub keep_alive_secs: u64,
    /// First reconnect delay in milliseconds (doubles up to `backoff_max_ms`).
    pub backoff_initial_ms: u64,
    /// Cap of the reconnect delay in milliseconds.
    pub backoff_max_ms: u64,
    /// Shared-subscription group (`$share/{group}/...`) for several replicas.
    pub share_group: Option<String>,
    /// Embedded broker only: device logins (user name → password). When
    /// any is set, the broker refuses clients without a listed login
    /// (`username`/`password` above are added for commune-ioc itself).
    pub embedded_logins: BTreeMap<String, Secret>,
}

impl Default for Mqtt {
    fn default() -> Self {
        Mqtt {
            embedded: false,
            host: "127.0.0.1".into(),
            port: 1883,
            client_id: None,
            username: None,
            password: None,
            tls: false,
            ca_file: None,
            keep_alive_secs: 30,
            backoff_initial_ms: 200,
            backoff_max_ms: 30_000,
            share_group: None,
            embedded_logins: BTreeMap::new(),
        }
    }
}

/// HTTP listener settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Http {
    /// Address to listen on, e.g. `0.0.0.0:8080` (`:0` picks a free port).
    pub listen: String,
    /// Directory to serve the wall screen from instead of the copy embedded
    /// in the binary (for development); ignored when it does not exist.
    pub dashboard_dir: Option<PathBuf>,
    /// Origins allowed to call the API from another site (CORS); empty:
    /// none.
    pub cors_origins: Vec<String>,
    /// Largest request body, bytes.
    pub max_body_bytes: usize,
    /// Seconds a request may take before it is answered 408.
    pub request_timeout_s: u64,
}

impl Default for Http {
    fn default() -> Self {
        Http {
            listen: "127.0.0.1:8080".into(),
            dashboard_dir: None,
            cors_origins: Vec::new(),
            max_body_bytes: 64 * 1024,
            request_timeout_s: 30,
        }
    }
}

/// A secret (password, token): `Debug` and `Serialize` never show it.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wrap a secret.
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }

    /// The secret itself, for the one place that must use it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("***")
    }
}

/// Users, tokens and login limits.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Auth {
    /// Let anyone read (GET routes, `/api/ws`) without a token: only on a
    /// trusted LAN. Actions still need a token.
    pub public_read: bool,
    /// Seconds a login token lives.
    pub session_ttl_s: u64,
    /// Failed logins for one user name within `failure_window_s` that
    /// lock it for `lockout_s`.
    pub max_failures_per_user: u32,
    /// Failed logins from one address within `failure_window_s` that
    /// lock it for `lockout_s`.
    pub max_failures_per_address: u32,
    /// Seconds over which failed logins are counted.
    pub failure_window_s: u64,
    /// Seconds a lockout lasts.
    pub lockout_s: u64,
    /// Password of the first `admin` account, used only when there is no
    /// user yet (set it with `IOC__AUTH__ADMIN_PASSWORD`); when absent, one
    /// is generated and printed once.
    pub admin_password: Option<Secret>,
}

impl Default for Auth {
    fn default() -> Self {
        Auth {
            public_read: false,
            session_ttl_s: 12 * 3600,
            max_failures_per_user: 5,
            max_failures_per_address: 20,
            failure_window_s: 900,
            lockout_s: 900,
            admin_password: None,
        }
    }
}

/// Embedded store settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Store {
    /// Directory holding `journal.db`.
    pub path: PathBuf,
    /// Largest number of messages committed in one transaction.
    pub batch_max: usize,
    /// Capacity of the queue between MQTT and the journal (messages).
    pub queue_capacity: usize,
    /// `full`: every commit reaches the disk before messages are
    /// acknowledged (survives power cuts). `normal`: faster, survives a crash
    /// of the process but not of the machine.
    pub sync: SyncMode,
    /// Largest size of the journal in MiB (0 = no limit). When it is
    /// reached, commits fail: nothing more is acknowledged, the broker keeps
    /// the messages, and /readyz reports the store not writable.
    pub max_size_mb: u64,
}

/// SQLite durability of a commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SyncMode {
    /// fsync on every commit.
    #[default]
    Full,
    /// fsync at checkpoints only.
    Normal,
}

impl Default for Store {
    fn default() -> Self {
        Store {
            path: PathBuf::from("data"),
            batch_max: 4096,
            queue_capacity: 16_384,
            sync: SyncMode::Full,
            max_size_mb: 0,
        }
    }
}

/// Limits and buffers of the WebSocket live stream (`/api/ws`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Live {
    /// Most authenticated WebSocket connections open at once.
    pub max_connections: usize,
    /// Most connections waiting for their `auth` frame at once (a budget of
    /// their own: they never take the slots of `max_connections`).
    pub max_unauthenticated: usize,
    /// Seconds a connection opened without a token has to authenticate.
    pub auth_timeout_s: u64,
    /// Most subscriptions per connection.
    pub max_subscriptions: usize,
    /// Largest frame the server sends; snapshots and large updates are
    /// split into pages under it.
    pub max_frame_bytes: usize,
    /// Largest command a client may send.
    pub max_command_bytes: usize,
    /// Commands a client may send per second.
    pub commands_per_second: u32,
    /// Snapshot bytes a connection may ask for per second (subscribe and
    /// resume answers), on average.
    pub snapshot_bytes_per_second: usize,
    /// Snapshot bytes a connection may ask for at once (a fresh connection
    /// starts with this much).
    pub snapshot_burst_bytes: usize,
    /// Steps a connection may fall behind before it gets a resync.
    pub queue_batches: usize,
    /// Steps kept for resuming clients.
    pub history_batches: usize,
    /// Seconds between heartbeats (WebSocket ping and a heartbeat frame).
    pub heartbeat_s: u64,
    /// Seconds a frame may take to be written before the connection is
    /// closed.
    pub send_timeout_s: u64,
    /// Events kept per scope in the `feed:{scope}` values.
    pub feed_len: usize,
    /// Milliseconds between recomputations of what the clock changes.
    pub tick_ms: u64,
    /// Shortest time between two steps, in milliseconds (0: a step per
    /// commit as soon as it lands).
    pub min_step_ms: u64,
}

impl Default for Live {
    fn default() -> Self {
        Live {
            max_connections: 2000,
            max_unauthenticated: 32,
            auth_timeout_s: 5,
            max_subscriptions: 16,
            max_frame_bytes: 64 * 1024,
            max_command_bytes: 4096,
            commands_per_second: 20,
            snapshot_bytes_per_second: 256 * 1024,
            snapshot_burst_bytes: 4 * 1024 * 1024,
            queue_batches: 1024,
            history_batches: 4096,
            heartbeat_s: 15,
            send_timeout_s: 10,
            feed_len: 20,
            tick_ms: 1000,
            min_step_ms: 0,
        }
    }
}

/// Timestamp precision of the line protocol sent to the time-series store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Precision {
    /// Milliseconds (the journal's own precision).
    Ms,
    /// Microseconds.
    Us,
    /// Nanoseconds.
    #[default]
    Ns,
}

/// The time-series sink: every event and periodic indicator values written
/// to `{url}/api/v2/write` (InfluxDB 2.x, InfluxDB 3, VictoriaMetrics).
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Influx {
    /// Base URL, e.g. `http://127.0.0.1:8086`; the sink is off without it.
    pub url: Option<String>,
    /// Organization (InfluxDB 2; ignored by InfluxDB 3 and VictoriaMetrics).
    pub org: String,
    /// Bucket (InfluxDB 2), database (InfluxDB 3); ignored by VictoriaMetrics.
    pub bucket: String,
    /// API token (`Authorization: Token ...`); never logged or serialized.
    #[serde(skip_serializing)]
    pub token: Option<String>,
    /// Most points in one write request.
    pub batch_max_points: usize,
    /// Longest wait before a partial batch is written, in milliseconds.
    pub flush_interval_ms: u64,
    /// Timeout of one write request, in milliseconds.
    pub timeout_ms: u64,
    /// Most points waiting for the store (per queue: events, indicator
    /// points); beyond it the oldest are skipped and counted as dropped.
    pub max_backlog_points: u64,
    /// Timestamp precision sent with the writes.
    pub precision: Precision,
    /// Seconds between indicator snapshots written to the store (0: none).
    pub indicator_interval_secs: u64,
}

impl Default for Influx {
    fn default() -> Self {
        Influx {
            url: None,
            org: "commune".into(),
            bucket: "ioc".into(),
            token: None,
            batch_max_points: 5000,
            flush_interval_ms: 1000,
            timeout_ms: 10_000,
            max_backlog_points: 10_000_000,
            precision: Precision::Ns,
            indicator_interval_secs: 60,
        }
    }
}

impl std::fmt::Debug for Influx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Influx")
            .field("url", &self.url)
            .field("org", &self.org)
            .field("bucket", &self.bucket)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("batch_max_points", &self.batch_max_points)
            .field("flush_interval_ms", &self.flush_interval_ms)
            .field("timeout_ms", &self.timeout_ms)
            .field("max_backlog_points", &self.max_backlog_points)
            .field("precision", &self.precision)
            .field("indicator_interval_secs", &self.indicator_interval_secs)
            .finish()
    }
}

/// Limits applied to every incoming message.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Ingest {
    /// Payloads larger than this become `oversized` dead letters.
    pub max_payload_bytes: usize,
    /// Event times further ahead than this become `timestamp_in_future`.
    pub max_future_skew_secs: i64,
    /// Event times older than this become `timestamp_too_old`.
    pub max_age_days: i64,
    /// Bytes of payload kept as the excerpt shown with a dead letter.
    pub excerpt_bytes: usize,
}

impl Default for Ingest {
    fn default() -> Self {
        Ingest {
            max_payload_bytes: 64 * 1024,
            max_future_skew_secs: 300,
            max_age_days: 35,
            excerpt_bytes: 256,
        }
    }
}

/// How monthly report periods are cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Regime {
    /// Nghị định 09/2019/NĐ-CP Điều 12: 15th of the previous month to the
    /// 15th of this month, 00:00 +07:00, half open.
    #[default]
    Nd09,
    /// Calendar month, 00:00 +07:00.
    Calendar,
}

/// Report settings.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Report {
    /// The period regime for the `month` window.
    pub regime: Regime,
}

/// Inactivity timeouts after which a silent device counts as offline.
/// Zero disables the timeout for that class.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeviceTimeouts {
    /// Cameras, seconds.
    pub camera_secs: i64,
    /// Loudspeaker clusters, seconds.
    pub speaker_secs: i64,
    /// Sensors, seconds.
    pub sensor_secs: i64,
}

impl Default for DeviceTimeouts {
    fn default() -> Self {
        DeviceTimeouts {
            camera_secs: 300,
            speaker_secs: 900,
            sensor_secs: 1800,
        }
    }
}

impl DeviceTimeouts {
    /// The timeout for a class, in seconds (0 = none).
    pub fn for_class(&self, class: DeviceClass) -> i64 {
        match class {
            DeviceClass::Camera => self.camera_secs,
            DeviceClass::Speaker => self.speaker_secs,
            DeviceClass::Sensor => self.sensor_secs,
        }
    }
}

/// A village (thôn/bản).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Village {
    /// ASCII slug.
    pub id: String,
    /// Name as the documents give it.
    pub name: String,
    /// True when the name is not in the source documents and must be filled
    /// in by the commune.
    #[serde(default)]
    pub placeholder: bool,
    /// Mobile dead zone (vùng lõm sóng).
    #[serde(default)]
    pub dead_zone: bool,
    /// Latitude (WGS84) for the map.
    #[serde(default)]
    pub lat: Option<f64>,
    /// Longitude (WGS84) for the map.
    #[serde(default)]
    pub lon: Option<f64>,
}

/// A camera.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Camera {
    /// Id used in topics.
    pub id: String,
    /// Display name.
    #[serde(default)]
    pub name: String,
    /// Village id.
    pub village: Option<String>,
    /// The camera's name in Frigate, when it is watched by Frigate.
    #[serde(default)]
    pub frigate_name: Option<String>,
}

/// Kind of loudspeaker cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SpeakerKind {
    /// IP-addressable smart cluster that reports over MQTT.
    #[default]
    Smart,
    /// Legacy FE radio station: in the inventory, not reachable over MQTT.
    Fe,
}

/// A loudspeaker cluster.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Speaker {
    /// Id used in topics.
    pub id: String,
    /// Display name.
    #[serde(default)]
    pub name: String,
    /// Village id.
    pub village: Option<String>,
    /// Smart or FE.
    #[serde(default)]
    pub kind: SpeakerKind,
}

/// A sensor.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sensor {
    /// Id used in topics.
    pub id: String,
    /// Display name.
    #[serde(default)]
    pub name: String,
    /// Village id.
    pub village: Option<String>,
    /// What it measures, e.g. `rain`, `water_level`, `temperature`.
    #[serde(default)]
    pub kind: String,
}

/// The procedure (dossier) system.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Procedure {
    /// Display name of the system.
    pub name: String,
    /// Dossier events with a `village` not in the registry are kept at
    /// commune scope; set this to reject them as dead letters instead.
    pub reject_unknown_village: bool,
}

impl Default for Procedure {
    fn default() -> Self {
        Procedure {
            name: "Hệ thống thông tin giải quyết thủ tục hành chính".into(),
            reject_unknown_village: false,
        }
    }
}

/// What an indicator computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IndicatorKind {
    /// Number (or sum of a field) of matching events in the window.
    Count,
    /// 100 × numerator / denominator, each a count over the window.
    Ratio,
    /// Latest value of a numeric field.
    Latest,
    /// Percentage of registered devices of a class that are online now.
    Availability,
    /// Seconds since the last event from a source family.
    Freshness,
    /// Number of dead letters in the window.
    DeadLetters,
}

/// A filter on events: every given condition must hold.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    /// Producer family (`camera`, `speaker`, `procedure`, `sensor`).
    pub source: Option<String>,
    /// Event kind, e.g. `received`, or a list of kinds (any of).
    pub event: Option<OneOrMany>,
    /// Attribute equalities, e.g. `{ channel = "online" }`; a list means any of.
    #[serde(default, rename = "where")]
    pub conditions: BTreeMap<String, toml::Value>,
    /// Sum this numeric attribute instead of counting events.
    pub sum: Option<String>,
    /// Only these devices.
    #[serde(default)]
    pub devices: Vec<String>,
}

/// A string or a list of strings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum OneOrMany {
    /// One value.
    One(String),
    /// Any of these values.
    Many(Vec<String>),
}

impl OneOrMany {
    /// The values as a list.
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

/// An indicator definition.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndicatorDef {
    /// Stable id (a contract with the screen and reports).
    pub id: String,
    /// Vietnamese display name.
    pub name: String,
    /// What it computes.
    pub kind: IndicatorKind,
    /// Unit shown with the value (`%`, `hồ sơ`, `s`...).
    #[serde(default)]
    pub unit: String,
    /// Target, e.g. `"> 90"`, `">= 60"`, `"< 20"`.
    pub target: Option<String>,
    /// For `count` and `latest`.
    #[serde(rename = "match")]
    pub filter: Option<Filter>,
    /// For `ratio`.
    pub numerator: Option<Filter>,
    /// For `ratio`.
    pub denominator: Option<Filter>,
    /// For `latest`: the numeric attribute.
    pub field: Option<String>,
    /// For `availability`: `camera`, `speaker` or `sensor`.
    pub device_class: Option<String>,
    /// For `freshness`: the producer family.
    pub source: Option<String>,
}

impl Config {
    /// The MQTT client id (stable per installation).
    pub fn client_id(&self) -> String {
        self.mqtt
            .client_id
            .clone()
            .unwrap_or_else(|| format!("commune-ioc-{}", self.commune.id))
    }

    /// Path of the SQLite journal.
    pub fn journal_path(&self) -> PathBuf {
        self.store.path.join("journal.db")
    }
}
