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
    // The indicator: active warnings by level (landslide 2, frost 1). The
    // live state publishes it after the commit the listing reads, so it
    // may follow a moment later.
    b.wait_for("ioc_warnings_active to count both", WAIT, || {
        let b = &b;
        async move {
            let by = b.scrape().await.by_label("ioc_warnings_active");
            by.contains(&("level=\"1\"".to_string(), 1.0))
                && by.contains(&("level=\"2\"".to_string(), 1.0))
        }
    })
    .await;
    let by_level = b.scrape().await.by_label("ioc_warnings_active");
    for (level, n) in [("1", 1.0), ("2", 1.0), ("3", 0.0), ("none", 0.0)] {
        assert!(
            by_level.contains(&(format!("level=\"{level}\""), n)),
            "level {level}: {by_level:?}"
        );
    }
    let frost = b
        .get("/api/warnings?hazard=frost&level=1&village=co-muong")
        .await;
    assert_eq!(frost["warnings"].as_array().unwrap().len(), 1, "{frost}");
    let none = b.get("/api/warnings?hazard=frost&village=ta-pa").await;
    assert_eq!(none["warnings"].as_array().unwrap().len(), 0, "{none}");
    // Alerts: one per chain that covers villages (kind `warning`, official),
    // none for the bulletins not for this commune or refused; the cancelled
    // chain's alert is resolved.
    const LS: &str = "canhbao@kttv-laichau.example.vn|VN.LAICHAU.20260802T060000.SL-0007|2026-08-02T06:00:00+07:00";
    const FR: &str = "canhbao@kttv-laichau.example.vn|VN.LAICHAU.20261220T050000.SM-0001|2026-12-20T05:00:00+07:00";
    let alerts = kit::wait_until("an alert per chain", WAIT, || {
        let b = &b;
        async move {
            let v = b.get("/api/alerts?kind=warning").await;
            let items = v["items"].as_array().cloned().unwrap_or_default();
            let resolved = items.iter().any(|a| {
                a["fingerprint"] == format!("warning:{FLOOD_1}") && a["state"] == "resolved"
            });
            (items.len() == 3 && resolved).then_some(items)
        }
    })
    .await;
    let mut fps: Vec<&str> = alerts
        .iter()
        .map(|a| a["fingerprint"].as_str().unwrap())
        .collect();
    fps.sort();
    let mut want = vec![
        format!("warning:{FLOOD_1}"),
        format!("warning:{LS}"),
        format!("warning:{FR}"),
    ];
    want.sort();
    assert_eq!(fps, want);
    let ls = alerts
        .iter()
        .find(|a| a["fingerprint"] == format!("warning:{LS}"))
        .unwrap();
    assert_eq!(
        (
            &ls["official"],
            &ls["level"],
            &ls["hazard"],
            &ls["villages"],
            &ls["state"]
        ),
        (
            &serde_json::json!(true),
            &serde_json::json!(2),
            &serde_json::json!("landslide"),
            &serde_json::json!(["nam-so"]),
            &serde_json::json!("firing")
        ),
        "{ls}"
    );
    let text = ls["message"].as_str().unwrap();
    for want in [
        "Bản Nậm Sỏ",
        "Đài Khí tượng Thủy văn tỉnh Lai Châu",
        "06:00 ngày 02/08/2026",
    ] {
        assert!(text.contains(want), "`{want}` not in: {text}");
    }
    let (status, bad) = b.get_status("/api/warnings?hazard=volcano").await;
    assert_eq!(
        (status, bad["error"]["code"].as_str()),
        (400, Some("invalid_hazard"))
    );
}

