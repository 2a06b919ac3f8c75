//! Loudspeaker broadcasts (issue 14): an official warning, or an
//! operator's own text, becomes a plan for the speaker clusters serving
//! the villages it covers; after an operator approves it, the plan goes
//! out as durable commands over MQTT (`ioc/{commune}/speaker/{id}/cmd`,
//! QoS 1, idempotency key and expiry; docs/PROTOCOL.md §8), retried with
//! backoff until acknowledged or expired; coverage is tracked per cluster
//! and village, and villages the speakers cannot reach get a manual task
//! (call the village head).
//!
//! - [`plan`]: drafting (pure): clusters of villages, the Vietnamese text,
//!   priorities, command keys and payloads;
//! - [`store`]: the tables (migration 0006), approval, cancel, the due
//!   commands, acknowledgements and sessions, tasks, coverage and
//!   indicators;
//! - [`mirror`]: the province's copy of a commune's plans, from its
//!   journal entries;
//! - [`worker`]: the serve task: on the one MQTT connection, sends due
//!   commands, takes acks and sessions, follows warnings (Update re-plans,
//!   Cancel stops), publishes the overview for the live `broadcasts`
//!   family.
//!
//! This room reads `config`, `warnings` (the read model) and `store`; it
//! never uses `api` or `live`.

pub mod mirror;
pub mod plan;
pub mod store;
pub mod worker;

use std::sync::Arc;

use parking_lot::RwLock;
use serde::{Deserialize, Serialize};

/// Bulletin priority classes of Thông tư 39/2020/TT-BTTTT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    /// Bản tin thông thường: waits for free clusters.
    Routine,
    /// Bản tin ưu tiên: before routine ones, waits for free clusters.
    Priority,
    /// Bản tin khẩn cấp: plays at once, pre-empting what a cluster plays.
    Emergency,
}

impl Priority {
    /// The code (API, store, command payload).
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Routine => "routine",
            Priority::Priority => "priority",
            Priority::Emergency => "emergency",
        }
    }

    /// Parse the code.
    pub fn parse(s: &str) -> Option<Priority> {
        [Priority::Routine, Priority::Priority, Priority::Emergency]
            .into_iter()
            .find(|p| p.as_str() == s)
    }

    /// Vietnamese name.
    pub fn label_vi(self) -> &'static str {
        match self {
            Priority::Routine => "Thông thường",
            Priority::Priority => "Ưu tiên",
            Priority::Emergency => "Khẩn cấp",
        }
    }

    /// All, in rising order.
    pub const ALL: [Priority; 3] = [Priority::Routine, Priority::Priority, Priority::Emergency];
}

/// Why a broadcast action was refused or failed. Vietnamese: shown to the
/// operator as it is.
#[derive(Debug, thiserror::Error)]
pub enum BroadcastError {
    /// No such broadcast.
    #[error("Không có bản tin phát thanh số {0}.")]
    NotFound(i64),
    /// No such task.
    #[error("Không có công việc số {0}.")]
    NoTask(i64),
    /// The broadcast is not a draft (approve) or already ended (cancel).
    #[error("Bản tin phát thanh số {id} đang ở trạng thái `{state}`, không thể {action}.")]
    WrongState {
        /// The broadcast.
        id: i64,
        /// Its state.
        state: String,
        /// What was asked (Vietnamese verb).
        action: &'static str,
    },
    /// The task is already closed.
    #[error("Công việc số {0} đã đóng.")]
    TaskClosed(i64),
    /// A draft that does not hold together.
    #[error("{0}")]
    Invalid(String),
    /// SQLite failed.
    #[error("lỗi cơ sở dữ liệu phát thanh: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// Numbering the change in the journal failed.
    #[error("lỗi đánh số nhật ký phát thanh: {0}")]
    Journal(#[from] crate::journal::JournalError),
}

/// The latest overview (list with coverage and indicators) the worker
/// computed, for the live `broadcasts` family.
#[derive(Debug, Default)]
pub struct Board {
    inner: RwLock<(u64, Option<Arc<serde_json::Value>>)>,
}

impl Board {
    /// Replace the overview (bumps the version when it changed).
    pub fn set(&self, v: serde_json::Value) {
        let mut g = self.inner.write();
        if g.1.as_deref() != Some(&v) {
            g.0 += 1;
            g.1 = Some(Arc::new(v));
        }
    }

    /// The version and the overview, if any was computed.
    pub fn get(&self) -> (u64, Option<Arc<serde_json::Value>>) {
        let g = self.inner.read();
        (g.0, g.1.clone())
    }
}
