//! The adversarial probe of issue 11 (HTTP and access), kept as a suite
//! against the real binary on loopback: bursts of logins, lockouts that
//! cannot be turned against the admin, a flood of refused logins and of
//! audited actions against a small store cap, idle and half-sent
//! connections, handlers fed hostile input, and the checks that held.
//! Every loop is bounded in count and time.

mod kit;

use std::io::{Read, Write};
use std::net::{IpAddr, TcpStream};
use std::time::{Duration, Instant};

use kit::stack_with as start;
use kit::{Backend, Publisher, DOSSIER};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// A client whose connections come from `local` (any 127.0.0.0/8 address
/// reaches the server on 127.0.0.1: a second "machine" on loopback).
fn client_from(local: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(local.parse::<IpAddr>().unwrap())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// A request: status, headers, raw body text, JSON body (Null if none).
async fn send(
    c: &reqwest::Client,
    b: &Backend,
    method: Method,
    path: &str,
    auth: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, reqwest::header::HeaderMap, String, Value) {
    let mut req = c.request(method, format!("{}{path}", b.url));
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    if let Some(body) = body {
        req = req.json(&body);
    }
    let r = req.send().await.unwrap_or_else(|e| panic!("{path}: {e}"));
    let status = r.status();
    let headers = r.headers().clone();
    let text = r.text().await.unwrap_or_default();
    let v = serde_json::from_str(&text).unwrap_or(Value::Null);
    (status, headers, text, v)
}

async fn login(c: &reqwest::Client, b: &Backend, user: &str, pw: &str) -> (StatusCode, Value) {
    let (s, _, _, v) = send(
        c,
        b,
        Method::POST,
        "/api/auth/login",
        None,
        Some(json!({"username": user, "password": pw})),
    )
    .await;
    (s, v)
}

/// The resident memory of a process, from /proc (KiB).
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc status")
}

fn is_json_error(v: &Value) -> bool {
    v["error"]["code"].is_string() && v["error"]["message"].is_string()
}

// ---------------------------------------------------------------- item 12

/// Steps that used to panic the handler (the connection dropped with no
/// answer) get a JSON 400 `invalid_step`, and nothing panicked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_steps_get_a_json_400_not_a_dropped_connection() {
    let (_broker, _dir, b) = start("", &[]).await;
    let token = format!("Bearer {}", b.token().await);
    let c = reqwest::Client::new();
    for step in [
        "1%C3%A9",
        "h%C3%A9",
        "%F0%9F%98%80",
        "99999999d",
        "106751991167300d",
        "2562047788015215h",
        "-5m",
        "0m",
        "",
    ] {
        let path = format!("/api/indicators/dossiers_received/history?step={step}");
        let (s, _, text, v) = send(&c, &b, Method::GET, &path, Some(&token), None).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "step={step}: {text}");
        assert_eq!(v["error"]["code"], "invalid_step", "step={step}: {text}");
    }
    // The largest step still answers.
    let (s, _, text, _) = send(
        &c,
        &b,
        Method::GET,
        "/api/indicators/dossiers_received/history?step=366d&from=2025-01-01T00:00:00Z",
        Some(&token),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{text}");
    assert_eq!(b.metric("ioc_http_panics_total").await, 0.0);
}

// ---------------------------------------------------------------- item 14

