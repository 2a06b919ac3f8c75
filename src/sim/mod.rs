//! A traffic generator for a commune: dossier lifecycle events, camera
//! people counts and detections, loudspeaker status and broadcast sessions,
//! sensor telemetry. The demo, `commune-ioc simulate` and the benchmarks use
//! it. The mix follows the seed documents: most dossiers are received online
//! (Bình Lư reports ~99 %), almost all resolved on time, and 60–70 % paid
//! online.
//!
//! [`bulletin`] adds official warnings: a flash-flood/landslide bulletin
//! chain in CAP 1.2 (alert, update, cancel) on a [`bulletin::Cadence`].

pub mod bulletin;
pub mod speakers;

use std::collections::VecDeque;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use chrono_tz::Asia::Ho_Chi_Minh;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rumqttc::{AsyncClient, MqttOptions, QoS};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, SpeakerKind};

/// One message to publish.
#[derive(Debug, Clone)]
pub struct Message {
    /// Topic.
    pub topic: String,
    /// Payload.
    pub payload: Vec<u8>,
    /// Retain flag (status topics).
    pub retain: bool,
}

/// Deterministic commune traffic.
#[derive(Debug)]
pub struct Traffic {
    commune: String,
    villages: Vec<String>,
    cameras: Vec<String>,
    speakers: Vec<String>,
    sensors: Vec<(String, String)>,
    rng: StdRng,
    next_dossier: u64,
    open_dossiers: VecDeque<String>,
    seq: u64,
    run_id: u32,
}

fn local_ts(t: DateTime<Utc>) -> String {
    t.with_timezone(&Ho_Chi_Minh)
        .to_rfc3339_opts(SecondsFormat::Millis, false)
}

impl Traffic {
    /// Traffic for the devices and villages of `config`, from `seed`.
    pub fn new(config: &Config, seed: u64) -> Traffic {
        let mut rng = StdRng::seed_from_u64(seed);
        Traffic {
            commune: config.commune.id.clone(),
            villages: config.villages.iter().map(|v| v.id.clone()).collect(),
            cameras: config.cameras.iter().map(|c| c.id.clone()).collect(),
            speakers: config
                .speakers
                .iter()
                .filter(|s| s.kind == SpeakerKind::Smart)
                .map(|s| s.id.clone())
                .collect(),
            sensors: config
                .sensors
                .iter()
                .map(|s| (s.id.clone(), s.kind.clone()))
                .collect(),
            run_id: rng.random(),
            rng,
            next_dossier: 0,
            open_dossiers: VecDeque::new(),
            seq: 0,
        }
    }

    /// Retained `online` status for every camera and smart speaker: what
    /// devices publish when they connect.
    pub fn hello(&self) -> Vec<Message> {
        let c = &self.commune;
        self.cameras
            .iter()
            .map(|id| format!("ioc/{c}/camera/{id}/status"))
            .chain(
                self.speakers
                    .iter()
                    .map(|id| format!("ioc/{c}/speaker/{id}/status")),
            )
            .chain(
                self.sensors
                    .iter()
                    .map(|(id, _)| format!("ioc/{c}/sensor/{id}/status")),
            )
            .map(|topic| Message {
                topic,
                payload: b"online".to_vec(),
                retain: true,
            })
            .collect()
    }

