//! The real `commune-ioc` binary (`serve`, HTTP on port 0, the address read
//! from `--port-file`): `Backend` for tests (panics with the log on
//! failure, restarts on the same store) and `start_backend` for the
//! benchmarks (errors, timing). Also the standard test commune's config.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use super::http::{Http, Scrape, BENCH_ADMIN_PASSWORD};
use super::proc::{log_tail, Proc};

/// The binary under test (debug for tests, release for benchmarks).
pub const BINARY: &str = env!("CARGO_BIN_EXE_commune-ioc");

/// Start `commune-ioc serve --config CONFIG --port-file PORT_FILE` with
/// `env` (IOC_CONFIG and IOC_PORT_FILE of the caller removed), output
/// appended to `log`.
pub fn spawn_serve(
    config: &Path,
    port_file: &Path,
    env: &[(String, String)],
    log: PathBuf,
) -> Result<Proc> {
    let _ = std::fs::remove_file(port_file);
    let mut cmd = Command::new(BINARY);
    cmd.arg("serve")
        .arg("--config")
        .arg(config)
        .arg("--port-file")
        .arg(port_file)
        .env_remove("IOC_CONFIG")
        .env_remove("IOC_PORT_FILE")
        .env("RUST_LOG", "info")
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    Proc::spawn("commune-ioc serve", cmd, log)
}

