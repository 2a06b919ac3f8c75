//! `warnings`: the official warnings (CAP bulletins) in force, as one
//! list for the whole commune (docs/PROTOCOL.md §7.8).
//!
//! Fed by the warnings each committed batch changed
//! (`state::Committed::warnings`, as `warnings::WarningView`s): a warning
//! that is `active` or `not_for_commune` is listed, one that is `updated`
//! (replaced by a later `Update`), `cancelled` or `expired` leaves the
//! list. Each listed warning carries the id of its chain's first bulletin
//! (`chain`, the fingerprint of the alert it raises), found by following
//! `supersedes`. A warning whose `expires` has passed leaves the list at
//! the next clock tick even before the store marks it expired.
//!
//! On a restart the warnings in force are read back from the store
//! (`server::open_state` → `Shared::warnings_at_start`).
//!
//! The list is small (a commune has a handful of warnings in force), so
//! the value is always sent whole; it is bounded all the same: at most
//! [`MAX_LISTED`] warnings are kept, those not for the commune and the
//! oldest dropped first.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{Context, LiveValue, Out, Pass, Print, Projection};
use crate::indicators::COMMUNE;
use crate::live::keys::{Family, KeyInfo};
use crate::state::Shared;
use crate::vocab::{Hazard, RiskLevel};
use crate::warnings::{WarningState, WarningView};

/// The family.
pub static FAMILY: Family = Family {
    name: "warnings",
    aliases: &["warning"],
    arity: 0,
};

/// Most warnings listed.
pub const MAX_LISTED: usize = 100;

/// Most ended warnings whose chain is remembered (so a later `Update` of
/// a replaced bulletin still finds its chain).
const MAX_ENDED: usize = 1000;

/// One listed warning.
#[derive(Debug, Clone)]
struct Entry {
    view: WarningView,
    chain: String,
    received_at: DateTime<Utc>,
}

/// The warnings projection.
#[derive(Debug)]
pub struct Warnings {
    key: Option<Arc<KeyInfo>>,
    /// Listed warnings by id.
    listed: HashMap<String, Entry>,
    /// Chains of warnings that left the list, newest last.
    ended: VecDeque<(String, String)>,
    ended_index: HashMap<String, String>,
    /// Bumped on every change (the fingerprint).
    version: u64,
    /// When the list last changed.
    changed_at: Option<DateTime<Utc>>,
}

impl Warnings {
    /// The warnings in force when the process started
    /// (`Shared::warnings_at_start`, read from the store), then those the
    /// commits change.
    pub fn new(shared: &Shared) -> Warnings {
        let mut w = Warnings {
            key: None,
            listed: HashMap::new(),
            ended: VecDeque::new(),
            ended_index: HashMap::new(),
            version: 0,
            changed_at: None,
        };
        let at_start = std::mem::take(&mut *shared.warnings_at_start.lock());
        for f in at_start {
            w.changed_at = w.changed_at.max(Some(f.received_at));
            w.listed.insert(
                f.view.id.clone(),
                Entry {
                    view: f.view,
                    chain: f.chain,
                    received_at: f.received_at,
                },
            );
        }
        w.bound();
        w
    }

    fn chain_of(&self, view: &WarningView) -> String {
        if let Some(e) = self.listed.get(&view.id) {
            return e.chain.clone();
        }
        if let Some(c) = self.ended_index.get(&view.id) {
            return c.clone();
        }
        match &view.supersedes {
            Some(prev) => self
                .listed
                .get(prev)
                .map(|e| e.chain.clone())
                .or_else(|| self.ended_index.get(prev).cloned())
                .unwrap_or_else(|| prev.clone()),
            None => view.id.clone(),
        }
    }

    fn remember_ended(&mut self, id: String, chain: String) {
        if self.ended_index.contains_key(&id) {
            return;
        }
        self.ended_index.insert(id.clone(), chain.clone());
        self.ended.push_back((id, chain));
        while self.ended.len() > MAX_ENDED {
            if let Some((old, _)) = self.ended.pop_front() {
                self.ended_index.remove(&old);
            }
        }
    }

