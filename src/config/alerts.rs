//! `[alerts]`: the commune's own alert rules, the notification timers
//! (grouping), the escalation ladder, as written, and their typed form
//! ([`AlertSettings`], in [`super::Site`]) built and checked at load.
//!
//! ```toml
//! [alerts]
//! group_wait = "30s"
//! group_interval = "5m"
//! repeat_interval = "4h"
//!
//! [[alerts.rule]]
//! id = "mua-lon-na-da"
//! name = "Mưa lớn tại Bản Nà Đa"
//! kind = "threshold"
//! sensor = "rain-01"
//! field = "rain_mm"
//! when = "> 50"
//! for = "10m"
//! interval = "5m"
//!
//! [[alerts.escalation]]
//! name = "Cán bộ trực ban"
//! after = "0s"
//! targets = ["truc-ban"]
//! ```

use std::collections::{BTreeSet, HashSet};

use chrono::TimeDelta;
use serde::{Deserialize, Serialize};

use super::Config;
use crate::vocab::{DeviceClass, Source, Target};

/// `[alerts]` as written.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsDef {
    /// Wait before the first notification of a new group.
    pub group_wait: String,
    /// Wait between two notifications of the same group.
    pub group_interval: String,
    /// Send an unacknowledged alert again after this long.
    pub repeat_interval: String,
    /// How often rules are evaluated and deadlines checked.
    pub eval_interval: String,
    /// The rules.
    #[serde(rename = "rule")]
    pub rules: Vec<RuleDef>,
    /// The escalation ladder, in order.
    #[serde(rename = "escalation")]
    pub escalation: Vec<StepDef>,
}

impl Default for AlertsDef {
    fn default() -> Self {
        AlertsDef {
            group_wait: "30s".into(),
            group_interval: "5m".into(),
            repeat_interval: "4h".into(),
            eval_interval: "1s".into(),
            rules: Vec::new(),
            escalation: Vec::new(),
        }
    }
}

/// One rule as written; which fields apply depends on `kind`.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RuleDef {
    /// Stable id (part of each alert's fingerprint).
    pub id: String,
    /// Vietnamese name, shown and sent.
    #[serde(default)]
    pub name: String,
    /// `threshold`, `absence`, `camera` or `group_offline`.
    pub kind: String,
    /// `critical`, `major`, `minor`, `warning` or `info`.
    pub severity: Option<String>,
    /// threshold / absence: a registered sensor.
    pub sensor: Option<String>,
    /// threshold: the sensor's metric (a telemetry field).
    pub field: Option<String>,
    /// threshold: an indicator id instead of a sensor.
    pub indicator: Option<String>,
    /// threshold over an indicator / group_offline: the villages (empty:
    /// the commune for an indicator, every village for a group).
    #[serde(default)]
    pub villages: Vec<String>,
    /// threshold: the condition, e.g. `"> 50"`.
    pub when: Option<String>,
    /// threshold / group_offline: how long the condition must hold.
    #[serde(rename = "for")]
    pub for_: Option<String>,
    /// threshold / absence: the sensor's or source's reporting interval.
    pub interval: Option<String>,
    /// threshold / absence: missed intervals before the data is stale.
    pub missed: Option<u32>,
    /// absence: a producer family instead of a sensor (`procedure`...).
    pub source: Option<String>,
    /// absence: any registered device instead of a sensor.
    pub device: Option<String>,
    /// camera: event kinds (`fire`, `smoke`, `intrusion`, `tamper`).
    #[serde(default)]
    pub events: Vec<String>,
    /// camera: only these cameras (empty: any).
    #[serde(default)]
    pub cameras: Vec<String>,
    /// camera: only these zones (empty: any).
    #[serde(default)]
    pub zones: Vec<String>,
    /// camera: resolve after this long without a new event.
    pub resolve_after: Option<String>,
    /// group_offline: `camera`, `speaker` or `sensor`.
    pub class: Option<String>,
    /// While this rule's alert fires in a village, alerts of these kinds
    /// in the same village are inhibited (a power or backhaul outage
    /// inhibits `group_offline` and `absence`).
    #[serde(default)]
    pub inhibits: Vec<String>,
}

/// One step of the escalation ladder as written.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct StepDef {
    /// Who is reached (Vietnamese), e.g. `Cán bộ trực ban`.
    pub name: String,
    /// Delay after the previous step (the first: after grouping).
    pub after: String,
    /// Webhook targets (names of `[delivery.targets.NAME]`).
    pub targets: Vec<String>,
}

