//! Vietnamese message templates: one per hazard and level for official
//! warnings (naming the villages, the issuing agency and the bulletin's
//! issue time in Asia/Ho_Chi_Minh, which a relay must repeat), one per rule
//! kind for the commune's own (internal) alerts.

use std::collections::HashMap;

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Asia::Ho_Chi_Minh;

use crate::config::Config;
use crate::vocab::{Hazard, RiskLevel};
use crate::warnings::WarningView;

/// Display names of villages and devices, from the config.
#[derive(Debug, Clone, Default)]
pub struct Names {
    villages: HashMap<String, String>,
    devices: HashMap<String, String>,
}

impl Names {
    /// From the config's villages and devices.
    pub fn from_config(c: &Config) -> Names {
        let mut devices = HashMap::new();
        for (id, name) in c
            .cameras
            .iter()
            .map(|d| (&d.id, &d.name))
            .chain(c.speakers.iter().map(|d| (&d.id, &d.name)))
            .chain(c.sensors.iter().map(|d| (&d.id, &d.name)))
        {
            let name = if name.trim().is_empty() { id } else { name };
            devices.insert(id.clone(), name.clone());
        }
        Names {
            villages: c
                .villages
                .iter()
                .map(|v| (v.id.clone(), v.name.clone()))
                .collect(),
            devices,
        }
    }

    /// A village's name (its id when unknown).
    pub fn village<'a>(&'a self, id: &'a str) -> &'a str {
        self.villages.get(id).map_or(id, String::as_str)
    }

    /// A device's name (its id when unknown).
    pub fn device<'a>(&'a self, id: &'a str) -> &'a str {
        self.devices.get(id).map_or(id, String::as_str)
    }

    /// The villages' names joined: `Bản A, Bản B và Bản C`.
    pub fn villages_text(&self, ids: &[String]) -> String {
        let names: Vec<&str> = ids.iter().map(|v| self.village(v)).collect();
        match names.as_slice() {
            [] => "toàn xã".to_owned(),
            [one] => (*one).to_owned(),
            [init @ .., last] => format!("{} và {last}", init.join(", ")),
        }
    }
}

/// `14:05 ngày 03/12/2026` in Asia/Ho_Chi_Minh.
pub fn time_vi<Tz: TimeZone>(t: &DateTime<Tz>) -> String {
    t.with_timezone(&Ho_Chi_Minh)
        .format("%H:%M ngày %d/%m/%Y")
        .to_string()
}

/// A number the Vietnamese way: `1.234,5` (at most 2 decimals, trailing
/// zeros dropped).
pub fn number_vi(x: f64) -> String {
    if !x.is_finite() {
        return "—".into();
    }
    let s = format!("{:.2}", x.abs());
    let (int, frac) = s.split_once('.').unwrap_or((&s, ""));
    let frac = frac.trim_end_matches('0');
    let mut grouped = String::new();
    for (i, ch) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            grouped.push('.');
        }
        grouped.push(ch);
    }
    let sign = if x < 0.0 && (grouped != "0" || !frac.is_empty()) {
        "-"
    } else {
        ""
    };
    if frac.is_empty() {
        format!("{sign}{grouped}")
    } else {
        format!("{sign}{grouped},{frac}")
    }
}

/// What to do, per hazard (the commune's standing advice for its people).
fn advice(h: Hazard) -> &'static str {
    match h {
        Hazard::FlashFlood => "Không đi qua ngầm, tràn, suối; di chuyển người và tài sản khỏi khu vực ven suối, vùng trũng.",
        Hazard::Landslide => "Theo dõi vết nứt, sụt lún; di chuyển khỏi khu vực sườn dốc, taluy có nguy cơ sạt lở.",
        Hazard::HeavyRain => "Theo dõi mưa lũ; không đi qua khu vực ngập nước, ngầm, tràn.",
        Hazard::Flood => "Kê cao tài sản, chuẩn bị sơ tán khỏi vùng trũng thấp.",
        Hazard::ColdSpell => "Giữ ấm cho người già, trẻ em; che chắn, giữ ấm cho gia súc.",
        Hazard::Frost => "Che chắn cây trồng, chuồng trại; giữ ấm cho người và gia súc.",
        Hazard::Thunderstorm => "Không trú dưới cây cao, cột điện; chằng chống nhà cửa.",
        Hazard::Storm | Hazard::StormSurge | Hazard::StrongWind => {
            "Chằng chống nhà cửa; không ra sông, suối, hồ; sẵn sàng sơ tán."
        }
        Hazard::Heat | Hazard::Drought => "Hạn chế ra ngoài trời nắng; tích trữ nước sinh hoạt.",
        Hazard::Wildfire => "Không đốt nương rẫy; báo ngay khi phát hiện cháy.",
        Hazard::Earthquake | Hazard::Tsunami => "Tránh xa nhà yếu, sườn dốc; làm theo hướng dẫn của chính quyền.",
        Hazard::Fog | Hazard::Salinity | Hazard::Epidemic => "Theo dõi thông tin từ chính quyền.",
    }
}

