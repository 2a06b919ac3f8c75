//! The rule evaluator: pure, clock-free (every call takes `now`), so tests
//! drive `for` durations and staleness without sleeping.
//!
//! - [`Evaluator::observe`] reads committed events: camera events raise
//!   their alerts at once; sensor readings and source activity are kept.
//! - [`Evaluator::evaluate`] checks the level rules at `now` against the
//!   inputs (device health, indicator values) and the set of alerts firing
//!   in the store, and signals only transitions: a condition that held for
//!   its `for` fires, a condition that stopped resolves, except when the
//!   data behind it is stale: then the alert stays firing, marked stale
//!   (never resolved by silence).

use std::collections::HashMap;

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::json;

use super::model::{AlertKind, Raise, Signal};
use super::template::{camera_kind_vi, class_vi, internal_text, number_vi, Names};
use crate::config::alerts::{AbsenceOf, AlertSettings, Rule, RuleSpec};
use crate::devices::Availability;
use crate::model::{Event, Source};
use crate::vocab::DeviceClass;

/// What the evaluator reads of the site's state at `now`.
pub trait Inputs {
    /// When a device was last heard.
    fn last_seen(&self, class: DeviceClass, id: &str) -> Option<DateTime<Utc>>;
    /// Devices of a class in a village up now.
    fn availability(&self, class: DeviceClass, village: &str) -> Availability;
    /// An indicator's current value in a scope (`commune` or a village).
    fn indicator(&self, id: &str, scope: &str) -> Option<f64>;
}

/// The evaluator's memory (readings, `for` timers, source activity).
#[derive(Debug)]
pub struct Evaluator {
    rules: Vec<Rule>,
    names: Names,
    /// Fingerprint → since when its condition holds.
    pending: HashMap<String, DateTime<Utc>>,
    /// (sensor, field) → newest value and when it was received.
    readings: HashMap<(String, String), (f64, DateTime<Utc>)>,
    /// Newest event of each family.
    sources: HashMap<Source, DateTime<Utc>>,
    /// Sensor → village.
    sensor_villages: HashMap<String, Option<String>>,
}

/// Firing alerts as the store holds them: fingerprint → stale.
pub type Active = HashMap<String, bool>;

impl Evaluator {
    /// An evaluator of `settings.rules`.
    pub fn new(
        settings: &AlertSettings,
        names: Names,
        sensor_villages: HashMap<String, Option<String>>,
    ) -> Self {
        Evaluator {
            rules: settings.rules.clone(),
            names,
            pending: HashMap::new(),
            readings: HashMap::new(),
            sources: HashMap::new(),
            sensor_villages,
        }
    }

    /// The rules.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Remember the newest event of a family (start-up, from the journal).
    pub fn seed_source(&mut self, source: Source, at: DateTime<Utc>) {
        let e = self.sources.entry(source).or_insert(at);
        *e = (*e).max(at);
    }

    /// Whether a rule watches the activity of `source`.
    pub fn watches_source(&self, source: Source) -> bool {
        self.rules.iter().any(|r| {
            matches!(&r.spec, RuleSpec::Absence { from: AbsenceOf::Source(s), .. } if *s == source)
        })
    }

    /// Read committed events: camera events matching a rule raise (or count
    /// again) their alert now; readings and activity are remembered.
    pub fn observe(&mut self, events: &[Event], out: &mut Vec<Signal>) {
        for e in events {
            let s = self.sources.entry(e.source).or_insert(e.received_at);
            *s = (*s).max(e.received_at);
            match e.source {
                Source::Sensor if e.kind == "telemetry" => {
                    let Some(dev) = &e.device else { continue };
                    for (k, v) in &e.attrs {
                        if let Some(x) = v.as_f64() {
                            let slot = self
                                .readings
                                .entry((dev.clone(), k.clone()))
                                .or_insert((x, e.received_at));
                            if e.received_at >= slot.1 {
                                *slot = (x, e.received_at);
                            }
                        }
                    }
                }
                Source::Camera => self.camera(e, out),
                _ => {}
            }
        }
    }

