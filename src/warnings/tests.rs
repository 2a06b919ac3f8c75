//! Unit tests of the validator, the profile and the store.

use chrono::{TimeZone, Utc};

use super::cap::{self, CapError};
use super::store::{self, Bulletin};
use super::{Checker, MatchWay, WarningState};
use crate::config::Config;
use crate::vocab::{Hazard, LevelError};

const MAX: usize = 256 * 1024;

const BASE: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">
  <identifier>VN-TEST-1</identifier>
  <sender>kttv@example.vn</sender>
  <sent>2026-07-14T09:30:00+07:00</sent>
  <status>Actual</status>
  <msgType>Alert</msgType>
  <scope>Public</scope>
  <info>
    <language>vi-VN</language>
    <category>Met</category>
    <event>Lũ quét</event>
    <urgency>Expected</urgency>
    <severity>Moderate</severity>
    <certainty>Likely</certainty>
    <parameter><valueName>VN-CAP-DO-RUI-RO</valueName><value>2</value></parameter>
    <area>
      <areaDesc>Bản Tà Pa</areaDesc>
      <polygon>22.28,103.18 22.32,103.18 22.32,103.22 22.28,103.22 22.28,103.18</polygon>
      <circle>22.35,103.26 1.5</circle>
    </area>
  </info>
</alert>"#;

fn config() -> Config {
    crate::config::load_str(
        r#"
[commune]
id = "binh-lu"
name = "Xã Bình Lư"
[[village]]
id = "ta-pa"
name = "Bản Tà Pa"
lat = 22.30
lon = 103.20
[[village]]
id = "phieng-lu"
name = "Bản Phiêng Lư"
lat = 22.352
lon = 103.262
[[village]]
id = "nam-so"
name = "Bản Nậm Sỏ"
lat = 22.40
lon = 103.30
[[village]]
id = "co-muong"
name = "Bản Cò Mương"
[warnings]
[[warnings.geocode]]
name = "VN-MA-DVHC"
value = "03421"
villages = ["nam-so"]
[warnings.hazard_phrases]
"lũ ống" = "flash_flood"
"#,
        "test",
        &[],
    )
    .expect("config")
}

#[test]
fn a_valid_bulletin_parses_with_trimmed_text() {
    let a = cap::parse(BASE.as_bytes(), MAX).unwrap();
    assert_eq!(
        a.id(),
        "kttv@example.vn|VN-TEST-1|2026-07-14T09:30:00+07:00"
    );
    assert_eq!(a.infos[0].areas[0].polygons[0].len(), 5);
    assert_eq!(a.infos[0].areas[0].circles[0].radius_km, 1.5);
    // Leading newlines inside a polygon are trimmed (google/cap-library#43).
    let spaced = BASE.replace("<polygon>22.28", "<polygon>\n   22.28");
    assert!(cap::parse(spaced.as_bytes(), MAX).is_ok());
}

#[test]
fn the_specification_examples_are_valid() {
    for f in [
        "spec-a1-homeland-security.xml",
        "spec-a2-severe-thunderstorm.xml",
        "spec-a3-earthquake-update.xml",
        "spec-a4-amber-alert.xml",
    ] {
        let path = format!("{}/tests/fixtures/cap/{f}", env!("CARGO_MANIFEST_DIR"));
        let bytes = std::fs::read(&path).unwrap();
        let a = cap::parse(&bytes, MAX).unwrap_or_else(|e| panic!("{f}: {e}"));
        assert!(!a.infos.is_empty(), "{f}");
    }
}

