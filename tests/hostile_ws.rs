//! `/api/ws` against hostile and clumsy clients (issue 11): sockets that
//! never authenticate, a client hammering `subscribe`, secrets at
//! `RUST_LOG=trace`, and malformed or oversized WebSocket frames written
//! byte by byte. Every test runs the real binary on loopback.

mod kit;

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use kit::{dossier_received, stack_with, Backend, Publisher, DOSSIER};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

const WAIT: Duration = Duration::from_secs(20);

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

fn ws_base(b: &Backend) -> String {
    format!("{}/api/ws", b.url.replacen("http://", "ws://", 1))
}

/// A new kiosk token (read only, never expires), made by the admin.
async fn kiosk_token(b: &Backend, label: &str) -> String {
    let r = reqwest::Client::new()
        .post(format!("{}/api/auth/kiosk-tokens", b.url))
        .bearer_auth(b.token().await)
        .json(&json!({ "label": label }))
        .send()
        .await
        .expect("POST /api/auth/kiosk-tokens");
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.unwrap();
    v["token"].as_str().unwrap().to_owned()
}

async fn connect(url: &str) -> Ws {
    tokio_tungstenite::connect_async(url)
        .await
        .expect("websocket handshake")
        .0
}

/// What a client read.
#[derive(Debug)]
enum Got {
    Frame(Value),
    Closed(Option<u16>),
}

async fn read(ws: &mut Ws) -> Got {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let msg = tokio::time::timeout(left, ws.next())
            .await
            .expect("no frame from the server in time");
        match msg {
            None | Some(Err(_)) => return Got::Closed(None),
            Some(Ok(Message::Text(t))) => return Got::Frame(serde_json::from_str(&t).unwrap()),
            Some(Ok(Message::Close(f))) => return Got::Closed(f.map(|f| u16::from(f.code))),
            Some(Ok(_)) => {}
        }
    }
}

/// The next frame that is not a heartbeat.
async fn frame(ws: &mut Ws) -> Value {
    loop {
        match read(ws).await {
            Got::Frame(v) if v["type"] == "heartbeat" => {}
            Got::Frame(v) => return v,
            Got::Closed(code) => panic!("closed ({code:?})"),
        }
    }
}

/// An error frame with `code`, then close with `close`.
async fn refused(ws: &mut Ws, code: &str, close: u16) {
    let f = frame(ws).await;
    assert_eq!(f["type"], "error", "{f}");
    assert_eq!(f["code"], code, "{f}");
    loop {
        match read(ws).await {
            Got::Closed(c) => {
                assert_eq!(c, Some(close));
                return;
            }
            Got::Frame(f) => assert_eq!(f["type"], "heartbeat", "{f}"),
        }
    }
}

async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::text(v.to_string())).await.unwrap();
}

