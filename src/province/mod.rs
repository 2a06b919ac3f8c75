//! Province mode: `commune-ioc serve --config PROCESS.toml --sites DIR`
//! (docs/PROVINCE.md §6).
//!
//! Every commune's journal arrives through a NATS JetStream stream (their
//! uplinks, `crate::uplink`). An instance keeps, per commune (a *site*):
//!
//! - its own durable consumer `{instance}-{commune}` ([`consumer`]), so two
//!   or more instances each get every entry (the Prometheus HA-pair
//!   pattern: no leader, no replication between them);
//! - its own journal under `{store.path}/sites/{commune}/`, where entries
//!   keep the commune's `(commune, seq)`: a re-delivered entry changes
//!   nothing, a missing one is reported as a gap ([`site`]);
//! - the commune's indicators and device health rebuilt from it exactly as
//!   on the commune's box, its warnings, and its sealed reports verified
//!   against its public key ([`reports`]);
//! - the commune's own API and screen under `/site/{commune}/` (read only).
//!
//! The province's own routes ([`api`]) give the overview the province wall
//! screen shows. A site whose config does not load is listed with its
//! error; the others run. One commune's flood or failing store stalls only
//! its own consumer.

pub mod api;
pub mod consumer;
pub mod reports;
pub mod screen;
pub mod site;
pub mod sites;
pub mod wire;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use axum::extract::Request;
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use parking_lot::Mutex;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::api::{self as commune_api, ApiState, WsTasks};
use crate::auth::{Accounts, Authenticator, LoginLimiter};
use crate::config::ProvinceDef;
use crate::journal::Store;
use crate::live::{self, Hub};
use crate::server::ServeError;
pub use site::Site;
pub use sites::{Layout, SiteFile};

/// One configured commune: running, or broken with its error.
#[derive(Debug)]
pub struct Entry {
    /// Commune id.
    pub id: String,
    /// Display name (the id when the file did not load).
    pub name: String,
    /// Its site file.
    pub file: PathBuf,
    /// The running site, or why it is not running (Vietnamese).
    pub state: Result<Arc<Site>, String>,
}

/// A running province instance.
#[derive(Debug)]
pub struct Province {
    /// `[province]`.
    pub def: ProvinceDef,
    /// Every configured commune, sorted by id.
    pub sites: Vec<Entry>,
    /// The province's users and tokens (they sign in once for every site).
    pub accounts: Arc<Accounts>,
    /// `auth.public_read` of the process config.
    pub public_read: bool,
    stream_up: AtomicBool,
    registry: Mutex<prometheus_client::registry::Registry>,
    gauges: SiteGauges,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SiteLabel {
    site: String,
}

#[derive(Debug, Default)]
struct SiteGauges {
    entries: Family<SiteLabel, Gauge>,
    duplicates: Family<SiteLabel, Gauge>,
    missing: Family<SiteLabel, Gauge>,
    lag: Family<SiteLabel, Gauge>,
    head: Family<SiteLabel, Gauge>,
    broken: Gauge,
    stream_up: Gauge,
}

impl Province {
    /// The NATS connection is up.
    pub fn stream_connected(&self) -> bool {
        self.stream_up.load(Ordering::Relaxed)
    }

    /// The province's metrics, as of now.
    pub fn render_metrics(&self) -> String {
        let now = chrono::Utc::now();
        let g = &self.gauges;
        let mut broken = 0;
        for e in &self.sites {
            let Ok(s) = &e.state else {
                broken += 1;
                continue;
            };
            let l = SiteLabel { site: e.id.clone() };
            let copy = s.copy();
            g.entries.get_or_create(&l).set(copy.entries);
            g.head.get_or_create(&l).set(copy.head);
            g.duplicates
                .get_or_create(&l)
                .set(s.duplicates.load(Ordering::Relaxed) as i64);
            g.missing.get_or_create(&l).set(copy.missing());
            g.lag.get_or_create(&l).set(s.lag_s(now).unwrap_or(-1));
        }
        g.broken.set(broken);
        g.stream_up.set(i64::from(self.stream_connected()));
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry.lock()).is_err() {
            out.clear();
        }
        out
    }
}

