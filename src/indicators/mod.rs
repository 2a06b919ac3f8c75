//! Live indicators, defined in config: counts, ratios, latest values,
//! availability and data freshness, per village and for the commune, over
//! the windows `today`, `24h` and `month`.
//!
//! Count and ratio indicators are sums over per-minute and per-hour buckets
//! ("rollups") keyed by counter and scope. The journal persists the rollups
//! in the same transaction as the events, so a restart reloads them instead
//! of replaying every event; the engine keeps the recent buckets in memory.

mod counter;
pub mod window;

pub use crate::vocab::{Op, Target};
pub use counter::{Counter, CounterKind, Matcher};
pub use window::{bounds, period_of, Period, Window};

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use crate::config::{Config, IndicatorKind, Measure, Regime, Site};
use crate::devices::Availability;
use crate::model::{DeviceClass, Event, Source};

/// Scope index 0 is always the whole commune.
pub const COMMUNE: &str = "commune";

/// Minute buckets are kept in memory this long (the 24h window plus slack).
pub const MINUTES_KEPT: i64 = 26 * 60;
/// Hour buckets are kept in memory this long (a report period plus slack).
pub const HOURS_KEPT: i64 = 70 * 24;

/// How an indicator is computed, with config names resolved to indexes.
#[derive(Debug, Clone)]
enum SpecKind {
    Count(usize),
    Ratio(usize, usize),
    Latest {
        matcher: Matcher,
        signature: String,
        field: String,
    },
    Availability(DeviceClass),
    Freshness(Source),
    DeadLetters(usize),
}

#[derive(Debug, Clone)]
struct Spec {
    id: String,
    def_kind: IndicatorKind,
    name: String,
    unit: String,
    target: Option<Target>,
    kind: SpecKind,
}

/// Status of an indicator value against its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// The value meets the target (or there is no target).
    Met,
    /// The value misses the target.
    NotMet,
    /// There is no data to compute a value from.
    NoData,
}

/// One indicator value, as answered by `GET /api/indicators`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct IndicatorValue {
    /// Indicator id.
    pub id: String,
    /// Vietnamese name.
    pub name: String,
    /// How it is computed.
    pub kind: IndicatorKind,
    /// Window.
    pub window: Window,
    /// `commune` or a village id.
    pub scope: String,
    /// The value; `null` when there is no data.
    pub value: Option<f64>,
    /// Unit.
    pub unit: String,
    /// Numerator (ratio) or number of devices up (availability).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub numerator: Option<f64>,
    /// Denominator (ratio) or count of devices (availability).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub denominator: Option<f64>,
    /// Target, if any.
    pub target: Option<Target>,
    /// Status against the target.
    pub status: Status,
    /// Window start (inclusive).
    pub from: DateTime<Utc>,
    /// Window end (exclusive).
    pub to: DateTime<Utc>,
    /// Report period label for the `month` window.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub period: Option<String>,
    /// When the data behind the value last changed.
    pub updated_at: Option<DateTime<Utc>>,
}

/// Buckets of one counter in one scope.
#[derive(Debug, Default, Clone)]
struct Series {
    minutes: BTreeMap<i64, f64>,
    hours: BTreeMap<i64, f64>,
}

/// Changes produced by one committed batch, persisted by the journal and
/// then applied to the engine.
#[derive(Debug, Default, Clone)]
pub struct BatchDelta {
    /// (counter, scope, minute since epoch) → amount.
    pub rollups: HashMap<(usize, usize, i64), f64>,
    /// (indicator, scope) → latest reading (event time, value).
    pub latest: HashMap<(usize, usize), (DateTime<Utc>, f64)>,
    /// (source, scope) → newest event time.
    pub fresh: HashMap<(Source, usize), DateTime<Utc>>,
}

impl BatchDelta {
    /// Whether the batch changed nothing.
    pub fn is_empty(&self) -> bool {
        self.rollups.is_empty() && self.latest.is_empty() && self.fresh.is_empty()
    }

    /// What the batch touched, without amounts (for the live stream).
    pub fn touched(&self) -> Touched {
        let mut counters: Vec<(usize, usize)> =
            self.rollups.keys().map(|&(c, s, _)| (c, s)).collect();
        counters.sort_unstable();
        counters.dedup();
        Touched {
            counters,
            latest: self.latest.keys().copied().collect(),
            fresh: self.fresh.keys().copied().collect(),
        }
    }
}

