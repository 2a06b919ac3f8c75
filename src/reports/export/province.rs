//! Submission of sealed reports to the province, through the durable
//! delivery outbox (`crate::delivery`), and its state.
//!
//! - [`submit`] enqueues the latest revision of a period for the target of
//!   `[report.province]` (the sealed document byte for byte, or its DHIS2
//!   `dataValueSet`), under the idempotency key
//!   `report:{period}:r{revision}:{digest}`, and marks the revision
//!   `submitted` (table `report_delivery`), in one transaction. Submitting
//!   the same revision again changes nothing (same key); a correction is a
//!   new revision, so a new submission.
//! - [`reconcile`] turns the outbox's outcome into the report's state: a
//!   2xx answer → `acknowledged` (the receipt kept), a refusal or expiry →
//!   `submission_failed`.
//! - [`pending_auto`] lists the latest revisions not submitted yet (for
//!   `report.province.auto_submit`).

use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};

use crate::config::{Config, ProvinceFormat};
use crate::delivery::{self, DeliveryError, NewDelivery, State};
use crate::reports::{seal, service, ReportError, ReportPeriod, Snapshot};

use super::{dhis2, ExportError};

/// Errors of a submission.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// The report side failed (unknown period, not sealed, store).
    #[error(transparent)]
    Report(#[from] ReportError),
    /// The outbox failed.
    #[error("không ghi được vào hàng đợi gửi: {0}")]
    Delivery(#[from] DeliveryError),
    /// SQLite failed.
    #[error("lỗi cơ sở dữ liệu báo cáo: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The body could not be made.
    #[error(transparent)]
    Export(#[from] ExportError),
    /// A stored document does not parse.
    #[error("văn bản đã niêm phong không đọc được: {0}")]
    Document(#[from] serde_json::Error),
    /// `[report.province]` names no target.
    #[error("Chưa cấu hình nơi nhận báo cáo của tỉnh ([report.province] target)")]
    NotConfigured,
}

/// The detail kept with a revision's delivery state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Detail {
    /// The delivery's idempotency key.
    pub key: String,
    /// The target it goes to.
    pub target: String,
    /// The receiver's answer, once final.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt: Option<delivery::Receipt>,
    /// Why it failed, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A submission of one revision.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Submission {
    /// Period label.
    pub period: String,
    /// Revision submitted.
    pub revision: u32,
    /// Its id.
    pub digest: String,
    /// `submitted`, `acknowledged` or `submission_failed`.
    pub state: String,
    /// The outbox row.
    pub delivery: Option<delivery::Delivery>,
    /// The detail (key, target, receipt).
    pub detail: Option<Detail>,
    /// Whether this call enqueued it (false: it was already).
    pub new: bool,
}

/// The idempotency key of a revision's submission.
pub fn key(period: &str, revision: u32, digest: &str) -> String {
    format!("report:{period}:r{revision}:{digest}")
}

fn state_of(
    conn: &Connection,
    digest: &str,
) -> Result<Option<(String, Option<Detail>)>, SubmitError> {
    let row: Option<(String, Option<String>)> = conn
        .query_row(
            "SELECT state, detail FROM report_delivery WHERE digest = ?1",
            [digest],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    Ok(row.map(|(s, d)| (s, d.and_then(|d| serde_json::from_str(&d).ok()))))
}

/// The body posted for a sealed document.
fn body(config: &Config, document: &[u8]) -> Result<(Vec<u8>, &'static str), SubmitError> {
    match config.report.province.format {
        ProvinceFormat::Snapshot => Ok((document.to_vec(), "application/json")),
        ProvinceFormat::Dhis2 => {
            let s: Snapshot = serde_json::from_slice(document)?;
            let set = dhis2::data_value_set(&s, &config.report.dhis2)?;
            Ok((serde_json::to_vec(&set)?, "application/json"))
        }
    }
}

/// Submit the latest revision of period `label` (not audited here: the
/// use case in `app::report_submit` does that).
pub fn submit(
    conn: &mut Connection,
    config: &Config,
    label: &str,
    now: DateTime<Utc>,
) -> Result<Submission, SubmitError> {
    let target = config.report.province.target.clone();
    if target.is_empty() {
        return Err(SubmitError::NotConfigured);
    }
    let label = ReportPeriod::parse(label, config.report.regime)
        .map_err(ReportError::from)?
        .label();
    let (stored, document) =
        seal::latest(conn, &label)?.ok_or_else(|| ReportError::NotSealed(label.clone()))?;
    let key = key(&label, stored.revision, &stored.digest);
    let (body, content_type) = body(config, &document)?;
    let tx = conn.transaction()?;
    let enq = delivery::enqueue(
        &tx,
        &NewDelivery {
            key: &key,
            target: &target,
            content_type,
            body: &body,
        },
        now,
    )?;
    let new = matches!(enq, delivery::Enqueued::New(_));
    let existing = state_of(&tx, &stored.digest)?;
    if new || existing.is_none() {
        let detail = Detail {
            key: key.clone(),
            target,
            receipt: None,
            error: None,
        };
        service::set_delivery_state(
            &tx,
            &stored.digest,
            "submitted",
            Some(&serde_json::to_string(&detail)?),
            now,
        )?;
    }
    tx.commit()?;
    let (state, detail) = state_of(conn, &stored.digest)?.unwrap_or(("submitted".into(), None));
    Ok(Submission {
        period: label,
        revision: stored.revision,
        digest: stored.digest,
        state,
        delivery: delivery::get(conn, &key)?,
        detail,
        new,
    })
}

/// The submission state of the latest revision of `label`, if submitted.
pub fn status(
    conn: &Connection,
    config: &Config,
    label: &str,
) -> Result<Option<Submission>, SubmitError> {
    let label = ReportPeriod::parse(label, config.report.regime)
        .map_err(ReportError::from)?
        .label();
    let Some((stored, _)) = seal::latest(conn, &label)? else {
        return Err(ReportError::NotSealed(label).into());
    };
    let Some((state, detail)) = state_of(conn, &stored.digest)? else {
        return Ok(None);
    };
    let delivery = match &detail {
        Some(d) => delivery::get(conn, &d.key)?,
        None => None,
    };
    Ok(Some(Submission {
        period: label,
        revision: stored.revision,
        digest: stored.digest,
        state,
        delivery,
        detail,
        new: false,
    }))
}

/// Move `submitted` revisions whose delivery ended to `acknowledged` (2xx,
/// with the receipt) or `submission_failed`; returns (period digest, new
/// state) of each change.
pub fn reconcile(
    conn: &mut Connection,
    now: DateTime<Utc>,
) -> Result<Vec<(String, String)>, SubmitError> {
    let rows: Vec<(String, Option<String>)> = {
        let mut stmt = conn.prepare(
            "SELECT digest, detail FROM report_delivery WHERE state = 'submitted' ORDER BY at LIMIT 100",
        )?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<Vec<_>, _>>()?;
        rows
    };
    let mut changed = Vec::new();
    for (digest, detail) in rows {
        let Some(mut detail) = detail.and_then(|d| serde_json::from_str::<Detail>(&d).ok()) else {
            continue;
        };
        let Some(d) = delivery::get(conn, &detail.key)? else {
            continue;
        };
        let state = match d.state {
            State::Pending => continue,
            State::Delivered => "acknowledged",
            State::Rejected | State::Expired => "submission_failed",
        };
        detail.receipt = d.receipt.clone();
        detail.error = match d.state {
            State::Delivered => None,
            _ => d.last_error.clone(),
        };
        let at = d.receipt.as_ref().map_or(now, |r| r.at);
        let tx = conn.transaction()?;
        // Only if it is still `submitted` (a concurrent writer may have
        // moved it).
        let still: Option<String> = tx
            .query_row(
                "SELECT state FROM report_delivery WHERE digest = ?1",
                params![digest],
                |r| r.get(0),
            )
            .optional()?;
        if still.as_deref() == Some("submitted") {
            service::set_delivery_state(
                &tx,
                &digest,
                state,
                Some(&serde_json::to_string(&detail)?),
                at,
            )?;
            changed.push((digest, state.to_owned()));
        }
        tx.commit()?;
    }
    Ok(changed)
}

/// The latest revision of every sealed period that has no delivery state
/// yet (never submitted), oldest first: what auto-submission sends.
pub fn pending_auto(conn: &Connection) -> Result<Vec<(String, u32, String)>, SubmitError> {
    let mut stmt = conn.prepare(
        "SELECT r.period, r.revision, r.digest FROM reports r
         WHERE r.revision = (SELECT MAX(revision) FROM reports x WHERE x.period = r.period)
           AND NOT EXISTS (SELECT 1 FROM report_delivery d WHERE d.digest = r.digest)
         ORDER BY r.id",
    )?;
    let rows = stmt
        .query_map([], |r| {
            Ok((r.get(0)?, r.get::<_, i64>(1)? as u32, r.get(2)?))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}
