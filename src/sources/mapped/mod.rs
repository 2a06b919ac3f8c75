//! The mapping engine: applies the site's mapped sources
//! ([`crate::config::mapped::Mapping`], `[[mapped]]` in the config) to a
//! message. A pure function of the message, the mappings and the registry,
//! like the other decoders:
//!
//! 1. the topic picks one rule (at the first level where two patterns
//!    differ, a literal wins over a `{segment}`);
//! 2. an empty payload is a `cleared` event (a retained message cleared);
//! 3. the payload is JSON, or plain text (`20`, `Online`, `true`);
//! 4. telemetry: `each` splits it into items (one event each); per item the
//!    device id (template or JSON path, then the source's `devices` table,
//!    then the registry), the time (absent or `null` → receive time), and
//!    the readings (numbers, numbers in strings, decimal commas, states,
//!    scale and offset);
//! 5. availability: the state value among the `online` / `offline` values.
//!
//! Whatever does not fit is a [`Rejection`] whose detail names the rule
//! (`z2m/telemetry`) and the field; a device id the registry does not know
//! is `unknown_device` with that id, as for the native topics.

pub mod number;
pub mod time;

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::{Map, Value};

use super::{content_key, Ctx, Decoded, Draft, Part, CLEARED};
use crate::config::mapped::{Availability, DeviceFrom, Found, Mapping, Rule};
use crate::model::{DeviceClass, DeviceInfo, Event, Reason, Rejection, Source};

/// Most readings in one event.
pub const MAX_READINGS: usize = 64;
/// Most events from one message.
pub const MAX_ITEMS: usize = 1000;

/// Which rule of which mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Which {
    Telemetry(usize, usize),
    Availability(usize, usize),
}

/// The compiled mapped sources of a site, ready to match topics.
#[derive(Debug, Clone, Default)]
pub struct Mapped {
    mappings: Arc<Vec<Mapping>>,
    /// Every rule, in the order topics are tried.
    order: Vec<Which>,
}

/// What a mapped rule made of a message.
#[derive(Debug)]
pub struct Outcome {
    /// The rule (`z2m/telemetry`; empty for a native topic).
    pub rule: String,
    /// Its event, or why it does not fit; for a message split by `each`,
    /// one part per item (an event, or a dead letter of that item).
    pub decoded: Decoded,
}

impl Mapped {
    /// Index the mappings.
    pub fn new(mappings: Vec<Mapping>) -> Mapped {
        let mut order = Vec::new();
        for (m, mapping) in mappings.iter().enumerate() {
            order.extend((0..mapping.rules.len()).map(|r| Which::Telemetry(m, r)));
            order.extend((0..mapping.availability.len()).map(|a| Which::Availability(m, a)));
        }
        let mapped = Mapped {
            mappings: Arc::new(mappings),
            order,
        };
        let mut order = mapped.order.clone();
        // Stable: equal precedence keeps file order.
        order.sort_by(|a, b| mapped.pattern(*a).precedence(mapped.pattern(*b)));
        Mapped { order, ..mapped }
    }

    /// True when the site maps nothing.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// The mappings.
    pub fn mappings(&self) -> &[Mapping] {
        &self.mappings
    }

    fn pattern(&self, w: Which) -> &crate::config::mapped::TopicPattern {
        match w {
            Which::Telemetry(m, r) => &self.mappings[m].rules[r].topic,
            Which::Availability(m, a) => &self.mappings[m].availability[a].topic,
        }
    }

    /// The MQTT subscription filters of every mapped source.
    pub fn filters(&self) -> Vec<String> {
        let mut seen = HashSet::new();
        self.order
            .iter()
            .map(|w| self.pattern(*w).filter())
            .filter(|f| seen.insert(f.clone()))
            .collect()
    }

    /// The name of the rule that takes `topic`, if one does.
    pub fn rule_for(&self, topic: &str) -> Option<String> {
        self.find(topic).map(|(w, _)| self.name(w).to_string())
    }

    fn name(&self, w: Which) -> &str {
        match w {
            Which::Telemetry(m, r) => &self.mappings[m].rules[r].name,
            Which::Availability(m, a) => &self.mappings[m].availability[a].name,
        }
    }

