//! Test harness: a real Mosquitto on a free loopback port, the real
//! `commune-ioc` binary started on port 0, a publisher that waits for the
//! broker's PubAck, and HTTP helpers.
//!
//! Nothing here is mocked. When Mosquitto is missing the tests fail and say
//! what to install (scripts/test installs it).

#![allow(dead_code)]

pub mod victoria;

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::Value;

/// A free loopback TCP port.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral loopback port");
    l.local_addr().expect("local addr").port()
}

/// Path of the mosquitto binary, or a panic that says how to install it.
pub fn mosquitto_bin() -> PathBuf {
    for p in [
        "/usr/sbin/mosquitto",
        "/usr/bin/mosquitto",
        "/usr/local/sbin/mosquitto",
    ] {
        if Path::new(p).exists() {
            return PathBuf::from(p);
        }
    }
    if let Ok(out) = Command::new("sh")
        .arg("-c")
        .arg("command -v mosquitto")
        .output()
    {
        let s = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if !s.is_empty() {
            return PathBuf::from(s);
        }
    }
    panic!(
        "mosquitto is not installed: these tests need a real MQTT broker. \
         Install it with `apt-get install -y mosquitto` (scripts/test does this)."
    );
}

fn wait_port(port: u16, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// A Mosquitto broker owned by a test.
pub struct Mosquitto {
    child: Option<Child>,
    /// The port it listens on.
    pub port: u16,
    dir: tempfile::TempDir,
}

impl Mosquitto {
    /// Start with persistence on (so a restart keeps sessions and queues).
    pub fn start() -> Mosquitto {
        Mosquitto::start_prepared(|_| String::new())
    }

    /// Start after `prepare` wrote files into the broker's directory and
    /// returned extra mosquitto.conf lines (listeners, TLS, passwords).
    pub fn start_prepared(prepare: impl FnOnce(&Path) -> String) -> Mosquitto {
        let dir = tempfile::tempdir().expect("temp dir for mosquitto");
        // Mosquitto started as root drops to the `mosquitto` user: it must be
        // able to write its persistence file and log here, or it silently
        // loses every session on restart.
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777))
                .expect("make the mosquitto dir writable");
        }
        let port = free_port();
        let extra = prepare(dir.path());
        std::fs::write(dir.path().join("extra.conf"), extra).expect("write extra mosquitto config");
        let mut m = Mosquitto {
            child: None,
            port,
            dir,
        };
        m.spawn();
        m
    }

    /// The broker's own log.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("mosquitto.log")).unwrap_or_default()
    }

    /// The broker's working directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn spawn(&mut self) {
        let conf = self.dir.path().join("mosquitto.conf");
        let extra = std::fs::read_to_string(self.dir.path().join("extra.conf")).unwrap_or_default();
        let anonymous = !extra.contains("password_file");
        let mut f = std::fs::File::create(&conf).expect("write mosquitto.conf");
        writeln!(
            f,
            "per_listener_settings false\nallow_anonymous {anonymous}\npersistence true\n\
             persistence_location {dir}/\nmax_queued_messages 1000000\nmax_inflight_messages 1000\n\
             log_dest file {dir}/mosquitto.log\nlistener {port} 127.0.0.1\n{extra}",
            port = self.port,
            dir = self.dir.path().display()
        )
        .expect("write mosquitto.conf");
        let child = Command::new(mosquitto_bin())
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mosquitto");
        self.child = Some(child);
        assert!(
            wait_port(self.port, Duration::from_secs(10)),
            "mosquitto did not open port {}",
            self.port
        );
    }

    /// Stop gracefully (SIGTERM: Mosquitto saves its persistence file).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status();
            let _ = c.wait();
        }
    }

    /// Start again on the same port with the same persistence.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
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

