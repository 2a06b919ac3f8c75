//! Mapped sources end to end: a real Mosquitto, the real binary with the
//! shipped mappings (`include = "…"`), messages of the real shapes of
//! zigbee2mqtt, Tasmota, Shelly gen2, ESPHome and ThingsBoard (our own
//! values and names, the shapes and traps of the collected real messages),
//! read back from the journal, `/api/devices`, `/api/dead-letters` and the
//! indicators; and the `map` command.

mod kit;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use chrono_tz::Asia::Ho_Chi_Minh;
use kit::{Backend, Mosquitto, Publisher};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(20);

/// Sensors and mapped sources appended to the standard test commune.
const MAPPED: &str = r#"
[[sensor]]
id = "leak-01"
village = "tan-binh"
kind = "water_leak"
[[sensor]]
id = "temp-02"
village = "hung-binh"
kind = "temperature"
[[sensor]]
id = "ht-01"
village = "na-da"
kind = "temperature"
[[sensor]]
id = "esp-01"
village = "na-da"
kind = "rain"
[[sensor]]
id = "rain-02"
village = "tan-binh"
kind = "rain"
[[sensor]]
id = "water-02"
village = "hung-binh"
kind = "water_level"
[[sensor]]
id = "logger-01"
kind = "water_level"

[[mapped]]
id = "z2m"
include = "zigbee2mqtt"
[mapped.devices]
"Cảm biến nước Bếp" = "leak-01"

[[mapped]]
id = "tasmota"
include = "tasmota"
[mapped.devices]
"nha-van-hoa" = "temp-02"
"ble-gw" = "temp-02"

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
"Muc nuoc Nam De" = "water-02"

[[mapped]]
id = "tblog"
include = "thingsboard-device"
device = "logger-01"
"#;

async fn stack() -> (Mosquitto, tempfile::TempDir, Backend) {
    kit::stack_with(MAPPED, &[]).await
}

/// One journaled event.
#[derive(Debug)]
struct Row {
    kind: String,
    device: Option<String>,
    ts: DateTime<Utc>,
    attrs: Value,
}

/// The events journaled from `topic`, in journal order.
fn events(dir: &Path, topic: &str) -> Vec<Row> {
    let path = dir.join("store").join("journal.db");
    let Ok(conn) =
        rusqlite::Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
    else {
        return Vec::new();
    };
    let Ok(mut st) =
        conn.prepare("SELECT kind, device, ts, attrs FROM events WHERE topic = ?1 ORDER BY id")
    else {
        return Vec::new();
    };
    st.query_map([topic], |r| {
        Ok(Row {
            kind: r.get(0)?,
            device: r.get(1)?,
            ts: DateTime::from_timestamp_millis(r.get(2)?).unwrap_or_default(),
            attrs: serde_json::from_str(&r.get::<_, String>(3)?).unwrap_or(Value::Null),
        })
    })
    .map(|rows| rows.flatten().collect())
    .unwrap_or_default()
}

/// Wait until `topic` has at least `n` events; returns them.
async fn wait_events(b: &Backend, dir: &Path, topic: &str, n: usize) -> Vec<Row> {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let rows = events(dir, topic);
        if rows.len() >= n {
            return rows;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {n} events on {topic} (have {rows:?}); log:\n{}",
            b.log_text()
        );
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
}

/// Wait until a dead letter on `topic` exists; returns it.
async fn wait_dead(b: &Backend, topic: &str) -> Value {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let all = b.get("/api/dead-letters?limit=500").await;
        if let Some(d) = all["items"]
            .as_array()
            .and_then(|a| a.iter().find(|d| d["topic"] == topic))
        {
            return d.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for a dead letter on {topic}: {all}; log:\n{}",
            b.log_text()
        );
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
}

async fn dead_count(b: &Backend, topic: &str) -> usize {
    let all = b.get("/api/dead-letters?limit=500").await;
    all["items"]
        .as_array()
        .map(|a| a.iter().filter(|d| d["topic"] == topic).count())
        .unwrap_or(0)
}

