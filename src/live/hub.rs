//! The hub: the current value of every key, and the numbered steps that
//! change them.
//!
//! One task ([`run`]) turns committed journal batches (and a clock tick) into
//! steps. The values come from the projections (`live::projections`, one
//! per key family); the hub owns what is common to them: it interns keys,
//! compares each offered value with the last one published (by
//! fingerprint), and publishes the changed items as one [`Step`] with the
//! next `seq`. Each step goes to a broadcast ring that connections read at
//! their own pace, and to a history kept for resuming clients.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::extract::ws::Utf8Bytes;
use chrono::{DateTime, Utc};
use parking_lot::Mutex;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use super::keys::{find_family, Catalog, Family, KeyInfo};
use super::projections::{self, Change, Context, LiveValue, Out, Pass, Projection};
use super::protocol::{change_item, whole_item};
use crate::config::Live;
use crate::state::{Committed, Shared};

/// How long the hub gathers commits into one step while no connection is
/// attached (a connection that attaches meanwhile waits at most this long
/// for its first update).
pub const IDLE_STEP: Duration = Duration::from_millis(100);

/// Most bytes of items kept in the resume history, whatever
/// `live.history_batches` says.
pub const HISTORY_MAX_BYTES: usize = 64 * 1024 * 1024;

/// Bytes counted per item in the history besides its JSON (the value kept
/// to build its whole form).
const ITEM_OVERHEAD: usize = 256;

/// One value under one key, serialized once for every connection.
#[derive(Debug, Clone)]
pub struct Item {
    /// The key.
    pub key: Arc<KeyInfo>,
    /// The item as an update carries it: `{"key","updated_at","value"}`
    /// with only the fields that change, or the whole item (as in a
    /// snapshot) when `whole`.
    pub json: Arc<str>,
    /// Whether `json` is the whole item: the key is new or its static part
    /// (name, unit, target, window bounds…) changed.
    pub whole: bool,
    body: Arc<Body>,
}

#[derive(Debug)]
struct Body {
    value: Box<dyn LiveValue>,
    whole: OnceLock<Arc<str>>,
}

impl Item {
    fn new(change: Change) -> Item {
        let body = Body {
            value: change.value,
            whole: OnceLock::new(),
        };
        let json: Arc<str> = if change.whole {
            let j: Arc<str> = whole_item(&change.key, body.value.as_ref()).into();
            let _ = body.whole.set(Arc::clone(&j));
            j
        } else {
            change_item(&change.key, body.value.as_ref()).into()
        };
        Item {
            key: change.key,
            json,
            whole: change.whole,
            body: Arc::new(body),
        }
    }

    /// A whole item from its JSON (`{"key","scope","updated_at","value"}`),
    /// e.g. for a test's fake hub.
    pub fn whole_from_json(key: Arc<KeyInfo>, json: Arc<str>) -> Item {
        let body = Body {
            value: Box::new(Raw(Arc::clone(&json))),
            whole: OnceLock::from(Arc::clone(&json)),
        };
        Item {
            key,
            json,
            whole: true,
            body: Arc::new(body),
        }
    }

    /// The whole item, as a snapshot carries it:
    /// `{"key","scope","updated_at","value"}` (built once, on demand).
    pub fn whole_json(&self) -> Arc<str> {
        Arc::clone(
            self.body
                .whole
                .get_or_init(|| whole_item(&self.key, self.body.value.as_ref()).into()),
        )
    }

    /// This item in its whole form.
    pub fn as_whole(&self) -> Item {
        if self.whole {
            return self.clone();
        }
        Item {
            key: Arc::clone(&self.key),
            json: self.whole_json(),
            whole: true,
            body: Arc::clone(&self.body),
        }
    }
}

/// A value known only by its whole item's JSON.
#[derive(Debug)]
struct Raw(Arc<str>);

impl LiveValue for Raw {
    fn updated_at(&self) -> Option<DateTime<Utc>> {
        None
    }
    fn write_whole(&self, out: &mut String) {
        out.push_str(&self.0);
    }
}

/// The items one step of the hub changed.
#[derive(Debug)]
pub struct Step {
    /// Sequence number (strictly increasing within an epoch).
    pub seq: u64,
    /// When the values were computed.
    pub at: DateTime<Utc>,
    /// Changed items.
    pub items: Vec<Item>,
    bytes: usize,
    /// Update frames already built for this step alone, by subscription
    /// signature: connections with the same subscriptions (every wall
    /// screen) share one serialization. Cleared two steps later.
    pub frames: Mutex<Vec<(u64, Arc<[Utf8Bytes]>)>>,
}

