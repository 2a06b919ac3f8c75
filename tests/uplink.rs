//! The uplink to the province against real processes on loopback: a
//! real Mosquitto, the real `commune-ioc serve`, a real `nats-server -js`
//! (each stopped by its own PID). What arrives in the stream is read back
//! message by message, as the province will.

mod kit;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use kit::nats::{stream_count, stream_entries, Stored};
use kit::nats_auth::{nkey_users_block, operator, tls_block, user_key, ConfNats};
use kit::pki::Pki;
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
    assert_eq!(info.config.max_age, Duration::from_secs(14 * 86_400));
    // Caught up: shown at /readyz and in the metrics.
    b.wait_for(
        "uplink caught up at /readyz",
        Duration::from_secs(20),
        || async {
            let r = b.readyz().await;
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
    b.wait_dossiers(100 + MORE).await;
    let r = b.readyz().await;
    assert_eq!(r["ready"], true, "{r}");
    // The lag is shown while the province is away.
    b.wait_for("uplink lag at /readyz", Duration::from_secs(30), || async {
        let r = b.readyz().await;
        r["uplink"]["up"] == false && r["uplink"]["lag_entries"] == MORE
    })
    .await;
    assert_eq!(b.metric("ioc_uplink_lag_entries").await, MORE as f64);
    assert!(b.metric("ioc_uplink_errors_total").await >= 1.0);
    // The client's own view of the connection is logged too, once per
    // kind (not once per reconnect attempt).
    let log = b.log_text();
    let seen = |what: &str| {
        log.lines()
            .filter(|l| l.contains("uplink: NATS connection") && l.contains(what))
            .count()
    };
    assert_eq!(seen("event=disconnected"), 1, "{log}");
    assert!(seen("event=client error") <= 2, "{log}");
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
        b.readyz().await["uplink"]["lag_entries"] == 0
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
    b.wait_dossiers(N).await;
    wait_stream(&js, N as u64, Duration::from_secs(120), || b.log_text()).await;
    let entries = stream_entries(&js, STREAM).await.unwrap();
    let dossiers = check_contract(&entries, N);
    assert_eq!(dossiers.len(), N, "killed at {at_kill} in the stream");
    b.wait_for("uplink caught up", Duration::from_secs(20), || async {
        b.readyz().await["uplink"]["lag_entries"] == 0
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

/// A warning that runs out reaches the province too: its expiry by the
/// sweep is a second `warning` entry, the same warning now `expired`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warning_that_expires_is_forwarded_as_a_warning_entry() {
    let nats = Nats::start();
    let js = jetstream::new(nats.client().await);
    let (broker, _dir, b) = kit::stack_with(
        &format!(
            "{}[warnings]\nsweep_secs = 1\n[[village]]\nid = \"co-muong\"\nname = \"Bản Cò Mương\"\n",
            uplink_toml(&nats.url())
        ),
        &[],
    )
    .await;
    let mut p = kit::Publisher::new(broker.port);
    // A frost bulletin for Bản Cò Mương (by its name in areaDesc) that
    // runs out in 3 s.
    let cap = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/cap/vn-frost.xml"
    ))
    .unwrap();
    let expires = (chrono::Utc::now() + chrono::Duration::seconds(3))
        .with_timezone(&chrono::FixedOffset::east_opt(7 * 3600).unwrap())
        .format("%Y-%m-%dT%H:%M:%S%:z")
        .to_string();
    let cap = cap.replacen(
        "<senderName>",
        &format!("<expires>{expires}</expires><senderName>"),
        1,
    );
    p.send("ioc/binh-lu/warning/cap", cap.as_bytes()).await;
    let entries = wait_entry(
        &js,
        "expired warning",
        |e| e.kind == "warning" && e.body["warning"]["state"] == "expired",
        || b.log_text(),
    )
    .await;
    check_gap_free(&entries);
    let states: Vec<&str> = entries
        .iter()
        .filter(|e| e.kind == "warning")
        .map(|e| e.body["warning"]["state"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(states, vec!["active", "expired"], "{entries:?}");
    let ids: Vec<&Value> = entries
        .iter()
        .filter(|e| e.kind == "warning")
        .map(|e| &e.body["warning"]["id"])
        .collect();
    assert_eq!(ids[0], ids[1]);
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

/// Seqs 1..=n in stream order across every kind, each with its
/// `Nats-Msg-Id` and subject.
fn check_gap_free(entries: &[Stored]) {
    for (i, e) in entries.iter().enumerate() {
        let seq = i as i64 + 1;
        assert_eq!(
            e.seq, seq,
            "stream message {} out of order: {e:?}",
            e.stream_seq
        );
        assert_eq!(e.msg_id, format!("binh-lu:{seq}"), "{e:?}");
        assert_eq!(e.subject, format!("ioc.binh-lu.journal.{}", e.kind));
        assert_eq!(e.body["seq"], seq);
        assert_eq!(e.body["kind"], e.kind.as_str());
    }
}

/// Wait until the stream holds an entry for which `done` holds; every
/// entry then.
async fn wait_entry(
    js: &jetstream::Context,
    what: &str,
    done: impl Fn(&Stored) -> bool,
    log: impl Fn() -> String,
) -> Vec<Stored> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if stream_count(js, STREAM).await > 0 {
            let entries = stream_entries(js, STREAM).await.unwrap();
            if entries.iter().any(&done) {
                return entries;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no {what} in the stream after 60 s; stream: {:?}\nlog:\n{}",
            stream_entries(js, STREAM)
                .await
                .map(|v| v.into_iter().map(|e| e.body).collect::<Vec<_>>())
                .unwrap_or_default(),
            log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Wait until the log has a "cannot connect to the NATS servers" line
/// holding every one of `words` (the reason and the hint).
async fn wait_refused(b: &Backend, what: &str, words: &[&str]) {
    b.wait_for(what, Duration::from_secs(30), || async {
        b.log_text().lines().any(|l| {
            l.contains("cannot connect to the NATS servers") && words.iter().all(|w| l.contains(w))
        })
    })
    .await;
}

/// Wait until `/readyz` shows the uplink down with `n` entries held back.
async fn wait_held_back(b: &Backend, n: u64) {
    b.wait_for("the lag at /readyz", Duration::from_secs(30), || async {
        let r = b.readyz().await;
        r["uplink"]["up"] == false && r["uplink"]["lag_entries"] == n
    })
    .await;
}

/// The `change` of each entry of `kind`, in stream order.
fn changes(entries: &[Stored], kind: &str) -> Vec<String> {
    entries
        .iter()
        .filter(|e| e.kind == kind)
        .map(|e| e.body[kind]["change"].as_str().unwrap_or("?").to_owned())
        .collect()
}

/// A fire alert raised by a camera event and acknowledged by an operator
/// reaches the province as two `alert` entries (raised, then acked), after
/// the event that raised it, each with the alert as it then stood; the
/// seqs are gap-free across events and alerts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_raised_and_acked_arrives_as_alert_entries_in_order() {
    let nats = Nats::start();
    let js = jetstream::new(nats.client().await);
    let alerts = "[alerts]\neval_interval = \"100ms\"\n\
                  [[alerts.rule]]\nid = \"chay\"\nname = \"Phát hiện cháy\"\nkind = \"camera\"\n\
                  events = [\"fire\"]\nresolve_after = \"1h\"\n";
    let (broker, _dir, b) =
        kit::stack_with(&format!("{}{alerts}", uplink_toml(&nats.url())), &[]).await;
    let mut p = kit::Publisher::new(broker.port);
    let fire = serde_json::json!({"kind": "fire", "ts": chrono::Utc::now().to_rfc3339(), "seq": 1, "score": 0.93});
    p.send(
        "ioc/binh-lu/camera/cam-01/event",
        fire.to_string().as_bytes(),
    )
    .await;
    let raised = wait_entry(&js, "raised alert", |e| e.kind == "alert", || b.log_text()).await;
    let alert = &raised.iter().find(|e| e.kind == "alert").unwrap().body["alert"];
    let id = alert["id"].as_i64().unwrap_or_else(|| panic!("{alert}"));
    let (status, acked) = b
        .post(&format!("/api/alerts/{id}/ack"), serde_json::json!({}))
        .await;
    assert_eq!(status, 200, "{acked}");
    let entries = wait_entry(
        &js,
        "acked alert",
        |e| e.kind == "alert" && e.body["alert"]["change"] == "acked",
        || b.log_text(),
    )
    .await;
    check_gap_free(&entries);
    assert_eq!(changes(&entries, "alert"), vec!["raised", "acked"]);
    let first_alert = entries.iter().position(|e| e.kind == "alert").unwrap();
    assert!(
        entries[..first_alert].iter().any(|e| e.kind == "event"
            && e.body["event"]["device"] == "cam-01"
            && e.body["event"]["kind"] == "fire"),
        "the fire event comes before its alert: {entries:?}"
    );
    let raised = &entries[first_alert].body["alert"];
    assert_eq!(raised["fingerprint"], alert["fingerprint"]);
    assert_eq!(raised["state"], "firing");
    assert_eq!(raised["status"], "firing_unack");
    assert_eq!(raised["rule"], "chay");
    assert_eq!(raised["villages"], serde_json::json!(["tan-binh"]));
    let acked = &entries.last().unwrap().body["alert"];
    assert_eq!(acked["id"], id);
    assert_eq!(acked["status"], "firing_ack");
    assert_eq!(acked["acked_by"], "admin");
    assert!(acked["acked_at_ms"].as_i64().unwrap() >= raised["first_seen_ms"].as_i64().unwrap());
    assert_eq!(entries.last().unwrap().subject, "ioc.binh-lu.journal.alert");
}

/// A loudspeaker broadcast drafted and approved by an operator reaches the
/// province as `broadcast` entries (drafted, then approved, then its
/// command sent), each with the plan, its clusters and commands as they
/// then stood.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broadcast_approved_arrives_as_broadcast_entries() {
    let nats = Nats::start();
    let js = jetstream::new(nats.client().await);
    let (_broker, _dir, b) = kit::stack_with(&uplink_toml(&nats.url()), &[]).await;
    let (status, v) = b.post("/api/broadcasts",
        serde_json::json!({
            "villages": ["tan-binh"],
            "priority": "priority",
            "text_vi": "Thông báo của Ủy ban nhân dân xã Bình Lư: lũ quét có thể xảy ra, bà con không qua suối.",
            "repeats": 1,
            "expires_in_mins": 60,
        }),
    )
    .await;
    assert_eq!(status, 201, "{v}");
    let id = v["id"].as_i64().unwrap();
    let (status, v) = b
        .post(
            &format!("/api/broadcasts/{id}/approve"),
            serde_json::json!({}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let entries = wait_entry(
        &js,
        "sent broadcast command",
        |e| e.kind == "broadcast" && e.body["broadcast"]["change"] == "command_sent",
        || b.log_text(),
    )
    .await;
    check_gap_free(&entries);
    assert_eq!(
        changes(&entries, "broadcast"),
        vec!["drafted", "approved", "command_sent"]
    );
    let of = |change: &str| {
        entries
            .iter()
            .find(|e| e.kind == "broadcast" && e.body["broadcast"]["change"] == change)
            .map(|e| e.body["broadcast"].clone())
            .unwrap()
    };
    let drafted = of("drafted");
    assert_eq!(
        (drafted["id"].as_i64(), drafted["state"].as_str()),
        (Some(id), Some("draft"))
    );
    assert_eq!(drafted["villages"], serde_json::json!(["tan-binh"]));
    assert_eq!(drafted["priority"], "priority");
    let approved = of("approved");
    assert_eq!(approved["state"], "approved");
    assert_eq!(approved["approved_by"], "admin");
    let cluster = &approved["clusters"][0];
    assert_eq!(cluster["speaker"], "spk-01");
    assert_eq!(cluster["commands"][0]["state"], "pending");
    let sent = of("command_sent");
    assert_eq!(sent["clusters"][0]["commands"][0]["state"], "sent");
    assert_eq!(sent["clusters"][0]["commands"][0]["attempts"], 1);
}

/// Publish `n` dossiers `{tag}-{i}` one at a time (acknowledged).
async fn publish_dossiers(broker_port: u16, tag: &str, n: usize) {
    let mut p = kit::Publisher::new(broker_port);
    for i in 0..n {
        p.send(
            DOSSIER,
            &dossier_received(&format!("{tag}-{i}"), "online", None),
        )
        .await;
    }
}

/// A client of a TLS server, trusting the test CA (and presenting the
/// client certificate when given).
async fn tls_client(url: &str, pki: &Pki, client_cert: bool) -> jetstream::Context {
    commune_ioc::tls::install_crypto_provider();
    let mut o = async_nats::ConnectOptions::new()
        .require_tls(true)
        .add_root_certificates(pki.ca.clone());
    if client_cert {
        o = o.add_client_certificate(pki.client_cert.clone(), pki.client_key.clone());
    }
    jetstream::new(
        o.connect(url)
            .await
            .unwrap_or_else(|e| panic!("test client to {url}: {e}")),
    )
}

fn toml_path(p: &std::path::Path) -> String {
    format!("{:?}", p.to_string_lossy())
}

/// A server that speaks only TLS, with a certificate from a private CA:
/// the uplink (a `tls://` URL, `ca_file` = that CA) checks it and forwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_uplink_forwards_over_tls_checked_against_ca_file() {
    let pki_dir = tempfile::tempdir().unwrap();
    let pki = Pki::create(pki_dir.path(), "ioc-binh-lu");
    let nats = ConfNats::start(&tls_block(&pki, false));
    let url = nats.url("tls");
    let (broker, _dir, b) = kit::stack_with(
        &format!("{}ca_file = {}\n", uplink_toml(&url), toml_path(&pki.ca)),
        &[],
    )
    .await;
    publish_dossiers(broker.port, "t", 5).await;
    let js = tls_client(&url, &pki, false).await;
    wait_stream(&js, 5, Duration::from_secs(60), || {
        format!("{}\nnats:\n{}", b.log_text(), nats.log_text())
    })
    .await;
    check_contract(&stream_entries(&js, STREAM).await.unwrap(), 5);
}

/// Mutual TLS (`verify: true`): without a client certificate the uplink
/// does not get in and says why in its log, while the commune keeps
/// journaling (the lag shown at `/readyz`); with `cert_file`/`key_file`
/// added to its config and the process restarted, every entry journaled
/// meanwhile arrives, once and in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_without_a_client_certificate_is_refused_and_nothing_is_lost() {
    let pki_dir = tempfile::tempdir().unwrap();
    let pki = Pki::create(pki_dir.path(), "ioc-binh-lu");
    let nats = ConfNats::start(&tls_block(&pki, true));
    let url = nats.url("tls");
    let (broker, dir, mut b) = kit::stack_with(
        &format!("{}ca_file = {}\n", uplink_toml(&url), toml_path(&pki.ca)),
        &[],
    )
    .await;
    publish_dossiers(broker.port, "m", 5).await;
    b.wait_dossiers(5).await;
    b.wait_for(
        "the refused connection in the log",
        Duration::from_secs(30),
        || async { b.log_text().contains("cannot connect to the NATS servers") },
    )
    .await;
    let log = b.log_text();
    let line = log
        .lines()
        .find(|l| l.contains("cannot connect to the NATS servers"))
        .unwrap();
    assert!(
        (line.contains("BadCertificate") || line.contains("CertificateRequired"))
            && line.contains("for want of a valid client certificate")
            && line.contains("uplink.cert_file"),
        "the error names the missing client certificate: {line}"
    );
    wait_held_back(&b, 5).await;
    let js = tls_client(&url, &pki, true).await;
    assert_eq!(stream_count(&js, STREAM).await, 0, "nothing got in");

    // Fixed: the client certificate in the config, the process restarted.
    let config = dir.path().join("commune.toml");
    let mut toml = std::fs::read_to_string(&config).unwrap();
    toml.push_str(&format!(
        "cert_file = {}\nkey_file = {}\n",
        toml_path(&pki.client_cert),
        toml_path(&pki.client_key)
    ));
    std::fs::write(&config, toml).unwrap();
    b.restart();
    b.wait_ready().await;
    publish_dossiers(broker.port, "m2", 2).await;
    wait_stream(&js, 7, Duration::from_secs(60), || {
        format!("{}\nnats:\n{}", b.log_text(), nats.log_text())
    })
    .await;
    check_contract(&stream_entries(&js, STREAM).await.unwrap(), 7);
}

/// An NKey user (`authorization { users = [{ nkey: "U…" }] }`): the uplink
/// signs the server's challenge with the seed in `nkey_seed_file` and
/// forwards; the seed never appears in the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_uplink_logs_in_with_an_nkey_seed_file() {
    let user = user_key();
    let nats = ConfNats::start(&nkey_users_block(&[&user.public]));
    let seed_file = nats.dir().join("binh-lu.nk");
    std::fs::write(&seed_file, format!("{}\n", user.seed)).unwrap();
    let url = nats.url("nats");
    let (broker, _dir, b) = kit::stack_with(
        &format!(
            "{}nkey_seed_file = {}\n",
            uplink_toml(&url),
            toml_path(&seed_file)
        ),
        &[],
    )
    .await;
    publish_dossiers(broker.port, "n", 5).await;
    let js = jetstream::new(
        async_nats::ConnectOptions::with_nkey(user.seed.clone())
            .connect(&url)
            .await
            .unwrap(),
    );
    wait_stream(&js, 5, Duration::from_secs(60), || b.log_text()).await;
    check_contract(&stream_entries(&js, STREAM).await.unwrap(), 5);
    assert!(!b.log_text().contains(&user.seed), "the seed is in the log");
}

/// A seed the server does not know (another user's) is refused: the log
/// says the server refused the login (authorization violation), nothing
/// reaches the stream, and the commune keeps its entries (the lag shown).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_nkey_seed_is_refused_with_a_clear_error() {
    let user = user_key();
    let stranger = user_key();
    let nats = ConfNats::start(&nkey_users_block(&[&user.public]));
    let seed_file = nats.dir().join("wrong.nk");
    std::fs::write(&seed_file, &stranger.seed).unwrap();
    let url = nats.url("nats");
    let (broker, _dir, b) = kit::stack_with(
        &format!(
            "{}nkey_seed_file = {}\n",
            uplink_toml(&url),
            toml_path(&seed_file)
        ),
        &[],
    )
    .await;
    publish_dossiers(broker.port, "w", 3).await;
    b.wait_dossiers(3).await;
    wait_refused(
        &b,
        "the refused login in the log",
        &["authorization violation", "the server refused the login"],
    )
    .await;
    wait_held_back(&b, 3).await;
    let js = jetstream::new(
        async_nats::ConnectOptions::with_nkey(user.seed.clone())
            .connect(&url)
            .await
            .unwrap(),
    );
    assert_eq!(stream_count(&js, STREAM).await, 0);
    assert!(
        !b.log_text().contains(&stranger.seed),
        "the seed is in the log"
    );
}

/// Operator mode: the server trusts an operator, knows the account from
/// its JWT, and admits a user by the JWT and the seed of a `.creds` file:
/// the uplink logs in with `creds_file` and forwards; a `.creds` file of a
/// user the operator never signed for is refused with the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_uplink_logs_in_with_a_creds_file_in_operator_mode() {
    let chain = operator("ioc-binh-lu");
    let nats = ConfNats::start(&chain.conf);
    let creds_file = nats.dir().join("binh-lu.creds");
    std::fs::write(&creds_file, &chain.creds).unwrap();
    let url = nats.url("nats");
    let (broker, _dir, b) = kit::stack_with(
        &format!(
            "{}creds_file = {}\n",
            uplink_toml(&url),
            toml_path(&creds_file)
        ),
        &[],
    )
    .await;
    publish_dossiers(broker.port, "c", 5).await;
    let js = jetstream::new(
        async_nats::ConnectOptions::with_credentials(&chain.creds)
            .unwrap()
            .connect(&url)
            .await
            .unwrap_or_else(|e| panic!("{e}\nnats log:\n{}", nats.log_text())),
    );
    wait_stream(&js, 5, Duration::from_secs(60), || {
        format!("{}\nnats log:\n{}", b.log_text(), nats.log_text())
    })
    .await;
    check_contract(&stream_entries(&js, STREAM).await.unwrap(), 5);
    assert!(
        !b.log_text().contains(&chain.user_seed),
        "the seed is in the log"
    );

    // Another operator's user: refused, with the reason.
    let stranger = operator("ke-la");
    let wrong = nats.dir().join("stranger.creds");
    std::fs::write(&wrong, &stranger.creds).unwrap();
    let (broker2, _dir2, b2) = kit::stack_with(
        &format!("{}creds_file = {}\n", uplink_toml(&url), toml_path(&wrong)),
        &[],
    )
    .await;
    publish_dossiers(broker2.port, "x", 1).await;
    wait_refused(
        &b2,
        "the refused login in the log",
        &["authorization violation", "the server refused the login"],
    )
    .await;
    assert_eq!(
        stream_count(&js, STREAM).await,
        5,
        "nothing of the stranger"
    );
}

/// A server whose certificate was signed by a CA other than `ca_file`'s:
/// the uplink does not send to it, and says why (the certificate is not
/// trusted, set `ca_file`); the commune keeps its entries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_certificate_not_signed_by_ca_file_is_refused_with_the_reason() {
    let pki_dir = tempfile::tempdir().unwrap();
    let pki = Pki::create(&pki_dir.path().join("province"), "ioc-binh-lu");
    let other = Pki::create(&pki_dir.path().join("other"), "ioc-binh-lu");
    let nats = ConfNats::start(&tls_block(&pki, false));
    let url = nats.url("tls");
    let (broker, _dir, b) = kit::stack_with(
        &format!("{}ca_file = {}\n", uplink_toml(&url), toml_path(&other.ca)),
        &[],
    )
    .await;
    publish_dossiers(broker.port, "u", 2).await;
    wait_refused(
        &b,
        "the untrusted certificate in the log",
        &[
            "invalid peer certificate",
            "certificate is not trusted: set uplink.ca_file",
        ],
    )
    .await;
    wait_held_back(&b, 2).await;
    let js = tls_client(&url, &pki, false).await;
    assert_eq!(stream_count(&js, STREAM).await, 0);
}

