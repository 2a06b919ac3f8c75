//! Alerts against the real binary, a real Mosquitto and a real local HTTP
//! receiver (tests/kit/receiver.rs): escalation order and idempotent
//! delivery across a kill and restart of commune-ioc; exactly one active
//! alert under concurrent triggers; inhibition by a village's power
//! outage; a silence that holds notifications back until it expires; ack
//! and the API's filters. (`for`, staleness and silence expiry are also
//! unit-tested with a hand-moved clock in src/alerts.)

mod kit;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use kit::receiver::{Received, Receiver};
use kit::{test_config, wait_until, Backend, Mosquitto, Publisher};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(60);

/// Delivery to three targets on the receiver, a ladder (duty officer at
/// once, vice-chair 3 s later, chair 3 s after that), a fire rule, a power
/// outage rule that inhibits a village's speaker-group alert.
fn alerts_toml(url: &str, group_wait: &str) -> String {
    format!(
        r#"
[[sensor]]
id = "dien-tan-binh"
name = "Điện lưới Bản Tân Bình"
village = "tan-binh"
kind = "power"

[delivery]
backoff_initial_ms = 100
backoff_max_ms = 300
poll_ms = 50

[delivery.targets.truc-ban]
url = "{url}/truc-ban"
[delivery.targets.pho-chu-tich]
url = "{url}/pho-chu-tich"
[delivery.targets.chu-tich]
url = "{url}/chu-tich"

[alerts]
group_wait = "{group_wait}"
group_interval = "1s"
repeat_interval = "1h"
eval_interval = "100ms"

[[alerts.rule]]
id = "chay"
name = "Phát hiện cháy"
kind = "camera"
events = ["fire", "smoke"]
resolve_after = "1h"

[[alerts.rule]]
id = "mat-dien"
name = "Mất điện lưới"
kind = "threshold"
sensor = "dien-tan-binh"
field = "mains"
when = "< 1"
inhibits = ["group_offline"]

[[alerts.rule]]
id = "loa-mat-ket-noi"
name = "Mất kết nối toàn bộ cụm loa"
kind = "group_offline"
class = "speaker"
villages = ["tan-binh"]

[[alerts.escalation]]
name = "Cán bộ trực ban"
after = "0s"
targets = ["truc-ban"]
[[alerts.escalation]]
name = "Phó Chủ tịch UBND xã"
after = "3s"
targets = ["pho-chu-tich"]
[[alerts.escalation]]
name = "Chủ tịch UBND xã"
after = "3s"
targets = ["chu-tich"]
"#
    )
}

async fn start(receiver: &Receiver, group_wait: &str) -> (Mosquitto, tempfile::TempDir, Backend) {
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let config = format!(
        "{}\n{}",
        test_config(broker.port, &dir.path().join("store")),
        alerts_toml(&receiver.url, group_wait)
    );
    let b = Backend::start(dir.path(), &config);
    b.wait_ready().await;
    (broker, dir, b)
}

fn now_ts() -> String {
    chrono::Utc::now().to_rfc3339()
}

fn fire(seq: u64) -> Vec<u8> {
    json!({ "kind": "fire", "ts": now_ts(), "seq": seq, "score": 0.93 })
        .to_string()
        .into_bytes()
}

async fn firing(b: &Backend) -> Vec<Value> {
    let v = b.get("/api/alerts?state=firing").await;
    v["items"].as_array().cloned().unwrap_or_default()
}

async fn wait_firing(b: &Backend, fingerprint: &str) -> Value {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        if let Some(a) = firing(b)
            .await
            .into_iter()
            .find(|a| a["fingerprint"] == fingerprint)
        {
            return a;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no firing alert {fingerprint}; log:\n{}",
            b.log_text()
        );
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
}

fn open(store: &Path) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(store.join("journal.db")).expect("open the store");
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    conn
}

/// The requests the receiver accepted (2xx).
fn accepted(all: &[Received]) -> Vec<Received> {
    all.iter()
        .filter(|r| (200..300).contains(&r.answered))
        .cloned()
        .collect()
}

