//! One WebSocket connection's state machine, without I/O: authentication,
//! connection slots, subscriptions, resume, rate limits and heartbeats.
//!
//! Its inputs are what the socket read ([`Incoming`]), the hub's steps
//! ([`Session::on_steps`], [`Session::on_lagged`]), the clock
//! ([`Session::on_tick`], due at [`Session::next_wake`]) and shutdown; its
//! outputs ([`Out`], taken with [`Session::poll`]) are the frames to send and
//! the decision to close. [`super::conn`] is the socket glue around it.
//! Every frame is built in [`super::protocol`].

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::Utf8Bytes;
use chrono::Utc;
use prometheus_client::metrics::gauge::Gauge;

use super::hub::{Hub, Item, Step, MAX_SHARED_FRAMES};
use super::keys::{KeyInfo, Pattern};
use super::protocol::{
    error_frame, heartbeat_frame, hello_frame, item_frames, parse_command, pong_frame,
    resumed_frame, CloseWhy, Command, Items, Refusal, Resume, Unauthorized,
};
use crate::auth::{AuthError, Authenticator, Principal};
use crate::config::Live;
use crate::metrics::Metrics;

/// Commands refused for rate in a row before the connection is closed.
pub const MAX_STRIKES: u32 = 20;
/// Patterns per subscription.
pub const MAX_PATTERNS: usize = 64;

/// What a session needs from the hub (the hub implements it; tests use a
/// small fake).
pub trait Source {
    /// This run's epoch.
    fn epoch(&self) -> &str;
    /// The newest `seq`.
    fn seq(&self) -> u64;
    /// The stream limits.
    fn limits(&self) -> &Live;
    /// The metrics.
    fn metrics(&self) -> &Metrics;
    /// Check a subscription's patterns and villages against what exists;
    /// the error is the reason, in Vietnamese.
    fn patterns(
        &self,
        keys: &[String],
        villages: Option<&[String]>,
    ) -> Result<Vec<Pattern>, String>;
    /// Every current item `wanted` accepts, and the `seq` it is current at.
    fn snapshot(&self, wanted: &mut dyn FnMut(&KeyInfo) -> bool) -> (u64, Vec<Item>);
    /// The steps after `since` (with the newest `seq`), or `None`: resync.
    fn resume(&self, epoch: &str, since: u64) -> Option<(u64, Vec<Arc<Step>>)>;
}

impl Source for Hub {
    fn epoch(&self) -> &str {
        Hub::epoch(self)
    }
    fn seq(&self) -> u64 {
        Hub::seq(self)
    }
    fn limits(&self) -> &Live {
        Hub::limits(self)
    }
    fn metrics(&self) -> &Metrics {
        Hub::metrics(self)
    }
    fn patterns(
        &self,
        keys: &[String],
        villages: Option<&[String]>,
    ) -> Result<Vec<Pattern>, String> {
        self.with_known(|known| {
            let patterns = keys
                .iter()
                .map(|k| Pattern::parse(k, known))
                .collect::<Result<Vec<_>, String>>()?;
            if let Some(bad) = villages
                .into_iter()
                .flatten()
                .find(|v| !known.scopes.contains(*v))
            {
                return Err(format!("Khóa không tồn tại: thôn/bản `{bad}` không có."));
            }
            Ok(patterns)
        })
    }
    fn snapshot(&self, wanted: &mut dyn FnMut(&KeyInfo) -> bool) -> (u64, Vec<Item>) {
        Hub::snapshot(self, wanted)
    }
    fn resume(&self, epoch: &str, since: u64) -> Option<(u64, Vec<Arc<Step>>)> {
        Hub::resume(self, epoch, since)
    }
}

/// The connection slots: `live.max_connections` for authenticated
/// connections and a separate `live.max_unauthenticated` for connections
/// still waiting for their `auth` frame, so that sockets without a token
/// can never take an authenticated screen's place.
#[derive(Debug)]
pub struct Slots {
    open: AtomicUsize,
    waiting: AtomicUsize,
    max_open: usize,
    max_waiting: usize,
    open_gauge: Gauge,
    waiting_gauge: Gauge,
}

/// Which budget a [`Slot`] is taken from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotKind {
    /// An authenticated connection.
    Open,
    /// A connection waiting for `auth`.
    Waiting,
}

