//! Helpers shared by the benchmarks (`benches/*.rs`): child processes,
//! Mosquitto on a free loopback port, the release binary, `/proc` figures,
//! `/metrics` scrapes and a small HTTP client.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs::File;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

pub fn env_num<T: FromStr>(name: &str, default: T) -> Result<T> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => {
            let cleaned: String = v.trim().chars().filter(|c| *c != '_').collect();
            cleaned
                .parse()
                .map_err(|_| anyhow!("{name}={v:?} is not a valid non-negative number"))
        }
        _ => Ok(default),
    }
}

/// A child process that is killed (by its own handle) when dropped.
pub struct Proc {
    pub name: &'static str,
    pub child: Child,
    pub log: PathBuf,
}

impl Proc {
    pub fn spawn(name: &'static str, mut cmd: Command, log: PathBuf) -> Result<Proc> {
        let out = File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let err = out
            .try_clone()
            .with_context(|| format!("duplicating the handle of {}", log.display()))?;
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {name} ({:?})", cmd.get_program()))?;
        Ok(Proc { name, child, log })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fail with the log tail when the process has exited.
    pub fn ensure_running(&mut self) -> Result<()> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => bail!(
                "{} exited unexpectedly ({status}); last lines of {}:\n{}",
                self.name,
                self.log.display(),
                log_tail(&self.log, 30)
            ),
            Err(e) => Err(anyhow!(
                "cannot check whether {} is running: {e}",
                self.name
            )),
        }
    }

    /// SIGTERM (through `kill PID`), then SIGKILL after `grace`.
    pub fn terminate(&mut self, grace: Duration) -> Result<Option<Duration>> {
        if self.child.try_wait().ok().flatten().is_some() {
            return Ok(None);
        }
        let started = Instant::now();
        let sent = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if sent {
            while started.elapsed() < grace {
                if self.child.try_wait().ok().flatten().is_some() {
                    return Ok(Some(started.elapsed()));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        self.child
            .kill()
            .with_context(|| format!("killing {} (pid {})", self.name, self.pid()))?;
        let _ = self.child.wait();
        Ok(None)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

pub fn log_tail(path: &Path, lines: usize) -> String {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let all: Vec<&str> = text.lines().collect();
            let from = all.len().saturating_sub(lines);
            all[from..]
                .iter()
                .map(|l| format!("    {l}"))
                .collect::<Vec<_>>()
                .join("\n")
        }
        Err(e) => format!("    (cannot read the log: {e})"),
    }
}

pub fn find_mosquitto() -> Option<PathBuf> {
    let fixed = Path::new("/usr/sbin/mosquitto");
    if fixed.is_file() {
        return Some(fixed.to_path_buf());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("mosquitto"))
        .find(|candidate| candidate.is_file())
}

pub fn free_port() -> Result<u16> {
    let l =
        TcpListener::bind(("127.0.0.1", 0)).context("binding 127.0.0.1:0 to find a free port")?;
    Ok(l.local_addr()
        .context("reading the address of a bound socket")?
        .port())
}

pub fn start_mosquitto(exe: &Path, dir: &Path, tag: &str, inflight: u32) -> Result<(Proc, u16)> {
    let port = free_port()?;
    let conf = dir.join(format!("mosquitto-{tag}.conf"));
    // mosquitto.conf(5): max_inflight_messages bounds the QoS 1 messages sent
    // to a client and not yet acknowledged (default 20, 0 = no maximum); the
    // backend acknowledges only after commit, so it would also cap its
    // batches (mosquitto 2.0.11 lets a v3.1.1 subscriber exceed it: batches
    // of several hundred are seen with 20). max_queued_messages is the
    // per-client queue beyond that (default 1000; messages over it are
    // dropped), so it must hold a whole burst. sys_interval 1 lets the
    // benchmark watch $SYS/broker/store/messages/count.
    let text = format!(
        "listener {port} 127.0.0.1\n\
         allow_anonymous true\n\
         persistence false\n\
         max_inflight_messages {inflight}\n\
         max_queued_messages 10000000\n\
         log_dest stderr\n\
         log_type error\n\
         log_type warning\n\
         log_type notice\n\
         sys_interval 1\n"
    );
    std::fs::write(&conf, text).with_context(|| format!("writing {}", conf.display()))?;
    let mut cmd = Command::new(exe);
    cmd.arg("-c").arg(&conf);
    let mut proc = Proc::spawn("mosquitto", cmd, dir.join(format!("mosquitto-{tag}.log")))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        proc.ensure_running()?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok((proc, port));
        }
        if Instant::now() > deadline {
            bail!(
                "mosquitto did not listen on 127.0.0.1:{port} within 10 s; log:\n{}",
                log_tail(&proc.log, 30)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn mosquitto_version(exe: &Path) -> String {
    Command::new(exe)
        .arg("-h")
        .output()
        .ok()
        .and_then(|o| {
            let text = String::from_utf8_lossy(&o.stdout).into_owned()
                + &String::from_utf8_lossy(&o.stderr);
            text.lines()
                .find(|l| l.contains("version"))
                .map(|l| l.trim().to_string())
        })
        .unwrap_or_else(|| "mosquitto (version unknown)".into())
}

// ---------------------------------------------------------------- /proc

pub fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .trim()
                .parse::<f64>()
                .ok()
        })
        .filter(|t| *t > 0.0)
        .unwrap_or(100.0)
}

/// utime + stime of a process, in clock ticks.
pub fn cpu_ticks(pid: &str) -> Result<u64> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    // Fields after the command name (which may contain spaces) start at
    // field 3 (state); utime and stime are fields 14 and 15.
    let rest = text
        .rfind(')')
        .map(|i| &text[i + 1..])
        .ok_or_else(|| anyhow!("unexpected format of {path}"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| -> Result<u64> {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or_else(|| anyhow!("unexpected format of {path}"))
    };
    Ok(field(11)? + field(12)?)
}

/// VmHWM (peak resident set) of a process, in KiB.
pub fn peak_rss_kib(pid: u32) -> Result<u64> {
    status_kib(pid, "VmHWM:")
}

/// VmRSS (current resident set) of a process, in KiB.
pub fn rss_kib(pid: u32) -> Result<u64> {
    status_kib(pid, "VmRSS:")
}

fn status_kib(pid: u32, field: &str) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    text.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| anyhow!("no {field} in {path}"))
}

