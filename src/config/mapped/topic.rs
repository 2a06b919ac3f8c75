//! Topic filters with named segments: `zigbee2mqtt/{device}`,
//! `tele/{device}/SENSOR`, `{device}/sensor/{name}/state`. A `{name}`
//! matches exactly one non-empty level (an MQTT `+`), `+` one level without
//! a name, and a final `#` the rest. Literal levels may hold spaces and any
//! UTF-8 text, but not `+`, `#`, `{` or `}`.

use std::cmp::Ordering;

/// One level of a pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Level {
    /// Exactly this text.
    Literal(String),
    /// One level, captured under this name.
    Named(String),
    /// One level, not captured (`+`).
    Any,
    /// The remaining levels (`#`, last only).
    Rest,
}

/// A parsed topic pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicPattern {
    levels: Vec<Level>,
    text: String,
}

impl TopicPattern {
    /// Parse a pattern.
    pub fn parse(text: &str) -> Result<TopicPattern, String> {
        if text.is_empty() {
            return Err("chủ đề không được để trống".into());
        }
        if text.starts_with('$') {
            return Err(format!("`{text}`: chủ đề bắt đầu bằng `$` là của broker"));
        }
        let parts: Vec<&str> = text.split('/').collect();
        let mut levels = Vec::with_capacity(parts.len());
        let mut names: Vec<&str> = Vec::new();
        for (i, part) in parts.iter().enumerate() {
            let level = if *part == "#" {
                if i + 1 != parts.len() {
                    return Err(format!("`{text}`: `#` chỉ được ở cuối"));
                }
                Level::Rest
            } else if *part == "+" {
                Level::Any
            } else if let Some(name) = part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                if !is_name(name) {
                    return Err(format!(
                        "`{text}`: tên đoạn `{{{name}}}` chỉ gồm chữ thường không dấu, số, `_`"
                    ));
                }
                if names.contains(&name) {
                    return Err(format!("`{text}`: đoạn `{{{name}}}` bị trùng"));
                }
                names.push(name);
                Level::Named(name.to_string())
            } else {
                if part.contains(['+', '#', '{', '}']) {
                    return Err(format!(
                        "`{text}`: đoạn `{part}` có `+`, `#`, `{{` hoặc `}}` lẫn với chữ; một đoạn là chữ, `{{tên}}`, `+` hoặc `#`"
                    ));
                }
                if part.contains('\0') {
                    return Err(format!("`{text}`: có ký tự NUL"));
                }
                Level::Literal(part.to_string())
            };
            levels.push(level);
        }
        Ok(TopicPattern {
            levels,
            text: text.to_string(),
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The levels.
    pub fn levels(&self) -> &[Level] {
        &self.levels
    }

    /// The names of its `{segments}`.
    pub fn names(&self) -> Vec<&str> {
        self.levels
            .iter()
            .filter_map(|l| match l {
                Level::Named(n) => Some(n.as_str()),
                _ => None,
            })
            .collect()
    }

    /// The MQTT subscription filter (`{name}` → `+`).
    pub fn filter(&self) -> String {
        self.levels
            .iter()
            .map(|l| match l {
                Level::Literal(s) => s.as_str(),
                Level::Named(_) | Level::Any => "+",
                Level::Rest => "#",
            })
            .collect::<Vec<_>>()
            .join("/")
    }

    /// The named segments of `topic`, when it matches.
    pub fn captures<'t>(&self, topic: &'t str) -> Option<Vec<(&str, &'t str)>> {
        if topic.starts_with('$') && !matches!(self.levels.first(), Some(Level::Literal(_))) {
            return None;
        }
        let mut out = Vec::new();
        let mut parts = topic.split('/');
        for level in &self.levels {
            match level {
                Level::Rest => return Some(out),
                Level::Literal(s) => {
                    if parts.next()? != s {
                        return None;
                    }
                }
                Level::Any => {
                    parts.next()?;
                }
                Level::Named(n) => {
                    let p = parts.next()?;
                    if p.is_empty() {
                        return None;
                    }
                    out.push((n.as_str(), p));
                }
            }
        }
        if parts.next().is_some() {
            return None;
        }
        Some(out)
    }

    /// Order of precedence when several patterns match one topic: at the
    /// first level where they differ, a literal wins over a wildcard, and a
    /// one-level wildcard over `#`.
    pub fn precedence(&self, other: &TopicPattern) -> Ordering {
        fn rank(l: &Level) -> u8 {
            match l {
                Level::Literal(_) => 2,
                Level::Named(_) | Level::Any => 1,
                Level::Rest => 0,
            }
        }
        for (a, b) in self.levels.iter().zip(&other.levels) {
            match rank(b).cmp(&rank(a)) {
                Ordering::Equal => continue,
                o => return o,
            }
        }
        Ordering::Equal
    }
}

/// A segment or binding name: ASCII lowercase, digits, `_`, starting with a letter.
pub fn is_name(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_lowercase())
        && s.len() <= 32
        && b.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> TopicPattern {
        TopicPattern::parse(s).unwrap()
    }

    #[test]
    fn named_segments_match_one_level_and_capture() {
        let z = t("zigbee2mqtt/{device}");
        assert_eq!(z.filter(), "zigbee2mqtt/+");
        assert_eq!(
            z.captures("zigbee2mqtt/Wassermelder Küche"),
            Some(vec![("device", "Wassermelder Küche")])
        );
        // A sub-topic of a device is not a device.
        assert_eq!(z.captures("zigbee2mqtt/Aussensirene/duration"), None);
        assert_eq!(z.captures("zigbee2mqtt/"), None);
        assert_eq!(z.captures("zigbee2mqtt"), None);
        let e = t("{device}/sensor/{name}/state");
        assert_eq!(e.filter(), "+/sensor/+/state");
        assert_eq!(
            e.captures("esp-weather/sensor/temperature/state"),
            Some(vec![("device", "esp-weather"), ("name", "temperature")])
        );
        assert_eq!(t("a/#").captures("a/b/c"), Some(vec![]));
        assert_eq!(t("{x}/status").captures("$SYS/status"), None);
    }

    #[test]
    fn bad_patterns_are_refused() {
        for bad in [
            "",
            "a/#/b",
            "a/{Device}",
            "a/{x}/{x}",
            "a/b+",
            "a/{x}y",
            "$SYS/x",
        ] {
            assert!(TopicPattern::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn literals_take_precedence_at_the_first_difference() {
        let z = t("zigbee2mqtt/{device}");
        let e = t("{device}/status");
        assert_eq!(z.precedence(&e), Ordering::Less);
        assert_eq!(e.precedence(&z), Ordering::Greater);
        assert_eq!(t("a/#").precedence(&t("a/+")), Ordering::Greater);
    }
}
