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
        }
    }
}
