//! One commune at the province: its own journal (a copy of the commune's,
//! entries under the commune's own `(commune, seq)`), its indicators and
//! device health rebuilt from it exactly as on the commune box, the
//! warnings and sealed reports it sent, and what the copy holds (head,
//! gaps, digest), for the overview.
//!
//! [`Site::apply`] is the commit step of the province: read each message
//! (`super::wire`), write the batch with `journal::Store::write_numbered`
//! (a re-delivered entry changes nothing, a missing seq stays a gap), then
//! apply the derived rows to the live state and publish them to the site's
//! live stream, like the commune's own pipeline does.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use parking_lot::{Mutex, RwLock};

use super::reports::{self, ReportCheck};
use super::wire::{self, InContent, OwnedDead};
use crate::journal::remote::{Gap, Item, Numbered};
use crate::journal::{JournalError, NewDeadLetter, NewEvent, Store};
use crate::model::Event;
use crate::state::Shared;
use crate::warnings::WarningView;

/// Gaps listed at most (a commune that lost more has a bigger problem than
/// a list can show).
pub const MAX_GAPS: usize = 100;

/// What the province's copy of a commune holds.
#[derive(Debug, Clone, Default)]
pub struct Copy {
    /// Highest seq held.
    pub head: i64,
    /// Entries held.
    pub entries: i64,
    /// Per kind.
    pub kinds: BTreeMap<String, i64>,
    /// When the newest entry was journaled at the commune, ms UTC.
    pub last_at_ms: Option<i64>,
    /// Missing seqs below the head.
    pub gaps: Vec<Gap>,
    /// Running digest of the entries.
    pub digest: u128,
}

impl Copy {
    /// Seqs missing below the head (the sum of the gaps).
    pub fn missing(&self) -> i64 {
        self.gaps.iter().map(|g| g.to - g.from + 1).sum()
    }
}

/// One message from the stream.
#[derive(Debug, Clone)]
pub struct Message {
    /// Its subject.
    pub subject: String,
    /// Its `Ioc-Seq` header, when readable.
    pub seq: Option<i64>,
    /// Its body.
    pub body: Vec<u8>,
}

/// A running site.
#[derive(Debug)]
pub struct Site {
    /// Commune id.
    pub id: String,
    /// The site's state, as on the commune box (engine, devices, live
    /// stream, metrics).
    pub shared: Arc<Shared>,
    store: Mutex<Store>,
    /// The copy's alerts (mirrored from the commune's `alert` entries):
    /// the site's board and its API (`/site/{commune}/api/alerts`) read
    /// them through this one connection.
    pub alerts: Arc<Mutex<crate::alerts::AlertStore>>,
    /// When the views were last recomputed ([`Site::refresh_views`]).
    views_at: Mutex<Option<Instant>>,
    copy: RwLock<Copy>,
    /// Warnings by id, as the commune last sent them.
    warnings: RwLock<BTreeMap<String, WarningView>>,
    /// Every sealed report received, with its verification.
    reports: RwLock<Vec<ReportCheck>>,
    key: Result<Option<ed25519_dalek::VerifyingKey>, String>,
    /// Re-delivered entries dropped since start.
    pub duplicates: AtomicU64,
    /// The site's consumer is fetching.
    pub connected: AtomicBool,
    /// The last error of the site's consumer, if it is failing.
    pub error: Mutex<Option<String>>,
}

/// What a batch did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    /// New entries.
    pub new: usize,
    /// Re-delivered ones.
    pub duplicates: usize,
    /// Messages that were not readable entries (now dead letters).
    pub refused: usize,
}

fn key_of(config: &crate::config::Config) -> Result<Option<ed25519_dalek::VerifyingKey>, String> {
    use base64::Engine as _;
    let b64 = config.report.public_key.trim();
    if b64.is_empty() {
        return Ok(None);
    }
    let bytes: [u8; 32] = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .ok()
        .and_then(|v| v.try_into().ok())
        .ok_or_else(|| "report.public_key không phải khoá Ed25519 (32 byte base64)".to_owned())?;
    ed25519_dalek::VerifyingKey::from_bytes(&bytes)
        .map(Some)
        .map_err(|e| format!("report.public_key hỏng: {e}"))
}

