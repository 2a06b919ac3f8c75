//! Property tests of the line-protocol encoding (`sinks::line`): whatever
//! the names and values (Vietnamese, spaces, commas, equals signs, quotes,
//! backslashes, line breaks), a point encodes to exactly one line that a
//! line-protocol parser reads back to the same names and values, with
//! control characters (line breaks, tabs) turned into spaces, as documented
//! in docs/STORAGE.md.

use chrono::{TimeZone, Utc};
use commune_ioc::config::Precision;
use commune_ioc::model::{Event, Source};
use commune_ioc::sinks::line::{self, FieldValue};
use proptest::prelude::*;

/// What the encoder promises to keep: ASCII control characters become spaces.
fn kept(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() && (c as u32) < 0x80 {
                ' '
            } else {
                c
            }
        })
        .collect()
}

#[derive(Debug, PartialEq)]
struct Parsed {
    measurement: String,
    tags: Vec<(String, String)>,
    fields: Vec<(String, FieldValue)>,
    ts: i64,
}

/// Read up to an unescaped stop character; `\x` is `x` when `x` is in
/// `escapable`, else a literal backslash.
fn take(
    s: &mut std::iter::Peekable<std::str::Chars<'_>>,
    stops: &[char],
    escapable: &[char],
) -> String {
    let mut out = String::new();
    while let Some(&c) = s.peek() {
        if stops.contains(&c) {
            break;
        }
        s.next();
        if c == '\\' {
            match s.peek() {
                Some(&n) if escapable.contains(&n) => {
                    out.push(n);
                    s.next();
                }
                _ => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A small line-protocol parser (InfluxDB 2 reference rules).
fn parse(line: &str) -> Result<Parsed, String> {
    let line = line.strip_suffix('\n').ok_or("no final newline")?;
    if line.contains('\n') {
        return Err("a line break inside the line".into());
    }
    let mut s = line.chars().peekable();
    let measurement = take(&mut s, &[',', ' '], &[',', ' ', '\\']);
    let mut tags = Vec::new();
    while s.peek() == Some(&',') {
        s.next();
        let k = take(&mut s, &['='], &[',', '=', ' ', '\\']);
        if s.next() != Some('=') {
            return Err("tag without =".into());
        }
        let v = take(&mut s, &[',', ' '], &[',', '=', ' ', '\\']);
        tags.push((k, v));
    }
    if s.next() != Some(' ') {
        return Err("no space before the fields".into());
    }
    let mut fields = Vec::new();
    loop {
        let k = take(&mut s, &['='], &[',', '=', ' ', '\\']);
        if s.next() != Some('=') {
            return Err(format!("field {k} without ="));
        }
        let v = if s.peek() == Some(&'"') {
            s.next();
            let mut out = String::new();
            loop {
                match s.next() {
                    None => return Err("unterminated string".into()),
                    Some('"') => break,
                    Some('\\') => match s.next() {
                        Some(c @ ('"' | '\\')) => out.push(c),
                        Some(c) => {
                            out.push('\\');
                            out.push(c);
                        }
                        None => return Err("dangling backslash".into()),
                    },
                    Some(c) => out.push(c),
                }
            }
            FieldValue::Str(out)
        } else {
            let raw = take(&mut s, &[',', ' '], &[]);
            if let Some(i) = raw.strip_suffix('i') {
                FieldValue::Int(i.parse().map_err(|e| format!("int {raw}: {e}"))?)
            } else if raw == "true" || raw == "false" {
                FieldValue::Bool(raw == "true")
            } else {
                FieldValue::Float(raw.parse().map_err(|e| format!("float {raw}: {e}"))?)
            }
        };
        fields.push((k, v));
        match s.next() {
            Some(',') => continue,
            Some(' ') => break,
            other => return Err(format!("after a field: {other:?}")),
        }
    }
    let ts: String = s.collect();
    let ts = ts.parse().map_err(|e| format!("timestamp {ts}: {e}"))?;
    Ok(Parsed {
        measurement,
        tags,
        fields,
        ts,
    })
}

/// Names and text: any Unicode, weighted towards Vietnamese letters and the
/// characters line protocol treats specially.
fn text(min: usize) -> impl Strategy<Value = String> {
    let special = prop::sample::select(vec![
        ' ', ',', '=', '"', '\\', '\n', '\r', '\t', 'ệ', 'ư', 'ơ', 'Đ', 'ả', 'ấ', 'ỹ', '_', '#',
    ]);
    prop::collection::vec(prop_oneof![2 => special, 1 => any::<char>()], min..24)
        .prop_map(String::from_iter)
}

fn value() -> impl Strategy<Value = FieldValue> {
    prop_oneof![
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(FieldValue::Float),
        any::<i64>().prop_map(FieldValue::Int),
        any::<bool>().prop_map(FieldValue::Bool),
        text(0).prop_map(FieldValue::Str),
    ]
}

fn expected(v: &FieldValue) -> FieldValue {
    match v {
        FieldValue::Str(s) => FieldValue::Str(kept(s)),
        other => other.clone(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn every_point_round_trips(
        measurement in text(1),
        tags in prop::collection::vec((text(1), text(1)), 0..4),
        fields in prop::collection::vec((text(1), value()), 1..5),
        ts in 0i64..4_000_000_000_000,
        unique in any::<i64>(),
    ) {
        let tag_refs: Vec<(&str, &str)> = tags.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let field_refs: Vec<(&str, FieldValue)> = fields.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
        let mut out = String::new();
        prop_assert!(line::push_point(&mut out, &measurement, &tag_refs, &field_refs));
        line::push_timestamp(&mut out, ts, unique, Precision::Ns);
        let p = parse(&out).map_err(|e| TestCaseError::fail(format!("{e}: {out:?}")))?;
        prop_assert_eq!(p.measurement, kept(&measurement));
        prop_assert_eq!(p.tags, tags.iter().map(|(k, v)| (kept(k), kept(v))).collect::<Vec<_>>());
        prop_assert_eq!(p.fields, fields.iter().map(|(k, v)| (kept(k), expected(v))).collect::<Vec<_>>());
        prop_assert_eq!(p.ts, ts * 1_000_000 + unique.rem_euclid(1_000_000));
    }

    #[test]
    fn every_event_is_one_parseable_line(
        village in prop::option::of(text(0)),
        device in prop::option::of(text(0)),
        kind in text(1),
        attrs in prop::collection::btree_map(text(1), prop_oneof![
            any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(serde_json::Value::from),
            any::<bool>().prop_map(serde_json::Value::from),
            text(0).prop_map(serde_json::Value::from),
            Just(serde_json::Value::Null),
            Just(serde_json::json!(["a", 1])),
        ], 0..6),
        id in 1i64..i64::MAX,
        ts in 0i64..4_000_000_000_000,
    ) {
        let at = Utc.timestamp_millis_opt(ts).single().expect("valid time");
        let e = Event {
            source: Source::Sensor,
            kind: kind.clone(),
            device: device.clone(),
            village: village.clone(),
            ts: at,
            received_at: at,
            seq: None,
            attrs: attrs.clone().into_iter().collect(),
            dedup_key: "k".into(),
            retained: false,
        };
        let mut out = String::new();
        line::push_event(&mut out, "xã Bình Lư", id, &e, Precision::Ms);
        let p = parse(&out).map_err(|e| TestCaseError::fail(format!("{e}: {out:?}")))?;
        prop_assert_eq!(p.measurement, "ioc_sensor");
        prop_assert_eq!(p.ts, ts);
        let tag = |k: &str| p.tags.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        prop_assert_eq!(tag("commune"), Some("xã Bình Lư".to_string()));
        prop_assert_eq!(tag("kind"), Some(kept(&kind)));
        prop_assert_eq!(tag("village"), village.filter(|v| !v.is_empty()).map(|v| kept(&v)));
        prop_assert_eq!(tag("device"), device.filter(|v| !v.is_empty()).map(|v| kept(&v)));
        prop_assert_eq!(&p.fields[0], &("events".to_string(), FieldValue::Int(1)));
        let non_null = attrs.values().filter(|v| !v.is_null()).count();
        prop_assert_eq!(p.fields.len(), 1 + non_null);
    }
}

#[test]
fn reserved_and_own_names_are_prefixed() {
    let at = Utc.timestamp_millis_opt(0).single().expect("epoch");
    let e = Event {
        source: Source::Camera,
        kind: "count".into(),
        device: None,
        village: None,
        ts: at,
        received_at: at,
        seq: None,
        attrs: serde_json::json!({"time": 1, "_value": 2, "events": 3, "ok": 4})
            .as_object()
            .cloned()
            .unwrap_or_default(),
        dedup_key: "k".into(),
        retained: false,
    };
    let mut out = String::new();
    line::push_event(&mut out, "binh-lu", 1, &e, Precision::Ms);
    assert_eq!(
        out,
        "ioc_camera,commune=binh-lu,kind=count events=1i,attr__value=2.0,attr_events=3.0,ok=4.0,attr_time=1.0 0\n"
    );
}
