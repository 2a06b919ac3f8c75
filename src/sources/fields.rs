//! Helpers shared by the decoders: JSON object parsing, typed field access
//! with precise rejections, and timestamp parsing.

use chrono::{DateTime, TimeZone, Utc};
use serde_json::{Map, Value};

use crate::model::{Reason, Rejection};

/// Parse the payload as a JSON object.
pub fn object(payload: &[u8]) -> Result<Map<String, Value>, Rejection> {
    let text = std::str::from_utf8(payload)
        .map_err(|e| Rejection::new(Reason::InvalidUtf8, format!("payload is not UTF-8: {e}")))?;
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(other) => Err(Rejection::new(
            Reason::InvalidJson,
            format!("expected a JSON object, got {}", type_name(&other)),
        )),
        Err(e) => Err(Rejection::new(
            Reason::InvalidJson,
            format!("invalid JSON: {e}"),
        )),
    }
}

/// JSON type name for messages.
pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A required string field.
pub fn req_str<'a>(m: &'a Map<String, Value>, key: &str) -> Result<&'a str, Rejection> {
    match m.get(key) {
        None | Some(Value::Null) => Err(Rejection::new(
            Reason::MissingField,
            format!("missing field `{key}`"),
        )),
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(wrong(key, "a string", other)),
    }
}

/// An optional string field.
pub fn opt_str<'a>(m: &'a Map<String, Value>, key: &str) -> Result<Option<&'a str>, Rejection> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(wrong(key, "a string", other)),
    }
}

/// An optional finite number.
pub fn opt_f64(m: &Map<String, Value>, key: &str) -> Result<Option<f64>, Rejection> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_f64()
            .filter(|f| f.is_finite())
            .map(Some)
            .ok_or_else(|| {
                Rejection::new(
                    Reason::InvalidField,
                    format!("`{key}` is not a finite number"),
                )
            }),
        Some(other) => Err(wrong(key, "a number", other)),
    }
}

/// An optional non-negative integer.
pub fn opt_u64(m: &Map<String, Value>, key: &str) -> Result<Option<u64>, Rejection> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n.as_u64().map(Some).ok_or_else(|| {
            Rejection::new(
                Reason::InvalidField,
                format!("`{key}` must be a non-negative integer"),
            )
        }),
        Some(other) => Err(wrong(key, "a non-negative integer", other)),
    }
}

/// An optional boolean.
pub fn opt_bool(m: &Map<String, Value>, key: &str) -> Result<Option<bool>, Rejection> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(other) => Err(wrong(key, "true or false", other)),
    }
}

/// A string field that must be one of `allowed`.
pub fn one_of<'a>(value: &'a str, key: &str, allowed: &[&str]) -> Result<&'a str, Rejection> {
    if allowed.contains(&value) {
        Ok(value)
    } else {
        Err(Rejection::new(
            Reason::InvalidField,
            format!(
                "`{key}` is `{}`, expected one of {}",
                excerpt(value),
                allowed.join(", ")
            ),
        ))
    }
}

/// An id that may be sent as a string or an integer.
pub fn req_id(m: &Map<String, Value>, key: &str) -> Result<String, Rejection> {
    match m.get(key) {
        None | Some(Value::Null) => Err(Rejection::new(
            Reason::MissingField,
            format!("missing field `{key}`"),
        )),
        Some(Value::String(s)) if !s.is_empty() && s.len() <= 128 => Ok(s.clone()),
        Some(Value::String(_)) => Err(Rejection::new(
            Reason::InvalidField,
            format!("`{key}` must be 1 to 128 characters"),
        )),
        Some(Value::Number(n)) if n.is_u64() || n.is_i64() => Ok(n.to_string()),
        Some(other) => Err(wrong(key, "a string or an integer", other)),
    }
}

fn wrong(key: &str, expected: &str, got: &Value) -> Rejection {
    Rejection::new(
        Reason::InvalidField,
        format!("`{key}` must be {expected}, got {}", type_name(got)),
    )
}

fn excerpt(s: &str) -> String {
    let mut e: String = s.chars().take(40).collect();
    if e.len() < s.len() {
        e.push('…');
    }
    e
}

/// Parse a timestamp: RFC 3339 with an offset, or an epoch number. Numbers
/// are milliseconds, except when `float_seconds` is set (Frigate) or when the
/// magnitude is below 10^11 (as milliseconds that would be before 1973, so
/// it can only be seconds).
pub fn timestamp(v: &Value, key: &str, float_seconds: bool) -> Result<DateTime<Utc>, Rejection> {
    let bad = |why: &str| Rejection::new(Reason::InvalidTimestamp, format!("`{key}`: {why}"));
    match v {
        Value::String(s) => DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| {
                bad(&format!(
                    "`{}` is not RFC 3339 with an offset ({e})",
                    excerpt(s)
                ))
            }),
        Value::Number(n) => {
            let seconds = |f: f64| float_seconds || f.abs() < 1.0e11;
            if let Some(ms) = n.as_i64().filter(|i| !seconds(*i as f64)) {
                Utc.timestamp_millis_opt(ms)
                    .single()
                    .ok_or_else(|| bad("epoch milliseconds out of range"))
            } else if let Some(f) = n.as_f64().filter(|f| f.is_finite()) {
                let ms = if seconds(f) { f * 1000.0 } else { f };
                if ms.abs() > 8.0e15 {
                    return Err(bad("epoch value out of range"));
                }
                Utc.timestamp_millis_opt(ms.round() as i64)
                    .single()
                    .ok_or_else(|| bad("epoch value out of range"))
            } else {
                Err(bad("not a valid number"))
            }
        }
        other => Err(bad(&format!(
            "expected a string or a number, got {}",
            type_name(other)
        ))),
    }
}

/// The optional `ts` field of a payload.
pub fn opt_ts(m: &Map<String, Value>) -> Result<Option<DateTime<Utc>>, Rejection> {
    match m.get("ts") {
        None | Some(Value::Null) => Ok(None),
        Some(v) => timestamp(v, "ts", false).map(Some),
    }
}
