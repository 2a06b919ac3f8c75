//! Loudspeaker broadcasts (issue 14) end to end: the real binary, a real
//! Mosquitto (and the shipped Mosquitto config), simulated smart clusters
//! (`commune_ioc::sim::speakers`, each its own MQTT client obeying its
//! `.../cmd`), headless Chromium, the demo. What is proved: nothing goes
//! out before approval and approval is audited; an approved broadcast
//! reaches exactly the smart clusters of the covered villages; a flash-
//! flood bulletin is drafted automatically, its Update re-plans and its
//! Cancel stops the repeats; a silent (dead-zone) cluster is retried under
//! the same key, then marked unreachable and its village gets a manual
//! task, as an FE-only village does at once, and the task is marked done
//! (audited); a resent command is answered `duplicate` and never played
//! twice; a cancel stops pending repeats; an emergency pre-empts and
//! routine broadcasts wait for the cluster; a kill -9 with commands
//! pending loses none and plays none twice, and tasks and drafts survive;
//! the screen's coverage panel holds the right states, tasks and
//! indicators; on the shipped Mosquitto each cluster's account gets its
//! own commands only; the demo goes from bulletin to coverage.

mod kit;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use commune_ioc::sim::speakers::{self, Behaviour, Log};
use kit::browser::{Browser, BROWSER_SLOT};
use kit::{Backend, Mosquitto};
use parking_lot::Mutex;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(60);
const COMMUNE: &str = "binh-lu";
const SMART: &[&str] = &["spk-01", "spk-02", "spk-03", "spk-05", "spk-06"];

fn config(mqtt_port: u16, store: &std::path::Path) -> String {
    format!(
        r#"
[commune]
id = "{COMMUNE}"
name = "xã Bình Lư"
province = "Lai Châu"

[mqtt]
host = "127.0.0.1"
port = {mqtt_port}
backoff_initial_ms = 50
backoff_max_ms = 1000

[http]
listen = "127.0.0.1:0"

[store]
path = "{store}"

[broadcasts]
retry_initial_ms = 400
retry_max_ms = 1000
ack_timeout_secs = 3
tick_ms = 50

[[village]]
id = "tan-binh"
name = "Bản Tân Bình"
[[village]]
id = "hung-binh"
name = "Bản Hưng Bình"
[[village]]
id = "na-da"
name = "Bản Nà Đa"
head_name = "Lò Văn Pằn"
head_phone = "0912 345 678"
[[village]]
id = "ho-sao"
name = "Bản Hồ Sáo"
dead_zone = true
head_name = "Giàng A Sử"
head_phone = "0987 654 321"
[[village]]
id = "pa-vay"
name = "Bản Pa Vây Sử"

[[speaker]]
id = "spk-01"
village = "tan-binh"
[[speaker]]
id = "spk-02"
village = "tan-binh"
[[speaker]]
id = "spk-03"
village = "hung-binh"
[[speaker]]
id = "spk-04"
village = "na-da"
kind = "fe"
[[speaker]]
id = "spk-05"
village = "ho-sao"
[[speaker]]
id = "spk-06"
village = "pa-vay"
"#,
        store = store.display()
    )
}

struct Rig {
    _broker: Option<Mosquitto>,
    _dir: tempfile::TempDir,
    backend: Backend,
    port: u16,
    fleet: Option<(CancellationToken, Arc<Mutex<Log>>)>,
}

impl Rig {
    async fn start() -> Rig {
        Rig::start_with(config).await
    }

    /// With the site config `site(mqtt port, store)`.
    async fn start_with(site: fn(u16, &std::path::Path) -> String) -> Rig {
        let broker = Mosquitto::start();
        let dir = tempfile::tempdir().expect("temp dir");
        let cfg = site(broker.port, &dir.path().join("store"));
        let backend = Backend::start(dir.path(), &cfg);
        backend.wait_ready().await;
        Rig {
            port: broker.port,
            _broker: Some(broker),
            _dir: dir,
            backend,
            fleet: None,
        }
    }

    /// Start the simulated smart clusters.
    fn clusters(&mut self, b: Behaviour) -> Arc<Mutex<Log>> {
        self.fleet_of(SMART, b)
    }

