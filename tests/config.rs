//! Config loading: the shipped files validate, env overrides apply, and every
//! error names the file (with line and column), the key and the reason.

use std::process::Command;

use commune_ioc::config::{load_str, ConfigError};

const MINIMAL: &str = r#"
[commune]
id = "binh-lu"
name = "Xã Bình Lư"
"#;

fn issues(text: &str, env: &[(&str, &str)]) -> Vec<String> {
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    match load_str(text, "test.toml", &env) {
        Ok(_) => Vec::new(),
        Err(ConfigError::Invalid(list)) => list.iter().map(|i| i.to_string()).collect(),
        Err(e) => vec![e.to_string()],
    }
}

#[test]
fn shipped_configs_validate_with_the_binary() {
    let root = env!("CARGO_MANIFEST_DIR");
    for file in [
        "config/commune.toml",
        "config/examples/binh-lu.toml",
        "config/examples/lung-phinh.toml",
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_commune-ioc"))
            .current_dir(root)
            .args(["check-config", file])
            .env_remove("IOC__MQTT__PORT")
            .output()
            .expect("run check-config");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{file}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains("OK"), "{stdout}");
    }
    let lp = commune_ioc::config::load(std::path::Path::new(&format!(
        "{root}/config/examples/lung-phinh.toml"
    )))
    .expect("Lùng Phình loads");
    assert_eq!(lp.speakers.len(), 53, "27 smart + 26 FE clusters");
    assert_eq!(lp.villages.len(), 20);
    assert_eq!(lp.villages.iter().filter(|v| v.dead_zone).count(), 8);
    let bl = commune_ioc::config::load(std::path::Path::new(&format!(
        "{root}/config/examples/binh-lu.toml"
    )))
    .expect("Bình Lư loads");
    assert_eq!(bl.villages.len(), 35);
    assert_eq!(bl.cameras.len(), 16);
    for id in [
        "dossier_online_ratio",
        "dossier_direct_ratio",
        "dossier_on_time_ratio",
        "dossier_online_payment_ratio",
        "camera_online",
        "speaker_online",
        "broadcast_sessions",
        "people_detected",
        "dead_letters",
    ] {
        assert!(
            bl.indicators.iter().any(|i| i.id == id),
            "binh-lu lacks {id}"
        );
        assert!(
            lp.indicators.iter().any(|i| i.id == id),
            "lung-phinh lacks {id}"
        );
    }
}

#[test]
fn env_overrides_apply_and_numeric_strings_stay_strings() {
    let env: Vec<(String, String)> = [
        ("IOC__MQTT__PORT", "1884"),
        ("IOC__HTTP__LISTEN", "127.0.0.1:0"),
        ("IOC__STORE__PATH", "/var/lib/commune-ioc"),
        ("IOC__MQTT__USERNAME", "ioc"),
        ("IOC__MQTT__PASSWORD", "123456"),
        ("IOC__MQTT__EMBEDDED", "false"),
        ("IOC__HTTP__DASHBOARD_DIR", "2026"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let c = load_str(MINIMAL, "test.toml", &env).expect("valid with overrides");
    assert_eq!(c.mqtt.port, 1884);
    assert_eq!(c.http.listen, "127.0.0.1:0");
    assert_eq!(
        c.store.path,
        std::path::PathBuf::from("/var/lib/commune-ioc")
    );
    assert_eq!(c.mqtt.password.as_ref().map(|p| p.expose()), Some("123456"));
    assert_eq!(c.http.dashboard_dir, Some(std::path::PathBuf::from("2026")));
    let got = issues(MINIMAL, &[("IOC__MQTT__PORT", "70000")]);
    assert!(
        got[0].contains("70000") && !got[0].contains("string"),
        "{got:?}"
    );
}

#[test]
fn syntax_and_type_errors_name_file_line_key_and_reason() {
    let text = "[commune]\nid = \"binh-lu\"\nname = \"Xã Bình Lư\"\n[mqtt]\nport = \"many\"\n";
    let got = issues(text, &[]);
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].starts_with("test.toml:5:8: `mqtt.port`:"), "{got:?}");
    assert!(got[0].contains("expected u16"), "{got:?}");

    let got = issues(
        "[commune]\nid = \"x\"\nname = \"X\"\n[mqtt]\nprot = 1\n",
        &[],
    );
    assert!(
        got[0].contains("test.toml:5:1") && got[0].contains("unknown field `prot`"),
        "{got:?}"
    );

    let got = issues("[commune\nid=1", &[]);
    assert!(got[0].starts_with("test.toml:1:"), "{got:?}");

    let got = issues(MINIMAL, &[("IOC__MQTT__PORT", "abc")]);
    assert_eq!(
        got,
        vec!["env IOC__MQTT__PORT: `mqtt.port`: invalid type: string \"abc\", expected u16"]
    );
    let got = issues(MINIMAL, &[("IOC__COMMUNE__ID__X", "1")]);
    assert!(
        got[0].contains("env IOC__COMMUNE__ID__X") && got[0].contains("không phải một mục"),
        "{got:?}"
    );
}