    fn camera(&self, e: &Event, out: &mut Vec<Signal>) {
        let Some(cam) = &e.device else { return };
        let zone = e.attr_str("zone");
        for r in &self.rules {
            let RuleSpec::Camera {
                events,
                cameras,
                zones,
                resolve_after,
            } = &r.spec
            else {
                continue;
            };
            if !events.contains(&e.kind)
                || (!cameras.is_empty() && !cameras.contains(cam))
                || (!zones.is_empty() && !zone.is_some_and(|z| zones.iter().any(|x| x == z)))
            {
                continue;
            }
            let mut fingerprint = format!("rule:{}:{cam}:{}", r.id, e.kind);
            if let Some(z) = zone {
                fingerprint.push(':');
                fingerprint.push_str(z);
            }
            let villages: Vec<String> = e.village.iter().cloned().collect();
            let mut what = format!(
                "{} tại camera {}",
                camera_kind_vi(&e.kind),
                self.names.device(cam)
            );
            if let Some(z) = zone {
                what.push_str(&format!(" (vùng {z})"));
            }
            out.push(Signal::Fire(Box::new(Raise {
                fingerprint,
                kind: AlertKind::Camera,
                rule: Some(r.id.clone()),
                official: false,
                severity: r.severity,
                hazard: None,
                level: None,
                message: internal_text(&r.name, &what, &villages, e.ts, &self.names),
                title: r.name.clone(),
                villages,
                device: Some(cam.clone()),
                details: json!({ "event": e.kind, "zone": zone, "ts": e.ts, "score": e.attrs.get("score") }),
                reference: None,
                ends_at: Some(e.received_at.max(e.ts) + *resolve_after),
                urgent: false,
            })));
        }
    }

