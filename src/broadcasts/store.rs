//! The broadcasts tables (migration 0006): plans, their clusters, the
//! durable speaker commands, manual tasks; and what is read from them
//! (coverage per cluster and village, indicators).
//!
//! Every function takes a plain connection and makes its change in one
//! transaction, so a crash leaves either the whole change or none of it.
//! A command's attempt is written (attempts, next attempt time) before it
//! is sent ([`mark_attempt`]): after a kill -9 the command is sent again at
//! its next attempt time with the same key and payload, never earlier and
//! never under a new key.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, FixedOffset, TimeZone, Utc};
use chrono_tz::Asia::Ho_Chi_Minh;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use serde_json::{json, Value};

use super::plan::{self, CommandSpec, Draft};
use super::{BroadcastError, Priority};
use crate::config::Config;
use crate::warnings::{WarningState, WarningView};

type Result<T> = std::result::Result<T, BroadcastError>;

/// Window within which a village counts as reached quickly (indicator).
pub const REACH_WINDOW_MS: i64 = 15 * 60 * 1000;
/// Most ended broadcasts listed in the overview.
pub const MAX_ENDED_LISTED: usize = 20;

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn local(ms: Option<i64>) -> Value {
    match ms.and_then(|m| Utc.timestamp_millis_opt(m).single()) {
        Some(t) => Value::from(t.with_timezone(&Ho_Chi_Minh).to_rfc3339()),
        None => Value::Null,
    }
}

fn random_nonce() -> String {
    let n: u32 = rand::random();
    format!("{n:08x}")
}

/// Store a draft and the clusters serving its villages; its id.
pub fn insert_draft(
    conn: &mut Connection,
    d: &Draft,
    config: &Config,
    by: &str,
    now: DateTime<Utc>,
) -> Result<i64> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let id = insert_in(&tx, d, config, by, now)?;
    tx.commit()?;
    Ok(id)
}

fn insert_in(
    tx: &rusqlite::Transaction<'_>,
    d: &Draft,
    config: &Config,
    by: &str,
    now: DateTime<Utc>,
) -> Result<i64> {
    tx.execute(
        "INSERT INTO broadcasts (origin, warning_id, chain, priority, villages, text_vi,
             text_ethnic, language, repeats, gap_secs, issued, issued_ms, expires_ms, state,
             created_ms, created_by, nonce)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, 'draft', ?14, ?15, ?16)",
        params![
            d.origin,
            d.warning_id,
            d.chain,
            d.priority.as_str(),
            serde_json::to_string(&d.villages).unwrap_or_else(|_| "[]".into()),
            d.text_vi,
            d.text_ethnic,
            d.language,
            d.repeats,
            d.gap_secs as i64,
            d.issued.map(|t| t.to_rfc3339()),
            d.issued.map(|t| t.timestamp_millis()),
            ms(d.expires),
            ms(now),
            by,
            random_nonce(),
        ],
    )?;
    let id = tx.last_insert_rowid();
    for c in plan::clusters_for(config, &d.villages) {
        tx.execute(
            "INSERT INTO broadcast_clusters (broadcast_id, speaker, village, kind)
             VALUES (?1, ?2, ?3, ?4)",
            params![id, c.speaker, c.village, c.kind],
        )?;
    }
    journal(tx, id, "drafted", now)?;
    Ok(id)
}

/// The chain a bulletin belongs to: the chain of the broadcast relaying
/// the bulletin it supersedes, else that bulletin, else itself.
pub fn chain_of(conn: &Connection, w: &WarningView) -> Result<String> {
    if let Some(c) = conn
        .query_row(
            "SELECT chain FROM broadcasts WHERE warning_id = ?1 AND chain IS NOT NULL LIMIT 1",
            [&w.id],
            |r| r.get::<_, String>(0),
        )
        .optional()?
    {
        return Ok(c);
    }
    match &w.supersedes {
        Some(prev) => Ok(conn
            .query_row(
                "SELECT chain FROM broadcasts WHERE warning_id = ?1 AND chain IS NOT NULL LIMIT 1",
                [prev],
                |r| r.get::<_, String>(0),
            )
            .optional()?
            .unwrap_or_else(|| prev.clone())),
        None => Ok(w.id.clone()),
    }
}

/// What a changed warning did to the plans.
#[derive(Debug, Default, PartialEq)]
pub struct WarningOutcome {
    /// A new draft.
    pub drafted: Option<i64>,
    /// Plans ended (cancelled or superseded).
    pub ended: Vec<i64>,
}

/// Follow a changed warning: an active one covering villages is drafted
/// (once per bulletin; an Update supersedes the chain's drafts, and its
/// approval later supersedes the chain's approved plan); a Cancel, expiry,
/// or a bulletin no longer covering villages ends the chain's plans and
/// stops their pending commands.
pub fn on_warning(
    conn: &mut Connection,
    w: &WarningView,
    config: &Config,
    now: DateTime<Utc>,
) -> Result<WarningOutcome> {
    let chain = chain_of(conn, w)?;
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut out = WarningOutcome::default();
    match w.state {
        WarningState::Updated => {}
        WarningState::Active if !w.villages.is_empty() => {
            let seen: bool = tx.query_row(
                "SELECT EXISTS (SELECT 1 FROM broadcasts WHERE warning_id = ?1)",
                [&w.id],
                |r| r.get(0),
            )?;
            if !seen && config.broadcasts.auto_draft {
                if let Some(d) = plan::from_warning(w, &chain, config, now) {
                    out.ended = end_chain(
                        &tx,
                        &chain,
                        &["draft"],
                        "superseded",
                        "bulletin_update",
                        now,
                    )?;
                    out.drafted = Some(insert_in(&tx, &d, config, "system", now)?);
                }
            }
        }
        WarningState::Active | WarningState::NotForCommune => {
            out.ended = end_chain(
                &tx,
                &chain,
                &["draft", "approved"],
                "cancelled",
                "bulletin_no_villages",
                now,
            )?;
        }
        WarningState::Cancelled => {
            out.ended = end_chain(
                &tx,
                &chain,
                &["draft", "approved"],
                "cancelled",
                "bulletin_cancelled",
                now,
            )?;
        }
        WarningState::Expired => {
            out.ended = end_chain(
                &tx,
                &chain,
                &["draft", "approved"],
                "expired",
                "bulletin_expired",
                now,
            )?;
        }
    }
    tx.commit()?;
    Ok(out)
}

fn end_chain(
    tx: &rusqlite::Transaction<'_>,
    chain: &str,
    states: &[&str],
    to: &str,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<Vec<i64>> {
    let mut ids = Vec::new();
    {
        let mut q = tx.prepare("SELECT id, state FROM broadcasts WHERE chain = ?1")?;
        let rows = q.query_map([chain], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
        })?;
        for row in rows {
            let (id, state) = row?;
            if states.contains(&state.as_str()) {
                ids.push(id);
            }
        }
    }
    for id in &ids {
        end_in(tx, *id, to, "system", reason, now)?;
    }
    Ok(ids)
}

/// End plan `id` (state `to`): its pending and unacknowledged commands
/// are cancelled (never sent again), its open tasks closed.
fn end_in(
    tx: &rusqlite::Transaction<'_>,
    id: i64,
    to: &str,
    by: &str,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<()> {
    tx.execute(
        "UPDATE broadcasts SET state = ?2, ended_ms = ?3, ended_by = ?4, end_reason = ?5
         WHERE id = ?1",
        params![id, to, ms(now), by, reason],
    )?;
    tx.execute(
        "UPDATE speaker_commands SET state = 'cancelled'
         WHERE broadcast_id = ?1 AND state IN ('pending', 'sent')",
        [id],
    )?;
    tx.execute(
        "UPDATE broadcast_tasks SET state = 'cancelled' WHERE broadcast_id = ?1 AND state = 'open'",
        [id],
    )?;
    journal(tx, id, to, now)?;
    Ok(())
}

fn state_of(tx: &Connection, id: i64) -> Result<String> {
    tx.query_row("SELECT state FROM broadcasts WHERE id = ?1", [id], |r| {
        r.get(0)
    })
    .optional()?
    .ok_or(BroadcastError::NotFound(id))
}

/// What approval did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Approved {
    /// The broadcast.
    pub id: i64,
    /// Commands queued (smart clusters × plays).
    pub commands: usize,
    /// Manual tasks opened (villages without a smart cluster).
    pub tasks: usize,
    /// Plans of the same bulletin chain this one replaced.
    pub superseded: Vec<i64>,
}