/// Each rule, broken once: (what, mutation of BASE, rule code).
#[test]
fn every_rule_is_refused_with_its_reason() {
    let cases: &[(&str, &str, &str, &str)] = &[
        (
            "missing identifier",
            "<identifier>VN-TEST-1</identifier>",
            "",
            "required_element",
        ),
        (
            "missing sender",
            "<sender>kttv@example.vn</sender>",
            "",
            "required_element",
        ),
        (
            "missing sent",
            "<sent>2026-07-14T09:30:00+07:00</sent>",
            "",
            "required_element",
        ),
        (
            "missing status",
            "<status>Actual</status>",
            "",
            "required_element",
        ),
        (
            "missing msgType",
            "<msgType>Alert</msgType>",
            "",
            "required_element",
        ),
        (
            "missing scope",
            "<scope>Public</scope>",
            "",
            "required_element",
        ),
        (
            "missing category",
            "<category>Met</category>",
            "",
            "required_element",
        ),
        (
            "missing event",
            "<event>Lũ quét</event>",
            "",
            "required_element",
        ),
        (
            "missing urgency",
            "<urgency>Expected</urgency>",
            "",
            "required_element",
        ),
        (
            "missing severity",
            "<severity>Moderate</severity>",
            "",
            "required_element",
        ),
        (
            "missing certainty",
            "<certainty>Likely</certainty>",
            "",
            "required_element",
        ),
        (
            "missing areaDesc",
            "<areaDesc>Bản Tà Pa</areaDesc>",
            "",
            "required_element",
        ),
        (
            "two senders",
            "<sender>kttv@example.vn</sender>",
            "<sender>a@b</sender><sender>c@d</sender>",
            "cardinality",
        ),
        (
            "two events",
            "<event>Lũ quét</event>",
            "<event>a</event><event>b</event>",
            "cardinality",
        ),
        (
            "empty identifier",
            "<identifier>VN-TEST-1</identifier>",
            "<identifier>  </identifier>",
            "empty_element",
        ),
        (
            "unknown element",
            "<scope>Public</scope>",
            "<scope>Public</scope><colour>red</colour>",
            "unexpected_element",
        ),
        (
            "status lower case",
            "<status>Actual</status>",
            "<status>actual</status>",
            "enumeration",
        ),
        (
            "msgType",
            "<msgType>Alert</msgType>",
            "<msgType>Warning</msgType>",
            "enumeration",
        ),
        (
            "scope",
            "<scope>Public</scope>",
            "<scope>Everyone</scope>",
            "enumeration",
        ),
        (
            "category",
            "<category>Met</category>",
            "<category>Weather</category>",
            "enumeration",
        ),
        (
            "responseType",
            "<category>Met</category>",
            "<category>Met</category><responseType>Run</responseType>",
            "enumeration",
        ),
        (
            "urgency",
            "<urgency>Expected</urgency>",
            "<urgency>Soon</urgency>",
            "enumeration",
        ),
        (
            "severity",
            "<severity>Moderate</severity>",
            "<severity>High</severity>",
            "enumeration",
        ),
        (
            "certainty",
            "<certainty>Likely</certainty>",
            "<certainty>Sure</certainty>",
            "enumeration",
        ),
        (
            "Z time",
            "2026-07-14T09:30:00+07:00</sent>",
            "2026-07-14T02:30:00Z</sent>",
            "time_format",
        ),
        (
            "no offset",
            "2026-07-14T09:30:00+07:00</sent>",
            "2026-07-14T09:30:00</sent>",
            "time_format",
        ),
        (
            "fraction",
            "2026-07-14T09:30:00+07:00</sent>",
            "2026-07-14T09:30:00.5+07:00</sent>",
            "time_format",
        ),
        (
            "bad date",
            "2026-07-14T09:30:00+07:00</sent>",
            "2026-02-30T09:30:00+07:00</sent>",
            "time_format",
        ),
        (
            "expires Z",
            "<parameter>",
            "<expires>2026-07-14T12:00:00Z</expires><parameter>",
            "time_format",
        ),
        (
            "space in identifier",
            "VN-TEST-1",
            "VN TEST 1",
            "id_characters",
        ),
        (
            "comma in sender",
            "kttv@example.vn",
            "kttv,example.vn",
            "id_characters",
        ),
        (
            "ampersand in identifier",
            "VN-TEST-1",
            "VN&amp;1",
            "id_characters",
        ),
        (
            "lt in sender",
            "kttv@example.vn",
            "kttv&lt;x",
            "id_characters",
        ),
        (
            "restricted without restriction",
            "<scope>Public</scope>",
            "<scope>Restricted</scope>",
            "scope_requires",
        ),
        (
            "private without addresses",
            "<scope>Public</scope>",
            "<scope>Private</scope>",
            "scope_requires",
        ),
        (
            "update without references",
            "<msgType>Alert</msgType>",
            "<msgType>Update</msgType>",
            "references_required",
        ),
        (
            "references pair",
            "<scope>Public</scope>",
            "<scope>Public</scope><references>a@b,ID-1</references>",
            "references_syntax",
        ),
        (
            "references time",
            "<scope>Public</scope>",
            "<scope>Public</scope><references>a@b,ID-1,2026-07-14T09:30:00Z</references>",
            "references_syntax",
        ),
        (
            "open polygon",
            "22.28,103.22 22.28,103.18</polygon>",
            "22.28,103.22 22.29,103.18</polygon>",
            "polygon",
        ),
        (
            "short polygon",
            "22.28,103.18 22.32,103.18 22.32,103.22 22.28,103.22 22.28,103.18",
            "22.28,103.18 22.32,103.18 22.28,103.18",
            "polygon",
        ),
        (
            "latitude out of range",
            "22.32,103.18 22.32,103.22",
            "92.32,103.18 22.32,103.22",
            "polygon",
        ),
        (
            "longitude out of range",
            "22.32,103.18 22.32,103.22",
            "22.32,193.18 22.32,103.22",
            "polygon",
        ),
        (
            "circle without radius",
            "22.35,103.26 1.5",
            "22.35,103.26",
            "circle",
        ),
        (
            "circle negative radius",
            "22.35,103.26 1.5",
            "22.35,103.26 -1",
            "circle",
        ),
        (
            "circle centre",
            "22.35,103.26 1.5",
            "22.35;103.26 1.5",
            "circle",
        ),
        (
            "geocode without value",
            "<areaDesc>Bản Tà Pa</areaDesc>",
            "<areaDesc>Bản Tà Pa</areaDesc><geocode><valueName>X</valueName></geocode>",
            "required_element",
        ),
        (
            "level not a number",
            "<value>2</value>",
            "<value>hai</value>",
            "risk_level_value",
        ),
        (
            "level 6",
            "<value>2</value>",
            "<value>6</value>",
            "risk_level_value",
        ),
        (
            "level out of the hazard's range",
            "<value>2</value>",
            "<value>4</value>",
            "risk_level_range",
        ),
        (
            "other namespace",
            "urn:oasis:names:tc:emergency:cap:1.2",
            "urn:oasis:names:tc:emergency:cap:1.1",
            "not_cap_1_2",
        ),
        (
            "no namespace",
            " xmlns=\"urn:oasis:names:tc:emergency:cap:1.2\"",
            "",
            "not_cap_1_2",
        ),
        ("not well formed", "</alert>", "</alrt>", "xml"),
        (
            "a DTD",
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>",
            "<?xml version=\"1.0\"?><!DOCTYPE alert [<!ENTITY x \"y\">]>",
            "xml",
        ),
    ];
    let checker = Checker::new(&config());
    for (what, from, to, rule) in cases {
        assert!(BASE.contains(from), "{what}: `{from}` not in the base");
        let doc = BASE.replacen(from, to, 1);
        let err = checker
            .check(doc.as_bytes())
            .err()
            .unwrap_or_else(|| panic!("{what}: accepted"));
        assert_eq!(err.rule(), *rule, "{what}: {err}");
        assert!(!err.to_string().is_empty() && !err.message_vi().is_empty());
    }
}

