//! Projections: what the live stream shows, one module per key family.
//!
//! A projection turns committed journal batches and clock ticks into keyed
//! values. It declares its key [`Family`] and says which literal segments
//! exist (so a subscription is checked without a central list), keeps
//! whatever state it needs (a feed's newest events, a dead-letter summary),
//! and offers values to the hub through [`Out`]. The hub owns what is
//! common: interning keys, comparing fingerprints with what was last
//! published, numbering steps, the ring and the resume history.
//!
//! Adding a family is one new module here and one line in [`all`].

pub mod alerts;
pub mod broadcasts;
pub mod dead_letters;
pub mod devices;
pub mod feed;
pub mod indicators;
pub mod warnings;

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::keys::{key_info, Family, KeyInfo};
use crate::state::{Committed, Shared, View};

/// Every projection of the live stream, in the order their keys are first
/// interned (snapshots list keys in that order).
pub fn all(shared: &Shared) -> Vec<Box<dyn Projection>> {
    vec![
        Box::new(indicators::Indicators::new(shared)),
        Box::new(devices::Devices::new(shared)),
        Box::new(feed::Feed::new(shared)),
        Box::new(dead_letters::DeadLetters::default()),
        Box::new(warnings::Warnings::new(shared)),
        Box::new(broadcasts::Broadcasts::default()),
        Box::new(alerts::Alerts::default()),
    ]
}

/// Why the hub runs a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    /// The hub starts: offer every key (nothing is published).
    Start,
    /// The hub fell behind the journal: offer everything that may have
    /// changed without looking at commits.
    Full,
    /// Committed batches (`Context::commits`).
    Commits,
    /// The clock moved (every `live.tick_ms`).
    Tick,
}

/// What a projection sees in one step: one read model ([`View`], the
/// engine and device tracker read-locked for the whole step), so every
/// projection sees the same state.
pub struct Context<'a> {
    /// Why the step runs.
    pub pass: Pass,
    /// The batches committed since the last step (empty unless `Commits`).
    pub commits: &'a [Arc<Committed>],
    /// When the values are computed.
    pub now: DateTime<Utc>,
    /// Config, registry, metrics.
    pub shared: &'a Shared,
    /// The site's state at `now`.
    pub view: &'a View<'a>,
}

/// One family of live values (see the module docs).
pub trait Projection: Send + Debug {
    /// The family of the keys it produces.
    fn family(&self) -> &'static Family;
    /// Whether `segment` at position `index` (after the family name) of one
    /// of its keys names something that exists.
    fn knows(&self, index: usize, segment: &str) -> bool;
    /// Offer the values this step may have changed.
    fn project(&mut self, cx: &Context<'_>, out: &mut Out);
}

/// A value under a key, as the hub keeps and sends it.
pub trait LiveValue: Send + Sync + Debug + 'static {
    /// When the data behind the value last changed (the item's
    /// `updated_at`).
    fn updated_at(&self) -> Option<DateTime<Utc>>;
    /// The whole value as JSON (snapshots, and updates whose static part
    /// changed).
    fn write_whole(&self, out: &mut String);
    /// Only the fields that can change between two steps, as a JSON object
    /// (updates). By default the whole value.
    fn write_change(&self, out: &mut String) {
        self.write_whole(out);
    }
}

/// Fingerprints of a value: `all` of what matters to a screen, `fixed` of
/// the part an update leaves out (names, units, targets, window bounds).
/// When `fixed` changes, the update carries the whole value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Print {
    /// Everything a screen shows.
    pub all: u64,
    /// The static part.
    pub fixed: u64,
}

/// A value that changed in this step.
#[derive(Debug)]
pub struct Change {
    /// Its key.
    pub key: Arc<KeyInfo>,
    /// The new value.
    pub value: Box<dyn LiveValue>,
    /// Whether the static part changed (or the key is new).
    pub whole: bool,
}

/// The hub's book of keys and of what was last published under each: the
/// projections intern keys and offer values through it.
#[derive(Debug, Default)]
pub struct Out {
    keys: HashMap<String, Arc<KeyInfo>>,
    /// By key id: the fingerprints last offered.
    prints: Vec<Option<Print>>,
    changed: Vec<Change>,
}

impl Out {
    /// The interned key `{family}:{segments…}` of `scope`.
    pub fn key(
        &mut self,
        family: &'static Family,
        segments: Vec<String>,
        scope: &str,
    ) -> Arc<KeyInfo> {
        let id = u32::try_from(self.keys.len()).unwrap_or(u32::MAX);
        let info = key_info(id, family, segments, scope.to_owned());
        if let Some(k) = self.keys.get(&info.name) {
            return Arc::clone(k);
        }
        let info = Arc::new(info);
        self.keys.insert(info.name.clone(), Arc::clone(&info));
        info
    }

    /// Whether `key` was last offered with this `all` fingerprint.
    pub fn unchanged(&self, key: &KeyInfo, all: u64) -> bool {
        self.prints
            .get(key.id as usize)
            .and_then(|p| p.as_ref())
            .is_some_and(|p| p.all == all)
    }