/// POST as an operator (the admin here): the raw response.
async fn post_cap(b: &Backend, ctype: &str, body: Vec<u8>) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!("{}/api/warnings", b.url))
        .bearer_auth(b.token().await)
        .header("content-type", ctype)
        .body(body)
        .send()
        .await
        .expect("POST /api/warnings");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn posted_bulletins_are_validated_stored_and_audited() {
    let (_broker, _dir, b) = kit::stack_with(SITE, &[]).await;
    let frost = fixture("vn-frost.xml");
    let (status, v) = post_cap(&b, "application/cap+xml", frost.clone()).await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["state"], "active");
    assert_eq!(v["origin"], "api");
    assert_eq!(v["villages"], serde_json::json!(["co-muong"]));
    // Again: stored before, counted once.
    let (status, v) = post_cap(&b, "application/xml; charset=utf-8", frost).await;
    assert_eq!((status, v["duplicate"].as_bool()), (200, Some(true)), "{v}");
    assert_eq!(v["deliveries"], 2);

    // A "Z" time is refused with the rule, in Vietnamese and English, and
    // the bulletin is kept as a dead letter.
    let z = String::from_utf8(fixture("vn-landslide.xml"))
        .unwrap()
        .replace("2026-08-02T06:00:00+07:00", "2026-08-01T23:00:00Z");
    let (status, v) = post_cap(&b, "application/cap+xml", z.into_bytes()).await;
    assert_eq!(status, 422, "{v}");
    assert_eq!(v["error"]["code"], "invalid_cap");
    assert_eq!(v["error"]["rule"], "time_format");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("định dạng thời gian"));
    let dead = dead_letters(&b).await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["topic"], "api/warnings");
    // Level out of range, end to end.
    let (status, v) = post_cap(
        &b,
        "application/cap+xml",
        fixture("vn-flash-flood-level-4.xml"),
    )
    .await;
    assert_eq!(
        (status, v["error"]["rule"].as_str()),
        (422, Some("risk_level_range")),
        "{v}"
    );
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("chỉ từ cấp 1 đến cấp 3"));
    // Not XML by its type.
    let (status, v) = post_cap(&b, "application/json", b"{}".to_vec()).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (415, Some("unsupported_media_type"))
    );
    // A viewer may read but not post.
    let (status, _) = {
        let admin = b.token().await;
        let r = reqwest::Client::new()
            .post(format!("{}/api/users", b.url))
            .bearer_auth(&admin)
            .json(&serde_json::json!({"username": "xem", "role": "viewer", "password": "mot-mat-khau-dai"}))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.status());
        let viewer = b.login("xem", "mot-mat-khau-dai").await;
        let r = reqwest::Client::new()
            .post(format!("{}/api/warnings", b.url))
            .bearer_auth(viewer)
            .header("content-type", "application/cap+xml")
            .body(fixture("vn-landslide.xml"))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), ())
    };
    assert_eq!(status, 403);
    // Audited: the accepted and the refused posts.
    let audit = b.get("/api/audit?action=warning_post").await;
    let text = audit.to_string();
    assert!(text.contains("SM-0001"), "{text}");
    assert!(text.contains("invalid_cap: time_format"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_warning_ends() {
    let (_broker, _dir, b) = kit::stack_with(SITE, &[]).await;
    let expires = (chrono::Utc::now() + chrono::Duration::seconds(2))
        .with_timezone(&chrono::FixedOffset::east_opt(7 * 3600).unwrap())
        .format("%Y-%m-%dT%H:%M:%S%:z")
        .to_string();
    let doc = String::from_utf8(fixture("vn-frost.xml")).unwrap().replace(
        "<senderName>",
        &format!("<expires>{expires}</expires><senderName>"),
    );
    let (status, v) = post_cap(&b, "application/cap+xml", doc.into_bytes()).await;
    assert_eq!((status, v["state"].as_str()), (201, Some("active")), "{v}");
    let id = v["id"].as_str().unwrap().to_owned();
    wait_state(&b, &id, "expired").await;
    // Written by the sweep, not only computed on read.
    b.wait_for("the sweep", WAIT, || {
        let b = &b;
        async move {
            let all = b.get("/api/warnings?hazard=frost").await;
            all["warnings"][0]["state"] == "expired"
        }
    })
    .await;
}

mod feed_server {
    //! A feed server on loopback: an Atom feed of CAP links with an ETag,
    //! that can be told to fail.

    use std::collections::HashMap;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    use axum::extract::{Path, State};
    use axum::http::{HeaderMap, StatusCode};
    use axum::response::{IntoResponse, Response};

    #[derive(Default)]
    pub struct Feed {
        pub failing: AtomicBool,
        /// Validate by `Last-Modified` (the first item of `content`)
        /// instead of an `ETag`.
        pub by_date: AtomicBool,
        /// (etag, entries as (id, file)).
        pub content: Mutex<(String, Vec<(String, String)>)>,
        pub feed_200: AtomicUsize,
        pub feed_304: AtomicUsize,
        pub feed_503: AtomicUsize,
        pub fetched: Mutex<HashMap<String, usize>>,
    }

    async fn feed(State(f): State<Arc<Feed>>, headers: HeaderMap) -> Response {
        if f.failing.load(Ordering::SeqCst) {
            f.feed_503.fetch_add(1, Ordering::SeqCst);
            return StatusCode::SERVICE_UNAVAILABLE.into_response();
        }
        let (etag, entries) = f.content.lock().unwrap().clone();
        let by_date = f.by_date.load(Ordering::SeqCst);
        let asked = if by_date {
            "if-modified-since"
        } else {
            "if-none-match"
        };
        if headers.get(asked).and_then(|v| v.to_str().ok()) == Some(etag.as_str()) {
            f.feed_304.fetch_add(1, Ordering::SeqCst);
            return StatusCode::NOT_MODIFIED.into_response();
        }
        f.feed_200.fetch_add(1, Ordering::SeqCst);
        let mut body = String::from(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<feed xmlns=\"http://www.w3.org/2005/Atom\"><title>KTTV Lai Châu</title>",
        );
        for (id, file) in entries.iter().rev() {
            body.push_str(&format!(
                "<entry><id>{id}</id><title>{file}</title><link rel=\"alternate\" type=\"application/cap+xml\" href=\"/cap/{file}\"/></entry>"
            ));
        }
        body.push_str("</feed>");
        (
            [
                (if by_date { "last-modified" } else { "etag" }, etag),
                ("content-type", "application/atom+xml".into()),
            ],
            body,
        )
            .into_response()
    }

    async fn cap(State(f): State<Arc<Feed>>, Path(file): Path<String>) -> Response {
        *f.fetched.lock().unwrap().entry(file.clone()).or_default() += 1;
        (
            [("content-type", "application/cap+xml")],
            super::fixture(&file),
        )
            .into_response()
    }

    pub async fn start(f: Arc<Feed>) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let app = axum::Router::new()
            .route("/feed.xml", axum::routing::get(feed))
            .route("/cap/{file}", axum::routing::get(cap))
            .with_state(f);
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        url
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_feed_poller_fetches_each_entry_once_through_outages() {
    use std::sync::atomic::Ordering;
    use std::sync::Arc;

    let f = Arc::new(feed_server::Feed::default());
    *f.content.lock().unwrap() = (
        "\"v1\"".into(),
        vec![
            ("urn:lq-1".into(), "vn-flash-flood-alert.xml".into()),
            ("urn:sl-7".into(), "vn-landslide.xml".into()),
        ],
    );
    let url = feed_server::start(Arc::clone(&f)).await;
    let site = format!(
        "{SITE}\n[[warnings.feeds]]\nname = \"kttv\"\nurl = \"{url}/feed.xml\"\ninterval_secs = 1\ntimeout_secs = 5\nmax_backoff_secs = 1\n"
    );
    let (_broker, _dir, b) = kit::stack_with(&site, &[]).await;

    let f1 = wait_state(&b, FLOOD_1, "active").await;
    assert_eq!(f1["origin"], "feed:kttv");
    wait_state(
        &b,
        "canhbao@kttv-laichau.example.vn|VN.LAICHAU.20260802T060000.SL-0007|2026-08-02T06:00:00+07:00",
        "active",
    )
    .await;
    // The next polls are conditional and answered 304.
    b.wait_for("a 304", WAIT, || {
        let f = Arc::clone(&f);
        async move { f.feed_304.load(Ordering::SeqCst) >= 2 }
    })
    .await;

    // An outage: retried, nothing lost.
    f.failing.store(true, Ordering::SeqCst);
    b.wait_for("retries during the outage", WAIT, || {
        let f = Arc::clone(&f);
        async move { f.feed_503.load(Ordering::SeqCst) >= 2 }
    })
    .await;
    // Back, with a new entry (the Update).
    {
        let mut c = f.content.lock().unwrap();
        c.0 = "\"v2\"".into();
        c.1.push(("urn:lq-2".into(), "vn-flash-flood-update.xml".into()));
    }
    f.failing.store(false, Ordering::SeqCst);
    wait_state(&b, FLOOD_2, "active").await;
    wait_state(&b, FLOOD_1, "updated").await;
    let n304 = f.feed_304.load(Ordering::SeqCst);
    b.wait_for("304s for v2", WAIT, || {
        let f = Arc::clone(&f);
        async move { f.feed_304.load(Ordering::SeqCst) >= n304 + 2 }
    })
    .await;

    // Each entry fetched exactly once; the feed downloaded in full only
    // when it changed (v1 once, v2 once).
    let fetched = f.fetched.lock().unwrap().clone();
    assert_eq!(fetched.len(), 3, "{fetched:?}");
    assert!(fetched.values().all(|n| *n == 1), "{fetched:?}");
    assert_eq!(f.feed_200.load(Ordering::SeqCst), 2);
    // Counted once in the store too.
    let f1 = wait_state(&b, FLOOD_1, "updated").await;
    assert_eq!(f1["deliveries"], 1);
}

/// The wall screen in Debian's headless Chromium: a new level-3 flash-flood
/// bulletin published on MQTT takes over the screen with its hazard, level,
/// villages (also ringed on the village map), issuer and issue time; the
/// time from the publish to the takeover is printed (the figure itself is
/// measured in `benches/warnings.rs`). An operator's acknowledgement shrinks
/// it to the strip; after a kill and restart of commune-ioc the warning is
/// still shown (read back from the store), still acknowledged; its Cancel
/// removes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_screen_shows_a_new_level_3_warning_and_its_villages() {
    use kit::browser::{Browser, BROWSER_SLOT};

    let _slot = BROWSER_SLOT.lock().await;
    let (broker, _dir, mut b) = kit::stack_with(SITE, &[]).await;
    let kiosk = b.kiosk_token("Màn hình kiểm thử cảnh báo").await;
    let browser = Browser::launch().await;
    let live = "document.body && document.body.dataset.conn === 'live' \
                && document.querySelector('#map [data-village=\"ta-pa\"]') !== null";
    browser
        .open(&format!("{}/?kiosk=1&token={kiosk}", b.url))
        .await;
    browser.wait_js(live, "the live screen").await;
    assert_eq!(
        browser
            .eval("document.getElementById('takeover').hidden")
            .await,
        true
    );

    // A new level-3 Alert (the Update fixture, as a first bulletin).
    let update = String::from_utf8(fixture("vn-flash-flood-update.xml")).unwrap();
    let refs = update
        .lines()
        .find(|l| l.contains("<references>"))
        .unwrap()
        .to_owned();
    let alert3 = update
        .replace("<msgType>Update</msgType>", "<msgType>Alert</msgType>")
        .replace(&format!("{refs}\n"), "");
    let mut p = Publisher::new(broker.port);
    let t0 = std::time::Instant::now();
    p.send(TOPIC, alert3.as_bytes()).await;
    browser
        .wait_js(
            "(() => { const t = document.getElementById('takeover'); \
              return !t.hidden && t.dataset.level === '3' \
                && document.querySelector('#map [data-village=\"phieng-lu\"][data-warning-level=\"3\"]') \
                && document.querySelector('#map [data-village=\"ta-pa\"][data-warning-level=\"3\"]'); })()",
            "the level-3 takeover and its villages ringed",
        )
        .await;
    println!(
        "publish → takeover with its villages: {} ms (debug binary, shared box; measured, not asserted)",
        t0.elapsed().as_millis()
    );
    let takeover = browser.text("#takeover").await;
    for want in [
        "Cảnh báo thiên tai",
        "Cấp độ 3 — rủi ro lớn",
        "Lũ quét",
        "Tà Pa",
        "Phiêng Lư",
        "Đài Khí tượng Thủy văn tỉnh Lai Châu",
        "12:30 ngày 14/07/2026",
        "Chưa xác nhận",
    ] {
        assert!(takeover.contains(want), "`{want}` not in: {takeover}");
    }
    assert_eq!(
        browser
            .eval("document.body.classList.contains('has-takeover')")
            .await,
        true
    );
    browser
        .wait_js(
            "document.getElementById('data-health').textContent.includes('Cảnh báo chưa xác nhận: 1')",
            "the unacknowledged alert counted in the footer",
        )
        .await;
    let untouched = browser
        .eval("document.querySelector('#map [data-village=\"nam-so\"]').getAttribute('data-warning-level')")
        .await;
    assert_eq!(untouched, Value::Null, "Bản Nậm Sỏ is not covered");

    // The operator acknowledges the warning's alert: the takeover goes, the
    // strip row stays, acknowledged.
    let fp = format!("warning:{FLOOD_2}");
    let alert_id = kit::wait_until("the warning's alert", WAIT, || {
        let b = &b;
        let fp = fp.clone();
        async move {
            let v = b.get("/api/alerts?kind=warning").await;
            v["items"]
                .as_array()
                .and_then(|a| a.iter().find(|a| a["fingerprint"] == fp.as_str()))
                .and_then(|a| a["id"].as_i64())
        }
    })
    .await;
    let r = reqwest::Client::new()
        .post(format!("{}/api/alerts/{}/ack", b.url, alert_id))
        .bearer_auth(b.token().await)
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let row = "#alerts .warning[data-level=\"3\"][data-ack=\"true\"]";
    browser
        .wait_js(
            &format!(
                "document.getElementById('takeover').hidden && document.querySelector('{row}')"
            ),
            "the takeover gone, the row acknowledged",
        )
        .await;
    assert!(browser.text(row).await.contains("Đã xác nhận · admin"));
    // The footer's alert indicators: nothing unacknowledged any more, and
    // the median time to acknowledge.
    browser
        .wait_js(
            "document.getElementById('data-health').textContent.includes('Thời gian xác nhận cảnh báo (trung vị 30 ngày): ')",
            "the time to acknowledge in the footer",
        )
        .await;
    assert!(!browser
        .text("#data-health")
        .await
        .contains("Cảnh báo chưa xác nhận"));

    // A crash and a restart: the warning in force is shown again.
    b.restart();
    b.wait_ready().await;
    browser
        .open(&format!("{}/?kiosk=1&token={kiosk}", b.url))
        .await;
    browser
        .wait_js(live, "the live screen after the restart")
        .await;
    browser
        .wait_js(
            &format!(
                "document.querySelector('{row}') && document.getElementById('takeover').hidden"
            ),
            "the acknowledged warning after the restart",
        )
        .await;
    assert!(browser.text(row).await.contains("Phiêng Lư"));

    // Its Cancel removes it, from the strip and the map.
    let cancel = String::from_utf8(fixture("vn-flash-flood-cancel.xml"))
        .unwrap()
        .replace(
            "canhbao@kttv-laichau.example.vn,VN.LAICHAU.20260714T093000.LQ-0001,2026-07-14T09:30:00+07:00 ",
            "",
        );
    p.send(TOPIC, cancel.as_bytes()).await;
    browser
        .wait_js(
            "document.getElementById('alerts').hidden \
             && !document.querySelector('#map [data-warning-level]')",
            "the cancelled warning gone",
        )
        .await;
    let problems = browser.problems();
    browser.close().await;
    assert!(problems.is_empty(), "{problems:?}");
}

/// Every rule of the validator, broken once in a bulletin published on
/// MQTT to the real binary: each one is refused as a dead letter
/// `invalid_cap` whose detail names its rule, and nothing of any of them
/// is stored or raised.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_schema_violation_is_a_dead_letter_naming_its_rule() {
    // A small size limit, so `too_large` fits in an MQTT packet.
    let site = SITE.replace("sweep_secs = 1", "sweep_secs = 1\nmax_bytes = 8192");
    let (broker, _dir, b) = kit::stack_with(&site, &[]).await;
    let base = String::from_utf8(fixture("vn-frost.xml")).unwrap();
    let area = "<areaDesc>BẢN CÒ MƯƠNG và các bản vùng cao</areaDesc>";
    let edit = |from: &str, to: &str| -> Vec<u8> {
        assert!(base.contains(from), "`{from}` not in vn-frost.xml");
        base.replacen(from, to, 1).into_bytes()
    };
    let mut not_utf8 = base.clone().into_bytes();
    let ou = "ươ".as_bytes();
    let at = not_utf8.windows(ou.len()).position(|w| w == ou).unwrap();
    not_utf8[at] = 0xff;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("too_large", edit("</alert>", &format!("<!--{}--></alert>", "x".repeat(9000)))),
        ("not_utf8", not_utf8),
        ("xml", edit("</alert>", "</alrt>")),
        ("not_cap_1_2", edit("cap:1.2", "cap:1.1")),
        ("required_element", edit("<event>Sương muối</event>", "")),
        (
            "cardinality",
            edit("<msgType>Alert</msgType>", "<msgType>Alert</msgType><msgType>Alert</msgType>"),
        ),
        ("unexpected_element", edit("<scope>Public</scope>", "<scope>Public</scope><mau>do</mau>")),
        ("empty_element", edit("<event>Sương muối</event>", "<event>  </event>")),
        ("enumeration", edit("<urgency>Expected</urgency>", "<urgency>expected</urgency>")),
        ("time_format", edit("2026-12-20T05:00:00+07:00", "2026-12-19T22:00:00Z")),
        ("id_characters", edit("SM-0001</identifier>", "SM 0001</identifier>")),
        ("scope_requires", edit("<scope>Public</scope>", "<scope>Private</scope>")),
        (
            "references_syntax",
            edit("<scope>Public</scope>", "<scope>Public</scope><references>canhbao@kttv-laichau.example.vn,SM-0000</references>"),
        ),
        ("references_required", edit("<msgType>Alert</msgType>", "<msgType>Cancel</msgType>")),
        (
            "polygon",
            edit(area, &format!("{area}<polygon>22.28,103.18 22.32,103.18 22.32,103.22 22.28,103.22</polygon>")),
        ),
        ("circle", edit(area, &format!("{area}<circle>22.35,103.26</circle>"))),
        ("number", edit(area, &format!("{area}<altitude>cao</altitude>"))),
        ("risk_level_value", edit("<value>1</value>", "<value>mot</value>")),
        ("risk_level_range", edit("<value>1</value>", "<value>4</value>")),
    ];
    let mut p = Publisher::new(broker.port);
    for (_, doc) in &cases {
        p.send(TOPIC, doc).await;
    }
    let n = cases.len();
    b.wait_for("a dead letter per rule", WAIT, || {
        let b = &b;
        async move { dead_letters(b).await.len() >= n }
    })
    .await;
    let dead = dead_letters(&b).await;
    assert_eq!(dead.len(), cases.len(), "{dead:#?}");
    let mut rules: Vec<String> = dead
        .iter()
        .map(|d| {
            assert_eq!(d["topic"], TOPIC);
            let detail = d["detail"].as_str().unwrap();
            detail
                .strip_prefix("CAP rule `")
                .and_then(|r| r.split('`').next())
                .unwrap_or_else(|| panic!("the detail names no rule: {detail}"))
                .to_owned()
        })
        .collect();
    rules.sort();
    let mut want: Vec<&str> = cases.iter().map(|(r, _)| *r).collect();
    want.sort();
    assert_eq!(rules, want);
    // Nothing of them applied: no warning, no alert.
    assert_eq!(
        b.get("/api/warnings").await["warnings"],
        serde_json::json!([])
    );
    assert_eq!(b.get("/api/alerts").await["items"], serde_json::json!([]));
    let by_reason = b.scrape().await.by_label("ioc_dead_letters_total");
    assert!(
        by_reason.contains(&("reason=\"invalid_cap\"".to_owned(), n as f64)),
        "{by_reason:?}"
    );
    // The untouched bulletin is still accepted after all of them.
    p.send(TOPIC, base.as_bytes()).await;
    wait_state(
        &b,
        "canhbao@kttv-laichau.example.vn|VN.LAICHAU.20261220T050000.SM-0001|2026-12-20T05:00:00+07:00",
        "active",
    )
    .await;
}

