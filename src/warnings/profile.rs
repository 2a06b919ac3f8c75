//! The Vietnamese profile of a bulletin: its hazard (from `eventCode` or
//! the `event` text), its risk level (the `VN-CAP-DO-RUI-RO` parameter,
//! never guessed from `severity`, checked against the hazard's legal
//! range), and the commune's villages it covers (by geocode, polygon,
//! circle or `areaDesc` naming the village), recording how each matched.

use std::collections::HashMap;

use geo::{Contains, Distance, Haversine, LineString, Point, Polygon};
use serde::{Deserialize, Serialize};

use super::cap::{Alert, Area, CapError, Info};
use super::text::{fold, lower};
use crate::config::Config;
use crate::vocab::{Hazard, RiskLevel};

/// How a village was found to be covered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MatchWay {
    /// A `<geocode>` the config maps to the village (or the commune).
    Geocode,
    /// A `<polygon>` contains the village's coordinates.
    Polygon,
    /// A `<circle>` contains the village's coordinates.
    Circle,
    /// `<areaDesc>` names the village.
    AreaDesc,
}

/// One covered village and how.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VillageMatch {
    /// Village id.
    pub village: String,
    /// Every way it matched.
    pub ways: Vec<MatchWay>,
}

/// What the profile found in a valid bulletin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Profiled {
    /// Hazard of the displayed `<info>`.
    pub hazard: Option<Hazard>,
    /// Risk level of the displayed `<info>`.
    pub level: Option<RiskLevel>,
    /// Covered villages, in config order.
    pub villages: Vec<VillageMatch>,
}

#[derive(Debug, Clone)]
struct Place {
    id: String,
    /// Folded names: the full name, and without a leading "thôn"/"bản"...
    names: Vec<String>,
    point: Option<Point<f64>>,
}

/// The profile, built once from the config.
#[derive(Debug, Clone)]
pub struct Profile {
    level_parameter: String,
    code_names: Vec<String>,
    codes: HashMap<String, Hazard>,
    /// (phrase with diacritics, folded phrase, hazard): config first.
    phrases: Vec<(String, String, Hazard)>,
    geocodes: Vec<(String, String, Vec<String>)>,
    places: Vec<Place>,
}

/// Prefixes of village names (thôn, bản...) that a bulletin may leave out.
const VILLAGE_WORDS: &[&str] = &[
    " thon ",
    " ban ",
    " xom ",
    " lang ",
    " ap ",
    " buon ",
    " to dan pho ",
    " khu ",
    " khom ",
];

impl Profile {
    /// Build from the config (`[warnings]` and the villages).
    pub fn new(config: &Config) -> Profile {
        let w = &config.warnings;
        let mut phrases: Vec<(String, String, Hazard)> = w
            .hazard_phrases
            .iter()
            .map(|(p, h)| (lower(p), fold(p), *h))
            .collect();
        for h in Hazard::ALL {
            for p in h.default_phrases() {
                phrases.push((lower(p), fold(p), h));
            }
        }
        let places = config
            .villages
            .iter()
            .map(|v| {
                let full = fold(&v.name);
                let mut names = vec![full.clone()];
                for w in VILLAGE_WORDS {
                    if let Some(rest) = full.strip_prefix(w.trim_end()) {
                        // Keep only a distinctive rest (two words or more).
                        if rest.trim().split(' ').count() >= 2 {
                            names.push(rest.to_owned());
                        }
                    }
                }
                Place {
                    id: v.id.clone(),
                    names,
                    point: match (v.lat, v.lon) {
                        (Some(lat), Some(lon)) => Some(Point::new(lon, lat)),
                        _ => None,
                    },
                }
            })
            .collect();
        Profile {
            level_parameter: w.level_parameter.clone(),
            code_names: w.hazard_code_names.clone(),
            codes: w
                .hazard_codes
                .iter()
                .map(|(k, v)| (k.trim().to_ascii_uppercase(), *v))
                .collect(),
            phrases,
            geocodes: w
                .geocodes
                .iter()
                .map(|g| {
                    let villages = if g.villages.is_empty() {
                        config.villages.iter().map(|v| v.id.clone()).collect()
                    } else {
                        g.villages.clone()
                    };
                    (g.name.clone(), g.value.clone(), villages)
                })
                .collect(),
            places,
        }
    }