#[test]
fn every_semantic_problem_is_reported_at_once() {
    let text = r#"
[commune]
id = "Bình Lư"
name = ""
[http]
listen = "localhost"
[mqtt]
port = 0
backoff_initial_ms = 50000
[[village]]
id = "a"
name = "A"
[[village]]
id = "a"
name = "A again"
[[camera]]
id = "cam-1"
village = "nowhere"
[[camera]]
id = "cam-1"
[[indicator]]
id = "r"
name = "Ratio"
kind = "ratio"
target = "about 90"
numerator = { source = "weather" }
[[indicator]]
id = "l"
name = "Latest"
kind = "latest"
[[indicator]]
id = "a"
name = "Avail"
kind = "availability"
device_class = "drone"
"#;
    let got = issues(text, &[]);
    let want = [
        "`commune.id`",
        "`commune.name`",
        "`http.listen`",
        "`mqtt.port`",
        "`mqtt.backoff_initial_ms`",
        "`village[a].id`: mã thôn/bản bị trùng",
        "`camera[cam-1].village`: không có thôn/bản `nowhere`",
        "`camera[cam-1].id`: mã camera bị trùng",
        "`indicator[r].target`",
        "`indicator[r].numerator.source`",
        "`indicator[r].denominator`",
        "`indicator[l].field`",
        "`indicator[a].device_class`",
    ];
    for w in want {
        assert!(
            got.iter().any(|g| g.contains(w)),
            "missing {w} in:\n{}",
            got.join("\n")
        );
    }
    // Each problem points into the file: `test.toml:LINE:COLUMN: `.
    assert!(
        got.iter().all(|g| {
            let mut parts = g.splitn(4, ':');
            parts.next() == Some("test.toml")
                && parts.next().is_some_and(|l| l.parse::<usize>().is_ok())
                && parts.next().is_some_and(|c| c.parse::<usize>().is_ok())
        }),
        "{got:?}"
    );
    // The duplicate village is the second one (line 14), the duplicate
    // camera's village the first camera's `village` (line 18).
    assert!(
        got.iter()
            .any(|g| g.starts_with("test.toml:14:") && g.contains("`village[a].id`")),
        "{got:?}"
    );
    assert!(
        got.iter()
            .any(|g| g.starts_with("test.toml:18:") && g.contains("`camera[cam-1].village`")),
        "{got:?}"
    );
}

/// Mistakes that used to load silently: a ratio that can pass 100 %, an
/// event kind no decoder produces, a device that is not registered. Each is
/// refused with its place in the file, its key and a Vietnamese reason.
#[test]
fn silent_indicator_mistakes_are_refused_with_file_line_key_and_reason() {
    let text = r#"
[commune]
id = "x"
name = "X"
[[camera]]
id = "cam-01"

[[indicator]]
id = "on_time"
name = "Đúng hạn"
kind = "ratio"
[indicator.numerator]
source = "procedure"
event = "received"
[indicator.denominator]
source = "procedure"
event = "resolved"

[[indicator]]
id = "typo"
name = "Hồ sơ"
kind = "count"
[indicator.match]
source = "procedure"
event = "recieved"

[[indicator]]
id = "cams"
name = "Phát hiện"
kind = "count"
[indicator.match]
source = "camera"
event = "detection"
devices = ["cam-01", "cam-99"]
"#;
    let got = issues(text, &[]);
    assert_eq!(got.len(), 3, "{got:#?}");
    let find = |key: &str| {
        got.iter()
            .find(|g| g.contains(key))
            .unwrap_or_else(|| panic!("no {key} in {got:#?}"))
    };
    let ratio = find("`indicator[on_time].numerator`");
    assert!(ratio.starts_with("test.toml:12:"), "{ratio}");
    assert!(
        ratio.contains("tử số phải là một phần của mẫu số"),
        "{ratio}"
    );
    assert!(ratio.contains("vượt 100 %"), "{ratio}");
    let typo = find("`indicator[typo].match.event`");
    assert!(typo.starts_with("test.toml:25:"), "{typo}");
    assert!(
        typo.contains("`recieved` không phải loại sự kiện của nguồn `procedure`")
            && typo.contains("received, resolved"),
        "{typo}"
    );
    let device = find("`indicator[cams].match.devices`");
    assert!(device.starts_with("test.toml:34:"), "{device}");
    assert!(
        device.contains("không có thiết bị `cam-99`") && !device.contains("`cam-01`"),
        "{device}"
    );

    // The same ratio with a narrower numerator, a real kind and registered
    // devices loads; so do a numerator on a sub-list of the denominator's
    // values and the same `sum`.
    let fixed = text
        .replace(
            "event = \"received\"\n[indicator.denominator]",
            "event = \"resolved\"\nwhere = { outcome = \"early\" }\n[indicator.denominator]",
        )
        .replace("recieved", "received")
        .replace(", \"cam-99\"", "");
    assert_eq!(issues(&fixed, &[]), Vec::<String>::new());
    let wider = r#"
[commune]
id = "x"
name = "X"
[[indicator]]
id = "r"
name = "R"
kind = "ratio"
numerator = { source = "procedure", event = "resolved", where = { outcome = ["early", "late"] } }
denominator = { source = "procedure", event = "resolved", where = { outcome = ["early", "on_time"] } }
"#;
    let got = issues(wider, &[]);
    assert_eq!(got.len(), 1, "{got:#?}");
    assert!(got[0].contains("where.outcome"), "{got:#?}");
    assert!(issues(&wider.replace("\"late\"", "\"on_time\""), &[]).is_empty());
}

