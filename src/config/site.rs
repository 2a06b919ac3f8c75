//! The site definition: the commune, its villages and devices, its
//! indicators and report regime (`[commune]`, `[[village]]`, `[[camera]]`,
//! `[[speaker]]`, `[[sensor]]`, `[procedure]`, `[report]`, `[devices]`,
//! `[[indicator]]`), as written in the file, and [`Site`], the typed form
//! built once at load (targets, sources, device classes parsed; every
//! problem reported then, with its place in the file).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use crate::vocab::SpeakerKind;
use crate::vocab::{DeviceClass, Source, Target};

/// The commune.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Commune {
    /// ASCII slug used in MQTT topics, e.g. `binh-lu`.
    pub id: String,
    /// Display name, e.g. `Xã Bình Lư`.
    pub name: String,
    /// Province, e.g. `Lai Châu`.
    #[serde(default)]
    pub province: String,
}

/// How monthly report periods are cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Regime {
    /// Nghị định 09/2019/NĐ-CP Điều 12: 15th of the previous month to the
    /// 15th of this month, 00:00 +07:00, half open.
    #[default]
    Nd09,
    /// Calendar month, 00:00 +07:00.
    Calendar,
}

/// Report settings (`[report]`; docs/REPORTS.md).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Report {
    /// The period regime for the `month` window and the sealed reports.
    pub regime: Regime,
    /// The report's code in the snapshot (`report_code`).
    pub code: String,
    /// The commune's code for the province (`org_unit.code`); empty: the
    /// commune id.
    pub org_code: String,
    /// The parent unit's code or name (`org_unit.parent`); empty: the
    /// province name.
    pub parent: String,
    /// Seconds after a period's end during which late deliveries still
    /// count; the period is sealed after it.
    pub grace_secs: u64,
    /// Seal closed periods by themselves (the `serve` task).
    pub auto_seal: bool,
    /// Which period kinds the task seals: `month`, `quarter`, `half`,
    /// `year`.
    pub auto_seal_kinds: Vec<String>,
    /// How often the task looks for periods to seal and late events.
    pub check_interval_secs: u64,
    /// A late event that moves a sealed value by more than this percentage
    /// of it (or any change of a zero or missing value) drafts a
    /// correction.
    pub correction_threshold_pct: f64,
    /// The Ed25519 signing key (PKCS#8 PEM); empty: `report_ed25519.pem`
    /// beside the store file. Generated on first use, mode 0600.
    pub key_file: String,
    /// The commune's report public key (Ed25519, 32 bytes in base64, as
    /// `commune-ioc report key` prints it): set in the province's copy of
    /// the site config, which verifies the commune's sealed reports with it
    /// (docs/PROVINCE.md §6). Unused on the commune box.
    pub public_key: String,
    /// Submission to the province (`[report.province]`).
    pub province: ReportProvince,
    /// Names for the DHIS2 export (`[report.dhis2]`).
    pub dhis2: ReportDhis2,
    /// The printed document's frame (`[report.document]`).
    pub document: ReportDocument,
}

impl Default for Report {
    fn default() -> Self {
        Report {
            regime: Regime::default(),
            code: "IOC_XA_THANG".into(),
            org_code: String::new(),
            parent: String::new(),
            grace_secs: 7200,
            auto_seal: true,
            auto_seal_kinds: vec!["month".into()],
            check_interval_secs: 60,
            correction_threshold_pct: 1.0,
            key_file: String::new(),
            public_key: String::new(),
            province: ReportProvince::default(),
            dhis2: ReportDhis2::default(),
            document: ReportDocument::default(),
        }
    }
}

/// Inactivity timeouts after which a silent device counts as offline.
/// Zero disables the timeout for that class.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeviceTimeouts {
    /// Cameras, seconds.
    pub camera_secs: i64,
    /// Loudspeaker clusters, seconds.
    pub speaker_secs: i64,
    /// Sensors, seconds.
    pub sensor_secs: i64,
}

impl Default for DeviceTimeouts {
    fn default() -> Self {
        DeviceTimeouts {
            camera_secs: 300,
            speaker_secs: 900,
            sensor_secs: 1800,
        }
    }
}

