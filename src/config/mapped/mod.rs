//! Mapped sources (`[[mapped]]`): devices that publish in their own format
//! (zigbee2mqtt, Tasmota, Shelly, ESPHome, ThingsBoard, …) turned into
//! sensor events by configuration, not code. This module holds the
//! definitions as written, the ready presets (`include = "zigbee2mqtt"`,
//! from `config/mappings/*.toml`, built into the binary), and the typed
//! [`Mapping`] that validation builds (topic patterns, JSON paths and
//! templates parsed, zones resolved, every problem reported with its key).
//! The engine that applies a mapping to a message is
//! `sources::mapped`.
//!
//! ```toml
//! [[mapped]]
//! id = "z2m"
//! include = "zigbee2mqtt"
//! [mapped.devices]                 # id the device sends → registry sensor id
//! "Wassermelder Küche" = "leak-01"
//! ```

pub mod path;
pub mod template;
pub mod topic;

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};

pub use path::{Found, JsonPath, Step};
pub use template::Template;
pub use topic::{Level, TopicPattern};

/// The ready mappings shipped in `config/mappings/`, by name.
pub const PRESETS: &[(&str, &str)] = &[
    (
        "zigbee2mqtt",
        include_str!("../../../config/mappings/zigbee2mqtt.toml"),
    ),
    (
        "tasmota",
        include_str!("../../../config/mappings/tasmota.toml"),
    ),
    (
        "shelly",
        include_str!("../../../config/mappings/shelly.toml"),
    ),
    (
        "esphome",
        include_str!("../../../config/mappings/esphome.toml"),
    ),
    (
        "thingsboard",
        include_str!("../../../config/mappings/thingsboard.toml"),
    ),
    (
        "thingsboard-device",
        include_str!("../../../config/mappings/thingsboard-device.toml"),
    ),
];

/// The text of a preset.
pub fn preset(name: &str) -> Option<&'static str> {
    PRESETS.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
}

/// The default zone of times written without an offset.
pub const DEFAULT_ZONE: &str = "Asia/Ho_Chi_Minh";

/// Attribute names a reading may not take (the event's own fields).
const RESERVED: &[&str] = &["ts", "seq", "via", "topic", "device_id"];

/// A mapped source as written (`[[mapped]]`, or a preset file's top level).
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MappedDef {
    /// Stable id, named in dead letters (`z2m/telemetry`). Defaults to the
    /// preset's name.
    pub id: Option<String>,
    /// A shipped mapping to start from (`zigbee2mqtt`, `tasmota`, `shelly`,
    /// `esphome`, `thingsboard`, `thingsboard-device`); its rules come
    /// before this entry's own.
    pub include: Option<String>,
    /// What this mapping is for (presets describe themselves).
    #[serde(default)]
    pub description: String,
    /// Zone of times written without an offset (default Asia/Ho_Chi_Minh).
    pub zone: Option<String>,
    /// Device id template for the rules that give none and whose topic has
    /// no `{device}` (one device behind a fixed topic).
    pub device: Option<String>,
    /// Device id as the message gives it → registry sensor id. An id not
    /// listed here is looked up in the registry as it is.
    #[serde(default)]
    pub devices: BTreeMap<String, String>,
    /// Telemetry rules. A rule named like one of the preset's extends it:
    /// its readings are added, the fields it gives replace the preset's.
    #[serde(default, rename = "rule")]
    pub rules: Vec<RuleDef>,
    /// Availability (online/offline) rules.
    #[serde(default)]
    pub availability: Vec<AvailabilityDef>,
}

/// A telemetry rule as written.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RuleDef {
    /// Name within the source (default: its position).
    pub name: Option<String>,
    /// Topic pattern, e.g. `zigbee2mqtt/{device}` (may be left out when
    /// extending a preset's rule).
    #[serde(default)]
    pub topic: String,
    /// Device id template over the topic's segments and `each`'s bindings
    /// (default `{device}` when the topic has that segment).
    pub device: Option<String>,
    /// Or: the JSON path of the device id in the payload (`src`).
    pub device_path: Option<String>,
    /// One event per value this path reaches (`[*]`, `*[*]`).
    pub each: Option<String>,
    /// Readings and `all_numbers` are read under this path of each item
    /// when it is there (ThingsBoard's `values`), else from the item.
    pub values: Option<String>,
    /// Where the event time is; absent or `null` → receive time.
    pub time: Option<TimeDef>,
    /// Every other numeric field also becomes a reading, named by its key
    /// (after `rename`).
    #[serde(default)]
    pub all_numbers: bool,
    /// Key or `{name}` → metric name.
    #[serde(default)]
    pub rename: BTreeMap<String, String>,
    /// The readings.
    #[serde(default, rename = "reading")]
    pub readings: Vec<ReadingDef>,
}

