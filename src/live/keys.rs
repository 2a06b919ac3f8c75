//! Keys of the live stream and the patterns clients subscribe with.
//!
//! A key names one value: `{family}:{segment}:…`, e.g.
//! `indicator:{id}:{window}:{scope}`, `device:{class}:{id}`, `feed:{scope}`
//! or `dead_letters`. Families are declared by the projections that produce
//! them (`live::projections`), so checking a pattern needs no central list.
//! A pattern is a key with `*` segments, possibly cut short (a prefix
//! matches every key that starts with it). See docs/PROTOCOL.md §7.2–7.3.

use std::collections::HashSet;

/// A family of keys, declared by its projection.
#[derive(Debug, PartialEq, Eq)]
pub struct Family {
    /// The first segment of its keys, e.g. `indicator`.
    pub name: &'static str,
    /// Other names accepted in patterns, e.g. `indicators`.
    pub aliases: &'static [&'static str],
    /// Segments after the family name.
    pub arity: usize,
}

impl Family {
    fn answers_to(&self, name: &str) -> bool {
        self.name == name || self.aliases.contains(&name)
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
    pub family: &'static Family,
    /// Segments after the family.
    pub segments: Vec<String>,
    /// `commune` or a village id.
    pub scope: String,
}

/// What exists: the families, the literal segments they know of, and the
/// scopes. Implemented by the hub over its projections.
pub trait Catalog {
    /// The family a pattern's first segment names.
    fn family(&self, name: &str) -> Option<&'static Family>;
    /// Whether `segment` at position `index` (after the family name) of a
    /// key of `family` names something that exists.
    fn knows(&self, family: &Family, index: usize, segment: &str) -> bool;
    /// `commune` and every village id.
    fn scopes(&self) -> &HashSet<String>;
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
    family: &'static Family,
    segments: Vec<Segment>,
}

impl Pattern {
    /// Parse and check a pattern; the error is the reason, in Vietnamese.
    pub fn parse(text: &str, known: &dyn Catalog) -> Result<Pattern, String> {
        let mut parts = text.split(':');
        let head = parts.next().unwrap_or_default();
        let family = known
            .family(head)
            .ok_or_else(|| format!("Khóa không tồn tại: `{text}` (loại `{head}` không có)"))?;
        let rest: Vec<&str> = parts.collect();
        if rest.len() > family.arity {
            return Err(format!(
                "Khóa không tồn tại: `{text}` (loại `{}` có {} phần sau tên loại)",
                family.name, family.arity
            ));
        }
        let mut segments = Vec::with_capacity(rest.len());
        for (i, part) in rest.iter().enumerate() {
            if *part == "*" {
                segments.push(Segment::Any);
                continue;
            }
            if !known.knows(family, i, part) {
                return Err(format!("Khóa không tồn tại: `{text}` (không có `{part}`)"));
            }
            segments.push(Segment::Literal((*part).to_owned()));
        }
        Ok(Pattern { family, segments })
    }

    /// Whether `key` matches.
    pub fn matches(&self, key: &KeyInfo) -> bool {
        std::ptr::eq(self.family, key.family)
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

/// The family among `families` that `name` names.
pub fn find_family<'a>(
    families: impl IntoIterator<Item = &'a Family>,
    name: &str,
) -> Option<&'a Family> {
    families.into_iter().find(|f| f.answers_to(name))
}

/// Build the interned form of a key.
pub fn key_info(id: u32, family: &'static Family, segments: Vec<String>, scope: String) -> KeyInfo {
    let mut name = String::from(family.name);
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

    static INDICATOR: Family = Family {
        name: "indicator",
        aliases: &["indicators"],
        arity: 3,
    };
    static DEVICE: Family = Family {
        name: "device",
        aliases: &["devices"],
        arity: 2,
    };
    static FEED: Family = Family {
        name: "feed",
        aliases: &[],
        arity: 1,
    };
    static DEAD: Family = Family {
        name: "dead_letters",
        aliases: &[],
        arity: 0,
    };

    struct Fake(HashSet<String>);

    impl Catalog for Fake {
        fn family(&self, name: &str) -> Option<&'static Family> {
            find_family([&INDICATOR, &DEVICE, &FEED, &DEAD], name)
        }
        fn knows(&self, family: &Family, i: usize, s: &str) -> bool {
            match (family.name, i) {
                ("indicator", 0) => s == "dossier_online_ratio",
                ("indicator", 1) => ["today", "24h", "month"].contains(&s),
                ("indicator", 2) | ("feed", 0) => self.0.contains(s),
                ("device", 0) => ["camera", "speaker", "sensor"].contains(&s),
                ("device", 1) => s == "cam-01",
                _ => false,
            }
        }
        fn scopes(&self) -> &HashSet<String> {
            &self.0
        }
    }

    fn known() -> Fake {
        Fake(["commune".to_string(), "ban-a".to_string()].into())
    }

    fn key(family: &'static Family, segs: &[&str], scope: &str) -> KeyInfo {
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
            &INDICATOR,
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
        let d = key(&DEVICE, &["camera", "cam-01"], "ban-a");
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
