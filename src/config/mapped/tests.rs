use super::*;

fn defs(text: &str) -> Vec<MappedDef> {
    #[derive(Deserialize)]
    struct F {
        mapped: Vec<MappedDef>,
    }
    toml::from_str::<F>(text).unwrap().mapped
}

fn sensors(id: &str) -> bool {
    ["leak-01", "temp-01", "water-01"].contains(&id)
}

#[test]
fn every_preset_parses_and_compiles() {
    for (name, _) in PRESETS {
        let mut d = MappedDef {
            include: Some(name.to_string()),
            ..MappedDef::default()
        };
        if *name == "thingsboard-device" {
            d.device = Some("water-01".into());
        }
        let (m, problems) = compile(&[d], &sensors);
        assert!(problems.is_empty(), "{name}: {problems:?}");
        assert_eq!(m[0].id, *name);
        assert!(!m[0].rules.is_empty(), "{name}");
    }
}

#[test]
fn zigbee2mqtt_preset_subscribes_one_level_per_device() {
    let (m, p) = compile(
        &defs("[[mapped]]\nid = \"z2m\"\ninclude = \"zigbee2mqtt\"\n[mapped.devices]\n\"Wassermelder Küche\" = \"leak-01\"\n"),
        &sensors,
    );
    assert!(p.is_empty(), "{p:?}");
    assert_eq!(
        m[0].filters(),
        vec![
            "zigbee2mqtt/+".to_string(),
            "zigbee2mqtt/+/availability".to_string()
        ]
    );
    assert_eq!(m[0].rules[0].name, "z2m/telemetry");
    assert_eq!(m[0].devices["Wassermelder Küche"], "leak-01");
}

#[test]
fn a_site_rule_extends_the_preset_rule_of_its_name() {
    let (m, p) = compile(
        &defs(
            r#"
[[mapped]]
id = "z2m"
include = "zigbee2mqtt"
[[mapped.rule]]
name = "telemetry"
[[mapped.rule.reading]]
path = "voltage"
metric = "battery_v"
scale = 0.001
"#,
        ),
        &sensors,
    );
    assert!(p.is_empty(), "{p:?}");
    assert_eq!(m[0].rules.len(), 1);
    let r = m[0].rules[0].readings.last().unwrap();
    assert_eq!((r.metric.as_str(), r.scale), ("battery_v", 0.001));
}

#[test]
fn problems_name_the_key_and_say_why() {
    let (_, p) = compile(
        &defs(
            r#"
[[mapped]]
id = "bad"
zone = "Mars/Olympus"
[mapped.devices]
"x" = "nope"
[[mapped.rule]]
name = "a"
topic = "ioc/binh-lu/sensor/{device}/telemetry"
[[mapped.rule.reading]]
path = "t"
metric = "t"
[[mapped.rule]]
name = "b"
topic = "site/{node}"
[[mapped.rule.reading]]
path = "a..b"
metric = "Temperature"
[[mapped.rule]]
name = "c"
topic = "other/{device}"
[[mapped.rule.reading]]
path = "x"
metric = "{room}_c"
scale = 0.0
[[mapped.availability]]
topic = "other/{device}/lwt"
online = ["up"]
[[mapped]]
id = "bad"
include = "nosuch"
"#,
        ),
        &sensors,
    );
    let has = |key: &str, words: &str| {
        p.iter()
            .any(|(k, r)| k == key && r.contains(words))
            .then_some(())
            .ok_or_else(|| format!("no `{key}` with `{words}` in {p:#?}"))
    };
    has("mapped[bad].zone", "Mars/Olympus").unwrap();
    has("mapped[bad].devices.x", "nope").unwrap();
    has("mapped[bad].rule[0].topic", "ioc/").unwrap();
    has("mapped[bad].rule[1].device", "{device}").unwrap();
    has("mapped[bad].rule[1].reading[0].path", "a..b").unwrap();
    has("mapped[bad].rule[2].reading[0].metric", "{room}").unwrap();
    has("mapped[bad].rule[2].reading[0].scale", "khác 0").unwrap();
    has("mapped[bad].availability[0].online", "offline").unwrap();
    has("mapped[bad].id", "trùng").unwrap();
    has("mapped[bad].include", "nosuch").unwrap();
}

#[test]
fn the_same_topic_in_two_rules_is_refused() {
    let (_, p) = compile(
        &defs(
            r#"
[[mapped]]
id = "a"
include = "esphome"
[[mapped]]
id = "b"
[[mapped.availability]]
topic = "{node}/status"
device = "{node}"
online = ["online"]
offline = ["offline"]
"#,
        ),
        &sensors,
    );
    assert!(p.iter().any(|(_, r)| r.contains("+/status")), "{p:?}");
}
