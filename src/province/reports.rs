//! Sealed reports at the province: each `report` entry of a commune's
//! journal is verified on arrival with `crate::reports::verify` (digest,
//! Ed25519 signature against the commune's public key from its site config,
//! canonical form, revision chain against the revision before it), and the
//! overview says per period whether the commune reported, late, corrected
//! or refused.

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use crate::config::Regime;
use crate::reports::period::ReportPeriod;
use crate::reports::verify::{verify, Trust};

/// One received report and what its check found.
#[derive(Debug, Clone, Serialize)]
pub struct ReportCheck {
    /// Its journal seq.
    pub seq: i64,
    /// Period label (`2026-11`), as the entry names it.
    pub period: String,
    /// Revision (0 = the sealed report, n = the n-th correction).
    pub revision: u32,
    /// The digest the entry declares.
    pub digest: String,
    /// When the commune sealed (journaled) it.
    pub at: DateTime<Utc>,
    /// Verified, or why not (Vietnamese).
    #[serde(serialize_with = "outcome")]
    pub outcome: Result<(), String>,
    /// The period's end, as the document states it.
    pub window_end: Option<String>,
    /// The document, canonical bytes (kept for the next revision's chain
    /// check; not listed).
    #[serde(skip)]
    pub document: Vec<u8>,
}

fn outcome<S: serde::Serializer>(o: &Result<(), String>, s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut m = s.serialize_map(Some(2))?;
    m.serialize_entry("verified", &o.is_ok())?;
    m.serialize_entry("reason", &o.as_ref().err())?;
    m.end()
}

/// Check one report entry's body against the commune's key and the checks
/// before it (for the revision chain).
pub fn check(
    seq: i64,
    at_ms: i64,
    body: &[u8],
    key: Result<&Option<ed25519_dalek::VerifyingKey>, &String>,
    earlier: &[ReportCheck],
) -> ReportCheck {
    let at = DateTime::from_timestamp_millis(at_ms).unwrap_or_default();
    let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let period = v["period"].as_str().unwrap_or_default().to_owned();
    let revision = v["revision"].as_u64().unwrap_or(0) as u32;
    let digest = v["digest"].as_str().unwrap_or_default().to_owned();
    let document = serde_jcs::to_vec(&v["document"]).unwrap_or_default();
    let window_end = v["document"]["period"]["window_end"]
        .as_str()
        .map(str::to_owned);
    let mut c = ReportCheck {
        seq,
        period,
        revision,
        digest,
        at,
        outcome: Ok(()),
        window_end,
        document,
    };
    c.outcome = verdict(&c, &v, key, earlier);
    c
}

fn verdict(
    c: &ReportCheck,
    v: &serde_json::Value,
    key: Result<&Option<ed25519_dalek::VerifyingKey>, &String>,
    earlier: &[ReportCheck],
) -> Result<(), String> {
    let key = match key {
        Ok(Some(k)) => k,
        Ok(None) => {
            return Err(
                "chưa có khoá công khai của xã (report.public_key trong cấu hình xã ở tỉnh)".into(),
            )
        }
        Err(e) => return Err(e.clone()),
    };
    if !v["document"].is_object() {
        return Err("bản ghi báo cáo không kèm tài liệu niêm phong".into());
    }
    let previous = if c.revision > 0 {
        let prev = earlier
            .iter()
            .rev()
            .find(|p| p.period == c.period && p.revision + 1 == c.revision && p.outcome.is_ok())
            .ok_or_else(|| {
                format!(
                    "Chuỗi phiên bản sai: chưa nhận được phiên bản {} hợp lệ của kỳ {}",
                    c.revision - 1,
                    c.period
                )
            })?;
        Some(prev.document.as_slice())
    } else {
        None
    };
    let trust = Trust {
        key: Some(key),
        previous,
        stored: None,
    };
    let ok = verify(&c.document, &trust).map_err(|e| e.to_string())?;
    if ok.digest != c.digest {
        return Err(format!(
            "mã băm trong bản ghi ({}) khác mã băm của tài liệu ({})",
            c.digest, ok.digest
        ));
    }
    if ok.snapshot.period.label != c.period || ok.snapshot.revision != c.revision {
        return Err("kỳ hoặc phiên bản trong bản ghi khác tài liệu".into());
    }
    Ok(())
}

/// The state of one period's report of a commune.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PeriodState {
    /// The period.
    pub period: String,
    /// `verified`, `late`, `corrected`, `refused` or `missing`.
    pub status: &'static str,
    /// The newest verified revision, if any.
    pub revision: Option<u32>,
    /// Why the newest one was refused, when it was.
    pub reason: Option<String>,
}

/// The monthly period whose report is due now: the last one that ended.
pub fn due_period(now: DateTime<Utc>, regime: Regime) -> String {
    let current = ReportPeriod::month_of(now, regime);
    let (start, _) = current.utc();
    ReportPeriod::month_of(start - Duration::milliseconds(1), regime).label()
}

/// Where `period` stands among `checks`; `due_days` after its end a
/// report is late.
pub fn state(checks: &[ReportCheck], period: &str, due_days: u32) -> PeriodState {
    let of: Vec<&ReportCheck> = checks.iter().filter(|c| c.period == period).collect();
    let best = of
        .iter()
        .filter(|c| c.outcome.is_ok())
        .max_by_key(|c| c.revision);
    let last_refused = of.iter().rev().find_map(|c| c.outcome.clone().err());
    match best {
        Some(b) => {
            let first_ok = of
                .iter()
                .filter(|c| c.outcome.is_ok())
                .min_by_key(|c| c.revision);
            let late = first_ok.is_some_and(|f| is_late(f, due_days));
            PeriodState {
                period: period.to_owned(),
                status: if b.revision > 0 {
                    "corrected"
                } else if late {
                    "late"
                } else {
                    "verified"
                },
                revision: Some(b.revision),
                reason: last_refused,
            }
        }
        None => PeriodState {
            period: period.to_owned(),
            status: if last_refused.is_some() {
                "refused"
            } else {
                "missing"
            },
            revision: None,
            reason: last_refused,
        },
    }
}

/// Sealed more than `due_days` after the period's end.
pub fn is_late(c: &ReportCheck, due_days: u32) -> bool {
    c.window_end
        .as_deref()
        .and_then(|e| DateTime::parse_from_rfc3339(e).ok())
        .is_some_and(|end| c.at > end.with_timezone(&Utc) + Duration::days(i64::from(due_days)))
}
