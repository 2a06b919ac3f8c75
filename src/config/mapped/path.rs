//! JSON paths of a mapped source: where a reading, a time, a device id or a
//! state is in a payload.
//!
//! ```text
//! ""  or "$"               the payload itself (ESPHome `20`, Tasmota `Online`)
//! temperature              a key of the top-level object
//! params.ts                nested keys
//! "temperature:0".tC       a key with dots or spaces, quoted ("…" or ["…"])
//! ENERGY.Power
//! values[0]                an array element
//! *.Temperature            any key at that level (binds `{key}`)
//! [*]  *[*]                each element of an array (binds `{index}`); an
//!                          object in its place counts as a one-element array
//! ```

use std::fmt;

use serde_json::Value;

/// One step of a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// An object key.
    Key(String),
    /// Any key of an object (a wildcard).
    AnyKey,
    /// An array element.
    Index(usize),
    /// Every element of an array (an object counts as a one-element array).
    AnyIndex,
}

/// A parsed path.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JsonPath {
    steps: Vec<Step>,
    text: String,
}

/// One value a path reached, with the keys and indexes its wildcards took.
#[derive(Debug, Clone)]
pub struct Found<'v> {
    /// The value.
    pub value: &'v Value,
    /// What each wildcard matched, in order: (`key`|`index`, text).
    pub bindings: Vec<(&'static str, String)>,
    /// The concrete path (`LYWSD03-52680f.Temperature`), for messages.
    pub at: String,
}

const KEY_NAMES: [&str; 3] = ["key", "key2", "key3"];
const INDEX_NAMES: [&str; 3] = ["index", "index2", "index3"];

impl JsonPath {
    /// Parse a path (see the module documentation).
    pub fn parse(text: &str) -> Result<JsonPath, String> {
        let t = text.trim();
        let body = t
            .strip_prefix("$.")
            .or_else(|| t.strip_prefix('$'))
            .unwrap_or(t);
        let mut steps = Vec::new();
        let chars: Vec<char> = body.chars().collect();
        let mut i = 0;
        let mut expect_step = true;
        while i < chars.len() {
            let c = chars[i];
            match c {
                '.' => {
                    if expect_step {
                        return Err(format!("`{text}`: hai dấu chấm liền nhau hoặc chấm ở đầu"));
                    }
                    expect_step = true;
                    i += 1;
                    if i == chars.len() {
                        return Err(format!("`{text}`: kết thúc bằng dấu chấm"));
                    }
                }
                '[' => {
                    let close = chars[i..]
                        .iter()
                        .position(|&c| c == ']')
                        .map(|p| p + i)
                        .ok_or_else(|| format!("`{text}`: thiếu `]`"))?;
                    let inner: String = chars[i + 1..close].iter().collect();
                    let inner = inner.trim();
                    if inner == "*" {
                        steps.push(Step::AnyIndex);
                    } else if let Some(q) = quoted(inner) {
                        steps.push(Step::Key(q));
                    } else {
                        let n: usize = inner.parse().map_err(|_| {
                            format!("`{text}`: `[{inner}]` phải là số thứ tự, `*` hoặc \"tên\"")
                        })?;
                        steps.push(Step::Index(n));
                    }
                    expect_step = false;
                    i = close + 1;
                }
                '"' => {
                    if !expect_step {
                        return Err(format!("`{text}`: thiếu dấu chấm trước `\"`"));
                    }
                    let close = chars[i + 1..]
                        .iter()
                        .position(|&c| c == '"')
                        .map(|p| p + i + 1)
                        .ok_or_else(|| format!("`{text}`: thiếu dấu `\"` đóng"))?;
                    steps.push(Step::Key(chars[i + 1..close].iter().collect()));
                    expect_step = false;
                    i = close + 1;
                }
                _ => {
                    if !expect_step {
                        return Err(format!("`{text}`: thiếu dấu chấm trước `{c}`"));
                    }
                    let end = chars[i..]
                        .iter()
                        .position(|&c| c == '.' || c == '[')
                        .map(|p| p + i)
                        .unwrap_or(chars.len());
                    let name: String = chars[i..end].iter().collect();
                    if name.contains(']') || name.contains('"') {
                        return Err(format!("`{text}`: `{name}` có ký tự `]` hoặc `\"`"));
                    }
                    if name == "*" {
                        steps.push(Step::AnyKey);
                    } else {
                        steps.push(Step::Key(name));
                    }
                    expect_step = false;
                    i = end;
                }
            }
        }
        if steps.iter().filter(|s| matches!(s, Step::AnyKey)).count() > KEY_NAMES.len()
            || steps.iter().filter(|s| matches!(s, Step::AnyIndex)).count() > INDEX_NAMES.len()
        {
            return Err(format!("`{text}`: quá nhiều ký tự đại diện `*`"));
        }
        Ok(JsonPath {
            steps,
            text: t.to_string(),
        })
    }

