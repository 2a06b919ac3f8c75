//! The README's first command: the demo starts the embedded broker, the
//! simulator and the backend, serves /healthz, and indicators fill up.

mod kit;

use std::process::Command;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_serves_health_and_simulated_indicators() {
    let dir = tempfile::tempdir().unwrap();
    let port_file = dir.path().join("port");
    let log = std::fs::File::create(dir.path().join("demo.log")).unwrap();
    let out = std::fs::File::create(dir.path().join("demo.out")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_commune-ioc"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["demo", "--listen", "127.0.0.1:0", "--rate", "50"])
        .arg("--mqtt-port")
        .arg(kit::free_port().to_string())
        .arg("--store")
        .arg(dir.path().join("store"))
        .arg("--port-file")
        .arg(&port_file)
        .stdout(out)
        .stderr(log)
        .spawn()
        .expect("start the demo");
    let logs = || std::fs::read_to_string(dir.path().join("demo.log")).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(30);
    let url = loop {
        if let Ok(a) = std::fs::read_to_string(&port_file) {
            break format!("http://{}", a.trim());
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "demo exited: {}",
            logs()
        );
        assert!(Instant::now() < deadline, "demo did not start: {}", logs());
        std::thread::sleep(Duration::from_millis(50));
    };
    let health = reqwest::get(format!("{url}/healthz"))
        .await
        .expect("GET /healthz");
    assert_eq!(health.status(), 200);
    // The demo prints the wall screen's kiosk URL with its token, and a
    // login.
    let printed = loop {
        let text = std::fs::read_to_string(dir.path().join("demo.out")).unwrap_or_default();
        if text.contains("Dừng: Ctrl+C") {
            break text;
        }
        assert!(Instant::now() < deadline, "demo printed no banner: {text}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let token = printed
        .split("token=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no kiosk token in: {printed}"))
        .to_owned();
    assert!(printed.contains("tài khoản demo / mật khẩu "), "{printed}");
    // Without the token the API refuses.
    let refused = reqwest::get(format!("{url}/api/indicators")).await.unwrap();
    assert_eq!(refused.status(), 401);
    // Simulated dossiers arrive through the embedded broker.
    let client = reqwest::Client::new();
    loop {
        let v: serde_json::Value = client
            .get(format!(
                "{url}/api/indicators?window=today&id=dossiers_received"
            ))
            .bearer_auth(&token)
            .send()
            .await
            .expect("GET indicators")
            .json()
            .await
            .expect("JSON");
        if v[0]["value"].as_f64().is_some_and(|n| n > 0.0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no simulated dossiers: {v}\n{}",
            logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let page = reqwest::get(format!("{url}/"))
        .await
        .expect("GET /")
        .text()
        .await
        .unwrap();
    assert!(page.contains("Trung tâm giám sát và điều hành thông minh"));
    let _ = child.kill();
    let _ = child.wait();
}