/// A bad path id gets the JSON error, and the bearer scheme is
/// case-insensitive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_rejections_are_json_and_the_bearer_scheme_is_case_insensitive() {
    let (_broker, _dir, b) = start("", &[]).await;
    let token = b.token().await;
    let c = reqwest::Client::new();
    for (m, path) in [
        (Method::DELETE, "/api/auth/kiosk-tokens/abc"),
        (
            Method::DELETE,
            "/api/auth/kiosk-tokens/99999999999999999999999",
        ),
        (Method::POST, "/api/dead-letters/1.5/ack"),
        (Method::POST, "/api/dead-letters/%FF/ack"),
        (Method::GET, "/api/indicators/%FF%FE/history"),
    ] {
        let (s, h, text, v) = send(
            &c,
            &b,
            m.clone(),
            path,
            Some(&format!("Bearer {token}")),
            None,
        )
        .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{m} {path}: {text}");
        assert_eq!(h["content-type"], "application/json", "{m} {path}");
        assert_eq!(v["error"]["code"], "invalid_path", "{m} {path}: {text}");
    }
    for scheme in ["bearer", "BEARER", "Bearer", "bEaReR"] {
        let (s, _, text, v) = send(
            &c,
            &b,
            Method::GET,
            "/api/auth/me",
            Some(&format!("{scheme} {token}")),
            None,
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{scheme}: {text}");
        assert_eq!(v["username"], "admin");
    }
    let (s, _, _, v) = send(
        &c,
        &b,
        Method::GET,
        "/api/auth/me",
        Some(&format!("Basic {token}")),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(is_json_error(&v));
}

// ---------------------------------------------------------------- item 11

/// Blank and control-character passwords are refused; the last enabled
/// admin cannot be disabled (by itself or by the CLI), with a Vietnamese
/// message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blank_passwords_and_disabling_the_last_admin_are_refused() {
    let (_broker, dir, b) = start("", &[]).await;
    let admin = format!("Bearer {}", b.token().await);
    let c = reqwest::Client::new();
    for pw in [
        "          ",
        "\0\0\0\0\0\0\0\0\0\0",
        "\t\n\r\t\n\r\t\n\r\t",
        "         x",
    ] {
        let (s, _, text, v) = send(
            &c,
            &b,
            Method::POST,
            "/api/users",
            Some(&admin),
            Some(json!({"username": "yeu", "password": pw, "role": "viewer"})),
        )
        .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{pw:?}: {text}");
        assert_eq!(v["error"]["code"], "weak_password");
        let (s, _, text, v) = send(
            &c,
            &b,
            Method::POST,
            "/api/users/admin/password",
            Some(&admin),
            Some(json!({"password": pw})),
        )
        .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{pw:?}: {text}");
        assert_eq!(v["error"]["code"], "weak_password");
    }
    let (s, _, text, v) = send(
        &c,
        &b,
        Method::POST,
        "/api/users/admin/disable",
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT, "{text}");
    assert_eq!(v["error"]["code"], "last_admin");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("quản trị"),
        "{text}"
    );
    // The CLI refuses too.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_commune-ioc"))
        .args(["user", "--config"])
        .arg(dir.path().join("commune.toml"))
        .args(["disable", "admin"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("quản trị"));
    // With a second admin, the first may be disabled.
    let (s, _, text, _) = send(
        &c,
        &b,
        Method::POST,
        "/api/users",
        Some(&admin),
        Some(json!({"username": "admin2", "password": "mật khẩu thứ hai", "role": "admin"})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{text}");
    let admin2 = format!("Bearer {}", b.login("admin2", "mật khẩu thứ hai").await);
    let (s, _, text, _) = send(
        &c,
        &b,
        Method::POST,
        "/api/users/admin/disable",
        Some(&admin2),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{text}");
    let (s, _, _, v) = send(
        &c,
        &b,
        Method::POST,
        "/api/users/admin2/disable",
        Some(&admin2),
        None,
    )
    .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("last_admin"))
    );
    // Still an admin.
    let (s, _, _, v) = send(&c, &b, Method::GET, "/api/auth/me", Some(&admin2), None).await;
    assert_eq!((s, v["role"].as_str()), (StatusCode::OK, Some("admin")));
}

// ---------------------------------------------------------------- item 10

/// An attacker who locks `admin` from its own address does not lock the
/// admin out from another; the CLI's `user unlock` lifts the attacker's
/// lockout too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attacker_cannot_lock_the_admin_out() {
    let (_broker, dir, b) = start("", &[]).await;
    let attacker = client_from("127.0.0.2");
    let admin_box = client_from("127.0.0.3");
    for _ in 0..5 {
        let (s, v) = login(&attacker, &b, "admin", "wrong password!").await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{v}");
    }
    let (s, v) = login(&attacker, &b, "admin", &b.admin_password).await;
    assert_eq!(
        s,
        StatusCode::TOO_MANY_REQUESTS,
        "locked from 127.0.0.2: {v}"
    );
    assert_eq!(v["error"]["code"], "locked_out");
    let (s, v) = login(&admin_box, &b, "admin", &b.admin_password).await;
    assert_eq!(s, StatusCode::OK, "the admin from 127.0.0.3 logs in: {v}");
    // Unlock by the CLI: the running server lifts the lockout.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_commune-ioc"))
        .args(["user", "--config"])
        .arg(dir.path().join("commune.toml"))
        .args(["unlock", "admin"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (s, v) = login(&attacker, &b, "admin", &b.admin_password).await;
        if s == StatusCode::OK {
            break;
        }
        assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{v}");
        assert!(Instant::now() < deadline, "the unlock never took effect");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

// ---------------------------------------------------------------- item 1

/// 150 parallel wrong logins: at most `login_concurrency + login_queue`
/// are checked, the rest answered 503 `login_busy` in JSON at once; RSS
/// stays under a bound; 12 parallel guesses at `admin` run at most 5
/// checks; the server answers normally afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_of_logins_is_bounded_in_memory_and_in_checks() {
    let (_broker, _dir, b) = start("", &[]).await;
    let pid = b.pid().expect("backend runs");
    let before = rss_kib(pid);
    let c = client_from("127.0.0.4");
    let mut peak = before;
    let mut tasks = Vec::new();
    for i in 0..150 {
        let (c, url) = (c.clone(), b.url.clone());
        tasks.push(tokio::spawn(async move {
            let r = c
                .post(format!("{url}/api/auth/login"))
                .json(&json!({"username": format!("u{i}"), "password": "wrong-pw-x"}))
                .send()
                .await
                .expect("login answered");
            let s = r.status();
            let v: Value = r.json().await.expect("JSON answer");
            (s, v)
        }));
    }
    let mut by_status = std::collections::BTreeMap::<u16, usize>::new();
    let mut pending = tasks;
    while !pending.is_empty() {
        peak = peak.max(rss_kib(pid));
        let (done, rest): (Vec<_>, Vec<_>) = pending.into_iter().partition(|t| t.is_finished());
        for t in done {
            let (s, v) = t.await.unwrap();
            assert!(is_json_error(&v), "{s} {v}");
            *by_status.entry(s.as_u16()).or_default() += 1;
        }
        pending = rest;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    peak = peak.max(rss_kib(pid));
    let checked = by_status.get(&401).copied().unwrap_or(0);
    let busy = by_status.get(&503).copied().unwrap_or(0);
    println!("burst of 150: {by_status:?}; RSS before {before} KiB, peak {peak} KiB");
    assert!(
        checked <= 2 + 16 + 2,
        "checked at most concurrency + queue: {by_status:?}"
    );
    assert_eq!(
        checked + busy + by_status.get(&429).copied().unwrap_or(0),
        150,
        "{by_status:?}"
    );
    assert!(peak < 300 * 1024, "RSS peak {peak} KiB over 300 MiB");
    assert!(
        peak < before + 100 * 1024,
        "RSS grew by {} KiB (before {before}, peak {peak})",
        peak - before
    );

    // Twelve parallel guesses at admin from one address: five checked.
    let guesser = client_from("127.0.0.5");
    let mut tasks = Vec::new();
    for _ in 0..12 {
        let (c, url) = (guesser.clone(), b.url.clone());
        tasks.push(tokio::spawn(async move {
            c.post(format!("{url}/api/auth/login"))
                .json(&json!({"username": "admin", "password": "wrong-pw-x"}))
                .send()
                .await
                .expect("login answered")
                .status()
        }));
    }
    let mut wrong = 0;
    for t in tasks {
        let s = t.await.unwrap();
        assert!(
            [
                StatusCode::UNAUTHORIZED,
                StatusCode::TOO_MANY_REQUESTS,
                StatusCode::SERVICE_UNAVAILABLE
            ]
            .contains(&s),
            "{s}"
        );
        wrong += usize::from(s == StatusCode::UNAUTHORIZED);
    }
    assert!(
        wrong <= 5,
        "{wrong} guesses at admin were checked, the limit is 5"
    );
    // The admin (another address) still logs in, and it is fast again.
    let (s, v) = login(&client_from("127.0.0.6"), &b, "admin", &b.admin_password).await;
    assert_eq!(s, StatusCode::OK, "{v}");
}

// ---------------------------------------------------------------- item 8

/// Hundreds of refused logins against a locked name write a handful of
/// audit rows, and the total is kept as a count (written at the end of the
/// window or on shutdown).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn refused_logins_against_a_locked_name_are_aggregated_in_the_audit_log() {
    let (_broker, _dir, mut b) = start("", &[]).await;
    let attacker = client_from("127.0.0.7");
    for _ in 0..5 {
        let (s, _) = login(&attacker, &b, "admin", "wrong password!").await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
    }
    let mut refused = 0u64;
    for _round in 0..40 {
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let (c, url) = (attacker.clone(), b.url.clone());
            tasks.push(tokio::spawn(async move {
                c.post(format!("{url}/api/auth/login"))
                    .json(&json!({"username": "admin", "password": "wrong password!"}))
                    .send()
                    .await
                    .expect("answered")
                    .status()
            }));
        }
        for t in tasks {
            let s = t.await.unwrap();
            assert!(
                s == StatusCode::TOO_MANY_REQUESTS || s == StatusCode::SERVICE_UNAVAILABLE,
                "{s}"
            );
            refused += u64::from(s == StatusCode::TOO_MANY_REQUESTS);
        }
    }
    assert!(refused >= 300, "{refused}");
    let audit = b
        .get("/api/audit?actor=admin&action=login&limit=1000")
        .await;
    let rows = audit.as_array().unwrap();
    let denied = rows.iter().filter(|r| r["outcome"] == "denied").count();
    assert!(
        denied <= 5 + 2,
        "{denied} audit rows for {refused} refused attempts: {audit}"
    );
    // The count is written on shutdown.
    assert!(b.stop().success());
    b.restart();
    b.wait_ready().await;
    let audit = b
        .get("/api/audit?actor=admin&action=login&limit=1000")
        .await;
    let counted: u64 = audit
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["detail"].as_str())
        .filter_map(|d| d.strip_prefix("locked out; "))
        .filter_map(|d| d.split(' ').next()?.parse::<u64>().ok())
        .sum();
    let first = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["detail"] == "locked out")
        .count() as u64;
    assert_eq!(counted + first, refused, "{audit}");

    // A spray of new names from a locked address adds no row per name.
    let sprayer = client_from("127.0.0.8");
    for i in 0..20 {
        let (s, _) = login(&sprayer, &b, &format!("n{i}"), "wrong password!").await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
    }
    for i in 20..320 {
        let (s, v) = login(&sprayer, &b, &format!("n{i}"), "wrong password!").await;
        assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{v}");
    }
    let audit = b.get("/api/audit?action=login&limit=1000").await;
    let from_sprayer = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["addr"] == "127.0.0.8")
        .count();
    assert!(
        from_sprayer <= 20 + 1,
        "{from_sprayer} audit rows for 320 attempts"
    );
}

