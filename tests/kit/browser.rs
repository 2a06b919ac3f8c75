//! Debian's Chromium, headless, driven over the DevTools protocol (CDP)
//! with the WebSocket client the live-stream tests already use
//! (tokio-tungstenite), not over WebDriver: no chromedriver process to
//! start and match to the browser's version, no extra crate, and CDP
//! reports directly every network request and WebSocket the page opens
//! (including ones that fail, which `performance` entries do not list),
//! console messages, uncaught exceptions and screenshots.
//!
//! A missing Chromium or font fails with the command that installs them
//! (scripts/test does).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

/// How long a condition may take before a test fails.
pub const WAIT: Duration = Duration::from_secs(20);
const INSTALL: &str = "apt-get install -y chromium fonts-noto-core (scripts/test does this)";

/// One browser at a time: the machine has two cores shared by the tests.
pub static BROWSER_SLOT: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub fn chromium_bin() -> PathBuf {
    for p in ["/usr/bin/chromium", "/usr/lib/chromium/chromium"] {
        if Path::new(p).exists() {
            return PathBuf::from(p);
        }
    }
    panic!("Debian's chromium is not installed: the wall-screen tests need a real browser. Install it with `{INSTALL}`.");
}

pub fn require_fonts() {
    let noto = Path::new("/usr/share/fonts/truetype/noto/NotoSans-Regular.ttf");
    assert!(
        noto.exists(),
        "Noto Sans is not installed: the screen needs a font with Vietnamese coverage. Install it with `{INSTALL}`."
    );
}

/// Where screenshots go: `target/screenshots/`.
pub fn screenshot_dir() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|p| if p.is_relative() { manifest.join(p) } else { p })
        .unwrap_or_else(|| manifest.join("target"));
    let dir = target.join("screenshots");
    std::fs::create_dir_all(&dir).expect("create target/screenshots");
    dir
}

/// A minimal DevTools-protocol client for one page.
pub struct Cdp {
    out: mpsc::UnboundedSender<Message>,
    next: AtomicU64,
    pending: Arc<Mutex<HashMap<u64, oneshot::Sender<Value>>>>,
    events: Arc<Mutex<Vec<Value>>>,
}

impl Cdp {
    pub async fn connect(url: &str) -> Cdp {
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("connect to Chromium's DevTools endpoint");
        let (mut sink, mut stream) = ws.split();
        let (out, mut rx) = mpsc::unbounded_channel::<Message>();
        tokio::spawn(async move {
            while let Some(m) = rx.recv().await {
                if sink.send(m).await.is_err() {
                    break;
                }
            }
        });
        let pending: Arc<Mutex<HashMap<u64, oneshot::Sender<Value>>>> = Arc::default();
        let events: Arc<Mutex<Vec<Value>>> = Arc::default();
        let (p, e) = (Arc::clone(&pending), Arc::clone(&events));
        tokio::spawn(async move {
            while let Some(Ok(msg)) = stream.next().await {
                let Message::Text(t) = msg else { continue };
                let Ok(v) = serde_json::from_str::<Value>(t.as_str()) else {
                    continue;
                };
                if let Some(id) = v["id"].as_u64() {
                    if let Some(tx) = p.lock().unwrap().remove(&id) {
                        let _ = tx.send(v);
                    }
                } else {
                    e.lock().unwrap().push(v);
                }
            }
        });
        Cdp {
            out,
            next: AtomicU64::new(1),
            pending,
            events,
        }
    }

    pub async fn call(&self, method: &str, params: Value) -> Value {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.pending.lock().unwrap().insert(id, tx);
        let msg = json!({"id": id, "method": method, "params": params});
        self.out
            .send(Message::text(msg.to_string()))
            .expect("DevTools connection is open");
        let v = tokio::time::timeout(WAIT, rx)
            .await
            .unwrap_or_else(|_| panic!("no answer from Chromium to {method}"))
            .expect("DevTools connection closed");
        if let Some(err) = v.get("error") {
            panic!("{method} failed: {err}");
        }
        v["result"].clone()
    }

    pub fn events(&self) -> Vec<Value> {
        self.events.lock().unwrap().clone()
    }
}

/// Headless Chromium with one page and its own profile.
pub struct Browser {
    child: Option<Child>,
    _profile: tempfile::TempDir,
    pub cdp: Cdp,
}

impl Browser {
    pub async fn launch() -> Browser {
        let bin = chromium_bin();
        require_fonts();
        let profile = tempfile::tempdir().expect("profile dir");
        let mut cmd = Command::new(&bin);
        cmd.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-default-apps",
            "--disable-extensions",
            "--hide-scrollbars",
            "--window-size=1920,1080",
            "--remote-debugging-port=0",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("about:blank")
        // The page must show Việt Nam time whatever the machine's zone is.
        .env("TZ", "UTC")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}. Install with `{INSTALL}`.", bin.display()));
        let port_file = profile.path().join("DevToolsActivePort");
        let deadline = Instant::now() + WAIT;
        let port = loop {
            if let Ok(text) = std::fs::read_to_string(&port_file) {
                if let Some(p) = text
                    .lines()
                    .next()
                    .and_then(|l| l.trim().parse::<u16>().ok())
                {
                    break p;
                }
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("chromium exited at start ({status}); is it installed? `{INSTALL}`");
            }
            assert!(Instant::now() < deadline, "chromium did not open DevTools");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let targets: Value = reqwest::get(format!("http://127.0.0.1:{port}/json/list"))
            .await
            .expect("list DevTools targets")
            .json()
            .await
            .expect("targets JSON");
        let page = targets
            .as_array()
            .and_then(|a| a.iter().find(|t| t["type"] == "page"))
            .and_then(|t| t["webSocketDebuggerUrl"].as_str())
            .unwrap_or_else(|| panic!("no page target: {targets}"))
            .to_owned();
        let cdp = Cdp::connect(&page).await;
        for domain in [
            "Runtime.enable",
            "Log.enable",
            "Network.enable",
            "Page.enable",
        ] {
            cdp.call(domain, json!({})).await;
        }
        let browser = Browser {
            child: Some(child),
            _profile: profile,
            cdp,
        };
        browser.set_viewport(1920, 1080).await;
        browser
    }