    /// Offer a value: kept (and published) when its fingerprint differs
    /// from the last one offered under `key`. Returns whether it changed.
    pub fn offer<V: LiveValue>(&mut self, key: &Arc<KeyInfo>, print: Print, value: V) -> bool {
        let i = key.id as usize;
        if i >= self.prints.len() {
            self.prints.resize(i + 1, None);
        }
        let whole = match &self.prints[i] {
            Some(p) if p.all == print.all => return false,
            Some(p) => p.fixed != print.fixed,
            None => true,
        };
        self.prints[i] = Some(print);
        self.changed.push(Change {
            key: Arc::clone(key),
            value: Box::new(value),
            whole,
        });
        true
    }

    /// The values changed since the last call.
    pub(crate) fn take(&mut self) -> Vec<Change> {
        std::mem::take(&mut self.changed)
    }
}

/// Append `s` as a JSON string.
pub fn push_json_str(out: &mut String, s: &str) {
    let needs_escape = s.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\');
    if needs_escape {
        // Serializing a &str cannot fail.
        out.push_str(&serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into()));
    } else {
        out.push('"');
        out.push_str(s);
        out.push('"');
    }
}

/// Append a number as JSON (`null` when not finite): the shortest form
/// that reads back as the same `f64`, as serde_json writes it.
pub fn push_f64(out: &mut String, x: f64) {
    if x.is_finite() {
        let mut buf = ryu::Buffer::new();
        out.push_str(buf.format_finite(x));
    } else {
        out.push_str("null");
    }
}

/// Append an instant as a JSON string, RFC 3339 UTC with milliseconds.
pub fn push_time(out: &mut String, t: Option<DateTime<Utc>>) {
    match t {
        Some(t) => {
            out.push('"');
            out.push_str(&t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
            out.push('"');
        }
        None => out.push_str("null"),
    }
}

/// Append any serializable value as JSON.
pub fn push_serde<T: serde::Serialize + ?Sized>(out: &mut String, value: &T) {
    match serde_json::to_string(value) {
        Ok(s) => out.push_str(&s),
        Err(e) => {
            tracing::error!(error = %e, "live value could not be serialized");
            out.push_str("null");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_strings_are_written_as_serde_json_would() {
        for x in [0.0, 1.0, -2.5, 1234567.0, 0.1 + 0.2, 1.5e9] {
            let mut s = String::new();
            push_f64(&mut s, x);
            assert_eq!(s, serde_json::to_string(&x).unwrap(), "{x}");
        }
        // Exponents may be spelled differently; the number is the same.
        for x in [1e21, 5e-324, -1.7976931348623157e308] {
            let mut s = String::new();
            push_f64(&mut s, x);
            assert_eq!(serde_json::from_str::<f64>(&s).unwrap(), x, "{s}");
        }
        let mut s = String::new();
        push_f64(&mut s, f64::NAN);
        assert_eq!(s, "null");
        for t in [
            "plain",
            "quo\"te",
            "back\\slash",
            "new\nline",
            "Bản Sìn Chải",
        ] {
            let mut s = String::new();
            push_json_str(&mut s, t);
            assert_eq!(s, serde_json::to_string(t).unwrap());
        }
    }

    #[derive(Debug)]
    struct V(u64);

    impl LiveValue for V {
        fn updated_at(&self) -> Option<DateTime<Utc>> {
            None
        }
        fn write_whole(&self, out: &mut String) {
            out.push_str(&format!("{{\"whole\":{}}}", self.0));
        }
        fn write_change(&self, out: &mut String) {
            out.push_str(&format!("{{\"v\":{}}}", self.0));
        }
    }

    static FAMILY: Family = Family {
        name: "test",
        aliases: &[],
        arity: 1,
    };

    #[test]
    fn the_book_keeps_what_changed_and_says_when_it_must_go_whole() {
        let mut out = Out::default();
        let a = out.key(&FAMILY, vec!["a".into()], "commune");
        let again = out.key(&FAMILY, vec!["a".into()], "commune");
        assert!(Arc::ptr_eq(&a, &again), "a key is interned once");
        let b = out.key(&FAMILY, vec!["b".into()], "ban-a");
        assert_eq!((a.id, b.id), (0, 1));
        assert_eq!(b.name, "test:b");

        let p = |all, fixed| Print { all, fixed };
        assert!(out.offer(&a, p(1, 7), V(1)), "a new key");
        assert!(!out.offer(&a, p(1, 7), V(1)), "nothing changed");
        assert!(out.unchanged(&a, 1) && !out.unchanged(&b, 1));
        assert!(out.offer(&a, p(2, 7), V(2)), "a changing field");
        assert!(out.offer(&a, p(3, 8), V(3)), "a static field");
        let got: Vec<(u32, bool)> = out.take().iter().map(|c| (c.key.id, c.whole)).collect();
        assert_eq!(got, [(0, true), (0, false), (0, true)]);
        assert!(out.take().is_empty());
    }
}
