//! The alert as stored and answered, what the evaluator signals, silences
//! and their matchers.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use crate::config::alerts::{AlertKind, Severity};
use crate::vocab::Hazard;

/// Firing or resolved (the other axis is acknowledged or not).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertState {
    /// The condition holds (or the warning is in force).
    Firing,
    /// Over.
    Resolved,
}

impl AlertState {
    /// The name in the store and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Firing => "firing",
            AlertState::Resolved => "resolved",
        }
    }

    /// Parse the name.
    pub fn parse(s: &str) -> Option<AlertState> {
        match s {
            "firing" => Some(AlertState::Firing),
            "resolved" => Some(AlertState::Resolved),
            _ => None,
        }
    }
}

/// One alert (PROTOCOL.md §7 `alerts`, `GET /api/alerts`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alert {
    /// Row id (the `{id}` of the ack/resolve routes).
    pub id: i64,
    /// Stable identity.
    pub fingerprint: String,
    /// What it is about.
    pub kind: AlertKind,
    /// The rule that raised it (none for warnings).
    pub rule: Option<String>,
    /// An official warning relayed (true) or the commune's own rule (false:
    /// internal, shown as such).
    pub official: bool,
    /// Severity.
    pub severity: Severity,
    /// Hazard (warnings).
    pub hazard: Option<Hazard>,
    /// Risk level 1–5 (warnings).
    pub level: Option<u8>,
    /// Village ids.
    pub villages: Vec<String>,
    /// The device, when one device is concerned.
    pub device: Option<String>,
    /// Vietnamese title.
    pub title: String,
    /// Vietnamese message (the template's text).
    pub message: String,
    /// Details (reading, event, issuer, issue time...).
    pub details: serde_json::Value,
    /// `firing` or `resolved`.
    pub state: AlertState,
    /// The data behind a firing alert stopped coming (it stays firing).
    pub stale: bool,
    /// Times it was raised while active.
    pub occurrences: u32,
    /// First raised.
    pub first_seen: DateTime<Utc>,
    /// Last raised.
    pub last_seen: DateTime<Utc>,
    /// Resolves by itself then.
    pub ends_at: Option<DateTime<Utc>>,
    /// When it was resolved.
    pub resolved_at: Option<DateTime<Utc>>,
    /// By whom (`system` when by its rule or the bulletin).
    pub resolved_by: Option<String>,
    /// When it was acknowledged.
    pub acked_at: Option<DateTime<Utc>>,
    /// By whom.
    pub acked_by: Option<String>,
    /// Escalation: the next ladder step (0 = nobody reached yet).
    pub escalation_step: u32,
    /// The next notification's time, while one is planned.
    pub notify_at: Option<DateTime<Utc>>,
    /// Silenced by these silences now.
    pub silenced_by: Vec<i64>,
    /// Inhibited by these alerts now.
    pub inhibited_by: Vec<i64>,
}

impl Alert {
    /// `{state}_{ack}`: `firing_unack`, `firing_ack`, `resolved_unack`,
    /// `resolved_ack` (ThingsBoard's 2 × 2).
    pub fn status(&self) -> &'static str {
        match (self.state, self.acked_at.is_some()) {
            (AlertState::Firing, false) => "firing_unack",
            (AlertState::Firing, true) => "firing_ack",
            (AlertState::Resolved, false) => "resolved_unack",
            (AlertState::Resolved, true) => "resolved_ack",
        }
    }

    /// The value of a matcher label: `kind`, `rule`, `severity`, `hazard`,
    /// `level`, `device`, `fingerprint`, `official`; `village` is matched
    /// against each village.
    pub fn label(&self, name: &str) -> Vec<String> {
        match name {
            "kind" => vec![self.kind.as_str().to_owned()],
            "rule" => self.rule.iter().cloned().collect(),
            "severity" => vec![self.severity.as_str().to_owned()],
            "hazard" => self.hazard.iter().map(|h| h.as_str().to_owned()).collect(),
            "level" => self.level.iter().map(u8::to_string).collect(),
            "device" => self.device.iter().cloned().collect(),
            "fingerprint" => vec![self.fingerprint.clone()],
            "official" => vec![self.official.to_string()],
            "village" => self.villages.clone(),
            _ => Vec::new(),
        }
    }
}

/// What raising an alert carries (from a rule or a warning).
#[derive(Debug, Clone, PartialEq)]
pub struct Raise {
    /// Stable identity.
    pub fingerprint: String,
    /// Kind.
    pub kind: AlertKind,
    /// Rule id.
    pub rule: Option<String>,
    /// Official warning.
    pub official: bool,
    /// Severity.
    pub severity: Severity,
    /// Hazard.
    pub hazard: Option<Hazard>,
    /// Risk level.
    pub level: Option<u8>,
    /// Villages.
    pub villages: Vec<String>,
    /// Device.
    pub device: Option<String>,
    /// Vietnamese title.
    pub title: String,
    /// Vietnamese message.
    pub message: String,
    /// Details.
    pub details: serde_json::Value,
    /// Newest bulletin id.
    pub reference: Option<String>,
    /// Resolves by itself at.
    pub ends_at: Option<DateTime<Utc>>,
    /// Skip grouping delays (warnings of level ≥ 3).
    pub urgent: bool,
}

/// A change the evaluator (or the warnings) asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Signal {
    /// Raise (or raise again) an alert.
    Fire(Box<Raise>),
    /// The condition is over.
    Resolve {
        /// Which alert.
        fingerprint: String,
    },
    /// The data behind a firing alert stopped (true) or came back (false).
    Stale {
        /// Which alert.
        fingerprint: String,
        /// Stale or not.
        stale: bool,
    },
}

/// One matcher of a silence: the alert's label `name` equals `value`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Matcher {
    /// `kind`, `rule`, `severity`, `hazard`, `level`, `village`, `device`,
    /// `fingerprint` or `official`.
    pub name: String,
    /// The value.
    pub value: String,
}

/// The label names a matcher may use.
pub const LABELS: &[&str] = &[
    "kind",
    "rule",
    "severity",
    "hazard",
    "level",
    "village",
    "device",
    "fingerprint",
    "official",
];

impl Matcher {
    /// Whether `alert` has this label value.
    pub fn matches(&self, alert: &Alert) -> bool {
        alert.label(&self.name).iter().any(|v| v == &self.value)
    }
}

/// A silence.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Silence {
    /// Id.
    pub id: i64,
    /// Every matcher must match.
    pub matchers: Vec<Matcher>,
    /// From.
    pub starts_at: DateTime<Utc>,
    /// Until.
    pub ends_at: DateTime<Utc>,
    /// Who made it.
    pub created_by: String,
    /// Why.
    pub comment: String,
    /// When it was made.
    pub created_at: DateTime<Utc>,
    /// Who ended it early (DELETE), if anyone.
    pub ended_by: Option<String>,
}

impl Silence {
    /// `pending`, `active` or `expired` at `now`.
    pub fn status(&self, now: DateTime<Utc>) -> &'static str {
        if now >= self.ends_at {
            "expired"
        } else if now < self.starts_at {
            "pending"
        } else {
            "active"
        }
    }

    /// Active at `now` and matching `alert`.
    pub fn silences(&self, alert: &Alert, now: DateTime<Utc>) -> bool {
        self.status(now) == "active" && self.matchers.iter().all(|m| m.matches(alert))
    }
}
