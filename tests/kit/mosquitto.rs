//! A real Mosquitto on a free loopback port, for tests (`Mosquitto`, with
//! persistence, restarts and extra configuration) and benchmarks
//! (`start_mosquitto`, no persistence, `$SYS` every second).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::proc::{free_port, log_tail, wait_port, Proc};

/// Path of the mosquitto binary, if installed.
pub fn find_mosquitto() -> Option<PathBuf> {
    for p in [
        "/usr/sbin/mosquitto",
        "/usr/bin/mosquitto",
        "/usr/local/sbin/mosquitto",
    ] {
        if Path::new(p).is_file() {
            return Some(PathBuf::from(p));
        }
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("mosquitto"))
        .find(|candidate| candidate.is_file())
}

/// Path of the mosquitto binary, or a panic that says how to install it.
pub fn mosquitto_bin() -> PathBuf {
    find_mosquitto().unwrap_or_else(|| {
        panic!(
            "mosquitto is not installed: these tests need a real MQTT broker. \
             Install it with `apt-get install -y mosquitto` (scripts/test does this)."
        )
    })
}

/// The version line of `mosquitto -h`.
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

/// What goes into a mosquitto.conf.
pub struct Conf<'a> {
    pub port: u16,
    /// Where the persistence file goes, when persistence is on.
    pub persistence: Option<&'a Path>,
    /// `max_inflight_messages`: QoS 1 messages sent to a client and not yet
    /// acknowledged (the backend acknowledges after commit, so this also
    /// caps its batches; mosquitto 2.0.11 lets a v3.1.1 subscriber exceed
    /// it).
    pub inflight: u32,
    /// `max_queued_messages`: the per-client queue beyond that (messages
    /// over it are dropped), so it must hold a whole burst.
    pub queued: u64,
    /// `sys_interval` (a benchmark watches `$SYS/broker/store/messages/count`).
    pub sys_interval: Option<u32>,
    /// Log connections too (`log_type information`).
    pub log_connections: bool,
    /// Extra lines (listeners, TLS, password files).
    pub extra: &'a str,
}

impl Conf<'_> {
    pub fn text(&self) -> String {
        let anonymous = !self.extra.contains("password_file");
        let mut t = format!(
            "per_listener_settings false\nallow_anonymous {anonymous}\n\
             max_inflight_messages {}\nmax_queued_messages {}\n\
             log_dest stderr\nlog_type error\nlog_type warning\nlog_type notice\n\
             listener {} 127.0.0.1\n",
            self.inflight, self.queued, self.port
        );
        if self.log_connections {
            t += "log_type information\n";
        }
        match self.persistence {
            Some(dir) => {
                t += &format!(
                    "persistence true\npersistence_location {}/\n",
                    dir.display()
                )
            }
            None => t += "persistence false\n",
        }
        if let Some(s) = self.sys_interval {
            t += &format!("sys_interval {s}\n");
        }
        t + self.extra
    }
}

/// Start mosquitto on `conf` (written to `dir/mosquitto-{tag}.conf`, log
/// `dir/mosquitto-{tag}.log`) and wait until it listens.
pub fn spawn_mosquitto(exe: &Path, dir: &Path, tag: &str, conf: &Conf<'_>) -> Result<Proc> {
    let path = dir.join(format!("mosquitto-{tag}.conf"));
    std::fs::write(&path, conf.text()).with_context(|| format!("writing {}", path.display()))?;
    let mut cmd = Command::new(exe);
    cmd.arg("-c").arg(&path);
    let mut proc = Proc::spawn("mosquitto", cmd, dir.join(format!("mosquitto-{tag}.log")))?;
    if !wait_port(conf.port, Duration::from_secs(10)) {
        proc.ensure_running()?;
        bail!(
            "mosquitto did not listen on 127.0.0.1:{} within 10 s; log:\n{}",
            conf.port,
            log_tail(&proc.log, 30)
        );
    }
    Ok(proc)
}

/// A benchmark's broker: no persistence, `$SYS` every second, `inflight`
/// as given. Returns it with its port.
pub fn start_mosquitto(exe: &Path, dir: &Path, tag: &str, inflight: u32) -> Result<(Proc, u16)> {
    let port = free_port();
    let conf = Conf {
        port,
        persistence: None,
        inflight,
        queued: 10_000_000,
        sys_interval: Some(1),
        log_connections: false,
        extra: "",
    };
    Ok((spawn_mosquitto(exe, dir, tag, &conf)?, port))
}

/// A test's broker, owned by the test: persistence on (so a restart keeps
/// sessions and queues), its own temp directory.
pub struct Mosquitto {
    proc: Option<Proc>,
    /// The port it listens on.
    pub port: u16,
    dir: tempfile::TempDir,
    extra: String,
}

impl Mosquitto {
    /// Start with persistence on.
    pub fn start() -> Mosquitto {
        Mosquitto::start_prepared(|_| String::new())
    }

    /// Start after `prepare` wrote files into the broker's directory and
    /// returned extra mosquitto.conf lines (listeners, TLS, passwords).
    pub fn start_prepared(prepare: impl FnOnce(&Path) -> String) -> Mosquitto {
        let dir = tempfile::tempdir().expect("temp dir for mosquitto");
        // Mosquitto started as root drops to the `mosquitto` user: it must be
        // able to write its persistence file here, or it silently loses
        // every session on restart.
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777))
                .expect("make the mosquitto dir writable");
        }
        let extra = prepare(dir.path());
        let mut m = Mosquitto {
            proc: None,
            port: free_port(),
            dir,
            extra,
        };
        m.spawn();
        m
    }

    /// The broker's own log.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("mosquitto-test.log")).unwrap_or_default()
    }

    /// The broker's working directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn spawn(&mut self) {
        let conf = Conf {
            port: self.port,
            persistence: Some(self.dir.path()),
            inflight: 1000,
            queued: 1_000_000,
            sys_interval: None,
            log_connections: true,
            extra: &self.extra,
        };
        let proc = spawn_mosquitto(&mosquitto_bin(), self.dir.path(), "test", &conf)
            .unwrap_or_else(|e| panic!("{e:#}"));
        self.proc = Some(proc);
    }

    /// Stop gracefully (SIGTERM: Mosquitto saves its persistence file).
    pub fn stop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.stop();
        }
    }

    /// Start again on the same port with the same persistence.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }
}
