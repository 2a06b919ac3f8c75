//! Durable HTTP delivery (src/delivery) against a real local receiver and
//! the real binary: a delivery enqueued while the receiver is down, the
//! backend killed (SIGKILL) with it still pending, then a receiver that
//! fails twice and then accepts: exactly one accepted request, the receipt
//! stored, every attempt recorded, nothing lost.

mod kit;

use std::path::Path;
use std::time::Duration;

use commune_ioc::delivery::{self, NewDelivery, State};
use kit::receiver::Receiver;
use kit::{free_port, test_config, wait_until, Backend, Mosquitto};

const WAIT: Duration = Duration::from_secs(60);

fn delivery_toml(port: u16) -> String {
    format!(
        r#"
[delivery]
backoff_initial_ms = 100
backoff_max_ms = 400
poll_ms = 50

[delivery.targets.province]
url = "http://127.0.0.1:{port}/api/bao-cao"
bearer_token = "tinh-lai-chau-token"
"#
    )
}

fn open(store: &Path) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(store.join("journal.db")).expect("open the store");
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    conn
}

fn enqueue(store: &Path, key: &str, body: &[u8]) {
    let conn = open(store);
    let got = delivery::enqueue(
        &conn,
        &NewDelivery {
            key,
            target: "province",
            content_type: "application/json",
            body,
        },
        chrono::Utc::now(),
    )
    .expect("enqueue");
    assert!(matches!(got, delivery::Enqueued::New(_)), "{key}: {got:?}");
}

