//! Semantic checks on a parsed [`Config`]: every problem is collected, so
//! `commune-ioc check-config` can list them all at once.

use std::collections::HashSet;
use std::net::SocketAddr;

use super::{Config, Filter, IndicatorKind};
use crate::config::ConfigIssue;
use crate::indicators::Target;
use crate::model::{DeviceClass, Source};

/// All problems found in `config` (empty when it is valid).
pub fn validate(config: &Config, origin: &str) -> Vec<ConfigIssue> {
    let mut v = Validator {
        origin,
        issues: Vec::new(),
    };
    v.check(config);
    v.issues
}

struct Validator<'a> {
    origin: &'a str,
    issues: Vec<ConfigIssue>,
}

/// A slug usable as an MQTT topic level and a URL path segment.
pub(crate) fn is_slug(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

impl Validator<'_> {
    fn issue(&mut self, key: impl Into<String>, reason: impl Into<String>) {
        self.issues.push(ConfigIssue {
            origin: self.origin.to_string(),
            key: key.into(),
            reason: reason.into(),
        });
    }

    fn check_auth(&mut self, c: &Config) {
        let a = &c.auth;
        for (key, value) in [
            ("auth.session_ttl_s", a.session_ttl_s),
            ("auth.failure_window_s", a.failure_window_s),
            ("auth.lockout_s", a.lockout_s),
            ("http.request_timeout_s", c.http.request_timeout_s),
        ] {
            if value == 0 {
                self.issue(key, "phải từ 1 giây trở lên");
            }
        }
        for (key, value) in [
            ("auth.max_failures_per_user", a.max_failures_per_user),
            ("auth.max_failures_per_address", a.max_failures_per_address),
        ] {
            if value == 0 {
                self.issue(key, "phải từ 1 trở lên");
            }
        }
        if let Some(p) = &a.admin_password {
            if !p.expose().is_empty() && p.expose().chars().count() < 10 {
                self.issue("auth.admin_password", "mật khẩu phải dài ít nhất 10 ký tự");
            }
        }
        if c.http.max_body_bytes < 1024 {
            self.issue("http.max_body_bytes", "phải từ 1024 byte trở lên");
        }
        for (i, origin) in c.http.cors_origins.iter().enumerate() {
            let ok = (origin.starts_with("http://") || origin.starts_with("https://"))
                && !origin.ends_with('/')
                && axum::http::HeaderValue::from_str(origin).is_ok();
            if !ok {
                self.issue(
                    format!("http.cors_origins[{i}]"),
                    format!("`{origin}` không phải nguồn hợp lệ (dạng https://ten-may:cong, không có / ở cuối)"),
                );
            }
        }
        if !c.mqtt.embedded_logins.is_empty() && !c.mqtt.embedded {
            self.issue(
                "mqtt.embedded_logins",
                "chỉ dùng với broker nhúng (mqtt.embedded = true); broker ngoài tự quản lý tài khoản",
            );
        }
    }

    fn check_live(&mut self, c: &Config) {
        let l = &c.live;
        for (key, value) in [
            ("live.max_connections", l.max_connections),
            ("live.max_unauthenticated", l.max_unauthenticated),
            ("live.max_subscriptions", l.max_subscriptions),
            ("live.queue_batches", l.queue_batches),
            ("live.history_batches", l.history_batches),
            ("live.feed_len", l.feed_len),
        ] {
            if value == 0 {
                self.issue(key, "phải từ 1 trở lên");
            }
        }
        if l.max_frame_bytes < 1024 {
            self.issue("live.max_frame_bytes", "phải từ 1024 byte trở lên");
        }
        if l.max_command_bytes < 256 {
            self.issue("live.max_command_bytes", "phải từ 256 byte trở lên");
        }
        if l.commands_per_second == 0 {
            self.issue("live.commands_per_second", "phải từ 1 trở lên");
        }
        for (key, value) in [
            (
                "live.snapshot_bytes_per_second",
                l.snapshot_bytes_per_second,
            ),
            ("live.snapshot_burst_bytes", l.snapshot_burst_bytes),
        ] {
            if value < 1024 {
                self.issue(key, "phải từ 1024 byte trở lên");
            }
        }
        for (key, value) in [
            ("live.auth_timeout_s", l.auth_timeout_s),
            ("live.heartbeat_s", l.heartbeat_s),
            ("live.send_timeout_s", l.send_timeout_s),
        ] {
            if value == 0 {
                self.issue(key, "phải từ 1 giây trở lên");
            }
        }
        if l.tick_ms < 100 {
            self.issue("live.tick_ms", "phải từ 100 ms trở lên");
        }
        if l.min_step_ms > 1000 {
            self.issue("live.min_step_ms", "phải từ 0 đến 1000 ms");
        }
    }

    fn check(&mut self, c: &Config) {
        if !is_slug(&c.commune.id) {
            self.issue(
                "commune.id",
                format!(
                    "`{}` không phải mã hợp lệ: chỉ dùng chữ thường không dấu, chữ số, '-' hoặc '_' (mã này nằm trong chủ đề MQTT)",
                    c.commune.id
                ),
            );
        }
        if c.commune.name.trim().is_empty() {
            self.issue("commune.name", "không được để trống");
        }
        self.check_mqtt(c);
        self.check_influx(c);
        if c.http.listen.parse::<SocketAddr>().is_err() {
            self.issue(
                "http.listen",
                format!("`{}` không phải địa chỉ dạng 127.0.0.1:8080", c.http.listen),
            );
        }
        if c.store.batch_max == 0 {
            self.issue("store.batch_max", "phải từ 1 trở lên");
        }
        self.check_live(c);
        self.check_auth(c);
        if c.store.queue_capacity == 0 {
            self.issue("store.queue_capacity", "phải từ 1 trở lên");
        }
        if c.ingest.max_payload_bytes == 0 {
            self.issue("ingest.max_payload_bytes", "phải từ 1 trở lên");
        }
        if c.ingest.max_future_skew_secs < 0 {
            self.issue("ingest.max_future_skew_secs", "không được âm");
        }
        if c.ingest.max_age_days <= 0 {
            self.issue("ingest.max_age_days", "phải từ 1 trở lên");
        }
        for (key, secs) in [
            ("devices.camera_secs", c.devices.camera_secs),
            ("devices.speaker_secs", c.devices.speaker_secs),
            ("devices.sensor_secs", c.devices.sensor_secs),
        ] {
            if secs < 0 {
                self.issue(key, "không được âm (0 là tắt thời gian chờ)");
            }
        }

        let mut villages = HashSet::new();
        for (i, v) in c.villages.iter().enumerate() {
            if !is_slug(&v.id) {
                self.issue(
                    format!("village[{i}].id"),
                    format!(
                        "`{}` không phải mã hợp lệ (chữ thường không dấu, số, '-', '_')",
                        v.id
                    ),
                );
            }
            if !villages.insert(v.id.as_str()) {
                self.issue(format!("village[{}].id", v.id), "mã thôn/bản bị trùng");
            }
            if v.name.trim().is_empty() {
                self.issue(format!("village[{}].name", v.id), "không được để trống");
            }
            if let Some(lat) = v.lat {
                if !(-90.0..=90.0).contains(&lat) {
                    self.issue(
                        format!("village[{}].lat", v.id),
                        "phải nằm trong khoảng -90 đến 90",
                    );
                }
            }
            if let Some(lon) = v.lon {
                if !(-180.0..=180.0).contains(&lon) {
                    self.issue(
                        format!("village[{}].lon", v.id),
                        "phải nằm trong khoảng -180 đến 180",
                    );
                }
            }
        }

        let mut devices: HashSet<(DeviceClass, &str)> = HashSet::new();
        let all = c
            .cameras
            .iter()
            .map(|d| (DeviceClass::Camera, d.id.as_str(), d.village.as_deref()))
            .chain(
                c.speakers
                    .iter()
                    .map(|d| (DeviceClass::Speaker, d.id.as_str(), d.village.as_deref())),
            )
            .chain(
                c.sensors
                    .iter()
                    .map(|d| (DeviceClass::Sensor, d.id.as_str(), d.village.as_deref())),
            );
        for (class, id, village) in all {
            let section = class.as_str();
            if !is_slug(id) {
                self.issue(
                    format!("{section}[{id}].id"),
                    format!("`{id}` không phải mã hợp lệ (chữ thường không dấu, số, '-', '_')"),
                );
            }
            if !devices.insert((class, id)) {
                self.issue(
                    format!("{section}[{id}].id"),
                    format!("mã {section} bị trùng"),
                );
            }
            if let Some(v) = village {
                if !villages.contains(v) {
                    self.issue(
                        format!("{section}[{id}].village"),
                        format!("không có thôn/bản `{v}`: hãy khai báo nó trong một mục [[village]] trước"),
                    );
                }
            }
        }
        let mut frigate = HashSet::new();
        for cam in &c.cameras {
            if let Some(n) = &cam.frigate_name {
                if !frigate.insert(n.as_str()) {
                    self.issue(
                        format!("camera[{}].frigate_name", cam.id),
                        "tên camera Frigate bị trùng",
                    );
                }
            }
        }

        let mut ids = HashSet::new();
        for ind in &c.indicators {
            let key = format!("indicator[{}]", ind.id);
            if !is_slug(&ind.id) {
                self.issue(
                    format!("{key}.id"),
                    "không phải mã hợp lệ (chữ thường không dấu, số, '-', '_')",
                );
            }
            if !ids.insert(ind.id.as_str()) {
                self.issue(format!("{key}.id"), "duplicate indicator id");
            }
            if ind.name.trim().is_empty() {
                self.issue(format!("{key}.name"), "không được để trống");
            }
            if let Some(t) = &ind.target {
                if let Err(e) = Target::parse(t) {
                    self.issue(format!("{key}.target"), e);
                }
            }
            match ind.kind {
                IndicatorKind::Count => self.need_filter(&key, "match", ind.filter.as_ref()),
                IndicatorKind::Ratio => {
                    self.need_filter(&key, "numerator", ind.numerator.as_ref());
                    self.need_filter(&key, "denominator", ind.denominator.as_ref());
                }
                IndicatorKind::Latest => {
                    if ind.field.is_none() {
                        self.issue(format!("{key}.field"), "chỉ tiêu loại `latest` cần `field`");
                    }
                    if let Some(f) = &ind.filter {
                        self.check_filter(&format!("{key}.match"), f);
                    }
                }
                IndicatorKind::Availability => match ind.device_class.as_deref() {
                    Some(dc) if DeviceClass::parse(dc).is_some() => {}
                    Some(dc) => self.issue(
                        format!("{key}.device_class"),
                        format!("`{dc}` không thuộc camera, speaker, sensor"),
                    ),
                    None => self.issue(
                        format!("{key}.device_class"),
                        "chỉ tiêu loại `availability` cần `device_class`",
                    ),
                },
                IndicatorKind::Freshness => match ind.source.as_deref() {
                    Some(s) if Source::parse(s).is_some() => {}
                    Some(s) => self.issue(
                        format!("{key}.source"),
                        format!("`{s}` không thuộc camera, speaker, procedure, sensor"),
                    ),
                    None => self.issue(
                        format!("{key}.source"),
                        "chỉ tiêu loại `freshness` cần `source`",
                    ),
                },
                IndicatorKind::DeadLetters => {}
            }
        }
    }

    fn check_influx(&mut self, c: &Config) {
        let i = &c.influx;
        if let Some(url) = &i.url {
            if let Err(reason) = crate::sinks::check_url(url) {
                self.issue("influx.url", reason);
            }
        }
        if i.bucket.trim().is_empty() {
            self.issue("influx.bucket", "không được để trống");
        }
        if i.batch_max_points == 0 {
            self.issue("influx.batch_max_points", "phải từ 1 trở lên");
        }
        if i.flush_interval_ms == 0 {
            self.issue("influx.flush_interval_ms", "phải từ 1 trở lên");
        }
        if i.timeout_ms < 100 {
            self.issue("influx.timeout_ms", "phải từ 100 (mili giây) trở lên");
        }
        if i.max_backlog_points < i.batch_max_points as u64 {
            self.issue(
                "influx.max_backlog_points",
                "không được nhỏ hơn influx.batch_max_points",
            );
        }
    }

    fn check_mqtt(&mut self, c: &Config) {
        let m = &c.mqtt;
        if m.host.trim().is_empty() {
            self.issue("mqtt.host", "không được để trống");
        }
        if m.port == 0 {
            self.issue("mqtt.port", "phải là cổng từ 1 đến 65535");
        }
        if m.embedded && m.host.parse::<std::net::IpAddr>().is_err() {
            self.issue(
                "mqtt.host",
                format!("khi mqtt.embedded = true, host là địa chỉ để lắng nghe và phải là địa chỉ IP (ví dụ 127.0.0.1), không phải `{}`", m.host),
            );
        }
        if m.embedded && !cfg!(feature = "embedded-broker") {
            self.issue(
                "mqtt.embedded",
                "bản dựng này không có broker nhúng (tính năng cargo `embedded-broker`)",
            );
        }
        if m.backoff_initial_ms == 0 || m.backoff_initial_ms > m.backoff_max_ms {
            self.issue(
                "mqtt.backoff_initial_ms",
                "phải từ 1 trở lên và không lớn hơn mqtt.backoff_max_ms",
            );
        }
        if m.keep_alive_secs < 5 {
            self.issue("mqtt.keep_alive_secs", "phải từ 5 trở lên");
        }
        if m.password.is_some() && m.username.is_none() {
            self.issue("mqtt.password", "có mật khẩu thì cần cả mqtt.username");
        }
        if let Some(ca) = &m.ca_file {
            if !ca.exists() {
                self.issue("mqtt.ca_file", format!("không có tệp {}", ca.display()));
            }
            if !m.tls {
                self.issue("mqtt.ca_file", "đặt mqtt.tls = true để dùng tệp CA");
            }
        }
        if let Some(id) = &m.client_id {
            if id.is_empty() || id.len() > 128 {
                self.issue("mqtt.client_id", "phải dài từ 1 đến 128 ký tự");
            }
        }
        if let Some(g) = &m.share_group {
            if !is_slug(g) {
                self.issue(
                    "mqtt.share_group",
                    "không phải mã hợp lệ (chữ thường không dấu, số, '-', '_')",
                );
            }
        }
    }

    fn need_filter(&mut self, key: &str, name: &str, f: Option<&Filter>) {
        match f {
            None => self.issue(
                format!("{key}.{name}"),
                format!("loại chỉ tiêu này cần `{name}`"),
            ),
            Some(f) => self.check_filter(&format!("{key}.{name}"), f),
        }
    }

    fn check_filter(&mut self, key: &str, f: &Filter) {
        if let Some(s) = &f.source {
            if Source::parse(s).is_none() {
                self.issue(
                    format!("{key}.source"),
                    format!("`{s}` không thuộc camera, speaker, procedure, sensor"),
                );
            }
        }
        for (attr, value) in &f.conditions {
            let ok = match value {
                toml::Value::Array(items) => !items.is_empty() && items.iter().all(is_scalar),
                other => is_scalar(other),
            };
            if !ok {
                self.issue(
                    format!("{key}.where.{attr}"),
                    "phải là chuỗi, số, true/false hoặc một danh sách không rỗng các giá trị đó",
                );
            }
        }
    }
}

fn is_scalar(v: &toml::Value) -> bool {
    matches!(
        v,
        toml::Value::String(_)
            | toml::Value::Integer(_)
            | toml::Value::Float(_)
            | toml::Value::Boolean(_)
    )
}