impl DeviceTimeouts {
    /// The timeout for a class, in seconds (0 = none).
    pub fn for_class(&self, class: DeviceClass) -> i64 {
        match class {
            DeviceClass::Camera => self.camera_secs,
            DeviceClass::Speaker => self.speaker_secs,
            DeviceClass::Sensor => self.sensor_secs,
        }
    }
}

/// A village (thôn/bản).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Village {
    /// ASCII slug.
    pub id: String,
    /// Name as the documents give it.
    pub name: String,
    /// True when the name is not in the source documents and must be filled
    /// in by the commune.
    #[serde(default)]
    pub placeholder: bool,
    /// Mobile dead zone (vùng lõm sóng).
    #[serde(default)]
    pub dead_zone: bool,
    /// Latitude (WGS84) for the map.
    #[serde(default)]
    pub lat: Option<f64>,
    /// Longitude (WGS84) for the map.
    #[serde(default)]
    pub lon: Option<f64>,
    /// The village head (trưởng thôn/bản), called when a broadcast cannot
    /// reach the village's speakers.
    #[serde(default)]
    pub head_name: Option<String>,
    /// The village head's phone number.
    #[serde(default)]
    pub head_phone: Option<String>,
    /// The ethnic language spoken there (e.g. `Hmông`, `Dao`, `Giáy`),
    /// when broadcasts should carry a text in it besides Vietnamese.
    #[serde(default)]
    pub language: Option<String>,
}

/// A camera.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Camera {
    /// Id used in topics.
    pub id: String,
    /// Display name.
    #[serde(default)]
    pub name: String,
    /// Village id.
    pub village: Option<String>,
    /// The camera's name in Frigate, when it is watched by Frigate.
    #[serde(default)]
    pub frigate_name: Option<String>,
}

/// A loudspeaker cluster.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Speaker {
    /// Id used in topics.
    pub id: String,
    /// Display name.
    #[serde(default)]
    pub name: String,
    /// Village id.
    pub village: Option<String>,
    /// Smart or FE.
    #[serde(default)]
    pub kind: SpeakerKind,
}

/// A sensor.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sensor {
    /// Id used in topics.
    pub id: String,
    /// Display name.
    #[serde(default)]
    pub name: String,
    /// Village id.
    pub village: Option<String>,
    /// What it measures, e.g. `rain`, `water_level`, `temperature`.
    #[serde(default)]
    pub kind: String,
}

/// The procedure (dossier) system.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Procedure {
    /// Display name of the system.
    pub name: String,
    /// Dossier events with a `village` not in the registry are kept at
    /// commune scope; set this to reject them as dead letters instead.
    pub reject_unknown_village: bool,
    /// How the one-stop software's national-portal sync maps to dossier
    /// events (`[procedure.dvcqg]`).
    pub dvcqg: Dvcqg,
}

impl Default for Procedure {
    fn default() -> Self {
        Procedure {
            name: "Hệ thống thông tin giải quyết thủ tục hành chính".into(),
            reject_unknown_village: false,
            dvcqg: Dvcqg::default(),
        }
    }
}

/// The codes of the national public-service portal's (Cổng DVCQG) dossier
/// sync, as this site's one-stop software uses them: each site keeps its
/// own status list, so it is configuration. Giving a table replaces its
/// default entirely.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Dvcqg {
    /// `TrangThaiHoSo` (and a progress object's `TrangThai`) → the stage
    /// of the dossier's lifecycle it means.
    pub status: BTreeMap<String, DossierStage>,
    /// `HinhThuc` → how the dossier was submitted.
    pub channel: BTreeMap<String, Channel>,
    /// `DanhSachLePhi[].HinhThucThu` → how the fee was collected.
    pub payment: BTreeMap<String, FeeKind>,
}

