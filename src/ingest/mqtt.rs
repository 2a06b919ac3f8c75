//! The MQTT supervisor over rumqttc.
//!
//! rumqttc keeps a connection only while its event loop is polled, and does
//! none of the following by itself, so this loop does:
//!
//! - a stable client id and a persistent session (`clean_session = false`),
//!   so the broker keeps QoS 1 messages while we are away;
//! - subscribe again on every ConnAck (rumqttc #250);
//! - reconnect with capped exponential backoff and jitter (rumqttc #918);
//! - manual acknowledgements: a message is acknowledged only after its
//!   event (or dead letter) is committed to the journal. Acks from a previous
//!   connection are dropped: the broker redelivers those messages and the
//!   journal recognises them as duplicates.
//!
//! The poll loop only polls and forwards. Messages go to the journal's
//! bounded queue; while it is full, up to `MAX_PENDING` more are held here
//! and polling goes on, so acknowledgements and pings keep flowing; beyond
//! that, polling pauses (backpressure reaches the broker through TCP, and
//! the broker queues for us). Acknowledgements are sent in commit order by
//! one acker task that waits for room in rumqttc's request queue: an ack is
//! never dropped while its connection lives.
//!
//! Memory is bounded in bytes as well as in messages: payload bytes taken
//! from the broker and not yet committed are at most [`MAX_QUEUED_BYTES`]
//! (plus one message); beyond that polling pauses the same way. A payload is
//! held once (the ack keeps only the packet id).
//!
//! Packets are limited to `ingest.max_payload_bytes` plus
//! [`PACKET_OVERHEAD`] (topic and header). A larger packet cannot be read
//! without holding it, and refusing it for good would wedge the session (the
//! broker redelivers an unacknowledged QoS 1 message on every reconnect). So
//! an oversized packet costs one reconnect: the next connection accepts
//! packets up to that size, the message becomes an `oversized` dead letter
//! and is acknowledged, and the connection after that is back to the limit.
//! Set the broker's own size limit (Mosquitto `message_size_limit`) so that
//! such packets never reach it.
//!
//! A connection the broker closes right after its ConnAck, again and again,
//! is what another client with our client id looks like (the broker hands
//! the session, and our messages, to whichever connected last): it is
//! counted (`ioc_mqtt_session_takeovers_total`) and logged as an error.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use rand::Rng;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, TlsConfiguration, Transport};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::model::Raw;
use crate::runtime::pipeline::{AckFn, Inbound};
use crate::state::Shared;

/// Errors setting up the MQTT client.
#[derive(Debug, thiserror::Error)]
pub enum MqttError {
    /// The CA file could not be read.
    #[error("cannot read MQTT CA file {path}: {source}")]
    CaFile {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Capped exponential backoff with full jitter.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    current: Duration,
}

impl Backoff {
    /// A backoff starting at `initial`, doubling up to `max`.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            max,
            current: initial,
        }
    }

    /// The next delay: uniformly random in [current/2, current], then double.
    pub fn next_delay(&mut self) -> Duration {
        let cur = self.current;
        self.current = (self.current * 2).min(self.max);
        let lo = cur.as_millis() as u64 / 2;
        let hi = (cur.as_millis() as u64).max(lo + 1);
        Duration::from_millis(rand::rng().random_range(lo..=hi))
    }

    /// Back to the initial delay (after a successful connect).
    pub fn reset(&mut self) {
        self.current = self.initial;
    }
}

/// Largest number of messages held between the MQTT event loop and a full
/// journal queue before polling pauses.
const MAX_PENDING: usize = 1024;

/// Largest number of payload bytes taken from the broker and not yet
/// committed (held here, in the journal queue or in the batch being
/// written) before polling pauses.
pub const MAX_QUEUED_BYTES: usize = 16 * 1024 * 1024;

/// Room for the topic and the header on top of `ingest.max_payload_bytes`
/// in the client's packet limit.
pub const PACKET_OVERHEAD: usize = 4096;

/// The largest packet MQTT can describe (remaining length 268,435,455 plus
/// the fixed header).
const MQTT_MAX_PACKET: usize = 268_435_460;

