//! The MQTT side of the adversarial probe (issue 11), kept as a suite: each
//! test repeats an attack or a clumsy input against the real binary and a
//! real broker (Mosquitto, or the embedded one), on loopback only, bounded
//! in count and time.

mod kit;

use std::time::Duration;

use kit::shipped::Shipped;
use kit::{dossier_received, stack, Publisher, DOSSIER};
use serde_json::json;

/// An empty message (how MQTT clears a retained message) is valid input: it
/// becomes a `cleared` event, changes no device, and never breaks the
/// dead-letter list, even when it is the payload of a dead letter. Frigate
/// 0.18's `stopped` on `frigate/available` is an event too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_messages_and_frigate_stopped_are_events_and_the_dead_letter_list_answers() {
    let (broker, _dir, b) = stack().await;
    let mut p = Publisher::new(broker.port);
    let status = "ioc/binh-lu/camera/cam-01/status";
    p.send_opts(status, b"online", true).await;
    // Clearing the retained status, the normal MQTT way.
    p.send_opts(status, b"", true).await;
    // `mosquitto_pub -q 1 -t ioc/binh-lu/camera/cam-01/event -n`
    p.send("ioc/binh-lu/camera/cam-01/event", b"").await;
    // An empty message on a topic nobody decodes is a dead letter with an
    // empty payload: the list must still answer.
    p.send("ioc/binh-lu/weather/now", b"").await;
    p.send("frigate/available", b"stopped").await;
    p.send(DOSSIER, &dossier_received("after-empty", "online", None))
        .await;
    b.wait_value("dossiers_received", "month", "commune", 1.0)
        .await;
    b.wait_for("5 events committed", Duration::from_secs(20), || async {
        b.metric("ioc_events_committed_total").await >= 5.0
    })
    .await;

    let (code, body) = b.get_status("/api/dead-letters").await;
    assert_eq!(code, 200, "dead-letter list: {body}");
    assert_eq!(body["counts"], json!({"unknown_topic": 1}), "{body}");
    let item = &body["items"][0];
    assert_eq!(item["topic"], "ioc/binh-lu/weather/now");
    assert_eq!(item["size"], 0);
    assert_eq!(item["excerpt"], "");
    assert_eq!(b.metric("ioc_dead_letters_total").await, 1.0);
    assert_eq!(b.metric("ioc_events_committed_total").await, 5.0);

    // The cleared status changed nothing: the camera is still online.
    let devices = b.get("/api/devices").await;
    let cam = devices
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == "cam-01")
        .expect("cam-01 listed")
        .clone();
    assert_eq!(cam["state"], "online", "{cam}");
}

/// A publisher that fires QoS 1 messages without waiting for each PubAck
/// (up to `inflight` at once) and returns once the broker acknowledged all.
async fn flood(port: u16, messages: Vec<(String, Vec<u8>)>) {
    use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
    let mut opts = MqttOptions::new(format!("flood-{}", kit::free_port()), "127.0.0.1", port);
    opts.set_max_packet_size(4 * 1024 * 1024, 4 * 1024 * 1024);
    opts.set_inflight(32);
    let (client, mut el) = AsyncClient::new(opts, 64);
    let n = messages.len();
    let sender = tokio::spawn(async move {
        for (topic, payload) in messages {
            client
                .publish(topic, QoS::AtLeastOnce, false, payload)
                .await
                .expect("queue publish");
        }
        client
    });
    let mut acked = 0;
    tokio::time::timeout(Duration::from_secs(120), async {
        while acked < n {
            match el.poll().await {
                Ok(Event::Incoming(Packet::PubAck(_))) => acked += 1,
                Ok(_) => {}
                Err(e) => panic!("flood publisher: {e}"),
            }
        }
    })
    .await
    .expect("the broker acknowledged the flood within 120 s");
    drop(sender.await);
}

