//! Sealed periodic reports against the real binary: a generated month of
//! events with known totals (written straight into a store file, as the
//! journal writer would) sealed by `commune-ioc report seal`, its window
//! edges and no-data rows, re-sealing byte for byte, every kind of
//! tampering refused by `report verify` with its reason, and, on a running
//! server, late events that go to the ledger and a correction draft that
//! becomes revision 1 without touching revision 0.

mod kit;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use chrono::{DateTime, Utc};
use commune_ioc::config::{self, Config};
use commune_ioc::indicators::Engine;
use commune_ioc::journal::{NewEvent, Store};
use commune_ioc::model::{Event, Source};
use commune_ioc::reports::intake::Rule;
use commune_ioc::reports::{service, ReportPeriod, RowStatus, Snapshot};
use serde_json::{json, Value};

use kit::backend::BINARY;

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// A config for the test commune with its store in `dir/store`.
fn site(dir: &Path, extra: &str) -> (PathBuf, Config) {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("commune.toml");
    let text = format!(
        "{}\n{extra}",
        kit::test_config(kit::free_port(), &dir.join("store"))
    );
    std::fs::write(&path, text).unwrap();
    let config = config::load(&path).unwrap();
    (path, config)
}

fn cli(config: &Path, args: &[&str]) -> Output {
    Command::new(BINARY)
        .arg("report")
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("IOC_CONFIG")
        .env("RUST_LOG", "warn")
        .output()
        .expect("run commune-ioc report")
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

struct Gen {
    events: Vec<Event>,
    n: usize,
}

impl Gen {
    fn new() -> Gen {
        Gen {
            events: Vec::new(),
            n: 0,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        source: Source,
        kind: &str,
        device: Option<&str>,
        village: Option<&str>,
        ts: DateTime<Utc>,
        received: DateTime<Utc>,
        attrs: Value,
    ) {
        self.n += 1;
        self.events.push(Event {
            source,
            kind: kind.into(),
            device: device.map(str::to_owned),
            village: village.map(str::to_owned),
            ts,
            received_at: received,
            seq: None,
            attrs: attrs.as_object().cloned().unwrap_or_default(),
            dedup_key: format!("gen-{}", self.n),
            retained: false,
        });
    }

    fn dossier(&mut self, village: &str, channel: &str, ts: DateTime<Utc>) {
        let id = format!("d-{}", self.n);
        self.push(
            Source::Procedure,
            "received",
            None,
            Some(village),
            ts,
            ts + chrono::Duration::seconds(2),
            json!({ "dossier_id": id, "channel": channel }),
        );
    }

    fn write(&self, config: &Config) {
        let mut store = Store::open(&config.journal_path()).unwrap();
        store.set_report_rule(Rule::from_config(&config.report));
        let engine = Engine::new(config);
        for chunk in self.events.chunks(500) {
            let rows: Vec<NewEvent<'_>> = chunk
                .iter()
                .map(|e| NewEvent {
                    event: e,
                    topic: "ioc/binh-lu/gen",
                    payload: b"{}",
                })
                .collect();
            service::write_events(&mut store, &engine, &rows).unwrap();
        }
    }
}

/// June 2026 under NĐ 09 (15 May – 15 June, +07:00) with known totals,
/// and events just outside it.
fn june() -> Gen {
    let mut g = Gen::new();
    let start = t("2026-05-15T00:00:00+07:00");
    // Tân Bình: 40 dossiers, 37 online; Hưng Bình: 20, 17 online, 3
    // direct; Nà Đa: none.
    for i in 0..40 {
        let ts = start + chrono::Duration::minutes(37 * i + 1);
        g.dossier("tan-binh", if i < 37 { "online" } else { "postal" }, ts);
    }
    for i in 0..20 {
        let ts = start + chrono::Duration::hours(20 * i + 5);
        g.dossier("hung-binh", if i < 17 { "online" } else { "direct" }, ts);
    }
    // The edges: the first and the last millisecond are in.
    g.dossier("hung-binh", "online", t("2026-05-15T00:00:00+07:00"));
    g.dossier("hung-binh", "online", t("2026-06-14T23:59:59.999+07:00"));
    // Just outside: the next and the previous month.
    g.dossier("tan-binh", "direct", t("2026-06-15T00:00:00+07:00"));
    g.dossier("tan-binh", "direct", t("2026-05-14T23:59:59.999+07:00"));
    // Broadcasts: 9 session starts in Nà Đa.
    for i in 0..9 {
        let ts = start + chrono::Duration::days(3 * i + 1);
        g.push(
            Source::Speaker,
            "session_start",
            Some("spk-03"),
            Some("na-da"),
            ts,
            ts,
            json!({}),
        );
    }
    // People detected: 5 detections of 4 people in Tân Bình = 20.
    for i in 0..5 {
        let ts = start + chrono::Duration::days(i + 2);
        g.push(
            Source::Camera,
            "detection",
            Some("cam-01"),
            Some("tan-binh"),
            ts,
            ts,
            json!({ "label": "person", "count": 4 }),
        );
    }
    // Rain: the newest reading in the window is 12.5 mm.
    g.push(
        Source::Sensor,
        "telemetry",
        Some("rain-01"),
        Some("na-da"),
        t("2026-06-01T08:00:00+07:00"),
        t("2026-06-01T08:00:00+07:00"),
        json!({ "rain_mm": 3.0 }),
    );
    g.push(
        Source::Sensor,
        "telemetry",
        Some("rain-01"),
        Some("na-da"),
        t("2026-06-14T20:00:00+07:00"),
        t("2026-06-14T20:00:00+07:00"),
        json!({ "rain_mm": 12.5 }),
    );
    g.push(
        Source::Sensor,
        "telemetry",
        Some("rain-01"),
        Some("na-da"),
        t("2026-06-15T08:00:00+07:00"),
        t("2026-06-15T08:00:00+07:00"),
        json!({ "rain_mm": 40.0 }),
    );
    g
}

fn row<'a>(s: &'a Snapshot, scope: &str, id: &str) -> &'a commune_ioc::reports::IndicatorRow {
    s.values
        .iter()
        .find(|v| v.scope == scope)
        .unwrap_or_else(|| panic!("scope {scope}"))
        .indicators
        .iter()
        .find(|r| r.indicator == id)
        .unwrap_or_else(|| panic!("indicator {id}"))
}

