//! The read model of one official warning, as the rest of the house sees
//! it (the contract between `warnings` and `alerts`, COORD.md): the current
//! state of a CAP bulletin chain, its hazard and risk level, the villages
//! it covers.

use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};

use crate::vocab::{Hazard, RiskLevel};

/// Where a warning stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WarningState {
    /// In force (an `Alert`).
    Active,
    /// In force, changed by an `Update`.
    Updated,
    /// Ended by a `Cancel`.
    Cancelled,
    /// Ended by its `expires` time.
    Expired,
    /// Valid, but it covers no village of this commune.
    NotForCommune,
}

impl WarningState {
    /// Whether the warning is in force.
    pub fn is_active(self) -> bool {
        matches!(self, WarningState::Active | WarningState::Updated)
    }
}

/// One warning (the newest bulletin of its chain).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WarningView {
    /// `sender|identifier|sent` of this bulletin.
    pub id: String,
    /// Where it stands.
    pub state: WarningState,
    /// The hazard (QĐ 18/2021), when known.
    pub hazard: Option<Hazard>,
    /// The Vietnamese risk level, when given.
    pub level: Option<RiskLevel>,
    /// Ids of the villages it covers.
    pub villages: Vec<String>,
    /// CAP `event` text.
    pub event: String,
    /// The Vietnamese headline, when there is one.
    pub headline_vi: Option<String>,
    /// The issuing agency (`senderName`).
    pub sender_name: Option<String>,
    /// When the bulletin was issued (with the offset it was written with).
    pub sent: DateTime<FixedOffset>,
    /// When it ends by itself.
    pub expires: Option<DateTime<FixedOffset>>,
    /// The id of the first bulletin of its chain, when this one updates or
    /// cancels an earlier one.
    pub supersedes: Option<String>,
}