    /// The path as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The steps.
    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    /// True for the payload itself.
    pub fn is_root(&self) -> bool {
        self.steps.is_empty()
    }

    /// True when a wildcard can make it reach several values.
    pub fn has_wildcard(&self) -> bool {
        self.steps
            .iter()
            .any(|s| matches!(s, Step::AnyKey | Step::AnyIndex))
    }

    /// The names its wildcards bind (`key`, `index`, …).
    pub fn binding_names(&self) -> Vec<&'static str> {
        let (mut k, mut n) = (0, 0);
        let mut out = Vec::new();
        for s in &self.steps {
            match s {
                Step::AnyKey => {
                    out.push(KEY_NAMES[k]);
                    k += 1;
                }
                Step::AnyIndex => {
                    out.push(INDEX_NAMES[n]);
                    n += 1;
                }
                _ => {}
            }
        }
        out
    }

    /// The one value at this path (the first, for a path with wildcards);
    /// `None` when it is absent.
    pub fn get<'v>(&self, root: &'v Value) -> Option<&'v Value> {
        let mut v = root;
        for s in &self.steps {
            v = match (s, v) {
                (Step::Key(k), Value::Object(m)) => m.get(k)?,
                (Step::Index(i), Value::Array(a)) => a.get(*i)?,
                (Step::AnyKey, Value::Object(m)) => m.values().next()?,
                (Step::AnyIndex, Value::Array(a)) => a.first()?,
                (Step::AnyIndex, o @ Value::Object(_)) => o,
                _ => return None,
            };
        }
        Some(v)
    }

    /// Every value this path reaches, in the payload's key order (keys
    /// sorted), with what the wildcards matched.
    pub fn find_all<'v>(&self, root: &'v Value) -> Vec<Found<'v>> {
        let mut out = Vec::new();
        let start = Found {
            value: root,
            bindings: Vec::new(),
            at: String::new(),
        };
        self.walk(0, start, (0, 0), &mut out);
        out
    }

    fn walk<'v>(&self, n: usize, cur: Found<'v>, wild: (usize, usize), out: &mut Vec<Found<'v>>) {
        if out.len() >= 4096 {
            return;
        }
        let Some(step) = self.steps.get(n) else {
            out.push(cur);
            return;
        };
        let child = |cur: &Found<'v>,
                     value: &'v Value,
                     seg: String,
                     bind: Option<(&'static str, String)>| {
            let mut bindings = cur.bindings.clone();
            bindings.extend(bind);
            let at = if cur.at.is_empty() {
                seg
            } else if seg.starts_with('[') {
                format!("{}{seg}", cur.at)
            } else {
                format!("{}.{seg}", cur.at)
            };
            Found {
                value,
                bindings,
                at,
            }
        };
        match (step, cur.value) {
            (Step::Key(k), Value::Object(m)) => {
                if let Some(v) = m.get(k) {
                    let next = child(&cur, v, show_key(k), None);
                    self.walk(n + 1, next, wild, out);
                }
            }
            (Step::Index(i), Value::Array(a)) => {
                if let Some(v) = a.get(*i) {
                    let next = child(&cur, v, format!("[{i}]"), None);
                    self.walk(n + 1, next, wild, out);
                }
            }
            (Step::AnyKey, Value::Object(m)) => {
                for (k, v) in m {
                    let next = child(&cur, v, show_key(k), Some((KEY_NAMES[wild.0], k.clone())));
                    self.walk(n + 1, next, (wild.0 + 1, wild.1), out);
                }
            }
            (Step::AnyIndex, Value::Array(a)) => {
                for (i, v) in a.iter().enumerate() {
                    let next = child(
                        &cur,
                        v,
                        format!("[{i}]"),
                        Some((INDEX_NAMES[wild.1], i.to_string())),
                    );
                    self.walk(n + 1, next, (wild.0, wild.1 + 1), out);
                }
            }
            (Step::AnyIndex, Value::Object(_)) => {
                let mut next = cur.clone();
                next.bindings.push((INDEX_NAMES[wild.1], "0".into()));
                self.walk(n + 1, next, (wild.0, wild.1 + 1), out);
            }
            _ => {}
        }
    }
}

