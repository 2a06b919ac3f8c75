//! InfluxDB line protocol, encoded here (not by the client crate) so the
//! mapping and the escaping are ours and tested:
//!
//! ```text
//! measurement,tag_key=tag_value field_key="string",number=1.5,flag=true,n=1i 1767225600000000000
//! ```
//!
//! Escaping (InfluxDB 2 line protocol reference):
//! - measurement: `,` and ` ` are escaped with `\`;
//! - tag keys, tag values, field keys: `,`, `=` and ` ` are escaped;
//! - string field values: `"` and `\` are escaped, inside double quotes.
//!
//! Also: a `\` in a measurement, tag or field key is written `\\` (InfluxDB
//! reads two backslashes as one), so a name ending in a backslash cannot
//! escape the separator after it. Line protocol has no escape for a line
//! break, so control characters (CR, LF, tab and the other C0 controls) are
//! replaced by a space everywhere, string values included; the journal
//! keeps the original payload. Empty tag values are left out (line protocol
//! does not allow them), as are non-finite numbers.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::config::Precision;
use crate::indicators::{IndicatorValue, Status};
use crate::model::Event;

/// A typed field value.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue {
    /// A float (`1.5`).
    Float(f64),
    /// An integer (`1i`).
    Int(i64),
    /// A boolean (`true`).
    Bool(bool),
    /// A string (`"text"`).
    Str(String),
}

fn push_escaped(out: &mut String, s: &str, special: &[char]) {
    for c in s.chars() {
        let c = if c.is_control() && (c as u32) < 0x80 {
            ' '
        } else {
            c
        };
        if c == '\\' || special.contains(&c) {
            out.push('\\');
        }
        out.push(c);
    }
}

/// Append an escaped measurement name.
pub fn push_measurement(out: &mut String, s: &str) {
    push_escaped(out, s, &[',', ' ']);
}

/// Append an escaped tag key, tag value or field key.
pub fn push_key(out: &mut String, s: &str) {
    push_escaped(out, s, &[',', '=', ' ']);
}

/// Append a quoted, escaped string field value.
pub fn push_string_value(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        let c = if c.is_control() && (c as u32) < 0x80 {
            ' '
        } else {
            c
        };
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}

/// Append a field value; false (and nothing appended) for a non-finite float.
fn push_value(out: &mut String, v: &FieldValue) -> bool {
    match v {
        FieldValue::Float(f) if !f.is_finite() => return false,
        // `{:?}` keeps the shortest round-tripping form (`1.0`, `1e300`),
        // which every line-protocol parser reads as a float.
        FieldValue::Float(f) => {
            let _ = write!(out, "{f:?}");
        }
        FieldValue::Int(i) => {
            let _ = write!(out, "{i}i");
        }
        FieldValue::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        FieldValue::Str(s) => push_string_value(out, s),
    }
    true
}

/// Append one point without its timestamp (`measurement,tags fields`).
/// Tags with an empty key or value are left out; tags are written in the
/// order given (sort them by key for InfluxDB's sake). Fields with an empty
/// key or a non-finite value are left out. Returns false, with nothing
/// appended, when no field is left: a point needs at least one.
pub fn push_point(
    out: &mut String,
    measurement: &str,
    tags: &[(&str, &str)],
    fields: &[(&str, FieldValue)],
) -> bool {
    let start = out.len();
    push_measurement(out, measurement);
    for (k, v) in tags {
        if k.is_empty() || v.is_empty() {
            continue;
        }
        out.push(',');
        push_key(out, k);
        out.push('=');
        push_key(out, v);
    }
    let mut sep = ' ';
    for (k, v) in fields {
        if k.is_empty() {
            continue;
        }
        let before = out.len();
        out.push(sep);
        push_key(out, k);
        out.push('=');
        if push_value(out, v) {
            sep = ',';
        } else {
            out.truncate(before);
        }
    }
    if sep == ' ' {
        out.truncate(start);
        return false;
    }
    true
}

/// Append ` {timestamp}\n` in `precision` units. `unique` (e.g. a row id)
/// spreads points of the same millisecond over the sub-millisecond digits
/// (with `us` and `ns`), so two events of one series in the same
/// millisecond stay two points in InfluxDB (which keeps one point per
/// series and timestamp) and a replay of the same point overwrites itself.
pub fn push_timestamp(out: &mut String, ts_ms: i64, unique: i64, precision: Precision) {
    let t = match precision {
        Precision::Ms => ts_ms,
        Precision::Us => ts_ms.saturating_mul(1_000) + unique.rem_euclid(1_000),
        Precision::Ns => ts_ms.saturating_mul(1_000_000) + unique.rem_euclid(1_000_000),
    };
    let _ = writeln!(out, " {t}");
}

/// Measurement of an event: `ioc_{source}`.
pub fn event_measurement(e: &Event) -> String {
    format!("ioc_{}", e.source.as_str())
}

/// Field names the mapping itself uses; an attribute with one of these
/// names, or named `time`, or starting with `_` (reserved by InfluxDB), is
/// written as `attr_{name}`.
const OWN_FIELDS: [&str; 1] = ["events"];