/// Problems in a value set by an `IOC__*` variable name the variable.
#[test]
fn semantic_problems_from_env_name_the_variable() {
    let got = issues(MINIMAL, &[("IOC__HTTP__LISTEN", "nowhere")]);
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(
        got[0].starts_with("env IOC__HTTP__LISTEN: `http.listen`"),
        "{got:?}"
    );
}

#[test]
fn check_config_exits_non_zero_and_lists_problems() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("bad.toml");
    std::fs::write(
        &f,
        "[commune]\nid = \"x\"\nname = \"X\"\n[http]\nlisten = \"nope\"\n[mqtt]\nport = 0\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_commune-ioc"))
        .args(["check-config", f.to_str().unwrap()])
        .output()
        .expect("run check-config");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("(2 lỗi)"), "{err}");
    assert!(
        err.contains("`http.listen`") && err.contains("`mqtt.port`"),
        "{err}"
    );
    assert!(err.contains(&f.display().to_string()), "{err}");

    let out = Command::new(env!("CARGO_BIN_EXE_commune-ioc"))
        .args(["check-config", "/nonexistent/commune.toml"])
        .output()
        .expect("run check-config");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("không đọc được tệp cấu hình /nonexistent/commune.toml"));
}

/// Lengths are counted as documented: `mqtt.client_id` in bytes of UTF-8
/// (what MQTT limits), so 50 Vietnamese letters (150 bytes) are too long
/// though they are 50 characters, and the message says bytes.
#[test]
fn client_id_length_is_counted_in_bytes_as_documented() {
    let long = "ệ".repeat(50);
    let text = format!("{MINIMAL}[mqtt]\nclient_id = \"{long}\"\n");
    let got = issues(&text, &[]);
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].contains("`mqtt.client_id`"), "{got:?}");
    assert!(
        got[0].contains("128 byte") && got[0].contains("150 byte"),
        "{got:?}"
    );
    let docs =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/CONFIG.md")).unwrap();
    assert!(
        docs.contains("| `client_id` | string of 1–128 bytes (UTF-8"),
        "CONFIG.md must say the client id is counted in bytes"
    );
    // 128 ASCII bytes are fine.
    let ok = format!("{MINIMAL}[mqtt]\nclient_id = \"{}\"\n", "a".repeat(128));
    assert!(issues(&ok, &[]).is_empty());
}

/// The province's `[stream]` (and the uplink's age limit): every out-of-range key is refused at once,
/// with its key and a Vietnamese reason; the defaults load.
#[test]
fn province_stream_mistakes_are_refused() {
    let good = format!("{MINIMAL}[stream]\nurl = \"nats://127.0.0.1:4222\"\n");
    assert_eq!(issues(&good, &[]), Vec::<String>::new());
    let text = format!(
        "{MINIMAL}[stream]\nurl = \"http://127.0.0.1:4222\"\nstream = \"IOC.JOURNAL\"\n\
         stream_replicas = 7\nbatch_max = 0\nsite_rate = 0\nbatch_wait_ms = 60000\n\
         max_age_days = 4000\nuser = \"tinh\"\n[uplink]\nmax_age_days = 9999\n"
    );
    let got = issues(&text, &[]);
    for w in [
        "`stream.url`",
        "`stream.stream`",
        "`stream.stream_replicas`: phải từ 1 đến 5",
        "`stream.batch_max`: phải từ 1 đến 10000",
        "`stream.site_rate`",
        "`stream.batch_wait_ms`: phải từ 0 đến 10000",
        "`stream.max_age_days`: phải từ 0 (không giới hạn) đến 3650 ngày",
        "`uplink.max_age_days`: phải từ 0 (không giới hạn) đến 3650 ngày",
        // The connection is checked as [uplink]'s is: a user needs a password.
        "`stream.user`: cần cả stream.password",
    ] {
        assert!(
            got.iter().any(|g| g.contains(w)),
            "missing {w} in:\n{}",
            got.join("\n")
        );
    }
}