#[test]
fn size_is_guarded_and_entity_bombs_are_stopped() {
    let big = format!("{BASE}{}", " ".repeat(MAX));
    assert!(matches!(
        cap::parse(big.as_bytes(), MAX),
        Err(CapError::TooLarge { .. })
    ));
    let lol = r#"<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2"><identifier>&lol9;</identifier></alert>"#;
    let err = cap::parse(lol.as_bytes(), MAX).unwrap_err();
    assert_eq!(err.rule(), "xml", "{err}");
    // Even a parser that allowed the DTD would stop it (roxmltree's own
    // expansion limits).
    let opts = roxmltree::ParsingOptions {
        allow_dtd: true,
        nodes_limit: 100_000,
    };
    assert!(roxmltree::Document::parse_with_options(lol, opts).is_err());
}

#[test]
fn level_out_of_range_names_the_rule_in_vietnamese() {
    let doc = BASE.replace("<value>2</value>", "<value>4</value>");
    let err = Checker::new(&config()).check(doc.as_bytes()).unwrap_err();
    assert_eq!(
        err,
        CapError::Level(LevelError::OutOfRange {
            hazard: Hazard::FlashFlood,
            level: 4,
            lo: 1,
            hi: 3
        })
    );
    assert!(err.message_vi().contains("chỉ từ cấp 1 đến cấp 3"));
}