/// A connection closed by the broker sooner than this after its ConnAck
/// counts as a possible session takeover.
const SHORT_SESSION: Duration = Duration::from_secs(3);

/// Consecutive short sessions before the takeover is logged as an error.
const TAKEOVER_ALERT: u32 = 3;

/// Payload bytes between the broker and the journal, released when the
/// message is committed (or dropped).
#[derive(Debug, Default)]
struct Budget {
    used: AtomicUsize,
    freed: tokio::sync::Notify,
}

/// Holds `bytes` of the budget until dropped.
struct Held {
    budget: Arc<Budget>,
    bytes: usize,
    shared: Arc<Shared>,
}

impl Held {
    fn new(budget: &Arc<Budget>, bytes: usize, shared: &Arc<Shared>) -> Held {
        let now = budget.used.fetch_add(bytes, Ordering::AcqRel) + bytes;
        shared.metrics.mqtt_queued_bytes.set(now as i64);
        Held {
            budget: Arc::clone(budget),
            bytes,
            shared: Arc::clone(shared),
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let now = self.budget.used.fetch_sub(self.bytes, Ordering::AcqRel) - self.bytes;
        self.shared.metrics.mqtt_queued_bytes.set(now as i64);
        self.budget.freed.notify_one();
    }
}

/// The client's packet limit for a payload limit.
pub fn packet_limit(max_payload_bytes: usize) -> usize {
    max_payload_bytes
        .saturating_add(PACKET_OVERHEAD)
        .min(MQTT_MAX_PACKET)
}

/// The size of an oversized packet, when that is why the connection ended.
fn oversized(e: &rumqttc::ConnectionError) -> Option<usize> {
    match e {
        rumqttc::ConnectionError::MqttState(rumqttc::StateError::Deserialization(
            rumqttc::mqttbytes::Error::PayloadSizeLimitExceeded(n),
        )) => Some(*n),
        _ => None,
    }
}

/// An acknowledgement waiting to be sent: the connection epoch it belongs to
/// and the message.
type PendingAck = (u64, rumqttc::Publish);

/// Start the task that sends acknowledgements in order. Acks of a connection
/// that is gone are dropped (the broker redelivers those messages and the
/// journal recognises them). It ends when every sender is dropped.
fn spawn_acker(
    client: AsyncClient,
    epoch: Arc<AtomicU64>,
    shared: Arc<Shared>,
) -> mpsc::UnboundedSender<PendingAck> {
    let (tx, mut rx) = mpsc::unbounded_channel::<PendingAck>();
    tokio::spawn(async move {
        while let Some((gen, p)) = rx.recv().await {
            if epoch.load(Ordering::Acquire) != gen {
                shared.metrics.mqtt_acks_stale.inc();
                continue;
            }
            // Waits for room in rumqttc's request queue; the poll loop keeps
            // draining it.
            if client.ack(&p).await.is_err() {
                break;
            }
            shared.metrics.mqtt_acks.inc();
        }
    });
    tx
}

/// Build rumqttc options from config.
pub fn options(config: &Config) -> Result<MqttOptions, MqttError> {
    let m = &config.mqtt;
    // With the embedded broker, connect to rumqttd's private side directly
    // (the gate in front of it refuses our client id to everyone).
    #[cfg(feature = "embedded-broker")]
    if m.embedded {
        if let Some(inner) = crate::ingest::broker::inner() {
            let mut opts = MqttOptions::new(
                config.client_id(),
                inner.addr.ip().to_string(),
                inner.addr.port(),
            );
            common_options(&mut opts, config);
            // The gate refuses payloads above the embedded broker's limit, so
            // every packet it lets through is taken at once: a reconnect to
            // rumqttd does not get the unacknowledged messages back.
            opts.set_max_packet_size(
                crate::ingest::gate::max_packet(embedded_max_payload(config)),
                1024 * 1024,
            );
            opts.set_credentials(inner.username, inner.password);
            return Ok(opts);
        }
    }
    let mut opts = MqttOptions::new(config.client_id(), m.host.clone(), m.port);
    common_options(&mut opts, config);
    if let (Some(u), Some(p)) = (&m.username, &m.password) {
        opts.set_credentials(u.clone(), p.expose().to_owned());
    } else if let Some(u) = &m.username {
        opts.set_credentials(u.clone(), String::new());
    }
    if m.tls {
        let transport = match &m.ca_file {
            Some(path) => {
                let ca = std::fs::read(path).map_err(|source| MqttError::CaFile {
                    path: path.display().to_string(),
                    source,
                })?;
                Transport::tls_with_config(TlsConfiguration::Simple {
                    ca,
                    alpn: None,
                    client_auth: None,
                })
            }
            None => Transport::tls_with_default_config(),
        };
        opts.set_transport(transport);
    }
    Ok(opts)
}

/// The largest payload the embedded broker takes:
/// max(4 × `ingest.max_payload_bytes`, 1 MiB).
pub fn embedded_max_payload(config: &Config) -> usize {
    config
        .ingest
        .max_payload_bytes
        .saturating_mul(4)
        .max(1024 * 1024)
}

/// What every connection of ours sets.
fn common_options(opts: &mut MqttOptions, config: &Config) {
    opts.set_keep_alive(Duration::from_secs(config.mqtt.keep_alive_secs));
    opts.set_clean_session(false);
    opts.set_manual_acks(true);
    // Larger packets cost one reconnect each (see the module docs).
    opts.set_max_packet_size(packet_limit(config.ingest.max_payload_bytes), 1024 * 1024);
    opts.set_request_channel_capacity(4096);
}

/// Topic filters, wrapped in `$share/{group}/` when a share group is set.
pub fn filters(config: &Config, base: Vec<String>) -> Vec<String> {
    match &config.mqtt.share_group {
        Some(g) => base
            .into_iter()
            .map(|f| format!("$share/{g}/{f}"))
            .collect(),
        None => base,
    }
}

/// Run the supervisor until `cancel` fires. Messages go to `tx`.
pub async fn run(
    shared: Arc<Shared>,
    topic_filters: Vec<String>,
    tx: mpsc::Sender<Inbound>,
    cancel: CancellationToken,
) -> Result<(), MqttError> {
    let config = &shared.config;
    let opts = options(config)?;
    let (client, mut eventloop) = AsyncClient::new(opts, 4096);
    shared.outlet.attach(client.clone());
    // Acks and small publishes must not wait for Nagle's algorithm.
    let mut net = eventloop.network_options();
    net.set_tcp_nodelay(true);
    eventloop.set_network_options(net);
    let epoch = Arc::new(AtomicU64::new(0));
    let acks = spawn_acker(client.clone(), Arc::clone(&epoch), Arc::clone(&shared));
    let mut backoff = Backoff::new(
        Duration::from_millis(config.mqtt.backoff_initial_ms),
        Duration::from_millis(config.mqtt.backoff_max_ms),
    );
    let broker = format!("{}:{}", config.mqtt.host, config.mqtt.port);
    let mut last_error: Option<String> = None;
    // Messages taken from the broker but not yet in the journal queue. While
    // it is below MAX_PENDING the event loop keeps being polled even when the
    // journal queue is full, so acknowledgements and pings keep flowing;
    // beyond it, polling pauses until the journal catches up (TCP then holds
    // the broker back).
    let mut pending: VecDeque<Inbound> = VecDeque::new();
    let budget = Arc::new(Budget::default());
    let limit = packet_limit(config.ingest.max_payload_bytes);
    let outgoing_limit = 1024 * 1024;
    // When the current connection started (its ConnAck), and how many
    // connections in a row the broker closed right after accepting them.
    let mut connected_at: Option<std::time::Instant> = None;
    // A new session is ready once the broker acknowledged its
    // subscriptions: before that, a message published to it is not routed
    // to us (and, not retained, is lost to us).
    let mut awaiting_suback = false;
    let mut short_sessions: u32 = 0;
    'run: loop {
        while !pending.is_empty() {
            match tx.try_reserve() {
                Ok(permit) => {
                    if let Some(m) = pending.pop_front() {
                        permit.send(m);
                    }
                }
                Err(mpsc::error::TrySendError::Full(())) => break,
                Err(mpsc::error::TrySendError::Closed(())) => {
                    tracing::warn!("journal queue closed; stopping MQTT ingest");
                    break 'run;
                }
            }
        }
        let event = tokio::select! {
            biased;
            _ = cancel.cancelled() => break,
            permit = tx.reserve(), if !pending.is_empty() => {
                match (permit, pending.pop_front()) {
                    (Ok(permit), Some(m)) => permit.send(m),
                    (Err(_), _) => {
                        tracing::warn!("journal queue closed; stopping MQTT ingest");
                        break;
                    }
                    (Ok(_), None) => {}
                }
                continue;
            }
            _ = budget.freed.notified(),
                if budget.used.load(Ordering::Acquire) >= MAX_QUEUED_BYTES => continue,
            ev = eventloop.poll(), if pending.len() < MAX_PENDING
                && budget.used.load(Ordering::Acquire) < MAX_QUEUED_BYTES => ev,
        };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                let gen = epoch.fetch_add(1, Ordering::AcqRel) + 1;
                connected_at = Some(std::time::Instant::now());
                #[cfg(feature = "embedded-broker")]
                if config.mqtt.embedded {
                    crate::ingest::gate::resync();
                }
                backoff.reset();
                last_error = None;
                shared.metrics.mqtt_connects.inc();
                if ack.session_present {
                    // The broker kept the session and its subscriptions.
                    shared.metrics.mqtt_connected.set(1);
                    shared.mqtt_connected.store(true, Ordering::Relaxed);
                } else {
                    awaiting_suback = true;
                }
                tracing::info!(%broker, session_present = ack.session_present, epoch = gen, "connected to MQTT broker");
                let subs: Vec<rumqttc::SubscribeFilter> = topic_filters
                    .iter()
                    .map(|f| rumqttc::SubscribeFilter::new(f.clone(), QoS::AtLeastOnce))
                    .collect();
                // Never await a request inside the poll loop (rumqttc #263).
                let c = client.clone();
                tokio::spawn(async move {
                    if let Err(e) = c.subscribe_many(subs).await {
                        tracing::warn!(error = %e, "subscribe request failed");
                    }
                });
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                #[cfg(feature = "embedded-broker")]
                if config.mqtt.embedded {
                    crate::ingest::gate::delivered(p.payload.len());
                }
                // Our own publications (the sealed reports, retained) come
                // back through `ioc/{c}/#`: they are output, not input.
                if crate::sources::is_own_output(p.topic.as_ref(), &config.commune.id) {
                    if p.qos != QoS::AtMostOnce {
                        let mut slim = rumqttc::Publish::new("", p.qos, Vec::<u8>::new());
                        slim.pkid = p.pkid;
                        let _ = acks.send((epoch.load(Ordering::Acquire), slim));
                    }
                    continue;
                }
                shared.outlet.offer(&p.topic, &p.payload);
                let held = Held::new(&budget, p.payload.len() + p.topic.len(), &shared);
                // The ack needs only the packet id and QoS: the payload is
                // held once, in `raw`.
                let mut slim = rumqttc::Publish::new("", p.qos, Vec::<u8>::new());
                slim.pkid = p.pkid;
                let raw = Raw {
                    topic: String::from_utf8_lossy(p.topic.as_ref()).into_owned(),
                    payload: p.payload.to_vec(),
                    received_at: Utc::now(),
                    retained: p.retain,
                };
                drop(p);
                let gen = epoch.load(Ordering::Acquire);
                let acks = acks.clone();
                let qos = slim.qos;
                let ack: AckFn = Box::new(move || {
                    // Runs on the journal thread after the commit: hand the
                    // ack to the acker task, in commit order; the budget is
                    // released with `held`.
                    if qos != QoS::AtMostOnce {
                        let _ = acks.send((gen, slim));
                    }
                    drop(held);
                });
                pending.push_back(Inbound {
                    raw,
                    ack: Some(ack),
                });
            }
            Ok(Event::Incoming(Packet::SubAck(ack))) => {
                if ack
                    .return_codes
                    .iter()
                    .any(|c| matches!(c, rumqttc::SubscribeReasonCode::Failure))
                {
                    tracing::warn!(codes = ?ack.return_codes, filters = ?topic_filters,
                        "the broker refused a subscription (its ACL?): those topics are not received");
                }
                if std::mem::take(&mut awaiting_suback) {
                    shared.metrics.mqtt_connected.set(1);
                    shared.mqtt_connected.store(true, Ordering::Relaxed);
                    tracing::info!(%broker, filters = topic_filters.len(), "subscribed");
                }
            }
            Ok(_) => {}
            Err(e) => {
                awaiting_suback = false;
                let was = shared.mqtt_connected.swap(false, Ordering::Relaxed);
                shared.metrics.mqtt_connected.set(0);
                shared.metrics.mqtt_connection_errors.inc();
                epoch.fetch_add(1, Ordering::AcqRel);
                let lived = connected_at.take().map(|t| t.elapsed());
                if let Some(size) = oversized(&e) {
                    // Take it on the next connection, then back to the limit.
                    shared.metrics.mqtt_oversized_packets.inc();
                    let allow = size.saturating_add(16).clamp(limit, MQTT_MAX_PACKET);
                    eventloop
                        .mqtt_options
                        .set_max_packet_size(allow, outgoing_limit);
                    tracing::warn!(%broker, packet_bytes = size, limit,
                        "MQTT packet larger than the limit (ingest.max_payload_bytes + 4 KiB); reconnecting once to take it as an oversized dead letter");
                    continue;
                }
                eventloop
                    .mqtt_options
                    .set_max_packet_size(limit, outgoing_limit);
                match lived {
                    Some(d) if d < SHORT_SESSION => {
                        short_sessions += 1;
                        shared.metrics.mqtt_session_takeovers.inc();
                        if short_sessions == TAKEOVER_ALERT || short_sessions % 50 == 0 {
                            tracing::error!(%broker, client_id = %config.client_id(), times = short_sessions,
                                "the broker keeps closing our MQTT session right after accepting it: another client is probably connecting with our client id and taking our messages (session takeover); restrict client ids and topics on the broker (docs/DEPLOY.md)");
                        }
                    }
                    Some(_) => short_sessions = 0,
                    None => {}
                }
                let delay = backoff.next_delay();
                let text = e.to_string();
                let retry_in_ms = delay.as_millis() as u64;
                if was {
                    tracing::warn!(%broker, error = %text, retry_in_ms, "lost MQTT connection");
                } else if last_error.as_deref() != Some(text.as_str()) {
                    // Say why once; repeats of the same failure go to debug.
                    tracing::warn!(%broker, error = %text, retry_in_ms, "cannot connect to the MQTT broker; retrying");
                } else {
                    tracing::debug!(%broker, error = %text, retry_in_ms, "MQTT connect failed");
                }
                last_error = Some(text);
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
    // What was taken from the broker still goes to the journal; its acks are
    // dropped with the connection, so the broker redelivers it next time and
    // the journal recognises the duplicates.
    for m in pending {
        if tx.send(m).await.is_err() {
            break;
        }
    }
    epoch.fetch_add(1, Ordering::AcqRel);
    shared.mqtt_connected.store(false, Ordering::Relaxed);
    shared.metrics.mqtt_connected.set(0);
    // Best effort: a clean DISCONNECT keeps the persistent session.
    let _ = client.try_disconnect();
    let _ = tokio::time::timeout(Duration::from_millis(200), async {
        while let Ok(ev) = eventloop.poll().await {
            if matches!(ev, Event::Outgoing(rumqttc::Outgoing::Disconnect)) {
                break;
            }
        }
    })
    .await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_capped_and_jittered() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(1000));
        let delays: Vec<u128> = (0..10).map(|_| b.next_delay().as_millis()).collect();
        assert!(delays[0] >= 50 && delays[0] <= 100, "{delays:?}");
        assert!(delays.iter().all(|d| *d <= 1000), "{delays:?}");
        assert!(delays[9] >= 500, "{delays:?}");
        b.reset();
        assert!(b.next_delay().as_millis() <= 100);
    }
}
