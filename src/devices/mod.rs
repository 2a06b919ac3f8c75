//! Device health: the last state each device reported, when it was last
//! heard, and whether it has gone silent for longer than its class's
//! inactivity timeout. Devices that publish but are not in the registry are
//! recorded too, flagged `registered: false`.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::config::DeviceTimeouts;
use crate::config::Registry;
use crate::model::{DeviceClass, DeviceState, Event, Source};

/// What the tracker remembers about a device (persisted by the journal).
#[derive(Debug, Clone, PartialEq)]
pub struct Health {
    /// Last reported state.
    pub state: DeviceState,
    /// When the device was last heard (receive time).
    pub last_seen: Option<DateTime<Utc>>,
    /// Last status detail (fault description...).
    pub detail: Option<String>,
}

/// One device as answered by `GET /api/devices`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DeviceView {
    /// Device id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Class.
    pub class: DeviceClass,
    /// Village.
    pub village: Option<String>,
    /// In the registry?
    pub registered: bool,
    /// Reports over MQTT (false for legacy FE radio stations).
    pub reporting: bool,
    /// State after applying the inactivity timeout.
    pub state: DeviceState,
    /// State as last reported.
    pub reported_state: DeviceState,
    /// Silent for longer than the class timeout.
    pub stale: bool,
    /// When last heard.
    pub last_seen: Option<DateTime<Utc>>,
    /// Last status detail.
    pub detail: Option<String>,
}

/// Device counts behind an availability indicator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Availability {
    /// Devices up now.
    pub up: u32,
    /// Registered reporting devices.
    pub total: u32,
    /// Devices heard from at least once.
    pub heard: u32,
}

/// Most unregistered devices tracked at once.
pub const MAX_UNREGISTERED: usize = 1000;

/// Tracks device health.
#[derive(Debug)]
pub struct DeviceTracker {
    registry: Arc<Registry>,
    timeouts: DeviceTimeouts,
    health: HashMap<(DeviceClass, String), Health>,
}

/// The class of device an event's source stands for.
pub fn class_of(source: Source) -> Option<DeviceClass> {
    match source {
        Source::Camera => Some(DeviceClass::Camera),
        Source::Speaker => Some(DeviceClass::Speaker),
        Source::Sensor => Some(DeviceClass::Sensor),
        Source::Procedure => None,
    }
}

impl DeviceTracker {
    /// An empty tracker over a registry.
    pub fn new(registry: Arc<Registry>, timeouts: DeviceTimeouts) -> Self {
        DeviceTracker {
            registry,
            timeouts,
            health: HashMap::new(),
        }
    }

    /// Restore persisted health (startup).
    pub fn load(&mut self, class: DeviceClass, id: String, health: Health) {
        self.health.insert((class, id), health);
    }

