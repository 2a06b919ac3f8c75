//! The mapping engine on messages of the real shapes (our own values and
//! names; the shapes and traps of tests/../fixtures/real, see INDEX.md).

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::Outcome;
use crate::config::load_str;
use crate::config::Registry;
use crate::model::{Event, Raw, Reason, Rejection};
use crate::sources::Decoder;

const CONFIG: &str = r#"
[commune]
id = "binh-lu"
name = "Xã Bình Lư"
[[village]]
id = "tan-binh"
name = "Bản Tân Bình"
[[sensor]]
id = "leak-01"
village = "tan-binh"
[[sensor]]
id = "temp-01"
[[sensor]]
id = "temp-02"
[[sensor]]
id = "plug-01"
[[sensor]]
id = "ht-01"
[[sensor]]
id = "esp-01"
[[sensor]]
id = "rain-02"
[[sensor]]
id = "water-01"

[[mapped]]
id = "z2m"
include = "zigbee2mqtt"
[mapped.devices]
"Cảm biến nước Bếp" = "leak-01"
"0x00158d00045a1b2c" = "temp-01"
"o cam phong hop" = "plug-01"

[[mapped]]
id = "tasmota"
include = "tasmota"
[mapped.devices]
"nha-van-hoa" = "temp-02"

[[mapped]]
id = "shelly"
include = "shelly"
[mapped.devices]
"shellyplusht-a0b1c2d3e4f5" = "ht-01"

[[mapped]]
id = "esphome"
include = "esphome"
[mapped.devices]
"tram-mua-ban" = "esp-01"

[[mapped]]
id = "tbgw"
include = "thingsboard"
[mapped.devices]
"Tram mua 2" = "rain-02"
"Muc nuoc Nam De" = "water-01"

[[mapped]]
id = "tblog"
include = "thingsboard-device"
device = "water-01"
"#;

/// The receive time of every test message: 2026-11-23 08:20 in Vietnam.
fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-23T01:20:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn decoder() -> Decoder {
    let c = load_str(CONFIG, "t.toml", &[]).unwrap_or_else(|e| panic!("{e}"));
    let mapped = super::Mapped::new(c.site.mapped.clone());
    Decoder::new(Arc::new(Registry::from_config(&c)), c.ingest.clone(), false).with_mapped(mapped)
}

fn raw(topic: &str, payload: &str) -> Raw {
    Raw {
        topic: topic.into(),
        payload: payload.as_bytes().to_vec(),
        received_at: now(),
        retained: false,
    }
}

fn run(topic: &str, payload: &str) -> Outcome {
    decoder()
        .decode_mapped(&raw(topic, payload))
        .unwrap_or_else(|| panic!("no rule takes {topic}"))
}

/// The results of a message, in order.
fn parts(topic: &str, payload: &str) -> Vec<Result<Event, Rejection>> {
    run(topic, payload)
        .decoded
        .into_iter()
        .map(|p| p.result)
        .collect()
}

fn ok(topic: &str, payload: &str) -> Vec<Event> {
    parts(topic, payload)
        .into_iter()
        .map(|r| r.unwrap_or_else(|r| panic!("{topic}: {} {}", r.reason.code(), r.detail)))
        .collect()
}

fn one(topic: &str, payload: &str) -> Event {
    let mut e = ok(topic, payload);
    assert_eq!(e.len(), 1, "{e:?}");
    e.remove(0)
}

fn dead(topic: &str, payload: &str) -> Rejection {
    match run(topic, payload).decoded {
        crate::sources::Decoded::One(Err(r)) => r,
        other => panic!("{topic}: expected one dead letter, got {other:?}"),
    }
}

fn num(e: &Event, k: &str) -> f64 {
    e.attr_f64(k)
        .unwrap_or_else(|| panic!("no `{k}` in {:?}", e.attrs))
}

