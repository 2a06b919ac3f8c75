//! Simulated smart loudspeaker clusters that obey broadcast commands
//! (docs/PROTOCOL.md §9): each command on `ioc/{commune}/speaker/{id}/cmd`
//! is answered on `.../ack` (`accepted`, or `duplicate` for a key already
//! taken, `expired` past its `expires_at`), then played: a session `start`
//! and, after the play time, an `end` on `.../session` with the command's
//! key as `session_id`. A duplicate key is never played twice.
//!
//! Failures are configurable: a share of commands lost (never answered,
//! as a dropped 3G link would), a delay before the answer, and dead-zone
//! clusters that never answer at all.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use chrono_tz::Asia::Ho_Chi_Minh;
use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

/// How the simulated clusters behave.
#[derive(Debug, Clone)]
pub struct Behaviour {
    /// Share of commands lost (0.0–1.0): received, never answered.
    pub loss: f64,
    /// Wait before answering a command.
    pub delay: Duration,
    /// How long a play lasts (session start → end).
    pub play: Duration,
    /// Clusters that never answer (mobile dead zones).
    pub silent: HashSet<String>,
    /// Seed of the loss draw.
    pub seed: u64,
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour {
            loss: 0.0,
            delay: Duration::from_millis(50),
            play: Duration::from_millis(200),
            silent: HashSet::new(),
            seed: 14,
        }
    }
}

/// What the clusters saw and did.
#[derive(Debug, Default, Clone)]
pub struct Log {
    /// Every command delivery: (speaker, key), resends included.
    pub received: Vec<(String, String)>,
    /// Every play started: (speaker, key).
    pub played: Vec<(String, String)>,
    /// Deliveries dropped by the loss draw or by silence.
    pub dropped: usize,
    /// Answers `duplicate` given.
    pub duplicates: usize,
}

impl Log {
    /// Plays per key (a correct run has 1 everywhere).
    pub fn plays_by_key(&self) -> HashMap<String, usize> {
        let mut m = HashMap::new();
        for (_, k) in &self.played {
            *m.entry(k.clone()).or_insert(0) += 1;
        }
        m
    }
}

fn local_now() -> String {
    Utc::now()
        .with_timezone(&Ho_Chi_Minh)
        .to_rfc3339_opts(SecondsFormat::Millis, false)
}

/// Run clusters `speakers` of `commune` over the broker of `opts` until
/// `cancel`; what they do goes to `log`.
pub async fn run(
    mut opts: MqttOptions,
    commune: String,
    speakers: Vec<String>,
    behaviour: Behaviour,
    log: Arc<Mutex<Log>>,
    cancel: CancellationToken,
) {
    opts.set_clean_session(true);
    let (client, mut eventloop) = AsyncClient::new(opts, 1024);
    let fleet: HashSet<String> = speakers.into_iter().collect();
    // Keys taken per speaker (the device's de-duplication memory).
    let mut taken: HashMap<String, HashSet<String>> = HashMap::new();
    let mut rng = StdRng::seed_from_u64(behaviour.seed);
    loop {
        let ev = tokio::select! {
            _ = cancel.cancelled() => break,
            ev = eventloop.poll() => ev,
        };
        match ev {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                let f = format!("ioc/{commune}/speaker/+/cmd");
                let _ = client.subscribe(f, QoS::AtLeastOnce).await;
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                let levels: Vec<&str> = p.topic.split('/').collect();
                let ["ioc", _, "speaker", id, "cmd"] = levels.as_slice() else {
                    continue;
                };
                let id = (*id).to_owned();
                if !fleet.contains(&id) {
                    continue;
                }
                let Ok(cmd) = serde_json::from_slice::<Value>(&p.payload) else {
                    continue;
                };
                let Some(key) = cmd["idempotency_key"].as_str().map(str::to_owned) else {
                    continue;
                };
                log.lock().received.push((id.clone(), key.clone()));
                if behaviour.silent.contains(&id) || rng.random::<f64>() < behaviour.loss {
                    log.lock().dropped += 1;
                    continue;
                }
                let expired = cmd["expires_at"]
                    .as_str()
                    .and_then(|e| DateTime::parse_from_rfc3339(e).ok())
                    .is_some_and(|e| e.with_timezone(&Utc) <= Utc::now());
                let fresh = taken.entry(id.clone()).or_default().insert(key.clone());
                let status = if !fresh {
                    log.lock().duplicates += 1;
                    "duplicate"
                } else if expired {
                    "expired"
                } else {
                    "accepted"
                };
                let (client, commune, log, b) = (
                    client.clone(),
                    commune.clone(),
                    Arc::clone(&log),
                    behaviour.clone(),
                );
                let priority = cmd["priority"].as_str().unwrap_or("routine").to_owned();
                tokio::spawn(async move {
                    tokio::time::sleep(b.delay).await;
                    let ack = json!({"idempotency_key": key, "status": status, "ts": local_now()});
                    let base = format!("ioc/{commune}/speaker/{id}");
                    let _ = client
                        .publish(
                            format!("{base}/ack"),
                            QoS::AtLeastOnce,
                            false,
                            ack.to_string(),
                        )
                        .await;
                    if status != "accepted" {
                        return;
                    }
                    log.lock().played.push((id.clone(), key.clone()));
                    let start = json!({"ts": local_now(), "session_id": key, "event": "start",
                        "priority": priority, "content": "Bản tin cảnh báo"});
                    let _ = client
                        .publish(
                            format!("{base}/session"),
                            QoS::AtLeastOnce,
                            false,
                            start.to_string(),
                        )
                        .await;
                    tokio::time::sleep(b.play).await;
                    let end = json!({"ts": local_now(), "session_id": key, "event": "end",
                        "priority": priority, "duration_s": b.play.as_secs_f64()});
                    let _ = client
                        .publish(
                            format!("{base}/session"),
                            QoS::AtLeastOnce,
                            false,
                            end.to_string(),
                        )
                        .await;
                });
            }
            Ok(_) => {}
            Err(_) => {
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                }
            }
        }
    }
    let _ = client.disconnect().await;
}
