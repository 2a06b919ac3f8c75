//! The shared handles that the journal writer updates and the API reads.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use parking_lot::RwLock;
use tokio::sync::broadcast;

use crate::config::Config;
use crate::config::Registry;
use crate::devices::DeviceTracker;
use crate::indicators::{Engine, Touched};
use crate::metrics::Metrics;
use crate::model::{Event, Source};

/// A newly committed dead letter, as the live stream reports it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DeadNote {
    /// Stable reason code.
    pub reason: &'static str,
    /// MQTT topic.
    pub topic: String,
    /// Producer family, when the topic told.
    pub source: Option<Source>,
    /// Device named by the topic, if any.
    pub device: Option<String>,
    /// Detail (English, for integrators).
    pub detail: String,
    /// When it was received.
    pub received_at: DateTime<Utc>,
}

/// What one committed journal batch changed; broadcast to live subscribers.
#[derive(Debug, Clone)]
pub struct Committed {
    /// The counters, readings and freshness the batch changed.
    pub touched: Touched,
    /// Newly committed events (duplicates excluded).
    pub events: Vec<Event>,
    /// Newly committed dead letters.
    pub dead: Vec<DeadNote>,
    /// Messages recognised as duplicates.
    pub duplicates: usize,
    /// Commit time.
    pub at: DateTime<Utc>,
}

/// State shared by the pipeline and the API.
#[derive(Debug)]
pub struct Shared {
    /// The validated config.
    pub config: Config,
    /// Devices and villages.
    pub registry: Arc<Registry>,
    /// Live indicators.
    pub engine: RwLock<Engine>,
    /// Device health.
    pub devices: RwLock<DeviceTracker>,
    /// Metrics.
    pub metrics: Metrics,
    /// Connected to the MQTT broker.
    pub mqtt_connected: AtomicBool,
    /// The last journal commit succeeded.
    pub store_writable: AtomicBool,
    /// The last periodic write probe succeeded (catches a broken disk in a
    /// quiet commune, when no commit would).
    pub store_probe_ok: AtomicBool,
    /// Set when shutdown begins: the journal writer stops retrying a failed
    /// commit (the messages are unacknowledged and will be redelivered).
    pub stopping: AtomicBool,
    /// Journal batches committed since start.
    pub batches: AtomicU64,
    /// Committed batches, for live subscribers.
    pub updates: broadcast::Sender<Arc<Committed>>,
}

impl Shared {
    /// Build from a validated config (indicator state is empty until the
    /// journal restores it).
    pub fn new(config: Config) -> Shared {
        let registry = Arc::new(Registry::from_config(&config));
        let engine = Engine::new(&config);
        let devices = DeviceTracker::new(Arc::clone(&registry), config.devices.clone());
        let (updates, _) = broadcast::channel(1024);
        Shared {
            config,
            registry,
            engine: RwLock::new(engine),
            devices: RwLock::new(devices),
            metrics: Metrics::new(),
            mqtt_connected: AtomicBool::new(false),
            store_writable: AtomicBool::new(true),
            store_probe_ok: AtomicBool::new(true),
            stopping: AtomicBool::new(false),
            batches: AtomicU64::new(0),
            updates,
        }
    }

    /// The last commit and the last write probe both succeeded.
    pub fn store_ok(&self) -> bool {
        self.store_writable.load(Ordering::Relaxed) && self.store_probe_ok.load(Ordering::Relaxed)
    }
}