impl Site {
    /// Open the site's copy (creating it) and rebuild its state from it.
    pub fn open(config: crate::config::Config) -> Result<Site, crate::server::ServeError> {
        std::fs::create_dir_all(&config.store.path).map_err(|e| {
            crate::server::ServeError::Thread(format!("{}: {e}", config.store.path.display()))
        })?;
        let id = config.commune.id.clone();
        let key = key_of(&config);
        let (shared, store) = crate::server::open_state(config)?;
        let alerts = crate::alerts::AlertStore::open(
            &shared.config.journal_path(),
            shared.config.store.sync,
        )
        .map_err(|e| crate::server::ServeError::Thread(format!("alerts store: {e}")))?;
        let site = Site {
            id,
            shared,
            store: Mutex::new(store),
            alerts: Arc::new(Mutex::new(alerts)),
            views_at: Mutex::new(None),
            copy: RwLock::new(Copy::default()),
            warnings: RwLock::new(BTreeMap::new()),
            reports: RwLock::new(Vec::new()),
            key,
            duplicates: AtomicU64::new(0),
            connected: AtomicBool::new(false),
            error: Mutex::new(None),
        };
        site.restore()?;
        Ok(site)
    }

    fn restore(&self) -> Result<(), JournalError> {
        let store = self.store.lock();
        let stats = store.copy_stats(&self.id)?;
        *self.copy.write() = Copy {
            head: stats.head,
            entries: stats.entries,
            kinds: stats.kinds,
            last_at_ms: stats.last_at_ms,
            gaps: store.gaps(&self.id, MAX_GAPS)?,
            digest: store.copy_digest()?,
        };
        let mut warnings = self.warnings.write();
        let mut received = BTreeMap::new();
        for (_, at, body) in store.bodies(&self.id, crate::journal::seq::kind::WARNING)? {
            if let Ok(w) = serde_json::from_slice::<WarningView>(&body) {
                received.insert(w.id.clone(), at);
                warnings.insert(w.id.clone(), w);
            }
        }
        // The commune's own screen at `/site/{commune}/` lists those in
        // force after a restart, as the commune's does.
        let now = Utc::now();
        *self.shared.warnings_at_start.lock() = warnings
            .values()
            .filter(|w| {
                w.state == crate::warnings::WarningState::Active
                    && w.expires.is_none_or(|e| e.with_timezone(&Utc) > now)
            })
            .map(|w| crate::warnings::store::InForce {
                view: w.clone(),
                chain: w.supersedes.clone().unwrap_or_else(|| w.id.clone()),
                received_at: received
                    .get(&w.id)
                    .and_then(|&at| DateTime::from_timestamp_millis(at))
                    .unwrap_or(now),
            })
            .collect();
        let mut checks = self.reports.write();
        for (seq, at, body) in store.bodies(&self.id, crate::journal::seq::kind::REPORT)? {
            let c = reports::check(seq, at, &body, self.key.as_ref(), &checks);
            checks.push(c);
        }
        drop(store);
        self.refresh_views(Utc::now());
        Ok(())
    }

    /// Recompute what the site's screen shows besides the indicators: the
    /// alert board and the broadcasts overview (at start, and now and
    /// then: resolved alerts leave the board after an hour, silences end).
    pub fn refresh_views(&self, now: DateTime<Utc>) {
        *self.views_at.lock() = Some(Instant::now());
        self.refresh_board(now);
        self.refresh_broadcasts(now);
    }

    /// Recompute the site's alert board from the copy (after alert entries
    /// arrive, and in [`Site::refresh_views`]).
    pub fn refresh_board(&self, now: DateTime<Utc>) {
        if let Err(e) = crate::alerts::engine::refresh_board(&self.alerts.lock(), &self.shared, now)
        {
            tracing::warn!(site = %self.id, error = %e, "province copy: alert board not refreshed");
        }
    }