/// With a 1 MiB store cap, an admin creating kiosk tokens until the store
/// refuses cannot take ingest's room: dossiers published afterwards are
/// all counted and /readyz stays 200.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audited_writes_cannot_fill_the_room_reserved_for_ingest() {
    let (broker, _dir, b) = start("", &[("IOC__STORE__MAX_SIZE_MB", "1")]).await;
    let admin = format!("Bearer {}", b.token().await);
    let c = reqwest::Client::new();
    let label = "x".repeat(100);
    let mut created = 0;
    let mut full = false;
    for _ in 0..8000 {
        let (s, _, _, v) = send(
            &c,
            &b,
            Method::POST,
            "/api/auth/kiosk-tokens",
            Some(&admin),
            Some(json!({"label": label})),
        )
        .await;
        if s == StatusCode::SERVICE_UNAVAILABLE {
            assert_eq!(v["error"]["code"], "store_unavailable");
            full = true;
            break;
        }
        assert_eq!(s, StatusCode::CREATED, "{v}");
        created += 1;
    }
    assert!(
        full,
        "the account store took {created} kiosk tokens without a limit"
    );
    let mut p = Publisher::new(broker.port);
    for i in 0..40 {
        p.send(
            DOSSIER,
            &kit::dossier_received(&format!("cap-{i}"), "online", None),
        )
        .await;
    }
    b.wait_value("dossiers_received", "today", "commune", 40.0)
        .await;
    let r = reqwest::get(format!("{}/readyz", b.url)).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", b.log_text());
}
// ---------------------------------------------------------------- item 2