    /// Emulate a display of `width`×`height` CSS pixels (scale 1), as a
    /// kiosk browser in full screen on that display would show the page.
    pub async fn set_viewport(&self, width: u32, height: u32) {
        self.cdp
            .call(
                "Emulation.setDeviceMetricsOverride",
                json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": false}),
            )
            .await;
    }

    pub async fn open(&self, url: &str) {
        self.cdp.call("Page.navigate", json!({"url": url})).await;
        self.wait_js("document.readyState === 'complete'", "the page to load")
            .await;
    }

    /// Evaluate an expression (promises awaited) and return its value.
    pub async fn eval(&self, expr: &str) -> Value {
        let r = self
            .cdp
            .call(
                "Runtime.evaluate",
                json!({"expression": expr, "returnByValue": true, "awaitPromise": true}),
            )
            .await;
        if let Some(ex) = r.get("exceptionDetails") {
            panic!("evaluating `{expr}` threw: {ex}");
        }
        r["result"]["value"].clone()
    }

    /// Wait until `expr` is truthy; returns how long it took.
    pub async fn wait_js(&self, expr: &str, what: &str) -> Duration {
        self.wait_js_for(expr, what, WAIT).await
    }

    pub async fn wait_js_for(&self, expr: &str, what: &str, timeout: Duration) -> Duration {
        let start = Instant::now();
        loop {
            let v = self.eval(&format!("!!({expr})")).await;
            if v == Value::Bool(true) {
                return start.elapsed();
            }
            if start.elapsed() > timeout {
                let text = self
                    .eval("document.body ? document.body.innerText.slice(0, 3000) : ''")
                    .await;
                panic!(
                    "timed out waiting for {what} (`{expr}`); page text:\n{}\nproblems: {:?}",
                    text.as_str().unwrap_or_default(),
                    self.problems()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Text of the first element matching `selector`, whitespace normalised.
    pub async fn text(&self, selector: &str) -> String {
        let v = self
            .eval(&format!(
                "(() => {{ const e = document.querySelector({sel}); return e ? e.textContent.replace(/\\s+/g, ' ').trim() : null; }})()",
                sel = Value::from(selector)
            ))
            .await;
        v.as_str().unwrap_or("<missing>").to_owned()
    }

    /// Console errors, uncaught exceptions and error log entries so far.
    pub fn problems(&self) -> Vec<String> {
        self.cdp
            .events()
            .iter()
            .filter_map(|e| {
                let p = &e["params"];
                match e["method"].as_str()? {
                    "Runtime.exceptionThrown" => {
                        Some(format!("exception: {}", p["exceptionDetails"]))
                    }
                    "Runtime.consoleAPICalled"
                        if matches!(p["type"].as_str(), Some("error" | "assert")) =>
                    {
                        Some(format!("console.{}: {}", p["type"], p["args"]))
                    }
                    "Log.entryAdded" if p["entry"]["level"] == "error" => {
                        Some(format!("log: {}", p["entry"]))
                    }
                    _ => None,
                }
            })
            .collect()
    }

    /// Uncaught exceptions only (bugs in the page, whatever the network does).
    pub fn exceptions(&self) -> Vec<String> {
        self.problems()
            .into_iter()
            .filter(|p| p.starts_with("exception"))
            .collect()
    }

    /// Every URL the page requested or opened a WebSocket to.
    pub fn requests(&self) -> Vec<String> {
        self.cdp
            .events()
            .iter()
            .filter_map(|e| match e["method"].as_str()? {
                "Network.requestWillBeSent" => {
                    e["params"]["request"]["url"].as_str().map(str::to_owned)
                }
                "Network.webSocketCreated" => e["params"]["url"].as_str().map(str::to_owned),
                _ => None,
            })
            .collect()
    }

    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let r = self
            .cdp
            .call("Page.captureScreenshot", json!({"format": "png"}))
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(r["data"].as_str().expect("screenshot data"))
            .expect("screenshot is base64");
        assert_eq!(&png[1..4], b"PNG");
        let path = screenshot_dir().join(name);
        std::fs::write(&path, png).expect("write screenshot");
        eprintln!("screenshot: {}", path.display());
        path
    }

    pub async fn close(mut self) {
        let _ = tokio::time::timeout(
            Duration::from_secs(5),
            self.cdp.call("Browser.close", json!({})),
        )
        .await;
        if let Some(mut c) = self.child.take() {
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            kill_browser(&mut c);
        }
    }
}

/// Kill the browser process itself (by its id only): its helper processes
/// exit when their browser is gone.
fn kill_browser(c: &mut Child) {
    let _ = c.kill();
    let _ = c.wait();
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            kill_browser(&mut c);
        }
    }
}
