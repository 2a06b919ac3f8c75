//! `ioc/{commune}/procedure/dvcqg` (and `POST /api/procedure/dvcqg`): the
//! one-stop software's (phần mềm một cửa điện tử) sync to the national
//! public-service portal (Cổng DVCQG), accepted as it is sent there:
//!
//! ```json
//! {"service":"DongBoHoSoMC","isUpdating":"False","data":[{"MaHoSo":"000.00.21.H37-261123-0001","MaTTHC":"1.001234","NgayTiepNhan":"20261123091200","NgayHenTra":"20261126170000","NgayTra":"","NgayKetThucXuLy":"","HinhThuc":"1","TrangThaiHoSo":"4","DanhSachLePhi":[]}]}
//! {"service":"CapNhatTienDoHoSoMC","data":[{"MaHoSo":"000.00.21.H37-261123-0001","TrangThai":"4","ThoiDiemXuLy":"20261124080000","NgayKetThucTheoQuyDinh":""}]}
//! ```
//!
//! Dates are `yyyyMMddHHmmss` strings in Asia/Ho_Chi_Minh, `""` when
//! absent; numbers and codes are strings (JSON numbers are tolerated).
//! Each object of `data[]` is decoded on its own ([`super::Decoded::Many`]):
//! a good object gives its events, a bad one is one dead letter (the object
//! alone, in an envelope of its service, so it can be sent again once
//! fixed) whose detail names the dossier (`MaHoSo`) and the field, in
//! Vietnamese. An object is all or nothing: one bad field and none of its
//! events count.
//!
//! A dossier object (`DongBoHoSoMC`) gives:
//!
//! - `progress`, always: its status code and the stage it maps to
//!   (`[procedure.dvcqg.status]`), key `dossier:{MaHoSo}:progress:{code}`;
//! - `received` when the stage is `received`, `stopped` or `resolved`, at
//!   `NgayTiepNhan`, channel from `HinhThuc` (`[procedure.dvcqg.channel]`);
//! - `resolved` when the stage is `resolved`, at `NgayKetThucXuLy` (else
//!   `NgayTra`), outcome `on_time` when that is at or before `NgayHenTra`,
//!   else `late`;
//! - `paid` when `DanhSachLePhi` lists a fee that is not zero, at
//!   `NgayTiepNhan`, `payment` = `online` when a fee's `HinhThucThu` maps to
//!   online (`[procedure.dvcqg.payment]`), else `cash`.
//!
//! The lifecycle events use the keys of the native contract
//! (`dossier:{id}:{event}`), so the portal sync re-sending a dossier on
//! every update counts each step once. A progress object
//! (`CapNhatTienDoHoSoMC`) gives a `progress` event only. A step whose time
//! is older than `ingest.max_age_days` is not counted (the `progress`
//! event lists it in `too_old`); one further ahead than
//! `ingest.max_future_skew_secs` makes the object a dead letter.

use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use serde::Serialize;
use serde_json::{Map, Value};

use super::{Ctx, Decoded, Part};
use crate::config::{DossierStage, Dvcqg, FeeKind};
use crate::model::{Event, Reason, Rejection, Source};

/// The dossier sync service.
pub const SYNC: &str = "DongBoHoSoMC";
/// The progress service.
pub const PROGRESS: &str = "CapNhatTienDoHoSoMC";

/// Decode a message of the portal sync.
pub(crate) fn decode(ctx: &Ctx<'_>, map: &Dvcqg) -> Decoded {
    let size = ctx.raw.payload.len();
    if size > ctx.limits.max_payload_bytes {
        return Decoded::One(Err(Rejection::new(
            Reason::Oversized,
            format!(
                "nội dung dài {} byte, quá giới hạn ingest.max_payload_bytes = {} byte: hãy gửi ít hồ sơ hơn trong mỗi lần",
                thousands(size),
                thousands(ctx.limits.max_payload_bytes)
            ),
        )
        .from_device(Source::Procedure, None)));
    }
    let (service, data) = match envelope(&ctx.raw.payload) {
        Ok(v) => v,
        Err(r) => return Decoded::One(Err(r.from_device(Source::Procedure, None))),
    };
    let mut parts = Vec::with_capacity(data.len() * 2);
    for (i, obj) in data.iter().enumerate() {
        let payload = serde_json::to_vec(&Single {
            service,
            data: [obj],
        })
        .unwrap_or_default();
        match object(ctx, map, service, i, obj) {
            Ok(events) => parts.extend(events.into_iter().map(|e| Part {
                result: Ok(e),
                payload: Some(payload.clone()),
            })),
            Err(r) => parts.push(Part {
                result: Err(r.from_device(Source::Procedure, None)),
                payload: Some(payload),
            }),
        }
    }
    Decoded::Many(parts)
}