/// The (counter, scope), (indicator, scope) and (source, scope) pairs a
/// committed batch changed.
#[derive(Debug, Default, Clone)]
pub struct Touched {
    /// (counter, scope).
    pub counters: Vec<(usize, usize)>,
    /// (indicator, scope) of `latest` indicators.
    pub latest: Vec<(usize, usize)>,
    /// (source, scope) of freshness.
    pub fresh: Vec<(Source, usize)>,
}

/// Which scopes to answer for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScopeSel<'a> {
    /// The commune only.
    Commune,
    /// One village.
    Village(&'a str),
    /// The commune and every village.
    All,
}

/// Device availability seen by the indicators, for a class in a scope
/// (`None` = commune).
pub type AvailabilityFn<'a> = &'a dyn Fn(DeviceClass, Option<&str>) -> Availability;

/// The indicator engine.
#[derive(Debug)]
pub struct Engine {
    regime: Regime,
    specs: Vec<Spec>,
    counters: Vec<Counter>,
    scopes: Vec<String>,
    scope_index: HashMap<String, usize>,
    series: HashMap<(usize, usize), Series>,
    changed: HashMap<(usize, usize), DateTime<Utc>>,
    latest: HashMap<(usize, usize), (DateTime<Utc>, f64)>,
    fresh: HashMap<(Source, usize), DateTime<Utc>>,
    dead_counter: usize,
    /// Which counters and `latest` indicators an event can match, by its
    /// device: filters limited to devices are indexed by device id, the
    /// others are checked for every event.
    by_device: DeviceIndex,
}

/// Counters and `latest` indicators (indexes) whose filters name devices,
/// by device id; and the ones that do not.
#[derive(Debug, Default)]
struct DeviceIndex {
    counters: HashMap<String, Vec<usize>>,
    counters_any: Vec<usize>,
    latest: HashMap<String, Vec<usize>>,
    latest_any: Vec<usize>,
}

impl DeviceIndex {
    fn build(counters: &[Counter], specs: &[Spec]) -> DeviceIndex {
        /// File filter `i` under each device it names, or under "any".
        fn file(any: &mut Vec<usize>, by: &mut HashMap<String, Vec<usize>>, i: usize, m: &Matcher) {
            if m.devices().is_empty() {
                any.push(i);
            }
            let mut named = m.devices().to_vec();
            named.dedup();
            for d in named {
                by.entry(d).or_default().push(i);
            }
        }
        let mut ix = DeviceIndex::default();
        for (ci, c) in counters.iter().enumerate() {
            if let CounterKind::Events(m) = &c.kind {
                file(&mut ix.counters_any, &mut ix.counters, ci, m);
            }
        }
        for (si, spec) in specs.iter().enumerate() {
            if let SpecKind::Latest { matcher, .. } = &spec.kind {
                file(&mut ix.latest_any, &mut ix.latest, si, matcher);
            }
        }
        ix
    }

    /// Counters an event from `device` may match.
    fn counters<'a>(&'a self, device: Option<&str>) -> impl Iterator<Item = usize> + 'a {
        let named = device.and_then(|d| self.counters.get(d));
        self.counters_any
            .iter()
            .chain(named.into_iter().flatten())
            .copied()
    }

    /// `latest` indicators an event from `device` may match.
    fn latest<'a>(&'a self, device: Option<&str>) -> impl Iterator<Item = usize> + 'a {
        let named = device.and_then(|d| self.latest.get(d));
        self.latest_any
            .iter()
            .chain(named.into_iter().flatten())
            .copied()
    }
}

impl Engine {
    /// Compile the typed indicators of a loaded config (`config.site`,
    /// built and checked by `config::load`: nothing is parsed or dropped
    /// here).
    pub fn new(config: &Config) -> Engine {
        debug_assert_eq!(
            config.site.indicators.len(),
            config.indicators.len(),
            "a Config not made by config::load has no typed site"
        );
        Engine::for_site(&config.site)
    }

