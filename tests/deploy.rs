//! The production stack's files, checked by parsing (these machines have no
//! Docker engine): docker-compose.yml, the Dockerfile, Mosquitto's config,
//! Grafana's provisioning and dashboards, the systemd unit, .env.example.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value as Json;
use serde_norway::Value as Yaml;

fn read(rel: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn yaml(rel: &str) -> Yaml {
    serde_norway::from_str(&read(rel)).unwrap_or_else(|e| panic!("{rel} is not YAML: {e}"))
}

fn s(v: &Yaml) -> &str {
    v.as_str().unwrap_or("")
}

/// Every `${VAR...}` named in a text.
fn variables(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("${") {
        rest = &rest[i + 2..];
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() {
            out.insert(name);
        }
    }
    out
}

const SERVICES: [&str; 4] = ["mosquitto", "influxdb", "grafana", "commune-ioc"];

#[test]
fn compose_has_the_four_services_with_health_checks_restarts_and_named_volumes() {
    let c = yaml("docker-compose.yml");
    let services = c["services"].as_mapping().expect("services");
    let declared: BTreeSet<&str> = c["volumes"]
        .as_mapping()
        .expect("top-level volumes")
        .keys()
        .map(s)
        .collect();
    for name in SERVICES {
        let svc = &c["services"][name];
        assert!(svc.is_mapping(), "service {name} missing");
        assert_eq!(
            s(&svc["restart"]),
            "unless-stopped",
            "{name}: restart policy"
        );
        let hc = &svc["healthcheck"];
        assert!(
            hc["test"].is_sequence() && !hc["interval"].is_null(),
            "{name}: health check with test and interval"
        );
        let vols = svc["volumes"].as_sequence().expect("volumes");
        let named: Vec<&str> = vols
            .iter()
            .map(s)
            .filter_map(|v| v.split(':').next())
            .filter(|src| !src.starts_with('.') && !src.starts_with('/') && !src.starts_with('$'))
            .collect();
        assert!(
            !named.is_empty(),
            "{name}: keeps its data in a named volume"
        );
        for n in named {
            assert!(declared.contains(n), "{name}: volume {n} is not declared");
        }
        // Bind mounts point at files in the repository.
        for v in vols.iter().map(s) {
            if let Some(src) = v.split(':').next().filter(|p| p.starts_with("./")) {
                assert!(
                    Path::new(env!("CARGO_MANIFEST_DIR")).join(src).exists(),
                    "{name}: {src} does not exist"
                );
            }
        }
    }
    assert_eq!(services.len(), SERVICES.len());
    for (name, image) in [
        ("mosquitto", "eclipse-mosquitto:2"),
        ("influxdb", "influxdb:2"),
        ("grafana", "grafana/grafana-oss:"),
    ] {
        assert!(
            s(&c["services"][name]["image"]).starts_with(image),
            "{name}: pinned image {image}*"
        );
    }
}

#[test]
fn commune_ioc_is_built_here_and_wired_to_the_broker_and_influxdb() {
    let c = yaml("docker-compose.yml");
    let ioc = &c["services"]["commune-ioc"];
    assert_eq!(s(&ioc["build"]["context"]), ".");
    assert_eq!(s(&ioc["build"]["dockerfile"]), "Dockerfile");
    let env = &ioc["environment"];
    assert_eq!(s(&env["IOC__INFLUX__URL"]), "http://influxdb:8086");
    for key in [
        "IOC__INFLUX__ORG",
        "IOC__INFLUX__BUCKET",
        "IOC__INFLUX__TOKEN",
    ] {
        assert!(s(&env[key]).starts_with("${INFLUXDB_"), "{key} from .env");
    }
    assert_eq!(s(&env["IOC__MQTT__HOST"]), "mosquitto");
    assert!(s(&env["IOC__MQTT__PASSWORD"]).starts_with("${IOC_MQTT_PASSWORD"));
    assert_eq!(
        s(&ioc["depends_on"]["mosquitto"]["condition"]),
        "service_healthy"
    );
    assert!(
        ioc["depends_on"]["influxdb"].is_null(),
        "commune-ioc must not wait for InfluxDB"
    );
    // The shipped config passes check-config with the compose overrides.
    assert!(s(&ioc["volumes"][0]).contains("config/commune.toml"));
}

#[test]
fn no_secret_is_written_in_the_compose_file_and_every_variable_is_in_env_example() {
    let text = read("docker-compose.yml");
    let c: Yaml = serde_norway::from_str(&text).expect("YAML");
    for name in SERVICES {
        if let Some(env) = c["services"][name]["environment"].as_mapping() {
            for (k, v) in env {
                let key = s(k);
                if ["PASSWORD", "TOKEN", "SECRET"]
                    .iter()
                    .any(|w| key.contains(w))
                {
                    assert!(
                        s(v).starts_with("${") && s(v).ends_with('}'),
                        "{name}.{key} must come from .env, not be written here"
                    );
                }
            }
        }
    }
    let example = read(".env.example");
    let defined: BTreeSet<String> = example
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_once('=').map(|(k, _)| k.trim().to_string()))
        .collect();
    for v in variables(&text) {
        assert!(defined.contains(&v), ".env.example lacks {v}");
    }
    assert!(
        read(".gitignore").lines().any(|l| l.trim() == ".env"),
        ".env must be ignored by git"
    );
}

