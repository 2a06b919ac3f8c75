//! Durable HTTP delivery (src/delivery) against a real local receiver and
//! the real binary: a delivery enqueued while the receiver is down, the
//! backend killed (SIGKILL) with it still pending, then a receiver that
//! fails twice and then accepts: exactly one accepted request, the receipt
//! stored, every attempt recorded, nothing lost.

mod kit;

use std::path::Path;
use std::time::Duration;

use commune_ioc::delivery::{self, NewDelivery, State};
use kit::receiver::Receiver;
use kit::{free_port, test_config, wait_until, Backend, Mosquitto};

const WAIT: Duration = Duration::from_secs(60);

fn delivery_toml(port: u16) -> String {
    format!(
        r#"
[delivery]
backoff_initial_ms = 100
backoff_max_ms = 400
poll_ms = 50

[delivery.targets.province]
url = "http://127.0.0.1:{port}/api/bao-cao"
bearer_token = "tinh-lai-chau-token"
"#
    )
}

fn open(store: &Path) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(store.join("journal.db")).expect("open the store");
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    conn
}

fn enqueue(store: &Path, key: &str, body: &[u8]) {
    let conn = open(store);
    let got = delivery::enqueue(
        &conn,
        &NewDelivery {
            key,
            target: "province",
            content_type: "application/json",
            body,
        },
        chrono::Utc::now(),
    )
    .expect("enqueue");
    assert!(matches!(got, delivery::Enqueued::New(_)), "{key}: {got:?}");
}

async fn wait_state(store: &Path, key: &str, want: State) -> delivery::Delivery {
    let store = store.to_path_buf();
    wait_until(&format!("{key} to be {want:?}"), WAIT, || {
        let d = delivery::get(&open(&store), key).expect("read delivery");
        async move { d.filter(|d| d.state == want) }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_survives_a_dead_receiver_and_a_kill_and_is_accepted_once() {
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let port = free_port();
    let config = format!(
        "{}\n{}",
        test_config(broker.port, &store),
        delivery_toml(port)
    );
    let mut b = Backend::start(dir.path(), &config);
    b.wait_ready().await;

    // The receiver is down: attempts fail at connect, and are recorded.
    let body = br#"{"period":"2026-06","digest":"ab12"}"#;
    enqueue(&store, "report:2026-06:ab12", body);
    let store2 = store.clone();
    wait_until("two failed attempts", WAIT, || {
        let a = delivery::attempts(&open(&store2), "report:2026-06:ab12").unwrap();
        async move { (a.len() >= 2).then_some(()) }
    })
    .await;
    let d = delivery::get(&open(&store), "report:2026-06:ab12")
        .unwrap()
        .unwrap();
    assert_eq!(d.state, State::Pending);
    assert!(d.receipt.is_none());
    assert!(d.last_error.is_some(), "{d:?}");

    // Crash with the delivery pending.
    b.kill();

    // The receiver comes up, fails twice, then accepts with a receipt.
    let rx = Receiver::start_on(port).await;
    rx.answer(503, r#"{"error":"bảo trì"}"#);
    rx.answer(500, r#"{"error":"lỗi máy chủ"}"#);
    rx.answer_always(201, r#"{"receipt":"LCH-2026-000123","status":"đã nhận"}"#);
    b.restart();
    b.wait_ready().await;

    let d = wait_state(&store, "report:2026-06:ab12", State::Delivered).await;
    let receipt = d.receipt.expect("receipt stored");
    assert_eq!(receipt.status, 201);
    assert!(receipt.body.contains("LCH-2026-000123"), "{receipt:?}");

    // A sentinel enqueued after it, and the same key again: once the
    // sentinel is delivered, the first key was not sent again.
    let conn = open(&store);
    let again = delivery::enqueue(
        &conn,
        &NewDelivery {
            key: "report:2026-06:ab12",
            target: "province",
            content_type: "application/json",
            body: b"{}",
        },
        chrono::Utc::now(),
    )
    .unwrap();
    assert_eq!(again, delivery::Enqueued::Existing(d.id));
    enqueue(&store, "sentinel", b"{}");
    wait_state(&store, "sentinel", State::Delivered).await;

    let got = rx.received();
    let ours: Vec<_> = got
        .iter()
        .filter(|r| r.header("idempotency-key") == "report:2026-06:ab12")
        .collect();
    assert_eq!(
        ours.iter().map(|r| r.answered).collect::<Vec<_>>(),
        [503, 500, 201],
        "three requests reached the receiver, one accepted"
    );
    for r in &ours {
        assert_eq!(r.method, "POST");
        assert_eq!(r.uri, "/api/bao-cao");
        assert_eq!(r.header("authorization"), "Bearer tinh-lai-chau-token");
        assert_eq!(r.header("content-type"), "application/json");
        assert_eq!(&r.body[..], body, "the body is sent unchanged");
    }

    // Every attempt is on record: refused connections before the kill,
    // then the three answers.
    let attempts = delivery::attempts(&open(&store), "report:2026-06:ab12").unwrap();
    let statuses: Vec<Option<u16>> = attempts.iter().map(|a| a.status).collect();
    let n = attempts.len();
    assert!(n >= 5, "{attempts:?}");
    assert!(
        statuses[..n - 3].iter().all(Option::is_none),
        "{statuses:?}"
    );
    assert_eq!(statuses[n - 3..], [Some(503), Some(500), Some(201)]);
    assert!(attempts
        .iter()
        .enumerate()
        .all(|(i, a)| a.attempt as usize == i + 1));
    assert_eq!(d.attempts as usize, n);

    let m = b.scrape().await;
    let by = m.by_label("ioc_delivery_attempts_total");
    let delivered: f64 = by
        .iter()
        .filter(|(l, _)| l.contains("outcome=\"delivered\""))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(delivered, 2.0, "the delivery and the sentinel: {by:?}");
    assert_eq!(m.sum("ioc_delivery_pending"), 0.0);
    b.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_the_receiver_refuses_for_good_is_not_retried() {
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let rx = Receiver::start().await;
    let port: u16 = rx.url.rsplit(':').next().unwrap().parse().unwrap();
    rx.answer_always(422, r#"{"error":"sai định dạng"}"#);
    let config = format!(
        "{}\n{}",
        test_config(broker.port, &store),
        delivery_toml(port)
    );
    let mut b = Backend::start(dir.path(), &config);
    b.wait_ready().await;
    enqueue(&store, "bad", b"{");
    let d = wait_state(&store, "bad", State::Rejected).await;
    assert_eq!(d.attempts, 1);
    let r = d.receipt.expect("the refusal is kept");
    assert_eq!(r.status, 422);
    assert!(r.body.contains("sai định dạng"));
    // A later delivery goes through the same worker; the refused one was
    // not sent again meanwhile.
    rx.answer_always(200, "{}");
    enqueue(&store, "good", b"{}");
    wait_state(&store, "good", State::Delivered).await;
    let bad = rx
        .received()
        .iter()
        .filter(|r| r.header("idempotency-key") == "bad")
        .count();
    assert_eq!(bad, 1);
    b.stop();
}
