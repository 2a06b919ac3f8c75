//! The uplink to the province against real processes on loopback: a
//! real Mosquitto, the real `commune-ioc serve`, a real `nats-server -js`
//! (each stopped by its own PID). What arrives in the stream is read back
//! message by message, as the province will.

mod kit;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use kit::nats::{stream_count, stream_entries, Stored};
use kit::{dossier_received, Backend, Nats, Pipelined, DOSSIER};
use serde_json::Value;

const STREAM: &str = "IOC_JOURNAL";

fn uplink_toml(url: &str) -> String {
    format!("[uplink]\nurl = \"{url}\"\nbackoff_initial_ms = 50\nbackoff_max_ms = 500\n")
}

/// Wait until the stream holds `n` messages (and not more).
async fn wait_stream(js: &jetstream::Context, n: u64, timeout: Duration, why: impl Fn() -> String) {
    let deadline = Instant::now() + timeout;
    loop {
        let got = stream_count(js, STREAM).await;
        assert!(
            got <= n,
            "the stream holds {got} messages, more than the {n} journaled; {}",
            why()
        );
        if got == n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the stream holds {got} of {n} messages after {timeout:?}; {}",
            why()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every entry once, numbered 1..=n in stream order, with its id, subject
/// and body by the contract; the dossier ids carried by the events.
fn check_contract(entries: &[Stored], n: usize) -> BTreeSet<String> {
    assert_eq!(entries.len(), n);
    let mut dossiers = BTreeSet::new();
    for (i, e) in entries.iter().enumerate() {
        let seq = i as i64 + 1;
        assert_eq!(e.seq, seq, "stream message {} out of order", e.stream_seq);
        assert_eq!(e.msg_id, format!("binh-lu:{seq}"), "{e:?}");
        assert_eq!(e.subject, format!("ioc.binh-lu.journal.{}", e.kind));
        assert_eq!(e.body["seq"], seq);
        assert_eq!(e.body["commune"], "binh-lu");
        assert_eq!(e.body["kind"], e.kind.as_str());
        match e.kind.as_str() {
            "event" => {
                let id = e.body["event"]["attrs"]["dossier_id"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{}", e.body))
                    .to_string();
                assert!(dossiers.insert(id.clone()), "dossier {id} forwarded twice");
            }
            "dead_letter" => assert_eq!(e.body["dead_letter"]["reason"], "invalid_json"),
            other => panic!("unexpected kind {other}"),
        }
    }
    dossiers
}

/// Wait (generously: a debug build on a shared box) until `n` dossiers
/// are counted.
async fn wait_counted(b: &Backend, n: usize) {
    b.wait_for(
        &format!("{n} dossiers counted"),
        Duration::from_secs(120),
        || async {
            b.indicator("dossiers_received", "month", "commune").await["value"].as_f64()
                == Some(n as f64)
        },
    )
    .await;
}

async fn readyz(b: &Backend) -> Value {
    reqwest::get(format!("{}/readyz", b.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Events and dead letters arrive in the stream once each, in journal
/// order, with `Nats-Msg-Id = commune:seq`; the stream is created by the
/// uplink on its first connect; `/readyz` and the metrics show no lag.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_entry_arrives_once_and_in_order() {
    let nats = Nats::start();
    let js = jetstream::new(nats.client().await);
    assert_eq!(stream_count(&js, STREAM).await, 0);
    let (broker, _dir, b) = kit::stack_with(&uplink_toml(&nats.url()), &[]).await;
    let publisher = Pipelined::connect("uplink-pub", broker.port, false)
        .await
        .unwrap();
    const N: usize = 300;
    for i in 0..N {
        let payload = if i % 10 == 9 {
            format!("{{not json {i}").into_bytes()
        } else {
            dossier_received(&format!("u-{i}"), "online", None)
        };
        publisher.publish(DOSSIER, payload).await.unwrap();
    }
    wait_stream(&js, N as u64, Duration::from_secs(60), || b.log_text()).await;
    let entries = stream_entries(&js, STREAM).await.unwrap();
    let dossiers = check_contract(&entries, N);
    let want: BTreeSet<String> = (0..N)
        .filter(|i| i % 10 != 9)
        .map(|i| format!("u-{i}"))
        .collect();
    assert_eq!(dossiers, want);
    assert_eq!(
        entries.iter().filter(|e| e.kind == "dead_letter").count(),
        N / 10
    );
    // The stream the uplink created takes every commune.
    let mut s = js.get_stream(STREAM).await.unwrap();
    let info = s.info().await.unwrap();
    assert_eq!(info.config.subjects, vec!["ioc.*.journal.>".to_string()]);
    // Caught up: shown at /readyz and in the metrics.
    b.wait_for(
        "uplink caught up at /readyz",
        Duration::from_secs(20),
        || async {
            let r = readyz(&b).await;
            r["uplink"]["lag_entries"] == 0
                && r["uplink"]["cursor"] == N
                && r["uplink"]["up"] == true
        },
    )
    .await;
    assert_eq!(b.metric("ioc_uplink_forwarded_total").await, N as f64);
    assert_eq!(b.metric("ioc_uplink_duplicates_total").await, 0.0);
    publisher.stop().await;
    drop(broker);
}

/// The NATS server stops for a while; the commune keeps ingesting (ready,
/// every message counted), the lag grows and is shown (`/readyz`, the
/// metrics, the wall screen's footer); when the server comes back the
/// uplink catches up: every entry once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_loses_nothing_and_catches_up() {
    let mut nats = Nats::start();
    let js = jetstream::new(nats.client().await);
    let (broker, _dir, b) = kit::stack_with(&uplink_toml(&nats.url()), &[]).await;
    let publisher = Pipelined::connect("uplink-outage", broker.port, false)
        .await
        .unwrap();
    for i in 0..100 {
        publisher
            .publish(DOSSIER, dossier_received(&format!("o-{i}"), "online", None))
            .await
            .unwrap();
    }
    wait_stream(&js, 100, Duration::from_secs(60), || b.log_text()).await;
    drop(js);

    nats.stop();
    const MORE: usize = 500;
    for i in 100..100 + MORE {
        publisher
            .publish(DOSSIER, dossier_received(&format!("o-{i}"), "online", None))
            .await
            .unwrap();
    }
    // The commune works alone: every message committed, still ready.
    wait_counted(&b, 100 + MORE).await;
    let r = readyz(&b).await;
    assert_eq!(r["ready"], true, "{r}");
    // The lag is shown while the province is away.
    b.wait_for("uplink lag at /readyz", Duration::from_secs(30), || async {
        let r = readyz(&b).await;
        r["uplink"]["up"] == false && r["uplink"]["lag_entries"] == MORE
    })
    .await;
    assert_eq!(b.metric("ioc_uplink_lag_entries").await, MORE as f64);
    assert!(b.metric("ioc_uplink_errors_total").await >= 1.0);
    // The wall screen says so, in Vietnamese with Vietnamese numbers.
    let browser = kit::browser::Browser::launch().await;
    let screen = format!("{}/?token={}", b.url, b.kiosk_token("uplink").await);
    browser.open(&screen).await;
    browser
        .wait_js(
            "(document.getElementById('uplink-tile').textContent || '').startsWith('Tỉnh: mất kết nối, chậm ') \
             && document.getElementById('uplink-tile').textContent.includes('(500 bản ghi chờ gửi)') \
             && !document.getElementById('uplink-tile').hidden",
            "the uplink tile to show the outage",
        )
        .await;

    nats.restart();
    let js = jetstream::new(nats.client().await);
    wait_stream(&js, (100 + MORE) as u64, Duration::from_secs(90), || {
        format!(
            "backend log:\n{}\nnats log:\n{}",
            b.log_text(),
            nats.log_text()
        )
    })
    .await;
    let entries = stream_entries(&js, STREAM).await.unwrap();
    let dossiers = check_contract(&entries, 100 + MORE);
    assert_eq!(dossiers.len(), 100 + MORE);
    b.wait_for("uplink caught up", Duration::from_secs(20), || async {
        readyz(&b).await["uplink"]["lag_entries"] == 0
    })
    .await;
    browser.open(&screen).await;
    browser
        .wait_js(
            "document.getElementById('uplink-tile').textContent === 'Tỉnh: đã đồng bộ'",
            "the uplink tile to show the catch-up",
        )
        .await;
    browser.close().await;
    publisher.stop().await;
}

/// `kill -9` of commune-ioc while it forwards: after the restart the
/// stream holds every entry exactly once. The cursor is also set back
/// (as a kill between an acknowledgement and the cursor's write leaves
/// it), so entries the stream already has are certainly sent again: the
/// stream drops them by `Nats-Msg-Id` and counts them as duplicates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_forward_sends_nothing_twice_and_loses_nothing() {
    let nats = Nats::start();
    let js = jetstream::new(nats.client().await);
    let (broker, dir, mut b) = kit::stack_with(
        &format!("{}batch_max = 20\n", uplink_toml(&nats.url())),
        &[],
    )
    .await;
    let publisher = Pipelined::connect("uplink-kill", broker.port, false)
        .await
        .unwrap();
    const N: usize = 2000;
    for i in 0..N {
        publisher
            .publish(DOSSIER, dossier_received(&format!("k-{i}"), "online", None))
            .await
            .unwrap();
    }
    // Kill while forwarding: some entries in the stream, not all.
    let deadline = Instant::now() + Duration::from_secs(60);
    let at_kill = loop {
        let got = stream_count(&js, STREAM).await;
        if got > 0 && (got as usize) < N {
            b.kill();
            break got;
        }
        assert!(
            (got as usize) < N,
            "forwarding finished before a kill could land"
        );
        assert!(
            Instant::now() < deadline,
            "nothing forwarded; log:\n{}",
            b.log_text()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    // As if the kill had come between an acknowledgement and the cursor's
    // write: set the cursor back by up to 50 entries the stream holds.
    let rewound = {
        let conn = rusqlite::Connection::open(dir.path().join("store/journal.db")).unwrap();
        let cursor: i64 = conn
            .query_row(
                "SELECT value FROM meta WHERE key = 'uplink_cursor'",
                [],
                |r| r.get::<_, String>(0),
            )
            .map(|v| v.parse().unwrap())
            .unwrap_or(0);
        let back = (cursor - 50).max(0);
        conn.execute(
            "INSERT INTO meta (key, value) VALUES ('uplink_cursor', ?1)
             ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            [back.to_string()],
        )
        .unwrap();
        cursor - back
    };
    b.restart();
    b.wait_ready().await;
    wait_counted(&b, N).await;
    wait_stream(&js, N as u64, Duration::from_secs(120), || b.log_text()).await;
    let entries = stream_entries(&js, STREAM).await.unwrap();
    let dossiers = check_contract(&entries, N);
    assert_eq!(dossiers.len(), N, "killed at {at_kill} in the stream");
    b.wait_for("uplink caught up", Duration::from_secs(20), || async {
        readyz(&b).await["uplink"]["lag_entries"] == 0
    })
    .await;
    // The re-sent entries were acknowledged as duplicates, not stored.
    let dups = b.metric("ioc_uplink_duplicates_total").await;
    assert!(
        dups >= rewound as f64,
        "{dups} duplicates for {rewound} re-sent entries (killed at {at_kill})"
    );
    publisher.stop().await;
}

fn check_config(toml: &str, env: &[(&str, &str)]) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("c.toml");
    std::fs::write(&f, toml).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_commune-ioc"))
        .args(["check-config", f.to_str().unwrap()])
        .envs(env.iter().copied())
        .output()
        .expect("run check-config");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Bad `[uplink]` settings are refused before anything starts, each with
/// its key and a Vietnamese reason; an override names its variable.
#[test]
fn bad_uplink_config_is_refused_with_a_clear_error() {
    let base = "[commune]\nid = \"binh-lu\"\nname = \"X\"\n";
    let (code, err) = check_config(
        &format!(
            "{base}[uplink]\nurl = \"http://127.0.0.1:4222\"\nstream = \"IOC.JOURNAL\"\n\
             token = \"t\"\nuser = \"u\"\npassword = \"p\"\ncreds_file = \"/nonexistent/x.creds\"\n\
             cert_file = \"/nonexistent/c.pem\"\n"
        ),
        &[],
    );
    assert_eq!(code, Some(2), "{err}");
    for needle in [
        "`uplink.url`",
        "chỉ hỗ trợ nats:// hoặc tls://",
        "`uplink.stream`",
        "chỉ chọn một cách xác thực",
        "`uplink.creds_file`",
        "không có tệp /nonexistent/x.creds",
        "uplink.key_file",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
    }
    // Through the environment, like every key.
    let (code, err) = check_config(base, &[("IOC__UPLINK__URL", "nats://")]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("IOC__UPLINK__URL"), "{err}");
    assert!(err.contains("thiếu tên máy"), "{err}");
    // A good one passes.
    let (code, err) = check_config(
        base,
        &[(
            "IOC__UPLINK__URL",
            "nats://10.0.0.1:4222, nats://10.0.0.2:4222",
        )],
    );
    assert_eq!(code, Some(0), "{err}");
}

/// An official warning stored by the commune is a journal entry too: it
/// reaches the stream as a `warning` entry with the warning as it stood.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warning_change_is_forwarded_as_a_journal_entry() {
    let nats = Nats::start();
    let js = jetstream::new(nats.client().await);
    let (broker, _dir, b) = kit::stack_with(&uplink_toml(&nats.url()), &[]).await;
    let mut p = kit::Publisher::new(broker.port);
    let cap = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/cap/vn-flash-flood-alert.xml"
    ))
    .unwrap();
    p.send("ioc/binh-lu/warning/cap", &cap).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let entries = loop {
        let n = stream_count(&js, STREAM).await;
        if n > 0 {
            let entries = stream_entries(&js, STREAM).await.unwrap();
            if entries.iter().any(|e| e.kind == "warning") {
                break entries;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no warning entry; log:\n{}",
            b.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for (i, e) in entries.iter().enumerate() {
        assert_eq!(e.seq, i as i64 + 1);
        assert_eq!(e.msg_id, format!("binh-lu:{}", e.seq));
    }
    let w = entries.iter().find(|e| e.kind == "warning").unwrap();
    assert_eq!(w.subject, "ioc.binh-lu.journal.warning");
    assert!(
        w.body["warning"]["id"]
            .as_str()
            .unwrap_or_default()
            .contains("LQ-0001"),
        "{}",
        w.body
    );
}

/// A server that wants a user and password: the uplink logs in with
/// `[uplink] user` and the password from `IOC__UPLINK__PASSWORD`, and the
/// password never appears in the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_uplink_logs_in_with_user_and_password() {
    const PASS: &str = "uplink-secret-7391";
    let nats = Nats::start_with(&["--user", "ioc-binh-lu", "--pass", PASS]);
    let client =
        async_nats::ConnectOptions::with_user_and_password("ioc-binh-lu".into(), PASS.into())
            .connect(nats.url())
            .await
            .unwrap();
    let js = jetstream::new(client);
    let (broker, _dir, b) = kit::stack_with(
        &format!("{}user = \"ioc-binh-lu\"\n", uplink_toml(&nats.url())),
        &[("IOC__UPLINK__PASSWORD", PASS)],
    )
    .await;
    let mut p = kit::Publisher::new(broker.port);
    for i in 0..5 {
        p.send(
            DOSSIER,
            &dossier_received(&format!("p-{i}"), "online", None),
        )
        .await;
    }
    wait_stream(&js, 5, Duration::from_secs(60), || b.log_text()).await;
    check_contract(&stream_entries(&js, STREAM).await.unwrap(), 5);
    assert!(!b.log_text().contains(PASS), "the password is in the log");
}