    fn pick<'a>(rng: &mut StdRng, items: &'a [String]) -> Option<&'a String> {
        if items.is_empty() {
            None
        } else {
            Some(&items[rng.random_range(0..items.len())])
        }
    }

    /// A dossier event (received, resolved or paid).
    pub fn dossier(&mut self, now: DateTime<Utc>) -> Message {
        let c = &self.commune;
        let roll: f64 = self.rng.random();
        let payload = if roll < 0.65 || self.open_dossiers.is_empty() {
            self.next_dossier += 1;
            let id = format!("H37.{:08x}-{:07}", self.run_id, self.next_dossier);
            let r: f64 = self.rng.random();
            let channel = if r < 0.93 {
                "online"
            } else if r < 0.99 {
                "direct"
            } else {
                "postal"
            };
            let village = Self::pick(&mut self.rng, &self.villages).cloned();
            self.open_dossiers.push_back(id.clone());
            if self.open_dossiers.len() > 10_000 {
                self.open_dossiers.pop_front();
            }
            json!({"ts": local_ts(now), "dossier_id": id, "event": "received", "channel": channel,
                   "full_online": channel == "online" && self.rng.random_bool(0.6), "village": village})
        } else if roll < 0.9 {
            let id = self.open_dossiers.pop_front().unwrap_or_default();
            let r: f64 = self.rng.random();
            let outcome = if r < 0.35 {
                "early"
            } else if r < 0.99 {
                "on_time"
            } else {
                "late"
            };
            json!({"ts": local_ts(now), "dossier_id": id, "event": "resolved", "outcome": outcome})
        } else {
            let idx = self.rng.random_range(0..self.open_dossiers.len());
            let id = self.open_dossiers[idx].clone();
            let payment = if self.rng.random_bool(0.68) {
                "online"
            } else {
                "cash"
            };
            json!({"ts": local_ts(now), "dossier_id": id, "event": "paid", "payment": payment})
        };
        Message {
            topic: format!("ioc/{c}/procedure/dossier"),
            payload: payload.to_string().into_bytes(),
            retain: false,
        }
    }

    /// The next message of the mix.
    pub fn next(&mut self, now: DateTime<Utc>) -> Message {
        self.seq += 1;
        let seq = self.seq;
        let c = self.commune.clone();
        let roll: f64 = self.rng.random();
        if roll < 0.35
            || (self.cameras.is_empty() && self.speakers.is_empty() && self.sensors.is_empty())
        {
            return self.dossier(now);
        }
        if roll < 0.75 {
            if let Some(cam) = Self::pick(&mut self.rng, &self.cameras).cloned() {
                let payload = if self.rng.random_bool(0.7) {
                    json!({"ts": local_ts(now), "seq": seq, "kind": "count", "label": "person",
                           "count": self.rng.random_range(0..12), "score": 0.9})
                } else {
                    let label = if self.rng.random_bool(0.6) {
                        "person"
                    } else {
                        "car"
                    };
                    json!({"ts": local_ts(now), "seq": seq, "kind": "detection", "label": label,
                           "score": (self.rng.random_range(60..99) as f64) / 100.0})
                };
                return Message {
                    topic: format!("ioc/{c}/camera/{cam}/event"),
                    payload: payload.to_string().into_bytes(),
                    retain: false,
                };
            }
        }
        if roll < 0.85 {
            if let Some(spk) = Self::pick(&mut self.rng, &self.speakers).cloned() {
                let start = self.rng.random_bool(0.5);
                let session = format!("s{}-{}", self.run_id, seq / 2);
                let payload = json!({"ts": local_ts(now), "seq": seq, "session_id": session,
                    "event": if start { "start" } else { "end" },
                    "priority": if self.rng.random_bool(0.9) { "routine" } else { "priority" },
                    "content": "Bản tin truyền thanh cơ sở"});
                return Message {
                    topic: format!("ioc/{c}/speaker/{spk}/session"),
                    payload: payload.to_string().into_bytes(),
                    retain: false,
                };
            }
        }
        if let Some(i) =
            (!self.sensors.is_empty()).then(|| self.rng.random_range(0..self.sensors.len()))
        {
            let (id, kind) = self.sensors[i].clone();
            let payload = match kind.as_str() {
                "water_level" => {
                    json!({"ts": local_ts(now), "seq": seq, "water_level_cm": self.rng.random_range(80..260)})
                }
                "temperature" => {
                    json!({"ts": local_ts(now), "seq": seq, "temperature_c": (self.rng.random_range(-20..120) as f64) / 10.0})
                }
                _ => {
                    json!({"ts": local_ts(now), "seq": seq, "rain_mm": (self.rng.random_range(0..400) as f64) / 10.0})
                }
            };
            return Message {
                topic: format!("ioc/{c}/sensor/{id}/telemetry"),
                payload: payload.to_string().into_bytes(),
                retain: false,
            };
        }
        self.dossier(now)
    }
}