fn doc(config: &Path, period: &str, dir: &Path) -> (PathBuf, Vec<u8>) {
    let path = dir.join(format!("{period}.json"));
    ok(&cli(
        config,
        &["get", "--period", period, "--out", path.to_str().unwrap()],
    ));
    let bytes = std::fs::read(&path).unwrap();
    (path, bytes)
}

/// A generated month gives exactly the expected snapshot; edges, no data,
/// re-sealing byte for byte, verify and recompute.
#[test]
fn a_generated_month_seals_to_the_expected_snapshot() {
    let tmp = tempfile::tempdir().unwrap();
    let (a_cfg, a) = site(&tmp.path().join("a"), "");
    let (b_cfg, b) = site(&tmp.path().join("b"), "");
    let g = june();
    g.write(&a);
    g.write(&b);

    let out = ok(&cli(&a_cfg, &["seal", "--period", "2026-06"]));
    assert!(
        out.contains("Đã niêm phong kỳ 2026-06 (phiên bản 0)"),
        "{out}"
    );
    let digest = out.lines().last().unwrap().to_owned();
    assert!(digest.starts_with("sha256:"), "{out}");
    let (file, bytes) = doc(&a_cfg, "2026-06", tmp.path());
    let s: Snapshot = serde_json::from_slice(&bytes).unwrap();

    // The period: label and window apart.
    assert_eq!(s.period.label, "2026-06");
    assert_eq!(s.period.window_start, "2026-05-15T00:00:00+07:00");
    assert_eq!(s.period.window_end, "2026-06-15T00:00:00+07:00");
    assert_eq!(s.period.dhis2, "202606");
    assert_eq!(s.org_unit.name, "Xã Bình Lư");
    assert_eq!((s.revision, s.supersedes.as_deref()), (0, None));

    // Known totals: 62 dossiers (40 + 20 + the two edge ones), 56 online.
    assert_eq!(row(&s, "commune", "dossiers_received").value, Some(62.0));
    assert_eq!(row(&s, "tan-binh", "dossiers_received").value, Some(40.0));
    assert_eq!(row(&s, "hung-binh", "dossiers_received").value, Some(22.0));
    assert_eq!(row(&s, "na-da", "dossiers_received").value, Some(0.0));
    let online = row(&s, "commune", "dossier_online_ratio");
    assert_eq!(
        (online.numerator, online.denominator),
        (Some(56.0), Some(62.0))
    );
    assert_eq!(online.value, Some(90.3226));
    assert_eq!(online.status, RowStatus::Met, "90.32 % meets > 90");
    let hb = row(&s, "hung-binh", "dossier_online_ratio");
    assert_eq!((hb.value, hb.status), (Some(86.3636), RowStatus::NotMet));
    assert_eq!(online.target.as_deref(), Some("> 90"));
    let tb = row(&s, "tan-binh", "dossier_online_ratio");
    assert_eq!((tb.value, tb.status), (Some(92.5), RowStatus::Met));
    let direct = row(&s, "hung-binh", "dossier_direct_ratio");
    assert_eq!(
        (direct.numerator, direct.denominator, direct.value),
        (Some(3.0), Some(22.0), Some(13.6364))
    );
    assert_eq!(row(&s, "commune", "broadcast_sessions").value, Some(9.0));
    assert_eq!(row(&s, "na-da", "broadcast_sessions").value, Some(9.0));
    assert_eq!(row(&s, "commune", "people_detected").value, Some(20.0));
    assert_eq!(row(&s, "na-da", "rain_latest").value, Some(12.5));
    let dead = row(&s, "commune", "dead_letters");
    assert_eq!((dead.value, dead.status), (Some(0.0), RowStatus::Met));
    // No data, never 0 %: no village received a dossier in Nà Đa, no
    // dossier was resolved or paid, no rain gauge in Tân Bình, and device
    // availability is not reconstructible for a past period.
    for (scope, id) in [
        ("na-da", "dossier_online_ratio"),
        ("commune", "dossier_on_time_ratio"),
        ("commune", "dossier_online_payment_ratio"),
        ("tan-binh", "rain_latest"),
        ("commune", "camera_online"),
        ("commune", "freshness_procedure"),
    ] {
        let r = row(&s, scope, id);
        assert_eq!(
            (r.value, r.status),
            (None, RowStatus::NoData),
            "{scope}/{id}"
        );
    }
    // The manifest: 62 procedure events in the window.
    let m = |name: &str| {
        s.manifest
            .event_streams
            .iter()
            .find(|x| x.stream == name)
            .unwrap()
            .clone()
    };
    assert_eq!(m("procedure").count, 62);
    assert_eq!(
        m("procedure").first_event_ts.as_deref(),
        Some("2026-05-15T00:00:00+07:00")
    );
    assert_eq!(
        m("procedure").last_event_ts.as_deref(),
        Some("2026-06-14T23:59:59.999+07:00")
    );
    assert_eq!(m("sensor").count, 2);
    assert_eq!(
        row(&s, "commune", "dossiers_received").lineage.input_count,
        62
    );

    // The list, in Vietnamese: the window by date, the state, when (in
    // Vietnam's time) and by whom.
    let list = ok(&cli(&a_cfg, &["list"]));
    assert!(
        list.contains("Kỳ 2026-06 (15/05/2026 – 14/06/2026): đã niêm phong, chưa gửi tỉnh"),
        "{list}"
    );
    assert!(list.contains("phiên bản 0, niêm phong lúc "), "{list}");
    assert!(list.contains(&digest), "{list}");

    // Sealing again changes nothing.
    let again = ok(&cli(&a_cfg, &["seal", "--period", "2026-06"]));
    assert!(again.contains("đã được niêm phong trước đó"), "{again}");
    assert_eq!(again.lines().last().unwrap(), digest);

    // The same journal sealed elsewhere with the same key: the same bytes.
    std::fs::copy(
        a.store.path.join("report_ed25519.pem"),
        b.store.path.join("report_ed25519.pem"),
    )
    .unwrap();

    // `--recompute` catches a document whose values the journal does not
    // give, even when it is signed by the commune's key: one sealed (with
    // the same key) from a journal with one more online dossier, checked
    // against b's journal before b seals.
    let (c_cfg, c) = site(&tmp.path().join("c"), "");
    let mut more = june();
    more.dossier("tan-binh", "online", t("2026-06-01T09:00:00+07:00"));
    more.write(&c);
    std::fs::copy(
        a.store.path.join("report_ed25519.pem"),
        c.store.path.join("report_ed25519.pem"),
    )
    .unwrap();
    ok(&cli(&c_cfg, &["seal", "--period", "2026-06"]));
    let (c_file, _) = doc(&c_cfg, "2026-06", &tmp.path().join("c"));
    let plain = ok(&cli(&b_cfg, &["verify", c_file.to_str().unwrap()]));
    assert!(
        plain.contains("HỢP LỆ"),
        "signed by the commune's key: {plain}"
    );
    let e = refused(
        &b_cfg,
        &std::fs::read(&c_file).unwrap(),
        tmp.path(),
        "recomputed",
        &["--recompute"],
    );
    assert!(
        e.contains("Tính lại từ nhật ký sự kiện cho kết quả khác")
            && e.contains("dossiers_received")
            && e.contains("63 → 62"),
        "{e}"
    );

    ok(&cli(&b_cfg, &["seal", "--period", "2026-06"]));
    let (_, other) = doc(&b_cfg, "2026-06", &tmp.path().join("b"));
    assert_eq!(other, bytes, "re-sealing gives a byte-identical document");

    // Verify, and recompute from the journal.
    let v = ok(&cli(
        &a_cfg,
        &["verify", file.to_str().unwrap(), "--recompute"],
    ));
    assert!(
        v.contains("HỢP LỆ") && v.contains(&digest) && v.contains("khớp"),
        "{v}"
    );

    // An empty quarter: every row no data.
    ok(&cli(&a_cfg, &["seal", "--period", "2025-Q3"]));
    let (_, q) = doc(&a_cfg, "2025-Q3", tmp.path());
    let q: Snapshot = serde_json::from_slice(&q).unwrap();
    assert_eq!(q.period.window_start, "2025-06-15T00:00:00+07:00");
    assert!(q
        .rows()
        .all(|(_, r)| r.value.is_none() && r.status == RowStatus::NoData));

    // A period not closed yet is refused with the reason.
    let far = cli(&a_cfg, &["seal", "--period", "2099-01"]);
    assert!(!far.status.success());
    assert!(
        String::from_utf8_lossy(&far.stderr).contains("chưa khoá sổ"),
        "{far:?}"
    );

    // The public key is the one in the document.
    let key = ok(&cli(&a_cfg, &["key"]));
    assert_eq!(key.trim(), s.signature.as_ref().unwrap().public_key);
}