impl Default for Dvcqg {
    fn default() -> Self {
        use DossierStage::*;
        let status = [
            ("1", NotReceived),
            ("2", Received),
            ("3", NotReceived),
            ("4", Received),
            ("5", Received),
            ("6", Received),
            ("7", Stopped),
            ("8", Stopped),
            ("9", Resolved),
            ("10", Resolved),
        ];
        Dvcqg {
            status: status.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
            channel: [
                ("0", Channel::Direct),
                ("1", Channel::Online),
                ("2", Channel::Postal),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
            payment: [("1", FeeKind::Cash), ("2", FeeKind::Online)]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
        }
    }
}

/// Where a dossier stands, as far as the indicators are concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DossierStage {
    /// Submitted but not (or not yet) accepted: nothing counted.
    NotReceived,
    /// Received and being processed: `received` counts.
    Received,
    /// Received, then withdrawn or stopped without a result: `received`
    /// counts, `resolved` never will.
    Stopped,
    /// Resolved (result ready or returned): `received` and `resolved` count.
    Resolved,
}

impl DossierStage {
    /// The configuration and attribute form.
    pub fn as_str(self) -> &'static str {
        match self {
            DossierStage::NotReceived => "not_received",
            DossierStage::Received => "received",
            DossierStage::Stopped => "stopped",
            DossierStage::Resolved => "resolved",
        }
    }
}

/// How a dossier was submitted (the `channel` of a `received` event).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// Online, through a public-service portal.
    Online,
    /// In person at the one-stop desk.
    Direct,
    /// By post.
    Postal,
}

impl Channel {
    /// The attribute form.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Online => "online",
            Channel::Direct => "direct",
            Channel::Postal => "postal",
        }
    }
}

/// How a fee was collected (the `payment` of a `paid` event).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeeKind {
    /// Paid online.
    Online,
    /// Any other way (cash at the desk, transfer at the desk...).
    Cash,
}

/// What an indicator computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IndicatorKind {
    /// Number (or sum of a field) of matching events in the window.
    Count,
    /// 100 × numerator / denominator, each a count over the window.
    Ratio,
    /// Latest value of a numeric field.
    Latest,
    /// Percentage of registered devices of a class that are online now.
    Availability,
    /// Seconds since the last event from a source family.
    Freshness,
    /// Number of dead letters in the window.
    DeadLetters,
}

/// A filter on events as written: every given condition must hold.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct FilterDef {
    /// Producer family (`camera`, `speaker`, `procedure`, `sensor`).
    pub source: Option<String>,
    /// Event kind, e.g. `received`, or a list of kinds (any of).
    pub event: Option<OneOrMany>,
    /// Attribute equalities, e.g. `{ channel = "online" }`; a list means any of.
    #[serde(default, rename = "where")]
    pub conditions: BTreeMap<String, toml::Value>,
    /// Sum this numeric attribute instead of counting events.
    pub sum: Option<String>,
    /// Only these devices.
    #[serde(default)]
    pub devices: Vec<String>,
}

/// A string or a list of strings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum OneOrMany {
    /// One value.
    One(String),
    /// Any of these values.
    Many(Vec<String>),
}

impl OneOrMany {
    /// The values as a list.
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

/// An indicator definition.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndicatorDef {
    /// Stable id (a contract with the screen and reports).
    pub id: String,
    /// Vietnamese display name.
    pub name: String,
    /// What it computes.
    pub kind: IndicatorKind,
    /// Unit shown with the value (`%`, `hồ sơ`, `s`...).
    #[serde(default)]
    pub unit: String,
    /// Target, e.g. `"> 90"`, `">= 60"`, `"< 20"`.
    pub target: Option<String>,
    /// For `count` and `latest`.
    #[serde(rename = "match")]
    pub filter: Option<FilterDef>,
    /// For `ratio`.
    pub numerator: Option<FilterDef>,
    /// For `ratio`.
    pub denominator: Option<FilterDef>,
    /// For `latest`: the numeric attribute.
    pub field: Option<String>,
    /// For `availability`: `camera`, `speaker` or `sensor`.
    pub device_class: Option<String>,
    /// For `freshness`: the producer family.
    pub source: Option<String>,
}