/// What an alert is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// An official warning (CAP) relayed.
    Warning,
    /// A reading or indicator beyond its limit.
    Threshold,
    /// No data from a device or source.
    Absence,
    /// A camera event (fire, smoke, intrusion).
    Camera,
    /// Every device of a class in a village offline.
    GroupOffline,
}

impl AlertKind {
    /// Every kind.
    pub const ALL: [AlertKind; 5] = [
        AlertKind::Warning,
        AlertKind::Threshold,
        AlertKind::Absence,
        AlertKind::Camera,
        AlertKind::GroupOffline,
    ];

    /// The name in config, API and payloads.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::Warning => "warning",
            AlertKind::Threshold => "threshold",
            AlertKind::Absence => "absence",
            AlertKind::Camera => "camera",
            AlertKind::GroupOffline => "group_offline",
        }
    }

    /// Parse the name.
    pub fn parse(s: &str) -> Option<AlertKind> {
        AlertKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// Alert severity (Alertmanager / ThingsBoard words).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Life or property at risk now.
    Critical,
    /// Needs action soon.
    Major,
    /// Needs attention.
    Minor,
    /// Worth knowing.
    Warning,
    /// Information.
    Info,
}

impl Severity {
    /// The name.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::Major => "major",
            Severity::Minor => "minor",
            Severity::Warning => "warning",
            Severity::Info => "info",
        }
    }

    /// Parse the name.
    pub fn parse(s: &str) -> Option<Severity> {
        [
            Severity::Critical,
            Severity::Major,
            Severity::Minor,
            Severity::Warning,
            Severity::Info,
        ]
        .into_iter()
        .find(|x| x.as_str() == s)
    }
}

/// What a typed rule watches.
#[derive(Debug, Clone, PartialEq)]
pub enum RuleSpec {
    /// A sensor's metric against a limit.
    SensorThreshold {
        /// The sensor.
        sensor: String,
        /// Its metric.
        field: String,
        /// The condition that fires.
        when: Target,
        /// How long it must hold.
        for_: TimeDelta,
        /// The data is stale after this long without a reading (None: never).
        stale_after: Option<TimeDelta>,
    },
    /// An indicator's value against a limit, per scope.
    IndicatorThreshold {
        /// Indicator id.
        indicator: String,
        /// Scopes (`commune` or village ids).
        scopes: Vec<String>,
        /// The condition that fires.
        when: Target,
        /// How long it must hold.
        for_: TimeDelta,
    },
    /// No data from a device or a source family for `after`.
    Absence {
        /// What is watched.
        from: AbsenceOf,
        /// `missed` × `interval`.
        after: TimeDelta,
    },
    /// Camera events.
    Camera {
        /// Event kinds.
        events: Vec<String>,
        /// Cameras (empty: any).
        cameras: Vec<String>,
        /// Zones (empty: any).
        zones: Vec<String>,
        /// Resolve after this long without a new event.
        resolve_after: TimeDelta,
    },
    /// Every reporting device of a class in a village offline.
    GroupOffline {
        /// The class.
        class: DeviceClass,
        /// Villages (each one its own alert).
        villages: Vec<String>,
        /// How long it must hold.
        for_: TimeDelta,
    },
}

/// What an absence rule watches.
#[derive(Debug, Clone, PartialEq)]
pub enum AbsenceOf {
    /// A registered device.
    Device(DeviceClass, String),
    /// Any event of a producer family.
    Source(Source),
}

/// A typed rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// Stable id.
    pub id: String,
    /// Vietnamese name.
    pub name: String,
    /// Severity.
    pub severity: Severity,
    /// What it watches.
    pub spec: RuleSpec,
    /// Kinds it inhibits in the same village while it fires.
    pub inhibits: Vec<AlertKind>,
}

impl Rule {
    /// The kind of the alerts it raises.
    pub fn kind(&self) -> AlertKind {
        match self.spec {
            RuleSpec::SensorThreshold { .. } | RuleSpec::IndicatorThreshold { .. } => {
                AlertKind::Threshold
            }
            RuleSpec::Absence { .. } => AlertKind::Absence,
            RuleSpec::Camera { .. } => AlertKind::Camera,
            RuleSpec::GroupOffline { .. } => AlertKind::GroupOffline,
        }
    }
}

/// One typed escalation step.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// Who is reached.
    pub name: String,
    /// Delay after the previous step.
    pub after: TimeDelta,
    /// Delivery target names.
    pub targets: Vec<String>,
}

