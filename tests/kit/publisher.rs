//! MQTT publishers: `Publisher` sends one QoS 1 message at a time and waits
//! for the broker's PubAck (tests: what it returns from, the broker has
//! accepted); `Pipelined` keeps up to 1,000 in flight with its event loop
//! polled in a task and counts PubAcks (benchmarks, bursts).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::task::JoinHandle;

use super::proc::free_port;

/// A QoS 1 publisher that sends one message at a time and waits for the
/// broker's PubAck, reconnecting and resending on any error. What it
/// returns from, the broker has accepted.
pub struct Publisher {
    port: u16,
    conn: Option<(AsyncClient, rumqttc::EventLoop)>,
    id: String,
    credentials: Option<(String, String)>,
}

impl Publisher {
    /// A publisher to the broker on `port`.
    pub fn new(port: u16) -> Publisher {
        Publisher {
            port,
            conn: None,
            id: format!("test-pub-{}-{}", std::process::id(), free_port()),
            credentials: None,
        }
    }

    /// A publisher that logs in with a username and password.
    pub fn with_credentials(port: u16, user: &str, pass: &str) -> Publisher {
        let mut p = Publisher::new(port);
        p.credentials = Some((user.into(), pass.into()));
        p
    }

    async fn connect(&mut self) -> bool {
        let mut opts = MqttOptions::new(self.id.clone(), "127.0.0.1", self.port);
        opts.set_keep_alive(Duration::from_secs(10));
        opts.set_max_packet_size(16 * 1024 * 1024, 16 * 1024 * 1024);
        if let Some((u, p)) = &self.credentials {
            opts.set_credentials(u.clone(), p.clone());
        }
        let (client, mut el) = AsyncClient::new(opts, 16);
        let ok = tokio::time::timeout(Duration::from_secs(2), async {
            loop {
                match el.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => return true,
                    Ok(_) => {}
                    Err(_) => return false,
                }
            }
        })
        .await
        .unwrap_or(false);
        if ok {
            self.conn = Some((client, el));
        }
        ok
    }

    /// Publish and wait for the broker's acknowledgement, retrying for up to
    /// 60 s across broker restarts.
    pub async fn send(&mut self, topic: &str, payload: &[u8]) {
        self.send_opts(topic, payload, false).await;
    }

    /// Publish with the retain flag.
    pub async fn send_opts(&mut self, topic: &str, payload: &[u8], retain: bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            assert!(
                Instant::now() < deadline,
                "could not publish to {topic} within 60 s"
            );
            if self.conn.is_none() && !self.connect().await {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            let Some((client, el)) = self.conn.as_mut() else {
                continue;
            };
            if client
                .publish(topic, QoS::AtLeastOnce, retain, payload.to_vec())
                .await
                .is_err()
            {
                self.conn = None;
                continue;
            }
            let acked = tokio::time::timeout(Duration::from_secs(3), async {
                loop {
                    match el.poll().await {
                        Ok(Event::Incoming(Packet::PubAck(_))) => return true,
                        Ok(_) => {}
                        Err(_) => return false,
                    }
                }
            })
            .await
            .unwrap_or(false);
            if acked {
                return;
            }
            self.conn = None;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A pipelined QoS 1 publisher: `client.publish` queues (up to 10,000
/// requests, 1,000 in flight), a task polls the event loop and counts the
/// broker's PubAcks.
pub struct Pipelined {
    pub client: AsyncClient,
    acked: Arc<AtomicU64>,
    errors: Arc<AtomicU64>,
    connected: Arc<AtomicBool>,
    last_error: Arc<Mutex<Option<String>>>,
    task: JoinHandle<()>,
}

impl Pipelined {
    /// Connect as `id` (clean session) and wait up to 10 s for the ConnAck.
    /// With `reconnect`, a connection error is counted and the event loop
    /// polled again (rumqttc reconnects); without, the first error ends it.
    pub async fn connect(id: &str, port: u16, reconnect: bool) -> Result<Pipelined> {
        let mut opts = MqttOptions::new(id, "127.0.0.1", port);
        opts.set_keep_alive(Duration::from_secs(60))
            .set_clean_session(true)
            .set_inflight(1000)
            .set_max_packet_size(1 << 20, 1 << 20);
        let (client, mut el) = AsyncClient::new(opts, 10_000);
        let acked = Arc::new(AtomicU64::new(0));
        let errors = Arc::new(AtomicU64::new(0));
        let connected = Arc::new(AtomicBool::new(false));
        let last_error = Arc::new(Mutex::new(None));
        let task = {
            let (acked, errors) = (Arc::clone(&acked), Arc::clone(&errors));
            let (connected, last_error) = (Arc::clone(&connected), Arc::clone(&last_error));
            tokio::spawn(async move {
                loop {
                    match el.poll().await {
                        Ok(Event::Incoming(Packet::ConnAck(_))) => {
                            connected.store(true, Ordering::SeqCst)
                        }
                        Ok(Event::Incoming(Packet::PubAck(_))) => {
                            acked.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(_) => {}
                        Err(e) => {
                            connected.store(false, Ordering::SeqCst);
                            errors.fetch_add(1, Ordering::Relaxed);
                            *last_error.lock().unwrap() = Some(e.to_string());
                            if !reconnect {
                                break;
                            }
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                }
            })
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !connected.load(Ordering::SeqCst) {
            if Instant::now() > deadline || task.is_finished() {
                task.abort();
                let why = last_error
                    .lock()
                    .unwrap()
                    .clone()
                    .unwrap_or_else(|| "no CONNACK within 10 s".into());
                bail!("{id} could not connect to mosquitto on port {port}: {why}");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(Pipelined {
            client,
            acked,
            errors,
            connected,
            last_error,
            task,
        })
    }

    /// Queue one QoS 1 publish (waits only for room in the request queue).
    pub async fn publish(&self, topic: &str, payload: impl Into<Vec<u8>>) -> Result<()> {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload.into())
            .await
            .map_err(|e| anyhow::anyhow!("publish to {topic}: {e}"))
    }

    /// PubAcks received so far.
    pub fn acked(&self) -> u64 {
        self.acked.load(Ordering::Relaxed)
    }

    /// Whether the connection is up.
    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::SeqCst)
    }

    /// Fail when the connection is down, with the error count and the last
    /// error.
    pub fn check(&self, what: &str) -> Result<()> {
        if !self.connected() {
            bail!(
                "{what} lost its connection to mosquitto ({} errors; last: {})",
                self.errors.load(Ordering::Relaxed),
                self.last_error.lock().unwrap().clone().unwrap_or_default()
            );
        }
        Ok(())
    }

    /// Disconnect (best effort) and stop polling.
    pub async fn stop(self) {
        let _ = self.client.try_disconnect();
        tokio::time::sleep(Duration::from_millis(50)).await;
        self.task.abort();
    }
}

impl Drop for Pipelined {
    fn drop(&mut self) {
        self.task.abort();
    }
}
