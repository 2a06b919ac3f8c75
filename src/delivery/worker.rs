//! The delivery worker: one task that claims due rows, sends them (at most
//! `delivery.max_in_flight` at once) and records each attempt.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use parking_lot::Mutex;
use rand::Rng;
use rusqlite::{params, Connection};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::{ms, DeliveryError, State, EXCERPT_BYTES};
use crate::config::{Delivery as Settings, DeliveryTarget};
use crate::metrics::DeliveryLabel;
use crate::state::Shared;

/// How long shutdown waits for requests in flight before dropping them
/// (a dropped request is sent again, with the same key, after restart).
const SHUTDOWN_WAIT: Duration = Duration::from_secs(5);

/// Statuses that say the request itself is wrong: retrying cannot help.
const REJECTING: [u16; 5] = [400, 410, 413, 415, 422];

/// A due row, as the worker sends it.
#[derive(Debug)]
struct Due {
    id: i64,
    key: String,
    target: String,
    content_type: String,
    body: Vec<u8>,
    attempts: u32,
    created_ms: i64,
}

/// What one attempt got.
#[derive(Debug)]
struct Sent {
    started: DateTime<Utc>,
    finished: DateTime<Utc>,
    url: String,
    status: Option<u16>,
    retry_after: Option<Duration>,
    excerpt: Option<String>,
    error: Option<String>,
}

/// A target ready to send to: its URL and client, or why it is not.
type Ready = Result<(String, Option<String>, reqwest::Client), String>;

/// Build the HTTP client of one target (timeouts, no redirects, client
/// certificate, extra CA).
fn client(cfg: &Settings, t: &DeliveryTarget) -> Result<reqwest::Client, String> {
    let mut b = reqwest::Client::builder()
        .timeout(Duration::from_secs(cfg.timeout_s.max(1)))
        .connect_timeout(Duration::from_secs(cfg.connect_timeout_s.max(1)))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("commune-ioc/", env!("CARGO_PKG_VERSION")));
    if let (Some(cert), Some(key)) = (&t.client_cert, &t.client_key) {
        let read = |p: &std::path::Path| {
            std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()))
        };
        let mut pem = read(cert)?;
        pem.push(b'\n');
        pem.extend(read(key)?);
        let identity = reqwest::Identity::from_pem(&pem)
            .map_err(|e| format!("client certificate {}: {e}", cert.display()))?;
        b = b.identity(identity);
    }
    if let Some(ca) = &t.ca_file {
        let pem = std::fs::read(ca).map_err(|e| format!("cannot read {}: {e}", ca.display()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| format!("CA file {}: {e}", ca.display()))?;
        for c in certs {
            b = b.add_root_certificate(c);
        }
    }
    b.build().map_err(|e| format!("HTTP client: {e}"))
}

fn targets(cfg: &Settings) -> HashMap<String, Ready> {
    cfg.targets
        .iter()
        .map(|(name, t)| {
            let ready = client(cfg, t).map(|c| {
                (
                    t.url.clone(),
                    t.bearer_token.as_ref().map(|s| s.expose().to_owned()),
                    c,
                )
            });
            if let Err(e) = &ready {
                tracing::error!(target = %name, error = %e, "delivery target unusable; its deliveries wait");
            }
            (name.clone(), ready)
        })
        .collect()
}

