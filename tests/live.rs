//! The live stream `/api/ws` with real WebSocket clients (tokio-tungstenite)
//! against the real binary, fed through a real Mosquitto.

mod kit;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use kit::{dossier_received, stack_with, Backend, Publisher, DOSSIER};
use serde_json::{json, Value};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

const WAIT: Duration = Duration::from_secs(20);

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// What a client read: a JSON frame, or the close frame's code.
#[derive(Debug)]
enum Got {
    Frame(Value),
    Closed(Option<u16>),
}

struct Client {
    ws: Ws,
    hello: Value,
}

/// The WebSocket URL with the admin's token (as the kiosk screen passes
/// it).
async fn ws_url(b: &Backend) -> String {
    format!(
        "{}/api/ws?token={}",
        b.url.replacen("http://", "ws://", 1),
        b.token().await
    )
}

impl Client {
    async fn connect(b: &Backend) -> Client {
        let (ws, _) = tokio_tungstenite::connect_async(ws_url(b).await)
            .await
            .expect("websocket handshake");
        Client::greet(ws).await
    }

    /// Connect over a socket with a tiny receive buffer, so that a client
    /// that stops reading stalls the server's writes quickly.
    async fn connect_small_buffer(b: &Backend) -> Client {
        let addr: std::net::SocketAddr = b.url.trim_start_matches("http://").parse().unwrap();
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(2048).unwrap();
        let stream = socket.connect(addr).await.unwrap();
        let (ws, _) =
            tokio_tungstenite::client_async(ws_url(b).await, MaybeTlsStream::Plain(stream))
                .await
                .expect("websocket handshake");
        Client::greet(ws).await
    }

    async fn greet(ws: Ws) -> Client {
        let mut c = Client {
            ws,
            hello: Value::Null,
        };
        let hello = c.frame().await;
        assert_eq!(hello["type"], "hello", "{hello}");
        c.hello = hello;
        c
    }

    async fn send(&mut self, v: Value) {
        self.ws
            .send(Message::text(v.to_string()))
            .await
            .expect("send command");
    }

    async fn read(&mut self, within: Duration) -> Got {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let msg = tokio::time::timeout(left, self.ws.next())
                .await
                .expect("no frame from the server in time");
            match msg {
                None => return Got::Closed(None),
                Some(Err(_)) => return Got::Closed(None),
                Some(Ok(Message::Text(t))) => {
                    return Got::Frame(serde_json::from_str(t.as_str()).expect("frame is JSON"))
                }
                Some(Ok(Message::Close(f))) => return Got::Closed(f.map(|f| u16::from(f.code))),
                Some(Ok(_)) => {}
            }
        }
    }

    /// The next JSON frame other than a heartbeat.
    async fn frame(&mut self) -> Value {
        // Heartbeats alone never satisfy a wait: the whole call has one
        // deadline, so a server that only sends heartbeats fails the test
        // instead of hanging it.
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "only heartbeats from the server for {WAIT:?}"
            );
            match self.read(left).await {
                Got::Frame(v) if v["type"] == "heartbeat" => {}
                Got::Frame(v) => return v,
                Got::Closed(code) => panic!("connection closed ({code:?})"),
            }
        }
    }

    /// Subscribe and gather the snapshot's pages: (seq, resync, items).
    async fn subscribe(&mut self, cmd: Value) -> (u64, bool, Vec<Value>) {
        self.send(cmd).await;
        self.snapshot().await
    }

    async fn snapshot(&mut self) -> (u64, bool, Vec<Value>) {
        let mut items = Vec::new();
        loop {
            let f = self.frame().await;
            assert_eq!(f["type"], "snapshot", "{f}");
            items.extend(f["items"].as_array().unwrap().iter().cloned());
            if f["page"] == f["pages"] {
                return (
                    f["seq"].as_u64().unwrap(),
                    f["resync"].as_bool().unwrap(),
                    items,
                );
            }
        }
    }

    /// Read update frames until `done` holds for an item; returns the seqs
    /// of the update frames read.
    async fn updates_until(&mut self, mut done: impl FnMut(&Value) -> bool) -> Vec<u64> {
        let mut seqs = Vec::new();
        loop {
            let f = self.frame().await;
            assert_eq!(f["type"], "update", "{f}");
            seqs.push(f["seq"].as_u64().unwrap());
            if f["items"].as_array().unwrap().iter().any(&mut done) {
                return seqs;
            }
        }
    }

    async fn error(&mut self) -> Value {
        let f = self.frame().await;
        assert_eq!(f["type"], "error", "{f}");
        f
    }

    /// A ping answered by a pong: the connection is still usable.
    async fn still_open(&mut self) {
        self.send(json!({"type": "ping", "id": "alive"})).await;
        let f = self.frame().await;
        assert_eq!(f["type"], "pong", "{f}");
        assert_eq!(f["id"], "alive");
    }
}