/// `[alerts]` typed.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertSettings {
    /// Before a new group's first notification.
    pub group_wait: TimeDelta,
    /// Between two notifications of a group.
    pub group_interval: TimeDelta,
    /// Before an unacknowledged alert is sent again (after the last step).
    pub repeat_interval: TimeDelta,
    /// Evaluation period.
    pub eval_interval: TimeDelta,
    /// Rules, in file order.
    pub rules: Vec<Rule>,
    /// The ladder.
    pub ladder: Vec<Step>,
}

impl Default for AlertSettings {
    fn default() -> Self {
        AlertSettings {
            group_wait: TimeDelta::seconds(30),
            group_interval: TimeDelta::minutes(5),
            repeat_interval: TimeDelta::hours(4),
            eval_interval: TimeDelta::seconds(1),
            rules: Vec::new(),
            ladder: Vec::new(),
        }
    }
}

/// Parse a duration such as `90s`, `10m`, `1h30m`, `2d` or `250ms`.
pub fn parse_duration(s: &str) -> Result<TimeDelta, String> {
    let t = s.trim();
    let bad =
        || format!("`{s}` không phải khoảng thời gian: viết như 30s, 10m, 1h30m, 2d hoặc 500ms");
    if t.is_empty() {
        return Err(bad());
    }
    if t == "0" {
        return Ok(TimeDelta::zero());
    }
    let mut total = TimeDelta::zero();
    let mut rest = t;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 || digits > 9 {
            return Err(bad());
        }
        let n: i64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let part = match &rest[..unit_len] {
            "ms" => TimeDelta::milliseconds(n),
            "s" => TimeDelta::seconds(n),
            "m" => TimeDelta::minutes(n),
            "h" => TimeDelta::hours(n),
            "d" => TimeDelta::days(n),
            _ => return Err(bad()),
        };
        rest = &rest[unit_len..];
        total += part;
    }
    if total > TimeDelta::days(365) {
        return Err(format!("`{s}` dài quá một năm"));
    }
    Ok(total)
}