/// Open a socket and send `prefix` (maybe nothing).
fn raw(b: &Backend, prefix: &[u8]) -> TcpStream {
    let addr = b.url.trim_start_matches("http://");
    let mut s = TcpStream::connect(addr).expect("connect");
    if !prefix.is_empty() {
        s.write_all(prefix).expect("write");
    }
    s
}

/// Whether the server closed `s` (EOF or reset), waiting up to `wait`.
fn closed_within(s: &mut TcpStream, wait: Duration) -> bool {
    s.set_read_timeout(Some(wait)).unwrap();
    let mut buf = [0u8; 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue, // e.g. a 408 before closing
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                return false
            }
            Err(_) => return true,
        }
    }
}

async fn healthz(b: &Backend) -> StatusCode {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
        .get(format!("{}/healthz", b.url))
        .send()
        .await
        .map(|r| r.status())
        .unwrap_or(StatusCode::GATEWAY_TIMEOUT)
}

/// Half-sent requests and idle sockets are closed by the server within the
/// timeouts; with the connection cap reached, /healthz keeps answering
/// (the longest-idle connection makes room).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_half_sent_connections_are_closed_and_the_cap_holds() {
    let (_broker, _dir, b) = start(
        "",
        &[
            ("IOC__HTTP__HEADER_TIMEOUT_S", "2"),
            ("IOC__HTTP__IDLE_TIMEOUT_S", "3"),
            ("IOC__HTTP__MAX_CONNECTIONS", "60"),
        ],
    )
    .await;
    // 50 half-sent request heads, 50 idle sockets: twice... beyond the cap.
    let mut socks: Vec<TcpStream> = (0..50)
        .map(|i| {
            raw(
                &b,
                format!("GET /healthz HTTP/1.1\r\nHost: x\r\nX-{i}: ").as_bytes(),
            )
        })
        .collect();
    socks.extend((0..50).map(|_| raw(&b, b"")));
    // The cap is reached; /healthz still answers, many times over.
    for _ in 0..20 {
        assert_eq!(healthz(&b).await, StatusCode::OK);
    }
    // Every socket is closed by the server (timeouts of 2-3 s; generous
    // deadline).
    let deadline = Instant::now() + Duration::from_secs(30);
    for (i, s) in socks.iter_mut().enumerate() {
        let left = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(10));
        assert!(closed_within(s, left), "socket {i} still open after 30 s");
    }
    // A keep-alive connection idle after an answer is closed too.
    let mut s = raw(&b, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(
        closed_within(&mut s, Duration::from_secs(30)),
        "idle keep-alive still open"
    );
    assert!(b.metric("ioc_http_connections_timed_out_total").await >= 1.0);
    assert!(b.metric("ioc_http_connections_shed_total").await >= 1.0);
    assert_eq!(healthz(&b).await, StatusCode::OK);
}

