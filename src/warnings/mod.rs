//! Official disaster warnings: CAP 1.2 bulletins parsed and validated
//! ([`cap`]), profiled ([`profile`]: Vietnamese risk level, hazard, the
//! commune's villages covered), chained, expired and stored ([`store`]).
//!
//! Three ways in, one validator ([`Checker`]) and one writer (the commit
//! pipeline): MQTT `ioc/{commune}/warning/cap`, `POST /api/warnings`
//! (submitted to the pipeline as topic [`API_TOPIC`]) and the feed poller
//! ([`feed`], topic `feed/{name}`). A bulletin that fails is a dead letter
//! `invalid_cap` whose detail names the rule; nothing of it is applied.
//! Changed warnings reach the other rooms as [`WarningView`]s in
//! `state::Committed::warnings`.

pub mod cap;
pub mod feed;
pub mod profile;
pub mod service;
pub mod store;
mod text;
mod view;

pub use cap::{Alert, CapError};
pub use profile::{MatchWay, Profile, Profiled, VillageMatch};
pub use service::Service;
pub use store::Bulletin;
pub use view::{WarningState, WarningView};

use chrono::{DateTime, Utc};

use crate::config::Config;

/// The pseudo-topic of bulletins posted to `POST /api/warnings`.
pub const API_TOPIC: &str = "api/warnings";

/// The pseudo-topic of bulletins fetched by the feed named `name`.
pub fn feed_topic(name: &str) -> String {
    format!("feed/{name}")
}

/// The one validator: CAP 1.2 rules, then the profile.
#[derive(Debug, Clone)]
pub struct Checker {
    max_bytes: usize,
    mqtt_topic: String,
    profile: Profile,
}

impl Checker {
    /// Built once from the config.
    pub fn new(config: &Config) -> Checker {
        Checker {
            max_bytes: config.warnings.max_bytes,
            mqtt_topic: format!("ioc/{}/warning/cap", config.commune.id),
            profile: Profile::new(config),
        }
    }

    /// Where a message on `topic` comes from, when it is a bulletin:
    /// `mqtt`, `api` or `feed:{name}`.
    pub fn origin(&self, topic: &str) -> Option<String> {
        if topic == self.mqtt_topic {
            Some("mqtt".into())
        } else if topic == API_TOPIC {
            Some("api".into())
        } else {
            topic
                .strip_prefix("feed/")
                .filter(|n| !n.is_empty() && !n.contains('/'))
                .map(|n| format!("feed:{n}"))
        }
    }

    /// Validate and profile a bulletin.
    pub fn check(&self, bytes: &[u8]) -> Result<(Alert, Profiled), CapError> {
        let alert = cap::parse(bytes, self.max_bytes)?;
        let profiled = self.profile.apply(&alert)?;
        Ok((alert, profiled))
    }

    /// A bulletin ready for the store, or why it is refused.
    pub fn bulletin(
        &self,
        bytes: &[u8],
        origin: String,
        received_at: DateTime<Utc>,
    ) -> Result<Bulletin, CapError> {
        let (alert, profile) = self.check(bytes)?;
        Ok(Bulletin {
            alert,
            profile,
            xml: bytes.to_vec(),
            origin,
            received_at,
        })
    }
}

/// The dead-letter detail of a refused bulletin: the rule, then the
/// English reason.
pub fn refusal_detail(e: &CapError) -> String {
    format!("CAP rule `{}`: {e}", e.rule())
}

#[cfg(test)]
mod tests;
