//! [`WarningView`]: what the rest of the program (alerts, the live
//! `warnings` family, the screen) sees of one official warning.

use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};

use crate::vocab::{Hazard, RiskLevel};

/// Where a warning stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WarningState {
    /// In force: covers villages of the commune, not replaced, cancelled
    /// or expired.
    Active,
    /// Replaced by a later `Update` (the update is the one in force).
    Updated,
    /// Ended by a `Cancel`.
    Cancelled,
    /// Its `expires` time has passed.
    Expired,
    /// Covers no village of the commune: stored and shown, never raised.
    NotForCommune,
}

impl WarningState {
    /// The snake_case code (API, store, live stream).
    pub fn as_str(self) -> &'static str {
        match self {
            WarningState::Active => "active",
            WarningState::Updated => "updated",
            WarningState::Cancelled => "cancelled",
            WarningState::Expired => "expired",
            WarningState::NotForCommune => "not_for_commune",
        }
    }

    /// Parse the code.
    pub fn parse(s: &str) -> Option<WarningState> {
        [
            WarningState::Active,
            WarningState::Updated,
            WarningState::Cancelled,
            WarningState::Expired,
            WarningState::NotForCommune,
        ]
        .into_iter()
        .find(|x| x.as_str() == s)
    }

    /// Vietnamese label for people.
    pub fn label_vi(self) -> &'static str {
        match self {
            WarningState::Active => "Đang hiệu lực",
            WarningState::Updated => "Đã được cập nhật",
            WarningState::Cancelled => "Đã hủy",
            WarningState::Expired => "Hết hiệu lực",
            WarningState::NotForCommune => "Không thuộc địa bàn xã",
        }
    }
}

/// One official warning as the other rooms see it (the contract in
/// COORD: alerts raise an alert of kind `warning` for each active one that
/// covers villages; the live `warnings` family shows them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WarningView {
    /// `sender|identifier|sent` (the CAP triple, `sent` as written).
    pub id: String,
    /// Where it stands.
    pub state: WarningState,
    /// The hazard (from `eventCode` or the `event` text).
    pub hazard: Option<Hazard>,
    /// The Vietnamese risk level (from the `VN-CAP-DO-RUI-RO` parameter).
    pub level: Option<RiskLevel>,
    /// Ids of the commune's villages it covers.
    pub villages: Vec<String>,
    /// The `event` text of the displayed `<info>` (Vietnamese first).
    pub event: String,
    /// The Vietnamese headline, if a Vietnamese `<info>` has one.
    pub headline_vi: Option<String>,
    /// The issuing agency (`senderName`), if given.
    pub sender_name: Option<String>,
    /// When it was issued (`sent`, with its offset).
    pub sent: DateTime<FixedOffset>,
    /// When it ends (`expires` of the displayed `<info>`), if given.
    pub expires: Option<DateTime<FixedOffset>>,
    /// The id of the warning this one replaces or cancels (its last
    /// reference), if any.
    pub supersedes: Option<String>,
}