/// POST one row; never fails (a failure is an attempt's outcome).
async fn send(ready: Option<Ready>, due: &Due) -> Sent {
    let started = Utc::now();
    let fail = |url: String, error: String| Sent {
        started,
        finished: Utc::now(),
        url,
        status: None,
        retry_after: None,
        excerpt: None,
        error: Some(error),
    };
    let (url, token, client) = match ready {
        None => {
            return fail(
                String::new(),
                format!(
                    "unknown target `{}` (no [delivery.targets.{0}])",
                    due.target
                ),
            )
        }
        Some(Err(e)) => return fail(String::new(), e),
        Some(Ok(r)) => r,
    };
    let mut req = client
        .post(&url)
        .header(reqwest::header::CONTENT_TYPE, &due.content_type)
        .header("Idempotency-Key", &due.key)
        .body(due.body.clone());
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let mut resp = match req.send().await {
        Ok(r) => r,
        Err(e) => return fail(url, error_chain(&e)),
    };
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    // Read at most EXCERPT_BYTES of the answer.
    let mut body = Vec::new();
    let mut error = None;
    while body.len() < EXCERPT_BYTES {
        match resp.chunk().await {
            Ok(Some(c)) => body.extend_from_slice(&c),
            Ok(None) => break,
            Err(e) => {
                error = Some(format!("reading the answer: {}", error_chain(&e)));
                break;
            }
        }
    }
    body.truncate(EXCERPT_BYTES);
    let mut excerpt = String::from_utf8_lossy(&body).into_owned();
    if excerpt.ends_with('\u{FFFD}') && body.len() == EXCERPT_BYTES {
        excerpt.pop();
    }
    Sent {
        started,
        finished: Utc::now(),
        url,
        status: Some(status),
        retry_after,
        excerpt: Some(excerpt),
        error,
    }
}

/// An error with its sources (reqwest's top level says little).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// The delay before attempt `n + 1` after `n` failed attempts: doubling
/// from `initial` to `max`, uniformly random in [d/2, d], at least the
/// receiver's `Retry-After` (capped at `max`).
fn retry_delay(cfg: &Settings, n: u32, retry_after: Option<Duration>) -> Duration {
    let initial = cfg.backoff_initial_ms.max(1);
    let max = cfg.backoff_max_ms.max(initial);
    let d = initial
        .saturating_mul(1u64 << n.saturating_sub(1).min(40))
        .min(max);
    let jittered = rand::rng().random_range(d / 2..=d);
    let floor = retry_after.map_or(0, |r| (r.as_millis() as u64).min(max));
    Duration::from_millis(jittered.max(floor))
}

/// Record one attempt and the row's new state, in one transaction.
fn record(
    conn: &mut Connection,
    cfg: &Settings,
    due: &Due,
    sent: &Sent,
) -> Result<State, DeliveryError> {
    let n = due.attempts + 1;
    let now = ms(sent.finished);
    let state = match sent.status {
        Some(s) if (200..300).contains(&s) => State::Delivered,
        Some(s) if REJECTING.contains(&s) => State::Rejected,
        _ if now >= due.created_ms + (cfg.expire_after_h as i64).saturating_mul(3_600_000) => {
            State::Expired
        }
        _ => State::Pending,
    };
    let error = match (sent.status, &sent.error) {
        (_, Some(e)) => Some(e.clone()),
        (Some(s), None) if !(200..300).contains(&s) => Some(format!("HTTP {s}")),
        _ => None,
    };
    let tx = conn.transaction()?;
    tx.execute(
        "INSERT INTO delivery_attempts
             (delivery_id, attempt, started_ms, finished_ms, url, status, error, body_excerpt)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            due.id,
            n,
            ms(sent.started),
            now,
            sent.url,
            sent.status,
            error,
            sent.excerpt
        ],
    )?;
    match state {
        State::Delivered | State::Rejected => {
            tx.execute(
                "UPDATE delivery_outbox SET state = ?2, attempts = ?3, last_error = ?4,
                     receipt_status = ?5, receipt_body = ?6, receipt_ms = ?7, done_ms = ?7
                 WHERE id = ?1",
                params![
                    due.id,
                    state.as_str(),
                    n,
                    error,
                    sent.status,
                    sent.excerpt,
                    now
                ],
            )?;
        }
        State::Expired => {
            tx.execute(
                "UPDATE delivery_outbox SET state = 'expired', attempts = ?2, last_error = ?3,
                     done_ms = ?4 WHERE id = ?1",
                params![due.id, n, error, now],
            )?;
        }
        State::Pending => {
            let next = now + retry_delay(cfg, n, sent.retry_after).as_millis() as i64;
            tx.execute(
                "UPDATE delivery_outbox SET attempts = ?2, last_error = ?3, next_attempt_ms = ?4
                 WHERE id = ?1",
                params![due.id, n, error, next],
            )?;
        }
    }
    tx.commit()?;
    Ok(state)
}

