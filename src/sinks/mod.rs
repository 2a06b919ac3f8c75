//! Time-series sinks: every journaled event, and a snapshot of the
//! indicators every `influx.indicator_interval_secs`, written as line
//! protocol to a time-series store (InfluxDB 2.x, InfluxDB 3 or
//! VictoriaMetrics, all through `/api/v2/write`). See docs/STORAGE.md.
//!
//! - [`line`]: the line-protocol mapping and escaping;
//! - [`influx`]: the writer over the `influxdb2` crate;
//! - [`outbox`]: the durable outbox (the journal's events after a cursor,
//!   plus queued indicator points) and its bound;
//! - [`run`]: the task that drains the outbox into a [`TsdbSink`].
//!
//! The store is never on the ingest path: the journal writer commits and
//! acknowledges without it, and the sink reads the journal on a connection
//! of its own. When the store is slow or down, points wait in the journal
//! file and are replayed in order when it returns, across restarts.

pub mod influx;
pub mod line;
pub mod outbox;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

use crate::indicators::{ScopeSel, Window};
use crate::ingest::mqtt::Backoff;
use crate::journal::JournalError;
use crate::state::Shared;
use outbox::{Batch, Outbox};

/// Why a write to the time-series store failed.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The sink cannot be built from its config.
    #[error("time-series sink configuration: {0}")]
    Config(String),
    /// No answer: connection refused, reset, or timed out. Retried.
    #[error("time-series store unreachable: {0}")]
    Transport(String),
    /// The store refused the request (authentication, missing bucket,
    /// overload, server error). Retried.
    #[error("time-series store refused the write: HTTP {status}: {body}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// Start of the response body.
        body: String,
    },
    /// The store found the points invalid (HTTP 400 or 422). InfluxDB keeps
    /// the valid points of such a batch; it is not retried.
    #[error("time-series store rejected points: HTTP {status}: {body}")]
    Rejected {
        /// HTTP status.
        status: u16,
        /// Start of the response body.
        body: String,
    },
    /// The request body was too large (HTTP 413): the batch is split.
    #[error("time-series store: request too large (HTTP 413)")]
    TooLarge,
    /// The outbox (journal file) failed.
    #[error(transparent)]
    Outbox(#[from] JournalError),
}

/// Somewhere line protocol can be written. Implemented by
/// [`influx::InfluxSink`]; the trait keeps the store replaceable.
pub trait TsdbSink: Send + Sync + 'static {
    /// Write `body`: line-protocol lines, each ending in `\n`, timestamps in
    /// the precision the sink was built with.
    fn write(&self, body: String) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// Where it writes, for the log (never the token).
    fn describe(&self) -> String;
}

pub use crate::config::check_url;

/// Levels of backlog fill (percent of the bound) that are logged once
/// each time the backlog rises past them.
const FILL_ALERTS: [u64; 3] = [50, 80, 95];

/// Run a blocking outbox operation off the async threads.
async fn blocking<T: Send + 'static>(
    outbox: &Arc<Mutex<Outbox>>,
    f: impl FnOnce(&mut Outbox) -> Result<T, JournalError> + Send + 'static,
) -> Result<T, SinkError> {
    let outbox = Arc::clone(outbox);
    tokio::task::spawn_blocking(move || f(&mut outbox.lock()))
        .await
        .map_err(|e| SinkError::Config(format!("outbox task failed: {e}")))?
        .map_err(SinkError::from)
}

/// Sleep, or return false at once when cancelled.
async fn pause(cancel: &CancellationToken, d: Duration) -> bool {
    tokio::select! {
        _ = cancel.cancelled() => false,
        _ = tokio::time::sleep(d) => true,
    }
}

/// Queue a snapshot of the indicators (window `today`, the commune and
/// every village) as points in the outbox.
async fn snapshot(shared: &Arc<Shared>, outbox: &Arc<Mutex<Outbox>>) {
    let now = Utc::now();
    let lines: Vec<(String, chrono::DateTime<Utc>)> = {
        let at = line::snapshot_time(now);
        shared
            .view(now)
            .indicators(Window::Today, ScopeSel::All, None)
            .iter()
            .filter_map(|v| line::indicator_line(&shared.config.commune.id, v))
            .map(|l| (l, at))
            .collect()
    };
    let n = lines.len() as u64;
    if let Err(e) = blocking(outbox, move |o| o.queue(&lines)).await {
        shared.metrics.influx_points_dropped.inc_by(n);
        tracing::error!(error = %e, points = n, "could not queue the indicator snapshot for the time-series store; skipped");
    }
}