impl Step {
    /// A step of `items` at `seq`.
    pub fn new(seq: u64, at: DateTime<Utc>, items: Vec<Item>) -> Step {
        let bytes = items.iter().map(|i| i.json.len() + ITEM_OVERHEAD).sum();
        Step {
            seq,
            at,
            items,
            bytes,
            frames: Mutex::new(Vec::new()),
        }
    }
}

/// Most distinct subscription signatures whose frames a step keeps.
pub const MAX_SHARED_FRAMES: usize = 8;

/// The projections and the book of what they last offered: used by the
/// hub task for each step, and to check subscription patterns.
#[derive(Debug)]
struct Book {
    projections: Vec<Box<dyn Projection>>,
    out: Out,
    scopes: HashSet<String>,
}

/// The published state: current items, `seq`, resume history.
#[derive(Debug)]
struct State {
    seq: u64,
    /// By key id (keys are interned in projection order).
    current: BTreeMap<u32, Item>,
    history: VecDeque<Arc<Step>>,
    history_bytes: usize,
}

/// What exists, for checking subscription patterns: the families of the
/// projections, the segments they know, and the scopes.
pub struct Known<'a> {
    /// `commune` and every village id.
    pub scopes: &'a HashSet<String>,
    projections: &'a [Box<dyn Projection>],
}

impl Catalog for Known<'_> {
    fn family(&self, name: &str) -> Option<&'static Family> {
        find_family(self.projections.iter().map(|p| p.family()), name)
    }

    fn knows(&self, family: &Family, index: usize, segment: &str) -> bool {
        self.projections
            .iter()
            .find(|p| std::ptr::eq(p.family(), family))
            .is_some_and(|p| p.knows(index, segment))
    }

    fn scopes(&self) -> &HashSet<String> {
        self.scopes
    }
}

/// The live hub (see the module docs).
#[derive(Debug)]
pub struct Hub {
    epoch: String,
    shared: Arc<Shared>,
    book: Mutex<Book>,
    state: Mutex<State>,
    tx: broadcast::Sender<Arc<Step>>,
}

impl Hub {
    /// Build the hub with the current value of every key, listening to the
    /// journal's commits from now on.
    pub fn new(shared: Arc<Shared>) -> (Arc<Hub>, broadcast::Receiver<Arc<Committed>>) {
        let commits = shared.updates.subscribe();
        let (tx, _) = broadcast::channel(shared.config.live.queue_batches.max(1));
        let scopes = shared.engine.read().scopes().iter().cloned().collect();
        let book = Book {
            projections: projections::all(&shared),
            out: Out::default(),
            scopes,
        };
        let epoch = format!("{:016x}", rand::random::<u64>());
        let hub = Arc::new(Hub {
            epoch,
            shared,
            book: Mutex::new(book),
            state: Mutex::new(State {
                seq: 0,
                current: BTreeMap::new(),
                history: VecDeque::new(),
                history_bytes: 0,
            }),
            tx,
        });
        hub.advance(&[], Pass::Start, Utc::now());
        (hub, commits)
    }

    /// This run's epoch.
    pub fn epoch(&self) -> &str {
        &self.epoch
    }

    /// The stream limits.
    pub fn limits(&self) -> &Live {
        &self.shared.config.live
    }

    /// The instance's metrics.
    pub fn metrics(&self) -> &crate::metrics::Metrics {
        &self.shared.metrics
    }

    /// The newest `seq`.
    pub fn seq(&self) -> u64 {
        self.state.lock().seq
    }

    /// The newest `seq` and a receiver of every later step.
    pub fn attach(&self) -> (u64, broadcast::Receiver<Arc<Step>>) {
        let st = self.state.lock();
        (st.seq, self.tx.subscribe())
    }

