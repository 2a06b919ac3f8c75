//! Warnings in the store (tables of migration 0003): a valid bulletin is
//! stored once per CAP triple (a re-delivery is a duplicate, counted once),
//! its `Update`/`Cancel` references change the bulletins they name (a
//! reference to a bulletin not stored is kept and flagged, and applied
//! when that bulletin arrives), `expires` ends it.

use chrono::{DateTime, FixedOffset, TimeZone, Utc};
use rusqlite::{params, Connection, OptionalExtension, Row};
use serde::Serialize;

use super::cap::{warning_id, Alert};
use super::profile::{Profiled, VillageMatch};
use super::view::{WarningState, WarningView};
use crate::vocab::{Hazard, RiskLevel};

/// A valid, profiled bulletin on its way to the store.
#[derive(Debug, Clone)]
pub struct Bulletin {
    /// The validated bulletin.
    pub alert: Alert,
    /// Its hazard, level and villages.
    pub profile: Profiled,
    /// The bytes as received.
    pub xml: Vec<u8>,
    /// Where it came from: `mqtt`, `api`, `feed:{name}`.
    pub origin: String,
    /// When it was received.
    pub received_at: DateTime<Utc>,
}

/// What storing a set of bulletins changed.
#[derive(Debug, Default)]
pub struct Applied {
    /// Warnings created or changed, as they now stand.
    pub changed: Vec<WarningView>,
    /// Bulletins already stored (re-deliveries).
    pub duplicates: usize,
    /// Ids of the bulletins newly stored.
    pub stored: Vec<String>,
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

const COLUMNS: &str = "id, state, hazard, level, villages, event, headline_vi, sender_name, sent, expires, supersedes, expires_ms";

/// The state a new bulletin starts in, before links to it are applied.
fn own_state(b: &Bulletin, now: DateTime<Utc>) -> WarningState {
    let a = &b.alert;
    let expires = a.display_info().and_then(|i| i.expires);
    match a.msg_type.as_str() {
        "Cancel" => WarningState::Cancelled,
        "Ack" | "Error" => WarningState::NotForCommune,
        _ if a.status != "Actual" || b.profile.villages.is_empty() => WarningState::NotForCommune,
        _ if expires.is_some_and(|e| e.with_timezone(&Utc) <= now) => WarningState::Expired,
        _ => WarningState::Active,
    }
}

/// Store `bulletins` (in order) in one transaction of `conn`'s caller.
pub fn apply(
    conn: &Connection,
    bulletins: &[Bulletin],
    now: DateTime<Utc>,
) -> rusqlite::Result<Applied> {
    let mut out = Applied::default();
    for b in bulletins {
        let a = &b.alert;
        let id = a.id();
        let seen = conn.execute(
            "UPDATE warnings SET deliveries = deliveries + 1 WHERE id = ?1",
            [&id],
        )?;
        if seen > 0 {
            tracing::info!(warning = %id, origin = %b.origin, "warning delivered again: duplicate");
            out.duplicates += 1;
            continue;
        }
        let mut state = own_state(b, now);
        // Links to it stored before it (its Update/Cancel came first).
        let kinds: Vec<String> = conn
            .prepare_cached("SELECT kind FROM warning_links WHERE to_id = ?1")?
            .query_map([&id], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        if kinds.iter().any(|k| k == "Cancel") {
            state = WarningState::Cancelled;
        } else if kinds.iter().any(|k| k == "Update") && state != WarningState::Cancelled {
            state = WarningState::Updated;
        }
        // Its references.
        let mut root: Option<String> = None;
        let mut unknown = Vec::new();
        let mut known = Vec::new();
        for r in &a.references {
            let rid = r.id();
            let found: Option<String> = conn
                .query_row(
                    "SELECT chain_root FROM warnings WHERE id = ?1",
                    [&rid],
                    |row| row.get(0),
                )
                .optional()?;
            match found {
                Some(chain) => {
                    root.get_or_insert(chain);
                    known.push(rid);
                }
                None => unknown.push(rid),
            }
        }
        let root = root
            .or_else(|| a.references.first().map(|r| r.id()))
            .unwrap_or_else(|| id.clone());
        if !unknown.is_empty() {
            tracing::warn!(warning = %id, unknown = ?unknown,
                "warning references bulletins not stored; kept and flagged");
        }
        let info = a.display_info();
        let headline_vi = a
            .infos
            .iter()
            .find(|i| i.is_vietnamese())
            .and_then(|i| i.headline.clone());
        let expires = info.and_then(|i| i.expires);
        let parsed = serde_json::json!({ "alert": a, "profile": &b.profile });
        conn.execute(
            "INSERT INTO warnings (id, sender, identifier, sent, sent_ms, status, msg_type, state, hazard, level,
                event, headline_vi, sender_name, expires, expires_ms, villages, supersedes, chain_root,
                unknown_refs, origin, received_ms, changed_ms, parsed, xml)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24)",
            params![
                id,
                a.sender,
                a.identifier,
                a.sent_text,
                a.sent.timestamp_millis(),
                a.status,
                a.msg_type,
                state.as_str(),
                b.profile.hazard.map(Hazard::as_str),
                b.profile.level.map(RiskLevel::get),
                info.map(|i| i.event.as_str()).unwrap_or(""),
                headline_vi,
                info.and_then(|i| i.sender_name.clone()),
                expires.map(|e| e.to_rfc3339()),
                expires.map(|e| e.timestamp_millis()),
                serde_json::to_string(&b.profile.villages).unwrap_or_else(|_| "[]".into()),
                a.references.last().map(|r| r.id()),
                root,
                serde_json::to_string(&unknown).unwrap_or_else(|_| "[]".into()),
                b.origin,
                ms(b.received_at),
                ms(now),
                parsed.to_string(),
                b.xml,
            ],
        )?;
        for r in &a.references {
            conn.execute(
                "INSERT OR IGNORE INTO warning_links (from_id, to_id, kind) VALUES (?1, ?2, ?3)",
                params![id, r.id(), a.msg_type],
            )?;
        }
        // What it does to the bulletins it references.
        let to = match a.msg_type.as_str() {
            "Cancel" => Some(WarningState::Cancelled),
            "Update" => Some(WarningState::Updated),
            _ => None,
        };
        if let Some(to) = to {
            for rid in &known {
                let n = conn.execute(
                    "UPDATE warnings SET state = ?2, changed_ms = ?3
                     WHERE id = ?1 AND state NOT IN ('cancelled', ?2)",
                    params![rid, to.as_str(), ms(now)],
                )?;
                if n > 0 {
                    if let Some(v) = view(conn, rid, now)? {
                        out.changed.push(v);
                    }
                }
            }
        }
        if let Some(v) = view(conn, &id, now)? {
            out.changed.push(v);
        }
        out.stored.push(id);
    }
    Ok(out)
}

