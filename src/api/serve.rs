//! Serving HTTP connections (instead of `axum::serve`, which has no
//! timeouts for idle or half-sent connections and no connection cap):
//!
//! - a new connection must finish its first request head within
//!   `http.header_timeout_s`, a keep-alive connection with no request in
//!   flight is closed after `http.idle_timeout_s`;
//! - at most `http.max_connections` are open (kept below the process's
//!   file limit); at the cap the longest-idle connection is closed to make
//!   room, and when every one is busy the newcomer gets a 503;
//! - the file limit is raised to its hard maximum at start;
//! - on shutdown, no new connection is accepted, idle ones close at once,
//!   requests in flight finish (bounded by the timeouts).
//!
//! A WebSocket leaves this accounting once upgraded (it then counts under
//! `live.max_connections`).

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use parking_lot::Mutex;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::config::Config;
use crate::metrics::Metrics;

/// File descriptors kept for everything but HTTP connections (the store's
/// connections, the broker, the sink, logs), on top of `live.max_connections`.
const OTHER_FDS: u64 = 128;

/// The smallest connection cap, whatever the file limit.
const MIN_CONNECTIONS: usize = 64;

/// Connection limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Time for a new connection's first request head.
    pub header_timeout: Duration,
    /// Time a connection may stay without a request in flight.
    pub idle_timeout: Duration,
    /// Most connections open at once.
    pub max_connections: usize,
}

impl Limits {
    /// From the config, with the connection cap kept below the file limit
    /// (raised to its hard maximum first).
    pub fn from_config(c: &Config) -> Limits {
        let files = raise_file_limit();
        let mut max = c.http.max_connections.max(1);
        if let Some(files) = files {
            let budget = files
                .saturating_sub(OTHER_FDS)
                .saturating_sub(c.live.max_connections as u64);
            let fit = usize::try_from(budget)
                .unwrap_or(usize::MAX)
                .max(MIN_CONNECTIONS);
            if fit < max {
                tracing::warn!(
                    file_limit = files,
                    configured = max,
                    used = fit,
                    "http.max_connections lowered to fit the file limit (raise LimitNOFILE / ulimit -n)"
                );
                max = fit;
            }
        }
        Limits {
            header_timeout: Duration::from_secs(c.http.header_timeout_s.max(1)),
            idle_timeout: Duration::from_secs(c.http.idle_timeout_s.max(1)),
            max_connections: max,
        }
    }
}

/// Raise the soft limit of open files to the hard one; the soft limit
/// after that (None when unknown).
fn raise_file_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        use rustix::process::{getrlimit, setrlimit, Resource};
        let mut l = getrlimit(Resource::Nofile);
        if l.current < l.maximum {
            let raised = rustix::process::Rlimit {
                current: l.maximum,
                maximum: l.maximum,
            };
            match setrlimit(Resource::Nofile, raised) {
                Ok(()) => l = getrlimit(Resource::Nofile),
                Err(e) => tracing::debug!(error = %e, "cannot raise the open-file limit"),
            }
        }
        l.current
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// One open connection, as the cap and the timeouts see it.
#[derive(Debug)]
struct Conn {
    /// Requests in flight (until their answer is fully written).
    busy: AtomicUsize,
    /// When the connection last became idle (ms since the server started).
    idle_since: AtomicU64,
    /// Requests started so far.
    served: AtomicU64,
    /// Cancelled to close the connection at once.
    close: CancellationToken,
}

/// Marks its connection busy while it lives.
struct BusyGuard {
    conn: Arc<Conn>,
    epoch: Instant,
}

impl BusyGuard {
    fn new(conn: Arc<Conn>, epoch: Instant) -> BusyGuard {
        conn.busy.fetch_add(1, Ordering::AcqRel);
        conn.served.fetch_add(1, Ordering::AcqRel);
        BusyGuard { conn, epoch }
    }
}

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.conn
            .idle_since
            .store(millis(self.epoch), Ordering::Release);
        self.conn.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

fn millis(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
}

#[derive(Debug, Default)]
struct Table {
    next: u64,
    conns: HashMap<u64, Arc<Conn>>,
}

/// The metrics this module keeps.
#[derive(Debug, Clone)]
struct Counters {
    open: Gauge,
    timed_out: Counter,
    shed: Counter,
}

/// Serve `app` on `listener` until `shutdown` is cancelled, then let the
/// connections finish.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    metrics: &Metrics,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let counters = Counters {
        open: metrics.http_connections.clone(),
        timed_out: metrics.http_connections_timed_out.clone(),
        shed: metrics.http_connections_shed.clone(),
    };
    let epoch = Instant::now();
    let table = Arc::new(Mutex::new(Table::default()));
    let tracker = TaskTracker::new();
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    tracing::info!(
        max_connections = limits.max_connections,
        header_timeout_s = limits.header_timeout.as_secs(),
        idle_timeout_s = limits.idle_timeout.as_secs(),
        "HTTP connection limits"
    );
    loop {
        let (tcp, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and the like: wait a little rather than spin.
                    tracing::warn!(error = %e, "cannot accept an HTTP connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // Live frames are small and frequent: without TCP_NODELAY, Nagle's
        // algorithm holds each one back until the client's (delayed)
        // acknowledgement of the previous one, tens of ms.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY on a connection");
        }
        let Some((id, conn)) = admit(&table, &limits, epoch, &counters) else {
            tracker.spawn(refuse(tcp));
            continue;
        };
        counters.open.inc();
        let app = app.clone();
        let (builder, table, counters, shutdown) = (
            builder.clone(),
            Arc::clone(&table),
            counters.clone(),
            shutdown.clone(),
        );
        tracker.spawn(async move {
            serve_one(
                tcp, peer, app, &builder, &conn, limits, epoch, &counters, shutdown,
            )
            .await;
            table.lock().conns.remove(&id);
            counters.open.dec();
        });
    }
    tracker.close();
    tracker.wait().await;
    Ok(())
}

