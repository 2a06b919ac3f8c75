//! Property tests: arbitrary bytes on every topic never panic the decoders,
//! and through the real journal writer every message becomes exactly one of
//! event, dead letter or recognised duplicate, and is acknowledged.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use chrono::Utc;
use commune_ioc::config::load_str;
use commune_ioc::journal::Store;
use commune_ioc::model::{Raw, Registry};
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
        match d.decode(&raw) {
            Ok(e) => prop_assert!(!e.dedup_key.is_empty()),
            Err(r) => prop_assert!(!r.detail.is_empty()),
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
        for (topic, payload) in &sent {
            let a = Arc::clone(&acked);
            tx.blocking_send(Inbound {
                raw: Raw { topic: topic.clone(), payload: payload.clone(), received_at: now, retained: false },
                ack: Some(Box::new(move || { a.fetch_add(1, Ordering::SeqCst); })),
            }).unwrap();
        }
        drop(tx);
        handle.join().unwrap();

        let reader = Store::open_reader(&cfg.journal_path()).unwrap();
        let events = reader.event_count().unwrap() as usize;
        let dead: u64 = reader.dead_letter_counts().unwrap().iter().map(|(_, n)| n).sum();
        let dups = shared.metrics.render()
            .lines()
            .find(|l| l.starts_with("ioc_duplicates_total "))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .unwrap() as usize;
        prop_assert_eq!(events + dead as usize + dups, sent.len());
        prop_assert!(dups >= repeat.min(msgs.len()), "each repeated message is a duplicate");
        prop_assert_eq!(acked.load(Ordering::SeqCst), sent.len(), "every message acknowledged after commit");
    }
}