    /// Start simulated smart clusters `ids`.
    fn fleet_of(&mut self, ids: &[&str], b: Behaviour) -> Arc<Mutex<Log>> {
        let log = Arc::new(Mutex::new(Log::default()));
        let cancel = CancellationToken::new();
        let port = self.port;
        tokio::spawn(speakers::run(
            move |id: &str| rumqttc::MqttOptions::new(id, "127.0.0.1", port),
            COMMUNE.into(),
            ids.iter().map(|s| s.to_string()).collect(),
            b,
            Arc::clone(&log),
            cancel.clone(),
        ));
        self.fleet = Some((cancel, Arc::clone(&log)));
        log
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let r = reqwest::Client::new()
            .post(format!("{}{path}", self.backend.url))
            .bearer_auth(self.backend.token().await)
            .json(&body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {path}: {e}"));
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn draft(&self, body: Value) -> i64 {
        let (s, v) = self.post("/api/broadcasts", body).await;
        assert_eq!(s, 201, "draft: {v}");
        v["id"].as_i64().expect("id")
    }

    async fn approve(&self, id: i64) -> Value {
        let (s, v) = self
            .post(&format!("/api/broadcasts/{id}/approve"), json!({}))
            .await;
        assert_eq!(s, 200, "approve {id}: {v}");
        v
    }

    async fn overview(&self) -> Value {
        self.backend.get("/api/broadcasts").await
    }

    async fn broadcast(&self, id: i64) -> Value {
        let o = self.overview().await;
        o["broadcasts"]
            .as_array()
            .and_then(|l| l.iter().find(|b| b["id"] == id).cloned())
            .unwrap_or(Value::Null)
    }

    /// Wait until `village` of broadcast `id` is in `state`.
    async fn wait_village(&self, id: i64, village: &str, state: &str) -> Value {
        let mut last = Value::Null;
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let b = self.broadcast(id).await;
            let vs = b["coverage"]
                .as_array()
                .and_then(|l| l.iter().find(|v| v["village"] == village).cloned());
            if let Some(v) = vs {
                if v["state"] == state {
                    return b;
                }
                last = v;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "village {village} of broadcast {id} never became {state}; last {last}\n{}",
                self.backend.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn audit(&self, action: &str) -> Vec<Value> {
        let v = self
            .backend
            .get(&format!("/api/audit?action={action}&limit=50"))
            .await;
        v.as_array().cloned().unwrap_or_default()
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        if let Some((c, _)) = &self.fleet {
            c.cancel();
        }
    }
}

fn operator_text(villages: &[&str], priority: &str) -> Value {
    json!({
        "villages": villages,
        "priority": priority,
        "text_vi": "Thông báo của Ủy ban nhân dân xã Bình Lư: lũ quét có thể xảy ra, bà con không qua suối.",
        "repeats": 1,
        "expires_in_mins": 60,
    })
}

fn speakers_of(log: &Log) -> HashSet<String> {
    log.received.iter().map(|(s, _)| s.clone()).collect()
}

/// Nothing goes out before approval; the approval is audited; the
/// approved broadcast reaches exactly the smart clusters of its villages
/// (not the FE station, not the clusters of other villages).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approval_gates_and_reaches_exactly_the_covered_clusters() {
    let mut rig = Rig::start().await;
    let log = rig.clusters(Behaviour::default());
    let held = rig
        .draft(operator_text(&["tan-binh", "hung-binh"], "emergency"))
        .await;
    // A second broadcast approved after the draft, elsewhere: once it is
    // acknowledged, the worker has had its chance to send the draft.
    let sentinel = rig.draft(operator_text(&["pa-vay"], "routine")).await;
    rig.approve(sentinel).await;
    rig.wait_village(sentinel, "pa-vay", "reached").await;
    assert_eq!(
        speakers_of(&log.lock()),
        HashSet::from(["spk-06".to_owned()]),
        "only the approved broadcast went out"
    );
    let b = rig.broadcast(held).await;
    assert_eq!(b["state"], "draft");
    assert!(b["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["state"] == "planned" || c["state"] == "manual"));

    let a = rig.approve(held).await;
    assert_eq!(a["commands"], 3, "spk-01, spk-02, spk-03: {a}");
    rig.wait_village(held, "tan-binh", "reached").await;
    let b = rig.wait_village(held, "hung-binh", "reached").await;
    let entries = rig.audit("broadcast_approve").await;
    let objects: Vec<&str> = entries
        .iter()
        .filter_map(|e| e["object"].as_str())
        .collect();
    assert!(
        objects.contains(&format!("broadcast:{held}").as_str()),
        "approval audited: {entries:?}"
    );
    assert!(entries.iter().all(|e| e["actor"] == "admin"));
    let l = log.lock().clone();
    let held_keys: HashSet<String> = l
        .received
        .iter()
        .filter(|(_, k)| k.starts_with(&format!("bc{held}-")))
        .map(|(s, _)| s.clone())
        .collect();
    assert_eq!(
        held_keys,
        HashSet::from(["spk-01".into(), "spk-02".into(), "spk-03".into()]),
        "exactly the smart clusters of the covered villages"
    );
    assert_eq!(b["priority"], "emergency");
    // Indicators follow.
    let o = rig.overview().await;
    assert_eq!(o["indicators"]["by_priority"]["emergency"], 1, "{o}");
    assert_eq!(o["indicators"]["by_priority"]["routine"], 1);
    assert_eq!(o["indicators"]["villages_covered"], 3);
}

/// A silent (dead-zone) cluster is sent the command again under the same
/// key, then marked unreachable; its village gets a manual task with the
/// head's name and phone, as the FE-only village does at once; marking a
/// task done is audited and the village counts as reached by hand.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_cluster_is_retried_then_unreachable_and_villages_get_tasks() {
    let mut rig = Rig::start().await;
    let log = rig.clusters(Behaviour {
        silent: HashSet::from(["spk-05".to_owned()]),
        ..Behaviour::default()
    });
    let id = rig
        .draft(operator_text(&["ho-sao", "na-da"], "priority"))
        .await;
    let a = rig.approve(id).await;
    assert_eq!(
        (a["commands"].as_i64(), a["tasks"].as_i64()),
        (Some(1), Some(1))
    );
    let b = rig.wait_village(id, "ho-sao", "manual").await;
    let spk05 = b["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["speaker"] == "spk-05")
        .cloned()
        .unwrap();
    assert_eq!(spk05["state"], "unreachable", "{spk05}");
    let received: Vec<String> = log
        .lock()
        .received
        .iter()
        .filter(|(s, _)| s == "spk-05")
        .map(|(_, k)| k.clone())
        .collect();
    assert!(received.len() >= 2, "retried: {received:?}");
    assert!(
        received.iter().all(|k| k == &received[0]),
        "every retry under the same key: {received:?}"
    );
    let o = rig.overview().await;
    let tasks = o["tasks"].as_array().unwrap();
    let by_village: HashMap<&str, &Value> = tasks
        .iter()
        .map(|t| (t["village"].as_str().unwrap(), t))
        .collect();
    assert_eq!(by_village["ho-sao"]["reason"], "unreachable");
    assert_eq!(by_village["ho-sao"]["head_phone"], "0987 654 321");
    assert_eq!(by_village["na-da"]["reason"], "fe_only");
    assert_eq!(by_village["na-da"]["head_name"], "Lò Văn Pằn");
    assert!(o["indicators"]["clusters_unreachable"].as_i64() >= Some(1));
    let fe = b["coverage"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["village"] == "na-da")
        .cloned()
        .unwrap();
    assert_eq!(fe["state"], "manual");

    let task = by_village["na-da"]["id"].as_i64().unwrap();
    let (s, v) = rig
        .post(
            &format!("/api/tasks/{task}/done"),
            json!({"note": "Đã gọi trưởng bản, đã bật đài FE"}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    rig.wait_village(id, "na-da", "reached_manually").await;
    let (s, _) = rig
        .post(&format!("/api/tasks/{task}/done"), json!({}))
        .await;
    assert_eq!(s, 409, "a done task stays done");
    let entries = rig.audit("broadcast_task_done").await;
    assert!(entries
        .iter()
        .any(|e| e["object"] == format!("task:{task}") && e["outcome"] == "ok"));
}

/// A cluster that answers slower than the retry interval gets the same
/// command again: it answers `duplicate` and plays it once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resent_command_is_not_replayed() {
    let mut rig = Rig::start().await;
    let log = rig.clusters(Behaviour {
        delay: Duration::from_millis(1500),
        ..Behaviour::default()
    });
    let id = rig.draft(operator_text(&["hung-binh"], "emergency")).await;
    rig.approve(id).await;
    rig.wait_village(id, "hung-binh", "reached").await;
    let l = log.lock().clone();
    let got: Vec<&String> = l.received.iter().map(|(_, k)| k).collect();
    assert!(got.len() >= 2, "resent before the answer: {got:?}");
    assert!(got.iter().all(|k| *k == got[0]), "same key: {got:?}");
    assert!(l.duplicates >= 1);
    assert_eq!(
        l.plays_by_key().values().copied().collect::<Vec<_>>(),
        vec![1]
    );
}

/// A cancel stops the pending repeats: play 1 done, plays 2 and 3 never
/// sent, even once their time has come.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_pending_repeats() {
    let mut rig = Rig::start().await;
    let log = rig.clusters(Behaviour::default());
    let mut body = operator_text(&["hung-binh"], "routine");
    body["repeats"] = json!(3);
    body["gap_secs"] = json!(2);
    let id = rig.draft(body).await;
    rig.approve(id).await;
    rig.wait_village(id, "hung-binh", "reached").await;
    let approved_at = std::time::Instant::now();
    let (s, v) = rig
        .post(&format!("/api/broadcasts/{id}/cancel"), json!({}))
        .await;
    assert_eq!(s, 200, "{v}");
    // Wait until play 3 would have been due, then until a broadcast
    // approved after that has been acknowledged (the worker has run).
    while approved_at.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let sentinel = rig.draft(operator_text(&["pa-vay"], "routine")).await;
    rig.approve(sentinel).await;
    rig.wait_village(sentinel, "pa-vay", "reached").await;
    let keys: HashSet<String> = log
        .lock()
        .received
        .iter()
        .filter(|(s, _)| s == "spk-03")
        .map(|(_, k)| k.clone())
        .collect();
    assert_eq!(keys.len(), 1, "only play 1 went out: {keys:?}");
    assert!(keys.iter().next().unwrap().contains("-p1-"));
    let b = rig.broadcast(id).await;
    assert_eq!(b["state"], "cancelled");
    let plays = b["clusters"][0]["plays"].as_array().unwrap().clone();
    let states: Vec<&str> = plays.iter().map(|p| p["state"].as_str().unwrap()).collect();
    assert_eq!(states[1..], ["cancelled", "cancelled"], "{plays:?}");
    let (s, _) = rig
        .post(&format!("/api/broadcasts/{id}/cancel"), json!({}))
        .await;
    assert_eq!(s, 409);
}

/// kill -9 with commands sent but unacknowledged (no cluster listening):
/// after the restart every command goes out again under its own key, and
/// each plays exactly once; the open manual task (with the head's phone)
/// and a draft are still there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_broadcast_loses_no_pending_command() {
    let mut rig = Rig::start().await;
    let id = rig
        .draft(operator_text(
            &["tan-binh", "hung-binh", "na-da"],
            "emergency",
        ))
        .await;
    rig.approve(id).await;
    // A plan still a draft, and the FE-only village's task, survive too.
    let held = rig.draft(operator_text(&["pa-vay"], "routine")).await;
    let tasks_before = rig.overview().await["tasks"].clone();
    assert_eq!(tasks_before.as_array().map(Vec::len), Some(1));
    // Wait until every command was sent at least once.
    let deadline = std::time::Instant::now() + WAIT;
    let keys: HashSet<String> = loop {
        let b = rig.broadcast(id).await;
        let plays: Vec<Value> = b["clusters"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|c| c["plays"].as_array().cloned().unwrap_or_default())
            .collect();
        if plays.len() == 3 && plays.iter().all(|p| p["attempts"].as_i64() >= Some(1)) {
            break plays
                .iter()
                .map(|p| p["key"].as_str().unwrap().to_owned())
                .collect();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "commands never sent: {b}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    rig.backend.kill();
    let log = rig.clusters(Behaviour::default());
    rig.backend.restart();
    rig.backend.wait_ready().await;
    rig.wait_village(id, "tan-binh", "reached").await;
    rig.wait_village(id, "hung-binh", "reached").await;
    let l = log.lock().clone();
    let got: HashSet<String> = l.received.iter().map(|(_, k)| k.clone()).collect();
    assert_eq!(got, keys, "the same commands, under their own keys");
    let plays = l.plays_by_key();
    assert_eq!(plays.len(), 3);
    assert!(plays.values().all(|n| *n == 1), "{plays:?}");
    let o = rig.overview().await;
    assert_eq!(
        o["tasks"], tasks_before,
        "the open task, with the head's phone"
    );
    assert_eq!(o["tasks"][0]["head_phone"], "0912 345 678");
    assert_eq!(rig.broadcast(held).await["state"], "draft");
    rig.wait_village(id, "na-da", "manual").await;
}

/// The wall screen in headless Chromium: while a broadcast is out, the
/// coverage panel replaces the device panel and shows, village by
/// village, each cluster's state (the silent dead-zone cluster
/// unreachable, the others through), the manual tasks with the village
/// head's name and phone from the config, and the indicators as the API
/// has them; an operator at a browser marks a task done from the panel
/// and the village turns "reached by hand" (audited).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_screen_shows_coverage_and_tasks_with_the_heads_phone() {
    let _slot = BROWSER_SLOT.lock().await;
    let mut rig = Rig::start().await;
    rig.clusters(Behaviour {
        silent: HashSet::from(["spk-05".to_owned()]),
        ..Behaviour::default()
    });
    let browser = Browser::launch().await;
    let kiosk = rig.backend.kiosk_token("Màn hình phòng IOC (thử)").await;
    browser
        .open(&format!("{}/?kiosk=1&token={kiosk}", rig.backend.url))
        .await;
    browser
        .wait_js(
            "document.body && document.body.dataset.conn === 'live'",
            "the live screen",
        )
        .await;
    assert_eq!(
        browser
            .eval("document.getElementById('coverage').hidden")
            .await,
        true,
        "no broadcast, no panel"
    );
    let id = rig
        .draft(operator_text(&["tan-binh", "ho-sao", "na-da"], "emergency"))
        .await;
    // A draft shows as waiting for approval.
    browser
        .wait_js(
            &format!("document.querySelector('#coverage .cov-head[data-broadcast=\"{id}\"][data-state=\"draft\"]')"),
            "the draft on the panel",
        )
        .await;
    rig.approve(id).await;
    rig.wait_village(id, "tan-binh", "reached").await;
    rig.wait_village(id, "ho-sao", "manual").await;
    let village = |v: &str| format!("#coverage .cov-village[data-village=\"{v}\"]");
    browser
        .wait_js(
            &format!(
                "document.querySelector('{}[data-state=\"manual\"]') && document.querySelector('{}[data-state=\"reached\"]') && document.querySelectorAll('#coverage .cov-task').length === 2",
                village("ho-sao"),
                village("tan-binh")
            ),
            "coverage: tan-binh reached, ho-sao manual, two tasks",
        )
        .await;
    assert_eq!(
        browser
            .text(&format!(
                "{} .cov-cluster[data-speaker=\"spk-05\"]",
                village("ho-sao")
            ))
            .await,
        "spk-05Không liên lạc được"
    );
    let ok = browser
        .eval(&format!(
            "[...document.querySelectorAll('{} .cov-cluster')].map(c => c.dataset.state)",
            village("tan-binh")
        ))
        .await;
    let ok: Vec<&str> = ok
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert_eq!(ok.len(), 2);
    assert!(
        ok.iter()
            .all(|s| ["acknowledged", "playing", "completed"].contains(s)),
        "{ok:?}"
    );
    assert_eq!(
        browser
            .text(&format!("{} .cov-village-state", village("na-da")))
            .await,
        "Cần gọi trưởng thôn"
    );
    let task = |v: &str| format!("#coverage .cov-task[data-village=\"{v}\"]");
    assert_eq!(
        browser
            .text(&format!("{} .cov-task-head", task("na-da")))
            .await,
        "Lò Văn Pằn0912 345 678"
    );
    assert_eq!(
        browser
            .text(&format!("{} .cov-head-phone", task("ho-sao")))
            .await,
        "0987 654 321"
    );
    // The indicators as the API has them.
    let o = rig.overview().await;
    let ind = &o["indicators"];
    assert_eq!(ind["by_priority"]["emergency"], 1);
    assert_eq!(ind["clusters_unreachable"], 1);
    assert_eq!(ind["villages_covered"], 3);
    assert_eq!(ind["villages_reached_15min"], 1, "{ind}");
    let line = browser.text("#coverage .cov-indicators").await;
    for want in [
        "khẩn cấp 1, ưu tiên 0, thông thường 0",
        "Thôn tới được trong 15 phút: 33,3 % (1/3)",
        "Cụm loa không liên lạc được: 1",
    ] {
        assert!(line.contains(want), "`{want}` in `{line}`");
    }
    assert!(
        browser
            .text("#coverage .cov-reached")
            .await
            .contains("Đã tới 1/3 thôn, bản"),
        "{}",
        browser.text("#coverage .cov-head").await
    );
    assert_eq!(
        browser
            .eval("getComputedStyle(document.querySelector('.panel.devices')).display")
            .await,
        "none",
        "the panel takes the device panel's place"
    );
    browser.screenshot("broadcast-coverage.png").await;
    assert_eq!(
        browser
            .eval("document.querySelectorAll('#coverage .cov-task-done').length")
            .await,
        0,
        "a kiosk marks nothing done"
    );
    assert!(
        browser.exceptions().is_empty(),
        "{:?}",
        browser.exceptions()
    );

    // An operator at a browser marks the FE-only village's task done.
    let admin = rig.backend.token().await;
    browser
        .open(&format!("{}/?token={admin}", rig.backend.url))
        .await;
    let button = format!("{} .cov-task-done", task("na-da"));
    browser
        .wait_js(
            &format!("document.querySelector('{button}')"),
            "the done button",
        )
        .await;
    browser
        .eval(&format!("document.querySelector('{button}').click(); true"))
        .await;
    rig.wait_village(id, "na-da", "reached_manually").await;
    browser
        .wait_js(
            &format!(
                "document.querySelector('{}[data-state=\"reached_manually\"]') && !document.querySelector('{}')",
                village("na-da"),
                task("na-da")
            ),
            "na-da reached by hand, its task gone",
        )
        .await;
    let entries = rig.audit("broadcast_task_done").await;
    assert!(
        entries
            .iter()
            .any(|e| e["actor"] == "admin" && e["outcome"] == "ok"),
        "{entries:?}"
    );
    assert!(
        browser.exceptions().is_empty(),
        "{:?}",
        browser.exceptions()
    );
    browser.close().await;
}

/// A site whose villages have coordinates under the flash-flood fixtures'
/// areas (tests/fixtures/cap): Tà Pa inside the first bulletin's polygon,
/// Phiêng Lư inside the Update's circle, Nậm Sỏ in neither.
fn warning_site(mqtt_port: u16, store: &std::path::Path) -> String {
    format!(
        r#"
[commune]
id = "{COMMUNE}"
name = "xã Bình Lư"
province = "Lai Châu"

[mqtt]
host = "127.0.0.1"
port = {mqtt_port}
backoff_initial_ms = 50
backoff_max_ms = 1000

[http]
listen = "127.0.0.1:0"

[store]
path = "{store}"

[broadcasts]
retry_initial_ms = 400
retry_max_ms = 1000
ack_timeout_secs = 30
tick_ms = 50
repeats = 3
gap_secs = 3600

[[village]]
id = "ta-pa"
name = "Bản Tà Pa"
lat = 22.300
lon = 103.200
[[village]]
id = "phieng-lu"
name = "Bản Phiêng Lư"
lat = 22.350
lon = 103.260
[[village]]
id = "nam-so"
name = "Bản Nậm Sỏ"
lat = 22.400
lon = 103.300

[[speaker]]
id = "spk-11"
village = "ta-pa"
[[speaker]]
id = "spk-12"
village = "ta-pa"
[[speaker]]
id = "spk-21"
village = "phieng-lu"
[[speaker]]
id = "spk-22"
village = "phieng-lu"
kind = "fe"
[[speaker]]
id = "spk-31"
village = "nam-so"
"#,
        store = store.display()
    )
}

fn cap_fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/cap/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap_or_else(|e| panic!("{name}: {e}"))
}

const ALERT_ID: &str =
    "canhbao@kttv-laichau.example.vn|VN.LAICHAU.20260714T093000.LQ-0001|2026-07-14T09:30:00+07:00";
const UPDATE_ID: &str =
    "canhbao@kttv-laichau.example.vn|VN.LAICHAU.20260714T123000.LQ-0002|2026-07-14T12:30:00+07:00";

impl Rig {
    /// Wait for the broadcast relaying bulletin `bulletin`.
    async fn wait_for_bulletin(&self, bulletin: &str) -> Value {
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let o = self.overview().await;
            if let Some(b) = o["broadcasts"]
                .as_array()
                .and_then(|l| l.iter().find(|b| b["bulletin"] == bulletin))
            {
                return b.clone();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no broadcast drafted from {bulletin}: {o}\n{}",
                self.backend.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Wait until broadcast `id` is in `state`.
    async fn wait_state(&self, id: i64, state: &str) -> Value {
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let b = self.broadcast(id).await;
            if b["state"] == state {
                return b;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "broadcast {id} never became {state}: {b}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn play_states(b: &Value) -> Vec<(String, i64, String)> {
    let mut out = Vec::new();
    for c in b["clusters"].as_array().into_iter().flatten() {
        for p in c["plays"].as_array().into_iter().flatten() {
            out.push((
                c["speaker"].as_str().unwrap().to_owned(),
                p["play"].as_i64().unwrap(),
                p["state"].as_str().unwrap().to_owned(),
            ));
        }
    }
    out.sort();
    out
}

/// The whole bulletin chain over a real Mosquitto: a flash-flood CAP
/// bulletin (level 2) is drafted automatically as a `priority` broadcast
/// for exactly the village it covers, with the agency and the bulletin's
/// issue time in the text, and nothing goes out until an operator
/// approves it; approved, it reaches exactly that village's smart
/// clusters. Its Update (level 3, one more village) re-plans: a new
/// `emergency` draft, which once approved supersedes the first plan (its
/// pending repeats cancelled) and reaches the added village. The Cancel
/// ends the plan and its pending repeats; no cluster outside the covered
/// villages ever gets a command, and none plays a command twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flash_flood_bulletin_chain_drafts_replans_and_cancels() {
    let mut rig = Rig::start_with(warning_site).await;
    let log = rig.fleet_of(
        &["spk-11", "spk-12", "spk-21", "spk-31"],
        Behaviour::default(),
    );
    let mut p = kit::Publisher::new(rig.port);
    let topic = format!("ioc/{COMMUNE}/warning/cap");

    p.send(&topic, &cap_fixture("vn-flash-flood-alert.xml"))
        .await;
    let first = rig.wait_for_bulletin(ALERT_ID).await;
    let first_id = first["id"].as_i64().unwrap();
    assert_eq!(first["state"], "draft", "{first}");
    assert_eq!(first["origin"], "warning");
    assert_eq!(first["priority"], "priority", "level 2: {first}");
    assert_eq!(first["villages"], json!(["ta-pa"]));
    let text = first["text_vi"].as_str().unwrap();
    assert!(
        text.contains("Đài Khí tượng Thủy văn tỉnh Lai Châu ban hành bản tin lúc 09 giờ 30 phút ngày 14/07/2026"),
        "{text}"
    );
    assert_eq!(first["issued"], "2026-07-14T09:30:00+07:00");
    // Not approved: nothing sent (a sentinel approved after it went out
    // first and was answered, so the worker had its chance).
    let sentinel = rig.draft(operator_text(&["nam-so"], "routine")).await;
    rig.approve(sentinel).await;
    rig.wait_village(sentinel, "nam-so", "reached").await;
    assert_eq!(
        speakers_of(&log.lock()),
        HashSet::from(["spk-31".to_owned()]),
        "the bulletin's draft waited for approval"
    );
    let a = rig.approve(first_id).await;
    assert_eq!(a["commands"], 6, "2 clusters × 3 plays: {a}");
    rig.wait_village(first_id, "ta-pa", "reached").await;
    let keys_of = |id: i64| -> HashSet<String> {
        log.lock()
            .received
            .iter()
            .filter(|(_, k)| k.starts_with(&format!("bc{id}-")))
            .map(|(s, _)| s.clone())
            .collect()
    };
    assert_eq!(
        keys_of(first_id),
        HashSet::from(["spk-11".to_owned(), "spk-12".to_owned()]),
        "exactly the clusters of the covered village"
    );

    // The Update re-plans.
    p.send(&topic, &cap_fixture("vn-flash-flood-update.xml"))
        .await;
    let second = rig.wait_for_bulletin(UPDATE_ID).await;
    let second_id = second["id"].as_i64().unwrap();
    assert_eq!(second["state"], "draft");
    assert_eq!(second["priority"], "emergency", "level 3: {second}");
    assert_eq!(second["chain"], first["chain"]);
    let mut villages: Vec<&str> = second["villages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    villages.sort();
    assert_eq!(villages, ["phieng-lu", "ta-pa"]);
    assert_eq!(
        rig.broadcast(first_id).await["state"],
        "approved",
        "the plan in force goes on until the new one is approved"
    );
    let a = rig.approve(second_id).await;
    assert_eq!(a["superseded"], json!([first_id]), "{a}");
    let old = rig.wait_state(first_id, "superseded").await;
    let old_plays = play_states(&old);
    assert!(
        old_plays
            .iter()
            .filter(|(_, play, _)| *play > 1)
            .all(|(_, _, s)| s == "cancelled"),
        "the first plan's pending repeats stopped: {old_plays:?}"
    );
    rig.wait_village(second_id, "phieng-lu", "reached").await;
    rig.wait_village(second_id, "ta-pa", "reached").await;
    assert_eq!(
        keys_of(second_id),
        HashSet::from([
            "spk-11".to_owned(),
            "spk-12".to_owned(),
            "spk-21".to_owned()
        ])
    );

    // The Cancel stops it.
    p.send(&topic, &cap_fixture("vn-flash-flood-cancel.xml"))
        .await;
    let ended = rig.wait_state(second_id, "cancelled").await;
    assert_eq!(ended["end_reason"], "bulletin_cancelled");
    let plays = play_states(&ended);
    assert!(
        plays
            .iter()
            .filter(|(_, play, _)| *play > 1)
            .all(|(_, _, s)| s == "cancelled"),
        "{plays:?}"
    );
    let l = log.lock().clone();
    assert!(
        l.received
            .iter()
            .all(|(s, k)| s != "spk-31" || k.starts_with(&format!("bc{sentinel}-"))),
        "nothing of the bulletin to a village it does not cover"
    );
    assert!(
        l.plays_by_key().values().all(|n| *n == 1),
        "{:?}",
        l.plays_by_key()
    );
    let o = rig.overview().await;
    assert_eq!(o["indicators"]["by_priority"]["emergency"], 1);
    assert_eq!(o["indicators"]["by_priority"]["priority"], 1);
    assert_eq!(o["indicators"]["by_priority"]["routine"], 1);
}

/// The demo shows the whole chain: its simulated flash-flood bulletin (15 s
/// after the start) is drafted as a broadcast for the villages it covers,
/// the operator (the demo account) approves it, and the demo's simulated
/// clusters, each its own client through the embedded broker's gate,
/// acknowledge and play it: both villages reached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_goes_from_bulletin_to_coverage() {
    let dir = tempfile::tempdir().unwrap();
    let port_file = dir.path().join("port");
    let out_path = dir.path().join("demo.out");
    let log_path = dir.path().join("demo.log");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_commune-ioc"))
        .current_dir(dir.path())
        .env_remove("IOC_CONFIG")
        .env_remove("IOC_DEMO_STORE")
        .args(["demo", "--listen", "127.0.0.1:0", "--rate", "5"])
        .args(["--speaker-delay-ms", "100", "--speaker-play-secs", "1"])
        .arg("--mqtt-port")
        .arg(kit::free_port().to_string())
        .arg("--store")
        .arg(dir.path().join("store"))
        .arg("--port-file")
        .arg(&port_file)
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .expect("start the demo");
    struct Stop(std::process::Child);
    impl Drop for Stop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let logs = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let deadline = std::time::Instant::now() + WAIT;
    let printed = loop {
        let text = std::fs::read_to_string(&out_path).unwrap_or_default();
        if text.contains("Dừng: Ctrl+C") && port_file.exists() {
            break text;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "demo exited: {}",
            logs()
        );
        assert!(
            std::time::Instant::now() < deadline,
            "demo did not start: {}",
            logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let _stop = Stop(child);
    let url = format!(
        "http://{}",
        std::fs::read_to_string(&port_file).unwrap().trim()
    );
    let password = printed
        .split("mật khẩu ")
        .nth(1)
        .and_then(|r| r.split(|c: char| c.is_whitespace() || c == ')').next())
        .unwrap_or_else(|| panic!("no demo password in {printed}"))
        .to_owned();
    let http = reqwest::Client::new();
    let login: Value = http
        .post(format!("{url}/api/auth/login"))
        .json(&json!({"username": "demo", "password": password}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["token"].as_str().expect("token").to_owned();
    let get = |path: &str| {
        let (http, url, token) = (http.clone(), url.clone(), token.clone());
        let path = path.to_owned();
        async move {
            http.get(format!("{url}{path}"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    // The bulletin comes 15 s after the start.
    let deadline = std::time::Instant::now() + WAIT;
    let drafted = loop {
        let o = get("/api/broadcasts").await;
        if let Some(b) = o["broadcasts"]
            .as_array()
            .and_then(|l| l.iter().find(|b| b["origin"] == "warning"))
        {
            break b.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no broadcast drafted: {o}\n{}",
            logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(drafted["state"], "draft");
    let id = drafted["id"].as_i64().unwrap();
    let r = http
        .post(format!("{url}/api/broadcasts/{id}/approve"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let o = get("/api/broadcasts").await;
        let b = o["broadcasts"]
            .as_array()
            .and_then(|l| l.iter().find(|b| b["id"] == id).cloned())
            .unwrap_or(Value::Null);
        let coverage = b["coverage"].as_array().cloned().unwrap_or_default();
        if !coverage.is_empty() && coverage.iter().all(|v| v["state"] == "reached") {
            let ids: HashSet<&str> = coverage
                .iter()
                .map(|v| v["village"].as_str().unwrap())
                .collect();
            assert_eq!(ids, HashSet::from(["tan-binh", "hung-binh"]));
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not reached: {b}\n{}",
            logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// On the shipped Mosquitto (deploy/mosquitto: one account per client,
/// `use_username_as_clientid`, the ACL), commune-ioc's one connection
/// (account `ioc`) publishes the commands, each cluster's own account
/// reads its own `.../cmd` and answers on `.../ack` and `.../session`,
/// and the broadcast reaches its villages; another cluster's account
/// subscribed to every command topic gets none of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_the_shipped_mosquitto_commands_reach_each_clusters_own_account() {
    let accounts: Vec<(String, String)> =
        std::iter::once(("ioc".to_owned(), "pw-ioc-14".to_owned()))
            .chain(SMART.iter().map(|s| (s.to_string(), format!("pw-{s}"))))
            .collect();
    let refs: Vec<(&str, &str)> = accounts
        .iter()
        .map(|(u, p)| (u.as_str(), p.as_str()))
        .collect();
    let broker = kit::shipped::Shipped::start(&refs);
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(broker.port, &dir.path().join("store")).replacen(
        "[mqtt]\n",
        "[mqtt]\nusername = \"ioc\"\npassword = \"pw-ioc-14\"\n",
        1,
    );
    let backend = Backend::start(dir.path(), &cfg);
    backend.wait_ready().await;
    let mut rig = Rig {
        port: broker.port,
        _broker: None,
        _dir: dir,
        backend,
        fleet: None,
    };
    // The clusters of tan-binh and hung-binh, each on its own account.
    let log = Arc::new(Mutex::new(Log::default()));
    let cancel = CancellationToken::new();
    let port = broker.port;
    tokio::spawn(speakers::run(
        move |id: &str| {
            let mut o = rumqttc::MqttOptions::new(id, "127.0.0.1", port);
            o.set_credentials(id, format!("pw-{id}"));
            o
        },
        COMMUNE.into(),
        vec!["spk-01".into(), "spk-02".into(), "spk-03".into()],
        Behaviour::default(),
        Arc::clone(&log),
        cancel.clone(),
    ));
    rig.fleet = Some((cancel, Arc::clone(&log)));
    // spk-06's account tries to read every cluster's commands.
    let mut spy_opts = rumqttc::MqttOptions::new("spk-06", "127.0.0.1", port);
    spy_opts.set_credentials("spk-06", "pw-spk-06");
    let (spy, mut spy_loop) = rumqttc::AsyncClient::new(spy_opts, 16);
    let spied = Arc::new(Mutex::new(Vec::<String>::new()));
    let spied2 = Arc::clone(&spied);
    let spy_task = tokio::spawn(async move {
        loop {
            match spy_loop.poll().await {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_))) => {
                    let _ = spy
                        .subscribe(
                            format!("ioc/{COMMUNE}/speaker/+/cmd"),
                            rumqttc::QoS::AtLeastOnce,
                        )
                        .await;
                }
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p))) => {
                    spied2.lock().push(p.topic.clone());
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    });
    let id = rig
        .draft(operator_text(&["tan-binh", "hung-binh"], "emergency"))
        .await;
    let a = rig.approve(id).await;
    assert_eq!(a["commands"], 3);
    rig.wait_village(id, "tan-binh", "reached").await;
    let b = rig.wait_village(id, "hung-binh", "reached").await;
    let got = speakers_of(&log.lock());
    assert_eq!(
        got,
        HashSet::from([
            "spk-01".to_owned(),
            "spk-02".to_owned(),
            "spk-03".to_owned()
        ]),
        "each cluster's account got its command: {b}\n{}",
        broker.log()
    );
    // Every cluster went on to play it (session start/end through the ACL).
    rig.wait_village(id, "tan-binh", "reached").await;
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let b = rig.broadcast(id).await;
        if b["clusters"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["state"] == "completed")
        {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "not completed: {b}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        spied.lock().is_empty(),
        "another cluster's account read commands: {:?}",
        spied.lock()
    );
    spy_task.abort();
}

/// Emergency pre-emption, routine waiting: a routine broadcast plays on a
/// cluster; a second routine one is not sent while it plays; an emergency
/// is sent at once and interrupts it; the interrupted play is queued
/// again, and both routine broadcasts go out only once the emergency has
/// ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emergency_preempts_and_routine_broadcasts_wait_for_the_cluster() {
    let mut rig = Rig::start().await;
    let log = rig.clusters(Behaviour {
        play: Duration::from_secs(2),
        ..Behaviour::default()
    });
    let a = rig.draft(operator_text(&["hung-binh"], "routine")).await;
    rig.approve(a).await;
    rig.wait_village(a, "hung-binh", "reached").await;
    let key = |id: i64| format!("bc{id}-spk-03-p1-");
    // Playing (session started).
    let deadline = std::time::Instant::now() + WAIT;
    while !log
        .lock()
        .played
        .iter()
        .any(|(_, k)| k.starts_with(&key(a)))
    {
        assert!(std::time::Instant::now() < deadline, "A never played");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let b = rig.draft(operator_text(&["hung-binh"], "routine")).await;
    rig.approve(b).await;
    let e = rig.draft(operator_text(&["hung-binh"], "emergency")).await;
    rig.approve(e).await;
    // Everything ends: A played again in full, B played, E played.
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let done = |id: i64| {
            log.lock()
                .order
                .iter()
                .any(|(_, k, w)| k.starts_with(&key(id)) && *w == "ended")
        };
        if done(a) && done(b) && done(e) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not all played: {:?}",
            log.lock().order
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let order = log.lock().order.clone();
    let first = |id: i64, what: &str| {
        order
            .iter()
            .position(|(_, k, w)| k.starts_with(&key(id)) && *w == what)
            .unwrap_or_else(|| panic!("no {what} of {id}: {order:?}"))
    };
    assert!(
        first(a, "interrupted") < first(a, "ended"),
        "A was interrupted, then played again in full: {order:?}"
    );
    assert!(
        first(e, "received") < first(a, "interrupted"),
        "the emergency went out while A played: {order:?}"
    );
    assert!(
        first(b, "received") > first(e, "ended"),
        "B waited for the cluster (A, then the emergency): {order:?}"
    );
    assert!(
        first(a, "received") < first(e, "received")
            && order
                .iter()
                .filter(|(_, k, w)| k.starts_with(&key(a)) && *w == "received")
                .count()
                >= 2,
        "A sent again after the interruption: {order:?}"
    );
    let plays = log.lock().plays_by_key();
    let of = |id: i64| {
        plays
            .iter()
            .filter(|(k, _)| k.starts_with(&key(id)))
            .map(|(_, n)| *n)
            .sum::<usize>()
    };
    assert_eq!((of(a), of(b), of(e)), (2, 1, 1), "{plays:?}");
    for id in [a, b, e] {
        rig.wait_state(id, "completed").await;
    }
}
