//! From an alert's escalation deadline to the webhook delivery: the real
//! binary (release), a real Mosquitto, a local HTTP receiver. Each round
//! raises a fire alert (a new zone, so a new alert), waits for its first
//! step, reads its next deadline (`notify_at`, 2 s later) from the API, and
//! takes the time the second step's request reaches the receiver; then
//! acknowledges the alert. The gap is what the engine's evaluation period
//! (`alerts.eval_interval`), the enqueue, the delivery worker's wake-up
//! and the POST add to a deadline.
//!
//! Each round's alert joins the group of the previous ones (same rule and
//! village), so `group_interval` is short: the figure is the deadline's,
//! not the grouping's.
//!
//! Run: `cargo bench --bench alerts` (env BENCH_ROUNDS, default 10;
//! BENCH_EVAL_MS, default 1000: the shipped `eval_interval`).

use std::time::Duration;

use kit::receiver::Receiver;
use kit::{test_config, Backend, Mosquitto, Publisher};
use serde_json::{json, Value};

#[path = "../tests/kit/mod.rs"]
mod kit;

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let load_before = kit::measure::load_average();
    let rounds = env_num("BENCH_ROUNDS", 10) as usize;
    let eval_ms = env_num("BENCH_EVAL_MS", 1000);
    let receiver = Receiver::start().await;
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let url = &receiver.url;
    let config = format!(
        r#"{}
[delivery]
backoff_initial_ms = 100
backoff_max_ms = 300
poll_ms = 1000
[delivery.targets.truc-ban]
url = "{url}/truc-ban"
[delivery.targets.pho-chu-tich]
url = "{url}/pho-chu-tich"
[alerts]
group_wait = "0s"
group_interval = "100ms"
eval_interval = "{eval_ms}ms"
[[alerts.rule]]
id = "chay"
name = "Phát hiện cháy"
kind = "camera"
events = ["fire"]
[[alerts.escalation]]
name = "Cán bộ trực ban"
after = "0s"
targets = ["truc-ban"]
[[alerts.escalation]]
name = "Phó Chủ tịch UBND xã"
after = "2s"
targets = ["pho-chu-tich"]
"#,
        test_config(broker.port, &dir.path().join("store"))
    );
    let b = Backend::start_with_env(dir.path(), &config, &[("RUST_LOG", "warn")]);
    b.wait_ready().await;
    let token = b.token().await;
    let http = reqwest::Client::new();
    let mut p = Publisher::new(broker.port);
    let mut gaps_ms: Vec<f64> = Vec::new();
    for i in 0..rounds {
        let zone = format!("vung-{i}");
        let payload =
            json!({ "kind": "fire", "ts": chrono::Utc::now().to_rfc3339(), "zone": zone });
        p.send(
            "ioc/binh-lu/camera/cam-01/event",
            payload.to_string().as_bytes(),
        )
        .await;
        let fp = format!("rule:chay:cam-01:fire:{zone}");
        // The first step went out: the alert's next deadline is set.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let (id, notify_at) = loop {
            let v: Value = http
                .get(format!("{}/api/alerts?state=firing", b.url))
                .bearer_auth(&token)
                .send()
                .await
                .expect("GET /api/alerts")
                .json()
                .await
                .expect("JSON");
            let hit = v["items"].as_array().and_then(|a| {
                a.iter()
                    .find(|a| a["fingerprint"] == fp && a["escalation_step"] == 1)
                    .cloned()
            });
            if let Some(a) = hit {
                let at = chrono::DateTime::parse_from_rfc3339(a["notify_at"].as_str().unwrap())
                    .unwrap()
                    .with_timezone(&chrono::Utc);
                break (a["id"].as_i64().unwrap(), at);
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "round {i}: no first step"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let key = format!("alert:{id}:step:1:0:pho-chu-tich");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let arrived = loop {
            if let Some(r) = receiver
                .received()
                .into_iter()
                .find(|r| r.header("idempotency-key") == key)
            {
                break r.at;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "round {i}: no second step"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        gaps_ms.push((arrived - notify_at).num_microseconds().unwrap_or(0) as f64 / 1000.0);
        http.post(format!("{}/api/alerts/{id}/ack", b.url))
            .bearer_auth(&token)
            .send()
            .await
            .expect("ack");
    }
    // The bare peer: the same webhook body POSTed straight to the same
    // receiver, one at a time (ms until the receiver has it).
    let body = receiver
        .received()
        .into_iter()
        .next()
        .map(|r| r.body.clone())
        .unwrap_or_default();
    let mut bare_ms: Vec<f64> = Vec::new();
    for i in 0..rounds {
        let before = receiver.received().len();
        let t0 = chrono::Utc::now();
        http.post(format!("{url}/bare"))
            .header("content-type", "application/json")
            .header("idempotency-key", format!("bare-{i}"))
            .body(body.clone())
            .send()
            .await
            .expect("bare POST");
        let r = receiver.wait_for(before + 1, Duration::from_secs(10)).await;
        let at = r[before].at;
        bare_ms.push((at - t0).num_microseconds().unwrap_or(0) as f64 / 1000.0);
    }
    bare_ms.sort_by(f64::total_cmp);
    gaps_ms.sort_by(f64::total_cmp);
    let mean = gaps_ms.iter().sum::<f64>() / gaps_ms.len() as f64;
    println!("alerts: escalation deadline → webhook received, {rounds} rounds, eval_interval {eval_ms} ms");
    println!(
        "  min {:.1} ms, p50 {:.1} ms, p90 {:.1} ms, max {:.1} ms, mean {:.1} ms",
        gaps_ms[0],
        quantile(&gaps_ms, 0.5),
        quantile(&gaps_ms, 0.9),
        gaps_ms[gaps_ms.len() - 1],
        mean
    );
    println!(
        "  bare peer (the same body POSTed straight to the receiver): p50 {:.1} ms, max {:.1} ms",
        quantile(&bare_ms, 0.5),
        bare_ms[bare_ms.len() - 1]
    );
    let profile = if cfg!(debug_assertions) {
        "--profile dev (debug binary)"
    } else {
        "(release binary)"
    };
    println!("  command: BENCH_ROUNDS={rounds} BENCH_EVAL_MS={eval_ms} cargo bench --bench alerts {profile}");
    println!(
        "  load average: {load_before} before, {} after",
        kit::measure::load_average()
    );
}
