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
use super::store::{ms, AlertError, AlertStore};
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
    let silences = store.silences(now, false)?;
    let firing = store.firing()?;
    let resolved = store.unnotified_resolutions()?;
    let tx = store.begin()?;
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
            tx.execute(
                "UPDATE alerts SET esc_step = min(esc_step + 1, ?2), \
                 repeat_n = repeat_n + ?3, notify_at = ?4, notified_at = coalesce(notified_at, ?5) \
                 WHERE id = ?1 AND state = 'firing'",
                params![a.id, (top + 1) as i64, past_top as i64, ms(next), ms(now)],
            )?;
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
