//! The MQTT side of the adversarial probe (issue 11), kept as a suite: each
//! test repeats an attack or a clumsy input against the real binary and a
//! real broker (Mosquitto, or the embedded one), on loopback only, bounded
//! in count and time.

mod kit;

use std::time::Duration;

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
    const BOUND_MIB: u64 = 160;
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
