//! The province's copy of a commune's loudspeaker broadcasts, rebuilt from
//! its `broadcast` journal entries (docs/PROVINCE.md §3) into the same
//! tables the commune writes, so the commune's own screen and API at
//! `/site/{commune}/` show the plans and their coverage on the copy.
//!
//! An entry carries the plan as it stood after its change, every cluster,
//! the tasks, and the commands of every cluster (a plan's own change, a
//! sweep) or of the one cluster whose command changed. The plan and its
//! tasks are the newest entry's; a cluster's commands are those of the
//! newest entry that carried them. So an entry that arrives after newer
//! ones of its plan (a gap filled late) changes only what no newer entry
//! said, and the copy ends as the commune stands whatever the order. Nothing runs
//! a worker on the copy: no command is sent. What stays in the commune
//! stays out of the copy: the command payloads and the village heads' names
//! and phones.

use rusqlite::{params, Connection};
use serde::Deserialize;

use crate::journal::seq::kind;

#[derive(Debug, Deserialize)]
struct Plan {
    id: i64,
    origin: String,
    bulletin: Option<String>,
    chain: Option<String>,
    priority: String,
    #[serde(default)]
    villages: Vec<String>,
    text_vi: String,
    text_ethnic: Option<String>,
    language: Option<String>,
    repeats: i64,
    gap_secs: i64,
    issued_ms: Option<i64>,
    expires_ms: i64,
    state: String,
    created_ms: i64,
    created_by: String,
    approved_ms: Option<i64>,
    approved_by: Option<String>,
    ended_ms: Option<i64>,
    ended_by: Option<String>,
    end_reason: Option<String>,
    #[serde(default)]
    clusters: Vec<Cluster>,
    #[serde(default)]
    tasks: Vec<Task>,
}

#[derive(Debug, Deserialize)]
struct Cluster {
    speaker: String,
    village: String,
    kind: String,
    /// Absent when the entry is another cluster's command change.
    commands: Option<Vec<Command>>,
}

#[derive(Debug, Deserialize)]
struct Command {
    play: i64,
    key: String,
    state: String,
    #[serde(default)]
    unreachable: bool,
    #[serde(default)]
    attempts: i64,
    first_sent_ms: Option<i64>,
    acked_ms: Option<i64>,
    started_ms: Option<i64>,
    ended_ms: Option<i64>,
}

#[derive(Debug, Deserialize)]
struct Task {
    id: i64,
    village: String,
    reason: String,
    state: String,
    created_ms: i64,
    done_ms: Option<i64>,
    done_by: Option<String>,
    note: Option<String>,
}