    fn find<'t>(&self, topic: &'t str) -> Option<(Which, Vec<(&str, &'t str)>)> {
        self.order
            .iter()
            .find_map(|w| self.pattern(*w).captures(topic).map(|c| (*w, c)))
    }

    /// Decode a message on a mapped topic; `None` when no rule takes it.
    pub(crate) fn decode(&self, ctx: &Ctx<'_>) -> Option<Outcome> {
        let (which, caps) = self.find(&ctx.raw.topic)?;
        let rule = self.name(which).to_string();
        let decoded = match which {
            Which::Telemetry(m, r) => {
                let mapping = &self.mappings[m];
                telemetry(ctx, mapping, &mapping.rules[r], &caps)
            }
            Which::Availability(m, a) => {
                let mapping = &self.mappings[m];
                availability(ctx, mapping, &mapping.availability[a], &caps)
            }
        };
        Some(Outcome { rule, decoded })
    }
}

/// What a sample message would become (`commune-ioc map`): the rule that
/// takes it (`None` for a native topic or no rule), and its events or why
/// it would be a dead letter.
pub fn preview(decoder: &super::Decoder, raw: &crate::model::Raw) -> Outcome {
    match decoder.decode_mapped(raw) {
        Some(out) => out,
        None => Outcome {
            rule: String::new(),
            decoded: decoder.decode(raw),
        },
    }
}

/// A rejection from rule `rule`: `rule z2m/telemetry: …`.
fn reject(rule: &str, reason: Reason, detail: impl std::fmt::Display) -> Rejection {
    Rejection::new(reason, format!("rule {rule}: {detail}")).from_device(Source::Sensor, None)
}

/// The payload as a JSON value: JSON when it parses, else (when it does
/// not look like a JSON object or array) its trimmed text.
fn payload(ctx: &Ctx<'_>, rule: &str) -> Result<Value, Rejection> {
    let text = std::str::from_utf8(&ctx.raw.payload).map_err(|e| {
        reject(
            rule,
            Reason::InvalidUtf8,
            format!("payload is not UTF-8: {e}"),
        )
    })?;
    let t = text.trim();
    match serde_json::from_str::<Value>(t) {
        Ok(v) => Ok(v),
        Err(e) if t.starts_with(['{', '[']) => Err(reject(
            rule,
            Reason::InvalidJson,
            format!("invalid JSON: {e}"),
        )),
        Err(_) => Ok(Value::String(t.to_string())),
    }
}

/// An empty payload: a retained message cleared. Changes nothing.
fn cleared(ctx: &Ctx<'_>, rule: &str, device: Option<String>) -> Event {
    let mut attrs = Map::new();
    attrs.insert("topic".into(), Value::from(ctx.raw.topic.as_str()));
    if let Some(d) = device {
        attrs.insert("device_id".into(), Value::from(d));
    }
    attrs.insert("via".into(), Value::from(rule));
    Event {
        source: Source::Sensor,
        kind: CLEARED.into(),
        device: None,
        village: None,
        ts: ctx.raw.received_at,
        received_at: ctx.raw.received_at,
        seq: None,
        attrs,
        dedup_key: format!(
            "{}:{}",
            content_key(ctx.raw, false),
            ctx.raw.received_at.timestamp_micros()
        ),
        retained: ctx.raw.retained,
    }
}

/// Look a name up among the topic's segments and the item's bindings.
fn lookup<'a>(
    caps: &'a [(&str, &str)],
    bindings: &'a [(&'static str, String)],
    name: &str,
) -> Option<&'a str> {
    bindings
        .iter()
        .rev()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.as_str())
        .or_else(|| caps.iter().find(|(n, _)| *n == name).map(|(_, v)| *v))
}

/// The device id as the message gives it.
fn sent_id(
    rule: &str,
    from: &DeviceFrom,
    caps: &[(&str, &str)],
    bindings: &[(&'static str, String)],
    item: Option<&Value>,
    root: Option<&Value>,
) -> Result<String, Rejection> {
    match from {
        DeviceFrom::Template(t) => t.render(|n| lookup(caps, bindings, n)).ok_or_else(|| {
            reject(
                rule,
                Reason::MissingField,
                format!("device id `{}` cannot be made", t.as_str()),
            )
        }),
        DeviceFrom::Path(p) => {
            let v = item
                .and_then(|i| p.get(i))
                .or_else(|| root.and_then(|r| p.get(r)));
            match v {
                Some(Value::String(s)) if !s.trim().is_empty() && s.len() <= 128 => {
                    Ok(s.trim().to_string())
                }
                Some(Value::Number(n)) if n.is_i64() || n.is_u64() => Ok(n.to_string()),
                None | Some(Value::Null) => Err(reject(
                    rule,
                    Reason::MissingField,
                    format!("missing device id `{p}`"),
                )),
                Some(other) => Err(reject(
                    rule,
                    Reason::InvalidField,
                    format!(
                        "device id `{p}` must be a string of 1 to 128 bytes or an integer, got {}",
                        super::fields::type_name(other)
                    ),
                )),
            }
        }
    }
}

/// The registry sensor behind a device id as sent.
fn resolve<'r>(
    ctx: &'r Ctx<'_>,
    mapping: &Mapping,
    rule: &str,
    sent: &str,
) -> Result<&'r DeviceInfo, Rejection> {
    let id = mapping
        .devices
        .get(sent)
        .map(String::as_str)
        .unwrap_or(sent);
    ctx.registry.device(DeviceClass::Sensor, id).ok_or_else(|| {
        Rejection::new(
            Reason::UnknownDevice,
            format!(
                "rule {rule}: sensor `{sent}` is not in the registry (add a [[sensor]], or map it in [mapped.devices] of `{}`)",
                mapping.id
            ),
        )
        .from_device(Source::Sensor, Some(sent))
    })
}