/// Rewrite a document in canonical form after `f` changed it.
fn tamper(bytes: &[u8], f: impl FnOnce(&mut Value)) -> Vec<u8> {
    let mut v: Value = serde_json::from_slice(bytes).unwrap();
    f(&mut v);
    serde_jcs::to_vec(&v).unwrap()
}

fn refused(config: &Path, bytes: &[u8], dir: &Path, name: &str, extra: &[&str]) -> String {
    let path = dir.join(format!("{name}.json"));
    std::fs::write(&path, bytes).unwrap();
    let mut args = vec!["verify", path.to_str().unwrap()];
    args.extend_from_slice(extra);
    let out = cli(config, &args);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(2),
        "{name}: exit {:?}, stderr {err}",
        out.status.code()
    );
    assert!(err.contains("KHÔNG HỢP LỆ"), "{name}: {err}");
    err
}

/// Every kind of change to a sealed document fails verification, each
/// with a reason that names it.
#[test]
fn every_kind_of_tampering_is_refused_with_its_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let (cfg, config) = site(tmp.path(), "");
    june().write(&config);
    ok(&cli(&cfg, &["seal", "--period", "2026-06"]));
    let (_, bytes) = doc(&cfg, "2026-06", tmp.path());
    let d = tmp.path();

    let value = tamper(&bytes, |v| {
        v["values"][1]["indicators"][0]["value"] = json!(41.0)
    });
    let e = refused(&cfg, &value, d, "value", &[]);
    assert!(
        e.contains("đã bị sửa")
            && e.contains("giá trị chỉ tiêu `dossiers_received`")
            && e.contains("40 → 41"),
        "{e}"
    );

    let target = tamper(&bytes, |v| {
        v["values"][0]["indicators"][1]["target"] = json!("> 50")
    });
    let e = refused(&cfg, &target, d, "target", &[]);
    assert!(
        e.contains("mục tiêu chỉ tiêu `dossier_online_ratio`") && e.contains("> 90 → > 50"),
        "{e}"
    );

    let village = tamper(&bytes, |v| {
        v["values"].as_array_mut().unwrap().remove(3);
    });
    let e = refused(&cfg, &village, d, "village", &[]);
    assert!(e.contains("danh sách xã/thôn"), "{e}");

    let renamed = tamper(&bytes, |v| v["values"][2]["name"] = json!("Bản Khác"));
    let e = refused(&cfg, &renamed, d, "renamed", &[]);
    assert!(e.contains("danh sách xã/thôn"), "{e}");

    let link = tamper(&bytes, |v| {
        v["supersedes"] = json!(format!("sha256:{}", "0".repeat(64)))
    });
    let e = refused(&cfg, &link, d, "link", &[]);
    assert!(e.contains("liên kết phiên bản (supersedes)"), "{e}");

    let sig = tamper(&bytes, |v| {
        let s = v["signature"]["value"].as_str().unwrap().to_owned();
        let first = if s.starts_with('A') { "B" } else { "A" };
        let flipped = format!("{first}{}", &s[1..]);
        v["signature"]["value"] = json!(flipped);
    });
    let e = refused(&cfg, &sig, d, "signature", &[]);
    assert!(e.contains("Chữ ký không hợp lệ"), "{e}");

    let unsigned = tamper(&bytes, |v| {
        v.as_object_mut().unwrap().remove("signature");
    });
    let e = refused(&cfg, &unsigned, d, "unsigned", &[]);
    assert!(e.contains("không có chữ ký"), "{e}");

    // A forgery signed with another key verifies on its own, not against
    // the commune's key.
    let other = tempfile::tempdir().unwrap();
    let (ocfg, oconfig) = site(other.path(), "");
    june().write(&oconfig);
    ok(&cli(&ocfg, &["seal", "--period", "2026-06"]));
    let (_, forged) = doc(&ocfg, "2026-06", other.path());
    let e = refused(&cfg, &forged, d, "forged", &[]);
    assert!(e.contains("không phải khoá của xã"), "{e}");

    // Whitespace alone: the bytes are no longer the canonical form.
    let mut spaced = bytes.clone();
    spaced.insert(1, b' ');
    let e = refused(&cfg, &spaced, d, "spaced", &[]);
    assert!(e.contains("JSON chuẩn hoá"), "{e}");

    // Without the store, a changed value still fails (the province side).
    let alone = refused(&cfg, &value, d, "value-alone", &["--no-store"]);
    assert!(alone.contains("đã bị sửa"), "{alone}");
    // The library function gives the same answer.
    assert!(commune_ioc::reports::verify(&value, &Default::default()).is_err());
    assert!(commune_ioc::reports::verify(&bytes, &Default::default()).is_ok());
}

