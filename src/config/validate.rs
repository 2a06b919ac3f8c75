//! Semantic checks on a parsed [`Config`]: every problem is collected, so
//! `commune-ioc check-config` can list them all at once.

use std::collections::HashSet;
use std::net::SocketAddr;

use std::collections::BTreeMap;

use super::{Config, Filter, FilterDef, Indicator, IndicatorDef, IndicatorKind, Measure, Site};
use crate::config::ConfigIssue;
use crate::vocab::{DeviceClass, Source, Target};

/// The typed site of a valid `config`, or every problem found in it.
pub fn validate(config: &Config, origin: &str) -> Result<Site, Vec<ConfigIssue>> {
    let mut v = Validator {
        origin,
        issues: Vec::new(),
        known: HashSet::new(),
        site: Site::default(),
    };
    v.check(config);
    v.check_warnings(config);
    v.check_broadcasts(config);
    if v.issues.is_empty() {
        Ok(v.site)
    } else {
        Err(v.issues)
    }
}

struct Validator<'a> {
    origin: &'a str,
    issues: Vec<ConfigIssue>,
    /// Registered devices.
    known: HashSet<(DeviceClass, String)>,
    /// The typed site, built along the checks.
    site: Site,
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

    fn check_broadcasts(&mut self, c: &Config) {
        for (i, e) in c.broadcasts.ethnic.iter().enumerate() {
            let key = format!("broadcasts.ethnic[{i}]");
            if e.language.trim().is_empty() || e.text.trim().is_empty() {
                self.issue(&key, "cần có language và text");
            }
            if e.text.chars().count() > crate::broadcasts::plan::MAX_TEXT_CHARS {
                self.issue(
                    &key,
                    format!(
                        "text dài quá {} ký tự",
                        crate::broadcasts::plan::MAX_TEXT_CHARS
                    ),
                );
            }
            if let Some(h) = &e.hazard {
                if crate::vocab::Hazard::parse(h).is_none() {
                    self.issue(
                        &key,
                        format!("hazard `{h}` không có trong danh mục loại thiên tai"),
                    );
                }
            }
            let dup = c.broadcasts.ethnic[..i]
                .iter()
                .any(|o| o.language == e.language && o.hazard == e.hazard);
            if dup {
                self.issue(&key, "trùng language và hazard với một mục trước");
            }
        }
    }

    fn check_warnings(&mut self, c: &Config) {
        let w = &c.warnings;
        if w.max_bytes < 1024 {
            self.issue("warnings.max_bytes", "phải từ 1024 byte trở lên");
        }
        if w.level_parameter.trim().is_empty() {
            self.issue("warnings.level_parameter", "không được để trống");
        }
        if w.sweep_secs == 0 {
            self.issue("warnings.sweep_secs", "phải từ 1 giây trở lên");
        }
        for (i, g) in w.geocodes.iter().enumerate() {
            for v in &g.villages {
                if !c.villages.iter().any(|x| &x.id == v) {
                    self.issue(
                        format!("warnings.geocode[{i}].villages"),
                        format!("thôn/bản `{v}` không có trong danh sách [[village]]"),
                    );
                }
            }
        }
        let mut names = HashSet::new();
        for (i, f) in w.feeds.iter().enumerate() {
            if !is_slug(&f.name) || !names.insert(f.name.as_str()) {
                self.issue(
                    format!("warnings.feeds[{i}].name"),
                    "tên nguồn phải là mã (chữ thường không dấu, số, '-', '_') và không trùng",
                );
            }
            match reqwest011::Url::parse(&f.url) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {}
                _ => self.issue(
                    format!("warnings.feeds[{i}].url"),
                    format!("`{}` không phải URL http:// hoặc https:// hợp lệ", f.url),
                ),
            }
            if f.interval_secs == 0 || f.timeout_secs == 0 || f.max_backoff_secs == 0 {
                self.issue(
                    format!("warnings.feeds[{i}]"),
                    "interval_secs, timeout_secs và max_backoff_secs phải từ 1 giây trở lên",
                );
            }
        }
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

    fn check_dvcqg(&mut self, d: &super::Dvcqg) {
        use super::DossierStage;
        let tables = [
            (
                "procedure.dvcqg.status",
                d.status.keys().collect::<Vec<_>>(),
            ),
            ("procedure.dvcqg.channel", d.channel.keys().collect()),
            ("procedure.dvcqg.payment", d.payment.keys().collect()),
        ];
        for (key, codes) in tables {
            for code in codes {
                if code.trim().is_empty() || code.trim() != code || code.chars().count() > 32 {
                    self.issue(
                        format!("{key}.\"{code}\""),
                        "mã phải từ 1 đến 32 ký tự, không có khoảng trắng ở đầu hoặc cuối",
                    );
                }
            }
        }
        for (stage, what) in [
            (DossierStage::Received, "tiếp nhận"),
            (DossierStage::Resolved, "đã giải quyết"),
        ] {
            if !d.status.values().any(|s| *s == stage) {
                self.issue(
                    "procedure.dvcqg.status",
                    format!(
                        "không có mã trạng thái nào là `{}`: hồ sơ {what} sẽ không bao giờ được đếm",
                        stage.as_str()
                    ),
                );
            }
        }
        if d.channel.is_empty() {
            self.issue(
                "procedure.dvcqg.channel",
                "cần ít nhất một mã HinhThuc: không có thì không hồ sơ nào được đếm là tiếp nhận",
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

    fn check_report(&mut self, c: &Config) {
        let r = &c.report;
        for k in &r.auto_seal_kinds {
            if !matches!(k.as_str(), "month" | "quarter" | "half" | "year") {
                self.issue(
                    "report.auto_seal_kinds",
                    format!("`{k}` không phải loại kỳ: dùng month, quarter, half hoặc year"),
                );
            }
        }
        if r.check_interval_secs == 0 {
            self.issue("report.check_interval_secs", "phải từ 1 trở lên");
        }
        if !(r.correction_threshold_pct.is_finite() && r.correction_threshold_pct >= 0.0) {
            self.issue("report.correction_threshold_pct", "phải là số không âm");
        }
        if r.grace_secs > 31 * 86_400 {
            self.issue("report.grace_secs", "không quá 31 ngày (2.678.400 giây)");
        }
        if r.code.trim().is_empty() {
            self.issue("report.code", "không được để trống");
        }
    }

    fn check(&mut self, c: &Config) {
        self.check_report(c);
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
        self.check_uplink(c);
        self.check_stream(c);
        self.check_delivery(c);
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
        self.check_dvcqg(&c.procedure.dvcqg);
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

        self.known = devices
            .into_iter()
            .map(|(class, id)| (class, id.to_owned()))
            .collect();
        let known = &self.known;
        let (mapped, problems) = super::mapped::compile(&c.mapped, &|id: &str| {
            known.contains(&(DeviceClass::Sensor, id.to_string()))
        });
        for (key, reason) in problems {
            self.issue(key, reason);
        }
        self.site.mapped = mapped;
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
                self.issue(format!("{key}.id"), "mã chỉ tiêu bị trùng");
            }
            if ind.name.trim().is_empty() {
                self.issue(format!("{key}.name"), "không được để trống");
            }
            if let Some(typed) = self.indicator(&key, ind) {
                self.site.indicators.push(typed);
            }
        }
        let mut issues = Vec::new();
        self.site.alerts = super::alerts::check(c, &ids, &mut |k, r| issues.push((k, r)));
        for (k, r) in issues {
            self.issue(k, r);
        }
    }

    /// The typed indicator, or None after reporting why it cannot be one.
    fn indicator(&mut self, key: &str, ind: &IndicatorDef) -> Option<Indicator> {
        let target = match ind.target.as_deref().map(Target::parse) {
            None => None,
            Some(Ok(t)) => Some(t),
            Some(Err(e)) => {
                self.issue(format!("{key}.target"), e);
                None
            }
        };
        let measure = match ind.kind {
            IndicatorKind::Count => {
                Measure::Count(self.need_filter(key, "match", ind.filter.as_ref())?)
            }
            IndicatorKind::Ratio => {
                let numerator = self.need_filter(key, "numerator", ind.numerator.as_ref());
                let denominator = self.need_filter(key, "denominator", ind.denominator.as_ref());
                let (numerator, denominator) = (numerator?, denominator?);
                self.check_subset(key, &numerator, &denominator);
                Measure::Ratio {
                    numerator,
                    denominator,
                }
            }
            IndicatorKind::Latest => {
                let filter = match &ind.filter {
                    Some(f) => self.filter(&format!("{key}.match"), f),
                    None => Some(Filter::default()),
                };
                let Some(field) = ind.field.clone() else {
                    self.issue(format!("{key}.field"), "chỉ tiêu loại `latest` cần `field`");
                    return None;
                };
                Measure::Latest {
                    field,
                    filter: filter?,
                }
            }
            IndicatorKind::Availability => match ind.device_class.as_deref() {
                Some(dc) => match DeviceClass::parse(dc) {
                    Some(class) => Measure::Availability(class),
                    None => {
                        self.issue(
                            format!("{key}.device_class"),
                            format!("`{dc}` không thuộc camera, speaker, sensor"),
                        );
                        return None;
                    }
                },
                None => {
                    self.issue(
                        format!("{key}.device_class"),
                        "chỉ tiêu loại `availability` cần `device_class`",
                    );
                    return None;
                }
            },
            IndicatorKind::Freshness => match ind.source.as_deref() {
                Some(s) => match Source::parse(s) {
                    Some(source) => Measure::Freshness(source),
                    None => {
                        self.issue(
                            format!("{key}.source"),
                            format!("`{s}` không thuộc camera, speaker, procedure, sensor"),
                        );
                        return None;
                    }
                },
                None => {
                    self.issue(
                        format!("{key}.source"),
                        "chỉ tiêu loại `freshness` cần `source`",
                    );
                    return None;
                }
            },
            IndicatorKind::DeadLetters => Measure::DeadLetters,
        };
        if ind.target.is_some() && target.is_none() {
            return None;
        }
        Some(Indicator {
            id: ind.id.clone(),
            name: ind.name.clone(),
            unit: ind.unit.clone(),
            target,
            measure,
        })
    }

    /// A ratio's numerator must count a subset of the denominator's events,
    /// or the value can pass 100 %: every condition of the denominator must
    /// hold for the numerator too (the same or a narrower one), and both
    /// must count the same way (`sum`).
    fn check_subset(&mut self, key: &str, num: &Filter, den: &Filter) {
        let mut why = Vec::new();
        if let Some(s) = den.source {
            if num.source != Some(s) {
                why.push(format!(
                    "mẫu số chỉ tính nguồn `{s}` nên tử số cũng phải có `source = \"{s}\"`"
                ));
            }
        }
        if !den.events.is_empty()
            && (num.events.is_empty() || num.events.iter().any(|e| !den.events.contains(e)))
        {
            why.push(format!(
                "`event` của tử số phải nằm trong `event` của mẫu số ({})",
                den.events.join(", ")
            ));
        }
        for (attr, allowed) in &den.conditions {
            let narrower = num
                .conditions
                .get(attr)
                .is_some_and(|vals| vals.iter().all(|v| allowed.contains(v)));
            if !narrower {
                why.push(format!(
                    "mẫu số có điều kiện `where.{attr}` nên tử số cũng phải có, với giá trị nằm trong đó"
                ));
            }
        }
        if !den.devices.is_empty()
            && (num.devices.is_empty() || num.devices.iter().any(|d| !den.devices.contains(d)))
        {
            why.push("`devices` của tử số phải nằm trong `devices` của mẫu số".to_string());
        }
        if num.sum != den.sum {
            why.push("tử số và mẫu số phải cùng cách tính (`sum` giống nhau)".to_string());
        }
        if !why.is_empty() {
            self.issue(
                format!("{key}.numerator"),
                format!(
                    "tử số phải là một phần của mẫu số, nếu không tỷ lệ có thể vượt 100 %: {}",
                    why.join("; ")
                ),
            );
        }
    }

    fn check_influx(&mut self, c: &Config) {
        let i = &c.influx;
        if let Some(url) = &i.url {
            if let Err(reason) = check_url(url) {
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

    /// `[stream]` (province mode): the servers, the stream, logins and TLS
    /// files as `[uplink]` has them, and the per-site limits.
    fn check_stream(&mut self, c: &Config) {
        let s = &c.stream;
        self.check_nats_link("stream", &s.as_uplink());
        if s.batch_max == 0 || s.batch_max > 10_000 {
            self.issue("stream.batch_max", "phải từ 1 đến 10000");
        }
        if s.site_rate == 0 {
            self.issue("stream.site_rate", "phải từ 1 (bản ghi mỗi giây) trở lên");
        }
        if s.batch_wait_ms > 10_000 {
            self.issue("stream.batch_wait_ms", "phải từ 0 đến 10000 (mili giây)");
        }
        if let Some(p) = &c.province {
            if !is_nats_name(&p.instance) {
                self.issue(
                    "province.instance",
                    format!("`{}` không dùng được làm tên consumer: không để trống, không có dấu cách, '.', '*', '>'", p.instance),
                );
            }
            for peer in &p.peers {
                if let Err(reason) = check_url(peer) {
                    self.issue("province.peers", format!("`{peer}`: {reason}"));
                }
            }
        }
    }

    /// An NKey seed file must hold a user seed, a `.creds` file a user JWT
    /// and its seed (what is in them is never quoted: they are secrets).
    fn check_nats_secrets(
        &mut self,
        section: &str,
        seed: &Option<std::path::PathBuf>,
        creds: &Option<std::path::PathBuf>,
    ) {
        if let Some(f) = seed.as_ref().filter(|f| f.is_file()) {
            let ok = std::fs::read_to_string(f).is_ok_and(|t| {
                let t = t.trim();
                t.starts_with("SU") && t.len() == 58
            });
            if !ok {
                self.issue(
                    format!("{section}.nkey_seed_file"),
                    format!(
                        "tệp {} không chứa khóa bí mật NKey của người dùng (một dòng 58 ký tự bắt đầu bằng SU)",
                        f.display()
                    ),
                );
            }
        }
        if let Some(f) = creds.as_ref().filter(|f| f.is_file()) {
            let ok = std::fs::read_to_string(f).is_ok_and(|t| {
                t.contains("-----BEGIN NATS USER JWT-----")
                    && t.contains("-----BEGIN USER NKEY SEED-----")
            });
            if !ok {
                self.issue(
                    format!("{section}.creds_file"),
                    format!(
                        "tệp {} không phải tệp .creds của NATS (cần JWT người dùng và khóa NKey)",
                        f.display()
                    ),
                );
            }
        }
    }

    /// `[uplink]`: the connection (as `[stream]` has it) and the forwarding
    /// limits.
    fn check_uplink(&mut self, c: &Config) {
        let u = &c.uplink;
        self.check_nats_link("uplink", u);
        if u.batch_max == 0 {
            self.issue("uplink.batch_max", "phải từ 1 trở lên");
        }
        if u.batch_max_bytes < 1024 {
            self.issue("uplink.batch_max_bytes", "phải từ 1024 trở lên");
        }
        if u.ack_timeout_ms < 100 {
            self.issue("uplink.ack_timeout_ms", "phải từ 100 (mili giây) trở lên");
        }
        if u.poll_ms == 0 {
            self.issue("uplink.poll_ms", "phải từ 1 trở lên");
        }
    }

    /// A NATS connection and its stream, `[uplink]` or `[stream]` (named
    /// `section`): the servers, the stream's name, subjects, replicas,
    /// windows, one way of logging in, the files it names, the retry delays.
    fn check_nats_link(&mut self, section: &str, u: &crate::config::Uplink) {
        let key = |k: &str| format!("{section}.{k}");
        if let Some(url) = &u.url {
            if let Err(reason) = check_nats_urls(url) {
                self.issue(key("url"), reason);
            }
        }
        if !is_nats_name(&u.stream) {
            self.issue(
                key("stream"),
                format!("`{}` không phải tên luồng hợp lệ: không để trống, không có dấu cách, '.', '*', '>', '/' hay '\\'", u.stream),
            );
        }
        if u.subject_prefix.split('.').any(|t| !is_nats_name(t)) {
            self.issue(
                key("subject_prefix"),
                format!("`{}` không phải tiền tố chủ đề NATS hợp lệ: các phần cách nhau bằng '.', không để trống, không có dấu cách, '*' hay '>'", u.subject_prefix),
            );
        }
        let ways = [
            u.creds_file.is_some(),
            u.nkey_seed_file.is_some(),
            u.user.is_some(),
            u.token.is_some(),
        ];
        if ways.iter().filter(|&&w| w).count() > 1 {
            self.issue(
                section,
                "chỉ chọn một cách xác thực: creds_file, nkey_seed_file, user/password hoặc token",
            );
        }
        if u.password.is_some() && u.user.is_none() {
            self.issue(
                key("password"),
                format!("có mật khẩu thì cần cả {section}.user"),
            );
        }
        if u.user.is_some() && u.password.is_none() {
            self.issue(key("user"), format!("cần cả {section}.password"));
        }
        for (k, file) in [
            ("creds_file", &u.creds_file),
            ("nkey_seed_file", &u.nkey_seed_file),
            ("ca_file", &u.ca_file),
            ("cert_file", &u.cert_file),
            ("key_file", &u.key_file),
        ] {
            if let Some(f) = file {
                if !f.is_file() {
                    self.issue(key(k), format!("không có tệp {}", f.display()));
                }
            }
        }
        self.check_nats_secrets(section, &u.nkey_seed_file, &u.creds_file);
        if u.cert_file.is_some() != u.key_file.is_some() {
            self.issue(
                key("cert_file"),
                format!("chứng thư máy khách cần cả {section}.cert_file và {section}.key_file"),
            );
        }
        if u.stream_replicas == 0 || u.stream_replicas > 5 {
            self.issue(key("stream_replicas"), "phải từ 1 đến 5");
        }
        if u.duplicate_window_s == 0 {
            self.issue(key("duplicate_window_s"), "phải từ 1 trở lên");
        }
        if u.max_age_days > 3650 {
            self.issue(
                key("max_age_days"),
                "phải từ 0 (không giới hạn) đến 3650 ngày",
            );
        }
        if u.backoff_initial_ms == 0 || u.backoff_initial_ms > u.backoff_max_ms {
            self.issue(
                key("backoff_initial_ms"),
                format!("phải từ 1 trở lên và không lớn hơn {section}.backoff_max_ms"),
            );
        }
    }

    fn check_delivery(&mut self, c: &Config) {
        let d = &c.delivery;
        if d.max_in_flight == 0 {
            self.issue("delivery.max_in_flight", "phải từ 1 trở lên");
        }
        if d.timeout_s == 0 {
            self.issue("delivery.timeout_s", "phải từ 1 trở lên");
        }
        if d.backoff_initial_ms == 0 {
            self.issue("delivery.backoff_initial_ms", "phải từ 1 trở lên");
        }
        if d.backoff_max_ms < d.backoff_initial_ms {
            self.issue(
                "delivery.backoff_max_ms",
                "không được nhỏ hơn delivery.backoff_initial_ms",
            );
        }
        if d.poll_ms == 0 {
            self.issue("delivery.poll_ms", "phải từ 1 trở lên");
        }
        let p = &c.report.province;
        if !p.target.is_empty() && !d.targets.contains_key(&p.target) {
            self.issue(
                "report.province.target",
                format!(
                    "không có [delivery.targets.{}]: khai báo địa chỉ nhận báo cáo của tỉnh ở đó",
                    p.target
                ),
            );
        }
        if p.auto_submit && p.target.is_empty() {
            self.issue(
                "report.province.auto_submit",
                "cần report.province.target (nơi nhận) để tự động gửi",
            );
        }
        for (name, t) in &d.targets {
            let key = format!("delivery.targets.{name}");
            if let Err(reason) = check_delivery_url(&t.url) {
                self.issue(format!("{key}.url"), reason);
            }
            if t.client_cert.is_some() != t.client_key.is_some() {
                self.issue(
                    key.clone(),
                    "TLS hai chiều cần cả client_cert và client_key",
                );
            }
            if t.bearer_token
                .as_ref()
                .is_some_and(|s| s.expose().trim().is_empty())
            {
                self.issue(format!("{key}.bearer_token"), "không được để trống");
            }
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
            // MQTT counts a client id in bytes of UTF-8, not characters.
            if id.is_empty() || id.len() > 128 {
                self.issue(
                    "mqtt.client_id",
                    format!(
                        "phải dài từ 1 đến 128 byte (UTF-8: một chữ có dấu chiếm 2–3 byte); `{}` dài {} byte",
                        id,
                        id.len()
                    ),
                );
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

    fn need_filter(&mut self, key: &str, name: &str, f: Option<&FilterDef>) -> Option<Filter> {
        match f {
            None => {
                self.issue(
                    format!("{key}.{name}"),
                    format!("loại chỉ tiêu này cần `{name}`"),
                );
                None
            }
            Some(f) => self.filter(&format!("{key}.{name}"), f),
        }
    }

    /// The typed filter, or None after reporting every problem in it.
    fn filter(&mut self, key: &str, f: &FilterDef) -> Option<Filter> {
        let before = self.issues.len();
        let source = match f.source.as_deref() {
            None => None,
            Some(s) => {
                let parsed = Source::parse(s);
                if parsed.is_none() {
                    self.issue(
                        format!("{key}.source"),
                        format!("`{s}` không thuộc camera, speaker, procedure, sensor"),
                    );
                }
                parsed
            }
        };
        let mut events = f.event.as_ref().map(|e| e.to_vec()).unwrap_or_default();
        for e in &events {
            let known: Vec<&str> = match source {
                Some(s) => s.event_kinds().to_vec(),
                None => Source::ALL
                    .iter()
                    .flat_map(|s| s.event_kinds().iter().copied())
                    .collect(),
            };
            if !known.contains(&e.as_str()) {
                let whose = match source {
                    Some(s) => format!("của nguồn `{s}`"),
                    None => "của nguồn nào".to_string(),
                };
                let mut list = known.clone();
                list.sort_unstable();
                list.dedup();
                self.issue(
                    format!("{key}.event"),
                    format!(
                        "`{e}` không phải loại sự kiện {whose}: dùng một trong {}",
                        list.join(", ")
                    ),
                );
            }
        }
        events.sort();
        events.dedup();
        let mut conditions = BTreeMap::new();
        for (attr, value) in &f.conditions {
            let values = match value {
                toml::Value::Array(items) => items.clone(),
                other => vec![other.clone()],
            };
            if values.is_empty() || !values.iter().all(is_scalar) {
                self.issue(
                    format!("{key}.where.{attr}"),
                    "phải là chuỗi, số, true/false hoặc một danh sách không rỗng các giá trị đó",
                );
            }
            conditions.insert(attr.clone(), values);
        }
        if !f.devices.is_empty() && source == Some(Source::Procedure) {
            self.issue(
                format!("{key}.devices"),
                "sự kiện của nguồn `procedure` không gắn với thiết bị nào: bỏ `devices`",
            );
        }
        let class = source.and_then(|s| DeviceClass::parse(s.as_str()));
        let mut seen = HashSet::new();
        for d in f.devices.iter().filter(|d| seen.insert(d.as_str())) {
            let known = match class {
                Some(c) => self.known.contains(&(c, d.clone())),
                None => self.known.iter().any(|(_, id)| id == d),
            };
            if !known && source != Some(Source::Procedure) {
                let section = class
                    .map(DeviceClass::as_str)
                    .unwrap_or("camera/speaker/sensor");
                self.issue(
                    format!("{key}.devices"),
                    format!("không có thiết bị `{d}` trong danh sách thiết bị: hãy khai báo nó trong một mục [[{section}]] trước"),
                );
            }
        }
        if self.issues.len() > before {
            return None;
        }
        let mut devices = f.devices.clone();
        devices.sort();
        Some(Filter {
            source,
            events,
            conditions,
            sum: f.sum.clone(),
            devices,
        })
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

/// Check a delivery target's URL: `https://`, or `http://` to a loopback
/// address (a receiver on the same machine); a path is allowed.
pub fn check_delivery_url(url: &str) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url).map_err(|_| {
        format!("`{url}` không phải URL hợp lệ: viết dạng https://tinh.example.vn/api/bao-cao")
    })?;
    let host = parsed.host_str().unwrap_or("");
    if host.is_empty() {
        return Err(format!("`{url}`: thiếu tên máy hoặc địa chỉ IP"));
    }
    let loopback = host == "localhost"
        || host
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        "http" => Err(format!(
            "`{url}`: dữ liệu gửi ra ngoài phải dùng https:// (http:// chỉ dùng cho máy này, 127.0.0.1)"
        )),
        other => Err(format!("`{url}`: chỉ hỗ trợ https://, không hỗ trợ `{other}`")),
    }
}

/// A NATS name or subject token: not empty, no whitespace, no `.`, `*`,
/// `>`, `/` or `\`.
fn is_nats_name(s: &str) -> bool {
    !s.is_empty()
        && !s.chars().any(|ch| {
            ch.is_whitespace() || ch.is_control() || matches!(ch, '.' | '*' | '>' | '/' | '\\')
        })
}

/// Check the uplink's server list: comma-separated `nats://` or `tls://`
/// URLs with a host (the port defaults to 4222).
pub fn check_nats_urls(urls: &str) -> Result<(), String> {
    let mut any = false;
    for url in super::nats_servers(urls) {
        any = true;
        let parsed = reqwest011::Url::parse(url).map_err(|_| {
            format!("`{url}` không phải URL hợp lệ: viết dạng nats://127.0.0.1:4222 (nhiều máy chủ cách nhau bằng dấu phẩy)")
        })?;
        if !matches!(parsed.scheme(), "nats" | "tls") {
            return Err(format!(
                "`{url}`: chỉ hỗ trợ nats:// hoặc tls://, không hỗ trợ `{}`",
                parsed.scheme()
            ));
        }
        if parsed.host_str().is_none_or(str::is_empty) {
            return Err(format!("`{url}`: thiếu tên máy hoặc địa chỉ IP"));
        }
        if !matches!(parsed.path(), "" | "/") || parsed.query().is_some() {
            return Err(format!(
                "`{url}`: không được có đường dẫn hay tham số sau cổng"
            ));
        }
    }
    if !any {
        return Err("không được để trống".into());
    }
    Ok(())
}

/// Check a store base URL: `http(s)://host[:port]`, without a path (the
/// client replaces any path with `/api/v2/write`). The reason is in
/// Vietnamese, for `check-config`.
pub fn check_url(url: &str) -> Result<(), String> {
    let parsed = reqwest011::Url::parse(url).map_err(|_| {
        format!(
            "`{url}` không phải URL hợp lệ: viết dạng http://127.0.0.1:8086 (giao thức, máy, cổng)"
        )
    })?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!(
            "`{url}`: chỉ hỗ trợ http:// hoặc https://, không hỗ trợ `{}`",
            parsed.scheme()
        ));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(format!("`{url}`: thiếu tên máy hoặc địa chỉ IP"));
    }
    if !matches!(parsed.path(), "" | "/") || parsed.query().is_some() {
        return Err(format!(
            "`{url}`: không được có đường dẫn hay tham số sau cổng; chương trình luôn ghi vào URL/api/v2/write"
        ));
    }
    Ok(())
}
