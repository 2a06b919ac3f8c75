//! The device and village registry, built from config: a read-only lookup
//! shared by the decoders, the device tracker and the indicators.

use std::collections::HashMap;

use super::{Config, SpeakerKind};
use crate::vocab::{DeviceClass, DeviceInfo};

/// Read-only registry of villages and devices.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    /// Commune id (topic level).
    pub commune: String,
    villages: Vec<(String, String)>,
    devices: HashMap<DeviceClass, HashMap<String, DeviceInfo>>,
    ordered: Vec<(DeviceClass, String)>,
    frigate: HashMap<String, String>,
}

impl Registry {
    /// Build from a validated config.
    pub fn from_config(c: &Config) -> Registry {
        let mut r = Registry {
            commune: c.commune.id.clone(),
            villages: c
                .villages
                .iter()
                .map(|v| (v.id.clone(), v.name.clone()))
                .collect(),
            ..Registry::default()
        };
        for cam in &c.cameras {
            r.insert(DeviceInfo {
                id: cam.id.clone(),
                name: cam.name.clone(),
                class: DeviceClass::Camera,
                village: cam.village.clone(),
                reporting: true,
            });
            if let Some(n) = &cam.frigate_name {
                r.frigate.insert(n.clone(), cam.id.clone());
            }
        }
        for s in &c.speakers {
            r.insert(DeviceInfo {
                id: s.id.clone(),
                name: s.name.clone(),
                class: DeviceClass::Speaker,
                village: s.village.clone(),
                reporting: s.kind == SpeakerKind::Smart,
            });
        }
        for s in &c.sensors {
            r.insert(DeviceInfo {
                id: s.id.clone(),
                name: s.name.clone(),
                class: DeviceClass::Sensor,
                village: s.village.clone(),
                reporting: true,
            });
        }
        r
    }

    fn insert(&mut self, d: DeviceInfo) {
        self.ordered.push((d.class, d.id.clone()));
        self.devices
            .entry(d.class)
            .or_default()
            .insert(d.id.clone(), d);
    }

    /// Look a device up (no allocation: this is on the ingest path).
    pub fn device(&self, class: DeviceClass, id: &str) -> Option<&DeviceInfo> {
        self.devices.get(&class)?.get(id)
    }

    /// All devices, in config order.
    pub fn devices(&self) -> impl Iterator<Item = &DeviceInfo> {
        self.ordered
            .iter()
            .filter_map(|(c, id)| self.device(*c, id))
    }

    /// Camera id for a Frigate camera name (the name itself when a camera
    /// with that id exists).
    pub fn frigate_camera(&self, name: &str) -> Option<&DeviceInfo> {
        match self.frigate.get(name) {
            Some(id) => self.device(DeviceClass::Camera, id),
            None => self.device(DeviceClass::Camera, name),
        }
    }

    /// Whether a village id exists.
    pub fn has_village(&self, id: &str) -> bool {
        self.villages.iter().any(|(v, _)| v == id)
    }
}
