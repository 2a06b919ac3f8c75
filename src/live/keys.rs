//! Keys of the live stream and the patterns clients subscribe with.
//!
//! A key names one value: `indicator:{id}:{window}:{scope}`,
//! `device:{class}:{id}`, `feed:{scope}` or `dead_letters`. A pattern is a
//! key with `*` segments, possibly cut short (a prefix matches every key
//! that starts with it). See docs/PROTOCOL.md §7.2–7.3.

use std::collections::HashSet;

use crate::indicators::Window;
use crate::model::DeviceClass;

/// The family of a key (its first segment).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// `indicator:{id}:{window}:{scope}`.
    Indicator,
    /// `device:{class}:{id}`.
    Device,
    /// `feed:{scope}`.
    Feed,
    /// `dead_letters`.
    DeadLetters,
}

impl Family {
    fn parse(s: &str) -> Option<Family> {
        match s {
            "indicator" | "indicators" => Some(Family::Indicator),
            "device" | "devices" => Some(Family::Device),
            "feed" => Some(Family::Feed),
            "dead_letters" => Some(Family::DeadLetters),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Family::Indicator => "indicator",
            Family::Device => "device",
            Family::Feed => "feed",
            Family::DeadLetters => "dead_letters",
        }
    }

    /// Segments after the family.
    fn arity(self) -> usize {
        match self {
            Family::Indicator => 3,
            Family::Device => 2,
            Family::Feed => 1,
            Family::DeadLetters => 0,
        }
    }
}

/// One key, interned by the hub: items carry it so connections can match
/// without the hub's lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    /// Dense id, for per-connection match caches.
    pub id: u32,
    /// The full key, e.g. `indicator:dossier_online_ratio:month:commune`.
    pub name: String,
    /// Family.
    pub family: Family,
    /// Segments after the family.
    pub segments: Vec<String>,
    /// `commune` or a village id.
    pub scope: String,
}

/// One pattern segment.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Any,
    Literal(String),
}

/// A subscription pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    family: Family,
    segments: Vec<Segment>,
}

/// What exists, for checking the literal segments of a pattern.
#[derive(Debug, Clone, Default)]
pub struct Known {
    /// Indicator ids.
    pub indicators: HashSet<String>,
    /// `commune` and every village id.
    pub scopes: HashSet<String>,
    /// Device ids of every class (registered or seen).
    pub devices: HashSet<String>,
}

impl Pattern {
    /// Parse and check a pattern; the error is the reason, in Vietnamese.
    pub fn parse(text: &str, known: &Known) -> Result<Pattern, String> {
        let mut parts = text.split(':');
        let head = parts.next().unwrap_or_default();
        let family = Family::parse(head)
            .ok_or_else(|| format!("Khóa không tồn tại: `{text}` (loại `{head}` không có)"))?;
        let rest: Vec<&str> = parts.collect();
        if rest.len() > family.arity() {
            return Err(format!(
                "Khóa không tồn tại: `{text}` (loại `{}` có {} phần sau tên loại)",
                family.as_str(),
                family.arity()
            ));
        }
        let mut segments = Vec::with_capacity(rest.len());
        for (i, part) in rest.iter().enumerate() {
            if *part == "*" {
                segments.push(Segment::Any);
                continue;
            }
            let ok = match (family, i) {
                (Family::Indicator, 0) => known.indicators.contains(*part),
                (Family::Indicator, 1) => Window::parse(part).is_some(),
                (Family::Indicator, 2) | (Family::Feed, 0) => known.scopes.contains(*part),
                (Family::Device, 0) => DeviceClass::parse(part).is_some(),
                (Family::Device, 1) => known.devices.contains(*part),
                _ => false,
            };
            if !ok {
                return Err(format!("Khóa không tồn tại: `{text}` (không có `{part}`)"));
            }
            segments.push(Segment::Literal((*part).to_owned()));
        }
        Ok(Pattern { family, segments })
    }

    /// Whether `key` matches.
    pub fn matches(&self, key: &KeyInfo) -> bool {
        self.family == key.family
            && self
                .segments
                .iter()
                .zip(&key.segments)
                .all(|(p, k)| match p {
                    Segment::Any => true,
                    Segment::Literal(l) => l == k,
                })
    }
}

/// Build the interned form of a key.
pub fn key_info(id: u32, family: Family, segments: Vec<String>, scope: String) -> KeyInfo {
    let mut name = String::from(family.as_str());
    for s in &segments {
        name.push(':');
        name.push_str(s);
    }
    KeyInfo {
        id,
        name,
        family,
        segments,
        scope,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known() -> Known {
        Known {
            indicators: ["dossier_online_ratio".to_string()].into(),
            scopes: ["commune".to_string(), "ban-a".to_string()].into(),
            devices: ["cam-01".to_string()].into(),
        }
    }

    fn key(family: Family, segs: &[&str], scope: &str) -> KeyInfo {
        key_info(
            0,
            family,
            segs.iter().map(|s| s.to_string()).collect(),
            scope.into(),
        )
    }

    #[test]
    fn prefixes_and_wildcards_match() {
        let k = key(
            Family::Indicator,
            &["dossier_online_ratio", "month", "ban-a"],
            "ban-a",
        );
        assert_eq!(k.name, "indicator:dossier_online_ratio:month:ban-a");
        for p in [
            "indicator",
            "indicators",
            "indicator:*",
            "indicator:dossier_online_ratio",
            "indicator:*:month",
            "indicator:*:*:ban-a",
        ] {
            assert!(Pattern::parse(p, &known()).unwrap().matches(&k), "{p}");
        }
        for p in ["indicator:*:today", "indicator:*:month:commune", "device"] {
            assert!(!Pattern::parse(p, &known()).unwrap().matches(&k), "{p}");
        }
        let d = key(Family::Device, &["camera", "cam-01"], "ban-a");
        assert!(Pattern::parse("devices", &known()).unwrap().matches(&d));
        assert!(Pattern::parse("device:camera:cam-01", &known())
            .unwrap()
            .matches(&d));
        assert!(!Pattern::parse("device:speaker", &known())
            .unwrap()
            .matches(&d));
    }

    #[test]
    fn unknown_literals_are_refused() {
        for p in [
            "nothing",
            "indicator:no_such",
            "indicator:*:week",
            "indicator:*:month:ban-z",
            "device:drone",
            "device:camera:cam-99",
            "dead_letters:x",
            "feed:ban-a:x",
            "",
        ] {
            let e = Pattern::parse(p, &known()).unwrap_err();
            assert!(e.starts_with("Khóa không tồn tại"), "{p}: {e}");
        }
    }
}
