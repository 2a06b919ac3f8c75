//! The province's copy of a commune's alerts and silences, rebuilt from
//! the commune's `alert` and `alert_silence` journal entries
//! (docs/PROVINCE.md §3, §6) into the same tables the commune writes, so
//! the commune's own API and screen at `/site/{commune}/` show them on the
//! copy as they stand at the commune.
//!
//! Each entry carries the alert (or silence) as it stood after its change;
//! a row is the newest entry of its id. Entries normally arrive in seq
//! order; one that arrives after a newer entry of the same id (a gap
//! filled late) changes nothing. Nothing runs an engine on the copy: no
//! rule is evaluated, nothing is notified (rows are written as notified).
//!
//! The commune holds at most one firing alert per fingerprint (the
//! `alerts_one_active` index). When a newer alert of a fingerprint fires
//! while the copy still shows an older one firing, the older one's
//! resolution is an entry still missing (a gap): the older row is shown
//! resolved, with no time, until that entry arrives.

use rusqlite::{params, Connection, OptionalExtension};
use serde::Deserialize;

use super::model::{AlertKind, AlertState, Matcher, Severity};
use crate::journal::seq::kind;
use crate::vocab::Hazard;

/// An `alert` entry's body (written by `store::entry_body`).
#[derive(Debug, Deserialize)]
struct AlertBody {
    id: i64,
    fingerprint: String,
    kind: String,
    rule: Option<String>,
    official: bool,
    severity: String,
    hazard: Option<String>,
    level: Option<u8>,
    #[serde(default)]
    villages: Vec<String>,
    device: Option<String>,
    title: String,
    message: String,
    #[serde(default)]
    details: serde_json::Value,
    state: String,
    #[serde(default)]
    stale: bool,
    #[serde(default)]
    occurrences: u32,
    first_seen_ms: i64,
    last_seen_ms: i64,
    ends_at_ms: Option<i64>,
    resolved_at_ms: Option<i64>,
    resolved_by: Option<String>,
    acked_at_ms: Option<i64>,
    acked_by: Option<String>,
    #[serde(default)]
    escalation_step: u32,
}

/// An `alert_silence` entry's body (written by `store::journal_silence`).
#[derive(Debug, Deserialize)]
struct SilenceBody {
    id: i64,
    matchers: Vec<Matcher>,
    starts_at_ms: i64,
    ends_at_ms: i64,
    created_by: String,
    #[serde(default)]
    comment: String,
    created_at_ms: i64,
    ended_by: Option<String>,
}

/// Whether `kind` is one this module mirrors.
pub fn mirrors(entry_kind: &str) -> bool {
    entry_kind == kind::ALERT || entry_kind == kind::ALERT_SILENCE
}

/// The id of the alert or silence an entry is about (`journal_seq.ref_id`
/// at the province, as at the commune), if its body names one.
fn id_of(body: &[u8]) -> Option<i64> {
    #[derive(Deserialize)]
    struct Id {
        id: i64,
    }
    serde_json::from_slice::<Id>(body).ok().map(|i| i.id)
}

/// Apply entry `seq` of `commune` (already in `journal_seq`, in the
/// caller's transaction) to the copy's alerts or silences; the id it is
/// about, for `journal_seq.ref_id`. A body that cannot be read changes no
/// row (the entry itself stays in the journal) and is logged.
pub fn apply(
    tx: &Connection,
    commune: &str,
    seq: i64,
    entry_kind: &str,
    body: &[u8],
) -> Result<Option<i64>, rusqlite::Error> {
    if !mirrors(entry_kind) {
        return Ok(None);
    }
    let Some(id) = id_of(body) else {
        tracing::warn!(
            commune,
            seq,
            kind = entry_kind,
            "journal entry names no id; not mirrored"
        );
        return Ok(None);
    };
    if crate::journal::seq::newer_exists(tx, commune, seq, entry_kind, id)? {
        return Ok(Some(id));
    }
    let done = if entry_kind == kind::ALERT {
        alert(tx, body)
    } else {
        silence(tx, body)
    };
    if let Err(why) = done? {
        tracing::warn!(commune, seq, kind = entry_kind, id, error = %why, "journal entry not mirrored: unreadable body");
    }
    Ok(Some(id))
}

