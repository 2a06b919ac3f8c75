//! Official warnings become alerts: an active warning that covers villages
//! raises an alert of kind `warning` (official), whose fingerprint is the
//! first bulletin of its chain, so an Update keeps the same alert (one more
//! occurrence, new level and villages) and a Cancel or the expiry resolves
//! it. A warning of level ≥ 3 skips the grouping delays.

use chrono::Utc;
use serde_json::json;

use super::model::{AlertKind, Raise, Severity, Signal};
use super::store::{AlertError, AlertStore};
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

/// The signals for the warnings a batch changed: each chain keeps the
/// fingerprint of the alert its first raised bulletin made (found through
/// the bulletin ids the store keeps), else of its `supersedes`, else its
/// own id.
pub fn signals(
    store: &AlertStore,
    warnings: &[WarningView],
    names: &Names,
) -> Result<Vec<Signal>, AlertError> {
    let mut out = Vec::new();
    for w in warnings {
        let fp = match store.fingerprint_of_ref(&w.id)? {
            Some(fp) => fp,
            None => match &w.supersedes {
                Some(prev) => match store.fingerprint_of_ref(prev)? {
                    Some(fp) => fp,
                    None => fingerprint(prev),
                },
                None => fingerprint(&w.id),
            },
        };
        let root = fp.strip_prefix("warning:").unwrap_or(&fp);
        if let Some(s) = signal(w, root, names) {
            out.push(s);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::alerts::AlertSettings;
    use crate::config::SyncMode;
    use crate::vocab::Hazard;

    fn view(id: &str, state: WarningState, level: u8, supersedes: Option<&str>) -> WarningView {
        WarningView {
            id: id.into(),
            state,
            hazard: Some(Hazard::FlashFlood),
            level: Some(Hazard::FlashFlood.check_level(level).unwrap()),
            villages: vec!["na-da".into()],
            event: "Lũ quét".into(),
            headline_vi: None,
            sender_name: Some("Đài KTTV tỉnh".into()),
            sent: chrono::DateTime::parse_from_rfc3339("2026-07-14T09:30:00+07:00").unwrap(),
            expires: None,
            supersedes: supersedes.map(str::to_owned),
        }
    }

    /// Alert → Update → Cancel: one alert (the first bulletin's
    /// fingerprint), two occurrences, the newer level; the Cancel resolves
    /// it. Official, and a level-3 update is urgent.
    #[test]
    fn an_update_keeps_the_alert_and_a_cancel_resolves_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = AlertStore::open(&dir.path().join("j.db"), SyncMode::Normal).unwrap();
        let set = AlertSettings::default();
        let names = Names::default();
        let now = chrono::Utc::now();
        let s = signals(&store, &[view("A", WarningState::Active, 2, None)], &names).unwrap();
        let ids = store.apply(&s, now, &set, None).unwrap();
        let s = signals(
            &store,
            &[
                view("A", WarningState::Updated, 2, None),
                view("B", WarningState::Active, 3, Some("A")),
            ],
            &names,
        )
        .unwrap();
        assert_eq!(s.len(), 1, "the replaced bulletin raises nothing: {s:?}");
        assert!(matches!(&s[0], Signal::Fire(r) if r.fingerprint == "warning:A" && r.urgent));
        let again = store.apply(&s, now, &set, None).unwrap();
        assert_eq!(ids, again, "the same alert");
        let a = store.get(ids[0]).unwrap().unwrap();
        assert_eq!((a.occurrences, a.level, a.official), (2, Some(3), true));
        assert_eq!(a.kind, AlertKind::Warning);
        let s = signals(
            &store,
            &[view("C", WarningState::Cancelled, 3, Some("B"))],
            &names,
        )
        .unwrap();
        assert_eq!(
            s,
            [Signal::Resolve {
                fingerprint: "warning:A".into()
            }]
        );
        store.apply(&s, now, &set, None).unwrap();
        assert!(store.firing().unwrap().is_empty());
    }
}