/// A metric name made from a key or a segment: any text of 1 to 64 bytes
/// without control characters, not one of the event's own fields.
fn usable_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && !s.chars().any(char::is_control)
        && !["ts", "seq", "via", "topic", "device_id"].contains(&s)
}

fn telemetry(ctx: &Ctx<'_>, mapping: &Mapping, rule: &Rule, caps: &[(&str, &str)]) -> Decoded {
    let name = rule.name.as_str();
    if ctx.raw.payload.is_empty() {
        let device = sent_id(name, &rule.device, caps, &[], None, None).ok();
        return Decoded::One(Ok(cleared(ctx, name, device)));
    }
    let root = match payload(ctx, name) {
        Ok(v) => v,
        Err(r) => return Decoded::One(Err(r)),
    };
    let items: Vec<Found<'_>> = match &rule.each {
        Some(each) => {
            let items = each.find_all(&root);
            if items.is_empty() {
                return Decoded::One(Err(reject(
                    name,
                    Reason::MissingField,
                    format!("`each = \"{each}\"` reaches nothing in the payload"),
                )));
            }
            if items.len() > MAX_ITEMS {
                return Decoded::One(Err(reject(
                    name,
                    Reason::InvalidField,
                    format!("more than {MAX_ITEMS} items in one message"),
                )));
            }
            items
        }
        None => vec![Found {
            value: &root,
            bindings: Vec::new(),
            at: String::new(),
        }],
    };
    // A message split into several items: each is its own event or its own
    // dead letter, journaled with its own bytes.
    let split = items.len() > 1;
    let mut parts = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let result = match item_event(ctx, mapping, rule, caps, &root, item, i) {
            Ok(None) => continue,
            Ok(Some(e)) => Ok(e),
            Err(r) => Err(r),
        };
        let payload = split.then(|| serde_json::to_vec(item.value).unwrap_or_default());
        parts.push(Part { result, payload });
    }
    match parts.len() {
        0 => Decoded::One(Err(reject(
            name,
            Reason::MissingField,
            format!(
                "no item of `each = \"{}\"` carries a reading",
                rule.each.as_ref().map(|e| e.as_str()).unwrap_or("")
            ),
        ))),
        1 if !split => Decoded::One(parts.remove(0).result),
        _ => Decoded::Many(parts),
    }
}