    /// Take in one changed warning; whether the list changed.
    fn apply(&mut self, view: &WarningView, at: DateTime<Utc>) -> bool {
        let chain = self.chain_of(view);
        let listed = matches!(
            view.state,
            WarningState::Active | WarningState::NotForCommune
        );
        if !listed {
            self.listed.remove(&view.id);
            self.remember_ended(view.id.clone(), chain);
            return true;
        }
        if self.listed.get(&view.id).is_some_and(|e| e.view == *view) {
            return false;
        }
        let received_at = self.listed.get(&view.id).map_or(at, |e| e.received_at);
        self.listed.insert(
            view.id.clone(),
            Entry {
                view: view.clone(),
                chain,
                received_at,
            },
        );
        self.bound();
        true
    }

    /// Keep at most [`MAX_LISTED`]: drop those not for the commune, then
    /// the oldest.
    fn bound(&mut self) {
        while self.listed.len() > MAX_LISTED {
            let victim = self
                .listed
                .values()
                .min_by_key(|e| (e.view.state == WarningState::Active, e.view.sent))
                .map(|e| (e.view.id.clone(), e.chain.clone()));
            match victim {
                Some((id, chain)) => {
                    self.listed.remove(&id);
                    self.remember_ended(id, chain);
                }
                None => break,
            }
        }
    }

    /// Drop the warnings whose `expires` is past; whether any was.
    fn expire(&mut self, now: DateTime<Utc>) -> bool {
        let gone: Vec<(String, String)> = self
            .listed
            .values()
            .filter(|e| e.view.expires.is_some_and(|x| x.with_timezone(&Utc) <= now))
            .map(|e| (e.view.id.clone(), e.chain.clone()))
            .collect();
        let any = !gone.is_empty();
        for (id, chain) in gone {
            self.listed.remove(&id);
            self.remember_ended(id, chain);
        }
        any
    }

    /// The value: active first, highest level first, newest first.
    fn value(&self) -> WarningList {
        let mut list: Vec<&Entry> = self.listed.values().collect();
        list.sort_by(|a, b| {
            let active = |e: &Entry| e.view.state == WarningState::Active;
            active(b)
                .cmp(&active(a))
                .then(b.view.level.cmp(&a.view.level))
                .then(b.view.sent.cmp(&a.view.sent))
                .then(a.view.id.cmp(&b.view.id))
        });
        WarningList {
            updated_at: self.changed_at,
            active_by_level: self.active_by_level(),
            warnings: list.into_iter().map(Item::from).collect(),
        }
    }

    /// Active warnings (for the commune) by risk level: `"1"`–`"5"`, and
    /// `"none"` for those without a level; only levels with warnings.
    fn active_by_level(&self) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for e in self
            .listed
            .values()
            .filter(|e| e.view.state == WarningState::Active)
        {
            let k = e
                .view
                .level
                .map_or_else(|| "none".to_owned(), |l| l.get().to_string());
            *out.entry(k).or_insert(0) += 1;
        }
        out
    }

    /// The same on `/metrics` (`ioc_warnings_active{level}`, every level).
    fn publish_metrics(&self, shared: &Shared) {
        let by = self.active_by_level();
        for level in ["1", "2", "3", "4", "5", "none"] {
            let n = by.get(level).copied().unwrap_or(0);
            shared
                .metrics
                .warnings_active
                .get_or_create(&crate::metrics::LevelLabel {
                    level: level.into(),
                })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }
}

impl Projection for Warnings {
    fn family(&self) -> &'static Family {
        &FAMILY
    }

    fn knows(&self, _index: usize, _segment: &str) -> bool {
        false
    }

    fn project(&mut self, cx: &Context<'_>, out: &mut Out) {
        let mut changed = false;
        for c in cx.commits {
            for w in &c.warnings {
                if self.apply(w, c.at) {
                    changed = true;
                    self.changed_at = Some(c.at);
                }
            }
        }
        if cx.pass != Pass::Commits && self.expire(cx.now) {
            changed = true;
            self.changed_at = Some(cx.now);
        }
        if changed {
            self.version += 1;
        } else if cx.pass != Pass::Start {
            return;
        }
        self.publish_metrics(cx.shared);
        let key = self
            .key
            .get_or_insert_with(|| out.key(&FAMILY, Vec::new(), COMMUNE))
            .clone();
        let print = Print {
            all: self.version,
            fixed: 0,
        };
        if out.unchanged(&key, print.all) {
            return;
        }
        out.offer(&key, print, self.value());
    }
}