/// One object in the envelope of its service: what is journaled with its
/// events, or kept as its dead letter.
#[derive(Serialize)]
struct Single<'a> {
    service: &'a str,
    data: [&'a Value; 1],
}

/// The service and the `data[]` of a message, or why the message as a
/// whole is refused.
fn envelope(payload: &[u8]) -> Result<(&'static str, Vec<Value>), Rejection> {
    let text = std::str::from_utf8(payload).map_err(|_| {
        Rejection::new(
            Reason::InvalidUtf8,
            "nội dung không phải văn bản UTF-8 (hãy gửi JSON mã hóa UTF-8)",
        )
    })?;
    let mut m = match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(m)) => m,
        Ok(_) => {
            return Err(Rejection::new(
                Reason::InvalidJson,
                "nội dung phải là một đối tượng JSON {\"service\": …, \"data\": […]}",
            ))
        }
        Err(e) => {
            return Err(Rejection::new(
                Reason::InvalidJson,
                format!("nội dung không phải JSON hợp lệ: {e}"),
            ))
        }
    };
    let service = match m.get("service") {
        None | Some(Value::Null) => {
            return Err(Rejection::new(
                Reason::MissingField,
                format!("thiếu trường service ({SYNC} hoặc {PROGRESS})"),
            ))
        }
        Some(Value::String(s)) if s == SYNC => SYNC,
        Some(Value::String(s)) if s == PROGRESS => PROGRESS,
        Some(other) => {
            return Err(Rejection::new(
                Reason::InvalidField,
                format!(
                    "service = {} không được hỗ trợ: chỉ nhận {SYNC} và {PROGRESS}",
                    shown(other)
                ),
            ))
        }
    };
    match m.remove("data") {
        None | Some(Value::Null) => Err(Rejection::new(
            Reason::MissingField,
            format!("{service}: thiếu danh sách data[]"),
        )),
        Some(Value::Array(a)) if a.is_empty() => Err(Rejection::new(
            Reason::MissingField,
            format!("{service}: danh sách data[] rỗng"),
        )),
        Some(Value::Array(a)) => Ok((service, a)),
        Some(other) => Err(Rejection::new(
            Reason::InvalidField,
            format!(
                "{service}: data phải là một danh sách, không phải {}",
                kind_vi(&other)
            ),
        )),
    }
}

/// The events of one object of `data[]`.
fn object(
    ctx: &Ctx<'_>,
    map: &Dvcqg,
    service: &str,
    i: usize,
    obj: &Value,
) -> Result<Vec<Event>, Rejection> {
    let Value::Object(m) = obj else {
        return Err(Rejection::new(
            Reason::InvalidField,
            format!(
                "data[{i}] phải là một đối tượng hồ sơ, không phải {}",
                kind_vi(obj)
            ),
        ));
    };
    let id = match text(m, "MaHoSo") {
        Ok(Some(id)) if id.len() <= 128 => id,
        Ok(Some(_)) => {
            return Err(Rejection::new(
                Reason::InvalidField,
                format!("data[{i}]: mã hồ sơ (MaHoSo) dài quá 128 ký tự"),
            ))
        }
        Ok(None) => {
            return Err(Rejection::new(
                Reason::MissingField,
                format!("data[{i}]: thiếu mã hồ sơ (MaHoSo)"),
            ))
        }
        Err(kind) => {
            return Err(Rejection::new(
                Reason::InvalidField,
                format!("data[{i}]: mã hồ sơ (MaHoSo) phải là chuỗi, không phải {kind}"),
            ))
        }
    };
    let d = Dossier {
        ctx,
        map,
        id: &id,
        m,
    };
    if service == SYNC {
        d.sync()
    } else {
        d.progress()
    }
}