fn item_is(item: &Value, key: &str, value: f64) -> bool {
    item["key"] == key && item["value"]["value"].as_f64() == Some(value)
}

const RECEIVED_TODAY: &str = "indicator:dossiers_received:today:commune";
const ONLINE_TODAY: &str = "indicator:dossier_online_ratio:today:commune";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_then_ordered_typed_updates() {
    let (broker, _dir, b) = kit::stack().await;
    let mut c = Client::connect(&b).await;
    assert!(c.hello["epoch"].as_str().is_some_and(|e| !e.is_empty()));
    let (snap_seq, resync, items) = c
        .subscribe(json!({"type": "subscribe", "id": "s", "keys": [RECEIVED_TODAY, ONLINE_TODAY]}))
        .await;
    assert!(!resync);
    assert_eq!(items.len(), 2, "{items:?}");
    let ratio = items.iter().find(|i| i["key"] == ONLINE_TODAY).unwrap();
    assert_eq!(ratio["value"]["value"], Value::Null, "no data is null");
    assert_eq!(ratio["value"]["status"], "no_data");
    let count = items.iter().find(|i| i["key"] == RECEIVED_TODAY).unwrap();
    assert_eq!(count["value"]["value"], json!(0.0));

    let mut p = Publisher::new(broker.port);
    for i in 0..10 {
        let channel = if i < 7 { "online" } else { "direct" };
        p.send(
            DOSSIER,
            &dossier_received(&format!("d-{i}"), channel, Some("tan-binh")),
        )
        .await;
    }
    let mut last = snap_seq;
    let mut latest_ratio = None;
    loop {
        let f = c.frame().await;
        assert_eq!(f["type"], "update", "{f}");
        let seq = f["seq"].as_u64().unwrap();
        assert!(seq > last, "seq {seq} after {last}");
        last = seq;
        let mut done = false;
        for item in f["items"].as_array().unwrap() {
            assert!(item["value"]["value"].is_number(), "typed value: {item}");
            assert!(item["updated_at"].is_string(), "{item}");
            if item["key"] == ONLINE_TODAY {
                latest_ratio = item["value"]["value"].as_f64();
            }
            done |= item_is(item, RECEIVED_TODAY, 10.0);
        }
        if done {
            break;
        }
    }
    assert_eq!(latest_ratio, Some(70.0));
}