/// The value under `warnings`: `{"warnings":[…]}` (PROTOCOL §7.8).
#[derive(Debug, Serialize)]
pub struct WarningList {
    #[serde(skip)]
    updated_at: Option<DateTime<Utc>>,
    /// Active warnings by risk level (the indicator).
    active_by_level: BTreeMap<String, u64>,
    warnings: Vec<Item>,
}

/// One warning as the screen reads it.
#[derive(Debug, Serialize)]
struct Item {
    id: String,
    chain: String,
    state: WarningState,
    hazard: Option<Hazard>,
    hazard_vi: Option<&'static str>,
    level: Option<RiskLevel>,
    level_vi: Option<String>,
    colour: Option<&'static str>,
    colour_vi: Option<&'static str>,
    villages: Vec<String>,
    event: String,
    headline_vi: Option<String>,
    sender_name: Option<String>,
    sent: chrono::DateTime<chrono::FixedOffset>,
    expires: Option<chrono::DateTime<chrono::FixedOffset>>,
    supersedes: Option<String>,
    received_at: DateTime<Utc>,
}

impl From<&Entry> for Item {
    fn from(e: &Entry) -> Item {
        let v = &e.view;
        Item {
            id: v.id.clone(),
            chain: e.chain.clone(),
            state: v.state,
            hazard: v.hazard,
            hazard_vi: v.hazard.map(Hazard::name_vi),
            level: v.level,
            level_vi: v.level.map(RiskLevel::label_vi),
            colour: v.level.map(|l| l.colour().0),
            colour_vi: v.level.map(|l| l.colour().1),
            villages: v.villages.clone(),
            event: v.event.clone(),
            headline_vi: v.headline_vi.clone(),
            sender_name: v.sender_name.clone(),
            sent: v.sent,
            expires: v.expires,
            supersedes: v.supersedes.clone(),
            received_at: e.received_at,
        }
    }
}

impl LiveValue for WarningList {
    /// When the list last changed.
    fn updated_at(&self) -> Option<DateTime<Utc>> {
        self.updated_at
    }

