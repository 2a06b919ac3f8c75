//! A realistic Vietnamese flash-flood/landslide bulletin chain in CAP 1.2
//! (the profile of anchors-alerting-reporting.md §1.7): an `Alert`, an
//! `Update` that raises its risk level (`VN-CAP-DO-RUI-RO`) and a `Cancel`,
//! published on `ioc/{commune}/warning/cap`, so the demo shows the whole
//! chain on the wall screen.
//!
//! The bulletin is issued by the province's hydro-meteorological station
//! (invented `example.gov.vn` addresses: nothing here is a real agency's
//! identifier) and covers the first two villages of the site that have
//! coordinates (a small polygon around each, and their names in
//! `areaDesc`); a site without coordinates is covered by `areaDesc` alone.

use chrono::{DateTime, Duration as TimeDelta, Utc};
use chrono_tz::Asia::Ho_Chi_Minh;

use super::Message;
use crate::config::Config;

/// Who issues the demo's bulletins (CAP `sender`: no spaces, commas, `<`
/// or `&`).
pub const SENDER: &str = "canhbao@kttv.example.gov.vn";

/// Half the side of the square drawn around a village, in degrees
/// (about 450 m at 22° N): small enough to leave the neighbours out.
const HALF_SIDE: f64 = 0.004;

/// How many hours an `Alert` or `Update` stays in force (`expires`).
const VALID_HOURS: i64 = 6;

/// A village the bulletin covers.
#[derive(Debug, Clone)]
struct Covered {
    id: String,
    name: String,
    at: Option<(f64, f64)>,
}

/// One chain of bulletins: `alert`, then `update`, then `cancel`.
#[derive(Debug, Clone)]
pub struct FloodBulletin {
    topic: String,
    number: u32,
    commune_name: String,
    province: Option<String>,
    villages: Vec<Covered>,
    /// `(identifier, sent)` of every message issued so far.
    issued: Vec<(String, String)>,
}

/// CAP time: `YYYY-MM-DDThh:mm:ss+07:00` (no fraction, never `Z`).
pub fn cap_time(t: DateTime<Utc>) -> String {
    t.with_timezone(&Ho_Chi_Minh)
        .format("%Y-%m-%dT%H:%M:%S%:z")
        .to_string()
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The colour name of the profile's `VN-CAP-DO-MAU` parameter.
fn colour_code(level: u8) -> &'static str {
    match level {
        1 => "xanh-duong-nhat",
        2 => "vang-nhat",
        3 => "da-cam",
        4 => "do",
        _ => "tim",
    }
}

/// The profile's mapping of the Vietnamese level to CAP `severity`.
fn severity(level: u8) -> &'static str {
    match level {
        0..=2 => "Moderate",
        3 => "Severe",
        _ => "Extreme",
    }
}

impl FloodBulletin {
    /// Chain number `number` (it goes into every identifier) for the site
    /// of `config`.
    pub fn new(config: &Config, number: u32) -> FloodBulletin {
        let named = |v: &crate::config::Village| Covered {
            id: v.id.clone(),
            name: v.name.clone(),
            at: v.lat.zip(v.lon),
        };
        let mut villages: Vec<Covered> = config
            .villages
            .iter()
            .filter(|v| !v.placeholder && v.lat.is_some() && v.lon.is_some())
            .take(2)
            .map(named)
            .collect();
        if villages.is_empty() {
            villages = config
                .villages
                .iter()
                .filter(|v| !v.placeholder)
                .take(2)
                .map(named)
                .collect();
        }
        FloodBulletin {
            topic: format!("ioc/{}/warning/cap", config.commune.id),
            number,
            commune_name: config.commune.name.clone(),
            province: Some(config.commune.province.clone()).filter(|p| !p.is_empty()),
            villages,
            issued: Vec::new(),
        }
    }

    /// Ids of the villages the bulletin covers.
    pub fn villages(&self) -> Vec<String> {
        self.villages.iter().map(|v| v.id.clone()).collect()
    }

    /// The MQTT topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The id (`sender|identifier|sent`) of the message issued last.
    pub fn last_id(&self) -> Option<String> {
        self.issued
            .last()
            .map(|(identifier, sent)| format!("{SENDER}|{identifier}|{sent}"))
    }

    /// The id of the chain's first message (the `Alert`).
    pub fn first_id(&self) -> Option<String> {
        self.issued
            .first()
            .map(|(identifier, sent)| format!("{SENDER}|{identifier}|{sent}"))
    }