/// A taken slot; released on drop.
#[derive(Debug)]
pub struct Slot {
    slots: Arc<Slots>,
    kind: SlotKind,
}

impl Slots {
    /// Slots with `limits`' budgets, counted in `metrics`
    /// (`ioc_live_connections`, `ioc_live_unauthenticated`).
    pub fn new(limits: &Live, metrics: &Metrics) -> Arc<Slots> {
        Arc::new(Slots {
            open: AtomicUsize::new(0),
            waiting: AtomicUsize::new(0),
            max_open: limits.max_connections,
            max_waiting: limits.max_unauthenticated,
            open_gauge: metrics.live_connections.clone(),
            waiting_gauge: metrics.live_unauthenticated.clone(),
        })
    }

    fn parts(&self, kind: SlotKind) -> (&AtomicUsize, usize, &Gauge) {
        match kind {
            SlotKind::Open => (&self.open, self.max_open, &self.open_gauge),
            SlotKind::Waiting => (&self.waiting, self.max_waiting, &self.waiting_gauge),
        }
    }

    /// Take a slot of `kind`, unless its budget is spent.
    pub fn take(self: &Arc<Self>, kind: SlotKind) -> Option<Slot> {
        let (count, max, gauge) = self.parts(kind);
        let mut n = count.load(Ordering::Acquire);
        loop {
            if n >= max {
                return None;
            }
            match count.compare_exchange_weak(n, n + 1, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => {
                    gauge.inc();
                    return Some(Slot {
                        slots: Arc::clone(self),
                        kind,
                    });
                }
                Err(now) => n = now,
            }
        }
    }

    /// Slots of `kind` in use.
    pub fn used(&self, kind: SlotKind) -> usize {
        self.parts(kind).0.load(Ordering::Acquire)
    }
}

impl Slot {
    /// The budget this slot is from.
    pub fn kind(&self) -> SlotKind {
        self.kind
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let (count, _, gauge) = self.slots.parts(self.kind);
        count.fetch_sub(1, Ordering::AcqRel);
        gauge.dec();
    }
}

/// A token, kept to check it again at every heartbeat. Its `Debug` never
/// shows it.
#[derive(Clone, PartialEq, Eq)]
struct Secret(String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(…)")
    }
}

/// What the socket delivered.
#[derive(Debug, Clone, Copy)]
pub enum Incoming<'a> {
    /// A text frame.
    Text(&'a str),
    /// A binary frame.
    Binary,
    /// A ping or pong.
    Control,
    /// The peer closed (close frame or end of stream).
    Closed,
    /// Reading failed.
    Fault(ReadFault),
}

/// Why reading failed, as the socket glue classified the error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadFault {
    /// A frame or message over the WebSocket layer's size limit.
    TooBig,
    /// Anything else (protocol violation, reset): nothing more to say.
    Broken,
}

/// What the socket glue must do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Out {
    /// Send a text frame.
    Text(Utf8Bytes),
    /// Send a WebSocket ping.
    Ping,
    /// Attach to the hub's ring of steps, then call
    /// [`Session::on_attached`] with the `seq` it was attached at.
    Attach,
    /// Send a close frame, wait briefly for the peer's, and end.
    Close(CloseWhy),
    /// End without a close frame (the peer is gone).
    Stop,
}

/// A token bucket: `rate` per second, at most `capacity`.
#[derive(Debug, Clone)]
struct Bucket {
    level: f64,
    capacity: f64,
    rate: f64,
    at: Instant,
}

