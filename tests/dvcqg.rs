//! The one-stop software's national-portal sync (Cổng DVCQG:
//! `DongBoHoSoMC`, `CapNhatTienDoHoSoMC`) end to end: a real Mosquitto and
//! the real binary, over MQTT `ioc/{commune}/procedure/dvcqg` and the HTTP
//! push `POST /api/procedure/dvcqg` with its own token. The messages are
//! written here with the shapes the portal's adapter receives (dates
//! `yyyyMMddHHmmss` in Vietnam time, `""` when absent, codes as strings).

mod kit;

use std::time::Duration;

use chrono::{DateTime, Duration as Span, Utc};
use futures_util::StreamExt;
use kit::{Backend, Publisher};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

const TOPIC: &str = "ioc/binh-lu/procedure/dvcqg";
const WAIT: Duration = Duration::from_secs(20);

/// A time as the portal sync writes it: `yyyyMMddHHmmss`, Vietnam time.
fn vn(t: DateTime<Utc>) -> String {
    t.with_timezone(&chrono_tz::Asia::Ho_Chi_Minh)
        .format("%Y%m%d%H%M%S")
        .to_string()
}

/// Minutes ago, as the sync writes it (minutes, not days: the test stays
/// inside the current report period).
fn ago(m: i64) -> String {
    vn(Utc::now() - Span::minutes(m))
}

/// A dossier object of `DongBoHoSoMC`, with the fields the one-stop
/// software fills in even when empty.
fn dossier(id: &str, hinh_thuc: &str, status: &str) -> Value {
    json!({
        "MaHoSo": id,
        "MaTTHC": "1.004227",
        "TenTTHC": "Đăng ký khai sinh",
        "MaLinhVuc": "G09-TP01",
        "TenLinhVuc": "Hộ tịch",
        "ChuHoSo": "Lò Văn Pấng",
        "LoaiDoiTuong": "1",
        "MaDoiTuong": "",
        "ThongTinKhac": "",
        "Email": "",
        "Fax": "",
        "SoDienThoai": "0912345678",
        "TrichYeuHoSo": "Đăng ký khai sinh cho con",
        "NgayTiepNhan": ago(50),
        "NgayHenTra": ago(20),
        "TrangThaiHoSo": status,
        "NgayTra": "",
        "ThongTinTra": "",
        "HinhThuc": hinh_thuc,
        "NgayKetThucXuLy": "",
        "DonViXuLy": "UBND xã Bình Lư",
        "GhiChu": "",
        "TaiLieuNop": [],
        "DanhSachLePhi": [],
        "DanhSachTepDinhKemKhac": [],
        "DanhSachHoSoBoSung": [],
        "DanhSachGiayToKetQua": []
    })
}

fn fee(code: &str, price: &str) -> Value {
    json!({"TenPhiLePhi": "Lệ phí hộ tịch", "MaPhiLePhi": "LP01", "HinhThucThu": code, "Gia": price, "LoaiPhiLePhi": "1"})
}

fn sync(data: Vec<Value>) -> Vec<u8> {
    json!({"session": "phiên-của-cổng", "madonvi": "000.00.21.H37", "service": "DongBoHoSoMC", "isUpdating": "False", "data": data})
        .to_string()
        .into_bytes()
}

async fn wait_near(b: &Backend, id: &str, want: f64) {
    let what = format!("{id} = {want}");
    b.wait_for(&what, WAIT, || async {
        let v = b.indicator(id, "month", "commune").await;
        v["value"].as_f64().is_some_and(|x| (x - want).abs() < 0.01)
    })
    .await;
}