/// A place for a new connection: at the cap, the longest-idle connection
/// is closed to make room; None when every one is busy.
fn admit(
    table: &Mutex<Table>,
    limits: &Limits,
    epoch: Instant,
    counters: &Counters,
) -> Option<(u64, Arc<Conn>)> {
    let mut t = table.lock();
    if t.conns.len() >= limits.max_connections {
        let victim = t
            .conns
            .iter()
            .filter(|(_, c)| c.busy.load(Ordering::Acquire) == 0)
            .min_by_key(|(_, c)| c.idle_since.load(Ordering::Acquire))
            .map(|(id, _)| *id);
        counters.shed.inc();
        let victim = victim?;
        if let Some(c) = t.conns.remove(&victim) {
            c.close.cancel();
        }
    }
    let id = t.next;
    t.next += 1;
    let conn = Arc::new(Conn {
        busy: AtomicUsize::new(0),
        idle_since: AtomicU64::new(millis(epoch)),
        served: AtomicU64::new(0),
        close: CancellationToken::new(),
    });
    t.conns.insert(id, Arc::clone(&conn));
    Some((id, conn))
}

/// Every connection busy at the cap: a short 503 and close.
async fn refuse(mut tcp: TcpStream) {
    let body = r#"{"error":{"code":"too_many_connections","message":"Máy chủ đang quá tải kết nối, vui lòng thử lại sau."}}"#;
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         retry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), tcp.write_all(answer.as_bytes())).await;
}

#[allow(clippy::too_many_arguments)]
async fn serve_one(
    tcp: TcpStream,
    peer: SocketAddr,
    app: Router,
    builder: &hyper_util::server::conn::auto::Builder<TokioExecutor>,
    conn: &Arc<Conn>,
    limits: Limits,
    epoch: Instant,
    counters: &Counters,
    shutdown: CancellationToken,
) {
    let state = Arc::clone(conn);
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        let guard = BusyGuard::new(Arc::clone(&state), epoch);
        req.extensions_mut().insert(ConnectInfo(peer));
        let app = app.clone();
        async move {
            let res = app
                .oneshot(req.map(axum::body::Body::new))
                .await
                .unwrap_or_else(|never: Infallible| match never {});
            // Busy until the answer's body is written (or dropped).
            Ok::<_, Infallible>(res.map(|body| {
                axum::body::Body::new(body.map_frame(move |frame| {
                    let _busy = &guard;
                    frame
                }))
            }))
        }
    });
    let serving = builder.serve_connection_with_upgrades(TokioIo::new(tcp), service);
    tokio::pin!(serving);
    let mut draining = false;
    loop {
        let deadline = next_deadline(conn, &limits, epoch);
        tokio::select! {
            r = serving.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, %peer, "HTTP connection ended with an error");
                }
                return;
            }
            _ = conn.close.cancelled() => return,
            _ = shutdown.cancelled(), if !draining => {
                serving.as_mut().graceful_shutdown();
                draining = true;
            }
            _ = tokio::time::sleep_until(deadline) => {
                if expired(conn, &limits, epoch) {
                    counters.timed_out.inc();
                    tracing::debug!(%peer, "closing an idle or slow HTTP connection");
                    return;
                }
            }
        }
    }
}

/// How long the connection may stay idle now: the header timeout until it
/// has started a request, then the idle timeout.
fn allowed(conn: &Conn, limits: &Limits) -> Duration {
    if conn.served.load(Ordering::Acquire) == 0 {
        limits.header_timeout
    } else {
        limits.idle_timeout
    }
}

fn next_deadline(conn: &Conn, limits: &Limits, epoch: Instant) -> Instant {
    let allowed = allowed(conn, limits);
    if conn.busy.load(Ordering::Acquire) > 0 {
        // Checked again after a while; the request timeout bounds it.
        return Instant::now() + allowed;
    }
    let since = Duration::from_millis(conn.idle_since.load(Ordering::Acquire));
    epoch + since + allowed
}

fn expired(conn: &Conn, limits: &Limits, epoch: Instant) -> bool {
    if conn.busy.load(Ordering::Acquire) > 0 {
        return false;
    }
    let since = conn.idle_since.load(Ordering::Acquire);
    let allowed = u64::try_from(allowed(conn, limits).as_millis()).unwrap_or(u64::MAX);
    millis(epoch).saturating_sub(since) >= allowed
}
