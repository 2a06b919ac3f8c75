//! Child processes (killed by their own handle when dropped), free loopback
//! ports and waiting on conditions.

use std::fs::OpenOptions;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

/// A free loopback TCP port.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral loopback port");
    l.local_addr().expect("local addr").port()
}

/// Whether something accepts TCP connections on `127.0.0.1:port`, polled
/// until `timeout`.
pub fn wait_port(port: u16, timeout: Duration) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// Poll `f` every 20 ms until it returns `Some`, or panic with `what` after
/// `timeout` (a generous deadline: a condition, not a time limit).
pub async fn wait_until<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The last `lines` lines of a log file, indented.
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

/// A child process whose stdout and stderr are appended to a log file. It
/// is killed (SIGKILL, by its own handle) when dropped; signals go to its
/// own PID only.
pub struct Proc {
    pub name: &'static str,
    pub child: Child,
    pub log: PathBuf,
}

impl Proc {
    /// Spawn `cmd` with its output appended to `log`.
    pub fn spawn(name: &'static str, mut cmd: Command, log: PathBuf) -> Result<Proc> {
        let out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .with_context(|| format!("opening {}", log.display()))?;
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

    /// The log so far ("" when unreadable).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `Some(status)` once the process has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
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

    /// Send SIGTERM (through `kill PID`) without waiting.
    pub fn signal_term(&self) -> bool {
        Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }

    /// SIGTERM and wait for the exit, however long it takes.
    pub fn stop(&mut self) -> ExitStatus {
        self.signal_term();
        self.child
            .wait()
            .unwrap_or_else(|e| panic!("waiting for {}: {e}", self.name))
    }

    /// SIGTERM, then SIGKILL after `grace`; how long a clean exit took.
    pub fn terminate(&mut self, grace: Duration) -> Result<Option<Duration>> {
        if self.exited().is_some() {
            return Ok(None);
        }
        let started = Instant::now();
        if self.signal_term() {
            while started.elapsed() < grace {
                if self.exited().is_some() {
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

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
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
