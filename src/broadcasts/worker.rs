//! The serve task: its own MQTT connection (client id
//! `{client_id}-broadcasts`, persistent session, so acknowledgements
//! published while it is down are delivered when it is back), sends due
//! commands (QoS 1), applies acknowledgements and session reports,
//! follows warnings from the commit pipeline (`Committed::warnings`),
//! sweeps deadlines, and publishes the overview to [`super::Board`] for the
//! live `broadcasts` family.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use parking_lot::Mutex;
use rumqttc::{AsyncClient, Event, Packet, QoS};
use rusqlite::Connection;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use super::store::{self, Applied};
use crate::state::{Committed, Shared};

/// Most commands sent per tick.
const MAX_PER_TICK: usize = 500;
/// Recompute the overview at least this often (clock-driven states such as
/// "reached within 15 minutes" and expiry).
const OVERVIEW_EVERY: Duration = Duration::from_secs(5);

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
    let mut opts = match crate::ingest::mqtt::options(&config) {
        Ok(o) => o,
        Err(e) => {
            tracing::error!(error = %e, "broadcasts: MQTT options; broadcasts are off");
            return;
        }
    };
    opts.set_client_id(format!("{}-broadcasts", config.client_id()));
    opts.set_manual_acks(false);
    opts.set_clean_session(false);
    let (client, mut eventloop) = AsyncClient::new(opts, 1024);
    let commune = config.commune.id.clone();
    let (in_tx, mut in_rx) = mpsc::channel::<Inbound>(1024);
    let poll_cancel = cancel.clone();
    let sub_client = client.clone();
    let sub_commune = commune.clone();
    let backoff_max = Duration::from_millis(config.mqtt.backoff_max_ms.max(100));
    let poller = tokio::spawn(async move {
        let mut wait = Duration::from_millis(100);
        loop {
            let ev = tokio::select! {
                _ = poll_cancel.cancelled() => return,
                ev = eventloop.poll() => ev,
            };
            match ev {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    wait = Duration::from_millis(100);
                    for t in ["ack", "session"] {
                        let f = format!("ioc/{sub_commune}/speaker/+/{t}");
                        if let Err(e) = sub_client.subscribe(f, QoS::AtLeastOnce).await {
                            tracing::warn!(error = %e, "broadcasts: subscribe");
                        }
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let levels: Vec<&str> = p.topic.split('/').collect();
                    let msg = match levels.as_slice() {
                        ["ioc", _, "speaker", id, "ack"] => {
                            Inbound::Ack((*id).to_owned(), p.payload.to_vec())
                        }
                        ["ioc", _, "speaker", id, "session"] => {
                            Inbound::Session((*id).to_owned(), p.payload.to_vec())
                        }
                        _ => continue,
                    };
                    if in_tx.send(msg).await.is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(error = %e, "broadcasts: MQTT connection");
                    tokio::select! {
                        _ = poll_cancel.cancelled() => return,
                        _ = tokio::time::sleep(wait) => {}
                    }
                    wait = (wait * 2).min(backoff_max);
                }
            }
        }
    });

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
                    let tx = c.transaction()?;
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
                    if let Err(e) = client.publish(topic, QoS::AtLeastOnce, false, d.payload.into_bytes()).await {
                        tracing::warn!(error = %e, key = %d.key, "broadcasts: command not queued; retried later");
                    }
                }
            }
            Some(msg) = in_rx.recv() => {
                let retry = b.retry_initial_ms;
                let now = Utc::now();
                let r = db(&conn, move |c| match msg {
                    Inbound::Ack(s, p) => store::apply_ack(c, &s, &p, now, retry).map(|a| (s, a)),
                    Inbound::Session(s, p) => store::apply_session(c, &s, &p, now).map(|a| (s, a)),
                }).await;
                match r {
                    Some((_, Applied::Changed)) => dirty = true,
                    Some((s, Applied::Invalid(why))) => tracing::warn!(speaker = %s, %why, "broadcasts: answer ignored"),
                    _ => {}
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
        if dirty || last_overview.elapsed() >= OVERVIEW_EVERY {
            let cfg = config.clone();
            let now = Utc::now();
            if let Some(v) = db(&conn, move |c| store::overview(c, &cfg, now)).await {
                shared.broadcasts.set(v);
            }
            dirty = false;
            last_overview = tokio::time::Instant::now();
        }
    }
    let _ = client.disconnect().await;
    poller.abort();
}
