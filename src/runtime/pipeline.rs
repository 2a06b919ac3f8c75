//! The commit pipeline: one OS thread takes messages from the ingest queue
//! in batches and runs each batch through
//!
//! 1. **decode** (`sources::Decoder`): an event or a rejection per message,
//!    or, for a message carrying several objects (a DVCQG `data[]`), one
//!    per object (see "Messages of several objects" below);
//! 2. **attribute**: dossier events without a village get the village of
//!    their dossier's `received` event (same batch, else the store);
//! 3. **commit** (`journal::Store::write_batch`): events and dead letters
//!    with the rows **derived** from the new ones (rollups, latest values,
//!    freshness, device health) in one transaction;
//! 4. **ack** every message of the batch, new or duplicate;
//! 5. **apply** the same derived delta to the in-memory engine and device
//!    tracker, and count it in the metrics;
//! 6. **publish** a [`Committed`] to live subscribers.
//!
//! Official warnings (CAP bulletins on `ioc/{commune}/warning/cap`, and
//! those posted or fetched, see `crate::warnings`) are taken out before
//! decoding: validated by `warnings::Checker` (a refusal is a dead letter
//! `invalid_cap`), stored by `warnings::store::apply` in a transaction of
//! their own just before the batch's (idempotent: a bulletin stored twice
//! is a duplicate), and published in `Committed::warnings`.
//!
//! Batching is natural: the thread takes whatever is queued (up to
//! `store.batch_max`) after the first message, so a quiet commune commits
//! every message at once and a busy one amortises each commit over many.
//! When the store fails (disk full, I/O error), the same step is retried
//! with backoff and nothing is acknowledged: the broker keeps the messages.
//!
//! ## Messages of several objects
//!
//! A message may decode to several parts ([`crate::sources::Decoded`]).
//! Each part is an event with its own dedup key (a dossier re-sent in a
//! later message, or twice in one, counts once per lifecycle step) or a
//! rejection of that object alone: its dead letter keeps the object's own
//! bytes (not the whole message) under a content key of those bytes. So in
//! a message with good and bad objects the good ones are committed and each
//! bad one is a dead letter naming what was wrong; nothing is lost. All
//! parts of a message are written in the batch's one transaction, and the
//! message is acknowledged only after it, like any other. A message that is
//! bad as a whole (not JSON, no `data[]`) is one dead letter of its payload.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;

use crate::devices::class_of;
use crate::indicators::Touched;
use crate::journal::{BatchOutcome, Derived, JournalError, NewDeadLetter, NewEvent, Store};
use crate::metrics::{ReasonLabel, SourceLabel};
use crate::model::{Event, Raw, Reason, Source};
use crate::sources::{content_key, content_key_of, Decoder, Part};
use crate::state::{Committed, DeadNote, Shared};
use crate::warnings::{self, Checker};

/// The warnings step: the validator and a connection of its own.
struct WarningStep {
    checker: Checker,
    conn: rusqlite::Connection,
}

/// Called once the message is committed: sends the MQTT acknowledgement.
pub type AckFn = Box<dyn FnOnce() + Send>;

/// One message on its way to the journal.
pub struct Inbound {
    /// The message.
    pub raw: Raw,
    /// Acknowledgement to send after commit (none for QoS 0).
    pub ack: Option<AckFn>,
}

impl std::fmt::Debug for Inbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inbound")
            .field("topic", &self.raw.topic)
            .field("bytes", &self.raw.payload.len())
            .field("ack", &self.ack.is_some())
            .finish()
    }
}