impl Bucket {
    fn full(capacity: f64, rate: f64, now: Instant) -> Bucket {
        Bucket {
            level: capacity,
            capacity,
            rate,
            at: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = now.max(self.at);
        self.level = (self.level + elapsed * self.rate).min(self.capacity);
    }

    /// Take `cost` if that much is there.
    fn take(&mut self, cost: f64, now: Instant) -> bool {
        self.refill(now);
        if self.level >= cost {
            self.level -= cost;
            true
        } else {
            false
        }
    }

    /// Whether anything is left (a cost not known in advance may then be
    /// charged, going into debt).
    fn positive(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.level > 0.0
    }

    fn charge(&mut self, cost: f64) {
        self.level -= cost;
    }

    /// Time until the level is above zero again.
    fn wait(&self) -> Duration {
        if self.level > 0.0 || self.rate <= 0.0 {
            return Duration::ZERO;
        }
        Duration::from_secs_f64((-self.level / self.rate) + 0.001)
    }
}

/// One subscription.
#[derive(Debug)]
struct Sub {
    id: String,
    /// The patterns as the client wrote them (for the signature).
    keys: Vec<String>,
    patterns: Vec<Pattern>,
    villages: Option<HashSet<String>>,
    /// Items of steps up to this seq are already in the client's snapshot.
    since: u64,
    /// Per key id: 0 unknown, 1 no, 2 yes.
    cache: Vec<u8>,
}

impl Sub {
    fn matches(&self, key: &KeyInfo) -> bool {
        self.villages
            .as_ref()
            .is_none_or(|v| v.contains(&key.scope))
            && self.patterns.iter().any(|p| p.matches(key))
    }

    fn accepts(&mut self, key: &KeyInfo) -> bool {
        let i = key.id as usize;
        if i >= self.cache.len() {
            self.cache.resize(i + 1, 0);
        }
        if self.cache[i] == 0 {
            self.cache[i] = if self.matches(key) { 2 } else { 1 };
        }
        self.cache[i] == 2
    }
}

/// A resume in progress: the missed steps still to send, one frame group
/// at a time (so a long history is never built in memory at once).
#[derive(Debug)]
struct Resuming {
    sub: Sub,
    steps: VecDeque<Arc<Step>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Opened without a token: waiting for `auth` until the deadline.
    Authenticating { deadline: Instant },
    /// Authenticated; waiting for the glue to attach to the hub.
    Attaching,
    /// Streaming.
    Open,
    /// Closed: nothing more in or out.
    Closed,
}

/// One connection's state (see the module docs).
pub struct Session<S: Source> {
    source: Arc<S>,
    auth: Arc<dyn Authenticator>,
    slots: Arc<Slots>,
    slot: Option<Slot>,
    phase: Phase,
    /// The token the connection authenticated with, checked again at
    /// every heartbeat.
    token: Option<Secret>,
    subs: Vec<Sub>,
    /// Hash of the subscriptions' keys and village filters: connections
    /// with equal signatures get equal update frames.
    signature: u64,
    commands: Bucket,
    snapshots: Bucket,
    strikes: u32,
    heartbeat: Duration,
    next_beat: Instant,
    last_heard: Instant,
    out: VecDeque<Out>,
    resuming: Option<Resuming>,
}

impl<S: Source> fmt::Debug for Session<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("phase", &self.phase)
            .field("subs", &self.subs.len())
            .field("strikes", &self.strikes)
            .finish_non_exhaustive()
    }
}

impl<S: Source> Session<S> {
    /// A session for a connection whose handshake named `principal`
    /// (`Err(Missing)` when it carried no token: the first frame must then
    /// be `auth`), with the handshake's `token`.
    pub fn new(
        source: Arc<S>,
        auth: Arc<dyn Authenticator>,
        slots: Arc<Slots>,
        principal: Result<Principal, AuthError>,
        token: Option<String>,
        now: Instant,
    ) -> Session<S> {
        let limits = source.limits().clone();
        let heartbeat = Duration::from_secs(limits.heartbeat_s.max(1));
        let rate = f64::from(limits.commands_per_second);
        let snap_rate = limits.snapshot_bytes_per_second as f64;
        let snap_burst = limits.snapshot_burst_bytes as f64;
        let mut s = Session {
            source,
            auth,
            slots,
            slot: None,
            phase: Phase::Closed,
            token: token.map(Secret),
            subs: Vec::new(),
            signature: 0,
            commands: Bucket::full(rate, rate, now),
            snapshots: Bucket::full(snap_burst, snap_rate, now),
            strikes: 0,
            heartbeat,
            next_beat: now + heartbeat,
            last_heard: now,
            out: VecDeque::new(),
            resuming: None,
        };
        match principal {
            Ok(_) => s.admit(),
            Err(AuthError::Missing) => match s.slots.take(SlotKind::Waiting) {
                Some(slot) => {
                    s.slot = Some(slot);
                    let wait = Duration::from_secs(limits.auth_timeout_s.max(1));
                    s.phase = Phase::Authenticating {
                        deadline: now + wait,
                    };
                }
                None => s.refuse_and_close(&Refusal::TooManyConnections, CloseWhy::TryAgain),
            },
            Err(AuthError::Invalid) => s.refuse_and_close(
                &Refusal::Unauthorized(Unauthorized::Invalid),
                CloseWhy::Unauthorized,
            ),
            Err(AuthError::Unavailable) => {
                s.refuse_and_close(&Refusal::Unavailable, CloseWhy::TryAgain)
            }
        }
        s
    }

