//! Assembling, signing and storing snapshots: revision 0 when a period
//! closes, correction drafts when late events move a sealed value, and
//! approved corrections.

use base64::Engine as _;
use chrono::{DateTime, Utc};
use ed25519_dalek::{Signer, SigningKey};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::compute::{self, local_text, Inputs};
use super::intake::Rule;
use super::period::ReportPeriod;
use super::snapshot::*;
use super::ReportError;
use crate::config::{Config, Regime};
use crate::indicators::Engine;

/// Sealing waits this long after the cutoff, so a batch received just
/// before it has been committed.
pub const SETTLE_MS: i64 = 60_000;

/// The canonical bytes of the body (the snapshot without its signature).
pub fn canonical_body(s: &Snapshot) -> Result<Vec<u8>, ReportError> {
    let mut body = s.clone();
    body.signature = None;
    serde_jcs::to_vec(&body).map_err(|e| ReportError::Corrupt(e.to_string()))
}

/// `sha256:` + hex of bytes.
pub fn digest_text(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Sign a snapshot: its id, and the canonical document bytes.
pub fn sign(mut s: Snapshot, key: &SigningKey) -> Result<(String, Vec<u8>), ReportError> {
    let body = canonical_body(&s)?;
    let digest = digest_text(&body);
    let sig = key.sign(&body);
    let b64 = base64::engine::general_purpose::STANDARD;
    s.signature = Some(Signature {
        alg: "ed25519".into(),
        public_key: b64.encode(key.verifying_key().as_bytes()),
        digest: digest.clone(),
        value: b64.encode(sig.to_bytes()),
    });
    let doc = serde_jcs::to_vec(&s).map_err(|e| ReportError::Corrupt(e.to_string()))?;
    Ok((digest, doc))
}

fn regime_info(config: &Config) -> RegimeInfo {
    let (code, legal_basis, cut_day) = match config.report.regime {
        Regime::Nd09 => ("nd09", "Nghị định 09/2019/NĐ-CP, Điều 12", 15),
        Regime::Calendar => ("calendar", "Tháng dương lịch", 1),
    };
    RegimeInfo {
        code: code.into(),
        legal_basis: legal_basis.into(),
        cut_day,
        grace_secs: config.report.grace_secs,
    }
}

fn org_unit(config: &Config) -> OrgUnit {
    let r = &config.report;
    OrgUnit {
        code: if r.org_code.trim().is_empty() {
            config.commune.id.clone()
        } else {
            r.org_code.clone()
        },
        id: config.commune.id.clone(),
        name: config.commune.name.clone(),
        parent: if r.parent.trim().is_empty() {
            config.commune.province.clone()
        } else {
            r.parent.clone()
        },
    }
}

/// The code version written in manifests.
pub fn code_version() -> String {
    format!("commune-ioc {}", env!("CARGO_PKG_VERSION"))
}

/// Everything a snapshot needs besides its inputs.
#[derive(Debug, Clone)]
pub struct Header {
    /// Revision number.
    pub revision: u32,
    /// The id of the revision it corrects.
    pub supersedes: Option<String>,
    /// `sealed` or `correction`.
    pub status: SnapshotStatus,
    /// RFC 3339.
    pub sealed_at: String,
    /// Cutoff, ms.
    pub cutoff: i64,
    /// Reason and approver.
    pub correction: Option<CorrectionInfo>,
}

/// Assemble an unsigned snapshot.
pub fn assemble(
    config: &Config,
    engine: &Engine,
    period: &ReportPeriod,
    inputs: &Inputs,
    h: Header,
) -> Snapshot {
    Snapshot {
        schema: SCHEMA.into(),
        report_code: config.report.code.clone(),
        regime: regime_info(config),
        org_unit: org_unit(config),
        period: PeriodInfo {
            label: period.label(),
            kind: period.kind,
            dhis2: period.dhis2(),
            window_start: period.start.to_rfc3339(),
            window_end: period.end.to_rfc3339(),
        },
        revision: h.revision,
        supersedes: h.supersedes,
        status: h.status,
        sealed_at: h.sealed_at,
        late_cutoff: local_text(h.cutoff),
        correction: h.correction,
        values: compute::rows(config, engine, inputs),
        manifest: Manifest {
            event_streams: inputs.streams.values().map(|(m, _)| m.clone()).collect(),
            code_version: code_version(),
            ruleset_version: compute::ruleset_version(engine),
        },
        signature: None,
    }
}

/// A stored revision.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stored {
    /// Period label.
    pub period: String,
    /// Revision.
    pub revision: u32,
    /// Id.
    pub digest: String,
    /// The id it supersedes.
    pub supersedes: Option<String>,
    /// When it was sealed (wall clock).
    pub sealed_wall: DateTime<Utc>,
    /// Who sealed or approved it.
    pub sealed_by: String,
}

