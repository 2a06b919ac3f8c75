//! Report periods of a regime: months, quarters, six-month halves and
//! years, each a label (`2026-06`, `2026-Q2`, `2026-H1`, `2026`) and a
//! half-open window `[start, end)` in +07:00.
//!
//! Under Nghị định 09/2019/NĐ-CP Điều 12 (regime `nd09`) every period ends
//! on the 15th at 00:00 +07:00 and starts on the 15th of the month before
//! its first month: `2026-06` is [2026-05-15, 2026-06-15), `2026-01` starts
//! on 2025-12-15, `2026-Q1` is [2025-12-15, 2026-03-15), `2026-H1`
//! [2025-12-15, 2026-06-15), `2026` [2025-12-15, 2026-12-15). The calendar
//! regime uses whole months from the 1st. Vietnam has no DST.

use chrono::{DateTime, Datelike, FixedOffset, NaiveDate, TimeZone, Utc};
use serde::{Deserialize, Serialize};

use crate::config::Regime;

/// +07:00, Asia/Ho_Chi_Minh (no DST).
pub fn vn() -> FixedOffset {
    FixedOffset::east_opt(7 * 3600).expect("a valid offset")
}

/// How long a period runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PeriodKind {
    /// One month (`2026-06`).
    Month,
    /// Three months (`2026-Q2`).
    Quarter,
    /// Six months (`2026-H1`).
    Half,
    /// Twelve months (`2026`).
    Year,
}

/// A report period: its label and its window, kept apart.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ReportPeriod {
    /// Its length.
    pub kind: PeriodKind,
    /// The year of the label.
    pub year: i32,
    /// Month 1–12, quarter 1–4, half 1–2, or 0 for a year.
    pub index: u32,
    /// Inclusive start, +07:00.
    pub start: DateTime<FixedOffset>,
    /// Exclusive end, +07:00.
    pub end: DateTime<FixedOffset>,
}

/// A label that is not a period.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` không phải kỳ báo cáo: viết 2026-06 (tháng), 2026-Q2 (quý), 2026-H1 (sáu tháng) hoặc 2026 (năm)")]
pub struct BadPeriod(pub String);

fn midnight(y: i32, m: u32, d: u32) -> DateTime<FixedOffset> {
    let date = NaiveDate::from_ymd_opt(y, m, d).unwrap_or_default();
    vn().from_local_datetime(&date.and_hms_opt(0, 0, 0).unwrap_or_default())
        .single()
        .unwrap_or_else(|| vn().timestamp_opt(0, 0).unwrap())
}

fn shift(y: i32, m: u32, delta: i32) -> (i32, u32) {
    let idx = y * 12 + (m as i32 - 1) + delta;
    (idx.div_euclid(12), (idx.rem_euclid(12) + 1) as u32)
}

/// The instant a month `(y, m)` of the label starts under the regime
/// (the "boundary before" that month).
fn boundary_before(y: i32, m: u32, regime: Regime) -> DateTime<FixedOffset> {
    match regime {
        Regime::Calendar => midnight(y, m, 1),
        Regime::Nd09 => {
            let (py, pm) = shift(y, m, -1);
            midnight(py, pm, 15)
        }
    }
}

impl ReportPeriod {
    /// The period of `kind` with the label's year and index (months
    /// 1–12, quarters 1–4, halves 1–2; ignored for years).
    pub fn new(kind: PeriodKind, year: i32, index: u32, regime: Regime) -> Option<ReportPeriod> {
        let (first, months) = match kind {
            PeriodKind::Month if (1..=12).contains(&index) => (index, 1),
            PeriodKind::Quarter if (1..=4).contains(&index) => ((index - 1) * 3 + 1, 3),
            PeriodKind::Half if (1..=2).contains(&index) => ((index - 1) * 6 + 1, 6),
            PeriodKind::Year => (1, 12),
            _ => return None,
        };
        if !(1900..=9998).contains(&year) {
            return None;
        }
        let (ey, em) = shift(year, first, months);
        Some(ReportPeriod {
            kind,
            year,
            index: if kind == PeriodKind::Year { 0 } else { index },
            start: boundary_before(year, first, regime),
            end: boundary_before(ey, em, regime),
        })
    }