/// An unacknowledged fire alert climbs duty officer → vice-chair → chair,
/// each step to its own webhook; the receiver refuses the first two
/// requests (503), and commune-ioc is killed (SIGKILL) and restarted on
/// the same store twice: while the first step is being retried, and after
/// it was delivered. Each step is
/// accepted exactly once, in ladder order, with its idempotency key, and
/// nothing is sent to the next step before its delay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escalation_climbs_in_order_and_each_step_is_delivered_once_across_a_restart() {
    let receiver = Receiver::start().await;
    receiver.answer(503, r#"{"error":"busy"}"#);
    receiver.answer(503, r#"{"error":"busy"}"#);
    let (broker, dir, mut b) = start(&receiver, "0s").await;
    let store = dir.path().join("store");
    let mut p = Publisher::new(broker.port);
    p.send("ioc/binh-lu/camera/cam-01/event", &fire(1)).await;
    let alert = wait_firing(&b, "rule:chay:cam-01:fire").await;
    assert_eq!(alert["official"], false, "a rule's alert is internal");
    assert_eq!(alert["villages"], json!(["tan-binh"]));
    let id = alert["id"].as_i64().unwrap();

    // A crash while step 0 is being retried (the receiver refused its
    // first attempt): the pending notification is not forgotten.
    receiver.wait_for(1, WAIT).await;
    b.restart();
    b.wait_ready().await;

    // Step 0 accepted (after the two refusals) and recorded as delivered.
    let key0 = format!("alert:{id}:step:0:0:truc-ban");
    let s = store.clone();
    let k = key0.clone();
    wait_until("step 0 delivered", WAIT, || {
        let d = commune_ioc::delivery::get(&open(&s), &k).expect("read delivery");
        async move { d.filter(|d| d.state == commune_ioc::delivery::State::Delivered) }
    })
    .await;
    b.kill();
    b.restart();
    b.wait_ready().await;

    let got = receiver.wait_for(5, WAIT).await;
    let ok = accepted(&got);
    let paths: Vec<&str> = ok.iter().map(|r| r.uri.as_str()).collect();
    assert_eq!(
        paths,
        ["/truc-ban", "/pho-chu-tich", "/chu-tich"],
        "ladder order; requests: {:?}",
        got.iter()
            .map(|r| (r.uri.clone(), r.header("idempotency-key").to_owned()))
            .collect::<Vec<_>>()
    );
    let keys: Vec<&str> = ok.iter().map(|r| r.header("idempotency-key")).collect();
    assert_eq!(
        keys,
        [
            key0.as_str(),
            &format!("alert:{id}:step:1:0:pho-chu-tich"),
            &format!("alert:{id}:step:2:0:chu-tich"),
        ]
    );
    // The two refused requests were the first step's, with the same key.
    let refused: Vec<&Received> = got.iter().filter(|r| r.answered == 503).collect();
    assert_eq!(refused.len(), 2);
    assert!(refused.iter().all(|r| r.header("idempotency-key") == key0));
    // The payload.
    let body = ok[1].json();
    assert_eq!(body["version"], "1");
    assert_eq!(body["status"], "firing");
    assert_eq!(body["escalation"]["step"], 1);
    assert_eq!(body["escalation"]["name"], "Phó Chủ tịch UBND xã");
    assert_eq!(body["alerts"][0]["id"], id);
    assert_eq!(body["alerts"][0]["village_names"], json!(["Bản Tân Bình"]));
    let text = body["text"].as_str().unwrap();
    assert!(
        text.contains("phát hiện cháy") && text.contains("Bản Tân Bình"),
        "{text}"
    );

    // Nothing more: the top step repeats only after repeat_interval (1 h).
    let a = b.get("/api/alerts?state=firing&kind=camera").await;
    assert_eq!(a["items"][0]["escalation_step"], 3, "{a}");
    let total = receiver.received().len();
    // Acknowledge: stops repeats; the alert stays firing, acknowledged.
    let (status, acked) = b.post(&format!("/api/alerts/{id}/ack"), json!({})).await;
    assert_eq!(status, 200, "{acked}");
    assert_eq!(acked["status"], "firing_ack");
    assert_eq!(acked["acked_by"], "admin");
    assert!(acked["notify_at"].is_null());
    let (_, again) = b.post(&format!("/api/alerts/{id}/ack"), json!({})).await;
    assert_eq!(again["already"], true);
    // Resolve by hand: one resolved notification to each of the three.
    let (status, resolved) = b
        .post(&format!("/api/alerts/{id}/resolve"), json!({}))
        .await;
    assert_eq!(status, 200, "{resolved}");
    assert_eq!(resolved["status"], "resolved_ack");
    // The indicators: alerts by status, time to acknowledge.
    b.wait_for("the alert counted resolved_ack", WAIT, || async {
        b.scrape()
            .await
            .by_label("ioc_alerts")
            .contains(&("status=\"resolved_ack\"".to_owned(), 1.0))
    })
    .await;
    let scrape = b.scrape().await;
    assert!(scrape
        .by_label("ioc_alerts")
        .contains(&("status=\"firing_unack\"".to_owned(), 0.0)));
    let median = scrape
        .by_label("ioc_alert_time_to_ack_seconds")
        .into_iter()
        .find(|(l, _)| l == "quantile=\"0.5\"")
        .map(|(_, v)| v)
        .expect("the median time to acknowledge");
    assert!(median > 0.0 && median < 600.0, "{median}");
    let got = receiver.wait_for(total + 3, WAIT).await;
    let mut res: Vec<(String, String)> = got[total..]
        .iter()
        .map(|r| {
            (
                r.uri.clone(),
                r.json()["status"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    res.sort();
    assert_eq!(
        res,
        [
            ("/chu-tich".to_owned(), "resolved".to_owned()),
            ("/pho-chu-tich".to_owned(), "resolved".to_owned()),
            ("/truc-ban".to_owned(), "resolved".to_owned()),
        ]
    );
    // The audit log has both actions.
    let audit = b.get("/api/audit").await;
    let actions: Vec<&str> = audit
        .as_array()
        .or_else(|| audit["items"].as_array())
        .map(|a| a.iter().filter_map(|e| e["action"].as_str()).collect())
        .unwrap_or_default();
    assert!(
        actions.contains(&"alert_ack") && actions.contains(&"alert_resolve"),
        "{audit}"
    );
}

/// Two publishers send 20 fire events each for the same camera at once:
/// one firing alert, 40 occurrences, first and last seen kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_triggers_make_exactly_one_active_alert() {
    let receiver = Receiver::start().await;
    let (broker, _dir, b) = start(&receiver, "1h").await;
    let mut tasks = Vec::new();
    for k in 0..2u64 {
        let port = broker.port;
        tasks.push(tokio::spawn(async move {
            let mut p = Publisher::new(port);
            for i in 0..20u64 {
                p.send("ioc/binh-lu/camera/cam-03/event", &fire(k * 1000 + i))
                    .await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    b.wait_for("40 occurrences", WAIT, || async {
        firing(&b)
            .await
            .iter()
            .any(|a| a["fingerprint"] == "rule:chay:cam-03:fire" && a["occurrences"] == 40)
    })
    .await;
    let all = b.get("/api/alerts?kind=camera").await;
    let items = all["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{all}");
    assert_eq!(items[0]["villages"], json!(["na-da"]));
    assert!(items[0]["first_seen"].as_str() <= items[0]["last_seen"].as_str());
    // Filters: by village, and a village with none.
    assert_eq!(
        b.get("/api/alerts?village=na-da").await["items"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        b.get("/api/alerts?village=tan-binh").await["items"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
    let (status, err) = b.get_status("/api/alerts?state=burning").await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (400, Some("invalid_filter"))
    );
}

/// A power outage in Bản Tân Bình (its mains sensor reads 0) inhibits the
/// village's "all speakers offline" alert: both fire, the speaker alert
/// names the outage in `inhibited_by` and is never notified, the outage
/// is. When power comes back, the speaker alert is notified.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_power_outage_inhibits_the_villages_device_offline_alert() {
    let receiver = Receiver::start().await;
    let (broker, _dir, b) = start(&receiver, "0s").await;
    let mut p = Publisher::new(broker.port);
    p.send(
        "ioc/binh-lu/sensor/dien-tan-binh/telemetry",
        json!({ "ts": now_ts(), "mains": 0 }).to_string().as_bytes(),
    )
    .await;
    let outage = wait_firing(&b, "rule:mat-dien:dien-tan-binh:mains").await;
    // Wait for the outage's notification before the speakers go down.
    let got = receiver.wait_for(1, WAIT).await;
    assert_eq!(got[0].json()["alerts"][0]["id"], outage["id"]);
    p.send(
        "ioc/binh-lu/speaker/spk-01/status",
        json!({ "ts": now_ts(), "state": "offline" })
            .to_string()
            .as_bytes(),
    )
    .await;
    let spk = wait_firing(&b, "rule:loa-mat-ket-noi:tan-binh").await;
    let spk_id = spk["id"].as_i64().unwrap();
    b.wait_for("the speaker alert inhibited", WAIT, || async {
        firing(&b)
            .await
            .iter()
            .any(|a| a["id"] == spk_id && a["inhibited_by"] == json!([outage["id"]]))
    })
    .await;
    // The outage's own ladder goes on; the speaker alert is never sent.
    receiver.wait_for(2, WAIT).await;
    let about = |r: &Received| r.json()["alerts"][0]["id"].as_i64();
    assert!(receiver.received().iter().all(|r| about(r) != Some(spk_id)));
    // Power back: the outage resolves, the speaker alert is notified.
    p.send(
        "ioc/binh-lu/sensor/dien-tan-binh/telemetry",
        json!({ "ts": now_ts(), "mains": 1 }).to_string().as_bytes(),
    )
    .await;
    wait_until("the speaker alert notified", WAIT, || {
        let hit = receiver.received().iter().any(|r| about(r) == Some(spk_id));
        async move { hit.then_some(()) }
    })
    .await;
}

/// A silence on a village holds a fire alert's notifications back while it
/// is active (the alert lists it in `silenced_by`), across a kill and
/// restart of commune-ioc, and they go out once it expires; silences are listed with their author and status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silence_holds_notifications_until_it_expires() {
    let receiver = Receiver::start().await;
    let (broker, _dir, mut b) = start(&receiver, "0s").await;
    let (status, sil) = b
        .post(
            "/api/silences",
            json!({ "matchers": [{ "name": "village", "value": "na-da" }],
                "duration": "10s", "comment": "Bảo trì camera Bản Nà Đa" }),
        )
        .await;
    assert_eq!(status, 201, "{sil}");
    assert_eq!(sil["created_by"], "admin");
    assert_eq!(sil["status"], "active");
    let (status, bad) = b.post("/api/silences",
        json!({ "matchers": [{ "name": "colour", "value": "x" }], "duration": "1h", "comment": "x" }),
    )
    .await;
    assert_eq!(
        (status, bad["error"]["code"].as_str()),
        (400, Some("invalid_silence")),
        "{bad}"
    );
    let list = b.get("/api/silences").await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    // Another one, ended at once by DELETE (audited); twice is `already`.
    let (_, other) = b
        .post(
            "/api/silences",
            json!({ "matchers": [{ "name": "kind", "value": "group_offline" }],
                "duration": "1h", "comment": "Thử" }),
        )
        .await;
    let del = |id: i64| {
        let b = &b;
        async move {
            let r = reqwest::Client::new()
                .delete(format!("{}/api/silences/{id}", b.url))
                .bearer_auth(b.token().await)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let other_id = other["id"].as_i64().unwrap();
    let (status, ended) = del(other_id).await;
    assert_eq!(status, 200, "{ended}");
    assert_eq!(
        (ended["ended_by"].as_str(), ended["status"].as_str()),
        (Some("admin"), Some("expired")),
        "{ended}"
    );
    assert_eq!(del(other_id).await.1["already"], true);
    assert_eq!(del(999_999).await.0, 404);
    let list = b.get("/api/silences").await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1, "{list}");
    let audit = b.get("/api/audit?action=silence_delete").await.to_string();
    assert!(audit.contains(&format!("silence:{other_id}")), "{audit}");

    let mut p = Publisher::new(broker.port);
    p.send("ioc/binh-lu/camera/cam-04/event", &fire(7)).await;
    let a = wait_firing(&b, "rule:chay:cam-04:fire").await;
    b.wait_for("the alert silenced", WAIT, || async {
        firing(&b)
            .await
            .iter()
            .any(|x| x["id"] == a["id"] && x["silenced_by"] == json!([sil["id"]]))
    })
    .await;
    // A crash and a restart: the silence and the held alert are still
    // there, and still nothing is sent.
    b.restart();
    b.wait_ready().await;
    b.wait_for("the alert silenced after the restart", WAIT, || async {
        firing(&b)
            .await
            .iter()
            .any(|x| x["id"] == a["id"] && x["silenced_by"] == json!([sil["id"]]))
    })
    .await;
    assert!(
        receiver.received().is_empty(),
        "nothing sent while silenced"
    );
    let got = receiver.wait_for(1, WAIT).await;
    assert_eq!(got[0].uri, "/truc-ban");
    assert_eq!(got[0].json()["alerts"][0]["id"], a["id"]);
    let list = b.get("/api/silences?all=true").await;
    assert_eq!(list["items"][0]["status"], "expired", "{list}");
    let mut by: BTreeMap<String, usize> = BTreeMap::new();
    for r in receiver.received() {
        *by.entry(r.header("idempotency-key").to_owned())
            .or_default() += 1;
    }
    assert!(by.values().all(|n| *n == 1), "{by:?}");
}