type Applied = Result<Result<(), String>, rusqlite::Error>;

fn alert(tx: &Connection, body: &[u8]) -> Applied {
    let a: AlertBody = match serde_json::from_slice(body) {
        Ok(a) => a,
        Err(e) => return Ok(Err(e.to_string())),
    };
    // The names are checked as the commune's store would read them back.
    if AlertKind::parse(&a.kind).is_none() {
        return Ok(Err(format!("kind `{}`", a.kind)));
    }
    if Severity::parse(&a.severity).is_none() {
        return Ok(Err(format!("severity `{}`", a.severity)));
    }
    if let Some(h) = a.hazard.as_deref().filter(|h| Hazard::parse(h).is_none()) {
        return Ok(Err(format!("hazard `{h}`")));
    }
    let Some(mut state) = AlertState::parse(&a.state) else {
        return Ok(Err(format!("state `{}`", a.state)));
    };
    if state == AlertState::Firing {
        // One firing alert per fingerprint (see the module's note).
        tx.prepare_cached(
            "UPDATE alerts SET state = 'resolved' WHERE fingerprint = ?1 AND state = 'firing' AND id < ?2",
        )?
        .execute(params![a.fingerprint, a.id])?;
        let newer_firing = tx
            .prepare_cached(
                "SELECT 1 FROM alerts WHERE fingerprint = ?1 AND state = 'firing' AND id > ?2",
            )?
            .query_row(params![a.fingerprint, a.id], |_| Ok(()))
            .optional()?
            .is_some();
        if newer_firing {
            state = AlertState::Resolved;
        }
    }
    let villages = serde_json::to_string(&a.villages).unwrap_or_else(|_| "[]".into());
    let details = serde_json::to_string(&a.details).unwrap_or_else(|_| "null".into());
    tx.prepare_cached(
        "INSERT INTO alerts (id, fingerprint, kind, rule, official, severity, hazard, level, villages, \
         device, title, message, details, state, stale, occurrences, first_seen, last_seen, ends_at, \
         resolved_at, resolved_by, acked_at, acked_by, group_key, esc_step, notified_at, resolve_notified) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, \
         ?20, ?21, ?22, ?23, ?2, ?24, ?17, 1) \
         ON CONFLICT (id) DO UPDATE SET fingerprint = excluded.fingerprint, kind = excluded.kind, \
         rule = excluded.rule, official = excluded.official, severity = excluded.severity, \
         hazard = excluded.hazard, level = excluded.level, villages = excluded.villages, \
         device = excluded.device, title = excluded.title, message = excluded.message, \
         details = excluded.details, state = excluded.state, stale = excluded.stale, \
         occurrences = excluded.occurrences, first_seen = excluded.first_seen, \
         last_seen = excluded.last_seen, ends_at = excluded.ends_at, \
         resolved_at = excluded.resolved_at, resolved_by = excluded.resolved_by, \
         acked_at = excluded.acked_at, acked_by = excluded.acked_by, esc_step = excluded.esc_step",
    )?
    .execute(params![
        a.id,
        a.fingerprint,
        a.kind,
        a.rule,
        a.official,
        a.severity,
        a.hazard,
        a.level,
        villages,
        a.device,
        a.title,
        a.message,
        details,
        state.as_str(),
        a.stale,
        a.occurrences.max(1),
        a.first_seen_ms,
        a.last_seen_ms,
        a.ends_at_ms,
        a.resolved_at_ms,
        a.resolved_by,
        a.acked_at_ms,
        a.acked_by,
        a.escalation_step,
    ])?;
    Ok(Ok(()))
}