/// The filesystem type holding `path` (longest mount point prefix).
pub fn filesystem_of(path: &Path) -> String {
    let Ok(mounts) = std::fs::read_to_string("/proc/mounts") else {
        return "unknown".into();
    };
    let path = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (_dev, mount, fstype) = (f.next()?, f.next()?, f.next()?);
            path.starts_with(mount)
                .then(|| (mount.len(), fstype.to_string()))
        })
        .max_by_key(|(len, _)| *len)
        .map(|(_, t)| t)
        .unwrap_or_else(|| "unknown".into())
}

// ---------------------------------------------------------------- metrics

/// One scrape of `/metrics`: every sample by its full series name.
#[derive(Debug, Clone, Default)]
pub struct Scrape {
    pub samples: BTreeMap<String, f64>,
}

impl Scrape {
    pub fn parse(text: &str) -> Scrape {
        let samples = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .filter_map(|l| {
                let (series, value) = l.rsplit_once(' ')?;
                Some((series.to_string(), value.parse::<f64>().ok()?))
            })
            .collect();
        Scrape { samples }
    }

    /// Sum over every label set of a metric.
    pub fn sum(&self, name: &str) -> f64 {
        self.samples
            .iter()
            .filter(|(k, _)| k.split('{').next() == Some(name))
            .map(|(_, v)| v)
            .sum()
    }

    /// Each label set of a metric with its value.
    pub fn by_label(&self, name: &str) -> Vec<(String, f64)> {
        self.samples
            .iter()
            .filter_map(|(k, v)| {
                let (n, labels) = k.split_once('{')?;
                (n == name).then(|| (labels.trim_end_matches('}').to_string(), *v))
            })
            .collect()
    }

    /// This scrape minus an earlier one, per series.
    pub fn minus(&self, base: &Scrape) -> Scrape {
        let samples = self
            .samples
            .iter()
            .map(|(k, v)| (k.clone(), v - base.samples.get(k).copied().unwrap_or(0.0)))
            .collect();
        Scrape { samples }
    }

    pub fn received(&self) -> u64 {
        self.sum("ioc_messages_received_total") as u64
    }

    pub fn committed(&self) -> u64 {
        self.sum("ioc_events_committed_total") as u64
    }

    pub fn dead(&self) -> u64 {
        self.sum("ioc_dead_letters_total") as u64
    }

    pub fn duplicates(&self) -> u64 {
        self.sum("ioc_duplicates_total") as u64
    }

    /// New rows: events plus dead letters (duplicates excluded).
    pub fn new_rows(&self) -> u64 {
        self.committed() + self.dead()
    }

    /// Messages whose commit finished (received is counted before commit).
    pub fn accounted(&self) -> u64 {
        self.committed() + self.dead() + self.duplicates()
    }

    pub fn batches(&self) -> u64 {
        self.sum("ioc_journal_batches_total") as u64
    }

    /// Upper bound (seconds) of the bucket holding quantile `q` of the batch
    /// durations (cumulative `le` buckets).
    pub fn batch_seconds_quantile(&self, q: f64) -> Option<f64> {
        let mut buckets: Vec<(f64, f64)> = self
            .by_label("ioc_journal_batch_seconds_bucket")
            .into_iter()
            .filter_map(|(labels, count)| {
                let le = labels.strip_prefix("le=\"")?.trim_end_matches('"');
                let le = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().ok()?
                };
                Some((le, count))
            })
            .collect();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        let total = buckets.last()?.1;
        if total <= 0.0 {
            return None;
        }
        buckets
            .iter()
            .find(|(_, c)| *c >= q * total)
            .map(|(le, _)| *le)
    }
}

