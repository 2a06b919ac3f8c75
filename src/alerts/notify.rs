//! Notifications: which alerts are due, grouping, silences, inhibition,
//! the escalation ladder, and the webhook payload enqueued in the durable
//! delivery outbox (`crate::delivery`).
//!
//! Each firing, unacknowledged alert has a `notify_at`. When it passes and
//! the alert is neither silenced nor inhibited, the alert is sent with the
//! other due alerts of its group to every target of its ladder step; then
//! it climbs one step (`notify_at` = now + the next step's `after`), or,
//! at the top, is repeated every `repeat_interval`. The enqueue and the
//! climb are one transaction, and each request's idempotency key names the
//! alerts, the step, the repeat and the target, so a restart neither sends
//! a step twice nor forgets one. A resolved alert that was notified is
//! notified once more, resolved, to everyone it reached.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use rusqlite::params;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::model::{Alert, AlertKind, Silence};
use super::store::{
    firing_on, journal, ms, silences_on, unnotified_on, AlertError, AlertStore, Change,
};
use super::template::Names;
use crate::config::alerts::AlertSettings;
use crate::delivery::{self, NewDelivery};

/// Payload version of the webhook body.
pub const PAYLOAD_VERSION: &str = "1";

/// Silences and inhibitions that hold an alert back now.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Muted {
    /// Silence ids.
    pub silenced_by: Vec<i64>,
    /// Alert ids.
    pub inhibited_by: Vec<i64>,
}

/// Who mutes `a` at `now`, among `silences` and the `firing` alerts (whose
/// rules' `inhibits` name `a`'s kind and share a village with it).
pub fn muted(
    a: &Alert,
    silences: &[Silence],
    firing: &[Alert],
    settings: &AlertSettings,
    now: DateTime<Utc>,
) -> Muted {
    let silenced_by = silences
        .iter()
        .filter(|s| s.silences(a, now))
        .map(|s| s.id)
        .collect();
    let inhibited_by = if a.kind == AlertKind::Warning {
        Vec::new()
    } else {
        firing
            .iter()
            .filter(|src| src.id != a.id)
            .filter(|src| {
                let Some(rule) = src
                    .rule
                    .as_deref()
                    .and_then(|r| settings.rules.iter().find(|x| x.id == r))
                else {
                    return false;
                };
                rule.inhibits.contains(&a.kind)
                    && src.villages.iter().any(|v| a.villages.contains(v))
            })
            .map(|src| src.id)
            .collect()
    };
    Muted {
        silenced_by,
        inhibited_by,
    }
}

/// One alert in a webhook body.
fn alert_json(a: &Alert, names: &Names) -> Value {
    json!({
        "id": a.id,
        "fingerprint": a.fingerprint,
        "kind": a.kind,
        "rule": a.rule,
        "official": a.official,
        "severity": a.severity,
        "hazard": a.hazard,
        "level": a.level,
        "villages": a.villages,
        "village_names": a.villages.iter().map(|v| names.village(v)).collect::<Vec<_>>(),
        "device": a.device,
        "title": a.title,
        "message": a.message,
        "details": a.details,
        "state": a.state,
        "status": a.status(),
        "stale": a.stale,
        "occurrences": a.occurrences,
        "first_seen": a.first_seen,
        "last_seen": a.last_seen,
        "resolved_at": a.resolved_at,
        "acked_at": a.acked_at,
        "acked_by": a.acked_by,
    })
}

/// The webhook body (PROTOCOL.md §8).
#[allow(clippy::too_many_arguments)]
fn body(
    commune: (&str, &str),
    status: &str,
    group: &str,
    step: usize,
    step_name: &str,
    repeat: u32,
    alerts: &[&Alert],
    names: &Names,
) -> Vec<u8> {
    let text: Vec<&str> = alerts.iter().map(|a| a.message.as_str()).collect();
    let v = json!({
        "version": PAYLOAD_VERSION,
        "status": status,
        "commune": { "id": commune.0, "name": commune.1 },
        "group": group,
        "escalation": { "step": step, "name": step_name, "repeat": repeat },
        "text": text.join("\n"),
        "alerts": alerts.iter().map(|a| alert_json(a, names)).collect::<Vec<_>>(),
    });
    v.to_string().into_bytes()
}

/// The idempotency key of one request: readable for one alert, a digest
/// for a group.
fn key(parts: &[(i64, usize, u32)], what: &str, target: &str) -> String {
    if let [(id, step, n)] = parts {
        return format!("alert:{id}:{what}:{step}:{n}:{target}");
    }
    let mut h = Sha256::new();
    for (id, step, n) in parts {
        h.update(format!("{id}:{step}:{n};"));
    }
    let digest = hex::encode(&h.finalize()[..16]);
    format!("alert-group:{digest}:{what}:{target}")
}