/// The site in typed form, built once at load from the site sections:
/// everything a room that computes for one commune needs, and nothing of
/// the process. Next: alert rules, speaker coverage and the report
/// regime's details.
#[derive(Debug, Clone, Default)]
pub struct Site {
    /// The commune's id (the topic level) and name.
    pub commune: Option<Commune>,
    /// Village ids, in file order (the indicator scopes after `commune`).
    pub villages: Vec<String>,
    /// How monthly report periods are cut.
    pub regime: Regime,
    /// Registered villages and devices.
    pub registry: super::Registry,
    /// Indicators, in file order.
    pub indicators: Vec<Indicator>,
    /// Mapped sources, typed (`[[mapped]]`).
    pub mapped: Vec<super::mapped::Mapping>,
    /// Alert rules, grouping timers and the escalation ladder.
    pub alerts: super::alerts::AlertSettings,
}

/// An indicator, typed: what the engine compiles.
#[derive(Debug, Clone, PartialEq)]
pub struct Indicator {
    /// Stable id.
    pub id: String,
    /// Vietnamese display name.
    pub name: String,
    /// Unit shown with the value.
    pub unit: String,
    /// Target, parsed.
    pub target: Option<Target>,
    /// What it computes, with its typed parameters.
    pub measure: Measure,
}

impl Indicator {
    /// The kind, as the API reports it.
    pub fn kind(&self) -> IndicatorKind {
        match self.measure {
            Measure::Count(_) => IndicatorKind::Count,
            Measure::Ratio { .. } => IndicatorKind::Ratio,
            Measure::Latest { .. } => IndicatorKind::Latest,
            Measure::Availability(_) => IndicatorKind::Availability,
            Measure::Freshness(_) => IndicatorKind::Freshness,
            Measure::DeadLetters => IndicatorKind::DeadLetters,
        }
    }
}

/// What an indicator computes, with everything it needs.
#[derive(Debug, Clone, PartialEq)]
pub enum Measure {
    /// Matching events (or the sum of a field) in the window.
    Count(Filter),
    /// 100 × numerator / denominator; the numerator's events are a subset of
    /// the denominator's (checked at load).
    Ratio {
        /// Counted above the line.
        numerator: Filter,
        /// Counted below the line.
        denominator: Filter,
    },
    /// The newest value of `field` among matching events.
    Latest {
        /// The numeric attribute.
        field: String,
        /// Which events (an empty filter: all).
        filter: Filter,
    },
    /// Percentage of registered reporting devices of a class online now.
    Availability(DeviceClass),
    /// Seconds since the newest event from a family.
    Freshness(Source),
    /// Dead letters in the window.
    DeadLetters,
}

/// A filter, typed: every given condition must hold.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Filter {
    /// Producer family.
    pub source: Option<Source>,
    /// Event kinds (any of), each a kind the family's decoder produces;
    /// empty: any kind.
    pub events: Vec<String>,
    /// Attribute → accepted values (any of), each a string, number or
    /// boolean.
    pub conditions: BTreeMap<String, Vec<toml::Value>>,
    /// Sum this numeric attribute instead of counting events.
    pub sum: Option<String>,
    /// Only these registered devices; empty: any.
    pub devices: Vec<String>,
}

/// `[report.dhis2]`: how the DHIS2 `dataValueSets` export names things.
/// Codes or UIDs, as the province's DHIS2 expects them (push with
/// `idScheme=code` when they are codes). An indicator without a data
/// element, or a village without an org unit, is left out of that export.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ReportDhis2 {
    /// The data set (`dataSet`); empty: left out.
    pub data_set: String,
    /// The commune's org unit; empty: the snapshot's `org_unit.code`.
    pub org_unit: String,
    /// `attributeOptionCombo` of the set; empty: left out (the default).
    pub attribute_option_combo: String,
    /// `categoryOptionCombo` of every value; empty: left out (the default).
    pub category_option_combo: String,
    /// Indicator id → data element.
    pub data_elements: BTreeMap<String, String>,
    /// Village id → org unit (villages without one are left out).
    pub village_org_units: BTreeMap<String, String>,
}

