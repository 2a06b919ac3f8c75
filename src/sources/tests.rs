//! Decoder unit tests: one behaviour each, on hand-written payloads.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};

use super::{Decoded, Decoder};
use crate::config::load_str;
use crate::config::Registry;
use crate::model::{Event, Raw, Reason, Rejection, Source};

const CONFIG: &str = r#"
[commune]
id = "binh-lu"
name = "Xã Bình Lư"
[[village]]
id = "tan-binh"
name = "Bản Tân Bình"
[[camera]]
id = "cam-01"
village = "tan-binh"
frigate_name = "cong"
[[speaker]]
id = "spk-01"
[[sensor]]
id = "rain-01"
village = "tan-binh"
"#;

/// The decoder, for topics that carry one event per message.
struct One(Decoder);

impl One {
    fn decode(&self, raw: &Raw) -> Result<Event, Rejection> {
        match self.0.decode(raw) {
            Decoded::One(r) => r,
            Decoded::Many(parts) => panic!("{}: {} parts, expected one", raw.topic, parts.len()),
        }
    }
}

fn decoder() -> One {
    let c = load_str(CONFIG, "t.toml", &[]).expect("config");
    One(Decoder::new(
        Arc::new(Registry::from_config(&c)),
        c.ingest.clone(),
        false,
    ))
}

fn raw(topic: &str, payload: &str, at: DateTime<Utc>) -> Raw {
    Raw {
        topic: topic.into(),
        payload: payload.as_bytes().to_vec(),
        received_at: at,
        retained: false,
    }
}

#[test]
fn other_communes_are_rejected() {
    let r = decoder()
        .decode(&raw("ioc/lung-phinh/procedure/dossier", "{}", Utc::now()))
        .unwrap_err();
    assert_eq!(r.reason, Reason::WrongCommune);
}

#[test]
fn repeated_plain_status_is_not_merged() {
    let d = decoder();
    let t = Utc::now();
    let a = d
        .decode(&raw("ioc/binh-lu/camera/cam-01/status", "online", t))
        .unwrap();
    let b = d
        .decode(&raw(
            "ioc/binh-lu/camera/cam-01/status",
            "online",
            t + Duration::seconds(5),
        ))
        .unwrap();
    assert_ne!(
        a.dedup_key, b.dedup_key,
        "an online → offline → online flap must survive"
    );
    assert_eq!(a.attr_str("state"), Some("online"));
}

