//! The hub: the current value of every key, and the numbered steps that
//! change them.
//!
//! One task ([`run`]) turns committed journal batches (and a clock tick) into
//! steps: it recomputes what a batch can have changed, compares each value
//! with the last one published (by a fingerprint of the fields that matter),
//! and publishes the changed items as one [`Step`] with the next `seq`. Each
//! step goes to a broadcast ring that connections read at their own pace,
//! and to a history kept for resuming clients.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::Utf8Bytes;
use chrono::{DateTime, Utc};
use parking_lot::Mutex;
use serde::Serialize;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use super::keys::{key_info, Family, KeyInfo, Known};
use crate::config::{IndicatorKind, Live};
use crate::devices::{class_of, DeviceView};
use crate::indicators::{IndicatorValue, Touched, Window, COMMUNE};
use crate::model::{DeviceClass, Event};
use crate::state::{Committed, DeadNote, Shared};

/// Feeds are republished at most this often (and at every clock tick).
const FEED_INTERVAL: Duration = Duration::from_millis(200);

/// Most bytes of items kept in the resume history, whatever
/// `live.history_batches` says.
pub const HISTORY_MAX_BYTES: usize = 64 * 1024 * 1024;

/// One value under one key, serialized once for every connection.
#[derive(Debug, Clone)]
pub struct Item {
    /// The key.
    pub key: Arc<KeyInfo>,
    /// `{"key":…,"scope":…,"updated_at":…,"value":…}`.
    pub json: Arc<str>,
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
        let bytes = items.iter().map(|i| i.json.len()).sum();
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

#[derive(Debug)]
struct Current {
    item: Item,
    fingerprint: u64,
}

/// Dead letters since the server started.
#[derive(Debug, Default, Serialize)]
struct DeadSummary {
    since_start: u64,
    by_reason: BTreeMap<&'static str, u64>,
    last: Option<DeadNote>,
}

/// One event of a feed: when it was received, and its entry's JSON.
type FeedRow = (DateTime<Utc>, Arc<str>);

#[derive(Debug)]
struct State {
    seq: u64,
    keys: HashMap<String, Arc<KeyInfo>>,
    /// Indicator keys by `(indicator × scopes + scope) × 3 + window`.
    indicator_keys: Vec<Arc<KeyInfo>>,
    current: BTreeMap<u32, Current>,
    history: VecDeque<Arc<Step>>,
    history_bytes: usize,
    known: Known,
    /// Per scope, the newest events first.
    feeds: HashMap<String, VecDeque<FeedRow>>,
    /// Scopes whose feed changed since it was last published.
    feed_dirty: HashSet<String>,
    /// When feeds were last published.
    feed_flushed: Option<std::time::Instant>,
    dead: DeadSummary,
}

/// The live hub (see the module docs).
#[derive(Debug)]
pub struct Hub {
    epoch: String,
    shared: Arc<Shared>,
    clock: Mutex<Clock>,
    state: Mutex<State>,
    tx: broadcast::Sender<Arc<Step>>,
}

/// What a step recomputes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pass {
    /// What committed batches touched.
    Commits,
    /// What the clock moves: availability and freshness every tick; the
    /// sliding 24h window each new minute; a whole window when its day or
    /// report period rolls over; every device's staleness.
    Tick,
    /// Everything (start, or after the hub fell behind the journal).
    Full,
}

/// A value computed for one key, before it is compared with the last one.
enum Candidate {
    Indicator(Arc<KeyInfo>, IndicatorValue),
    Device(DeviceView),
}

/// Where the clock was at the last tick.
#[derive(Debug, Default, Clone, Copy)]
struct Clock {
    minute: i64,
    today_from: Option<DateTime<Utc>>,
    month_from: Option<DateTime<Utc>>,
}