/// How a time is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum TimeFormat {
    /// ISO 8601 (with an offset, or in the zone without one); numbers as
    /// epoch milliseconds, or seconds below 10^11 (PROTOCOL §1.5).
    #[default]
    Auto,
    /// ISO 8601 only.
    Iso,
    /// Epoch seconds, decimals allowed.
    EpochS,
    /// Epoch milliseconds.
    EpochMs,
}

/// Where and how the time is written.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TimeDef {
    /// JSON path of the time in each item.
    pub path: String,
    /// Its format.
    #[serde(default)]
    pub format: TimeFormat,
    /// Zone of a time without an offset (default: the source's).
    pub zone: Option<String>,
}

/// A reading as written.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct ReadingDef {
    /// JSON path of the value (`*` allowed: one match, or `{key}` in `metric`).
    pub path: String,
    /// Metric name (an attribute the indicators read, e.g. `temperature_c`);
    /// may use `{name}` segments and `{key}`.
    pub metric: String,
    /// Unit after scaling, for people (`°C`, `%`, `mm`).
    #[serde(default)]
    pub unit: String,
    /// Multiply by this (default 1).
    pub scale: Option<f64>,
    /// Then add this (default 0).
    pub offset: Option<f64>,
    /// Text values and their numbers (`ON = 1`, `OFF = 0`).
    #[serde(default)]
    pub states: BTreeMap<String, f64>,
    /// A message without it is a dead letter.
    #[serde(default)]
    pub required: bool,
}

/// An availability rule as written.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AvailabilityDef {
    /// Name within the source (default `availability`, then its position).
    pub name: Option<String>,
    /// Topic pattern, e.g. `tele/{device}/LWT`.
    pub topic: String,
    /// Device id template (default `{device}`).
    pub device: Option<String>,
    /// Or: the JSON path of the device id (`device` for ThingsBoard).
    pub device_path: Option<String>,
    /// JSON path of the state in an object payload (`state`); a plain
    /// payload (`online`, `Online`, `true`) is the state itself.
    pub path: Option<String>,
    /// Values meaning online.
    #[serde(default)]
    pub online: Vec<String>,
    /// Values meaning offline.
    #[serde(default)]
    pub offline: Vec<String>,
    /// Or: every message on this topic means this (`online` / `offline`).
    pub state: Option<String>,
}

/// Where a device id comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum DeviceFrom {
    /// A template over segments and bindings.
    Template(Template),
    /// A JSON path in the payload.
    Path(JsonPath),
}

/// A telemetry reading, typed.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    /// Where the value is.
    pub path: JsonPath,
    /// The metric name.
    pub metric: Template,
    /// Unit after scaling.
    pub unit: String,
    /// Factor.
    pub scale: f64,
    /// Addend.
    pub offset: f64,
    /// Text → number.
    pub states: Vec<(String, f64)>,
    /// Missing → dead letter.
    pub required: bool,
}

/// The time of a rule, typed.
#[derive(Debug, Clone, PartialEq)]
pub struct TimeSpec {
    /// Where.
    pub path: JsonPath,
    /// How.
    pub format: TimeFormat,
    /// Zone for times without an offset.
    pub zone: chrono_tz::Tz,
}

/// A telemetry rule, typed.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// `{source}/{rule}`, as dead letters name it.
    pub name: String,
    /// The topic pattern.
    pub topic: TopicPattern,
    /// The device id.
    pub device: DeviceFrom,
    /// One event per item.
    pub each: Option<JsonPath>,
    /// Where readings are read in an item, when there.
    pub values: Option<JsonPath>,
    /// The time.
    pub time: Option<TimeSpec>,
    /// The readings.
    pub readings: Vec<Reading>,
    /// Other numbers become readings too.
    pub all_numbers: bool,
    /// Key → metric name.
    pub rename: HashMap<String, String>,
}

/// An availability rule, typed.
#[derive(Debug, Clone, PartialEq)]
pub struct Availability {
    /// `{source}/{rule}`.
    pub name: String,
    /// The topic pattern.
    pub topic: TopicPattern,
    /// The device id.
    pub device: DeviceFrom,
    /// Where the state is in an object payload.
    pub path: Option<JsonPath>,
    /// Values meaning online.
    pub online: Vec<String>,
    /// Values meaning offline.
    pub offline: Vec<String>,
    /// A fixed state for every message (`true` = online).
    pub fixed: Option<bool>,
}

