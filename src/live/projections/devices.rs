//! `device:{class}:{id}`: every registered device, and every unregistered
//! one that published.

use std::collections::{HashMap, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::{
    push_json_str, push_serde, push_time, Context, LiveValue, Out, Pass, Print, Projection,
};
use crate::devices::{class_of, DeviceView};
use crate::indicators::COMMUNE;
use crate::live::keys::{Family, KeyInfo};
use crate::model::DeviceClass;
use crate::state::Shared;

/// The family.
pub static FAMILY: Family = Family {
    name: "device",
    aliases: &["devices"],
    arity: 2,
};

/// The devices projection.
#[derive(Debug)]
pub struct Devices {
    /// Ids of every device published so far (any class).
    known: HashSet<String>,
    /// Interned keys by class and id.
    keys: HashMap<DeviceClass, HashMap<String, Arc<KeyInfo>>>,
}

impl Devices {
    /// Over the device tracker.
    pub fn new(_shared: &Shared) -> Devices {
        Devices {
            known: HashSet::new(),
            keys: HashMap::new(),
        }
    }
}

impl Projection for Devices {
    fn family(&self) -> &'static Family {
        &FAMILY
    }

    fn knows(&self, index: usize, segment: &str) -> bool {
        match index {
            0 => DeviceClass::parse(segment).is_some(),
            1 => self.known.contains(segment),
            _ => false,
        }
    }

    fn project(&mut self, cx: &Context<'_>, out: &mut Out) {
        let views: Vec<DeviceView> = if cx.pass == Pass::Commits {
            let mut touched: HashSet<(DeviceClass, &str)> = HashSet::new();
            for c in cx.commits {
                for e in &c.events {
                    if let (Some(class), Some(id)) = (class_of(e.source), &e.device) {
                        touched.insert((class, id));
                    }
                }
                for d in &c.dead {
                    if let (Some(class), Some(id)) = (d.source.and_then(class_of), &d.device) {
                        touched.insert((class, id));
                    }
                }
            }
            let mut touched: Vec<(DeviceClass, &str)> = touched.into_iter().collect();
            touched.sort();
            touched
                .into_iter()
                .map(|(class, id)| cx.view.device(class, id))
                .collect()
        } else {
            cx.view.device_list()
        };
        for d in views {
            let by_id = self.keys.entry(d.class).or_default();
            let key = match by_id.get(&d.id) {
                Some(k) => Arc::clone(k),
                None => {
                    let scope = d.village.as_deref().unwrap_or(COMMUNE);
                    let segments = vec![d.class.as_str().to_owned(), d.id.clone()];
                    let k = out.key(&FAMILY, segments, scope);
                    by_id.insert(d.id.clone(), Arc::clone(&k));
                    k
                }
            };
            let p = print(&d);
            if out.unchanged(&key, p.all) {
                continue;
            }
            self.known.insert(d.id.clone());
            out.offer(&key, p, d);
        }
    }
}

impl LiveValue for DeviceView {
    fn updated_at(&self) -> Option<DateTime<Utc>> {
        self.last_seen
    }

    fn write_whole(&self, out: &mut String) {
        push_serde(out, self);
    }

    /// `{"state","reported_state","stale","last_seen","detail"}`.
    fn write_change(&self, out: &mut String) {
        out.push_str("{\"state\":");
        push_serde(out, &self.state);
        out.push_str(",\"reported_state\":");
        push_serde(out, &self.reported_state);
        out.push_str(if self.stale {
            ",\"stale\":true"
        } else {
            ",\"stale\":false"
        });
        out.push_str(",\"last_seen\":");
        push_time(out, self.last_seen);
        out.push_str(",\"detail\":");
        match &self.detail {
            Some(d) => push_json_str(out, d),
            None => out.push_str("null"),
        }
        out.push('}');
    }
}

fn print(d: &DeviceView) -> Print {
    let mut fixed = DefaultHasher::new();
    d.name.hash(&mut fixed);
    d.village.hash(&mut fixed);
    d.registered.hash(&mut fixed);
    d.reporting.hash(&mut fixed);
    let fixed = fixed.finish();
    let mut h = DefaultHasher::new();
    fixed.hash(&mut h);
    d.state.as_str().hash(&mut h);
    d.reported_state.as_str().hash(&mut h);
    d.stale.hash(&mut h);
    d.last_seen.hash(&mut h);
    d.detail.hash(&mut h);
    Print {
        all: h.finish(),
        fixed,
    }
}
