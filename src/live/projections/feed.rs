//! `feed:{scope}`: the newest events of each scope, newest first.
//!
//! A feed item is the whole list, so it is republished at most every
//! [`FEED_INTERVAL`] (and at every clock tick) with every event since, and
//! an event is serialized only when a published feed still holds it.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{push_serde, Context, LiveValue, Out, Pass, Print, Projection};
use crate::indicators::COMMUNE;
use crate::live::keys::{Family, KeyInfo};
use crate::model::Event;
use crate::state::{Committed, Shared};

/// The family.
pub static FAMILY: Family = Family {
    name: "feed",
    aliases: &[],
    arity: 1,
};

/// Feeds are republished at most this often (and at every clock tick).
pub const FEED_INTERVAL: Duration = Duration::from_millis(200);

/// One event of a feed, serialized when first published.
#[derive(Debug)]
enum Entry {
    Json(Arc<str>),
    /// The `n`th event of a committed batch.
    Pending(Arc<Committed>, usize),
}

#[derive(Debug)]
struct Scope {
    key: Option<Arc<KeyInfo>>,
    /// Newest first: receive time and entry.
    events: VecDeque<(DateTime<Utc>, Entry)>,
    /// Events pushed since start (the fingerprint).
    pushed: u64,
    dirty: bool,
}

/// The feeds projection.
#[derive(Debug)]
pub struct Feed {
    len: usize,
    scopes: HashMap<String, Scope>,
    flushed: Option<Instant>,
}

impl Feed {
    /// One feed per scope, `live.feed_len` events each.
    pub fn new(shared: &Shared) -> Feed {
        let scopes = shared
            .engine
            .read()
            .scopes()
            .iter()
            .map(|s| {
                let feed = Scope {
                    key: None,
                    events: VecDeque::new(),
                    pushed: 0,
                    dirty: false,
                };
                (s.clone(), feed)
            })
            .collect();
        Feed {
            len: shared.config.live.feed_len,
            scopes,
            flushed: None,
        }
    }
}

impl Projection for Feed {
    fn family(&self) -> &'static Family {
        &FAMILY
    }

    fn knows(&self, index: usize, segment: &str) -> bool {
        index == 0 && self.scopes.contains_key(segment)
    }

    fn project(&mut self, cx: &Context<'_>, out: &mut Out) {
        for c in cx.commits {
            for (n, e) in c.events.iter().enumerate() {
                let scope = e.village.as_deref().unwrap_or(COMMUNE);
                let Some(feed) = self.scopes.get_mut(scope) else {
                    continue;
                };
                feed.events
                    .push_front((e.received_at, Entry::Pending(Arc::clone(c), n)));
                feed.events.truncate(self.len);
                feed.pushed += 1;
                feed.dirty = true;
            }
        }
        let due =
            cx.pass != Pass::Commits || self.flushed.is_none_or(|t| t.elapsed() >= FEED_INTERVAL);
        if !due {
            return;
        }
        let mut names: Vec<&String> = self
            .scopes
            .iter()
            .filter(|(_, f)| f.dirty || cx.pass == Pass::Start)
            .map(|(s, _)| s)
            .collect();
        names.sort();
        let names: Vec<String> = names.into_iter().cloned().collect();
        if !names.is_empty() {
            self.flushed = Some(Instant::now());
        }
        for name in names {
            let Some(feed) = self.scopes.get_mut(&name) else {
                continue;
            };
            feed.dirty = false;
            let key = feed
                .key
                .get_or_insert_with(|| out.key(&FAMILY, vec![name.clone()], &name))
                .clone();
            let mut events = Vec::with_capacity(feed.events.len());
            for (_, entry) in feed.events.iter_mut() {
                if let Entry::Pending(c, n) = entry {
                    let json = c.events.get(*n).map_or_else(|| "{}".into(), feed_entry);
                    *entry = Entry::Json(json);
                }
                if let Entry::Json(j) = entry {
                    events.push(Arc::clone(j));
                }
            }
            let value = FeedValue {
                updated_at: feed.events.iter().map(|(at, _)| *at).max(),
                events,
            };
            let print = Print {
                all: feed.pushed,
                fixed: 0,
            };
            out.offer(&key, print, value);
        }
    }
}

/// A feed's value: `{"events":[…]}`.
#[derive(Debug)]
pub struct FeedValue {
    updated_at: Option<DateTime<Utc>>,
    events: Vec<Arc<str>>,
}

impl LiveValue for FeedValue {
    /// The newest event's receive time.
    fn updated_at(&self) -> Option<DateTime<Utc>> {
        self.updated_at
    }

    fn write_whole(&self, out: &mut String) {
        out.push_str("{\"events\":[");
        for (i, e) in self.events.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(e);
        }
        out.push_str("]}");
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
    let mut out = String::with_capacity(256);
    push_serde(&mut out, &entry);
    out.into()
}