    /// Check the level rules at `now`; `active` holds the firing alerts.
    pub fn evaluate(
        &mut self,
        now: DateTime<Utc>,
        inputs: &dyn Inputs,
        active: &Active,
    ) -> Vec<Signal> {
        let mut out = Vec::new();
        let rules = std::mem::take(&mut self.rules);
        for r in &rules {
            match &r.spec {
                RuleSpec::SensorThreshold {
                    sensor,
                    field,
                    when,
                    for_,
                    stale_after,
                } => {
                    let fp = format!("rule:{}:{sensor}:{field}", r.id);
                    let seen = inputs.last_seen(DeviceClass::Sensor, sensor);
                    let reading = self.readings.get(&(sensor.clone(), field.clone())).copied();
                    let newest = match (seen, reading.map(|r| r.1)) {
                        (Some(a), Some(b)) => Some(a.max(b)),
                        (a, b) => a.or(b),
                    };
                    let stale = stale_after.is_some_and(|d| newest.is_none_or(|t| now - t > d));
                    if let Some(&was) = active.get(&fp) {
                        if stale != was {
                            out.push(Signal::Stale {
                                fingerprint: fp.clone(),
                                stale,
                            });
                        }
                        if stale {
                            // Silence is not recovery: hold, never resolve.
                            continue;
                        }
                    } else if stale {
                        self.pending.remove(&fp);
                        continue;
                    }
                    let Some((value, _)) = reading else { continue };
                    let village = self.sensor_villages.get(sensor).cloned().flatten();
                    let villages: Vec<String> = village.into_iter().collect();
                    let what = format!(
                        "{field} của {} là {} (ngưỡng {} {})",
                        self.names.device(sensor),
                        number_vi(value),
                        when.op.as_str(),
                        number_vi(when.value),
                    );
                    let raise = Raise {
                        fingerprint: fp.clone(),
                        kind: AlertKind::Threshold,
                        rule: Some(r.id.clone()),
                        official: false,
                        severity: r.severity,
                        hazard: None,
                        level: None,
                        title: r.name.clone(),
                        message: internal_text(&r.name, &what, &villages, now, &self.names),
                        villages,
                        device: Some(sensor.clone()),
                        details: json!({ "field": field, "value": value, "when": format!("{} {}", when.op.as_str(), when.value) }),
                        reference: None,
                        ends_at: None,
                        urgent: false,
                    };
                    self.level(&fp, when.met(value), *for_, now, active, raise, &mut out);
                }
                RuleSpec::IndicatorThreshold {
                    indicator,
                    scopes,
                    when,
                    for_,
                } => {
                    for scope in scopes {
                        let fp = format!("rule:{}:{scope}", r.id);
                        let Some(value) = inputs.indicator(indicator, scope) else {
                            self.pending.remove(&fp);
                            continue;
                        };
                        let villages: Vec<String> = if scope == "commune" {
                            Vec::new()
                        } else {
                            vec![scope.clone()]
                        };
                        let what = format!(
                            "chỉ tiêu {indicator} là {} (ngưỡng {} {})",
                            number_vi(value),
                            when.op.as_str(),
                            number_vi(when.value)
                        );
                        let raise = Raise {
                            fingerprint: fp.clone(),
                            kind: AlertKind::Threshold,
                            rule: Some(r.id.clone()),
                            official: false,
                            severity: r.severity,
                            hazard: None,
                            level: None,
                            title: r.name.clone(),
                            message: internal_text(&r.name, &what, &villages, now, &self.names),
                            villages,
                            device: None,
                            details: json!({ "indicator": indicator, "scope": scope, "value": value }),
                            reference: None,
                            ends_at: None,
                            urgent: false,
                        };
                        self.level(&fp, when.met(value), *for_, now, active, raise, &mut out);
                    }
                }
                RuleSpec::Absence { from, after } => {
                    let (subject, last, villages) = match from {
                        AbsenceOf::Device(class, id) => {
                            let v = self.sensor_villages.get(id).cloned().flatten();
                            (
                                id.clone(),
                                inputs.last_seen(*class, id),
                                v.into_iter().collect(),
                            )
                        }
                        AbsenceOf::Source(s) => (
                            s.as_str().to_owned(),
                            self.sources.get(s).copied(),
                            Vec::new(),
                        ),
                    };
                    let fp = format!("rule:{}:{subject}", r.id);
                    // Never heard: unknown, not absent.
                    let absent = last.is_some_and(|t| now - t > *after);
                    let what = match last {
                        Some(t) => format!(
                            "không nhận được dữ liệu từ {} từ {}",
                            self.names.device(&subject),
                            super::template::time_vi(&t)
                        ),
                        None => String::new(),
                    };
                    let raise = Raise {
                        fingerprint: fp.clone(),
                        kind: AlertKind::Absence,
                        rule: Some(r.id.clone()),
                        official: false,
                        severity: r.severity,
                        hazard: None,
                        level: None,
                        title: r.name.clone(),
                        message: internal_text(&r.name, &what, &villages, now, &self.names),
                        villages,
                        device: matches!(from, AbsenceOf::Device(..)).then(|| subject.clone()),
                        details: json!({ "last_seen": last, "after_s": after.num_seconds() }),
                        reference: None,
                        ends_at: None,
                        urgent: false,
                    };
                    let was = active.contains_key(&fp);
                    self.level(&fp, absent, TimeDelta::zero(), now, active, raise, &mut out);
                    if absent && !was {
                        out.push(Signal::Stale {
                            fingerprint: fp,
                            stale: true,
                        });
                    }
                }
                RuleSpec::GroupOffline {
                    class,
                    villages,
                    for_,
                } => {
                    for v in villages {
                        let fp = format!("rule:{}:{v}", r.id);
                        let a = inputs.availability(*class, v);
                        // A group never heard from is unknown, not offline.
                        let down = a.total > 0 && a.heard > 0 && a.up == 0;
                        let what = format!(
                            "toàn bộ {} {} của thôn/bản mất kết nối",
                            a.total,
                            class_vi(*class)
                        );
                        let list = vec![v.clone()];
                        let raise = Raise {
                            fingerprint: fp.clone(),
                            kind: AlertKind::GroupOffline,
                            rule: Some(r.id.clone()),
                            official: false,
                            severity: r.severity,
                            hazard: None,
                            level: None,
                            title: r.name.clone(),
                            message: internal_text(&r.name, &what, &list, now, &self.names),
                            villages: list,
                            device: None,
                            details: json!({ "class": class.as_str(), "total": a.total, "up": a.up }),
                            reference: None,
                            ends_at: None,
                            urgent: false,
                        };
                        self.level(&fp, down, *for_, now, active, raise, &mut out);
                    }
                }
                RuleSpec::Camera { .. } => {}
            }
        }
        self.rules = rules;
        out
    }