async fn value(b: &Backend, id: &str) -> Option<f64> {
    b.indicator(id, "month", "commune").await["value"].as_f64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn received_resolved_and_paid_count_once_per_step_however_often_resent() {
    let (broker, _dir, b) = kit::stack().await;
    let mut p = Publisher::new(broker.port);

    // A: online, being processed, fee paid online.
    let mut a = dossier("000.00.21.H37-261201-0001", "1", "4");
    a["DanhSachLePhi"] = json!([fee("2", "8.000")]);
    // B: direct, resolved before the due date (on time), fee in cash.
    let mut b_ = dossier("000.00.21.H37-261201-0002", "0", "9");
    b_["NgayKetThucXuLy"] = Value::from(ago(30));
    b_["DanhSachLePhi"] = json!([fee("1", "8000"), fee("1", "0")]);
    // C: direct, returned after the due date (late), free.
    let mut c = dossier("000.00.21.H37-261201-0003", "0", "10");
    c["NgayTra"] = Value::from(ago(10));
    // D: online, submitted but not yet received: nothing counts.
    let d = dossier("000.00.21.H37-261201-0004", "1", "1");
    // E: online, received.
    let e = dossier("000.00.21.H37-261201-0005", "1", "2");
    let first = sync(vec![a.clone(), b_.clone(), c.clone(), d.clone(), e.clone()]);
    p.send(TOPIC, &first).await;

    b.wait_value("dossiers_received", "month", "commune", 4.0)
        .await;
    wait_near(&b, "dossier_online_ratio", 50.0).await; // A, E of A, B, C, E
    wait_near(&b, "dossier_direct_ratio", 50.0).await;
    wait_near(&b, "dossier_on_time_ratio", 50.0).await; // B on time, C late
    wait_near(&b, "dossier_online_payment_ratio", 50.0).await; // A online, B cash

    // The portal sync re-sends on every update: the same message again,
    // then A resolved on time and D received, each re-sent twice, and a
    // progress update of A.
    p.send(TOPIC, &first).await;
    a["TrangThaiHoSo"] = Value::from("9");
    a["NgayKetThucXuLy"] = Value::from(ago(30));
    let mut d2 = d.clone();
    d2["TrangThaiHoSo"] = Value::from("2");
    let update = sync(vec![
        a.clone(),
        b_.clone(),
        c.clone(),
        d2.clone(),
        e.clone(),
    ]);
    p.send(TOPIC, &update).await;
    p.send(TOPIC, &update).await;
    let progress = json!({"service": "CapNhatTienDoHoSoMC", "data": [{
        "MaHoSo": "000.00.21.H37-261201-0001", "NguoiXuLy": "Nguyễn Thị Hoa", "ChucDanh": "",
        "ThoiDiemXuLy": ago(30), "PhongBanXuLy": "", "NoiDungXuLy": "Trả kết quả",
        "TrangThai": "9", "NgayBatDau": "", "NgayKetThucTheoQuyDinh": ""}]});
    p.send(TOPIC, progress.to_string().as_bytes()).await;
    p.send(TOPIC, progress.to_string().as_bytes()).await;

    b.wait_value("dossiers_received", "month", "commune", 5.0)
        .await;
    // A on time too: 2 of 3 resolved on time.
    wait_near(&b, "dossier_on_time_ratio", 200.0 / 3.0).await;
    // Every message is accounted for and nothing was refused: 4 + 2 + 2
    // sends all committed or recognised as duplicates.
    let s = b.scrape().await;
    assert_eq!(s.dead(), 0, "no dead letter");
    assert_eq!(value(&b, "dossier_online_payment_ratio").await, Some(50.0));
    assert_eq!(value(&b, "dossier_online_ratio").await, Some(60.0)); // A, D, E of 5

    // The journal: one row per dossier and step. Lifecycle events: A
    // received/paid/resolved, B received/paid/resolved, C received/resolved,
    // D received, E received = 10; progress: one per dossier and status
    // (A 4, A 9, B 9, C 10, D 1, D 2, E 2) = 7.
    b.wait_for("17 events committed", WAIT, || async {
        b.scrape().await.committed() == 17
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_objects_are_dead_letters_naming_the_dossier_and_the_field_good_ones_count() {
    let (broker, _dir, b) = kit::stack().await;
    let mut p = Publisher::new(broker.port);
    let good1 = dossier("HS-TOT-1", "1", "2");
    let mut bad_date = dossier("HS-LOI-NGAY", "1", "2");
    bad_date["NgayTiepNhan"] = Value::from("2026-12-01 08:00");
    let bad_status = dossier("HS-LOI-TRANG-THAI", "0", "99");
    let mut bad_due = dossier("HS-LOI-HAN", "0", "9");
    bad_due["NgayKetThucXuLy"] = Value::from(ago(10));
    bad_due["NgayHenTra"] = Value::from("");
    let good2 = dossier("HS-TOT-2", "0", "4");
    p.send(
        TOPIC,
        &sync(vec![good1, bad_date, bad_status, bad_due, good2]),
    )
    .await;

    b.wait_value("dossiers_received", "month", "commune", 2.0)
        .await;
    b.wait_value("dead_letters", "month", "commune", 3.0).await;
    let list = b.get("/api/dead-letters?limit=10").await;
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 3, "{list}");
    let find = |id: &str| {
        items
            .iter()
            .find(|i| i["detail"].as_str().unwrap_or("").contains(id))
            .unwrap_or_else(|| panic!("no dead letter names {id}: {list}"))
            .clone()
    };
    let d = find("HS-LOI-NGAY");
    assert_eq!(d["reason"], "invalid_timestamp");
    let detail = d["detail"].as_str().unwrap();
    assert!(
        detail.contains("Hồ sơ HS-LOI-NGAY") && detail.contains("NgayTiepNhan"),
        "{detail}"
    );
    assert!(detail.contains("2026-12-01 08:00") && detail.contains("yyyyMMddHHmmss"));
    assert!(detail.contains("giờ Việt Nam"), "Vietnamese: {detail}");
    // The dead letter keeps the whole object, and only it.
    let excerpt = d["excerpt"].as_str().unwrap();
    assert!(
        excerpt.contains("\"service\":\"DongBoHoSoMC\""),
        "{excerpt}"
    );
    assert!(excerpt.contains("Lò Văn Pấng"), "{excerpt}");
    assert!(!excerpt.contains("HS-TOT-1") && !excerpt.contains("HS-LOI-HAN"));
    assert_eq!(d["topic"], TOPIC);

    let s = find("HS-LOI-TRANG-THAI");
    assert_eq!(s["reason"], "invalid_field");
    let detail = s["detail"].as_str().unwrap();
    assert!(
        detail.contains("TrangThaiHoSo")
            && detail.contains("\"99\"")
            && detail.contains("[procedure.dvcqg.status]"),
        "{detail}"
    );
    let h = find("HS-LOI-HAN");
    assert_eq!(h["reason"], "missing_field");
    assert!(h["detail"].as_str().unwrap().contains("NgayHenTra"), "{h}");

    // A message bad as a whole is one dead letter, in Vietnamese too.
    p.send(TOPIC, br#"{"service":"DongBoHoSoMC"}"#).await;
    b.wait_value("dead_letters", "month", "commune", 4.0).await;
    let list = b.get("/api/dead-letters?limit=1").await;
    assert_eq!(list["items"][0]["reason"], "missing_field");
    assert!(
        list["items"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("thiếu danh sách data[]"),
        "{list}"
    );
    assert_eq!(value(&b, "dossiers_received").await, Some(2.0));
}

/// A request with an optional bearer token: status and JSON body.
async fn call(
    b: &Backend,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Vec<u8>>,
) -> (StatusCode, Value) {
    let mut req = reqwest::Client::new().request(method, format!("{}{path}", b.url));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(body) = body {
        req = req.header("content-type", "application/json").body(body);
    }
    let r = req.send().await.expect("request");
    let status = r.status();
    let text = r.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_push_takes_its_own_token_and_that_token_nothing_else() {
    let (_broker, _dir, b) = kit::stack().await;
    let admin = b.token().await;
    let (s, v) = call(
        &b,
        Method::POST,
        "/api/auth/push-tokens",
        Some(&admin),
        Some(
            json!({"label": "Phần mềm một cửa"})
                .to_string()
                .into_bytes(),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let push = v["token"].as_str().unwrap().to_owned();
    assert!(push.starts_with("ioc_p_"));
    let id = v["push"]["id"].as_i64().unwrap();

    // The push, answered after the commit, per object.
    let mut a = dossier("HS-HTTP-1", "1", "9");
    a["NgayKetThucXuLy"] = Value::from(ago(30));
    a["DanhSachLePhi"] = json!([fee("2", "25000")]);
    let bad = {
        let mut x = dossier("HS-HTTP-LOI", "1", "2");
        x["NgayTiepNhan"] = Value::from("31/11/2026");
        x
    };
    let (s, v) = call(
        &b,
        Method::POST,
        "/api/procedure/dvcqg",
        Some(&push),
        Some(sync(vec![a.clone()])),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["error_code"], 0, "{v}");
    assert_eq!(v["result"][0]["MaHoSo"], "HS-HTTP-1");
    assert_eq!(v["result"][0]["accepted"], true);
    let mut events: Vec<&str> = v["result"][0]["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    events.sort_unstable();
    assert_eq!(events, ["paid", "progress", "received", "resolved"]);
    // The indicators follow the commit (the live view is updated right
    // after the acknowledgement).
    b.wait_value("dossiers_received", "month", "commune", 1.0)
        .await;
    wait_near(&b, "dossier_on_time_ratio", 100.0).await;
    wait_near(&b, "dossier_online_payment_ratio", 100.0).await;

    // Mixed: the good one counts, the bad one is named.
    let (s, v) = call(
        &b,
        Method::POST,
        "/api/procedure/dvcqg",
        Some(&push),
        Some(sync(vec![dossier("HS-HTTP-2", "0", "4"), bad])),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["error_code"], 1, "{v}");
    assert_eq!(v["result"][0]["accepted"], true);
    assert_eq!(v["result"][1]["MaHoSo"], "HS-HTTP-LOI");
    assert_eq!(v["result"][1]["accepted"], false);
    assert_eq!(v["result"][1]["reason"], "invalid_timestamp");
    let m = v["result"][1]["message"].as_str().unwrap();
    assert!(
        m.contains("Hồ sơ HS-HTTP-LOI") && m.contains("NgayTiepNhan"),
        "{m}"
    );
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("1 hồ sơ bị từ chối"),
        "{v}"
    );
    // Answered after the commit: the journal already holds the dead letter.
    let dead = b.get("/api/dead-letters?limit=1").await;
    assert!(
        dead["items"][0]["detail"]
            .as_str()
            .unwrap_or("")
            .contains("HS-HTTP-LOI"),
        "{dead}"
    );
    b.wait_value("dossiers_received", "month", "commune", 2.0)
        .await;

    // Bad as a whole: 422, kept as a dead letter.
    let (s, v) = call(
        &b,
        Method::POST,
        "/api/procedure/dvcqg",
        Some(&push),
        Some(b"{\"service\":\"LayThuTuc\",\"data\":[]}".to_vec()),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(
        (v["error_code"].as_i64(), v["reason"].as_str()),
        (Some(1), Some("invalid_field"))
    );
    assert!(v["message"].as_str().unwrap().contains("LayThuTuc"), "{v}");
    let dead = b.get("/api/dead-letters?limit=1").await;
    assert!(
        dead["items"][0]["excerpt"]
            .as_str()
            .unwrap_or("")
            .contains("LayThuTuc"),
        "{dead}"
    );
    b.wait_value("dead_letters", "month", "commune", 2.0).await;

    // The push token can do nothing else: no read, no action, no admin,
    // no live stream.
    for (m, path) in [
        (Method::GET, "/api/indicators"),
        (Method::GET, "/api/dead-letters"),
        (Method::GET, "/api/auth/me"),
        (Method::POST, "/api/dead-letters/1/ack"),
        (Method::GET, "/api/users"),
        (Method::GET, "/api/auth/push-tokens"),
    ] {
        let (s, v) = call(&b, m.clone(), path, Some(&push), None).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "push token on {m} {path}: {v}");
    }
    let url = format!(
        "{}/api/ws?token={push}",
        b.url.replacen("http://", "ws://", 1)
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let first = tokio::time::timeout(WAIT, ws.next())
        .await
        .expect("a frame");
    match first {
        Some(Ok(Message::Text(t))) => {
            let v: Value = serde_json::from_str(t.as_str()).unwrap();
            assert_eq!(v["code"], "unauthorized", "{v}");
        }
        other => panic!("expected an error frame, got {other:?}"),
    }

    // And no session may push, whatever its role: not even the admin.
    let (s, _) = call(
        &b,
        Method::POST,
        "/api/procedure/dvcqg",
        Some(&admin),
        Some(sync(vec![dossier("HS-ADMIN", "1", "2")])),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let kiosk = b.kiosk_token("Màn hình").await;
    let (s, _) = call(
        &b,
        Method::POST,
        "/api/procedure/dvcqg",
        Some(&kiosk),
        Some(sync(vec![dossier("HS-KIOSK", "1", "2")])),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = call(
        &b,
        Method::POST,
        "/api/procedure/dvcqg",
        None,
        Some(sync(vec![dossier("HS-ANON", "1", "2")])),
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(value(&b, "dossiers_received").await, Some(2.0));
    // Refusals are audited.
    let log = b.get("/api/audit?action=forbidden").await;
    assert!(
        log.as_array()
            .unwrap()
            .iter()
            .any(|e| e["actor"] == "admin" && e["object"] == "POST /api/procedure/dvcqg"),
        "{log}"
    );

    // Revoked: refused.
    let (s, _) = call(
        &b,
        Method::DELETE,
        &format!("/api/auth/push-tokens/{id}"),
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = call(
        &b,
        Method::POST,
        "/api/procedure/dvcqg",
        Some(&push),
        Some(sync(vec![dossier("HS-REVOKED", "1", "2")])),
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
}
