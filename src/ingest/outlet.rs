//! The one MQTT connection, shared inside the process.
//!
//! commune-ioc keeps a single connection to the broker (the ingest one,
//! client id `commune-ioc-{commune}`). The shipped Mosquitto sets
//! `use_username_as_clientid`, so a second connection with the same login
//! would take the first one's session over, and the two would throw each
//! other out forever. Everything else that talks MQTT goes through here:
//!
//! - publishers (sealed reports, loudspeaker commands) call
//!   [`Outlet::try_publish`], which queues on the ingest connection without
//!   waiting; a full queue or a connection not yet made is an error the
//!   caller retries later;
//! - readers of messages the pipeline also journals (loudspeaker
//!   acknowledgements and session reports) take a [`Outlet::tap`]: a bounded
//!   copy of every message whose topic matches a filter, handed over before
//!   the message is committed, bounded in count and in payload bytes.
//!   Policy when a tap is full (either bound): the copy is
//!   dropped, logged and counted (`ioc_mqtt_tap_dropped_total`); the message itself
//!   still reaches the journal, and the tap's owner must tolerate the loss
//!   (broadcast commands are retried until acknowledged).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use parking_lot::RwLock;
use prometheus_client::metrics::counter::Counter;
use rumqttc::{AsyncClient, QoS};
use tokio::sync::mpsc;

/// Why a publish was not queued.
#[derive(Debug, thiserror::Error)]
pub enum OutletError {
    /// The ingest connection has not been set up yet (or MQTT is off).
    #[error("no MQTT connection yet")]
    NotConnected,
    /// rumqttc's request queue is full or closed.
    #[error("MQTT request queue: {0}")]
    Queue(#[from] rumqttc::ClientError),
}

/// A copy of one message taken from the broker. Its payload bytes count
/// against its tap's byte bound until it is dropped.
#[derive(Debug)]
pub struct Tapped {
    /// Its topic.
    pub topic: String,
    /// Its payload.
    pub payload: Bytes,
    held: Arc<AtomicUsize>,
}

impl Drop for Tapped {
    fn drop(&mut self) {
        self.held.fetch_sub(self.payload.len(), Ordering::AcqRel);
    }
}

struct Tap {
    filters: Vec<String>,
    tx: mpsc::Sender<Tapped>,
    /// Payload bytes of the copies not yet dropped by the reader.
    held: Arc<AtomicUsize>,
    max_bytes: usize,
}

/// The outbound side of the ingest connection, and its taps.
pub struct Outlet {
    client: OnceLock<AsyncClient>,
    taps: RwLock<Vec<Tap>>,
    dropped: Counter,
}

impl std::fmt::Debug for Outlet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outlet")
            .field("attached", &self.client.get().is_some())
            .field("taps", &self.taps.read().len())
            .finish()
    }
}

impl Outlet {
    /// An outlet with no connection yet; `dropped` counts lost tap copies.
    pub fn new(dropped: Counter) -> Outlet {
        Outlet {
            client: OnceLock::new(),
            taps: RwLock::new(Vec::new()),
            dropped,
        }
    }

    /// Called once by the ingest task when it creates its client.
    pub(crate) fn attach(&self, client: AsyncClient) {
        let _ = self.client.set(client);
    }

    /// Queue a publish on the shared connection, without waiting.
    pub fn try_publish(
        &self,
        topic: &str,
        qos: QoS,
        retain: bool,
        payload: Vec<u8>,
    ) -> Result<(), OutletError> {
        let client = self.client.get().ok_or(OutletError::NotConnected)?;
        client.try_publish(topic, qos, retain, payload)?;
        Ok(())
    }

    /// A copy of every message whose topic matches one of `filters` (MQTT
    /// wildcards), at most `capacity` copies and `max_bytes` payload bytes
    /// held at once. The ingest connection must already subscribe to them.
    pub fn tap(
        &self,
        filters: Vec<String>,
        capacity: usize,
        max_bytes: usize,
    ) -> mpsc::Receiver<Tapped> {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        self.taps.write().push(Tap {
            filters,
            tx,
            held: Arc::new(AtomicUsize::new(0)),
            max_bytes,
        });
        rx
    }

    /// Hand a copy of a message to the taps that want it (never waits).
    pub(crate) fn offer(&self, topic: &str, payload: &Bytes) {
        let taps = self.taps.read();
        for t in taps.iter() {
            if !t.filters.iter().any(|f| rumqttc::matches(topic, f)) {
                continue;
            }
            if t.tx.is_closed() {
                continue;
            }
            let held = t.held.fetch_add(payload.len(), Ordering::AcqRel);
            // The copy is made (and so counted) before the check: dropping
            // it gives the bytes back.
            let copy = Tapped {
                topic: topic.to_owned(),
                payload: payload.clone(),
                held: Arc::clone(&t.held),
            };
            if held + payload.len() > t.max_bytes || t.tx.try_send(copy).is_err() {
                self.dropped.inc();
                tracing::warn!(%topic, "tap full: copy dropped");
            }
        }
    }

    /// Copies dropped because a tap was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn taps_get_matching_topics_and_a_full_tap_drops_and_counts() {
        let o = Outlet::new(Counter::default());
        let mut rx = o.tap(vec!["ioc/binh-lu/speaker/+/ack".into()], 1, 1024);
        o.offer("ioc/binh-lu/speaker/spk-01/ack", &Bytes::from_static(b"1"));
        o.offer(
            "ioc/binh-lu/speaker/spk-01/status",
            &Bytes::from_static(b"x"),
        );
        o.offer("ioc/binh-lu/speaker/spk-02/ack", &Bytes::from_static(b"2"));
        let got = rx.recv().await.unwrap();
        assert_eq!(got.topic, "ioc/binh-lu/speaker/spk-01/ack");
        assert_eq!(&got.payload[..], b"1");
        assert!(rx.try_recv().is_err());
        assert_eq!(o.dropped(), 1);
    }

    #[tokio::test]
    async fn a_tap_holds_at_most_its_bytes_and_gets_them_back_when_read() {
        let o = Outlet::new(Counter::default());
        let mut rx = o.tap(vec!["ioc/+/speaker/+/ack".into()], 100, 10);
        let six = Bytes::from_static(b"123456");
        o.offer("ioc/binh-lu/speaker/spk-01/ack", &six);
        // 12 bytes would be over the bound: dropped and counted.
        o.offer("ioc/binh-lu/speaker/spk-02/ack", &six);
        assert_eq!(o.dropped(), 1);
        let first = rx.recv().await.unwrap();
        assert_eq!(first.topic, "ioc/binh-lu/speaker/spk-01/ack");
        assert!(rx.try_recv().is_err());
        // Still held while the reader keeps the copy.
        o.offer("ioc/binh-lu/speaker/spk-03/ack", &six);
        assert_eq!(o.dropped(), 2);
        drop(first);
        o.offer("ioc/binh-lu/speaker/spk-04/ack", &six);
        assert_eq!(
            rx.recv().await.unwrap().topic,
            "ioc/binh-lu/speaker/spk-04/ack"
        );
        assert_eq!(o.dropped(), 2);
    }

    #[test]
    fn publishing_before_the_connection_exists_is_an_error() {
        let o = Outlet::new(Counter::default());
        assert!(matches!(
            o.try_publish("ioc/x", QoS::AtLeastOnce, false, vec![]),
            Err(OutletError::NotConnected)
        ));
    }
}