/// The event of one item; `None` for an item of `each` without any reading.
fn item_event(
    ctx: &Ctx<'_>,
    mapping: &Mapping,
    rule: &Rule,
    caps: &[(&str, &str)],
    root: &Value,
    item: &Found<'_>,
    i: usize,
) -> Result<Option<Event>, Rejection> {
    let name = rule.name.as_str();
    let where_ = if rule.each.is_some() {
        format!(
            "item `{}`: ",
            if item.at.is_empty() { "$" } else { &item.at }
        )
    } else {
        String::new()
    };
    let sent = sent_id(
        name,
        &rule.device,
        caps,
        &item.bindings,
        Some(item.value),
        Some(root),
    )
    .map_err(|r| Rejection {
        detail: r.detail.replacen(": ", &format!(": {where_}"), 1),
        ..r
    })?;
    let device = resolve(ctx, mapping, name, &sent)?;
    let values = rule
        .values
        .as_ref()
        .and_then(|p| p.get(item.value))
        .unwrap_or(item.value);
    let attrs = readings(
        name,
        rule,
        caps,
        &item.bindings,
        values,
        item.value,
        &where_,
    )
    .map_err(|r| r.from_device(Source::Sensor, Some(&sent)))?;
    if attrs.is_empty() {
        if rule.each.is_some() {
            return Ok(None);
        }
        let looked: Vec<&str> = rule
            .readings
            .iter()
            .take(6)
            .map(|r| r.path.as_str())
            .collect();
        return Err(reject(
            name,
            Reason::MissingField,
            if rule.readings.is_empty() {
                "no numeric value in the message".to_string()
            } else {
                format!(
                    "no reading in the message (looked for `{}`{})",
                    looked.join("`, `"),
                    if rule.readings.len() > looked.len() {
                        ", …"
                    } else {
                        ""
                    }
                )
            },
        )
        .from_device(Source::Sensor, Some(&sent)));
    }
    let mut d = Draft::new(Source::Sensor, "telemetry", Some(device));
    if let Some(t) = &rule.time {
        match t.path.get(item.value) {
            None | Some(Value::Null) => {}
            Some(v) => {
                d.ts = Some(time::parse(v, t.format, t.zone).map_err(|e| {
                    reject(
                        name,
                        Reason::InvalidTimestamp,
                        format!("{where_}time `{}`: {e}", t.path),
                    )
                    .from_device(Source::Sensor, Some(&sent))
                })?);
            }
        }
    }
    d.attrs = attrs;
    d.attrs.insert("via".into(), Value::from(name));
    let key = content_key(ctx.raw, d.ts.is_some());
    d.dedup = Some(if rule.each.is_some() {
        format!("{key}:{i}")
    } else {
        key
    });
    d.finish(ctx).map(Some).map_err(|r| Rejection {
        detail: format!("rule {name}: {where_}{}", r.detail),
        ..r
    })
}