    /// The next output, if any. Call until `None` after every input: a
    /// long resume is produced here a step at a time.
    pub fn poll(&mut self) -> Option<Out> {
        if let Some(o) = self.out.pop_front() {
            return Some(o);
        }
        self.continue_resume();
        self.out.pop_front()
    }

    /// When [`Session::on_tick`] is next due.
    pub fn next_wake(&self) -> Instant {
        match self.phase {
            Phase::Authenticating { deadline } => deadline,
            Phase::Open => self.next_beat,
            Phase::Attaching | Phase::Closed => self.next_beat + Duration::from_secs(86_400),
        }
    }

    /// Whether the session ended (the glue stops after the last output).
    pub fn closed(&self) -> bool {
        self.phase == Phase::Closed
    }

    /// The slot the connection holds (none before admission or after a
    /// refusal).
    pub fn slot(&self) -> Option<SlotKind> {
        self.slot.as_ref().map(Slot::kind)
    }

    /// The glue attached to the hub's ring at `seq`: greet the client.
    pub fn on_attached(&mut self, seq: u64, now: Instant) {
        if self.phase != Phase::Attaching {
            return;
        }
        self.phase = Phase::Open;
        self.next_beat = now + self.heartbeat;
        self.last_heard = now;
        let s = &self.source;
        let hello = hello_frame(s.epoch(), seq, Utc::now(), s.limits());
        self.text(hello);
    }

    /// Something arrived on the socket.
    pub fn on_frame(&mut self, incoming: Incoming<'_>, now: Instant) {
        match self.phase {
            Phase::Closed | Phase::Attaching => {}
            Phase::Authenticating { .. } => self.authenticate(incoming),
            Phase::Open => {
                self.last_heard = now;
                match incoming {
                    Incoming::Text(text) => self.command(text, now),
                    Incoming::Binary => self.refuse(&Refusal::Binary, None),
                    Incoming::Control => {}
                    Incoming::Closed | Incoming::Fault(ReadFault::Broken) => self.stop(),
                    Incoming::Fault(ReadFault::TooBig) => self.close(CloseWhy::TooBig),
                }
            }
        }
    }

    /// The hub published `steps` (in order, none missed).
    pub fn on_steps(&mut self, steps: &[Arc<Step>]) {
        if self.phase == Phase::Open {
            self.forward(steps);
        }
    }

    /// The hub's ring overtook this connection: resync every subscription.
    pub fn on_lagged(&mut self) {
        if self.phase != Phase::Open {
            return;
        }
        let mut subs = std::mem::take(&mut self.subs);
        for sub in &mut subs {
            self.snapshot(sub, true);
        }
        self.subs = subs;
    }

    /// The hub stopped.
    pub fn on_hub_closed(&mut self) {
        if self.phase != Phase::Closed {
            self.close(CloseWhy::Stopping);
        }
    }

    /// The server is stopping.
    pub fn on_shutdown(&mut self) {
        if self.phase != Phase::Closed {
            self.refuse(&Refusal::ShuttingDown, None);
            self.close(CloseWhy::Stopping);
        }
    }

    /// The clock reached [`Session::next_wake`] (or later).
    pub fn on_tick(&mut self, now: Instant) {
        match self.phase {
            Phase::Authenticating { deadline } if now >= deadline => self.refuse_and_close(
                &Refusal::Unauthorized(Unauthorized::Missing),
                CloseWhy::Unauthorized,
            ),
            Phase::Open if now >= self.next_beat => {
                while self.next_beat <= now {
                    self.next_beat += self.heartbeat;
                }
                self.beat(now);
            }
            _ => {}
        }
    }