/// One dossier object being decoded; its errors name the dossier.
struct Dossier<'a> {
    ctx: &'a Ctx<'a>,
    map: &'a Dvcqg,
    id: &'a str,
    m: &'a Map<String, Value>,
}

impl Dossier<'_> {
    fn fail(&self, reason: Reason, what: impl std::fmt::Display) -> Rejection {
        Rejection::new(reason, format!("Hồ sơ {}: {what}", self.id))
    }

    /// A string field (a JSON number is taken as its text); `None` when
    /// absent, `null` or `""`.
    fn text(&self, key: &str) -> Result<Option<String>, Rejection> {
        text(self.m, key).map_err(|kind| {
            self.fail(
                Reason::InvalidField,
                format_args!("trường {key} phải là chuỗi, không phải {kind}"),
            )
        })
    }

    /// A `yyyyMMddHHmmss` date in Vietnam time; `None` when `""`.
    fn date(&self, key: &str) -> Result<Option<DateTime<Utc>>, Rejection> {
        let Some(s) = self.text(key)? else {
            return Ok(None);
        };
        parse_date(&s).map(Some).ok_or_else(|| {
            self.fail(
                Reason::InvalidTimestamp,
                format_args!(
                    "trường {key} = \"{}\" không phải ngày giờ dạng yyyyMMddHHmmss theo giờ Việt Nam (ví dụ 20261123091200)",
                    excerpt(&s)
                ),
            )
        })
    }

    /// The stage a status code maps to.
    fn stage(&self, key: &str) -> Result<(String, DossierStage), Rejection> {
        let Some(code) = self.text(key)? else {
            return Err(self.fail(
                Reason::MissingField,
                format_args!("thiếu trạng thái hồ sơ ({key})"),
            ));
        };
        match self.map.status.get(code.as_str()) {
            Some(stage) => Ok((code, *stage)),
            None => Err(self.fail(
                Reason::InvalidField,
                format_args!(
                    "trạng thái {key} = \"{}\" chưa được khai báo trong [procedure.dvcqg.status] (các mã đã khai báo: {})",
                    excerpt(&code),
                    codes(self.map.status.keys())
                ),
            )),
        }
    }

    /// Check a step's time against the ingest limits: `Ok(false)` when it
    /// is too old to count.
    fn recent(&self, key: &str, t: DateTime<Utc>) -> Result<bool, Rejection> {
        let received = self.ctx.raw.received_at;
        let ahead = t.signed_duration_since(received).num_seconds();
        if ahead > self.ctx.limits.max_future_skew_secs {
            return Err(self.fail(
                Reason::TimestampInFuture,
                format_args!(
                    "trường {key} = {} ở tương lai, sau thời điểm nhận {ahead} giây (giới hạn ingest.max_future_skew_secs = {})",
                    shown_vn(t),
                    self.ctx.limits.max_future_skew_secs
                ),
            ));
        }
        Ok(received.signed_duration_since(t).num_days() <= self.ctx.limits.max_age_days)
    }

    fn event(&self, kind: &str, ts: DateTime<Utc>, dedup: String) -> Event {
        let mut attrs = Map::new();
        attrs.insert("dossier_id".into(), Value::from(self.id));
        attrs.insert("via".into(), Value::from("dvcqg"));
        Event {
            source: Source::Procedure,
            kind: kind.into(),
            device: None,
            village: None,
            ts,
            received_at: self.ctx.raw.received_at,
            seq: None,
            attrs,
            dedup_key: dedup,
            retained: self.ctx.raw.retained,
        }
    }

    /// `DongBoHoSoMC`: the dossier as it stands.
    fn sync(&self) -> Result<Vec<Event>, Rejection> {
        let (code, stage) = self.stage("TrangThaiHoSo")?;
        // Every date is checked, used or not: a bad one is named.
        let received_at = self.date("NgayTiepNhan")?;
        let due = self.date("NgayHenTra")?;
        let returned = self.date("NgayTra")?;
        let finished = self.date("NgayKetThucXuLy")?;
        let procedure = self.text("MaTTHC")?;
        let fees = self.fees()?;

        let mut events = Vec::with_capacity(4);
        let mut too_old: Vec<&str> = Vec::new();
        let counts_received = matches!(
            stage,
            DossierStage::Received | DossierStage::Stopped | DossierStage::Resolved
        );
        if counts_received {
            let Some(at) = received_at else {
                return Err(self.fail(
                    Reason::MissingField,
                    format_args!(
                        "trạng thái TrangThaiHoSo = \"{code}\" là đã tiếp nhận nhưng NgayTiepNhan trống"
                    ),
                ));
            };
            let channel = self.channel()?;
            if self.recent("NgayTiepNhan", at)? {
                let mut e = self.event("received", at, format!("dossier:{}:received", self.id));
                e.attrs.insert("channel".into(), Value::from(channel));
                if let Some(p) = &procedure {
                    e.attrs
                        .insert("procedure_code".into(), Value::from(p.as_str()));
                }
                events.push(e);
            } else {
                too_old.push("received");
            }
            if let Some((amount, online)) = fees {
                if self.recent("NgayTiepNhan", at)? {
                    let mut e = self.event("paid", at, format!("dossier:{}:paid", self.id));
                    e.attrs.insert(
                        "payment".into(),
                        Value::from(if online { "online" } else { "cash" }),
                    );
                    if let Some(a) = amount {
                        e.attrs.insert("amount_vnd".into(), Value::from(a));
                    }
                    events.push(e);
                } else {
                    too_old.push("paid");
                }
            }
        }
        if stage == DossierStage::Resolved {
            let (field, at) = match (finished, returned) {
                (Some(t), _) => ("NgayKetThucXuLy", t),
                (None, Some(t)) => ("NgayTra", t),
                (None, None) => {
                    return Err(self.fail(
                        Reason::MissingField,
                        format_args!(
                            "trạng thái TrangThaiHoSo = \"{code}\" là đã giải quyết nhưng NgayKetThucXuLy và NgayTra đều trống"
                        ),
                    ))
                }
            };
            let Some(due) = due else {
                return Err(self.fail(
                    Reason::MissingField,
                    "đã giải quyết nhưng NgayHenTra trống: không xác định được đúng hạn hay trễ hạn",
                ));
            };
            if self.recent(field, at)? {
                let mut e = self.event("resolved", at, format!("dossier:{}:resolved", self.id));
                let outcome = if at <= due { "on_time" } else { "late" };
                e.attrs.insert("outcome".into(), Value::from(outcome));
                e.attrs.insert("due".into(), Value::from(due.to_rfc3339()));
                events.push(e);
            } else {
                too_old.push("resolved");
            }
        }
        let mut p = self.event(
            "progress",
            self.ctx.raw.received_at,
            format!("dossier:{}:progress:{code}", self.id),
        );
        p.attrs.insert("status".into(), Value::from(code));
        p.attrs.insert("stage".into(), Value::from(stage.as_str()));
        p.attrs.insert("service".into(), Value::from(SYNC));
        if !too_old.is_empty() {
            p.attrs.insert("too_old".into(), Value::from(too_old));
        }
        events.push(p);
        Ok(events)
    }

    /// `CapNhatTienDoHoSoMC`: one processing step.
    fn progress(&self) -> Result<Vec<Event>, Rejection> {
        let (code, stage) = self.stage("TrangThai")?;
        let at = self.date("ThoiDiemXuLy")?;
        self.date("NgayBatDau")?;
        self.date("NgayKetThucTheoQuyDinh")?;
        let ts = match at {
            Some(t) => {
                self.recent("ThoiDiemXuLy", t)?;
                t
            }
            None => self.ctx.raw.received_at,
        };
        let mut p = self.event(
            "progress",
            ts,
            format!("dossier:{}:progress:{code}", self.id),
        );
        p.attrs.insert("status".into(), Value::from(code));
        p.attrs.insert("stage".into(), Value::from(stage.as_str()));
        p.attrs.insert("service".into(), Value::from(PROGRESS));
        Ok(vec![p])
    }

    fn channel(&self) -> Result<&'static str, Rejection> {
        let Some(code) = self.text("HinhThuc")? else {
            return Err(self.fail(Reason::MissingField, "thiếu hình thức tiếp nhận (HinhThuc)"));
        };
        match self.map.channel.get(code.as_str()) {
            Some(c) => Ok(c.as_str()),
            None => Err(self.fail(
                Reason::InvalidField,
                format_args!(
                    "hình thức tiếp nhận HinhThuc = \"{}\" chưa được khai báo trong [procedure.dvcqg.channel] (các mã đã khai báo: {})",
                    excerpt(&code),
                    codes(self.map.channel.keys())
                ),
            )),
        }
    }

    /// The fees: `None` when there is none to pay (no list, an empty list,
    /// or every `Gia` zero); else the total when every amount is given,
    /// and whether one was collected online.
    fn fees(&self) -> Result<Option<(Option<f64>, bool)>, Rejection> {
        let items = match self.m.get("DanhSachLePhi") {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::Array(a)) => a,
            Some(Value::String(s)) if s.is_empty() => return Ok(None),
            Some(other) => {
                return Err(self.fail(
                    Reason::InvalidField,
                    format_args!(
                        "DanhSachLePhi phải là một danh sách, không phải {}",
                        kind_vi(other)
                    ),
                ))
            }
        };
        let mut total = Some(0.0);
        let mut any = false;
        let mut online = false;
        for (k, item) in items.iter().enumerate() {
            let Value::Object(fee) = item else {
                return Err(self.fail(
                    Reason::InvalidField,
                    format_args!(
                        "DanhSachLePhi[{k}] phải là một đối tượng lệ phí, không phải {}",
                        kind_vi(item)
                    ),
                ));
            };
            let field = |name: &str| format!("DanhSachLePhi[{k}].{name}");
            let amount = match text(fee, "Gia") {
                Ok(None) => None,
                Ok(Some(s)) => Some(parse_amount(&s).ok_or_else(|| {
                    self.fail(
                        Reason::InvalidField,
                        format_args!(
                            "trường {} = \"{}\" không phải số tiền (ví dụ \"50000\")",
                            field("Gia"),
                            excerpt(&s)
                        ),
                    )
                })?),
                Err(kind) => {
                    return Err(self.fail(
                        Reason::InvalidField,
                        format_args!("trường {} phải là chuỗi, không phải {kind}", field("Gia")),
                    ))
                }
            };
            if amount == Some(0.0) {
                continue;
            }
            any = true;
            total = match (total, amount) {
                (Some(t), Some(a)) => Some(t + a),
                _ => None,
            };
            let how = text(fee, "HinhThucThu").map_err(|kind| {
                self.fail(
                    Reason::InvalidField,
                    format_args!(
                        "trường {} phải là chuỗi, không phải {kind}",
                        field("HinhThucThu")
                    ),
                )
            })?;
            if let Some(code) = how {
                match self.map.payment.get(code.as_str()) {
                    Some(FeeKind::Online) => online = true,
                    Some(FeeKind::Cash) => {}
                    None => {
                        return Err(self.fail(
                            Reason::InvalidField,
                            format_args!(
                                "hình thức thu {} = \"{}\" chưa được khai báo trong [procedure.dvcqg.payment] (các mã đã khai báo: {})",
                                field("HinhThucThu"),
                                excerpt(&code),
                                codes(self.map.payment.keys())
                            ),
                        ))
                    }
                }
            }
        }
        Ok(any.then_some((total, online)))
    }
}

