//! A real `nats-server` with JetStream on a free loopback port and a temp
//! store directory (`Nats`: stop by its own PID, restart on the same port
//! and store), and reading a stream back in order (`stream_entries`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use async_nats::jetstream;

use super::proc::{free_port, log_tail, wait_port, Proc};

/// Path of the nats-server binary, if installed.
pub fn find_nats_server() -> Option<PathBuf> {
    for p in [
        "/usr/sbin/nats-server",
        "/usr/bin/nats-server",
        "/usr/local/bin/nats-server",
    ] {
        if Path::new(p).is_file() {
            return Some(PathBuf::from(p));
        }
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("nats-server"))
        .find(|candidate| candidate.is_file())
}

/// Path of nats-server, or a panic that says how to install it.
pub fn nats_server_bin() -> PathBuf {
    find_nats_server().unwrap_or_else(|| {
        panic!(
            "nats-server is not installed: the uplink tests need a real NATS JetStream server. \
             Install it with `apt-get install -y nats-server` (scripts/test does this)."
        )
    })
}

/// `nats-server --version`.
pub fn nats_server_version(exe: &Path) -> String {
    Command::new(exe)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|_| "nats-server (version unknown)".into())
}

/// Spawn `nats-server -js` on `port` with its store in `store` (log in
/// `dir/nats-{tag}.log`) and wait until it listens.
pub fn spawn_nats(exe: &Path, dir: &Path, tag: &str, port: u16, store: &Path) -> Result<Proc> {
    spawn_nats_with(exe, dir, tag, port, store, &[])
}

/// [`spawn_nats`] with extra arguments (`--user`, `--pass`, …).
pub fn spawn_nats_with(
    exe: &Path,
    dir: &Path,
    tag: &str,
    port: u16,
    store: &Path,
    extra: &[&str],
) -> Result<Proc> {
    std::fs::create_dir_all(store).with_context(|| format!("creating {}", store.display()))?;
    let mut cmd = Command::new(exe);
    cmd.args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(store)
        .args(["--server_name", tag])
        .args(extra);
    let mut proc = Proc::spawn("nats-server", cmd, dir.join(format!("nats-{tag}.log")))?;
    if !wait_port(port, Duration::from_secs(10)) {
        proc.ensure_running()?;
        bail!(
            "nats-server did not listen on 127.0.0.1:{port} within 10 s; log:\n{}",
            log_tail(&proc.log, 30)
        );
    }
    Ok(proc)
}

/// A nats-server owned by a test: JetStream on, its store in a temp dir,
/// restartable on the same port and store.
pub struct Nats {
    pub port: u16,
    exe: PathBuf,
    dir: tempfile::TempDir,
    proc: Option<Proc>,
    extra: Vec<String>,
}

impl Nats {
    /// Start on a free port.
    pub fn start() -> Nats {
        Nats::start_with(&[])
    }

    /// Start with extra server arguments (e.g. `--user U --pass P`).
    pub fn start_with(extra: &[&str]) -> Nats {
        let exe = nats_server_bin();
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let mut n = Nats {
            port,
            exe,
            dir,
            proc: None,
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        n.spawn();
        n
    }

    fn spawn(&mut self) {
        let store = self.dir.path().join("js");
        let extra: Vec<&str> = self.extra.iter().map(String::as_str).collect();
        let proc = spawn_nats_with(&self.exe, self.dir.path(), "hub", self.port, &store, &extra)
            .unwrap_or_else(|e| panic!("{e:#}"));
        self.proc = Some(proc);
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Its log so far.
    pub fn log_text(&self) -> String {
        self.proc.as_ref().map(Proc::log_text).unwrap_or_else(|| {
            std::fs::read_to_string(self.dir.path().join("nats-hub.log")).unwrap_or_default()
        })
    }

    /// Graceful stop (SIGTERM to its own PID) and wait.
    pub fn stop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.stop();
        }
    }

    /// SIGKILL (its own PID).
    pub fn kill(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill();
        }
    }

    /// Start again on the same port and store (after `stop` or `kill`).
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// A client connected to it.
    pub async fn client(&self) -> async_nats::Client {
        async_nats::connect(self.url())
            .await
            .unwrap_or_else(|e| panic!("connecting to {}: {e}", self.url()))
    }
}

/// One message of a stream, as the province would read it.
#[derive(Debug, Clone)]
pub struct Stored {
    /// Stream sequence.
    pub stream_seq: u64,
    pub subject: String,
    /// `Nats-Msg-Id`.
    pub msg_id: String,
    /// `Ioc-Seq`.
    pub seq: i64,
    pub kind: String,
    pub body: serde_json::Value,
    /// Every header, for failure messages.
    pub headers: String,
}

/// Messages in `stream` (0 when it does not exist).
pub async fn stream_count(js: &jetstream::Context, stream: &str) -> u64 {
    match js.get_stream(stream).await {
        Ok(mut s) => s.info().await.map(|i| i.state.messages).unwrap_or(0),
        Err(_) => 0,
    }
}

/// Every message of `stream`, in stream order.
pub async fn stream_entries(js: &jetstream::Context, stream: &str) -> Result<Vec<Stored>> {
    let mut s = js.get_stream(stream).await.context("get stream")?;
    let info = s.info().await.context("stream info")?.clone();
    let mut out = Vec::new();
    for n in info.state.first_sequence..=info.state.last_sequence {
        if info.state.messages == 0 {
            break;
        }
        let m = s
            .get_raw_message(n)
            .await
            .with_context(|| format!("stream message {n}"))?;
        let header = |k: &str| {
            m.headers
                .get(k)
                .map(|v| v.as_str().to_string())
                .unwrap_or_default()
        };
        out.push(Stored {
            stream_seq: m.sequence,
            subject: m.subject.to_string(),
            msg_id: m
                .headers
                .get(async_nats::header::NATS_MESSAGE_ID)
                .map(|v| v.as_str().to_string())
                .unwrap_or_default(),
            headers: format!("{:?}", m.headers),
            seq: header("Ioc-Seq").parse().unwrap_or(-1),
            kind: header("Ioc-Kind"),
            body: serde_json::from_slice(&m.payload).unwrap_or(serde_json::Value::Null),
        });
    }
    Ok(out)
}