impl Hub {
    /// Build the hub with the current value of every key, listening to the
    /// journal's commits from now on.
    pub fn new(shared: Arc<Shared>) -> (Arc<Hub>, broadcast::Receiver<Arc<Committed>>) {
        let commits = shared.updates.subscribe();
        let live = shared.config.live.clone();
        let (tx, _) = broadcast::channel(live.queue_batches.max(1));
        let mut known = Known::default();
        {
            let engine = shared.engine.read();
            known.indicators = engine.ids().map(str::to_owned).collect();
            known.scopes = engine.scopes().iter().cloned().collect();
        }
        let feeds = known
            .scopes
            .iter()
            .map(|s| (s.clone(), VecDeque::new()))
            .collect();
        let epoch = format!("{:016x}", rand::random::<u64>());
        let hub = Arc::new(Hub {
            epoch,
            shared,
            clock: Mutex::new(Clock::default()),
            state: Mutex::new(State {
                seq: 0,
                keys: HashMap::new(),
                indicator_keys: Vec::new(),
                current: BTreeMap::new(),
                history: VecDeque::new(),
                history_bytes: 0,
                known,
                feeds,
                feed_dirty: HashSet::new(),
                feed_flushed: None,
                dead: DeadSummary::default(),
            }),
            tx,
        });
        {
            let engine = hub.shared.engine.read();
            let ids: Vec<String> = engine.ids().map(str::to_owned).collect();
            let scopes = engine.scopes().to_vec();
            let mut st = hub.state.lock();
            for id in &ids {
                for scope in &scopes {
                    for w in Window::ALL {
                        let segments = vec![id.clone(), w.as_str().to_owned(), scope.clone()];
                        let key = st.intern(Family::Indicator, segments, scope.clone());
                        st.indicator_keys.push(key);
                    }
                }
            }
        }
        hub.advance(&[], Pass::Full, Utc::now(), false);
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
    pub fn with_known<T>(&self, f: impl FnOnce(&Known) -> T) -> T {
        f(&self.state.lock().known)
    }

    /// Every current item that `wanted` accepts, in key order, and the
    /// `seq` they are current at.
    pub fn snapshot(&self, mut wanted: impl FnMut(&KeyInfo) -> bool) -> (u64, Vec<Item>) {
        let st = self.state.lock();
        let items = st
            .current
            .values()
            .filter(|c| wanted(&c.item.key))
            .map(|c| c.item.clone())
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

    /// Recompute what `commits` (or the clock) may have changed and publish
    /// the changes as one step.
    fn advance(&self, commits: &[Arc<Committed>], pass: Pass, now: DateTime<Utc>, publish: bool) {
        let mut devices: HashSet<(DeviceClass, String)> = HashSet::new();
        let mut feed: Vec<(String, DateTime<Utc>, Arc<str>)> = Vec::new();
        for c in commits {
            for e in &c.events {
                if let (Some(class), Some(id)) = (class_of(e.source), &e.device) {
                    devices.insert((class, id.clone()));
                }
                let scope = e.village.clone().unwrap_or_else(|| COMMUNE.to_owned());
                feed.push((scope, e.received_at, feed_entry(e)));
            }
            for d in &c.dead {
                if let (Some(class), Some(id)) = (d.source.and_then(class_of), &d.device) {
                    devices.insert((class, id.clone()));
                }
            }
        }

        let candidates = self.compute(commits, &devices, pass, now);
        let live = self.limits();
        let mut st = self.state.lock();
        let mut changed = Vec::new();
        for cand in candidates {
            let (key, updated_at, fp) = match &cand {
                Candidate::Indicator(key, v) => {
                    (Arc::clone(key), v.updated_at, indicator_fingerprint(v))
                }
                Candidate::Device(d) => {
                    let scope = d.village.clone().unwrap_or_else(|| COMMUNE.to_owned());
                    let segments = vec![d.class.as_str().to_owned(), d.id.clone()];
                    let key = st.intern(Family::Device, segments, scope);
                    (key, d.last_seen, device_fingerprint(d))
                }
            };
            if st.current.get(&key.id).is_some_and(|c| c.fingerprint == fp) {
                continue;
            }
            if key.family == Family::Device {
                st.known.devices.insert(key.segments[1].clone());
            }
            let json = match &cand {
                Candidate::Indicator(_, v) => item_json(&key, updated_at, v),
                Candidate::Device(d) => item_json(&key, updated_at, d),
            };
            let item = Item {
                key: Arc::clone(&key),
                json,
            };
            st.current.insert(
                key.id,
                Current {
                    item: item.clone(),
                    fingerprint: fp,
                },
            );
            changed.push(item);
        }

        // Feeds: every scope on the first pass; then the touched ones, at
        // most every FEED_INTERVAL (a feed item is the whole list, so
        // rebuilding it for every commit would cost more than the rest of
        // the step); the clock tick publishes what is left.
        for (scope, at, entry) in feed {
            let Some(q) = st.feeds.get_mut(&scope) else {
                continue;
            };
            q.push_front((at, entry));
            q.truncate(live.feed_len);
            st.feed_dirty.insert(scope);
        }
        let due = !publish
            || pass != Pass::Commits
            || st.feed_flushed.is_none_or(|t| t.elapsed() >= FEED_INTERVAL);
        if due {
            let mut feed_scopes: Vec<String> = if publish {
                st.feed_dirty.drain().collect()
            } else {
                st.feed_dirty.clear();
                st.feeds.keys().cloned().collect()
            };
            if !feed_scopes.is_empty() {
                st.feed_flushed = Some(std::time::Instant::now());
            }
            feed_scopes.sort();
            for scope in feed_scopes {
                let item = st.feed_item(&scope);
                st.current.insert(
                    item.key.id,
                    Current {
                        item: item.clone(),
                        fingerprint: 0,
                    },
                );
                changed.push(item);
            }
        }

        // Dead letters.
        let notes: Vec<&DeadNote> = commits.iter().flat_map(|c| &c.dead).collect();
        if !notes.is_empty() || !publish {
            for n in &notes {
                st.dead.since_start += 1;
                *st.dead.by_reason.entry(n.reason).or_insert(0) += 1;
            }
            if let Some(last) = notes.last() {
                st.dead.last = Some((*last).clone());
            }
            let key = st.intern(Family::DeadLetters, Vec::new(), COMMUNE.to_owned());
            let updated_at = st.dead.last.as_ref().map(|d| d.received_at);
            let item = Item {
                json: item_json(&key, updated_at, &st.dead),
                key: Arc::clone(&key),
            };
            st.current.insert(
                key.id,
                Current {
                    item: item.clone(),
                    fingerprint: 0,
                },
            );
            changed.push(item);
        }

        if !publish || changed.is_empty() {
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

    /// Compute the candidates of a pass: the indicator values and the
    /// devices it may have changed.
    fn compute(
        &self,
        commits: &[Arc<Committed>],
        devices: &HashSet<(DeviceClass, String)>,
        pass: Pass,
        now: DateTime<Utc>,
    ) -> Vec<Candidate> {
        let view = self.shared.view(now);
        let (engine, tracker) = (view.engine(), view.devices());
        let availability = |class, village: Option<&str>| view.availability(class, village);
        let views: Vec<DeviceView> = if pass == Pass::Commits {
            let mut touched: Vec<&(DeviceClass, String)> = devices.iter().collect();
            touched.sort();
            touched
                .into_iter()
                .map(|(class, id)| tracker.view(*class, id, now))
                .collect()
        } else {
            tracker.list(now)
        };
        let frames = Window::ALL.map(|w| engine.frame(w, now));
        let nscopes = engine.scopes().len();
        let all_scopes = |specs: &[usize]| -> Vec<(usize, usize)> {
            specs
                .iter()
                .flat_map(|&si| (0..nscopes).map(move |s| (si, s)))
                .collect()
        };
        // (indicator, scope) pairs per window: today, 24h, month.
        let pairs: [Vec<(usize, usize)>; 3] = match pass {
            Pass::Full => {
                let all: Vec<usize> = (0..engine.spec_count()).collect();
                let every = all_scopes(&all);
                [every.clone(), every.clone(), every]
            }
            Pass::Commits => {
                let mut touched = Touched::default();
                for c in commits {
                    touched.counters.extend(&c.touched.counters);
                    touched.latest.extend(&c.touched.latest);
                    touched.fresh.extend(&c.touched.fresh);
                }
                let classes: Vec<(DeviceClass, Option<usize>)> = views
                    .iter()
                    .filter(|d| d.registered)
                    .map(|d| {
                        let village = d.village.as_deref().and_then(|v| engine.scope_index(v));
                        (d.class, village)
                    })
                    .collect();
                let affected = engine.affected(&touched, &classes);
                [affected.clone(), affected.clone(), affected]
            }
            Pass::Tick => {
                let clocked = all_scopes(&engine.clock_driven());
                let mut pairs = [clocked.clone(), clocked.clone(), clocked];
                let all: Vec<usize> = (0..engine.spec_count()).collect();
                let mut clock = self.clock.lock();
                let minute = now.timestamp().div_euclid(60);
                if minute != clock.minute {
                    // The 24h window slides a minute bucket.
                    clock.minute = minute;
                    pairs[1] = all_scopes(&all);
                }
                if clock.today_from != Some(frames[0].from) {
                    clock.today_from = Some(frames[0].from);
                    pairs[0] = all_scopes(&all);
                }
                if clock.month_from != Some(frames[2].from) {
                    clock.month_from = Some(frames[2].from);
                    pairs[2] = all_scopes(&all);
                }
                pairs
            }
        };
        let mut out = Vec::new();
        let st = self.state.lock();
        for (wi, frame) in frames.iter().enumerate() {
            for &(si, scope) in &pairs[wi] {
                let Some(key) = st.indicator_keys.get((si * nscopes + scope) * 3 + wi) else {
                    continue;
                };
                let v = engine.value_at(si, scope, frame, now, &availability);
                out.push(Candidate::Indicator(Arc::clone(key), v));
            }
        }
        drop(st);
        out.extend(views.into_iter().map(Candidate::Device));
        out
    }
}

impl State {
    fn intern(&mut self, family: Family, segments: Vec<String>, scope: String) -> Arc<KeyInfo> {
        let id = u32::try_from(self.keys.len()).unwrap_or(u32::MAX);
        let info = key_info(id, family, segments, scope);
        if let Some(k) = self.keys.get(&info.name) {
            return Arc::clone(k);
        }
        let info = Arc::new(info);
        self.keys.insert(info.name.clone(), Arc::clone(&info));
        info
    }

    fn feed_item(&mut self, scope: &str) -> Item {
        let key = self.intern(Family::Feed, vec![scope.to_owned()], scope.to_owned());
        let events = self.feeds.get(scope);
        let mut json = String::with_capacity(256);
        json.push_str("{\"key\":");
        push_json_str(&mut json, &key.name);
        json.push_str(",\"scope\":");
        push_json_str(&mut json, scope);
        json.push_str(",\"updated_at\":");
        // The newest event's receive time.
        match events.and_then(|q| q.iter().map(|(at, _)| *at).max()) {
            Some(at) => push_json_str(
                &mut json,
                &at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            ),
            None => json.push_str("null"),
        }
        json.push_str(",\"value\":{\"events\":[");
        for (i, (_, e)) in events.into_iter().flatten().enumerate() {
            if i > 0 {
                json.push(',');
            }
            json.push_str(e);
        }
        json.push_str("]}}");
        Item {
            key,
            json: json.into(),
        }
    }
}

fn push_json_str(out: &mut String, s: &str) {
    // Serializing a &str cannot fail.
    out.push_str(&serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into()));
}

#[derive(Serialize)]
struct ItemOut<'a, T: Serialize> {
    key: &'a str,
    scope: &'a str,
    updated_at: Option<DateTime<Utc>>,
    value: &'a T,
}

fn item_json<T: Serialize>(
    key: &KeyInfo,
    updated_at: Option<DateTime<Utc>>,
    value: &T,
) -> Arc<str> {
    let out = ItemOut {
        key: &key.name,
        scope: &key.scope,
        updated_at,
        value,
    };
    match serde_json::to_string(&out) {
        Ok(s) => s.into(),
        Err(e) => {
            tracing::error!(key = key.name, error = %e, "live item could not be serialized");
            format!(
                "{{\"key\":{},\"scope\":null,\"updated_at\":null,\"value\":null}}",
                serde_json::to_string(&key.name).unwrap_or_default()
            )
            .into()
        }
    }
}

#[derive(Serialize)]
struct FeedEntry<'a> {
    /// The event's dedup key: unique per event, stable across restarts.
    id: &'a str,
    source: &'a str,
    kind: &'a str,
    device: Option<&'a str>,
    village: Option<&'a str>,
    ts: DateTime<Utc>,
    received_at: DateTime<Utc>,
    attrs: &'a serde_json::Map<String, serde_json::Value>,
}

fn feed_entry(e: &Event) -> Arc<str> {
    let entry = FeedEntry {
        id: &e.dedup_key,
        source: e.source.as_str(),
        kind: &e.kind,
        device: e.device.as_deref(),
        village: e.village.as_deref(),
        ts: e.ts,
        received_at: e.received_at,
        attrs: &e.attrs,
    };
    serde_json::to_string(&entry)
        .unwrap_or_else(|_| "{}".into())
        .into()
}

fn indicator_fingerprint(v: &IndicatorValue) -> u64 {
    let mut h = DefaultHasher::new();
    // A freshness value is an age: it changes every instant. Its status
    // and the time of the data behind it are what changes the picture.
    if v.kind != IndicatorKind::Freshness {
        v.value.map(f64::to_bits).hash(&mut h);
    }
    v.numerator.map(f64::to_bits).hash(&mut h);
    v.denominator.map(f64::to_bits).hash(&mut h);
    (v.status as u8).hash(&mut h);
    // The 24h window's bounds move every instant; its value moves when a
    // minute bucket leaves it, which the value itself shows.
    if v.window != Window::Last24h {
        v.from.hash(&mut h);
        v.to.hash(&mut h);
    }
    v.period.hash(&mut h);
    // Availability is recomputed at every look: its updated_at is "now".
    if v.kind != IndicatorKind::Availability {
        v.updated_at.hash(&mut h);
    }
    h.finish()
}

fn device_fingerprint(d: &DeviceView) -> u64 {
    let mut h = DefaultHasher::new();
    d.state.as_str().hash(&mut h);
    d.reported_state.as_str().hash(&mut h);
    d.stale.hash(&mut h);
    d.last_seen.hash(&mut h);
    d.detail.hash(&mut h);
    d.registered.hash(&mut h);
    h.finish()
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
        let since = last_step.elapsed();
        if !pending.is_empty() && since < min_step {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(min_step - since) => {}
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
            hub.advance(&pending, pass, Utc::now(), true);
            continue;
        }
        // Clock and full passes are larger: keep them off the I/O threads.
        let hub2 = Arc::clone(&hub);
        let r = tokio::task::spawn_blocking(move || {
            hub2.advance(&pending, pass, Utc::now(), true);
        })
        .await;
        if let Err(e) = r {
            tracing::error!(error = %e, "live hub step failed");
        }
    }
}