/// Approve draft `id`: queue one command per smart cluster and play (the
/// payload and key written now, once), open a manual task for each
/// village with no smart cluster, and supersede the approved plans of the
/// same bulletin chain (their pending commands stop).
pub fn approve(
    conn: &mut Connection,
    id: i64,
    config: &Config,
    by: &str,
    now: DateTime<Utc>,
) -> Result<Approved> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let state = state_of(&tx, id)?;
    if state != "draft" {
        return Err(BroadcastError::WrongState {
            id,
            state,
            action: "duyệt",
        });
    }
    #[allow(clippy::type_complexity)]
    let (
        chain,
        priority,
        villages,
        text_vi,
        text_ethnic,
        language,
        repeats,
        gap,
        expires,
        nonce,
        warning_id,
        issued,
    ): (
        Option<String>,
        String,
        String,
        String,
        Option<String>,
        Option<String>,
        u32,
        i64,
        i64,
        String,
        Option<String>,
        Option<String>,
    ) = tx.query_row(
        "SELECT chain, priority, villages, text_vi, text_ethnic, language, repeats, gap_secs,
                expires_ms, nonce, warning_id, issued
         FROM broadcasts WHERE id = ?1",
        [id],
        |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
                r.get(7)?,
                r.get(8)?,
                r.get(9)?,
                r.get(10)?,
                r.get(11)?,
            ))
        },
    )?;
    if expires <= ms(now) {
        return Err(BroadcastError::WrongState {
            id,
            state: "expired".into(),
            action: "duyệt",
        });
    }
    let priority = Priority::parse(&priority).unwrap_or(Priority::Routine);
    let villages: Vec<String> = serde_json::from_str(&villages).unwrap_or_default();
    let mut superseded = Vec::new();
    if let Some(chain) = &chain {
        let mut q = tx.prepare(
            "SELECT id FROM broadcasts WHERE chain = ?1 AND id != ?2 AND state IN ('draft', 'approved')",
        )?;
        superseded = q
            .query_map(params![chain, id], |r| r.get::<_, i64>(0))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
    }
    for old in &superseded {
        end_in(&tx, *old, "superseded", by, "replanned", now)?;
    }
    tx.execute(
        "UPDATE broadcasts SET state = 'approved', approved_ms = ?2, approved_by = ?3 WHERE id = ?1",
        params![id, ms(now), by],
    )?;
    let clusters: Vec<(String, String, String)> = {
        let mut q = tx.prepare(
            "SELECT speaker, village, kind FROM broadcast_clusters WHERE broadcast_id = ?1 ORDER BY rowid",
        )?;
        let rows = q
            .query_map([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        rows
    };
    let expires_t = Utc.timestamp_millis_opt(expires).single().unwrap_or(now);
    let issued_t = issued
        .as_deref()
        .and_then(|s| DateTime::<FixedOffset>::parse_from_rfc3339(s).ok());
    let mut commands = 0;
    for (speaker, village, kind) in clusters.iter().filter(|c| c.2 == "smart") {
        debug_assert_eq!(kind, "smart");
        // The ethnic text goes to clusters of villages speaking it.
        let ethnic = text_ethnic
            .as_deref()
            .zip(language.as_deref())
            .filter(|(_, l)| plan::speaks(config, village, l));
        for play in 1..=repeats.max(1) {
            let not_before = now + chrono::TimeDelta::seconds(gap * i64::from(play - 1));
            if not_before >= expires_t {
                break;
            }
            let key = plan::command_key(id, speaker, play, &nonce);
            let payload = plan::command_payload(&CommandSpec {
                key: &key,
                broadcast: id,
                priority,
                play,
                plays: repeats,
                not_before,
                expires: expires_t,
                text_vi: &text_vi,
                text_ethnic: ethnic,
                bulletin: warning_id.as_deref().zip(issued_t),
            });
            tx.execute(
                "INSERT INTO speaker_commands (broadcast_id, speaker, play, key, priority, payload,
                     state, not_before_ms, expires_ms, next_attempt_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', ?7, ?8, ?7)",
                params![
                    id,
                    speaker,
                    play,
                    key,
                    priority.as_str(),
                    payload,
                    ms(not_before),
                    expires
                ],
            )?;
            commands += 1;
        }
    }
    let mut tasks = 0;
    for v in &villages {
        let served: Vec<&str> = clusters
            .iter()
            .filter(|c| &c.1 == v)
            .map(|c| c.2.as_str())
            .collect();
        let reason = if served.is_empty() {
            "no_cluster"
        } else if served.iter().all(|k| *k == "fe") {
            "fe_only"
        } else {
            continue;
        };
        tasks += open_task(&tx, config, id, v, reason, now)?;
    }
    journal(&tx, id, "approved", now)?;
    tx.commit()?;
    Ok(Approved {
        id,
        commands,
        tasks,
        superseded,
    })
}

fn open_task(
    tx: &Connection,
    config: &Config,
    broadcast: i64,
    village: &str,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<usize> {
    let v = config.villages.iter().find(|x| x.id == village);
    Ok(tx.execute(
        "INSERT OR IGNORE INTO broadcast_tasks (broadcast_id, village, reason, head_name,
             head_phone, state, created_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, 'open', ?6)",
        params![
            broadcast,
            village,
            reason,
            v.and_then(|v| v.head_name.clone()),
            v.and_then(|v| v.head_phone.clone()),
            ms(now)
        ],
    )?)
}

/// Cancel plan `id` (a draft or an approved one): its pending commands
/// stop, its open tasks close.
pub fn cancel(conn: &mut Connection, id: i64, by: &str, now: DateTime<Utc>) -> Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let state = state_of(&tx, id)?;
    if state != "draft" && state != "approved" {
        return Err(BroadcastError::WrongState {
            id,
            state,
            action: "hủy",
        });
    }
    end_in(&tx, id, "cancelled", by, "operator", now)?;
    tx.commit()?;
    Ok(())
}

/// Mark manual task `id` done.
pub fn task_done(
    conn: &mut Connection,
    id: i64,
    by: &str,
    note: Option<&str>,
    now: DateTime<Utc>,
) -> Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let (state, broadcast): (String, i64) = tx
        .query_row(
            "SELECT state, broadcast_id FROM broadcast_tasks WHERE id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?
        .ok_or(BroadcastError::NoTask(id))?;
    if state != "open" {
        return Err(BroadcastError::TaskClosed(id));
    }
    tx.execute(
        "UPDATE broadcast_tasks SET state = 'done', done_ms = ?2, done_by = ?3, note = ?4 WHERE id = ?1",
        params![id, ms(now), by, note],
    )?;
    journal(&tx, broadcast, "task_done", now)?;
    tx.commit()?;
    Ok(())
}

/// A command due to be sent.
#[derive(Debug, Clone, PartialEq)]
pub struct Due {
    /// Row id.
    pub id: i64,
    /// Speaker id.
    pub speaker: String,
    /// Idempotency key.
    pub key: String,
    /// The payload, as written at approval.
    pub payload: String,
    /// Sends so far.
    pub attempts: u32,
}