    /// Parse a label: `2026-06`, `2026-Q2`, `2026-H1`, `2026`.
    pub fn parse(label: &str, regime: Regime) -> Result<ReportPeriod, BadPeriod> {
        let bad = || BadPeriod(label.to_owned());
        let s = label.trim();
        let (year, rest) = match s.split_once('-') {
            Some((y, r)) => (y, Some(r)),
            None => (s, None),
        };
        if year.len() != 4 || !year.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let year: i32 = year.parse().map_err(|_| bad())?;
        let num = |t: &str, len: usize| -> Result<u32, BadPeriod> {
            if t.len() != len || !t.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            t.parse().map_err(|_| bad())
        };
        let (kind, index) = match rest {
            None => (PeriodKind::Year, 0),
            Some(r) if r.starts_with(['Q', 'q']) => (PeriodKind::Quarter, num(&r[1..], 1)?),
            Some(r) if r.starts_with(['H', 'h']) => (PeriodKind::Half, num(&r[1..], 1)?),
            Some(r) => (PeriodKind::Month, num(r, 2)?),
        };
        ReportPeriod::new(kind, year, index, regime).ok_or_else(bad)
    }

    /// The month period that contains `t`.
    pub fn month_of(t: DateTime<Utc>, regime: Regime) -> ReportPeriod {
        let local = t.with_timezone(&vn()).date_naive();
        let (y, m) = match regime {
            Regime::Nd09 if local.day() >= 15 => shift(local.year(), local.month(), 1),
            _ => (local.year(), local.month()),
        };
        ReportPeriod::new(PeriodKind::Month, y, m, regime).expect("a month in range")
    }

    /// The label: `2026-06`, `2026-Q2`, `2026-H1`, `2026`.
    pub fn label(&self) -> String {
        match self.kind {
            PeriodKind::Month => format!("{:04}-{:02}", self.year, self.index),
            PeriodKind::Quarter => format!("{:04}-Q{}", self.year, self.index),
            PeriodKind::Half => format!("{:04}-H{}", self.year, self.index),
            PeriodKind::Year => format!("{:04}", self.year),
        }
    }

    /// The DHIS2 period id of the label (a label only: DHIS2 periods are
    /// calendar periods; the true window travels in the snapshot).
    pub fn dhis2(&self) -> String {
        match self.kind {
            PeriodKind::Month => format!("{:04}{:02}", self.year, self.index),
            PeriodKind::Quarter => format!("{:04}Q{}", self.year, self.index),
            PeriodKind::Half => format!("{:04}S{}", self.year, self.index),
            PeriodKind::Year => format!("{:04}", self.year),
        }
    }

    /// Whether `t` falls in `[start, end)`.
    pub fn contains(&self, t: DateTime<Utc>) -> bool {
        t >= self.start && t < self.end
    }