    /// Recompute the site's broadcasts overview (plans, coverage, tasks)
    /// from the copy, as the commune's worker publishes it.
    pub fn refresh_broadcasts(&self, now: DateTime<Utc>) {
        let store = self.store.lock();
        match crate::broadcasts::store::overview(store.conn(), &self.shared.config, now) {
            Ok(v) => self.shared.broadcasts.set(v),
            Err(e) => {
                tracing::warn!(site = %self.id, error = %e, "province copy: broadcasts overview not refreshed")
            }
        }
    }

    /// Whether the views are older than `every`.
    pub fn views_due(&self, every: std::time::Duration) -> bool {
        self.views_at.lock().is_none_or(|t| t.elapsed() >= every)
    }

    /// What the copy holds now.
    pub fn copy(&self) -> Copy {
        self.copy.read().clone()
    }

    /// Warnings as the commune last sent them.
    pub fn warnings(&self) -> Vec<WarningView> {
        self.warnings.read().values().cloned().collect()
    }

    /// Every sealed report received, in arrival order, with its check.
    pub fn reports(&self) -> Vec<ReportCheck> {
        self.reports.read().clone()
    }

    /// The report key's problem, if `report.public_key` is set but bad.
    pub fn key_error(&self) -> Option<&str> {
        self.key.as_ref().err().map(String::as_str)
    }