/// Start the pipeline thread. It ends when every sender of `rx` is dropped
/// and the queue is drained.
pub fn spawn(
    mut store: Store,
    decoder: Decoder,
    shared: Arc<Shared>,
    mut rx: mpsc::Receiver<Inbound>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let batch_max = shared.config.store.batch_max.max(1);
    let mut cap = WarningStep {
        checker: Checker::new(&shared.config),
        conn: crate::store::open(&shared.config.journal_path(), shared.config.store.sync)
            .map_err(std::io::Error::other)?,
    };
    std::thread::Builder::new()
        .name("journal-writer".into())
        .spawn(move || {
            let mut last_prune = Instant::now();
            let mut batch: Vec<Inbound> = Vec::with_capacity(batch_max);
            while let Some(first) = rx.blocking_recv() {
                batch.push(first);
                while batch.len() < batch_max {
                    match rx.try_recv() {
                        Ok(m) => batch.push(m),
                        Err(_) => break,
                    }
                }
                if !run_batch(&mut store, &mut cap, &decoder, &shared, &mut batch) {
                    break;
                }
                if last_prune.elapsed() > Duration::from_secs(60) {
                    last_prune = Instant::now();
                    let now = Utc::now();
                    shared.engine.write().prune(now);
                    if let Err(e) = store.prune(now) {
                        tracing::warn!(error = %e, "pruning old minute rollups failed");
                    }
                }
            }
            tracing::info!("journal writer stopped: ingest queue closed and drained");
        })
}