    fn beat(&mut self, now: Instant) {
        // A token revoked or expired since the handshake ends the stream.
        if let Some(Secret(t)) = &self.token {
            if self.auth.authenticate(Some(t)) == Err(AuthError::Invalid) {
                return self.refuse_and_close(
                    &Refusal::Unauthorized(Unauthorized::Revoked),
                    CloseWhy::Unauthorized,
                );
            }
        }
        if now.saturating_duration_since(self.last_heard) > self.heartbeat * 3 {
            tracing::debug!("websocket peer silent for three heartbeats; closing");
            return self.close(CloseWhy::NoHeartbeat);
        }
        self.out.push_back(Out::Ping);
        let beat = heartbeat_frame(self.source.seq(), Utc::now());
        self.text(beat);
    }

    /// Take an authenticated slot and ask the glue to attach.
    fn admit(&mut self) {
        // Free the waiting slot first: it is of the other budget.
        self.slot = None;
        match self.slots.take(SlotKind::Open) {
            Some(slot) => {
                self.slot = Some(slot);
                self.phase = Phase::Attaching;
                self.out.push_back(Out::Attach);
            }
            None => self.refuse_and_close(&Refusal::TooManyConnections, CloseWhy::TryAgain),
        }
    }

    fn authenticate(&mut self, incoming: Incoming<'_>) {
        let text = match incoming {
            Incoming::Text(t) => t,
            Incoming::Control => return,
            Incoming::Closed | Incoming::Fault(ReadFault::Broken) => return self.stop(),
            Incoming::Fault(ReadFault::TooBig) => return self.close(CloseWhy::TooBig),
            Incoming::Binary => {
                return self.refuse_and_close(
                    &Refusal::Unauthorized(Unauthorized::Missing),
                    CloseWhy::Unauthorized,
                )
            }
        };
        let parsed = parse_command(text);
        tracing::trace!(
            command = parsed.as_ref().map_or("malformed", Command::name),
            bytes = text.len(),
            "websocket frame before auth"
        );
        let token = match parsed {
            Ok(Command::Auth { token }) => token,
            _ => {
                return self.refuse_and_close(
                    &Refusal::Unauthorized(Unauthorized::NotAuth),
                    CloseWhy::Unauthorized,
                )
            }
        };
        match self.auth.authenticate(Some(&token)) {
            Ok(p) => {
                tracing::debug!(user = p.name, "websocket authenticated by an auth frame");
                self.token = Some(Secret(token));
                self.admit();
            }
            Err(_) => self.refuse_and_close(
                &Refusal::Unauthorized(Unauthorized::Invalid),
                CloseWhy::Unauthorized,
            ),
        }
    }

    fn command(&mut self, text: &str, now: Instant) {
        if !self.commands.take(1.0, now) {
            self.strikes += 1;
            self.refuse(&Refusal::RateLimited, None);
            if self.strikes >= MAX_STRIKES {
                self.close(CloseWhy::RateLimited);
            }
            return;
        }
        // A command that is not refused for rate clears the strikes; a
        // subscribe refused for its snapshot bytes adds one.
        let strikes = std::mem::take(&mut self.strikes);
        let max = self.source.limits().max_command_bytes;
        if text.len() > max {
            let size = text.len();
            return self.refuse(&Refusal::CommandTooLarge { size, max }, None);
        }
        let cmd = match parse_command(text) {
            Ok(c) => c,
            Err(reason) => return self.refuse(&Refusal::Malformed(reason), None),
        };
        tracing::trace!(
            command = cmd.name(),
            bytes = text.len(),
            "websocket command"
        );
        match cmd {
            // Already authenticated: nothing to do.
            Command::Auth { .. } => {}
            Command::Ping { id } => {
                let pong = pong_frame(id.as_ref(), self.source.seq(), Utc::now());
                self.text(pong);
            }
            Command::Unsubscribe { id } => {
                self.subs.retain(|s| s.id != id);
                self.resign();
            }
            Command::Subscribe {
                id,
                keys,
                villages,
                resume,
            } => {
                if !self.subscribe(id, keys, villages, resume, now) {
                    self.strikes = strikes + 1;
                    if self.strikes >= MAX_STRIKES {
                        self.close(CloseWhy::RateLimited);
                    }
                }
            }
        }
    }