pub struct Http {
    pub client: reqwest::Client,
    pub base: String,
    /// The admin's session token (see `start_backend`), sent as a bearer.
    pub token: Option<String>,
}

/// Password of the first admin of the benchmarks' fresh stores.
pub const BENCH_ADMIN_PASSWORD: &str = "bench-admin-password-2026";

impl Http {
    pub fn new(addr: SocketAddr) -> Result<Http> {
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(10))
            .build()
            .context("building the HTTP client")?;
        Ok(Http {
            client,
            base: format!("http://{addr}"),
            token: None,
        })
    }

    /// `POST /api/auth/login` as `admin`; later requests carry the token.
    pub async fn login(&mut self) -> Result<()> {
        let url = format!("{}/api/auth/login", self.base);
        let resp = self
            .client
            .post(&url)
            .json(&serde_json::json!({"username": "admin", "password": BENCH_ADMIN_PASSWORD}))
            .send()
            .await
            .with_context(|| format!("POST {url}"))?;
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            bail!("POST /api/auth/login answered {status}: {body}");
        }
        let v: serde_json::Value = serde_json::from_str(&body)
            .with_context(|| format!("the login answer is not JSON: {body}"))?;
        self.token = Some(
            v["token"]
                .as_str()
                .ok_or_else(|| anyhow!("no token in the login answer: {body}"))?
                .to_string(),
        );
        Ok(())
    }

    /// `POST path` with a JSON body and the token; the answer's JSON.
    pub async fn post_json(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<serde_json::Value> {
        let url = format!("{}{path}", self.base);
        let mut req = self.client.post(&url).json(body);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.with_context(|| format!("POST {url}"))?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            bail!("POST {path} answered {status}: {text}");
        }
        serde_json::from_str(&text).with_context(|| format!("POST {path}: not JSON: {text}"))
    }

    pub async fn get(&self, path: &str) -> Result<(reqwest::StatusCode, String)> {
        let url = format!("{}{path}", self.base);
        let mut req = self.client.get(&url);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.with_context(|| format!("GET {url}"))?;
        let status = resp.status();
        let body = resp
            .text()
            .await
            .with_context(|| format!("reading the body of GET {url}"))?;
        Ok((status, body))
    }

    pub async fn scrape(&self) -> Result<Scrape> {
        let (status, body) = self.get("/metrics").await?;
        if !status.is_success() {
            bail!("GET /metrics answered {status}: {body}");
        }
        Ok(Scrape::parse(&body))
    }
}

// ---------------------------------------------------------------- backend

/// `commune-ioc serve` (the release binary that `cargo bench` builds) on
/// `config_path`, connected to the broker on `mqtt_port`, HTTP on a free
/// port. Returns once `/readyz` answers 200, with the seconds that took,
/// and an `Http` logged in as the store's first admin (whose password the
/// harness sets through `IOC__AUTH__ADMIN_PASSWORD`).
pub async fn start_backend(
    dir: &Path,
    tag: &str,
    config_path: &Path,
    mqtt_port: u16,
    server_log: &str,
    overrides: &[(String, String)],
) -> Result<(Proc, Http, f64)> {
    let port_file = dir.join(format!("http-{tag}.addr"));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_commune-ioc"));
    cmd.arg("serve")
        .arg("--config")
        .arg(config_path)
        .arg("--port-file")
        .arg(&port_file)
        .env_remove("IOC_CONFIG")
        .env_remove("IOC_PORT_FILE")
        .env("RUST_LOG", server_log)
        .env("IOC__AUTH__ADMIN_PASSWORD", BENCH_ADMIN_PASSWORD)
        .envs(overrides.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("IOC__MQTT__PORT", mqtt_port.to_string());
    let mut server = Proc::spawn(
        "commune-ioc serve",
        cmd,
        dir.join(format!("server-{tag}.log")),
    )?;
    let started = Instant::now();
    let addr: SocketAddr = loop {
        server.ensure_running()?;
        if let Ok(text) = std::fs::read_to_string(&port_file) {
            if let Ok(a) = text.trim().parse() {
                break a;
            }
        }
        if started.elapsed() > Duration::from_secs(30) {
            bail!(
                "the server wrote no port file ({}) within 30 s; log:\n{}",
                port_file.display(),
                log_tail(&server.log, 30)
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let mut http = Http::new(addr)?;
    loop {
        server.ensure_running()?;
        if let Ok((status, _)) = http.get("/readyz").await {
            if status == reqwest::StatusCode::OK {
                break;
            }
        }
        if started.elapsed() > Duration::from_secs(30) {
            let body = http
                .get("/readyz")
                .await
                .map(|(_, b)| b)
                .unwrap_or_default();
            bail!(
                "the server was not ready within 30 s (/readyz: {body}); log:\n{}",
                log_tail(&server.log, 30)
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ready = started.elapsed().as_secs_f64();
    http.login().await.with_context(|| {
        format!(
            "logging in as admin; server log:\n{}",
            log_tail(&server.log, 30)
        )
    })?;
    Ok((server, http, ready))
}
