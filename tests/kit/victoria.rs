//! A real VictoriaMetrics (Debian package `victoria-metrics`) on a free
//! loopback port, for the time-series sink tests and benchmark. When the
//! binary is missing the test fails and says what to install (scripts/test
//! installs it).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::proc::{free_port, Proc};

/// Path of the victoria-metrics binary, or a panic that says how to install it.
pub fn victoria_bin() -> PathBuf {
    for p in [
        "/usr/bin/victoria-metrics",
        "/usr/local/bin/victoria-metrics",
        "/usr/bin/victoria-metrics-prod",
    ] {
        if Path::new(p).exists() {
            return PathBuf::from(p);
        }
    }
    panic!(
        "victoria-metrics is not installed: the time-series sink tests write to a real \
         VictoriaMetrics. Install it with `apt-get install -y victoria-metrics` \
         (scripts/test does this)."
    );
}

/// One sample series from `/api/v1/export`.
#[derive(Debug, Clone)]
pub struct Series {
    /// Labels, `__name__` included.
    pub labels: serde_json::Map<String, Value>,
    /// Values.
    pub values: Vec<f64>,
    /// Timestamps in ms.
    pub timestamps: Vec<i64>,
}

impl Series {
    /// A label's value ("" when absent).
    pub fn label(&self, k: &str) -> &str {
        self.labels.get(k).and_then(Value::as_str).unwrap_or("")
    }
}

/// A VictoriaMetrics owned by a test.
pub struct Victoria {
    proc: Option<Proc>,
    /// The port it listens on.
    pub port: u16,
    dir: tempfile::TempDir,
}

impl Victoria {
    /// Start on a free port with a fresh data directory.
    pub fn start() -> Victoria {
        let mut v = Victoria::new();
        v.spawn();
        v
    }

    /// Reserve a port and a data directory without starting (to begin with
    /// the store down).
    pub fn new() -> Victoria {
        Victoria {
            proc: None,
            port: free_port(),
            dir: tempfile::tempdir().expect("temp dir for victoria-metrics"),
        }
    }

    /// Base URL, e.g. `http://127.0.0.1:8428`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Start (again) on the same port and data directory; waits for `/health`.
    pub fn spawn(&mut self) {
        assert!(self.proc.is_none(), "victoria-metrics already running");
        let mut cmd = Command::new(victoria_bin());
        cmd.arg(format!("-httpListenAddr=127.0.0.1:{}", self.port))
            .arg(format!(
                "-storageDataPath={}",
                self.dir.path().join("data").display()
            ))
            .arg("-retentionPeriod=100y")
            .arg("-search.disableCache");
        let proc = Proc::spawn("victoria-metrics", cmd, self.dir.path().join("vm.log"))
            .unwrap_or_else(|e| panic!("{e:#}"));
        self.proc = Some(proc);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ok = http_get(&format!("{}/health", self.url())).is_some_and(|b| b.trim() == "OK");
            if ok {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "victoria-metrics did not become healthy on port {}; log:\n{}",
                self.port,
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stop gracefully (SIGTERM: it flushes what it holds in memory).
    pub fn stop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.stop();
        }
    }

    /// Its log.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("vm.log")).unwrap_or_default()
    }

    /// Every series matching the selector `m` (e.g. `{__name__=~"ioc_.*"}`),
    /// raw samples from `/api/v1/export` (after a flush of recent data).
    pub async fn export(&self, m: &str) -> Vec<Series> {
        let client = reqwest::Client::new();
        // Make just-written samples visible to the export API.
        let _ = client
            .get(format!("{}/internal/force_flush", self.url()))
            .send()
            .await;
        let text = client
            .get(format!("{}/api/v1/export", self.url()))
            .query(&[("match[]", m)])
            .send()
            .await
            .expect("GET /api/v1/export")
            .text()
            .await
            .expect("export body");
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                let v: Value = serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("export line is not JSON ({e}): {l}"));
                Series {
                    labels: v["metric"].as_object().cloned().unwrap_or_default(),
                    values: v["values"]
                        .as_array()
                        .map(|a| a.iter().filter_map(Value::as_f64).collect())
                        .unwrap_or_default(),
                    timestamps: v["timestamps"]
                        .as_array()
                        .map(|a| a.iter().filter_map(Value::as_i64).collect())
                        .unwrap_or_default(),
                }
            })
            .collect()
    }
}

impl Default for Victoria {
    fn default() -> Self {
        Victoria::new()
    }
}

/// A blocking GET over a plain TCP socket (no runtime needed); the body.
fn http_get(url: &str) -> Option<String> {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://")?;
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let mut s = std::net::TcpStream::connect(host).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        s,
        "GET /{path} HTTP/1.0\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let (head, body) = buf.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200")
        .then(|| body.to_string())
        .or_else(|| head.starts_with("HTTP/1.0 200").then(|| body.to_string()))
}