/// The same with `Last-Modified` / `If-Modified-Since`, across a kill and
/// restart of commune-ioc: the validator and the entries fetched are kept
/// in the store, so the first poll after the restart is conditional (304)
/// and no entry is fetched twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_feed_poller_uses_last_modified_and_remembers_across_a_restart() {
    use std::sync::atomic::Ordering;
    use std::sync::Arc;

    let f = Arc::new(feed_server::Feed::default());
    f.by_date.store(true, Ordering::SeqCst);
    *f.content.lock().unwrap() = (
        "Tue, 14 Jul 2026 02:30:00 GMT".into(),
        vec![("urn:lq-1".into(), "vn-flash-flood-alert.xml".into())],
    );
    let url = feed_server::start(Arc::clone(&f)).await;
    let site = format!(
        "{SITE}\n[[warnings.feeds]]\nname = \"kttv\"\nurl = \"{url}/feed.xml\"\ninterval_secs = 1\ntimeout_secs = 5\nmax_backoff_secs = 1\n"
    );
    let (_broker, _dir, mut b) = kit::stack_with(&site, &[]).await;
    wait_state(&b, FLOOD_1, "active").await;
    b.wait_for("a 304", WAIT, || {
        let f = Arc::clone(&f);
        async move { f.feed_304.load(Ordering::SeqCst) >= 1 }
    })
    .await;

    b.restart();
    b.wait_ready().await;
    let n304 = f.feed_304.load(Ordering::SeqCst);
    b.wait_for("a 304 after the restart", WAIT, || {
        let f = Arc::clone(&f);
        async move { f.feed_304.load(Ordering::SeqCst) > n304 }
    })
    .await;
    assert_eq!(
        f.feed_200.load(Ordering::SeqCst),
        1,
        "downloaded in full once"
    );

    // A new entry, a new date: fetched; the old one still not again.
    {
        let mut c = f.content.lock().unwrap();
        c.0 = "Sun, 02 Aug 2026 00:00:00 GMT".into();
        c.1.push(("urn:sl-7".into(), "vn-landslide.xml".into()));
    }
    wait_state(
        &b,
        "canhbao@kttv-laichau.example.vn|VN.LAICHAU.20260802T060000.SL-0007|2026-08-02T06:00:00+07:00",
        "active",
    )
    .await;
    let fetched = f.fetched.lock().unwrap().clone();
    assert_eq!(fetched.len(), 2, "{fetched:?}");
    assert!(fetched.values().all(|n| *n == 1), "{fetched:?}");
    assert_eq!(wait_state(&b, FLOOD_1, "active").await["deliveries"], 1);
}