    fn subscribe(
        &mut self,
        id: String,
        keys: Vec<String>,
        villages: Option<Vec<String>>,
        resume: Option<Resume>,
        now: Instant,
    ) -> bool {
        if id.is_empty() || id.chars().count() > 64 {
            self.refuse(&Refusal::BadSubscriptionId, None);
            return true;
        }
        if keys.is_empty() || keys.len() > MAX_PATTERNS {
            let max = MAX_PATTERNS;
            self.refuse(&Refusal::KeyCount { max }, Some(&id));
            return true;
        }
        let replacing = self.subs.iter().any(|s| s.id == id);
        let max = self.source.limits().max_subscriptions;
        if !replacing && self.subs.len() >= max {
            self.refuse(&Refusal::TooManySubscriptions { max }, Some(&id));
            return true;
        }
        let patterns = match self.source.patterns(&keys, villages.as_deref()) {
            Ok(p) => p,
            Err(reason) => {
                self.refuse(&Refusal::UnknownKey(reason), Some(&id));
                return true;
            }
        };
        // A snapshot costs what it weighs: refused while this connection's
        // snapshot budget is in debt.
        if !self.snapshots.positive(now) {
            let retry_after_ms =
                u64::try_from(self.snapshots.wait().as_millis()).unwrap_or(u64::MAX);
            self.refuse(&Refusal::SnapshotRateLimited { retry_after_ms }, Some(&id));
            return false;
        }
        self.subs.retain(|s| s.id != id);
        let mut sub = Sub {
            id,
            keys,
            patterns,
            villages: villages.map(|v| v.into_iter().collect()),
            since: 0,
            cache: Vec::new(),
        };
        let asked = resume.is_some();
        let resumed = resume.and_then(|r| {
            self.source
                .resume(&r.epoch, r.seq)
                .map(|found| (r.seq, found))
        });
        match resumed {
            Some((from, (seq, steps))) => {
                sub.since = seq;
                let head = resumed_frame(&sub.id, from, seq);
                self.snapshots.charge(head.len() as f64);
                self.text(head);
                // The frames follow from poll(), a step at a time; the
                // subscription joins when they are all out.
                self.resuming = Some(Resuming {
                    sub,
                    steps: steps.into(),
                });
                self.continue_resume();
            }
            // Asked to resume but cannot: the snapshot replaces what it had.
            None => {
                let bytes = self.snapshot(&mut sub, asked);
                self.snapshots.charge(bytes as f64);
                self.subs.push(sub);
                self.resign();
            }
        }
        true
    }

    /// Queue the frames of the next resumed step that has matching items;
    /// when none is left, the subscription joins the others.
    fn continue_resume(&mut self) {
        let Some(r) = self.resuming.as_mut() else {
            return;
        };
        if self.phase != Phase::Open {
            self.resuming = None;
            return;
        }
        while let Some(step) = r.steps.pop_front() {
            let items: Vec<&str> = step
                .items
                .iter()
                .filter(|i| r.sub.accepts(&i.key))
                .map(|i| &*i.json)
                .collect();
            if items.is_empty() {
                continue;
            }
            let max = self.source.limits().max_frame_bytes;
            for f in item_frames(Items::Update, step.seq, step.at, &items, max) {
                self.snapshots.charge(f.len() as f64);
                self.out.push_back(Out::Text(Utf8Bytes::from(f)));
            }
            return;
        }
        if let Some(r) = self.resuming.take() {
            self.subs.retain(|s| s.id != r.sub.id);
            self.subs.push(r.sub);
            self.resign();
        }
    }

    /// Recompute the signature after the subscriptions changed.
    fn resign(&mut self) {
        use std::hash::{Hash, Hasher};
        let mut parts: Vec<(Vec<String>, Vec<String>)> = self
            .subs
            .iter()
            .map(|s| {
                let mut keys = s.keys.clone();
                keys.sort();
                let mut villages: Vec<String> = s.villages.iter().flatten().cloned().collect();
                villages.sort();
                (keys, villages)
            })
            .collect();
        parts.sort();
        let mut h = std::collections::hash_map::DefaultHasher::new();
        parts.hash(&mut h);
        self.signature = h.finish();
    }

