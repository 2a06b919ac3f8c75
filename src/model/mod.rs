//! Plain data types shared by every room of the house: raw MQTT messages,
//! decoded events, dead letters and their reason codes. No I/O here.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub use crate::vocab::{DeviceClass, DeviceInfo, Source};

/// One MQTT message as it arrived, before decoding.
#[derive(Debug, Clone)]
pub struct Raw {
    /// The MQTT topic.
    pub topic: String,
    /// The payload bytes, untouched.
    pub payload: Vec<u8>,
    /// When this process received it.
    pub received_at: DateTime<Utc>,
    /// Delivered from the broker's retained store (an old status replayed on
    /// subscribe), not sent just now by the device.
    pub retained: bool,
}

/// A decoded, validated event. Everything downstream (journal, devices,
/// indicators, the live stream) works on this type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Producer family.
    pub source: Source,
    /// What happened, e.g. `received`, `resolved`, `paid`, `detection`,
    /// `status`, `session_start`, `session_end`, `telemetry`.
    pub kind: String,
    /// Device id from the registry (or the producer's own id for unknown
    /// devices, which never reach this type: they become dead letters).
    pub device: Option<String>,
    /// Village (thôn/bản) id, from the device registry or the payload.
    pub village: Option<String>,
    /// Event time: from the device when plausible, else the received time.
    pub ts: DateTime<Utc>,
    /// When this process received the message.
    pub received_at: DateTime<Utc>,
    /// Per-device sequence number, when the producer sends one.
    pub seq: Option<u64>,
    /// Normalised attributes (channel, outcome, label, count, state, metric
    /// values...). Indicator filters match on these.
    pub attrs: Map<String, Value>,
    /// Key under which duplicates are recognised (see docs/PROTOCOL.md).
    pub dedup_key: String,
    /// Replayed from the broker's retained store.
    #[serde(default)]
    pub retained: bool,
}

impl Event {
    /// An attribute as a string, if it is one.
    pub fn attr_str(&self, key: &str) -> Option<&str> {
        self.attrs.get(key).and_then(Value::as_str)
    }

    /// An attribute as a number, if it is one.
    pub fn attr_f64(&self, key: &str) -> Option<f64> {
        self.attrs.get(key).and_then(Value::as_f64)
    }
}

/// Why a message could not become an event. The codes are a stable contract
/// (API, metrics, docs/PROTOCOL.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// The payload is larger than `ingest.max_payload_bytes`.
    Oversized,
    /// The payload is not UTF-8 where text was expected.
    InvalidUtf8,
    /// The payload is not valid JSON.
    InvalidJson,
    /// A field has the wrong type or an unknown value.
    InvalidField,
    /// A required field is missing.
    MissingField,
    /// The topic matches no known producer family.
    UnknownTopic,
    /// The topic names another commune.
    WrongCommune,
    /// The device id is not in the registry.
    UnknownDevice,
    /// The timestamp cannot be parsed.
    InvalidTimestamp,
    /// The timestamp is further in the future than `ingest.max_future_skew_secs`.
    TimestampInFuture,
    /// The timestamp is older than `ingest.max_age_days`.
    TimestampTooOld,
    /// An official warning that is not a valid CAP 1.2 bulletin of the
    /// commune's profile (the detail names the rule).
    InvalidCap,
}

impl Reason {
    /// All reasons, in a stable order.
    pub const ALL: [Reason; 12] = [
        Reason::Oversized,
        Reason::InvalidUtf8,
        Reason::InvalidJson,
        Reason::InvalidField,
        Reason::MissingField,
        Reason::UnknownTopic,
        Reason::WrongCommune,
        Reason::UnknownDevice,
        Reason::InvalidTimestamp,
        Reason::TimestampInFuture,
        Reason::TimestampTooOld,
        Reason::InvalidCap,
    ];

    /// The stable snake_case code.
    pub fn code(self) -> &'static str {
        match self {
            Reason::Oversized => "oversized",
            Reason::InvalidUtf8 => "invalid_utf8",
            Reason::InvalidJson => "invalid_json",
            Reason::InvalidField => "invalid_field",
            Reason::MissingField => "missing_field",
            Reason::UnknownTopic => "unknown_topic",
            Reason::WrongCommune => "wrong_commune",
            Reason::UnknownDevice => "unknown_device",
            Reason::InvalidTimestamp => "invalid_timestamp",
            Reason::TimestampInFuture => "timestamp_in_future",
            Reason::TimestampTooOld => "timestamp_too_old",
            Reason::InvalidCap => "invalid_cap",
        }
    }

    /// Parse a code.
    pub fn parse(s: &str) -> Option<Reason> {
        Reason::ALL.into_iter().find(|r| r.code() == s)
    }
}

/// A message that could not be decoded: the reason and a human detail.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    /// Stable reason code.
    pub reason: Reason,
    /// Human-readable detail (English, for operators and logs).
    pub detail: String,
    /// The producer family, when the topic told us.
    pub source: Option<Source>,
    /// The device id named by the topic, when there is one.
    pub device: Option<String>,
}

impl Rejection {
    /// A rejection with a reason and a detail.
    pub fn new(reason: Reason, detail: impl Into<String>) -> Self {
        Rejection {
            reason,
            detail: detail.into(),
            source: None,
            device: None,
        }
    }

    /// Attach the producer family and device.
    pub fn from_device(mut self, source: Source, device: Option<&str>) -> Self {
        self.source = Some(source);
        self.device = device.map(str::to_owned);
        self
    }
}

/// A dead letter as stored and listed by `GET /api/dead-letters`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DeadLetter {
    /// Journal id.
    pub id: i64,
    /// Stable reason code.
    pub reason: Reason,
    /// Human detail.
    pub detail: String,
    /// MQTT topic.
    pub topic: String,
    /// The device named by the topic, if any.
    pub device: Option<String>,
    /// A bounded excerpt of the payload (lossy UTF-8).
    pub excerpt: String,
    /// Payload size in bytes.
    pub size: usize,
    /// When it was received.
    pub received_at: DateTime<Utc>,
    /// Who acknowledged it (an operator), if anyone did.
    #[serde(default)]
    pub acked_by: Option<String>,
    /// When it was acknowledged.
    #[serde(default)]
    pub acked_at: Option<DateTime<Utc>>,
}

/// The reported state of a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceState {
    /// Nothing heard yet.
    Unknown,
    /// Reporting and healthy.
    Online,
    /// Said it is offline (or its LWT fired).
    Offline,
    /// Reporting a fault.
    Fault,
    /// A loudspeaker cluster that is playing a broadcast.
    Broadcasting,
}

impl DeviceState {
    /// Parse the wire form.
    pub fn parse(s: &str) -> Option<DeviceState> {
        match s {
            "online" => Some(DeviceState::Online),
            "offline" => Some(DeviceState::Offline),
            "fault" => Some(DeviceState::Fault),
            "broadcasting" => Some(DeviceState::Broadcasting),
            "unknown" => Some(DeviceState::Unknown),
            _ => None,
        }
    }

    /// The wire form.
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceState::Unknown => "unknown",
            DeviceState::Online => "online",
            DeviceState::Offline => "offline",
            DeviceState::Fault => "fault",
            DeviceState::Broadcasting => "broadcasting",
        }
    }

    /// Whether this state counts as available.
    pub fn is_up(self) -> bool {
        matches!(self, DeviceState::Online | DeviceState::Broadcasting)
    }
}