/// Drain the outbox into `sink` until `cancel`: full batches at once, a
/// partial batch at most every `flush_interval_ms`; failed writes are
/// retried with backoff (200 ms doubling to 5 s) and nothing moves on until
/// a batch is accepted. A write in flight when `cancel` fires is finished
/// (bounded by `timeout_ms`).
pub async fn run<S: TsdbSink>(sink: S, shared: Arc<Shared>, cancel: CancellationToken) {
    let cfg = shared.config.influx.clone();
    let m = &shared.metrics;
    m.influx_backlog_limit_points
        .set(i64::try_from(cfg.max_backlog_points).unwrap_or(i64::MAX));
    let outbox = loop {
        match Outbox::open(&shared.config) {
            Ok(o) => break Arc::new(Mutex::new(o)),
            Err(e) => {
                tracing::error!(error = %e, "cannot open the time-series outbox in the journal; retrying in 5 s");
                if !pause(&cancel, Duration::from_secs(5)).await {
                    return;
                }
            }
        }
    };
    tracing::info!(target = %sink.describe(), "time-series sink started");
    let flush = Duration::from_millis(cfg.flush_interval_ms.max(1));
    let interval = Duration::from_secs(cfg.indicator_interval_secs);
    let mut next_snapshot = Instant::now();
    let mut batch_max = cfg.batch_max_points.max(1);
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
    let mut last_flush = Instant::now() - flush;
    let mut last_error: Option<String> = None;
    let mut alerted = 0usize;
    loop {
        if cancel.is_cancelled() {
            break;
        }
        if !interval.is_zero() && Instant::now() >= next_snapshot {
            next_snapshot = Instant::now() + interval;
            snapshot(&shared, &outbox).await;
        }
        let max = batch_max;
        let read = blocking(&outbox, move |o| {
            let bound = o.enforce_bound()?;
            Ok((bound, o.next_batch(max)?))
        })
        .await;
        let (bound, batch) = match read {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the time-series outbox; retrying in 1 s");
                if !pause(&cancel, Duration::from_secs(1)).await {
                    break;
                }
                continue;
            }
        };
        m.influx_backlog_points
            .set(i64::try_from(bound.backlog).unwrap_or(i64::MAX));
        if bound.dropped > 0 {
            m.influx_points_dropped.inc_by(bound.dropped);
            tracing::error!(
                dropped = bound.dropped,
                max_backlog_points = cfg.max_backlog_points,
                "time-series backlog full: the oldest unsent points were skipped"
            );
        }
        alerted = fill_alert(bound.fullest, cfg.max_backlog_points, alerted);

        let until_snapshot = if interval.is_zero() {
            flush
        } else {
            next_snapshot.saturating_duration_since(Instant::now())
        };
        if batch.points == 0 {
            if !pause(&cancel, flush.min(until_snapshot)).await {
                break;
            }
            continue;
        }
        if batch.points < batch_max && last_flush.elapsed() < flush {
            let wait = flush
                .saturating_sub(last_flush.elapsed())
                .min(until_snapshot);
            if !pause(&cancel, wait).await {
                break;
            }
            continue;
        }
        last_flush = Instant::now();
        if !write_batch(
            &sink,
            &shared,
            &outbox,
            batch,
            &mut batch_max,
            &mut last_error,
        )
        .await
        {
            m.influx_up.set(0);
            if !pause(&cancel, backoff.next_delay()).await {
                break;
            }
        } else {
            backoff.reset();
        }
    }
    tracing::info!("time-series sink stopped");
}

/// Log when the fullest queue passes a fill level; returns the number of
/// levels passed (reset when the backlog falls below the first).
fn fill_alert(fullest: u64, max: u64, alerted: usize) -> usize {
    let pct = fullest.saturating_mul(100) / max.max(1);
    let level = FILL_ALERTS.iter().filter(|&&l| pct >= l).count();
    if level > alerted {
        tracing::warn!(
            percent = pct,
            backlog_points = fullest,
            max_backlog_points = max,
            "time-series backlog is filling up: the store is slow or unreachable; past the bound the oldest points are skipped"
        );
    }
    level
}

/// Write one batch and record the outcome; false when it must be retried.
async fn write_batch<S: TsdbSink>(
    sink: &S,
    shared: &Arc<Shared>,
    outbox: &Arc<Mutex<Outbox>>,
    batch: Batch,
    batch_max: &mut usize,
    last_error: &mut Option<String>,
) -> bool {
    let m = &shared.metrics;
    let started = Instant::now();
    let points = batch.points as u64;
    let (events_to, queued_to) = (batch.events_to, batch.queued_to);
    let result = sink.write(batch.body).await;
    let elapsed = started.elapsed();
    match result {
        Ok(()) => {
            m.influx_write_seconds.observe(elapsed.as_secs_f64());
            m.influx_points_written.inc_by(points);
            m.influx_up.set(1);
            if last_error.take().is_some() {
                tracing::info!("time-series store reachable again; replaying the backlog");
            }
        }
        Err(SinkError::Rejected { status, body }) => {
            m.influx_points_rejected.inc_by(points);
            m.influx_up.set(1);
            tracing::error!(status, body = %body, points,
                "time-series store rejected points of a batch; InfluxDB kept the valid ones, the batch is not retried");
        }
        Err(SinkError::TooLarge) if *batch_max > 1 => {
            *batch_max = (*batch_max / 2).max(1);
            m.influx_write_errors.inc();
            tracing::warn!(
                batch_max_points = *batch_max,
                "time-series store says the request is too large; halving the batch"
            );
            return false;
        }
        Err(e) => {
            m.influx_write_errors.inc();
            let reason = match &e {
                SinkError::Refused { status, .. } => format!("HTTP {status}"),
                other => other.to_string(),
            };
            if last_error.as_deref() != Some(reason.as_str()) {
                tracing::warn!(error = %e, "time-series write failed; points wait in the journal and are retried");
                *last_error = Some(reason);
            } else {
                tracing::debug!(error = %e, "time-series write failed again");
            }
            return false;
        }
    }
    match blocking(outbox, move |o| o.written(events_to, queued_to)).await {
        Ok(()) => true,
        Err(e) => {
            // The points are in the store but the cursor did not move: they
            // are sent again (InfluxDB overwrites identical points).
            tracing::error!(error = %e, "cannot advance the time-series cursor");
            false
        }
    }
}

/// Whether the sink is configured (`influx.url` set).
pub fn enabled(shared: &Shared) -> bool {
    shared.config.influx.url.is_some()
}
