//! Time windows (`today`, `24h`, `month`) and monthly report periods, all
//! computed in Asia/Ho_Chi_Minh.
//!
//! The default regime is Nghị định 09/2019/NĐ-CP Điều 12: the period labelled
//! `2026-07` runs from 2026-06-15 00:00 +07:00 (inclusive) to 2026-07-15
//! 00:00 +07:00 (exclusive). The calendar regime uses whole months.

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc};
use chrono_tz::Asia::Ho_Chi_Minh;
use serde::{Deserialize, Serialize};

use crate::config::Regime;

/// A window an indicator is computed over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Window {
    /// Since local midnight.
    #[serde(rename = "today")]
    Today,
    /// The last 24 hours.
    #[serde(rename = "24h")]
    Last24h,
    /// The current report period.
    #[serde(rename = "month")]
    Month,
}

impl Window {
    /// All windows.
    pub const ALL: [Window; 3] = [Window::Today, Window::Last24h, Window::Month];

    /// Parse the wire form.
    pub fn parse(s: &str) -> Option<Window> {
        match s {
            "today" => Some(Window::Today),
            "24h" => Some(Window::Last24h),
            "month" => Some(Window::Month),
            _ => None,
        }
    }

    /// The wire form.
    pub fn as_str(self) -> &'static str {
        match self {
            Window::Today => "today",
            Window::Last24h => "24h",
            Window::Month => "month",
        }
    }
}

/// A report period: its label and its half-open bounds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Period {
    /// `YYYY-MM`.
    pub label: String,
    /// Inclusive start.
    pub start: DateTime<Utc>,
    /// Exclusive end.
    pub end: DateTime<Utc>,
}

fn local_midnight(date: NaiveDate) -> DateTime<Utc> {
    // Vietnam has no DST: midnight always exists and is unique.
    Ho_Chi_Minh
        .from_local_datetime(&date.and_hms_opt(0, 0, 0).unwrap_or_default())
        .earliest()
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|| {
            date.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc() - Duration::hours(7)
        })
}

fn ymd(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap_or_default()
}

fn shift_month(y: i32, m: u32, delta: i32) -> (i32, u32) {
    let idx = y * 12 + (m as i32 - 1) + delta;
    (idx.div_euclid(12), (idx.rem_euclid(12) + 1) as u32)
}

/// The report period that contains `t`.
pub fn period_of(t: DateTime<Utc>, regime: Regime) -> Period {
    let local = t.with_timezone(&Ho_Chi_Minh).date_naive();
    let (y, m) = (local.year(), local.month());
    let (ly, lm) = match regime {
        Regime::Nd09 if local.day() >= 15 => shift_month(y, m, 1),
        _ => (y, m),
    };
    period_labelled(ly, lm, regime)
}

/// The period with label `y-m`.
pub fn period_labelled(y: i32, m: u32, regime: Regime) -> Period {
    match regime {
        Regime::Calendar => {
            let (ny, nm) = shift_month(y, m, 1);
            Period {
                label: format!("{y:04}-{m:02}"),
                start: local_midnight(ymd(y, m, 1)),
                end: local_midnight(ymd(ny, nm, 1)),
            }
        }
        Regime::Nd09 => {
            let (py, pm) = shift_month(y, m, -1);
            Period {
                label: format!("{y:04}-{m:02}"),
                start: local_midnight(ymd(py, pm, 15)),
                end: local_midnight(ymd(y, m, 15)),
            }
        }
    }
}

/// Half-open bounds `[start, end)` of a window at `now`.
pub fn bounds(
    window: Window,
    now: DateTime<Utc>,
    regime: Regime,
) -> (DateTime<Utc>, DateTime<Utc>) {
    match window {
        Window::Today => {
            let d = now.with_timezone(&Ho_Chi_Minh).date_naive();
            let next = d.succ_opt().unwrap_or(d);
            (local_midnight(d), local_midnight(next))
        }
        Window::Last24h => {
            // Minute resolution: the 1,440 minutes ending with the current one.
            let minute_end = (now.timestamp().div_euclid(60) + 1) * 60;
            let end = Utc.timestamp_opt(minute_end, 0).single().unwrap_or(now);
            (end - Duration::hours(24), end)
        }
        Window::Month => {
            let p = period_of(now, regime);
            (p.start, p.end)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn nd09_boundaries() {
        assert_eq!(
            period_of(t("2026-06-14T23:59:59.999+07:00"), Regime::Nd09).label,
            "2026-06"
        );
        assert_eq!(
            period_of(t("2026-06-15T00:00:00+07:00"), Regime::Nd09).label,
            "2026-07"
        );
        // In UTC the boundary is the 14th at 17:00.
        assert_eq!(
            period_of(t("2026-06-14T16:59:59Z"), Regime::Nd09).label,
            "2026-06"
        );
        assert_eq!(
            period_of(t("2026-06-14T17:00:00Z"), Regime::Nd09).label,
            "2026-07"
        );
        let jan = period_of(t("2026-01-01T12:00:00+07:00"), Regime::Nd09);
        assert_eq!(jan.label, "2026-01");
        assert_eq!(jan.start, t("2025-12-15T00:00:00+07:00"));
        assert_eq!(jan.end, t("2026-01-15T00:00:00+07:00"));
        let dec = period_of(t("2025-12-20T08:00:00+07:00"), Regime::Nd09);
        assert_eq!(dec.label, "2026-01");
    }

    #[test]
    fn calendar_boundaries() {
        let p = period_of(t("2026-06-30T23:59:59+07:00"), Regime::Calendar);
        assert_eq!(p.label, "2026-06");
        assert_eq!(p.start, t("2026-06-01T00:00:00+07:00"));
        assert_eq!(
            period_of(t("2026-07-01T00:00:00+07:00"), Regime::Calendar).label,
            "2026-07"
        );
        let dec = period_of(t("2026-12-31T10:00:00+07:00"), Regime::Calendar);
        assert_eq!(dec.end, t("2027-01-01T00:00:00+07:00"));
    }

    #[test]
    fn today_is_local_day() {
        let (s, e) = bounds(Window::Today, t("2026-11-23T18:30:00Z"), Regime::Nd09);
        assert_eq!(s, t("2026-11-24T00:00:00+07:00"));
        assert_eq!(e, t("2026-11-25T00:00:00+07:00"));
    }
}
