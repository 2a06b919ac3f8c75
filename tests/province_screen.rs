//! The province wall screen (`/province/`, dashboards/province) in a real
//! browser: Debian's headless Chromium against real province instances
//! (`commune-ioc serve --sites`) reading a real nats-server, fed by
//! simulated communes that publish their journals into JetStream exactly
//! as a commune's uplink does (tests/kit/province.rs). Screenshots go to
//! `target/screenshots/province-*.png`.

mod kit;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use async_nats::jetstream;
use chrono::Utc;
use commune_ioc::vocab::RiskLevel;
use commune_ioc::warnings::{WarningState, WarningView};
use kit::browser::{Browser, BROWSER_SLOT};
use kit::nats::{create_journal_stream, Nats};
use kit::province::{
    caught_up, closed_period, public_key, sealed_report, site_of, write_sites, Province,
    ProvinceConf, SimCommune, SiteSpec, Want,
};
use serde_json::Value;

/// Generous: a province in a debug build on a shared two-core box.
const CATCH_UP: Duration = Duration::from_secs(60);

/// Every tile inside its panel and the viewport, every part of a tile
/// inside it (nothing cut off but ellipsised text), no scroll bar, and the
/// smallest text as drawn.
const LAYOUT_CHECK: &str = r##"(() => {
  const out = [], box = (e) => e.getBoundingClientRect();
  const inside = (r, o, what) => {
    if (r.width < 1 || r.height < 1 || r.left < o.left - 0.5 || r.top < o.top - 0.5
        || r.right > o.right + 0.5 || r.bottom > o.bottom + 0.5)
      out.push(`${what} ${Math.round(r.left)},${Math.round(r.top)} ${Math.round(r.width)}×${Math.round(r.height)}`);
  };
  const view = { left: 0, top: 0, right: innerWidth, bottom: innerHeight };
  for (const sel of ["header.top", ".panel.pmap", ".panel.sites", "footer.bottom"]) inside(box(document.querySelector(sel)), view, sel);
  const panel = box(document.getElementById("site-tiles"));
  document.querySelectorAll("#site-tiles a.site").forEach((t, i) => {
    inside(box(t), panel, `tile ${t.dataset.site}`);
    for (const c of t.children) if (c.textContent.trim()) inside(box(c), box(t), `tile ${t.dataset.site} .${c.className}`);
  });
  document.querySelectorAll(".count").forEach((c, i) => inside(box(c), box(document.querySelector("header.top")), `count ${i}`));
  const d = document.documentElement;
  if (d.scrollWidth > innerWidth || d.scrollHeight > innerHeight) out.push(`scrolls: ${d.scrollWidth}×${d.scrollHeight}`);
  const zoom = Number(document.body.style.zoom) || 1;
  let smallest = Infinity, at = "";
  for (const e of document.querySelectorAll("body *")) {
    if (![...e.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim())) continue;
    const r = box(e);
    if (r.width < 1 || r.height < 1 || r.bottom > innerHeight || r.right > innerWidth) continue;
    if (e.closest("[hidden]")) continue;
    const px = parseFloat(getComputedStyle(e).fontSize)
      * (e instanceof SVGGraphicsElement ? e.getScreenCTM().a : zoom);
    if (px < smallest) { smallest = px; at = `${e.tagName.toLowerCase()}.${e.getAttribute("class") || ""} "${e.textContent.trim().slice(0, 30)}"`; }
  }
  return { out, smallest: Math.round(smallest * 10) / 10, at, tiles: document.querySelectorAll("#site-tiles a.site").length };
})()"##;

/// A number as the page writes it (vi-VN, at most one decimal): 87,5; 90.
fn vn1(v: f64) -> String {
    let s = format!("{:.1}", v);
    let s = s.strip_suffix(".0").unwrap_or(&s).to_string();
    s.replace('.', ",")
}

/// An official warning in force of `level` for the commune's first
/// village, as the commune journals it (`warning` entry, the WarningView).
fn warning_body(id: &str, level: u8) -> Vec<u8> {
    let now = Utc::now().fixed_offset();
    let w = WarningView {
        id: format!("kttv-laichau|{id}|{}", now.to_rfc3339()),
        state: WarningState::Active,
        hazard: None,
        level: RiskLevel::new(level),
        villages: vec!["ban-1".into()],
        event: "Lũ quét, sạt lở đất".into(),
        headline_vi: Some("Cảnh báo lũ quét, sạt lở đất".into()),
        sender_name: Some("Đài Khí tượng Thủy văn tỉnh Lai Châu".into()),
        sent: now,
        expires: None,
        supersedes: None,
    };
    serde_json::to_vec(&w).expect("a warning serializes")
}

