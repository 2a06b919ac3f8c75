//! `[warnings]`: official warnings (CAP 1.2 bulletins): size limit, the
//! Vietnamese profile (risk-level parameter, hazard codes and phrases),
//! geocodes of the commune's villages, feeds to poll.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::vocab::Hazard;

/// `[warnings]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Warnings {
    /// Largest bulletin accepted, bytes.
    pub max_bytes: usize,
    /// The `<parameter>` valueName that carries the Vietnamese risk level.
    pub level_parameter: String,
    /// The `<eventCode>` valueNames whose value names the hazard.
    pub hazard_code_names: Vec<String>,
    /// eventCode value → hazard (added to the built-in codes, overriding).
    pub hazard_codes: BTreeMap<String, Hazard>,
    /// Phrase in the `event` text → hazard (tried before the built-in
    /// phrases of each hazard).
    pub hazard_phrases: BTreeMap<String, Hazard>,
    /// Geocodes that name villages of the commune.
    #[serde(rename = "geocode")]
    pub geocodes: Vec<Geocode>,
    /// How often, seconds, expired warnings are swept.
    pub sweep_secs: u64,
    /// Ended warnings listed by `GET /api/warnings` for this many days.
    pub recent_days: u32,
    /// Feeds to poll.
    pub feeds: Vec<Feed>,
}

impl Default for Warnings {
    fn default() -> Self {
        Warnings {
            max_bytes: 256 * 1024,
            level_parameter: "VN-CAP-DO-RUI-RO".into(),
            hazard_code_names: vec!["VN-QD18-HAZARD".into()],
            hazard_codes: BTreeMap::new(),
            hazard_phrases: BTreeMap::new(),
            geocodes: Vec::new(),
            sweep_secs: 30,
            recent_days: 7,
            feeds: Vec::new(),
        }
    }
}

/// `[[warnings.geocode]]`: a geocode that covers villages.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Geocode {
    /// `valueName`, e.g. `VN-MA-DVHC`.
    pub name: String,
    /// `value`, e.g. the commune's administrative code.
    pub value: String,
    /// Village ids it covers; empty: every village of the commune.
    #[serde(default)]
    pub villages: Vec<String>,
}

/// `[[warnings.feeds]]`: an Atom/RSS feed of CAP bulletins, or one CAP
/// document, polled.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Feed {
    /// Short name (logs, dead-letter topic `feed/{name}`).
    pub name: String,
    /// URL (http or https).
    pub url: String,
    /// Seconds between polls.
    #[serde(default = "default_interval")]
    pub interval_secs: u64,
    /// Seconds before one request gives up.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// Longest wait between retries after failures, seconds.
    #[serde(default = "default_backoff")]
    pub max_backoff_secs: u64,
}

fn default_interval() -> u64 {
    300
}
fn default_timeout() -> u64 {
    10
}
fn default_backoff() -> u64 {
    600
}