    /// The window in UTC.
    pub fn utc(&self) -> (DateTime<Utc>, DateTime<Utc>) {
        (self.start.with_timezone(&Utc), self.end.with_timezone(&Utc))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn p(label: &str, regime: Regime) -> ReportPeriod {
        ReportPeriod::parse(label, regime).unwrap()
    }

    #[test]
    fn nd09_month_edges() {
        let june = p("2026-06", Regime::Nd09);
        assert_eq!(june.start.to_rfc3339(), "2026-05-15T00:00:00+07:00");
        assert_eq!(june.end.to_rfc3339(), "2026-06-15T00:00:00+07:00");
        assert!(june.contains(t("2026-06-14T23:59:59.999+07:00")));
        assert!(!june.contains(t("2026-06-15T00:00:00+07:00")));
        assert!(june.contains(t("2026-05-15T00:00:00+07:00")));
        assert!(!june.contains(t("2026-05-14T23:59:59.999+07:00")));
        assert_eq!(
            ReportPeriod::month_of(t("2026-06-14T23:59:59.999+07:00"), Regime::Nd09).label(),
            "2026-06"
        );
        assert_eq!(
            ReportPeriod::month_of(t("2026-06-15T00:00:00+07:00"), Regime::Nd09).label(),
            "2026-07"
        );
        // 15 December belongs to January of the next year.
        let jan = ReportPeriod::month_of(t("2026-12-15T00:00:00+07:00"), Regime::Nd09);
        assert_eq!(jan.label(), "2027-01");
        assert_eq!(jan.start.to_rfc3339(), "2026-12-15T00:00:00+07:00");
        assert_eq!(jan.end.to_rfc3339(), "2027-01-15T00:00:00+07:00");
        assert_eq!(
            ReportPeriod::month_of(t("2026-12-14T23:59:59.999+07:00"), Regime::Nd09).label(),
            "2026-12"
        );
        // The UTC boundary is the 14th at 17:00.
        assert_eq!(
            ReportPeriod::month_of(t("2026-06-14T17:00:00Z"), Regime::Nd09).label(),
            "2026-07"
        );
    }

    #[test]
    fn nd09_quarter_half_year() {
        let q1 = p("2026-Q1", Regime::Nd09);
        assert_eq!(q1.start.to_rfc3339(), "2025-12-15T00:00:00+07:00");
        assert_eq!(q1.end.to_rfc3339(), "2026-03-15T00:00:00+07:00");
        let q4 = p("2026-Q4", Regime::Nd09);
        assert_eq!(q4.start.to_rfc3339(), "2026-09-15T00:00:00+07:00");
        assert_eq!(q4.end.to_rfc3339(), "2026-12-15T00:00:00+07:00");
        let h1 = p("2026-H1", Regime::Nd09);
        assert_eq!(h1.start.to_rfc3339(), "2025-12-15T00:00:00+07:00");
        assert_eq!(h1.end.to_rfc3339(), "2026-06-15T00:00:00+07:00");
        let y = p("2026", Regime::Nd09);
        assert_eq!(y.start.to_rfc3339(), "2025-12-15T00:00:00+07:00");
        assert_eq!(y.end.to_rfc3339(), "2026-12-15T00:00:00+07:00");
        assert_eq!(
            (q1.label(), h1.label(), y.label()),
            ("2026-Q1".into(), "2026-H1".into(), "2026".into())
        );
        assert_eq!((q1.dhis2(), h1.dhis2()), ("2026Q1".into(), "2026S1".into()));
    }

    #[test]
    fn calendar_periods() {
        let june = p("2026-06", Regime::Calendar);
        assert_eq!(june.start.to_rfc3339(), "2026-06-01T00:00:00+07:00");
        assert_eq!(june.end.to_rfc3339(), "2026-07-01T00:00:00+07:00");
        let dec = p("2026-12", Regime::Calendar);
        assert_eq!(dec.end.to_rfc3339(), "2027-01-01T00:00:00+07:00");
        let h2 = p("2026-H2", Regime::Calendar);
        assert_eq!(h2.start.to_rfc3339(), "2026-07-01T00:00:00+07:00");
        assert_eq!(h2.end.to_rfc3339(), "2027-01-01T00:00:00+07:00");
        assert_eq!(
            ReportPeriod::month_of(t("2026-06-30T23:59:59.999+07:00"), Regime::Calendar).label(),
            "2026-06"
        );
    }

    #[test]
    fn bad_labels_are_refused() {
        for bad in [
            "2026-13", "2026-00", "2026-Q5", "2026-H3", "26-06", "2026-6", "x", "",
        ] {
            assert!(ReportPeriod::parse(bad, Regime::Nd09).is_err(), "{bad}");
        }
    }

    /// The month windows of a year tile it with no gap and no overlap, and
    /// agree with the live `month` window of the indicators.
    #[test]
    fn months_tile_and_agree_with_indicators() {
        for regime in [Regime::Nd09, Regime::Calendar] {
            let year = p("2026", regime);
            let mut at = year.start;
            for m in 1..=12 {
                let month = ReportPeriod::new(PeriodKind::Month, 2026, m, regime).unwrap();
                assert_eq!(month.start, at);
                let live = crate::indicators::window::period_labelled(2026, m, regime);
                assert_eq!(month.utc(), (live.start, live.end));
                at = month.end;
            }
            assert_eq!(at, year.end);
        }
    }
}
