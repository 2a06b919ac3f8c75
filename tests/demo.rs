//! The README's first command: the demo starts the embedded broker, the
//! simulator and the backend, serves /healthz, and indicators fill up.

mod kit;

use std::ffi::OsStr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_serves_health_and_simulated_indicators() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_commune-ioc"));
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"));
    let store = dir.path().join("store");
    run_demo(dir.path(), cmd, &["--store".as_ref(), store.as_os_str()]).await;
}

/// The installed binary's demo works from any directory: the example site
/// is built in, and its store goes to the user's data directory (never the
/// working directory).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_runs_from_any_directory_with_its_store_in_the_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let elsewhere = dir.path().join("elsewhere");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_commune-ioc"));
    cmd.current_dir(&elsewhere)
        .env("XDG_DATA_HOME", &data)
        .env("HOME", dir.path().join("home"));
    run_demo(dir.path(), cmd, &[]).await;
    assert!(
        data.join("commune-ioc/demo/journal.db").is_file(),
        "the demo store is not in $XDG_DATA_HOME/commune-ioc/demo"
    );
    let left: Vec<_> = std::fs::read_dir(&elsewhere).unwrap().collect();
    assert!(left.is_empty(), "the demo wrote into its working directory");
}

/// Start `cmd` (the binary, with its directory and environment) as the
/// demo, check /healthz, the printed login and kiosk URL, simulated
/// dossiers in the indicators and the wall screen, then stop it.
async fn run_demo(dir: &Path, mut cmd: Command, extra: &[&OsStr]) {
    let port_file = dir.join("port");
    let log = std::fs::File::create(dir.join("demo.log")).unwrap();
    let out = std::fs::File::create(dir.join("demo.out")).unwrap();
    let mut child = cmd
        .env_remove("IOC_CONFIG")
        .env_remove("IOC_DEMO_STORE")
        .args(["demo", "--listen", "127.0.0.1:0", "--rate", "50"])
        .arg("--mqtt-port")
        .arg(kit::free_port().to_string())
        .arg("--port-file")
        .arg(&port_file)
        .args(extra)
        .stdout(out)
        .stderr(log)
        .spawn()
        .expect("start the demo");
    let logs = || std::fs::read_to_string(dir.join("demo.log")).unwrap_or_default();
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
        let text = std::fs::read_to_string(dir.join("demo.out")).unwrap_or_default();
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