#[test]
fn zigbee2mqtt_numbers_as_strings_nulls_and_states() {
    let e = one(
        "zigbee2mqtt/0x00158d00045a1b2c",
        r#"{"battery":"80.00","voltage":2900,"linkquality":0,"temperature":27.35,"water_leak":true,"power_outage":null}"#,
    );
    assert_eq!(e.device.as_deref(), Some("temp-01"));
    assert_eq!(e.kind, "telemetry");
    assert_eq!(num(&e, "battery_pct"), 80.0);
    assert_eq!(num(&e, "temperature_c"), 27.35);
    assert_eq!(num(&e, "water_leak"), 1.0);
    assert_eq!(num(&e, "link_quality"), 0.0);
    assert_eq!(e.attr_str("via"), Some("z2m/telemetry"));
    assert!(
        e.attrs.get("voltage").is_none(),
        "voltage is not mapped by the preset"
    );
    assert_eq!(e.ts, now(), "no last_seen: the receive time");
    let plug = one(
        "zigbee2mqtt/o cam phong hop",
        r#"{"linkquality":96,"power":12,"state":"ON"}"#,
    );
    assert_eq!(
        (num(&plug, "switch_on"), num(&plug, "power_w")),
        (1.0, 12.0)
    );
    let bad = dead("zigbee2mqtt/o cam phong hop", r#"{"state":"TOGGLE"}"#);
    assert_eq!(bad.reason, Reason::InvalidField);
    assert!(
        bad.detail.contains("z2m/telemetry")
            && bad.detail.contains("`state`")
            && bad.detail.contains("TOGGLE"),
        "{}",
        bad.detail
    );
}

#[test]
fn zigbee2mqtt_names_with_spaces_and_diacritics_and_sub_topics() {
    let e = one(
        "zigbee2mqtt/Cảm biến nước Bếp",
        r#"{"battery":90,"battery_low":false,"linkquality":216,"tamper":false,"update":{"installed_version":1,"state":"idle"},"water_leak":false,"last_seen":"2026-11-23T08:15:02+07:00"}"#,
    );
    assert_eq!(e.device.as_deref(), Some("leak-01"));
    assert_eq!(e.village.as_deref(), Some("tan-binh"));
    assert_eq!(
        e.ts,
        utc("2026-11-23T01:15:02Z"),
        "last_seen with its offset"
    );
    assert_eq!(num(&e, "water_leak"), 0.0);
    // `zigbee2mqtt/{device}` is one level: a device's sub-topic is no device.
    let d = decoder();
    assert!(d
        .decode_mapped(&raw(
            "zigbee2mqtt/Cảm biến nước Bếp/duration",
            r#"{"light":10,"siren":2}"#
        ))
        .is_none());
    assert!(!d.topic_filters().iter().any(|f| f == "zigbee2mqtt/#"));
    // An unknown device is flagged with the id it sent.
    let r = dead(
        "zigbee2mqtt/Còi báo động",
        r#"{"battery":100,"linkquality":160}"#,
    );
    assert_eq!(r.reason, Reason::UnknownDevice);
    assert_eq!(r.device.as_deref(), Some("Còi báo động"));
    assert!(r.detail.contains("[mapped.devices]"), "{}", r.detail);
}

#[test]
fn zigbee2mqtt_availability_json_and_plain() {
    let e = one(
        "zigbee2mqtt/0x00158d00045a1b2c/availability",
        r#"{"state":"online"}"#,
    );
    assert_eq!(
        (e.kind.as_str(), e.attr_str("state")),
        ("status", Some("online"))
    );
    assert_eq!(e.attr_str("via"), Some("z2m/availability"));
    let e = one("zigbee2mqtt/0x00158d00045a1b2c/availability", "offline");
    assert_eq!(e.attr_str("state"), Some("offline"));
    let r = dead(
        "zigbee2mqtt/0x00158d00045a1b2c/availability",
        r#"{"state":"sleeping"}"#,
    );
    assert!(
        r.detail.contains("z2m/availability") && r.detail.contains("sleeping"),
        "{}",
        r.detail
    );
}

#[test]
fn empty_retained_messages_clear_and_change_nothing() {
    for topic in [
        "zigbee2mqtt/Cảm biến nước Bếp",
        "zigbee2mqtt/Cảm biến nước Bếp/availability",
        "tele/nha-van-hoa/LWT",
        "shellyplusht-a0b1c2d3e4f5/online",
        "tram-mua-ban/sensor/temperature/state",
    ] {
        let e = one(topic, "");
        assert_eq!(e.kind, "cleared", "{topic}");
        assert_eq!(e.device, None, "{topic}");
        assert_eq!(e.attr_str("topic"), Some(topic));
    }
    let e = one("zigbee2mqtt/Cảm biến nước Bếp", "");
    assert_eq!(e.attr_str("device_id"), Some("Cảm biến nước Bếp"));
}

#[test]
fn tasmota_local_time_driver_names_and_chip_temperature() {
    let e = one(
        "tele/nha-van-hoa/SENSOR",
        r#"{"Time":"2026-11-23T08:10:00","AM2301":{"Temperature":24.6,"Humidity":"58,2"},"ESP32":{"Temperature":41.5},"TempUnit":"C"}"#,
    );
    assert_eq!(e.device.as_deref(), Some("temp-02"));
    assert_eq!(
        e.ts,
        utc("2026-11-23T01:10:00Z"),
        "Time without offset, in Asia/Ho_Chi_Minh"
    );
    assert_eq!(num(&e, "temperature_c"), 24.6, "not the chip's 41.5");
    assert_eq!(num(&e, "chip_temperature_c"), 41.5);
    assert_eq!(num(&e, "humidity_pct"), 58.2, "decimal comma");
    let e = one(
        "tele/nha-van-hoa/SENSOR",
        r#"{"Time":"2026-11-23T08:10:00+07:00","ENERGY":{"TotalStartTime":"2026-01-01T00:00:00","Total":12.5,"Power":830,"Voltage":221,"Current":3.9}}"#,
    );
    assert_eq!((num(&e, "power_w"), num(&e, "energy_kwh")), (830.0, 12.5));
    let r = dead(
        "tele/nha-van-hoa/SENSOR",
        r#"{"Time":"2026-11-23T08:10:00","LYWSD03-52680f":{"Temperature":21.1},"LYWSD02-a2fd09":{"Temperature":21.4},"TempUnit":"C"}"#,
    );
    assert_eq!(r.reason, Reason::InvalidField);
    assert!(
        r.detail.contains("tasmota/sensor")
            && r.detail.contains("*.Temperature")
            && r.detail.contains("each"),
        "{}",
        r.detail
    );
    let r = dead(
        "tele/nha-van-hoa/SENSOR",
        r#"{"Time":"2026-11-23T08:10:00","MCP230XX": "D0":0}}"#,
    );
    assert_eq!(r.reason, Reason::InvalidJson);
    assert!(r.detail.contains("tasmota/sensor"), "{}", r.detail);
    let r = dead(
        "tele/nha-van-hoa/SENSOR",
        r#"{"Time":"23.11.2026 08:10","AM2301":{"Temperature":24.6}}"#,
    );
    assert_eq!(r.reason, Reason::InvalidTimestamp);
    assert!(r.detail.contains("`Time`"), "{}", r.detail);
}

#[test]
fn tasmota_state_and_lwt() {
    let e = one(
        "tele/nha-van-hoa/STATE",
        r#"{"Time":"2026-11-23T08:00:00","Uptime":"0T18:36:12","UptimeSec":66972,"Vcc":3.423,"POWER":"OFF","Wifi":{"AP":1,"SSId":"UBND","RSSI":76,"Signal":-62}}"#,
    );
    assert_eq!(
        (
            num(&e, "switch_on"),
            num(&e, "signal_dbm"),
            num(&e, "uptime_s")
        ),
        (0.0, -62.0, 66972.0)
    );
    assert_eq!(
        one("tele/nha-van-hoa/LWT", "Online").attr_str("state"),
        Some("online")
    );
    assert_eq!(
        one("tele/nha-van-hoa/LWT", "Offline").attr_str("state"),
        Some("offline")
    );
    let r = dead("tele/nha-van-hoa/LWT", "online");
    assert!(
        r.detail.contains("`Online`"),
        "case matters, and the values are listed: {}",
        r.detail
    );
}

#[test]
fn shelly_components_rpc_after_deep_sleep_and_online() {
    let e = one(
        "shellyplusht-a0b1c2d3e4f5/status/temperature:0",
        r#"{"id":0,"tC":19.9,"tF":67.8}"#,
    );
    assert_eq!(
        (e.device.as_deref(), num(&e, "temperature_c")),
        (Some("ht-01"), 19.9)
    );
    let e = one(
        "shellyplusht-a0b1c2d3e4f5/status/devicepower:0",
        r#"{"id":0,"battery":{"V":6.17,"percent":100},"external":{"present":false}}"#,
    );
    assert_eq!(num(&e, "battery_pct"), 100.0);
    let r = dead(
        "shellyplusht-a0b1c2d3e4f5/status/temperature:0",
        r#"{"id":0,"tF":67.8}"#,
    );
    assert_eq!(r.reason, Reason::MissingField);
    assert!(
        r.detail.contains("shelly/temperature") && r.detail.contains("`tC`"),
        "{}",
        r.detail
    );
    // After a deep-sleep wake `sys.time` and `sys.unixtime` are null; the
    // time is `params.ts`, epoch seconds with decimals; the id is `src`.
    let e = one(
        "shellyplusht-a0b1c2d3e4f5/events/rpc",
        r#"{"src":"shellyplusht-a0b1c2d3e4f5","dst":"shellyplusht-a0b1c2d3e4f5/events","method":"NotifyFullStatus","params":{"ts":1795396502.12,"cloud":{"connected":false},"devicepower:0":{"id":0,"battery":{"V":6.1,"percent":97}},"humidity:0":{"id":0,"rh":71.4},"sys":{"time":null,"unixtime":null,"uptime":1,"wakeup_reason":{"boot":"deepsleep_wake"}},"temperature:0":{"id":0,"tC":16.2,"tF":61.2},"wifi":{"rssi":-70}}}"#,
    );
    assert_eq!(e.device.as_deref(), Some("ht-01"));
    assert_eq!(e.ts, utc("2026-11-23T01:15:02.120Z"));
    assert_eq!(
        (
            num(&e, "temperature_c"),
            num(&e, "humidity_pct"),
            num(&e, "battery_pct")
        ),
        (16.2, 71.4, 97.0)
    );
    let r = dead(
        "shellyplusht-a0b1c2d3e4f5/events/rpc",
        r#"{"src":"shellyplusht-a0b1c2d3e4f5","dst":"user_1","method":"NotifyStatus","params":{"ts":1795396502.12,"cloud":{"connected":false}}}"#,
    );
    assert_eq!(r.reason, Reason::MissingField);
    assert!(
        r.detail.contains("shelly/rpc") && r.detail.contains("no reading"),
        "{}",
        r.detail
    );
    let e = one(
        "shellyplusht-a0b1c2d3e4f5/status/switch:0",
        r#"{"id":0,"source":"WS_in","output":false,"apower":0.0,"voltage":229.3,"current":0.000,"aenergy":{"total":1520.5,"by_minute":[0.0,0.0,0.0],"minute_ts":1795396440},"temperature":{"tC":44.4,"tF":112.0}}"#,
    );
    assert_eq!(num(&e, "energy_kwh"), 1.5205, "Wh × 0.001");
    assert_eq!(num(&e, "device_temperature_c"), 44.4);
    assert!(e.attrs.get("temperature_c").is_none());
    assert_eq!(
        one("shellyplusht-a0b1c2d3e4f5/online", "true").attr_str("state"),
        Some("online")
    );
    assert_eq!(
        one("shellyplusht-a0b1c2d3e4f5/online", "false").attr_str("state"),
        Some("offline")
    );
}

#[test]
fn esphome_plain_states_text_and_status() {
    let e = one("tram-mua-ban/sensor/temperature/state", "20");
    assert_eq!(
        (e.device.as_deref(), num(&e, "temperature_c")),
        (Some("esp-01"), 20.0)
    );
    let e = one("tram-mua-ban/sensor/rain/state", "0.105");
    assert_eq!(num(&e, "rain_mm"), 0.105);
    let e = one("tram-mua-ban/sensor/inverter0_power_demand/state", "190");
    assert_eq!(
        num(&e, "inverter0_power_demand"),
        190.0,
        "unrenamed: the object id"
    );
    let r = dead("tram-mua-ban/sensor/operation_mode/state", "Normal");
    assert_eq!(r.reason, Reason::InvalidField);
    assert!(
        r.detail.contains("esphome/sensor") && r.detail.contains("Normal"),
        "{}",
        r.detail
    );
    assert_eq!(
        num(
            &one("tram-mua-ban/binary_sensor/rain_detected/state", "ON"),
            "rain_detected"
        ),
        1.0
    );
    assert_eq!(
        one("tram-mua-ban/status", "online").attr_str("state"),
        Some("online")
    );
    assert_eq!(
        one("tram-mua-ban/status", "offline").attr_str("state"),
        Some("offline")
    );
}

#[test]
fn thingsboard_gateway_arrays_one_event_per_device_and_element() {
    let events = ok(
        "v1/gateway/telemetry",
        r#"{"Tram mua 2":[{"ts":1795396200000,"values":{"rain":1.5,"battery":"88"}},{"ts":1795396500000,"values":{"rain":2.0,"battery":"87,5"}}],"Muc nuoc Nam De":[{"ts":1795396500000,"values":{"water_level":184,"status":"ok"}}]}"#,
    );
    assert_eq!(events.len(), 3);
    let got: Vec<(&str, DateTime<Utc>, f64)> = events
        .iter()
        .map(|e| {
            let v = e
                .attr_f64("rain_mm")
                .or(e.attr_f64("water_level_cm"))
                .unwrap();
            (e.device.as_deref().unwrap(), e.ts, v)
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("water-01", utc("2026-11-23T01:15:00Z"), 184.0),
            ("rain-02", utc("2026-11-23T01:10:00Z"), 1.5),
            ("rain-02", utc("2026-11-23T01:15:00Z"), 2.0),
        ]
    );
    assert_eq!(num(&events[2], "battery_pct"), 87.5);
    assert!(
        events[0].attrs.get("status").is_none(),
        "text is not a reading"
    );
    let keys: std::collections::HashSet<&str> =
        events.iter().map(|e| e.dedup_key.as_str()).collect();
    assert_eq!(keys.len(), 3, "each element its own dedup key");
    // The same message again gives the same keys (a redelivery is a duplicate).
    let again = ok(
        "v1/gateway/telemetry",
        r#"{"Tram mua 2":[{"ts":1795396200000,"values":{"rain":1.5,"battery":"88"}},{"ts":1795396500000,"values":{"rain":2.0,"battery":"87,5"}}],"Muc nuoc Nam De":[{"ts":1795396500000,"values":{"water_level":184,"status":"ok"}}]}"#,
    );
    assert!(again.iter().all(|e| keys.contains(e.dedup_key.as_str())));
    // A flat object in place of the array, without ts.
    let e = one("v1/gateway/telemetry", r#"{"Tram mua 2":{"rain":3}}"#);
    assert_eq!((num(&e, "rain_mm"), e.ts), (3.0, now()));
    // A device the registry does not know is flagged.
    let r = dead(
        "v1/gateway/telemetry",
        r#"{"Device C":[{"ts":1795396500000,"values":{"temperature":22}}]}"#,
    );
    assert_eq!(
        (r.reason, r.device.as_deref()),
        (Reason::UnknownDevice, Some("Device C"))
    );
    assert_eq!(
        one(
            "v1/gateway/connect",
            r#"{"device":"Tram mua 2","type":"rain"}"#
        )
        .attr_str("state"),
        Some("online")
    );
    let e = one("v1/gateway/disconnect", r#"{"device":"Tram mua 2"}"#);
    assert_eq!(
        (e.device.as_deref(), e.attr_str("state")),
        (Some("rain-02"), Some("offline"))
    );
    let r = dead("v1/gateway/connect", r#"{"type":"rain"}"#);
    assert!(
        r.detail.contains("tbgw/connect") && r.detail.contains("`device`"),
        "{}",
        r.detail
    );
}

#[test]
fn thingsboard_device_flat_ts_values_and_arrays() {
    let e = one("v1/devices/me/telemetry", r#"{"temperature":25}"#);
    assert_eq!(
        (e.device.as_deref(), num(&e, "temperature_c"), e.ts),
        (Some("water-01"), 25.0, now())
    );
    let e = one(
        "v1/devices/me/telemetry",
        r#"{"ts":1795396502512,"values":{"stringKey":"value1","booleanKey":true,"doubleKey":42.0,"longKey":73,"jsonKey":{"someNumber":42}}}"#,
    );
    assert_eq!(e.ts, utc("2026-11-23T01:15:02.512Z"));
    assert_eq!(
        (
            num(&e, "booleanKey"),
            num(&e, "doubleKey"),
            num(&e, "longKey")
        ),
        (1.0, 42.0, 73.0)
    );
    assert!(
        e.attrs.get("jsonKey").is_none()
            && e.attrs.get("stringKey").is_none()
            && e.attrs.get("ts").is_none()
    );
    let events = ok(
        "v1/devices/me/telemetry",
        r#"[{"ts":1795396500000,"values":{"water_level":"183,5"}},{"ts":1795396501000,"values":{"water_level":184}}]"#,
    );
    assert_eq!(
        events
            .iter()
            .map(|e| num(e, "water_level_cm"))
            .collect::<Vec<_>>(),
        vec![183.5, 184.0]
    );
    // Array of flat objects without ts: an element with no number is skipped.
    let events = ok(
        "v1/devices/me/telemetry",
        r#"[{"key1":"value1"}, {"key2":true}]"#,
    );
    assert_eq!(events.len(), 1);
    assert_eq!(num(&events[0], "key2"), 1.0);
    let r = dead("v1/devices/me/telemetry", r#"[{"key1":"value1"}]"#);
    assert_eq!(r.reason, Reason::MissingField);
    // What bash makes of the docs' unquoted command line.
    let r = dead("v1/devices/me/telemetry", "{temperature:25}");
    assert_eq!(r.reason, Reason::InvalidJson);
    assert!(r.detail.contains("tblog/telemetry"), "{}", r.detail);
}

#[test]
fn a_null_time_is_the_receive_time_and_an_old_one_is_refused() {
    let e = one(
        "zigbee2mqtt/0x00158d00045a1b2c",
        r#"{"temperature":21,"last_seen":null}"#,
    );
    assert_eq!(e.ts, now());
    let r = dead(
        "zigbee2mqtt/0x00158d00045a1b2c",
        r#"{"temperature":21,"last_seen":"2019-01-01T00:00:00Z"}"#,
    );
    assert_eq!(r.reason, Reason::TimestampTooOld);
    assert!(r.detail.starts_with("rule z2m/telemetry"), "{}", r.detail);
}

#[test]
fn topics_no_rule_takes_stay_unknown_and_native_topics_stay_native() {
    let d = decoder();
    assert!(d
        .decode_mapped(&raw("zigbee2mqtt/bridge/state", "online"))
        .is_none());
    let single = |decoded: crate::sources::Decoded| match decoded {
        crate::sources::Decoded::One(r) => r,
        crate::sources::Decoded::Many(_) => panic!("expected one result"),
    };
    let r = single(d.decode(&raw("zigbee2mqtt/bridge/state", "online"))).unwrap_err();
    assert_eq!(r.reason, Reason::UnknownTopic);
    assert!(d
        .decode_mapped(&raw(
            "ioc/binh-lu/sensor/rain-02/telemetry",
            r#"{"rain_mm":1}"#
        ))
        .is_none());
    let e = single(d.decode(&raw("tele/nha-van-hoa/LWT", "Online"))).unwrap();
    assert_eq!(e.attr_str("state"), Some("online"));
    for f in [
        "zigbee2mqtt/+",
        "tele/+/SENSOR",
        "+/status/temperature:0",
        "+/sensor/+/state",
        "v1/gateway/telemetry",
        "v1/devices/me/telemetry",
    ] {
        assert!(d.topic_filters().iter().any(|x| x == f), "{f}");
    }
}

#[test]
fn a_split_message_keeps_its_good_items_and_dead_letters_the_bad_one_with_its_own_bytes() {
    let out = run(
        "v1/gateway/telemetry",
        r#"{"Tram mua 2":[{"ts":1795396200000,"values":{"rain":1.5}}],"Device C":[{"ts":1795396500000,"values":{"temperature":22}}],"Muc nuoc Nam De":[{"ts":"hôm qua","values":{"water_level":184}}]}"#,
    );
    let crate::sources::Decoded::Many(parts) = out.decoded else {
        panic!("several items give several parts");
    };
    assert_eq!(parts.len(), 3);
    // Keys in order: Device C, Muc nuoc Nam De, Tram mua 2.
    let r = parts[0].result.as_ref().unwrap_err();
    assert_eq!(
        (r.reason, r.device.as_deref()),
        (Reason::UnknownDevice, Some("Device C"))
    );
    assert_eq!(
        parts[0].payload.as_deref(),
        Some(br#"{"ts":1795396500000,"values":{"temperature":22}}"#.as_slice()),
        "the dead letter keeps the item's own bytes"
    );
    let r = parts[1].result.as_ref().unwrap_err();
    assert_eq!(r.reason, Reason::InvalidTimestamp);
    assert!(
        r.detail.contains("tbgw/gateway")
            && r.detail.contains("\"Muc nuoc Nam De\"[0]")
            && r.detail.contains("hôm qua"),
        "{}",
        r.detail
    );
    let e = parts[2].result.as_ref().unwrap();
    assert_eq!(
        (e.device.as_deref(), e.attr_f64("rain_mm")),
        (Some("rain-02"), Some(1.5))
    );
    assert!(parts[2].payload.is_some());
    // The decoder gives the same parts (the pipeline commits the good one
    // and keeps each bad one as its own dead letter).
    let d = decoder().decode(&raw(
        "v1/gateway/telemetry",
        r#"{"Tram mua 2":[{"ts":1795396200000,"values":{"rain":1.5}}],"Device C":[{"ts":1795396500000,"values":{"temperature":22}}]}"#,
    ));
    assert_eq!(d.len(), 2);
}
