//! The shared handles that the commit pipeline updates, and [`View`], the
//! one read model of the site's current state that the API, the
//! time-series sink and the live hub read through.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use parking_lot::{RwLock, RwLockReadGuard};
use tokio::sync::broadcast;

use crate::config::Config;
use crate::config::Registry;
use crate::devices::{Availability, DeviceTracker, DeviceView};
use crate::indicators::{Engine, Frame, IndicatorValue, ScopeSel, Touched, Window};
use crate::metrics::Metrics;
use crate::model::{DeviceClass, Event, Source};

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
    /// Official warnings the batch created or changed (new, updated,
    /// cancelled, expired), as they now stand.
    pub warnings: Vec<crate::warnings::WarningView>,
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
    /// Wakes the delivery worker after an enqueue in this process
    /// (`crate::delivery::wake`).
    pub delivery_wake: Arc<tokio::sync::Notify>,
    /// Current alerts, as the alerts engine last published them.
    pub alerts: crate::alerts::Board,
    /// The broadcasts overview (coverage, tasks, indicators), for the live
    /// `broadcasts` family.
    pub broadcasts: crate::broadcasts::Board,
    /// The MQTT connection's outbound side and taps, for everything in the
    /// process that publishes or listens besides the pipeline.
    pub outlet: crate::ingest::outlet::Outlet,
    /// The official warnings in force when the process started (read from
    /// the store by `server::open_state`), taken once by the live
    /// `warnings` projection so the screen shows them again after a
    /// restart.
    pub warnings_at_start: parking_lot::Mutex<Vec<crate::warnings::store::InForce>>,
}

impl Shared {
    /// Build from a validated config (indicator state is empty until the
    /// journal restores it).
    pub fn new(config: Config) -> Shared {
        let registry = Arc::new(Registry::from_config(&config));
        let engine = Engine::new(&config);
        let devices = DeviceTracker::new(Arc::clone(&registry), config.devices.clone());
        let (updates, _) = broadcast::channel(1024);
        let metrics = Metrics::new();
        let outlet = crate::ingest::outlet::Outlet::new(metrics.mqtt_tap_dropped.clone());
        Shared {
            config,
            registry,
            engine: RwLock::new(engine),
            devices: RwLock::new(devices),
            metrics,
            mqtt_connected: AtomicBool::new(false),
            store_writable: AtomicBool::new(true),
            store_probe_ok: AtomicBool::new(true),
            stopping: AtomicBool::new(false),
            batches: AtomicU64::new(0),
            updates,
            delivery_wake: Arc::new(tokio::sync::Notify::new()),
            alerts: crate::alerts::Board::default(),
            broadcasts: crate::broadcasts::Board::default(),
            outlet,
            warnings_at_start: parking_lot::Mutex::new(Vec::new()),
        }
    }

    /// The current view at `now`: indicators and devices read together
    /// (one consistent state between two commits).
    pub fn view(&self, now: DateTime<Utc>) -> View<'_> {
        // Engine first, then devices: the order every reader and the
        // pipeline's derive step take them in.
        let engine = self.engine.read();
        let devices = self.devices.read();
        View {
            engine,
            devices,
            now,
        }
    }

    /// The last commit and the last write probe both succeeded.
    pub fn store_ok(&self) -> bool {
        self.store_writable.load(Ordering::Relaxed) && self.store_probe_ok.load(Ordering::Relaxed)
    }
}

/// The site's current state as every reader sees it: indicator values (with
/// device availability) and device health, at one time `now`, under the
/// read locks of the engine and the device tracker (held until the view is
/// dropped: keep it short, never across an `.await`).
pub struct View<'a> {
    engine: RwLockReadGuard<'a, Engine>,
    devices: RwLockReadGuard<'a, DeviceTracker>,
    now: DateTime<Utc>,
}

impl std::fmt::Debug for View<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("View").field("now", &self.now).finish()
    }
}

impl View<'_> {
    /// The time the view is computed at.
    pub fn now(&self) -> DateTime<Utc> {
        self.now
    }

    /// The indicator engine (ids, scopes, frames, what a batch affects).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The device tracker.
    pub fn devices(&self) -> &DeviceTracker {
        &self.devices
    }

    /// Devices of `class` (in `village`, or the commune) up now.
    pub fn availability(&self, class: DeviceClass, village: Option<&str>) -> Availability {
        self.devices.availability(class, village, self.now)
    }

    /// Indicator values in `window` for the scopes `sel`, all indicators or
    /// `only` one.
    pub fn indicators(
        &self,
        window: Window,
        sel: ScopeSel<'_>,
        only: Option<&str>,
    ) -> Vec<IndicatorValue> {
        let avail = |class, village: Option<&str>| self.availability(class, village);
        self.engine.values(window, sel, self.now, &avail, only)
    }

    /// The bounds of `window` at the view's time.
    pub fn frame(&self, window: Window) -> Frame {
        self.engine.frame(window, self.now)
    }

    /// One indicator (by index) in one scope (by index) in `frame`.
    pub fn indicator(&self, spec: usize, scope: usize, frame: &Frame) -> IndicatorValue {
        let avail = |class, village: Option<&str>| self.availability(class, village);
        self.engine.value_at(spec, scope, frame, self.now, &avail)
    }

    /// Every device's health.
    pub fn device_list(&self) -> Vec<DeviceView> {
        self.devices.list(self.now)
    }

    /// One device's health.
    pub fn device(&self, class: DeviceClass, id: &str) -> DeviceView {
        self.devices.view(class, id, self.now)
    }
}