    /// The first message: an `Alert` at `level` (1–3 for this hazard).
    pub fn alert(&mut self, at: DateTime<Utc>, level: u8) -> Message {
        self.issued.clear();
        self.message(at, "Alert", Some(level))
    }

    /// An `Update` to `level`, referencing every message issued so far.
    pub fn update(&mut self, at: DateTime<Utc>, level: u8) -> Message {
        self.message(at, "Update", Some(level))
    }

    /// A `Cancel` of the chain, referencing every message issued so far.
    pub fn cancel(&mut self, at: DateTime<Utc>) -> Message {
        self.message(at, "Cancel", None)
    }

    fn message(&mut self, at: DateTime<Utc>, kind: &str, level: Option<u8>) -> Message {
        // Two messages of a chain never share a second (`sent` is part of
        // the CAP key).
        let at = match self.issued.last() {
            Some((_, prev)) if cap_time(at) <= *prev => {
                DateTime::parse_from_rfc3339(prev)
                    .map(|t| t.with_timezone(&Utc))
                    .unwrap_or(at)
                    + TimeDelta::seconds(1)
            }
            _ => at,
        };
        let sent = cap_time(at);
        let local = at.with_timezone(&Ho_Chi_Minh);
        let identifier = format!(
            "VN.KTTV.{}.LQSL-{:04}-{}",
            local.format("%Y%m%dT%H%M%S"),
            self.number,
            self.issued.len() + 1
        );
        let references = self
            .issued
            .iter()
            .map(|(i, s)| format!("{SENDER},{i},{s}"))
            .collect::<Vec<_>>()
            .join(" ");
        let mut x = String::with_capacity(4096);
        x.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        x.push_str("<alert xmlns=\"urn:oasis:names:tc:emergency:cap:1.2\">\n");
        x.push_str(&format!("  <identifier>{identifier}</identifier>\n"));
        x.push_str(&format!("  <sender>{SENDER}</sender>\n"));
        x.push_str(&format!("  <sent>{sent}</sent>\n"));
        x.push_str("  <status>Actual</status>\n");
        x.push_str(&format!("  <msgType>{kind}</msgType>\n"));
        x.push_str(&format!(
            "  <source>{}</source>\n",
            esc(&format!(
                "Bản tin cảnh báo lũ quét, sạt lở đất số {}",
                self.number
            ))
        ));
        x.push_str("  <scope>Public</scope>\n");
        x.push_str("  <code>profile:vn-commune-ioc:0.1</code>\n");
        if kind == "Cancel" {
            x.push_str(&format!(
                "  <note>{}</note>\n",
                esc("Mưa đã giảm, mực nước các suối đang xuống: hủy bỏ cảnh báo lũ quét, sạt lở đất đã phát.")
            ));
        }
        if !references.is_empty() {
            x.push_str(&format!("  <references>{references}</references>\n"));
        }
        if let Some(level) = level {
            self.info(&mut x, at, level);
        }
        x.push_str("</alert>\n");
        self.issued.push((identifier, sent));
        Message {
            topic: self.topic.clone(),
            payload: x.into_bytes(),
            retain: false,
        }
    }