/// Subscribe and read the answer: the snapshot's bytes and item count, or
/// the error frame.
async fn subscribe(ws: &mut Ws, cmd: &Value) -> Result<(usize, usize), Value> {
    send(ws, cmd.clone()).await;
    let (mut bytes, mut items) = (0, 0);
    loop {
        let f = frame(ws).await;
        if f["type"] == "error" {
            return Err(f);
        }
        assert_eq!(f["type"], "snapshot", "{f}");
        bytes += f.to_string().len();
        items += f["items"].as_array().unwrap().len();
        if f["page"] == f["pages"] {
            return Ok((bytes, items));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sockets_without_a_token_cannot_crowd_out_screens() {
    let (_broker, _dir, b) = stack_with(
        "",
        &[
            ("IOC__LIVE__MAX_CONNECTIONS", "3"),
            ("IOC__LIVE__MAX_UNAUTHENTICATED", "2"),
            ("IOC__LIVE__AUTH_TIMEOUT_S", "600"),
        ],
    )
    .await;
    let url = ws_base(&b);
    // Two sockets without a token wait for `auth`; more are refused at
    // once, whatever the authenticated slots.
    let mut waiting = [connect(&url).await, connect(&url).await];
    b.wait_for("two sockets waiting for auth", WAIT, || async {
        b.metric("ioc_live_unauthenticated").await == 2.0
    })
    .await;
    for _ in 0..10 {
        let mut extra = connect(&url).await;
        refused(&mut extra, "too_many_connections", 1013).await;
    }
    assert_eq!(b.metric("ioc_live_connections").await, 0.0);

    // Every authenticated slot is still there for the screens.
    let kiosk = kiosk_token(&b, "hall").await;
    let screen_url = format!("{url}?token={kiosk}");
    let mut screens = Vec::new();
    for _ in 0..3 {
        let mut s = connect(&screen_url).await;
        assert_eq!(frame(&mut s).await["type"], "hello");
        screens.push(s);
    }
    // A waiting socket that authenticates needs an authenticated slot.
    send(&mut waiting[0], json!({"type": "auth", "token": kiosk})).await;
    refused(&mut waiting[0], "too_many_connections", 1013).await;
    drop(screens.pop());
    b.wait_for("a screen slot to free", WAIT, || async {
        b.metric("ioc_live_connections").await == 2.0
    })
    .await;
    send(&mut waiting[1], json!({"type": "auth", "token": kiosk})).await;
    assert_eq!(frame(&mut waiting[1]).await["type"], "hello");
    assert_eq!(b.metric("ioc_live_unauthenticated").await, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_that_never_authenticates_is_closed_at_the_deadline() {
    let (_broker, _dir, b) = stack_with("", &[("IOC__LIVE__AUTH_TIMEOUT_S", "1")]).await;
    let mut silent = connect(&ws_base(&b)).await;
    let f = frame(&mut silent).await;
    assert_eq!(f["code"], "unauthorized", "{f}");
    assert!(f["message"].as_str().unwrap().contains("auth"));
    assert!(matches!(read(&mut silent).await, Got::Closed(Some(1008))));
    b.wait_for("the waiting slot to free", WAIT, || async {
        b.metric("ioc_live_unauthenticated").await == 0.0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hammering_subscribe_is_throttled_by_bytes_and_a_screen_is_not() {
    let burst = 64 * 1024;
    let rate = 16 * 1024;
    let (broker, _dir, b) = stack_with(
        "",
        &[
            ("IOC__LIVE__SNAPSHOT_BURST_BYTES", &burst.to_string()),
            ("IOC__LIVE__SNAPSHOT_BYTES_PER_SECOND", &rate.to_string()),
        ],
    )
    .await;
    let kiosk = kiosk_token(&b, "hall").await;
    let url = format!("{}?token={kiosk}", ws_base(&b));
    let everything = json!({"type": "subscribe", "id": "all",
        "keys": ["indicator", "device", "feed", "dead_letters"]});

    // A screen as the wall screen subscribes: one snapshot, then updates.
    let mut screen = connect(&url).await;
    frame(&mut screen).await;
    let main = json!({"type": "subscribe", "id": "main",
        "keys": ["indicator:*:month:commune", "indicator:*:today:commune", "device", "feed"]});
    subscribe(&mut screen, &main)
        .await
        .expect("the screen's snapshot");

    // The hammer: subscribe again as soon as each answer is in.
    let mut hammer = connect(&url).await;
    frame(&mut hammer).await;
    let started = Instant::now();
    let (mut received, mut largest, mut snapshots) = (0usize, 0usize, 0);
    let mut refusal = None;
    let mut closed = None;
    for _ in 0..200 {
        send(&mut hammer, everything.clone()).await;
        let f = match read(&mut hammer).await {
            Got::Frame(f) => f,
            Got::Closed(code) => {
                closed = Some(code);
                break;
            }
        };
        if f["type"] == "error" {
            if f["code"] == "snapshot_rate_limited" {
                refusal.get_or_insert(f);
            }
            continue;
        }
        assert_eq!(f["type"], "snapshot", "{f}");
        let mut size = f.to_string().len();
        let mut page = f;
        while page["page"] != page["pages"] {
            page = frame(&mut hammer).await;
            size += page.to_string().len();
        }
        received += size;
        largest = largest.max(size);
        snapshots += 1;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let e = refusal.expect("the hammer was refused with snapshot_rate_limited");
    assert_eq!(e["id"], "all");
    assert!(e["retry_after_ms"].as_u64().is_some(), "{e}");
    assert!(
        e["message"].as_str().unwrap().contains("thử lại"),
        "a Vietnamese message: {e}"
    );
    // What it got is bounded by the budget: the burst, one snapshot of
    // debt, and the rate over the time it hammered.
    let bound = burst as f64 + largest as f64 + rate as f64 * elapsed;
    eprintln!(
        "hammer: {received} bytes in {snapshots} snapshots over {elapsed:.2} s \
         (largest {largest}, bound {bound:.0}, closed {closed:?})"
    );
    assert!(
        (received as f64) <= bound,
        "{received} bytes in {snapshots} snapshots over {elapsed:.1} s; bound {bound:.0}"
    );
    if let Some(code) = closed {
        assert_eq!(code, Some(1008), "twenty refusals in a row close");
    }

    // The screen never got an error and still gets its updates.
    let mut p = Publisher::new(broker.port);
    p.send(
        DOSSIER,
        &dossier_received("h-1", "online", Some("tan-binh")),
    )
    .await;
    loop {
        let f = frame(&mut screen).await;
        assert_eq!(f["type"], "update", "{f}");
        let done = f["items"].as_array().unwrap().iter().any(|i| {
            i["key"] == "indicator:dossiers_received:today:commune" && i["value"]["value"] == 1.0
        });
        if done {
            break;
        }
    }
    // A fresh screen gets its snapshot at once: the budget is per
    // connection.
    let mut fresh = connect(&url).await;
    frame(&mut fresh).await;
    subscribe(&mut fresh, &main)
        .await
        .expect("a new screen's snapshot");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_never_logged_even_at_trace() {
    let (_broker, _dir, mut b) = stack_with("", &[("RUST_LOG", "trace")]).await;
    let in_frame = kiosk_token(&b, "by-frame").await;
    let in_url = kiosk_token(&b, "by-url").await;
    let url = ws_base(&b);

    let mut ws = connect(&url).await;
    send(&mut ws, json!({"type": "auth", "token": in_frame})).await;
    assert_eq!(frame(&mut ws).await["type"], "hello");
    send(&mut ws, json!({"type": "ping", "id": "after-auth"})).await;
    assert_eq!(frame(&mut ws).await["type"], "pong");
    ws.close(None).await.unwrap();

    let mut ws = connect(&format!("{url}?token={in_url}")).await;
    assert_eq!(frame(&mut ws).await["type"], "hello");
    ws.close(None).await.unwrap();
    drop(ws);

    assert!(b.stop().success());
    let log = b.log_text();
    // Commands are traced by name and size, never by content.
    assert!(
        log.contains("TRACE") && log.contains("websocket frame before auth"),
        "the log is at trace level: {}",
        &log[..log.len().min(3000)]
    );
    assert!(log.contains("websocket command"), "{log}");
    for token in [&in_frame, &in_url] {
        let hex: String = token.bytes().map(|c| format!("{c:02x}")).collect();
        assert!(!log.contains(token.as_str()), "a token is in the log");
        assert!(!log.contains(&hex), "a token is in the log, in hex");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_dropped_without_a_close_frame() {
    let (_broker, _dir, b) = stack_with(
        "",
        &[
            ("IOC__LIVE__SEND_TIMEOUT_S", "1"),
            ("IOC__LIVE__COMMANDS_PER_SECOND", "1000"),
            ("IOC__LIVE__SNAPSHOT_BURST_BYTES", "268435456"),
        ],
    )
    .await;
    // A tiny receive buffer, and a client that asks for far more than
    // the socket buffers hold, then reads nothing.
    let addr: std::net::SocketAddr = b.url.trim_start_matches("http://").parse().unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(2048).unwrap();
    let stream = socket.connect(addr).await.unwrap();
    let url = format!("{}?token={}", ws_base(&b), b.token().await);
    let (mut ws, _) = tokio_tungstenite::client_async(url, MaybeTlsStream::Plain(stream))
        .await
        .expect("websocket handshake");
    let everything = json!({"type": "subscribe", "id": "all",
        "keys": ["indicator", "device", "feed", "dead_letters"]});
    for _ in 0..300 {
        send(&mut ws, everything.clone()).await;
    }
    b.wait_for("the server to drop the stalled client", WAIT, || async {
        b.metric("ioc_live_connections").await == 0.0
    })
    .await;
    // What was written before the drop arrives; then the stream ends with
    // no close frame (PROTOCOL.md §7.5).
    let end = tokio::time::timeout(WAIT * 3, async {
        loop {
            match ws.next().await {
                None | Some(Err(_)) => return None,
                Some(Ok(Message::Close(f))) => return Some(f),
                Some(Ok(_)) => {}
            }
        }
    })
    .await
    .expect("the stream ended");
    assert_eq!(end, None, "no close frame after a send timeout");
    assert!(b.log_text().contains("too slow to take a frame"));
}

// --- frames written byte by byte ---

/// A raw WebSocket client over TCP, past the handshake and the hello.
struct Raw {
    tcp: TcpStream,
}

impl Raw {
    async fn open(b: &Backend) -> Raw {
        let addr = b.url.trim_start_matches("http://").to_owned();
        let mut tcp = TcpStream::connect(&addr).await.unwrap();
        let token = b.token().await;
        let req = format!(
            "GET /api/ws?token={token} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n\r\n"
        );
        tcp.write_all(req.as_bytes()).await.unwrap();
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut byte = [0u8; 1];
            tcp.read_exact(&mut byte).await.unwrap();
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head);
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        let mut raw = Raw { tcp };
        let (op, hello) = raw.frame().await.expect("hello");
        assert_eq!(op, 1);
        assert!(String::from_utf8_lossy(&hello).contains("\"hello\""));
        raw
    }

    /// The next server frame (opcode, payload), or `None` at EOF/reset.
    async fn frame(&mut self) -> Option<(u8, Vec<u8>)> {
        let mut h = [0u8; 2];
        self.tcp.read_exact(&mut h).await.ok()?;
        let len = match h[1] & 0x7f {
            126 => {
                let mut l = [0u8; 2];
                self.tcp.read_exact(&mut l).await.ok()?;
                u64::from(u16::from_be_bytes(l))
            }
            127 => {
                let mut l = [0u8; 8];
                self.tcp.read_exact(&mut l).await.ok()?;
                u64::from_be_bytes(l)
            }
            n => u64::from(n),
        };
        let mut payload = vec![0u8; usize::try_from(len).unwrap()];
        self.tcp.read_exact(&mut payload).await.ok()?;
        Some((h[0] & 0x0f, payload))
    }

    /// Read until the server closes: its close code (`None` when the TCP
    /// connection ended without a close frame).
    async fn end(&mut self) -> Option<u16> {
        tokio::time::timeout(WAIT, async {
            loop {
                match self.frame().await {
                    None => return None,
                    Some((8, p)) if p.len() >= 2 => return Some(u16::from_be_bytes([p[0], p[1]])),
                    Some((8, _)) => return None,
                    Some(_) => {}
                }
            }
        })
        .await
        .expect("the server did not end the connection in time")
    }
}

/// A client frame: `first` is FIN/RSV/opcode, the payload masked (or not).
fn client_frame(first: u8, payload: &[u8], masked: bool) -> Vec<u8> {
    let mask = [0x11u8, 0x22, 0x33, 0x44];
    let bit = if masked { 0x80 } else { 0 };
    let mut out = vec![first];
    match payload.len() {
        n if n < 126 => out.push(bit | n as u8),
        n if n <= 0xffff => {
            out.push(bit | 126);
            out.extend((n as u16).to_be_bytes());
        }
        n => {
            out.push(bit | 127);
            out.extend((n as u64).to_be_bytes());
        }
    }
    if masked {
        out.extend(mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    } else {
        out.extend(payload);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_oversized_frames_end_only_their_connection() {
    let (_broker, _dir, b) = stack_with("", &[("IOC__LIVE__MAX_COMMAND_BYTES", "1024")]).await;
    let ping = br#"{"type":"ping","id":1}"#;
    // (what, bytes, the close code the server sends: None = drops TCP)
    let cases: Vec<(&str, Vec<u8>, Option<u16>)> = vec![
        (
            "unmasked client frame",
            client_frame(0x81, ping, false),
            None,
        ),
        (
            "reserved bit set",
            client_frame(0x81 | 0x40, ping, true),
            None,
        ),
        ("unknown opcode", client_frame(0x83, ping, true), None),
        ("fragmented ping", client_frame(0x09, b"x", true), None),
        (
            "continuation without a start",
            client_frame(0x80, ping, true),
            None,
        ),
        (
            "invalid UTF-8 text",
            client_frame(0x81, b"{\"type\":\"\xff\xfe\"}", true),
            None,
        ),
        (
            "control frame over 125 bytes",
            client_frame(0x89, &[b'p'; 200], true),
            Some(1009),
        ),
        (
            "text over the frame limit",
            client_frame(0x81, &vec![b' '; 8 * 1024], true),
            Some(1009),
        ),
        (
            "fragments that add up over the limit",
            [
                client_frame(0x01, &vec![b' '; 3000], true),
                client_frame(0x00, &vec![b' '; 3000], true),
                client_frame(0x80, &vec![b' '; 3000], true),
            ]
            .concat(),
            Some(1009),
        ),
        (
            "a declared length of 2^62 bytes, never sent",
            {
                let mut h = vec![0x81, 0x80 | 127];
                h.extend((1u64 << 62).to_be_bytes());
                h.extend([1, 2, 3, 4]);
                h
            },
            Some(1009),
        ),
    ];
    for (what, bytes, want) in cases {
        let mut raw = Raw::open(&b).await;
        raw.tcp.write_all(&bytes).await.unwrap();
        let got = raw.end().await;
        match want {
            Some(code) => assert_eq!(got, Some(code), "{what}"),
            // Either way the connection ends; a close frame is allowed.
            None => assert!(got.is_none() || got == Some(1002), "{what}: {got:?}"),
        }
    }
    // Every one of them ended, and the server serves on.
    b.wait_for("every connection to end", WAIT, || async {
        b.metric("ioc_live_connections").await == 0.0
    })
    .await;
    let (status, _) = b.get_status("/healthz").await;
    assert_eq!(status, 200);
    let mut ok = connect(&format!("{}?token={}", ws_base(&b), b.token().await)).await;
    assert_eq!(frame(&mut ok).await["type"], "hello");
    let got = subscribe(
        &mut ok,
        &json!({"type": "subscribe", "id": "s", "keys": ["dead_letters"]}),
    )
    .await
    .expect("snapshot");
    assert_eq!(got.1, 1);
    assert!(!b.log_text().contains("panicked"));
}
