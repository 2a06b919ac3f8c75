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
