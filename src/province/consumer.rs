//! Each site's own durable JetStream pull consumer (`{instance}-{commune}`,
//! filtered on `{prefix}.{commune}.journal.>`), pulled continuously: take
//! the first entry that arrives and what else arrives within
//! `stream.batch_wait_ms` (up to a batch), commit it in the site's journal
//! ([`Site::apply`]), then acknowledge it. A crash
//! between the commit and the acknowledgement re-delivers the batch, which
//! then changes nothing (the `(commune, seq)` key).
//!
//! Isolation: a site holds at most two batches (`stream.batch_max` messages
//! and `stream.batch_max_bytes` each: the one being committed and the one
//! requested ahead; the server delivers no more than `2 × batch_max`
//! unacknowledged) in memory and commits at most `stream.site_rate` entries a second; a
//! commune's flood waits in the stream, and every other site keeps its own
//! consumer, queue, store and budget. A site whose store fails retries
//! alone; nothing is acknowledged meanwhile.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer::pull, consumer::AckPolicy, consumer::DeliverPolicy};
use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;

use super::site::{Message, Site};
use crate::config::StreamDef;
use crate::ingest::mqtt::Backoff;

/// How long the stream waits for an acknowledgement before it delivers a
/// message again (after a crash between commit and ack, the instance gets
/// the batch again this long after its restart; the copy then drops it).
pub const ACK_WAIT: Duration = Duration::from_secs(10);

/// How often a site's alert board and broadcasts overview are recomputed
/// without new entries (resolved alerts leave the board after an hour,
/// silences end).
pub const VIEWS_EVERY: Duration = Duration::from_secs(60);

/// The idle heartbeat asked of the server for a site's pull: a consumer
/// that hears nothing for twice this long reconnects.
const HEARTBEAT: Duration = Duration::from_secs(5);

/// How long one of a site's pull requests stays open at the server (the
/// client renews it before).
const PULL_EXPIRES: Duration = Duration::from_secs(30);

/// How long a quiet site's loop waits for an entry before it looks at its
/// board again.
const IDLE_TICK: Duration = Duration::from_secs(5);

/// Name of a site's durable consumer.
pub fn consumer_name(instance: &str, commune: &str) -> String {
    format!("{instance}-{commune}")
}

async fn pause(cancel: &CancellationToken, d: Duration) -> bool {
    tokio::select! {
        _ = cancel.cancelled() => false,
        _ = tokio::time::sleep(d) => true,
    }
}

