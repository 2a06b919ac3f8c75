//! How fast the wall screen shows an update, end to end: a dossier is
//! published at QoS 1 to a real Mosquitto, committed by commune-ioc (the
//! release binary), stepped by the live hub, sent over `/api/ws` and drawn
//! by the page in Debian's headless Chromium. Measured from just before the
//! publish to the moment a MutationObserver in the page sees the
//! "Hồ sơ tiếp nhận" tile show the new count (both clocks are this
//! machine's wall clock, in ms).
//!
//! This is the figure the screen tests used to assert as "within 2 s"; it
//! is a measurement here, not a pass/fail.
//!
//! Run: `cargo bench --bench screen` (env BENCH_UPDATES, default 50).

#[path = "../tests/kit/mod.rs"]
mod kit;

use std::time::Duration;

use kit::browser::Browser;
use kit::measure::{env_num, epoch_ms, load_average};
use kit::{dossier_received, test_config, Backend, Mosquitto, Publisher, DOSSIER};

/// Install an observer that resolves `window.__shown` with `Date.now()`
/// when the tile shows `want`.
fn observe(want: &str) -> String {
    format!(
        r#"window.__shown = new Promise((resolve) => {{
  const sel = '[data-indicator="dossiers_received"] .kpi-value';
  const check = () => {{
    const e = document.querySelector(sel);
    if (e && e.textContent.replace(/\s+/g, ' ').trim() === {want:?}) {{ resolve(Date.now()); return true; }}
    return false;
  }};
  if (check()) return;
  const mo = new MutationObserver(() => {{ if (check()) mo.disconnect(); }});
  mo.observe(document.body, {{ subtree: true, childList: true, characterData: true }});
}}); true"#
    )
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n: usize = env_num("BENCH_UPDATES", 50).unwrap_or_else(|e| panic!("{e}"));
    let load_before = load_average();
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let backend = Backend::start_with_env(
        dir.path(),
        &test_config(broker.port, &dir.path().join("store")),
        &[("RUST_LOG", "warn")],
    );
    backend.wait_ready().await;
    let kiosk = backend.kiosk_token("Màn hình đo độ trễ").await;
    let browser = Browser::launch().await;
    browser
        .open(&format!("{}/?kiosk=1&token={kiosk}", backend.url))
        .await;
    browser
        .wait_js(
            "document.body && document.body.dataset.conn === 'live' \
             && document.querySelector('[data-indicator=\"dossiers_received\"]')",
            "the live screen",
        )
        .await;
    let mut p = Publisher::new(broker.port);
    let mut took = Vec::with_capacity(n);
    for i in 0..n {
        browser.eval(&observe(&format!("{} hồ sơ", i + 1))).await;
        let t0 = epoch_ms();
        p.send(
            DOSSIER,
            &dossier_received(&format!("bench-{i}"), "online", None),
        )
        .await;
        let shown = browser.eval("window.__shown").await;
        let t1 = shown.as_f64().expect("a time from the page");
        took.push(t1 - t0);
        // One update at a time, as a commune makes them.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    browser.close().await;
    took.sort_by(f64::total_cmp);
    let mean = took.iter().sum::<f64>() / took.len() as f64;
    println!("==================== wall screen update latency ====================");
    println!("command      cargo bench --bench screen (BENCH_UPDATES={n})");
    println!(
        "machine      {} CPUs; load average {load_before} before, {} after",
        std::thread::available_parallelism()
            .map(|c| c.get())
            .unwrap_or(0),
        load_average()
    );
    println!(
        "path         publish (QoS 1, PubAck) → Mosquitto → commit → hub step → /api/ws → DOM"
    );
    println!(
        "latency ms   p50 {:.0} · p95 {:.0} · max {:.0} · mean {:.0} (n = {n})",
        percentile(&took, 0.5),
        percentile(&took, 0.95),
        took[took.len() - 1],
        mean
    );
}