/// A string field (a JSON number taken as its text): `None` when absent,
/// `null` or empty (after trimming); the JSON kind when it is neither.
fn text(m: &Map<String, Value>, key: &str) -> Result<Option<String>, &'static str> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => {
            let t = s.trim();
            Ok((!t.is_empty()).then(|| t.to_owned()))
        }
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(other) => Err(kind_vi(other)),
    }
}

/// `yyyyMMddHHmmss` in Asia/Ho_Chi_Minh.
pub(crate) fn parse_date(s: &str) -> Option<DateTime<Utc>> {
    if s.len() != 14 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let naive = NaiveDateTime::parse_from_str(s, "%Y%m%d%H%M%S").ok()?;
    chrono_tz::Asia::Ho_Chi_Minh
        .from_local_datetime(&naive)
        .single()
        .map(|t| t.with_timezone(&Utc))
}

/// An amount of đồng: digits, optionally with `.` (or `,`) grouping
/// thousands (`50.000`), or a decimal with a `.` (`50000.0`).
fn parse_amount(s: &str) -> Option<f64> {
    let grouped = |sep: char| {
        let groups: Vec<&str> = s.split(sep).collect();
        groups.len() > 1
            && (1..=3).contains(&groups[0].len())
            && groups[1..].iter().all(|g| g.len() == 3)
            && groups.iter().all(|g| g.bytes().all(|b| b.is_ascii_digit()))
    };
    let v = if grouped('.') {
        s.replace('.', "").parse::<f64>().ok()?
    } else if grouped(',') {
        s.replace(',', "").parse::<f64>().ok()?
    } else if s.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        s.parse::<f64>().ok()?
    } else {
        return None;
    };
    (v.is_finite() && v >= 0.0).then_some(v)
}

