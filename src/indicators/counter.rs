//! Compiled event filters ("counters"): the building blocks of count and
//! ratio indicators. Identical filters used by several indicators share one
//! counter, identified by a hash of its definition so that persisted rollups
//! can be matched to the config that produced them.

use serde_json::Value;

use crate::config::Filter;
use crate::model::{Event, Source};

/// A compiled filter.
#[derive(Debug, Clone)]
pub struct Matcher {
    source: Option<Source>,
    events: Vec<String>,
    conditions: Vec<(String, Vec<Value>)>,
    sum: Option<String>,
    devices: Vec<String>,
}

/// What a counter counts.
#[derive(Debug, Clone)]
pub enum CounterKind {
    /// Matching events (or the sum of a field over them).
    Events(Matcher),
    /// Dead letters.
    DeadLetters,
}

/// A counter: a stable key and what it counts.
#[derive(Debug, Clone)]
pub struct Counter {
    /// Short stable hash of the definition (the rollup table key).
    pub key: String,
    /// What it counts.
    pub kind: CounterKind,
}

fn to_json(v: &toml::Value) -> Value {
    match v {
        toml::Value::String(s) => Value::from(s.as_str()),
        toml::Value::Integer(i) => Value::from(*i),
        toml::Value::Float(f) => Value::from(*f),
        toml::Value::Boolean(b) => Value::from(*b),
        other => Value::from(other.to_string()),
    }
}

impl Matcher {
    /// Compile a typed config filter; also returns its canonical
    /// signature (the same text for the same definition as before filters
    /// were typed at load, so persisted rollups still match).
    pub fn compile(f: &Filter) -> (Matcher, String) {
        let conditions: Vec<(String, Vec<Value>)> = f
            .conditions
            .iter()
            .map(|(k, values)| (k.clone(), values.iter().map(to_json).collect()))
            .collect();
        let m = Matcher {
            source: f.source,
            events: f.events.clone(),
            conditions,
            sum: f.sum.clone(),
            devices: f.devices.clone(),
        };
        let signature = serde_json::json!({
            "source": m.source.map(Source::as_str),
            "event": m.events,
            "where": m.conditions,
            "sum": m.sum,
            "devices": m.devices,
        })
        .to_string();
        (m, signature)
    }
}

impl Counter {
    /// Compile a config filter into a counter.
    pub fn from_filter(f: &Filter) -> Counter {
        let (m, signature) = Matcher::compile(f);
        Counter {
            key: short_hash(&signature),
            kind: CounterKind::Events(m),
        }
    }

    /// The dead-letter counter.
    pub fn dead_letters() -> Counter {
        Counter {
            key: "dead_letters".into(),
            kind: CounterKind::DeadLetters,
        }
    }
}

fn short_hash(s: &str) -> String {
    let h = blake3::hash(s.as_bytes());
    h.to_hex().as_str()[..16].to_string()
}

fn value_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

impl Matcher {
    /// The amount `e` contributes (1, or the `sum` field), or `None` when it
    /// does not match.
    pub fn amount(&self, e: &Event) -> Option<f64> {
        if !self.matches(e) {
            return None;
        }
        match &self.sum {
            None => Some(1.0),
            Some(field) => e.attr_f64(field),
        }
    }

    /// The producer family the filter is limited to.
    pub fn source(&self) -> Option<Source> {
        self.source
    }

    /// The device ids the filter is limited to (empty: any device).
    pub fn devices(&self) -> &[String] {
        &self.devices
    }

    /// Whether the event passes the filter.
    pub fn matches(&self, e: &Event) -> bool {
        if self.source.is_some_and(|s| e.source != s) {
            return false;
        }
        if !self.events.is_empty() && !self.events.contains(&e.kind) {
            return false;
        }
        if !self.devices.is_empty() {
            let Some(d) = e.device.as_deref() else {
                return false;
            };
            if self
                .devices
                .binary_search_by(|x| x.as_str().cmp(d))
                .is_err()
            {
                return false;
            }
        }
        self.conditions.iter().all(|(attr, allowed)| {
            e.attrs
                .get(attr)
                .is_some_and(|v| allowed.iter().any(|a| value_eq(a, v)))
        })
    }
}
