//! `indicator:{id}:{window}:{scope}`: every indicator in every scope and
//! window, recomputed only where a batch or the clock can have moved it.

use std::collections::HashSet;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::{push_f64, push_serde, Context, LiveValue, Out, Pass, Print, Projection};
use crate::config::IndicatorKind;
use crate::devices::class_of;
use crate::indicators::{IndicatorValue, Status, Touched, Window};
use crate::live::keys::{Family, KeyInfo};
use crate::model::DeviceClass;
use crate::state::Shared;

/// The family.
pub static FAMILY: Family = Family {
    name: "indicator",
    aliases: &["indicators"],
    arity: 3,
};

/// Where the clock was at the last tick.
#[derive(Debug, Default, Clone, Copy)]
struct Clock {
    minute: i64,
    today_from: Option<DateTime<Utc>>,
    month_from: Option<DateTime<Utc>>,
}

/// The indicators projection.
#[derive(Debug)]
pub struct Indicators {
    ids: HashSet<String>,
    scopes: HashSet<String>,
    /// Keys by `(indicator × scopes + scope) × 3 + window`, interned at the
    /// first step.
    keys: Vec<Arc<KeyInfo>>,
    clock: Clock,
}

impl Indicators {
    /// Over the engine's indicators and scopes.
    pub fn new(shared: &Shared) -> Indicators {
        let engine = shared.engine.read();
        Indicators {
            ids: engine.ids().map(str::to_owned).collect(),
            scopes: engine.scopes().iter().cloned().collect(),
            keys: Vec::new(),
            clock: Clock::default(),
        }
    }
}

impl Projection for Indicators {
    fn family(&self) -> &'static Family {
        &FAMILY
    }

    fn knows(&self, index: usize, segment: &str) -> bool {
        match index {
            0 => self.ids.contains(segment),
            1 => Window::parse(segment).is_some(),
            2 => self.scopes.contains(segment),
            _ => false,
        }
    }

    fn project(&mut self, cx: &Context<'_>, out: &mut Out) {
        let engine = cx.view.engine();
        let now = cx.now;
        let nscopes = engine.scopes().len();
        if self.keys.is_empty() {
            for id in engine.ids() {
                for scope in engine.scopes() {
                    for w in Window::ALL {
                        let segments = vec![id.to_owned(), w.as_str().to_owned(), scope.clone()];
                        self.keys.push(out.key(&FAMILY, segments, scope));
                    }
                }
            }
        }
        let frames = Window::ALL.map(|w| engine.frame(w, now));
        let all_scopes = |specs: &[usize]| -> Vec<(usize, usize)> {
            specs
                .iter()
                .flat_map(|&si| (0..nscopes).map(move |s| (si, s)))
                .collect()
        };
        let all: Vec<usize> = (0..engine.spec_count()).collect();
        // (indicator, scope) pairs per window: today, 24h, month.
        let pairs: [Vec<(usize, usize)>; 3] = match cx.pass {
            Pass::Start | Pass::Full => {
                let every = all_scopes(&all);
                [every.clone(), every.clone(), every]
            }
            Pass::Commits => {
                let mut touched = Touched::default();
                let mut devices: HashSet<(DeviceClass, &str)> = HashSet::new();
                for c in cx.commits {
                    touched.counters.extend(&c.touched.counters);
                    touched.latest.extend(&c.touched.latest);
                    touched.fresh.extend(&c.touched.fresh);
                    for e in &c.events {
                        if let (Some(class), Some(id)) = (class_of(e.source), &e.device) {
                            devices.insert((class, id));
                        }
                    }
                    for d in &c.dead {
                        if let (Some(class), Some(id)) = (d.source.and_then(class_of), &d.device) {
                            devices.insert((class, id));
                        }
                    }
                }
                // Availability of the registered devices' classes, commune
                // wide and in their village.
                let registry = &cx.shared.registry;
                let mut classes: Vec<(DeviceClass, Option<usize>)> = devices
                    .into_iter()
                    .filter_map(|(class, id)| registry.device(class, id))
                    .map(|d| {
                        let village = d.village.as_deref().and_then(|v| engine.scope_index(v));
                        (d.class, village)
                    })
                    .collect();
                classes.sort();
                classes.dedup();
                // Several batches touch the same counters: compute each
                // value once.
                touched.counters.sort_unstable();
                touched.counters.dedup();
                touched.latest.sort_unstable();
                touched.latest.dedup();
                touched.fresh.sort_unstable();
                touched.fresh.dedup();
                let mut affected = engine.affected(&touched, &classes);
                affected.sort_unstable();
                affected.dedup();
                [affected.clone(), affected.clone(), affected]
            }
            Pass::Tick => {
                let clocked = all_scopes(&engine.clock_driven());
                let mut pairs = [clocked.clone(), clocked.clone(), clocked];
                let minute = now.timestamp().div_euclid(60);
                if minute != self.clock.minute {
                    // The 24h window slides a minute bucket.
                    self.clock.minute = minute;
                    pairs[1] = all_scopes(&all);
                }
                if self.clock.today_from != Some(frames[0].from) {
                    self.clock.today_from = Some(frames[0].from);
                    pairs[0] = all_scopes(&all);
                }
                if self.clock.month_from != Some(frames[2].from) {
                    self.clock.month_from = Some(frames[2].from);
                    pairs[2] = all_scopes(&all);
                }
                pairs
            }
        };
        for (wi, frame) in frames.iter().enumerate() {
            for &(si, scope) in &pairs[wi] {
                let Some(key) = self.keys.get((si * nscopes + scope) * 3 + wi) else {
                    continue;
                };
                let v = cx.view.indicator(si, scope, frame);
                out.offer(key, print(&v), v);
            }
        }
    }
}

