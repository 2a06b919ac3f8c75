//! The process settings: how this running program connects, listens,
//! stores and streams (`[mqtt]`, `[http]`, `[auth]`, `[store]`, `[live]`,
//! `[influx]`, `[ingest]`, `[delivery]`). Nothing here describes a commune; one process
//! can later serve several sites with one set of these.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

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
    /// Embedded broker only: client logins (user name → password). When
    /// any is set, the broker refuses clients without a listed login; a
    /// device's login is its id (docs/PROTOCOL.md §1.7). commune-ioc itself
    /// logs in to the broker's private side with a per-process secret.
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
    /// Seconds a new connection may take to send its first request head;
    /// a connection that is slower (half-sent headers) is closed.
    pub header_timeout_s: u64,
    /// Seconds a keep-alive connection may stay idle (no request in
    /// flight) before it is closed.
    pub idle_timeout_s: u64,
    /// Most HTTP connections open at once (WebSockets count until they are
    /// upgraded, then under `live.max_connections`). At the cap, the
    /// longest-idle connection is closed to admit a new one. Kept below
    /// the process's file limit at start.
    pub max_connections: usize,
}

impl Default for Http {
    fn default() -> Self {
        Http {
            listen: "127.0.0.1:8080".into(),
            dashboard_dir: None,
            cors_origins: Vec::new(),
            max_body_bytes: 64 * 1024,
            request_timeout_s: 30,
            header_timeout_s: 10,
            idle_timeout_s: 60,
            max_connections: 1024,
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
    /// Failed logins for one user name from one address within
    /// `failure_window_s` that lock that name from that address (other
    /// addresses are not affected; docs/ACCESS.md).
    pub max_failures_per_user: u32,
    /// Failed logins from one address within `failure_window_s` that
    /// lock it for `lockout_s`.
    pub max_failures_per_address: u32,
    /// Seconds over which failed logins are counted.
    pub failure_window_s: u64,
    /// Longest lockout, seconds: the first lasts a minute (or this, if
    /// shorter), each further one of the same name and address twice as
    /// long.
    pub lockout_s: u64,
    /// Logins whose password is checked at once (argon2 takes about 19 MiB
    /// and tens of ms each).
    pub login_concurrency: usize,
    /// Logins that may wait for a check; beyond that, a login is answered
    /// 503 `login_busy` at once.
    pub login_queue: usize,
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
            login_concurrency: 2,
            login_queue: 16,
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
            snapshot_bytes_per_second: 128 * 1024,
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

/// Durable HTTP delivery (`src/delivery`): the worker's limits and the
/// named targets that deliveries are addressed to.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Delivery {
    /// Most requests in flight at once (over every target).
    pub max_in_flight: usize,
    /// Timeout of one request (connect, send, answer), in seconds.
    pub timeout_s: u64,
    /// Timeout of the TCP/TLS connect, in seconds.
    pub connect_timeout_s: u64,
    /// First retry delay, in milliseconds; doubles per attempt (with
    /// jitter) up to `backoff_max_ms`.
    pub backoff_initial_ms: u64,
    /// Longest retry delay, in milliseconds.
    pub backoff_max_ms: u64,
    /// A delivery not accepted after this many hours is given up
    /// (`expired`).
    pub expire_after_h: u64,
    /// How often the worker looks for due deliveries, in milliseconds
    /// (enqueues in this process wake it at once).
    pub poll_ms: u64,
    /// Named receivers: `[delivery.targets.province]`, ...
    pub targets: BTreeMap<String, DeliveryTarget>,
}

impl Default for Delivery {
    fn default() -> Self {
        Delivery {
            max_in_flight: 4,
            timeout_s: 30,
            connect_timeout_s: 10,
            backoff_initial_ms: 5_000,
            backoff_max_ms: 3_600_000,
            expire_after_h: 7 * 24,
            poll_ms: 1_000,
            targets: BTreeMap::new(),
        }
    }
}

/// One receiver of deliveries: where to POST and how to authenticate.
/// Secrets stay in the config (or `IOC__DELIVERY__TARGETS__NAME__...`),
/// never in the store.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct DeliveryTarget {
    /// The URL every delivery to this target is POSTed to. `https://`,
    /// or `http://` to a loopback address only.
    pub url: String,
    /// `Authorization: Bearer ...` on every request.
    pub bearer_token: Option<Secret>,
    /// Client certificate (PEM, with its chain) for mutual TLS.
    pub client_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    pub client_key: Option<PathBuf>,
    /// Extra CA certificate(s) (PEM) trusted for this target's server, on
    /// top of the built-in roots.
    pub ca_file: Option<PathBuf>,
}

/// The servers of a NATS `url` setting (`[uplink]`, `[stream]`): its
/// comma-separated addresses, trimmed. async-nats reads one `&str` as one
/// address, so a cluster's list is split before `connect`.
pub fn nats_servers(url: &str) -> Vec<&str> {
    url.split(',').map(str::trim).collect()
}

/// Default of `max_age_days` (`[uplink]`, `[stream]`): two weeks of a
/// province instance down before its copy has gaps.
pub const DEFAULT_MAX_AGE_DAYS: u64 = 14;

/// The uplink to the province (`[uplink]`): the journal forwarded, in
/// `(commune, seq)` order from a durable cursor, to a NATS JetStream stream
/// (docs/PROVINCE.md). Off without `url`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Uplink {
    /// NATS servers, comma-separated: `nats://host:4222` or `tls://host:4222`
    /// (several for a cluster: the client fails over between them).
    pub url: Option<String>,
    /// JetStream stream that takes the journal.
    pub stream: String,
    /// First subject token: entries go to `{prefix}.{commune}.journal.{kind}`.
    pub subject_prefix: String,
    /// Create the stream on connect when it is missing (subjects
    /// `{prefix}.*.journal.>`, file storage). When false, a missing stream
    /// is an error the uplink waits on.
    pub create_stream: bool,
    /// Replicas of a stream it creates (3 on a three-node cluster).
    pub stream_replicas: usize,
    /// Duplicate window of a stream it creates, seconds (JetStream drops a
    /// re-sent `Nats-Msg-Id` within it).
    pub duplicate_window_s: u64,
    /// How long the stream keeps an entry, days (0: no limit). The
    /// stream is a buffer between the communes and the province's copies;
    /// applied when the stream is created, and to an existing one when
    /// `create_stream` is set (its owner).
    pub max_age_days: u64,
    /// A `.creds` file (user JWT and NKey seed), as NATS accounts issue.
    pub creds_file: Option<PathBuf>,
    /// A file holding an NKey seed (`SU...`), for NKey authentication.
    pub nkey_seed_file: Option<PathBuf>,
    /// User name (with `password`).
    pub user: Option<String>,
    /// Password of `user`.
    pub password: Option<Secret>,
    /// Token authentication.
    pub token: Option<Secret>,
    /// Require TLS (also implied by a `tls://` URL).
    pub tls: bool,
    /// PEM file with the CA that signed the servers' certificates (else the
    /// system roots).
    pub ca_file: Option<PathBuf>,
    /// Client certificate (PEM), for servers that verify clients; with
    /// `key_file`.
    pub cert_file: Option<PathBuf>,
    /// Private key of `cert_file` (PEM).
    pub key_file: Option<PathBuf>,
    /// Most entries published before their acknowledgements are awaited.
    pub batch_max: usize,
    /// Most bytes of entries read from the journal for one batch.
    pub batch_max_bytes: usize,
    /// How long an acknowledgement (and a JetStream API call) may take,
    /// milliseconds.
    pub ack_timeout_ms: u64,
    /// How often the journal is checked for new entries when caught up,
    /// milliseconds.
    pub poll_ms: u64,
    /// First reconnect / retry delay, milliseconds (doubles up to
    /// `backoff_max_ms`).
    pub backoff_initial_ms: u64,
    /// Cap of the retry delay, milliseconds.
    pub backoff_max_ms: u64,
}

impl Default for Uplink {
    fn default() -> Self {
        Uplink {
            url: None,
            stream: "IOC_JOURNAL".into(),
            subject_prefix: "ioc".into(),
            create_stream: true,
            stream_replicas: 1,
            duplicate_window_s: 120,
            max_age_days: DEFAULT_MAX_AGE_DAYS,
            creds_file: None,
            nkey_seed_file: None,
            user: None,
            password: None,
            token: None,
            tls: false,
            ca_file: None,
            cert_file: None,
            key_file: None,
            batch_max: 256,
            batch_max_bytes: 4 * 1024 * 1024,
            ack_timeout_ms: 10_000,
            poll_ms: 100,
            backoff_initial_ms: 200,
            backoff_max_ms: 10_000,
        }
    }
}