#[test]
fn seq_without_ts_does_not_collide_across_payloads() {
    let d = decoder();
    let t = Utc::now();
    let a = d
        .decode(&raw(
            "ioc/binh-lu/camera/cam-01/event",
            r#"{"seq":5,"kind":"detection","label":"person"}"#,
            t,
        ))
        .unwrap();
    let b = d
        .decode(&raw(
            "ioc/binh-lu/camera/cam-01/event",
            r#"{"seq":5,"kind":"detection","label":"car"}"#,
            t,
        ))
        .unwrap();
    assert_ne!(a.dedup_key, b.dedup_key);
    let ts = t.to_rfc3339();
    let p = format!(r#"{{"ts":"{ts}","seq":5,"kind":"detection","label":"person"}}"#);
    let c = d
        .decode(&raw("ioc/binh-lu/camera/cam-01/event", &p, t))
        .unwrap();
    let again = d
        .decode(&raw(
            "ioc/binh-lu/camera/cam-01/event",
            &p.replace("person", "person\" ,\"zone\":\"x"),
            t,
        ))
        .unwrap();
    assert_eq!(
        c.dedup_key, again.dedup_key,
        "same device, seq and time: the same event"
    );
}

#[test]
fn epoch_timestamps_in_seconds_or_milliseconds() {
    let d = decoder();
    let now = Utc::now();
    for ts in [
        now.timestamp().to_string(),
        now.timestamp_millis().to_string(),
        format!("{}.25", now.timestamp()),
    ] {
        let p = format!(r#"{{"ts":{ts},"rain_mm":1.5}}"#);
        let e = d
            .decode(&raw("ioc/binh-lu/sensor/rain-01/telemetry", &p, now))
            .unwrap();
        assert!((e.ts - now).num_seconds().abs() <= 1, "{ts} → {}", e.ts);
    }
}

#[test]
fn thingsboard_shape_and_flat_shape() {
    let d = decoder();
    let now = Utc::now();
    let tb = format!(
        r#"{{"ts":{},"values":{{"rain_mm":12.5,"ok":true,"unit":"mm"}}}}"#,
        now.timestamp_millis()
    );
    let e = d
        .decode(&raw("ioc/binh-lu/sensor/rain-01/telemetry", &tb, now))
        .unwrap();
    assert_eq!(e.attr_f64("rain_mm"), Some(12.5));
    assert_eq!(e.attr_f64("ok"), Some(1.0));
    assert!(e.attrs.get("unit").is_none());
    assert_eq!(e.village.as_deref(), Some("tan-binh"));
    let r = d
        .decode(&raw(
            "ioc/binh-lu/sensor/rain-01/telemetry",
            r#"{"unit":"mm"}"#,
            now,
        ))
        .unwrap_err();
    assert_eq!(r.reason, Reason::MissingField);
    assert_eq!(r.device.as_deref(), Some("rain-01"));
}

#[test]
fn frigate_sub_label_shapes_and_unknown_camera() {
    let d = decoder();
    let now = Utc::now();
    let t = now.timestamp() as f64 + 0.5;
    for sub in ["null", "\"Nam\"", "[\"Nam\", 0.9]"] {
        let p = format!(
            r#"{{"type":"new","before":{{}},"after":{{"id":"o1","camera":"cong","label":"person","sub_label":{sub},"start_time":{t},"frame_time":{t},"new_key":1}}}}"#
        );
        let e = d.decode(&raw("frigate/events", &p, now)).unwrap();
        assert_eq!(e.source, Source::Camera);
        assert_eq!(e.device.as_deref(), Some("cam-01"));
        assert_eq!(e.kind, "detection");
        assert_eq!(e.dedup_key, "frigate:o1:new");
    }
    let p = r#"{"type":"new","after":{"id":"o2","camera":"garage","label":"person"}}"#;
    let r = d.decode(&raw("frigate/events", p, now)).unwrap_err();
    assert_eq!(r.reason, Reason::UnknownDevice);
    let p = r#"{"type":"new","after":{"id":"o3","camera":"cong","label":"person","sub_label":5}}"#;
    assert_eq!(
        d.decode(&raw("frigate/events", p, now)).unwrap_err().reason,
        Reason::InvalidField
    );
}

#[test]
fn skew_limits() {
    let d = decoder();
    let now = Utc::now();
    let soon = (now + Duration::seconds(60)).to_rfc3339();
    let p = format!(r#"{{"ts":"{soon}","dossier_id":"a","event":"received","channel":"online"}}"#);
    assert!(
        d.decode(&raw("ioc/binh-lu/procedure/dossier", &p, now))
            .is_ok(),
        "a minute of skew is tolerated"
    );
    let naive =
        r#"{"ts":"2026-11-23T08:00:00","dossier_id":"a","event":"received","channel":"online"}"#;
    assert_eq!(
        d.decode(&raw("ioc/binh-lu/procedure/dossier", naive, now))
            .unwrap_err()
            .reason,
        Reason::InvalidTimestamp,
        "a time without offset is ambiguous"
    );
}

#[test]
fn frigate_available_accepts_the_stopped_of_frigate_0_18() {
    let d = decoder();
    for (payload, state) in [
        ("online", "online"),
        ("offline", "offline"),
        ("stopped", "stopped"),
        ("stopped\n", "stopped"),
    ] {
        let e = d
            .decode(&raw("frigate/available", payload, Utc::now()))
            .unwrap_or_else(|r| panic!("{payload:?}: {r:?}"));
        assert_eq!(e.kind, "frigate_available");
        assert_eq!(e.attr_str("state"), Some(state));
    }
    let r = d
        .decode(&raw("frigate/available", "paused", Utc::now()))
        .unwrap_err();
    assert_eq!(r.reason, Reason::InvalidField);
}

#[test]
fn an_empty_payload_is_a_cleared_retained_message_not_an_error() {
    let d = decoder();
    let t = Utc::now();
    for (topic, source, device) in [
        (
            "ioc/binh-lu/camera/cam-01/event",
            Source::Camera,
            Some("cam-01"),
        ),
        (
            "ioc/binh-lu/camera/cam-01/status",
            Source::Camera,
            Some("cam-01"),
        ),
        // A device taken out of the config: clearing its retained status
        // is the usual reason for an empty message.
        (
            "ioc/binh-lu/speaker/spk-99/status",
            Source::Speaker,
            Some("spk-99"),
        ),
        (
            "ioc/binh-lu/sensor/rain-01/telemetry",
            Source::Sensor,
            Some("rain-01"),
        ),
        ("ioc/binh-lu/procedure/dossier", Source::Procedure, None),
        ("frigate/available", Source::Camera, None),
    ] {
        let mut r = raw(topic, "", t);
        r.retained = true;
        let e = d.decode(&r).unwrap_or_else(|r| panic!("{topic}: {r:?}"));
        assert_eq!(e.kind, crate::sources::CLEARED, "{topic}");
        assert_eq!(e.source, source, "{topic}");
        assert_eq!(e.device, None, "{topic}: no device, so no last_seen");
        assert_eq!(e.attr_str("device_id"), device, "{topic}");
        assert_eq!(e.attr_str("topic"), Some(topic));
        assert!(e.retained);
    }
    // Topics this service does not decode stay dead letters.
    for (topic, reason) in [
        ("ioc/binh-lu/camera/cam-01/nothing", Reason::UnknownTopic),
        ("ioc/lung-phinh/procedure/dossier", Reason::WrongCommune),
        ("elsewhere", Reason::UnknownTopic),
    ] {
        assert_eq!(
            d.decode(&raw(topic, "", t)).unwrap_err().reason,
            reason,
            "{topic}"
        );
    }
}

/// The event kinds config validation accepts (`vocab::Source::event_kinds`)
/// include every kind these decoders produce, so a filter on a real kind is
/// never refused as a typo.
#[test]
fn config_knows_every_event_kind_the_decoders_produce() {
    let has = |s: Source, kind: &str| {
        assert!(
            s.event_kinds().contains(&kind),
            "`{kind}` ({s}) is missing from vocab::Source::event_kinds"
        )
    };
    for k in super::camera::KINDS {
        has(Source::Camera, k);
    }
    for k in super::procedure::EVENTS {
        has(Source::Procedure, k);
    }
    for phase in ["start", "end"] {
        has(Source::Speaker, &format!("session_{phase}"));
    }
    for kind in ["new", "update", "end"] {
        has(Source::Camera, &format!("review_{kind}"));
    }
    for k in [
        "detection",
        "detection_update",
        "detection_end",
        "frigate_available",
    ] {
        has(Source::Camera, k);
    }
    for s in [Source::Camera, Source::Speaker, Source::Sensor] {
        has(s, "status");
    }
    has(Source::Sensor, "telemetry");
}

#[test]
fn a_single_event_message_iterates_as_one_part_with_the_whole_payload() {
    let d = decoder().0;
    let r = raw("ioc/binh-lu/camera/cam-01/status", "online", Utc::now());
    let decoded = d.decode(&r);
    assert_eq!(decoded.len(), 1);
    let parts: Vec<_> = decoded.into_iter().collect();
    assert_eq!(parts.len(), 1);
    assert!(parts[0].result.is_ok());
    assert!(parts[0].payload.is_none(), "the whole message, not a piece");
    let bad = d.decode(&raw("ioc/binh-lu/camera/cam-01/event", "{", Utc::now()));
    let parts: Vec<_> = bad.into_iter().collect();
    assert_eq!(parts.len(), 1);
    assert_eq!(
        parts[0].result.as_ref().unwrap_err().reason,
        Reason::InvalidJson
    );
}

/// A `yyyyMMddHHmmss` Vietnam time, as the portal sync writes it.
fn vn(t: DateTime<Utc>) -> String {
    t.with_timezone(&chrono_tz::Asia::Ho_Chi_Minh)
        .format("%Y%m%d%H%M%S")
        .to_string()
}

fn dvcqg_parts(body: serde_json::Value, at: DateTime<Utc>) -> Vec<super::Part> {
    let r = raw("ioc/binh-lu/procedure/dvcqg", &body.to_string(), at);
    match decoder().0.decode(&r) {
        Decoded::Many(parts) => parts,
        Decoded::One(r) => panic!("expected parts, got {r:?}"),
    }
}

#[test]
fn dvcqg_old_steps_are_left_out_future_ones_refused_and_progress_keyed_by_status() {
    let now = Utc::now();
    // Received 40 days ago (over ingest.max_age_days), resolved today:
    // only `resolved` counts, `progress` lists what was left out.
    let body = serde_json::json!({"service": "DongBoHoSoMC", "data": [{
        "MaHoSo": "HS-1", "TrangThaiHoSo": "9", "HinhThuc": "0",
        "NgayTiepNhan": vn(now - Duration::days(40)),
        "NgayHenTra": vn(now - Duration::days(1)),
        "NgayKetThucXuLy": vn(now - Duration::hours(1)), "NgayTra": "",
        "DanhSachLePhi": []}]});
    let parts = dvcqg_parts(body, now);
    let kinds: Vec<&str> = parts
        .iter()
        .map(|p| p.result.as_ref().unwrap().kind.as_str())
        .collect();
    assert_eq!(kinds, ["resolved", "progress"]);
    let resolved = parts[0].result.as_ref().unwrap();
    assert_eq!(resolved.attr_str("outcome"), Some("late"));
    assert_eq!(resolved.dedup_key, "dossier:HS-1:resolved");
    let progress = parts[1].result.as_ref().unwrap();
    assert_eq!(progress.dedup_key, "dossier:HS-1:progress:9");
    assert_eq!(progress.attrs["too_old"], serde_json::json!(["received"]));
    // Each part carries the object alone, in its service's envelope.
    let own: serde_json::Value =
        serde_json::from_slice(parts[0].payload.as_deref().unwrap()).unwrap();
    assert_eq!(own["service"], "DongBoHoSoMC");
    assert_eq!(own["data"][0]["MaHoSo"], "HS-1");

    // A reception date a day ahead: refused, naming the field.
    let body = serde_json::json!({"service": "DongBoHoSoMC", "data": [{
        "MaHoSo": "HS-2", "TrangThaiHoSo": "2", "HinhThuc": "1",
        "NgayTiepNhan": vn(now + Duration::days(1)), "NgayHenTra": ""}]});
    let parts = dvcqg_parts(body, now);
    assert_eq!(parts.len(), 1);
    let r = parts[0].result.as_ref().unwrap_err();
    assert_eq!(r.reason, Reason::TimestampInFuture);
    assert!(
        r.detail.starts_with("Hồ sơ HS-2: trường NgayTiepNhan"),
        "{}",
        r.detail
    );

    // A progress object: one `progress` event at its processing time, the
    // same key as the dossier object's at that status.
    let body = serde_json::json!({"service": "CapNhatTienDoHoSoMC", "data": [{
        "MaHoSo": "HS-1", "TrangThai": "9", "ThoiDiemXuLy": vn(now - Duration::hours(1)),
        "NgayBatDau": "", "NgayKetThucTheoQuyDinh": ""}]});
    let parts = dvcqg_parts(body, now);
    let e = parts[0].result.as_ref().unwrap();
    assert_eq!(
        (e.kind.as_str(), e.dedup_key.as_str()),
        ("progress", "dossier:HS-1:progress:9")
    );
    assert_eq!(e.attr_str("stage"), Some("resolved"));

    // An unknown HinhThuc names the table to add it to.
    let body = serde_json::json!({"service": "DongBoHoSoMC", "data": [{
        "MaHoSo": "HS-3", "TrangThaiHoSo": "2", "HinhThuc": "7",
        "NgayTiepNhan": vn(now - Duration::hours(1))}]});
    let r = dvcqg_parts(body, now).remove(0).result.unwrap_err();
    assert_eq!(r.reason, Reason::InvalidField);
    assert!(
        r.detail.contains("[procedure.dvcqg.channel]"),
        "{}",
        r.detail
    );
}

#[test]
fn dvcqg_messages_bad_as_a_whole_and_cleared() {
    let d = decoder();
    let now = Utc::now();
    let topic = "ioc/binh-lu/procedure/dvcqg";
    for (payload, reason, words) in [
        ("not json", Reason::InvalidJson, "không phải JSON"),
        (
            r#"{"data":[{}]}"#,
            Reason::MissingField,
            "thiếu trường service",
        ),
        (
            r#"{"service":"DongBoHoSoMC","data":[]}"#,
            Reason::MissingField,
            "rỗng",
        ),
        (
            r#"{"service":"DongBoHoSoMC","data":{}}"#,
            Reason::InvalidField,
            "danh sách",
        ),
    ] {
        match d.0.decode(&raw(topic, payload, now)) {
            Decoded::One(Err(r)) => {
                assert_eq!(r.reason, reason, "{payload}");
                assert!(r.detail.contains(words), "{payload}: {}", r.detail);
                assert_eq!(r.source, Some(Source::Procedure));
            }
            other => panic!("{payload}: {other:?}"),
        }
    }
    // An empty retained message clears, as on every decoded topic.
    let e = d.decode(&raw(topic, "", now)).unwrap();
    assert_eq!(e.kind, crate::sources::CLEARED);
    // Another commune's sync topic is not this decoder's.
    let r = d
        .decode(&raw("ioc/lung-phinh/procedure/dvcqg", "{}", now))
        .unwrap_err();
    assert_eq!(r.reason, Reason::WrongCommune);
}