#[test]
fn hazard_from_event_code_or_text_and_level_never_from_severity() {
    let checker = Checker::new(&config());
    let (_, p) = checker.check(BASE.as_bytes()).unwrap();
    assert_eq!(p.hazard, Some(Hazard::FlashFlood));
    assert_eq!(p.level.map(|l| l.get()), Some(2));
    // An eventCode wins over the text.
    let coded = BASE.replace(
        "<parameter>",
        "<eventCode><valueName>VN-QD18-HAZARD</valueName><value>SAT_LO_DAT</value></eventCode><parameter>",
    );
    assert_eq!(
        checker.check(coded.as_bytes()).unwrap().1.hazard,
        Some(Hazard::Landslide)
    );
    // A configured phrase.
    let phrase = BASE.replace("<event>Lũ quét</event>", "<event>Cảnh báo lũ ống</event>");
    assert_eq!(
        checker.check(phrase.as_bytes()).unwrap().1.hazard,
        Some(Hazard::FlashFlood)
    );
    // The earliest phrase, the longest there.
    let p = super::Profile::new(&config());
    assert_eq!(
        p.hazard_in_text("Lũ quét, sạt lở đất"),
        Some(Hazard::FlashFlood)
    );
    assert_eq!(
        p.hazard_in_text("Cảnh báo mưa lớn, lũ quét"),
        Some(Hazard::HeavyRain)
    );
    assert_eq!(p.hazard_in_text("RÉT HẠI"), Some(Hazard::ColdSpell));
    assert_eq!(p.hazard_in_text("Severe thunderstorm"), None);
    // No level parameter: no level, whatever the severity.
    let none = BASE.replace(
        "<parameter><valueName>VN-CAP-DO-RUI-RO</valueName><value>2</value></parameter>",
        "",
    );
    let none = none.replace("Moderate", "Extreme");
    assert_eq!(checker.check(none.as_bytes()).unwrap().1.level, None);
}

#[test]
fn villages_match_by_polygon_circle_geocode_and_name() {
    let checker = Checker::new(&config());
    let doc = BASE.replace(
        "<areaDesc>Bản Tà Pa</areaDesc>",
        "<areaDesc>ban CO MUONG</areaDesc><geocode><valueName>VN-MA-DVHC</valueName><value>03421</value></geocode>",
    );
    let (_, p) = checker.check(doc.as_bytes()).unwrap();
    let ways: Vec<(&str, Vec<MatchWay>)> = p
        .villages
        .iter()
        .map(|v| (v.village.as_str(), v.ways.clone()))
        .collect();
    assert_eq!(
        ways,
        vec![
            ("ta-pa", vec![MatchWay::Polygon]),
            ("phieng-lu", vec![MatchWay::Circle]),
            ("nam-so", vec![MatchWay::Geocode]),
            ("co-muong", vec![MatchWay::AreaDesc]),
        ]
    );
}

fn bulletin(checker: &Checker, xml: &str) -> Bulletin {
    checker
        .bulletin(xml.as_bytes(), "mqtt".into(), Utc::now())
        .unwrap()
}