#[test]
fn dockerfile_is_multi_stage_non_root_with_a_health_check() {
    let d = read("Dockerfile");
    let froms: Vec<&str> = d.lines().filter(|l| l.starts_with("FROM ")).collect();
    assert_eq!(froms.len(), 2, "{froms:?}");
    assert!(froms[0].starts_with("FROM rust:1-bookworm AS build"));
    assert!(froms[1].starts_with("FROM debian:bookworm-slim"));
    assert!(d.contains("cargo build --release --locked"));
    let user = d
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("USER");
    assert!(
        user.trim() != "root" && user.trim() != "0",
        "runs as {user}"
    );
    assert!(d.contains("HEALTHCHECK") && d.contains("commune-ioc\", \"healthcheck\""));
    // Everything COPY'd exists.
    for l in d
        .lines()
        .filter(|l| l.starts_with("COPY ") && !l.contains("--from"))
    {
        let parts: Vec<&str> = l.split_whitespace().collect();
        for src in &parts[1..parts.len() - 1] {
            assert!(
                Path::new(env!("CARGO_MANIFEST_DIR")).join(src).exists(),
                "COPY source {src} missing"
            );
        }
    }
}

#[test]
fn mosquitto_requires_passwords_persists_and_queues_enough() {
    for file in [
        "deploy/mosquitto/mosquitto.conf",
        "deploy/mosquitto/debian.conf",
    ] {
        let conf = read(file);
        let get = |k: &str| {
            conf.lines()
                .map(str::trim)
                .filter(|l| !l.starts_with('#'))
                .find_map(|l| l.strip_prefix(k).map(str::trim))
                .unwrap_or_else(|| panic!("{file}: no {k}"))
                .to_string()
        };
        assert_eq!(get("allow_anonymous "), "false", "{file}");
        assert!(get("password_file ").starts_with('/'), "{file}");
        let queued: u64 = get("max_queued_messages ").parse().expect("a number");
        assert!(queued >= 100_000, "{file}: max_queued_messages {queued}");
        // What the broker acknowledged survives kill -9 (tests/hostile_mqtt.rs
        // runs the real broker on this file).
        assert_eq!(get("autosave_on_changes "), "true", "{file}");
        assert_eq!(get("autosave_interval "), "1", "{file}");
        assert!(get("acl_file ").starts_with('/'), "{file}");
        // A listener setting: Mosquitto 2.0 ignores it before `listener`.
        let lines: Vec<&str> = conf.lines().map(str::trim).collect();
        let listener = lines.iter().position(|l| l.starts_with("listener "));
        let by_user = lines
            .iter()
            .position(|l| *l == "use_username_as_clientid true");
        assert!(
            matches!((listener, by_user), (Some(l), Some(u)) if u > l),
            "{file}: use_username_as_clientid true after the listener line"
        );
    }
    let compose = read("docker-compose.yml");
    assert!(compose.contains("./deploy/mosquitto/acl:/mosquitto/config/acl:ro"));
    assert!(read("deploy/mosquitto/acl").contains("pattern write ioc/+/+/%u/+"));
    assert_eq!(
        read("deploy/mosquitto/mosquitto.conf")
            .lines()
            .find(|l| l.starts_with("persistence "))
            .map(str::trim),
        Some("persistence true")
    );
}