    /// A level condition: fire once it held for `for_`, resolve when it
    /// stops.
    #[allow(clippy::too_many_arguments)]
    fn level(
        &mut self,
        fp: &str,
        holds: bool,
        for_: TimeDelta,
        now: DateTime<Utc>,
        active: &Active,
        raise: Raise,
        out: &mut Vec<Signal>,
    ) {
        let firing = active.contains_key(fp);
        if holds {
            let since = *self.pending.entry(fp.to_owned()).or_insert(now);
            if !firing && now - since >= for_ {
                out.push(Signal::Fire(Box::new(raise)));
            }
        } else {
            self.pending.remove(fp);
            if firing {
                out.push(Signal::Resolve {
                    fingerprint: fp.to_owned(),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_str;

    struct Fake {
        seen: HashMap<String, DateTime<Utc>>,
        avail: HashMap<String, Availability>,
        values: HashMap<(String, String), f64>,
    }

    impl Inputs for Fake {
        fn last_seen(&self, _class: DeviceClass, id: &str) -> Option<DateTime<Utc>> {
            self.seen.get(id).copied()
        }
        fn availability(&self, _class: DeviceClass, village: &str) -> Availability {
            self.avail.get(village).copied().unwrap_or_default()
        }
        fn indicator(&self, id: &str, scope: &str) -> Option<f64> {
            self.values.get(&(id.to_owned(), scope.to_owned())).copied()
        }
    }

    const SITE: &str = r#"
[commune]
id = "x"
name = "X"
[[village]]
id = "na-da"
name = "Bản Nà Đa"
[[speaker]]
id = "spk-01"
village = "na-da"
[[sensor]]
id = "rain-01"
village = "na-da"
[[camera]]
id = "cam-01"
village = "na-da"
[[indicator]]
id = "camera_online"
name = "Camera"
kind = "availability"
device_class = "camera"
"#;

    fn setup(rules: &str) -> Evaluator {
        let c =
            load_str(&format!("{SITE}\n{rules}"), "t.toml", &[]).unwrap_or_else(|e| panic!("{e}"));
        let sv = c
            .sensors
            .iter()
            .map(|s| (s.id.clone(), s.village.clone()))
            .collect();
        Evaluator::new(&c.site.alerts, Names::from_config(&c), sv)
    }

    fn t0() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-12-03T01:00:00Z")
            .unwrap()
            .into()
    }

    fn rain(mm: f64, at: DateTime<Utc>) -> Event {
        let mut attrs = serde_json::Map::new();
        attrs.insert("rain_mm".into(), mm.into());
        Event {
            source: Source::Sensor,
            kind: "telemetry".into(),
            device: Some("rain-01".into()),
            village: Some("na-da".into()),
            ts: at,
            received_at: at,
            seq: None,
            attrs,
            dedup_key: String::new(),
            retained: false,
        }
    }

    fn fake() -> Fake {
        Fake {
            seen: HashMap::new(),
            avail: HashMap::new(),
            values: HashMap::new(),
        }
    }

    /// Apply signals to the `active` set the way the store would.
    fn apply(active: &mut Active, signals: &[Signal]) {
        for s in signals {
            match s {
                Signal::Fire(r) => {
                    active.entry(r.fingerprint.clone()).or_insert(false);
                }
                Signal::Resolve { fingerprint } => {
                    active.remove(fingerprint);
                }
                Signal::Stale { fingerprint, stale } => {
                    if let Some(s) = active.get_mut(fingerprint) {
                        *s = *stale;
                    }
                }
            }
        }
    }

    const RAIN: &str = r#"
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
"#;

    /// A threshold fires only once the condition held for its `for`, and
    /// resolves when a fresh reading is back under the limit.
    #[test]
    fn a_threshold_fires_after_its_for_duration_and_resolves_on_a_fresh_reading() {
        let mut ev = setup(RAIN);
        let mut active = Active::new();
        let mut inputs = fake();
        let mut out = Vec::new();
        ev.observe(&[rain(60.0, t0())], &mut out);
        inputs.seen.insert("rain-01".into(), t0());
        assert!(out.is_empty());
        let s = ev.evaluate(t0(), &inputs, &active);
        assert!(s.is_empty(), "pending, not firing: {s:?}");
        let at = t0() + TimeDelta::minutes(4);
        ev.observe(&[rain(70.0, at)], &mut out);
        inputs.seen.insert("rain-01".into(), at);
        assert!(ev
            .evaluate(
                t0() + TimeDelta::minutes(9) + TimeDelta::seconds(59),
                &inputs,
                &active
            )
            .is_empty());
        let s = ev.evaluate(t0() + TimeDelta::minutes(10), &inputs, &active);
        assert_eq!(s.len(), 1, "{s:?}");
        let Signal::Fire(r) = &s[0] else {
            panic!("{s:?}")
        };
        assert_eq!(r.fingerprint, "rule:mua-lon:rain-01:rain_mm");
        assert_eq!(r.villages, ["na-da"]);
        assert!(
            r.message.contains("70") && r.message.contains("Bản Nà Đa"),
            "{}",
            r.message
        );
        assert!(r.message.starts_with("[Cảnh báo nội bộ"), "{}", r.message);
        apply(&mut active, &s);
        assert!(
            ev.evaluate(t0() + TimeDelta::minutes(11), &inputs, &active)
                .is_empty(),
            "fires once"
        );
        let at = t0() + TimeDelta::minutes(12);
        ev.observe(&[rain(10.0, at)], &mut out);
        inputs.seen.insert("rain-01".into(), at);
        let s = ev.evaluate(at, &inputs, &active);
        assert_eq!(
            s,
            [Signal::Resolve {
                fingerprint: "rule:mua-lon:rain-01:rain_mm".into()
            }]
        );
    }

    /// A condition that stops before its `for` never fires.
    #[test]
    fn a_blip_shorter_than_for_does_not_fire() {
        let mut ev = setup(RAIN);
        let active = Active::new();
        let mut inputs = fake();
        let mut out = Vec::new();
        ev.observe(&[rain(60.0, t0())], &mut out);
        inputs.seen.insert("rain-01".into(), t0());
        assert!(ev.evaluate(t0(), &inputs, &active).is_empty());
        let at = t0() + TimeDelta::minutes(5);
        ev.observe(&[rain(1.0, at)], &mut out);
        inputs.seen.insert("rain-01".into(), at);
        assert!(ev.evaluate(at, &inputs, &active).is_empty());
        let at2 = t0() + TimeDelta::minutes(6);
        ev.observe(&[rain(60.0, at2)], &mut out);
        inputs.seen.insert("rain-01".into(), at2);
        assert!(ev.evaluate(at2, &inputs, &active).is_empty());
        assert!(
            ev.evaluate(t0() + TimeDelta::minutes(12), &inputs, &active)
                .is_empty(),
            "the timer restarted at 6 min"
        );
        assert_eq!(
            ev.evaluate(at2 + TimeDelta::minutes(10), &inputs, &active)
                .len(),
            1
        );
    }

    /// When the sensor falls silent for N × its interval, a firing alert
    /// becomes stale and stays firing; it is never resolved by silence, and
    /// a fresh reading clears the stale mark.
    #[test]
    fn silence_makes_a_firing_alert_stale_never_resolved() {
        let mut ev = setup(RAIN);
        let mut active = Active::new();
        let mut inputs = fake();
        let mut out = Vec::new();
        ev.observe(&[rain(80.0, t0())], &mut out);
        inputs.seen.insert("rain-01".into(), t0());
        ev.evaluate(t0(), &inputs, &active);
        let s = ev.evaluate(t0() + TimeDelta::minutes(10), &inputs, &active);
        apply(&mut active, &s);
        assert_eq!(active.len(), 1);
        // 3 × 5 min without data: stale at 15 min + 1 s.
        assert!(ev
            .evaluate(t0() + TimeDelta::minutes(15), &inputs, &active)
            .is_empty());
        let s = ev.evaluate(
            t0() + TimeDelta::minutes(15) + TimeDelta::seconds(1),
            &inputs,
            &active,
        );
        let fp = "rule:mua-lon:rain-01:rain_mm".to_owned();
        assert_eq!(
            s,
            [Signal::Stale {
                fingerprint: fp.clone(),
                stale: true
            }]
        );
        apply(&mut active, &s);
        assert!(
            ev.evaluate(t0() + TimeDelta::hours(5), &inputs, &active)
                .is_empty(),
            "still firing, stale"
        );
        assert_eq!(active.get(&fp), Some(&true));
        let at = t0() + TimeDelta::hours(5);
        ev.observe(&[rain(90.0, at)], &mut out);
        inputs.seen.insert("rain-01".into(), at);
        let s = ev.evaluate(at, &inputs, &active);
        assert_eq!(
            s,
            [Signal::Stale {
                fingerprint: fp,
                stale: false
            }]
        );
    }

    /// An absence rule fires (marked stale) after N × interval without data
    /// and resolves when data comes back; a device never heard is unknown.
    #[test]
    fn absence_fires_after_n_intervals_and_resolves_when_data_returns() {
        let mut ev = setup(
            r#"
[[alerts.rule]]
id = "mat-du-lieu"
name = "Mất dữ liệu đo mưa"
kind = "absence"
sensor = "rain-01"
interval = "10m"
missed = 2
"#,
        );
        let mut active = Active::new();
        let mut inputs = fake();
        assert!(
            ev.evaluate(t0() + TimeDelta::days(1), &inputs, &active)
                .is_empty(),
            "never heard"
        );
        inputs.seen.insert("rain-01".into(), t0());
        assert!(ev
            .evaluate(t0() + TimeDelta::minutes(20), &inputs, &active)
            .is_empty());
        let s = ev.evaluate(
            t0() + TimeDelta::minutes(20) + TimeDelta::milliseconds(1),
            &inputs,
            &active,
        );
        assert_eq!(s.len(), 2, "{s:?}");
        assert!(matches!(&s[0], Signal::Fire(r) if r.kind == AlertKind::Absence));
        assert!(matches!(&s[1], Signal::Stale { stale: true, .. }));
        apply(&mut active, &s);
        inputs
            .seen
            .insert("rain-01".into(), t0() + TimeDelta::minutes(30));
        let s = ev.evaluate(t0() + TimeDelta::minutes(30), &inputs, &active);
        assert!(matches!(&s[..], [Signal::Resolve { .. }]), "{s:?}");
    }

    /// Camera events of the rule's kinds (and zones) raise at once, with an
    /// end time `resolve_after` later; other kinds and zones do not.
    #[test]
    fn camera_events_raise_by_kind_and_zone() {
        let mut ev = setup(
            r#"
[[alerts.rule]]
id = "xam-nhap"
name = "Xâm nhập kho"
kind = "camera"
events = ["intrusion"]
zones = ["kho"]
resolve_after = "10m"
"#,
        );
        let mk = |kind: &str, zone: Option<&str>| {
            let mut attrs = serde_json::Map::new();
            if let Some(z) = zone {
                attrs.insert("zone".into(), z.into());
            }
            Event {
                source: Source::Camera,
                kind: kind.into(),
                device: Some("cam-01".into()),
                village: Some("na-da".into()),
                ts: t0(),
                received_at: t0(),
                seq: None,
                attrs,
                dedup_key: String::new(),
                retained: false,
            }
        };
        let mut out = Vec::new();
        ev.observe(
            &[
                mk("intrusion", Some("cong")),
                mk("fire", Some("kho")),
                mk("intrusion", None),
            ],
            &mut out,
        );
        assert!(out.is_empty(), "{out:?}");
        ev.observe(&[mk("intrusion", Some("kho"))], &mut out);
        let [Signal::Fire(r)] = &out[..] else {
            panic!("{out:?}")
        };
        assert_eq!(r.fingerprint, "rule:xam-nhap:cam-01:intrusion:kho");
        assert_eq!(r.ends_at, Some(t0() + TimeDelta::minutes(10)));
        assert_eq!(r.kind, AlertKind::Camera);
        assert!(!r.official);
    }

    /// Every speaker cluster of a village down for `for` raises one alert
    /// for the village; one back up resolves it.
    #[test]
    fn a_village_whose_speakers_are_all_offline_fires_after_for() {
        let mut ev = setup(
            r#"
[[alerts.rule]]
id = "loa-mat-ket-noi"
name = "Mất toàn bộ loa"
kind = "group_offline"
class = "speaker"
for = "5m"
"#,
        );
        let mut active = Active::new();
        let mut inputs = fake();
        inputs.avail.insert(
            "na-da".into(),
            Availability {
                up: 0,
                total: 1,
                heard: 0,
            },
        );
        assert!(
            ev.evaluate(t0(), &inputs, &active).is_empty(),
            "never heard"
        );
        inputs.avail.insert(
            "na-da".into(),
            Availability {
                up: 0,
                total: 1,
                heard: 1,
            },
        );
        assert!(ev.evaluate(t0(), &inputs, &active).is_empty());
        let s = ev.evaluate(t0() + TimeDelta::minutes(5), &inputs, &active);
        assert!(
            matches!(&s[..], [Signal::Fire(r)] if r.villages == ["na-da"]),
            "{s:?}"
        );
        apply(&mut active, &s);
        inputs.avail.insert(
            "na-da".into(),
            Availability {
                up: 1,
                total: 1,
                heard: 1,
            },
        );
        let s = ev.evaluate(t0() + TimeDelta::minutes(6), &inputs, &active);
        assert!(matches!(&s[..], [Signal::Resolve { .. }]), "{s:?}");
    }
}