/// On a running server: seal over HTTP (audited) and over the CLI, late
/// events to the ledger and a correction draft, revision 0 unchanged, the
/// correction approved as revision 1 that chains to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_events_draft_a_correction_without_changing_the_seal() {
    let broker = kit::Mosquitto::start();
    let tmp = tempfile::tempdir().unwrap();
    let extra = "[ingest]\nmax_age_days = 400\n\n[report]\ncheck_interval_secs = 1\n";
    let config_text = format!(
        "{}\n{extra}",
        kit::test_config(broker.port, &tmp.path().join("store"))
    );
    let cfg = tmp.path().join("commune.toml");
    std::fs::write(&cfg, &config_text).unwrap();
    let config = config::load(&cfg).unwrap();

    // Two months back: closed for sure, not the one the task seals.
    let now = Utc::now();
    let current = ReportPeriod::month_of(now, config.report.regime);
    let prev = ReportPeriod::month_of(
        current.start.with_timezone(&Utc) - chrono::Duration::days(1),
        config.report.regime,
    );
    let p = ReportPeriod::month_of(
        prev.start.with_timezone(&Utc) - chrono::Duration::days(1),
        config.report.regime,
    );
    let label = p.label();
    let (start, _) = p.utc();
    let mut g = Gen::new();
    for i in 0..10 {
        g.dossier("tan-binh", "online", start + chrono::Duration::days(i + 1));
    }
    g.write(&config);

    let b = kit::Backend::start(tmp.path(), &config_text);
    b.wait_ready().await;
    let (status, sealed) = b
        .post(&format!("/api/reports/{label}/seal"), json!({}))
        .await;
    assert_eq!(status, 200, "{sealed}");
    assert_eq!(sealed["revision"], 0);
    let digest0 = sealed["digest"].as_str().unwrap().to_owned();
    let rev0 = b
        .authed_get(&format!("/api/reports/{label}"))
        .await
        .bytes()
        .await
        .unwrap()
        .to_vec();
    let s0: Snapshot = serde_json::from_slice(&rev0).unwrap();
    assert_eq!(row(&s0, "commune", "dossiers_received").value, Some(10.0));
    let audit = b.get("/api/audit?action=report_seal").await;
    assert!(
        audit.to_string().contains(&format!("report:{label}")),
        "{audit}"
    );

    // The CLI seals another period while the server runs.
    ok(&cli(&cfg, &["seal", "--period", "2025-H1"]));

    // A dossier of that period arrives now: late.
    let mut publisher = kit::Publisher::new(broker.port);
    let ts = (start + chrono::Duration::days(5)).to_rfc3339();
    let payload = json!({ "ts": ts, "dossier_id": "late-1", "event": "received", "channel": "direct", "village": "hung-binh" });
    publisher
        .send(kit::DOSSIER, payload.to_string().as_bytes())
        .await;
    let drafts = kit::wait_until("a correction draft", Duration::from_secs(30), || async {
        let v = b.get(&format!("/api/reports/{label}/corrections")).await;
        (!v["drafts"].as_array().unwrap().is_empty()).then_some(v)
    })
    .await;
    let draft = &drafts["drafts"][0];
    let listed = ok(&cli(&cfg, &["drafts", "--period", &label]));
    assert!(
        listed.contains(&format!("kỳ {label}: chờ duyệt · 1 sự kiện muộn"))
            && listed.contains("commune / dossiers_received: 10 → 11"),
        "{listed}"
    );
    assert_eq!(draft["state"], "open");
    assert_eq!(draft["late_events"], 1);
    assert!(
        draft["changes"].to_string().contains("dossiers_received"),
        "{draft}"
    );
    // Revision 0 is untouched, byte for byte.
    let still = b
        .authed_get(&format!("/api/reports/{label}"))
        .await
        .bytes()
        .await
        .unwrap()
        .to_vec();
    assert_eq!(still, rev0);
    let list = b.get("/api/reports").await;
    let entry = list["periods"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["period"] == label.as_str())
        .unwrap()
        .clone();
    assert_eq!(
        (
            entry["state"].as_str(),
            entry["late_events"].as_u64(),
            entry["open_drafts"].as_u64()
        ),
        (Some("sealed"), Some(1), Some(1))
    );

    // Sealing and corrections need the operator role.
    let id = draft["id"].as_i64().unwrap();
    let (status, _) = b
        .post(
            "/api/users",
            json!({"username": "xem", "password": "mat-khau-xem-1", "role": "viewer"}),
        )
        .await;
    assert_eq!(status, 201);
    let viewer = b.login("xem", "mat-khau-xem-1").await;
    for path in [
        "/api/reports/2025-Q3/seal".to_owned(),
        format!("/api/reports/{label}/corrections/{id}/approve"),
        format!("/api/reports/{label}/corrections/{id}/dismiss"),
    ] {
        let r = reqwest::Client::new()
            .post(format!("{}{path}", b.url))
            .bearer_auth(&viewer)
            .json(&json!({ "reason": "thử" }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 403, "a viewer: POST {path}");
    }

    // A correction needs a reason; approved, it is revision 1.
    let (status, e) = b
        .post(
            &format!("/api/reports/{label}/corrections/{id}/approve"),
            json!({ "reason": " " }),
        )
        .await;
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (400, Some("reason_required"))
    );
    let (status, rev1) = b
        .post(
            &format!("/api/reports/{label}/corrections/{id}/approve"),
            json!({ "reason": "Hồ sơ đến muộn do mất sóng 4G" }),
        )
        .await;
    assert_eq!(status, 200, "{rev1}");
    assert_eq!(rev1["revision"], 1);
    let doc1 = b
        .authed_get(&format!("/api/reports/{label}"))
        .await
        .bytes()
        .await
        .unwrap()
        .to_vec();
    let s1: Snapshot = serde_json::from_slice(&doc1).unwrap();
    assert_eq!(s1.supersedes.as_deref(), Some(digest0.as_str()));
    assert_eq!(row(&s1, "commune", "dossiers_received").value, Some(11.0));
    let c = s1.correction.as_ref().unwrap();
    assert_eq!((c.approved_by.as_str(), c.late_events), ("admin", 1));
    let old = b
        .authed_get(&format!("/api/reports/{label}?revision=0"))
        .await
        .bytes()
        .await
        .unwrap()
        .to_vec();
    assert_eq!(old, rev0);
    let list = b.get("/api/reports").await;
    assert!(list.to_string().contains("\"corrected\""), "{list}");
    // The approval is audited with the approving user.
    let audit = b.get("/api/audit?action=report_correction_approve").await;
    let entries = audit["entries"]
        .as_array()
        .or(audit.as_array())
        .cloned()
        .unwrap_or_default();
    let object = format!("report:{label}:draft:{id}");
    assert!(
        entries.iter().any(|e| e["actor"] == "admin"
            && e["outcome"] == "ok"
            && e["object"] == object.as_str()),
        "{audit}"
    );
    assert!(
        entries.iter().any(|e| e["outcome"] == "failed"),
        "the refusal without a reason is on record too: {audit}"
    );

    // Revision 1 verifies against the chain and recomputes; a changed link
    // does not.
    let f1 = tmp.path().join("rev1.json");
    std::fs::write(&f1, &doc1).unwrap();
    let v = ok(&cli(&cfg, &["verify", f1.to_str().unwrap(), "--recompute"]));
    assert!(v.contains("phiên bản 1"), "{v}");
    let f0 = tmp.path().join("rev0.json");
    std::fs::write(&f0, &rev0).unwrap();
    ok(&cli(
        &cfg,
        &[
            "verify",
            f1.to_str().unwrap(),
            "--no-store",
            "--previous",
            f0.to_str().unwrap(),
            "--key",
            &s0.signature.as_ref().unwrap().public_key,
        ],
    ));
    let relinked = tamper(&doc1, |v| {
        v["supersedes"] = json!(format!("sha256:{}", "1".repeat(64)))
    });
    let e = refused(&cfg, &relinked, tmp.path(), "relinked", &[]);
    assert!(e.contains("liên kết phiên bản"), "{e}");
    // Revision 1 checked against another revision as its predecessor.
    let e = refused(
        &cfg,
        &doc1,
        tmp.path(),
        "wrong-prev",
        &["--no-store", "--previous", f1.to_str().unwrap()],
    );
    assert!(e.contains("Chuỗi phiên bản sai"), "{e}");
    drop(publisher);
}