async fn wait_state(store: &Path, key: &str, want: State) -> delivery::Delivery {
    let store = store.to_path_buf();
    wait_until(&format!("{key} to be {want:?}"), WAIT, || {
        let d = delivery::get(&open(&store), key).expect("read delivery");
        async move { d.filter(|d| d.state == want) }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_survives_a_dead_receiver_and_a_kill_and_is_accepted_once() {
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let port = free_port();
    let config = format!(
        "{}\n{}",
        test_config(broker.port, &store),
        delivery_toml(port)
    );
    let mut b = Backend::start(dir.path(), &config);
    b.wait_ready().await;

    // The receiver is down: attempts fail at connect, and are recorded.
    let body = br#"{"period":"2026-06","digest":"ab12"}"#;
    enqueue(&store, "report:2026-06:ab12", body);
    let store2 = store.clone();
    wait_until("two failed attempts", WAIT, || {
        let a = delivery::attempts(&open(&store2), "report:2026-06:ab12").unwrap();
        async move { (a.len() >= 2).then_some(()) }
    })
    .await;
    let d = delivery::get(&open(&store), "report:2026-06:ab12")
        .unwrap()
        .unwrap();
    assert_eq!(d.state, State::Pending);
    assert!(d.receipt.is_none());
    assert!(d.last_error.is_some(), "{d:?}");

    // Crash with the delivery pending.
    b.kill();

    // The receiver comes up, fails twice, then accepts with a receipt.
    let rx = Receiver::start_on(port).await;
    rx.answer(503, r#"{"error":"bảo trì"}"#);
    rx.answer(500, r#"{"error":"lỗi máy chủ"}"#);
    rx.answer_always(201, r#"{"receipt":"LCH-2026-000123","status":"đã nhận"}"#);
    b.restart();
    b.wait_ready().await;

    let d = wait_state(&store, "report:2026-06:ab12", State::Delivered).await;
    let receipt = d.receipt.expect("receipt stored");
    assert_eq!(receipt.status, 201);
    assert!(receipt.body.contains("LCH-2026-000123"), "{receipt:?}");

    // A sentinel enqueued after it, and the same key again: once the
    // sentinel is delivered, the first key was not sent again.
    let conn = open(&store);
    let again = delivery::enqueue(
        &conn,
        &NewDelivery {
            key: "report:2026-06:ab12",
            target: "province",
            content_type: "application/json",
            body: b"{}",
        },
        chrono::Utc::now(),
    )
    .unwrap();
    assert_eq!(again, delivery::Enqueued::Existing(d.id));
    enqueue(&store, "sentinel", b"{}");
    wait_state(&store, "sentinel", State::Delivered).await;

    let got = rx.received();
    let ours: Vec<_> = got
        .iter()
        .filter(|r| r.header("idempotency-key") == "report:2026-06:ab12")
        .collect();
    assert_eq!(
        ours.iter().map(|r| r.answered).collect::<Vec<_>>(),
        [503, 500, 201],
        "three requests reached the receiver, one accepted"
    );
    for r in &ours {
        assert_eq!(r.method, "POST");
        assert_eq!(r.uri, "/api/bao-cao");
        assert_eq!(r.header("authorization"), "Bearer tinh-lai-chau-token");
        assert_eq!(r.header("content-type"), "application/json");
        assert_eq!(&r.body[..], body, "the body is sent unchanged");
    }

    // Every attempt is on record: refused connections before the kill,
    // then the three answers.
    let attempts = delivery::attempts(&open(&store), "report:2026-06:ab12").unwrap();
    let statuses: Vec<Option<u16>> = attempts.iter().map(|a| a.status).collect();
    let n = attempts.len();
    assert!(n >= 5, "{attempts:?}");
    assert!(
        statuses[..n - 3].iter().all(Option::is_none),
        "{statuses:?}"
    );
    assert_eq!(statuses[n - 3..], [Some(503), Some(500), Some(201)]);
    assert!(attempts
        .iter()
        .enumerate()
        .all(|(i, a)| a.attempt as usize == i + 1));
    assert_eq!(d.attempts as usize, n);

    let m = b.scrape().await;
    let by = m.by_label("ioc_delivery_attempts_total");
    let delivered: f64 = by
        .iter()
        .filter(|(l, _)| l.contains("outcome=\"delivered\""))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(delivered, 2.0, "the delivery and the sentinel: {by:?}");
    assert_eq!(m.sum("ioc_delivery_pending"), 0.0);
    b.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_the_receiver_refuses_for_good_is_not_retried() {
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let rx = Receiver::start().await;
    let port: u16 = rx.url.rsplit(':').next().unwrap().parse().unwrap();
    rx.answer_always(422, r#"{"error":"sai định dạng"}"#);
    let config = format!(
        "{}\n{}",
        test_config(broker.port, &store),
        delivery_toml(port)
    );
    let mut b = Backend::start(dir.path(), &config);
    b.wait_ready().await;
    enqueue(&store, "bad", b"{");
    let d = wait_state(&store, "bad", State::Rejected).await;
    assert_eq!(d.attempts, 1);
    let r = d.receipt.expect("the refusal is kept");
    assert_eq!(r.status, 422);
    assert!(r.body.contains("sai định dạng"));
    // A later delivery goes through the same worker; the refused one was
    // not sent again meanwhile.
    rx.answer_always(200, "{}");
    enqueue(&store, "good", b"{}");
    wait_state(&store, "good", State::Delivered).await;
    let bad = rx
        .received()
        .iter()
        .filter(|r| r.header("idempotency-key") == "bad")
        .count();
    assert_eq!(bad, 1);
    b.stop();
}

async fn post(
    b: &Backend,
    path: &str,
    token: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let mut r = reqwest::Client::new()
        .post(format!("{}{path}", b.url))
        .bearer_auth(token);
    if let Some(body) = body {
        r = r.json(&body);
    }
    let r = r
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST {path}: {e}"));
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(serde_json::Value::Null))
}

/// The retained message on `topic` at `port` (waits for it).
async fn retained(port: u16, topic: &str) -> (bool, Vec<u8>) {
    let (retain, _, payload) = retained_qos(port, topic).await;
    (retain, payload)
}

/// The retained message on `topic`, with the QoS it was delivered at
/// (subscribed at QoS 1: the lower of the publisher's and ours).
async fn retained_qos(port: u16, topic: &str) -> (bool, rumqttc::QoS, Vec<u8>) {
    let mut opts = rumqttc::MqttOptions::new("report-watcher", "127.0.0.1", port);
    opts.set_max_packet_size(4 * 1024 * 1024, 64 * 1024);
    let (client, mut ev) = rumqttc::AsyncClient::new(opts, 16);
    client
        .subscribe(topic, rumqttc::QoS::AtLeastOnce)
        .await
        .unwrap();
    let got = tokio::time::timeout(WAIT, async {
        loop {
            if let Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p))) = ev.poll().await {
                return (p.retain, p.qos, p.payload.to_vec());
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no retained message on {topic}"));
    let _ = client.disconnect().await;
    got
}

/// A sealed report submitted by an operator through the API reaches the
/// province exactly once across a dead receiver, a kill -9 and two
/// failures; its state goes submitted → acknowledged with the receipt, and
/// the sealed document is published retained over MQTT.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sealed_report_is_submitted_to_the_province_once_and_acknowledged() {
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let port = free_port();
    let config = format!(
        "{}\n{}\n[report.province]\ntarget = \"province\"\n",
        test_config(broker.port, &store),
        delivery_toml(port)
    );
    let mut b = Backend::start(dir.path(), &config);
    b.wait_ready().await;
    let admin = b.token().await;

    // Seal a closed period (empty data: no_data values).
    let (s, v) = post(&b, "/api/reports/2025-06/seal", &admin, None).await;
    assert_eq!(s, 200, "{v}");
    let document = b
        .authed_get("/api/reports/2025-06")
        .await
        .bytes()
        .await
        .unwrap();
    let digest = v["digest"].as_str().expect("digest").to_owned();

    // A viewer may not submit.
    let (s, _) = post(
        &b,
        "/api/users",
        &admin,
        Some(
            serde_json::json!({"username": "xem", "password": "mat-khau-xem-1", "role": "viewer"}),
        ),
    )
    .await;
    assert_eq!(s, 201);
    let viewer = b.login("xem", "mat-khau-xem-1").await;
    let (s, v) = post(&b, "/api/reports/2025-06/submit", &viewer, None).await;
    assert_eq!(s, 403, "{v}");
    // Not sealed: 404.
    let (s, v) = post(&b, "/api/reports/2025-05/submit", &admin, None).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (404, Some("not_sealed")),
        "{v}"
    );

    // The operator submits while the province is down.
    let (s, v) = post(&b, "/api/reports/2025-06/submit", &admin, None).await;
    assert_eq!(s, 202, "{v}");
    assert_eq!(v["state"], "submitted");
    assert_eq!(v["new"], true);
    let key = format!("report:2025-06:r0:{digest}");
    assert_eq!(v["delivery"]["key"], key.as_str());
    let listed = b.get("/api/reports").await;
    let row = listed["periods"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["period"] == "2025-06")
        .cloned()
        .unwrap();
    assert_eq!(row["state"], "submitted", "{row}");
    let store2 = store.clone();
    let k2 = key.clone();
    wait_until("failed attempts", WAIT, || {
        let a = delivery::attempts(&open(&store2), &k2).unwrap();
        async move { (!a.is_empty()).then_some(()) }
    })
    .await;

    // Crash; the province comes up failing, then accepts.
    b.kill();
    let rx = Receiver::start_on(port).await;
    rx.answer(503, r#"{"error":"quá tải"}"#);
    rx.answer_always(200, r#"{"receipt":"LCH-BC-2025-06-0042"}"#);
    b.restart();
    b.wait_ready().await;

    let sub = wait_until("the province's acknowledgement", WAIT, || {
        let b = &b;
        async move {
            let v = b.get("/api/reports/2025-06/submission").await;
            (v["submission"]["state"] == "acknowledged").then_some(v)
        }
    })
    .await;
    let receipt = &sub["submission"]["detail"]["receipt"];
    assert_eq!(receipt["status"], 200, "{sub}");
    assert!(receipt["body"]
        .as_str()
        .unwrap()
        .contains("LCH-BC-2025-06-0042"));
    assert!(sub["attempts"].as_array().unwrap().len() >= 3, "{sub}");
    let listed = b.get("/api/reports").await;
    let row = listed["periods"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["period"] == "2025-06")
        .cloned()
        .unwrap();
    assert_eq!(row["state"], "acknowledged", "{row}");

    // Submitting again changes nothing; a sentinel period shows nothing
    // else was sent meanwhile.
    let (s, v) = post(&b, "/api/reports/2025-06/submit", &admin, None).await;
    assert_eq!(
        (s, &v["new"]),
        (202, &serde_json::Value::Bool(false)),
        "{v}"
    );
    let (s, _) = post(&b, "/api/reports/2025-07/seal", &admin, None).await;
    assert_eq!(s, 200);
    // The sentinel is submitted from the command line while the server
    // runs; the server's worker sends it.
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_commune-ioc"))
            .args(["report", "--config"])
            .arg(dir.path().join("commune.toml"))
            .args(args)
            .env_remove("IOC_CONFIG")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let said = cli(&["submit", "--period", "2025-07", "--by", "can.bo.vp"]);
    assert!(
        said.contains("Đã đưa kỳ 2025-07 (phiên bản 0) vào hàng đợi gửi tỉnh"),
        "{said}"
    );
    let said = cli(&["submit", "--period", "2025-06", "--by", "can.bo.vp"]);
    assert!(
        said.contains("Kỳ 2025-06 (phiên bản 0) đã được gửi trước đó: tỉnh đã nhận."),
        "{said}"
    );
    wait_until("the sentinel's acknowledgement", WAIT, || {
        let b = &b;
        async move {
            let v = b.get("/api/reports/2025-07/submission").await;
            (v["submission"]["state"] == "acknowledged").then_some(())
        }
    })
    .await;
    let ours: Vec<_> = rx
        .received()
        .into_iter()
        .filter(|r| r.header("idempotency-key") == key)
        .collect();
    assert_eq!(
        ours.iter().map(|r| r.answered).collect::<Vec<_>>(),
        [503, 200],
        "one accepted submission"
    );
    for r in &ours {
        assert_eq!(r.uri, "/api/bao-cao");
        assert_eq!(r.header("authorization"), "Bearer tinh-lai-chau-token");
        assert_eq!(r.body, document, "the sealed document, byte for byte");
    }

    // Audited.
    let audit = b.get("/api/audit?action=report_submit").await;
    let entries = audit["entries"]
        .as_array()
        .or(audit.as_array())
        .cloned()
        .unwrap_or_default();
    assert!(
        entries
            .iter()
            .any(|e| e["outcome"] == "denied" || e["outcome"] == "failed"),
        "the refused and failed attempts are on record: {audit}"
    );
    assert!(
        entries.iter().filter(|e| e["outcome"] == "ok").count() >= 3,
        "{audit}"
    );
    assert!(
        entries
            .iter()
            .any(|e| e["actor"] == "can.bo.vp" && e["object"] == "report:2025-07"),
        "the command line's submission is audited under its user: {audit}"
    );

    // Published retained on MQTT, and not taken back in as input.
    let (retain, payload) = retained(broker.port, "ioc/binh-lu/report/2025-06").await;
    assert!(retain);
    assert_eq!(payload, document);
    let dead = b.get("/api/dead-letters").await;
    assert!(
        !dead.to_string().contains("/report/"),
        "the own report topic became a dead letter: {dead}"
    );
    b.stop();
}

/// One dossier received at `at`, written straight into the store as the
/// journal writer would (rows, rollups, report manifests).
fn write_dossier(config: &commune_ioc::config::Config, at: chrono::DateTime<chrono::Utc>) {
    use commune_ioc::indicators::Engine;
    use commune_ioc::journal::{NewEvent, Store};
    use commune_ioc::model::{Event, Source};
    use commune_ioc::reports::{intake::Rule, service};
    let mut store = Store::open(&config.journal_path()).expect("open the journal");
    store.set_report_rule(Rule::from_config(&config.report));
    let engine = Engine::new(config);
    let event = Event {
        source: Source::Procedure,
        kind: "received".into(),
        device: None,
        village: Some("tan-binh".into()),
        ts: at,
        received_at: at,
        seq: None,
        attrs: serde_json::json!({"dossier_id": "auto-1", "channel": "online"})
            .as_object()
            .cloned()
            .unwrap(),
        dedup_key: "auto-1".into(),
        retained: false,
    };
    let n = service::write_events(
        &mut store,
        &engine,
        &[NewEvent {
            event: &event,
            topic: "ioc/binh-lu/dvc",
            payload: b"{}",
        }],
    )
    .expect("write the event");
    assert_eq!(n, 1);
}

/// The last closed month is sealed by the `serve` task by itself and, with
/// `auto_submit`, delivered by itself over HTTPS with mutual TLS (a
/// private CA; the receiver refuses a client without a certificate) and a
/// bearer token; the province's receipt is stored, the state shows in the
/// API and on the wall screen's tile, both steps are audited as `system`,
/// and the document is published retained with QoS 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_month_is_sealed_and_submitted_by_itself_over_mutual_tls() {
    use commune_ioc::reports::{ReportPeriod, Snapshot};
    use kit::browser::{Browser, BROWSER_SLOT};
    use kit::pki::Pki;

    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let pki = Pki::create(&dir.path().join("pki"), "ubnd-xa-binh-lu");
    let rx = Receiver::start_tls_on(0, std::sync::Arc::clone(&pki.server)).await;
    rx.answer_always(201, r#"{"receipt":"LCH-TU-DONG-0001","status":"đã nhận"}"#);

    // The receiver does require a client certificate: a client that has
    // the CA but no certificate of its own is turned away.
    let anonymous = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(&std::fs::read(&pki.ca).unwrap()).unwrap(),
        )
        .build()
        .unwrap();
    let refused = anonymous
        .post(format!("{}/api/bao-cao", rx.url))
        .body("{}")
        .send()
        .await;
    assert!(refused.is_err(), "no client certificate, yet {refused:?}");
    assert!(rx.received().is_empty());
    assert!(
        rx.handshakes().iter().any(|h| h.error.is_some()),
        "{:?}",
        rx.handshakes()
    );

    let config_text = format!(
        r#"{base}
[report]
grace_secs = 0
check_interval_secs = 1

[report.province]
target = "province"
auto_submit = true

[delivery]
backoff_initial_ms = 100
backoff_max_ms = 400
poll_ms = 50

[delivery.targets.province]
url = "{url}/api/bao-cao"
bearer_token = "tinh-lai-chau-token"
client_cert = "{cert}"
client_key = "{key}"
ca_file = "{ca}"
"#,
        base = test_config(broker.port, &store),
        url = rx.url,
        cert = pki.client_cert.display(),
        key = pki.client_key.display(),
        ca = pki.ca.display(),
    );
    let cfg_path = dir.path().join("commune.toml");
    std::fs::write(&cfg_path, &config_text).unwrap();
    let config = commune_ioc::config::load(&cfg_path).expect("the test config loads");

    // The last closed month: the one before the current month. Just after
    // a month turns, wait the minute sealing waits (grace 0 + 1 min) so it
    // has closed.
    let regime = config.report.regime;
    let mut now = chrono::Utc::now();
    let mut current = ReportPeriod::month_of(now, regime);
    let opens = current.start.with_timezone(&chrono::Utc) + chrono::Duration::seconds(61);
    if now < opens {
        tokio::time::sleep((opens - now).to_std().unwrap()).await;
        now = chrono::Utc::now();
        current = ReportPeriod::month_of(now, regime);
    }
    let last = ReportPeriod::month_of(
        current.start.with_timezone(&chrono::Utc) - chrono::Duration::days(1),
        regime,
    );
    let label = last.label();
    let (start, _) = last.utc();
    // A dossier received in that month: the store was running then.
    write_dossier(&config, start + chrono::Duration::days(3));

    let mut b = Backend::start(dir.path(), &config_text);
    b.wait_ready().await;

    // Nobody seals or submits: the task does both.
    let row = wait_until("the last month to be sealed and acknowledged", WAIT, || {
        let b = &b;
        let label = label.clone();
        async move {
            let v = b.get("/api/reports").await;
            v["periods"]
                .as_array()
                .and_then(|a| a.iter().find(|p| p["period"] == label.as_str()).cloned())
                .filter(|p| p["state"] == "acknowledged")
        }
    })
    .await;
    assert_eq!(row["revision"], 0, "{row}");
    assert_eq!(row["sealed_by"], "scheduler", "{row}");
    let listed = b.get("/api/reports").await;
    let open = listed["periods"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["period"] == current.label().as_str())
        .cloned()
        .unwrap();
    assert_eq!(
        (open["state"].as_str(), &open["revision"]),
        (Some("open"), &serde_json::Value::Null),
        "the current month: {open}"
    );
    let digest = row["digest"].as_str().unwrap().to_owned();
    let document = b
        .authed_get(&format!("/api/reports/{label}"))
        .await
        .bytes()
        .await
        .unwrap();
    let s: Snapshot = serde_json::from_slice(&document).unwrap();
    let received = s.values[0]
        .indicators
        .iter()
        .find(|r| r.indicator == "dossiers_received")
        .unwrap();
    assert_eq!(received.value, Some(1.0));

    // Exactly one request, over the mutually authenticated connection,
    // with the token and the document byte for byte.
    let got = rx.received();
    assert_eq!(got.len(), 1, "{got:?}");
    let r = &got[0];
    assert_eq!(
        (r.method.as_str(), r.uri.as_str()),
        ("POST", "/api/bao-cao")
    );
    assert_eq!(r.header("authorization"), "Bearer tinh-lai-chau-token");
    assert_eq!(
        r.header("idempotency-key"),
        format!("report:{label}:r0:{digest}")
    );
    assert_eq!(r.body, document);
    let ok: Vec<_> = rx
        .handshakes()
        .into_iter()
        .filter(|h| h.error.is_none())
        .collect();
    assert!(!ok.is_empty());
    for h in &ok {
        assert_eq!(
            h.client_cert.as_deref(),
            Some(pki.client_der.as_slice()),
            "commune-ioc presented its client certificate"
        );
    }

    // The receipt, in the API.
    let sub = b.get(&format!("/api/reports/{label}/submission")).await;
    assert_eq!(sub["submission"]["state"], "acknowledged", "{sub}");
    let receipt = &sub["submission"]["detail"]["receipt"];
    assert_eq!(receipt["status"], 201, "{sub}");
    assert!(
        receipt["body"]
            .as_str()
            .unwrap()
            .contains("LCH-TU-DONG-0001"),
        "{sub}"
    );

    // Both steps audited as the system.
    for action in ["report_seal", "report_submit"] {
        let audit = b.get(&format!("/api/audit?action={action}")).await;
        let entries = audit["entries"]
            .as_array()
            .or(audit.as_array())
            .cloned()
            .unwrap_or_default();
        assert!(
            entries.iter().any(|e| e["actor"] == "system"
                && e["object"] == format!("report:{label}").as_str()
                && e["detail"] == digest.as_str()),
            "{action}: {audit}"
        );
    }

    // Published retained with QoS 1.
    let (retain, qos, payload) =
        retained_qos(broker.port, &format!("ioc/binh-lu/report/{label}")).await;
    assert!(retain);
    assert_eq!(qos, rumqttc::QoS::AtLeastOnce);
    assert_eq!(payload, document);

    // The wall screen's tile shows that the province received it.
    let token = b.token().await;
    let _slot = BROWSER_SLOT.lock().await;
    let br = Browser::launch().await;
    br.set_viewport(1920, 1080).await;
    br.open(&format!("{}/?token={token}", b.url)).await;
    br.wait_js(
        &format!(
            "document.querySelector('#report-tile a[href=\"/reports/{label}\"][data-state=\"acknowledged\"]')"
        ),
        "the report tile",
    )
    .await;
    let tile = br.text("#report-tile").await;
    assert!(
        tile.contains(&format!("Kỳ {label}: tỉnh đã nhận")),
        "{tile}"
    );
    assert!(br.exceptions().is_empty(), "{:?}", br.problems());
    br.close().await;
    b.stop();
}

/// With `[report.province] format = "dhis2"` the province receives the
/// sealed revision as a DHIS2 `dataValueSet` (codes from `[report.dhis2]`,
/// the label's DHIS2 period, values without data left out).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_province_that_runs_dhis2_receives_a_data_value_set() {
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let rx = Receiver::start().await;
    rx.answer_always(200, r#"{"status":"SUCCESS","importCount":{"imported":2}}"#);
    let config_text = format!(
        r#"{base}
[report.province]
target = "dhis2"
format = "dhis2"

[report.dhis2]
data_set = "IOC_XA_THANG"
org_unit = "OU_BINHLU"
data_elements = {{ dossiers_received = "DE_HS_TIEPNHAN", dossier_online_ratio = "DE_HS_TRUCTUYEN", dossier_on_time_ratio = "DE_HS_DUNGHAN" }}
village_org_units = {{ tan-binh = "OU_TANBINH" }}

[delivery]
backoff_initial_ms = 100
backoff_max_ms = 400
poll_ms = 50

[delivery.targets.dhis2]
url = "{url}/api/dataValueSets?idScheme=code"
bearer_token = "dhis2-token"
"#,
        base = test_config(broker.port, &store),
        url = rx.url,
    );
    let cfg_path = dir.path().join("commune.toml");
    std::fs::write(&cfg_path, &config_text).unwrap();
    let config = commune_ioc::config::load(&cfg_path).expect("the test config loads");
    // One online dossier in Tân Bình in June 2025 (NĐ 09).
    write_dossier(
        &config,
        chrono::DateTime::parse_from_rfc3339("2025-06-01T09:00:00+07:00")
            .unwrap()
            .with_timezone(&chrono::Utc),
    );
    let mut b = Backend::start(dir.path(), &config_text);
    b.wait_ready().await;
    let admin = b.token().await;
    let (s, v) = post(&b, "/api/reports/2025-06/seal", &admin, None).await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = post(&b, "/api/reports/2025-06/submit", &admin, None).await;
    assert_eq!(s, 202, "{v}");
    wait_until("the DHIS2 import's acknowledgement", WAIT, || {
        let b = &b;
        async move {
            let v = b.get("/api/reports/2025-06/submission").await;
            (v["submission"]["state"] == "acknowledged").then_some(())
        }
    })
    .await;
    let got = rx.received();
    assert_eq!(got.len(), 1, "{got:?}");
    let r = &got[0];
    assert_eq!(r.uri, "/api/dataValueSets?idScheme=code");
    assert_eq!(r.header("authorization"), "Bearer dhis2-token");
    assert_eq!(r.header("content-type"), "application/json");
    let set = r.json();
    assert_eq!(set["dataSet"], "IOC_XA_THANG");
    assert_eq!(set["period"], "202506");
    assert_eq!(set["orgUnit"], "OU_BINHLU");
    let values: Vec<(String, String, String)> = set["dataValues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["dataElement"].as_str().unwrap().to_owned(),
                d["orgUnit"].as_str().unwrap().to_owned(),
                d["value"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let want = [
        ("DE_HS_TIEPNHAN", "OU_BINHLU", "1"),
        ("DE_HS_TRUCTUYEN", "OU_BINHLU", "100"),
        ("DE_HS_TIEPNHAN", "OU_TANBINH", "1"),
        ("DE_HS_TRUCTUYEN", "OU_TANBINH", "100"),
    ];
    let want: Vec<(String, String, String)> = want
        .iter()
        .map(|(a, o, v)| (a.to_string(), o.to_string(), v.to_string()))
        .collect();
    // The on-time ratio has no data (no dossier resolved): left out, not 0.
    assert_eq!(values, want);
    b.stop();
}