/// End the active warnings whose `expires` has passed at `now`, in one
/// transaction with their `warning` journal entries (the province's copy
/// sees them end; docs/PROVINCE.md §2).
pub fn expire(conn: &Connection, now: DateTime<Utc>) -> rusqlite::Result<Vec<WarningView>> {
    let tx = rusqlite::Transaction::new_unchecked(conn, rusqlite::TransactionBehavior::Immediate)?;
    let ids: Vec<String> = tx
        .prepare_cached(
            "SELECT id FROM warnings WHERE state = 'active' AND expires_ms IS NOT NULL AND expires_ms <= ?1",
        )?
        .query_map([ms(now)], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let mut out = Vec::new();
    for id in ids {
        tx.execute(
            "UPDATE warnings SET state = 'expired', changed_ms = ?2 WHERE id = ?1 AND state = 'active'",
            params![id, ms(now)],
        )?;
        if let Some(v) = view(&tx, &id, now)? {
            out.push(v);
        }
    }
    // Numbering only fails in SQLite (the other errors cannot come from it).
    journal_changes(&tx, &out, ms(now)).map_err(|e| match e {
        crate::journal::JournalError::Sqlite(e) => e,
        other => rusqlite::Error::ToSqlConversionFailure(Box::new(other)),
    })?;
    tx.commit()?;
    Ok(out)
}

/// Number each of `changed` as a `warning` journal entry (the warning as
/// it now stands) in the caller's transaction: a stored bulletin's change
/// (`runtime::pipeline`) and an expiry by the sweep alike.
pub(crate) fn journal_changes(
    tx: &Connection,
    changed: &[WarningView],
    at_ms: i64,
) -> Result<(), crate::journal::JournalError> {
    let bodies: Vec<Vec<u8>> = changed
        .iter()
        .map(|w| serde_json::to_vec(w).unwrap_or_default())
        .collect();
    let entries: Vec<_> = bodies
        .iter()
        .map(|b| crate::journal::seq::NewEntry {
            kind: crate::journal::seq::kind::WARNING,
            ref_id: 0,
            at_ms,
            body: Some(b),
        })
        .collect();
    crate::journal::seq::append_bound(tx, &entries)?;
    Ok(())
}

fn fixed(s: Option<String>) -> Option<DateTime<FixedOffset>> {
    s.and_then(|s| DateTime::parse_from_rfc3339(&s).ok())
}

/// A row of [`COLUMNS`] as a view; an active warning past its `expires`
/// at `now` reads as expired (before the sweep writes it).
fn row_view(r: &Row<'_>, now: DateTime<Utc>) -> rusqlite::Result<WarningView> {
    let id: String = r.get(0)?;
    let state: String = r.get(1)?;
    let mut state = WarningState::parse(&state).unwrap_or(WarningState::NotForCommune);
    let expires_ms: Option<i64> = r.get(11)?;
    if state == WarningState::Active && expires_ms.is_some_and(|e| e <= ms(now)) {
        state = WarningState::Expired;
    }
    let villages: String = r.get(4)?;
    let villages: Vec<VillageMatch> = serde_json::from_str(&villages).unwrap_or_default();
    let sent: String = r.get(8)?;
    Ok(WarningView {
        state,
        hazard: r
            .get::<_, Option<String>>(2)?
            .as_deref()
            .and_then(Hazard::parse),
        level: r.get::<_, Option<u8>>(3)?.and_then(RiskLevel::new),
        villages: villages.into_iter().map(|v| v.village).collect(),
        event: r.get(5)?,
        headline_vi: r.get(6)?,
        sender_name: r.get(7)?,
        sent: DateTime::parse_from_rfc3339(&sent)
            .unwrap_or_else(|_| Utc.timestamp_opt(0, 0).unwrap().fixed_offset()),
        expires: fixed(r.get(9)?),
        supersedes: r.get(10)?,
        id,
    })
}

/// One warning as a view.
pub fn view(
    conn: &Connection,
    id: &str,
    now: DateTime<Utc>,
) -> rusqlite::Result<Option<WarningView>> {
    conn.query_row(
        &format!("SELECT {COLUMNS} FROM warnings WHERE id = ?1"),
        [id],
        |r| row_view(r, now),
    )
    .optional()
}

/// Which warnings `GET /api/warnings` lists.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only this hazard.
    pub hazard: Option<Hazard>,
    /// Only this level.
    pub level: Option<u8>,
    /// Only warnings covering this village.
    pub village: Option<String>,
    /// Ended warnings sent after this are listed too (active ones always).
    pub since: DateTime<Utc>,
    /// At most this many.
    pub limit: usize,
}

