//! The shared vocabulary: plain types that the config, the model and every
//! other room use (producer families, device classes, event kinds, targets).
//! This room imports nothing from the crate, so `config` and `model` can
//! both use it without depending on each other.

use serde::{Deserialize, Serialize};

mod hazard;
mod target;

pub use hazard::{Hazard, LevelError, RiskLevel};
pub use target::{Op, Target};

/// The producer family an event came from. One decoder exists per family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// Security and AI cameras, publishing on `ioc/{commune}/camera/...`
    /// directly or through Frigate (`frigate/...`, marked `via = "frigate"`).
    Camera,
    /// Smart loudspeaker clusters.
    Speaker,
    /// The administrative-procedure (dossier) system.
    Procedure,
    /// Sensors (rain, water level, temperature, ...).
    Sensor,
}

impl Source {
    /// All families, in a stable order.
    pub const ALL: [Source; 4] = [
        Source::Camera,
        Source::Speaker,
        Source::Procedure,
        Source::Sensor,
    ];

    /// The lowercase name used in config, topics and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Camera => "camera",
            Source::Speaker => "speaker",
            Source::Procedure => "procedure",
            Source::Sensor => "sensor",
        }
    }

    /// Parse the lowercase name.
    pub fn parse(s: &str) -> Option<Source> {
        Source::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Source {
    /// The event kinds the decoders produce for this family (a filter's
    /// `event` must name one of them).
    pub fn event_kinds(self) -> &'static [&'static str] {
        match self {
            Source::Camera => &[
                "detection",
                "count",
                "intrusion",
                "fire",
                "smoke",
                "tamper",
                "status",
                // Frigate: objects, reviews, availability.
                "detection_update",
                "detection_end",
                "review_new",
                "review_update",
                "review_end",
                "frigate_available",
            ],
            Source::Speaker => &["status", "session_start", "session_end"],
            Source::Procedure => &["received", "resolved", "paid", "progress"],
            Source::Sensor => &["status", "telemetry"],
        }
    }
}

/// The class of a registered device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum DeviceClass {
    /// A camera (direct or through Frigate).
    Camera,
    /// A loudspeaker cluster.
    Speaker,
    /// A sensor.
    Sensor,
}

impl DeviceClass {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceClass::Camera => "camera",
            DeviceClass::Speaker => "speaker",
            DeviceClass::Sensor => "sensor",
        }
    }

    /// Parse the lowercase name.
    pub fn parse(s: &str) -> Option<DeviceClass> {
        match s {
            "camera" => Some(DeviceClass::Camera),
            "speaker" => Some(DeviceClass::Speaker),
            "sensor" => Some(DeviceClass::Sensor),
            _ => None,
        }
    }
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

/// What the registry knows about one device.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceInfo {
    /// Device id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Class.
    pub class: DeviceClass,
    /// Village id.
    pub village: Option<String>,
    /// Whether the device reports over MQTT (legacy FE radio stations do not)
    /// and so counts in availability.
    pub reporting: bool,
}
