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

/// One node of a [`Cluster`]: its client, route and monitoring ports, its
/// own store directory and server name.
pub struct Node {
    /// Server name (`n1`, `n2`, `n3`).
    pub name: String,
    /// Client port.
    pub port: u16,
    /// Route (cluster) port.
    pub route_port: u16,
    /// Monitoring (HTTP) port: `/healthz`, `/jsz`.
    pub monitor_port: u16,
    store: PathBuf,
    proc: Option<Proc>,
}

impl Node {
    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Its process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.proc.as_ref().map(Proc::pid)
    }
}

/// A three-node nats-server cluster on loopback, JetStream on every node
/// (each with its own store and server name), routes between all of them,
/// `--no_advertise` (a client uses only the URLs it was given, so a proxy
/// in front of them really cuts it off). Each node is killed (SIGKILL, by
/// its own PID) and restarted on the same ports and store by the test.
pub struct Cluster {
    /// The nodes, in order.
    pub nodes: Vec<Node>,
    /// `--cluster_name`.
    pub name: String,
    exe: PathBuf,
    dir: tempfile::TempDir,
}

impl Cluster {
    /// Start three nodes and wait until JetStream answers with a meta
    /// leader (a replicas-3 stream can be created).
    pub async fn start() -> Cluster {
        Cluster::start_n(3).await
    }

    /// Start `n` nodes (at least 1) and wait until JetStream answers.
    pub async fn start_n(n: usize) -> Cluster {
        let exe = nats_server_bin();
        let dir = tempfile::tempdir().expect("temp dir for the NATS cluster");
        let nodes = (1..=n.max(1))
            .map(|i| Node {
                name: format!("n{i}"),
                port: free_port(),
                route_port: free_port(),
                monitor_port: free_port(),
                store: dir.path().join(format!("js-n{i}")),
                proc: None,
            })
            .collect();
        let mut c = Cluster {
            nodes,
            name: format!("ioc-kit-{}", free_port()),
            exe,
            dir,
        };
        for i in 0..c.nodes.len() {
            c.spawn(i);
        }
        c.wait_jetstream(n.clamp(1, 3), Duration::from_secs(60))
            .await;
        c
    }

    fn spawn(&mut self, i: usize) {
        let routes: Vec<String> = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, n)| format!("nats://127.0.0.1:{}", n.route_port))
            .collect();
        let node = &self.nodes[i];
        let mut extra: Vec<String> = vec![
            "-m".into(),
            node.monitor_port.to_string(),
            "--no_advertise".into(),
        ];
        if self.nodes.len() > 1 {
            extra.extend([
                "--cluster".into(),
                format!("nats://127.0.0.1:{}", node.route_port),
                "--cluster_name".into(),
                self.name.clone(),
                "--routes".into(),
                routes.join(","),
            ]);
        }
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        let proc = spawn_nats_with(
            &self.exe,
            self.dir.path(),
            &node.name,
            node.port,
            &node.store,
            &extra,
        )
        .unwrap_or_else(|e| panic!("{e:#}"));
        self.nodes[i].proc = Some(proc);
    }

    /// Every client URL, comma-separated (the `url` of `[uplink]` and
    /// `[stream]`).
    pub fn urls(&self) -> String {
        self.url_list().join(",")
    }

    /// Every client URL.
    pub fn url_list(&self) -> Vec<String> {
        self.nodes.iter().map(Node::url).collect()
    }

    /// A client that knows every node (it fails over between them).
    pub async fn client(&self) -> async_nats::Client {
        let urls: Vec<async_nats::ServerAddr> = self
            .url_list()
            .iter()
            .map(|u| u.parse().expect("server address"))
            .collect();
        async_nats::ConnectOptions::new()
            .retry_on_initial_connect()
            .connect(urls)
            .await
            .unwrap_or_else(|e| panic!("connecting to the cluster {}: {e}", self.urls()))
    }

    /// A JetStream context on [`Cluster::client`].
    pub async fn jetstream(&self) -> jetstream::Context {
        jetstream::new(self.client().await)
    }

    /// SIGKILL node `i` (its own PID), as a crash would.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut p) = self.nodes[i].proc.take() {
            p.kill();
        }
    }

    /// Start node `i` again on the same ports and store (after `kill`),
    /// and wait until it reports healthy (`/healthz`: JetStream current).
    pub async fn restart(&mut self, i: usize) {
        self.kill(i);
        self.spawn(i);
        self.wait_healthy(i, Duration::from_secs(60)).await;
    }

    /// Wait until node `i`'s `/healthz` answers `ok`.
    pub async fn wait_healthy(&self, i: usize, timeout: Duration) {
        let url = format!("http://127.0.0.1:{}/healthz", self.nodes[i].monitor_port);
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(2))
            .build()
            .expect("http client");
        let deadline = std::time::Instant::now() + timeout;
        let mut last = String::new();
        loop {
            if let Ok(r) = http.get(&url).send().await {
                let ok = r.status().is_success();
                last = r.text().await.unwrap_or_default();
                if ok && last.contains("ok") {
                    return;
                }
            }
            assert!(
                std::time::Instant::now() < deadline,
                "NATS node {} not healthy within {timeout:?} (last /healthz: {last}); log:\n{}",
                self.nodes[i].name,
                log_tail(&self.log_path(i), 30)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Wait until JetStream can create (and delete) a stream with
    /// `replicas` replicas: a meta leader is elected and enough nodes are
    /// up.
    pub async fn wait_jetstream(&self, replicas: usize, timeout: Duration) {
        let js = self.jetstream().await;
        let name = format!("KIT_READY_{}", free_port());
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let made = js
                .create_stream(jetstream::stream::Config {
                    name: name.clone(),
                    subjects: vec![format!("kit.ready.{name}")],
                    num_replicas: replicas,
                    storage: jetstream::stream::StorageType::Memory,
                    ..Default::default()
                })
                .await;
            match made {
                Ok(_) => {
                    let _ = js.delete_stream(&name).await;
                    return;
                }
                Err(e) => {
                    assert!(
                        std::time::Instant::now() < deadline,
                        "JetStream on the cluster did not answer within {timeout:?}: {e}; \
                         node logs:\n{}",
                        self.logs_tail(20)
                    );
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            }
        }
    }

    fn log_path(&self, i: usize) -> PathBuf {
        self.dir
            .path()
            .join(format!("nats-{}.log", self.nodes[i].name))
    }

    /// Node `i`'s log so far.
    pub fn log_text(&self, i: usize) -> String {
        std::fs::read_to_string(self.log_path(i)).unwrap_or_default()
    }

    /// The last `lines` lines of every node's log, for failure messages.
    pub fn logs_tail(&self, lines: usize) -> String {
        (0..self.nodes.len())
            .map(|i| {
                format!(
                    "  {}:\n{}",
                    self.nodes[i].name,
                    log_tail(&self.log_path(i), lines)
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Create the journal stream as a province does (the uplink's own stream
/// config: subjects `{prefix}.*.journal.>`, file storage, the duplicate
/// window), with `replicas` replicas; an existing one is kept.
pub async fn create_journal_stream(js: &jetstream::Context, replicas: usize) {
    let cfg = commune_ioc::config::Uplink {
        stream_replicas: replicas,
        ..Default::default()
    };
    js.get_or_create_stream(commune_ioc::uplink::stream_config(&cfg))
        .await
        .unwrap_or_else(|e| panic!("creating the journal stream: {e}"));
}
