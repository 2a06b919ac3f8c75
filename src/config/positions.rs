//! Where a key is in the config file: line and column of a dotted key such
//! as `indicator[online].numerator.event` (an `[id]` picks the element of an
//! array of tables with that `id`, a number picks by position), so that
//! semantic problems found after parsing point into the file like syntax
//! errors do.

use std::ops::Range;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

/// The parsed file with spans.
pub(crate) struct Positions<'a> {
    root: Option<Spanned<DeTable<'a>>>,
}

impl<'a> Positions<'a> {
    /// Index `text` (nothing is found when it does not parse).
    pub(crate) fn new(text: &'a str) -> Positions<'a> {
        Positions {
            root: DeTable::parse(text).ok(),
        }
    }

    /// The byte span of `key`: the key itself when it is in the file,
    /// otherwise the nearest enclosing table or element that is.
    pub(crate) fn span(&self, key: &str) -> Option<Range<usize>> {
        let root = self.root.as_ref()?;
        let mut table: &DeTable<'_> = root.get_ref();
        let mut best: Option<Range<usize>> = None;
        let segs = segments(key);
        for (n, seg) in segs.iter().enumerate() {
            let (name, pick) = match seg.find('[') {
                Some(i) if seg.ends_with(']') => (&seg[..i], Some(&seg[i + 1..seg.len() - 1])),
                _ => (*seg, None),
            };
            let Some((k, v)) = table.iter().find(|(k, _)| k.get_ref().as_ref() == name) else {
                return best;
            };
            best = Some(k.span());
            let value = match (pick, v.get_ref()) {
                (None, _) => v,
                (Some(p), DeValue::Array(items)) => {
                    // Elements with that id; of several (a duplicate), the
                    // last one that has the next key, else the last one.
                    let next = segs.get(n + 1).map(|s| s.split('[').next().unwrap_or(s));
                    let with_id: Vec<_> = items
                        .iter()
                        .filter(|item| {
                            table_has(item.get_ref(), |k, v| {
                                k == "id" && matches!(v, DeValue::String(s) if s.as_ref() == p)
                            })
                        })
                        .collect();
                    let by_id = with_id
                        .iter()
                        .rev()
                        .find(|item| {
                            next.is_some_and(|nk| table_has(item.get_ref(), |k, _| k == nk))
                        })
                        .or(with_id.last())
                        .copied();
                    let item = by_id.or_else(|| p.parse::<usize>().ok().and_then(|i| items.get(i)));
                    match item {
                        Some(item) => {
                            best = Some(item.span());
                            item
                        }
                        None => return best,
                    }
                }
                (Some(_), _) => return best,
            };
            match value.get_ref() {
                DeValue::Table(t) => table = t,
                _ => return best,
            }
        }
        best
    }
}

/// Whether `v` is a table with an entry for which `f(key, value)` holds.
fn table_has(v: &DeValue<'_>, f: impl Fn(&str, &DeValue<'_>) -> bool) -> bool {
    match v {
        DeValue::Table(t) => t.iter().any(|(k, v)| f(k.get_ref().as_ref(), v.get_ref())),
        _ => false,
    }
}

/// Split a dotted key, keeping dots inside `[...]`.
fn segments(key: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (i, c) in key.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            '.' if depth == 0 => {
                out.push(&key[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&key[start..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(text: &str, key: &str) -> Option<usize> {
        let span = Positions::new(text).span(key)?;
        Some(text[..span.start].matches('\n').count() + 1)
    }

    #[test]
    fn keys_and_array_elements_by_id() {
        let text = "[commune]\nid = \"x\"\n\n[[indicator]]\nid = \"a\"\nkind = \"count\"\n\n[[indicator]]\nid = \"b\"\nkind = \"ratio\"\n[indicator.numerator]\nsource = \"procedure\"\nevent = \"paid\"\n";
        assert_eq!(line(text, "commune.id"), Some(2));
        assert_eq!(line(text, "indicator[b].kind"), Some(10));
        assert_eq!(line(text, "indicator[b].numerator.event"), Some(13));
        assert_eq!(line(text, "indicator[a].kind"), Some(6));
        // A missing key points at the nearest thing that is there.
        let missing = line(text, "indicator[b].denominator").unwrap();
        assert!((8..=13).contains(&missing), "{missing}");
        assert_eq!(line(text, "indicator[1].id"), Some(9));
        assert_eq!(line(text, "nowhere.key"), None);
    }
}