    /// Compile the indicators of one site (its villages are the scopes
    /// after `commune`).
    pub fn for_site(site: &Site) -> Engine {
        let mut counters: Vec<Counter> = vec![Counter::dead_letters()];
        let mut intern = |c: Counter| -> usize {
            if let Some(i) = counters.iter().position(|x| x.key == c.key) {
                i
            } else {
                counters.push(c);
                counters.len() - 1
            }
        };
        let mut specs = Vec::new();
        for def in &site.indicators {
            specs.push(Spec {
                id: def.id.clone(),
                def_kind: def.kind(),
                name: def.name.clone(),
                unit: def.unit.clone(),
                target: def.target,
                kind: compile(&def.measure, &mut intern),
            });
        }
        let by_device = DeviceIndex::build(&counters, &specs);
        let mut scopes = vec![COMMUNE.to_string()];
        scopes.extend(site.villages.iter().cloned());
        let scope_index = scopes
            .iter()
            .enumerate()
            .map(|(i, s)| (s.clone(), i))
            .collect();
        Engine {
            regime: site.regime,
            specs,
            counters,
            scopes,
            scope_index,
            series: HashMap::new(),
            changed: HashMap::new(),
            latest: HashMap::new(),
            fresh: HashMap::new(),
            dead_counter: 0,
            by_device,
        }
    }

    /// All counters (index = position).
    pub fn counters(&self) -> &[Counter] {
        &self.counters
    }

    /// Scope names (index 0 = commune).
    pub fn scopes(&self) -> &[String] {
        &self.scopes
    }

    /// Index of a scope name.
    pub fn scope_index(&self, name: &str) -> Option<usize> {
        self.scope_index.get(name).copied()
    }

