//! The shipped Mosquitto (deploy/mosquitto: mosquitto.conf and acl, with
//! `use_username_as_clientid`, persistence, one account per client) on a
//! loopback port, with the accounts a test gives (mosquitto_passwd).
//! Used by tests/hostile_mqtt.rs and tests/broadcasts.rs.

use std::time::Duration;

pub struct Shipped {
    proc: Option<super::proc::Proc>,
    pub port: u16,
    /// The data directory (mosquitto.db, the log).
    pub dir: tempfile::TempDir,
}

impl Shipped {
    /// Start with these accounts (user, password) in the password file.
    pub fn start(accounts: &[(&str, &str)]) -> Shipped {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("temp dir");
        // Mosquitto started as root drops to the `mosquitto` user.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let port = super::free_port();
        let data = format!("{}/", dir.path().display());
        let conf = std::fs::read_to_string(root.join("deploy/mosquitto/mosquitto.conf"))
            .expect("read the shipped mosquitto.conf");
        let mut out = String::new();
        for line in conf.lines() {
            let line = line.replace("/mosquitto/data/", &data);
            if line.starts_with("listener ") {
                out += &format!("listener {port} 127.0.0.1\n");
            } else if line.starts_with("log_dest ") {
                out += &format!("log_dest file {data}mosquitto.log\n");
            } else {
                out += &line;
                out.push('\n');
            }
        }
        std::fs::write(dir.path().join("mosquitto.conf"), out).unwrap();
        std::fs::copy(root.join("deploy/mosquitto/acl"), dir.path().join("acl")).unwrap();
        let passwd = dir.path().join("passwd");
        std::fs::write(&passwd, "").unwrap();
        for (user, pass) in accounts {
            let ok = std::process::Command::new("mosquitto_passwd")
                .arg("-b")
                .arg(&passwd)
                .arg(user)
                .arg(pass)
                .status()
                .expect("run mosquitto_passwd (package mosquitto)");
            assert!(ok.success(), "mosquitto_passwd {user}");
        }
        for f in ["passwd", "acl", "mosquitto.conf"] {
            std::fs::set_permissions(dir.path().join(f), std::fs::Permissions::from_mode(0o644))
                .unwrap();
        }
        let mut m = Shipped {
            proc: None,
            port,
            dir,
        };
        m.spawn();
        m
    }

    fn spawn(&mut self) {
        let mut cmd = std::process::Command::new(super::mosquitto::mosquitto_bin());
        cmd.arg("-c").arg(self.dir.path().join("mosquitto.conf"));
        let proc = super::proc::Proc::spawn("mosquitto", cmd, self.dir.path().join("stderr.log"))
            .expect("start mosquitto");
        assert!(
            super::proc::wait_port(self.port, Duration::from_secs(10)),
            "mosquitto did not listen; {}",
            self.log()
        );
        self.proc = Some(proc);
    }

    /// SIGKILL by its own PID (a power cut, for the broker), then start again
    /// on the same files.
    pub fn kill_and_restart(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill();
        }
        // The port can be briefly taken by a client socket of a parallel
        // test (ephemeral ports): try the bind again, a bounded number of
        // times.
        for _ in 0..50 {
            let free = std::net::TcpListener::bind(("127.0.0.1", self.port)).is_ok();
            if free {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.spawn();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("mosquitto.log")).unwrap_or_default()
    }
}