/// Errors of the simulator.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// Publishing failed.
    #[error("MQTT publish failed: {0}")]
    Client(#[from] rumqttc::ClientError),
}

/// Publish `rate` messages per second (QoS 1) to `host:port` until `count`
/// messages were sent or `cancel` fires, and, with `bulletins`, a
/// flash-flood bulletin chain on that cadence (not counted). Returns the
/// number of traffic messages sent.
#[allow(clippy::too_many_arguments)]
pub async fn publish(
    config: &Config,
    host: &str,
    port: u16,
    rate: f64,
    count: Option<u64>,
    seed: u64,
    bulletins: Option<bulletin::Cadence>,
    cancel: CancellationToken,
) -> Result<u64, SimError> {
    let mut opts = MqttOptions::new(
        format!("commune-ioc-sim-{}", std::process::id()),
        host,
        port,
    );
    opts.set_keep_alive(Duration::from_secs(30));
    if let (Some(u), Some(p)) = (&config.mqtt.username, &config.mqtt.password) {
        opts.set_credentials(u.clone(), p.expose().to_owned());
    }
    let (client, mut eventloop) = AsyncClient::new(opts, 1024);
    let poll_cancel = cancel.clone();
    let poller = tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = poll_cancel.cancelled() => break,
                ev = eventloop.poll() => if ev.is_err() {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                },
            }
        }
    });
    let mut traffic = Traffic::new(config, seed);
    for m in traffic.hello() {
        client
            .publish(m.topic, QoS::AtLeastOnce, m.retain, m.payload)
            .await?;
    }
    let mut sent = 0u64;
    let tick = Duration::from_millis(100);
    let per_tick = (rate.max(0.1) * tick.as_secs_f64()).max(0.0);
    let mut budget = 0.0f64;
    let mut interval = tokio::time::interval(tick);
    let started = std::time::Instant::now();
    let mut checked = Duration::ZERO;
    let mut chain: Option<bulletin::FloodBulletin> = None;
    'outer: loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = interval.tick() => {}
        }
        if let Some(cadence) = &bulletins {
            let now = started.elapsed();
            for (n, step) in cadence.due(checked, now) {
                let (low, high) = bulletin::DEMO_LEVELS;
                let at = Utc::now();
                let m = match step {
                    bulletin::Step::Alert => {
                        let b = chain.insert(bulletin::FloodBulletin::new(config, n));
                        b.alert(at, low)
                    }
                    bulletin::Step::Update => chain
                        .get_or_insert_with(|| bulletin::FloodBulletin::new(config, n))
                        .update(at, high),
                    bulletin::Step::Cancel => chain
                        .get_or_insert_with(|| bulletin::FloodBulletin::new(config, n))
                        .cancel(at),
                };
                tracing::info!(chain = n, step = ?step, topic = %m.topic, "publishing a simulated warning bulletin");
                client
                    .publish(m.topic, QoS::AtLeastOnce, m.retain, m.payload)
                    .await?;
            }
            checked = now;
        }
        budget += per_tick;
        while budget >= 1.0 {
            budget -= 1.0;
            let m = traffic.next(Utc::now());
            client
                .publish(m.topic, QoS::AtLeastOnce, m.retain, m.payload)
                .await?;
            sent += 1;
            if count.is_some_and(|c| sent >= c) {
                break 'outer;
            }
        }
    }
    // Let in-flight messages go out before disconnecting.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = client.disconnect().await;
    cancel.cancel();
    let _ = poller.await;
    Ok(sent)
}
