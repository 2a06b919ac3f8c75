//! The alerts engine task: after each committed batch, every
//! `alerts.eval_interval` and at the next notification deadline, it reads the journal's new events (after its
//! own cursor, so an event committed while the engine was down is still
//! evaluated), the warnings the batch changed, and the site's state, and
//! applies what the evaluator signals; then it resolves what ended, plans
//! the notifications due, and refreshes the [`Board`] the live family and
//! the API read.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use parking_lot::{Mutex, RwLock};
use serde::Serialize;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::eval::{Active, Evaluator, Inputs};
use super::model::{Alert, Signal};
use super::notify::{self, muted};
use super::store::{AlertError, AlertStore, Stats};
use super::template::Names;
use super::Clock;
use crate::devices::Availability;
use crate::indicators::{ScopeSel, Window};
use crate::state::{Shared, View};
use crate::vocab::{DeviceClass, Source};
use crate::warnings::WarningView;

/// Most journal events read per step.
const EVENTS_PER_STEP: usize = 1000;
/// Resolved alerts stay on the board this long.
const RECENT: TimeDelta = TimeDelta::hours(1);
/// Most alerts on the board.
const BOARD_MAX: usize = 200;

/// What the board shows: current alerts and the indicators of the alerts
/// (by status, time to acknowledge).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct BoardValue {
    /// Firing alerts and those resolved in the last hour, newest first.
    pub alerts: Vec<Alert>,
    /// Alerts by status over the whole store.
    pub by_status: std::collections::BTreeMap<String, u64>,
    /// Time to acknowledge over the last 30 days.
    pub time_to_ack_s: AckTimes,
    /// When it was computed.
    pub at: Option<DateTime<Utc>>,
}

/// Summary of the acknowledgement times.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct AckTimes {
    /// Alerts acknowledged.
    pub count: usize,
    /// Median, seconds.
    pub median: Option<f64>,
    /// 90th percentile, seconds.
    pub p90: Option<f64>,
}

impl AckTimes {
    fn of(mut v: Vec<f64>) -> AckTimes {
        v.sort_by(f64::total_cmp);
        let q = |p: f64| -> Option<f64> {
            if v.is_empty() {
                return None;
            }
            let i = ((v.len() - 1) as f64 * p).round() as usize;
            v.get(i).copied()
        };
        AckTimes {
            count: v.len(),
            median: q(0.5),
            p90: q(0.9),
        }
    }
}

/// The engine's published state (in `Shared`), and the bell the API rings
/// after a change so the engine refreshes at once.
#[derive(Debug, Default)]
pub struct Board {
    value: RwLock<Arc<BoardValue>>,
    version: AtomicU64,
    kick: Notify,
}

impl Board {
    /// The current value.
    pub fn get(&self) -> Arc<BoardValue> {
        Arc::clone(&self.value.read())
    }

