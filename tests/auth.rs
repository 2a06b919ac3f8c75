//! Access control and audit with real HTTP and WebSocket clients against the
//! real binary: every route refuses a missing token, roles hold, tokens
//! expire and are revoked, kiosk tokens open the WebSocket, logins lock out
//! and unlock, every action is audited, and no secret reaches the log.

mod kit;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use kit::stack_with as start;
use kit::{test_config, Backend, Mosquitto};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

const WAIT: Duration = Duration::from_secs(20);

/// A request with an optional bearer token: status, headers, JSON body.
async fn call(
    b: &Backend,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let mut req = reqwest::Client::new().request(method, format!("{}{path}", b.url));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(body) = body {
        req = req.json(&body);
    }
    let r = req.send().await.expect("request");
    let status = r.status();
    let headers = r.headers().clone();
    let text = r.text().await.unwrap_or_default();
    (
        status,
        headers,
        serde_json::from_str(&text).unwrap_or(Value::Null),
    )
}

async fn login_status(b: &Backend, user: &str, password: &str) -> (StatusCode, Value) {
    let (s, _, v) = call(
        b,
        Method::POST,
        "/api/auth/login",
        None,
        Some(json!({"username": user, "password": password})),
    )
    .await;
    (s, v)
}

async fn create_user(b: &Backend, name: &str, role: &str, password: &str) {
    let admin = b.token().await;
    let (s, _, v) = call(
        b,
        Method::POST,
        "/api/users",
        Some(&admin),
        Some(json!({"username": name, "password": password, "role": role})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
}

/// One documented operation: method, a concrete path (each `{param}`
/// replaced by its documented example), the role it needs
/// (`public`, `viewer`, `operator`, `admin`) and whether
/// `auth.public_read` opens it.
struct Route {
    method: String,
    path: String,
    role: String,
    public_read: bool,
}

/// The route table as the server documents it (`/api/openapi.json`, public).
async fn routes(b: &Backend) -> Vec<Route> {
    let (s, _, doc) = call(b, Method::GET, "/api/openapi.json", None, None).await;
    assert_eq!(s, StatusCode::OK, "the OpenAPI document is public: {doc}");
    assert!(doc["openapi"].as_str().unwrap_or("").starts_with("3."));
    let mut out = Vec::new();
    for (template, item) in doc["paths"].as_object().expect("paths") {
        for (m, op) in item.as_object().unwrap() {
            let mut path = template.clone();
            for p in op["parameters"].as_array().into_iter().flatten() {
                if p["in"] == "path" {
                    let example = match &p["example"] {
                        Value::String(s) => s.clone(),
                        v => v.to_string(),
                    };
                    path = path.replace(&format!("{{{}}}", p["name"].as_str().unwrap()), &example);
                }
            }
            assert!(
                !path.contains('{'),
                "{m} {template}: a path parameter without an example"
            );
            let role = op["x-role"]
                .as_str()
                .unwrap_or_else(|| panic!("{m} {template}: no x-role"));
            if role != "public" {
                assert_eq!(
                    op["security"],
                    json!([{"bearer": [role]}]),
                    "{m} {template}: the security requirement names the role"
                );
            }
            out.push(Route {
                method: m.to_uppercase(),
                path,
                role: role.to_owned(),
                public_read: op["x-public-read"] == true,
            });
        }
    }
    out
}

fn method(m: &str) -> Method {
    Method::from_bytes(m.as_bytes()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_needs_a_token_and_the_right_role() {
    let (_broker, _dir, b) = start("", &[]).await;
    let routes = routes(&b).await;
    let protected: Vec<&Route> = routes.iter().filter(|r| r.role != "public").collect();
    assert!(
        protected.len() >= 18,
        "{} protected routes",
        protected.len()
    );
    // The guard is a route layer: it runs only on a route the router
    // serves, so a 401 also proves that the documented route exists.
    for r in &protected {
        let (m, path) = (method(&r.method), r.path.as_str());
        if path == "/api/ws" {
            // Authenticates in the stream (tested below); plain HTTP: 426.
            let (s, _, v) = call(&b, m, path, None, None).await;
            assert_eq!(s, StatusCode::UPGRADE_REQUIRED, "{v}");
            continue;
        }
        let (s, h, v) = call(&b, m.clone(), path, None, None).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{m} {path}: {v}");
        assert_eq!(v["error"]["code"], "unauthorized", "{m} {path}");
        assert_eq!(h["www-authenticate"], "Bearer");
        let (s, _, _) = call(&b, m, path, Some("ioc_s_forged"), None).await;
        assert_eq!(
            s,
            StatusCode::UNAUTHORIZED,
            "forged token on {} {path}",
            r.method
        );
    }
    // Public: the documented ones answer (not 401/404/405), the screen's
    // files too.
    for r in routes.iter().filter(|r| r.role == "public") {
        let (s, _, v) = call(&b, method(&r.method), &r.path, None, None).await;
        assert!(
            ![
                StatusCode::UNAUTHORIZED,
                StatusCode::NOT_FOUND,
                StatusCode::METHOD_NOT_ALLOWED
            ]
            .contains(&s),
            "public {} {}: {s} {v}",
            r.method,
            r.path
        );
    }
    for path in ["/healthz", "/readyz", "/"] {
        let (s, _, _) = call(&b, Method::GET, path, None, None).await;
        assert_eq!(s, StatusCode::OK, "{path}");
    }
    // The router serves no method the document does not list: every other
    // method on a documented path is a JSON 405.
    for r in &routes {
        for m in ["GET", "POST", "PUT", "PATCH", "DELETE"] {
            if routes.iter().any(|o| o.path == r.path && o.method == m) {
                continue;
            }
            let (s, _, v) = call(&b, method(m), &r.path, Some(&b.token().await), None).await;
            assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED, "{m} {}: {v}", r.path);
            assert_eq!(v["error"]["code"], "method_not_allowed");
        }
    }

    create_user(&b, "lanh.dao", "viewer", "mật khẩu lãnh đạo xã").await;
    create_user(&b, "truc.ban", "operator", "mật khẩu trực ban xã").await;
    let viewer = b.login("lanh.dao", "mật khẩu lãnh đạo xã").await;
    let operator = b.login("truc.ban", "mật khẩu trực ban xã").await;
    let rank = |r: &str| ["viewer", "operator", "admin"].iter().position(|x| *x == r);
    for (who, token) in [("viewer", &viewer), ("operator", &operator)] {
        for r in &protected {
            if r.path == "/api/auth/logout" {
                continue;
            }
            let (m, path) = (&r.method, &r.path);
            let (s, _, v) = call(&b, method(m), path, Some(token), None).await;
            // `dossier_push` is no role: only a push token passes
            // (tests/dvcqg.rs), no session whatever its role.
            if r.role == "dossier_push" || rank(who) < rank(&r.role) {
                assert_eq!(s, StatusCode::FORBIDDEN, "{who} on {m} {path}: {v}");
                assert_eq!(v["error"]["code"], "forbidden");
            } else {
                assert!(
                    s != StatusCode::FORBIDDEN && s != StatusCode::UNAUTHORIZED,
                    "{who} on {m} {path}: {s} {v}"
                );
            }
        }
    }
    // Refusals of actions are in the audit log, with who and from where.
    let (_, _, log) = call(
        &b,
        Method::GET,
        "/api/audit?action=forbidden",
        Some(&b.token().await),
        None,
    )
    .await;
    let entries = log.as_array().unwrap();
    assert!(entries.iter().any(|e| e["actor"] == "lanh.dao"
        && e["object"] == "POST /api/dead-letters/1/ack"
        && e["outcome"] == "denied"
        && e["addr"] == "127.0.0.1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_expire_and_logout_revokes() {
    let (_broker, _dir, b) = start("[auth]\nsession_ttl_s = 2\n", &[]).await;
    let t = b.login("admin", &b.admin_password).await;
    let (s, _, me) = call(&b, Method::GET, "/api/auth/me", Some(&t), None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        me,
        json!({"username": "admin", "role": "admin", "via": "session"})
    );
    let (s, _, _) = call(&b, Method::POST, "/api/auth/logout", Some(&t), None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _, _) = call(&b, Method::GET, "/api/indicators", Some(&t), None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "a logged-out token is dead");

    let (s, v) = login_status(&b, "admin", &b.admin_password).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["role"], "admin");
    assert!(v["expires_at"].is_string());
    let t = v["token"].as_str().unwrap().to_owned();
    // An expired token is dead: polled until refused (session_ttl_s = 2).
    kit::wait_until("the token to expire", WAIT, || async {
        let (s, _, _) = call(&b, Method::GET, "/api/indicators", Some(&t), None).await;
        assert!(s == StatusCode::OK || s == StatusCode::UNAUTHORIZED, "{s}");
        (s == StatusCode::UNAUTHORIZED).then_some(())
    })
    .await;
}

async fn ws_first_frames(
    b: &Backend,
    query_token: Option<&str>,
    auth_frame: Option<&str>,
) -> Vec<Result<Value, Option<u16>>> {
    let mut url = format!("{}/api/ws", b.url.replacen("http://", "ws://", 1));
    if let Some(t) = query_token {
        url.push_str(&format!("?token={t}"));
    }
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("handshake");
    if let Some(t) = auth_frame {
        ws.send(Message::text(
            json!({"type": "auth", "token": t}).to_string(),
        ))
        .await
        .unwrap();
    }
    let mut out = Vec::new();
    while out.len() < 2 {
        let msg = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a frame");
        match msg {
            Some(Ok(Message::Text(t))) => out.push(Ok(serde_json::from_str(t.as_str()).unwrap())),
            Some(Ok(Message::Close(f))) => {
                out.push(Err(f.map(|f| u16::from(f.code))));
                break;
            }
            Some(Ok(_)) => {}
            _ => {
                out.push(Err(None));
                break;
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kiosk_tokens_open_the_websocket_read_only_until_revoked() {
    let (_broker, _dir, b) = start("[live]\nheartbeat_s = 1\n", &[]).await;
    let admin = b.token().await;
    let (s, _, v) = call(
        &b,
        Method::POST,
        "/api/auth/kiosk-tokens",
        Some(&admin),
        Some(json!({"label": "Màn hình phòng IOC"})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let kiosk = v["token"].as_str().unwrap().to_owned();
    let id = v["kiosk"]["id"].as_i64().unwrap();

    // The kiosk token in the URL: hello.
    let frames = ws_first_frames(&b, Some(&kiosk), None).await;
    assert_eq!(frames[0].as_ref().unwrap()["type"], "hello", "{frames:?}");
    // Without a token: nothing until `auth`, then hello.
    let frames = ws_first_frames(&b, None, Some(&kiosk)).await;
    assert_eq!(frames[0].as_ref().unwrap()["type"], "hello", "{frames:?}");
    // A bad token: an error frame, then close 1008.
    let frames = ws_first_frames(&b, Some("ioc_k_forged"), None).await;
    assert_eq!(frames[0].as_ref().unwrap()["code"], "unauthorized");
    assert_eq!(frames[1], Err(Some(1008)));

    // Read only: reads work, actions are forbidden.
    let (s, _, _) = call(&b, Method::GET, "/api/indicators", Some(&kiosk), None).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _, _) = call(
        &b,
        Method::POST,
        "/api/dead-letters/1/ack",
        Some(&kiosk),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);

    // An open screen is cut off within a heartbeat of the revocation.
    let url = format!(
        "{}/api/ws?token={kiosk}",
        b.url.replacen("http://", "ws://", 1)
    );
    let (mut screen, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let (s, _, _) = call(
        &b,
        Method::DELETE,
        &format!("/api/auth/kiosk-tokens/{id}"),
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let deadline = Instant::now() + WAIT;
    let mut saw_error = false;
    let code = loop {
        assert!(
            Instant::now() < deadline,
            "the revoked screen stayed connected"
        );
        match tokio::time::timeout(WAIT, screen.next()).await.unwrap() {
            Some(Ok(Message::Text(t))) => {
                let f: Value = serde_json::from_str(t.as_str()).unwrap();
                saw_error |= f["code"] == "unauthorized";
            }
            Some(Ok(Message::Close(f))) => break f.map(|f| u16::from(f.code)),
            Some(Ok(_)) => {}
            _ => break None,
        }
    };
    assert!(saw_error);
    assert_eq!(code, Some(1008));
    let (s, _, _) = call(&b, Method::GET, "/api/indicators", Some(&kiosk), None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (_, _, list) = call(
        &b,
        Method::GET,
        "/api/auth/kiosk-tokens",
        Some(&admin),
        None,
    )
    .await;
    assert!(list[0]["revoked_at"].is_string(), "{list}");
    assert!(
        list[0].get("token").is_none(),
        "a listed token is never shown again"
    );
}

/// Log in as admin with the right password every 250 ms until it is
/// accepted (the lockout expired); refused only with 429 meanwhile.
async fn wait_unlocked(b: &Backend, what: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        let (s, v) = login_status(b, "admin", &b.admin_password).await;
        if s == StatusCode::OK {
            return;
        }
        assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{what}: {v}");
        assert!(Instant::now() < deadline, "{what} never expired");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_lock_out_then_the_lockout_expires() {
    let (_broker, _dir, b) = start(
        "[auth]\nmax_failures_per_user = 3\nmax_failures_per_address = 6\nlockout_s = 2\n",
        &[],
    )
    .await;
    for _ in 0..3 {
        let (s, v) = login_status(&b, "admin", "not the password").await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        assert_eq!(v["error"]["code"], "invalid_credentials");
    }
    // Locked: even the right password is refused, with Retry-After.
    let (s, h, v) = call(
        &b,
        Method::POST,
        "/api/auth/login",
        None,
        Some(json!({"username": "admin", "password": b.admin_password})),
    )
    .await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{v}");
    assert_eq!(v["error"]["code"], "locked_out");
    assert!(h["retry-after"].to_str().unwrap().parse::<u64>().unwrap() >= 1);
    wait_unlocked(&b, "the name's lockout").await;

    // An address trying many names locks too (6 failures).
    for i in 0..6 {
        login_status(&b, &format!("user{i}"), "not the password").await;
    }
    let (s, _) = login_status(&b, "admin", &b.admin_password).await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "the address is locked");
    wait_unlocked(&b, "the address's lockout").await;

    let (_, _, log) = call(
        &b,
        Method::GET,
        "/api/audit?action=login",
        Some(&b.token().await),
        None,
    )
    .await;
    let entries = log.as_array().unwrap();
    assert!(entries
        .iter()
        .any(|e| e["detail"] == "locked out" && e["outcome"] == "denied"));
    assert!(entries
        .iter()
        .any(|e| e["detail"] == "wrong credentials; now locked out"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actions_are_audited_and_the_log_cannot_be_changed() {
    let (broker, _dir, b) = start("", &[]).await;
    let admin = b.token().await;
    create_user(&b, "truc.ban", "operator", "mật khẩu trực ban xã").await;
    let op = b.login("truc.ban", "mật khẩu trực ban xã").await;
    // A dead letter for the operator to acknowledge.
    let mut p = kit::Publisher::new(broker.port);
    p.send(kit::DOSSIER, b"{not json").await;
    let dl = loop {
        let v = b.get("/api/dead-letters").await;
        if let Some(id) = v["items"][0]["id"].as_i64() {
            break id;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let (s, _, v) = call(
        &b,
        Method::POST,
        &format!("/api/dead-letters/{dl}/ack"),
        Some(&op),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["acked_by"], "truc.ban");
    let listed = b.get("/api/dead-letters").await;
    assert_eq!(listed["items"][0]["acked_by"], "truc.ban");
    let (s, _, _) = call(
        &b,
        Method::POST,
        "/api/dead-letters/999999/ack",
        Some(&op),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _, _) = call(
        &b,
        Method::POST,
        "/api/users/truc.ban/disable",
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _, _) = call(&b, Method::GET, "/api/indicators", Some(&op), None).await;
    assert_eq!(
        s,
        StatusCode::UNAUTHORIZED,
        "a disabled user's token is dead"
    );

    let (_, _, log) = call(&b, Method::GET, "/api/audit?limit=1000", Some(&admin), None).await;
    let has = |action: &str, actor: &str, object: Option<&str>, outcome: &str| {
        log.as_array().unwrap().iter().any(|e| {
            e["action"] == action
                && e["actor"] == actor
                && object.is_none_or(|o| e["object"] == o)
                && e["outcome"] == outcome
                && e["at"].is_string()
        })
    };
    assert!(has("user_create", "system", Some("admin"), "ok"), "{log}");
    assert!(has("login", "admin", None, "ok"));
    assert!(has("user_create", "admin", Some("truc.ban"), "ok"));
    assert!(has("login", "truc.ban", None, "ok"));
    assert!(has(
        "dead_letter_ack",
        "truc.ban",
        Some(&format!("dead_letter:{dl}")),
        "ok"
    ));
    assert!(has(
        "dead_letter_ack",
        "truc.ban",
        Some("dead_letter:999999"),
        "failed"
    ));
    assert!(has("user_disable", "admin", Some("truc.ban"), "ok"));

    // No route edits or deletes the log.
    for m in [Method::PUT, Method::PATCH, Method::DELETE, Method::POST] {
        let (s, _, _) = call(&b, m.clone(), "/api/audit", Some(&admin), None).await;
        assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED, "{m} /api/audit");
    }
    let (s, _, _) = call(&b, Method::DELETE, "/api/audit/1", Some(&admin), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_limits_and_cors() {
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let config = test_config(broker.port, &dir.path().join("store")).replace(
        "[http]\n",
        "[http]\ncors_origins = [\"https://tinh.example.vn\"]\nmax_body_bytes = 2048\n",
    );
    let b = Backend::start(dir.path(), &config);
    b.wait_ready().await;
    for path in ["/", "/api/indicators", "/api/khong-co", "/healthz"] {
        let (_, h, _) = call(&b, Method::GET, path, Some(&b.token().await), None).await;
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("default-src 'self'") && csp.contains("frame-ancestors 'none'"),
            "{path}"
        );
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(h["x-frame-options"], "DENY", "{path}");
    }
    let (_, h, _) = call(
        &b,
        Method::GET,
        "/api/indicators",
        Some(&b.token().await),
        None,
    )
    .await;
    assert_eq!(h["cache-control"], "no-store");

    let cors = |origin: &'static str| {
        let url = format!("{}/api/indicators", b.url);
        async move {
            reqwest::Client::new()
                .request(Method::OPTIONS, url)
                .header("Origin", origin)
                .header("Access-Control-Request-Method", "GET")
                .send()
                .await
                .unwrap()
                .headers()
                .get("access-control-allow-origin")
                .map(|v| v.to_str().unwrap().to_owned())
        }
    };
    assert_eq!(
        cors("https://tinh.example.vn").await.as_deref(),
        Some("https://tinh.example.vn")
    );
    assert_eq!(cors("https://evil.example").await, None);

    let big = "x".repeat(4096);
    let (s, _, v) = call(
        &b,
        Method::POST,
        "/api/auth/login",
        None,
        Some(json!({"username": "admin", "password": big})),
    )
    .await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{v}");
    let (s, _, v) = call(
        &b,
        Method::POST,
        "/api/auth/login",
        None,
        Some(json!({"user": "x"})),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(v["error"]["code"], "invalid_body");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_read_opens_reads_but_not_actions() {
    let (_broker, _dir, b) = start("[auth]\npublic_read = true\n", &[]).await;
    let (s, _, _) = call(&b, Method::GET, "/api/indicators", None, None).await;
    assert_eq!(s, StatusCode::OK);
    let frames = ws_first_frames(&b, None, None).await;
    assert_eq!(frames[0].as_ref().unwrap()["type"], "hello");
    let (s, _, _) = call(&b, Method::POST, "/api/dead-letters/1/ack", None, None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _, _) = call(&b, Method::GET, "/api/audit", None, None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    // HEAD is a GET without the body: open too, and only on read routes.
    let head = reqwest::Client::new()
        .head(format!("{}/api/indicators", b.url))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), StatusCode::OK);
    let head = reqwest::Client::new()
        .head(format!("{}/api/auth/kiosk-tokens", b.url))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), StatusCode::UNAUTHORIZED);
    // Exactly the operations the document marks `x-public-read` open up.
    for r in routes(&b)
        .await
        .iter()
        .filter(|r| r.role != "public" && r.path != "/api/ws")
    {
        let (s, _, v) = call(&b, method(&r.method), &r.path, None, None).await;
        if r.public_read {
            assert!(
                s != StatusCode::UNAUTHORIZED && s != StatusCode::FORBIDDEN,
                "public read {} {}: {s} {v}",
                r.method,
                r.path
            );
        } else {
            assert_eq!(s, StatusCode::UNAUTHORIZED, "{} {}: {v}", r.method, r.path);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_admin_password_is_generated_and_shown_once() {
    // No IOC__AUTH__ADMIN_PASSWORD: the store's first start makes one.
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(broker.port, &dir.path().join("store"));
    let mut b = Backend::start_with_env(dir.path(), &config, &[("IOC__AUTH__ADMIN_PASSWORD", "")]);
    b.wait_ready().await;
    // /readyz can answer before the start-up callback has printed it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let log = loop {
        let log = b.log_text();
        if log.contains("mật khẩu:") || std::time::Instant::now() > deadline {
            break log;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    };
    let line = log
        .lines()
        .find(|l| l.contains("mật khẩu:"))
        .unwrap_or_else(|| panic!("no generated password shown: {log}"));
    let password = line.rsplit(' ').next().unwrap().trim().to_owned();
    assert_eq!(password.chars().count(), 20, "{line}");
    let (s, _) = login_status(&b, "admin", &password).await;
    assert_eq!(s, StatusCode::OK);
    b.restart();
    b.wait_ready().await;
    let again = b.log_text();
    assert_eq!(
        again.matches(&password).count(),
        1,
        "the password is shown on the first start only"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_user_command_manages_accounts_of_a_running_server() {
    let (_broker, dir, b) = start("", &[]).await;
    let config = dir.path().join("commune.toml");
    let cli = |args: &[&str], stdin: Option<&str>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_commune-ioc"));
        cmd.arg("user")
            .arg("--config")
            .arg(&config)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        if let Some(input) = stdin {
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(input.as_bytes())
                .unwrap();
        }
        let out = child.wait_with_output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (code, out, err) = cli(
        &["add", "can.bo", "--role", "operator", "--password-stdin"],
        Some("mật khẩu cán bộ xã\n"),
    );
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("Đã tạo tài khoản can.bo"));
    let t = b.login("can.bo", "mật khẩu cán bộ xã").await;

    let (code, out, _) = cli(&["add", "khach"], None);
    assert_eq!(code, Some(0));
    let generated = out
        .lines()
        .find(|l| l.contains("Mật khẩu"))
        .unwrap()
        .rsplit(' ')
        .next()
        .unwrap()
        .to_owned();
    b.login("khach", &generated).await;

    let (_, out, _) = cli(&["list"], None);
    assert!(
        out.contains("can.bo") && out.contains("operator") && out.contains("hoạt động"),
        "{out}"
    );
    let (code, _, err) = cli(
        &["add", "can.bo", "--password-stdin"],
        Some("mật khẩu khác dài\n"),
    );
    assert_eq!(code, Some(1));
    assert!(err.contains("đã có"), "{err}");
    let (code, _, err) = cli(&["add", "ngan", "--password-stdin"], Some("ngắn\n"));
    assert_eq!(code, Some(1));
    assert!(err.contains("ít nhất 10"), "{err}");

    let (code, _, _) = cli(&["disable", "can.bo"], None);
    assert_eq!(code, Some(0));
    let (s, _, _) = call(&b, Method::GET, "/api/indicators", Some(&t), None).await;
    assert_eq!(
        s,
        StatusCode::UNAUTHORIZED,
        "disabled on the box: the running server refuses at once"
    );
    let (s, _) = login_status(&b, "can.bo", "mật khẩu cán bộ xã").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (code, _, _) = cli(
        &["passwd", "can.bo", "--password-stdin"],
        Some("mật khẩu mới của cán bộ\n"),
    );
    assert_eq!(code, Some(0));
    b.login("can.bo", "mật khẩu mới của cán bộ").await;
    let (_, out, _) = cli(&["list"], None);
    assert!(!out.contains("đã khóa"), "passwd re-enables: {out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_the_log_or_an_error() {
    let (_broker, _dir, b) = start("", &[("RUST_LOG", "debug,rumqttc=info")]).await;
    let mut secrets = vec![b.admin_password.clone()];
    let admin = b.token().await;
    secrets.push(admin.clone());
    create_user(&b, "lanh.dao", "viewer", "mật khẩu lãnh đạo xã").await;
    secrets.push("mật khẩu lãnh đạo xã".into());
    let viewer = b.login("lanh.dao", "mật khẩu lãnh đạo xã").await;
    secrets.push(viewer.clone());
    let (_, _, k) = call(
        &b,
        Method::POST,
        "/api/auth/kiosk-tokens",
        Some(&admin),
        Some(json!({"label": "Màn hình"})),
    )
    .await;
    let kiosk = k["token"].as_str().unwrap().to_owned();
    secrets.push(kiosk.clone());
    // A password typed into the user-name field must not land in the audit.
    let typo = "Mat-Khau-Go-Nham!";
    secrets.push(typo.into());

    let mut answers = Vec::new();
    answers.push(login_status(&b, typo, "x").await.1);
    answers.push(login_status(&b, "lanh.dao", "sai mật khẩu rồi").await.1);
    answers.push(
        call(&b, Method::GET, "/api/audit", Some(&viewer), None)
            .await
            .2,
    );
    answers.push(
        call(
            &b,
            Method::GET,
            "/api/indicators",
            Some(&format!("{viewer}x")),
            None,
        )
        .await
        .2,
    );
    answers.push(
        call(
            &b,
            Method::POST,
            "/api/users",
            Some(&admin),
            Some(json!({"username": "x", "password": "ngắn", "role": "viewer"})),
        )
        .await
        .2,
    );
    let _ = ws_first_frames(&b, Some(&format!("{kiosk}x")), None).await;
    let _ = ws_first_frames(&b, Some(&kiosk), None).await;
    let (_, _, audit) = call(&b, Method::GET, "/api/audit?limit=1000", Some(&admin), None).await;
    answers.push(audit);
    let (_, _, users) = call(&b, Method::GET, "/api/users", Some(&admin), None).await;
    answers.push(users);

    let log = b.log_text();
    for secret in &secrets {
        assert!(!log.contains(secret.as_str()), "a secret is in the log");
        for a in &answers {
            assert!(
                !a.to_string().contains(secret.as_str()),
                "a secret is in an answer: {a}"
            );
        }
    }
    assert!(
        !answers.last().unwrap().to_string().contains("argon2"),
        "no hash in the user list"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_broker_requires_device_logins_when_configured() {
    let port = kit::free_port();
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(port, &dir.path().join("store")).replace(
        "[mqtt]\nhost = \"127.0.0.1\"",
        "[mqtt]\nembedded = true\nusername = \"ioc\"\npassword = \"mat-khau-may-chu-ioc\"\n\
         embedded_logins = { \"cam-01\" = \"mat-khau-camera-01\", \"dossier\" = \"mat-khau-ho-so\" }\n\
         host = \"127.0.0.1\"",
    );
    let b = Backend::start(dir.path(), &config);
    b.wait_ready().await;

    // A client with its login is heard (the dossier system: the embedded
    // broker lets a device login publish only under its own id).
    let mut p = kit::Publisher::with_credentials(port, "dossier", "mat-khau-ho-so");
    p.send(kit::DOSSIER, &kit::dossier_received("l-1", "online", None))
        .await;
    b.wait_value("dossiers_received", "today", "commune", 1.0)
        .await;

    // Without a login, or with a wrong one, the broker refuses.
    for login in [None, Some(("cam-01", "sai-mat-khau"))] {
        let mut opts = rumqttc::MqttOptions::new("intruder", "127.0.0.1", port);
        if let Some((u, pw)) = login {
            opts.set_credentials(u, pw);
        }
        let (_client, mut el) = rumqttc::AsyncClient::new(opts, 10);
        let accepted = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                match el.poll().await {
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(a))) => {
                        return a.code == rumqttc::ConnectReturnCode::Success
                    }
                    Ok(_) => {}
                    Err(_) => return false,
                }
            }
        })
        .await
        .unwrap_or(false);
        assert!(!accepted, "login {login:?} was accepted");
    }
    assert!(
        !b.log_text().contains("mat-khau"),
        "no broker password in the log"
    );
}
