//! A real `nats-server` configured by a config file (`-c`), for the
//! uplink's logins: TLS with the server certificate of `pki`, mutual TLS
//! (`verify: true`), NKey users. Spawned through `nats::spawn_nats_with`
//! (JetStream on, loopback, its store in a temp dir), stopped by its own
//! PID.

use std::path::{Path, PathBuf};

use super::nats::{nats_server_bin, spawn_nats_with};
use super::pki::Pki;
use super::proc::{free_port, Proc};

/// A nats-server run from a config file, restartable on the same port.
pub struct ConfNats {
    /// Its client port (on 127.0.0.1).
    pub port: u16,
    exe: PathBuf,
    dir: tempfile::TempDir,
    conf: PathBuf,
    proc: Option<Proc>,
}

impl ConfNats {
    /// Write `conf` (nats-server config syntax) and start the server on
    /// it, on a free port with JetStream.
    pub fn start(conf: &str) -> ConfNats {
        let exe = nats_server_bin();
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("nats.conf");
        std::fs::write(&path, conf).expect("write nats.conf");
        let mut n = ConfNats {
            port: free_port(),
            exe,
            dir,
            conf: path,
            proc: None,
        };
        n.spawn();
        n
    }

    fn spawn(&mut self) {
        let store = self.dir.path().join("js");
        let conf = self.conf.to_string_lossy().into_owned();
        let proc = spawn_nats_with(
            &self.exe,
            self.dir.path(),
            "auth",
            self.port,
            &store,
            &["-c", &conf],
        )
        .unwrap_or_else(|e| panic!("{e:#}\nconfig:\n{}", self.conf_text()));
        self.proc = Some(proc);
    }

    /// The config it runs on.
    pub fn conf_text(&self) -> String {
        std::fs::read_to_string(&self.conf).unwrap_or_default()
    }

    /// A scratch directory that lives as long as the server.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `{scheme}://localhost:PORT` (the name on the test certificate).
    pub fn url(&self, scheme: &str) -> String {
        format!("{scheme}://localhost:{}", self.port)
    }

    /// Its log so far.
    pub fn log_text(&self) -> String {
        self.proc.as_ref().map(Proc::log_text).unwrap_or_default()
    }

    /// Graceful stop (SIGTERM to its own PID) and wait.
    pub fn stop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.stop();
        }
    }
}

impl Drop for ConfNats {
    fn drop(&mut self) {
        self.stop();
    }
}

fn quoted(p: &Path) -> String {
    format!("{:?}", p.to_string_lossy())
}

/// A `tls { }` block with the server certificate of `pki` (for
/// `localhost`); with `verify`, a client certificate signed by the CA is
/// required (mutual TLS).
pub fn tls_block(pki: &Pki, verify: bool) -> String {
    format!(
        "tls {{\n  cert_file: {}\n  key_file: {}\n  ca_file: {}\n  verify: {verify}\n  timeout: 5\n}}\n",
        quoted(&pki.server_cert),
        quoted(&pki.server_key),
        quoted(&pki.ca),
    )
}

/// An NKey user: its public key (`U…`, for the server) and its seed
/// (`SU…`, for the client).
pub struct UserKey {
    pub public: String,
    pub seed: String,
}

/// A new NKey user pair.
pub fn user_key() -> UserKey {
    let kp = nkeys::KeyPair::new_user();
    UserKey {
        public: kp.public_key(),
        seed: kp.seed().expect("user seed"),
    }
}

/// An `authorization { }` block admitting these NKey users.
pub fn nkey_users_block(public_keys: &[&str]) -> String {
    let users: Vec<String> = public_keys
        .iter()
        .map(|k| format!("    {{ nkey: {k:?} }}"))
        .collect();
    format!(
        "authorization {{\n  users = [\n{}\n  ]\n}}\n",
        users.join(",\n")
    )
}