fn registry(g: &SiteGauges) -> prometheus_client::registry::Registry {
    let mut r = prometheus_client::registry::Registry::with_prefix("ioc_province");
    r.register(
        "entries",
        "Entries of the commune's journal held by this instance",
        g.entries.clone(),
    );
    r.register("head_seq", "Highest seq held", g.head.clone());
    r.register(
        "duplicates",
        "Re-delivered entries dropped since start",
        g.duplicates.clone(),
    );
    r.register(
        "gap_entries",
        "Seqs missing below the head (never filled in by the province)",
        g.missing.clone(),
    );
    r.register(
        "lag_seconds",
        "Seconds since the newest entry was journaled at the commune (-1: none yet)",
        g.lag.clone(),
    );
    r.register(
        "sites_broken",
        "Site configs that did not load",
        g.broken.clone(),
    );
    r.register(
        "stream_up",
        "Connected to the NATS servers",
        g.stream_up.clone(),
    );
    r
}

/// A started province (for tests and the binary).
#[derive(Debug, Clone)]
pub struct Handle {
    /// The instance.
    pub province: Arc<Province>,
    /// The generated password of the first `admin`, to be shown once.
    pub first_admin_password: Option<String>,
}

/// Writes at the province are refused under `/site/{commune}/` except
/// signing in and out: the copy is the commune's, read only.
async fn read_only(req: Request, next: Next) -> Response {
    let m = req.method();
    let auth = req.uri().path().contains("/api/auth/");
    if m == Method::GET || m == Method::HEAD || m == Method::OPTIONS || auth {
        return next.run(req).await;
    }
    commune_api::ApiError::Status {
        status: StatusCode::METHOD_NOT_ALLOWED,
        code: "read_only_copy",
        message: "Đây là bản sao ở tỉnh của dữ liệu xã, chỉ để xem; thao tác tại máy của xã."
            .into(),
    }
    .into_response()
}