/// `[report.document]`: the administrative document (Nghị định 30/2020)
/// the workbook and the printable page lay out: issuing body, number,
/// place, recipient and signer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ReportDocument {
    /// The issuing body, one line per `\n`; empty: `ỦY BAN NHÂN DÂN` and
    /// the commune's name in capitals.
    pub authority: String,
    /// The document's symbol after `Số: …/` (e.g. `BC-UBND`).
    pub symbol: String,
    /// The place of the date line (`Bình Lư, ngày … tháng … năm …`);
    /// empty: the commune's name without `Xã `.
    pub place: String,
    /// `Kính gửi: …`; empty: no such line.
    pub recipient: String,
    /// The signing capacity above the title (e.g. `TM. ỦY BAN NHÂN DÂN`);
    /// empty: none.
    pub signer_capacity: String,
    /// The signer's title (e.g. `CHỦ TỊCH`).
    pub signer_title: String,
    /// The signer's name; empty: left blank to write by hand.
    pub signer_name: String,
}

impl Default for ReportDocument {
    fn default() -> Self {
        ReportDocument {
            authority: String::new(),
            symbol: "BC-UBND".into(),
            place: String::new(),
            recipient: String::new(),
            signer_capacity: "TM. ỦY BAN NHÂN DÂN".into(),
            signer_title: "CHỦ TỊCH".into(),
            signer_name: String::new(),
        }
    }
}

/// `[report.province]`: submitting sealed reports to the province through
/// the durable delivery outbox.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ReportProvince {
    /// The `[delivery.targets.NAME]` to submit to; empty: submission is
    /// off.
    pub target: String,
    /// Submit each sealed revision (and each correction) by itself, as
    /// soon as it is sealed.
    pub auto_submit: bool,
    /// What is posted: `snapshot` (the sealed document, byte for byte) or
    /// `dhis2` (a `dataValueSet`).
    pub format: ProvinceFormat,
}

/// The body of a submission.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ProvinceFormat {
    /// The sealed document (`application/json`), signed.
    #[default]
    Snapshot,
    /// DHIS2 `dataValueSets` JSON.
    Dhis2,
}

#[cfg(test)]
mod dvcqg_tests {
    use super::*;

    const BASE: &str = "[commune]\nid = \"x\"\nname = \"X\"\n";

    #[test]
    fn the_default_codes_and_a_site_of_its_own() {
        let c = crate::config::load_str(BASE, "t.toml", &[]).unwrap();
        let d = &c.procedure.dvcqg;
        assert_eq!(d.status["9"], DossierStage::Resolved);
        assert_eq!(d.channel["1"], Channel::Online);
        assert_eq!(d.payment["2"], FeeKind::Online);
        // A table given replaces its default entirely.
        let text = format!(
            "{BASE}[procedure.dvcqg.status]\n\"DA_TIEP_NHAN\" = \"received\"\n\"DA_TRA\" = \"resolved\"\n"
        );
        let c = crate::config::load_str(&text, "t.toml", &[]).unwrap();
        let d = &c.procedure.dvcqg;
        assert_eq!(d.status.len(), 2);
        assert_eq!(d.status["DA_TRA"], DossierStage::Resolved);
        assert_eq!(d.channel, Dvcqg::default().channel);
    }

    #[test]
    fn check_config_names_the_mistakes_in_the_code_tables() {
        let text = format!(
            "{BASE}[procedure.dvcqg]\nchannel = {{}}\n[procedure.dvcqg.status]\n\"1\" = \"received\"\n\" 2\" = \"received\"\n"
        );
        let err = crate::config::load_str(&text, "t.toml", &[])
            .unwrap_err()
            .to_string();
        for want in [
            "procedure.dvcqg.status.\" 2\"",
            "không có mã trạng thái nào là `resolved`",
            "procedure.dvcqg.channel",
        ] {
            assert!(err.contains(want), "{want} missing in:\n{err}");
        }
        // An unknown stage is refused when the file is read.
        let text = format!("{BASE}[procedure.dvcqg.status]\n\"1\" = \"done\"\n");
        let err = crate::config::load_str(&text, "t.toml", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("done"), "{err}");
    }
}