/// Commands due at `now`, emergencies first. A routine or priority
/// command waits while its cluster plays another broadcast (acknowledged
/// or playing, not expired) or has an emergency waiting; an emergency
/// never waits (it pre-empts on the device).
pub fn due(conn: &Connection, now: DateTime<Utc>, limit: usize) -> Result<Vec<Due>> {
    let mut q = conn.prepare_cached(
        "SELECT c.id, c.speaker, c.key, c.payload, c.attempts FROM speaker_commands c
         JOIN broadcasts b ON b.id = c.broadcast_id
         WHERE c.state IN ('pending', 'sent') AND c.next_attempt_ms <= ?1
           AND c.not_before_ms <= ?1 AND c.expires_ms > ?1 AND b.state = 'approved'
           AND (c.priority = 'emergency' OR NOT EXISTS (
                SELECT 1 FROM speaker_commands o
                WHERE o.speaker = c.speaker AND o.broadcast_id != c.broadcast_id
                  AND o.expires_ms > ?1
                  AND (o.state IN ('acknowledged', 'playing')
                       OR (o.priority = 'emergency' AND o.state IN ('pending', 'sent')
                           AND o.not_before_ms <= ?1))))
         ORDER BY CASE c.priority WHEN 'emergency' THEN 0 WHEN 'priority' THEN 1 ELSE 2 END,
                  c.next_attempt_ms, c.id
         LIMIT ?2",
    )?;
    let rows = q.query_map(params![ms(now), limit as i64], |r| {
        Ok(Due {
            id: r.get(0)?,
            speaker: r.get(1)?,
            key: r.get(2)?,
            payload: r.get(3)?,
            attempts: r.get(4)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

/// Record one send of command `id` before it goes out: attempts + 1,
/// `sent`, and the time of the next send if no answer comes. Call it in a
/// transaction: a first send (pending → sent) is a journal entry, a
/// re-send is not.
pub fn mark_attempt(
    conn: &Connection,
    id: i64,
    now: DateTime<Utc>,
    next: DateTime<Utc>,
) -> Result<()> {
    // Writes first: a read before the first write would make a deferred
    // transaction fail to upgrade ("database is locked") when another
    // connection wrote in between.
    conn.execute(
        "UPDATE speaker_commands SET attempts = attempts + 1,
             first_sent_ms = COALESCE(first_sent_ms, ?2), last_sent_ms = ?2, next_attempt_ms = ?3
         WHERE id = ?1",
        params![id, ms(now), ms(next)],
    )?;
    let sent: Vec<(i64, String)> = conn
        .prepare_cached(
            "UPDATE speaker_commands SET state = 'sent' WHERE id = ?1 AND state = 'pending'
             RETURNING broadcast_id, speaker",
        )?
        .query_map([id], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    for (broadcast, speaker) in sent {
        journal_cluster(conn, broadcast, "command_sent", Some(&speaker), now)?;
    }
    Ok(())
}

/// Run an `UPDATE … RETURNING broadcast_id`: the plans of the rows it
/// changed.
fn returning(conn: &Connection, sql: &str, args: impl rusqlite::Params) -> Result<Vec<i64>> {
    let mut q = conn.prepare_cached(sql)?;
    let rows = q
        .query_map(args, |r| r.get(0))?
        .collect::<rusqlite::Result<Vec<i64>>>()?;
    Ok(rows)
}

/// The wait before send number `attempts + 1`: `initial` doubled per send
/// made, at most `max`.
pub fn backoff(attempts: u32, initial_ms: u64, max_ms: u64) -> chrono::TimeDelta {
    let factor = 1u64 << attempts.min(20);
    chrono::TimeDelta::milliseconds(initial_ms.saturating_mul(factor).min(max_ms.max(1)) as i64)
}

/// Why an answer from a device was not applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// Applied: the command changed.
    Changed,
    /// Known command, nothing new (a repeated answer).
    Unchanged,
    /// No command with that key on that cluster.
    Unknown,
    /// Not JSON or missing fields.
    Invalid(String),
}

/// Apply a cluster's answer on `.../ack` (docs/PROTOCOL.md §8.2). A
/// change of the command's state is a journal entry (call it in a
/// transaction); a repeated answer, or `busy`, is not (unless `busy`
/// clears `unreachable`).
pub fn apply_ack(
    conn: &Connection,
    speaker: &str,
    payload: &[u8],
    now: DateTime<Utc>,
    retry_ms: u64,
) -> Result<Applied> {
    let v: Value = match serde_json::from_slice(payload) {
        Ok(v) => v,
        Err(e) => return Ok(Applied::Invalid(format!("not JSON: {e}"))),
    };
    let (Some(key), Some(status)) = (v["idempotency_key"].as_str(), v["status"].as_str()) else {
        return Ok(Applied::Invalid(
            "idempotency_key and status are required".into(),
        ));
    };
    let answer = json!({"status": status, "reason": v.get("reason"), "at": ms(now)}).to_string();
    // Every statement here writes before anything is read (see
    // `mark_attempt`).
    let (changed, change): (Vec<i64>, Option<&str>) = match status {
        "accepted" | "duplicate" => (
            returning(
                conn,
                "UPDATE speaker_commands SET state = 'acknowledged', acked_ms = COALESCE(acked_ms, ?3),
                     unreachable = 0, answer = ?4
                 WHERE key = ?1 AND speaker = ?2 AND state IN ('pending', 'sent')
                 RETURNING broadcast_id",
                params![key, speaker, ms(now), answer],
            )?,
            Some("command_acknowledged"),
        ),
        "busy" => {
            let cleared = returning(
                conn,
                "UPDATE speaker_commands SET unreachable = 0
                 WHERE key = ?1 AND speaker = ?2 AND state IN ('pending', 'sent') AND unreachable = 1
                 RETURNING broadcast_id",
                params![key, speaker],
            )?;
            let busy = returning(
                conn,
                "UPDATE speaker_commands SET next_attempt_ms = ?3, unreachable = 0, answer = ?4
                 WHERE key = ?1 AND speaker = ?2 AND state IN ('pending', 'sent')
                 RETURNING broadcast_id",
                params![key, speaker, ms(now) + retry_ms as i64, answer],
            )?;
            if cleared.is_empty() {
                (busy, None)
            } else {
                (cleared, Some("command_busy"))
            }
        }
        "rejected" | "failed" => (
            returning(
                conn,
                "UPDATE speaker_commands SET state = 'failed', ended_ms = ?3, answer = ?4
                 WHERE key = ?1 AND speaker = ?2 AND state IN ('pending', 'sent', 'acknowledged', 'playing')
                 RETURNING broadcast_id",
                params![key, speaker, ms(now), answer],
            )?,
            Some("command_failed"),
        ),
        "expired" => (
            returning(
                conn,
                "UPDATE speaker_commands SET state = 'expired', answer = ?4, ended_ms = ?3
                 WHERE key = ?1 AND speaker = ?2 AND state IN ('pending', 'sent')
                 RETURNING broadcast_id",
                params![key, speaker, ms(now), answer],
            )?,
            Some("command_expired"),
        ),
        other => return Ok(Applied::Invalid(format!("unknown status `{other}`"))),
    };
    if let Some(change) = change {
        for b in &changed {
            journal_cluster(conn, *b, change, Some(speaker), now)?;
        }
    }
    known_or(conn, key, speaker, changed.len())
}

fn known_or(conn: &Connection, key: &str, speaker: &str, n: usize) -> Result<Applied> {
    if n > 0 {
        return Ok(Applied::Changed);
    }
    let known: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM speaker_commands WHERE key = ?1 AND speaker = ?2)",
        params![key, speaker],
        |r| r.get(0),
    )?;
    Ok(if known {
        Applied::Unchanged
    } else {
        Applied::Unknown
    })
}

/// Apply a session report on `.../session` whose `session_id` is a
/// command's key: `start` → playing, `end` → completed (failed with
/// `"result": "failed"`; pending again with `"result": "interrupted"`, an
/// emergency cut it short). Sessions of the cluster's own programmes have
/// other ids and are left alone (`Unknown`). A change is a journal entry
/// (call it in a transaction).
pub fn apply_session(
    conn: &Connection,
    speaker: &str,
    payload: &[u8],
    now: DateTime<Utc>,
) -> Result<Applied> {
    let v: Value = match serde_json::from_slice(payload) {
        Ok(v) => v,
        Err(e) => return Ok(Applied::Invalid(format!("not JSON: {e}"))),
    };
    let Some(key) = v["session_id"].as_str() else {
        return Ok(Applied::Unknown);
    };
    let (changed, change) = match v["event"].as_str() {
        Some("start") => (
            returning(
                conn,
                "UPDATE speaker_commands SET state = 'playing', started_ms = COALESCE(started_ms, ?3),
                     acked_ms = COALESCE(acked_ms, ?3), unreachable = 0
                 WHERE key = ?1 AND speaker = ?2 AND state IN ('pending', 'sent', 'acknowledged')
                 RETURNING broadcast_id",
                params![key, speaker, ms(now)],
            )?,
            "command_playing",
        ),
        // Interrupted by an emergency: queued again, sent when the cluster
        // is free (the device released the key).
        Some("end") if v["result"].as_str() == Some("interrupted") => (
            returning(
                conn,
                "UPDATE speaker_commands SET state = 'pending', next_attempt_ms = ?3,
                     started_ms = COALESCE(started_ms, ?3), acked_ms = COALESCE(acked_ms, ?3),
                     unreachable = 0
                 WHERE key = ?1 AND speaker = ?2 AND state IN ('sent', 'acknowledged', 'playing')
                 RETURNING broadcast_id",
                params![key, speaker, ms(now)],
            )?,
            "command_interrupted",
        ),
        Some("end") => {
            let (to, change) = if v["result"].as_str() == Some("failed") {
                ("failed", "command_failed")
            } else {
                ("completed", "command_completed")
            };
            (
                returning(
                    conn,
                    "UPDATE speaker_commands SET state = ?4, ended_ms = ?3,
                         started_ms = COALESCE(started_ms, ?3), acked_ms = COALESCE(acked_ms, ?3),
                         unreachable = 0
                     WHERE key = ?1 AND speaker = ?2 AND state IN ('pending', 'sent', 'acknowledged', 'playing')
                     RETURNING broadcast_id",
                    params![key, speaker, ms(now), to],
                )?,
                change,
            )
        }
        _ => return Ok(Applied::Invalid("event must be start or end".into())),
    };
    for b in &changed {
        journal_cluster(conn, *b, change, Some(speaker), now)?;
    }
    known_or(conn, key, speaker, changed.len())
}

/// Deadlines at `now`: commands past their expiry expire; a command sent
/// but unacknowledged `ack_timeout` after its first send is marked
/// unreachable (sends go on until it expires); a village whose smart
/// clusters are all unreachable or failed, none acknowledged, gets a
/// manual task; a plan past its expiry, or whose commands all ended,
/// ends. Whether anything changed.
pub fn sweep(conn: &mut Connection, config: &Config, now: DateTime<Utc>) -> Result<bool> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let t = ms(now);
    let timeout = config.broadcasts.ack_timeout_secs as i64 * 1000;
    // Per plan, the most telling of what this sweep did to it: one journal
    // entry each (the plan as it stands after the sweep).
    let mut touched: BTreeMap<i64, &'static str> = BTreeMap::new();
    let expired: Vec<i64> = tx
        .prepare_cached(
            "UPDATE speaker_commands SET state = 'expired', ended_ms = ?1
             WHERE state IN ('pending', 'sent') AND expires_ms <= ?1 RETURNING broadcast_id",
        )?
        .query_map([t], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let unreachable: Vec<i64> = tx
        .prepare_cached(
            "UPDATE speaker_commands SET unreachable = 1
             WHERE unreachable = 0 AND acked_ms IS NULL AND first_sent_ms IS NOT NULL
               AND first_sent_ms + ?2 <= ?1 AND state IN ('sent', 'expired') RETURNING broadcast_id",
        )?
        .query_map(params![t, timeout], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let mut changed = !expired.is_empty() || !unreachable.is_empty();
    for b in expired {
        note(&mut touched, b, "command_expired");
    }
    for b in unreachable {
        note(&mut touched, b, "command_unreachable");
    }
    // Villages of approved plans whose smart clusters all gave up.
    let stuck: Vec<(i64, String)> = {
        let mut q = tx.prepare_cached(
            "SELECT bc.broadcast_id, bc.village FROM broadcast_clusters bc
             JOIN broadcasts b ON b.id = bc.broadcast_id
             WHERE b.state = 'approved' AND bc.kind = 'smart'
             GROUP BY bc.broadcast_id, bc.village
             HAVING SUM(CASE WHEN EXISTS (
                        SELECT 1 FROM speaker_commands c
                        WHERE c.broadcast_id = bc.broadcast_id AND c.speaker = bc.speaker
                          AND (c.unreachable = 1 OR c.state = 'failed'))
                    THEN 0 ELSE 1 END) = 0
                AND NOT EXISTS (
                        SELECT 1 FROM speaker_commands c JOIN broadcast_clusters x
                          ON x.broadcast_id = c.broadcast_id AND x.speaker = c.speaker
                        WHERE c.broadcast_id = bc.broadcast_id AND x.village = bc.village
                          AND c.acked_ms IS NOT NULL)",
        )?;
        let rows = q
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        rows
    };
    for (b, v) in stuck {
        if open_task(&tx, config, b, &v, "unreachable", now)? > 0 {
            changed = true;
            note(&mut touched, b, "task_opened");
        }
    }
    let ended: Vec<(i64, &'static str)> = {
        let mut q = tx.prepare_cached(
            "SELECT b.id, b.expires_ms <= ?1,
                    (SELECT COUNT(*) FROM speaker_commands c WHERE c.broadcast_id = b.id),
                    (SELECT COUNT(*) FROM speaker_commands c WHERE c.broadcast_id = b.id
                       AND c.state IN ('pending', 'sent', 'acknowledged', 'playing'))
             FROM broadcasts b WHERE b.state IN ('approved', 'draft')",
        )?;
        let rows = q
            .query_map([t], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, bool>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, i64>(3)?,
                ))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        rows.into_iter()
            .filter_map(|(id, past, all, live)| {
                if past {
                    Some((id, "expired"))
                } else if all > 0 && live == 0 {
                    Some((id, "completed"))
                } else {
                    None
                }
            })
            .collect()
    };
    for (id, to) in ended {
        // A completed plan keeps its open tasks (the calls still matter);
        // an expired one closes them.
        if to == "expired" {
            // Journaled by `end_in`.
            end_in(&tx, id, to, "system", "expired", now)?;
            touched.remove(&id);
        } else if tx.execute(
            "UPDATE broadcasts SET state = 'completed', ended_ms = ?2, ended_by = 'system',
                     end_reason = 'all_plays_ended' WHERE id = ?1 AND state = 'approved'",
            params![id, t],
        )? > 0
        {
            note(&mut touched, id, "completed");
        }
        changed = true;
    }
    for (b, change) in touched {
        journal(&tx, b, change, now)?;
    }
    tx.commit()?;
    Ok(changed)
}

/// Keep, per plan, the most telling change of a sweep.
fn note(touched: &mut BTreeMap<i64, &'static str>, b: i64, change: &'static str) {
    const RANK: [&str; 4] = [
        "command_expired",
        "command_unreachable",
        "task_opened",
        "completed",
    ];
    let rank = |c: &str| RANK.iter().position(|r| *r == c).unwrap_or(0);
    let e = touched.entry(b).or_insert(change);
    if rank(change) > rank(e) {
        *e = change;
    }
}

/// Number plan `id`'s `change` in the caller's transaction (kind
/// `broadcast`; the plan with its clusters, their commands and its manual
/// tasks as they now stand in `body`, docs/PROVINCE.md §3).
pub(crate) fn journal(tx: &Connection, id: i64, change: &str, now: DateTime<Utc>) -> Result<()> {
    journal_cluster(tx, id, change, None, now)
}

/// [`journal`] for a change of one cluster's command: every cluster's
/// state, the commands of `speaker` only (a plan of 27 clusters × 3 plays
/// would otherwise carry 81 commands in each of its ~300 command entries).
fn journal_cluster(
    tx: &Connection,
    id: i64,
    change: &str,
    speaker: Option<&str>,
    now: DateTime<Utc>,
) -> Result<()> {
    let body = serde_json::to_vec(&entry_body(tx, id, change, speaker)?).unwrap_or_default();
    crate::journal::seq::append_bound(
        tx,
        &[crate::journal::seq::NewEntry {
            kind: crate::journal::seq::kind::BROADCAST,
            ref_id: id,
            at_ms: ms(now),
            body: Some(&body),
        }],
    )?;
    Ok(())
}

/// The body of a `broadcast` entry: plan `id` as it now stands (with
/// `only`, the commands of that cluster only).
pub fn entry_body(conn: &Connection, id: i64, change: &str, only: Option<&str>) -> Result<Value> {
    let mut plan = conn
        .query_row(
            "SELECT origin, warning_id, chain, priority, villages, text_vi, text_ethnic, language,
                    repeats, gap_secs, issued_ms, expires_ms, state, created_ms, created_by,
                    approved_ms, approved_by, ended_ms, ended_by, end_reason
             FROM broadcasts WHERE id = ?1",
            [id],
            |r| {
                let villages: String = r.get(4)?;
                Ok(json!({
                    "change": change,
                    "id": id,
                    "origin": r.get::<_, String>(0)?,
                    "bulletin": r.get::<_, Option<String>>(1)?,
                    "chain": r.get::<_, Option<String>>(2)?,
                    "priority": r.get::<_, String>(3)?,
                    "villages": serde_json::from_str::<Value>(&villages).unwrap_or(json!([])),
                    "text_vi": r.get::<_, String>(5)?,
                    "text_ethnic": r.get::<_, Option<String>>(6)?,
                    "language": r.get::<_, Option<String>>(7)?,
                    "repeats": r.get::<_, i64>(8)?,
                    "gap_secs": r.get::<_, i64>(9)?,
                    "issued_ms": r.get::<_, Option<i64>>(10)?,
                    "expires_ms": r.get::<_, i64>(11)?,
                    "state": r.get::<_, String>(12)?,
                    "created_ms": r.get::<_, i64>(13)?,
                    "created_by": r.get::<_, String>(14)?,
                    "approved_ms": r.get::<_, Option<i64>>(15)?,
                    "approved_by": r.get::<_, Option<String>>(16)?,
                    "ended_ms": r.get::<_, Option<i64>>(17)?,
                    "ended_by": r.get::<_, Option<String>>(18)?,
                    "end_reason": r.get::<_, Option<String>>(19)?,
                }))
            },
        )
        .optional()?
        .ok_or(BroadcastError::NotFound(id))?;
    let mut commands: HashMap<String, Vec<Value>> = HashMap::new();
    let mut states: HashMap<String, Vec<(String, bool)>> = HashMap::new();
    {
        let mut q = conn.prepare_cached(
            "SELECT speaker, play, state, unreachable, attempts, first_sent_ms, acked_ms,
                    started_ms, ended_ms, key
             FROM speaker_commands WHERE broadcast_id = ?1 ORDER BY speaker, play",
        )?;
        let mut rows = q.query([id])?;
        while let Some(r) = rows.next()? {
            let speaker: String = r.get(0)?;
            let state: String = r.get(2)?;
            let acked: Option<i64> = r.get(6)?;
            let unreachable = r.get::<_, bool>(3)? && acked.is_none();
            states
                .entry(speaker.clone())
                .or_default()
                .push((state.clone(), unreachable));
            commands.entry(speaker).or_default().push(json!({
                "play": r.get::<_, i64>(1)?,
                "key": r.get::<_, String>(9)?,
                "state": state,
                "unreachable": unreachable,
                "attempts": r.get::<_, i64>(4)?,
                "first_sent_ms": r.get::<_, Option<i64>>(5)?,
                "acked_ms": acked,
                "started_ms": r.get::<_, Option<i64>>(7)?,
                "ended_ms": r.get::<_, Option<i64>>(8)?,
            }));
        }
    }
    let mut clusters = Vec::new();
    {
        let mut q = conn.prepare_cached(
            "SELECT speaker, village, kind FROM broadcast_clusters WHERE broadcast_id = ?1 ORDER BY rowid",
        )?;
        let mut rows = q.query([id])?;
        while let Some(r) = rows.next()? {
            let (speaker, village, kind): (String, String, String) =
                (r.get(0)?, r.get(1)?, r.get(2)?);
            let st = cluster_state(&kind, states.get(&speaker).map_or(&[], Vec::as_slice));
            let mut c = json!({
                "speaker": speaker,
                "village": village,
                "kind": kind,
                "state": st,
            });
            if only.is_none_or(|o| o == speaker) {
                c["commands"] = Value::from(commands.remove(&speaker).unwrap_or_default());
            }
            clusters.push(c);
        }
    }
    let mut tasks = Vec::new();
    {
        // The village head's name and phone stay in the commune.
        let mut q = conn.prepare_cached(
            "SELECT id, village, reason, state, created_ms, done_ms, done_by, note
             FROM broadcast_tasks WHERE broadcast_id = ?1 ORDER BY id",
        )?;
        let mut rows = q.query([id])?;
        while let Some(r) = rows.next()? {
            tasks.push(json!({
                "id": r.get::<_, i64>(0)?,
                "village": r.get::<_, String>(1)?,
                "reason": r.get::<_, String>(2)?,
                "state": r.get::<_, String>(3)?,
                "created_ms": r.get::<_, i64>(4)?,
                "done_ms": r.get::<_, Option<i64>>(5)?,
                "done_by": r.get::<_, Option<String>>(6)?,
                "note": r.get::<_, Option<String>>(7)?,
            }));
        }
    }
    plan["clusters"] = Value::from(clusters);
    plan["tasks"] = Value::from(tasks);
    Ok(plan)
}

/// A cluster's state from its commands (all plays): the furthest any
/// play got.
pub fn cluster_state(kind: &str, cmds: &[(String, bool)]) -> &'static str {
    if kind == "fe" {
        return "manual";
    }
    let has = |s: &str| cmds.iter().any(|(st, _)| st == s);
    if has("completed") {
        "completed"
    } else if has("playing") {
        "playing"
    } else if has("acknowledged") {
        "acknowledged"
    } else if has("failed") {
        "failed"
    } else if cmds.iter().any(|(_, u)| *u) {
        "unreachable"
    } else if has("sent") {
        "sent"
    } else if has("pending") {
        "pending"
    } else if cmds.is_empty() {
        "planned"
    } else if has("expired") {
        "expired"
    } else {
        "cancelled"
    }
}

/// A village's state from its clusters and task.
pub fn village_state(plan_state: &str, clusters: &[&str], task: Option<&str>) -> &'static str {
    if clusters
        .iter()
        .any(|s| matches!(*s, "acknowledged" | "playing" | "completed"))
    {
        return "reached";
    }
    match task {
        Some("done") => return "reached_manually",
        Some("open") => return "manual",
        _ => {}
    }
    if plan_state == "draft" {
        return "planned";
    }
    if clusters.iter().any(|s| matches!(*s, "sent" | "pending")) {
        return "in_progress";
    }
    if plan_state == "cancelled" || plan_state == "superseded" {
        return "cancelled";
    }
    "unreached"
}

/// The list (plans in force and the latest ended ones) with coverage per
/// cluster and village, the open tasks, and the indicators.
pub fn overview(conn: &Connection, config: &Config, _now: DateTime<Utc>) -> Result<Value> {
    #[derive(Default)]
    struct Row {
        v: serde_json::Map<String, Value>,
        state: String,
        priority: String,
        villages: Vec<String>,
        issued_ms: Option<i64>,
        approved_ms: Option<i64>,
    }
    let mut plans: Vec<(i64, Row)> = Vec::new();
    {
        let mut q = conn.prepare_cached(
            "SELECT id, origin, warning_id, chain, priority, villages, text_vi, text_ethnic,
                    language, repeats, gap_secs, issued, issued_ms, expires_ms, state, created_ms,
                    created_by, approved_ms, approved_by, ended_ms, ended_by, end_reason
             FROM broadcasts ORDER BY id DESC",
        )?;
        let mut rows = q.query([])?;
        let mut ended = 0;
        while let Some(r) = rows.next()? {
            let state: String = r.get(14)?;
            let live = state == "draft" || state == "approved";
            let approved_ms: Option<i64> = r.get(17)?;
            if !live {
                ended += 1;
                if ended > MAX_ENDED_LISTED {
                    // Still counted in the indicators below.
                    plans.push((
                        r.get(0)?,
                        Row {
                            state,
                            priority: r.get(4)?,
                            villages: serde_json::from_str(&r.get::<_, String>(5)?)
                                .unwrap_or_default(),
                            issued_ms: r.get(12)?,
                            approved_ms,
                            v: serde_json::Map::new(),
                        },
                    ));
                    continue;
                }
            }
            let villages: Vec<String> =
                serde_json::from_str(&r.get::<_, String>(5)?).unwrap_or_default();
            let priority: String = r.get(4)?;
            let mut v = serde_json::Map::new();
            v.insert("id".into(), Value::from(r.get::<_, i64>(0)?));
            v.insert("origin".into(), Value::from(r.get::<_, String>(1)?));
            v.insert("bulletin".into(), json!(r.get::<_, Option<String>>(2)?));
            v.insert("chain".into(), json!(r.get::<_, Option<String>>(3)?));
            v.insert("priority".into(), Value::from(priority.clone()));
            v.insert(
                "priority_label".into(),
                Value::from(Priority::parse(&priority).map_or("", |p| p.label_vi())),
            );
            v.insert("villages".into(), json!(villages));
            v.insert("text_vi".into(), Value::from(r.get::<_, String>(6)?));
            v.insert("text_ethnic".into(), json!(r.get::<_, Option<String>>(7)?));
            v.insert("language".into(), json!(r.get::<_, Option<String>>(8)?));
            v.insert("repeats".into(), Value::from(r.get::<_, i64>(9)?));
            v.insert("gap_secs".into(), Value::from(r.get::<_, i64>(10)?));
            v.insert("issued".into(), local(r.get(12)?));
            v.insert("expires".into(), local(Some(r.get(13)?)));
            v.insert("state".into(), Value::from(state.clone()));
            v.insert("created".into(), local(Some(r.get(15)?)));
            v.insert("created_by".into(), Value::from(r.get::<_, String>(16)?));
            v.insert("approved".into(), local(approved_ms));
            v.insert("approved_by".into(), json!(r.get::<_, Option<String>>(18)?));
            v.insert("ended".into(), local(r.get(19)?));
            v.insert("ended_by".into(), json!(r.get::<_, Option<String>>(20)?));
            v.insert("end_reason".into(), json!(r.get::<_, Option<String>>(21)?));
            plans.push((
                r.get(0)?,
                Row {
                    v,
                    state,
                    priority,
                    villages,
                    issued_ms: r.get(12)?,
                    approved_ms,
                },
            ));
        }
    }
    // Clusters, commands and tasks of every plan.
    let mut clusters: HashMap<i64, Vec<(String, String, String)>> = HashMap::new();
    {
        let mut q = conn.prepare_cached(
            "SELECT broadcast_id, speaker, village, kind FROM broadcast_clusters ORDER BY rowid",
        )?;
        let mut rows = q.query([])?;
        while let Some(r) = rows.next()? {
            clusters
                .entry(r.get(0)?)
                .or_default()
                .push((r.get(1)?, r.get(2)?, r.get(3)?));
        }
    }
    #[derive(Default, Clone)]
    struct Cmd {
        play: i64,
        state: String,
        unreachable: bool,
        attempts: i64,
        acked_ms: Option<i64>,
        started_ms: Option<i64>,
        first_sent_ms: Option<i64>,
        key: String,
    }
    // speaker -> its latest answer (ack or session), any broadcast.
    let mut last_answer: HashMap<String, i64> = HashMap::new();
    let mut cmds: HashMap<(i64, String), Vec<Cmd>> = HashMap::new();
    {
        let mut q = conn.prepare_cached(
            "SELECT broadcast_id, speaker, play, state, unreachable, attempts, acked_ms, started_ms, key,
                    first_sent_ms
             FROM speaker_commands ORDER BY broadcast_id, speaker, play",
        )?;
        let mut rows = q.query([])?;
        while let Some(r) = rows.next()? {
            let speaker: String = r.get(1)?;
            let cmd = Cmd {
                play: r.get(2)?,
                state: r.get(3)?,
                unreachable: r.get(4)?,
                attempts: r.get(5)?,
                acked_ms: r.get(6)?,
                started_ms: r.get(7)?,
                first_sent_ms: r.get(9)?,
                key: r.get(8)?,
            };
            if let Some(a) = cmd.acked_ms.max(cmd.started_ms) {
                let e = last_answer.entry(speaker.clone()).or_insert(a);
                *e = (*e).max(a);
            }
            cmds.entry((r.get(0)?, speaker)).or_default().push(cmd);
        }
    }
    // (broadcast, village) -> (task id, state, done at).
    #[allow(clippy::type_complexity)]
    let mut tasks_of: HashMap<(i64, String), (i64, String, Option<i64>)> = HashMap::new();
    let mut open_tasks = Vec::new();
    {
        let mut q = conn.prepare_cached(
            "SELECT id, broadcast_id, village, reason, head_name, head_phone, state, created_ms,
                    done_ms, done_by, note
             FROM broadcast_tasks ORDER BY id",
        )?;
        let mut rows = q.query([])?;
        while let Some(r) = rows.next()? {
            let (id, b, village, state): (i64, i64, String, String) =
                (r.get(0)?, r.get(1)?, r.get(2)?, r.get(6)?);
            tasks_of.insert((b, village.clone()), (id, state.clone(), r.get(8)?));
            if state == "open" {
                let name = config
                    .villages
                    .iter()
                    .find(|v| v.id == village)
                    .map_or(village.clone(), |v| v.name.clone());
                open_tasks.push(json!({
                    "id": id,
                    "broadcast": b,
                    "village": village,
                    "village_name": name,
                    "reason": r.get::<_, String>(3)?,
                    "head_name": r.get::<_, Option<String>>(4)?,
                    "head_phone": r.get::<_, Option<String>>(5)?,
                    "state": state,
                    "created": local(r.get(7)?),
                }));
            }
        }
    }
    let mut by_priority: BTreeMap<&str, i64> =
        Priority::ALL.iter().map(|p| (p.as_str(), 0)).collect();
    let mut issue_to_ack: Vec<(i64, i64)> = Vec::new();
    let (mut covered, mut reached_fast) = (0i64, 0i64);
    let mut unreachable_now: std::collections::BTreeSet<String> = Default::default();
    let mut list = Vec::new();
    for (id, row) in plans {
        let cl = clusters.remove(&id).unwrap_or_default();
        let mut cluster_json = Vec::new();
        let mut state_by_speaker: HashMap<String, &'static str> = HashMap::new();
        let mut first_ack: Option<i64> = None;
        let mut village_first_ack: HashMap<String, i64> = HashMap::new();
        for (speaker, village, kind) in &cl {
            let cs = cmds.remove(&(id, speaker.clone())).unwrap_or_default();
            let pairs: Vec<(String, bool)> = cs
                .iter()
                .map(|c| (c.state.clone(), c.unreachable && c.acked_ms.is_none()))
                .collect();
            let st = cluster_state(kind, &pairs);
            state_by_speaker.insert(speaker.clone(), st);
            let ack = cs.iter().filter_map(|c| c.acked_ms.or(c.started_ms)).min();
            if let Some(a) = ack {
                first_ack = Some(first_ack.map_or(a, |f| f.min(a)));
                let e = village_first_ack.entry(village.clone()).or_insert(a);
                *e = (*e).min(a);
            }
            // Unreachable now: silent in a plan in force, and not heard
            // from (for any broadcast) since that command was first sent.
            if st == "unreachable" && row.state == "approved" {
                let since = cs
                    .iter()
                    .filter(|c| c.unreachable && c.acked_ms.is_none())
                    .filter_map(|c| c.first_sent_ms)
                    .min();
                let heard = match (since, last_answer.get(speaker)) {
                    (Some(s), Some(a)) => *a > s,
                    _ => false,
                };
                if !heard {
                    unreachable_now.insert(speaker.clone());
                }
            }
            if !row.v.is_empty() {
                cluster_json.push(json!({
                    "speaker": speaker,
                    "village": village,
                    "kind": kind,
                    "state": st,
                    "acknowledged": local(ack),
                    "plays": cs.iter().map(|c| json!({
                        "play": c.play, "state": c.state, "attempts": c.attempts,
                        "unreachable": c.unreachable && c.acked_ms.is_none(), "key": c.key,
                    })).collect::<Vec<_>>(),
                }));
            }
        }
        // A village is reached when a cluster of it acknowledged (or began)
        // a play, or its village head was called (task done).
        let mut village_reach = village_first_ack.clone();
        for v in &row.villages {
            if let Some((_, st, Some(done))) = tasks_of.get(&(id, v.clone())) {
                if st == "done" {
                    let e = village_reach.entry(v.clone()).or_insert(*done);
                    *e = (*e).min(*done);
                }
            }
        }
        if let Some(approved) = row.approved_ms {
            if let Some(n) = by_priority.get_mut(row.priority.as_str()) {
                *n += 1;
            }
            if let (Some(issued), Some(a)) = (row.issued_ms, first_ack) {
                issue_to_ack.push((approved, (a - issued).max(0)));
            }
            covered += row.villages.len() as i64;
            reached_fast += row
                .villages
                .iter()
                .filter(|v| {
                    village_reach
                        .get(*v)
                        .is_some_and(|a| *a <= approved + REACH_WINDOW_MS)
                })
                .count() as i64;
        }
        if row.v.is_empty() {
            continue;
        }
        let mut village_json = Vec::new();
        let mut reached = 0;
        for v in &row.villages {
            let states: Vec<&str> = cl
                .iter()
                .filter(|c| &c.1 == v)
                .map(|c| state_by_speaker.get(&c.0).copied().unwrap_or("planned"))
                .collect();
            let task = tasks_of.get(&(id, v.clone()));
            let vs = village_state(&row.state, &states, task.map(|t| t.1.as_str()));
            if vs == "reached" || vs == "reached_manually" {
                reached += 1;
            }
            let cfg = config.villages.iter().find(|x| &x.id == v);
            village_json.push(json!({
                "village": v,
                "name": cfg.map_or(v.as_str(), |x| x.name.as_str()),
                "dead_zone": cfg.is_some_and(|x| x.dead_zone),
                "state": vs,
                "clusters": cl.iter().filter(|c| &c.1 == v).map(|c| c.0.clone()).collect::<Vec<_>>(),
                "task": task.map(|t| json!({"id": t.0, "state": t.1, "done": local(t.2)})),
                "first_acknowledged": local(village_first_ack.get(v).copied()),
            }));
        }
        let mut v = row.v;
        v.insert("clusters".into(), Value::Array(cluster_json));
        v.insert("coverage".into(), Value::Array(village_json));
        v.insert("villages_reached".into(), Value::from(reached));
        v.insert(
            "issue_to_first_ack_s".into(),
            match (row.issued_ms, first_ack) {
                (Some(i), Some(a)) => Value::from(((a - i).max(0) as f64) / 1000.0),
                _ => Value::Null,
            },
        );
        list.push(Value::Object(v));
    }
    issue_to_ack.sort();
    let latest = issue_to_ack.last().map(|(_, d)| *d as f64 / 1000.0);
    let mut ds: Vec<i64> = issue_to_ack.iter().map(|(_, d)| *d).collect();
    ds.sort_unstable();
    let median = (!ds.is_empty()).then(|| ds[ds.len() / 2] as f64 / 1000.0);
    Ok(json!({
        "broadcasts": list,
        "tasks": open_tasks,
        "indicators": {
            "by_priority": by_priority,
            "issue_to_first_ack_s": { "latest": latest, "median": median },
            "villages_covered": covered,
            "villages_reached_15min": reached_fast,
            "reached_15min_pct": (covered > 0).then(|| (reached_fast as f64) * 100.0 / covered as f64),
            "clusters_unreachable": unreachable_now.len(),
            "clusters_unreachable_ids": unreachable_now,
        },
    }))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use chrono::TimeDelta;

    pub(crate) fn config() -> Config {
        crate::config::load_str(
            r#"
[commune]
id = "lung-phinh"
name = "xã Lùng Phình"
province = "Lào Cai"
[broadcasts]
ack_timeout_secs = 60
[[village]]
id = "sin-cai"
name = "Thôn Sín Cái"
[[village]]
id = "ta-lan"
name = "Thôn Tả Lần"
head_name = "Giàng A Sử"
head_phone = "0912 345 678"
[[village]]
id = "ho-sao"
name = "Thôn Hồ Sáo"
dead_zone = true
[[speaker]]
id = "loa-01"
village = "sin-cai"
[[speaker]]
id = "loa-02"
village = "sin-cai"
[[speaker]]
id = "loa-03"
village = "ta-lan"
kind = "fe"
[[speaker]]
id = "loa-04"
village = "ho-sao"
"#,
            "test",
            &[],
        )
        .unwrap()
    }

    pub(crate) fn draft(priority: Priority, villages: &[&str], now: DateTime<Utc>) -> Draft {
        Draft {
            origin: "operator",
            warning_id: None,
            chain: None,
            priority,
            villages: villages.iter().map(|v| v.to_string()).collect(),
            text_vi: "Thông báo thử".into(),
            text_ethnic: None,
            language: None,
            repeats: 2,
            gap_secs: 600,
            issued: None,
            expires: now + TimeDelta::hours(2),
        }
    }

    pub(crate) fn open() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let c =
            crate::store::open(&dir.path().join("j.db"), crate::config::SyncMode::Normal).unwrap();
        (dir, c)
    }

    /// Approval queues plays for smart clusters only (second play after
    /// the gap), opens a task for the FE-only village with the head's
    /// phone; nothing is due before approval.
    #[test]
    fn approval_queues_smart_clusters_and_tasks_fe_only_villages() {
        let (_d, mut c) = open();
        let cfg = config();
        let t0 = Utc::now();
        let id = insert_draft(
            &mut c,
            &draft(Priority::Emergency, &["sin-cai", "ta-lan"], t0),
            &cfg,
            "op",
            t0,
        )
        .unwrap();
        assert!(
            due(&c, t0, 100).unwrap().is_empty(),
            "nothing before approval"
        );
        let a = approve(&mut c, id, &cfg, "op", t0).unwrap();
        assert_eq!((a.commands, a.tasks), (4, 1));
        let d: Vec<String> = due(&c, t0, 100)
            .unwrap()
            .into_iter()
            .map(|d| d.speaker)
            .collect();
        assert_eq!(
            d,
            vec!["loa-01", "loa-02"],
            "first plays now, second after the gap"
        );
        let o = overview(&c, &cfg, t0).unwrap();
        let task = &o["tasks"][0];
        assert_eq!(task["village"], "ta-lan");
        assert_eq!(task["reason"], "fe_only");
        assert_eq!(task["head_phone"], "0912 345 678");
        assert!(
            approve(&mut c, id, &cfg, "op", t0).is_err(),
            "approved once"
        );
    }

    /// An unanswered command is resent with the same key after the
    /// backoff, becomes unreachable after the timeout, and its village
    /// (every smart cluster silent) gets a task; an ack later counts.
    #[test]
    fn silence_is_retried_then_unreachable_with_a_task() {
        let (_d, mut c) = open();
        let cfg = config();
        let t0 = Utc::now();
        let id = insert_draft(
            &mut c,
            &draft(Priority::Routine, &["ho-sao"], t0),
            &cfg,
            "op",
            t0,
        )
        .unwrap();
        approve(&mut c, id, &cfg, "op", t0).unwrap();
        let first = due(&c, t0, 10).unwrap();
        assert_eq!(first.len(), 1);
        mark_attempt(&c, first[0].id, t0, t0 + backoff(0, 2000, 60_000)).unwrap();
        assert!(due(&c, t0 + TimeDelta::seconds(1), 10).unwrap().is_empty());
        let again = due(&c, t0 + TimeDelta::seconds(2), 10).unwrap();
        assert_eq!(again[0].key, first[0].key, "same key on retry");
        assert_eq!(again[0].payload, first[0].payload, "same payload on retry");
        assert!(sweep(&mut c, &cfg, t0 + TimeDelta::seconds(61)).unwrap());
        let o = overview(&c, &cfg, t0 + TimeDelta::seconds(61)).unwrap();
        assert_eq!(o["broadcasts"][0]["clusters"][0]["state"], "unreachable");
        assert_eq!(o["broadcasts"][0]["coverage"][0]["state"], "manual");
        assert_eq!(o["tasks"][0]["reason"], "unreachable");
        assert_eq!(o["indicators"]["clusters_unreachable"], 1);
        let ack = json!({"idempotency_key": first[0].key, "status": "accepted"}).to_string();
        assert_eq!(
            apply_ack(&c, "loa-04", ack.as_bytes(), t0, 1000).unwrap(),
            Applied::Changed
        );
        assert_eq!(
            apply_ack(&c, "loa-04", ack.as_bytes(), t0, 1000).unwrap(),
            Applied::Unchanged
        );
        assert_eq!(
            apply_ack(&c, "loa-01", ack.as_bytes(), t0, 1000).unwrap(),
            Applied::Unknown
        );
        let o = overview(&c, &cfg, t0 + TimeDelta::seconds(62)).unwrap();
        assert_eq!(o["broadcasts"][0]["coverage"][0]["state"], "reached");
    }

    /// A routine command waits while its cluster plays another broadcast;
    /// an emergency does not.
    #[test]
    fn routine_waits_for_free_clusters_emergency_preempts() {
        let (_d, mut c) = open();
        let cfg = config();
        let t0 = Utc::now();
        let a = insert_draft(
            &mut c,
            &draft(Priority::Routine, &["sin-cai"], t0),
            &cfg,
            "op",
            t0,
        )
        .unwrap();
        approve(&mut c, a, &cfg, "op", t0).unwrap();
        for d in due(&c, t0, 10).unwrap() {
            mark_attempt(&c, d.id, t0, t0 + TimeDelta::seconds(5)).unwrap();
            let s = json!({"session_id": d.key, "event": "start"}).to_string();
            apply_session(&c, &d.speaker, s.as_bytes(), t0).unwrap();
        }
        let b = insert_draft(
            &mut c,
            &draft(Priority::Priority, &["sin-cai"], t0),
            &cfg,
            "op",
            t0,
        )
        .unwrap();
        approve(&mut c, b, &cfg, "op", t0).unwrap();
        assert!(due(&c, t0, 10).unwrap().is_empty(), "clusters busy");
        let e = insert_draft(
            &mut c,
            &draft(Priority::Emergency, &["sin-cai"], t0),
            &cfg,
            "op",
            t0,
        )
        .unwrap();
        approve(&mut c, e, &cfg, "op", t0).unwrap();
        let d = due(&c, t0, 10).unwrap();
        assert_eq!(d.len(), 2);
        assert!(d.iter().all(|d| d.key.starts_with(&format!("bc{e}-"))));
    }

    /// A Cancel of the bulletin chain stops pending plays and closes
    /// tasks; an Update supersedes the chain's draft.
    #[test]
    fn cancel_stops_pending_commands() {
        let (_d, mut c) = open();
        let cfg = config();
        let t0 = Utc::now();
        let id = insert_draft(
            &mut c,
            &draft(Priority::Emergency, &["sin-cai", "ta-lan"], t0),
            &cfg,
            "op",
            t0,
        )
        .unwrap();
        approve(&mut c, id, &cfg, "op", t0).unwrap();
        cancel(&mut c, id, "op", t0).unwrap();
        assert!(due(&c, t0 + TimeDelta::hours(1), 10).unwrap().is_empty());
        let left: i64 = c
            .query_row(
                "SELECT COUNT(*) FROM speaker_commands WHERE state IN ('pending', 'sent')",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(left, 0);
        let o = overview(&c, &cfg, t0).unwrap();
        assert_eq!(o["tasks"].as_array().unwrap().len(), 0);
        assert!(cancel(&mut c, id, "op", t0).is_err());
    }

    /// The indicators hold the right numbers: broadcasts approved by
    /// priority (drafts not counted); bulletin issue → first acknowledged
    /// play; villages reached within 15 minutes of approval (by a
    /// cluster's acknowledgement, or by the village head's call), out of
    /// the covered villages; clusters unreachable now.
    #[test]
    fn indicators_hold_the_right_numbers() {
        let (_d, mut c) = open();
        let cfg = config();
        let t0 = Utc::now();
        let secs = TimeDelta::seconds;
        let issued = (t0 - secs(60)).fixed_offset();
        // A: emergency relaying a bulletin issued a minute before approval;
        // sin-cai acknowledged after 30 s, ho-sao's cluster silent.
        let mut da = draft(Priority::Emergency, &["sin-cai", "ho-sao"], t0);
        da.issued = Some(issued);
        da.repeats = 1;
        let a = insert_draft(&mut c, &da, &cfg, "op", t0).unwrap();
        approve(&mut c, a, &cfg, "op", t0).unwrap();
        for d in due(&c, t0, 10).unwrap() {
            mark_attempt(&c, d.id, t0, t0 + secs(600)).unwrap();
            if d.speaker == "loa-01" {
                let ack = json!({"idempotency_key": d.key, "status": "accepted"}).to_string();
                apply_ack(&c, &d.speaker, ack.as_bytes(), t0 + secs(30), 1000).unwrap();
            }
        }
        // B: routine to the FE-only village; the head called after 10 min.
        let b = insert_draft(
            &mut c,
            &draft(Priority::Routine, &["ta-lan"], t0),
            &cfg,
            "op",
            t0,
        )
        .unwrap();
        approve(&mut c, b, &cfg, "op", t0).unwrap();
        let task: i64 = c
            .query_row(
                "SELECT id FROM broadcast_tasks WHERE broadcast_id = ?1",
                [b],
                |r| r.get(0),
            )
            .unwrap();
        task_done(&mut c, task, "op", None, t0 + secs(600)).unwrap();
        // C: priority, acknowledged only after 20 minutes.
        let cc = insert_draft(
            &mut c,
            &draft(Priority::Priority, &["sin-cai"], t0),
            &cfg,
            "op",
            t0,
        )
        .unwrap();
        approve(&mut c, cc, &cfg, "op", t0).unwrap();
        let late = t0 + secs(1200);
        let keys: Vec<(String, String)> = c
            .prepare(
                "SELECT speaker, key FROM speaker_commands WHERE broadcast_id = ?1 AND play = 1",
            )
            .unwrap()
            .query_map([cc], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        for (spk, key) in keys {
            let ack = json!({"idempotency_key": key, "status": "accepted"}).to_string();
            apply_ack(&c, &spk, ack.as_bytes(), late, 1000).unwrap();
        }
        // D: a draft, never approved: not counted.
        insert_draft(
            &mut c,
            &draft(Priority::Emergency, &["sin-cai"], t0),
            &cfg,
            "op",
            t0,
        )
        .unwrap();
        // ho-sao's cluster silent past the timeout (60 s).
        sweep(&mut c, &cfg, t0 + secs(61)).unwrap();
        let o = overview(&c, &cfg, late).unwrap();
        let ind = &o["indicators"];
        assert_eq!(
            ind["by_priority"],
            json!({"emergency": 1, "priority": 1, "routine": 1})
        );
        assert_eq!(ind["issue_to_first_ack_s"]["latest"], json!(90.0), "{ind}");
        assert_eq!(ind["issue_to_first_ack_s"]["median"], json!(90.0));
        assert_eq!(ind["villages_covered"], 4, "A: 2, B: 1, C: 1");
        assert_eq!(
            ind["villages_reached_15min"], 2,
            "sin-cai of A (30 s) and ta-lan of B (called at 10 min); not C's (20 min), not ho-sao"
        );
        assert_eq!(ind["reached_15min_pct"], json!(50.0));
        assert_eq!(ind["clusters_unreachable"], 1);
        assert_eq!(ind["clusters_unreachable_ids"], json!(["loa-04"]));
        let ba = o["broadcasts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["id"] == a)
            .unwrap();
        assert_eq!(ba["issue_to_first_ack_s"], json!(90.0));
        assert_eq!(ba["villages_reached"], 1);
    }

    /// The ethnic-language text: a bulletin's draft carries the commune's
    /// recorded text in the language most covered villages speak (the
    /// hazard's own before the generic one); at approval, only clusters of
    /// villages speaking it get it, the others the Vietnamese alone.
    #[test]
    fn ethnic_text_goes_to_the_clusters_of_villages_speaking_it() {
        let cfg = crate::config::load_str(
            r#"
[commune]
id = "lung-phinh"
name = "xã Lùng Phình"
province = "Lào Cai"
[[broadcasts.ethnic]]
language = "Hmông"
text = "Ceeb toom (txhua yam)"
[[broadcasts.ethnic]]
language = "Hmông"
hazard = "flash_flood"
text = "Ceeb toom dej nyab"
[[broadcasts.ethnic]]
language = "Dao"
text = "Tòng pạo"
[[village]]
id = "sin-cai"
name = "Thôn Sín Cái"
language = "Hmông"
[[village]]
id = "lung-phinh"
name = "Thôn Lùng Phình"
language = "Hmông"
[[village]]
id = "ta-lan"
name = "Thôn Tả Lần"
language = "Dao"
[[speaker]]
id = "loa-01"
village = "sin-cai"
[[speaker]]
id = "loa-02"
village = "lung-phinh"
[[speaker]]
id = "loa-03"
village = "ta-lan"
"#,
            "test",
            &[],
        )
        .unwrap();
        let villages: Vec<String> = ["sin-cai", "lung-phinh", "ta-lan"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            plan::ethnic_for(&cfg, &villages, Some("flash_flood")),
            Some(("Hmông", "Ceeb toom dej nyab"))
        );
        assert_eq!(
            plan::ethnic_for(&cfg, &villages, Some("frost")),
            Some(("Hmông", "Ceeb toom (txhua yam)"))
        );
        assert_eq!(
            plan::ethnic_for(&cfg, &["ta-lan".to_string()], None),
            Some(("Dao", "Tòng pạo"))
        );
        let (_d, mut c) = open();
        let t0 = Utc::now();
        let mut d = draft(
            Priority::Emergency,
            &["sin-cai", "lung-phinh", "ta-lan"],
            t0,
        );
        d.repeats = 1;
        let (l, t) = plan::ethnic_for(&cfg, &d.villages, Some("flash_flood")).unwrap();
        d.language = Some(l.into());
        d.text_ethnic = Some(t.into());
        let id = insert_draft(&mut c, &d, &cfg, "op", t0).unwrap();
        approve(&mut c, id, &cfg, "op", t0).unwrap();
        let mut got: Vec<(String, Value, Value)> = due(&c, t0, 10)
            .unwrap()
            .into_iter()
            .map(|d| {
                let v: Value = serde_json::from_str(&d.payload).unwrap();
                (
                    d.speaker,
                    v["ethnic_text"].clone(),
                    v["ethnic_lang"].clone(),
                )
            })
            .collect();
        got.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            got,
            vec![
                ("loa-01".into(), json!("Ceeb toom dej nyab"), json!("Hmông")),
                ("loa-02".into(), json!("Ceeb toom dej nyab"), json!("Hmông")),
                ("loa-03".into(), Value::Null, Value::Null),
            ]
        );
        let bad = crate::config::load_str(
            "[commune]\nid = \"x\"\nname = \"x\"\nprovince = \"y\"\n[[broadcasts.ethnic]]\nlanguage = \"Dao\"\nhazard = \"khong-co\"\ntext = \"a\"\n",
            "test",
            &[],
        );
        assert!(bad.is_err(), "an unknown hazard is refused");
    }

    /// `(change, state)` of every `broadcast` entry in seq order (the
    /// seqs 1..=n).
    fn journal_of(c: &Connection) -> Vec<(String, String)> {
        let mut q = c
            .prepare("SELECT seq, kind, body FROM journal_seq ORDER BY seq")
            .unwrap();
        let rows: Vec<(i64, String, Vec<u8>)> = q
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        rows.into_iter()
            .enumerate()
            .map(|(i, (seq, kind, body))| {
                assert_eq!(seq, i as i64 + 1, "gap-free");
                assert_eq!(kind, "broadcast");
                let v: Value = serde_json::from_slice(&body).unwrap();
                (
                    v["change"].as_str().unwrap().to_owned(),
                    v["state"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }

    fn last_body(c: &Connection) -> Value {
        let b: Vec<u8> = c
            .query_row(
                "SELECT body FROM journal_seq ORDER BY seq DESC LIMIT 1",
                [],
                |r| r.get(0),
            )
            .unwrap();
        serde_json::from_slice(&b).unwrap()
    }

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    /// Every state change of a plan is a numbered `broadcast` entry with
    /// the plan, its clusters' commands and its tasks as they then stood;
    /// re-sends and repeated answers take none.
    #[test]
    fn every_broadcast_change_is_a_journal_entry_and_retries_are_not() {
        let (_d, mut c) = open();
        let cfg = config();
        let t0 = Utc::now();
        let id = insert_draft(
            &mut c,
            &draft(Priority::Routine, &["ho-sao", "ta-lan"], t0),
            &cfg,
            "op",
            t0,
        )
        .unwrap();
        approve(&mut c, id, &cfg, "op", t0).unwrap();
        let first = due(&c, t0, 10).unwrap();
        assert_eq!(first.len(), 1);
        let send = |c: &mut Connection, at: DateTime<Utc>| {
            let tx = c.transaction().unwrap();
            mark_attempt(&tx, first[0].id, at, at + TimeDelta::seconds(2)).unwrap();
            tx.commit().unwrap();
        };
        send(&mut c, t0);
        send(&mut c, t0 + TimeDelta::seconds(2));
        assert!(sweep(&mut c, &cfg, t0 + TimeDelta::seconds(61)).unwrap());
        let ack = json!({"idempotency_key": first[0].key, "status": "accepted"}).to_string();
        apply_ack(&c, "loa-04", ack.as_bytes(), t0, 1000).unwrap();
        apply_ack(&c, "loa-04", ack.as_bytes(), t0, 1000).unwrap();
        let task: i64 = c
            .query_row(
                "SELECT id FROM broadcast_tasks WHERE village = 'ta-lan'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        task_done(&mut c, task, "op", Some("đã gọi"), t0).unwrap();
        cancel(&mut c, id, "op", t0).unwrap();
        assert_eq!(
            journal_of(&c),
            pairs(&[
                ("drafted", "draft"),
                ("approved", "approved"),
                ("command_sent", "approved"),
                ("task_opened", "approved"),
                ("command_acknowledged", "approved"),
                ("task_done", "approved"),
                ("cancelled", "cancelled"),
            ])
        );
        // A command's change carries every cluster's state, the commands
        // of its own cluster only.
        let b: Vec<u8> = c
            .query_row(
                "SELECT body FROM journal_seq WHERE json_extract(body, '$.change') = 'command_acknowledged'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        let acked: Value = serde_json::from_slice(&b).unwrap();
        for cl in acked["clusters"].as_array().unwrap() {
            assert!(cl["state"].is_string(), "{cl}");
            assert_eq!(
                cl.get("commands").is_some(),
                cl["speaker"] == "loa-04",
                "{cl}"
            );
        }
        let v = last_body(&c);
        assert_eq!(v["id"], id);
        assert_eq!(v["villages"], json!(["ho-sao", "ta-lan"]));
        assert_eq!(v["end_reason"], "operator");
        let cl = v["clusters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["speaker"] == "loa-04")
            .unwrap();
        assert_eq!(cl["state"], "acknowledged");
        assert_eq!(cl["commands"][0]["attempts"], 2);
        assert_eq!(cl["commands"][0]["state"], "acknowledged");
        let tasks = v["tasks"].as_array().unwrap();
        assert!(tasks
            .iter()
            .any(|t| t["village"] == "ta-lan" && t["state"] == "done"));
        assert!(
            !v.to_string().contains("0912 345 678"),
            "the village head's phone stays in the commune: {v}"
        );
    }

    /// A change and its entries commit together: an approval that fails
    /// after superseding the chain's plan (numbered already) leaves
    /// neither the supersession nor its entry.
    #[test]
    fn a_failing_change_writes_no_entry() {
        let (_d, mut c) = open();
        let cfg = config();
        let t0 = Utc::now();
        let mut d = draft(Priority::Routine, &["sin-cai"], t0);
        d.chain = Some("bulletin-1".into());
        let old = insert_draft(&mut c, &d, &cfg, "op", t0).unwrap();
        approve(&mut c, old, &cfg, "op", t0).unwrap();
        let new = insert_draft(&mut c, &d, &cfg, "op", t0).unwrap();
        let before = journal_of(&c);
        c.execute_batch(
            "CREATE TRIGGER refuse_commands BEFORE INSERT ON speaker_commands
             WHEN NEW.broadcast_id != 1
             BEGIN SELECT RAISE(ABORT, 'disk full'); END;",
        )
        .unwrap();
        assert_eq!(old, 1);
        assert!(approve(&mut c, new, &cfg, "op", t0).is_err());
        assert_eq!(journal_of(&c), before, "no entry of the failed approval");
        assert_eq!(state_of(&c, old).unwrap(), "approved");
        assert_eq!(state_of(&c, new).unwrap(), "draft");
    }
}