/// A warning in a list: the view, plus how villages matched and flags.
#[derive(Debug, Clone, Serialize)]
pub struct Listed {
    /// The view.
    #[serde(flatten)]
    pub view: WarningView,
    /// The CAP `msgType`.
    pub msg_type: String,
    /// The CAP `status`.
    pub status: String,
    /// Each covered village and how it matched.
    pub matches: Vec<VillageMatch>,
    /// The first warning of its Update/Cancel chain.
    pub chain_root: String,
    /// References to bulletins not stored.
    pub unknown_refs: Vec<String>,
    /// Where it came from.
    pub origin: String,
    /// How many times it was delivered.
    pub deliveries: i64,
}

const LIST_COLUMNS: &str = "id, state, hazard, level, villages, event, headline_vi, sender_name, sent, expires, supersedes, expires_ms, msg_type, status, chain_root, unknown_refs, origin, deliveries";

fn listed(r: &Row<'_>, now: DateTime<Utc>) -> rusqlite::Result<Listed> {
    let villages: String = r.get(4)?;
    let unknown: String = r.get(15)?;
    Ok(Listed {
        view: row_view(r, now)?,
        msg_type: r.get(12)?,
        status: r.get(13)?,
        matches: serde_json::from_str(&villages).unwrap_or_default(),
        chain_root: r.get(14)?,
        unknown_refs: serde_json::from_str(&unknown).unwrap_or_default(),
        origin: r.get(16)?,
        deliveries: r.get(17)?,
    })
}

/// Active warnings and those sent since `filter.since`, newest first.
pub fn list(
    conn: &Connection,
    filter: &Filter,
    now: DateTime<Utc>,
) -> rusqlite::Result<Vec<Listed>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {LIST_COLUMNS} FROM warnings
         WHERE (state = 'active' OR sent_ms >= ?1)
           AND (?2 IS NULL OR hazard = ?2) AND (?3 IS NULL OR level = ?3)
         ORDER BY sent_ms DESC, id"
    ))?;
    let rows = stmt.query_map(
        params![
            ms(filter.since),
            filter.hazard.map(Hazard::as_str),
            filter.level
        ],
        |r| listed(r, now),
    )?;
    let mut out = Vec::new();
    for r in rows {
        let r = r?;
        if let Some(v) = &filter.village {
            if !r.view.villages.contains(v) {
                continue;
            }
        }
        out.push(r);
        if out.len() >= filter.limit {
            break;
        }
    }
    Ok(out)
}