    /// Queue a snapshot of `sub`; the bytes queued.
    fn snapshot(&mut self, sub: &mut Sub, resync: bool) -> usize {
        let (seq, items) = self.source.snapshot(&mut |k| sub.matches(k));
        sub.since = seq;
        if resync {
            self.source.metrics().live_resyncs.inc();
        }
        let texts: Vec<&str> = items.iter().map(|i| &*i.json).collect();
        let kind = Items::Snapshot {
            id: &sub.id,
            resync,
        };
        let max = self.source.limits().max_frame_bytes;
        let mut bytes = 0;
        for f in item_frames(kind, seq, Utc::now(), &texts, max) {
            bytes += f.len();
            self.out.push_back(Out::Text(Utf8Bytes::from(f)));
        }
        bytes
    }

    /// Queue the items of `steps` the subscriptions want, the latest value
    /// of each key winning, as one frame (paged when large). A connection
    /// that keeps up (one step, no fresh snapshot pending) shares the
    /// frames built for its signature by the first connection to ask.
    fn forward(&mut self, steps: &[Arc<Step>]) {
        if let [step] = steps {
            if self.subs.iter().all(|s| s.since < step.seq) {
                let sig = self.signature;
                let cached = step
                    .frames
                    .lock()
                    .iter()
                    .find(|(k, _)| *k == sig)
                    .map(|(_, f)| Arc::clone(f));
                let frames = match cached {
                    Some(f) => f,
                    None => {
                        let built: Arc<[Utf8Bytes]> = self
                            .update_frames(steps)
                            .into_iter()
                            .map(Utf8Bytes::from)
                            .collect();
                        let mut shared = step.frames.lock();
                        if shared.len() < MAX_SHARED_FRAMES {
                            shared.push((sig, Arc::clone(&built)));
                        }
                        built
                    }
                };
                self.out.extend(frames.iter().cloned().map(Out::Text));
                return;
            }
        }
        for f in self.update_frames(steps) {
            self.out.push_back(Out::Text(Utf8Bytes::from(f)));
        }
    }

    /// The update frames of `steps` for this connection's subscriptions.
    fn update_frames(&mut self, steps: &[Arc<Step>]) -> Vec<String> {
        let Some(last) = steps.last() else {
            return Vec::new();
        };
        // The latest item of each key wins; when an earlier one carried the
        // whole value (its static part changed), the winner goes whole too.
        let mut out: Vec<(&Item, bool)> = Vec::new();
        let mut index: HashMap<u32, usize> = HashMap::new();
        for step in steps {
            for item in &step.items {
                let wanted = self
                    .subs
                    .iter_mut()
                    .any(|s| step.seq > s.since && s.accepts(&item.key));
                if !wanted {
                    continue;
                }
                match index.get(&item.key.id) {
                    Some(&i) => out[i] = (item, out[i].1 || item.whole),
                    None => {
                        index.insert(item.key.id, out.len());
                        out.push((item, item.whole));
                    }
                }
            }
        }
        if out.is_empty() {
            return Vec::new();
        }
        let wholes: Vec<Option<Arc<str>>> = out
            .iter()
            .map(|(i, whole)| (*whole && !i.whole).then(|| i.whole_json()))
            .collect();
        let texts: Vec<&str> = out
            .iter()
            .zip(&wholes)
            .map(|((i, _), w)| w.as_deref().unwrap_or(&i.json))
            .collect();
        let max = self.source.limits().max_frame_bytes;
        item_frames(Items::Update, last.seq, last.at, &texts, max)
    }

    fn text(&mut self, frame: String) {
        self.out.push_back(Out::Text(Utf8Bytes::from(frame)));
    }

    fn refuse(&mut self, refusal: &Refusal, id: Option<&str>) {
        self.source.metrics().live_errors.inc();
        self.text(error_frame(refusal, id));
    }

    fn refuse_and_close(&mut self, refusal: &Refusal, why: CloseWhy) {
        self.refuse(refusal, None);
        self.close(why);
    }

    fn close(&mut self, why: CloseWhy) {
        self.end();
        self.out.push_back(Out::Close(why));
    }

    fn stop(&mut self) {
        self.end();
        self.out.push_back(Out::Stop);
    }

    fn end(&mut self) {
        self.phase = Phase::Closed;
        self.resuming = None;
    }
}

#[cfg(test)]
mod tests;
