//! From an operator's approval to the last acknowledgement, for Lùng
//! Phình's smart loudspeaker clusters: the real binary (release), a real
//! Mosquitto on loopback, the site of `config/examples/lung-phinh.toml`
//! (53 clusters in 20 villages, the smart ones driven over MQTT) and the
//! simulated clusters (`commune_ioc::sim::speakers`, each its own MQTT
//! client, answering at once). Each round drafts an emergency broadcast
//! to all 20 villages, approves it, and takes, from the store's own
//! times, approval → the last smart cluster's acknowledgement. Then the
//! same with 10 % of commands lost (never answered: the retry after
//! `retry_initial_ms` brings them in).
//!
//! The bare peer, in the same run: a plain MQTT client publishes the same
//! command payloads to the same clusters through the same broker and waits
//! for every acknowledgement (no store, no worker tick): what Mosquitto and
//! the clusters alone cost.
//!
//! Run: `cargo bench --bench broadcasts` (env BENCH_ROUNDS, default 5;
//! the shipped `[broadcasts]` settings: tick 250 ms, first retry 2 s).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use commune_ioc::sim::speakers::{self, Behaviour, Log};
use kit::{Backend, Mosquitto};
use parking_lot::Mutex;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

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

fn site(port: u16, store: &std::path::Path) -> String {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/examples/lung-phinh.toml"
    ))
    .expect("read the Lùng Phình example");
    let mut out = String::new();
    let mut section = String::new();
    for line in text.lines() {
        if line.starts_with('[') {
            section = line.to_owned();
        }
        let t = line.trim_start();
        let line = match section.as_str() {
            "[mqtt]" if t.starts_with("host ") => "host = \"127.0.0.1\"".to_owned(),
            "[mqtt]" if t.starts_with("port ") => format!("port = {port}"),
            "[mqtt]" if t.starts_with("tls ") || t.starts_with("username ") => String::new(),
            "[http]" if t.starts_with("listen ") => "listen = \"127.0.0.1:0\"".to_owned(),
            "[store]" if t.starts_with("path ") => format!("path = \"{}\"", store.display()),
            _ => line.to_owned(),
        };
        out.push_str(&line);
        out.push('\n');
    }
    out
}

struct Stats {
    ms: Vec<f64>,
    resent: usize,
}

fn show(name: &str, s: &mut Stats) {
    s.ms.sort_by(f64::total_cmp);
    let mean = s.ms.iter().sum::<f64>() / s.ms.len() as f64;
    println!(
        "  {name}: min {:.0} ms, p50 {:.0} ms, max {:.0} ms, mean {:.0} ms ({} rounds; commands sent again: {})",
        s.ms[0],
        quantile(&s.ms, 0.5),
        s.ms[s.ms.len() - 1],
        mean,
        s.ms.len(),
        s.resent
    );
}

fn at_ms(v: &Value) -> i64 {
    chrono::DateTime::parse_from_rfc3339(v.as_str().expect("time"))
        .expect("RFC 3339")
        .timestamp_millis()
}