/// Plan and enqueue the notifications due at `now`; how many requests were
/// enqueued.
pub fn plan(
    store: &mut AlertStore,
    now: DateTime<Utc>,
    settings: &AlertSettings,
    names: &Names,
    commune: (&str, &str),
) -> Result<usize, AlertError> {
    if settings.ladder.is_empty() {
        return Ok(0);
    }
    // Read under the write lock: an operator's ack between a read and the
    // enqueue would otherwise be notified (and climb) anyway.
    let tx = store.begin()?;
    let silences = silences_on(&tx, now, false)?;
    let firing = firing_on(&tx)?;
    let resolved = unnotified_on(&tx)?;
    let mut sent = 0;

    // Due firing alerts, by (group, step).
    let top = settings.ladder.len() - 1;
    let mut groups: BTreeMap<(String, usize), Vec<(&Alert, u32)>> = BTreeMap::new();
    for a in firing
        .iter()
        .filter(|a| a.acked_at.is_none() && a.notify_at.is_some_and(|t| t <= now))
    {
        let m = muted(a, &silences, &firing, settings, now);
        if !m.silenced_by.is_empty() || !m.inhibited_by.is_empty() {
            continue;
        }
        let (group, repeat_n): (String, i64) = tx.query_row(
            "SELECT group_key, repeat_n FROM alerts WHERE id = ?1",
            [a.id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        let step = (a.escalation_step as usize).min(top);
        let repeat = if (a.escalation_step as usize) > top {
            u32::try_from(repeat_n + 1).unwrap_or(u32::MAX)
        } else {
            0
        };
        groups.entry((group, step)).or_default().push((a, repeat));
    }
    for ((group, step), members) in &groups {
        let s = &settings.ladder[*step];
        let parts: Vec<(i64, usize, u32)> =
            members.iter().map(|(a, n)| (a.id, *step, *n)).collect();
        let alerts: Vec<&Alert> = members.iter().map(|(a, _)| *a).collect();
        let repeat = members.iter().map(|(_, n)| *n).max().unwrap_or(0);
        let payload = body(
            commune, "firing", group, *step, &s.name, repeat, &alerts, names,
        );
        for target in &s.targets {
            let k = key(&parts, "step", target);
            delivery::enqueue(
                &tx,
                &NewDelivery {
                    key: &k,
                    target,
                    content_type: "application/json",
                    body: &payload,
                },
                now,
            )
            .map_err(|e| AlertError::Corrupt(format!("delivery outbox: {e}")))?;
            sent += 1;
        }
        for (a, _) in members {
            let climbed = a.escalation_step as usize + 1;
            let next = match settings.ladder.get(climbed) {
                Some(next) => now + next.after,
                None => now + settings.repeat_interval,
            };
            let past_top = (a.escalation_step as usize) > top;
            let n = tx.execute(
                "UPDATE alerts SET esc_step = min(esc_step + 1, ?2), \
                 repeat_n = repeat_n + ?3, notify_at = ?4, notified_at = coalesce(notified_at, ?5) \
                 WHERE id = ?1 AND state = 'firing' AND acked_at IS NULL",
                params![a.id, (top + 1) as i64, past_top as i64, ms(next), ms(now)],
            )?;
            // A step climbed is a journal entry; the repeats past the top
            // of the ladder are not (the step stays).
            if n > 0 && !past_top {
                journal(&tx, a.id, Change::Escalated, now)?;
            }
        }
        tx.execute(
            "INSERT INTO alert_groups (group_key, last_sent) VALUES (?1, ?2) \
             ON CONFLICT (group_key) DO UPDATE SET last_sent = excluded.last_sent",
            params![group, ms(now)],
        )?;
    }

    // Resolutions of notified alerts, once, to everyone reached.
    for a in &resolved {
        let reached = (a.escalation_step as usize).min(settings.ladder.len());
        let targets: BTreeSet<&str> = settings.ladder[..reached]
            .iter()
            .flat_map(|s| s.targets.iter().map(String::as_str))
            .collect();
        let group: String =
            tx.query_row("SELECT group_key FROM alerts WHERE id = ?1", [a.id], |r| {
                r.get(0)
            })?;
        let payload = body(
            commune,
            "resolved",
            &group,
            reached.saturating_sub(1),
            "",
            0,
            &[a],
            names,
        );
        for target in targets {
            let k = format!("alert:{}:resolved:{target}", a.id);
            delivery::enqueue(
                &tx,
                &NewDelivery {
                    key: &k,
                    target,
                    content_type: "application/json",
                    body: &payload,
                },
                now,
            )
            .map_err(|e| AlertError::Corrupt(format!("delivery outbox: {e}")))?;
            sent += 1;
        }
        tx.execute(
            "UPDATE alerts SET resolve_notified = 1 WHERE id = ?1",
            [a.id],
        )?;
    }
    tx.commit()?;
    Ok(sent)
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;

    use super::*;
    use crate::alerts::model::{Raise, Severity};
    use crate::alerts::Clock;
    use crate::alerts::ManualClock;
    use crate::config::alerts::Step;
    use crate::config::SyncMode;
    use crate::vocab::Hazard;

    fn settings() -> AlertSettings {
        AlertSettings {
            group_wait: TimeDelta::seconds(30),
            group_interval: TimeDelta::minutes(5),
            repeat_interval: TimeDelta::hours(4),
            ladder: vec![
                Step {
                    name: "Trực ban".into(),
                    after: TimeDelta::zero(),
                    targets: vec!["truc-ban".into()],
                },
                Step {
                    name: "Phó Chủ tịch".into(),
                    after: TimeDelta::minutes(10),
                    targets: vec!["pho-chu-tich".into()],
                },
            ],
            ..AlertSettings::default()
        }
    }

    fn raise(fp: &str, urgent: bool) -> Raise {
        Raise {
            fingerprint: fp.into(),
            kind: if urgent {
                AlertKind::Warning
            } else {
                AlertKind::Camera
            },
            rule: (!urgent).then(|| "chay".to_owned()),
            official: urgent,
            severity: Severity::Critical,
            hazard: urgent.then_some(Hazard::FlashFlood),
            level: urgent.then_some(3),
            villages: vec!["na-da".into()],
            device: None,
            title: "t".into(),
            message: format!("tin {fp}"),
            details: json!({}),
            reference: None,
            ends_at: None,
            urgent,
        }
    }

    fn outbox(store: &AlertStore) -> Vec<(String, String, Value)> {
        let mut stmt = store
            .conn
            .prepare("SELECT key, target, body FROM delivery_outbox ORDER BY id")
            .unwrap();
        stmt.query_map([], |r| {
            let body: Vec<u8> = r.get(2)?;
            Ok((r.get(0)?, r.get(1)?, serde_json::from_slice(&body).unwrap()))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
    }

    /// group_wait holds a new group's first notification and gathers what
    /// fires meanwhile into one request; a newcomer to a notified group
    /// waits for group_interval; a level-3 warning goes at once; an
    /// unacknowledged alert climbs to the next step after its delay;
    /// planning twice at the same time enqueues nothing more.
    #[test]
    fn grouping_escalation_and_urgent_warnings_with_the_clock() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = AlertStore::open(&dir.path().join("j.db"), SyncMode::Normal).unwrap();
        let set = settings();
        let names = Names::default();
        let c = ManualClock::new(
            DateTime::parse_from_rfc3339("2026-12-03T01:00:00Z")
                .unwrap()
                .into(),
        );
        let plan =
            |store: &mut AlertStore, now| plan(store, now, &set, &names, ("x", "Xã X")).unwrap();
        store
            .raise(&raise("rule:chay:cam-01:fire", false), c.now(), &set)
            .unwrap();
        c.advance(TimeDelta::seconds(10));
        store
            .raise(&raise("rule:chay:cam-02:fire", false), c.now(), &set)
            .unwrap();
        c.advance(TimeDelta::seconds(19));
        assert_eq!(
            plan(&mut store, c.now()),
            0,
            "29 s: inside the group's wait"
        );
        c.advance(TimeDelta::seconds(1));
        assert_eq!(plan(&mut store, c.now()), 1, "30 s: the group, one request");
        let sent = outbox(&store);
        let (_, target, body) = sent.last().unwrap();
        assert_eq!(target, "truc-ban");
        assert_eq!(body["alerts"].as_array().unwrap().len(), 2, "{body}");
        assert!(body["text"]
            .as_str()
            .unwrap()
            .contains("tin rule:chay:cam-02:fire"));
        assert_eq!(plan(&mut store, c.now()), 0, "nothing twice");

        // A newcomer to the notified group waits for group_interval.
        c.advance(TimeDelta::seconds(20));
        store
            .raise(&raise("rule:chay:cam-03:fire", false), c.now(), &set)
            .unwrap();
        c.advance(TimeDelta::seconds(60));
        assert_eq!(
            plan(&mut store, c.now()),
            0,
            "group_wait passed, group_interval not"
        );
        c.advance(TimeDelta::seconds(220));
        assert_eq!(
            plan(&mut store, c.now()),
            1,
            "5 min after the group's last send"
        );

        // A level-3 warning skips the delays.
        store
            .raise(&raise("warning:A", true), c.now(), &set)
            .unwrap();
        assert_eq!(plan(&mut store, c.now()), 1);
        let (key, _, body) = outbox(&store).pop().unwrap();
        assert_eq!(body["alerts"][0]["official"], true);
        assert!(key.ends_with(":step:0:0:truc-ban"), "{key}");

        // 10 minutes after their first step, the first two climb.
        c.advance(TimeDelta::minutes(10));
        let before = outbox(&store).len();
        assert!(plan(&mut store, c.now()) >= 1);
        let climbed: Vec<_> = outbox(&store).into_iter().skip(before).collect();
        assert!(
            climbed.iter().all(|(_, t, _)| t == "pho-chu-tich"),
            "{climbed:?}"
        );
        // Each step reached is a journal entry of the alert.
        let mut q = store
            .conn
            .prepare(
                "SELECT json_extract(body, '$.change'), json_extract(body, '$.escalation_step') \
                 FROM journal_seq WHERE kind = 'alert' \
                 AND json_extract(body, '$.fingerprint') = 'rule:chay:cam-01:fire' ORDER BY seq",
            )
            .unwrap();
        let got: Vec<(String, i64)> = q
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            got,
            vec![
                ("raised".to_owned(), 0),
                ("escalated".to_owned(), 1),
                ("escalated".to_owned(), 2)
            ]
        );
    }
}
