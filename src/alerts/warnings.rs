//! Official warnings become alerts: an active warning that covers villages
//! raises an alert of kind `warning` (official), whose fingerprint is the
//! first bulletin of its chain, so an Update keeps the same alert (one more
//! occurrence, new level and villages) and a Cancel or the expiry resolves
//! it. A warning of level ≥ 3 skips the grouping delays.

use chrono::Utc;
use serde_json::json;

use super::model::{AlertKind, Raise, Severity, Signal};
use super::template::{warning_text, Names};
use crate::warnings::{WarningState, WarningView};

/// The fingerprint of a warning chain, from the id of its first bulletin.
pub fn fingerprint(chain_root: &str) -> String {
    format!("warning:{chain_root}")
}

/// Severity from the risk level (the level is the official one; severity
/// only orders alerts).
fn severity(level: Option<u8>) -> Severity {
    match level {
        Some(l) if l >= 3 => Severity::Critical,
        Some(2) => Severity::Major,
        _ => Severity::Minor,
    }
}

/// The signal for one changed warning. `root` is the chain's first
/// bulletin id (the caller resolves `supersedes` through the store).
pub fn signal(w: &WarningView, root: &str, names: &Names) -> Option<Signal> {
    let fp = fingerprint(root);
    match w.state {
        WarningState::Active if !w.villages.is_empty() => {
            let (title, message) = warning_text(w, names);
            let level = w.level.map(|l| l.get());
            let expires = w.expires.map(|e| e.with_timezone(&Utc));
            Some(Signal::Fire(Box::new(Raise {
                fingerprint: fp,
                kind: AlertKind::Warning,
                rule: None,
                official: true,
                severity: severity(level),
                hazard: w.hazard,
                level,
                villages: w.villages.clone(),
                device: None,
                title,
                message,
                details: json!({
                    "bulletin": w.id,
                    "event": w.event,
                    "headline": w.headline_vi,
                    "sender_name": w.sender_name,
                    "sent": w.sent.to_rfc3339(),
                    "expires": w.expires.map(|e| e.to_rfc3339()),
                }),
                reference: Some(w.id.clone()),
                ends_at: expires,
                urgent: level.is_some_and(|l| l >= 3),
            })))
        }
        // An `Updated` bulletin was replaced: its update (Active, with
        // `supersedes`) carries the chain on under the same fingerprint.
        WarningState::Updated => None,
        // In force but covering no village (or no longer any): nothing to
        // raise, and an alert the chain raised before is resolved.
        WarningState::Active | WarningState::NotForCommune => {
            Some(Signal::Resolve { fingerprint: fp })
        }
        WarningState::Cancelled | WarningState::Expired => {
            Some(Signal::Resolve { fingerprint: fp })
        }
    }
}
