//! Province mode (`serve --config PROCESS.toml --sites DIR`, docs/PROVINCE.md
//! §6): `[province]` names the instance and its peers, `[stream]` the NATS
//! JetStream stream every commune's journal arrives on.

use serde::{Deserialize, Serialize};

use super::process::{Secret, Uplink};

/// `[province]`: who this instance is.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProvinceDef {
    /// ASCII slug, e.g. `lai-chau`.
    pub id: String,
    /// Display name, e.g. `Tỉnh Lai Châu`.
    pub name: String,
    /// This instance's name: its durable consumers are `{instance}-{commune}`
    /// (two instances with the same name would share, not each get, the
    /// entries).
    #[serde(default = "default_instance")]
    pub instance: String,
    /// The other instances' base URLs (`http://host:port`): the screen
    /// fails over to them, and they may read `/api/province/*` across
    /// origins.
    #[serde(default)]
    pub peers: Vec<String>,
    /// A commune's sealed report counts as late when it arrives more than
    /// this many days after its period ended.
    #[serde(default = "default_due_days")]
    pub report_due_days: u32,
    /// A commune whose last entry is older than this is shown disconnected,
    /// seconds.
    #[serde(default = "default_stale")]
    pub stale_after_s: u64,
}

fn default_instance() -> String {
    "a".into()
}

fn default_due_days() -> u32 {
    5
}

fn default_stale() -> u64 {
    300
}

/// `[stream]`: the NATS cluster and stream the province consumes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StreamDef {
    /// NATS servers, comma-separated (`nats://…` or `tls://…`).
    pub url: Option<String>,
    /// The stream.
    pub stream: String,
    /// First subject token (`{prefix}.{commune}.journal.{kind}`).
    pub subject_prefix: String,
    /// Create the stream when it is missing.
    pub create_stream: bool,
    /// Replicas of a stream it creates (3 on a three-node cluster).
    pub stream_replicas: usize,
    /// Duplicate window of a stream it creates, seconds.
    pub duplicate_window_s: u64,
    /// How long the stream keeps an entry, days (0: no limit). The
    /// stream is a buffer between the communes and the province's copies;
    /// applied when the stream is created, and to an existing one when
    /// `create_stream` is set (its owner).
    pub max_age_days: u64,
    /// A `.creds` file.
    pub creds_file: Option<std::path::PathBuf>,
    /// A file holding an NKey seed.
    pub nkey_seed_file: Option<std::path::PathBuf>,
    /// User name (with `password`).
    pub user: Option<String>,
    /// Password of `user`.
    pub password: Option<Secret>,
    /// Token authentication.
    pub token: Option<Secret>,
    /// Require TLS (also implied by a `tls://` URL).
    pub tls: bool,
    /// CA of the servers' certificates.
    pub ca_file: Option<std::path::PathBuf>,
    /// Client certificate (with `key_file`).
    pub cert_file: Option<std::path::PathBuf>,
    /// Its private key.
    pub key_file: Option<std::path::PathBuf>,
    /// Most entries one site fetches and commits at once.
    pub batch_max: usize,
    /// Most bytes one site fetches at once (with `batch_max`, its memory
    /// bound).
    pub batch_max_bytes: usize,
    /// Per-site budget: most entries a site commits per second (one
    /// commune's flood waits in the stream, not in the province's memory,
    /// and leaves the others their share).
    pub site_rate: u32,
    /// How long a site's batch waits for more entries after its first one
    /// before it is committed, milliseconds: the most an entry waits for
    /// others to share its commit (the lag it adds at a commune's usual
    /// rate; a backlog fills batches without waiting).
    pub batch_wait_ms: u64,
    /// How long a JetStream call may take, milliseconds.
    pub request_timeout_ms: u64,
    /// First retry delay after an error, milliseconds (doubles).
    pub backoff_initial_ms: u64,
    /// Cap of the retry delay, milliseconds.
    pub backoff_max_ms: u64,
}

impl Default for StreamDef {
    fn default() -> Self {
        StreamDef {
            url: None,
            stream: "IOC_JOURNAL".into(),
            subject_prefix: "ioc".into(),
            create_stream: true,
            stream_replicas: 1,
            duplicate_window_s: 120,
            max_age_days: super::process::DEFAULT_MAX_AGE_DAYS,
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
            site_rate: 5000,
            batch_wait_ms: 50,
            request_timeout_ms: 10_000,
            backoff_initial_ms: 200,
            backoff_max_ms: 10_000,
        }
    }
}

impl StreamDef {
    /// The same server, login and stream settings in the uplink's shape
    /// (so both sides connect and create the stream one way).
    pub fn as_uplink(&self) -> Uplink {
        Uplink {
            url: self.url.clone(),
            stream: self.stream.clone(),
            subject_prefix: self.subject_prefix.clone(),
            create_stream: self.create_stream,
            stream_replicas: self.stream_replicas,
            duplicate_window_s: self.duplicate_window_s,
            max_age_days: self.max_age_days,
            creds_file: self.creds_file.clone(),
            nkey_seed_file: self.nkey_seed_file.clone(),
            user: self.user.clone(),
            password: self.password.clone(),
            token: self.token.clone(),
            tls: self.tls,
            ca_file: self.ca_file.clone(),
            cert_file: self.cert_file.clone(),
            key_file: self.key_file.clone(),
            ack_timeout_ms: self.request_timeout_ms,
            backoff_initial_ms: self.backoff_initial_ms,
            backoff_max_ms: self.backoff_max_ms,
            ..Uplink::default()
        }
    }
}