/// Check `[alerts]` and build its typed form; problems go to `issue`.
pub(super) fn check(
    c: &Config,
    indicator_ids: &HashSet<&str>,
    issue: &mut dyn FnMut(String, String),
) -> AlertSettings {
    let a = &c.alerts;
    let mut out = AlertSettings::default();
    let dur = |key: &str, v: &str, issue: &mut dyn FnMut(String, String)| match parse_duration(v) {
        Ok(d) => Some(d),
        Err(e) => {
            issue(key.to_owned(), e);
            None
        }
    };
    if let Some(d) = dur("alerts.group_wait", &a.group_wait, issue) {
        out.group_wait = d;
    }
    if let Some(d) = dur("alerts.group_interval", &a.group_interval, issue) {
        out.group_interval = d;
    }
    if let Some(d) = dur("alerts.repeat_interval", &a.repeat_interval, issue) {
        out.repeat_interval = d;
    }
    if let Some(d) = dur("alerts.eval_interval", &a.eval_interval, issue) {
        if d < TimeDelta::milliseconds(50) || d > TimeDelta::minutes(1) {
            issue("alerts.eval_interval".into(), "phải từ 50ms đến 1m".into());
        } else {
            out.eval_interval = d;
        }
    }
    if out.group_interval <= TimeDelta::zero() {
        issue("alerts.group_interval".into(), "phải lớn hơn 0".into());
    }
    if out.repeat_interval <= TimeDelta::zero() {
        issue("alerts.repeat_interval".into(), "phải lớn hơn 0".into());
    }

    let villages: HashSet<&str> = c.villages.iter().map(|v| v.id.as_str()).collect();
    let sensors: HashSet<&str> = c.sensors.iter().map(|s| s.id.as_str()).collect();
    let cameras: HashSet<&str> = c.cameras.iter().map(|s| s.id.as_str()).collect();
    let mut ids = HashSet::new();
    for r in &a.rules {
        let key = format!("alerts.rule[{}]", r.id);
        if !super::validate::is_slug(&r.id) {
            issue(
                format!("{key}.id"),
                format!(
                    "`{}` không phải mã hợp lệ (chữ thường không dấu, số, '-', '_')",
                    r.id
                ),
            );
        }
        if !ids.insert(r.id.as_str()) {
            issue(format!("{key}.id"), "mã quy tắc bị trùng".into());
        }
        if r.name.trim().is_empty() {
            issue(format!("{key}.name"), "không được để trống".into());
        }
        let severity = match r.severity.as_deref() {
            None => None,
            Some(s) => match Severity::parse(s) {
                Some(s) => Some(s),
                None => {
                    issue(
                        format!("{key}.severity"),
                        format!("`{s}` không có: dùng critical, major, minor, warning hoặc info"),
                    );
                    None
                }
            },
        };
        let mut inhibits = Vec::new();
        for k in &r.inhibits {
            match AlertKind::parse(k) {
                Some(AlertKind::Warning) | None => issue(
                    format!("{key}.inhibits"),
                    format!("`{k}` không phải loại cảnh báo có thể chặn: dùng threshold, absence, camera hoặc group_offline"),
                ),
                Some(k) => inhibits.push(k),
            }
        }
        let mut used: BTreeSet<&'static str> = BTreeSet::new();
        let need = |name: &'static str,
                    v: Option<&String>,
                    issue: &mut dyn FnMut(String, String)| match v {
            Some(v) if !v.trim().is_empty() => Some(v.clone()),
            _ => {
                issue(
                    format!("{key}.{name}"),
                    format!("quy tắc loại `{}` cần `{name}`", r.kind),
                );
                None
            }
        };
        let spec = match r.kind.as_str() {
            "threshold" => {
                used.extend(["when", "for"]);
                if r.indicator.is_some() {
                    used.extend(["indicator", "villages"]);
                } else {
                    used.extend(["sensor", "field", "interval", "missed"]);
                }
                let when = need("when", r.when.as_ref(), issue).and_then(|w| {
                    Target::parse(&w)
                        .map_err(|e| issue(format!("{key}.when"), e))
                        .ok()
                });
                let for_ = match &r.for_ {
                    None => Some(TimeDelta::zero()),
                    Some(f) => dur(&format!("{key}.for"), f, issue),
                };
                if let Some(ind) = &r.indicator {
                    if !indicator_ids.contains(ind.as_str()) {
                        issue(
                            format!("{key}.indicator"),
                            format!("không có chỉ tiêu `{ind}`: hãy khai báo nó trong một mục [[indicator]]"),
                        );
                    }
                    for v in &r.villages {
                        if !villages.contains(v.as_str()) {
                            issue(
                                format!("{key}.villages"),
                                format!("không có thôn/bản `{v}`"),
                            );
                        }
                    }
                    let scopes = if r.villages.is_empty() {
                        vec!["commune".to_owned()]
                    } else {
                        r.villages.clone()
                    };
                    match (when, for_) {
                        (Some(when), Some(for_)) => Some(RuleSpec::IndicatorThreshold {
                            indicator: ind.clone(),
                            scopes,
                            when,
                            for_,
                        }),
                        _ => None,
                    }
                } else {
                    let sensor = need("sensor", r.sensor.as_ref(), issue);
                    if let Some(s) = &sensor {
                        if !sensors.contains(s.as_str()) {
                            issue(
                                format!("{key}.sensor"),
                                format!("không có cảm biến `{s}`: hãy khai báo nó trong một mục [[sensor]]"),
                            );
                        }
                    }
                    let field = need("field", r.field.as_ref(), issue);
                    let stale_after = match &r.interval {
                        None => None,
                        Some(i) => dur(&format!("{key}.interval"), i, issue)
                            .map(|i| i * i32::try_from(r.missed.unwrap_or(3).max(1)).unwrap_or(3)),
                    };
                    match (sensor, field, when, for_) {
                        (Some(sensor), Some(field), Some(when), Some(for_)) => {
                            Some(RuleSpec::SensorThreshold {
                                sensor,
                                field,
                                when,
                                for_,
                                stale_after,
                            })
                        }
                        _ => None,
                    }
                }
            }
            "absence" => {
                used.extend(["sensor", "device", "source", "interval", "missed"]);
                let from = match (&r.sensor, &r.device, &r.source) {
                    (Some(s), None, None) => {
                        if !sensors.contains(s.as_str()) {
                            issue(format!("{key}.sensor"), format!("không có cảm biến `{s}`"));
                        }
                        Some(AbsenceOf::Device(DeviceClass::Sensor, s.clone()))
                    }
                    (None, Some(d), None) => {
                        let class = [
                            (DeviceClass::Camera, c.cameras.iter().any(|x| &x.id == d)),
                            (DeviceClass::Speaker, c.speakers.iter().any(|x| &x.id == d)),
                            (DeviceClass::Sensor, sensors.contains(d.as_str())),
                        ]
                        .into_iter()
                        .find(|(_, found)| *found)
                        .map(|(c, _)| c);
                        match class {
                            Some(class) => Some(AbsenceOf::Device(class, d.clone())),
                            None => {
                                issue(format!("{key}.device"), format!("không có thiết bị `{d}`"));
                                None
                            }
                        }
                    }
                    (None, None, Some(s)) => {
                        match Source::parse(s) {
                            Some(s) => Some(AbsenceOf::Source(s)),
                            None => {
                                issue(
                                format!("{key}.source"),
                                format!("`{s}` không có: dùng camera, speaker, procedure hoặc sensor"),
                            );
                                None
                            }
                        }
                    }
                    _ => {
                        issue(
                            key.clone(),
                            "quy tắc loại `absence` cần đúng một trong `sensor`, `device` hoặc `source`".into(),
                        );
                        None
                    }
                };
                let interval = need("interval", r.interval.as_ref(), issue)
                    .and_then(|i| dur(&format!("{key}.interval"), &i, issue));
                let missed = r.missed.unwrap_or(3);
                if missed == 0 {
                    issue(format!("{key}.missed"), "phải từ 1 trở lên".into());
                }
                match (from, interval) {
                    (Some(from), Some(i)) if missed > 0 && i > TimeDelta::zero() => {
                        Some(RuleSpec::Absence {
                            from,
                            after: i * i32::try_from(missed).unwrap_or(i32::MAX),
                        })
                    }
                    (_, Some(i)) if i <= TimeDelta::zero() => {
                        issue(format!("{key}.interval"), "phải lớn hơn 0".into());
                        None
                    }
                    _ => None,
                }
            }
            "camera" => {
                used.extend(["events", "cameras", "zones", "resolve_after"]);
                if r.events.is_empty() {
                    issue(
                        format!("{key}.events"),
                        "quy tắc loại `camera` cần `events`, ví dụ [\"fire\", \"smoke\"]".into(),
                    );
                }
                for e in &r.events {
                    if !Source::Camera.event_kinds().contains(&e.as_str()) {
                        issue(
                            format!("{key}.events"),
                            format!("camera không gửi loại sự kiện `{e}`"),
                        );
                    }
                }
                for cam in &r.cameras {
                    if !cameras.contains(cam.as_str()) {
                        issue(format!("{key}.cameras"), format!("không có camera `{cam}`"));
                    }
                }
                let resolve_after = match &r.resolve_after {
                    None => Some(TimeDelta::minutes(15)),
                    Some(d) => dur(&format!("{key}.resolve_after"), d, issue),
                };
                resolve_after.map(|resolve_after| RuleSpec::Camera {
                    events: r.events.clone(),
                    cameras: r.cameras.clone(),
                    zones: r.zones.clone(),
                    resolve_after,
                })
            }
            "group_offline" => {
                used.extend(["class", "villages", "for"]);
                let class = need("class", r.class.as_ref(), issue).and_then(|cl| {
                    DeviceClass::parse(&cl).or_else(|| {
                        issue(
                            format!("{key}.class"),
                            format!("`{cl}` không có: dùng camera, speaker hoặc sensor"),
                        );
                        None
                    })
                });
                for v in &r.villages {
                    if !villages.contains(v.as_str()) {
                        issue(
                            format!("{key}.villages"),
                            format!("không có thôn/bản `{v}`"),
                        );
                    }
                }
                let for_ = match &r.for_ {
                    None => Some(TimeDelta::zero()),
                    Some(f) => dur(&format!("{key}.for"), f, issue),
                };
                let list = if r.villages.is_empty() {
                    c.villages.iter().map(|v| v.id.clone()).collect()
                } else {
                    r.villages.clone()
                };
                match (class, for_) {
                    (Some(class), Some(for_)) => Some(RuleSpec::GroupOffline {
                        class,
                        villages: list,
                        for_,
                    }),
                    _ => None,
                }
            }
            other => {
                issue(
                    format!("{key}.kind"),
                    format!(
                        "`{other}` không có: dùng threshold, absence, camera hoặc group_offline"
                    ),
                );
                None
            }
        };
        // Fields given that this kind does not read are mistakes.
        let given: [(&'static str, bool); 13] = [
            ("sensor", r.sensor.is_some()),
            ("field", r.field.is_some()),
            ("indicator", r.indicator.is_some()),
            ("villages", !r.villages.is_empty()),
            ("when", r.when.is_some()),
            ("for", r.for_.is_some()),
            ("interval", r.interval.is_some()),
            ("missed", r.missed.is_some()),
            ("source", r.source.is_some()),
            ("device", r.device.is_some()),
            ("events", !r.events.is_empty()),
            ("cameras", !r.cameras.is_empty()),
            ("class", r.class.is_some()),
        ];
        if spec.is_some() {
            for (name, present) in given {
                if present && !used.contains(name) {
                    issue(
                        format!("{key}.{name}"),
                        format!("quy tắc loại `{}` không dùng `{name}`", r.kind),
                    );
                }
            }
            if (!r.zones.is_empty() || r.resolve_after.is_some()) && r.kind != "camera" {
                issue(
                    key.clone(),
                    "`zones` và `resolve_after` chỉ dùng cho quy tắc loại `camera`".into(),
                );
            }
        }
        if let Some(spec) = spec {
            let kind_default = match &spec {
                RuleSpec::Camera { .. } => Severity::Critical,
                RuleSpec::SensorThreshold { .. } | RuleSpec::IndicatorThreshold { .. } => {
                    Severity::Major
                }
                RuleSpec::Absence { .. } | RuleSpec::GroupOffline { .. } => Severity::Minor,
            };
            out.rules.push(Rule {
                id: r.id.clone(),
                name: r.name.clone(),
                severity: severity.unwrap_or(kind_default),
                spec,
                inhibits,
            });
        }
    }

    for (i, s) in a.escalation.iter().enumerate() {
        let key = format!("alerts.escalation[{i}]");
        if s.name.trim().is_empty() {
            issue(format!("{key}.name"), "không được để trống".into());
        }
        if s.targets.is_empty() {
            issue(format!("{key}.targets"), "cần ít nhất một nơi nhận".into());
        }
        for t in &s.targets {
            if !super::validate::is_slug(t) {
                issue(
                    format!("{key}.targets"),
                    format!("`{t}` không phải tên nơi nhận hợp lệ"),
                );
            }
        }
        if let Some(after) = dur(&format!("{key}.after"), &s.after, issue) {
            if after < TimeDelta::zero() {
                issue(format!("{key}.after"), "không được âm".into());
            }
            out.ladder.push(Step {
                name: s.name.clone(),
                after,
                targets: s.targets.clone(),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// check-config names each mistake in `[alerts]` with its key.
    #[test]
    fn mistakes_in_rules_are_named_with_their_key() {
        let text = r#"
[commune]
id = "x"
name = "X"
[[village]]
id = "na-da"
name = "Bản Nà Đa"
[[sensor]]
id = "rain-01"
[alerts]
group_wait = "soon"
[[alerts.rule]]
id = "a"
name = "A"
kind = "threshold"
sensor = "rain-02"
field = "rain_mm"
when = "about 5"
[[alerts.rule]]
id = "b"
name = "B"
kind = "group_offline"
class = "printer"
villages = ["ban-ma"]
[[alerts.rule]]
id = "c"
name = "C"
kind = "camera"
events = ["fire"]
sensor = "rain-01"
[[alerts.rule]]
id = "d"
name = "D"
kind = "absence"
sensor = "rain-01"
[[alerts.rule]]
id = "e"
name = "E"
kind = "weather"
[[alerts.escalation]]
name = "Trực ban"
after = "0s"
targets = []
"#;
        let err = crate::config::load_str(text, "t.toml", &[])
            .unwrap_err()
            .to_string();
        for want in [
            "alerts.group_wait",
            "alerts.rule[a].sensor",
            "alerts.rule[a].when",
            "alerts.rule[b].class",
            "alerts.rule[b].villages",
            "alerts.rule[c].sensor",
            "alerts.rule[d].interval",
            "alerts.rule[e].kind",
            "alerts.escalation[0].targets",
        ] {
            assert!(err.contains(want), "{want} missing in:\n{err}");
        }
        assert!(err.contains("không phải khoảng thời gian"), "{err}");
    }

    #[test]
    fn durations_read_like_prometheus() {
        assert_eq!(parse_duration("30s").unwrap(), TimeDelta::seconds(30));
        assert_eq!(parse_duration("1h30m").unwrap(), TimeDelta::minutes(90));
        assert_eq!(
            parse_duration("250ms").unwrap(),
            TimeDelta::milliseconds(250)
        );
        assert_eq!(parse_duration("0").unwrap(), TimeDelta::zero());
        for bad in ["", "10", "m", "5 minutes", "-5s", "1.5h", "400d"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
