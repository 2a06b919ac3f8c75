//! Official warnings (CAP 1.2) end to end: bulletins published to a real
//! Mosquitto, posted over HTTP and fetched from a feed, read back from the
//! real binary.

mod kit;

use std::time::Duration;

use kit::{Backend, Publisher};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(20);

/// Villages with coordinates and a geocode, appended to the test commune.
const SITE: &str = r#"
[[village]]
id = "ta-pa"
name = "Bản Tà Pa"
lat = 22.300
lon = 103.200
[[village]]
id = "phieng-lu"
name = "Bản Phiêng Lư"
lat = 22.350
lon = 103.260
[[village]]
id = "nam-so"
name = "Bản Nậm Sỏ"
lat = 22.400
lon = 103.300
[[village]]
id = "co-muong"
name = "Bản Cò Mương"

[warnings]
sweep_secs = 1
[[warnings.geocode]]
name = "VN-MA-DVHC"
value = "03421"
villages = ["nam-so"]
"#;

const TOPIC: &str = "ioc/binh-lu/warning/cap";

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/cap/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn enc(id: &str) -> String {
    let mut out = String::new();
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// GET /api/warnings/{id} until `f` holds; the last answer.
async fn wait_warning(b: &Backend, id: &str, what: &str, f: impl Fn(&Value) -> bool) -> Value {
    let path = format!("/api/warnings/{}", enc(id));
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let (status, v) = b.get_status(&path).await;
        if status == 200 && f(&v) {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: last {status} {v}; log:\n{}",
            b.log_text()
        );
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
}

async fn wait_state(b: &Backend, id: &str, state: &str) -> Value {
    wait_warning(b, id, &format!("{id} → {state}"), |v| v["state"] == state).await
}

async fn dead_letters(b: &Backend) -> Vec<Value> {
    b.get("/api/dead-letters?reason=invalid_cap").await["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

const FLOOD_1: &str =
    "canhbao@kttv-laichau.example.vn|VN.LAICHAU.20260714T093000.LQ-0001|2026-07-14T09:30:00+07:00";
const FLOOD_2: &str =
    "canhbao@kttv-laichau.example.vn|VN.LAICHAU.20260714T123000.LQ-0002|2026-07-14T12:30:00+07:00";
const FLOOD_3: &str =
    "canhbao@kttv-laichau.example.vn|VN.LAICHAU.20260714T183000.LQ-0003|2026-07-14T18:30:00+07:00";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_bulletins_are_matched_chained_and_refused_with_their_reason() {
    let (broker, _dir, b) = kit::stack_with(SITE, &[]).await;
    let mut p = Publisher::new(broker.port);

    // The specification's own examples, unchanged: valid, none for us.
    for f in [
        "spec-a1-homeland-security.xml",
        "spec-a2-severe-thunderstorm.xml",
        "spec-a3-earthquake-update.xml",
        "spec-a4-amber-alert.xml",
    ] {
        p.send(TOPIC, &fixture(f)).await;
    }
    let a2 = wait_state(
        &b,
        "KSTO@NWS.NOAA.GOV|KSTO1055887203|2003-06-17T14:57:00-07:00",
        "not_for_commune",
    )
    .await;
    assert_eq!(a2["villages"], serde_json::json!([]));
    // A.3 updates a bulletin never sent to us: kept and flagged.
    let a3 = wait_state(
        &b,
        "trinet@caltech.edu|TRI13970876.2|2003-06-11T20:56:00-07:00",
        "not_for_commune",
    )
    .await;
    assert_eq!(
        a3["unknown_refs"],
        serde_json::json!(["trinet@caltech.edu|TRI13970876.1|2003-06-11T20:30:00-07:00"])
    );
    // A.4 has two languages, both kept.
    let a4 = wait_state(
        &b,
        "KARO@CLETS.DOJ.CA.GOV|KAR0-0306112239-SW|2003-06-11T22:39:00-07:00",
        "not_for_commune",
    )
    .await;
    assert_eq!(a4["parsed"]["alert"]["infos"].as_array().unwrap().len(), 2);

    // Flash flood, level 2: Bản Tà Pa inside the polygon.
    p.send(TOPIC, &fixture("vn-flash-flood-alert.xml")).await;
    let f1 = wait_state(&b, FLOOD_1, "active").await;
    assert_eq!(f1["hazard"], "flash_flood");
    assert_eq!(f1["level"], 2);
    assert_eq!(f1["villages"], serde_json::json!(["ta-pa"]));
    assert_eq!(f1["matches"][0]["ways"], serde_json::json!(["polygon"]));
    assert_eq!(f1["sender_name"], "Đài Khí tượng Thủy văn tỉnh Lai Châu");
    assert!(f1["xml"].as_str().unwrap().contains("LQ-0001"));

    // Delivered again: a duplicate, counted once.
    let dup_before = b.metric("ioc_duplicates_total").await;
    p.send(TOPIC, &fixture("vn-flash-flood-alert.xml")).await;
    wait_warning(&b, FLOOD_1, "two deliveries", |v| v["deliveries"] == 2).await;
    assert_eq!(b.metric("ioc_duplicates_total").await, dup_before + 1.0);

    // Update to level 3, adding Bản Phiêng Lư by a circle.
    p.send(TOPIC, &fixture("vn-flash-flood-update.xml")).await;
    let f2 = wait_state(&b, FLOOD_2, "active").await;
    wait_state(&b, FLOOD_1, "updated").await;
    assert_eq!(f2["level"], 3);
    assert_eq!(f2["supersedes"], FLOOD_1);
    assert_eq!(f2["villages"], serde_json::json!(["ta-pa", "phieng-lu"]));
    assert_eq!(f2["matches"][1]["ways"], serde_json::json!(["circle"]));
    assert_eq!(f2["chain_root"], FLOOD_1);

    // Cancel: both end; the chain is read from any of them.
    p.send(TOPIC, &fixture("vn-flash-flood-cancel.xml")).await;
    wait_state(&b, FLOOD_3, "cancelled").await;
    wait_state(&b, FLOOD_2, "cancelled").await;
    let f1 = wait_state(&b, FLOOD_1, "cancelled").await;
    let chain: Vec<&str> = f1["chain"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["id"].as_str().unwrap())
        .collect();
    assert_eq!(chain, vec![FLOOD_1, FLOOD_2, FLOOD_3]);

    // Landslide by geocode; Vietnamese shown first though English is first.
    p.send(TOPIC, &fixture("vn-landslide.xml")).await;
    let ls = wait_state(
        &b,
        "canhbao@kttv-laichau.example.vn|VN.LAICHAU.20260802T060000.SL-0007|2026-08-02T06:00:00+07:00",
        "active",
    )
    .await;
    assert_eq!(ls["hazard"], "landslide");
    assert_eq!(ls["event"], "Sạt lở đất");
    assert_eq!(
        ls["headline_vi"],
        "Cảnh báo sạt lở đất – cấp độ rủi ro thiên tai cấp 2"
    );
    assert_eq!(ls["villages"], serde_json::json!(["nam-so"]));
    assert_eq!(ls["matches"][0]["ways"], serde_json::json!(["geocode"]));

    // Frost by the village's name in areaDesc (case and diacritics aside).
    p.send(TOPIC, &fixture("vn-frost.xml")).await;
    let fr = wait_state(
        &b,
        "canhbao@kttv-laichau.example.vn|VN.LAICHAU.20261220T050000.SM-0001|2026-12-20T05:00:00+07:00",
        "active",
    )
    .await;
    assert_eq!(
        (fr["hazard"].as_str(), fr["level"].as_u64()),
        (Some("frost"), Some(1))
    );
    assert_eq!(fr["matches"][0]["ways"], serde_json::json!(["area_desc"]));
    assert_eq!(fr["villages"], serde_json::json!(["co-muong"]));

    // Heavy rain for another province: stored, not for this commune.
    p.send(TOPIC, &fixture("vn-heavy-rain-elsewhere.xml")).await;
    wait_state(
        &b,
        "canhbao@kttv-dienbien.example.vn|VN.DIENBIEN.20260714T080000.ML-0003|2026-07-14T08:00:00+07:00",
        "not_for_commune",
    )
    .await;

    // Level 4 for a flash flood is refused: a dead letter naming the rule,
    // nothing stored.
    p.send(TOPIC, &fixture("vn-flash-flood-level-4.xml")).await;
    let mut dead = Vec::new();
    b.wait_for("the invalid_cap dead letter", WAIT, || {
        let b = &b;
        async move { !dead_letters(b).await.is_empty() }
    })
    .await;
    dead.extend(dead_letters(&b).await);
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["topic"], TOPIC);
    let detail = dead[0]["detail"].as_str().unwrap();
    assert!(detail.contains("risk_level_range"), "{detail}");
    let (status, _) = b
        .get_status(&format!(
            "/api/warnings/{}",
            enc("canhbao@kttv-laichau.example.vn|VN.LAICHAU.20260714T093000.LQ-0099|2026-07-14T09:30:00+07:00")
        ))
        .await;
    assert_eq!(status, 404);

    // A bulletin that is not CAP 1.2 (CAP 1.1 namespace) is refused too.
    let v11 = String::from_utf8(fixture("vn-frost.xml"))
        .unwrap()
        .replace("cap:1.2", "cap:1.1");
    p.send(TOPIC, v11.as_bytes()).await;
    b.wait_for("the second dead letter", WAIT, || {
        let b = &b;
        async move { dead_letters(b).await.len() == 2 }
    })
    .await;
    let dead = dead_letters(&b).await;
    assert!(
        dead.iter()
            .any(|d| d["detail"].as_str().unwrap().contains("not_cap_1_2")),
        "{dead:?}"
    );

    // Listing: active only where asked, filters by hazard, level, village.
    let all = b.get("/api/warnings").await;
    let active: Vec<&str> = all["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| w["state"] == "active")
        .map(|w| w["hazard"].as_str().unwrap())
        .collect();
    assert_eq!(active.len(), 2, "{all}");
    let frost = b
        .get("/api/warnings?hazard=frost&level=1&village=co-muong")
        .await;
    assert_eq!(frost["warnings"].as_array().unwrap().len(), 1, "{frost}");
    let none = b.get("/api/warnings?hazard=frost&village=ta-pa").await;
    assert_eq!(none["warnings"].as_array().unwrap().len(), 0, "{none}");
    let (status, bad) = b.get_status("/api/warnings?hazard=volcano").await;
    assert_eq!(
        (status, bad["error"]["code"].as_str()),
        (400, Some("invalid_hazard"))
    );
}