/// A seed file that holds no NKey user seed, and a `.creds` file that is
/// not one, are refused at load with their key (and without quoting what
/// is in them).
#[test]
fn a_seed_or_creds_file_that_is_not_one_is_refused_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let seed = dir.path().join("binh-lu.nk");
    std::fs::write(&seed, "SAnot-a-user-seed-secret-4711\n").unwrap();
    let base = "[commune]\nid = \"binh-lu\"\nname = \"X\"\n";
    let (code, err) = check_config(
        &format!(
            "{base}[uplink]\nurl = \"nats://127.0.0.1:4222\"\nnkey_seed_file = {}\n",
            toml_path(&seed)
        ),
        &[],
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("`uplink.nkey_seed_file`"), "{err}");
    assert!(
        err.contains("không chứa khóa bí mật NKey của người dùng"),
        "{err}"
    );
    assert!(
        !err.contains("secret-4711"),
        "the file's content is quoted: {err}"
    );
    let creds = dir.path().join("binh-lu.creds");
    std::fs::write(&creds, "user: secret-4712\n").unwrap();
    let (code, err) = check_config(
        &format!(
            "{base}[uplink]\nurl = \"nats://127.0.0.1:4222\"\ncreds_file = {}\n",
            toml_path(&creds)
        ),
        &[],
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("`uplink.creds_file`"), "{err}");
    assert!(err.contains("không phải tệp .creds của NATS"), "{err}");
    assert!(
        !err.contains("secret-4712"),
        "the file's content is quoted: {err}"
    );
    // A real seed passes.
    std::fs::write(&seed, user_key().seed).unwrap();
    let (code, err) = check_config(
        &format!(
            "{base}[uplink]\nurl = \"nats://127.0.0.1:4222\"\nnkey_seed_file = {}\n",
            toml_path(&seed)
        ),
        &[],
    );
    assert_eq!(code, Some(0), "{err}");
}