/// Wait until the server wrote its address to `port_file`.
pub fn wait_port_file(
    server: &mut Proc,
    port_file: &Path,
    timeout: Duration,
) -> Result<SocketAddr> {
    let started = Instant::now();
    loop {
        server.ensure_running()?;
        if let Ok(text) = std::fs::read_to_string(port_file) {
            if let Ok(a) = text.trim().parse() {
                return Ok(a);
            }
        }
        if started.elapsed() > timeout {
            bail!(
                "the server wrote no port file ({}) within {timeout:?}; log:\n{}",
                port_file.display(),
                log_tail(&server.log, 30)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Wait until `/readyz` answers 200.
pub async fn wait_ready(server: &mut Proc, http: &Http, timeout: Duration) -> Result<()> {
    let started = Instant::now();
    loop {
        server.ensure_running()?;
        if let Ok((status, _)) = http.get("/readyz").await {
            if status == reqwest::StatusCode::OK {
                return Ok(());
            }
        }
        if started.elapsed() > timeout {
            let body = http
                .get("/readyz")
                .await
                .map(|(_, b)| b)
                .unwrap_or_default();
            bail!(
                "the server was not ready within {timeout:?} (/readyz: {body}); log:\n{}",
                log_tail(&server.log, 30)
            );
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A benchmark's backend: `serve` (the release binary that `cargo bench`
/// builds) on `config_path`, connected to the broker on `mqtt_port`, HTTP
/// on a free port. Returns once `/readyz` answers 200, with the seconds
/// that took, and an `Http` logged in as the store's first admin (whose
/// password is set through `IOC__AUTH__ADMIN_PASSWORD`).
pub async fn start_backend(
    dir: &Path,
    tag: &str,
    config_path: &Path,
    mqtt_port: u16,
    server_log: &str,
    overrides: &[(String, String)],
) -> Result<(Proc, Http, f64)> {
    let port_file = dir.join(format!("http-{tag}.addr"));
    let mut env = vec![
        ("RUST_LOG".to_string(), server_log.to_string()),
        (
            "IOC__AUTH__ADMIN_PASSWORD".to_string(),
            BENCH_ADMIN_PASSWORD.to_string(),
        ),
    ];
    env.extend(overrides.iter().cloned());
    env.push(("IOC__MQTT__PORT".into(), mqtt_port.to_string()));
    let started = Instant::now();
    let mut server = spawn_serve(
        config_path,
        &port_file,
        &env,
        dir.join(format!("server-{tag}.log")),
    )?;
    let addr = wait_port_file(&mut server, &port_file, Duration::from_secs(30))?;
    let mut http = Http::new(addr)?;
    wait_ready(&mut server, &http, Duration::from_secs(30)).await?;
    let ready = started.elapsed().as_secs_f64();
    http.login().await.with_context(|| {
        format!(
            "logging in as admin; server log:\n{}",
            log_tail(&server.log, 30)
        )
    })?;
    Ok((server, http, ready))
}

/// The standard test commune (villages, devices, every contract indicator),
/// with the broker port and store path filled in.
pub fn test_config(mqtt_port: u16, store: &Path) -> String {
    format!(
        r#"
[commune]
id = "binh-lu"
name = "Xã Bình Lư"
province = "Lai Châu"

[mqtt]
host = "127.0.0.1"
port = {mqtt_port}
backoff_initial_ms = 50
backoff_max_ms = 1000

[http]
listen = "127.0.0.1:0"

[store]
path = "{store}"

[[village]]
id = "tan-binh"
name = "Bản Tân Bình"
[[village]]
id = "hung-binh"
name = "Bản Hưng Bình"
[[village]]
id = "na-da"
name = "Bản Nà Đa"

[[camera]]
id = "cam-01"
name = "Camera cổng UBND"
village = "tan-binh"
frigate_name = "cong_ubnd"
[[camera]]
id = "cam-02"
village = "hung-binh"
[[camera]]
id = "cam-03"
village = "na-da"
[[camera]]
id = "cam-04"
village = "na-da"

[[speaker]]
id = "spk-01"
village = "tan-binh"
[[speaker]]
id = "spk-02"
village = "hung-binh"
[[speaker]]
id = "spk-03"
village = "na-da"
kind = "fe"

[[sensor]]
id = "rain-01"
village = "na-da"
kind = "rain"

[[indicator]]
id = "dossiers_received"
name = "Hồ sơ tiếp nhận"
kind = "count"
unit = "hồ sơ"
match = {{ source = "procedure", event = "received" }}

[[indicator]]
id = "dossier_online_ratio"
name = "Tỷ lệ hồ sơ trực tuyến"
kind = "ratio"
unit = "%"
target = "> 90"
numerator = {{ source = "procedure", event = "received", where = {{ channel = "online" }} }}
denominator = {{ source = "procedure", event = "received" }}

[[indicator]]
id = "dossier_direct_ratio"
name = "Tỷ lệ hồ sơ nộp trực tiếp"
kind = "ratio"
unit = "%"
target = "< 20"
numerator = {{ source = "procedure", event = "received", where = {{ channel = "direct" }} }}
denominator = {{ source = "procedure", event = "received" }}

[[indicator]]
id = "dossier_on_time_ratio"
name = "Tỷ lệ giải quyết đúng và trước hạn"
kind = "ratio"
unit = "%"
target = "> 98"
numerator = {{ source = "procedure", event = "resolved", where = {{ outcome = ["early", "on_time"] }} }}
denominator = {{ source = "procedure", event = "resolved" }}

[[indicator]]
id = "dossier_online_payment_ratio"
name = "Tỷ lệ thanh toán trực tuyến"
kind = "ratio"
unit = "%"
target = ">= 60"
numerator = {{ source = "procedure", event = "paid", where = {{ payment = "online" }} }}
denominator = {{ source = "procedure", event = "paid" }}

[[indicator]]
id = "camera_online"
name = "Camera hoạt động"
kind = "availability"
unit = "%"
target = ">= 95"
device_class = "camera"

[[indicator]]
id = "speaker_online"
name = "Cụm loa hoạt động"
kind = "availability"
unit = "%"
target = ">= 95"
device_class = "speaker"

[[indicator]]
id = "broadcast_sessions"
name = "Buổi phát thanh"
kind = "count"
unit = "buổi"
match = {{ source = "speaker", event = "session_start" }}

[[indicator]]
id = "people_detected"
name = "Lượt người được phát hiện"
kind = "count"
unit = "người"
match = {{ source = "camera", event = ["detection"], where = {{ label = "person" }}, sum = "count" }}

[[indicator]]
id = "rain_latest"
name = "Lượng mưa"
kind = "latest"
unit = "mm"
field = "rain_mm"
match = {{ source = "sensor" }}

[[indicator]]
id = "dead_letters"
name = "Bản tin lỗi"
kind = "dead_letters"
unit = "bản tin"
target = "== 0"

[[indicator]]
id = "freshness_procedure"
name = "Độ mới dữ liệu thủ tục hành chính"
kind = "freshness"
unit = "s"
target = "<= 3600"
source = "procedure"
"#,
        store = store.display()
    )
}

/// The real binary, started with `serve`, owned by a test.
pub struct Backend {
    proc: Option<Proc>,
    /// Base URL, e.g. `http://127.0.0.1:34567`.
    pub url: String,
    /// The first admin's password (`IOC__AUTH__ADMIN_PASSWORD`), random
    /// per backend.
    pub admin_password: String,
    token: std::sync::Mutex<Option<String>>,
    config: PathBuf,
    dir: PathBuf,
    env: Vec<(String, String)>,
    log: PathBuf,
}

impl Backend {
    /// Write `config_toml` into `dir` and start the binary on it.
    pub fn start(dir: &Path, config_toml: &str) -> Backend {
        Backend::start_with_env(dir, config_toml, &[])
    }

    /// Start with extra environment variables.
    pub fn start_with_env(dir: &Path, config_toml: &str, env: &[(&str, &str)]) -> Backend {
        let config = dir.join("commune.toml");
        std::fs::write(&config, config_toml).expect("write test config");
        let mut env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let admin_password = match env.iter().find(|(k, _)| k == "IOC__AUTH__ADMIN_PASSWORD") {
            Some((_, v)) => v.clone(),
            None => {
                // Derived from the directory: a second backend on the same
                // store finds the same admin.
                use std::hash::{Hash, Hasher};
                let mut h = std::collections::hash_map::DefaultHasher::new();
                dir.hash(&mut h);
                let pw = format!("test-admin-{:016x}", h.finish());
                env.push(("IOC__AUTH__ADMIN_PASSWORD".into(), pw.clone()));
                pw
            }
        };
        let mut b = Backend {
            proc: None,
            url: String::new(),
            admin_password,
            token: std::sync::Mutex::new(None),
            config,
            dir: dir.to_path_buf(),
            env,
            log: dir.join("backend.log"),
        };
        b.spawn();
        b
    }

    fn spawn(&mut self) {
        let port_file = self.dir.join("port");
        let mut proc = spawn_serve(&self.config, &port_file, &self.env, self.log.clone())
            .unwrap_or_else(|e| panic!("{e:#}"));
        let addr = wait_port_file(&mut proc, &port_file, Duration::from_secs(20))
            .unwrap_or_else(|e| panic!("commune-ioc did not start: {e:#}"));
        self.url = format!("http://{addr}");
        self.proc = Some(proc);
    }

    /// The backend's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.proc.as_ref().map(Proc::pid)
    }

    /// Kill without warning (SIGKILL), as a crash or power cut would.
    pub fn kill(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill();
        }
    }

    /// Send SIGTERM without waiting for the exit.
    pub fn signal_term(&self) {
        if let Some(p) = self.proc.as_ref() {
            p.signal_term();
        }
    }

    /// Graceful stop (SIGTERM) and wait.
    pub fn stop(&mut self) -> ExitStatus {
        self.proc.take().expect("backend is running").stop()
    }

    /// Start again with the same config and store.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Wait until `/readyz` answers 200.
    pub async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = reqwest::get(format!("{}/readyz", self.url)).await {
                if r.status().is_success() {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "backend never became ready; log:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Log in as `username` and return the token (panics on refusal).
    pub async fn login(&self, username: &str, password: &str) -> String {
        let r = reqwest::Client::new()
            .post(format!("{}/api/auth/login", self.url))
            .json(&serde_json::json!({ "username": username, "password": password }))
            .send()
            .await
            .expect("POST /api/auth/login");
        let status = r.status();
        let v: Value = r.json().await.expect("login answer is JSON");
        assert!(status.is_success(), "login as {username}: {status} {v}");
        v["token"].as_str().expect("token").to_owned()
    }

    /// The admin's token (logged in once, then reused; tokens survive
    /// restarts of the same store).
    pub async fn token(&self) -> String {
        if let Some(t) = self.token.lock().unwrap().clone() {
            return t;
        }
        let t = self.login("admin", &self.admin_password.clone()).await;
        *self.token.lock().unwrap() = Some(t.clone());
        t
    }

    /// A kiosk token made by the admin (`POST /api/auth/kiosk-tokens`).
    pub async fn kiosk_token(&self, label: &str) -> String {
        let r = reqwest::Client::new()
            .post(format!("{}/api/auth/kiosk-tokens", self.url))
            .bearer_auth(self.token().await)
            .json(&serde_json::json!({ "label": label }))
            .send()
            .await
            .expect("POST /api/auth/kiosk-tokens");
        assert!(r.status().is_success(), "kiosk token: {}", r.status());
        let v: Value = r.json().await.expect("kiosk token JSON");
        v["token"].as_str().expect("token").to_owned()
    }

    /// A GET with the admin's token.
    pub async fn authed_get(&self, path: &str) -> reqwest::Response {
        reqwest::Client::new()
            .get(format!("{}{path}", self.url))
            .bearer_auth(self.token().await)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    /// GET a JSON document (as admin).
    pub async fn get(&self, path: &str) -> Value {
        let r = self.authed_get(path).await;
        r.json()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: not JSON: {e}"))
    }

    /// POST a JSON `body` (as admin): status and JSON (`null` when the
    /// answer is not JSON).
    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let r = reqwest::Client::new()
            .post(format!("{}{path}", self.url))
            .bearer_auth(self.token().await)
            .json(&body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {path}: {e}"));
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// `/readyz` (public), its JSON whatever the status.
    pub async fn readyz(&self) -> Value {
        reqwest::get(format!("{}/readyz", self.url))
            .await
            .unwrap_or_else(|e| panic!("GET /readyz: {e}"))
            .json()
            .await
            .unwrap_or_else(|e| panic!("GET /readyz: not JSON: {e}"))
    }

    /// Wait (up to 120 s) until the commune counts `n` dossiers received
    /// this month (`dossiers_received` of the test configs).
    pub async fn wait_dossiers(&self, n: usize) {
        self.wait_for(
            &format!("{n} dossiers counted"),
            Duration::from_secs(120),
            || async {
                self.indicator("dossiers_received", "month", "commune")
                    .await["value"]
                    .as_f64()
                    == Some(n as f64)
            },
        )
        .await;
    }

    /// GET and return status and JSON.
    pub async fn get_status(&self, path: &str) -> (u16, Value) {
        let r = self.authed_get(path).await;
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// One indicator value (`scope` = commune or a village id).
    pub async fn indicator(&self, id: &str, window: &str, scope: &str) -> Value {
        let all = self
            .get(&format!("/api/indicators?window={window}&village={scope}"))
            .await;
        all.as_array()
            .and_then(|a| a.iter().find(|v| v["id"] == id).cloned())
            .unwrap_or_else(|| panic!("indicator {id} missing in {all}"))
    }

    /// One scrape of /metrics (as admin).
    pub async fn scrape(&self) -> Scrape {
        let text = self
            .authed_get("/metrics")
            .await
            .text()
            .await
            .expect("metrics text");
        Scrape::parse(&text)
    }

    /// A counter from /metrics (sum over labels).
    pub async fn metric(&self, name: &str) -> f64 {
        self.scrape().await.sum(name)
    }

    /// Wait until an indicator has the value `want`; returns the item.
    pub async fn wait_value(&self, id: &str, window: &str, scope: &str, want: f64) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let v = self.indicator(id, window, scope).await;
            if v["value"].as_f64() == Some(want) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {id} ({window}, {scope}) = {want}; last: {v}; log:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
    }

    /// Wait until `f` holds, polling; panics with `what` on timeout.
    pub async fn wait_for<F, Fut>(&self, what: &str, timeout: Duration, mut f: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = Instant::now() + timeout;
        while !f().await {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; log:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
    }
}

/// A Mosquitto, a temp dir and the backend on the test config, ready.
pub async fn stack() -> (super::Mosquitto, tempfile::TempDir, Backend) {
    stack_with("", &[]).await
}

/// [`stack`] with TOML appended to the test config and extra environment
/// variables for the backend.
pub async fn stack_with(
    extra_toml: &str,
    env: &[(&str, &str)],
) -> (super::Mosquitto, tempfile::TempDir, Backend) {
    let broker = super::Mosquitto::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let config = format!(
        "{}\n{extra_toml}",
        test_config(broker.port, &dir.path().join("store"))
    );
    let b = Backend::start_with_env(dir.path(), &config, env);
    b.wait_ready().await;
    (broker, dir, b)
}

/// A dossier `received` payload.
pub fn dossier_received(id: &str, channel: &str, village: Option<&str>) -> Vec<u8> {
    let mut v = serde_json::json!({
        "ts": chrono::Utc::now().to_rfc3339(),
        "dossier_id": id,
        "event": "received",
        "channel": channel,
    });
    if let Some(vil) = village {
        v["village"] = Value::from(vil);
    }
    v.to_string().into_bytes()
}

/// The dossier topic of the test commune.
pub const DOSSIER: &str = "ioc/binh-lu/procedure/dossier";
