//! End to end through a real Mosquitto: publish with a real client, read the
//! indicators, devices and dead letters back over HTTP from the real binary.

mod kit;

use std::time::Duration;

use chrono::{Duration as ChronoDuration, Utc};
use kit::{dossier_received, test_config, Backend, Mosquitto, Publisher, DOSSIER};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn online_ratio_is_exact_per_commune_and_village() {
    let (broker, _dir, b) = kit::stack().await;
    let mut p = Publisher::new(broker.port);
    for i in 0..80 {
        let village = if i < 50 { "tan-binh" } else { "hung-binh" };
        p.send(
            DOSSIER,
            &dossier_received(&format!("on-{i}"), "online", Some(village)),
        )
        .await;
    }
    for i in 0..20 {
        p.send(
            DOSSIER,
            &dossier_received(&format!("di-{i}"), "direct", Some("na-da")),
        )
        .await;
    }
    let v = b
        .wait_value("dossiers_received", "month", "commune", 100.0)
        .await;
    assert_eq!(v["status"], "met");

    for window in ["today", "24h", "month"] {
        let r = b.indicator("dossier_online_ratio", window, "commune").await;
        assert_eq!(r["value"], json!(80.0), "{window}: {r}");
        assert_eq!(r["numerator"], json!(80.0));
        assert_eq!(r["denominator"], json!(100.0));
        assert_eq!(r["status"], "not_met", "80 % misses the > 90 % target");
        assert_eq!(r["unit"], "%");
        assert_eq!(r["target"], json!({"op": ">", "value": 90.0}));
        assert_eq!(r["scope"], "commune");
        assert_eq!(r["window"], window);
        let d = b.indicator("dossier_direct_ratio", window, "commune").await;
        assert_eq!(d["value"], json!(20.0));
        assert_eq!(d["status"], "not_met", "20 % is not below 20 %");
    }
    let month = b
        .indicator("dossier_online_ratio", "month", "commune")
        .await;
    assert!(
        month["period"].as_str().is_some_and(|p| p.len() == 7),
        "{month}"
    );

    let tan = b
        .indicator("dossier_online_ratio", "month", "tan-binh")
        .await;
    assert_eq!(
        (tan["value"].clone(), tan["status"].clone()),
        (json!(100.0), json!("met"))
    );
    assert_eq!(tan["denominator"], json!(50.0));
    let na = b.indicator("dossier_online_ratio", "month", "na-da").await;
    assert_eq!(
        (na["value"].clone(), na["status"].clone()),
        (json!(0.0), json!("not_met"))
    );

    // Every scope at once.
    let all = b.get("/api/indicators?window=today&village=all").await;
    let scopes: std::collections::BTreeSet<String> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["scope"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        scopes.into_iter().collect::<Vec<_>>(),
        ["commune", "hung-binh", "na-da", "tan-binh"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_count_once() {
    let (broker, _dir, b) = kit::stack().await;
    let mut p = Publisher::new(broker.port);
    for i in 0..10 {
        p.send(
            DOSSIER,
            &dossier_received(&format!("d-{i}"), "online", None),
        )
        .await;
    }
    // The same dossier event again (a re-sent message, even with another
    // timestamp), and a byte-identical camera event with the same seq.
    for i in 0..4 {
        p.send(
            DOSSIER,
            &dossier_received(&format!("d-{i}"), "online", None),
        )
        .await;
    }
    let cam = json!({"ts": Utc::now().to_rfc3339(), "seq": 7, "kind": "detection", "label": "person", "count": 3});
    for _ in 0..3 {
        p.send(
            "ioc/binh-lu/camera/cam-01/event",
            cam.to_string().as_bytes(),
        )
        .await;
    }
    b.wait_for("duplicates counted", WAIT, || async {
        b.metric("ioc_duplicates_total").await >= 6.0
    })
    .await;
    assert_eq!(
        b.indicator("dossiers_received", "month", "commune").await["value"],
        json!(10.0)
    );
    assert_eq!(
        b.indicator("people_detected", "month", "commune").await["value"],
        json!(3.0)
    );
    assert_eq!(b.metric("ioc_duplicates_total").await, 6.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_data_is_null_not_zero() {
    let (_broker, _dir, b) = kit::stack().await;
    for id in [
        "dossier_online_ratio",
        "dossier_on_time_ratio",
        "dossier_online_payment_ratio",
        "camera_online",
        "speaker_online",
        "rain_latest",
        "freshness_procedure",
    ] {
        let v = b.indicator(id, "month", "commune").await;
        assert_eq!(v["value"], Value::Null, "{id}: {v}");
        assert_eq!(v["status"], "no_data", "{id}: {v}");
    }
    // A count of nothing is a real zero.
    let v = b.indicator("broadcast_sessions", "today", "commune").await;
    assert_eq!(v["value"], json!(0.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_becomes_dead_letters_and_the_flow_goes_on() {
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    // The payload limit comes from an environment override.
    let b = Backend::start_with_env(
        dir.path(),
        &test_config(broker.port, &dir.path().join("store")),
        &[("IOC__INGEST__MAX_PAYLOAD_BYTES", "2048")],
    );
    b.wait_ready().await;
    let mut p = Publisher::new(broker.port);
    let future = (Utc::now() + ChronoDuration::days(1)).to_rfc3339();
    let old = (Utc::now() - ChronoDuration::days(60)).to_rfc3339();
    let big = format!(
        "{{\"dossier_id\":\"big\",\"event\":\"received\",\"channel\":\"online\",\"pad\":\"{}\"}}",
        "x".repeat(5000)
    );
    let cases: Vec<(&str, &str, Vec<u8>)> = vec![
        ("invalid_json", DOSSIER, b"{not json".to_vec()),
        ("invalid_utf8", DOSSIER, vec![0xff, 0xfe, 0x00]),
        (
            "invalid_field",
            "ioc/binh-lu/camera/cam-01/event",
            br#"{"kind":"count","count":"three"}"#.to_vec(),
        ),
        (
            "missing_field",
            DOSSIER,
            br#"{"event":"received","channel":"online"}"#.to_vec(),
        ),
        (
            "unknown_device",
            "ioc/binh-lu/camera/cam-99/event",
            br#"{"kind":"detection","label":"person"}"#.to_vec(),
        ),
        ("unknown_topic", "ioc/binh-lu/weather/now", b"{}".to_vec()),
        ("oversized", DOSSIER, big.into_bytes()),
        (
            "invalid_timestamp",
            DOSSIER,
            br#"{"ts":"yesterday","dossier_id":"t1","event":"received","channel":"online"}"#
                .to_vec(),
        ),
        (
            "timestamp_in_future",
            DOSSIER,
            json!({"ts": future, "dossier_id": "t2", "event": "received", "channel": "online"})
                .to_string()
                .into_bytes(),
        ),
        (
            "timestamp_too_old",
            DOSSIER,
            json!({"ts": old, "dossier_id": "t3", "event": "received", "channel": "online"})
                .to_string()
                .into_bytes(),
        ),
    ];
    for (_, topic, payload) in &cases {
        p.send(topic, payload).await;
    }
    // The flow goes on: a good message after the bad ones is counted.
    p.send(DOSSIER, &dossier_received("good-1", "online", None))
        .await;
    b.wait_value("dossiers_received", "month", "commune", 1.0)
        .await;
    let dl = b
        .wait_value("dead_letters", "today", "commune", cases.len() as f64)
        .await;
    assert_eq!(dl["status"], "not_met", "target is == 0");

    let body = b.get("/api/dead-letters?limit=100").await;
    for (reason, topic, payload) in &cases {
        assert_eq!(
            body["counts"][reason],
            json!(1),
            "{reason}: {}",
            body["counts"]
        );
        let item = body["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["reason"] == *reason)
            .unwrap_or_else(|| panic!("no item for {reason}"));
        assert_eq!(item["topic"], *topic);
        assert_eq!(item["size"], json!(payload.len()));
        assert!(!item["detail"].as_str().unwrap().is_empty());
        assert!(
            item["excerpt"].as_str().unwrap().chars().count() <= 257,
            "excerpt is bounded"
        );
    }
    let filtered = b.get("/api/dead-letters?reason=oversized").await;
    assert_eq!(filtered["items"].as_array().unwrap().len(), 1);
    let (status, err) = b.get_status("/api/dead-letters?reason=nope").await;
    assert_eq!(status, 400);
    assert_eq!(err["error"]["code"], "invalid_reason");

    // Counted per reason in the metrics.
    assert_eq!(b.metric("ioc_dead_letters_total").await, cases.len() as f64);
    // The unknown device is recorded and flagged.
    let devices = b.get("/api/devices").await;
    let unknown = devices
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == "cam-99")
        .expect("unknown device listed");
    assert_eq!(unknown["registered"], false);
    assert!(unknown["last_seen"].is_string());
    // Still healthy.
    assert_eq!(b.get_status("/readyz").await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_status_drives_availability() {
    let (broker, _dir, b) = kit::stack().await;
    let mut p = Publisher::new(broker.port);
    p.send_opts("ioc/binh-lu/camera/cam-01/status", b"online", true)
        .await;
    p.send_opts("ioc/binh-lu/camera/cam-02/status", b"online", true)
        .await;
    p.send_opts(
        "ioc/binh-lu/camera/cam-03/status",
        r#"{"state":"fault","detail":"mất nguồn"}"#.as_bytes(),
        true,
    )
    .await;
    p.send_opts("ioc/binh-lu/speaker/spk-01/status", b"online", true)
        .await;

    let cams = b
        .wait_value("camera_online", "today", "commune", 50.0)
        .await;
    assert_eq!(
        (cams["numerator"].clone(), cams["denominator"].clone()),
        (json!(2.0), json!(4.0))
    );
    assert_eq!(cams["status"], "not_met");
    // The FE radio station does not count: 1 of 2 smart clusters.
    let spk = b.indicator("speaker_online", "today", "commune").await;
    assert_eq!(
        (spk["value"].clone(), spk["denominator"].clone()),
        (json!(50.0), json!(2.0))
    );
    let na = b.indicator("camera_online", "today", "na-da").await;
    assert_eq!(na["value"], json!(0.0));

    p.send_opts("ioc/binh-lu/camera/cam-01/status", b"offline", true)
        .await;
    b.wait_value("camera_online", "today", "commune", 25.0)
        .await;

    let devices = b.get("/api/devices").await;
    let cam3 = devices
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == "cam-03")
        .unwrap();
    assert_eq!(cam3["state"], "fault");
    assert_eq!(cam3["detail"], "mất nguồn");
    let spk3 = devices
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == "spk-03")
        .unwrap();
    assert_eq!(spk3["reporting"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frigate_objects_count_once_and_procedures_derive_outcomes() {
    let (broker, _dir, b) = kit::stack().await;
    let mut p = Publisher::new(broker.port);
    let now = Utc::now().timestamp_millis() as f64 / 1000.0;
    let frigate = |kind: &str, id: &str, label: &str, sub: Value, t: f64| {
        json!({"type": kind, "before": {"id": id, "camera": "cong_ubnd", "label": label},
               "after": {"id": id, "camera": "cong_ubnd", "label": label, "sub_label": sub,
                         "frame_time": t, "start_time": now, "top_score": 0.87, "false_positive": false,
                         "current_zones": ["cong"], "has_snapshot": true, "unknown_future_key": {"x": 1}}})
        .to_string()
        .into_bytes()
    };
    p.send(
        "frigate/events",
        &frigate("new", "1.1-a", "person", Value::Null, now),
    )
    .await;
    p.send(
        "frigate/events",
        &frigate("new", "1.1-a", "person", Value::Null, now),
    )
    .await;
    p.send(
        "frigate/events",
        &frigate("update", "1.1-a", "person", json!(["Nam", 0.92]), now + 1.0),
    )
    .await;
    p.send(
        "frigate/events",
        &frigate("end", "1.1-a", "person", json!(["Nam", 0.92]), now + 2.0),
    )
    .await;
    p.send(
        "frigate/events",
        &frigate("new", "1.2-b", "person", json!("Lan"), now),
    )
    .await;
    p.send(
        "frigate/events",
        &frigate("new", "1.3-c", "car", Value::Null, now),
    )
    .await;
    p.send("frigate/available", b"online").await;
    p.send(
        "frigate/reviews",
        json!({"type": "new", "before": {}, "after": {"id": "r1", "camera": "cong_ubnd", "start_time": now,
               "severity": "alert", "data": {"objects": ["person"], "detections": ["1.1-a"]}}})
        .to_string()
        .as_bytes(),
    )
    .await;
    b.wait_value("people_detected", "today", "commune", 2.0)
        .await;
    b.wait_value("people_detected", "today", "tan-binh", 2.0)
        .await;

    let ts = Utc::now();
    let resolved = |id: &str, extra: Value| {
        let mut v = json!({"ts": ts.to_rfc3339(), "dossier_id": id, "event": "resolved"});
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        v.to_string().into_bytes()
    };
    p.send(DOSSIER, &resolved("r-1", json!({"outcome": "early"})))
        .await;
    p.send(DOSSIER, &resolved("r-2", json!({"outcome": "on_time"})))
        .await;
    p.send(DOSSIER, &resolved("r-3", json!({"outcome": "late"})))
        .await;
    p.send(
        DOSSIER,
        &resolved(
            "r-4",
            json!({"due": (ts - ChronoDuration::days(2)).to_rfc3339()}),
        ),
    )
    .await;
    p.send(
        DOSSIER,
        &resolved(
            "r-5",
            json!({"due": (ts + ChronoDuration::days(2)).to_rfc3339()}),
        ),
    )
    .await;
    let r = b
        .wait_value("dossier_on_time_ratio", "month", "commune", 60.0)
        .await;
    assert_eq!(
        (r["numerator"].clone(), r["denominator"].clone()),
        (json!(3.0), json!(5.0))
    );
    assert_eq!(r["status"], "not_met");

    for (i, pay) in ["online", "online", "online", "cash"].iter().enumerate() {
        let m = json!({"dossier_id": format!("p-{i}"), "event": "paid", "payment": pay});
        p.send(DOSSIER, m.to_string().as_bytes()).await;
    }
    let pay = b
        .wait_value("dossier_online_payment_ratio", "month", "commune", 75.0)
        .await;
    assert_eq!(pay["status"], "met");
    // None of this was a dead letter.
    assert_eq!(b.get("/api/dead-letters").await["counts"], json!({}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_survives_restart_and_history_answers_buckets() {
    let (broker, _dir, mut b) = kit::stack().await;
    let mut p = Publisher::new(broker.port);
    for i in 0..9 {
        p.send(
            DOSSIER,
            &dossier_received(&format!("h-{i}"), "online", Some("tan-binh")),
        )
        .await;
    }
    p.send(
        DOSSIER,
        &dossier_received("h-x", "postal", Some("tan-binh")),
    )
    .await;
    p.send(
        "ioc/binh-lu/sensor/rain-01/telemetry",
        br#"{"values":{"rain_mm":42.5}}"#,
    )
    .await;
    p.send("ioc/binh-lu/camera/cam-01/status", b"online").await;
    b.wait_value("dossier_online_ratio", "month", "commune", 90.0)
        .await;
    b.wait_value("rain_latest", "month", "na-da", 42.5).await;

    let status = b.stop();
    assert!(status.success(), "graceful stop exits 0, got {status}");
    b.restart();
    b.wait_ready().await;
    let r = b
        .indicator("dossier_online_ratio", "month", "commune")
        .await;
    assert_eq!(r["value"], json!(90.0), "restored from the journal: {r}");
    assert_eq!(r["status"], "not_met", "90 is not > 90");
    assert_eq!(
        b.indicator("rain_latest", "month", "na-da").await["value"],
        json!(42.5)
    );
    assert_eq!(
        b.indicator("camera_online", "month", "commune").await["numerator"],
        json!(1.0)
    );

    let hist = b
        .get("/api/indicators/dossier_online_ratio/history?step=1h")
        .await;
    let buckets = hist["buckets"].as_array().unwrap();
    assert_eq!(buckets.len(), 24, "{hist}");
    let total: f64 = buckets
        .iter()
        .map(|x| x["denominator"].as_f64().unwrap())
        .sum();
    assert_eq!(total, 10.0);
    let last = buckets
        .iter()
        .rev()
        .find(|x| x["denominator"] != json!(0.0))
        .unwrap();
    assert_eq!(last["value"], json!(90.0));
    assert!(
        buckets.iter().any(|x| x["value"].is_null()),
        "empty buckets have no value"
    );
    let per_village = b
        .get("/api/indicators/dossiers_received/history?step=1d&village=tan-binh")
        .await;
    let sum: f64 = per_village["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["value"].as_f64().unwrap())
        .sum();
    assert_eq!(sum, 10.0);

    for (path, status, code) in [
        ("/api/indicators/dossier_online_ratio/history?step=5x", 400, "invalid_step"),
        ("/api/indicators/nope/history", 404, "unknown_indicator"),
        ("/api/indicators/camera_online/history", 400, "history_unsupported"),
        ("/api/indicators/dossier_online_ratio/history?from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z", 400, "invalid_range"),
        ("/api/indicators?window=year", 400, "invalid_window"),
        ("/api/indicators?village=atlantis", 404, "unknown_village"),
        ("/api/dead-letters?limit=many", 400, "invalid_query"),
        ("/api/ws-typo", 404, "not_found"),
    ] {
        let (s, body) = b.get_status(path).await;
        assert_eq!(s, status, "{path}: {body}");
        assert_eq!(body["error"]["code"], code, "{path}: {body}");
        assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_broker_end_to_end() {
    let port = kit::free_port();
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(port, &dir.path().join("store")).replace(
        "[mqtt]\nhost = \"127.0.0.1\"",
        "[mqtt]\nembedded = true\nhost = \"127.0.0.1\"",
    );
    assert!(config.contains("embedded = true"));
    let b = Backend::start(dir.path(), &config);
    b.wait_ready().await;
    let mut p = Publisher::new(port);
    for i in 0..19 {
        p.send(
            DOSSIER,
            &dossier_received(&format!("e-{i}"), "online", Some("na-da")),
        )
        .await;
    }
    p.send(DOSSIER, &dossier_received("e-x", "direct", Some("na-da")))
        .await;
    let v = b
        .wait_value("dossier_online_ratio", "today", "na-da", 95.0)
        .await;
    assert_eq!(v["status"], "met");
}
