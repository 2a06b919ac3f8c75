//! Wiring: [`run`] starts every part of the backend on an already-bound
//! listener and shuts them down in order when the token is cancelled:
//! MQTT ingest first, then the journal writer drains its queue and commits,
//! then the HTTP server stops.

use std::sync::Arc;

use parking_lot::Mutex;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::api::{self, ApiState};
use crate::config::Config;
use crate::ingest;
use crate::journal::{writer, JournalError, Store};
use crate::sources::Decoder;
use crate::state::Shared;

/// Errors that stop the server from starting or running.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The journal could not be opened or restored.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// The MQTT client could not be configured.
    #[error(transparent)]
    Mqtt(#[from] ingest::mqtt::MqttError),
    /// The embedded broker failed to start.
    #[cfg(feature = "embedded-broker")]
    #[error(transparent)]
    Broker(#[from] ingest::broker::BrokerError),
    /// Serving HTTP failed.
    #[error("HTTP server error: {0}")]
    Http(std::io::Error),
    /// The time-series sink could not be configured.
    #[error(transparent)]
    Sink(#[from] crate::sinks::SinkError),
    /// A worker thread could not be started or panicked.
    #[error("worker thread: {0}")]
    Thread(String),
}

/// A started backend: its shared state (for in-process callers such as the
/// demo and tests).
#[derive(Debug, Clone)]
pub struct Handle {
    /// Shared state.
    pub shared: Arc<Shared>,
}

/// Open the journal and restore indicator and device state from it.
pub fn open_state(config: Config) -> Result<(Arc<Shared>, Store), ServeError> {
    let path = config.journal_path();
    let mut store = Store::open_with(&path, config.store.sync, config.store.max_size_mb)?;
    let shared = Shared::new(config);
    {
        let now = chrono::Utc::now();
        let mut engine = shared.engine.write();
        if store.restore_indicators(&mut engine, now)? {
            tracing::info!("rollups rebuilt from the journal");
        }
        let mut devices = shared.devices.write();
        for (class, id, health) in store.devices()? {
            devices.load(class, id, health);
        }
    }
    Ok((Arc::new(shared), store))
}

/// Every 30 s, check the store still takes a write, on a connection of its
/// own (the journal writer may be idle for hours in a quiet commune).
async fn probe_store(shared: Arc<Shared>, cancel: CancellationToken) {
    let path = shared.config.journal_path();
    let conn: Arc<Mutex<Option<Store>>> = Arc::new(Mutex::new(None));
    let mut interval = tokio::time::interval(std::time::Duration::from_secs(30));
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = interval.tick() => {}
        }
        let (path, shared_conn) = (path.clone(), Arc::clone(&conn));
        let result = tokio::task::spawn_blocking(move || {
            let mut guard = shared_conn.lock();
            if guard.is_none() {
                *guard = Some(Store::open_with(&path, crate::config::SyncMode::Normal, 0)?);
            }
            match guard.as_ref() {
                Some(store) => store.probe(),
                None => Ok(()),
            }
        })
        .await;
        let ok = match result {
            Ok(Ok(())) => true,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "store write probe failed");
                *conn.lock() = None;
                false
            }
            Err(e) => {
                tracing::error!(error = %e, "store write probe task failed");
                false
            }
        };
        shared
            .store_probe_ok
            .store(ok, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Run the backend until `shutdown` is cancelled. `on_ready` is called with
/// the shared state once everything is started.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
    on_ready: impl FnOnce(Handle) + Send,
) -> Result<(), ServeError> {
    #[cfg(feature = "embedded-broker")]
    if config.mqtt.embedded {
        let addr = format!("{}:{}", config.mqtt.host, config.mqtt.port);
        let addr: std::net::SocketAddr = addr.parse().map_err(|_| {
            ServeError::Thread(format!("embedded broker address {addr} is not an IP:port"))
        })?;
        let max = config.ingest.max_payload_bytes.saturating_mul(4);
        tokio::task::spawn_blocking(move || ingest::broker::start(addr, max))
            .await
            .map_err(|e| ServeError::Thread(e.to_string()))??;
        tracing::info!(%addr, "embedded MQTT broker listening");
    }

    let (shared, store) = open_state(config)?;
    let reader = Store::open_reader(&shared.config.journal_path())?;
    let decoder = Decoder::new(
        Arc::clone(&shared.registry),
        shared.config.ingest.clone(),
        shared.config.procedure.reject_unknown_village,
    );
    let filters = ingest::mqtt::filters(&shared.config, decoder.topic_filters());
    let (tx, rx) = mpsc::channel(shared.config.store.queue_capacity.max(1));
    let writer = writer::spawn(store, decoder, Arc::clone(&shared), rx)
        .map_err(|e| ServeError::Thread(e.to_string()))?;

    let backend = shutdown.child_token();
    let frontend = CancellationToken::new();
    let tasks = TaskTracker::new();

    let mqtt = tasks.spawn(ingest::mqtt::run(
        Arc::clone(&shared),
        filters,
        tx,
        backend.clone(),
    ));

    let app = api::router(ApiState {
        shared: Arc::clone(&shared),
        reader: Arc::new(Mutex::new(reader)),
    });
    let fe = frontend.clone();
    tasks.spawn(probe_store(Arc::clone(&shared), backend.clone()));
    if crate::sinks::enabled(&shared) {
        let sink = crate::sinks::influx::InfluxSink::new(&shared.config.influx)?;
        tasks.spawn(crate::sinks::run(
            sink,
            Arc::clone(&shared),
            backend.clone(),
        ));
    }
    let http = tasks.spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move { fe.cancelled().await })
            .await
    });
    tasks.close();
    on_ready(Handle {
        shared: Arc::clone(&shared),
    });

    // Ordered shutdown: ingest, then journal, then HTTP.
    backend.cancelled().await;
    tracing::info!("shutting down: stopping MQTT ingest");
    match mqtt.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(error = %e, "MQTT supervisor failed"),
        Err(e) => tracing::error!(error = %e, "MQTT supervisor panicked"),
    }
    tracing::info!("draining the journal queue");
    shared
        .stopping
        .store(true, std::sync::atomic::Ordering::Release);
    tokio::task::spawn_blocking(move || writer.join())
        .await
        .map_err(|e| ServeError::Thread(e.to_string()))?
        .map_err(|_| ServeError::Thread("journal writer panicked".into()))?;
    tracing::info!("stopping HTTP");
    frontend.cancel();
    let served = http.await.map_err(|e| ServeError::Thread(e.to_string()))?;
    tasks.wait().await;
    served.map_err(ServeError::Http)
}