fn show_key(k: &str) -> String {
    if k.contains('.') || k.contains('[') || k.contains(' ') || k.is_empty() {
        format!("\"{k}\"")
    } else {
        k.to_string()
    }
}

fn quoted(s: &str) -> Option<String> {
    let s = s.strip_prefix('"')?.strip_suffix('"')?;
    Some(s.to_string())
}

impl fmt::Display for JsonPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.text.is_empty() {
            f.write_str("$")
        } else {
            f.write_str(&self.text)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn p(s: &str) -> JsonPath {
        JsonPath::parse(s).unwrap()
    }

    #[test]
    fn parses_keys_quotes_indexes_and_wildcards() {
        assert_eq!(
            p("params.\"temperature:0\".tC").steps(),
            &[
                Step::Key("params".into()),
                Step::Key("temperature:0".into()),
                Step::Key("tC".into())
            ]
        );
        assert_eq!(
            p("$.a[2][\"b.c\"]").steps(),
            &[
                Step::Key("a".into()),
                Step::Index(2),
                Step::Key("b.c".into())
            ]
        );
        assert_eq!(p("*[*]").steps(), &[Step::AnyKey, Step::AnyIndex]);
        assert!(p("").is_root());
        assert!(p("$").is_root());
        assert_eq!(p("*[*]").binding_names(), vec!["key", "index"]);
        for bad in ["a..b", ".a", "a.", "a[x]", "a[1", "\"a", "a\"b\""] {
            assert!(JsonPath::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn get_reaches_nested_values_and_array_elements() {
        let v = json!({"params":{"temperature:0":{"tC":19.9}},"a":[{"x":1},{"x":2}],"s":"online"});
        assert_eq!(p("params.\"temperature:0\".tC").get(&v), Some(&json!(19.9)));
        assert_eq!(p("params.temperature:0.tC").get(&v), Some(&json!(19.9)));
        assert_eq!(p("a[1].x").get(&v), Some(&json!(2)));
        assert_eq!(p("a[5].x").get(&v), None);
        assert_eq!(p("s.x").get(&v), None);
        assert_eq!(p("").get(&v), Some(&v));
    }

    #[test]
    fn wildcards_bind_keys_and_indexes() {
        let v = json!({"Device A":[{"ts":1},{"ts":2}],"Device B":[{"ts":3}],"Device C":{"ts":4}});
        let found = p("*[*]").find_all(&v);
        let got: Vec<(String, String, &Value)> = found
            .iter()
            .map(|f| {
                (
                    f.bindings[0].1.clone(),
                    f.bindings[1].1.clone(),
                    &f.value["ts"],
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("Device A".into(), "0".into(), &json!(1)),
                ("Device A".into(), "1".into(), &json!(2)),
                ("Device B".into(), "0".into(), &json!(3)),
                ("Device C".into(), "0".into(), &json!(4)),
            ]
        );
        assert_eq!(found[1].at, "\"Device A\"[1]");
        let t = json!({"AM2301":{"Temperature":24.6},"TempUnit":"C"});
        let f = p("*.Temperature").find_all(&t);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].at, "AM2301.Temperature");
    }
}