    fn info(&self, x: &mut String, at: DateTime<Utc>, level: u8) {
        let place = match &self.province {
            Some(p) => format!("{}, tỉnh {p}", self.commune_name),
            None => self.commune_name.clone(),
        };
        let names: Vec<&str> = self.villages.iter().map(|v| v.name.as_str()).collect();
        let names = names.join(", ");
        let sender_name = match &self.province {
            Some(p) => format!("Đài Khí tượng Thủy văn tỉnh {p}"),
            None => "Trung tâm Dự báo khí tượng thủy văn quốc gia".to_owned(),
        };
        let local = at.with_timezone(&Ho_Chi_Minh);
        let since = (at - TimeDelta::hours(24)).with_timezone(&Ho_Chi_Minh);
        let (rain, next) = match level {
            1 => (86, "20–50"),
            2 => (128, "40–80"),
            _ => (214, "80–150"),
        };
        let description = format!(
            "Từ {} ngày {} đến {} ngày {}, trên địa bàn {place} đã có mưa vừa, mưa to, có nơi mưa rất to; \
             lượng mưa đo được tại trạm {} là {rain} mm. Dự báo trong 6 giờ tới mưa còn tiếp diễn với lượng \
             mưa phổ biến {next} mm. Nguy cơ rất cao xảy ra lũ quét trên các sông, suối nhỏ và sạt lở đất \
             trên sườn dốc tại: {names}.",
            since.format("%Hh%M"),
            since.format("%d/%m"),
            local.format("%Hh%M"),
            local.format("%d/%m"),
            self.commune_name,
        );
        let instruction = if level >= 3 {
            "Khẩn trương di dời người và tài sản ra khỏi khu vực sườn dốc, ven suối có nguy cơ sạt lở; \
             tuyệt đối không đi qua ngầm, tràn, suối khi có nước chảy xiết; theo dõi loa truyền thanh của xã."
        } else {
            "Không đi qua ngầm, tràn, suối khi có nước chảy xiết; chuẩn bị phương án di dời người và tài sản \
             khỏi khu vực sườn dốc; theo dõi loa truyền thanh của xã."
        };
        let headline = format!(
            "Cảnh báo lũ quét, sạt lở đất tại {place} – cấp độ rủi ro thiên tai cấp {level}"
        );
        let expires = cap_time(at + TimeDelta::hours(VALID_HOURS));
        x.push_str("  <info>\n");
        x.push_str("    <language>vi-VN</language>\n");
        x.push_str("    <category>Met</category>\n");
        x.push_str("    <category>Geo</category>\n");
        x.push_str("    <event>Lũ quét, sạt lở đất</event>\n");
        x.push_str(&format!(
            "    <responseType>{}</responseType>\n",
            if level >= 3 { "Evacuate" } else { "Prepare" }
        ));
        x.push_str("    <urgency>Expected</urgency>\n");
        x.push_str(&format!("    <severity>{}</severity>\n", severity(level)));
        x.push_str("    <certainty>Likely</certainty>\n");
        x.push_str("    <eventCode><valueName>GLIDE</valueName><value>FF</value></eventCode>\n");
        x.push_str(&format!("    <effective>{}</effective>\n", cap_time(at)));
        x.push_str(&format!("    <expires>{expires}</expires>\n"));
        x.push_str(&format!(
            "    <senderName>{}</senderName>\n",
            esc(&sender_name)
        ));
        x.push_str(&format!("    <headline>{}</headline>\n", esc(&headline)));
        x.push_str(&format!(
            "    <description>{}</description>\n",
            esc(&description)
        ));
        x.push_str(&format!(
            "    <instruction>{}</instruction>\n",
            esc(instruction)
        ));
        x.push_str(&format!(
            "    <parameter><valueName>VN-CAP-DO-RUI-RO</valueName><value>{level}</value></parameter>\n"
        ));
        x.push_str(&format!(
            "    <parameter><valueName>VN-CAP-DO-MAU</valueName><value>{}</value></parameter>\n",
            colour_code(level)
        ));
        x.push_str(&format!(
            "    <parameter><valueName>VN-LOA-NOI-DUNG</valueName><value>{}</value></parameter>\n",
            esc(&format!(
                "Cảnh báo lũ quét, sạt lở đất cấp độ {level} tại {names}. {instruction}"
            ))
        ));
        x.push_str("    <area>\n");
        x.push_str(&format!(
            "      <areaDesc>{}</areaDesc>\n",
            esc(&format!("{names} – {}", self.commune_name))
        ));
        for v in &self.villages {
            if let Some((lat, lon)) = v.at {
                x.push_str(&format!("      <polygon>{}</polygon>\n", square(lat, lon)));
            }
        }
        x.push_str("    </area>\n");
        x.push_str("  </info>\n");
    }
}