/// One warning with everything: the list entry, the original XML, the
/// parsed bulletin and its Update/Cancel chain (oldest first).
#[derive(Debug, Clone, Serialize)]
pub struct Detail {
    /// The list entry.
    #[serde(flatten)]
    pub listed: Listed,
    /// The bulletin as received.
    pub xml: String,
    /// The validated bulletin and its profile.
    pub parsed: serde_json::Value,
    /// Every warning of its chain, oldest first (itself included).
    pub chain: Vec<Listed>,
    /// Warnings that reference it (Update, Cancel, Ack, Error).
    pub referenced_by: Vec<String>,
}

/// One warning by id.
pub fn detail(conn: &Connection, id: &str, now: DateTime<Utc>) -> rusqlite::Result<Option<Detail>> {
    let row = conn
        .query_row(
            &format!("SELECT {LIST_COLUMNS}, xml, parsed FROM warnings WHERE id = ?1"),
            [id],
            |r| {
                let xml: Vec<u8> = r.get(18)?;
                let parsed: String = r.get(19)?;
                Ok((listed(r, now)?, xml, parsed))
            },
        )
        .optional()?;
    let Some((listed_row, xml, parsed)) = row else {
        return Ok(None);
    };
    let chain = conn
        .prepare_cached(&format!(
            "SELECT {LIST_COLUMNS} FROM warnings WHERE chain_root = ?1 OR id = ?1 ORDER BY sent_ms, id"
        ))?
        .query_map([&listed_row.chain_root], |r| listed(r, now))?
        .collect::<Result<Vec<_>, _>>()?;
    let referenced_by = conn
        .prepare_cached("SELECT from_id FROM warning_links WHERE to_id = ?1 ORDER BY from_id")?
        .query_map([id], |r| r.get(0))?
        .collect::<Result<Vec<String>, _>>()?;
    Ok(Some(Detail {
        listed: listed_row,
        xml: String::from_utf8_lossy(&xml).into_owned(),
        parsed: serde_json::from_str(&parsed).unwrap_or(serde_json::Value::Null),
        chain,
        referenced_by,
    }))
}

/// Whether a bulletin with this triple is stored.
pub fn exists(
    conn: &Connection,
    sender: &str,
    identifier: &str,
    sent: &str,
) -> rusqlite::Result<bool> {
    Ok(conn
        .query_row(
            "SELECT 1 FROM warnings WHERE id = ?1",
            [warning_id(sender, identifier, sent)],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}

/// A warning listed by the live `warnings` family when commune-ioc starts:
/// its view, the first bulletin of its chain and when it was received.
#[derive(Debug, Clone)]
pub struct InForce {
    /// The view (as of `now`).
    pub view: WarningView,
    /// The first warning of its Update/Cancel chain.
    pub chain: String,
    /// When it was received.
    pub received_at: DateTime<Utc>,
}

/// The warnings in force at `now` (active and not past `expires`), and
/// those not for the commune sent since `since` and not expired, newest
/// first, at most `limit`: what the live `warnings` family lists after a
/// restart.
pub fn in_force(
    conn: &Connection,
    now: DateTime<Utc>,
    since: DateTime<Utc>,
    limit: usize,
) -> rusqlite::Result<Vec<InForce>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS}, chain_root, received_ms FROM warnings
         WHERE (state = 'active' OR (state = 'not_for_commune' AND sent_ms >= ?2))
           AND (expires_ms IS NULL OR expires_ms > ?1)
         ORDER BY state = 'active' DESC, sent_ms DESC, id
         LIMIT ?3"
    ))?;
    let rows = stmt.query_map(
        params![ms(now), ms(since), i64::try_from(limit).unwrap_or(i64::MAX)],
        |r| {
            let received_ms: i64 = r.get(13)?;
            Ok(InForce {
                view: row_view(r, now)?,
                chain: r.get(12)?,
                received_at: Utc
                    .timestamp_millis_opt(received_ms)
                    .single()
                    .unwrap_or(now),
            })
        },
    )?;
    rows.collect()
}