impl LiveValue for IndicatorValue {
    fn updated_at(&self) -> Option<DateTime<Utc>> {
        self.updated_at
    }

    fn write_whole(&self, out: &mut String) {
        push_serde(out, self);
    }

    /// `{"value","status"}`, with `numerator` and `denominator` for the
    /// kinds that have them; `updated_at` is the item's.
    fn write_change(&self, out: &mut String) {
        out.push_str("{\"value\":");
        match self.value {
            Some(x) => push_f64(out, x),
            None => out.push_str("null"),
        }
        out.push_str(match self.status {
            Status::Met => ",\"status\":\"met\"",
            Status::NotMet => ",\"status\":\"not_met\"",
            Status::NoData => ",\"status\":\"no_data\"",
        });
        if let Some(n) = self.numerator {
            out.push_str(",\"numerator\":");
            push_f64(out, n);
        }
        if let Some(d) = self.denominator {
            out.push_str(",\"denominator\":");
            push_f64(out, d);
        }
        out.push('}');
    }
}

/// What makes a value worth sending, and its static part.
fn print(v: &IndicatorValue) -> Print {
    let mut fixed = DefaultHasher::new();
    // The 24h window's bounds move every instant; its value moves when a
    // minute bucket leaves it, which the value itself shows.
    if v.window != Window::Last24h {
        v.from.hash(&mut fixed);
        v.to.hash(&mut fixed);
    }
    v.period.hash(&mut fixed);
    let fixed = fixed.finish();
    let mut h = DefaultHasher::new();
    fixed.hash(&mut h);
    // A freshness value is an age: it changes every instant. Its status
    // and the time of the data behind it are what changes the picture.
    if v.kind != IndicatorKind::Freshness {
        v.value.map(f64::to_bits).hash(&mut h);
    }
    v.numerator.map(f64::to_bits).hash(&mut h);
    v.denominator.map(f64::to_bits).hash(&mut h);
    (v.status as u8).hash(&mut h);
    // Availability is recomputed at every look: its updated_at is "now".
    if v.kind != IndicatorKind::Availability {
        v.updated_at.hash(&mut h);
    }
    Print {
        all: h.finish(),
        fixed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::live::keys::key_info;
    use crate::live::protocol::{change_item, whole_item};
    use crate::vocab::Target;
    use chrono::TimeZone;

    fn ratio() -> IndicatorValue {
        let t = |h| Utc.with_ymd_and_hms(2026, 11, 23, h, 0, 0).unwrap();
        IndicatorValue {
            id: "dossier_online_ratio".into(),
            name: "Tỷ lệ hồ sơ trực tuyến".into(),
            kind: IndicatorKind::Ratio,
            window: Window::Month,
            scope: "commune".into(),
            value: Some(94.5),
            unit: "%".into(),
            numerator: Some(142.0),
            denominator: Some(150.0),
            target: Target::parse(">= 90").ok(),
            status: Status::Met,
            from: t(0),
            to: t(17),
            period: Some("2026-11".into()),
            updated_at: Some(t(10) + chrono::Duration::nanoseconds(402_123_456)),
        }
    }

    #[test]
    fn a_change_carries_only_what_changes_and_is_a_fraction_of_the_whole() {
        let v = ratio();
        let key = key_info(
            0,
            &FAMILY,
            vec![
                "dossier_online_ratio".into(),
                "month".into(),
                "commune".into(),
            ],
            "commune".into(),
        );
        let whole: serde_json::Value = serde_json::from_str(&whole_item(&key, &v)).unwrap();
        assert_eq!(whole["scope"], "commune");
        assert_eq!(whole["value"]["name"], "Tỷ lệ hồ sơ trực tuyến");
        assert_eq!(whole["value"]["period"], "2026-11");
        let text = change_item(&key, &v);
        let change: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            change,
            serde_json::json!({
                "key": "indicator:dossier_online_ratio:month:commune",
                "updated_at": "2026-11-23T10:00:00.402Z",
                "value": {"value": 94.5, "status": "met",
                          "numerator": 142.0, "denominator": 150.0}
            })
        );
        let whole_len = whole_item(&key, &v).len();
        assert!(
            text.len() * 2 < whole_len,
            "change {} bytes, whole {whole_len}",
            text.len()
        );
    }

    #[test]
    fn only_bounds_and_period_are_static() {
        let a = ratio();
        let mut b = ratio();
        b.value = Some(95.0);
        b.numerator = Some(143.0);
        assert_ne!(print(&a).all, print(&b).all);
        assert_eq!(print(&a).fixed, print(&b).fixed, "a new value is a change");
        b.from += chrono::Duration::days(30);
        b.period = Some("2026-12".into());
        assert_ne!(print(&a).fixed, print(&b).fixed, "a new period goes whole");
        let mut d = ratio();
        d.window = Window::Last24h;
        let mut e = d.clone();
        e.from += chrono::Duration::minutes(1);
        e.to += chrono::Duration::minutes(1);
        assert_eq!(
            print(&d),
            print(&e),
            "the 24h window's bounds move all the time"
        );
    }
}