fn field_name(key: &str) -> std::borrow::Cow<'_, str> {
    if key == "time" || key.starts_with('_') || OWN_FIELDS.contains(&key) {
        format!("attr_{key}").into()
    } else {
        key.into()
    }
}

/// The typed fields of an event: `events=1i`, then every attribute
/// (numbers as floats, so a field never changes type between points;
/// booleans; strings; arrays and objects as JSON text; nulls left out).
pub fn event_fields(e: &Event) -> Vec<(std::borrow::Cow<'_, str>, FieldValue)> {
    let mut fields = Vec::with_capacity(e.attrs.len() + 1);
    fields.push(("events".into(), FieldValue::Int(1)));
    for (k, v) in &e.attrs {
        let value = match v {
            Value::Null => continue,
            Value::Bool(b) => FieldValue::Bool(*b),
            Value::Number(n) => match n.as_f64() {
                Some(f) => FieldValue::Float(f),
                None => continue,
            },
            Value::String(s) => FieldValue::Str(s.clone()),
            other => FieldValue::Str(other.to_string()),
        };
        fields.push((field_name(k), value));
    }
    fields
}

/// Append the line of one journaled event (`id` is its journal row id).
pub fn push_event(out: &mut String, commune: &str, id: i64, e: &Event, precision: Precision) {
    let fields = event_fields(e);
    let fields: Vec<(&str, FieldValue)> = fields
        .iter()
        .map(|(k, v)| (k.as_ref(), v.clone()))
        .collect();
    let tags = [
        ("commune", commune),
        ("device", e.device.as_deref().unwrap_or("")),
        ("kind", e.kind.as_str()),
        ("village", e.village.as_deref().unwrap_or("")),
    ];
    if push_point(out, &event_measurement(e), &tags, &fields) {
        push_timestamp(out, e.ts.timestamp_millis(), id, precision);
    }
}

/// Status of an indicator value as written (`met`, `not_met`, `no_data`).
pub fn status_str(s: Status) -> &'static str {
    match s {
        Status::Met => "met",
        Status::NotMet => "not_met",
        Status::NoData => "no_data",
    }
}

/// The line (without timestamp) of an indicator value, measurement
/// `ioc_indicator`; `None` only if nothing could be encoded.
pub fn indicator_line(commune: &str, v: &IndicatorValue) -> Option<String> {
    let village = if v.scope == "commune" { "" } else { &v.scope };
    let window = serde_json::to_value(v.window)
        .ok()
        .and_then(|w| w.as_str().map(str::to_owned))
        .unwrap_or_default();
    let tags = [
        ("commune", commune),
        ("indicator", v.id.as_str()),
        ("village", village),
        ("window", window.as_str()),
    ];
    let mut fields = vec![("status", FieldValue::Str(status_str(v.status).into()))];
    for (k, x) in [
        ("value", v.value),
        ("numerator", v.numerator),
        ("denominator", v.denominator),
    ] {
        if let Some(x) = x {
            fields.push((k, FieldValue::Float(x)));
        }
    }
    let mut out = String::new();
    push_point(&mut out, "ioc_indicator", &tags, &fields).then_some(out)
}

/// The time of an indicator snapshot, to the second.
pub fn snapshot_time(now: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(now.timestamp(), 0).unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_each_element() {
        let mut out = String::new();
        assert!(push_point(
            &mut out,
            "m e,a",
            &[("t k", "Bản Nà=Đa,1"), ("empty", "")],
            &[
                ("f=1", FieldValue::Str("say \"hi\" \\ ok".into())),
                ("n", FieldValue::Int(-3)),
                ("x", FieldValue::Float(2.0)),
                ("b", FieldValue::Bool(false)),
                ("nan", FieldValue::Float(f64::NAN)),
            ],
        ));
        push_timestamp(&mut out, 1_700_000_000_123, 7, Precision::Ns);
        assert_eq!(
            out,
            "m\\ e\\,a,t\\ k=Bản\\ Nà\\=Đa\\,1 f\\=1=\"say \\\"hi\\\" \\\\ ok\",n=-3i,x=2.0,b=false 1700000000123000007\n"
        );
    }

    #[test]
    fn a_point_without_fields_is_not_written() {
        let mut out = String::from("x");
        assert!(!push_point(
            &mut out,
            "m",
            &[("a", "b")],
            &[("f", FieldValue::Float(f64::INFINITY))]
        ));
        assert_eq!(out, "x");
    }

    #[test]
    fn line_breaks_become_spaces() {
        let mut out = String::new();
        push_string_value(&mut out, "a\nb\r\tc");
        assert_eq!(out, "\"a b  c\"");
        let mut out = String::new();
        push_key(&mut out, "a\nb");
        assert_eq!(out, "a\\ b");
    }

    #[test]
    fn precision_spreads_within_the_millisecond() {
        for (p, want) in [
            (Precision::Ms, "5"),
            (Precision::Us, "5042"),
            (Precision::Ns, "5001042"),
        ] {
            let mut out = String::new();
            push_timestamp(&mut out, 5, 1_001_042, p);
            assert_eq!(out, format!(" {want}\n"));
        }
    }
}