    /// Commit a batch of messages from the stream (blocking: call it off
    /// the async runtime). Nothing is lost: an unreadable message becomes
    /// a dead letter of the copy, in its seq's place when its headers name
    /// one.
    pub fn apply(&self, messages: &[Message]) -> Result<Applied, JournalError> {
        let started = Instant::now();
        let mut events: Vec<(Event, String, Vec<u8>)> = Vec::new();
        let mut dead: Vec<OwnedDead> = Vec::new();
        let mut bodies: Vec<(String, Vec<u8>)> = Vec::new();
        // (seq, at, which list, index)
        let mut order: Vec<(Option<i64>, i64, u8, usize)> = Vec::with_capacity(messages.len());
        let mut refused = 0usize;
        let now = Utc::now();
        for m in messages {
            match wire::parse(&self.id, m.seq, &m.body) {
                Ok(inc) => match inc.content {
                    InContent::Event {
                        event,
                        topic,
                        payload,
                    } => {
                        order.push((Some(inc.seq), inc.at_ms, 0, events.len()));
                        events.push((*event, topic, payload));
                    }
                    InContent::Dead(d) => {
                        order.push((Some(inc.seq), inc.at_ms, 1, dead.len()));
                        dead.push(d);
                    }
                    InContent::Body { kind, body } => {
                        order.push((Some(inc.seq), inc.at_ms, 2, bodies.len()));
                        bodies.push((kind, body));
                    }
                },
                Err(r) => {
                    refused += 1;
                    tracing::warn!(site = %self.id, subject = %m.subject, seq = ?r.seq, reason = r.reason.code(), detail = %r.detail,
                        "unreadable journal entry kept as a dead letter of the province's copy");
                    order.push((r.seq, now.timestamp_millis(), 1, dead.len()));
                    dead.push(OwnedDead {
                        dedup_key: format!(
                            "province:{}",
                            hex::encode(&sha2_of(m.subject.as_bytes(), &m.body)[..16])
                        ),
                        reason: r.reason,
                        detail: format!("{} ({})", r.detail, m.subject),
                        topic: m.subject.clone(),
                        source: None,
                        device: None,
                        size: None,
                        received_at: now,
                        payload: m.body.clone(),
                    });
                }
            }
        }
        let new_events: Vec<NewEvent<'_>> = events
            .iter()
            .map(|(e, topic, payload)| NewEvent {
                event: e,
                topic,
                payload,
            })
            .collect();
        let new_dead: Vec<NewDeadLetter<'_>> = dead.iter().map(OwnedDead::as_new).collect();
        let entries: Vec<Numbered<'_>> = order
            .iter()
            .map(|&(seq, at_ms, list, i)| Numbered {
                seq,
                at_ms,
                item: match list {
                    0 => Item::Event(i),
                    1 => Item::Dead(i),
                    _ => Item::Body {
                        kind: &bodies[i].0,
                        body: &bodies[i].1,
                    },
                },
            })
            .collect();
        let shared = &self.shared;
        let (out, derived) = self.store.lock().write_numbered(
            &self.id,
            &entries,
            &new_events,
            &new_dead,
            |batch| crate::runtime::pipeline::derive(shared, &new_events, &new_dead, batch),
            |tx, seq, kind, body| mirror(tx, &self.id, seq, kind, body),
        )?;
        shared.store_writable.store(true, Ordering::Relaxed);
        let duplicates = entries.len() - out.new.len();
        self.duplicates
            .fetch_add(duplicates as u64, Ordering::Relaxed);

        // Live state, as the commune's pipeline applies it.
        let touched = crate::runtime::pipeline::apply_derived(shared, derived, now);
        crate::runtime::pipeline::record(
            shared,
            &new_events,
            &new_dead,
            &out.batch,
            duplicates,
            started,
        );

        // The copy, warnings and reports.
        let mut changed_warnings = Vec::new();
        let mut alerts_changed = false;
        let mut broadcasts_changed = false;
        {
            let mut copy = self.copy.write();
            let mut contiguous = true;
            for &k in &out.new {
                let (seq, at_ms, list, i) = order[k];
                let Some(seq) = seq else { continue };
                if seq != copy.head + 1 {
                    contiguous = false;
                }
                if seq > copy.head {
                    copy.head = seq;
                    copy.last_at_ms = Some(at_ms);
                }
                copy.entries += 1;
                let kind = match list {
                    0 => crate::journal::seq::kind::EVENT,
                    1 => crate::journal::seq::kind::DEAD_LETTER,
                    _ => bodies[i].0.as_str(),
                };
                *copy.kinds.entry(kind.to_owned()).or_insert(0) += 1;
                alerts_changed |= crate::alerts::mirror::mirrors(kind);
                broadcasts_changed |= kind == crate::journal::seq::kind::BROADCAST;
                if list == 2 {
                    let body = &bodies[i].1;
                    match kind {
                        crate::journal::seq::kind::WARNING => {
                            if let Ok(w) = serde_json::from_slice::<WarningView>(body) {
                                self.warnings.write().insert(w.id.clone(), w.clone());
                                changed_warnings.push(w);
                            }
                        }
                        crate::journal::seq::kind::REPORT => {
                            let mut checks = self.reports.write();
                            let c = reports::check(seq, at_ms, body, self.key.as_ref(), &checks);
                            match &c.outcome {
                                Ok(()) => {
                                    tracing::info!(site = %self.id, period = %c.period, revision = c.revision, "sealed report verified")
                                }
                                Err(e) => {
                                    tracing::warn!(site = %self.id, period = %c.period, revision = c.revision, reason = %e, "sealed report refused")
                                }
                            }
                            checks.push(c);
                        }
                        _ => {}
                    }
                }
            }
            copy.digest = out.digest;
            if !contiguous || !copy.gaps.is_empty() {
                drop(copy);
                let gaps = self.store.lock().gaps(&self.id, MAX_GAPS)?;
                if !gaps.is_empty() {
                    tracing::warn!(site = %self.id, gaps = ?gaps, "entries missing from the commune's journal");
                }
                self.copy.write().gaps = gaps;
            }
        }

        if alerts_changed {
            self.refresh_board(now);
        }
        if broadcasts_changed {
            self.refresh_broadcasts(now);
        }
        crate::runtime::pipeline::publish(shared, || {
            crate::runtime::pipeline::committed(
                &new_events,
                &new_dead,
                &out.batch,
                touched,
                duplicates,
                changed_warnings,
                now,
            )
        });
        Ok(Applied {
            new: out.new.len(),
            duplicates,
            refused,
        })
    }

