//! CSV (RFC 4180): one row per indicator and scope, plain numbers (`.`
//! before the decimals, no grouping), a missing value left empty; UTF-8
//! with a byte-order mark so spreadsheet programs read the diacritics.
//! The header names are stable ASCII keys.

use crate::reports::{RowStatus, Snapshot};

use super::text;

/// The header row.
pub const HEADER: [&str; 19] = [
    "period",
    "period_kind",
    "window_start",
    "window_end",
    "org_unit",
    "scope",
    "scope_name",
    "indicator",
    "indicator_name",
    "kind",
    "value",
    "unit",
    "numerator",
    "denominator",
    "target",
    "status",
    "input_count",
    "revision",
    "digest",
];

fn field(out: &mut String, s: &str) {
    if s.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&s.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(s);
    }
}

/// A plain number (`94.6222`, `1828`); empty for none.
pub fn plain(x: Option<f64>) -> String {
    x.map(|v| v.to_string()).unwrap_or_default()
}

fn status(s: RowStatus) -> &'static str {
    match s {
        RowStatus::Met => "met",
        RowStatus::NotMet => "not_met",
        RowStatus::NoData => "no_data",
    }
}

/// The snapshot as CSV (lines end in CRLF, as RFC 4180 says).
pub fn csv(s: &Snapshot) -> String {
    let mut out = String::from("\u{FEFF}");
    out.push_str(&HEADER.join(","));
    out.push_str("\r\n");
    let kind = serde_json::to_value(s.period.kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    for (scope, row) in s.rows() {
        let cells = [
            s.period.label.clone(),
            kind.clone(),
            s.period.window_start.clone(),
            s.period.window_end.clone(),
            s.org_unit.code.clone(),
            scope.scope.clone(),
            scope.name.clone(),
            row.indicator.clone(),
            row.name.clone(),
            row.kind.clone(),
            plain(row.value),
            row.unit.clone(),
            plain(row.numerator),
            plain(row.denominator),
            row.target.clone().unwrap_or_default(),
            status(row.status).to_owned(),
            row.lineage.input_count.to_string(),
            s.revision.to_string(),
            text::digest(s).to_owned(),
        ];
        for (i, c) in cells.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            field(&mut out, c);
        }
        out.push_str("\r\n");
    }
    out
}