/// Rounds of approve → last acknowledgement with clusters behaving as `b`.
async fn rounds(
    backend: &Backend,
    port: u16,
    smart: &[String],
    villages: &[String],
    b: Behaviour,
    n: usize,
) -> Stats {
    let log = Arc::new(Mutex::new(Log::default()));
    let cancel = CancellationToken::new();
    let fleet = tokio::spawn(speakers::run(
        move |id: &str| MqttOptions::new(id, "127.0.0.1", port),
        "lung-phinh".into(),
        smart.to_vec(),
        b,
        Arc::clone(&log),
        cancel.clone(),
    ));
    // Every cluster connected and subscribed: a warm-up round.
    let http = reqwest::Client::new();
    let token = backend.token().await;
    let mut stats = Stats {
        ms: Vec::new(),
        resent: 0,
    };
    for round in 0..=n {
        let r: Value = http
            .post(format!("{}/api/broadcasts", backend.url))
            .bearer_auth(&token)
            .json(&json!({"villages": villages, "priority": "emergency", "repeats": 1,
                "text_vi": "Thông báo khẩn của Ủy ban nhân dân xã Lùng Phình: lũ quét, bà con tránh xa suối.",
                "expires_in_mins": 30}))
            .send()
            .await
            .expect("draft")
            .json()
            .await
            .expect("draft JSON");
        let id = r["id"].as_i64().expect("id");
        let a = http
            .post(format!("{}/api/broadcasts/{id}/approve", backend.url))
            .bearer_auth(&token)
            .send()
            .await
            .expect("approve");
        assert!(a.status().is_success());
        let deadline = Instant::now() + Duration::from_secs(120);
        let (b, acked) = loop {
            let o = backend.get("/api/broadcasts").await;
            let b = o["broadcasts"]
                .as_array()
                .and_then(|l| l.iter().find(|x| x["id"] == id).cloned())
                .unwrap_or(Value::Null);
            let acked: Vec<i64> = b["clusters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|c| c["kind"] == "smart")
                .filter(|c| !c["acknowledged"].is_null())
                .map(|c| at_ms(&c["acknowledged"]))
                .collect();
            if acked.len() == smart.len() {
                break (b, acked);
            }
            assert!(
                Instant::now() < deadline,
                "round {round}: not all acknowledged: {b}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        if round == 0 {
            continue;
        }
        let approved = at_ms(&b["approved"]);
        let last = acked.into_iter().max().unwrap();
        stats.ms.push((last - approved) as f64);
        stats.resent += b["clusters"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|c| c["plays"].as_array().cloned().unwrap_or_default())
            .map(|p| p["attempts"].as_u64().unwrap_or(0).saturating_sub(1) as usize)
            .sum::<usize>();
    }
    cancel.cancel();
    let _ = fleet.await;
    stats
}

/// The bare peer: the same payloads published straight to the clusters,
/// time to every acknowledgement.
async fn bare(port: u16, smart: &[String], n: usize) -> Stats {
    let log = Arc::new(Mutex::new(Log::default()));
    let cancel = CancellationToken::new();
    let fleet = tokio::spawn(speakers::run(
        move |id: &str| MqttOptions::new(id, "127.0.0.1", port),
        "lung-phinh".into(),
        smart.to_vec(),
        Behaviour {
            delay: Duration::ZERO,
            play: Duration::from_millis(50),
            ..Behaviour::default()
        },
        Arc::clone(&log),
        cancel.clone(),
    ));
    let (client, mut ev) = AsyncClient::new(MqttOptions::new("bench-bare", "127.0.0.1", port), 256);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let poller = tokio::spawn(async move {
        loop {
            match ev.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    let _ = client
                        .subscribe("ioc/lung-phinh/speaker/+/ack", QoS::AtLeastOnce)
                        .await;
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let v: Value = serde_json::from_slice(&p.payload).unwrap_or(Value::Null);
                    if let Some(k) = v["idempotency_key"].as_str() {
                        let _ = tx.send(k.to_owned());
                    }
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
    });
    let (pubc, mut pubev) =
        AsyncClient::new(MqttOptions::new("bench-bare-pub", "127.0.0.1", port), 256);
    tokio::spawn(async move { while pubev.poll().await.is_ok() {} });
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut stats = Stats {
        ms: Vec::new(),
        resent: 0,
    };
    for round in 0..=n {
        let keys: HashSet<String> = smart.iter().map(|s| format!("bare{round}-{s}")).collect();
        let t0 = Instant::now();
        for s in smart {
            let exp = (chrono::Utc::now() + chrono::TimeDelta::minutes(30)).to_rfc3339();
            let payload = json!({"v": 1, "cmd": "play", "idempotency_key": format!("bare{round}-{s}"),
                "priority": "emergency", "preempt": true, "expires_at": exp, "tts_text": "Thông báo khẩn"});
            pubc.publish(
                format!("ioc/lung-phinh/speaker/{s}/cmd"),
                QoS::AtLeastOnce,
                false,
                payload.to_string(),
            )
            .await
            .expect("publish");
        }
        let mut left = keys;
        while !left.is_empty() {
            let k = tokio::time::timeout(Duration::from_secs(30), rx.recv())
                .await
                .expect("bare: acknowledgement")
                .expect("ack channel");
            left.remove(&k);
        }
        if round > 0 {
            stats.ms.push(t0.elapsed().as_secs_f64() * 1000.0);
        }
    }
    cancel.cancel();
    let _ = fleet.await;
    poller.abort();
    stats
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let load_before = kit::measure::load_average();
    let n = env_num("BENCH_ROUNDS", 5) as usize;
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let toml = site(broker.port, &dir.path().join("store"));
    let cfg = commune_ioc::config::load_str(&toml, "lung-phinh", &[]).expect("the example loads");
    let smart: Vec<String> = cfg
        .speakers
        .iter()
        .filter(|s| s.kind == commune_ioc::config::SpeakerKind::Smart)
        .map(|s| s.id.clone())
        .collect();
    let villages: Vec<String> = cfg.villages.iter().map(|v| v.id.clone()).collect();
    let backend = Backend::start_with_env(dir.path(), &toml, &[("RUST_LOG", "warn")]);
    backend.wait_ready().await;
    let answer = Behaviour {
        delay: Duration::ZERO,
        play: Duration::from_millis(50),
        ..Behaviour::default()
    };
    let mut clean = rounds(&backend, broker.port, &smart, &villages, answer.clone(), n).await;
    let mut lossy = rounds(
        &backend,
        broker.port,
        &smart,
        &villages,
        Behaviour {
            loss: 0.1,
            seed: 2026,
            ..answer
        },
        n,
    )
    .await;
    let mut peer = bare(broker.port, &smart, n).await;
    println!(
        "broadcasts: approval → last acknowledgement, {} smart clusters in {} villages (Lùng Phình), emergency, Mosquitto on loopback",
        smart.len(),
        villages.len()
    );
    show("no loss", &mut clean);
    show("10 % of commands lost", &mut lossy);
    show(
        "bare peer (same payloads straight through Mosquitto, no store)",
        &mut peer,
    );
    let profile = if cfg!(debug_assertions) {
        "--profile dev (debug binary)"
    } else {
        "(release binary)"
    };
    println!("  command: BENCH_ROUNDS={n} cargo bench --bench broadcasts {profile}");
    println!(
        "  load average: {load_before} before, {} after",
        kit::measure::load_average()
    );
}