/// Issue 11 #13: a flood of 1 MiB payloads, queued by the broker while the
/// backend was away and then delivered as fast as it can take them, stays
/// bounded in the backend's memory (payloads are bounded in bytes on their
/// way to the journal and held once), and every message is an event or a
/// dead letter. Half are just under `ingest.max_payload_bytes` (1 MiB):
/// events; half 8 KiB over: packets above the client's limit, each taken on
/// a reconnect as an `oversized` dead letter without wedging the session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_1_mib_payloads_stays_bounded_in_memory_and_nothing_is_lost() {
    const N: usize = 160;
    /// Peak RSS (VmHWM) the backend may reach, in MiB.
    const BOUND_MIB: u64 = 180;
    let broker = kit::Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let config = kit::test_config(broker.port, &dir.path().join("store"));
    let env = [("IOC__INGEST__MAX_PAYLOAD_BYTES", "1048576")];
    let mut b = kit::Backend::start_with_env(dir.path(), &config, &env);
    b.wait_ready().await;
    let idle_mib = kit::measure::rss_kib(b.pid().expect("backend runs")).expect("VmRSS") / 1024;
    eprintln!("idle RSS {idle_mib} MiB");
    // The persistent session exists; stop the backend so the broker queues.
    b.stop();
    let mut messages = Vec::new();
    for i in 0..N {
        let mut v = serde_json::json!({
            "dossier_id": format!("flood-{i}"),
            "event": "received",
            "channel": "online",
        });
        let head = v.to_string().len() + 10;
        let size = if i % 2 == 0 {
            1024 * 1024 - 100
        } else {
            1024 * 1024 + 8192
        };
        v["pad"] = serde_json::Value::from("x".repeat(size - head));
        let payload = v.to_string().into_bytes();
        messages.push((DOSSIER.to_owned(), payload));
    }
    flood(broker.port, messages).await;
    b.restart();
    b.wait_ready().await;
    b.wait_for(
        "every message journaled",
        Duration::from_secs(120),
        || async {
            b.metric("ioc_events_committed_total").await + b.metric("ioc_dead_letters_total").await
                >= N as f64
        },
    )
    .await;
    let peak_mib =
        kit::measure::peak_rss_kib(b.pid().expect("backend runs")).expect("VmHWM") / 1024;
    eprintln!("peak RSS {peak_mib} MiB for {N} x 1 MiB");
    assert_eq!(b.metric("ioc_events_committed_total").await, (N / 2) as f64);
    let body = b.get("/api/dead-letters?reason=oversized&limit=200").await;
    assert_eq!(
        body["counts"]["oversized"],
        json!(N / 2),
        "{}",
        body["counts"]
    );
    b.wait_value("dossiers_received", "month", "commune", (N / 2) as f64)
        .await;
    // The oversized packets cost reconnects, not a wedged session.
    let oversized = b.metric("ioc_mqtt_oversized_packets_total").await;
    assert!(oversized >= 1.0, "oversized packets were counted");
    assert_eq!(b.metric("ioc_mqtt_connected").await, 1.0);
    assert!(
        peak_mib < BOUND_MIB,
        "peak RSS {peak_mib} MiB, bound {BOUND_MIB} MiB"
    );
}

/// The backend's config for a broker that wants its login.
fn with_login(port: u16, dir: &std::path::Path, user: &str, pass: &str) -> String {
    kit::test_config(port, &dir.join("store")).replacen(
        "[mqtt]\n",
        &format!("[mqtt]\nusername = \"{user}\"\npassword = \"{pass}\"\n"),
        1,
    )
}

