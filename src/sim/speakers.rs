//! Simulated smart loudspeaker clusters that obey broadcast commands
//! (docs/PROTOCOL.md §8). Each cluster is its own MQTT client (client id
//! and, on a broker with accounts, login = its id), subscribed to its own
//! `ioc/{commune}/speaker/{id}/cmd` only, as a real device is allowed to
//! (the shipped Mosquitto ACL, the embedded broker's gate). Each command
//! is answered on `.../ack`:
//!
//! - `duplicate` for a key already taken (never played twice);
//! - `expired` past its `expires_at`;
//! - `busy` while the cluster plays another broadcast and the command does
//!   not pre-empt (`"preempt": false`; the sender retries later);
//! - `accepted` otherwise, then played: a session `start` and, after the
//!   play time, an `end` on `.../session` with the key as `session_id`. An
//!   emergency (`"preempt": true`) interrupts what plays: that session ends
//!   with `"result": "interrupted"` and its key is released (sent again
//!   once the cluster is free, it plays from the start).
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
    /// Every play ended: (speaker, key, interrupted).
    pub ended: Vec<(String, String, bool)>,
    /// Deliveries dropped by the loss draw or by silence.
    pub dropped: usize,
    /// Answers `duplicate` given.
    pub duplicates: usize,
    /// Answers `busy` given: (speaker, key).
    pub busy: Vec<(String, String)>,
    /// Everything above in the order it happened: (speaker, key, what),
    /// `what` one of `received`, `busy`, `played`, `ended`, `interrupted`.
    pub order: Vec<(String, String, &'static str)>,
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

/// Most entries kept per list of the [`Log`] (a long demo run stays
/// bounded; the counts go on).
pub const MAX_LOG: usize = 100_000;

fn keep<T>(v: &mut Vec<T>, x: T) {
    if v.len() < MAX_LOG {
        v.push(x);
    }
}

fn local_now() -> String {
    Utc::now()
        .with_timezone(&Ho_Chi_Minh)
        .to_rfc3339_opts(SecondsFormat::Millis, false)
}

/// Run clusters `speakers` of `commune` until `cancel`, each on its own
/// connection made from `options(id)`; what they do goes to `log`.
pub async fn run<F>(
    options: F,
    commune: String,
    speakers: Vec<String>,
    behaviour: Behaviour,
    log: Arc<Mutex<Log>>,
    cancel: CancellationToken,
) where
    F: Fn(&str) -> MqttOptions,
{
    let mut tasks = Vec::new();
    for (i, id) in speakers.into_iter().enumerate() {
        let opts = options(&id);
        let b = Behaviour {
            seed: behaviour.seed.wrapping_add(i as u64 * 7919),
            ..behaviour.clone()
        };
        tasks.push(tokio::spawn(cluster(
            opts,
            commune.clone(),
            id,
            b,
            Arc::clone(&log),
            cancel.clone(),
        )));
    }
    for t in tasks {
        let _ = t.await;
    }
}

/// What a cluster is playing: the key, and how to interrupt it.
type Playing = Arc<Mutex<Option<(String, CancellationToken)>>>;

async fn cluster(
    mut opts: MqttOptions,
    commune: String,
    id: String,
    b: Behaviour,
    log: Arc<Mutex<Log>>,
    cancel: CancellationToken,
) {
    opts.set_clean_session(true);
    let (client, mut eventloop) = AsyncClient::new(opts, 64);
    let cmd_topic = format!("ioc/{commune}/speaker/{id}/cmd");
    let base = format!("ioc/{commune}/speaker/{id}");
    // Keys taken (the device's de-duplication memory).
    // An interrupted play releases its key: a resend plays it again.
    let taken: Arc<Mutex<HashSet<String>>> = Arc::default();
    let playing: Playing = Arc::default();
    let mut rng = StdRng::seed_from_u64(b.seed);
    loop {
        let ev = tokio::select! {
            _ = cancel.cancelled() => break,
            ev = eventloop.poll() => ev,
        };
        match ev {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                let _ = client.subscribe(cmd_topic.clone(), QoS::AtLeastOnce).await;
            }
            Ok(Event::Incoming(Packet::Publish(p))) if p.topic == cmd_topic => {
                let Ok(cmd) = serde_json::from_slice::<Value>(&p.payload) else {
                    continue;
                };
                let Some(key) = cmd["idempotency_key"].as_str().map(str::to_owned) else {
                    continue;
                };
                {
                    let mut l = log.lock();
                    keep(&mut l.received, (id.clone(), key.clone()));
                    keep(&mut l.order, (id.clone(), key.clone(), "received"));
                }
                if b.silent.contains(&id) || rng.random::<f64>() < b.loss {
                    log.lock().dropped += 1;
                    continue;
                }
                let expired = cmd["expires_at"]
                    .as_str()
                    .and_then(|e| DateTime::parse_from_rfc3339(e).ok())
                    .is_some_and(|e| e.with_timezone(&Utc) <= Utc::now());
                let preempt = cmd["preempt"].as_bool().unwrap_or(false);
                let status = if taken.lock().contains(&key) {
                    log.lock().duplicates += 1;
                    "duplicate"
                } else if expired {
                    "expired"
                } else {
                    let mut slot = playing.lock();
                    match slot.as_ref() {
                        Some((other, _)) if other != &key && !preempt => {
                            let mut l = log.lock();
                            keep(&mut l.busy, (id.clone(), key.clone()));
                            keep(&mut l.order, (id.clone(), key.clone(), "busy"));
                            "busy"
                        }
                        _ => {
                            if let Some((_, stop)) = slot.take() {
                                stop.cancel();
                            }
                            *slot = Some((key.clone(), CancellationToken::new()));
                            taken.lock().insert(key.clone());
                            "accepted"
                        }
                    }
                };
                let stop = playing
                    .lock()
                    .as_ref()
                    .filter(|(k, _)| k == &key)
                    .map(|(_, s)| s.clone());
                let (client, base, log, b, id, playing, taken) = (
                    client.clone(),
                    base.clone(),
                    Arc::clone(&log),
                    b.clone(),
                    id.clone(),
                    Arc::clone(&playing),
                    Arc::clone(&taken),
                );
                let priority = cmd["priority"].as_str().unwrap_or("routine").to_owned();
                tokio::spawn(async move {
                    tokio::time::sleep(b.delay).await;
                    let ack = json!({"idempotency_key": key, "status": status, "ts": local_now()});
                    let _ = client
                        .publish(
                            format!("{base}/ack"),
                            QoS::AtLeastOnce,
                            false,
                            ack.to_string(),
                        )
                        .await;
                    let (true, Some(stop)) = (status == "accepted", stop) else {
                        return;
                    };
                    {
                        let mut l = log.lock();
                        keep(&mut l.played, (id.clone(), key.clone()));
                        keep(&mut l.order, (id.clone(), key.clone(), "played"));
                    }
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
                    let began = std::time::Instant::now();
                    let interrupted = tokio::select! {
                        _ = tokio::time::sleep(b.play) => false,
                        _ = stop.cancelled() => true,
                    };
                    if interrupted {
                        taken.lock().remove(&key);
                    }
                    {
                        let mut slot = playing.lock();
                        if slot.as_ref().is_some_and(|(k, _)| k == &key) {
                            *slot = None;
                        }
                    }
                    {
                        let mut l = log.lock();
                        keep(&mut l.ended, (id.clone(), key.clone(), interrupted));
                        let what = if interrupted { "interrupted" } else { "ended" };
                        keep(&mut l.order, (id.clone(), key.clone(), what));
                    }
                    let end = json!({"ts": local_now(), "session_id": key, "event": "end",
                        "priority": priority, "duration_s": began.elapsed().as_secs_f64(),
                        "result": if interrupted { "interrupted" } else { "completed" }});
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
    if let Some((_, stop)) = playing.lock().take() {
        stop.cancel();
    }
    let _ = client.disconnect().await;
}

/// The simulated clusters of a site: every smart cluster of `config`,
/// each connecting anonymously to `host:port` under its own id as client
/// id; with `dead_zones_silent`, the clusters of villages marked
/// `dead_zone` never answer. Runs until `cancel`.
pub async fn fleet(
    config: &crate::config::Config,
    host: &str,
    port: u16,
    mut behaviour: Behaviour,
    dead_zones_silent: bool,
    cancel: CancellationToken,
) {
    let smart: Vec<&crate::config::Speaker> = config
        .speakers
        .iter()
        .filter(|s| s.kind == crate::config::SpeakerKind::Smart)
        .collect();
    if dead_zones_silent {
        for s in &smart {
            let dead = s
                .village
                .as_ref()
                .is_some_and(|v| config.villages.iter().any(|x| &x.id == v && x.dead_zone));
            if dead {
                behaviour.silent.insert(s.id.clone());
            }
        }
    }
    tracing::info!(
        clusters = smart.len(),
        silent = behaviour.silent.len(),
        loss = behaviour.loss,
        "simulated loudspeaker clusters obey commands"
    );
    let host = host.to_owned();
    run(
        move |id| {
            let mut o = MqttOptions::new(id, host.clone(), port);
            o.set_keep_alive(Duration::from_secs(30));
            o
        },
        config.commune.id.clone(),
        smart.iter().map(|s| s.id.clone()).collect(),
        behaviour,
        Arc::new(Mutex::new(Log::default())),
        cancel,
    )
    .await;
}
