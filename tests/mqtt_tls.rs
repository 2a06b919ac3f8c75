//! External brokers with TLS (rustls, a private CA) and credentials: the
//! backend connects and ingests; a wrong password keeps it not ready, with
//! the reason in the log and never the password.

mod kit;

use std::path::Path;
use std::process::Command;

use kit::{dossier_received, free_port, test_config, Backend, Mosquitto, Publisher, DOSSIER};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use serde_json::json;

const USER: &str = "commune-ioc";
const PASS: &str = "Mật-khẩu-42!";

/// Writes ca.pem, server.pem, server.key and a password file; returns the
/// TLS listener port and the config lines.
fn prepare(dir: &Path, tls_port: u16) -> String {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("CA key"))
        .expect("CA cert");
    let server_key = KeyPair::generate().expect("server key");
    let server = CertificateParams::new(vec!["localhost".to_string()])
        .expect("server params")
        .signed_by(&server_key, &ca)
        .expect("server cert");
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.join("server.pem"), server.pem()).unwrap();
    std::fs::write(dir.join("server.key"), server_key.serialize_pem()).unwrap();
    let passwd = dir.join("passwd");
    let status = Command::new("mosquitto_passwd")
        .args(["-b", "-c"])
        .arg(&passwd)
        .args([USER, PASS])
        .status()
        .expect("mosquitto_passwd (from the mosquitto package) must be installed");
    assert!(status.success());
    format!(
        "password_file {passwd}\nlistener {tls_port} 127.0.0.1\ncafile {d}/ca.pem\ncertfile {d}/server.pem\nkeyfile {d}/server.key\n",
        passwd = passwd.display(),
        d = dir.display()
    )
}

/// A Mosquitto with a TLS listener (private CA) and a password file, a temp
/// dir, and a backend config pointing at the TLS listener.
fn tls_broker() -> (Mosquitto, tempfile::TempDir, String) {
    let tls_port = free_port();
    let broker = Mosquitto::start_prepared(|d| prepare(d, tls_port));
    let dir = tempfile::tempdir().unwrap();
    let config = tls_config(
        tls_port,
        &dir.path().join("store"),
        &broker.dir().join("ca.pem"),
    );
    (broker, dir, config)
}

fn tls_config(tls_port: u16, store: &Path, ca: &Path) -> String {
    test_config(tls_port, store).replace(
        "[mqtt]\nhost = \"127.0.0.1\"",
        &format!(
            "[mqtt]\nhost = \"localhost\"\ntls = true\nca_file = \"{}\"\nusername = \"{USER}\"",
            ca.display()
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_password_from_the_environment() {
    let (broker, dir, config) = tls_broker();
    let b = Backend::start_with_env(dir.path(), &config, &[("IOC__MQTT__PASSWORD", PASS)]);
    b.wait_ready().await;
    let mut p = Publisher::with_credentials(broker.port, USER, PASS);
    for i in 0..5 {
        p.send(
            DOSSIER,
            &dossier_received(&format!("tls-{i}"), "online", None),
        )
        .await;
    }
    b.wait_for(
        "5 dossiers over TLS",
        std::time::Duration::from_secs(20),
        || async {
            b.indicator("dossiers_received", "today", "commune").await["value"] == json!(5.0)
        },
    )
    .await;
    assert!(
        !b.log_text().contains(PASS),
        "the password never appears in logs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_is_not_ready_and_not_logged() {
    let (broker, dir, config) = tls_broker();
    let wrong = "sai-mat-khau-9876";
    let b = Backend::start_with_env(dir.path(), &config, &[("IOC__MQTT__PASSWORD", wrong)]);
    // A refused connection, counted and logged with its reason.
    b.wait_for(
        "a refused connection",
        std::time::Duration::from_secs(20),
        || async {
            b.metric("ioc_mqtt_connection_errors_total").await >= 1.0
                && b.log_text().contains("NotAuthorized")
        },
    )
    .await;
    let (status, body) = b.get_status("/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["mqtt_connected"], false);
    assert!(b.metric("ioc_mqtt_connection_errors_total").await >= 1.0);
    let log = b.log_text();
    assert!(!log.contains(wrong), "password leaked into the log:\n{log}");
    assert!(
        log.contains("NotAuthorized"),
        "the reason is logged at the default level:\n{log}"
    );
    drop(broker);
}