    fn write_whole(&self, out: &mut String) {
        super::push_serde(out, self);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::FixedOffset;

    /// The value as JSON text.
    fn digest(list: &WarningList) -> String {
        let mut s = String::new();
        list.write_whole(&mut s);
        s
    }

    fn level(n: u8) -> RiskLevel {
        Hazard::FlashFlood.check_level(n).unwrap()
    }

    fn view(id: &str, state: WarningState, lv: u8, supersedes: Option<&str>) -> WarningView {
        let sent =
            DateTime::<FixedOffset>::parse_from_rfc3339("2026-07-14T09:30:00+07:00").unwrap();
        WarningView {
            id: id.into(),
            state,
            hazard: Some(Hazard::FlashFlood),
            level: Some(level(lv)),
            villages: vec!["tan-binh".into(), "hung-binh".into()],
            event: "Lũ quét, sạt lở đất".into(),
            headline_vi: Some("Cảnh báo lũ quét".into()),
            sender_name: Some("Đài Khí tượng Thủy văn tỉnh Lai Châu".into()),
            sent,
            expires: Some(sent + chrono::Duration::hours(6)),
            supersedes: supersedes.map(Into::into),
        }
    }

    fn json(w: &Warnings) -> serde_json::Value {
        let mut s = String::new();
        w.value().write_whole(&mut s);
        serde_json::from_str(&s).unwrap()
    }

    fn empty() -> Warnings {
        Warnings {
            key: None,
            listed: HashMap::new(),
            ended: VecDeque::new(),
            ended_index: HashMap::new(),
            version: 0,
            changed_at: None,
        }
    }

    #[test]
    fn an_alert_its_update_and_its_cancel_keep_one_chain_then_leave() {
        let mut w = empty();
        let t = Utc::now();
        assert!(w.apply(&view("s|a|1", WarningState::Active, 2, None), t));
        let v = json(&w);
        let item = &v["warnings"][0];
        assert_eq!(item["id"], "s|a|1");
        assert_eq!(item["chain"], "s|a|1");
        assert_eq!(item["level"], 2);
        assert_eq!(item["colour"], "#f5e663");
        assert_eq!(item["colour_vi"], "vàng nhạt");
        assert_eq!(item["hazard"], "flash_flood");
        assert_eq!(item["hazard_vi"], "Lũ quét");
        assert_eq!(item["level_vi"], "cấp độ 2");
        assert_eq!(item["sent"], "2026-07-14T09:30:00+07:00");
        assert_eq!(
            item["villages"],
            serde_json::json!(["tan-binh", "hung-binh"])
        );

        // The update arrives, and the alert it replaces leaves.
        assert!(w.apply(&view("s|u|2", WarningState::Active, 3, Some("s|a|1")), t));
        assert!(w.apply(&view("s|a|1", WarningState::Updated, 2, None), t));
        let v = json(&w);
        assert_eq!(v["warnings"].as_array().unwrap().len(), 1);
        assert_eq!(v["warnings"][0]["id"], "s|u|2");
        assert_eq!(v["warnings"][0]["chain"], "s|a|1");
        assert_eq!(v["warnings"][0]["colour"], "#f28c28");

        // Replaced first, update after: the chain is still found.
        assert!(w.apply(&view("s|u|2", WarningState::Updated, 3, Some("s|a|1")), t));
        assert!(w.apply(&view("s|u|3", WarningState::Active, 3, Some("s|u|2")), t));
        assert_eq!(json(&w)["warnings"][0]["chain"], "s|a|1");

        // The cancel (itself cancelled) and its target leave the list.
        assert!(w.apply(&view("s|c|4", WarningState::Cancelled, 3, Some("s|u|3")), t));
        assert!(w.apply(&view("s|u|3", WarningState::Cancelled, 3, Some("s|u|2")), t));
        assert_eq!(json(&w)["warnings"], serde_json::json!([]));
    }

    #[test]
    fn the_same_view_twice_changes_nothing_and_expiry_removes() {
        let mut w = empty();
        let t = Utc::now();
        let a = view("s|a|1", WarningState::Active, 3, None);
        assert!(w.apply(&a, t));
        let before = digest(&w.value());
        assert!(
            !w.apply(&a, t + chrono::Duration::seconds(5)),
            "a re-delivery"
        );
        assert_eq!(digest(&w.value()), before);
        let expires = a.expires.unwrap().with_timezone(&Utc);
        assert!(!w.expire(expires - chrono::Duration::seconds(1)));
        assert!(w.expire(expires));
        assert_eq!(json(&w)["warnings"], serde_json::json!([]));
    }

    #[test]
    fn active_warnings_come_first_by_level_and_the_list_is_bounded() {
        let mut w = empty();
        let t = Utc::now();
        w.apply(&view("x|nfc|1", WarningState::NotForCommune, 3, None), t);
        w.apply(&view("s|low|1", WarningState::Active, 1, None), t);
        w.apply(&view("s|high|1", WarningState::Active, 3, None), t);
        let ids: Vec<String> = json(&w)["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["id"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(ids, ["s|high|1", "s|low|1", "x|nfc|1"]);
        assert_eq!(
            json(&w)["active_by_level"],
            serde_json::json!({"1": 1, "3": 1}),
            "not for the commune: not counted"
        );
        for i in 0..(MAX_LISTED + 20) {
            w.apply(
                &view(&format!("s|many|{i}"), WarningState::Active, 1, None),
                t,
            );
        }
        assert_eq!(w.listed.len(), MAX_LISTED);
        assert!(
            !w.listed.contains_key("x|nfc|1"),
            "not for the commune: dropped first"
        );
        assert!(w.ended.len() <= MAX_ENDED);
    }
}
