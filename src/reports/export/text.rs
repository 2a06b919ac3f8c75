//! Vietnamese text for the human formats (workbook, printable page):
//! numbers the Vietnamese way (`1.828`, `94,62 %`), dates, the period's
//! title and window, targets and statuses. Machine formats (CSV, DHIS2)
//! never use these.

use chrono::{DateTime, Datelike, Duration, FixedOffset, Timelike};

use crate::reports::{IndicatorRow, PeriodInfo, PeriodKind, RowStatus, Snapshot};

/// `x` with `decimals` decimals, `.` between thousands and `,` before the
/// decimals: `1234.5` → `1.234,50` (2 decimals).
pub fn number(x: f64, decimals: usize) -> String {
    let s = format!("{:.*}", decimals, x.abs());
    let (int, frac) = match s.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (s.as_str(), None),
    };
    let mut out = String::new();
    // A value that rounds to zero is shown without a sign.
    if x < 0.0 && s.chars().any(|c| c.is_ascii_digit() && c != '0') {
        out.push('-');
    }
    let digits = int.len();
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (digits - i) % 3 == 0 {
            out.push('.');
        }
        out.push(c);
    }
    if let Some(f) = frac {
        out.push(',');
        out.push_str(f);
    }
    out
}

/// A number with up to 2 decimals, trailing zeros dropped: `1.828`,
/// `12,5`, `90`.
pub fn trimmed(x: f64) -> String {
    if (x - x.round()).abs() < 1e-9 {
        number(x, 0)
    } else {
        let s = number(x, 2);
        s.trim_end_matches('0').trim_end_matches(',').to_owned()
    }
}

/// A value as stored (up to 4 decimals), the Vietnamese way, trailing
/// zeros dropped: `90.3226` → `90,3226`, `1828` → `1.828` (the command
/// line and verification messages).
pub fn exact(x: f64) -> String {
    if (x - x.round()).abs() < 1e-9 {
        number(x, 0)
    } else {
        let s = number(x, 4);
        s.trim_end_matches('0').trim_end_matches(',').to_owned()
    }
}

/// A value for people: integers grouped (`1.828`), other numbers with up
/// to 2 decimals (`12,5`), percentages always with 2 (`94,62 %`).
pub fn quantity(x: f64, unit: &str) -> String {
    if unit == "%" {
        return format!("{} %", number(x, 2));
    }
    let n = trimmed(x);
    if unit.is_empty() {
        n
    } else {
        format!("{n} {unit}")
    }
}

/// The text shown for a value that has none (never 0).
pub const NO_DATA: &str = "Không có dữ liệu";

/// A row's value: `94,62 %`, `1.828 hồ sơ`, or [`NO_DATA`].
pub fn value(row: &IndicatorRow) -> String {
    match row.value {
        Some(v) => quantity(v, &row.unit),
        None => NO_DATA.to_owned(),
    }
}

/// A ratio's parts: `1.828 / 1.932`; empty for other kinds.
pub fn parts(row: &IndicatorRow) -> String {
    match (row.numerator, row.denominator) {
        (Some(n), Some(d)) => format!("{} / {}", quantity(n, ""), quantity(d, "")),
        _ => String::new(),
    }
}

/// A target as written (`>= 90`) for people: `≥ 90 %`; empty when none.
pub fn target(row: &IndicatorRow) -> String {
    let Some(t) = row.target.as_deref() else {
        return String::new();
    };
    let t = t.trim();
    let ops = [
        (">=", "≥"),
        ("<=", "≤"),
        ("==", "="),
        ("!=", "≠"),
        (">", ">"),
        ("<", "<"),
        ("=", "="),
    ];
    for (op, shown) in ops {
        if let Some(rest) = t.strip_prefix(op) {
            return match rest.trim().parse::<f64>() {
                Ok(x) if row.unit.is_empty() => format!("{shown} {}", trimmed(x)),
                Ok(x) if row.unit == "%" => format!("{shown} {} %", trimmed(x)),
                Ok(x) => format!("{shown} {} {}", trimmed(x), row.unit),
                Err(_) => t.to_owned(),
            };
        }
    }
    t.to_owned()
}

/// A row's status for people: `Đạt`, `Không đạt`, [`NO_DATA`]; `—` when
/// there is no target to meet.
pub fn status(row: &IndicatorRow) -> &'static str {
    match row.status {
        RowStatus::NoData => NO_DATA,
        _ if row.target.is_none() => "—",
        RowStatus::Met => "Đạt",
        RowStatus::NotMet => "Không đạt",
    }
}

/// A period's report state for people (as the wall screen's tile says it).
pub fn report_state(state: &str) -> &str {
    match state {
        "open" => "đang mở",
        "sealed" => "đã niêm phong, chưa gửi tỉnh",
        "corrected" => "đã đính chính, chưa gửi tỉnh",
        "submitted" => "đang gửi tỉnh",
        "acknowledged" => "tỉnh đã nhận",
        "submission_failed" => "gửi tỉnh không thành công",
        other => other,
    }
}