/// A commune whose last entries were journaled `ago` before now (its link
/// has been down that long).
async fn publish_old(
    js: &jetstream::Context,
    sim: &mut SimCommune,
    n: usize,
    ago: chrono::Duration,
) {
    let at = (Utc::now() - ago).timestamp_millis();
    let seqs: Vec<i64> = (0..n)
        .map(|_| {
            let seq = sim.make().seq;
            sim.entries.get_mut(&seq).expect("made").at_ms = at;
            seq
        })
        .collect();
    sim.publish_made(js, &seqs).await.expect("publish");
}

async fn publish_warning(js: &jetstream::Context, sim: &mut SimCommune, level: u8) {
    let seq = sim
        .make_body(
            "warning",
            warning_body(&format!("{}-{level}", sim.id), level),
        )
        .seq;
    sim.publish_made(js, &[seq])
        .await
        .expect("publish a warning");
}

async fn jetstream_of(nats: &Nats) -> jetstream::Context {
    let js = jetstream::new(nats.client().await);
    create_journal_stream(&js, 1).await;
    js
}

/// `n` communes: their site files, a NATS server with the journal stream,
/// and each commune's first `per` entries in it.
struct Fleet {
    dir: tempfile::TempDir,
    sites: std::path::PathBuf,
    nats: Nats,
    js: jetstream::Context,
    sims: Vec<SimCommune>,
}

async fn fleet(n: usize, per: usize) -> Fleet {
    let dir = tempfile::tempdir().expect("temp dir");
    let sites = dir.path().join("sites");
    write_sites(&sites, &SiteSpec::many(n), &BTreeMap::new());
    let nats = Nats::start();
    let js = jetstream_of(&nats).await;
    let mut sims: Vec<SimCommune> = SiteSpec::many(n)
        .iter()
        .map(|s| SimCommune::new(&s.id))
        .collect();
    for sim in sims.iter_mut() {
        sim.publish(&js, per).await.unwrap();
    }
    Fleet {
        dir,
        sites,
        nats,
        js,
        sims,
    }
}

async fn wait_caught_up(p: &Province, sims: &[SimCommune]) -> Value {
    let want: BTreeMap<String, Want> = sims.iter().map(|s| (s.id.clone(), Want::of(s))).collect();
    p.wait("every commune caught up", CATCH_UP, &|v| {
        caught_up(v, &want)
    })
    .await
}

/// The computed fill of a commune's dot on the map.
async fn dot_fill(b: &Browser, id: &str) -> String {
    b.eval(&format!(
        "(() => {{ const d = document.querySelector('.site-dot[data-site=\"{id}\"] .dot'); return d ? getComputedStyle(d).fill : null; }})()"
    ))
    .await
    .as_str()
    .unwrap_or("<missing>")
    .to_string()
}

fn tile(id: &str) -> String {
    format!("a.site[data-site=\"{id}\"]")
}

