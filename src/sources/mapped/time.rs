//! Times as devices write them: ISO 8601 with an offset, or without one in
//! a stated zone (Tasmota's `"Time":"2026-11-23T08:15:02"`), epoch seconds
//! with decimals (Shelly's `1674473304.12`), epoch milliseconds
//! (ThingsBoard), numbers in strings.

use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde_json::Value;

use super::number::text;
use crate::config::mapped::TimeFormat;

/// Largest epoch milliseconds accepted (year 2223), so arithmetic never
/// overflows.
const MAX_MS: f64 = 8.0e12;

/// Parse a time value; the error says what is wrong with it.
pub fn parse(v: &Value, format: TimeFormat, zone: Tz) -> Result<DateTime<Utc>, String> {
    let num = match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => text(s),
        _ => None,
    };
    match format {
        TimeFormat::EpochS => num
            .ok_or_else(|| not_a(v, "number of seconds"))
            .and_then(|s| from_ms(s * 1000.0)),
        TimeFormat::EpochMs => num
            .ok_or_else(|| not_a(v, "number of milliseconds"))
            .and_then(from_ms),
        TimeFormat::Iso => match v {
            Value::String(s) => iso(s, zone),
            _ => Err(not_a(v, "ISO 8601 text")),
        },
        TimeFormat::Auto => match (num, v) {
            (Some(n), _) if n.abs() < 1.0e11 => from_ms(n * 1000.0),
            (Some(n), _) => from_ms(n),
            (None, Value::String(s)) => iso(s, zone),
            _ => Err(not_a(v, "time")),
        },
    }
}

fn not_a(v: &Value, what: &str) -> String {
    let shown: String = v.to_string().chars().take(40).collect();
    format!("{shown} is not a {what}")
}

fn from_ms(ms: f64) -> Result<DateTime<Utc>, String> {
    if !ms.is_finite() || ms.abs() > MAX_MS {
        return Err("epoch value out of range".into());
    }
    Utc.timestamp_millis_opt(ms.round() as i64)
        .single()
        .ok_or_else(|| "epoch value out of range".into())
}

const LOCAL: &[&str] = &[
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%dT%H:%M",
    "%Y-%m-%d %H:%M",
];

/// ISO 8601 with an offset, or without one in `zone`.
pub fn iso(s: &str, zone: Tz) -> Result<DateTime<Utc>, String> {
    let t = s.trim();
    if let Ok(d) = DateTime::parse_from_rfc3339(t) {
        return Ok(d.with_timezone(&Utc));
    }
    for f in [
        "%Y-%m-%dT%H:%M:%S%.f%:z",
        "%Y-%m-%d %H:%M:%S%.f%:z",
        "%Y-%m-%dT%H:%M:%S%.f%z",
    ] {
        if let Ok(d) = DateTime::parse_from_str(t, f) {
            return Ok(d.with_timezone(&Utc));
        }
    }
    for f in LOCAL {
        if let Ok(n) = NaiveDateTime::parse_from_str(t, f) {
            return zone
                .from_local_datetime(&n)
                .earliest()
                .map(|d| d.with_timezone(&Utc))
                .ok_or_else(|| format!("`{t}` does not exist in {zone}"));
        }
    }
    let shown: String = t.chars().take(40).collect();
    Err(format!(
        "`{shown}` is not ISO 8601 (2026-11-23T08:15:02, with or without an offset)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const HCM: Tz = chrono_tz::Asia::Ho_Chi_Minh;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn iso_without_offset_is_read_in_the_stated_zone() {
        let want = utc("2026-11-23T01:15:02Z");
        assert_eq!(
            parse(&json!("2026-11-23T08:15:02"), TimeFormat::Iso, HCM),
            Ok(want)
        );
        assert_eq!(
            parse(&json!("2026-11-23 08:15:02"), TimeFormat::Auto, HCM),
            Ok(want)
        );
        assert_eq!(
            parse(
                &json!("2026-11-23T02:15:02"),
                TimeFormat::Iso,
                chrono_tz::Europe::Berlin
            ),
            Ok(want)
        );
        // An offset, when given, wins over the zone.
        assert_eq!(
            parse(&json!("2026-11-23T03:15:02+02:00"), TimeFormat::Iso, HCM),
            Ok(want)
        );
        assert_eq!(
            parse(&json!("2026-11-23T01:15:02Z"), TimeFormat::Auto, HCM),
            Ok(want)
        );
        assert_eq!(
            parse(&json!("2026-11-23T08:15"), TimeFormat::Iso, HCM),
            Ok(utc("2026-11-23T01:15:00Z"))
        );
        assert!(parse(&json!("23/11/2026 08:15"), TimeFormat::Iso, HCM)
            .unwrap_err()
            .contains("ISO 8601"));
        assert!(parse(&json!(1795396502), TimeFormat::Iso, HCM).is_err());
    }

    #[test]
    fn epoch_seconds_with_decimals_and_milliseconds() {
        let want = utc("2026-11-23T01:15:02.120Z");
        assert_eq!(
            parse(&json!(1795396502.12), TimeFormat::EpochS, HCM),
            Ok(want)
        );
        assert_eq!(
            parse(&json!(1795396502120i64), TimeFormat::EpochMs, HCM),
            Ok(want)
        );
        assert_eq!(
            parse(&json!("1795396502120"), TimeFormat::EpochMs, HCM),
            Ok(want)
        );
        assert_eq!(
            parse(&json!(1795396502.12), TimeFormat::Auto, HCM),
            Ok(want)
        );
        assert_eq!(
            parse(&json!(1795396502120i64), TimeFormat::Auto, HCM),
            Ok(want)
        );
        assert!(parse(&json!(1e300), TimeFormat::EpochS, HCM).is_err());
        assert!(parse(&json!("soon"), TimeFormat::EpochMs, HCM).is_err());
        assert!(parse(&json!(true), TimeFormat::Auto, HCM).is_err());
    }
}