/// The real binary, started with `serve`.
pub struct Backend {
    child: Option<Child>,
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
            child: None,
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
        let _ = std::fs::remove_file(&port_file);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open backend log");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_commune-ioc"));
        cmd.arg("serve")
            .arg("--config")
            .arg(&self.config)
            .arg("--port-file")
            .arg(&port_file)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("start commune-ioc");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(addr) = std::fs::read_to_string(&port_file) {
                self.url = format!("http://{}", addr.trim());
                break;
            }
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    panic!(
                        "commune-ioc exited early ({status}); log:\n{}",
                        self.log_text()
                    );
                }
            }
            assert!(
                Instant::now() < deadline,
                "commune-ioc did not start; log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The backend's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Kill without warning (SIGKILL), as a crash or power cut would.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Send SIGTERM without waiting for the exit.
    pub fn signal_term(&self) {
        if let Some(c) = self.child.as_ref() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status();
        }
    }

    /// Graceful stop (SIGTERM) and wait.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("backend is running");
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status();
        c.wait().expect("wait for commune-ioc")
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

    /// A counter from /metrics (sum over labels).
    pub async fn metric(&self, name: &str) -> f64 {
        let text = self
            .authed_get("/metrics")
            .await
            .text()
            .await
            .expect("metrics text");
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .filter(|l| l.split(['{', ' ']).next() == Some(name))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
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

impl Drop for Backend {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A Mosquitto, a temp dir and the backend on the test config, ready.
pub async fn stack() -> (Mosquitto, tempfile::TempDir, Backend) {
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let b = Backend::start(
        dir.path(),
        &test_config(broker.port, &dir.path().join("store")),
    );
    b.wait_ready().await;
    (broker, dir, b)
}

/// A QoS 1 publisher that sends one message at a time and waits for the
/// broker's PubAck, reconnecting and resending on any error. What it
/// returns from, the broker has accepted.
pub struct Publisher {
    port: u16,
    conn: Option<(AsyncClient, rumqttc::EventLoop)>,
    id: String,
    credentials: Option<(String, String)>,
}

impl Publisher {
    /// A publisher to the broker on `port`.
    pub fn new(port: u16) -> Publisher {
        Publisher {
            port,
            conn: None,
            id: format!("test-pub-{}-{}", std::process::id(), free_port()),
            credentials: None,
        }
    }

    /// A publisher that logs in with a username and password.
    pub fn with_credentials(port: u16, user: &str, pass: &str) -> Publisher {
        let mut p = Publisher::new(port);
        p.credentials = Some((user.into(), pass.into()));
        p
    }

    async fn connect(&mut self) -> bool {
        let mut opts = MqttOptions::new(self.id.clone(), "127.0.0.1", self.port);
        opts.set_keep_alive(Duration::from_secs(10));
        opts.set_max_packet_size(16 * 1024 * 1024, 16 * 1024 * 1024);
        if let Some((u, p)) = &self.credentials {
            opts.set_credentials(u.clone(), p.clone());
        }
        let (client, mut el) = AsyncClient::new(opts, 16);
        let ok = tokio::time::timeout(Duration::from_secs(2), async {
            loop {
                match el.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => return true,
                    Ok(_) => {}
                    Err(_) => return false,
                }
            }
        })
        .await
        .unwrap_or(false);
        if ok {
            self.conn = Some((client, el));
        }
        ok
    }

    /// Publish and wait for the broker's acknowledgement, retrying for up to
    /// 60 s across broker restarts.
    pub async fn send(&mut self, topic: &str, payload: &[u8]) {
        self.send_opts(topic, payload, false).await;
    }

    /// Publish with the retain flag.
    pub async fn send_opts(&mut self, topic: &str, payload: &[u8], retain: bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            assert!(
                Instant::now() < deadline,
                "could not publish to {topic} within 60 s"
            );
            if self.conn.is_none() && !self.connect().await {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            let Some((client, el)) = self.conn.as_mut() else {
                continue;
            };
            if client
                .publish(topic, QoS::AtLeastOnce, retain, payload.to_vec())
                .await
                .is_err()
            {
                self.conn = None;
                continue;
            }
            let acked = tokio::time::timeout(Duration::from_secs(3), async {
                loop {
                    match el.poll().await {
                        Ok(Event::Incoming(Packet::PubAck(_))) => return true,
                        Ok(_) => {}
                        Err(_) => return false,
                    }
                }
            })
            .await
            .unwrap_or(false);
            if acked {
                return;
            }
            self.conn = None;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
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