/// Issue 11 #9: with the shipped Mosquitto config, what the broker
/// acknowledged survives `kill -9` of the broker (a power cut): the backend's
/// persistent session is offline, N QoS 1 messages are acknowledged by the
/// broker, the broker is killed by its PID and restarted, and all N arrive.
/// (With the former `autosave_interval 60`: 0 of N.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_mosquitto_keeps_acknowledged_messages_across_kill_9() {
    const N: usize = 200;
    let mut m = Shipped::start(&[("ioc", "mk-ioc-1"), ("dossier", "mk-dossier-1")]);
    let dir = tempfile::tempdir().unwrap();
    let mut b = kit::Backend::start(
        dir.path(),
        &with_login(m.port, dir.path(), "ioc", "mk-ioc-1"),
    );
    b.wait_ready().await;
    let mut p = Publisher::with_credentials(m.port, "dossier", "mk-dossier-1");
    // One message through proves the session and its subscription exist.
    p.send(DOSSIER, &dossier_received("before", "online", None))
        .await;
    b.wait_value("dossiers_received", "month", "commune", 1.0)
        .await;
    b.stop();
    for i in 0..N {
        p.send(
            DOSSIER,
            &dossier_received(&format!("k9-{i}"), "online", None),
        )
        .await;
    }
    drop(p);
    // Mosquitto sends the PubAck before it saves (its next loop turn), so
    // wait until the file holds the last message: the window between the
    // two is the residual loss on a power cut (docs/DEPLOY.md §6.3).
    let last = format!("k9-{}", N - 1);
    kit::wait_until(
        "the broker saved the last message",
        Duration::from_secs(20),
        || async {
            let db = std::fs::read(m.dir.path().join("mosquitto.db")).unwrap_or_default();
            db.windows(last.len())
                .any(|w| w == last.as_bytes())
                .then_some(())
        },
    )
    .await;
    m.kill_and_restart();
    b.restart();
    b.wait_ready().await;
    let got = b
        .wait_value("dossiers_received", "month", "commune", (N + 1) as f64)
        .await;
    assert_eq!(got["value"].as_f64(), Some((N + 1) as f64));
}

/// Issue 11 #6, Mosquitto: a client with a valid device login loops
/// connecting as the backend's client id (`commune-ioc-binh-lu`) with a
/// persistent session, subscribing to `ioc/#` and a shared subscription,
/// while 200 dossiers are published. With the shipped ACL and
/// `use_username_as_clientid`, the thief gets its own session and reads
/// nothing, and the backend loses nothing and is never kicked off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thief_with_the_backends_client_id_gets_nothing_from_the_shipped_mosquitto() {
    const N: usize = 200;
    let m = Shipped::start(&[
        ("ioc", "mk-ioc-2"),
        ("dossier", "mk-dossier-2"),
        ("cam-01", "mk-cam-2"),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let b = kit::Backend::start(
        dir.path(),
        &with_login(m.port, dir.path(), "ioc", "mk-ioc-2"),
    );
    b.wait_ready().await;
    let mut p = Publisher::with_credentials(m.port, "dossier", "mk-dossier-2");
    p.send(DOSSIER, &dossier_received("before", "online", None))
        .await;
    b.wait_value("dossiers_received", "month", "commune", 1.0)
        .await;
    let thief = Thief::start(m.port, Some(("cam-01", "mk-cam-2")));
    // Publish in 5 rounds, each after one more connection of the thief.
    for round in 0..5u64 {
        thief.wait_connects(round + 1).await;
        for i in 0..N / 5 {
            let id = format!("th-{round}-{i}");
            p.send(DOSSIER, &dossier_received(&id, "online", None))
                .await;
        }
    }
    let (connects, stolen) = thief.stop().await;
    assert!(connects >= 5, "the thief connected {connects} times");
    assert_eq!(stolen, 0, "the thief read IOC messages");
    b.wait_value("dossiers_received", "month", "commune", (N + 1) as f64)
        .await;
    assert_eq!(b.metric("ioc_mqtt_session_takeovers_total").await, 0.0);
    assert_eq!(b.metric("ioc_mqtt_connects_total").await, 1.0);
    assert!(m.log().contains("cam-01"), "{}", m.log());
}

/// A client that keeps connecting with the backend's client id and a
/// persistent session, subscribing to everything it can, counting what it
/// receives.
struct Thief {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    connects: std::sync::Arc<std::sync::atomic::AtomicU64>,
    task: tokio::task::JoinHandle<(u64, u64)>,
}

impl Thief {
    fn start(port: u16, login: Option<(&str, &str)>) -> Thief {
        Thief::start_as(port, "commune-ioc-binh-lu", login)
    }

    /// A thief with another client id (one that only tries to read).
    fn start_as(port: u16, client_id: &str, login: Option<(&str, &str)>) -> Thief {
        use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
        use std::sync::atomic::Ordering;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = std::sync::Arc::clone(&stop);
        let connects = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counter = std::sync::Arc::clone(&connects);
        let login = login.map(|(u, p)| (u.to_owned(), p.to_owned()));
        let client_id = client_id.to_owned();
        let task = tokio::spawn(async move {
            let mut stolen = 0u64;
            // Bounded: at most 400 rounds of at most ~200 ms.
            for _ in 0..400 {
                if flag.load(Ordering::SeqCst) {
                    break;
                }
                let mut opts = MqttOptions::new(client_id.clone(), "127.0.0.1", port);
                opts.set_clean_session(false);
                if let Some((u, p)) = &login {
                    opts.set_credentials(u.clone(), p.clone());
                }
                let (client, mut el) = AsyncClient::new(opts, 16);
                let _ = tokio::time::timeout(Duration::from_millis(150), async {
                    loop {
                        match el.poll().await {
                            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                                counter.fetch_add(1, Ordering::SeqCst);
                                for f in ["ioc/#", "$share/thieves/ioc/#", "#"] {
                                    let _ = client.try_subscribe(f, QoS::AtLeastOnce);
                                }
                            }
                            Ok(Event::Incoming(Packet::Publish(p)))
                                if p.topic.starts_with("ioc/") =>
                            {
                                stolen += 1;
                            }
                            Ok(Event::Incoming(Packet::SubAck(_))) => {
                                // Stay a moment to catch deliveries.
                                tokio::time::sleep(Duration::from_millis(20)).await;
                            }
                            Ok(_) => {}
                            Err(_) => break,
                        }
                    }
                })
                .await;
                let _ = client.try_disconnect();
                let _ = tokio::time::timeout(Duration::from_millis(50), el.poll()).await;
            }
            (counter.load(Ordering::SeqCst), stolen)
        });
        Thief {
            stop,
            connects,
            task,
        }
    }

    /// Wait (up to 20 s) until the broker accepted the thief `n` times.
    async fn wait_connects(&self, n: u64) {
        kit::wait_until(
            "the thief's connections",
            Duration::from_secs(20),
            || async {
                (self.connects.load(std::sync::atomic::Ordering::SeqCst) >= n).then_some(())
            },
        )
        .await;
    }

    /// Stop; returns (connections accepted, IOC messages received).
    async fn stop(self) -> (u64, u64) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        self.task.await.expect("thief task")
    }
}

