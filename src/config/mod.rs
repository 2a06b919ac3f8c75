//! Typed configuration, in two parts: the process settings
//! ([`process`]: MQTT, HTTP, auth, store, live stream, time-series sink,
//! ingest limits) and the site definition ([`site`]: the commune, its
//! villages and devices, indicators, report regime).
//!
//! One TOML file holds both today. It is loaded, then overridden by
//! environment variables named `IOC__SECTION__KEY` (see [`load`]), then
//! validated; validation also builds the typed [`Site`] (targets, sources,
//! device classes parsed once), so a loaded [`Config`] is ready to use and
//! nothing downstream parses or drops a definition again.
//!
//! This room imports only `vocab` from the crate.

pub mod alerts;
pub mod broadcasts;
pub mod examples;
mod load;
pub mod mapped;
mod positions;
pub mod process;
pub mod province;
mod registry;
pub mod site;
mod validate;
mod warnings;

pub use load::{load, load_str, ConfigError, ConfigIssue};
pub use registry::Registry;
pub use validate::{check_delivery_url, check_url};

use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::Arc;

pub use process::*;
pub use province::{ProvinceDef, StreamDef};
pub use site::*;
pub use warnings::{Feed as WarningFeed, Geocode as WarningGeocode, Warnings};

/// The whole configuration as one file holds it: the process settings
/// (`mqtt`, `http`, `auth`, `store`, `live`, `ingest`, `influx`) and the
/// site definition (`commune`, `report`, `devices`, villages, devices,
/// `procedure`, indicators), plus the typed [`Site`] built at load.
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
    /// Mapped sources: devices that publish in their own format
    /// (zigbee2mqtt, Tasmota, Shelly, ESPHome, ThingsBoard), see [`mapped`].
    #[serde(default)]
    pub mapped: Vec<mapped::MappedDef>,
    /// Time-series sink (InfluxDB 2/3, VictoriaMetrics); off without `url`.
    #[serde(default)]
    pub influx: Influx,
    /// Official warnings (CAP 1.2): profile, geocodes, feeds.
    #[serde(default)]
    pub warnings: Warnings,
    /// Durable HTTP delivery: worker limits and named targets.
    #[serde(default)]
    pub delivery: Delivery,
    /// The uplink to the province (NATS JetStream); off without `url`.
    #[serde(default)]
    pub uplink: Uplink,
    /// Province mode only (`serve --sites DIR`): who this instance is and
    /// its peers (docs/PROVINCE.md §6).
    #[serde(default)]
    pub province: Option<province::ProvinceDef>,
    /// Province mode only: the JetStream stream the communes' journals
    /// arrive on.
    #[serde(default)]
    pub stream: province::StreamDef,
    /// The commune's own alert rules, grouping timers, escalation ladder.
    #[serde(default)]
    pub alerts: alerts::AlertsDef,
    /// Loudspeaker broadcasts: retries, unreachable clusters, repeats.
    #[serde(default)]
    pub broadcasts: broadcasts::BroadcastsDef,
    /// The site in typed form, built by [`load`] / [`load_str`] from the
    /// site sections above (empty on a `Config` not made by them).
    #[serde(skip)]
    pub site: Arc<Site>,
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