/// Due rows (not already in flight), oldest due first; the pending count;
/// the earliest future due time.
fn load_due(
    conn: &Connection,
    now: DateTime<Utc>,
    room: usize,
    skip: &HashSet<i64>,
) -> Result<(Vec<Due>, i64, Option<i64>), DeliveryError> {
    let mut out = Vec::new();
    if room > 0 {
        let mut stmt = conn.prepare_cached(
            "SELECT id, key, target, content_type, body, attempts, created_ms
             FROM delivery_outbox WHERE state = 'pending' AND next_attempt_ms <= ?1
             ORDER BY next_attempt_ms, id LIMIT ?2",
        )?;
        let limit = i64::try_from(room + skip.len()).unwrap_or(i64::MAX);
        let rows = stmt.query_map(params![ms(now), limit], |r| {
            Ok(Due {
                id: r.get(0)?,
                key: r.get(1)?,
                target: r.get(2)?,
                content_type: r.get(3)?,
                body: r.get(4)?,
                attempts: u32::try_from(r.get::<_, i64>(5)?).unwrap_or(0),
                created_ms: r.get(6)?,
            })
        })?;
        for d in rows {
            let d = d?;
            if !skip.contains(&d.id) && out.len() < room {
                out.push(d);
            }
        }
    }
    let pending: i64 = conn.query_row(
        "SELECT count(*) FROM delivery_outbox WHERE state = 'pending'",
        [],
        |r| r.get(0),
    )?;
    let next: Option<i64> = conn.query_row(
        "SELECT min(next_attempt_ms) FROM delivery_outbox
         WHERE state = 'pending' AND next_attempt_ms > ?1",
        [ms(now)],
        |r| r.get(0),
    )?;
    Ok((out, pending, next))
}

async fn blocking<T: Send + 'static>(
    conn: &Arc<Mutex<Connection>>,
    f: impl FnOnce(&mut Connection) -> Result<T, DeliveryError> + Send + 'static,
) -> Result<T, DeliveryError> {
    let conn = Arc::clone(conn);
    match tokio::task::spawn_blocking(move || f(&mut conn.lock())).await {
        Ok(r) => r,
        Err(e) => Err(DeliveryError::Task(e.to_string())),
    }
}