/// The latest revision of a period, with its bytes.
pub fn latest(conn: &Connection, period: &str) -> Result<Option<(Stored, Vec<u8>)>, ReportError> {
    revision(conn, period, None)
}

/// One revision (the latest with `None`), with its bytes.
pub fn revision(
    conn: &Connection,
    period: &str,
    rev: Option<u32>,
) -> Result<Option<(Stored, Vec<u8>)>, ReportError> {
    let sql =
        "SELECT period, revision, digest, supersedes, sealed_wall, sealed_by, document FROM reports
               WHERE period = ?1 AND (?2 IS NULL OR revision = ?2) ORDER BY revision DESC LIMIT 1";
    Ok(conn
        .query_row(sql, params![period, rev.map(i64::from)], |r| {
            Ok((
                Stored {
                    period: r.get(0)?,
                    revision: r.get::<_, i64>(1)? as u32,
                    digest: r.get(2)?,
                    supersedes: r.get(3)?,
                    sealed_wall: DateTime::from_timestamp_millis(r.get(4)?).unwrap_or_default(),
                    sealed_by: r.get(5)?,
                },
                r.get(6)?,
            ))
        })
        .optional()?)
}

/// Every stored revision, oldest period and revision first.
pub fn all(conn: &Connection) -> Result<Vec<Stored>, ReportError> {
    let mut stmt = conn.prepare(
        "SELECT period, revision, digest, supersedes, sealed_wall, sealed_by FROM reports ORDER BY period, revision",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(Stored {
            period: r.get(0)?,
            revision: r.get::<_, i64>(1)? as u32,
            digest: r.get(2)?,
            supersedes: r.get(3)?,
            sealed_wall: DateTime::from_timestamp_millis(r.get(4)?).unwrap_or_default(),
            sealed_by: r.get(5)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// What a seal did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SealOutcome {
    /// Period label.
    pub period: String,
    /// Revision now latest.
    pub revision: u32,
    /// Its id.
    pub digest: String,
    /// It was sealed before (nothing changed).
    pub already_sealed: bool,
}

fn stale_frontiers(
    conn: &Connection,
    period: &ReportPeriod,
    rule: &Rule,
) -> Result<bool, ReportError> {
    let other: Option<i64> = conn
        .query_row(
            "SELECT 1 FROM report_streams WHERE period = ?1 AND rule <> ?2 LIMIT 1",
            params![period.label(), rule.signature()],
            |r| r.get(0),
        )
        .optional()?;
    if other.is_some() {
        return Ok(true);
    }
    let from: i64 = conn
        .query_row(
            "SELECT value FROM meta WHERE key = 'report_intake_from'",
            [],
            |r| r.get::<_, String>(0),
        )
        .optional()?
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    if from == 0 {
        return Ok(false);
    }
    let (a, b) = period.utc();
    let old: Option<i64> = conn
        .query_row(
            "SELECT 1 FROM events WHERE id <= ?1 AND ts >= ?2 AND ts < ?3 LIMIT 1",
            params![from, a.timestamp_millis(), b.timestamp_millis()],
            |r| r.get(0),
        )
        .optional()?;
    Ok(old.is_some())
}

/// Number a sealed report (or correction) as a journal entry in its own
/// transaction, so it travels to the province with the rest
/// (docs/PROVINCE.md): its period, revision, digest, what it supersedes
/// and the signed document.
fn journal_report(
    tx: &Connection,
    period: &str,
    revision: impl Serialize,
    digest: &str,
    supersedes: Option<&str>,
    doc: &[u8],
    now: DateTime<Utc>,
) -> Result<(), ReportError> {
    let document: serde_json::Value = serde_json::from_slice(doc).unwrap_or_else(|_| {
        serde_json::Value::String(base64::engine::general_purpose::STANDARD.encode(doc))
    });
    let body = serde_json::to_vec(&serde_json::json!({
        "period": period,
        "revision": revision,
        "digest": digest,
        "supersedes": supersedes,
        "document": document,
    }))
    .map_err(|e| ReportError::Corrupt(e.to_string()))?;
    crate::journal::seq::append_bound(
        tx,
        &[crate::journal::seq::NewEntry {
            kind: crate::journal::seq::kind::REPORT,
            ref_id: tx.last_insert_rowid(),
            at_ms: now.timestamp_millis(),
            body: Some(&body),
        }],
    )?;
    Ok(())
}

/// Build (without storing) revision 0 of a period from the store: the
/// exact document sealing writes.
pub fn build_first(
    conn: &Connection,
    config: &Config,
    engine: &Engine,
    key: &SigningKey,
    period: &ReportPeriod,
) -> Result<(String, Vec<u8>), ReportError> {
    let rule = Rule::from_config(&config.report);
    let cutoff = rule.cutoff_ms(period);
    let inputs = compute::from_store(conn, engine, period, cutoff)?;
    let snap = assemble(
        config,
        engine,
        period,
        &inputs,
        Header {
            revision: 0,
            supersedes: None,
            status: SnapshotStatus::Sealed,
            sealed_at: local_text(cutoff),
            cutoff,
            correction: None,
        },
    );
    sign(snap, key)
}

/// Seal a period (revision 0) once its cutoff has passed; sealing a
/// sealed period returns its latest revision unchanged.
pub fn seal(
    conn: &mut Connection,
    config: &Config,
    engine: &Engine,
    key: &SigningKey,
    period: &ReportPeriod,
    now: DateTime<Utc>,
    by: &str,
) -> Result<SealOutcome, ReportError> {
    let label = period.label();
    if let Some((s, _)) = latest(conn, &label)? {
        return Ok(SealOutcome {
            period: label,
            revision: s.revision,
            digest: s.digest,
            already_sealed: true,
        });
    }
    let rule = Rule::from_config(&config.report);
    let cutoff = rule.cutoff_ms(period);
    if now.timestamp_millis() < cutoff + SETTLE_MS {
        return Err(ReportError::NotClosed {
            period: label,
            until: local_text(cutoff + SETTLE_MS),
        });
    }
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    // Another process may have sealed it while we waited for the lock.
    if let Some((s, _)) = latest(&tx, &label)? {
        return Ok(SealOutcome {
            period: label,
            revision: s.revision,
            digest: s.digest,
            already_sealed: true,
        });
    }
    if stale_frontiers(&tx, period, &rule)? {
        tracing::info!(period = %label, "rebuilding report manifests from the journal");
        let inputs = compute::from_journal(&tx, engine, period, cutoff)?;
        compute::rebuild_streams(&tx, period, &inputs, &rule.signature())?;
    }
    let (digest, doc) = build_first(&tx, config, engine, key, period)?;
    tx.execute(
        "INSERT INTO reports (period, revision, digest, supersedes, document, sealed_wall, sealed_by)
         VALUES (?1, 0, ?2, NULL, ?3, ?4, ?5)",
        params![label, digest, doc, now.timestamp_millis(), by],
    )?;
    journal_report(&tx, &label, 0, &digest, None, &doc, now)?;
    tx.commit()?;
    tracing::info!(period = %label, %digest, "report sealed");
    Ok(SealOutcome {
        period: label,
        revision: 0,
        digest,
        already_sealed: false,
    })
}

/// A value that late events moved.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Change {
    /// Scope.
    pub scope: String,
    /// Indicator.
    pub indicator: String,
    /// Sealed value.
    pub from: Option<f64>,
    /// Value with the late events.
    pub to: Option<f64>,
}

fn moved(a: Option<f64>, b: Option<f64>, pct: f64) -> bool {
    match (a, b) {
        (Some(0.0), Some(y)) => y != 0.0,
        (Some(x), Some(y)) => ((y - x).abs() / x.abs()) * 100.0 > pct,
        (None, None) => false,
        _ => true,
    }
}

/// The values that differ past the threshold between two row sets.
pub fn changes(old: &[ScopeValues], new: &[ScopeValues], pct: f64) -> Vec<Change> {
    let mut out = Vec::new();
    for (o, n) in old.iter().zip(new) {
        for (ro, rn) in o.indicators.iter().zip(&n.indicators) {
            if moved(ro.value, rn.value, pct) {
                out.push(Change {
                    scope: o.scope.clone(),
                    indicator: ro.indicator.clone(),
                    from: ro.value,
                    to: rn.value,
                });
            }
        }
    }
    out
}

/// A correction draft.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Draft {
    /// Id.
    pub id: i64,
    /// Period label.
    pub period: String,
    /// The revision it corrects.
    pub base_digest: String,
    /// Late events it takes in.
    pub late_events: u64,
    /// What moved.
    pub changes: Vec<Change>,
    /// `open`, `approved`, `dismissed`, `superseded`.
    pub state: String,
    /// When it was made.
    pub created_at: DateTime<Utc>,
    /// Who decided.
    pub decided_by: Option<String>,
}

/// The drafts of a period (every period with `None`), newest first.
pub fn drafts(conn: &Connection, period: Option<&str>) -> Result<Vec<Draft>, ReportError> {
    let mut stmt = conn.prepare(
        "SELECT id, period, base_digest, late_events, changes, state, created_at, decided_by FROM report_drafts
         WHERE ?1 IS NULL OR period = ?1 ORDER BY id DESC",
    )?;
    let rows = stmt.query_map([period], |r| {
        let changes: String = r.get(4)?;
        Ok(Draft {
            id: r.get(0)?,
            period: r.get(1)?,
            base_digest: r.get(2)?,
            late_events: r.get::<_, i64>(3)? as u64,
            changes: serde_json::from_str(&changes).unwrap_or_default(),
            state: r.get(5)?,
            created_at: DateTime::from_timestamp_millis(r.get(6)?).unwrap_or_default(),
            decided_by: r.get(7)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Look at the late ledger of every sealed period: when late events not
/// yet looked at move a value past the threshold, write a correction
/// draft (replacing an older open one). Returns the drafts made.
pub fn check_late(
    conn: &mut Connection,
    config: &Config,
    engine: &Engine,
    now: DateTime<Utc>,
) -> Result<Vec<i64>, ReportError> {
    let mut made = Vec::new();
    let periods: Vec<String> = {
        let mut stmt = conn.prepare("SELECT DISTINCT period FROM reports")?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
        rows.collect::<Result<_, _>>()?
    };
    for label in periods {
        let Ok(period) = ReportPeriod::parse(&label, config.report.regime) else {
            continue;
        };
        let Some((stored, doc)) = latest(conn, &label)? else {
            continue;
        };
        let sealed: Snapshot =
            serde_json::from_slice(&doc).map_err(|e| ReportError::Corrupt(e.to_string()))?;
        let cutoff = DateTime::parse_from_rfc3339(&sealed.late_cutoff)
            .map(|d| d.timestamp_millis())
            .map_err(|e| ReportError::Corrupt(e.to_string()))?;
        let (n, max): (i64, Option<i64>) = conn.query_row(
            "SELECT COUNT(*), MAX(received_at) FROM report_late WHERE period = ?1 AND received_at >= ?2",
            params![label, cutoff],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        let Some(max) = max else { continue };
        let seen_key = format!("report_late_seen:{label}:{}", stored.digest);
        let seen: Option<i64> = conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [&seen_key], |r| {
                r.get::<_, String>(0)
            })
            .optional()?
            .and_then(|v| v.parse().ok());
        if seen == Some(max) {
            continue;
        }
        let new_cutoff = max + 1;
        let fast = compute::from_store(conn, engine, &period, new_cutoff)?;
        let rows = compute::rows(config, engine, &fast);
        let moved = changes(
            &sealed.values,
            &rows,
            config.report.correction_threshold_pct,
        );
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        if !moved.is_empty() {
            let inputs = compute::from_journal(&tx, engine, &period, new_cutoff)?;
            let body = assemble(
                config,
                engine,
                &period,
                &inputs,
                Header {
                    revision: stored.revision + 1,
                    supersedes: Some(stored.digest.clone()),
                    status: SnapshotStatus::Correction,
                    sealed_at: String::new(),
                    cutoff: new_cutoff,
                    correction: None,
                },
            );
            let body =
                serde_json::to_vec(&body).map_err(|e| ReportError::Corrupt(e.to_string()))?;
            tx.execute(
                "UPDATE report_drafts SET state = 'superseded' WHERE period = ?1 AND state = 'open'",
                [&label],
            )?;
            tx.execute(
                "INSERT INTO report_drafts (period, base_digest, cutoff, late_events, changes, body, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    label,
                    stored.digest,
                    new_cutoff,
                    n,
                    serde_json::to_string(&moved).unwrap_or_default(),
                    body,
                    now.timestamp_millis()
                ],
            )?;
            made.push(tx.last_insert_rowid());
            tracing::info!(period = %label, late = n, changed = moved.len(), "correction draft made");
        }
        tx.execute(
            "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            params![seen_key, max.to_string()],
        )?;
        tx.commit()?;
    }
    Ok(made)
}

/// Approve a correction draft: sign it as the next revision with the
/// reason and approver.
pub fn approve(
    conn: &mut Connection,
    key: &SigningKey,
    period: &str,
    draft: i64,
    reason: &str,
    by: &str,
    now: DateTime<Utc>,
) -> Result<SealOutcome, ReportError> {
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(ReportError::NoReason);
    }
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let row: Option<(String, String, i64, Vec<u8>, String)> = tx
        .query_row(
            "SELECT period, base_digest, late_events, body, state FROM report_drafts WHERE id = ?1",
            [draft],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )
        .optional()?;
    let Some((p, base, late, body, state)) = row.filter(|r| r.0 == period) else {
        return Err(ReportError::NoDraft(draft));
    };
    if state != "open" {
        return Err(ReportError::DraftClosed { id: draft, state });
    }
    let Some((latest_rev, _)) = latest(&tx, &p)? else {
        return Err(ReportError::NoDraft(draft));
    };
    if latest_rev.digest != base {
        return Err(ReportError::DraftClosed {
            id: draft,
            state: "superseded".into(),
        });
    }
    let mut snap: Snapshot =
        serde_json::from_slice(&body).map_err(|e| ReportError::Corrupt(e.to_string()))?;
    snap.sealed_at = now
        .with_timezone(&super::period::vn())
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, false);
    snap.correction = Some(CorrectionInfo {
        reason: reason.to_owned(),
        approved_by: by.to_owned(),
        late_events: late as u64,
    });
    let revision = snap.revision;
    let (digest, doc) = sign(snap, key)?;
    tx.execute(
        "INSERT INTO reports (period, revision, digest, supersedes, document, sealed_wall, sealed_by)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![p, revision, digest, base, doc, now.timestamp_millis(), by],
    )?;
    journal_report(&tx, &p, revision, &digest, Some(&base), &doc, now)?;
    tx.execute(
        "UPDATE report_drafts SET state = 'approved', decided_by = ?2, decided_at = ?3, reason = ?4 WHERE id = ?1",
        params![draft, by, now.timestamp_millis(), reason],
    )?;
    tx.commit()?;
    Ok(SealOutcome {
        period: p,
        revision,
        digest,
        already_sealed: false,
    })
}

/// Dismiss a correction draft (the late events stay in the ledger).
pub fn dismiss(
    conn: &Connection,
    period: &str,
    draft: i64,
    reason: &str,
    by: &str,
    now: DateTime<Utc>,
) -> Result<(), ReportError> {
    let n = conn.execute(
        "UPDATE report_drafts SET state = 'dismissed', decided_by = ?3, decided_at = ?4, reason = ?5
         WHERE id = ?1 AND period = ?2 AND state = 'open'",
        params![draft, period, by, now.timestamp_millis(), reason.trim()],
    )?;
    if n == 0 {
        return Err(ReportError::NoDraft(draft));
    }
    Ok(())
}