async fn open_consumer(
    js: &jetstream::Context,
    cfg: &StreamDef,
    instance: &str,
    commune: &str,
) -> Result<jetstream::consumer::PullConsumer, String> {
    crate::uplink::ensure_stream(js, &cfg.as_uplink())
        .await
        .map_err(|e| e.to_string())?;
    let stream = js
        .get_stream(&cfg.stream)
        .await
        .map_err(|e| format!("stream `{}`: {e}", cfg.stream))?;
    let name = consumer_name(instance, commune);
    let batch = cfg.batch_max.max(1);
    stream
        .get_or_create_consumer(
            &name,
            pull::Config {
                durable_name: Some(name.clone()),
                filter_subject: format!("{}.{commune}.journal.>", cfg.subject_prefix),
                ack_policy: AckPolicy::Explicit,
                deliver_policy: DeliverPolicy::All,
                ack_wait: ACK_WAIT,
                max_ack_pending: (batch * 2) as i64,
                max_batch: batch as i64,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| format!("consumer `{name}`: {e}"))
}

/// The site's consumer works (again).
fn up(site: &Site) {
    site.connected.store(true, Ordering::Relaxed);
    site.shared.mqtt_connected.store(true, Ordering::Relaxed);
    if site.error.lock().take().is_some() {
        tracing::info!(site = %site.id, "province consumer receiving again");
    }
}

/// Consume `site`'s entries until `cancel`.
pub async fn run(
    site: Arc<Site>,
    js: jetstream::Context,
    cfg: StreamDef,
    instance: String,
    cancel: CancellationToken,
) {
    let mut backoff = Backoff::new(
        Duration::from_millis(cfg.backoff_initial_ms.max(1)),
        Duration::from_millis(cfg.backoff_max_ms.max(1)),
    );
    let fail = |site: &Site, e: String| {
        site.connected.store(false, Ordering::Relaxed);
        site.shared.mqtt_connected.store(false, Ordering::Relaxed);
        let mut last = site.error.lock();
        if last.as_deref() != Some(e.as_str()) {
            tracing::warn!(site = %site.id, error = %e, "province consumer interrupted; entries wait in the stream");
            *last = Some(e);
        }
    };
    let batch_max = cfg.batch_max.max(1);
    let max_bytes = cfg.batch_max_bytes.max(64 * 1024);
    let rate = f64::from(cfg.site_rate.max(1));
    let wait = Duration::from_millis(cfg.batch_wait_ms);
    'connect: while !cancel.is_cancelled() {
        let consumer = tokio::select! {
            r = open_consumer(&js, &cfg, &instance, &site.id) => r,
            _ = cancel.cancelled() => return,
        };
        let consumer = match consumer {
            Ok(c) => c,
            Err(e) => {
                fail(&site, e);
                if !pause(&cancel, backoff.next_delay()).await {
                    return;
                }
                continue;
            }
        };
        // One continuous pull per site: the client keeps at most about a
        // batch of messages requested ahead, so an entry is here as soon as
        // the stream has it (no pull request waited out).
        let opened = tokio::select! {
            r = consumer
                .stream()
                .max_messages_per_batch(batch_max)
                .max_bytes_per_batch(max_bytes)
                .heartbeat(HEARTBEAT)
                .expires(PULL_EXPIRES)
                .messages() => r,
            _ = cancel.cancelled() => return,
        };
        let mut stream = match opened {
            Ok(s) => {
                up(&site);
                s
            }
            Err(e) => {
                fail(&site, format!("fetch: {e}"));
                if !pause(&cancel, backoff.next_delay()).await {
                    return;
                }
                continue;
            }
        };
        loop {
            if site.views_due(VIEWS_EVERY) {
                let s = Arc::clone(&site);
                let _ =
                    tokio::task::spawn_blocking(move || s.refresh_views(chrono::Utc::now())).await;
            }
            // Wait for the first entry (up to a tick, to refresh the board
            // and notice a quiet consumer is still connected), then take
            // what else arrives within `batch_wait_ms`, up to a batch.
            let first = tokio::select! {
                n = stream.next() => Some(n),
                _ = tokio::time::sleep(IDLE_TICK) => None,
                _ = cancel.cancelled() => return,
            };
            let started = Instant::now();
            let mut messages = Vec::new();
            let mut acks = Vec::new();
            let mut bytes = 0usize;
            let mut broken = None;
            let Some(mut next) = first else {
                continue;
            };
            let until = tokio::time::Instant::now() + wait;
            loop {
                match next {
                    None => {
                        broken = Some("fetch: the consumer's stream ended".to_owned());
                        break;
                    }
                    Some(Ok(m)) => {
                        let seq = m
                            .headers
                            .as_ref()
                            .and_then(|h| h.get("Ioc-Seq"))
                            .and_then(|v| v.as_str().parse().ok());
                        bytes += m.payload.len();
                        messages.push(Message {
                            subject: m.subject.to_string(),
                            seq,
                            body: m.payload.to_vec(),
                        });
                        acks.push(m);
                    }
                    Some(Err(e)) => {
                        broken = Some(format!("fetch: {e}"));
                        break;
                    }
                }
                if messages.len() >= batch_max || bytes >= max_bytes {
                    break;
                }
                next = tokio::select! {
                    n = stream.next() => n,
                    _ = tokio::time::sleep_until(until) => break,
                    _ = cancel.cancelled() => return,
                };
            }
            if !messages.is_empty() {
                // Commit (retried alone on a store error; nothing is
                // acknowledged until it succeeds, and a shutdown leaves the
                // batch to be re-delivered).
                let mut delay = Duration::from_millis(100);
                let msgs = Arc::new(messages);
                loop {
                    let (s, m) = (Arc::clone(&site), Arc::clone(&msgs));
                    match tokio::task::spawn_blocking(move || s.apply(&m)).await {
                        Ok(Ok(_)) => break,
                        Ok(Err(e)) => {
                            site.shared.store_writable.store(false, Ordering::Relaxed);
                            tracing::error!(site = %site.id, error = %e, "province copy: commit failed; retrying, nothing acknowledged");
                        }
                        Err(e) => {
                            tracing::error!(site = %site.id, error = %e, "province copy: commit task failed");
                        }
                    }
                    if !pause(&cancel, delay).await {
                        return;
                    }
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
                for m in acks {
                    if let Err(e) = m.ack().await {
                        // Re-delivered later; the copy drops it then.
                        tracing::debug!(site = %site.id, error = %e, "ack failed");
                    }
                }
                up(&site);
                backoff.reset();
                // The site's budget.
                let min = Duration::from_secs_f64(msgs.len() as f64 / rate);
                let spent = started.elapsed();
                if spent < min && !pause(&cancel, min - spent).await {
                    return;
                }
            }
            if let Some(e) = broken {
                fail(&site, e);
                if !pause(&cancel, backoff.next_delay()).await {
                    return;
                }
                continue 'connect;
            }
        }
    }
}