    /// Bumped at each change.
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// Replace the value (when it changed, ignoring `at`).
    pub fn set(&self, v: BoardValue) {
        let mut cur = self.value.write();
        let same = cur.alerts == v.alerts
            && cur.by_status == v.by_status
            && cur.time_to_ack_s == v.time_to_ack_s;
        if !same {
            *cur = Arc::new(v);
            self.version.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Ask the engine to run a step now (after an operator's change).
    pub fn kick(&self) {
        self.kick.notify_one();
    }
}

impl Inputs for View<'_> {
    fn last_seen(&self, class: DeviceClass, id: &str) -> Option<DateTime<Utc>> {
        self.device(class, id).last_seen
    }

    fn availability(&self, class: DeviceClass, village: &str) -> Availability {
        View::availability(self, class, Some(village))
    }

    fn indicator(&self, id: &str, scope: &str) -> Option<f64> {
        let sel = if scope == "commune" {
            ScopeSel::Commune
        } else {
            ScopeSel::Village(scope)
        };
        self.indicators(Window::Today, sel, Some(id))
            .into_iter()
            .next()
            .and_then(|v| v.value)
    }
}

/// The engine's state between steps.
#[derive(Debug)]
pub struct Engine {
    store: AlertStore,
    eval: Evaluator,
    names: Names,
    cursor: i64,
}

impl Engine {
    /// Open the engine's connection and position its cursor (a new store
    /// starts at the newest event: old events raise nothing).
    pub fn open(shared: &Shared) -> Result<Engine, AlertError> {
        let c = &shared.config;
        let store = AlertStore::open(&c.journal_path(), c.store.sync)?;
        let cursor = match store.cursor()? {
            Some(c) => c,
            None => store.last_event_id()?,
        };
        let names = Names::from_config(c);
        let sensor_villages: HashMap<String, Option<String>> = c
            .sensors
            .iter()
            .map(|s| (s.id.clone(), s.village.clone()))
            .chain(c.cameras.iter().map(|s| (s.id.clone(), s.village.clone())))
            .chain(c.speakers.iter().map(|s| (s.id.clone(), s.village.clone())))
            .collect();
        let mut eval = Evaluator::new(&c.site.alerts, names.clone(), sensor_villages);
        for s in Source::ALL {
            if eval.watches_source(s) {
                if let Some(t) = store.last_from_source(s.as_str())? {
                    eval.seed_source(s, t);
                }
            }
        }
        Ok(Engine {
            store,
            eval,
            names,
            cursor,
        })
    }

    /// The engine's store connection.
    pub fn store(&mut self) -> &mut AlertStore {
        &mut self.store
    }

    /// One step at `now`: events, warnings, rules, ends, notifications,
    /// board. Returns the requests enqueued.
    pub fn step(
        &mut self,
        shared: &Shared,
        warnings: &[WarningView],
        now: DateTime<Utc>,
    ) -> Result<usize, AlertError> {
        let settings = &shared.config.site.alerts;
        loop {
            let events = self.store.events_after(self.cursor, EVENTS_PER_STEP)?;
            if events.is_empty() {
                break;
            }
            let last = events.last().map_or(self.cursor, |(id, _)| *id);
            let evs: Vec<_> = events.into_iter().map(|(_, e)| e).collect();
            let mut signals = Vec::new();
            self.eval.observe(&evs, &mut signals);
            self.store.apply(&signals, now, settings, Some(last))?;
            self.cursor = last;
            if evs.len() < EVENTS_PER_STEP {
                break;
            }
        }
        let mut signals: Vec<Signal> =
            super::warnings::signals(&self.store, warnings, &self.names)?;
        let firing = self.store.firing()?;
        let active: Active = firing
            .iter()
            .map(|a| (a.fingerprint.clone(), a.stale))
            .collect();
        {
            let view = shared.view(now);
            signals.extend(self.eval.evaluate(now, &view, &active));
        }
        if !signals.is_empty() {
            self.store.apply(&signals, now, settings, None)?;
        }
        self.store.resolve_ended(now)?;
        let c = &shared.config.commune;
        let sent = notify::plan(
            &mut self.store,
            now,
            settings,
            &self.names,
            (&c.id, &c.name),
        )?;
        self.refresh(shared, now)?;
        Ok(sent)
    }

    /// Recompute the board.
    pub fn refresh(&mut self, shared: &Shared, now: DateTime<Utc>) -> Result<(), AlertError> {
        refresh_board(&self.store, shared, now)
    }
}

/// Recompute `shared`'s board from `store` at `now` and publish it with the
/// alert metrics (the engine after each step; the province from a site's
/// copy, where no engine runs).
pub fn refresh_board(
    store: &AlertStore,
    shared: &Shared,
    now: DateTime<Utc>,
) -> Result<(), AlertError> {
    let settings = &shared.config.site.alerts;
    let mut alerts = store.current(now - RECENT, BOARD_MAX)?;
    let silences = store.silences(now, false)?;
    let firing: Vec<Alert> = alerts
        .iter()
        .filter(|a| a.state == super::AlertState::Firing)
        .cloned()
        .collect();
    for a in alerts
        .iter_mut()
        .filter(|a| a.state == super::AlertState::Firing)
    {
        let m = muted(a, &silences, &firing, settings, now);
        a.silenced_by = m.silenced_by;
        a.inhibited_by = m.inhibited_by;
    }
    let Stats {
        by_status,
        ack_seconds,
    } = store.stats(now - TimeDelta::days(30))?;
    let time_to_ack_s = AckTimes::of(ack_seconds);
    publish_metrics(shared, &by_status, &time_to_ack_s);
    shared.alerts.set(BoardValue {
        alerts,
        by_status,
        time_to_ack_s,
        at: Some(now),
    });
    Ok(())
}

/// The alert indicators on `/metrics`: alerts by status (every status,
/// 0 when none), time to acknowledge (quantiles; NaN without any).
fn publish_metrics(
    shared: &Shared,
    by_status: &std::collections::BTreeMap<String, u64>,
    ack: &AckTimes,
) {
    use crate::metrics::{QuantileLabel, StatusLabel};
    let m = &shared.metrics;
    for status in [
        "firing_unack",
        "firing_ack",
        "resolved_unack",
        "resolved_ack",
    ] {
        let n = by_status.get(status).copied().unwrap_or(0);
        m.alerts
            .get_or_create(&StatusLabel {
                status: status.into(),
            })
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }
    for (q, v) in [("0.5", ack.median), ("0.9", ack.p90)] {
        m.alert_time_to_ack_seconds
            .get_or_create(&QuantileLabel { quantile: q.into() })
            .set(v.unwrap_or(f64::NAN));
    }
}

/// How long until the earliest future `notify_at` of the board's firing,
/// unacknowledged alerts (a few ms past it, so it is due when the step
/// runs); `None` when none is ahead. Deadlines already past (an alert held
/// by a silence, an inhibition or its group's interval) are left to the
/// regular tick, so a held alert never spins the loop.
fn next_due(board: &BoardValue, now: DateTime<Utc>) -> Option<std::time::Duration> {
    board
        .alerts
        .iter()
        .filter(|a| a.state == super::AlertState::Firing && a.acked_at.is_none())
        .filter_map(|a| a.notify_at)
        .filter(|t| *t > now)
        .min()
        .and_then(|t| (t - now + TimeDelta::milliseconds(2)).to_std().ok())
}

/// Run the engine until `cancel`: a step after each committed batch (the
/// batch's warnings with it) and every `alerts.eval_interval`.
pub async fn run(shared: Arc<Shared>, clock: Arc<dyn Clock>, cancel: CancellationToken) {
    let mut rx = shared.updates.subscribe();
    let opened = {
        let s = Arc::clone(&shared);
        tokio::task::spawn_blocking(move || Engine::open(&s)).await
    };
    let engine = match opened {
        Ok(Ok(e)) => Arc::new(Mutex::new(e)),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "alerts engine cannot open the store; no alerts will be raised");
            return;
        }
        Err(e) => {
            tracing::error!(error = %e, "alerts engine start failed");
            return;
        }
    };
    let period = shared
        .config
        .site
        .alerts
        .eval_interval
        .to_std()
        .unwrap_or(std::time::Duration::from_secs(1));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let mut warnings: Vec<WarningView> = Vec::new();
        let mut closed = false;
        // The earliest notification due: woken then rather than at the
        // next tick, so an escalation step leaves on its deadline.
        let due = next_due(&shared.alerts.get(), clock.now());
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
            _ = tokio::time::sleep(due.unwrap_or(period)), if due.is_some_and(|d| d < period) => {}
            _ = shared.alerts.kick.notified() => {}
            r = rx.recv() => match r {
                Ok(c) => warnings.extend(c.warnings.iter().cloned()),
                Err(RecvError::Lagged(n)) => {
                    tracing::warn!(batches = n, "alerts engine fell behind the commits; warnings of those batches are taken from the next ones");
                }
                Err(RecvError::Closed) => closed = true,
            },
        }
        // Take every batch already queued.
        while let Ok(c) = rx.try_recv() {
            warnings.extend(c.warnings.iter().cloned());
        }
        let (e, s, c) = (Arc::clone(&engine), Arc::clone(&shared), Arc::clone(&clock));
        let done = tokio::task::spawn_blocking(move || {
            let now = c.now();
            e.lock().step(&s, &warnings, now)
        })
        .await;
        match done {
            Ok(Ok(n)) if n > 0 => {
                crate::delivery::wake(&shared);
                tracing::debug!(requests = n, "alert notifications enqueued");
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::error!(error = %e, "alerts engine step failed; retrying at the next tick")
            }
            Err(e) => tracing::error!(error = %e, "alerts engine step panicked"),
        }
        if closed {
            // The pipeline stopped; keep ticking for deadlines until cancel.
            rx = shared.updates.subscribe();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::{AlertKind, AlertState, Severity};

    fn alert(id: i64, notify_at: Option<DateTime<Utc>>) -> Alert {
        let t = DateTime::parse_from_rfc3339("2026-12-03T01:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        Alert {
            id,
            fingerprint: format!("rule:x:{id}"),
            kind: AlertKind::Camera,
            rule: Some("x".into()),
            official: false,
            severity: Severity::Warning,
            hazard: None,
            level: None,
            villages: vec![],
            device: None,
            title: String::new(),
            message: String::new(),
            details: serde_json::Value::Null,
            state: AlertState::Firing,
            stale: false,
            occurrences: 1,
            first_seen: t,
            last_seen: t,
            ends_at: None,
            resolved_at: None,
            resolved_by: None,
            acked_at: None,
            acked_by: None,
            escalation_step: 1,
            notify_at,
            silenced_by: vec![],
            inhibited_by: vec![],
        }
    }

    /// The engine wakes at the earliest notification deadline ahead (so a
    /// step leaves on its deadline, not at the next tick), and leaves
    /// deadlines already past, acknowledged and resolved alerts to the tick.
    #[test]
    fn the_next_wake_up_is_the_earliest_deadline_ahead() {
        let now = DateTime::parse_from_rfc3339("2026-12-03T01:00:10Z")
            .unwrap()
            .with_timezone(&Utc);
        let s = TimeDelta::seconds;
        let mut acked = alert(3, Some(now + s(1)));
        acked.acked_at = Some(now);
        let mut resolved = alert(4, Some(now + s(1)));
        resolved.state = AlertState::Resolved;
        let board = BoardValue {
            alerts: vec![
                alert(1, Some(now + s(5))),
                alert(2, Some(now + s(2))),
                acked,
                resolved,
                alert(5, Some(now - s(30))),
                alert(6, None),
            ],
            ..BoardValue::default()
        };
        assert_eq!(
            next_due(&board, now),
            Some(std::time::Duration::from_millis(2002))
        );
        let held = BoardValue {
            alerts: vec![alert(5, Some(now - s(30))), alert(6, None)],
            ..BoardValue::default()
        };
        assert_eq!(next_due(&held, now), None, "a past deadline never spins");
    }

    /// The real engine on a real store, driven by a hand-moved clock: a
    /// sensor threshold with `for = "10m"` fires only once the reading has
    /// been over the limit for 10 minutes, goes stale (still firing, never
    /// resolved) once the sensor is silent for `missed` × `interval`, and
    /// resolves on a fresh reading under the limit.
    #[test]
    fn a_threshold_fires_after_for_and_goes_stale_through_the_store() {
        use crate::alerts::ManualClock;
        use crate::journal::NewEvent;
        use crate::model::Event;

        let dir = tempfile::tempdir().unwrap();
        let config = crate::config::load_str(
            &format!(
                r#"
[commune]
id = "x"
name = "Xã X"
[store]
path = "{}"
[[village]]
id = "na-da"
name = "Bản Nà Đa"
[[sensor]]
id = "rain-01"
village = "na-da"
[[alerts.rule]]
id = "mua-lon"
name = "Mưa lớn"
kind = "threshold"
sensor = "rain-01"
field = "rain_mm"
when = "> 50"
for = "10m"
interval = "5m"
missed = 3
"#,
                dir.path().join("store").display()
            ),
            "t.toml",
            &[],
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let (shared, mut journal) = crate::server::open_state(config).unwrap();
        let mut engine = Engine::open(&shared).unwrap();
        let t0 = DateTime::parse_from_rfc3339("2026-12-03T01:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let clock = ManualClock::new(t0);
        let mut seq = 0u64;
        let mut rain = |mm: f64, at: DateTime<Utc>| {
            seq += 1;
            let mut attrs = serde_json::Map::new();
            attrs.insert("rain_mm".into(), mm.into());
            let e = Event {
                source: crate::model::Source::Sensor,
                kind: "telemetry".into(),
                device: Some("rain-01".into()),
                village: Some("na-da".into()),
                ts: at,
                received_at: at,
                seq: Some(seq),
                attrs,
                dedup_key: format!("rain-01:{seq}"),
                retained: false,
            };
            let ne = NewEvent {
                event: &e,
                topic: "ioc/x/sensor/rain-01/telemetry",
                payload: b"{}",
            };
            journal
                .write_batch(&[ne], &[], |_| crate::journal::Derived::default())
                .unwrap();
        };
        let fp = "rule:mua-lon:rain-01:rain_mm";
        let firing = |engine: &mut Engine, now| {
            engine.step(&shared, &[], now).unwrap();
            engine
                .store()
                .firing()
                .unwrap()
                .into_iter()
                .find(|a| a.fingerprint == fp)
        };

        rain(60.0, clock.now());
        assert!(firing(&mut engine, clock.now()).is_none(), "pending");
        clock.advance(TimeDelta::minutes(4));
        rain(70.0, clock.now());
        clock.advance(TimeDelta::minutes(5) + TimeDelta::seconds(59));
        assert!(firing(&mut engine, clock.now()).is_none(), "9 min 59 s");
        clock.advance(TimeDelta::seconds(1));
        let a = firing(&mut engine, clock.now()).expect("fires at 10 min");
        assert!(!a.stale);
        assert_eq!(a.first_seen, t0 + TimeDelta::minutes(10));

        // Silent since 4 min: stale after 4 + 15 min, still firing.
        clock.advance(TimeDelta::minutes(9));
        assert!(!firing(&mut engine, clock.now()).unwrap().stale, "19 min");
        clock.advance(TimeDelta::seconds(1));
        assert!(
            firing(&mut engine, clock.now()).unwrap().stale,
            "19 min 1 s"
        );
        clock.advance(TimeDelta::hours(5));
        let a = firing(&mut engine, clock.now()).expect("never resolved by silence");
        assert!(a.stale);

        // A fresh reading under the limit resolves it.
        rain(10.0, clock.now());
        assert!(firing(&mut engine, clock.now()).is_none());
        let resolved = engine.store().get(a.id).unwrap().unwrap();
        assert_eq!(resolved.state, AlertState::Resolved);
        assert_eq!(resolved.resolved_by.as_deref(), Some("system"));
    }
}