// ---------------------------------------------------------------- what held

/// Send raw bytes on a new connection and read the answer's status line
/// (None when the server closed without one).
fn raw_status(b: &Backend, request: &[u8]) -> Option<String> {
    let mut s = raw(b, b"");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    // The server may answer (and close) before reading everything.
    let _ = s.write_all(request);
    let mut head = Vec::new();
    let mut buf = [0u8; 512];
    while !head.windows(2).any(|w| w == b"\r\n") {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&head).to_string();
    text.lines()
        .next()
        .map(str::to_owned)
        .filter(|l| l.starts_with("HTTP/"))
}

/// What held in the probe keeps holding: static files do not escape their
/// directory; oversized bodies, headers and URLs are refused without
/// harm; no secret (a password, a token) comes back in an answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traversal_oversized_input_and_secrets_still_hold() {
    let (_broker, _dir, b) = start("", &[]).await;
    let token = b.token().await;
    // Path traversal on the static files and the API.
    for path in [
        "/../../../../etc/passwd",
        "/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/js/..%2f..%2f..%2fCargo.toml",
        "/..%5c..%5cCargo.toml",
        "/api/indicators/..%2f..%2fetc%2fpasswd/history",
    ] {
        let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n");
        let mut s = raw(&b, req.as_bytes());
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut answer = Vec::new();
        let _ = s.read_to_end(&mut answer);
        let text = String::from_utf8_lossy(&answer);
        assert!(text.starts_with("HTTP/1.1 "), "{path}: {text}");
        assert!(!text.contains("root:"), "{path} leaked /etc/passwd");
        assert!(!text.contains("[package]"), "{path} leaked Cargo.toml");
        let status: u16 = text[9..12].parse().unwrap();
        assert!(status < 500, "{path}: {text}");
    }
    // A body over http.max_body_bytes (64 KiB): 413 in JSON.
    let c = reqwest::Client::new();
    let big = "x".repeat(70 * 1024);
    let r = c
        .post(format!("{}/api/auth/login", b.url))
        .header("content-type", "application/json")
        .body(format!(r#"{{"username":"admin","password":"{big}"}}"#))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "body_too_large");
    // A 1 MiB header and a 1 MiB URL: refused (4xx) or the connection
    // closed, never a 5xx, and the server goes on.
    let huge = "a".repeat(1024 * 1024);
    for req in [
        format!("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {huge}\r\n\r\n"),
        format!("GET /api/{huge} HTTP/1.1\r\nHost: x\r\n\r\n"),
        format!(
            "GET /healthz HTTP/1.1\r\nHost: x\r\n{}\r\n",
            "X-H: 1\r\n".repeat(5000)
        ),
    ] {
        if let Some(line) = raw_status(&b, req.as_bytes()) {
            let status: u16 = line[9..12].parse().unwrap();
            assert!((400..500).contains(&status), "{line}");
        }
    }
    assert_eq!(healthz(&b).await, StatusCode::OK);
    // Secrets: a login answer carries the new token, never the password;
    // errors echo neither.
    let (s, v) = login(&c, &b, "admin", &b.admin_password).await;
    assert_eq!(s, StatusCode::OK);
    assert!(!v.to_string().contains(&b.admin_password));
    let (_, _, text, _) = send(
        &c,
        &b,
        Method::POST,
        "/api/auth/login",
        None,
        Some(json!({"username": "admin", "password": "sai-mat-khau-bi-mat-123"})),
    )
    .await;
    assert!(!text.contains("sai-mat-khau-bi-mat-123"), "{text}");
    let (_, _, text, _) = send(
        &c,
        &b,
        Method::GET,
        "/api/auth/me",
        Some("Bearer ioc_s_secret-forged-token"),
        None,
    )
    .await;
    assert!(!text.contains("secret-forged-token"), "{text}");
    let log = b.log_text();
    for secret in [
        b.admin_password.as_str(),
        "sai-mat-khau-bi-mat-123",
        token.as_str(),
    ] {
        assert!(!log.contains(secret), "a secret reached the log");
    }
}

// ---------------------------------------------------------------- item 12 (property)

/// Probes beyond the documented routes: (method, path template; `{}`
/// takes a generated segment). The routes themselves come from the served
/// OpenAPI document, so a new route is probed without editing this list.
const EXTRA: &[(&str, &str)] = &[
    ("GET", "/api/{}"),
    ("POST", "/api/{}/{}"),
    ("PUT", "/api/indicators"),
    ("DELETE", "/api/users"),
    ("GET", "/{}"),
    ("GET", "/metrics"),
];

/// Every (method, path template) of the served OpenAPI document, with its
/// `{param}`s as `{}`, and the extra probes.
async fn every_route(b: &Backend) -> Vec<(String, String)> {
    let doc = b.get("/api/openapi.json").await;
    let mut out = Vec::new();
    for (path, ops) in doc["paths"]
        .as_object()
        .expect("paths in /api/openapi.json")
    {
        let mut template = String::new();
        let mut in_param = false;
        for ch in path.chars() {
            match (ch, in_param) {
                ('{', _) => in_param = true,
                ('}', true) => {
                    in_param = false;
                    template.push_str("{}");
                }
                (_, true) => {}
                (c, false) => template.push(c),
            }
        }
        for method in ops.as_object().unwrap().keys() {
            out.push((method.to_uppercase(), template.clone()));
        }
    }
    assert!(out.len() >= 20, "{out:?}");
    out.extend(EXTRA.iter().map(|(m, p)| (m.to_string(), p.to_string())));
    out
}

/// Query keys the handlers read, and some they do not.
const KEYS: &[&str] = &[
    "step", "step", "from", "to", "step", "village", "window", "id", "limit", "before", "reason",
    "actor", "action", "token", "x",
];

/// Segments that reach deeper into handlers than random text does.
const SEGMENTS: &[&str] = &[
    "dossiers_received",
    "dossier_online_ratio",
    "camera_online",
    "1",
    "-1",
    "9223372036854775807",
    "truc.ban",
    "..",
    "%2e%2e",
    "%00",
    "%FF",
];

fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[derive(Debug, Clone)]
struct Probe {
    route: usize,
    segment: String,
    query: String,
    body: Option<Vec<u8>>,
    authed: bool,
}

fn probe(routes: usize) -> impl proptest::strategy::Strategy<Value = Probe> {
    use proptest::prelude::*;
    let segment = prop_oneof![
        prop::sample::select(SEGMENTS).prop_map(str::to_owned),
        any::<String>().prop_map(|s| encode(&s)),
        "[a-zA-Z0-9%._~-]{0,12}",
    ];
    let pair = (
        prop_oneof![
            3 => prop::sample::select(KEYS).prop_map(str::to_owned),
            1 => any::<String>().prop_map(|s| encode(&s))
        ],
        prop_oneof![
            1 => any::<String>().prop_map(|s| encode(&s)),
            2 => "[0-9]{1,20}[mhdé😀]?".prop_map(|s| encode(&s)),
            1 => "[a-zA-Z0-9%=&+:._~-]{0,24}",
            1 => Just("2026-11-01T00:00:00%2B07:00".to_owned()),
        ],
    );
    let query = prop_oneof![
        prop::collection::vec(pair, 0..4).prop_map(|kv| kv
            .into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&")),
        "[a-zA-Z0-9%=&;+._~-]{0,40}",
    ];
    let json_body = (
        prop::sample::select(&["username", "password", "label", "role", "x"][..]),
        any::<String>(),
        prop::sample::select(&["username", "password", "label", "role"][..]),
        prop_oneof![
            any::<String>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            Just(serde_json::Value::Null),
        ],
    )
        .prop_map(|(k1, v1, k2, v2)| {
            let mut m = serde_json::Map::new();
            m.insert(k1.to_owned(), v1.into());
            m.insert(k2.to_owned(), v2);
            serde_json::Value::Object(m).to_string().into_bytes()
        });
    let body = prop_oneof![
        Just(None),
        prop::collection::vec(any::<u8>(), 0..300).prop_map(Some),
        json_body.prop_map(Some),
    ];
    (0..routes, segment, query, body, prop::bool::weighted(0.8)).prop_map(
        |(route, segment, query, body, authed)| Probe {
            route,
            segment,
            query,
            body,
            authed,
        },
    )
}

/// Arbitrary path segments, query strings and bodies at every route of the
/// real server: each answer is below 500, API answers are JSON, and no
/// handler panicked.
#[test]
fn arbitrary_requests_at_every_route_get_a_json_answer_below_500() {
    use proptest::test_runner::{Config, TestCaseError, TestRunner};
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (_broker, _dir, b) = rt.block_on(start("", &[]));
    let token = rt.block_on(b.token());
    let routes = rt.block_on(every_route(&b));
    // A user the generated requests may change or disable.
    rt.block_on(async {
        let (s, _, text, _) = send(
            &reqwest::Client::new(),
            &b,
            Method::POST,
            "/api/users",
            Some(&format!("Bearer {token}")),
            Some(json!({"username": "truc.ban", "password": "mật khẩu trực ban", "role": "operator"})),
        )
        .await;
        assert_eq!(s, StatusCode::CREATED, "{text}");
    });
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let mut runner = TestRunner::new(Config {
        cases: 1500,
        failure_persistence: None,
        ..Config::default()
    });
    let started = Instant::now();
    let result = runner.run(&probe(routes.len()), |p| {
        let (method, template) = (&routes[p.route].0, &routes[p.route].1);
        let path = template.replace("{}", &p.segment);
        let url = if p.query.is_empty() {
            format!("{}{path}", b.url)
        } else {
            format!("{}{path}?{}", b.url, p.query)
        };
        let Ok(url) = reqwest::Url::parse(&url) else {
            return Ok(());
        };
        let mut req = client.request(Method::from_bytes(method.as_bytes()).unwrap(), url.clone());
        // Logout with the admin's token would end the run's session.
        if p.authed && template.as_str() != "/api/auth/logout" {
            req = req.bearer_auth(&token);
        }
        if let Some(body) = p.body.clone() {
            req = req.header("content-type", "application/json").body(body);
        }
        let (status, ctype, text) = rt.block_on(async {
            let r = req
                .send()
                .await
                .map_err(|e| TestCaseError::fail(format!("{method} {url}: no answer: {e}")))?;
            let status = r.status();
            let ctype = r
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            let text = r.text().await.unwrap_or_default();
            Ok::<_, TestCaseError>((status, ctype, text))
        })?;
        proptest::prop_assert!(
            status.as_u16() < 500,
            "{method} {url} ({:?}): {status} {text}",
            p.body.as_deref().map(String::from_utf8_lossy)
        );
        let json_answer = (url.path().starts_with("/api/") && url.path() != "/api/")
            || url.path() == "/healthz"
            || url.path() == "/readyz"
            || (url.path() == "/metrics" && status.as_u16() >= 400);
        let json_answer = json_answer && status != StatusCode::NO_CONTENT;
        if json_answer {
            proptest::prop_assert!(
                ctype.starts_with("application/json"),
                "{method} {url}: {status} content-type {ctype:?}: {text}"
            );
            let v: Value = serde_json::from_str(&text).map_err(|e| {
                TestCaseError::fail(format!("{method} {url}: not JSON ({e}): {text}"))
            })?;
            if status.as_u16() >= 400 {
                proptest::prop_assert!(is_json_error(&v), "{method} {url}: {status} {text}");
            }
        }
        Ok(())
    });
    println!("1500 generated requests in {:?}", started.elapsed());
    if let Err(e) = result {
        panic!("{e}\nlog:\n{}", b.log_text());
    }
    assert_eq!(rt.block_on(b.metric("ioc_http_panics_total")), 0.0);
}