/// Wait until `/api/devices` shows `id` with `state`.
async fn wait_state(b: &Backend, id: &str, state: &str) -> Value {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let all = b.get("/api/devices").await;
        let dev = all
            .as_array()
            .or_else(|| all["items"].as_array())
            .and_then(|a| a.iter().find(|d| d["id"] == id))
            .cloned();
        if let Some(d) = dev.as_ref().filter(|d| d["state"] == state) {
            return d.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {id} to be {state}: {dev:?}; log:\n{}",
            b.log_text()
        );
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
}

fn num(r: &Row, k: &str) -> f64 {
    r.attrs[k]
        .as_f64()
        .unwrap_or_else(|| panic!("no `{k}` in {}", r.attrs))
}

/// `t` as local time in Vietnam without an offset, as Tasmota writes it.
fn local(t: DateTime<Utc>) -> String {
    t.with_timezone(&Ho_Chi_Minh)
        .format("%Y-%m-%dT%H:%M:%S")
        .to_string()
}

fn whole_seconds(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(t.timestamp(), 0).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zigbee2mqtt_strings_names_sub_topics_unknown_devices_availability_and_clears() {
    let (broker, dir, b) = stack().await;
    let mut p = Publisher::new(broker.port);
    let name = "zigbee2mqtt/Cảm biến nước Bếp";
    // A device's sub-topic (not subscribed: `{device}` is one level) goes
    // first; everything after it is delivered in order.
    p.send(&format!("{name}/duration"), br#"{"light":10,"siren":2}"#)
        .await;
    let seen = (Utc::now() - ChronoDuration::seconds(30)).with_timezone(&Ho_Chi_Minh);
    let payload = json!({
        "battery": "80.00", "voltage": 2900, "linkquality": 0, "temperature": 27.35,
        "water_leak": true, "power_outage": null,
        "last_seen": seen.to_rfc3339_opts(chrono::SecondsFormat::Millis, false),
    });
    p.send(name, payload.to_string().as_bytes()).await;
    let rows = wait_events(&b, dir.path(), name, 1).await;
    let e = &rows[0];
    assert_eq!(
        (e.kind.as_str(), e.device.as_deref()),
        ("telemetry", Some("leak-01"))
    );
    assert_eq!(num(e, "battery_pct"), 80.0, "\"80.00\" is 80");
    assert_eq!(num(e, "temperature_c"), 27.35);
    assert_eq!(num(e, "water_leak"), 1.0);
    assert_eq!(e.attrs["via"], "z2m/telemetry");
    assert_eq!(
        e.ts.timestamp_millis(),
        seen.timestamp_millis(),
        "last_seen is the event time"
    );

    p.send(&format!("{name}/availability"), br#"{"state":"online"}"#)
        .await;
    wait_state(&b, "leak-01", "online").await;
    p.send(&format!("{name}/availability"), b"offline").await;
    wait_state(&b, "leak-01", "offline").await;

    // An unknown device is flagged with the name it sent.
    p.send(
        "zigbee2mqtt/Còi báo động",
        br#"{"battery":100,"linkquality":160}"#,
    )
    .await;
    let d = wait_dead(&b, "zigbee2mqtt/Còi báo động").await;
    assert_eq!(d["reason"], "unknown_device");
    assert_eq!(d["device"], "Còi báo động");
    assert!(
        d["detail"].as_str().unwrap().contains("z2m/telemetry"),
        "{d}"
    );
    let devices = b.get("/api/devices").await;
    let listed = devices
        .as_array()
        .or_else(|| devices["items"].as_array())
        .and_then(|a| a.iter().find(|x| x["id"] == "Còi báo động").cloned())
        .unwrap_or_else(|| panic!("the unknown device is not listed: {devices}"));
    assert_eq!(listed["registered"], false);

    // A value that does not fit names the rule and the field.
    p.send(name, br#"{"state":"TOGGLE","linkquality":20}"#)
        .await;
    let bad = wait_dead(&b, name).await;
    assert_eq!(bad["reason"], "invalid_field");
    let detail = bad["detail"].as_str().unwrap();
    assert!(
        detail.contains("z2m/telemetry") && detail.contains("`state`"),
        "{detail}"
    );

    // An empty retained message clears the device's retained state: a
    // `cleared` event, not a dead letter.
    p.send_opts(name, br#"{"battery":79,"linkquality":12}"#, true)
        .await;
    wait_events(&b, dir.path(), name, 2).await;
    p.send_opts(name, b"", true).await;
    let rows = wait_events(&b, dir.path(), name, 3).await;
    let clear = rows.last().unwrap();
    assert_eq!(
        (clear.kind.as_str(), clear.device.as_deref()),
        ("cleared", None)
    );
    assert_eq!(clear.attrs["device_id"], "Cảm biến nước Bếp");
    assert_eq!(
        dead_count(&b, name).await,
        1,
        "only the TOGGLE message is a dead letter"
    );

    assert!(events(dir.path(), &format!("{name}/duration")).is_empty());
    assert_eq!(dead_count(&b, &format!("{name}/duration")).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasmota_local_time_decimal_commas_lwt_and_what_does_not_fit() {
    let (broker, dir, b) = stack().await;
    let mut p = Publisher::new(broker.port);
    let t = whole_seconds(Utc::now() - ChronoDuration::seconds(90));
    let sensor = format!(
        r#"{{"Time":"{}","AM2301":{{"Temperature":24.6,"Humidity":"58,2"}},"ESP32":{{"Temperature":41.5}},"TempUnit":"C"}}"#,
        local(t)
    );
    p.send("tele/nha-van-hoa/SENSOR", sensor.as_bytes()).await;
    let e = &wait_events(&b, dir.path(), "tele/nha-van-hoa/SENSOR", 1).await[0];
    assert_eq!(e.device.as_deref(), Some("temp-02"));
    assert_eq!(
        e.ts, t,
        "Time without offset is Asia/Ho_Chi_Minh local time"
    );
    assert_eq!(num(e, "temperature_c"), 24.6, "the sensor, not the chip");
    assert_eq!(num(e, "chip_temperature_c"), 41.5);
    assert_eq!(num(e, "humidity_pct"), 58.2, "decimal comma");

    let state = format!(
        r#"{{"Time":"{}","Uptime":"0T05:05:17","UptimeSec":18317,"Vcc":3.504,"POWER":"ON","Wifi":{{"AP":1,"SSId":"UBND-xa","RSSI":86,"Signal":-57}}}}"#,
        local(t)
    );
    p.send("tele/nha-van-hoa/STATE", state.as_bytes()).await;
    let e = &wait_events(&b, dir.path(), "tele/nha-van-hoa/STATE", 1).await[0];
    assert_eq!((num(e, "switch_on"), num(e, "signal_dbm")), (1.0, -57.0));

    p.send_opts("tele/nha-van-hoa/LWT", b"Online", true).await;
    wait_state(&b, "temp-02", "online").await;
    p.send_opts("tele/nha-van-hoa/LWT", b"Offline", true).await;
    wait_state(&b, "temp-02", "offline").await;

    // Two thermometers of one kind for the one reading: the rule and the
    // path are named, and the way out (`each`).
    let multi = format!(
        r#"{{"Time":"{}","LYWSD03-52680f":{{"Temperature":21.1,"Humidity":58.0}},"LYWSD02-a2fd09":{{"Temperature":21.4,"Humidity":57.0}},"TempUnit":"C"}}"#,
        local(t)
    );
    p.send("tele/ble-gw/SENSOR", multi.as_bytes()).await;
    let d = wait_dead(&b, "tele/ble-gw/SENSOR").await;
    let detail = d["detail"].as_str().unwrap();
    assert_eq!(d["reason"], "invalid_field");
    assert!(
        detail.contains("tasmota/sensor")
            && detail.contains("*.Temperature")
            && detail.contains("each"),
        "{detail}"
    );
    // JSON as the docs misprint it.
    p.send(
        "tele/nha-van-hoa/SENSOR",
        br#"{"Time":"2026-11-23T08:10:00","MCP230XX": "D0":0,"D1":0}}"#,
    )
    .await;
    let d = wait_dead(&b, "tele/nha-van-hoa/SENSOR").await;
    assert_eq!(d["reason"], "invalid_json");
    assert!(
        d["detail"].as_str().unwrap().contains("tasmota/sensor"),
        "{d}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shelly_components_deep_sleep_rpc_and_online() {
    let (broker, dir, b) = stack().await;
    let mut p = Publisher::new(broker.port);
    let dev = "shellyplusht-a0b1c2d3e4f5";
    p.send(
        &format!("{dev}/status/temperature:0"),
        br#"{"id":0,"tC":19.9,"tF":67.8}"#,
    )
    .await;
    let e = &wait_events(&b, dir.path(), &format!("{dev}/status/temperature:0"), 1).await[0];
    assert_eq!(
        (e.device.as_deref(), num(e, "temperature_c")),
        (Some("ht-01"), 19.9)
    );

    // After a deep-sleep wake `sys.time` is null; `params.ts` (seconds with
    // decimals) is the time, `src` the device.
    let woke = Utc::now() - ChronoDuration::seconds(5);
    let ts = woke.timestamp_millis() as f64 / 1000.0;
    let rpc = json!({
        "src": dev, "dst": format!("{dev}/events"), "method": "NotifyFullStatus",
        "params": {
            "ts": ts, "cloud": {"connected": false},
            "devicepower:0": {"id": 0, "battery": {"V": 6.1, "percent": 97}, "external": {"present": false}},
            "humidity:0": {"id": 0, "rh": 71.4},
            "sys": {"mac": "A0B1C2D3E4F5", "time": null, "unixtime": null, "uptime": 1,
                    "wakeup_reason": {"boot": "deepsleep_wake", "cause": "periodic"}},
            "temperature:0": {"id": 0, "tC": 16.2, "tF": 61.2},
            "wifi": {"sta_ip": "10.0.0.80", "status": "got ip", "rssi": -70}
        }
    });
    p.send(&format!("{dev}/events/rpc"), rpc.to_string().as_bytes())
        .await;
    let e = &wait_events(&b, dir.path(), &format!("{dev}/events/rpc"), 1).await[0];
    assert_eq!(e.device.as_deref(), Some("ht-01"));
    assert_eq!(e.ts.timestamp_millis(), (ts * 1000.0).round() as i64);
    assert_eq!(
        (
            num(e, "temperature_c"),
            num(e, "humidity_pct"),
            num(e, "battery_pct")
        ),
        (16.2, 71.4, 97.0)
    );

    p.send_opts(&format!("{dev}/online"), b"true", true).await;
    wait_state(&b, "ht-01", "online").await;
    p.send_opts(&format!("{dev}/online"), b"false", true).await;
    wait_state(&b, "ht-01", "offline").await;

    // A notification with none of the readings says so.
    let cloud = json!({"src": dev, "dst": "user_1", "method": "NotifyStatus",
                       "params": {"ts": ts, "cloud": {"connected": true}}});
    p.send(&format!("{dev}/events/rpc"), cloud.to_string().as_bytes())
        .await;
    let d = wait_dead(&b, &format!("{dev}/events/rpc")).await;
    assert_eq!(d["reason"], "missing_field");
    let detail = d["detail"].as_str().unwrap();
    assert!(
        detail.contains("shelly/rpc") && detail.contains("no reading"),
        "{detail}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn esphome_plain_states_feed_indicators_text_is_a_dead_letter_status_is_availability() {
    let (broker, dir, b) = stack().await;
    let mut p = Publisher::new(broker.port);
    p.send("tram-mua-ban/sensor/rain/state", b"0.105").await;
    let e = &wait_events(&b, dir.path(), "tram-mua-ban/sensor/rain/state", 1).await[0];
    assert_eq!(
        (e.device.as_deref(), num(e, "rain_mm")),
        (Some("esp-01"), 0.105)
    );
    // A mapped reading is a sensor reading like any other: the indicator
    // `rain_latest` (field rain_mm) shows it.
    b.wait_value("rain_latest", "today", "na-da", 0.105).await;
    p.send("tram-mua-ban/sensor/temperature/state", b"20").await;
    let e = &wait_events(&b, dir.path(), "tram-mua-ban/sensor/temperature/state", 1).await[0];
    assert_eq!(num(e, "temperature_c"), 20.0);
    p.send("tram-mua-ban/sensor/operation_mode/state", b"Normal")
        .await;
    let d = wait_dead(&b, "tram-mua-ban/sensor/operation_mode/state").await;
    assert_eq!(d["reason"], "invalid_field");
    assert!(
        d["detail"].as_str().unwrap().contains("esphome/sensor")
            && d["detail"].as_str().unwrap().contains("Normal"),
        "{d}"
    );
    p.send_opts("tram-mua-ban/status", b"online", true).await;
    wait_state(&b, "esp-01", "online").await;
    p.send_opts("tram-mua-ban/status", b"offline", true).await;
    wait_state(&b, "esp-01", "offline").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thingsboard_device_api_flat_and_ts_values_gateway_arrays_and_connect() {
    let (broker, dir, b) = stack().await;
    let mut p = Publisher::new(broker.port);
    let topic = "v1/devices/me/telemetry";
    p.send(topic, br#"{"water_level":"183,5","note":"ok"}"#)
        .await;
    let t = whole_seconds(Utc::now() - ChronoDuration::seconds(60));
    let ts_values = json!({"ts": t.timestamp_millis(), "values": {"water_level": 184, "pump_on": true, "jsonKey": {"n": 1}}});
    p.send(topic, ts_values.to_string().as_bytes()).await;
    let rows = wait_events(&b, dir.path(), topic, 2).await;
    assert_eq!(
        (rows[0].device.as_deref(), num(&rows[0], "water_level_cm")),
        (Some("logger-01"), 183.5)
    );
    assert!(rows[0].attrs.get("note").is_none());
    assert_eq!(
        (
            rows[1].ts,
            num(&rows[1], "water_level_cm"),
            num(&rows[1], "pump_on")
        ),
        (t, 184.0, 1.0)
    );
    // What bash makes of the docs' unquoted command line.
    p.send(topic, b"{temperature:25}").await;
    let d = wait_dead(&b, topic).await;
    assert_eq!(d["reason"], "invalid_json");
    assert!(
        d["detail"].as_str().unwrap().contains("tblog/telemetry"),
        "{d}"
    );

    p.send(
        "v1/gateway/connect",
        br#"{"device":"Tram mua 2","type":"rain"}"#,
    )
    .await;
    wait_state(&b, "rain-02", "online").await;
    p.send("v1/gateway/disconnect", br#"{"device":"Tram mua 2"}"#)
        .await;
    wait_state(&b, "rain-02", "offline").await;
    // Gateway telemetry: one event per device and element; the element of
    // a device the registry does not know is its own dead letter, flagged.
    let gw = json!({
        "Tram mua 2": [
            {"ts": t.timestamp_millis(), "values": {"rain": 1.5, "battery": "88"}},
            {"ts": t.timestamp_millis() + 30_000, "values": {"rain": 2.0, "battery": "87,5"}}
        ],
        "Muc nuoc Nam De": [{"ts": t.timestamp_millis(), "values": {"water_level": 184}}],
        "Device C": [{"ts": t.timestamp_millis(), "values": {"temperature": 22}}]
    });
    p.send("v1/gateway/telemetry", gw.to_string().as_bytes())
        .await;
    let rows = wait_events(&b, dir.path(), "v1/gateway/telemetry", 3).await;
    let got: Vec<(Option<&str>, DateTime<Utc>, f64)> = rows
        .iter()
        .map(|r| {
            let v = r.attrs["rain_mm"]
                .as_f64()
                .or(r.attrs["water_level_cm"].as_f64())
                .unwrap();
            (r.device.as_deref(), r.ts, v)
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (Some("water-02"), t, 184.0),
            (Some("rain-02"), t, 1.5),
            (Some("rain-02"), t + ChronoDuration::seconds(30), 2.0),
        ]
    );
    assert_eq!(num(&rows[2], "battery_pct"), 87.5);
    let d = wait_dead(&b, "v1/gateway/telemetry").await;
    assert_eq!(
        (d["reason"].as_str(), d["device"].as_str()),
        (Some("unknown_device"), Some("Device C"))
    );
    assert!(
        d["excerpt"].as_str().unwrap().contains("temperature"),
        "{d}"
    );
    // Redelivered (the same bytes): nothing new.
    p.send("v1/gateway/telemetry", gw.to_string().as_bytes())
        .await;
    let flat = json!({"Muc nuoc Nam De": {"water_level": 201}});
    p.send("v1/gateway/telemetry", flat.to_string().as_bytes())
        .await;
    let rows = wait_events(&b, dir.path(), "v1/gateway/telemetry", 4).await;
    assert_eq!(
        rows.len(),
        4,
        "the redelivered message added nothing: {rows:?}"
    );
    assert_eq!(dead_count(&b, "v1/gateway/telemetry").await, 1);
    let e = &rows[3];
    assert_eq!(
        (e.device.as_deref(), num(e, "water_level_cm")),
        (Some("water-02"), 201.0)
    );
}

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn map(config: &Path, topic: &str, payload: &Path, json: bool) -> (i32, String, String) {
    let mut cmd = Command::new(kit::backend::BINARY);
    cmd.arg("map")
        .arg("--config")
        .arg(config)
        .arg("--topic")
        .arg(topic)
        .arg("--payload")
        .arg(payload)
        .env_remove("IOC_CONFIG");
    if json {
        cmd.arg("--json");
    }
    let out = cmd.output().expect("run commune-ioc map");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn map_command_shows_events_readings_and_dead_letter_reasons() {
    let dir = tempfile::tempdir().unwrap();
    let config = write(
        dir.path(),
        "commune.toml",
        &format!(
            "{}\n{MAPPED}",
            kit::test_config(1883, &dir.path().join("store"))
        ),
    );
    let t = whole_seconds(Utc::now() - ChronoDuration::seconds(120));
    let sensor = write(
        dir.path(),
        "sensor.json",
        &format!(
            r#"{{"Time":"{}","ENERGY":{{"Total":1234.5,"Power":830,"Voltage":221,"Current":3.9}},"BME280":{{"Temperature":24.6,"Humidity":"58,2","Pressure":1004.5}}}}"#,
            local(t)
        ),
    );
    let (code, out, err) = map(&config, "tele/nha-van-hoa/SENSOR", &sensor, false);
    assert_eq!(code, 0, "{out}{err}");
    for want in [
        "Luật:      tasmota/sensor",
        "1 sự kiện",
        "thiết bị:   temp-02, thôn/bản hung-binh",
        &format!(
            "{}.000 giờ Việt Nam, lấy từ bản tin",
            t.with_timezone(&Ho_Chi_Minh).format("%d/%m/%Y %H:%M:%S")
        ),
        "energy_kwh = 1.234,5",
        "humidity_pct = 58,2",
        "temperature_c = 24,6",
    ] {
        assert!(out.contains(want), "missing `{want}` in:\n{out}");
    }
    // The same as JSON, events as the journal stores them.
    let (code, out, _) = map(&config, "tele/nha-van-hoa/SENSOR", &sensor, true);
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["rule"], "tasmota/sensor");
    assert_eq!(v["events"][0]["device"], "temp-02");
    assert_eq!(v["events"][0]["attrs"]["pressure_hpa"], json!(1004.5));
    assert_eq!(
        v["events"][0]["ts"]
            .as_str()
            .map(|s| s.parse::<DateTime<Utc>>().unwrap()),
        Some(t)
    );

    // A dead letter: the reason, the rule, the field; exit 3.
    let bad = write(
        dir.path(),
        "bad.json",
        r#"{"battery":"tám mươi","linkquality":3}"#,
    );
    let (code, out, _) = map(&config, "zigbee2mqtt/Cảm biến nước Bếp", &bad, false);
    assert_eq!(code, 3, "{out}");
    assert!(
        out.contains("bản tin lỗi (dead letter), mã invalid_field"),
        "{out}"
    );
    assert!(
        out.contains("lý do:      rule z2m/telemetry: field `battery`"),
        "{out}"
    );
    // An unknown device, and a topic no rule takes.
    let (code, out, _) = map(&config, "zigbee2mqtt/Cảm biến lạ", &bad, true);
    assert_eq!(code, 3);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["events"], json!([]));
    assert_eq!(v["dead_letters"][0]["reason"], "unknown_device");
    assert_eq!(v["dead_letters"][0]["device"], "Cảm biến lạ");
    // A gateway message: one event per device and element, and the item of
    // a device nobody registered as its own dead letter.
    let gw = write(
        dir.path(),
        "gateway.json",
        &json!({
            "Tram mua 2": [
                {"ts": t.timestamp_millis(), "values": {"rain": 1.5}},
                {"ts": t.timestamp_millis() + 60_000, "values": {"rain": "2,5"}}
            ],
            "Device C": [{"ts": t.timestamp_millis(), "values": {"temperature": 22}}]
        })
        .to_string(),
    );
    let (code, out, _) = map(&config, "v1/gateway/telemetry", &gw, false);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("2 sự kiện, 1 bản tin lỗi"), "{out}");
    assert!(
        out.contains("rain_mm = 2,5") && out.contains("thiết bị:   Device C (chưa đăng ký"),
        "{out}"
    );
    let (code, out, _) = map(
        &config,
        "zigbee2mqtt/Cảm biến nước Bếp/duration",
        &bad,
        false,
    );
    assert_eq!(code, 3);
    assert!(
        out.contains("unknown_topic") && out.contains("không có luật ánh xạ"),
        "{out}"
    );
    // Native topics go through their own decoders.
    let native = write(dir.path(), "native.json", r#"{"rain_mm":12.5}"#);
    let (code, out, _) = map(
        &config,
        "ioc/binh-lu/sensor/rain-01/telemetry",
        &native,
        false,
    );
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("rain_mm = 12,5") && out.contains("bộ giải mã gốc"),
        "{out}"
    );
}

#[test]
fn check_config_places_mapped_problems_and_lists_mapped_sources() {
    let dir = tempfile::tempdir().unwrap();
    let base = kit::test_config(1883, &dir.path().join("store"));
    let bad = write(
        dir.path(),
        "bad.toml",
        &format!(
            "{base}\n{}",
            r#"
[[mapped]]
id = "z2m"
include = "zigbe2mqtt"

[[mapped]]
id = "site"
zone = "Asia/Hanoi-ish"
[mapped.devices]
"Trạm lạ" = "rain-99"
[[mapped.rule]]
topic = "site/{node}/data"
[[mapped.rule.reading]]
path = "a..b"
metric = "Temperature"
"#
        ),
    );
    let out = Command::new(kit::backend::BINARY)
        .arg("check-config")
        .arg(&bad)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    let line_of = |needle: &str| {
        let text = std::fs::read_to_string(&bad).unwrap();
        text.lines().position(|l| l.contains(needle)).unwrap() + 1
    };
    for (key, line, words) in [
        (
            "mapped[z2m].include",
            line_of("zigbe2mqtt"),
            "zigbee2mqtt, tasmota",
        ),
        ("mapped[site].zone", line_of("Hanoi-ish"), "Asia/Hanoi-ish"),
        (
            "mapped[site].devices.Trạm lạ",
            line_of("rain-99"),
            "rain-99",
        ),
        (
            "mapped[site].rule[0].device",
            line_of("[[mapped.rule]]"),
            "{device}",
        ),
        (
            "mapped[site].rule[0].reading[0].path",
            line_of("a..b"),
            "a..b",
        ),
    ] {
        let hit = err
            .lines()
            .find(|l| l.contains(&format!("`{key}`")))
            .unwrap_or_else(|| panic!("no `{key}` in:\n{err}"));
        assert!(
            hit.contains(&format!("bad.toml:{line}:")),
            "`{key}` not placed at line {line}: {hit}"
        );
        assert!(hit.contains(words), "{hit}");
    }
    // A good one: the sources and their subscriptions, and the map command.
    let good = write(dir.path(), "good.toml", &format!("{base}\n{MAPPED}"));
    let out = Command::new(kit::backend::BINARY)
        .arg("check-config")
        .arg(&good)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("nguồn ánh xạ `z2m`: 2 luật, nghe zigbee2mqtt/+, zigbee2mqtt/+/availability"),
        "{text}"
    );
    assert!(text.contains("commune-ioc map --config"), "{text}");
}