/// The incremental manifests are written in the journal's transaction, so
/// a kill -9 with messages in flight leaves them equal to the journal:
/// after redelivery (duplicates dropped), the Merkle roots, counts and
/// values kept incrementally for the month, quarter, half and year equal
/// those recomputed from the events themselves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_manifests_match_the_journal_after_a_kill_mid_stream() {
    use commune_ioc::reports::{compute, intake};

    let (broker, dir, mut b) = kit::stack().await;
    let config = config::load(&dir.path().join("commune.toml")).unwrap();
    let publisher = kit::Pipelined::connect("manifest-pub", broker.port, false)
        .await
        .unwrap();
    // Bursts until one is caught mid-stream: some committed, not all.
    const BURST: usize = 1000;
    let mut n = 0;
    let mut killed_at = None;
    for round in 0..10 {
        for i in 0..BURST {
            publisher
                .publish(
                    kit::DOSSIER,
                    kit::dossier_received(
                        &format!("mk-{round}-{i}"),
                        if i % 4 == 0 { "direct" } else { "online" },
                        Some("hung-binh"),
                    ),
                )
                .await
                .unwrap();
        }
        n += BURST;
        let committed = kit::wait_until("events committed", Duration::from_secs(60), || {
            let b = &b;
            async move {
                let c = b.scrape().await.accounted();
                (c > (n - BURST) as u64).then_some(c)
            }
        })
        .await;
        if (committed as usize) < n {
            killed_at = Some(committed);
            break;
        }
    }
    let killed_at = killed_at.expect("never killed mid-stream");
    b.kill();
    b.restart();
    b.wait_ready().await;
    b.wait_value("dossiers_received", "month", "commune", n as f64)
        .await;
    eprintln!("killed at {killed_at} committed of {n}");

    let conn = rusqlite::Connection::open(config.journal_path()).unwrap();
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    let engine = Engine::new(&config);
    let rule = Rule::from_config(&config.report);
    let now = Utc::now();
    let mut periods: Vec<ReportPeriod> = intake::periods_of(now, config.report.regime).to_vec();
    // Right after a month turned, the first events may be in the month before.
    for p in intake::periods_of(now - chrono::Duration::minutes(5), config.report.regime) {
        if !periods.contains(&p) {
            periods.push(p);
        }
    }
    let mut total = 0;
    for p in &periods {
        let cutoff = rule.cutoff_ms(p);
        let kept = compute::from_store(&conn, &engine, p, cutoff).unwrap();
        let again = compute::from_journal(&conn, &engine, p, cutoff).unwrap();
        let manifests = |i: &compute::Inputs| {
            i.streams
                .values()
                .map(|(m, _)| m.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(manifests(&kept), manifests(&again), "{}", p.label());
        assert_eq!(
            compute::rows(&config, &engine, &kept),
            compute::rows(&config, &engine, &again),
            "{}",
            p.label()
        );
        if p.kind == commune_ioc::reports::PeriodKind::Year {
            total += manifests(&kept)
                .iter()
                .filter(|m| m.stream == "procedure")
                .map(|m| m.count)
                .sum::<u64>();
        }
    }
    assert_eq!(total as usize, n, "every event once in the year's manifest");
    drop(publisher);
}
