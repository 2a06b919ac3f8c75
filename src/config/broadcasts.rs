//! `[broadcasts]`: loudspeaker broadcasts (src/broadcasts): command
//! retries, when a silent cluster counts as unreachable, default repeats.
//!
//! ```toml
//! [broadcasts]
//! auto_draft = true
//! retry_initial_ms = 2000
//! retry_max_ms = 60000
//! ack_timeout_secs = 180
//! repeats = 3
//! gap_secs = 3600
//! expiry_mins = 180
//! tick_ms = 250
//!
//! # The message in the villages' ethnic language (a village's
//! # `language`), recorded by the commune: for one hazard, or for any.
//! [[broadcasts.ethnic]]
//! language = "Hmông"
//! hazard = "flash_flood"
//! text = "…"
//! ```

use serde::{Deserialize, Serialize};

/// `[broadcasts]` as written.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BroadcastsDef {
    /// Draft a broadcast from every active warning that covers villages.
    pub auto_draft: bool,
    /// First wait before a command is sent again without an acknowledgement.
    pub retry_initial_ms: u64,
    /// Longest wait between two sends of a command (the wait doubles).
    pub retry_max_ms: u64,
    /// A cluster that has not acknowledged a command this long after its
    /// first send is `unreachable` (sends go on until the command expires).
    pub ack_timeout_secs: u64,
    /// Plays per cluster of a drafted broadcast (Điều 36 QĐ 18/2021:
    /// repeat until a newer bulletin).
    pub repeats: u32,
    /// Seconds between the starts of two plays.
    pub gap_secs: u64,
    /// Lifetime of a broadcast whose bulletin gives no `expires`, minutes.
    pub expiry_mins: u64,
    /// How often due commands and deadlines are checked, milliseconds.
    pub tick_ms: u64,
    /// Texts in the villages' ethnic languages, played after the
    /// Vietnamese.
    pub ethnic: Vec<EthnicText>,
}

/// `[[broadcasts.ethnic]]`: the message a broadcast relaying a bulletin
/// carries in an ethnic language (the commune's own recorded translation:
/// nobody machine-translates a warning into Hmông).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EthnicText {
    /// The language, as villages name it in `language` (e.g. `Hmông`).
    pub language: String,
    /// The hazard code (`flash_flood`, `landslide`, …; QĐ 18/2021) it is
    /// for; without it, for any hazard.
    #[serde(default)]
    pub hazard: Option<String>,
    /// The text.
    pub text: String,
}

impl BroadcastsDef {
    /// The text in `language` for `hazard`: the hazard's own, else the
    /// language's text for any hazard.
    pub fn ethnic_text(&self, language: &str, hazard: Option<&str>) -> Option<&str> {
        let of = |h: Option<&str>| {
            self.ethnic
                .iter()
                .find(|e| e.language == language && e.hazard.as_deref() == h)
                .map(|e| e.text.as_str())
        };
        hazard.and_then(|h| of(Some(h))).or_else(|| of(None))
    }
}

impl Default for BroadcastsDef {
    fn default() -> Self {
        BroadcastsDef {
            auto_draft: true,
            retry_initial_ms: 2000,
            retry_max_ms: 60_000,
            ack_timeout_secs: 180,
            repeats: 3,
            gap_secs: 3600,
            expiry_mins: 180,
            tick_ms: 250,
            ethnic: Vec::new(),
        }
    }
}