/// Run a province instance on `listener` until `shutdown`.
pub async fn run(
    layout: Layout,
    listener: TcpListener,
    shutdown: CancellationToken,
    on_ready: impl FnOnce(Handle) + Send,
) -> Result<(), ServeError> {
    let Layout {
        process,
        province: def,
        sites: files,
    } = layout;
    std::fs::create_dir_all(&process.store.path)
        .map_err(|e| ServeError::Thread(format!("{}: {e}", process.store.path.display())))?;
    let accounts = Arc::new(Accounts::open(&process.journal_path(), &process.auth)?);
    let admin_password = process
        .auth
        .admin_password
        .as_ref()
        .filter(|p| !p.expose().is_empty());
    let first_admin_password = accounts.bootstrap_admin(admin_password)?;
    let limiter = Arc::new(LoginLimiter::new(&process.auth));
    let backend = shutdown.child_token();
    let frontend = CancellationToken::new();
    let tasks = TaskTracker::new();
    let ws = WsTasks {
        tracker: TaskTracker::new(),
        cancel: frontend.child_token(),
        slots: live::session::Slots::new(&process.live, &crate::metrics::Metrics::new()),
    };

    // Open every site (in parallel threads: restoring a big copy takes
    // time); a site that fails stays listed with its error.
    let opened: Vec<(SiteFile, Result<Site, String>)> = {
        let handles: Vec<_> = files
            .into_iter()
            .map(|f| {
                std::thread::spawn(move || {
                    let r = match &f.config {
                        Ok(c) => Site::open(c.clone()).map_err(|e| e.to_string()),
                        Err(e) => Err(e.clone()),
                    };
                    (f, r)
                })
            })
            .collect();
        let mut v = Vec::new();
        for h in handles {
            v.push(
                h.join()
                    .map_err(|_| ServeError::Thread("site open panicked".into()))?,
            );
        }
        v
    };
    let mut entries = Vec::new();
    let mut app = Router::new();
    for (file, site) in opened {
        let name = file
            .config
            .as_ref()
            .map_or_else(|_| file.id.clone(), |c| c.commune.name.clone());
        let state = match site {
            Ok(site) => {
                let site = Arc::new(site);
                let shared = Arc::clone(&site.shared);
                let path = shared.config.journal_path();
                let (hub, commits) = Hub::new(Arc::clone(&shared));
                tasks.spawn(live::run(Arc::clone(&hub), commits, frontend.clone()));
                let (tx, _rx) = tokio::sync::mpsc::channel(1);
                let state = ApiState {
                    alerts: Arc::clone(&site.alerts),
                    reader: Arc::new(Mutex::new(Store::open_reader(&path)?)),
                    actions: Arc::new(Mutex::new(Store::open_with(
                        &path,
                        shared.config.store.sync,
                        0,
                    )?)),
                    live: hub,
                    auth: Arc::clone(&accounts) as Arc<dyn Authenticator>,
                    accounts: Arc::clone(&accounts),
                    limiter: Arc::clone(&limiter),
                    ws: ws.clone(),
                    warnings: Arc::new(crate::warnings::Service::new(&shared.config, tx)),
                    push: None,
                    shared,
                };
                let router = commune_api::router(state).layer(axum::middleware::from_fn(read_only));
                app = app.nest(&format!("/site/{}", file.id), router);
                Ok(site)
            }
            Err(e) => {
                tracing::error!(site = %file.id, file = %file.path.display(), error = %e, "site not started");
                Err(e)
            }
        };
        entries.push(Entry {
            id: file.id,
            name,
            file: file.path,
            state,
        });
    }
    let gauges = SiteGauges::default();
    let province = Arc::new(Province {
        registry: Mutex::new(registry(&gauges)),
        gauges,
        def: def.clone(),
        sites: entries,
        accounts: Arc::clone(&accounts),
        public_read: process.auth.public_read,
        stream_up: AtomicBool::new(false),
    });
    let served: Vec<String> = province
        .sites
        .iter()
        .filter(|s| s.state.is_ok())
        .map(|s| s.id.clone())
        .collect();
    let app = app.merge(screen::router(
        api::routes(Arc::clone(&province)),
        &def.peers,
        &served,
    ));

    // One NATS connection for every site's consumer.
    let cfg = process.stream.clone();
    let url = cfg.url.clone().unwrap_or_default();
    let opts = crate::uplink::connect_options(
        &cfg.as_uplink(),
        &format!("commune-ioc-province-{}-{}", def.id, def.instance),
    )
    .await
    .map_err(|e| ServeError::Thread(e.to_string()))?;
    let p = Arc::clone(&province);
    let opts = opts.event_callback(move |ev| {
        let p = Arc::clone(&p);
        async move {
            match ev {
                async_nats::Event::Connected => p.stream_up.store(true, Ordering::Relaxed),
                async_nats::Event::Disconnected => p.stream_up.store(false, Ordering::Relaxed),
                _ => {}
            }
        }
    });
    let client = opts
        .connect(crate::config::nats_servers(&url))
        .await
        .map_err(|e| ServeError::Thread(format!("NATS {url}: {e}")))?;
    if client.connection_state() == async_nats::connection::State::Connected {
        province.stream_up.store(true, Ordering::Relaxed);
    }
    let timeout = Duration::from_millis(cfg.request_timeout_ms.max(100));
    let js = jetstream::ContextBuilder::new()
        .timeout(timeout)
        .build(client.clone());
    for e in &province.sites {
        if let Ok(site) = &e.state {
            tasks.spawn(consumer::run(
                Arc::clone(site),
                js.clone(),
                cfg.clone(),
                def.instance.clone(),
                backend.clone(),
            ));
        }
    }
    tracing::info!(
        province = %def.id, instance = %def.instance, sites = province.sites.len(),
        broken = province.sites.iter().filter(|s| s.state.is_err()).count(),
        servers = %url, "province instance started"
    );

    let limits = commune_api::serve::Limits::from_config(&process);
    let http_metrics = crate::metrics::Metrics::new();
    let fe = frontend.clone();
    let http = tasks.spawn(async move {
        commune_api::serve::serve(listener, app, limits, &http_metrics, fe).await
    });
    tasks.close();
    on_ready(Handle {
        province: Arc::clone(&province),
        first_admin_password,
    });

    // Ordered shutdown: consumers (a batch being committed finishes; an
    // unacknowledged one is re-delivered), then HTTP.
    backend.cancelled().await;
    tracing::info!("shutting down: stopping the consumers");
    let _ = tokio::time::timeout(Duration::from_secs(2), client.flush()).await;
    frontend.cancel();
    ws.tracker.close();
    let _ = tokio::time::timeout(Duration::from_secs(5), ws.tracker.wait()).await;
    let served = http.await.map_err(|e| ServeError::Thread(e.to_string()))?;
    tasks.wait().await;
    served.map_err(ServeError::Http)
}
