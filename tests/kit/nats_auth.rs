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

/// Operator mode (decentralised JWT auth) on one server: an operator, an
/// account with JetStream, and a user of it, each an NKey pair, chained by
/// JWTs signed with `nkeys` (the server checks every signature).
pub struct Operator {
    /// The server's config lines: `operator`, `resolver: MEMORY`,
    /// `resolver_preload` with the account's JWT.
    pub conf: String,
    /// A `.creds` file's text for the user: its JWT and its seed.
    pub creds: String,
    /// The user's seed (to check that it never reaches a log).
    pub user_seed: String,
}

/// A JWT (`ed25519-nkey`) with `nats` claims, signed by `issuer`.
fn jwt(issuer: &nkeys::KeyPair, subject: &str, name: &str, nats: serde_json::Value) -> String {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    use sha2::Digest as _;
    let header = serde_json::json!({"typ": "JWT", "alg": "ed25519-nkey"});
    let mut claims = serde_json::json!({
        "jti": "",
        "iat": chrono::Utc::now().timestamp(),
        "iss": issuer.public_key(),
        "name": name,
        "sub": subject,
        "nats": nats,
    });
    // The id: a digest of the claims (the server does not recompute it).
    let digest = sha2::Sha256::digest(claims.to_string().as_bytes());
    claims["jti"] = hex::encode_upper(&digest[..16]).into();
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let sig = issuer.sign(signing_input.as_bytes()).expect("sign the JWT");
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig))
}

/// An operator, an account `IOC` with JetStream (no limits), the system
/// account, and a user `user_name` of `IOC`.
pub fn operator(user_name: &str) -> Operator {
    let op = nkeys::KeyPair::new_operator();
    let account = nkeys::KeyPair::new_account();
    let system = nkeys::KeyPair::new_account();
    let user = nkeys::KeyPair::new_user();
    let op_jwt = jwt(
        &op,
        &op.public_key(),
        "Sở TT&TT thử nghiệm",
        serde_json::json!({"type": "operator", "version": 2}),
    );
    let account_jwt = jwt(
        &op,
        &account.public_key(),
        "IOC",
        serde_json::json!({
            "type": "account",
            "version": 2,
            "limits": {
                "subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1,
                "wildcards": true, "conn": -1, "leaf": -1,
                "mem_storage": -1, "disk_storage": -1, "streams": -1, "consumer": -1
            },
            "default_permissions": {"pub": {}, "sub": {}}
        }),
    );
    // JetStream needs the server's system account.
    let system_jwt = jwt(
        &op,
        &system.public_key(),
        "SYS",
        serde_json::json!({
            "type": "account",
            "version": 2,
            "limits": {
                "subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1,
                "wildcards": true, "conn": -1, "leaf": -1
            },
            "default_permissions": {"pub": {}, "sub": {}}
        }),
    );
    let user_jwt = jwt(
        &account,
        &user.public_key(),
        user_name,
        serde_json::json!({
            "type": "user", "version": 2,
            "pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1
        }),
    );
    let user_seed = user.seed().expect("user seed");
    let creds = format!(
        "-----BEGIN NATS USER JWT-----\n{user_jwt}\n------END NATS USER JWT------\n\n\
         ************************* IMPORTANT *************************\n\
         NKEY Seed printed below can be used to sign and prove identity.\n\
         NKEYs are sensitive and should be treated as secrets.\n\n\
         -----BEGIN USER NKEY SEED-----\n{user_seed}\n------END USER NKEY SEED------\n\n\
         *************************************************************\n"
    );
    let conf = format!(
        "operator: {op_jwt:?}\nsystem_account: {}\nresolver: MEMORY\n\
         resolver_preload: {{\n  {}: {account_jwt:?}\n  {}: {system_jwt:?}\n}}\n",
        system.public_key(),
        account.public_key(),
        system.public_key()
    );
    Operator {
        conf,
        creds,
        user_seed,
    }
}