/// Dossiers `r-{n}` one by one, 100 ms apart: one journal commit (and one
/// hub step) each.
async fn publish_spaced(p: &mut Publisher, ns: std::ops::RangeInclusive<u32>) {
    for n in ns {
        p.send(
            DOSSIER,
            &dossier_received(&format!("r-{n}"), "online", Some("tan-binh")),
        )
        .await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_gets_exactly_the_missed_steps() {
    let (broker, _dir, b) = kit::stack().await;
    let sub = json!({"type": "subscribe", "id": "r", "keys": ["indicator:dossiers_received"]});
    let mut a = Client::connect(&b).await;
    let mut control = Client::connect(&b).await;
    let epoch = a.hello["epoch"].as_str().unwrap().to_string();
    a.subscribe(sub.clone()).await;
    control.subscribe(sub.clone()).await;
    let mut p = Publisher::new(broker.port);
    publish_spaced(&mut p, 1..=5).await;
    let mut a_seqs = a.updates_until(|i| item_is(i, RECEIVED_TODAY, 5.0)).await;
    let last = *a_seqs.last().unwrap();
    drop(a);

    publish_spaced(&mut p, 6..=15).await;
    let control_seqs = control
        .updates_until(|i| item_is(i, RECEIVED_TODAY, 15.0))
        .await;

    let mut a2 = Client::connect(&b).await;
    let mut resume = sub.clone();
    resume["resume"] = json!({"epoch": epoch, "seq": last});
    a2.send(resume).await;
    let r = a2.frame().await;
    assert_eq!(r["type"], "resumed", "{r}");
    assert_eq!(r["from"], last);
    a_seqs.extend(a2.updates_until(|i| item_is(i, RECEIVED_TODAY, 15.0)).await);

    let unique: BTreeSet<u64> = a_seqs.iter().copied().collect();
    assert_eq!(unique.len(), a_seqs.len(), "no duplicate seq: {a_seqs:?}");
    assert!(a_seqs.windows(2).all(|w| w[0] < w[1]), "{a_seqs:?}");
    assert_eq!(
        a_seqs, control_seqs,
        "the resumed client saw exactly what the connected one saw"
    );

    // Another epoch (a restarted server) cannot resume: fresh snapshot.
    let mut a3 = Client::connect(&b).await;
    let mut stale = sub.clone();
    stale["resume"] = json!({"epoch": "0000000000000000", "seq": last});
    let (_, resync, items) = a3.subscribe(stale).await;
    assert!(resync, "a foreign epoch gets a resync snapshot");
    assert!(items.iter().any(|i| item_is(i, RECEIVED_TODAY, 15.0)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_client_does_not_delay_others_and_gets_a_resync() {
    let (broker, _dir, b) = stack_with(
        "",
        &[
            ("IOC__LIVE__QUEUE_BATCHES", "4"),
            ("IOC__LIVE__SEND_TIMEOUT_S", "120"),
            // Long feeds (republished whole, with every event, every 200 ms)
            // make volume quickly: update items carry only what changed.
            ("IOC__LIVE__FEED_LEN", "1000"),
        ],
    )
    .await;
    let everything =
        json!({"type": "subscribe", "id": "all", "keys": ["indicator", "feed", "device"]});
    let mut stalled = Client::connect_small_buffer(&b).await;
    stalled.subscribe(everything.clone()).await;
    // A twin that reads what the stalled client would: publishing goes on
    // until that is more than the kernel can buffer for the stalled one
    // (twice the largest TCP send buffer, plus a margin).
    let mut twin = Client::connect(&b).await;
    twin.subscribe(everything).await;
    let mut healthy = Client::connect(&b).await;
    healthy
        .subscribe(json!({"type": "subscribe", "id": "h", "keys": [RECEIVED_TODAY]}))
        .await;
    let wmem_max: usize = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_wmem")
        .ok()
        .and_then(|s| s.split_whitespace().nth(2).and_then(|n| n.parse().ok()))
        .unwrap_or(4 << 20);
    let enough = 2 * wmem_max + (1 << 20);

    // The stalled client reads nothing from here on. Spaced publishing
    // makes many small steps, and a large feed frame every 200 ms.
    let mut p = Publisher::new(broker.port);
    let mut total = 0u32;
    let mut twin_bytes = 0usize;
    let deadline = Instant::now() + Duration::from_secs(120);
    while twin_bytes < enough {
        assert!(
            Instant::now() < deadline,
            "{total} events published, the twin read only {twin_bytes} bytes"
        );
        let id = format!("s-{total:0>124}");
        p.send(DOSSIER, &dossier_received(&id, "online", Some("tan-binh")))
            .await;
        total += 1;
        tokio::time::sleep(Duration::from_millis(5)).await;
        while let Ok(Some(Ok(m))) =
            tokio::time::timeout(Duration::from_millis(1), twin.ws.next()).await
        {
            twin_bytes += m.len();
        }
    }
    healthy
        .updates_until(|i| item_is(i, RECEIVED_TODAY, f64::from(total)))
        .await;

    // Wake up: stale frames first, then a resync snapshot with the truth.
    let deadline = Instant::now() + WAIT;
    let (mut frames, mut bytes) = (0, 0);
    let resync = loop {
        assert!(
            Instant::now() < deadline,
            "no resync for the stalled client after {frames} frames, {bytes} bytes"
        );
        // Heartbeats count against the deadline too (frame() skips them).
        let f = match stalled.read(WAIT).await {
            Got::Frame(f) => f,
            Got::Closed(code) => panic!("stalled client closed ({code:?})"),
        };
        frames += 1;
        bytes += f.to_string().len();
        if f["type"] == "snapshot" && f["resync"] == true {
            break f;
        }
    };
    let mut items: Vec<Value> = resync["items"].as_array().unwrap().clone();
    if resync["page"] != resync["pages"] {
        let (_, _, rest) = stalled.snapshot().await;
        items.extend(rest);
    }
    assert!(
        items
            .iter()
            .any(|i| item_is(i, RECEIVED_TODAY, f64::from(total))),
        "the resync carries the current value"
    );
    assert!(b.metric("ioc_live_resyncs_total").await >= 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_commands_get_error_frames_and_the_connection_stays() {
    let (_broker, _dir, b) = stack_with(
        "",
        &[
            ("IOC__LIVE__MAX_SUBSCRIPTIONS", "2"),
            ("IOC__LIVE__MAX_COMMAND_BYTES", "512"),
        ],
    )
    .await;
    let mut c = Client::connect(&b).await;

    c.ws.send(Message::text("this is not json")).await.unwrap();
    assert_eq!(c.error().await["code"], "malformed");
    c.still_open().await;

    c.send(json!({"type": "dance"})).await;
    assert_eq!(c.error().await["code"], "malformed");

    c.send(json!({"type": "subscribe", "id": "x", "keys": ["indicator:khong_co"]}))
        .await;
    let e = c.error().await;
    assert_eq!(e["code"], "unknown_key");
    assert_eq!(e["id"], "x");
    assert!(e["message"]
        .as_str()
        .unwrap()
        .contains("Khóa không tồn tại"));

    c.send(json!({"type": "subscribe", "id": "x", "keys": ["indicator"], "villages": ["ban-z"]}))
        .await;
    assert_eq!(c.error().await["code"], "unknown_key");

    c.ws.send(Message::binary(vec![1u8, 2, 3])).await.unwrap();
    assert_eq!(c.error().await["code"], "binary_not_supported");

    c.subscribe(json!({"type": "subscribe", "id": "a", "keys": ["dead_letters"]}))
        .await;
    c.subscribe(json!({"type": "subscribe", "id": "b", "keys": ["dead_letters"]}))
        .await;
    c.send(json!({"type": "subscribe", "id": "c", "keys": ["dead_letters"]}))
        .await;
    assert_eq!(c.error().await["code"], "too_many_subscriptions");
    // Replacing an existing id is not a new subscription.
    c.subscribe(json!({"type": "subscribe", "id": "b", "keys": ["feed"]}))
        .await;

    let padding = "x".repeat(1000);
    c.send(json!({"type": "ping", "id": padding})).await;
    assert_eq!(c.error().await["code"], "command_too_large");
    c.still_open().await;

    // Far beyond the limit: refused by the WebSocket layer, close 1009.
    let huge = "y".repeat(8 * 1024);
    let _ = c.ws.send(Message::text(huge)).await;
    let code = loop {
        match c.read(WAIT).await {
            Got::Closed(code) => break code,
            Got::Frame(_) => {}
        }
    };
    assert_eq!(code, Some(1009));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_rate_and_connection_limits_hold() {
    let (_broker, _dir, b) = stack_with(
        "",
        &[
            ("IOC__LIVE__COMMANDS_PER_SECOND", "5"),
            ("IOC__LIVE__MAX_CONNECTIONS", "2"),
        ],
    )
    .await;
    let mut c = Client::connect(&b).await;
    for i in 0..60 {
        c.send(json!({"type": "ping", "id": i})).await;
    }
    let mut limited = 0;
    let code = loop {
        match c.read(WAIT).await {
            Got::Frame(f) if f["code"] == "rate_limited" => limited += 1,
            Got::Frame(_) => {}
            Got::Closed(code) => break code,
        }
    };
    assert!(limited >= 20, "{limited} rate_limited frames");
    assert_eq!(code, Some(u16::from(CloseCode::Policy)));
    drop(c);
    b.wait_for("the closed connection to free its slot", WAIT, || async {
        b.metric("ioc_live_connections").await == 0.0
    })
    .await;

    let _one = Client::connect(&b).await;
    let _two = Client::connect(&b).await;
    let (ws, _) = tokio_tungstenite::connect_async(ws_url(&b).await)
        .await
        .unwrap();
    let mut third = Client {
        ws,
        hello: Value::Null,
    };
    match third.read(WAIT).await {
        Got::Frame(f) => assert_eq!(f["code"], "too_many_connections", "{f}"),
        Got::Closed(code) => panic!("closed without a reason ({code:?})"),
    }
    match third.read(WAIT).await {
        Got::Closed(code) => assert_eq!(code, Some(1013)),
        Got::Frame(f) => panic!("unexpected {f}"),
    }
    // A slot frees when a connection leaves.
    drop(_one);
    let deadline = Instant::now() + WAIT;
    loop {
        let (ws, _) = tokio_tungstenite::connect_async(ws_url(&b).await)
            .await
            .unwrap();
        let mut c = Client {
            ws,
            hello: Value::Null,
        };
        if let Got::Frame(f) = c.read(WAIT).await {
            if f["type"] == "hello" {
                break;
            }
        }
        assert!(Instant::now() < deadline, "the slot was never released");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_snapshots_are_paged_under_the_frame_limit() {
    let (_broker, _dir, b) = stack_with("", &[("IOC__LIVE__MAX_FRAME_BYTES", "2048")]).await;
    let mut c = Client::connect(&b).await;
    c.send(json!({"type": "subscribe", "id": "p", "keys": ["indicator"]}))
        .await;
    let mut items = 0;
    let mut pages = 0;
    loop {
        let Got::Frame(f) = c.read(WAIT).await else {
            panic!("closed");
        };
        let text_len = f.to_string().len();
        assert_eq!(f["type"], "snapshot");
        let n = f["items"].as_array().unwrap().len();
        assert!(
            text_len <= 2048 || n == 1,
            "page of {text_len} bytes with {n} items"
        );
        pages += 1;
        assert_eq!(f["page"], pages);
        items += n;
        if f["page"] == f["pages"] {
            break;
        }
    }
    assert!(pages > 1, "{pages} pages");
    let mut want = 0;
    for window in ["today", "24h", "month"] {
        want += b
            .get(&format!("/api/indicators?window={window}&village=all"))
            .await
            .as_array()
            .unwrap()
            .len();
    }
    assert_eq!(items, want, "every indicator of every scope and window");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_dead_letters_feed_and_heartbeats_stream() {
    let (broker, _dir, b) = stack_with("", &[("IOC__LIVE__HEARTBEAT_S", "1")]).await;
    let mut c = Client::connect(&b).await;
    let (_, _, items) = c
        .subscribe(json!({"type": "subscribe", "id": "d",
            "keys": ["device:camera", "dead_letters", "feed"], "villages": ["tan-binh", "commune"]}))
        .await;
    assert!(items.iter().any(|i| i["key"] == "device:camera:cam-01"));
    assert!(
        !items.iter().any(|i| i["key"] == "device:camera:cam-02"),
        "cam-02 is in another village"
    );
    assert!(items.iter().any(|i| i["key"] == "dead_letters"));

    let mut p = Publisher::new(broker.port);
    p.send("ioc/binh-lu/camera/cam-01/status", b"offline").await;
    p.send("ioc/binh-lu/camera/cam-01/event", b"{broken").await;
    p.send(
        DOSSIER,
        &dossier_received("f-1", "online", Some("tan-binh")),
    )
    .await;

    let (mut offline, mut dead, mut feed, mut beat) = (false, false, false, false);
    let deadline = Instant::now() + WAIT;
    while !(offline && dead && feed && beat) {
        assert!(
            Instant::now() < deadline,
            "offline={offline} dead={dead} feed={feed} heartbeat={beat}"
        );
        let Got::Frame(f) = c.read(WAIT).await else {
            panic!("closed");
        };
        if f["type"] == "heartbeat" {
            beat = f["seq"].is_u64() && f["at"].is_string();
            continue;
        }
        for i in f["items"].as_array().into_iter().flatten() {
            if i["key"] == "device:camera:cam-01" && i["value"]["state"] == "offline" {
                offline = true;
            }
            if i["key"] == "dead_letters"
                && i["value"]["since_start"] == 1
                && i["value"]["by_reason"]["invalid_json"] == 1
            {
                dead = true;
            }
            if i["key"] == "feed:tan-binh" {
                let first = &i["value"]["events"][0];
                feed = first["kind"] == "received" && first["source"] == "procedure";
            }
            assert_ne!(i["key"], "device:camera:cam-02");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_websockets_with_a_close_frame() {
    let (_broker, _dir, mut b) = kit::stack().await;
    let mut c = Client::connect(&b).await;
    c.subscribe(json!({"type": "subscribe", "id": "s", "keys": ["indicator"]}))
        .await;
    b.signal_term();
    let mut reason = None;
    let code = loop {
        match c.read(WAIT).await {
            Got::Frame(f) if f["type"] == "error" => reason = Some(f["code"].clone()),
            Got::Frame(_) => {}
            Got::Closed(code) => break code,
        }
    };
    assert_eq!(reason, Some(json!("shutting_down")));
    assert_eq!(code, Some(1001));
    let status = b.stop();
    assert!(status.success(), "{status}");
    let log = b.log_text();
    assert!(
        !log.contains("did not close in time"),
        "shutdown waited for the WebSocket tasks: {log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_on_the_websocket_path_is_a_json_error() {
    let (_broker, _dir, b) = kit::stack().await;
    let (status, body) = b.get_status("/api/ws").await;
    assert_eq!(status, 426);
    assert_eq!(body["error"]["code"], "websocket_required");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_peer_is_dropped_after_three_heartbeats() {
    let (_broker, _dir, b) = stack_with("", &[("IOC__LIVE__HEARTBEAT_S", "1")]).await;
    // Handshake, then never read or answer pings again (a peer whose
    // network went away without a FIN).
    let (silent, _) = tokio_tungstenite::connect_async(ws_url(&b).await)
        .await
        .unwrap();
    b.wait_for("the connection to be counted", WAIT, || async {
        b.metric("ioc_live_connections").await == 1.0
    })
    .await;
    b.wait_for("the silent peer to be dropped", WAIT, || async {
        b.metric("ioc_live_connections").await == 0.0
    })
    .await;
    drop(silent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_share_frames_only_with_equal_subscriptions() {
    let (broker, _dir, b) = kit::stack().await;
    // Two clients with one subscription, one with another, one with a
    // village filter on the first: each sees exactly its own keys.
    let mut same_a = Client::connect(&b).await;
    let mut same_b = Client::connect(&b).await;
    let mut other = Client::connect(&b).await;
    let mut filtered = Client::connect(&b).await;
    let received =
        json!({"type": "subscribe", "id": "s", "keys": ["indicator:dossiers_received:today"]});
    same_a.subscribe(received.clone()).await;
    same_b.subscribe(received.clone()).await;
    other
        .subscribe(json!({"type": "subscribe", "id": "s", "keys": [ONLINE_TODAY]}))
        .await;
    let mut only_village = received.clone();
    only_village["villages"] = json!(["tan-binh"]);
    filtered.subscribe(only_village).await;

    let mut p = Publisher::new(broker.port);
    publish_spaced(&mut p, 1..=4).await;
    let village_key = "indicator:dossiers_received:today:tan-binh";
    for (name, c, want_key, want) in [
        ("same_a", &mut same_a, RECEIVED_TODAY, 4.0),
        ("same_b", &mut same_b, RECEIVED_TODAY, 4.0),
        ("other", &mut other, ONLINE_TODAY, 100.0),
        ("filtered", &mut filtered, village_key, 4.0),
    ] {
        let deadline = Instant::now() + WAIT;
        loop {
            assert!(Instant::now() < deadline, "{name}: no {want_key} = {want}");
            let f = c.frame().await;
            let items = f["items"].as_array().unwrap();
            for i in items {
                let key = i["key"].as_str().unwrap();
                match name {
                    "same_a" | "same_b" => assert!(
                        key.starts_with("indicator:dossiers_received:today:"),
                        "{name}: {key}"
                    ),
                    "other" => assert_eq!(key, ONLINE_TODAY, "{name}"),
                    _ => assert_eq!(key, village_key, "{name}"),
                }
            }
            if items.iter().any(|i| item_is(i, want_key, want)) {
                break;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_step_gathers_commits_into_fewer_steps() {
    let (broker, _dir, b) = stack_with("", &[("IOC__LIVE__MIN_STEP_MS", "400")]).await;
    let mut c = Client::connect(&b).await;
    c.subscribe(json!({"type": "subscribe", "id": "s", "keys": [RECEIVED_TODAY]}))
        .await;
    let mut p = Publisher::new(broker.port);
    // Five commits within ~150 ms: the first makes a step at once, the
    // others wait for the 400 ms to pass and travel together.
    for n in 1..=5 {
        p.send(
            DOSSIER,
            &dossier_received(&format!("m-{n}"), "online", Some("tan-binh")),
        )
        .await;
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let frames = c.updates_until(|i| item_is(i, RECEIVED_TODAY, 5.0)).await;
    assert!(
        frames.len() <= 3,
        "{} update frames for 5 commits 30 ms apart: {frames:?}",
        frames.len()
    );
}

/// PROTOCOL §7.3: a snapshot item is whole; an update item of a value whose
/// static part did not change carries only what changes (no scope, name,
/// unit, target or window bounds), with `updated_at` in milliseconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_carry_only_what_changes() {
    let (broker, _dir, b) = kit::stack().await;
    let mut c = Client::connect(&b).await;
    let (_, _, items) = c
        .subscribe(json!({"type": "subscribe", "id": "s", "keys": [RECEIVED_TODAY, ONLINE_TODAY, "device:camera:cam-01"]}))
        .await;
    let ratio = items.iter().find(|i| i["key"] == ONLINE_TODAY).unwrap();
    assert_eq!(ratio["scope"], "commune", "{ratio}");
    for field in ["id", "name", "unit", "window", "from", "to", "status"] {
        assert!(
            !ratio["value"][field].is_null(),
            "whole: {field} in {ratio}"
        );
    }

    let mut p = Publisher::new(broker.port);
    p.send(
        DOSSIER,
        &dossier_received("c-1", "online", Some("tan-binh")),
    )
    .await;
    p.send("ioc/binh-lu/camera/cam-01/status", b"offline").await;
    let fields = |i: &Value| -> BTreeSet<String> {
        i["value"].as_object().unwrap().keys().cloned().collect()
    };
    let set =
        |names: &[&str]| -> BTreeSet<String> { names.iter().map(|s| s.to_string()).collect() };
    let (mut count, mut online, mut camera) = (false, false, false);
    let deadline = Instant::now() + WAIT;
    while !(count && online && camera) {
        assert!(
            Instant::now() < deadline,
            "count={count} online={online} camera={camera}"
        );
        let f = c.frame().await;
        assert_eq!(f["type"], "update", "{f}");
        for i in f["items"].as_array().unwrap() {
            assert!(i.get("scope").is_none(), "a change has no scope: {i}");
            if i["updated_at"].is_string() {
                let t = i["updated_at"].as_str().unwrap();
                assert_eq!(
                    t.len(),
                    "2026-11-23T10:00:00.402Z".len(),
                    "ms precision: {t}"
                );
            }
            if item_is(i, RECEIVED_TODAY, 1.0) {
                assert_eq!(fields(i), set(&["value", "status"]), "{i}");
                count = true;
            }
            if item_is(i, ONLINE_TODAY, 100.0) {
                assert_eq!(
                    fields(i),
                    set(&["value", "status", "numerator", "denominator"]),
                    "{i}"
                );
                assert_eq!(i["value"]["numerator"], json!(1.0));
                online = true;
            }
            if i["key"] == "device:camera:cam-01" && i["value"]["state"] == "offline" {
                assert_eq!(
                    fields(i),
                    set(&["state", "reported_state", "stale", "last_seen", "detail"]),
                    "{i}"
                );
                camera = true;
            }
        }
    }
}