    /// Indicator ids, in config order.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.specs.iter().map(|s| s.id.as_str())
    }

    /// The counters behind an indicator, for history queries:
    /// (numerator, optional denominator).
    pub fn history_counters(&self, id: &str) -> Option<HistoryPlan<'_>> {
        let spec = self.specs.iter().find(|s| s.id == id)?;
        let plan = match spec.kind {
            SpecKind::Count(c) | SpecKind::DeadLetters(c) => {
                HistoryPlan::Sum(&self.counters[c].key)
            }
            SpecKind::Ratio(n, d) => {
                HistoryPlan::Ratio(&self.counters[n].key, &self.counters[d].key)
            }
            _ => HistoryPlan::Unsupported,
        };
        Some(plan)
    }

    /// Name, unit and target of an indicator.
    pub fn describe(&self, id: &str) -> Option<(&str, &str, Option<Target>)> {
        self.specs
            .iter()
            .find(|s| s.id == id)
            .map(|s| (s.name.as_str(), s.unit.as_str(), s.target))
    }

    /// A stable signature of all counters: when it differs from the one the
    /// rollups were built with, the journal rebuilds them from the events.
    pub fn signature(&self) -> String {
        let mut keys: Vec<String> = self.counters.iter().map(|c| c.key.clone()).collect();
        for s in &self.specs {
            if let SpecKind::Latest {
                signature, field, ..
            } = &s.kind
            {
                keys.push(format!("latest:{}:{field}:{signature}", s.id));
            }
        }
        keys.sort_unstable();
        keys.join(",")
    }

    fn scopes_of(&self, village: Option<&str>) -> [Option<usize>; 2] {
        [
            Some(0),
            village.and_then(|v| self.scope_index.get(v).copied()),
        ]
    }

    /// Work out what a batch of newly committed events (and the receive
    /// times of new dead letters) changes.
    pub fn delta<'e>(
        &self,
        events: impl IntoIterator<Item = &'e Event>,
        dead_letters: &[DateTime<Utc>],
    ) -> BatchDelta {
        let mut d = BatchDelta::default();
        for e in events {
            // A cleared retained message (empty payload) carries no data.
            if e.kind == crate::sources::CLEARED {
                continue;
            }
            let minute = e.ts.timestamp().div_euclid(60);
            let scopes = self.scopes_of(e.village.as_deref());
            let device = e.device.as_deref();
            for ci in self.by_device.counters(device) {
                if let CounterKind::Events(m) = &self.counters[ci].kind {
                    if let Some(amount) = m.amount(e) {
                        for s in scopes.iter().flatten() {
                            *d.rollups.entry((ci, *s, minute)).or_insert(0.0) += amount;
                        }
                    }
                }
            }
            for si in self.by_device.latest(device) {
                if let SpecKind::Latest { matcher, field, .. } = &self.specs[si].kind {
                    if !matcher.matches(e) {
                        continue;
                    }
                    if let Some(v) = e.attr_f64(field) {
                        for s in scopes.iter().flatten() {
                            let slot = d.latest.entry((si, *s)).or_insert((e.ts, v));
                            if e.ts >= slot.0 {
                                *slot = (e.ts, v);
                            }
                        }
                    }
                }
            }
            for s in scopes.iter().flatten() {
                let slot = d.fresh.entry((e.source, *s)).or_insert(e.received_at);
                if e.received_at > *slot {
                    *slot = e.received_at;
                }
            }
        }
        for t in dead_letters {
            let minute = t.timestamp().div_euclid(60);
            *d.rollups
                .entry((self.dead_counter, 0, minute))
                .or_insert(0.0) += 1.0;
        }
        d
    }

    /// Apply a committed delta.
    pub fn apply(&mut self, d: &BatchDelta, now: DateTime<Utc>) {
        for (&(c, s, minute), &amount) in &d.rollups {
            self.add_bucket(c, s, minute, amount);
            self.changed.insert((c, s), now);
        }
        for (&k, &(ts, v)) in &d.latest {
            let slot = self.latest.entry(k).or_insert((ts, v));
            if ts >= slot.0 {
                *slot = (ts, v);
            }
        }
        for (&k, &ts) in &d.fresh {
            let slot = self.fresh.entry(k).or_insert(ts);
            if ts > *slot {
                *slot = ts;
            }
        }
    }

    fn add_bucket(&mut self, c: usize, s: usize, minute: i64, amount: f64) {
        let series = self.series.entry((c, s)).or_default();
        *series.minutes.entry(minute).or_insert(0.0) += amount;
        *series.hours.entry(minute.div_euclid(60)).or_insert(0.0) += amount;
    }

    /// Load a persisted minute bucket (startup).
    pub fn load_minute(&mut self, counter: &str, scope: &str, minute: i64, value: f64) {
        if let (Some(c), Some(s)) = (self.counter_index(counter), self.scope_index(scope)) {
            *self
                .series
                .entry((c, s))
                .or_default()
                .minutes
                .entry(minute)
                .or_insert(0.0) += value;
        }
    }

    /// Load a persisted hour bucket (startup).
    pub fn load_hour(&mut self, counter: &str, scope: &str, hour: i64, value: f64) {
        if let (Some(c), Some(s)) = (self.counter_index(counter), self.scope_index(scope)) {
            *self
                .series
                .entry((c, s))
                .or_default()
                .hours
                .entry(hour)
                .or_insert(0.0) += value;
        }
    }

    /// Load a persisted latest reading (startup).
    pub fn load_latest(&mut self, indicator: &str, scope: &str, ts: DateTime<Utc>, value: f64) {
        let i = self.specs.iter().position(|s| s.id == indicator);
        if let (Some(i), Some(s)) = (i, self.scope_index(scope)) {
            self.latest.insert((i, s), (ts, value));
        }
    }

    /// Load a persisted freshness time (startup).
    pub fn load_fresh(&mut self, source: Source, scope: &str, ts: DateTime<Utc>) {
        if let Some(s) = self.scope_index(scope) {
            self.fresh.insert((source, s), ts);
        }
    }

    /// Index of a counter key.
    pub fn counter_index(&self, key: &str) -> Option<usize> {
        self.counters.iter().position(|c| c.key == key)
    }

    /// Drop buckets that no window can reach any more.
    pub fn prune(&mut self, now: DateTime<Utc>) {
        let min_minute = now.timestamp().div_euclid(60) - MINUTES_KEPT;
        let min_hour = now.timestamp().div_euclid(3600) - HOURS_KEPT;
        for s in self.series.values_mut() {
            s.minutes = s.minutes.split_off(&min_minute);
            s.hours = s.hours.split_off(&min_hour);
        }
    }

    fn sum(
        &self,
        counter: usize,
        scope: usize,
        window: Window,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> f64 {
        let Some(series) = self.series.get(&(counter, scope)) else {
            return 0.0;
        };
        match window {
            Window::Last24h => {
                let a = from.timestamp().div_euclid(60);
                let b = to.timestamp().div_euclid(60);
                series.minutes.range(a..b).map(|(_, v)| v).sum()
            }
            Window::Today | Window::Month => {
                let a = from.timestamp().div_euclid(3600);
                let b = to.timestamp().div_euclid(3600);
                series.hours.range(a..b).map(|(_, v)| v).sum()
            }
        }
    }

    /// Compute indicator values.
    pub fn values(
        &self,
        window: Window,
        sel: ScopeSel<'_>,
        now: DateTime<Utc>,
        availability: AvailabilityFn<'_>,
        only: Option<&str>,
    ) -> Vec<IndicatorValue> {
        let scopes: Vec<usize> = match sel {
            ScopeSel::Commune => vec![0],
            ScopeSel::Village(v) => self.scope_index(v).into_iter().collect(),
            ScopeSel::All => (0..self.scopes.len()).collect(),
        };
        let frame = self.frame(window, now);
        let mut out = Vec::new();
        for scope in scopes {
            for (si, spec) in self.specs.iter().enumerate() {
                if only.is_some_and(|id| id != spec.id) {
                    continue;
                }
                out.push(self.value_at(si, scope, &frame, now, availability));
            }
        }
        out
    }

    /// Number of indicators (index = config order).
    pub fn spec_count(&self) -> usize {
        self.specs.len()
    }

    /// The bounds and period label of a window at `now`, shared by every
    /// value computed for it.
    pub fn frame(&self, window: Window, now: DateTime<Utc>) -> Frame {
        let (from, to) = bounds(window, now, self.regime);
        let period = (window == Window::Month).then(|| period_of(now, self.regime).label);
        Frame {
            window,
            from,
            to,
            period,
        }
    }

    /// The (indicator, scope) pairs whose values a batch can have changed:
    /// counts and ratios over its counters, its `latest` readings, the
    /// freshness of its sources, and the availability of the device classes
    /// in `devices` (class, village scope).
    pub fn affected(
        &self,
        touched: &Touched,
        devices: &[(DeviceClass, Option<usize>)],
    ) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        for (si, spec) in self.specs.iter().enumerate() {
            match &spec.kind {
                SpecKind::Count(c) | SpecKind::DeadLetters(c) => out.extend(
                    touched
                        .counters
                        .iter()
                        .filter(|(tc, _)| tc == c)
                        .map(|&(_, s)| (si, s)),
                ),
                SpecKind::Ratio(n, d) => out.extend(
                    touched
                        .counters
                        .iter()
                        .filter(|(tc, _)| tc == n || tc == d)
                        .map(|&(_, s)| (si, s)),
                ),
                SpecKind::Latest { .. } => out.extend(
                    touched
                        .latest
                        .iter()
                        .filter(|(ti, _)| *ti == si)
                        .map(|&(_, s)| (si, s)),
                ),
                SpecKind::Freshness(source) => out.extend(
                    touched
                        .fresh
                        .iter()
                        .filter(|(ts, _)| ts == source)
                        .map(|&(_, s)| (si, s)),
                ),
                SpecKind::Availability(class) => {
                    for (dc, village) in devices {
                        if dc == class {
                            out.push((si, 0));
                            out.extend(village.map(|v| (si, v)));
                        }
                    }
                }
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Indicators whose values move with the clock alone (device
    /// availability and data freshness).
    pub fn clock_driven(&self) -> Vec<usize> {
        self.specs
            .iter()
            .enumerate()
            .filter(|(_, s)| matches!(s.kind, SpecKind::Availability(_) | SpecKind::Freshness(_)))
            .map(|(i, _)| i)
            .collect()
    }

    /// One indicator value in one scope.
    pub fn value_at(
        &self,
        si: usize,
        scope: usize,
        frame: &Frame,
        now: DateTime<Utc>,
        availability: AvailabilityFn<'_>,
    ) -> IndicatorValue {
        let spec = &self.specs[si];
        let (window, from, to) = (frame.window, frame.from, frame.to);
        let mut v = IndicatorValue {
            id: spec.id.clone(),
            name: spec.name.clone(),
            kind: spec.def_kind,
            window,
            scope: self.scopes[scope].clone(),
            value: None,
            unit: spec.unit.clone(),
            numerator: None,
            denominator: None,
            target: spec.target,
            status: Status::NoData,
            from,
            to,
            period: frame.period.clone(),
            updated_at: None,
        };
        match &spec.kind {
            // Dead letters belong to no village.
            SpecKind::DeadLetters(_) if scope != 0 => {}
            SpecKind::Count(c) | SpecKind::DeadLetters(c) => {
                v.value = Some(self.sum(*c, scope, window, from, to));
                v.updated_at = self.changed.get(&(*c, scope)).copied();
            }
            SpecKind::Ratio(n, d) => {
                let num = self.sum(*n, scope, window, from, to);
                let den = self.sum(*d, scope, window, from, to);
                v.numerator = Some(num);
                v.denominator = Some(den);
                if den > 0.0 {
                    v.value = Some(100.0 * num / den);
                }
                v.updated_at = [
                    self.changed.get(&(*n, scope)),
                    self.changed.get(&(*d, scope)),
                ]
                .into_iter()
                .flatten()
                .max()
                .copied();
            }
            SpecKind::Latest { .. } => {
                if let Some(&(ts, value)) = self.latest.get(&(si, scope)) {
                    v.value = Some(value);
                    v.updated_at = Some(ts);
                }
            }
            SpecKind::Availability(class) => {
                let village = (scope != 0).then(|| self.scopes[scope].as_str());
                let a = availability(*class, village);
                v.numerator = Some(f64::from(a.up));
                v.denominator = Some(f64::from(a.total));
                // No device ever heard from: no data, not 0 %.
                if a.total > 0 && a.heard > 0 {
                    v.value = Some(100.0 * f64::from(a.up) / f64::from(a.total));
                }
                v.updated_at = Some(now);
            }
            SpecKind::Freshness(source) => {
                if let Some(&ts) = self.fresh.get(&(*source, scope)) {
                    let age = now.signed_duration_since(ts).max(Duration::zero());
                    v.value = Some(age.num_milliseconds() as f64 / 1000.0);
                    v.updated_at = Some(ts);
                }
            }
        }
        v.status = match (v.value, spec.target) {
            (None, _) => Status::NoData,
            (Some(_), None) => Status::Met,
            (Some(x), Some(t)) if t.met(x) => Status::Met,
            (Some(_), Some(_)) => Status::NotMet,
        };
        v
    }
}

/// How a sealed report computes an indicator over a past period
/// (`reports`): from counter sums, the newest matching reading, or not at
/// all (availability and freshness are measures of the present).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportPlan {
    /// The sum of a counter.
    Sum(usize),
    /// 100 × numerator counter / denominator counter.
    Ratio(usize, usize),
    /// The newest reading of a `latest` indicator in the period.
    Latest,
    /// Dead letters received in the period (commune only).
    DeadLetters(usize),
    /// Not reconstructible for a past period.
    Instant,
}

impl Engine {
    /// How indicator `si` is computed for a report.
    pub fn report_plan(&self, si: usize) -> ReportPlan {
        match self.specs[si].kind {
            SpecKind::Count(c) => ReportPlan::Sum(c),
            SpecKind::Ratio(n, d) => ReportPlan::Ratio(n, d),
            SpecKind::Latest { .. } => ReportPlan::Latest,
            SpecKind::DeadLetters(c) => ReportPlan::DeadLetters(c),
            SpecKind::Availability(_) | SpecKind::Freshness(_) => ReportPlan::Instant,
        }
    }

    /// Id, name, unit, target and kind of indicator `si`.
    pub fn spec_info(&self, si: usize) -> (&str, &str, &str, Option<Target>, IndicatorKind) {
        let s = &self.specs[si];
        (&s.id, &s.name, &s.unit, s.target, s.def_kind)
    }

    /// The source families indicator `si` reads (every family when a
    /// filter names none), sorted and unique.
    pub fn spec_streams(&self, si: usize) -> Vec<Source> {
        let from = |m: &Matcher| match m.source() {
            Some(s) => vec![s],
            None => Source::ALL.to_vec(),
        };
        let counter = |c: usize| match &self.counters[c].kind {
            CounterKind::Events(m) => from(m),
            CounterKind::DeadLetters => Vec::new(),
        };
        let mut out = match &self.specs[si].kind {
            SpecKind::Count(c) | SpecKind::DeadLetters(c) => counter(*c),
            SpecKind::Ratio(n, d) => {
                let mut v = counter(*n);
                v.extend(counter(*d));
                v
            }
            SpecKind::Latest { matcher, .. } => from(matcher),
            SpecKind::Availability(_) | SpecKind::Freshness(_) => Vec::new(),
        };
        out.sort_by_key(|s| s.as_str());
        out.dedup();
        out
    }

    /// A stable text of indicator `si`'s definition (its counters' keys or
    /// its filter's signature), for the report's `query_id`.
    pub fn spec_definition(&self, si: usize) -> String {
        let s = &self.specs[si];
        let body = match &s.kind {
            SpecKind::Count(c) | SpecKind::DeadLetters(c) => self.counters[*c].key.clone(),
            SpecKind::Ratio(n, d) => {
                format!("{}/{}", self.counters[*n].key, self.counters[*d].key)
            }
            SpecKind::Latest {
                signature, field, ..
            } => format!("{field}:{signature}"),
            SpecKind::Availability(c) => c.as_str().to_owned(),
            SpecKind::Freshness(src) => src.as_str().to_owned(),
        };
        format!("{}:{}", s.def_kind_str(), body)
    }
}

impl Spec {
    fn def_kind_str(&self) -> &'static str {
        match self.def_kind {
            IndicatorKind::Count => "count",
            IndicatorKind::Ratio => "ratio",
            IndicatorKind::Latest => "latest",
            IndicatorKind::Availability => "availability",
            IndicatorKind::Freshness => "freshness",
            IndicatorKind::DeadLetters => "dead_letters",
        }
    }
}

/// A window's bounds at one instant.
#[derive(Debug, Clone)]
pub struct Frame {
    /// The window.
    pub window: Window,
    /// Start (inclusive).
    pub from: DateTime<Utc>,
    /// End (exclusive).
    pub to: DateTime<Utc>,
    /// Report period label (`month` only).
    pub period: Option<String>,
}

/// How the history of an indicator is computed from rollups.
#[derive(Debug, Clone, Copy)]
pub enum HistoryPlan<'a> {
    /// Sum of one counter.
    Sum(&'a str),
    /// 100 × numerator / denominator.
    Ratio(&'a str, &'a str),
    /// Not a rollup-based indicator.
    Unsupported,
}

fn compile(measure: &Measure, intern: &mut impl FnMut(Counter) -> usize) -> SpecKind {
    match measure {
        Measure::Count(f) => SpecKind::Count(intern(Counter::from_filter(f))),
        Measure::Ratio {
            numerator,
            denominator,
        } => SpecKind::Ratio(
            intern(Counter::from_filter(numerator)),
            intern(Counter::from_filter(denominator)),
        ),
        Measure::Latest { field, filter } => {
            let (matcher, signature) = Matcher::compile(filter);
            SpecKind::Latest {
                matcher,
                signature,
                field: field.clone(),
            }
        }
        Measure::Availability(class) => SpecKind::Availability(*class),
        Measure::Freshness(source) => SpecKind::Freshness(*source),
        Measure::DeadLetters => SpecKind::DeadLetters(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_str;

    const CONFIG: &str = r#"
[commune]
id = "x"
name = "X"
[[village]]
id = "a"
name = "A"
[[village]]
id = "b"
name = "B"
[[sensor]]
id = "s-1"
[[sensor]]
id = "s-2"
[[indicator]]
id = "received"
name = "Hồ sơ"
kind = "count"
match = { source = "procedure", event = "received" }
[[indicator]]
id = "online"
name = "Trực tuyến"
kind = "ratio"
numerator = { source = "procedure", event = "received", where = { channel = "online" } }
denominator = { source = "procedure", event = "received" }
[[indicator]]
id = "rain"
name = "Mưa"
kind = "latest"
field = "rain_mm"
match = { source = "sensor" }
[[indicator]]
id = "cams"
name = "Camera"
kind = "availability"
device_class = "camera"
[[indicator]]
id = "fresh"
name = "Độ mới"
kind = "freshness"
source = "procedure"
[[indicator]]
id = "g1"
name = "Nhóm 1"
kind = "latest"
field = "v"
match = { source = "sensor", devices = ["s-2", "s-1", "s-1"] }
[[indicator]]
id = "g1_count"
name = "Số lần đo nhóm 1"
kind = "count"
match = { source = "sensor", devices = ["s-1", "s-2"] }
"#;

    fn dossier(village: &str, channel: &str) -> Event {
        let mut attrs = serde_json::Map::new();
        attrs.insert("channel".into(), channel.into());
        Event {
            source: Source::Procedure,
            kind: "received".into(),
            device: None,
            village: Some(village.into()),
            ts: Utc::now(),
            received_at: Utc::now(),
            seq: None,
            attrs,
            dedup_key: String::new(),
            retained: false,
        }
    }

    fn reading(device: &str, v: f64) -> Event {
        let mut attrs = serde_json::Map::new();
        attrs.insert("v".into(), v.into());
        Event {
            source: Source::Sensor,
            kind: "telemetry".into(),
            device: Some(device.into()),
            village: None,
            ts: Utc::now(),
            received_at: Utc::now(),
            seq: None,
            attrs,
            dedup_key: String::new(),
            retained: false,
        }
    }

    #[test]
    fn device_filters_are_indexed_and_count_once() {
        let c = load_str(CONFIG, "t.toml", &[]).unwrap();
        let mut e = Engine::new(&c);
        let events = [
            reading("s-1", 3.0),
            reading("s-9", 7.0),
            reading("s-2", 5.0),
        ];
        let delta = e.delta(events.iter(), &[]);
        e.apply(&delta, Utc::now());
        let now = Utc::now();
        let none = |_: DeviceClass, _: Option<&str>| Availability::default();
        let get =
            |id: &str| e.values(Window::Today, ScopeSel::Commune, now, &none, Some(id))[0].value;
        assert_eq!(
            get("g1_count"),
            Some(2.0),
            "s-1 once (listed twice), s-2; not s-9"
        );
        assert_eq!(
            get("g1"),
            Some(5.0),
            "the newest reading of a listed device"
        );
    }

    #[test]
    fn a_batch_affects_only_what_it_touched_and_values_match_the_api() {
        let c = load_str(CONFIG, "t.toml", &[]).unwrap();
        let mut e = Engine::new(&c);
        let (a, b) = (e.scope_index("a").unwrap(), e.scope_index("b").unwrap());
        let events = [dossier("a", "online"), dossier("a", "direct")];
        let delta = e.delta(events.iter(), &[]);
        let touched = delta.touched();
        e.apply(&delta, Utc::now());
        let id = |name: &str| e.ids().position(|x| x == name).unwrap();
        let affected = e.affected(&touched, &[]);
        let want = [
            (id("received"), 0),
            (id("received"), a),
            (id("online"), 0),
            (id("online"), a),
            (id("fresh"), 0),
            (id("fresh"), a),
        ];
        let mut want = want.to_vec();
        want.sort_unstable();
        assert_eq!(affected, want, "nothing of village b, rain or cameras");
        assert!(!affected.iter().any(|&(_, s)| s == b));

        // A camera of village b: availability of the commune and of b.
        let cams = e.affected(&Touched::default(), &[(DeviceClass::Camera, Some(b))]);
        assert_eq!(cams, vec![(id("cams"), 0), (id("cams"), b)]);
        assert_eq!(
            e.clock_driven(),
            vec![id("cams"), id("fresh")],
            "availability and freshness move with the clock"
        );

        // value_at agrees with the API's values().
        let now = Utc::now();
        let none = |_: DeviceClass, _: Option<&str>| Availability::default();
        for w in Window::ALL {
            let frame = e.frame(w, now);
            let api = e.values(w, ScopeSel::Village("a"), now, &none, Some("online"));
            let one = e.value_at(id("online"), a, &frame, now, &none);
            assert_eq!(api, vec![one.clone()]);
            assert_eq!(one.value, Some(50.0));
            assert_eq!(one.kind, IndicatorKind::Ratio);
        }
    }
}