#[test]
fn update_cancel_duplicates_unknown_references_and_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let conn =
        crate::store::open(&dir.path().join("j.db"), crate::config::SyncMode::Normal).unwrap();
    let checker = Checker::new(&config());
    let now = Utc::now();
    let first = bulletin(&checker, BASE);
    let a = store::apply(&conn, std::slice::from_ref(&first), now).unwrap();
    assert_eq!(a.changed.len(), 1);
    assert_eq!(a.changed[0].state, WarningState::Active);
    let first_id = a.changed[0].id.clone();
    // Delivered again: a duplicate, nothing changes.
    let again = store::apply(&conn, &[first], now).unwrap();
    assert_eq!((again.duplicates, again.changed.len()), (1, 0));

    let update = BASE
        .replace("VN-TEST-1", "VN-TEST-2")
        .replace("09:30:00+07:00", "10:30:00+07:00")
        .replace("<msgType>Alert</msgType>", "<msgType>Update</msgType>")
        .replace(
            "<scope>Public</scope>",
            "<scope>Public</scope><references>kttv@example.vn,VN-TEST-1,2026-07-14T09:30:00+07:00</references>",
        )
        .replace("<value>2</value>", "<value>3</value>");
    let u = store::apply(&conn, &[bulletin(&checker, &update)], now).unwrap();
    let states: Vec<_> = u.changed.iter().map(|v| (v.id.as_str(), v.state)).collect();
    assert_eq!(states[0], (first_id.as_str(), WarningState::Updated));
    assert_eq!(states[1].1, WarningState::Active);
    assert_eq!(u.changed[1].supersedes.as_deref(), Some(first_id.as_str()));
    assert_eq!(u.changed[1].level.map(|l| l.get()), Some(3));

    let cancel = BASE
        .replace("VN-TEST-1", "VN-TEST-3")
        .replace("09:30:00+07:00", "11:30:00+07:00")
        .replace("<msgType>Alert</msgType>", "<msgType>Cancel</msgType>")
        .replace(
            "<scope>Public</scope>",
            "<scope>Public</scope><references>kttv@example.vn,VN-TEST-2,2026-07-14T10:30:00+07:00</references>",
        );
    let c = store::apply(&conn, &[bulletin(&checker, &cancel)], now).unwrap();
    assert!(c.changed.iter().all(|v| v.state == WarningState::Cancelled));
    assert_eq!(c.changed.len(), 2);
    let d = store::detail(&conn, &first_id, now).unwrap().unwrap();
    assert_eq!(d.chain.len(), 3, "the whole chain from the first");
    assert!(d.xml.contains("VN-TEST-1"));

    // An Update of a bulletin never stored: kept and flagged; when that
    // bulletin arrives later, it is already updated.
    let orphan = update
        .replace("VN-TEST-2", "VN-TEST-5")
        .replace("VN-TEST-1,", "VN-TEST-4,");
    let o = store::apply(&conn, &[bulletin(&checker, &orphan)], now).unwrap();
    let oid = o.changed[0].id.clone();
    let l = store::detail(&conn, &oid, now).unwrap().unwrap();
    assert_eq!(
        l.listed.unknown_refs,
        vec!["kttv@example.vn|VN-TEST-4|2026-07-14T09:30:00+07:00".to_string()]
    );
    let late = BASE.replace("VN-TEST-1", "VN-TEST-4");
    let late = store::apply(&conn, &[bulletin(&checker, &late)], now).unwrap();
    assert_eq!(late.changed[0].state, WarningState::Updated);

    // Expiry: on read with the clock, then by the sweep.
    let soon = BASE.replace("VN-TEST-1", "VN-TEST-6").replace(
        "<parameter>",
        "<expires>2026-07-14T12:00:00+07:00</expires><parameter>",
    );
    let before = Utc.with_ymd_and_hms(2026, 7, 14, 4, 0, 0).unwrap();
    let after = Utc.with_ymd_and_hms(2026, 7, 14, 5, 0, 1).unwrap();
    let s = store::apply(&conn, &[bulletin(&checker, &soon)], before).unwrap();
    let sid = s.changed[0].id.clone();
    assert_eq!(s.changed[0].state, WarningState::Active);
    assert_eq!(
        store::view(&conn, &sid, after).unwrap().unwrap().state,
        WarningState::Expired
    );
    let swept = store::expire(&conn, after).unwrap();
    assert!(swept
        .iter()
        .any(|v| v.id == sid && v.state == WarningState::Expired));
    assert!(store::expire(&conn, after).unwrap().is_empty(), "once");
    // The expiry is a `warning` journal entry (once), the province's copy.
    let states: Vec<String> = conn
        .prepare(
            "SELECT json_extract(body, '$.state') FROM journal_seq \
             WHERE kind = 'warning' AND json_extract(body, '$.id') = ?1 ORDER BY seq",
        )
        .unwrap()
        .query_map([&sid], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        states.last().map(String::as_str),
        Some("expired"),
        "{states:?}"
    );
    assert_eq!(states.iter().filter(|s| *s == "expired").count(), 1);
}

#[test]
fn not_for_the_commune_and_not_actual() {
    let checker = Checker::new(&config());
    let dir = tempfile::tempdir().unwrap();
    let conn =
        crate::store::open(&dir.path().join("j.db"), crate::config::SyncMode::Normal).unwrap();
    let far = BASE
        .replace(
            "<areaDesc>Bản Tà Pa</areaDesc>",
            "<areaDesc>Huyện khác</areaDesc>",
        )
        .replace("<circle>22.35,103.26 1.5</circle>", "")
        .replace(
            "22.28,103.18 22.32,103.18 22.32,103.22 22.28,103.22 22.28,103.18",
            "21.0,105.0 21.1,105.0 21.1,105.1 21.0,105.0",
        );
    let a = store::apply(&conn, &[bulletin(&checker, &far)], Utc::now()).unwrap();
    assert_eq!(a.changed[0].state, WarningState::NotForCommune);
    assert!(a.changed[0].villages.is_empty());
    let test = BASE
        .replace("<status>Actual</status>", "<status>Test</status>")
        .replace("VN-TEST-1", "VN-TEST-9");
    let t = store::apply(&conn, &[bulletin(&checker, &test)], Utc::now()).unwrap();
    assert_eq!(t.changed[0].state, WarningState::NotForCommune);
}