    /// Seconds since the newest entry was journaled at the commune.
    pub fn lag_s(&self, now: DateTime<Utc>) -> Option<i64> {
        self.copy
            .read()
            .last_at_ms
            .map(|at| ((now.timestamp_millis() - at) / 1000).max(0))
    }
}

/// Rebuild the rows a body entry stands for in the copy (alerts,
/// silences, broadcasts: `write_numbered`'s mirror hook), inside a
/// savepoint: a body the copy's tables refuse (a constraint) is logged and
/// left in the journal, never a reason to stall the site; any other error
/// fails the batch, which is retried.
fn mirror(
    tx: &rusqlite::Connection,
    commune: &str,
    seq: i64,
    kind: &str,
    body: &[u8],
) -> Result<Option<i64>, rusqlite::Error> {
    let alerts = crate::alerts::mirror::mirrors(kind);
    if !alerts && kind != crate::journal::seq::kind::BROADCAST {
        return Ok(None);
    }
    tx.execute_batch("SAVEPOINT mirror")?;
    let done = if alerts {
        crate::alerts::mirror::apply(tx, commune, seq, kind, body)
    } else {
        crate::broadcasts::mirror::apply(tx, commune, seq, kind, body)
    };
    match done {
        Ok(id) => {
            tx.execute_batch("RELEASE mirror")?;
            Ok(id)
        }
        Err(rusqlite::Error::SqliteFailure(e, msg))
            if e.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            tx.execute_batch("ROLLBACK TO mirror; RELEASE mirror")?;
            tracing::warn!(site = commune, seq, kind, error = ?msg, "journal entry not mirrored: the copy's tables refuse it; kept in the journal");
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

fn sha2_of(a: &[u8], b: &[u8]) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(a);
    h.update([0]);
    h.update(b);
    h.finalize().to_vec()
}

#[cfg(test)]
mod tests {
    use crate::journal::remote::{Item, Numbered};
    use crate::journal::{Derived, Store};

    /// A body the copy's tables refuse (here a trigger standing for any
    /// constraint) is kept in the journal without its rows, and the batch
    /// and the ones after it commit: one bad entry never stalls a site.
    #[test]
    fn a_body_the_tables_refuse_is_kept_and_the_site_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("j.db")).unwrap();
        store
            .conn()
            .execute_batch(
                "CREATE TRIGGER refuse BEFORE INSERT ON broadcasts WHEN NEW.id = 7 \
                 BEGIN SELECT RAISE(ABORT, 'refused'); END;",
            )
            .unwrap();
        let plan = |id: i64| {
            serde_json::json!({
                "change": "drafted", "id": id, "origin": "operator", "bulletin": null,
                "chain": null, "priority": "routine", "villages": ["a"], "text_vi": "x",
                "text_ethnic": null, "language": null, "repeats": 1, "gap_secs": 60,
                "issued_ms": null, "expires_ms": 9, "state": "draft", "created_ms": 1,
                "created_by": "op", "approved_ms": null, "approved_by": null,
                "ended_ms": null, "ended_by": null, "end_reason": null,
                "clusters": [], "tasks": []
            })
            .to_string()
            .into_bytes()
        };
        let (bad, good) = (plan(7), plan(8));
        let entries = [
            Numbered {
                seq: Some(1),
                at_ms: 1,
                item: Item::Body {
                    kind: "broadcast",
                    body: &bad,
                },
            },
            Numbered {
                seq: Some(2),
                at_ms: 2,
                item: Item::Body {
                    kind: "broadcast",
                    body: &good,
                },
            },
        ];
        let (out, _) = store
            .write_numbered(
                "xa",
                &entries,
                &[],
                &[],
                |_| Derived::default(),
                |tx, s, k, b| super::mirror(tx, "xa", s, k, b),
            )
            .unwrap();
        assert_eq!(out.new, vec![0, 1]);
        let ids: Vec<i64> = store
            .conn()
            .prepare("SELECT id FROM broadcasts")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(ids, vec![8]);
        assert_eq!(store.bodies("xa", "broadcast").unwrap().len(), 2);
    }
}