/// A mapped source, typed.
#[derive(Debug, Clone, PartialEq)]
pub struct Mapping {
    /// Its id.
    pub id: String,
    /// Telemetry rules (preset's first).
    pub rules: Vec<Rule>,
    /// Availability rules.
    pub availability: Vec<Availability>,
    /// Device id as sent → registry sensor id.
    pub devices: HashMap<String, String>,
}

impl Mapping {
    /// The MQTT subscription filters of this source.
    pub fn filters(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .rules
            .iter()
            .map(|r| r.topic.filter())
            .chain(self.availability.iter().map(|a| a.topic.filter()))
            .collect();
        out.dedup();
        out
    }
}

/// A metric name: ASCII lowercase, digits, `_`, starting with a letter, at
/// most 64 bytes, not one of the event's own fields.
pub fn is_metric(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_lowercase())
        && s.len() <= 64
        && b.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_')
        && !RESERVED.contains(&s)
}

/// Parse a zone name (`Asia/Ho_Chi_Minh`, `UTC`, `Europe/Berlin`).
pub fn zone(name: &str) -> Option<chrono_tz::Tz> {
    name.parse().ok()
}

/// One problem: the key (relative to `mapped[...]`) and the reason.
pub type Problem = (String, String);

/// Build the typed mappings of `defs`. `is_sensor` says whether a registry
/// sensor has that id. Problems come back with their dotted keys.
pub fn compile(
    defs: &[MappedDef],
    is_sensor: &dyn Fn(&str) -> bool,
) -> (Vec<Mapping>, Vec<Problem>) {
    let mut out = Vec::new();
    let mut problems = Vec::new();
    let mut ids = HashSet::new();
    let mut seen_filters: HashMap<String, String> = HashMap::new();
    for (i, def) in defs.iter().enumerate() {
        let id = def
            .id
            .clone()
            .or_else(|| def.include.clone())
            .unwrap_or_else(|| i.to_string());
        let key = format!(
            "mapped[{}]",
            def.id.clone().unwrap_or_else(|| i.to_string())
        );
        let mut c = Compiler {
            key: key.clone(),
            problems: &mut problems,
        };
        if !crate::config::validate::is_slug(&id) {
            c.problem(
                "id",
                format!("`{id}` không phải mã hợp lệ (chữ thường không dấu, số, '-', '_')"),
            );
        }
        if !ids.insert(id.clone()) {
            c.problem("id", format!("mã nguồn ánh xạ `{id}` bị trùng"));
        }
        let zone_name = def.zone.clone();
        let mut rules: Vec<(String, RuleDef)> = Vec::new();
        let mut avail: Vec<(String, AvailabilityDef)> = Vec::new();
        let mut zone_name = zone_name;
        if let Some(name) = &def.include {
            match preset(name).map(toml::from_str::<MappedDef>) {
                None => c.problem(
                    "include",
                    format!(
                        "không có mẫu `{name}`; các mẫu có sẵn: {}",
                        PRESETS
                            .iter()
                            .map(|(n, _)| *n)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ),
                Some(Err(e)) => c.problem("include", format!("mẫu `{name}` hỏng: {e}")),
                Some(Ok(p)) => {
                    if p.include.is_some() {
                        c.problem(
                            "include",
                            format!("mẫu `{name}` không được include mẫu khác"),
                        );
                    }
                    zone_name = zone_name.or(p.zone);
                    for (j, r) in p.rules.into_iter().enumerate() {
                        rules.push((format!("include({name}).rule[{j}]"), r));
                    }
                    for (j, a) in p.availability.into_iter().enumerate() {
                        avail.push((format!("include({name}).availability[{j}]"), a));
                    }
                }
            }
        }
        for (j, r) in def.rules.iter().enumerate() {
            let extends = r
                .name
                .as_ref()
                .and_then(|n| rules.iter().position(|(_, p)| p.name.as_ref() == Some(n)));
            match extends {
                Some(at) => {
                    let (k, base) = &mut rules[at];
                    *k = format!("rule[{j}]");
                    extend(base, r.clone());
                }
                None => rules.push((format!("rule[{j}]"), r.clone())),
            }
        }
        if let Some(d) = &def.device {
            for (_, r) in rules.iter_mut() {
                if r.device.is_none() && r.device_path.is_none() && !r.topic.contains("{device}") {
                    r.device = Some(d.clone());
                }
            }
            for (_, a) in avail.iter_mut() {
                if a.device.is_none() && a.device_path.is_none() && !a.topic.contains("{device}") {
                    a.device = Some(d.clone());
                }
            }
        }
        for (j, a) in def.availability.iter().enumerate() {
            avail.push((format!("availability[{j}]"), a.clone()));
        }
        if rules.is_empty() && avail.is_empty() && def.include.is_none() {
            c.problem(
                "rule",
                "nguồn ánh xạ cần ít nhất một `[[mapped.rule]]` hoặc `[[mapped.availability]]`, hoặc `include` một mẫu",
            );
        }
        let zone_name = zone_name.unwrap_or_else(|| DEFAULT_ZONE.to_string());
        let tz = match zone(&zone_name) {
            Some(z) => z,
            None => {
                c.problem(
                    "zone",
                    format!("không biết múi giờ `{zone_name}` (ví dụ đúng: Asia/Ho_Chi_Minh, UTC)"),
                );
                chrono_tz::Asia::Ho_Chi_Minh
            }
        };
        let mut devices = HashMap::new();
        for (sent, sensor) in &def.devices {
            if !is_sensor(sensor) {
                // Unquoted, so the problem is placed on its line (a name
                // with a dot cannot be, and is quoted).
                let at = if sent.contains('.') {
                    format!("devices.\"{sent}\"")
                } else {
                    format!("devices.{sent}")
                };
                c.problem(
                    &at,
                    format!(
                        "không có cảm biến `{sensor}`: hãy khai báo nó trong một mục [[sensor]]"
                    ),
                );
            }
            devices.insert(sent.clone(), sensor.clone());
        }
        let mut names = HashSet::new();
        let mut typed_rules = Vec::new();
        for (j, (k, r)) in rules.iter().enumerate() {
            let short = r.name.clone().unwrap_or_else(|| format!("rule{j}"));
            if !names.insert(short.clone()) {
                c.problem(&format!("{k}.name"), format!("tên luật `{short}` bị trùng"));
            }
            if let Some(rule) = c.rule(k, &format!("{id}/{short}"), r, tz) {
                typed_rules.push(rule);
            }
        }
        let mut typed_avail = Vec::new();
        for (j, (k, a)) in avail.iter().enumerate() {
            let short = a.name.clone().unwrap_or_else(|| {
                if j == 0 {
                    "availability".into()
                } else {
                    format!("availability{j}")
                }
            });
            if !names.insert(short.clone()) {
                c.problem(&format!("{k}.name"), format!("tên luật `{short}` bị trùng"));
            }
            if let Some(av) = c.availability(k, &format!("{id}/{short}"), a) {
                typed_avail.push(av);
            }
        }
        let topics = typed_rules
            .iter()
            .map(|r| (r.name.clone(), r.topic.clone()))
            .chain(
                typed_avail
                    .iter()
                    .map(|a| (a.name.clone(), a.topic.clone())),
            );
        for (name, t) in topics {
            if let Some(first) = seen_filters.insert(t.filter(), name.clone()) {
                c.problem(
                    "rule",
                    format!(
                        "luật `{name}` và `{first}` cùng nghe chủ đề `{}`: một bản tin chỉ theo được một luật",
                        t.filter()
                    ),
                );
            }
        }
        out.push(Mapping {
            id,
            rules: typed_rules,
            availability: typed_avail,
            devices,
        });
    }
    (out, problems)
}

/// A site rule extending a preset rule of the same name: readings added,
/// renames merged, every field it gives replacing the preset's.
fn extend(base: &mut RuleDef, with: RuleDef) {
    if !with.topic.is_empty() {
        base.topic = with.topic;
    }
    if with.device.is_some() || with.device_path.is_some() {
        base.device = with.device;
        base.device_path = with.device_path;
    }
    if with.each.is_some() {
        base.each = with.each;
    }
    if with.values.is_some() {
        base.values = with.values;
    }
    if with.time.is_some() {
        base.time = with.time;
    }
    base.all_numbers |= with.all_numbers;
    base.rename.extend(with.rename);
    base.readings.extend(with.readings);
}

struct Compiler<'p> {
    key: String,
    problems: &'p mut Vec<Problem>,
}

