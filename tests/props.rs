//! Property tests: arbitrary bytes on every topic never panic the decoders,
//! and through the real commit pipeline every message becomes exactly one of
//! event, dead letter or recognised duplicate (counted against what the
//! decoder says, not against the pipeline's own figures), and is
//! acknowledged only once its row is committed (each ack checks the store
//! when it happens).

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use commune_ioc::config::load_str;
use commune_ioc::config::Registry;
use commune_ioc::journal::Store;
use commune_ioc::model::Raw;
use commune_ioc::runtime::pipeline::{self as writer, Inbound};
use commune_ioc::sources::Decoder;
use commune_ioc::state::Shared;
use proptest::prelude::*;

const CONFIG: &str = r#"
[commune]
id = "binh-lu"
name = "Xã Bình Lư"
[ingest]
max_payload_bytes = 400
[[village]]
id = "tan-binh"
name = "Bản Tân Bình"
[[camera]]
id = "cam-01"
village = "tan-binh"
frigate_name = "cong"
[[speaker]]
id = "spk-01"
[[sensor]]
id = "rain-01"
[[indicator]]
id = "dossiers_received"
name = "Hồ sơ"
kind = "count"
match = { source = "procedure", event = "received" }
"#;

const TOPICS: &[&str] = &[
    "ioc/binh-lu/camera/cam-01/event",
    "ioc/binh-lu/camera/cam-01/status",
    "ioc/binh-lu/camera/cam-77/event",
    "ioc/binh-lu/speaker/spk-01/status",
    "ioc/binh-lu/speaker/spk-01/session",
    "ioc/binh-lu/procedure/dossier",
    "ioc/binh-lu/procedure/dvcqg",
    "ioc/binh-lu/sensor/rain-01/telemetry",
    "ioc/binh-lu/sensor/rain-01/status",
    "ioc/lung-phinh/procedure/dossier",
    "ioc/binh-lu/unknown",
    "frigate/events",
    "frigate/reviews",
    "frigate/available",
    "",
    "ioc",
];

fn decoder() -> Decoder {
    let c = load_str(CONFIG, "props.toml", &[]).expect("config");
    Decoder::new(Arc::new(Registry::from_config(&c)), c.ingest.clone(), false)
}

/// JSON-ish payloads built from the contract's field names, so the decoders'
/// deeper branches are reached, not just the JSON parser.
fn jsonish() -> impl Strategy<Value = Vec<u8>> {
    let key = prop::sample::select(vec![
        "ts",
        "seq",
        "kind",
        "label",
        "count",
        "score",
        "zone",
        "state",
        "event",
        "dossier_id",
        "channel",
        "full_online",
        "outcome",
        "payment",
        "village",
        "due",
        "priority",
        "session_id",
        "values",
        "type",
        "after",
        "camera",
        "id",
        "sub_label",
        "frame_time",
        "start_time",
        "rain_mm",
        // The DVCQG portal sync (several events per message).
        "service",
        "data",
        "MaHoSo",
        "TrangThaiHoSo",
        "NgayTiepNhan",
        "HinhThuc",
    ]);
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f)
            .map_or(serde_json::Value::Null, serde_json::Value::Number)),
        prop::sample::select(vec![
            "online",
            "offline",
            "fault",
            "received",
            "resolved",
            "paid",
            "direct",
            "early",
            "late",
            "cash",
            "new",
            "update",
            "end",
            "person",
            "cong",
            "cam-01",
            "2026-06-14T23:59:59.999+07:00",
            "tan-binh",
            "detection",
            "count",
            "start",
            "DongBoHoSoMC",
            "CapNhatTienDoHoSoMC",
            "20261201081500",
            "9",
        ])
        .prop_map(serde_json::Value::from),
        ".{0,12}".prop_map(serde_json::Value::from),
    ];
    let value = leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
            prop::collection::btree_map(".{0,6}", inner, 0..4)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    });
    prop::collection::btree_map(key, value, 0..8).prop_map(|m| {
        serde_json::Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
            .to_string()
            .into_bytes()
    })
}

