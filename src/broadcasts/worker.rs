//! The serve task: on the one MQTT connection (`crate::ingest::outlet`:
//! its persistent session keeps acknowledgements published while
//! commune-ioc is down), sends due commands (QoS 1), applies acknowledgements and session reports,
//! follows warnings from the commit pipeline (`Committed::warnings`),
//! sweeps deadlines, and publishes the overview to [`super::Board`] for the
//! live `broadcasts` family.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use parking_lot::Mutex;
use rumqttc::QoS;
use rusqlite::Connection;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use super::store::{self, Applied};
use crate::ingest::outlet::Tapped;
use crate::state::{Committed, Shared};

/// Answers held for the worker before copies are dropped (the commands
/// are then retried and answered again).
const TAP_CAPACITY: usize = 4096;
/// Payload bytes of those answers held at most (acks and session reports
/// are small JSON; a flood of large ones is dropped, not held).
const TAP_BYTES: usize = 4 * 1024 * 1024;
/// Most commands sent per tick.
const MAX_PER_TICK: usize = 500;
/// Recompute the overview at least this often (clock-driven states such as
/// "reached within 15 minutes" and expiry).
const OVERVIEW_EVERY: Duration = Duration::from_secs(5);
/// Recompute the overview at most this often.
const OVERVIEW_MIN: Duration = Duration::from_millis(200);
/// Most answers applied in one transaction.
const MAX_ANSWERS_PER_BATCH: usize = 512;

enum Inbound {
    Ack(String, Vec<u8>),
    Session(String, Vec<u8>),
}

/// The MQTT topic of a cluster's commands.
pub fn cmd_topic(commune: &str, speaker: &str) -> String {
    format!("ioc/{commune}/speaker/{speaker}/cmd")
}

async fn db<T: Send + 'static>(
    conn: &Arc<Mutex<Connection>>,
    f: impl FnOnce(&mut Connection) -> Result<T, super::BroadcastError> + Send + 'static,
) -> Option<T> {
    let c = Arc::clone(conn);
    match tokio::task::spawn_blocking(move || f(&mut c.lock())).await {
        Ok(Ok(v)) => Some(v),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "broadcasts store");
            None
        }
        Err(e) => {
            tracing::error!(error = %e, "broadcasts store task");
            None
        }
    }
}