    /// The health changes a batch of committed events makes, keyed by device.
    /// Events with a device update `last_seen`; status events set the state;
    /// any other event from a device that was not up marks it online (unless
    /// it reported a fault).
    pub fn updates<'e>(
        &self,
        events: impl IntoIterator<Item = &'e Event>,
    ) -> HashMap<(DeviceClass, String), Health> {
        let mut out: HashMap<(DeviceClass, String), Health> = HashMap::new();
        for e in events {
            let (Some(class), Some(id)) = (class_of(e.source), e.device.as_ref()) else {
                continue;
            };
            let key = (class, id.clone());
            let current = out
                .get(&key)
                .or_else(|| self.health.get(&key))
                .cloned()
                .unwrap_or(Health {
                    state: DeviceState::Unknown,
                    last_seen: None,
                    detail: None,
                });
            let mut next = current.clone();
            // A retained status replayed by the broker says what the device
            // last reported, not that it is alive now: it must not hide an
            // inactivity timeout.
            if e.retained && next.last_seen.is_some() {
                continue;
            }
            if next.last_seen.is_none_or(|t| e.received_at > t) {
                next.last_seen = Some(e.received_at);
            }
            if e.kind == "status" {
                if let Some(s) = e.attr_str("state").and_then(DeviceState::parse) {
                    next.state = s;
                    next.detail = e.attr_str("detail").map(str::to_owned);
                }
            } else if e.kind == "session_start" {
                next.state = DeviceState::Broadcasting;
            } else if (e.kind == "session_end" && next.state == DeviceState::Broadcasting)
                || (!next.state.is_up() && next.state != DeviceState::Fault)
            {
                next.state = DeviceState::Online;
            }
            out.insert(key, next);
        }
        out
    }

    /// Records for unregistered devices that published (from dead letters).
    /// At most [`MAX_UNREGISTERED`] distinct ones are tracked, so a flood of
    /// made-up device ids cannot grow memory or the store without bound
    /// (their messages are still kept as dead letters).
    pub fn unknown_updates<'a>(
        &self,
        seen: impl IntoIterator<Item = (DeviceClass, &'a str, DateTime<Utc>)>,
    ) -> Vec<((DeviceClass, String), Health)> {
        let mut tracked = self
            .health
            .keys()
            .filter(|(c, id)| self.registry.device(*c, id).is_none())
            .count();
        let mut out: HashMap<(DeviceClass, String), Health> = HashMap::new();
        for (class, id, at) in seen {
            let key = (class, id.to_owned());
            let prev = out.get(&key).or_else(|| self.health.get(&key));
            if prev.is_none() {
                if tracked >= MAX_UNREGISTERED {
                    continue;
                }
                tracked += 1;
            }
            let last_seen = prev.and_then(|h| h.last_seen).map_or(at, |t| t.max(at));
            out.insert(
                key,
                Health {
                    state: DeviceState::Unknown,
                    last_seen: Some(last_seen),
                    detail: Some("not in the registry".into()),
                },
            );
        }
        out.into_iter().collect()
    }

    /// Apply committed updates.
    pub fn apply(&mut self, updates: HashMap<(DeviceClass, String), Health>) {
        self.health.extend(updates);
    }

    /// One device as seen at `now` (registered or not).
    pub fn view(&self, class: DeviceClass, id: &str, now: DateTime<Utc>) -> DeviceView {
        let info = self.registry.device(class, id);
        let h = self.health.get(&(class, id.to_owned()));
        let reported = h.map_or(DeviceState::Unknown, |h| h.state);
        let last_seen = h.and_then(|h| h.last_seen);
        let timeout = self.timeouts.for_class(class);
        let stale = timeout > 0
            && last_seen.is_some_and(|t| now.signed_duration_since(t).num_seconds() > timeout);
        let state = if stale && reported.is_up() {
            DeviceState::Offline
        } else {
            reported
        };
        DeviceView {
            id: id.to_owned(),
            name: info.map(|i| i.name.clone()).unwrap_or_default(),
            class,
            village: info.and_then(|i| i.village.clone()),
            registered: info.is_some(),
            reporting: info.is_none_or(|i| i.reporting),
            state,
            reported_state: reported,
            stale,
            last_seen,
            detail: h.and_then(|h| h.detail.clone()),
        }
    }

    /// Every registered device, then every unregistered one that published.
    pub fn list(&self, now: DateTime<Utc>) -> Vec<DeviceView> {
        let mut out: Vec<DeviceView> = self
            .registry
            .devices()
            .map(|d| self.view(d.class, &d.id, now))
            .collect();
        let mut unknown: Vec<&(DeviceClass, String)> = self
            .health
            .keys()
            .filter(|(c, id)| self.registry.device(*c, id).is_none())
            .collect();
        unknown.sort();
        out.extend(unknown.into_iter().map(|(c, id)| self.view(*c, id, now)));
        out
    }

    /// Registered reporting devices of `class` in a village (`None` = the
    /// whole commune): how many are up, how many there are, and how many
    /// have ever been heard from.
    pub fn availability(
        &self,
        class: DeviceClass,
        village: Option<&str>,
        now: DateTime<Utc>,
    ) -> Availability {
        let mut up = 0;
        let mut total = 0;
        let mut heard = 0;
        for d in self.registry.devices() {
            if d.class != class || !d.reporting {
                continue;
            }
            if village.is_some_and(|v| d.village.as_deref() != Some(v)) {
                continue;
            }
            total += 1;
            let v = self.view(class, &d.id, now);
            if v.last_seen.is_some() {
                heard += 1;
            }
            if v.state.is_up() {
                up += 1;
            }
        }
        Availability { up, total, heard }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_str;
    use chrono::Duration;

    fn status(state: &str, at: DateTime<Utc>, retained: bool) -> Event {
        let mut attrs = serde_json::Map::new();
        attrs.insert("state".into(), state.into());
        Event {
            source: Source::Camera,
            kind: "status".into(),
            device: Some("cam-01".into()),
            village: None,
            ts: at,
            received_at: at,
            seq: None,
            attrs,
            dedup_key: String::new(),
            retained,
        }
    }

    #[test]
    fn retained_status_does_not_hide_a_silent_device() {
        let c = load_str(
            "[commune]\nid = \"x\"\nname = \"X\"\n[[camera]]\nid = \"cam-01\"\n",
            "t.toml",
            &[],
        )
        .unwrap();
        let mut t = DeviceTracker::new(Arc::new(Registry::from_config(&c)), c.devices.clone());
        let start = Utc::now() - Duration::hours(2);
        let u = t.updates(&[status("online", start, false)]);
        t.apply(u);
        // An hour later the broker replays the retained "online" on reconnect.
        let u = t.updates(&[status("online", start + Duration::hours(1), true)]);
        t.apply(u);
        let now = Utc::now();
        let v = &t.list(now)[0];
        assert!(v.stale, "silent for 2 h with a 300 s timeout");
        assert_eq!(v.state, DeviceState::Offline);
        assert_eq!(t.availability(DeviceClass::Camera, None, now).up, 0);
        // A fresh (not retained) message brings it back.
        let u = t.updates(&[status("online", now, false)]);
        t.apply(u);
        assert_eq!(t.availability(DeviceClass::Camera, None, now).up, 1);
    }

    #[test]
    fn unregistered_devices_are_capped() {
        let c = load_str("[commune]\nid = \"x\"\nname = \"X\"\n", "t.toml", &[]).unwrap();
        let mut t = DeviceTracker::new(Arc::new(Registry::from_config(&c)), c.devices.clone());
        let now = Utc::now();
        let ids: Vec<String> = (0..MAX_UNREGISTERED + 50)
            .map(|i| format!("fake-{i}"))
            .collect();
        let u = t.unknown_updates(ids.iter().map(|id| (DeviceClass::Camera, id.as_str(), now)));
        assert_eq!(u.len(), MAX_UNREGISTERED);
        t.apply(u.into_iter().collect());
        // Already tracked ones are still updated; new ones are not added.
        let later = now + Duration::seconds(5);
        let u = t.unknown_updates([
            (DeviceClass::Camera, "fake-0", later),
            (DeviceClass::Camera, "fake-new", later),
        ]);
        assert_eq!(u.len(), 1);
        assert_eq!(u[0].0 .1, "fake-0");
        assert_eq!(u[0].1.last_seen, Some(later));
    }
}
