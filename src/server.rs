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

use crate::api::{self, ApiState, WsTasks};
use crate::auth::{AccountError, Accounts, Authenticator, LoginLimiter};
use crate::config::Config;
use crate::ingest;
use crate::journal::{JournalError, Store};
use crate::live::{self, Hub};
use crate::runtime::pipeline;
use crate::sources::Decoder;
use crate::state::Shared;

/// How long shutdown waits for WebSocket connections to close.
const WS_CLOSE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Errors that stop the server from starting or running.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The journal could not be opened or restored.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// The account store could not be opened.
    #[error(transparent)]
    Accounts(#[from] AccountError),
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
    /// Users and tokens (the demo makes its kiosk token here).
    pub accounts: Arc<Accounts>,
    /// The generated password of the first `admin`, on the first start of
    /// a store without users and without `auth.admin_password`: to be shown
    /// once.
    pub first_admin_password: Option<String>,
}

/// Open the journal and restore indicator and device state from it.
pub fn open_state(config: Config) -> Result<(Arc<Shared>, Store), ServeError> {
    let path = config.journal_path();
    let mut store = Store::open_with(&path, config.store.sync, config.store.max_size_mb)?;
    store.bind_commune(&config.commune.id)?;
    store.set_report_rule(crate::reports::intake::Rule::from_config(&config.report));
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
        let since = now - chrono::Duration::days(i64::from(shared.config.warnings.recent_days));
        let in_force = crate::warnings::store::in_force(
            store.conn(),
            now,
            since,
            crate::live::projections::warnings::MAX_LISTED,
        )
        .map_err(JournalError::from)?;
        *shared.warnings_at_start.lock() = in_force;
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

/// How often the login housekeeping runs: unlocks from the CLI are picked
/// up this often, and refused logins are written to the audit log as one
/// count per name, address and [`REFUSAL_WINDOW`].
const LOGIN_TICK: std::time::Duration = std::time::Duration::from_secs(1);
/// The window over which refused attempts against a locked name are
/// summed into one audit entry.
const REFUSAL_WINDOW: std::time::Duration = std::time::Duration::from_secs(60);

/// Write the counted refusals as one audit entry per name and address.
fn audit_refusals(accounts: &Accounts, limiter: &LoginLimiter) {
    for r in limiter.take_refusals() {
        let addr = r.addr.to_string();
        let detail = format!("locked out; {} more attempts refused", r.count);
        let actor = if r.name.is_empty() {
            "(nhiều tên)"
        } else {
            r.name.as_str()
        };
        accounts.audit(&crate::auth::NewAudit {
            actor,
            role: None,
            addr: Some(addr),
            action: "login",
            object: None,
            outcome: crate::auth::Outcome::Denied,
            detail: Some(&detail),
        });
    }
}

/// Login housekeeping: apply `commune-ioc user unlock` (read from the
/// audit log, where the CLI records it), and write refused-attempt counts
/// once per window (and on shutdown).
async fn login_upkeep(
    accounts: Arc<Accounts>,
    limiter: Arc<LoginLimiter>,
    cancel: CancellationToken,
) {
    let mut seen = {
        let a = Arc::clone(&accounts);
        tokio::task::spawn_blocking(move || a.last_audit_id())
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or(0)
    };
    let mut interval = tokio::time::interval(LOGIN_TICK);
    let mut window_start = tokio::time::Instant::now();
    loop {
        let stopping = tokio::select! {
            _ = cancel.cancelled() => true,
            _ = interval.tick() => false,
        };
        let flush = stopping || window_start.elapsed() >= REFUSAL_WINDOW;
        if flush {
            window_start = tokio::time::Instant::now();
        }
        let (a, l) = (Arc::clone(&accounts), Arc::clone(&limiter));
        let after = seen;
        let done = tokio::task::spawn_blocking(move || {
            if flush {
                audit_refusals(&a, &l);
            }
            let unlocks = a.unlocks_after(after)?;
            let mut last = after;
            for (id, name) in unlocks {
                let n = l.unlock(&name);
                tracing::info!(user = %name, lockouts = n, "login lockouts lifted by `user unlock`");
                last = id;
            }
            Ok::<_, AccountError>(last)
        })
        .await;
        match done {
            Ok(Ok(last)) => seen = last,
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot read unlocks from the audit log"),
            Err(e) => tracing::error!(error = %e, "login upkeep task failed"),
        }
        if stopping {
            return;
        }
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
        let max = ingest::mqtt::embedded_max_payload(&config);
        let policy = ingest::gate::Policy {
            commune: config.commune.id.clone(),
            backend_client_id: config.client_id(),
            devices: config
                .cameras
                .iter()
                .map(|d| (d.id.clone(), "camera"))
                .chain(config.speakers.iter().map(|d| (d.id.clone(), "speaker")))
                .chain(config.sensors.iter().map(|d| (d.id.clone(), "sensor")))
                .collect(),
            logins: config
                .mqtt
                .embedded_logins
                .iter()
                .map(|(u, p)| (u.clone(), p.expose().to_owned()))
                .collect(),
            max_payload: max,
            mapped: config
                .site
                .mapped
                .iter()
                .flat_map(|m| {
                    m.rules
                        .iter()
                        .map(|r| r.topic.clone())
                        .chain(m.availability.iter().map(|a| a.topic.clone()))
                        .map(|t| (m.id.clone(), t))
                })
                .collect(),
        };
        let started = tokio::task::spawn_blocking(move || ingest::broker::start(addr, max))
            .await
            .map_err(|e| ServeError::Thread(e.to_string()))??;
        let listener = TcpListener::from_std(started.listener)
            .map_err(|e| ServeError::Thread(format!("embedded broker listener: {e}")))?;
        let inner = started.inner;
        tokio::spawn(ingest::gate::run(
            listener,
            inner.addr,
            (inner.username, inner.password),
            std::sync::Arc::new(policy),
        ));
        tracing::info!(%addr, "embedded MQTT broker listening");
    }

    let (shared, store) = open_state(config)?;
    let reader = Store::open_reader(&shared.config.journal_path())?;
    let decoder = Decoder::new(
        Arc::clone(&shared.registry),
        shared.config.ingest.clone(),
        shared.config.procedure.reject_unknown_village,
    )
    .with_mapped(crate::sources::mapped::Mapped::new(
        shared.config.site.mapped.clone(),
    ))
    .with_dvcqg(shared.config.procedure.dvcqg.clone());
    let filters = ingest::mqtt::filters(&shared.config, decoder.topic_filters());
    let (hub, commits) = Hub::new(Arc::clone(&shared));
    let (tx, rx) = mpsc::channel(shared.config.store.queue_capacity.max(1));
    let warnings = Arc::new(crate::warnings::Service::new(&shared.config, tx.clone()));
    let push = api::dvcqg::PushPort::new(tx.clone(), decoder.clone());
    let writer = pipeline::spawn(store, decoder, Arc::clone(&shared), rx)
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

    let ws = WsTasks {
        tracker: TaskTracker::new(),
        cancel: frontend.child_token(),
        slots: live::session::Slots::new(&shared.config.live, &shared.metrics),
    };
    let accounts = Arc::new(Accounts::open(
        &shared.config.journal_path(),
        &shared.config.auth,
    )?);
    // An empty IOC__AUTH__ADMIN_PASSWORD counts as unset.
    let admin_password = shared
        .config
        .auth
        .admin_password
        .as_ref()
        .filter(|p| !p.expose().is_empty());
    let first_admin_password = accounts.bootstrap_admin(admin_password)?;
    accounts.reserve_for_ingest(shared.config.store.max_size_mb)?;
    let actions = Store::open_with(
        &shared.config.journal_path(),
        shared.config.store.sync,
        shared.config.store.max_size_mb,
    )?;
    let limiter = Arc::new(LoginLimiter::new(&shared.config.auth));
    let alert_actions =
        crate::alerts::AlertStore::open(&shared.config.journal_path(), shared.config.store.sync)
            .map_err(|e| ServeError::Thread(format!("alerts store: {e}")))?;
    let app = api::router(ApiState {
        alerts: Arc::new(Mutex::new(alert_actions)),
        shared: Arc::clone(&shared),
        reader: Arc::new(Mutex::new(reader)),
        actions: Arc::new(Mutex::new(actions)),
        live: Arc::clone(&hub),
        auth: Arc::clone(&accounts) as Arc<dyn Authenticator>,
        accounts: Arc::clone(&accounts),
        limiter: Arc::clone(&limiter),
        ws: ws.clone(),
        warnings: Arc::clone(&warnings),
        push: Some(Arc::clone(&push)),
    });
    let hub_task = tasks.spawn(live::run(hub, commits, frontend.clone()));
    tasks.spawn(login_upkeep(
        Arc::clone(&accounts),
        Arc::clone(&limiter),
        frontend.clone(),
    ));
    let fe = frontend.clone();
    tasks.spawn(probe_store(Arc::clone(&shared), backend.clone()));
    tasks.spawn(crate::warnings::service::sweep_expired(
        Arc::clone(&warnings),
        Arc::clone(&shared),
        backend.clone(),
    ));
    for feed in shared.config.warnings.feeds.iter().cloned() {
        tasks.spawn(crate::warnings::feed::run(
            Arc::clone(&warnings),
            feed,
            backend.clone(),
        ));
    }
    // Sealed reports: auto-seal and correction drafts (issue 13).
    tasks.spawn(crate::reports::task::run(
        Arc::clone(&shared),
        Arc::clone(&accounts),
        backend.clone(),
    ));
    // Sealed reports on their way out: auto-submission, the province's
    // acknowledgements, the retained MQTT copy.
    tasks.spawn(crate::reports::export::outbound::run(
        Arc::clone(&shared),
        Arc::clone(&accounts),
        backend.clone(),
    ));
    if crate::sinks::enabled(&shared) {
        let sink = crate::sinks::influx::InfluxSink::new(&shared.config.influx)?;
        tasks.spawn(crate::sinks::run(
            sink,
            Arc::clone(&shared),
            backend.clone(),
        ));
    }
    // The uplink to the province (NATS JetStream), beside ingest, never on
    // its path.
    if crate::uplink::enabled(&shared) {
        tasks.spawn(crate::uplink::run(Arc::clone(&shared), backend.clone()));
    }
    // Durable HTTP delivery (province reports, webhooks); stopped with the
    // backend, after its requests in flight had a few seconds.
    tasks.spawn(crate::delivery::run(Arc::clone(&shared), backend.clone()));
    // Alert rules, warnings → alerts, escalation (enqueues into delivery).
    tasks.spawn(crate::alerts::run(
        Arc::clone(&shared),
        Arc::new(crate::alerts::SystemClock),
        backend.clone(),
    ));
    // Loudspeaker broadcasts: commands, acknowledgements, coverage (issue 14).
    tasks.spawn(crate::broadcasts::worker::run(
        Arc::clone(&shared),
        backend.clone(),
    ));
    let limits = api::serve::Limits::from_config(&shared.config);
    let http_shared = Arc::clone(&shared);
    let http = tasks.spawn(async move {
        api::serve::serve(listener, app, limits, &http_shared.metrics, fe).await
    });
    tasks.close();
    on_ready(Handle {
        shared: Arc::clone(&shared),
        accounts: Arc::clone(&accounts),
        first_admin_password,
    });

    // Ordered shutdown: ingest, then journal, then HTTP.
    backend.cancelled().await;
    tracing::info!("shutting down: stopping MQTT ingest");
    match mqtt.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(error = %e, "MQTT supervisor failed"),
        Err(e) => tracing::error!(error = %e, "MQTT supervisor panicked"),
    }
    // No more HTTP pushes or posted warnings: the writer stops once every
    // sender is gone.
    push.close();
    warnings.close();
    tracing::info!("draining the journal queue");
    shared
        .stopping
        .store(true, std::sync::atomic::Ordering::Release);
    tokio::task::spawn_blocking(move || writer.join())
        .await
        .map_err(|e| ServeError::Thread(e.to_string()))?
        .map_err(|_| ServeError::Thread("journal writer panicked".into()))?;
    tracing::info!("stopping HTTP and closing WebSockets");
    frontend.cancel();
    ws.tracker.close();
    if tokio::time::timeout(WS_CLOSE_WAIT, ws.tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            open = ws.tracker.len(),
            "WebSocket connections did not close in time"
        );
    }
    let served = http.await.map_err(|e| ServeError::Thread(e.to_string()))?;
    if let Err(e) = hub_task.await {
        tracing::error!(error = %e, "live hub panicked");
    }
    tasks.wait().await;
    served.map_err(ServeError::Http)
}