/// Run until `cancel`.
pub async fn run(shared: Arc<Shared>, cancel: CancellationToken) {
    let config = shared.config.clone();
    let path = config.journal_path();
    let sync = config.store.sync;
    let conn = match tokio::task::spawn_blocking(move || crate::store::open(&path, sync)).await {
        Ok(Ok(c)) => Arc::new(Mutex::new(c)),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "broadcasts: cannot open the store; broadcasts are off");
            return;
        }
        Err(e) => {
            tracing::error!(error = %e, "broadcasts: store task failed");
            return;
        }
    };
    let commune = config.commune.id.clone();
    // Answers come in on the one MQTT connection (the pipeline journals them
    // too); a copy is tapped here before commit.
    let filters = ["ack", "session"].map(|leaf| format!("ioc/{commune}/speaker/+/{leaf}"));
    let mut taps = shared.outlet.tap(filters.to_vec(), TAP_CAPACITY, TAP_BYTES);

    let mut updates: broadcast::Receiver<Arc<Committed>> = shared.updates.subscribe();
    let mut tick = tokio::time::interval(Duration::from_millis(config.broadcasts.tick_ms.max(20)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut dirty = true;
    let mut last_overview = tokio::time::Instant::now();
    let b = config.broadcasts.clone();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tick.tick() => {
                let cfg = config.clone();
                let now = Utc::now();
                if let Some(changed) = db(&conn, move |c| store::sweep(c, &cfg, now)).await {
                    dirty |= changed;
                }
                let now = Utc::now();
                let (init, max) = (b.retry_initial_ms, b.retry_max_ms);
                // Each send is recorded (committed) before it goes out.
                let due = db(&conn, move |c| {
                    let due = store::due(c, now, MAX_PER_TICK)?;
                    let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                    for d in &due {
                        let next = now + store::backoff(d.attempts, init, max);
                        store::mark_attempt(&tx, d.id, now, next)?;
                    }
                    tx.commit()?;
                    Ok(due)
                })
                .await
                .unwrap_or_default();
                for d in due {
                    dirty = true;
                    let topic = cmd_topic(&commune, &d.speaker);
                    if let Err(e) = shared.outlet.try_publish(&topic, QoS::AtLeastOnce, false, d.payload.into_bytes()) {
                        tracing::warn!(error = %e, key = %d.key, "broadcasts: command not queued; retried later");
                    }
                }
            }
            Some(t) = taps.recv() => {
                // The answers waiting, in one transaction (27 clusters answer
                // at once).
                let mut batch: Vec<Inbound> = inbound(&t).into_iter().collect();
                while batch.len() < MAX_ANSWERS_PER_BATCH {
                    match taps.try_recv() {
                        Ok(t) => batch.extend(inbound(&t)),
                        Err(_) => break,
                    }
                }
                if batch.is_empty() {
                    continue;
                }
                let retry = b.retry_initial_ms;
                let now = Utc::now();
                let results = db(&conn, move |c| {
                    let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                    let mut out = Vec::with_capacity(batch.len());
                    for msg in batch {
                        out.push(match msg {
                            Inbound::Ack(s, p) => store::apply_ack(&tx, &s, &p, now, retry).map(|a| (s, a))?,
                            Inbound::Session(s, p) => store::apply_session(&tx, &s, &p, now).map(|a| (s, a))?,
                        });
                    }
                    tx.commit()?;
                    Ok(out)
                }).await.unwrap_or_default();
                for r in results {
                    match r {
                        (_, Applied::Changed) => dirty = true,
                        (s, Applied::Invalid(why)) => tracing::warn!(speaker = %s, %why, "broadcasts: answer ignored"),
                        _ => {}
                    }
                }
            }
            r = updates.recv() => {
                match r {
                    Ok(c) if !c.warnings.is_empty() => {
                        let cfg = config.clone();
                        let ws = c.warnings.clone();
                        let now = Utc::now();
                        let out = db(&conn, move |conn| {
                            let mut outs = Vec::new();
                            for w in &ws {
                                outs.push(store::on_warning(conn, w, &cfg, now)?);
                            }
                            Ok(outs)
                        }).await;
                        for o in out.unwrap_or_default() {
                            if let Some(id) = o.drafted {
                                tracing::info!(broadcast = id, "broadcast drafted from a warning; waiting for approval");
                            }
                            if !o.ended.is_empty() {
                                tracing::info!(ended = ?o.ended, "broadcasts ended by their bulletin");
                            }
                            dirty = true;
                        }
                    }
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "broadcasts: fell behind the commit stream; warnings in the missed batches are not planned");
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                }
            }
        }
        // At most one overview per OVERVIEW_MIN (a burst of answers makes
        // one; a change left over is published at the next tick).
        let since = last_overview.elapsed();
        if (dirty && since >= OVERVIEW_MIN) || since >= OVERVIEW_EVERY {
            let cfg = config.clone();
            let now = Utc::now();
            if let Some(v) = db(&conn, move |c| store::overview(c, &cfg, now)).await {
                shared.broadcasts.set(v);
            }
            dirty = false;
            last_overview = tokio::time::Instant::now();
        }
    }
}

/// What a tapped message under `ioc/{commune}/speaker/` is to us.
fn inbound(t: &Tapped) -> Option<Inbound> {
    let levels: Vec<&str> = t.topic.split('/').collect();
    match levels.as_slice() {
        ["ioc", _, "speaker", id, "ack"] => {
            Some(Inbound::Ack((*id).to_owned(), t.payload.to_vec()))
        }
        ["ioc", _, "speaker", id, "session"] => {
            Some(Inbound::Session((*id).to_owned(), t.payload.to_vec()))
        }
        _ => None,
    }
}