    /// What exists, for checking subscription patterns.
    pub fn with_known<T>(&self, f: impl FnOnce(&Known<'_>) -> T) -> T {
        let book = self.book.lock();
        f(&Known {
            scopes: &book.scopes,
            projections: &book.projections,
        })
    }

    /// Every current item that `wanted` accepts, whole, in key order, and
    /// the `seq` they are current at.
    pub fn snapshot(&self, mut wanted: impl FnMut(&KeyInfo) -> bool) -> (u64, Vec<Item>) {
        let st = self.state.lock();
        let items = st
            .current
            .values()
            .filter(|i| wanted(&i.key))
            .map(Item::as_whole)
            .collect();
        (st.seq, items)
    }

    /// The steps after `since` when they are all still kept (and `epoch`
    /// is this run's), with the newest `seq`; `None` means resync.
    pub fn resume(&self, epoch: &str, since: u64) -> Option<(u64, Vec<Arc<Step>>)> {
        let st = self.state.lock();
        if epoch != self.epoch || since > st.seq {
            return None;
        }
        if since == st.seq {
            return Some((st.seq, Vec::new()));
        }
        let first = st.history.front()?.seq;
        if first > since + 1 {
            return None;
        }
        let steps = st
            .history
            .iter()
            .filter(|s| s.seq > since)
            .cloned()
            .collect();
        Some((st.seq, steps))
    }

    /// Run the projections over `commits` (or the clock) and publish what
    /// changed as one step (nothing is published at `Pass::Start`).
    fn advance(&self, commits: &[Arc<Committed>], pass: Pass, now: DateTime<Utc>) {
        let changes = {
            let mut book = self.book.lock();
            let Book {
                projections, out, ..
            } = &mut *book;
            // One read model for every projection of the step.
            let view = self.shared.view(now);
            let cx = Context {
                pass,
                commits,
                now,
                shared: &self.shared,
                view: &view,
            };
            for p in projections.iter_mut() {
                p.project(&cx, out);
            }
            out.take()
        };
        let changed: Vec<Item> = changes.into_iter().map(Item::new).collect();
        let mut st = self.state.lock();
        for item in &changed {
            st.current.insert(item.key.id, item.clone());
        }
        if pass == Pass::Start || changed.is_empty() {
            return;
        }
        st.seq += 1;
        let step = Arc::new(Step::new(st.seq, now, changed));
        // Connections that keep up read a step right after it is published;
        // shared frames of older steps are not needed any more.
        if let Some(old) = st.history.iter().rev().nth(1) {
            old.frames.lock().clear();
        }
        st.history_bytes += step.bytes;
        st.history.push_back(Arc::clone(&step));
        let live = self.limits();
        while st.history.len() > live.history_batches || st.history_bytes > HISTORY_MAX_BYTES {
            match st.history.pop_front() {
                Some(old) => st.history_bytes -= old.bytes,
                None => break,
            }
        }
        let metrics = &self.shared.metrics;
        metrics.live_steps.inc();
        metrics
            .live_seq
            .set(i64::try_from(st.seq).unwrap_or(i64::MAX));
        // Sent under the lock, so attach() + snapshot() see a consistent seq.
        let _ = self.tx.send(step);
    }
}

/// Turn commits and clock ticks into steps until `cancel` fires.
pub async fn run(
    hub: Arc<Hub>,
    mut commits: broadcast::Receiver<Arc<Committed>>,
    cancel: CancellationToken,
) {
    let tick_ms = hub.limits().tick_ms.max(100);
    let mut tick = tokio::time::interval(Duration::from_millis(tick_ms));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    let min_step = Duration::from_millis(hub.limits().min_step_ms);
    let mut last_step = std::time::Instant::now();
    loop {
        let mut pending = Vec::new();
        let mut full = false;
        let mut tick_fired = false;
        tokio::select! {
            _ = cancel.cancelled() => return,
            r = commits.recv() => match r {
                Ok(c) => pending.push(c),
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "live hub fell behind the journal; recomputing everything");
                    full = true;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = tick.tick() => tick_fired = true,
        }
        // Optionally let commits gather into fewer, larger steps: fewer
        // wake-ups and frames per client, at the cost of latency.
        // With no connection attached, no one waits for a step: gather
        // commits for longer (the ingest path pays less for the hub).
        let gather = if hub.tx.receiver_count() == 0 {
            min_step.max(IDLE_STEP)
        } else {
            min_step
        };
        let since = last_step.elapsed();
        if !pending.is_empty() && since < gather {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(gather - since) => {}
            }
        }
        last_step = std::time::Instant::now();
        loop {
            match commits.try_recv() {
                Ok(c) => pending.push(c),
                Err(broadcast::error::TryRecvError::Lagged(_)) => full = true,
                Err(_) => break,
            }
        }
        let pass = if full {
            Pass::Full
        } else if tick_fired {
            Pass::Tick
        } else {
            Pass::Commits
        };
        if pass == Pass::Commits {
            hub.advance(&pending, pass, Utc::now());
            continue;
        }
        // Clock and full passes are larger: keep them off the I/O threads.
        let hub2 = Arc::clone(&hub);
        let r = tokio::task::spawn_blocking(move || {
            hub2.advance(&pending, pass, Utc::now());
        })
        .await;
        if let Err(e) = r {
            tracing::error!(error = %e, "live hub step failed");
        }
    }
}