/// The stream's owner (`create_stream = true`) keeps its age limit as
/// configured on a stream that exists with another one (logged); a box
/// that does not own it (`create_stream = false`) leaves it alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_streams_owner_sets_its_max_age_and_the_others_leave_it() {
    let nats = Nats::start();
    let js = jetstream::new(nats.client().await);
    js.create_stream(commune_ioc::uplink::stream_config(
        &commune_ioc::config::Uplink {
            max_age_days: 0,
            ..Default::default()
        },
    ))
    .await
    .unwrap();
    let max_age = |js: jetstream::Context| async move {
        js.get_stream(STREAM)
            .await
            .unwrap()
            .info()
            .await
            .unwrap()
            .config
            .max_age
    };
    assert_eq!(max_age(js.clone()).await, Duration::ZERO);
    // Not the owner: forwards, changes nothing.
    let guest = format!(
        "{}create_stream = false\nmax_age_days = 5\n",
        uplink_toml(&nats.url())
    );
    let (broker, _dir, b) = kit::stack_with(&guest, &[]).await;
    publish_dossiers(broker.port, "guest", 3).await;
    wait_stream(&js, 3, Duration::from_secs(30), || b.log_text()).await;
    assert_eq!(max_age(js.clone()).await, Duration::ZERO);
    drop(b);
    drop(broker);
    // The owner: the limit is set at connect.
    let owner = format!("{}max_age_days = 3\n", uplink_toml(&nats.url()));
    let (_broker, _dir, b) = kit::stack_with(&owner, &[]).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    // Set, and logged (the line may follow the change by a moment).
    while max_age(js.clone()).await != Duration::from_secs(3 * 86_400)
        || !b.log_text().contains("max_age set as configured")
    {
        assert!(
            Instant::now() < deadline,
            "max_age not set and logged; log:\n{}",
            b.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `uplink.url` naming several servers (a cluster), the first one not
/// running: the uplink connects to the next and forwards everything
/// (async-nats reads one string as one address; the list is split).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_of_servers_reaches_the_one_that_runs() {
    let nats = Nats::start();
    let js = jetstream::new(nats.client().await);
    let down = format!("nats://127.0.0.1:{}", kit::proc::free_port());
    let list = format!("{down}, {}", nats.url());
    let (broker, _dir, b) = kit::stack_with(&uplink_toml(&list), &[]).await;
    publish_dossiers(broker.port, "list", 3).await;
    wait_stream(&js, 3, Duration::from_secs(60), || b.log_text()).await;
}
