//! The time-series sink end to end: Mosquitto → the real binary → a real
//! VictoriaMetrics (Debian package `victoria-metrics`) over
//! `/api/v2/write`, read back through VictoriaMetrics' export API.
//!
//! VictoriaMetrics maps `measurement,tags field=value` to the series
//! `measurement_field{tags}` and stores timestamps in milliseconds.
//! With `INFLUXDB_URL`, `INFLUXDB_TOKEN` (and optionally `INFLUXDB_ORG`,
//! `INFLUXDB_BUCKET`) set, `cargo test --test influx -- --ignored` also runs
//! the round trip against a real InfluxDB 2.

mod kit;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::{SecondsFormat, Utc};
use kit::victoria::{Series, Victoria};
use kit::{test_config, Backend, Mosquitto, Publisher, DOSSIER};

/// The standard test config with an `[influx]` section (the URL comes from
/// the environment, as in the compose file).
fn influx_config(mqtt_port: u16, store: &std::path::Path, influx: &str) -> String {
    format!(
        "{}\n[influx]\norg = \"binh-lu\"\nbucket = \"ioc\"\nflush_interval_ms = 100\n{influx}\n",
        test_config(mqtt_port, store)
    )
}

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .expect("valid time")
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn dossier(id: &str, ts_ms: i64) -> Vec<u8> {
    serde_json::json!({
        "ts": rfc3339(ts_ms),
        "dossier_id": id,
        "event": "received",
        "channel": "online",
        "village": "tan-binh",
    })
    .to_string()
    .into_bytes()
}

fn find<'a>(series: &'a [Series], name: &str, labels: &[(&str, &str)]) -> Option<&'a Series> {
    series
        .iter()
        .find(|s| s.label("__name__") == name && labels.iter().all(|(k, v)| s.label(k) == *v))
}