fn silence(tx: &Connection, body: &[u8]) -> Applied {
    let s: SilenceBody = match serde_json::from_slice(body) {
        Ok(s) => s,
        Err(e) => return Ok(Err(e.to_string())),
    };
    let matchers = serde_json::to_string(&s.matchers).unwrap_or_else(|_| "[]".into());
    tx.prepare_cached(
        "INSERT INTO alert_silences (id, matchers, starts_at, ends_at, created_by, comment, created_at, ended_by) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) \
         ON CONFLICT (id) DO UPDATE SET matchers = excluded.matchers, starts_at = excluded.starts_at, \
         ends_at = excluded.ends_at, created_by = excluded.created_by, comment = excluded.comment, \
         created_at = excluded.created_at, ended_by = excluded.ended_by",
    )?
    .execute(params![
        s.id,
        matchers,
        s.starts_at_ms,
        s.ends_at_ms,
        s.created_by,
        s.comment,
        s.created_at_ms,
        s.ended_by,
    ])?;
    Ok(Ok(()))
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, TimeDelta, Utc};
    use rusqlite::Connection;

    use crate::alerts::model::{AlertKind, Matcher, Raise, Severity, Signal};
    use crate::alerts::AlertStore;
    use crate::config::alerts::AlertSettings;
    use crate::config::SyncMode;
    use crate::journal::remote::{Item, Numbered};
    use crate::journal::{Derived, Store};

    fn t0() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-12-03T01:00:00Z")
            .unwrap()
            .into()
    }

    fn raise(fp: &str) -> Raise {
        Raise {
            fingerprint: fp.into(),
            kind: AlertKind::Threshold,
            rule: Some("mua-lon".into()),
            official: false,
            severity: Severity::Warning,
            hazard: None,
            level: None,
            villages: vec!["na-da".into()],
            device: Some("rain-01".into()),
            title: "Mưa lớn".into(),
            message: "Lượng mưa 1 giờ vượt 50 mm".into(),
            details: serde_json::json!({"value": 62.5}),
            reference: None,
            ends_at: None,
            urgent: false,
        }
    }

    /// The commune's alert entries as the uplink sends them: (seq, at, kind, body).
    fn entries(path: &std::path::Path) -> Vec<(i64, i64, String, Vec<u8>)> {
        let c = Connection::open(path).unwrap();
        let mut st = c
            .prepare("SELECT seq, at, kind, body FROM journal_seq ORDER BY seq")
            .unwrap();
        st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    /// Write `which` of `all` at the province, in that order, one batch each.
    fn copy(store: &mut Store, all: &[(i64, i64, String, Vec<u8>)], which: &[usize]) {
        for &i in which {
            let (seq, at, kind, body) = &all[i];
            let entries = [Numbered {
                seq: Some(*seq),
                at_ms: *at,
                item: Item::Body { kind, body },
            }];
            store
                .write_numbered(
                    "xa",
                    &entries,
                    &[],
                    &[],
                    |_| Derived::default(),
                    |tx, seq, kind, body| super::apply(tx, "xa", seq, kind, body),
                )
                .unwrap();
        }
    }

    /// A commune's alert lifecycle (raised, updated, stale, fresh, acked,
    /// a silence created and ended, resolved; a second alert of the same
    /// fingerprint raised after it) copied to the province: every alert and
    /// silence reads back as the commune's (notification times aside, which
    /// the copy never plans), in order or not.
    #[test]
    fn the_copy_reads_back_as_the_communes_in_any_order() {
        let dir = tempfile::tempdir().unwrap();
        let commune = dir.path().join("commune.db");
        let mut s = AlertStore::open(&commune, SyncMode::Normal).unwrap();
        let set = AlertSettings::default();
        let fire = |sev: Severity| {
            let mut r = raise("rule:mua-lon:rain-01");
            r.severity = sev;
            Signal::Fire(Box::new(r))
        };
        let first = s.raise(&raise("rule:mua-lon:rain-01"), t0(), &set).unwrap();
        s.apply(&[fire(Severity::Critical)], t0(), &set, None)
            .unwrap();
        let stale = |v: bool| Signal::Stale {
            fingerprint: "rule:mua-lon:rain-01".into(),
            stale: v,
        };
        s.apply(&[stale(true)], t0(), &set, None).unwrap();
        s.apply(&[stale(false)], t0(), &set, None).unwrap();
        s.ack(first, "truc.ban", t0() + TimeDelta::minutes(3))
            .unwrap();
        let m = [Matcher {
            name: "village".into(),
            value: "na-da".into(),
        }];
        let sil = s
            .add_silence(
                &m,
                t0(),
                t0() + TimeDelta::hours(2),
                "truc.ban",
                "bảo trì",
                t0(),
            )
            .unwrap();
        s.end_silence(sil.id, "truc.ban", t0() + TimeDelta::minutes(30))
            .unwrap();
        s.resolve(first, "truc.ban", t0() + TimeDelta::hours(1))
            .unwrap();
        let second = s
            .raise(
                &raise("rule:mua-lon:rain-01"),
                t0() + TimeDelta::hours(2),
                &set,
            )
            .unwrap();
        assert_ne!(first, second);
        let all = entries(&commune);
        assert_eq!(
            all.len(),
            9,
            "{:?}",
            all.iter().map(|e| &e.2).collect::<Vec<_>>()
        );

        let without_plans = |mut a: crate::alerts::Alert| {
            a.notify_at = None;
            a
        };
        let orders: [Vec<usize>; 3] = [
            (0..all.len()).collect(),
            (0..all.len()).rev().collect(),
            // The first alert's resolution arrives last (a gap filled late):
            // meanwhile the second one fires and the first shows resolved.
            vec![0, 1, 2, 3, 4, 5, 6, 8, 7],
        ];
        for (n, order) in orders.iter().enumerate() {
            let path = dir.path().join(format!("province-{n}.db"));
            let mut store = Store::open(&path).unwrap();
            let prov = AlertStore::open(&path, SyncMode::Normal).unwrap();
            if n == 2 {
                copy(&mut store, &all, &order[..8]);
                let a = prov.get(first).unwrap().unwrap();
                assert_eq!(a.state, crate::alerts::AlertState::Resolved, "order {n}");
                assert_eq!(a.resolved_at, None, "inferred, not invented");
                assert_eq!(prov.firing().unwrap().len(), 1);
                copy(&mut store, &all, &order[8..]);
            } else {
                copy(&mut store, &all, order);
            }
            for id in [first, second] {
                assert_eq!(
                    prov.get(id).unwrap().map(without_plans),
                    s.get(id).unwrap().map(without_plans),
                    "alert {id}, order {n}"
                );
            }
            assert_eq!(
                prov.silence(sil.id).unwrap(),
                s.silence(sil.id).unwrap(),
                "order {n}"
            );
            assert_eq!(prov.firing().unwrap().len(), 1, "order {n}");
        }
    }

    /// A body that is not an alert changes no row and fails nothing: the
    /// entry stays in the copy's journal.
    #[test]
    fn an_unreadable_body_is_kept_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("province.db");
        let mut store = Store::open(&path).unwrap();
        let bad = vec![
            (
                1,
                5,
                "alert".to_owned(),
                br#"{"id": 4, "state": "on fire"}"#.to_vec(),
            ),
            (2, 6, "alert".to_owned(), b"not json".to_vec()),
            (3, 7, "alert_silence".to_owned(), br#"{"id": 1}"#.to_vec()),
        ];
        copy(&mut store, &bad, &[0, 1, 2]);
        let prov = AlertStore::open(&path, SyncMode::Normal).unwrap();
        assert_eq!(prov.get(4).unwrap(), None);
        assert_eq!(prov.silence(1).unwrap(), None);
        assert_eq!(store.bodies("xa", "alert").unwrap().len(), 2);
    }
}