/// The readings of one item, as event attributes.
fn readings(
    name: &str,
    rule: &Rule,
    caps: &[(&str, &str)],
    bindings: &[(&'static str, String)],
    values: &Value,
    item: &Value,
    where_: &str,
) -> Result<Map<String, Value>, Rejection> {
    let mut attrs = Map::new();
    // Values an explicit (wildcard-free) reading takes are not taken again
    // by a wildcard or by `all_numbers` (worked out only when one is there).
    let mut claimed: HashSet<String> = HashSet::new();
    if rule.all_numbers || rule.readings.iter().any(|r| r.path.has_wildcard()) {
        for r in rule.readings.iter().filter(|r| !r.path.has_wildcard()) {
            claimed.extend(r.path.find_all(values).into_iter().map(|f| f.at));
        }
    }
    for r in &rule.readings {
        let found: Vec<Found<'_>> = if r.path.has_wildcard() {
            r.path
                .find_all(values)
                .into_iter()
                .filter(|f| !f.value.is_null() && !claimed.contains(&f.at))
                .collect()
        } else {
            match r.path.get(values) {
                None | Some(Value::Null) => Vec::new(),
                Some(value) => vec![Found {
                    value,
                    bindings: Vec::new(),
                    at: String::new(),
                }],
            }
        };
        if found.is_empty() {
            if r.required {
                return Err(reject(
                    name,
                    Reason::MissingField,
                    format!(
                        "{where_}missing field `{}` (reading `{}`)",
                        r.path,
                        r.metric.as_str()
                    ),
                ));
            }
            continue;
        }
        if found.len() > 1 && r.metric.is_constant() {
            let at: Vec<&str> = found.iter().take(4).map(|f| f.at.as_str()).collect();
            return Err(reject(
                name,
                Reason::InvalidField,
                format!(
                    "{where_}`{}` matches {} values (`{}`) for the one reading `{}`: give the full path, or split the message with `each`",
                    r.path,
                    found.len(),
                    at.join("`, `"),
                    r.metric.as_str()
                ),
            ));
        }
        for f in found {
            let field = if f.at.is_empty() {
                r.path.to_string()
            } else {
                f.at.clone()
            };
            let n = match number::number(f.value, &r.states) {
                Ok(Some(n)) => n,
                Ok(None) => continue,
                Err(e) => {
                    return Err(reject(
                        name,
                        Reason::InvalidField,
                        format!("{where_}field `{field}`: {e}"),
                    ));
                }
            };
            let metric = r
                .metric
                .render(|n| lookup(caps, bindings, n).or_else(|| lookup(&[], &f.bindings, n)))
                .unwrap_or_default();
            let metric = rule.rename.get(&metric).cloned().unwrap_or(metric);
            if !usable_name(&metric) {
                return Err(reject(
                    name,
                    Reason::InvalidField,
                    format!("{where_}field `{field}`: `{metric}` cannot be a metric name"),
                ));
            }
            let v = n * r.scale + r.offset;
            if !v.is_finite() {
                return Err(reject(
                    name,
                    Reason::InvalidField,
                    format!("{where_}field `{field}`: out of range after scaling"),
                ));
            }
            if attrs.len() >= MAX_READINGS {
                return Err(reject(
                    name,
                    Reason::InvalidField,
                    format!("{where_}more than {MAX_READINGS} readings"),
                ));
            }
            attrs.entry(metric).or_insert(Value::from(v));
        }
    }
    if rule.all_numbers {
        if let Value::Object(m) = values {
            let time_key = rule.time.as_ref().and_then(|t| match t.path.steps() {
                [crate::config::mapped::Step::Key(k)] if std::ptr::eq(values, item) => {
                    Some(k.as_str())
                }
                _ => None,
            });
            for (k, v) in m {
                if Some(k.as_str()) == time_key
                    || claimed.contains(k)
                    || claimed.contains(&format!("\"{k}\""))
                {
                    continue;
                }
                let n = match v {
                    Value::Number(n) => n.as_f64().filter(|f| f.is_finite()),
                    Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
                    Value::String(s) => number::text(s),
                    _ => None,
                };
                let Some(n) = n else { continue };
                let metric = rule.rename.get(k).cloned().unwrap_or_else(|| k.clone());
                if !usable_name(&metric) {
                    continue;
                }
                if attrs.len() >= MAX_READINGS {
                    return Err(reject(
                        name,
                        Reason::InvalidField,
                        format!("{where_}more than {MAX_READINGS} readings"),
                    ));
                }
                attrs.entry(metric).or_insert(Value::from(n));
            }
        }
    }
    Ok(attrs)
}

fn availability(
    ctx: &Ctx<'_>,
    mapping: &Mapping,
    a: &Availability,
    caps: &[(&str, &str)],
) -> Decoded {
    Decoded::One(status(ctx, mapping, a, caps))
}

fn status(
    ctx: &Ctx<'_>,
    mapping: &Mapping,
    a: &Availability,
    caps: &[(&str, &str)],
) -> Result<Event, Rejection> {
    let name = a.name.as_str();
    if ctx.raw.payload.is_empty() {
        let device = sent_id(name, &a.device, caps, &[], None, None).ok();
        return Ok(cleared(ctx, name, device));
    }
    let root = payload(ctx, name)?;
    let sent = sent_id(name, &a.device, caps, &[], None, Some(&root))?;
    let online = match a.fixed {
        Some(up) => up,
        None => {
            let v = match (&root, &a.path) {
                (Value::Object(_), Some(p)) => p.get(&root),
                (Value::Object(_), None) => None,
                (scalar, _) => Some(scalar),
            };
            let text = match v {
                Some(Value::String(s)) => s.trim().to_string(),
                Some(Value::Bool(b)) => b.to_string(),
                Some(Value::Number(n)) => n.to_string(),
                _ => {
                    return Err(reject(
                        name,
                        Reason::MissingField,
                        format!(
                            "no state in the message (expected {}{})",
                            quoted(&a.online, &a.offline),
                            a.path
                                .as_ref()
                                .map(|p| format!(" or an object with `{p}`"))
                                .unwrap_or_default()
                        ),
                    )
                    .from_device(Source::Sensor, Some(&sent)));
                }
            };
            if a.online.contains(&text) {
                true
            } else if a.offline.contains(&text) {
                false
            } else {
                let shown: String = text.chars().take(40).collect();
                return Err(reject(
                    name,
                    Reason::InvalidField,
                    format!(
                        "state `{shown}`{} is none of {}",
                        a.path
                            .as_ref()
                            .filter(|_| root.is_object())
                            .map(|p| format!(" (field `{p}`)"))
                            .unwrap_or_default(),
                        quoted(&a.online, &a.offline)
                    ),
                )
                .from_device(Source::Sensor, Some(&sent)));
            }
        }
    };
    let device = resolve(ctx, mapping, name, &sent)?;
    let mut d = Draft::new(Source::Sensor, "status", Some(device));
    d.attrs.insert(
        "state".into(),
        Value::from(if online { "online" } else { "offline" }),
    );
    d.attrs.insert("via".into(), Value::from(name));
    d.finish(ctx)
}

fn quoted(on: &[String], off: &[String]) -> String {
    on.iter()
        .chain(off)
        .map(|s| format!("`{s}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests;