/// What the level asks of the commune (QĐ 18/2021: the higher, the more).
fn level_lead(level: Option<RiskLevel>) -> &'static str {
    match level.map(RiskLevel::get) {
        Some(1) => "Theo dõi và thông báo cho người dân.",
        Some(2) => "Chuẩn bị lực lượng, phương tiện ứng phó.",
        Some(3) => "KHẨN CẤP: sẵn sàng sơ tán người dân khỏi khu vực nguy hiểm.",
        Some(4) | Some(5) => "KHẨN CẤP: tổ chức sơ tán ngay, huy động toàn bộ lực lượng.",
        _ => "Theo dõi tin cảnh báo.",
    }
}

/// Title and message of the alert a warning raises.
pub fn warning_text(w: &WarningView, names: &Names) -> (String, String) {
    let hazard = w
        .hazard
        .map_or_else(|| w.event.clone(), |h| h.name_vi().to_owned());
    let level = w
        .level
        .map(|l| {
            format!(
                ", cấp độ rủi ro thiên tai cấp {} ({})",
                l.get(),
                l.colour().1
            )
        })
        .unwrap_or_default();
    let title = format!("{hazard}{level}");
    let agency = w
        .sender_name
        .as_deref()
        .unwrap_or("(không rõ cơ quan ban hành)");
    let mut message = format!(
        "[Tin cảnh báo chính thức] {hazard}{level} tại {}. Cơ quan ban hành: {agency}, ban hành lúc {}.",
        names.villages_text(&w.villages),
        time_vi(&w.sent),
    );
    if let Some(h) = &w.headline_vi {
        message.push_str(&format!(" Nội dung: {h}."));
    }
    if let Some(e) = &w.expires {
        message.push_str(&format!(" Hiệu lực đến {}.", time_vi(e)));
    }
    message.push(' ');
    message.push_str(level_lead(w.level));
    if let Some(h) = w.hazard {
        message.push(' ');
        message.push_str(advice(h));
    }
    (title, message)
}

/// The message of an internal alert: `[Cảnh báo nội bộ] {rule}: {what}
/// tại {villages}, lúc {time}.`
pub fn internal_text(
    rule_name: &str,
    what: &str,
    villages: &[String],
    at: DateTime<Utc>,
    names: &Names,
) -> String {
    let place = if villages.is_empty() {
        String::new()
    } else {
        format!(" tại {}", names.villages_text(villages))
    };
    format!(
        "[Cảnh báo nội bộ, không phải tin cảnh báo chính thức] {rule_name}: {what}{place}, lúc {}.",
        time_vi(&at)
    )
}

/// A camera event kind in Vietnamese.
pub fn camera_kind_vi(kind: &str) -> &'static str {
    match kind {
        "fire" => "phát hiện cháy",
        "smoke" => "phát hiện khói",
        "intrusion" => "phát hiện xâm nhập",
        "tamper" => "camera bị che hoặc dịch chuyển",
        "detection" => "phát hiện đối tượng",
        _ => "sự kiện camera",
    }
}

/// A device class in Vietnamese (plural).
pub fn class_vi(class: crate::vocab::DeviceClass) -> &'static str {
    match class {
        crate::vocab::DeviceClass::Camera => "camera",
        crate::vocab::DeviceClass::Speaker => "cụm loa",
        crate::vocab::DeviceClass::Sensor => "cảm biến",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_written_the_vietnamese_way() {
        assert_eq!(number_vi(1234.5), "1.234,5");
        assert_eq!(number_vi(1234567.0), "1.234.567");
        assert_eq!(number_vi(0.25), "0,25");
        assert_eq!(number_vi(-12.0), "-12");
        assert_eq!(number_vi(999.999), "1.000");
    }

    #[test]
    fn a_warning_names_villages_agency_and_issue_time_in_vietnam_time() {
        let c = crate::config::load_str(
            "[commune]\nid = \"x\"\nname = \"X\"\n[[village]]\nid = \"na-da\"\nname = \"Bản Nà Đa\"\n[[village]]\nid = \"tan-binh\"\nname = \"Bản Tân Bình\"\n",
            "t.toml",
            &[],
        )
        .unwrap();
        let names = Names::from_config(&c);
        let w = WarningView {
            id: "a|b|c".into(),
            state: crate::warnings::WarningState::Active,
            hazard: Some(Hazard::FlashFlood),
            level: Some(Hazard::FlashFlood.check_level(3).unwrap()),
            villages: vec!["na-da".into(), "tan-binh".into()],
            event: "Lũ quét".into(),
            headline_vi: None,
            sender_name: Some("Đài KTTV tỉnh Lai Châu".into()),
            // 02:30 UTC is 09:30 in Vietnam.
            sent: chrono::DateTime::parse_from_rfc3339("2026-07-14T02:30:00+00:00").unwrap(),
            expires: None,
            supersedes: None,
        };
        let (title, msg) = warning_text(&w, &names);
        assert_eq!(title, "Lũ quét, cấp độ rủi ro thiên tai cấp 3 (da cam)");
        assert!(msg.contains("Bản Nà Đa và Bản Tân Bình"), "{msg}");
        assert!(msg.contains("Đài KTTV tỉnh Lai Châu"), "{msg}");
        assert!(msg.contains("09:30 ngày 14/07/2026"), "{msg}");
        assert!(msg.contains("KHẨN CẤP"), "{msg}");
        assert!(msg.contains("ngầm, tràn"), "{msg}");
    }
}