/// Retry `step` with backoff (100 ms doubling to 5 s) until it succeeds,
/// marking the store unwritable meanwhile; `None` when the process is
/// shutting down (nothing of the batch is acknowledged: the broker will
/// deliver it again).
fn with_retry<T>(
    shared: &Shared,
    messages: usize,
    what: &str,
    mut step: impl FnMut() -> Result<T, JournalError>,
) -> Option<T> {
    let mut backoff = Duration::from_millis(100);
    loop {
        match step() {
            Ok(v) => return Some(v),
            Err(e) => {
                shared.metrics.journal_errors.inc();
                shared.store_writable.store(false, Ordering::Relaxed);
                if shared.stopping.load(Ordering::Acquire) {
                    tracing::warn!(error = %e, messages, what,
                        "shutting down with uncommitted messages; they were not acknowledged and the broker will deliver them again");
                    return None;
                }
                tracing::error!(error = %e, messages, what, retry_in_ms = backoff.as_millis() as u64,
                    "journal commit failed; nothing acknowledged, retrying");
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Run one batch through the pipeline; false when it gave up because the
/// process is shutting down.
fn run_batch(
    store: &mut Store,
    cap: &mut WarningStep,
    decoder: &Decoder,
    shared: &Shared,
    batch: &mut Vec<Inbound>,
) -> bool {
    let started = Instant::now();
    shared.metrics.messages_received.inc_by(batch.len() as u64);
    let acks: Vec<AckFn> = batch.iter_mut().filter_map(|m| m.ack.take()).collect();

    // 0. Official warnings take their own path.
    let (cap_msgs, rest): (Vec<Inbound>, Vec<Inbound>) = batch
        .drain(..)
        .partition(|m| cap.checker.origin(&m.raw.topic).is_some());
    *batch = rest;
    let mut bulletins = Vec::new();
    let mut cap_refused = Vec::new();
    for m in &cap_msgs {
        let origin = cap.checker.origin(&m.raw.topic).unwrap_or_default();
        match cap
            .checker
            .bulletin(&m.raw.payload, origin, m.raw.received_at)
        {
            Ok(b) => bulletins.push(b),
            Err(e) => cap_refused.push((m, warnings::refusal_detail(&e))),
        }
    }

    // 1. Decode: each part with the index of its message.
    let mut decoded: Vec<(usize, Part)> = Vec::with_capacity(batch.len());
    for (i, m) in batch.iter().enumerate() {
        decoded.extend(decoder.decode(&m.raw).into_iter().map(|p| (i, p)));
    }

    // 2. Attribute dossier events to their dossier's village.
    let Some(()) = with_retry(shared, batch.len(), "dossier villages", || {
        attribute_dossiers(store, &mut decoded)
    }) else {
        batch.clear();
        return false;
    };

    let mut events: Vec<NewEvent<'_>> = Vec::new();
    let mut dead: Vec<NewDeadLetter<'_>> = Vec::new();
    for (i, part) in &decoded {
        let m = &batch[*i];
        let payload = part.payload.as_deref().unwrap_or(&m.raw.payload);
        match &part.result {
            Ok(e) => events.push(NewEvent {
                event: e,
                topic: &m.raw.topic,
                payload,
            }),
            Err(r) => dead.push(NewDeadLetter {
                size: None,
                dedup_key: match &part.payload {
                    None => content_key(&m.raw, false),
                    Some(own) => content_key_of(&m.raw, own, false),
                },
                reason: r.reason,
                detail: &r.detail,
                topic: &m.raw.topic,
                source: r.source,
                device: r.device.as_deref(),
                payload,
                received_at: m.raw.received_at,
            }),
        }
    }
    for (m, detail) in &cap_refused {
        dead.push(NewDeadLetter {
            size: None,
            dedup_key: content_key(&m.raw, false),
            reason: Reason::InvalidCap,
            detail,
            topic: &m.raw.topic,
            source: None,
            device: None,
            payload: &m.raw.payload,
            received_at: m.raw.received_at,
        });
    }

    // 3a. Store the valid bulletins (their own transaction, idempotent).
    let applied = if bulletins.is_empty() {
        warnings::store::Applied::default()
    } else {
        let Some(applied) = with_retry(shared, bulletins.len(), "warnings", || {
            let tx = cap.conn.transaction()?;
            let applied = warnings::store::apply(&tx, &bulletins, Utc::now())?;
            // Each change is a journal entry (the province's copy).
            warnings::store::journal_changes(&tx, &applied.changed, Utc::now().timestamp_millis())?;
            tx.commit()?;
            Ok(applied)
        }) else {
            drop((events, dead));
            batch.clear();
            return false;
        };
        applied
    };

    // 3. Commit, with the rows derived from what was new.
    let Some((outcome, derived)) = with_retry(shared, batch.len(), "commit", || {
        store.write_batch(&events, &dead, |outcome| {
            derive(shared, &events, &dead, outcome)
        })
    }) else {
        drop((events, dead));
        batch.clear();
        return false;
    };
    shared.store_writable.store(true, Ordering::Relaxed);

    // 4. Committed: acknowledge every message, new or duplicate.
    for ack in acks {
        ack();
    }

    // 5. Apply to the live state; count.
    let now = Utc::now();
    let duplicates = events.len() - outcome.new_events.len() + dead.len() - outcome.new_dead.len()
        + applied.duplicates;
    let touched = apply_derived(shared, derived, now);
    record(shared, &events, &dead, &outcome, duplicates, started);

    // 6. Publish to live subscribers.
    publish(shared, || {
        committed(
            &events,
            &dead,
            &outcome,
            touched,
            duplicates,
            applied.changed,
            now,
        )
    });
    drop(events);
    drop(dead);
    batch.clear();
    true
}

/// The dossier id of a procedure event.
fn dossier_id(e: &Event) -> Option<&str> {
    if e.source != Source::Procedure {
        return None;
    }
    e.attrs.get("dossier_id")?.as_str()
}

/// Give each dossier event without a village (`resolved`, `paid`) the
/// village its dossier was received in: from a `received` event in the
/// same batch, else from the store's `dossiers` table.
fn attribute_dossiers(store: &Store, decoded: &mut [(usize, Part)]) -> Result<(), JournalError> {
    let mut missing: Vec<&str> = decoded
        .iter()
        .filter_map(|(_, p)| p.result.as_ref().ok())
        .filter(|e| e.village.is_none())
        .filter_map(dossier_id)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    // Only a batch with village-less dossier events pays for the map.
    let mut known: HashMap<String, String> = HashMap::new();
    for e in decoded.iter().filter_map(|(_, p)| p.result.as_ref().ok()) {
        if let (Some(id), Some(v)) = (dossier_id(e), &e.village) {
            if e.kind == "received" {
                known.entry(id.to_owned()).or_insert_with(|| v.clone());
            }
        }
    }
    missing.retain(|id| !known.contains_key(*id));
    if !missing.is_empty() {
        for (id, v) in store.dossier_villages(&missing)? {
            known.entry(id).or_insert(v);
        }
    }
    for e in decoded
        .iter_mut()
        .filter_map(|(_, p)| p.result.as_mut().ok())
    {
        if e.village.is_none() {
            if let Some(v) = dossier_id(e).and_then(|id| known.get(id)) {
                e.village = Some(v.clone());
            }
        }
    }
    Ok(())
}

/// Derive rollups, latest values, freshness and device health from the
/// rows of the batch that were new (inside its transaction).
pub(crate) fn derive(
    shared: &Shared,
    events: &[NewEvent<'_>],
    dead: &[NewDeadLetter<'_>],
    outcome: &BatchOutcome,
) -> Derived {
    let new_events = outcome.new_events.iter().map(|&i| events[i].event);
    let dead_times: Vec<_> = outcome
        .new_dead
        .iter()
        .map(|&i| dead[i].received_at)
        .collect();
    let engine = shared.engine.read();
    let tracker = shared.devices.read();
    let mut devices: Vec<_> = tracker.updates(new_events.clone()).into_iter().collect();
    devices.extend(
        tracker.unknown_updates(outcome.new_dead.iter().filter_map(|&i| {
            let d = &dead[i];
            match (d.reason, d.source.and_then(class_of), d.device) {
                (Reason::UnknownDevice, Some(class), Some(id)) => Some((class, id, d.received_at)),
                _ => None,
            }
        })),
    );
    Derived {
        delta: engine.delta(new_events, &dead_times),
        counter_keys: engine.counters().iter().map(|c| c.key.clone()).collect(),
        scope_names: engine.scopes().to_vec(),
        indicator_ids: engine.ids().map(str::to_owned).collect(),
        devices,
    }
}

/// Apply a committed batch's derived rows to the live indicators and
/// device health; what they touched (the commune's pipeline, and the
/// province's copy of a commune, `province::site`).
pub(crate) fn apply_derived(shared: &Shared, derived: Derived, now: DateTime<Utc>) -> Touched {
    let touched = derived.delta.touched();
    shared.engine.write().apply(&derived.delta, now);
    shared
        .devices
        .write()
        .apply(derived.devices.into_iter().collect());
    touched
}

/// What live subscribers get of a committed batch: its new events and
/// dead letters (`outcome`'s indices into `events` and `dead`).
pub(crate) fn committed(
    events: &[NewEvent<'_>],
    dead: &[NewDeadLetter<'_>],
    outcome: &BatchOutcome,
    touched: Touched,
    duplicates: usize,
    warnings: Vec<crate::warnings::WarningView>,
    at: DateTime<Utc>,
) -> Committed {
    Committed {
        touched,
        events: outcome
            .new_events
            .iter()
            .map(|&i| events[i].event.clone())
            .collect(),
        dead: outcome
            .new_dead
            .iter()
            .map(|&i| {
                let d = &dead[i];
                DeadNote {
                    reason: d.reason.code(),
                    topic: d.topic.to_owned(),
                    source: d.source,
                    device: d.device.map(str::to_owned),
                    detail: d.detail.to_owned(),
                    received_at: d.received_at,
                }
            })
            .collect(),
        duplicates,
        warnings,
        at,
    }
}

/// Send a committed batch to the live subscribers, built only when there
/// are any.
pub(crate) fn publish(shared: &Shared, batch: impl FnOnce() -> Committed) {
    if shared.updates.receiver_count() > 0 {
        let _ = shared.updates.send(Arc::new(batch()));
    }
}

/// Count a committed batch in the metrics.
pub(crate) fn record(
    shared: &Shared,
    events: &[NewEvent<'_>],
    dead: &[NewDeadLetter<'_>],
    outcome: &BatchOutcome,
    duplicates: usize,
    started: Instant,
) {
    let m = &shared.metrics;
    m.duplicates.inc_by(duplicates as u64);
    let mut per_source = [0u64; Source::ALL.len()];
    for &i in &outcome.new_events {
        let source = events[i].event.source;
        if let Some(k) = Source::ALL.iter().position(|s| *s == source) {
            per_source[k] += 1;
        }
    }
    for (source, n) in Source::ALL.iter().zip(per_source) {
        if n > 0 {
            m.events_committed
                .get_or_create(&SourceLabel {
                    source: source.as_str().to_owned(),
                })
                .inc_by(n);
        }
    }
    for &i in &outcome.new_dead {
        let d = &dead[i];
        m.dead_letters
            .get_or_create(&ReasonLabel {
                reason: d.reason.code().to_owned(),
            })
            .inc();
        tracing::debug!(
            reason = d.reason.code(),
            topic = d.topic,
            detail = d.detail,
            "dead letter"
        );
    }
    m.journal_batches.inc();
    m.journal_batch_seconds
        .observe(started.elapsed().as_secs_f64());
    shared.batches.fetch_add(1, Ordering::Release);
}
