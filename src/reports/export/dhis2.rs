//! DHIS2 `dataValueSets` JSON (`POST /api/dataValueSets`), for provinces
//! that run DHIS2.
//!
//! The period is the DHIS2 id of the report's *label*, by DHIS2's own
//! rules: month `2026-06` → `202606`, quarter `2026-Q2` → `2026Q2`, half
//! `2026-H1` → `2026S1`, year `2026` → `2026`. Under NĐ 09/2019 the label
//! `2026-06` covers 15 May – 14 June, while DHIS2's `202606` means
//! calendar June: DHIS2 has no 15th-to-14th period type, so the label is
//! mapped and the true window travels in each value's `comment`; the
//! window is never turned into a DHIS2 period.
//!
//! Values are plain numbers as strings (`"94.6222"`); a value without data
//! is left out (DHIS2 reads absence as "not reported", never 0).
//! Indicators without a data element in `[report.dhis2.data_elements]`
//! and villages without an org unit are left out.

use serde::Serialize;

use crate::config::ReportDhis2;
use crate::reports::{PeriodInfo, PeriodKind, Snapshot};

use super::{text, ExportError};

/// One data value.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DataValue {
    /// Data element (code or UID, as configured).
    pub data_element: String,
    /// Period id.
    pub period: String,
    /// Org unit.
    pub org_unit: String,
    /// Category option combo, when configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub category_option_combo: Option<String>,
    /// The value, a plain number.
    pub value: String,
    /// The window, revision and document id.
    pub comment: String,
}

/// A `dataValueSet`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DataValueSet {
    /// Data set, when configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_set: Option<String>,
    /// The day the report was sealed (`yyyy-MM-dd`).
    pub complete_date: String,
    /// Period id of the label.
    pub period: String,
    /// The commune's org unit.
    pub org_unit: String,
    /// Attribute option combo, when configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attribute_option_combo: Option<String>,
    /// The values.
    pub data_values: Vec<DataValue>,
}

/// The DHIS2 period id of a report label: `2026-06` → `202606`,
/// `2026-Q2` → `2026Q2`, `2026-H1` → `2026S1`, `2026` → `2026`. `None` for
/// a label that does not match its kind.
pub fn period_id(p: &PeriodInfo) -> Option<String> {
    let l = p.label.as_str();
    let year = l
        .get(..4)
        .filter(|y| y.bytes().all(|b| b.is_ascii_digit()))?;
    let rest = l.get(4..).unwrap_or("");
    let n = |prefix: &str, max: u32| {
        rest.strip_prefix(prefix)
            .and_then(|r| r.parse::<u32>().ok())
            .filter(|&n| (1..=max).contains(&n))
    };
    match p.kind {
        PeriodKind::Month => {
            let m = rest
                .strip_prefix('-')
                .filter(|r| r.len() == 2)
                .and_then(|r| r.parse::<u32>().ok())
                .filter(|m| (1..=12).contains(m))?;
            Some(format!("{year}{m:02}"))
        }
        PeriodKind::Quarter => n("-Q", 4).map(|q| format!("{year}Q{q}")),
        PeriodKind::Half => n("-H", 2).map(|h| format!("{year}S{h}")),
        PeriodKind::Year => rest.is_empty().then(|| year.to_owned()),
    }
}

fn some(s: &str) -> Option<String> {
    (!s.trim().is_empty()).then(|| s.trim().to_owned())
}

/// The snapshot as a `dataValueSet`.
pub fn data_value_set(s: &Snapshot, map: &ReportDhis2) -> Result<DataValueSet, ExportError> {
    if map.data_elements.is_empty() {
        return Err(ExportError::NoDhis2Mapping);
    }
    let period = period_id(&s.period).unwrap_or_else(|| s.period.dhis2.clone());
    let commune_ou = some(&map.org_unit).unwrap_or_else(|| s.org_unit.code.clone());
    let comment = format!(
        "Kỳ {} ({}): {} đến {} (không gồm); lần {}; {}",
        s.period.label,
        s.regime.legal_basis,
        s.period.window_start,
        s.period.window_end,
        s.revision,
        text::digest(s)
    );
    let mut values = Vec::new();
    for (scope, row) in s.rows() {
        let Some(de) = map.data_elements.get(&row.indicator) else {
            continue;
        };
        let ou = if scope.scope == "commune" {
            commune_ou.clone()
        } else {
            match map.village_org_units.get(&scope.scope) {
                Some(ou) => ou.clone(),
                None => continue,
            }
        };
        let Some(v) = row.value else {
            continue;
        };
        values.push(DataValue {
            data_element: de.clone(),
            period: period.clone(),
            org_unit: ou,
            category_option_combo: some(&map.category_option_combo),
            value: v.to_string(),
            comment: comment.clone(),
        });
    }
    Ok(DataValueSet {
        data_set: some(&map.data_set),
        complete_date: s.sealed_at.get(..10).unwrap_or("").to_owned(),
        period,
        org_unit: commune_ou,
        attribute_option_combo: some(&map.attribute_option_combo),
        data_values: values,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(label: &str, kind: PeriodKind) -> PeriodInfo {
        PeriodInfo {
            label: label.into(),
            kind,
            dhis2: String::new(),
            window_start: String::new(),
            window_end: String::new(),
        }
    }

    #[test]
    fn periods_follow_dhis2_ids_of_the_label() {
        assert_eq!(
            period_id(&p("2026-06", PeriodKind::Month)).unwrap(),
            "202606"
        );
        assert_eq!(
            period_id(&p("2026-01", PeriodKind::Month)).unwrap(),
            "202601"
        );
        assert_eq!(
            period_id(&p("2026-Q2", PeriodKind::Quarter)).unwrap(),
            "2026Q2"
        );
        assert_eq!(
            period_id(&p("2026-H1", PeriodKind::Half)).unwrap(),
            "2026S1"
        );
        assert_eq!(
            period_id(&p("2026-H2", PeriodKind::Half)).unwrap(),
            "2026S2"
        );
        assert_eq!(period_id(&p("2026", PeriodKind::Year)).unwrap(), "2026");
        assert!(period_id(&p("2026-13", PeriodKind::Month)).is_none());
        assert!(period_id(&p("2026-Q5", PeriodKind::Quarter)).is_none());
        assert!(period_id(&p("2026-06", PeriodKind::Year)).is_none());
    }
}