fn only_loopback(b: &Browser) {
    let away: Vec<String> = b
        .requests()
        .into_iter()
        .filter(|u| {
            !(u.starts_with("http://127.0.0.1:")
                || u.starts_with("ws://127.0.0.1:")
                || u.starts_with("data:")
                || u == "about:blank")
        })
        .collect();
    assert!(away.is_empty(), "requests leaving the box: {away:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wall_shows_every_commune_its_lag_warnings_and_gaps_and_opens_its_own_screen() {
    let _slot = BROWSER_SLOT.lock().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let sites = dir.path().join("sites");
    // Lai Châu's 38 communes, and one whose site file does not load.
    let specs = SiteSpec::many(38);
    // xa-006 and xa-007 send this period's sealed report: xa-006 signed
    // with its own key, xa-007's signed with another (a forgery).
    let keys_dir = dir.path().join("keys");
    let key_file = |name: &str| keys_dir.join(format!("{name}.key"));
    let keys: BTreeMap<String, String> = [
        ("xa-006".to_string(), public_key(&key_file("xa-006"))),
        ("xa-007".to_string(), public_key(&key_file("xa-007"))),
    ]
    .into();
    write_sites(&sites, &specs, &keys);
    let period = closed_period();
    std::fs::write(sites.join("xa-099.toml"), "[commune\nid = \"xa-099\"\n").unwrap();
    let nats = Nats::start();
    let js = jetstream_of(&nats).await;
    let mut sims: Vec<SimCommune> = specs.iter().map(|s| SimCommune::new(&s.id)).collect();
    for (i, sim) in sims.iter_mut().enumerate() {
        match i {
            // xa-002: nothing for two hours and five minutes.
            1 => publish_old(&js, sim, 12, chrono::Duration::minutes(125)).await,
            // xa-003: a level-3 warning in force; xa-004: level 4.
            2 | 3 => {
                sim.publish(&js, 12).await.unwrap();
                publish_warning(&js, sim, i as u8 + 1).await;
            }
            // xa-005: three entries never arrive (a gap).
            4 => {
                sim.publish(&js, 6).await.unwrap();
                sim.skip(3);
                sim.publish(&js, 6).await.unwrap();
            }
            5 | 6 => {
                sim.publish(&js, 12).await.unwrap();
                let signer = if i == 5 { "xa-006" } else { "forger" };
                let body = sealed_report(
                    &specs[i],
                    &dir.path().join(format!("seal-{i}")),
                    &key_file(signer),
                    &period,
                );
                let seq = sim
                    .make_body("report", serde_json::to_vec(&body).unwrap())
                    .seq;
                sim.publish_made(&js, &[seq]).await.unwrap();
            }
            _ => sim.publish(&js, 12).await.unwrap(),
        }
    }
    let mut conf = ProvinceConf::new("a", &nats.url(), 1);
    // Sealed now, weeks after the period: on time with 60 days allowed.
    conf.report_due_days = Some(60);
    let province = Province::start(&dir.path().join("a"), &sites, conf);
    let overview = wait_caught_up(&province, &sims).await;
    let xa1 = site_of(&overview, "xa-001").expect("xa-001 listed").clone();

    let b = Browser::launch().await;
    b.open(&format!("{}/province/", province.url)).await;
    b.wait_js(
        "document.querySelectorAll('#site-tiles a.site').length === 39 && document.querySelector('a.site[data-site=\"xa-001\"] .chip')",
        "a tile for each of the 39 communes",
    )
    .await;

    // Header: the province, the counts, the warnings by level.
    assert_eq!(
        b.text(".title h1").await,
        "Trung tâm giám sát và điều hành tỉnh"
    );
    assert_eq!(b.text("#province").await, "Tỉnh Lai Châu");
    let counts = b.text("#counts").await;
    assert!(counts.contains("Mất kết nối 1 xã"), "{counts}");
    assert!(counts.contains("Cấu hình lỗi 1 xã"), "{counts}");
    assert!(
        counts.contains("Cấp 4: 1 xã") && counts.contains("Cấp 3: 1 xã"),
        "{counts}"
    );
    let (y, m) = period.split_once('-').unwrap();
    let reported = format!("Đã báo cáo kỳ {}/{y} 1/39 xã", m.trim_start_matches('0'));
    assert!(counts.contains(&reported), "{counts} vs {reported}");
    assert!(b
        .text("#conn-text")
        .await
        .starts_with("Máy chủ A · trực tuyến"));

    // A commune on line: its name, "Trực tuyến", its key indicators
    // against the targets as the province computes them, its devices and
    // this period's report.
    let t1 = b.text(&tile("xa-001")).await;
    assert!(t1.starts_with("Xã Bình Lư"), "{t1}");
    assert!(t1.contains("Trực tuyến"), "{t1}");
    assert!(t1.contains("chưa báo cáo"), "{t1}");
    let ratio = xa1["indicators"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == "dossier_online_ratio")
        .expect("the province computes dossier_online_ratio")
        .clone();
    let chip = format!(
        "{} .chip[data-indicator=\"dossier_online_ratio\"]",
        tile("xa-001")
    );
    assert_eq!(
        b.text(&chip).await,
        format!("{}%", vn1(ratio["value"].as_f64().expect("a value")))
    );
    let status = b
        .eval(&format!(
            "document.querySelector('{}').dataset.status",
            chip.replace('\'', "\\'")
        ))
        .await;
    assert_eq!(status, ratio["status"], "chip status vs the province's");
    let now = province.overview().await;
    let devices = &site_of(&now, "xa-001").expect("xa-001")["devices"];
    assert_eq!(
        b.text(&format!("{} .chip.dev", tile("xa-001"))).await,
        format!("{}/{}", devices["up"], devices["total"])
    );
    let heading = b.text(".site-row.head").await;
    assert!(
        heading.contains("Trực tuyến")
            && heading.contains("Đúng hạn")
            && heading.contains("Thiết bị"),
        "{heading}"
    );

    // The reports: verified, refused with the reason (signed with a key
    // that is not the commune's), missing.
    let report = |id: &str| format!("{} .site-report", tile(id));
    assert_eq!(b.text(&report("xa-006")).await, "đã báo cáo");
    let refused = b.text(&report("xa-007")).await;
    assert!(
        refused.starts_with("bị từ chối: ") && refused.contains("không phải khoá của xã"),
        "{refused}"
    );
    assert_eq!(b.text(&report("xa-008")).await, "chưa báo cáo");

    // The commune whose link is down, the one with a gap, the broken one.
    let t2 = b.text(&format!("{} .site-uplink", tile("xa-002"))).await;
    assert!(t2.starts_with("Mất kết nối 2 giờ"), "{t2}");
    assert!(b
        .text(&format!("{} .site-gaps", tile("xa-005")))
        .await
        .contains("thiếu 3 bản ghi"));
    assert!(b.text(&tile("xa-099")).await.contains("Cấu hình lỗi"));

    // Warnings: the tile's badge and the map's dot in the level's colour
    // (QĐ 18/2021: cấp 3 #f28c28, cấp 4 #d7191c); no warning, neutral.
    assert!(b.text(&tile("xa-003")).await.contains("Cấp 3"));
    assert_eq!(dot_fill(&b, "xa-003").await, "rgb(242, 140, 40)");
    assert_eq!(dot_fill(&b, "xa-004").await, "rgb(215, 25, 28)");
    assert_eq!(dot_fill(&b, "xa-001").await, "rgb(58, 75, 92)");
    let down = b
        .eval("document.querySelector('.site-dot[data-site=\"xa-002\"]').dataset.down")
        .await;
    assert_eq!(down, "1", "the disconnected commune is marked on the map");

    // The wall: all 39 on one 1920×1080 page, nothing cut off.
    b.wait_js(
        "document.querySelectorAll('#site-tiles a.site').length === 39",
        "39 rows",
    )
    .await;
    let layout = b.eval(LAYOUT_CHECK).await;
    assert_eq!(layout["out"], serde_json::json!([]), "{layout}");
    assert_eq!(layout["tiles"], 39, "{layout}");
    assert!(layout["smallest"].as_f64().unwrap() >= 14.0, "{layout}");
    assert_eq!(b.text("#page").await, "", "one page");
    b.screenshot("province-1920x1080.png").await;
    assert!(b.exceptions().is_empty(), "{:?}", b.problems());
    only_loopback(&b);

    // The drill-down: a click opens the commune's own screen, served by
    // the province under /site/xa-001/, with its data over its own stream.
    b.eval(&format!(
        "document.querySelector('{}').click()",
        tile("xa-001").replace('\'', "\\'")
    ))
    .await;
    b.wait_js(
        "location.pathname === '/site/xa-001/' && document.readyState === 'complete'",
        "the commune's own screen",
    )
    .await;
    b.wait_js(
        "document.getElementById('commune').textContent.includes('Xã Bình Lư')",
        "the commune's name on its screen",
    )
    .await;
    let want = vn1(ratio["value"].as_f64().unwrap());
    b.wait_js(
        &format!(
            "(document.querySelector('.kpi[data-indicator=\"dossier_online_ratio\"] .kpi-value') || {{}}).textContent === '{want}\u{a0}%'"
        ),
        "the commune's online-dossier ratio on its own screen",
    )
    .await;
    assert!(
        b.requests().iter().any(|u| u.starts_with(&format!(
            "ws://127.0.0.1:{}/site/xa-001/api/ws",
            province.conf.port
        ))),
        "the commune screen's stream is the province's copy: {:?}",
        b.requests()
    );
    b.screenshot("province-drilldown-xa-001.png").await;
    assert!(b.exceptions().is_empty(), "{:?}", b.problems());
    only_loopback(&b);
    b.close().await;
}

fn pair(nats: &Nats, dir: &Path, sites: &Path) -> (Province, Province) {
    let mut a = ProvinceConf::new("a", &nats.url(), 1);
    let mut b = ProvinceConf::new("b", &nats.url(), 1);
    a.peers = vec![b.url()];
    b.peers = vec![a.url()];
    (
        Province::start(&dir.join("a"), sites, a),
        Province::start(&dir.join("b"), sites, b),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_instance_a_switches_the_page_to_b_which_keeps_it_updated() {
    let _slot = BROWSER_SLOT.lock().await;
    let Fleet {
        dir,
        sites,
        nats,
        js,
        mut sims,
    } = fleet(3, 10).await;
    let (mut a, mut b_inst) = pair(&nats, dir.path(), &sites);
    wait_caught_up(&a, &sims).await;
    wait_caught_up(&b_inst, &sims).await;

    let b = Browser::launch().await;
    b.open(&format!("{}/province/", a.url)).await;
    b.wait_js(
        "document.querySelectorAll('#site-tiles a.site').length === 3 && document.getElementById('conn-text').textContent.startsWith('Máy chủ A')",
        "the three communes read from A",
    )
    .await;
    let href = |id: &str| {
        format!(
            "document.querySelector('{}').href",
            tile(id).replace('\'', "\\'")
        )
    };
    assert_eq!(
        b.eval(&href("xa-001")).await,
        format!("{}/site/xa-001/", a.url)
    );
    b.wait_js(
        "document.getElementById('server').textContent.includes('dự phòng: B (sẵn sàng)')",
        "the footer to name the standby B, which answers",
    )
    .await;

    // A dies (SIGKILL, its own PID): the page says so and reads from B.
    let a_pid = a.pid().expect("A runs");
    a.kill();
    assert!(a.pid().is_none(), "A ({a_pid}) was killed");
    b.wait_js(
        "document.getElementById('conn-text').textContent === 'Máy chủ B · trực tuyến'",
        "the page to switch to B",
    )
    .await;
    let notices = b.eval("window.iocProvince.state.notices").await;
    assert!(
        notices
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n == "Mất kết nối tới máy chủ tỉnh A, đang chuyển sang B…"),
        "{notices}"
    );
    assert!(b
        .text("#server")
        .await
        .contains("đã chuyển từ máy chủ A sang B lúc"));
    // The drill-down follows the instance in use.
    b.wait_js(
        &format!("{} === '{}/site/xa-001/'", href("xa-001"), b_inst.url),
        "the tiles to link to B's copy",
    )
    .await;

    // B keeps the page live: a new level-4 warning at xa-002 shows.
    publish_warning(&js, &mut sims[1], 4).await;
    sims[1].publish(&js, 5).await.unwrap();
    b.wait_js(
        &format!(
            "document.querySelector('{}').dataset.level === '4'",
            tile("xa-002").replace('\'', "\\'")
        ),
        "xa-002's level-4 warning, read from B",
    )
    .await;
    assert_eq!(dot_fill(&b, "xa-002").await, "rgb(215, 25, 28)");
    assert!(b.text("#counts").await.contains("Cấp 4: 1 xã"));
    b.screenshot("province-failover-b.png").await;

    // B dies too: the last data stays, greyed, and the banner says so.
    b_inst.kill();
    b.wait_js(
        "document.body.dataset.conn === 'disconnected' && !document.getElementById('conn-banner').hidden",
        "the page to show that no instance answers",
    )
    .await;
    assert!(b
        .text("#conn-banner-title")
        .await
        .starts_with("Mất kết nối tới máy chủ tỉnh B và các máy chủ dự phòng"));
    assert_eq!(
        b.eval("document.querySelectorAll('#site-tiles a.site').length")
            .await,
        3,
        "the last data is kept"
    );
    let filter = b
        .eval(&format!(
            "getComputedStyle(document.querySelector('{}')).filter",
            tile("xa-001").replace('\'', "\\'")
        ))
        .await;
    assert_eq!(filter, "grayscale(1)", "stale data is greyed");
    b.screenshot("province-no-instance.png").await;
    assert!(b.exceptions().is_empty(), "{:?}", b.problems());
    only_loopback(&b);
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ninety_nine_communes_turn_in_pages_that_each_fit_the_wall() {
    let _slot = BROWSER_SLOT.lock().await;
    // Lào Cai: 99 communes.
    let Fleet {
        dir,
        sites,
        nats,
        js: _,
        sims,
    } = fleet(99, 4).await;
    let province = Province::start(
        &dir.path().join("a"),
        &sites,
        ProvinceConf::new("a", &nats.url(), 1),
    );
    wait_caught_up(&province, &sims).await;

    let b = Browser::launch().await;
    // The common commune TV: the canvas scaled to 1366×768.
    b.set_viewport(1366, 768).await;
    b.open(&format!("{}/province/", province.url)).await;
    b.wait_js(
        "document.getElementById('page').textContent === 'Trang 1/3'",
        "the first of three pages",
    )
    .await;
    let layout = b.eval(LAYOUT_CHECK).await;
    assert_eq!(layout["out"], serde_json::json!([]), "{layout}");
    assert_eq!(layout["tiles"], 40, "{layout}");
    // 14 px on the canvas, × 0,71 at 1366×768.
    assert!(layout["smallest"].as_f64().unwrap() >= 9.9, "{layout}");
    let first: Vec<Value> = serde_json::from_value(
        b.eval("[...document.querySelectorAll('#site-tiles a.site')].map((a) => a.dataset.site)")
            .await,
    )
    .unwrap();
    // Every commune is on the map whatever the page.
    assert_eq!(
        b.eval("document.querySelectorAll('.site-dot').length")
            .await,
        99
    );
    b.screenshot("province-99-1366x768.png").await;
    // Figures for the report (not pass/fail): the overview's size and
    // one full render of the page (rows and map) in this browser.
    let body = reqwest::get(format!("{}/api/province/overview", province.url))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let ms = b
        .eval("(() => { const t = performance.now(); for (let i = 0; i < 10; i += 1) { window.iocProvince.render(); } return (performance.now() - t) / 10; })()")
        .await;
    eprintln!(
        "99 communes: overview {} bytes; render {:.1} ms (mean of 10)",
        body.len(),
        ms.as_f64().unwrap_or(f64::NAN)
    );
    b.wait_js_for(
        "document.getElementById('page').textContent === 'Trang 2/3'",
        "the page to turn",
        Duration::from_secs(40),
    )
    .await;
    let second: Vec<Value> = serde_json::from_value(
        b.eval("[...document.querySelectorAll('#site-tiles a.site')].map((a) => a.dataset.site)")
            .await,
    )
    .unwrap();
    assert_eq!(second.len(), 40);
    assert!(
        second.iter().all(|id| !first.contains(id)),
        "page 2 shows other communes: {first:?} / {second:?}"
    );
    let layout = b.eval(LAYOUT_CHECK).await;
    assert_eq!(layout["out"], serde_json::json!([]), "{layout}");
    assert!(b.exceptions().is_empty(), "{:?}", b.problems());
    only_loopback(&b);
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_cut_from_the_stream_hands_the_page_to_one_that_is_not() {
    let _slot = BROWSER_SLOT.lock().await;
    let Fleet {
        dir,
        sites,
        nats,
        js,
        mut sims,
    } = fleet(2, 6).await;
    // A reaches NATS through a link the test can cut; B directly.
    let link = kit::proxy::Proxy::start(nats.port);
    let mut a = ProvinceConf::new("a", &link.nats_url(), 1);
    let mut b_conf = ProvinceConf::new("b", &nats.url(), 1);
    a.peers = vec![b_conf.url()];
    b_conf.peers = vec![a.url()];
    let a = Province::start(&dir.path().join("a"), &sites, a);
    let b_inst = Province::start(&dir.path().join("b"), &sites, b_conf);
    wait_caught_up(&a, &sims).await;
    wait_caught_up(&b_inst, &sims).await;

    let b = Browser::launch().await;
    b.open(&format!("{}/province/", a.url)).await;
    b.wait_js(
        "document.getElementById('conn-text').textContent === 'Máy chủ A · trực tuyến'",
        "the page on A",
    )
    .await;
    // A keeps answering HTTP but loses the stream: its data stops moving.
    link.cut();
    b.wait_js(
        "document.getElementById('conn-text').textContent === 'Máy chủ B · trực tuyến'",
        "the page to move to B, which has the stream",
    )
    .await;
    let notices = b.eval("window.iocProvince.state.notices").await;
    assert!(
        notices
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n == "Máy chủ tỉnh A mất kết nối tới luồng dữ liệu, đang chuyển sang B…"),
        "{notices}"
    );
    let (_, overview_a) = a.get("/api/province/overview").await.unwrap();
    assert_eq!(overview_a["stream"]["connected"], false, "A says it is cut");
    publish_warning(&js, &mut sims[0], 2).await;
    b.wait_js(
        &format!(
            "document.querySelector('{}').dataset.level === '2'",
            tile("xa-001").replace('\'', "\\'")
        ),
        "xa-001's new warning, read from B",
    )
    .await;
    assert_eq!(dot_fill(&b, "xa-001").await, "rgb(245, 230, 99)");
    assert!(b.exceptions().is_empty(), "{:?}", b.problems());
    only_loopback(&b);
    b.close().await;
}