/// Run the delivery worker until `cancel`. Requests in flight then get
/// up to 5 s to finish (and be recorded); the rest are sent again after
/// the next start.
pub async fn run(shared: Arc<Shared>, cancel: CancellationToken) {
    let cfg = shared.config.delivery.clone();
    let path = shared.config.journal_path();
    let sync = shared.config.store.sync;
    let conn = loop {
        match crate::store::open(&path, sync) {
            Ok(c) => break Arc::new(Mutex::new(c)),
            Err(e) => {
                tracing::error!(error = %e, "cannot open the delivery outbox; retrying in 5 s");
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                }
            }
        }
    };
    let targets = Arc::new(targets(&cfg));
    let cfg = Arc::new(cfg);
    let poll = Duration::from_millis(cfg.poll_ms.max(1));
    let max = cfg.max_in_flight.max(1);
    let m = &shared.metrics;
    // Rows in flight, by the id of the task sending them.
    let mut inflight: HashMap<tokio::task::Id, i64> = HashMap::new();
    let mut tasks: JoinSet<(Due, Sent)> = JoinSet::new();
    tracing::info!(targets = cfg.targets.len(), "delivery worker started");
    loop {
        let room = max - tasks.len().min(max);
        let skip: HashSet<i64> = inflight.values().copied().collect();
        let now = Utc::now();
        let loaded = blocking(&conn, move |c| load_due(c, now, room, &skip)).await;
        let mut next_due = None;
        match loaded {
            Ok((due, pending, next)) => {
                m.delivery_pending.set(pending);
                next_due = next;
                for d in due {
                    let id = d.id;
                    let ready = targets.get(&d.target).cloned();
                    let task = tasks.spawn(async move {
                        let sent = send(ready, &d).await;
                        (d, sent)
                    });
                    inflight.insert(task.id(), id);
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot read the delivery outbox; retrying"),
        }
        m.delivery_in_flight.set(tasks.len() as i64);
        let wait = next_due
            .map(|t| {
                Duration::from_millis(u64::try_from(t - ms(Utc::now())).unwrap_or(0)).min(poll)
            })
            .unwrap_or(poll);
        tokio::select! {
            _ = cancel.cancelled() => break,
            Some(done) = tasks.join_next_with_id(), if !tasks.is_empty() => {
                finish(&conn, &cfg, &shared, &mut inflight, done).await;
            }
            _ = shared.delivery_wake.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
    // Shutdown: let requests in flight finish for a while and record them.
    let deadline = tokio::time::Instant::now() + SHUTDOWN_WAIT;
    while !tasks.is_empty() {
        match tokio::time::timeout_at(deadline, tasks.join_next_with_id()).await {
            Ok(Some(done)) => finish(&conn, &cfg, &shared, &mut inflight, done).await,
            Ok(None) => break,
            Err(_) => {
                tracing::warn!(
                    in_flight = tasks.len(),
                    "delivery requests still in flight at shutdown; they are sent again after restart"
                );
                tasks.abort_all();
                break;
            }
        }
    }
    m.delivery_in_flight.set(0);
    tracing::info!("delivery worker stopped");
}

async fn finish(
    conn: &Arc<Mutex<Connection>>,
    cfg: &Arc<Settings>,
    shared: &Shared,
    inflight: &mut HashMap<tokio::task::Id, i64>,
    done: Result<(tokio::task::Id, (Due, Sent)), tokio::task::JoinError>,
) {
    let (task, (due, sent)) = match done {
        Ok(r) => r,
        Err(e) => {
            // A send task panicked: its row stays due and goes again.
            inflight.remove(&e.id());
            tracing::error!(error = %e, "delivery send task failed");
            return;
        }
    };
    let target = due.target.clone();
    let key = due.key.clone();
    let status = sent.status;
    let error = sent.error.clone();
    let c = Arc::clone(cfg);
    let result = blocking(conn, move |conn| record(conn, &c, &due, &sent)).await;
    inflight.remove(&task);
    let outcome = match &result {
        Ok(State::Delivered) => "delivered",
        Ok(State::Rejected) => "rejected",
        Ok(State::Expired) => "expired",
        Ok(State::Pending) => "retry",
        Err(e) => {
            // Not recorded: the row is still due and goes again (same key).
            tracing::error!(error = %e, %key, "cannot record a delivery attempt");
            "retry"
        }
    };
    shared
        .metrics
        .delivery_attempts
        .get_or_create(&DeliveryLabel {
            target: target.clone(),
            outcome: outcome.into(),
        })
        .inc();
    match outcome {
        "delivered" => tracing::info!(%target, %key, ?status, "delivered"),
        "retry" => {
            tracing::warn!(%target, %key, ?status, error = ?error, "delivery failed; will retry")
        }
        _ => tracing::error!(%target, %key, ?status, error = ?error, outcome, "delivery given up"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_retry_delay_doubles_with_jitter_up_to_the_cap() {
        let cfg = Settings {
            backoff_initial_ms: 1000,
            backoff_max_ms: 8000,
            ..Settings::default()
        };
        for _ in 0..50 {
            let d1 = retry_delay(&cfg, 1, None).as_millis();
            assert!((500..=1000).contains(&d1), "{d1}");
            let d3 = retry_delay(&cfg, 3, None).as_millis();
            assert!((2000..=4000).contains(&d3), "{d3}");
            let d9 = retry_delay(&cfg, 60, None).as_millis();
            assert!((4000..=8000).contains(&d9), "{d9}");
        }
        // Retry-After raises the delay, but not past the cap.
        assert_eq!(
            retry_delay(&cfg, 1, Some(Duration::from_secs(6))).as_millis(),
            6000
        );
        assert!(retry_delay(&cfg, 1, Some(Duration::from_secs(600))).as_millis() <= 8000);
    }
}