fn kind_vi(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "giá trị đúng/sai",
        Value::Number(_) => "một số",
        Value::String(_) => "một chuỗi",
        Value::Array(_) => "một danh sách",
        Value::Object(_) => "một đối tượng",
    }
}

fn shown(v: &Value) -> String {
    match v {
        Value::String(s) => format!("\"{}\"", excerpt(s)),
        other => kind_vi(other).to_owned(),
    }
}

fn excerpt(s: &str) -> String {
    let mut e: String = s.chars().take(40).collect();
    if e.len() < s.len() {
        e.push('…');
    }
    e
}

fn codes<'a>(keys: impl Iterator<Item = &'a String>) -> String {
    let list: Vec<&str> = keys.map(String::as_str).collect();
    if list.is_empty() {
        "không có".into()
    } else {
        list.join(", ")
    }
}

/// A count the Vietnamese way: `65.536`.
fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push('.');
        }
        out.push(c);
    }
    out
}

/// A time as Vietnamese readers write it: `dd/MM/yyyy HH:mm` in Vietnam time.
fn shown_vn(t: DateTime<Utc>) -> String {
    t.with_timezone(&chrono_tz::Asia::Ho_Chi_Minh)
        .format("%d/%m/%Y %H:%M:%S")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_vietnam_time_and_strict() {
        let t = parse_date("20261123091200").unwrap();
        assert_eq!(t.to_rfc3339(), "2026-11-23T02:12:00+00:00");
        for bad in [
            "2026-11-23 09:12",
            "202611230912",
            "20261323091200",
            "20261123251200",
            "2026112309120a",
            "",
        ] {
            assert_eq!(parse_date(bad), None, "{bad}");
        }
    }

    #[test]
    fn amounts_read_the_vietnamese_way() {
        assert_eq!(parse_amount("50000"), Some(50000.0));
        assert_eq!(parse_amount("50.000"), Some(50000.0));
        assert_eq!(parse_amount("1.250.000"), Some(1_250_000.0));
        assert_eq!(parse_amount("50,000"), Some(50000.0));
        assert_eq!(parse_amount("0"), Some(0.0));
        assert_eq!(parse_amount("12.5"), Some(12.5));
        for bad in ["", "-5", "năm mươi", "1e9", "50 000"] {
            assert_eq!(parse_amount(bad), None, "{bad}");
        }
        assert_eq!(thousands(65536), "65.536");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000_000), "1.000.000");
    }
}