/// Poll the export until `done` holds; panics with the last export.
async fn wait_export(
    vm: &Victoria,
    b: &Backend,
    selector: &str,
    what: &str,
    timeout: Duration,
    done: impl Fn(&[Series]) -> bool,
) -> Vec<Series> {
    let deadline = Instant::now() + timeout;
    loop {
        let s = vm.export(selector).await;
        if done(&s) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; export: {s:#?}\nbackend log:\n{}",
            b.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Samples of the dossier series, timestamp → how many times it is stored.
fn dossier_samples(series: &[Series]) -> BTreeMap<i64, usize> {
    let mut out = BTreeMap::new();
    for s in series
        .iter()
        .filter(|s| s.label("__name__") == "ioc_procedure_events")
    {
        for t in &s.timestamps {
            *out.entry(*t).or_insert(0) += 1;
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_reach_victoria_metrics_with_measurement_tags_fields_and_times() {
    let vm = Victoria::start();
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let token = "tok-7f3a-never-in-the-log";
    let b = Backend::start_with_env(
        dir.path(),
        &influx_config(
            broker.port,
            &dir.path().join("store"),
            "indicator_interval_secs = 1",
        ),
        &[
            ("IOC__INFLUX__URL", vm.url().as_str()),
            ("IOC__INFLUX__TOKEN", token),
        ],
    );
    b.wait_ready().await;

    let t = Utc::now().timestamp_millis() - 60_000;
    let mut p = Publisher::new(broker.port);
    p.send(DOSSIER, &dossier("HS-0001", t)).await;
    let camera = serde_json::json!({
        "ts": rfc3339(t + 1), "seq": 1, "kind": "count", "label": "person", "count": 3, "score": 0.5,
    });
    p.send(
        "ioc/binh-lu/camera/cam-01/event",
        camera.to_string().as_bytes(),
    )
    .await;
    let telemetry = serde_json::json!({
        "ts": rfc3339(t + 2), "seq": 7, "rain_mm": 12.5, "mực nước, trạm=1": 3.25,
    });
    p.send(
        "ioc/binh-lu/sensor/rain-01/telemetry",
        telemetry.to_string().as_bytes(),
    )
    .await;

    let all = wait_export(
        &vm,
        &b,
        r#"{__name__=~"ioc_.*"}"#,
        "the three events and an indicator snapshot",
        Duration::from_secs(30),
        |s| {
            find(s, "ioc_procedure_events", &[]).is_some()
                && find(s, "ioc_camera_count", &[]).is_some()
                && find(s, "ioc_sensor_rain_mm", &[]).is_some()
                && find(
                    s,
                    "ioc_indicator_value",
                    &[("indicator", "dossiers_received")],
                )
                .is_some_and(|x| x.values.last() == Some(&1.0))
        },
    )
    .await;

    // Measurement per producer family, tags commune/village/device/kind,
    // the event time as the timestamp.
    let d = find(&all, "ioc_procedure_events", &[]).expect("dossier series");
    assert_eq!(d.label("commune"), "binh-lu");
    assert_eq!(d.label("village"), "tan-binh");
    assert_eq!(d.label("kind"), "received");
    assert_eq!(d.label("device"), "", "a dossier has no device tag");
    assert_eq!(d.timestamps, vec![t]);
    assert_eq!(d.values, vec![1.0]);

    let c = find(&all, "ioc_camera_count", &[]).expect("camera count");
    assert_eq!(
        (c.label("device"), c.label("village"), c.label("kind")),
        ("cam-01", "tan-binh", "count")
    );
    assert_eq!(
        (c.timestamps.clone(), c.values.clone()),
        (vec![t + 1], vec![3.0])
    );
    let score = find(&all, "ioc_camera_score", &[]).expect("camera score");
    assert_eq!(score.values, vec![0.5]);
    // String fields: VictoriaMetrics stores them as 0 (InfluxDB keeps the
    // text); see docs/STORAGE.md.
    let label = find(&all, "ioc_camera_label", &[]).expect("string field series");
    assert_eq!(label.values, vec![0.0]);

    let r = find(&all, "ioc_sensor_rain_mm", &[]).expect("rain");
    assert_eq!(
        (r.label("device"), r.label("village"), r.label("kind")),
        ("rain-01", "na-da", "telemetry")
    );
    assert_eq!(
        (r.timestamps.clone(), r.values.clone()),
        (vec![t + 2], vec![12.5])
    );
    // A field key with Vietnamese letters, a space, a comma and an equals
    // sign survives the escaping.
    let odd = find(&all, "ioc_sensor_mực nước, trạm=1", &[]).unwrap_or_else(|| {
        panic!(
            "escaped field key missing; names: {:?}",
            all.iter().map(|s| s.label("__name__")).collect::<Vec<_>>()
        )
    });
    assert_eq!(odd.values, vec![3.25]);

    // Indicator snapshots: commune scope has no village tag; villages do.
    let ind = find(
        &all,
        "ioc_indicator_value",
        &[
            ("indicator", "dossiers_received"),
            ("window", "today"),
            ("village", ""),
        ],
    )
    .expect("indicator at commune scope");
    assert_eq!(ind.values.last(), Some(&1.0));
    assert_eq!(ind.label("commune"), "binh-lu");
    assert!(find(
        &all,
        "ioc_indicator_value",
        &[("indicator", "dossiers_received"), ("village", "tan-binh")],
    )
    .is_some());

    // Health and metrics.
    assert!(b.metric("ioc_influx_points_written_total").await >= 4.0);
    assert_eq!(b.metric("ioc_influx_points_dropped_total").await, 0.0);
    assert_eq!(b.metric("ioc_influx_up").await, 1.0);
    let (_, ready) = b.get_status("/readyz").await;
    assert_eq!(ready["influx"]["up"], true, "{ready}");
    assert!(
        !b.log_text().contains(token),
        "the token must never be logged"
    );

    // The Docker health check command.
    let health = |addr: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_commune-ioc"))
            .args(["healthcheck", "--addr", addr])
            .output()
            .expect("run healthcheck")
    };
    let addr = b.url.trim_start_matches("http://");
    assert!(health(addr).status.success());
    let closed = format!("127.0.0.1:{}", kit::free_port());
    let out = health(&closed);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("không kết nối được"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_and_restart_lose_nothing_and_duplicate_nothing() {
    let mut vm = Victoria::start();
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = influx_config(
        broker.port,
        &dir.path().join("store"),
        &format!(
            "url = \"{}\"\nindicator_interval_secs = 0\nbatch_max_points = 7",
            vm.url()
        ),
    );
    let mut b = Backend::start(dir.path(), &cfg);
    b.wait_ready().await;
    let mut p = Publisher::new(broker.port);
    let base = Utc::now().timestamp_millis() - 3_600_000;
    let ts = |i: i64| base + i * 1_000 + i % 7;
    let mut sent = 0i64;

    // Phase 1: the store is up.
    for i in 0..30 {
        p.send(DOSSIER, &dossier(&format!("HS-{i}"), ts(i))).await;
    }
    sent += 30;
    b.wait_for("30 points written", Duration::from_secs(30), || async {
        b.metric("ioc_influx_points_written_total").await >= 30.0
            && b.metric("ioc_influx_backlog_points").await == 0.0
    })
    .await;

    // Phase 2: the store goes down; events keep coming and are journaled.
    vm.stop();
    for i in sent..sent + 30 {
        p.send(DOSSIER, &dossier(&format!("HS-{i}"), ts(i))).await;
    }
    sent += 30;
    b.wait_value("dossiers_received", "24h", "commune", sent as f64)
        .await;
    b.wait_for("a failed write", Duration::from_secs(20), || async {
        b.metric("ioc_influx_write_errors_total").await >= 1.0
    })
    .await;

    // Phase 3: the backend crashes and restarts while the store is down.
    b.restart();
    b.wait_ready().await;
    for i in sent..sent + 20 {
        p.send(DOSSIER, &dossier(&format!("HS-{i}"), ts(i))).await;
    }
    sent += 20;
    b.wait_value("dossiers_received", "24h", "commune", sent as f64)
        .await;
    b.wait_for("the backlog", Duration::from_secs(20), || async {
        b.metric("ioc_influx_backlog_points").await == 50.0
    })
    .await;
    let (_, ready) = b.get_status("/readyz").await;
    assert_eq!(ready["influx"]["up"], false, "{ready}");
    assert_eq!(ready["influx"]["backlog_points"], 50, "{ready}");

    // Phase 4: the store returns (same data); the backlog is replayed.
    vm.spawn();
    let all = wait_export(
        &vm,
        &b,
        r#"{__name__="ioc_procedure_events"}"#,
        "every point",
        Duration::from_secs(60),
        |s| dossier_samples(s).values().sum::<usize>() >= sent as usize,
    )
    .await;
    b.wait_for("an empty backlog", Duration::from_secs(20), || async {
        b.metric("ioc_influx_backlog_points").await == 0.0
    })
    .await;
    assert_eq!(b.metric("ioc_influx_points_dropped_total").await, 0.0);
    // Count once nothing can be written any more: a stopped backend sends
    // no stray resend (instead of waiting a while and hoping).
    let status = b.stop();
    assert!(status.success(), "{status}");
    let all = {
        let again = vm.export(r#"{__name__="ioc_procedure_events"}"#).await;
        if again.is_empty() {
            all
        } else {
            again
        }
    };
    let samples = dossier_samples(&all);
    let want: Vec<i64> = (0..sent).map(ts).collect();
    assert_eq!(
        samples.keys().copied().collect::<Vec<_>>(),
        want,
        "every event time present"
    );
    let dup: Vec<_> = samples.iter().filter(|(_, n)| **n != 1).collect();
    assert!(dup.is_empty(), "points stored more than once: {dup:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_backlog_skips_the_oldest_points_and_counts_them() {
    // The store is down from the start (nothing listens on its port yet).
    let mut vm = Victoria::new();
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = influx_config(
        broker.port,
        &dir.path().join("store"),
        &format!(
            "url = \"{}\"\nindicator_interval_secs = 0\nbatch_max_points = 5\nmax_backlog_points = 10",
            vm.url()
        ),
    );
    let b = Backend::start(dir.path(), &cfg);
    b.wait_ready().await;
    let base = Utc::now().timestamp_millis() - 600_000;
    let mut p = Publisher::new(broker.port);
    for i in 0..25 {
        p.send(DOSSIER, &dossier(&format!("HS-{i}"), base + i * 1000))
            .await;
    }
    b.wait_value("dossiers_received", "24h", "commune", 25.0)
        .await;
    b.wait_for("15 dropped points", Duration::from_secs(20), || async {
        b.metric("ioc_influx_points_dropped_total").await == 15.0
    })
    .await;
    assert_eq!(b.metric("ioc_influx_backlog_points").await, 10.0);
    assert_eq!(b.metric("ioc_influx_backlog_limit_points").await, 10.0);
    assert!(
        b.log_text().contains("time-series backlog full"),
        "dropping is logged at error level"
    );

    vm.spawn();
    let all = wait_export(
        &vm,
        &b,
        r#"{__name__="ioc_procedure_events"}"#,
        "the 10 newest points",
        Duration::from_secs(30),
        |s| dossier_samples(s).len() >= 10,
    )
    .await;
    let want: Vec<i64> = (15..25).map(|i| base + i * 1000).collect();
    assert_eq!(
        dossier_samples(&all).keys().copied().collect::<Vec<_>>(),
        want
    );
}

#[test]
fn influx_config_is_checked_in_vietnamese_and_the_token_is_redacted() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("bad.toml");
    std::fs::write(
        &file,
        "[commune]\nid = \"binh-lu\"\nname = \"Xã Bình Lư\"\n[influx]\nurl = \"http://10.0.0.5:8086/influx\"\nbatch_max_points = 0\ntimeout_ms = 5\n",
    )
    .expect("write config");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_commune-ioc"))
        .arg("check-config")
        .arg(&file)
        .output()
        .expect("run check-config");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("`influx.url`: `http://10.0.0.5:8086/influx`: không được có đường dẫn"),
        "{err}"
    );
    assert!(
        err.contains("`influx.batch_max_points`: phải từ 1 trở lên"),
        "{err}"
    );
    assert!(err.contains("`influx.timeout_ms`: phải từ 100"), "{err}");

    std::fs::write(
        &file,
        "[commune]\nid = \"binh-lu\"\nname = \"Xã Bình Lư\"\n[influx]\nurl = \"localhost:8086\"\n",
    )
    .expect("write config");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_commune-ioc"))
        .arg("check-config")
        .arg(&file)
        .output()
        .expect("run check-config");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("`influx.url`: `localhost:8086`: chỉ hỗ trợ http:// hoặc https://"),
        "{err}"
    );

    let cfg = commune_ioc::config::load_str(
        "[commune]\nid = \"binh-lu\"\nname = \"Xã Bình Lư\"\n[influx]\nurl = \"http://127.0.0.1:8086\"\n",
        "test.toml",
        &[("IOC__INFLUX__TOKEN".into(), "123456789".into())],
    )
    .expect("valid config");
    assert_eq!(cfg.influx.token.as_deref(), Some("123456789"));
    let debug = format!("{cfg:?}");
    assert!(!debug.contains("123456789"), "{debug}");
    assert!(debug.contains("<redacted>"));
}

/// The same round trip against a real InfluxDB 2, read back with Flux over
/// plain HTTP (not through the influxdb2 crate, whose Flux parser panics on
/// empty values, influxdb2 #75). Needs `INFLUXDB_URL` and `INFLUXDB_TOKEN`;
/// run with `cargo test --test influx -- --ignored`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a real InfluxDB 2: set INFLUXDB_URL and INFLUXDB_TOKEN, run with --ignored"]
async fn influxdb2_round_trip() {
    let (Ok(url), Ok(token)) = (
        std::env::var("INFLUXDB_URL"),
        std::env::var("INFLUXDB_TOKEN"),
    ) else {
        panic!("set INFLUXDB_URL and INFLUXDB_TOKEN (and INFLUXDB_ORG, INFLUXDB_BUCKET) to run this test");
    };
    let org = std::env::var("INFLUXDB_ORG").unwrap_or_else(|_| "commune".into());
    let bucket = std::env::var("INFLUXDB_BUCKET").unwrap_or_else(|_| "ioc".into());
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = format!(
        "{}\n[influx]\nflush_interval_ms = 100\nindicator_interval_secs = 0\n",
        test_config(broker.port, &dir.path().join("store"))
    );
    let b = Backend::start_with_env(
        dir.path(),
        &cfg,
        &[
            ("IOC__INFLUX__URL", url.as_str()),
            ("IOC__INFLUX__TOKEN", token.as_str()),
            ("IOC__INFLUX__ORG", org.as_str()),
            ("IOC__INFLUX__BUCKET", bucket.as_str()),
        ],
    );
    b.wait_ready().await;
    let t = Utc::now().timestamp_millis() - 5_000;
    let id = format!("HS-{}", kit::free_port());
    let mut p = Publisher::new(broker.port);
    p.send(DOSSIER, &dossier(&id, t)).await;
    let flux = format!(
        r#"from(bucket: "{bucket}") |> range(start: -1h) |> filter(fn: (r) => r._measurement == "ioc_procedure" and r._field == "dossier_id" and r._value == "{id}")"#
    );
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let csv = client
            .post(format!("{url}/api/v2/query"))
            .query(&[("org", org.as_str())])
            .header("Authorization", format!("Token {token}"))
            .header("Content-Type", "application/vnd.flux")
            .header("Accept", "application/csv")
            .body(flux.clone())
            .send()
            .await
            .expect("POST /api/v2/query")
            .text()
            .await
            .expect("query body");
        if csv.contains(&id) {
            assert!(
                csv.contains("binh-lu") && csv.contains("tan-binh") && csv.contains("received"),
                "{csv}"
            );
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{id} never arrived: {csv}\n{}",
            b.log_text()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}