/// A correction draft's state for people.
pub fn draft_state(state: &str) -> &str {
    match state {
        "open" => "chờ duyệt",
        "approved" => "đã duyệt",
        "dismissed" => "đã bỏ",
        "superseded" => "đã thay bằng bản nháp mới hơn",
        other => other,
    }
}

/// `dd/mm/yyyy`.
pub fn date(t: DateTime<FixedOffset>) -> String {
    format!("{:02}/{:02}/{}", t.day(), t.month(), t.year())
}

/// `hh:mm dd/mm/yyyy`.
pub fn date_time(t: DateTime<FixedOffset>) -> String {
    format!("{:02}:{:02} {}", t.hour(), t.minute(), date(t))
}

/// Parse an RFC 3339 time of the snapshot.
pub fn parse_time(s: &str) -> Option<DateTime<FixedOffset>> {
    DateTime::parse_from_rfc3339(s).ok()
}

const ROMAN: [&str; 4] = ["I", "II", "III", "IV"];

/// What the period is called: `tháng 6 năm 2026`, `quý II năm 2026`,
/// `6 tháng đầu năm 2026`, `năm 2026` (from the label, never from the
/// window).
pub fn period_name(p: &PeriodInfo) -> String {
    let label = p.label.as_str();
    let year = label.get(..4).unwrap_or(label);
    let rest = label.get(5..).unwrap_or("");
    match p.kind {
        PeriodKind::Month => {
            let m: u32 = rest.parse().unwrap_or(0);
            format!("tháng {m} năm {year}")
        }
        PeriodKind::Quarter => {
            let q: usize = rest.trim_start_matches('Q').parse().unwrap_or(0);
            let roman = q
                .checked_sub(1)
                .and_then(|i| ROMAN.get(i))
                .copied()
                .unwrap_or("?");
            format!("quý {roman} năm {year}")
        }
        PeriodKind::Half => {
            if rest == "H2" {
                format!("6 tháng cuối năm {year}")
            } else {
                format!("6 tháng đầu năm {year}")
            }
        }
        PeriodKind::Year => format!("năm {year}"),
    }
}

/// The window for people: `từ 00:00 ngày 15/05/2026 đến hết ngày
/// 14/06/2026` (the end is exclusive: a window ending at midnight ends
/// with the day before).
pub fn window(p: &PeriodInfo) -> String {
    match (parse_time(&p.window_start), parse_time(&p.window_end)) {
        (Some(s), Some(e)) if e.time() == chrono::NaiveTime::MIN => format!(
            "từ {} ngày {} đến hết ngày {}",
            format_args!("{:02}:{:02}", s.hour(), s.minute()),
            date(s),
            date(e - Duration::days(1))
        ),
        (Some(s), Some(e)) => format!("từ {} đến trước {}", date_time(s), date_time(e)),
        _ => format!("{} – {}", p.window_start, p.window_end),
    }
}

/// The year of the period's label.
pub fn label_year(p: &PeriodInfo) -> &str {
    p.label.get(..4).unwrap_or(&p.label)
}

/// The report's title line under `BÁO CÁO`:
/// `Chỉ số hoạt động của Xã Bình Lư tháng 6 năm 2026`.
pub fn title(s: &Snapshot) -> String {
    format!(
        "Kết quả các chỉ số hoạt động của {} {}",
        s.org_unit.name,
        period_name(&s.period)
    )
}

/// The revision for people: `Bản niêm phong` or `Bản đính chính lần 2`.
pub fn revision(s: &Snapshot) -> String {
    if s.revision == 0 {
        "Bản niêm phong".to_owned()
    } else {
        format!("Bản đính chính lần {}", s.revision)
    }
}

/// The document's id (its SHA-256), when signed.
pub fn digest(s: &Snapshot) -> &str {
    s.signature.as_ref().map_or("", |g| g.digest.as_str())
}

/// Upper case, Vietnamese letters included (`Xã Bình Lư` → `XÃ BÌNH LƯ`).
pub fn upper(s: &str) -> String {
    s.to_uppercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_written_the_vietnamese_way() {
        assert_eq!(number(1234.5, 1), "1.234,5");
        assert_eq!(number(1234567.0, 0), "1.234.567");
        assert_eq!(number(94.6222, 2), "94,62");
        assert_eq!(number(0.0, 2), "0,00");
        assert_eq!(number(-0.001, 2), "0,00");
        assert_eq!(number(-1500.0, 0), "-1.500");
        assert_eq!(number(999.0, 0), "999");
        assert_eq!(quantity(94.6222, "%"), "94,62 %");
        assert_eq!(quantity(100.0, "%"), "100,00 %");
        assert_eq!(quantity(1828.0, "hồ sơ"), "1.828 hồ sơ");
        assert_eq!(quantity(12.5, "mm"), "12,5 mm");
        assert_eq!(quantity(3.456, ""), "3,46");
        assert_eq!(exact(90.3226), "90,3226");
        assert_eq!(exact(12.5), "12,5");
        assert_eq!(exact(1828.0), "1.828");
    }
}