/// Apply `broadcast` entry `seq` of `commune` (already in `journal_seq`,
/// in the caller's transaction) to the copy's broadcast tables; the plan's
/// id, for `journal_seq.ref_id`. Another kind is not this module's (None).
/// A body that cannot be read changes no row (the entry itself stays in
/// the journal) and is logged.
pub fn apply(
    tx: &Connection,
    commune: &str,
    seq: i64,
    entry_kind: &str,
    body: &[u8],
) -> Result<Option<i64>, rusqlite::Error> {
    if entry_kind != kind::BROADCAST {
        return Ok(None);
    }
    let p: Plan = match serde_json::from_slice(body) {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(commune, seq, error = %e, "broadcast entry not mirrored: unreadable body");
            return Ok(None);
        }
    };
    let newer = crate::journal::seq::newer_exists(tx, commune, seq, entry_kind, p.id)?;
    let villages = serde_json::to_string(&p.villages).unwrap_or_else(|_| "[]".into());
    // The plan (nonce: the copy never makes a command key).
    let plan_sql = if newer {
        "INSERT OR IGNORE INTO broadcasts (id, origin, warning_id, chain, priority, villages, \
         text_vi, text_ethnic, language, repeats, gap_secs, issued_ms, expires_ms, state, \
         created_ms, created_by, approved_ms, approved_by, ended_ms, ended_by, end_reason, nonce) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, \
         ?19, ?20, ?21, '')"
    } else {
        "INSERT INTO broadcasts (id, origin, warning_id, chain, priority, villages, \
         text_vi, text_ethnic, language, repeats, gap_secs, issued_ms, expires_ms, state, \
         created_ms, created_by, approved_ms, approved_by, ended_ms, ended_by, end_reason, nonce) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, \
         ?19, ?20, ?21, '') \
         ON CONFLICT (id) DO UPDATE SET origin = excluded.origin, warning_id = excluded.warning_id, \
         chain = excluded.chain, priority = excluded.priority, villages = excluded.villages, \
         text_vi = excluded.text_vi, text_ethnic = excluded.text_ethnic, \
         language = excluded.language, repeats = excluded.repeats, gap_secs = excluded.gap_secs, \
         issued_ms = excluded.issued_ms, expires_ms = excluded.expires_ms, state = excluded.state, \
         created_ms = excluded.created_ms, created_by = excluded.created_by, \
         approved_ms = excluded.approved_ms, approved_by = excluded.approved_by, \
         ended_ms = excluded.ended_ms, ended_by = excluded.ended_by, end_reason = excluded.end_reason"
    };
    tx.prepare_cached(plan_sql)?.execute(params![
        p.id,
        p.origin,
        p.bulletin,
        p.chain,
        p.priority,
        villages,
        p.text_vi,
        p.text_ethnic,
        p.language,
        p.repeats,
        p.gap_secs,
        p.issued_ms,
        p.expires_ms,
        p.state,
        p.created_ms,
        p.created_by,
        p.approved_ms,
        p.approved_by,
        p.ended_ms,
        p.ended_by,
        p.end_reason,
    ])?;
    const KEEP_COMMAND: &str = "INSERT OR IGNORE INTO speaker_commands (broadcast_id, speaker, \
         play, key, priority, payload, state, unreachable, not_before_ms, expires_ms, \
         next_attempt_ms, attempts, first_sent_ms, acked_ms, started_ms, ended_ms) \
         VALUES (?1, ?2, ?3, ?4, ?5, '', ?6, ?7, 0, ?8, 0, ?9, ?10, ?11, ?12, ?13)";
    const SET_COMMAND: &str = "INSERT INTO speaker_commands (broadcast_id, speaker, play, key, \
         priority, payload, state, unreachable, not_before_ms, expires_ms, next_attempt_ms, \
         attempts, first_sent_ms, acked_ms, started_ms, ended_ms) \
         VALUES (?1, ?2, ?3, ?4, ?5, '', ?6, ?7, 0, ?8, 0, ?9, ?10, ?11, ?12, ?13) \
         ON CONFLICT (broadcast_id, speaker, play) DO UPDATE SET key = excluded.key, \
         state = excluded.state, unreachable = excluded.unreachable, \
         attempts = excluded.attempts, first_sent_ms = excluded.first_sent_ms, \
         acked_ms = excluded.acked_ms, started_ms = excluded.started_ms, \
         ended_ms = excluded.ended_ms";
    for c in &p.clusters {
        tx.prepare_cached(
            "INSERT OR IGNORE INTO broadcast_clusters (broadcast_id, speaker, village, kind) \
             VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![p.id, c.speaker, c.village, c.kind])?;
        let Some(commands) = &c.commands else {
            continue;
        };
        // A cluster's commands are the newest entry's that carried them
        // (a command change carries its own cluster's only).
        let carried_later = newer
            && tx
                .prepare_cached(
                    "SELECT EXISTS (SELECT 1 FROM journal_seq j, \
                     json_each(CAST(j.body AS TEXT), '$.clusters') c \
                     WHERE j.commune = ?1 AND j.seq > ?2 AND j.kind = ?3 AND j.ref_id = ?4 \
                     AND json_extract(c.value, '$.speaker') = ?5 \
                     AND json_type(c.value, '$.commands') = 'array')",
                )?
                .query_row(params![commune, seq, entry_kind, p.id, c.speaker], |r| {
                    r.get::<_, bool>(0)
                })?;
        let sql = if carried_later {
            KEEP_COMMAND
        } else {
            SET_COMMAND
        };
        for cmd in commands {
            tx.prepare_cached(sql)?.execute(params![
                p.id,
                c.speaker,
                cmd.play,
                cmd.key,
                p.priority,
                cmd.state,
                cmd.unreachable,
                p.expires_ms,
                cmd.attempts,
                cmd.first_sent_ms,
                cmd.acked_ms,
                cmd.started_ms,
                cmd.ended_ms,
            ])?;
        }
    }
    let task_sql = if newer {
        "INSERT OR IGNORE INTO broadcast_tasks (id, broadcast_id, village, reason, state, \
         created_ms, done_ms, done_by, note) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
    } else {
        "INSERT INTO broadcast_tasks (id, broadcast_id, village, reason, state, \
         created_ms, done_ms, done_by, note) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) \
         ON CONFLICT (id) DO UPDATE SET village = excluded.village, reason = excluded.reason, \
         state = excluded.state, created_ms = excluded.created_ms, done_ms = excluded.done_ms, \
         done_by = excluded.done_by, note = excluded.note"
    };
    for t in &p.tasks {
        tx.prepare_cached(task_sql)?.execute(params![
            t.id,
            p.id,
            t.village,
            t.reason,
            t.state,
            t.created_ms,
            t.done_ms,
            t.done_by,
            t.note,
        ])?;
    }
    Ok(Some(p.id))
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, TimeDelta, Utc};
    use rusqlite::Connection;
    use serde_json::{json, Value};

    use crate::broadcasts::store::{self, tests};
    use crate::broadcasts::Priority;
    use crate::journal::remote::{Item, Numbered};
    use crate::journal::{Derived, Store};

    /// The commune's entries: (seq, at, kind, body).
    fn entries(c: &Connection) -> Vec<(i64, i64, String, Vec<u8>)> {
        let mut st = c
            .prepare("SELECT seq, at, kind, body FROM journal_seq ORDER BY seq")
            .unwrap();
        st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    /// The overview without what stays in the commune (the village
    /// heads' names and phones).
    fn shown(mut v: Value) -> Value {
        fn strip(v: &mut Value) {
            match v {
                Value::Object(m) => {
                    for k in ["head_name", "head_phone"] {
                        if m.contains_key(k) {
                            m.insert(k.into(), Value::Null);
                        }
                    }
                    m.values_mut().for_each(strip);
                }
                Value::Array(a) => a.iter_mut().for_each(strip),
                _ => {}
            }
        }
        strip(&mut v);
        v
    }

    /// A plan's life at the commune: approved for three villages (two
    /// smart clusters in Sín Cái, an FE-only one in Tả Lần, one in Hồ Sáo),
    /// its first plays sent, one acknowledged and played to the end, one
    /// acknowledged, one not answering (unreachable after the timeout, its
    /// village given a task), the FE village's task done; then the silent
    /// one answers and the second starts playing. Copied to the province in
    /// order, in reverse, with every command change arriving late, and with
    /// the silent cluster's answer arriving after the other cluster's newer
    /// change, the copy's overview is the commune's (heads' names and
    /// phones aside), and no command payload is in the copy.
    #[test]
    fn the_copy_reads_back_as_the_communes_in_any_order() {
        let (_d, mut c) = tests::open();
        let cfg = tests::config();
        let t0: DateTime<Utc> = Utc::now();
        let id = store::insert_draft(
            &mut c,
            &tests::draft(Priority::Priority, &["sin-cai", "ta-lan", "ho-sao"], t0),
            &cfg,
            "op",
            t0,
        )
        .unwrap();
        store::approve(&mut c, id, &cfg, "op", t0).unwrap();
        let due = store::due(&c, t0, 10).unwrap();
        assert_eq!(due.len(), 3, "{due:?}");
        for d in &due {
            let tx = c.transaction().unwrap();
            store::mark_attempt(&tx, d.id, t0, t0 + TimeDelta::seconds(5)).unwrap();
            tx.commit().unwrap();
        }
        let key = |s: &str| due.iter().find(|d| d.speaker == s).unwrap().key.clone();
        let ack = |k: String| json!({"idempotency_key": k, "status": "accepted"}).to_string();
        store::apply_ack(&c, "loa-01", ack(key("loa-01")).as_bytes(), t0, 1000).unwrap();
        store::apply_ack(&c, "loa-02", ack(key("loa-02")).as_bytes(), t0, 1000).unwrap();
        let session = |event: &str| json!({"session_id": key("loa-01"), "event": event, "result": "completed"});
        store::apply_session(&c, "loa-01", session("start").to_string().as_bytes(), t0).unwrap();
        store::apply_session(&c, "loa-01", session("end").to_string().as_bytes(), t0).unwrap();
        store::sweep(&mut c, &cfg, t0 + TimeDelta::seconds(61)).unwrap();
        let task: i64 = c
            .query_row(
                "SELECT id FROM broadcast_tasks WHERE village = 'ta-lan'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        store::task_done(&mut c, task, "op", Some("đã gọi trưởng thôn"), t0).unwrap();
        // Then two command changes of other clusters: Hồ Sáo's cluster
        // answers at last, Sín Cái's second cluster starts playing.
        store::apply_ack(&c, "loa-04", ack(key("loa-04")).as_bytes(), t0, 1000).unwrap();
        let start = json!({"session_id": key("loa-02"), "event": "start"});
        store::apply_session(&c, "loa-02", start.to_string().as_bytes(), t0).unwrap();
        let all = entries(&c);
        assert!(all.len() >= 8, "{}", all.len());
        let want = shown(store::overview(&c, &cfg, t0).unwrap());
        assert_eq!(want["broadcasts"][0]["state"], "approved", "{want}");
        assert_eq!(want["broadcasts"][0]["villages_reached"], 3, "{want}");

        let n = all.len();
        let late: Vec<usize> = {
            let is_cmd = |i: &usize| {
                let v: Value = serde_json::from_slice(&all[*i].3).unwrap();
                v["change"].as_str().unwrap().starts_with("command_")
            };
            let mut v: Vec<usize> = (0..n).filter(|i| !is_cmd(i)).collect();
            v.extend((0..n).filter(is_cmd).rev());
            v
        };
        // Hồ Sáo's answer held back behind the newer entry of Sín Cái's
        // cluster, which does not carry Hồ Sáo's commands.
        let mut swapped: Vec<usize> = (0..n).collect();
        swapped.swap(n - 2, n - 1);
        let orders: [Vec<usize>; 4] = [(0..n).collect(), (0..n).rev().collect(), late, swapped];
        for (k, order) in orders.iter().enumerate() {
            let dir = tempfile::tempdir().unwrap();
            let mut copy = Store::open(&dir.path().join("province.db")).unwrap();
            for &i in order {
                let (seq, at, kind, body) = &all[i];
                let e = [Numbered {
                    seq: Some(*seq),
                    at_ms: *at,
                    item: Item::Body { kind, body },
                }];
                copy.write_numbered(
                    "lung-phinh",
                    &e,
                    &[],
                    &[],
                    |_| Derived::default(),
                    |tx, seq, kind, body| super::apply(tx, "lung-phinh", seq, kind, body),
                )
                .unwrap();
            }
            let got = shown(store::overview(copy.conn(), &cfg, t0).unwrap());
            assert_eq!(got, want, "order {k}: {order:?}");
            let payloads: i64 = copy
                .conn()
                .query_row(
                    "SELECT COUNT(*) FROM speaker_commands WHERE payload != ''",
                    [],
                    |r| r.get(0),
                )
                .unwrap();
            assert_eq!(payloads, 0);
        }
    }
}
