//! Alerts: the commune's own rules and the official warnings become alerts
//! with a lifecycle (firing/resolved × unacknowledged/acknowledged, one
//! active alert per fingerprint), grouped, silenced, inhibited, escalated
//! up a ladder of people, and notified to webhooks through the durable
//! delivery outbox.
//!
//! - [`engine`]: the task (journal cursor, warnings of each commit, rules,
//!   ends, notifications) and the [`Board`] it publishes;
//! - [`notify`]: due alerts, grouping, silences, inhibition, escalation,
//!   the webhook payload into the delivery outbox;
//! - [`eval`]: the rule evaluator, pure and driven by an explicit `now`;
//! - [`warnings`]: warnings (`crate::warnings::WarningView`) → alerts;
//! - [`store`]: the tables (one active alert per fingerprint by a UNIQUE
//!   partial index), silences, the engine's events cursor;
//! - [`mirror`]: the province's copy of a commune's alerts, from its
//!   journal entries;
//! - [`template`]: Vietnamese texts;
//! - [`model`]: the alert, signals, silences.
//!
//! This room reads `config`, `model`, `devices`, `journal` (events),
//! `warnings` (the read model), `state`, `delivery` and `store`; it never uses `api` or `live`.

pub mod engine;
pub mod eval;
pub mod mirror;
pub mod model;
pub mod notify;
pub mod store;
pub mod template;
pub mod warnings;

pub use engine::{run, Board, BoardValue};
pub use model::{Alert, AlertKind, AlertState, Matcher, Raise, Severity, Signal, Silence};
pub use store::{ActionOutcome, AlertError, AlertQuery, AlertStore};

use chrono::{DateTime, Utc};

/// Where the engine takes `now` from: the system clock in production, a
/// hand-moved clock in tests.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// The current time.
    fn now(&self) -> DateTime<Utc>;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock moved by hand (tests).
#[derive(Debug)]
pub struct ManualClock(parking_lot::Mutex<DateTime<Utc>>);

impl ManualClock {
    /// Starting at `t`.
    pub fn new(t: DateTime<Utc>) -> ManualClock {
        ManualClock(parking_lot::Mutex::new(t))
    }

    /// Move forward by `d`.
    pub fn advance(&self, d: chrono::TimeDelta) {
        *self.0.lock() += d;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock()
    }
}