#[test]
fn grafana_provisions_influxdb_with_flux_and_the_three_dashboards() {
    let ds = yaml("dashboards/grafana/provisioning/datasources/influxdb.yml");
    let src = &ds["datasources"][0];
    assert_eq!(s(&src["type"]), "influxdb");
    assert_eq!(s(&src["jsonData"]["version"]), "Flux");
    assert_eq!(s(&src["url"]), "http://influxdb:8086");
    assert_eq!(s(&src["secureJsonData"]["token"]), "${INFLUXDB_TOKEN}");
    let uid = s(&src["uid"]).to_string();

    let prov = yaml("dashboards/grafana/provisioning/dashboards/commune-ioc.yml");
    assert_eq!(
        s(&prov["providers"][0]["options"]["path"]),
        "/etc/grafana/dashboards",
        "the path docker-compose.yml mounts dashboards/grafana/dashboards at"
    );

    let mut uids = BTreeSet::new();
    for (file, title) in [
        ("commune-overview", "Tổng quan xã"),
        ("procedures", "Thủ tục hành chính"),
        ("devices", "Thiết bị"),
    ] {
        let text = read(&format!("dashboards/grafana/dashboards/{file}.json"));
        let d: Json = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(d["title"], title);
        assert!(
            uids.insert(d["uid"].as_str().unwrap_or("").to_string()),
            "unique uid"
        );
        let panels = d["panels"].as_array().expect("panels");
        assert!(!panels.is_empty());
        for p in panels {
            assert_eq!(
                p["datasource"]["uid"],
                uid.as_str(),
                "{file}: {}",
                p["title"]
            );
            for t in p["targets"].as_array().expect("targets") {
                let q = t["query"].as_str().expect("Flux query");
                assert!(q.starts_with("from(bucket: v.defaultBucket)"), "{q}");
                assert!(q.contains("ioc_") || q.contains("r.kind"), "{q}");
                assert!(
                    !q.contains("aggregateWindow") || q.contains("createEmpty: false"),
                    "{file}: no empty windows: {q}"
                );
            }
        }
    }
}

#[test]
fn systemd_unit_is_hardened_and_restarts() {
    let unit = read("deploy/systemd/commune-ioc.service");
    let has = |l: &str| unit.lines().any(|x| x.trim() == l);
    for line in [
        "DynamicUser=yes",
        "StateDirectory=commune-ioc",
        "ProtectSystem=strict",
        "Restart=on-failure",
        "NoNewPrivileges=yes",
        "ExecStart=/usr/local/bin/commune-ioc serve",
    ] {
        assert!(has(line), "missing {line}");
    }
}

#[test]
fn the_shipped_config_passes_check_config_with_the_compose_environment() {
    let c = yaml("docker-compose.yml");
    let env = c["services"]["commune-ioc"]["environment"]
        .as_mapping()
        .expect("environment");
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_commune-ioc"));
    cmd.arg("check-config")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("config/commune.toml"));
    for (k, v) in env {
        let key = s(k);
        if !key.starts_with("IOC__") {
            continue;
        }
        // `${VAR:-default}` takes its default; `${VAR:?...}` a sample value.
        let value = match s(v).strip_prefix("${") {
            Some(rest) => match rest.split_once(":-") {
                Some((_, d)) => d.trim_end_matches('}').to_string(),
                None => "sample-secret".to_string(),
            },
            None => s(v).to_string(),
        };
        cmd.env(key, value);
    }
    let out = cmd.output().expect("run check-config");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