fn payload() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..600),
        jsonish(),
        Just(b"online".to_vec()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn decoders_never_panic(topic in prop::sample::select(TOPICS), bytes in payload()) {
        let d = decoder();
        let raw = Raw { topic: topic.to_string(), payload: bytes, received_at: Utc::now(), retained: false };
        let decoded = d.decode(&raw);
        prop_assert!(!decoded.is_empty());
        for part in decoded {
            match part.result {
                Ok(e) => prop_assert!(!e.dedup_key.is_empty()),
                Err(r) => prop_assert!(!r.detail.is_empty()),
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn every_message_becomes_an_event_a_dead_letter_or_a_duplicate(
        msgs in prop::collection::vec((prop::sample::select(TOPICS), payload()), 1..120),
        repeat in 0usize..20,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = load_str(CONFIG, "props.toml", &[]).unwrap();
        cfg.store.path = dir.path().to_path_buf();
        cfg.store.batch_max = 16;
        let store = Store::open(&cfg.journal_path()).unwrap();
        let shared = Arc::new(Shared::new(cfg.clone()));
        let dec = Decoder::new(Arc::clone(&shared.registry), cfg.ingest.clone(), false);
        let (tx, rx) = tokio::sync::mpsc::channel(8);
        let handle = writer::spawn(store, dec, Arc::clone(&shared), rx).unwrap();
        let acked = Arc::new(AtomicUsize::new(0));
        let now = Utc::now();
        // Some messages are sent twice, as a broker redelivers after a crash.
        let sent: Vec<(String, Vec<u8>)> = msgs
            .iter()
            .cloned()
            .chain(msgs.iter().take(repeat).cloned())
            .map(|(t, p)| (t.to_string(), p))
            .collect();
        let check = Arc::new(Checker::open(&cfg.journal_path()));
        for (topic, payload) in &sent {
            let a = Arc::clone(&acked);
            let c = Arc::clone(&check);
            let raw = Raw { topic: topic.clone(), payload: payload.clone(), received_at: now, retained: false };
            let key = (topic.clone(), payload.clone());
            tx.blocking_send(Inbound {
                raw,
                ack: Some(Box::new(move || {
                    c.assert_committed(&key.0, &key.1);
                    a.fetch_add(1, Ordering::SeqCst);
                })),
            }).unwrap();
        }
        drop(tx);
        handle.join().unwrap();
        check.no_violations();

        // What the store must hold, from the decoder alone.
        let d = decoder();
        let mut event_keys = HashSet::new();
        let mut dead_keys = HashSet::new();
        for (topic, payload) in &sent {
            let raw = Raw { topic: topic.clone(), payload: payload.clone(), received_at: now, retained: false };
            for part in d.decode(&raw) {
                match part.result {
                    Ok(e) => { event_keys.insert(e.dedup_key); }
                    Err(_) => {
                        dead_keys.insert((topic.clone(), part.payload.unwrap_or_else(|| payload.clone())));
                    }
                }
            }
        }

        let reader = Store::open_reader(&cfg.journal_path()).unwrap();
        let events = reader.event_count().unwrap() as usize;
        let dead: u64 = reader.dead_letter_counts().unwrap().iter().map(|(_, n)| n).sum();
        let dups = shared.metrics.render()
            .lines()
            .find(|l| l.starts_with("ioc_duplicates_total "))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .unwrap() as usize;
        prop_assert_eq!(events, event_keys.len(), "one event per distinct dedup key");
        prop_assert_eq!(dead as usize, dead_keys.len(), "one dead letter per distinct rejected message");
        prop_assert_eq!(dups, sent.len() - event_keys.len() - dead_keys.len(), "the rest counted as duplicates");
        prop_assert!(dups >= repeat.min(msgs.len()), "each repeated message is a duplicate");
        prop_assert_eq!(acked.load(Ordering::SeqCst), sent.len(), "every message acknowledged after commit");
    }
}

/// Checks, from its own read-only connection, that a message is in the
/// store at the moment its ack is called.
struct Checker {
    conn: parking_lot::Mutex<rusqlite::Connection>,
    violations: parking_lot::Mutex<Vec<String>>,
}

impl Checker {
    fn open(path: &std::path::Path) -> Checker {
        Checker {
            conn: parking_lot::Mutex::new(commune_ioc::store::open_read_only(path).unwrap()),
            violations: parking_lot::Mutex::new(Vec::new()),
        }
    }

    /// The message (topic, payload) is committed as an event or a dead
    /// letter (a dead letter keeps at most `OVERSIZE_KEEP` bytes).
    fn committed(&self, topic: &str, payload: &[u8]) -> bool {
        let kept = &payload[..payload.len().min(commune_ioc::journal::OVERSIZE_KEEP)];
        self.conn
            .lock()
            .query_row(
                "SELECT EXISTS(SELECT 1 FROM events WHERE topic = ?1 AND payload = ?2)
                     OR EXISTS(SELECT 1 FROM dead_letters WHERE topic = ?1
                               AND (payload = ?2 OR payload = ?3))",
                rusqlite::params![topic, payload, kept],
                |r| r.get(0),
            )
            .unwrap()
    }

    fn assert_committed(&self, topic: &str, payload: &[u8]) {
        if !self.committed(topic, payload) {
            self.violations.lock().push(format!(
                "acknowledged before commit: {topic} {}",
                String::from_utf8_lossy(payload)
            ));
        }
    }

    fn no_violations(&self) {
        let v = self.violations.lock();
        assert!(
            v.is_empty(),
            "{} acks before commit: {:?}",
            v.len(),
            &v[..v.len().min(5)]
        );
    }
}

/// Deterministic ack-after-commit: while the store refuses every write
/// (a trigger, as a full or broken disk would), the pipeline retries and
/// acknowledges nothing; once it accepts writes, every message is
/// acknowledged, in order, and each ack finds its row already committed.
#[test]
fn acks_follow_commits_and_a_failing_store_gets_none() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = load_str(CONFIG, "props.toml", &[]).unwrap();
    cfg.store.path = dir.path().to_path_buf();
    cfg.store.batch_max = 4;
    let store = Store::open(&cfg.journal_path()).unwrap();
    let admin = rusqlite::Connection::open(cfg.journal_path()).unwrap();
    admin
        .execute_batch(
            "CREATE TRIGGER refuse_events BEFORE INSERT ON events
             BEGIN SELECT RAISE(ABORT, 'disk on fire'); END;
             CREATE TRIGGER refuse_dead BEFORE INSERT ON dead_letters
             BEGIN SELECT RAISE(ABORT, 'disk on fire'); END;",
        )
        .unwrap();
    let shared = Arc::new(Shared::new(cfg.clone()));
    let dec = Decoder::new(Arc::clone(&shared.registry), cfg.ingest.clone(), false);
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let handle = writer::spawn(store, dec, Arc::clone(&shared), rx).unwrap();
    let check = Arc::new(Checker::open(&cfg.journal_path()));
    let acked = Arc::new(parking_lot::Mutex::new(Vec::new()));
    const N: usize = 120;
    let now = Utc::now();
    let message = |i: usize| -> (String, Vec<u8>) {
        if i % 7 == 3 {
            (
                "ioc/binh-lu/procedure/dossier".into(),
                format!("{{not json {i}").into_bytes(),
            )
        } else {
            (
                "ioc/binh-lu/procedure/dossier".into(),
                format!(
                    r#"{{"dossier_id":"A-{i}","event":"received","channel":"online","ts":"{}"}}"#,
                    now.to_rfc3339()
                )
                .into_bytes(),
            )
        }
    };
    let send = |i: usize| {
        let (topic, payload) = message(i);
        let (c, a) = (Arc::clone(&check), Arc::clone(&acked));
        let (t, p) = (topic.clone(), payload.clone());
        tx.blocking_send(Inbound {
            raw: Raw {
                topic,
                payload,
                received_at: now,
                retained: false,
            },
            ack: Some(Box::new(move || {
                c.assert_committed(&t, &p);
                a.lock().push(i);
            })),
        })
        .unwrap();
    };
    for i in 0..10 {
        send(i);
    }
    // The pipeline has tried (and failed) three times: nothing acknowledged.
    let deadline = Instant::now() + Duration::from_secs(60);
    while shared.metrics.journal_errors.get() < 3 {
        assert!(
            Instant::now() < deadline,
            "the pipeline never tried to commit"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        acked.lock().is_empty(),
        "acks while the store refused writes: {:?}",
        acked.lock()
    );
    assert!(!shared.store_writable.load(Ordering::Relaxed));

    admin
        .execute_batch("DROP TRIGGER refuse_events; DROP TRIGGER refuse_dead;")
        .unwrap();
    for i in 10..N {
        send(i);
    }
    drop(tx);
    handle.join().unwrap();
    check.no_violations();
    assert_eq!(
        *acked.lock(),
        (0..N).collect::<Vec<_>>(),
        "every message acknowledged once, in order"
    );
    let reader = Store::open_reader(&cfg.journal_path()).unwrap();
    let dead: u64 = reader
        .dead_letter_counts()
        .unwrap()
        .iter()
        .map(|(_, n)| n)
        .sum();
    assert_eq!(reader.event_count().unwrap() + dead, N as u64);
}