    /// The hazard an `<info>` names: its eventCode (config codes first,
    /// then the built-in ones), else the `event` text.
    pub fn hazard(&self, info: &Info) -> Option<Hazard> {
        for c in &info.event_codes {
            if self.code_names.iter().any(|n| n == &c.name) {
                let key = c.value.trim().to_ascii_uppercase();
                if let Some(h) = self.codes.get(&key).copied().or(Hazard::from_code(&key)) {
                    return Some(h);
                }
            }
        }
        self.hazard_in_text(&info.event)
    }

    /// The hazard a text names: the phrase found earliest (the longest of
    /// those starting there), with diacritics; failing that, without.
    pub fn hazard_in_text(&self, text: &str) -> Option<Hazard> {
        let find = |text: &str, pick: fn(&(String, String, Hazard)) -> &String| {
            self.phrases
                .iter()
                .filter_map(|p| {
                    text.find(pick(p).as_str())
                        .map(|at| (at, pick(p).len(), p.2))
                })
                .min_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)))
                .map(|m| m.2)
        };
        find(&lower(text), |p| &p.0).or_else(|| find(&fold(text), |p| &p.1))
    }

    /// The risk level an `<info>` carries, checked against `hazard`.
    pub fn level(
        &self,
        info: &Info,
        hazard: Option<Hazard>,
    ) -> Result<Option<RiskLevel>, CapError> {
        let Some(v) = info.parameter(&self.level_parameter) else {
            return Ok(None);
        };
        let bad = || CapError::LevelValue {
            name: self.level_parameter.clone(),
            value: v.to_owned(),
        };
        let n: u8 = v.trim().parse().map_err(|_| bad())?;
        if !(1..=5).contains(&n) {
            return Err(bad());
        }
        match hazard {
            Some(h) => Ok(Some(h.check_level(n)?)),
            // No hazard known: any level 1–5 (checked above).
            None => Ok(RiskLevel::new(n)),
        }
    }

    /// Profile a valid bulletin: refused when a level is not legal for its
    /// hazard (in any `<info>`).
    pub fn apply(&self, alert: &Alert) -> Result<Profiled, CapError> {
        let mut shown = (None, None);
        let display = alert.display_info();
        for info in &alert.infos {
            let hazard = self.hazard(info);
            let level = self.level(info, hazard)?;
            if display.is_some_and(|d| std::ptr::eq(d, info)) {
                shown = (hazard, level);
            }
        }
        // A block without a level of its own (another language) takes none;
        // the displayed block without one borrows another block's.
        if shown.1.is_none() {
            for info in alert.infos_vi_first() {
                if let Ok(Some(l)) = self.level(info, shown.0.or(self.hazard(info))) {
                    shown.1 = Some(l);
                    break;
                }
            }
        }
        let areas: Vec<&Area> = alert.infos.iter().flat_map(|i| &i.areas).collect();
        Ok(Profiled {
            hazard: shown.0,
            level: shown.1,
            villages: self.villages(&areas),
        })
    }

    /// The villages `areas` cover, in config order.
    pub fn villages(&self, areas: &[&Area]) -> Vec<VillageMatch> {
        let mut out = Vec::new();
        for place in &self.places {
            let mut ways = Vec::new();
            for area in areas {
                if area.geocodes.iter().any(|g| {
                    self.geocodes
                        .iter()
                        .any(|(n, v, vs)| n == &g.name && v == &g.value && vs.contains(&place.id))
                }) {
                    ways.push(MatchWay::Geocode);
                }
                if let Some(p) = place.point {
                    if area.polygons.iter().any(|ring| {
                        let ring: Vec<(f64, f64)> =
                            ring.iter().map(|&(lat, lon)| (lon, lat)).collect();
                        Polygon::new(LineString::from(ring), vec![]).contains(&p)
                    }) {
                        ways.push(MatchWay::Polygon);
                    }
                    if area.circles.iter().any(|c| {
                        Haversine.distance(Point::new(c.lon, c.lat), p) <= c.radius_km * 1000.0
                    }) {
                        ways.push(MatchWay::Circle);
                    }
                }
                let desc = fold(&area.desc);
                if place.names.iter().any(|n| desc.contains(n.as_str())) {
                    ways.push(MatchWay::AreaDesc);
                }
            }
            ways.sort();
            ways.dedup();
            if !ways.is_empty() {
                out.push(VillageMatch {
                    village: place.id.clone(),
                    ways,
                });
            }
        }
        out
    }
}