/// Issue 11 #6, the backend's side: on a broker that lets anyone use any
/// client id, a thief taking the backend's session again and again is
/// counted (`ioc_mqtt_session_takeovers_total`) and logged as an error that
/// says what is going on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_taken_over_again_and_again_is_logged_and_counted() {
    let (broker, _dir, b) = stack().await;
    let thief = Thief::start(broker.port, None);
    b.wait_for("3 takeovers counted", Duration::from_secs(30), || async {
        b.metric("ioc_mqtt_session_takeovers_total").await >= 3.0
    })
    .await;
    thief.stop().await;
    assert!(
        b.log_text().contains("session takeover"),
        "{}",
        b.log_text()
    );
}

/// The backend on the embedded broker (`mqtt.embedded = true`), with these
/// device logins (none: anonymous devices).
fn embedded(dir: &std::path::Path, logins: &str) -> (u16, kit::Backend) {
    let port = kit::free_port();
    let logins = if logins.is_empty() {
        String::new()
    } else {
        format!("embedded_logins = {{ {logins} }}\n")
    };
    let config = kit::test_config(port, &dir.join("store")).replacen(
        "[mqtt]\n",
        &format!("[mqtt]\nembedded = true\n{logins}"),
        1,
    );
    (port, kit::Backend::start(dir, &config))
}