impl Compiler<'_> {
    fn problem(&mut self, sub: &str, reason: impl Into<String>) {
        self.problems
            .push((format!("{}.{sub}", self.key), reason.into()));
    }

    fn topic(&mut self, k: &str, text: &str) -> Option<TopicPattern> {
        match TopicPattern::parse(text) {
            Ok(t) => {
                if let Some(Level::Literal(first)) = t.levels().first() {
                    if first == "ioc" || first == "frigate" {
                        self.problem(
                            &format!("{k}.topic"),
                            format!("`{text}`: chủ đề `ioc/…` và `frigate/…` đã có bộ giải mã riêng (PROTOCOL §2, §3)"),
                        );
                        return None;
                    }
                }
                Some(t)
            }
            Err(e) => {
                self.problem(&format!("{k}.topic"), e);
                None
            }
        }
    }

    fn path(&mut self, k: &str, text: &str, wildcards: bool) -> Option<JsonPath> {
        match JsonPath::parse(text) {
            Ok(p) if !wildcards && p.has_wildcard() => {
                self.problem(k, format!("`{text}`: không dùng `*` ở đây"));
                None
            }
            Ok(p) => Some(p),
            Err(e) => {
                self.problem(k, e);
                None
            }
        }
    }

    fn template(&mut self, k: &str, text: &str, known: &[&str]) -> Option<Template> {
        match Template::parse(text) {
            Ok(t) => {
                let unknown: Vec<&str> = t.names().filter(|n| !known.contains(n)).collect();
                if unknown.is_empty() {
                    Some(t)
                } else {
                    self.problem(
                        k,
                        format!(
                            "`{text}` dùng {} nhưng chủ đề và `each` chỉ có {}",
                            unknown
                                .iter()
                                .map(|n| format!("{{{n}}}"))
                                .collect::<Vec<_>>()
                                .join(", "),
                            if known.is_empty() {
                                "không có tên nào".to_string()
                            } else {
                                known
                                    .iter()
                                    .map(|n| format!("{{{n}}}"))
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            }
                        ),
                    );
                    None
                }
            }
            Err(e) => {
                self.problem(k, e);
                None
            }
        }
    }

    fn device(
        &mut self,
        k: &str,
        template: Option<&str>,
        path: Option<&str>,
        known: &[&str],
    ) -> Option<DeviceFrom> {
        match (template, path) {
            (Some(_), Some(_)) => {
                self.problem(
                    &format!("{k}.device_path"),
                    "chỉ dùng một trong `device` và `device_path`",
                );
                None
            }
            (Some(t), None) => self
                .template(&format!("{k}.device"), t, known)
                .map(DeviceFrom::Template),
            (None, Some(p)) => self
                .path(&format!("{k}.device_path"), p, false)
                .map(DeviceFrom::Path),
            (None, None) if known.contains(&"device") => {
                Some(DeviceFrom::Template(Template::parse("{device}").ok()?))
            }
            (None, None) => {
                self.problem(
                    &format!("{k}.device"),
                    "chủ đề không có đoạn `{device}`: hãy cho `device` (mẫu, ví dụ \"{name}\") hoặc `device_path` (đường dẫn JSON, ví dụ \"src\")",
                );
                None
            }
        }
    }

    fn rule(&mut self, k: &str, name: &str, r: &RuleDef, tz: chrono_tz::Tz) -> Option<Rule> {
        let topic = self.topic(k, &r.topic);
        let each = r
            .each
            .as_deref()
            .and_then(|e| self.path(&format!("{k}.each"), e, true));
        if r.each.is_some() && each.is_none() {
            return None;
        }
        let mut known: Vec<&str> = topic.as_ref().map(|t| t.names()).unwrap_or_default();
        if let Some(e) = &each {
            known.extend(e.binding_names());
        }
        let device = match &topic {
            Some(_) => self.device(k, r.device.as_deref(), r.device_path.as_deref(), &known),
            None => None,
        };
        let values = match &r.values {
            Some(v) => Some(self.path(&format!("{k}.values"), v, false)?),
            None => None,
        };
        let time = match &r.time {
            None => None,
            Some(t) => {
                let path = self.path(&format!("{k}.time.path"), &t.path, false);
                let tz = match &t.zone {
                    None => Some(tz),
                    Some(z) => {
                        let parsed = zone(z);
                        if parsed.is_none() {
                            self.problem(
                                &format!("{k}.time.zone"),
                                format!(
                                    "không biết múi giờ `{z}` (ví dụ đúng: Asia/Ho_Chi_Minh, UTC)"
                                ),
                            );
                        }
                        parsed
                    }
                };
                Some(TimeSpec {
                    path: path?,
                    format: t.format,
                    zone: tz?,
                })
            }
        };
        let mut readings = Vec::new();
        let mut ok = true;
        for (j, rd) in r.readings.iter().enumerate() {
            let rk = format!("{k}.reading[{j}]");
            let Some(path) = self.path(&format!("{rk}.path"), &rd.path, true) else {
                ok = false;
                continue;
            };
            let mut names = known.clone();
            names.extend(path.binding_names());
            let metric = self.template(&format!("{rk}.metric"), &rd.metric, &names);
            ok &= metric.is_some();
            if metric.as_ref().is_some_and(Template::is_constant) && !is_metric(&rd.metric) {
                self.problem(
                    &format!("{rk}.metric"),
                    format!("`{}` không phải tên chỉ số hợp lệ (chữ thường không dấu, số, `_`, bắt đầu bằng chữ, tối đa 64; không dùng ts, seq, via)", rd.metric),
                );
                ok = false;
            }
            let scale = rd.scale.unwrap_or(1.0);
            let offset = rd.offset.unwrap_or(0.0);
            if !scale.is_finite() || scale == 0.0 {
                self.problem(&format!("{rk}.scale"), "phải là số hữu hạn khác 0");
                ok = false;
            }
            if !offset.is_finite() {
                self.problem(&format!("{rk}.offset"), "phải là số hữu hạn");
                ok = false;
            }
            for (s, v) in &rd.states {
                if !v.is_finite() {
                    self.problem(&format!("{rk}.states.{s}"), "phải là số hữu hạn");
                    ok = false;
                }
            }
            let Some(metric) = metric else { continue };
            readings.push(Reading {
                path,
                metric,
                unit: rd.unit.clone(),
                scale,
                offset,
                states: rd.states.iter().map(|(s, v)| (s.clone(), *v)).collect(),
                required: rd.required,
            });
        }
        for (from, to) in &r.rename {
            if !is_metric(to) {
                self.problem(
                    &format!("{k}.rename.{from}"),
                    format!("`{to}` không phải tên chỉ số hợp lệ (chữ thường không dấu, số, `_`)"),
                );
                ok = false;
            }
        }
        if r.readings.is_empty() && !r.all_numbers {
            self.problem(
                &format!("{k}.reading"),
                "luật cần ít nhất một `[[mapped.rule.reading]]`, hoặc `all_numbers = true`",
            );
            ok = false;
        }
        if !ok {
            return None;
        }
        Some(Rule {
            name: name.to_string(),
            topic: topic?,
            device: device?,
            each,
            values,
            time,
            readings,
            all_numbers: r.all_numbers,
            rename: r
                .rename
                .iter()
                .map(|(a, b)| (a.clone(), b.clone()))
                .collect(),
        })
    }

    fn availability(&mut self, k: &str, name: &str, a: &AvailabilityDef) -> Option<Availability> {
        let topic = self.topic(k, &a.topic);
        let known: Vec<&str> = topic.as_ref().map(|t| t.names()).unwrap_or_default();
        let device = match &topic {
            Some(_) => self.device(k, a.device.as_deref(), a.device_path.as_deref(), &known),
            None => None,
        };
        let path = match &a.path {
            Some(p) => Some(self.path(&format!("{k}.path"), p, false)?),
            None => None,
        };
        let fixed = match a.state.as_deref() {
            None => None,
            Some("online") => Some(true),
            Some("offline") => Some(false),
            Some(other) => {
                self.problem(
                    &format!("{k}.state"),
                    format!("`{other}` phải là `online` hoặc `offline`"),
                );
                return None;
            }
        };
        if fixed.is_none() && (a.online.is_empty() || a.offline.is_empty()) {
            self.problem(
                &format!("{k}.online"),
                "cần cả `online` và `offline` (các giá trị mà thiết bị gửi), hoặc `state`",
            );
            return None;
        }
        if let Some(v) = a.online.iter().find(|v| a.offline.contains(v)) {
            self.problem(
                &format!("{k}.offline"),
                format!("`{v}` vừa là online vừa là offline"),
            );
            return None;
        }
        Some(Availability {
            name: name.to_string(),
            topic: topic?,
            device: device?,
            path,
            online: a.online.clone(),
            offline: a.offline.clone(),
            fixed,
        })
    }
}

#[cfg(test)]
mod tests;