/// A closed square of `lat,lon` pairs around a point (5 pairs, first = last).
fn square(lat: f64, lon: f64) -> String {
    let (s, n) = (lat - HALF_SIDE, lat + HALF_SIDE);
    let (w, e) = (lon - HALF_SIDE, lon + HALF_SIDE);
    [(s, w), (s, e), (n, e), (n, w), (s, w)]
        .iter()
        .map(|(a, b)| format!("{a:.4},{b:.4}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// When the simulator publishes a chain: the `Alert` `first` after start,
/// the `Update` `update_after` the alert, the `Cancel` `cancel_after` the
/// alert, and a new chain every `cycle`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cadence {
    /// From start to the first `Alert`.
    pub first: std::time::Duration,
    /// From an `Alert` to its `Update`.
    pub update_after: std::time::Duration,
    /// From an `Alert` to its `Cancel`.
    pub cancel_after: std::time::Duration,
    /// From one `Alert` to the next chain's.
    pub cycle: std::time::Duration,
}

impl Cadence {
    /// The demo's: level 2 after 15 s, raised to level 3 (the screen's
    /// takeover) 1 min later, cancelled 5 min after the alert, a new chain
    /// every 10 min.
    pub const DEMO: Cadence = Cadence {
        first: std::time::Duration::from_secs(15),
        update_after: std::time::Duration::from_secs(60),
        cancel_after: std::time::Duration::from_secs(300),
        cycle: std::time::Duration::from_secs(600),
    };

    /// Which step of a chain is due `since` the simulator started, if any
    /// changed after `before` (both from start): the chain number (from 1)
    /// and the step.
    pub fn due(&self, before: std::time::Duration, since: std::time::Duration) -> Vec<(u32, Step)> {
        let mut out = Vec::new();
        if since < self.first || self.cycle.is_zero() {
            return out;
        }
        let cycle = self.cycle.as_secs_f64();
        let first = self.first.as_secs_f64();
        let chain_of = |t: std::time::Duration| ((t.as_secs_f64() - first) / cycle).floor();
        let lo = chain_of(before).max(0.0) as u32;
        let hi = chain_of(since) as u32;
        for n in lo..=hi {
            let start = first + f64::from(n) * cycle;
            for (off, step) in [
                (0.0, Step::Alert),
                (self.update_after.as_secs_f64(), Step::Update),
                (self.cancel_after.as_secs_f64(), Step::Cancel),
            ] {
                let t = start + off;
                if t > before.as_secs_f64() && t <= since.as_secs_f64() && off < cycle {
                    out.push((n + 1, step));
                }
            }
        }
        out
    }
}

/// A step of a bulletin chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The `Alert` (level 2).
    Alert,
    /// The `Update` (level 3).
    Update,
    /// The `Cancel`.
    Cancel,
}

/// Risk levels of the demo chain: the alert's and the update's.
pub const DEMO_LEVELS: (u8, u8) = (2, 3);

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn config() -> Config {
        crate::config::examples::binh_lu().expect("the example loads")
    }

    fn text(m: &Message) -> String {
        String::from_utf8(m.payload.clone()).unwrap()
    }

    /// The text of the first `name` element (any namespace).
    fn first<'a>(doc: &'a roxmltree::Document<'a>, name: &str) -> Option<&'a str> {
        doc.descendants()
            .find(|n| n.tag_name().name() == name)
            .and_then(|n| n.text())
    }

    #[test]
    fn the_chain_is_well_formed_cap_with_references_and_levels() {
        let cfg = config();
        let mut b = FloodBulletin::new(&cfg, 7);
        let t0 = DateTime::parse_from_rfc3339("2026-07-14T02:30:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let alert = b.alert(t0, 2);
        let first_id = b.first_id().unwrap();
        let update = b.update(t0 + TimeDelta::seconds(60), 3);
        let cancel = b.cancel(t0 + TimeDelta::seconds(300));
        assert_eq!(alert.topic, "ioc/binh-lu/warning/cap");
        assert!(!alert.retain);

        let a = text(&alert);
        let doc = roxmltree::Document::parse(&a).expect("well-formed XML");
        let root = doc.root_element();
        assert_eq!(root.tag_name().name(), "alert");
        assert_eq!(
            root.tag_name().namespace(),
            Some("urn:oasis:names:tc:emergency:cap:1.2")
        );
        assert_eq!(first(&doc, "sent"), Some("2026-07-14T09:30:00+07:00"));
        assert_eq!(first(&doc, "msgType"), Some("Alert"));
        assert_eq!(first(&doc, "event"), Some("Lũ quét, sạt lở đất"));
        assert_eq!(first(&doc, "severity"), Some("Moderate"));
        assert_eq!(first(&doc, "expires"), Some("2026-07-14T15:30:00+07:00"));
        assert_eq!(
            first(&doc, "senderName"),
            Some("Đài Khí tượng Thủy văn tỉnh Lai Châu")
        );
        let level = doc
            .descendants()
            .filter(|n| n.tag_name().name() == "parameter")
            .find(|p| p.children().any(|c| c.text() == Some("VN-CAP-DO-RUI-RO")))
            .and_then(|p| {
                p.children()
                    .find(|c| c.tag_name().name() == "value")
                    .and_then(|c| c.text())
            });
        assert_eq!(level, Some("2"));
        assert!(first(&doc, "references").is_none(), "an Alert has none");
        let identifier = first(&doc, "identifier").unwrap();
        assert!(!identifier.contains([' ', ',', '<', '&']));
        assert_eq!(
            first_id,
            format!("{SENDER}|{identifier}|2026-07-14T09:30:00+07:00")
        );

        let u = text(&update);
        let doc = roxmltree::Document::parse(&u).unwrap();
        assert_eq!(first(&doc, "msgType"), Some("Update"));
        assert_eq!(first(&doc, "severity"), Some("Severe"));
        assert_eq!(
            first(&doc, "references"),
            Some(format!("{SENDER},{identifier},2026-07-14T09:30:00+07:00").as_str())
        );
        assert!(u.contains("<value>3</value>"));

        let c = text(&cancel);
        let doc = roxmltree::Document::parse(&c).unwrap();
        assert_eq!(first(&doc, "msgType"), Some("Cancel"));
        let refs = first(&doc, "references").unwrap();
        assert_eq!(refs.split_whitespace().count(), 2, "{refs}");
        assert!(doc.descendants().all(|n| n.tag_name().name() != "info"));
    }

    #[test]
    fn polygons_are_closed_and_cover_only_the_chosen_villages() {
        let cfg = config();
        let mut b = FloodBulletin::new(&cfg, 1);
        assert_eq!(b.villages(), ["tan-binh", "hung-binh"]);
        let m = text(&b.alert(Utc::now(), 2));
        let doc = roxmltree::Document::parse(&m).unwrap();
        let polygons: Vec<geo::Polygon<f64>> = doc
            .descendants()
            .filter(|n| n.tag_name().name() == "polygon")
            .map(|n| {
                let pts: Vec<(f64, f64)> = n
                    .text()
                    .unwrap()
                    .split_whitespace()
                    .map(|p| {
                        let (lat, lon) = p.split_once(',').unwrap();
                        (lat.parse().unwrap(), lon.parse().unwrap())
                    })
                    .collect();
                assert!(pts.len() >= 4 && pts.first() == pts.last(), "{pts:?}");
                geo::Polygon::new(
                    pts.iter()
                        .map(|(lat, lon)| geo::coord! {x: *lon, y: *lat})
                        .collect(),
                    vec![],
                )
            })
            .collect();
        assert_eq!(polygons.len(), 2);
        use geo::Contains;
        for v in &cfg.villages {
            let p = geo::point!(x: v.lon.unwrap(), y: v.lat.unwrap());
            let inside = polygons.iter().any(|poly| poly.contains(&p));
            assert_eq!(
                inside,
                b.villages().contains(&v.id),
                "{} inside: {inside}",
                v.id
            );
        }
        assert!(first(&doc, "areaDesc")
            .unwrap()
            .starts_with("Tân Bình, Hưng Bình"));
    }

    #[test]
    fn a_site_without_coordinates_is_covered_by_name() {
        let mut cfg = config();
        for v in &mut cfg.villages {
            v.lat = None;
            v.lon = None;
        }
        let mut b = FloodBulletin::new(&cfg, 1);
        assert_eq!(b.villages(), ["tan-binh", "hung-binh"]);
        let m = text(&b.alert(Utc::now(), 1));
        assert!(!m.contains("<polygon>"));
        assert!(m.contains("<areaDesc>Tân Bình, Hưng Bình – Xã Bình Lư</areaDesc>"));
    }

    #[test]
    fn messages_of_one_chain_never_share_a_second() {
        let cfg = config();
        let mut b = FloodBulletin::new(&cfg, 1);
        let t = Utc::now();
        b.alert(t, 2);
        let a = b.last_id().unwrap();
        b.update(t, 3);
        let u = b.last_id().unwrap();
        assert_ne!(a, u);
        assert!(u.rsplit('|').next() > a.rsplit('|').next());
    }

    #[test]
    fn the_cadence_says_each_step_once() {
        let c = Cadence::DEMO;
        let s = Duration::from_secs;
        assert!(c.due(s(0), s(14)).is_empty());
        assert_eq!(c.due(s(14), s(15)), [(1, Step::Alert)]);
        assert!(c.due(s(15), s(16)).is_empty());
        assert_eq!(c.due(s(74), s(75)), [(1, Step::Update)]);
        assert_eq!(c.due(s(314), s(316)), [(1, Step::Cancel)]);
        assert_eq!(c.due(s(614), s(615)), [(2, Step::Alert)]);
        // A long pause says every step it skipped, in order.
        assert_eq!(
            c.due(s(0), s(700)),
            [
                (1, Step::Alert),
                (1, Step::Update),
                (1, Step::Cancel),
                (2, Step::Alert),
                (2, Step::Update)
            ]
        );
    }
}