/// Issue 11 #6, the embedded broker: commune-ioc's client id is refused to
/// every client (anonymous, or with a device login), a device login may not
/// subscribe to the IOC topics, and 200 dossiers published meanwhile all
/// arrive, the backend never disconnected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_broker_refuses_the_backends_client_id_and_foreign_subscriptions() {
    const N: usize = 200;
    for logins in ["", r#""cam-01" = "mk-cam-3", "dossier" = "mk-dossier-3""#] {
        let dir = tempfile::tempdir().unwrap();
        let (port, b) = embedded(dir.path(), logins);
        b.wait_ready().await;
        let device = (!logins.is_empty()).then_some(("cam-01", "mk-cam-3"));
        let mut p = match device {
            Some(_) => Publisher::with_credentials(port, "dossier", "mk-dossier-3"),
            None => Publisher::new(port),
        };
        p.send(DOSSIER, &dossier_received("before", "online", None))
            .await;
        b.wait_value("dossiers_received", "month", "commune", 1.0)
            .await;
        let thief = Thief::start(port, device);
        let reader = Thief::start_as(port, "cam-01", device);
        for i in 0..N {
            p.send(
                DOSSIER,
                &dossier_received(&format!("e-{i}"), "online", None),
            )
            .await;
        }
        let (connects, stolen) = thief.stop().await;
        let (_, read) = reader.stop().await;
        assert_eq!(
            connects, 0,
            "{logins}: the backend's client id was accepted"
        );
        assert_eq!(stolen + read, 0, "{logins}: a client read IOC messages");
        b.wait_value("dossiers_received", "month", "commune", (N + 1) as f64)
            .await;
        assert_eq!(b.metric("ioc_mqtt_connects_total").await, 1.0, "{logins}");
        let log = b.log_text();
        assert!(log.contains("is reserved for commune-ioc itself"), "{log}");
        assert!(log.contains("may not subscribe to `ioc/#`"), "{log}");
    }
}

/// Issue 11 #3: a client of the embedded broker that subscribes to filters
/// of its own and floods them, and then floods the IOC topics with 1 MiB
/// payloads, leaves the process (broker included) under a stated peak RSS:
/// its own filters and topics are refused, the IOC topics' log in rumqttd is
/// bounded, and every message that got in is an event or a dead letter.
/// (Before: 325 → 659 MB for 3 filters × 80 × 1 MiB, 72 → 310 MB for
/// 150 × 1 MiB on the IOC topics.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_broker_stays_bounded_under_a_flood() {
    /// Peak RSS of the whole process, in MiB.
    const BOUND_MIB: u64 = 200;
    const N: usize = 150;
    let dir = tempfile::tempdir().unwrap();
    let (port, b) = embedded(dir.path(), "");
    b.wait_ready().await;
    // Its own filters: refused (the connection is closed).
    {
        use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
        let opts = MqttOptions::new("flooder", "127.0.0.1", port);
        let (client, mut el) = AsyncClient::new(opts, 16);
        for f in ["flood/a", "flood/b", "flood/c"] {
            client.subscribe(f, QoS::AtLeastOnce).await.unwrap();
        }
        let closed = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match el.poll().await {
                    Ok(Event::Incoming(Packet::SubAck(_))) => return false,
                    Ok(_) => {}
                    Err(_) => return true,
                }
            }
        })
        .await
        .unwrap_or(false);
        assert!(closed, "a subscription to its own filter was accepted");
    }
    // 1 MiB payloads on the IOC topics: allowed, bounded, all journaled.
    let payload = vec![b'x'; 1024 * 1024 - 200];
    let messages = (0..N)
        .map(|i| {
            (
                format!("ioc/binh-lu/camera/cam-0{}/event", 1 + i % 4),
                // Unique, or the journal counts them as duplicates.
                [format!("{i:08}").as_bytes(), &payload].concat(),
            )
        })
        .collect();
    flood(port, messages).await;
    // The flow goes on: a dossier after the flood is counted.
    let mut p = Publisher::new(port);
    p.send(DOSSIER, &dossier_received("after-flood", "online", None))
        .await;
    b.wait_value("dossiers_received", "month", "commune", 1.0)
        .await;
    let peak_mib =
        kit::measure::peak_rss_kib(b.pid().expect("backend runs")).expect("VmHWM") / 1024;
    let taken = b.metric("ioc_dead_letters_total").await;
    eprintln!(
        "embedded broker: peak RSS {peak_mib} MiB after {N} x 1 MiB; {taken} reached the journal"
    );
    assert_eq!(
        taken, N as f64,
        "every message is a dead letter (oversized)"
    );
    assert!(
        peak_mib < BOUND_MIB,
        "peak RSS {peak_mib} MiB, bound {BOUND_MIB} MiB"
    );
}
